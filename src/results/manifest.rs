//! `manifest.json`: how a results folder came to be. Written when a sweep starts and again when
//! it ends, so an interrupted sweep still says what it was.

use crate::environment::Environment;
use crate::suite::Suite;
use serde::{Deserialize, Serialize};

pub const MANIFEST_FILE: &str = "manifest.json";

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
    pub device: String,
    pub dtype: String,
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
    pub environment: Environment,
    /// The suite after defaults were applied.
    pub resolved_suite: Suite,
}
