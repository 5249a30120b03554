//! `manifest.json`: how a results folder came to be. Written when a sweep starts and again when
//! it ends, so an interrupted sweep still says what it was.

use super::store::{write_atomic, StoreError};
use crate::environment::Environment;
use crate::spec::{DType, DeviceId};
use crate::suite::Suite;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const MANIFEST_FILE: &str = "manifest.json";

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("`{}` is not a results folder: {source} reading {MANIFEST_FILE}", dir.display())]
    Missing {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("`{}` is not a manifest mvt can read: {source}", path.display())]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Write(#[from] StoreError),
}

/// Provenance of a merged results folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MergeRecord {
    pub sources: Vec<MergedSource>,
    /// Run ids found in more than one source with different results, and which was kept.
    pub conflicts: Vec<String>,
    /// Planned runs that no source finished.
    pub missing: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MergedSource {
    pub dir: String,
    pub shard: Option<String>,
    pub rows: usize,
    pub git_commit: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub cpu_model: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub suite: String,
    pub description: String,
    /// The suite file as given on the command line.
    pub suite_path: String,
    pub git_commit: Option<String>,
    /// Whether the working tree had uncommitted changes.
    pub git_dirty: Option<bool>,
    pub started_at: String,
    /// `None` while the sweep is running or when it was killed.
    pub finished_at: Option<String>,
    /// The device every run used, resolved from the suite's `device`.
    pub device: DeviceId,
    pub dtype: DType,
    pub seed: u64,
    pub threads: i64,
    pub runs_planned: usize,
    pub runs_finished: usize,
    /// `I/N` when this folder holds one shard of the suite (`mvt run --shard`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// The folders `mvt merge` combined into this one, and what it found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<MergeRecord>,
    /// Runs adopted from other folders (`mvt run --reuse`), with where they were measured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reused: Vec<ReuseRecord>,
    pub environment: Environment,
    /// The suite after defaults were applied.
    pub resolved_suite: Suite,
}

/// Runs a sweep adopted from another results folder instead of running them again: the
/// folder, the commit its rows were measured at, and this suite's run ids they became.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReuseRecord {
    pub folder: String,
    pub git_commit: Option<String>,
    pub git_dirty: Option<bool>,
    pub runs: Vec<String>,
}

impl Manifest {
    /// The manifest of results folder `dir`.
    pub fn read(dir: &Path) -> Result<Self, ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ManifestError::Missing {
            dir: dir.to_owned(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| ManifestError::Corrupt { path, source })
    }

    /// Saves the manifest into results folder `dir`, atomically.
    pub fn write(&self, dir: &Path) -> Result<(), ManifestError> {
        let json = serde_json::to_string_pretty(self).expect("manifests serialise");
        Ok(write_atomic(&dir.join(MANIFEST_FILE), json.as_bytes())?)
    }
}
