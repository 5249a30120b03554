//! `mvt merge OUT DIR...`: one results folder from the shards (or repeated sweeps) of a suite.
//! Rows are deduplicated by run id; a run id with different results in two folders is a
//! conflict, reported and recorded, and the successful (else the first) result is kept.

use super::{write_analysis, RunError, WEIGHTS_DIR};
use crate::results::curves::{curves_csv, read_curves, Curves, CURVES_FILE};
use crate::results::folder::FolderError;
use crate::results::manifest::{Manifest, MergeRecord, MergedSource};
use crate::results::run_specs::write_runs;
use crate::results::store::{self, write_atomic};
use crate::results::{ResultsFolder, Row, Status};
use crate::spec::RunSpec;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error(transparent)]
    NotResults(#[from] FolderError),
    #[error("no folders to merge into `{}`", out.display())]
    NoSources { out: PathBuf },
    #[error(
        "`{}` holds suite `{found}` (or another version of it), but `{}` holds `{expected}`; \
         only shards of one suite merge",
        dir.display(), first.display()
    )]
    SuiteMismatch {
        dir: PathBuf,
        first: PathBuf,
        found: String,
        expected: String,
    },
    #[error(transparent)]
    Run(#[from] RunError),
}

/// What a merge did.
#[derive(Debug, Clone)]
pub struct MergeSummary {
    pub rows: usize,
    pub planned: usize,
    pub duplicates: usize,
    pub conflicts: Vec<String>,
    pub charts: Vec<PathBuf>,
}

pub fn merge(out: &Path, sources: &[PathBuf]) -> Result<MergeSummary, MergeError> {
    let folders = sources
        .iter()
        .map(|dir| ResultsFolder::open(dir))
        .collect::<Result<Vec<_>, _>>()?;
    let first = check_same_suite(out, &folders)?;
    let runs = &first.runs;
    let deduplicated = deduplicate(&folders);
    let mut rows = in_plan_order(runs, deduplicated.kept);

    std::fs::create_dir_all(out).map_err(|source| RunError::Folder {
        path: out.to_owned(),
        source,
    })?;
    let charts = write_analysis(&first.manifest.resolved_suite.plots, runs, out, &mut rows)?;
    store::write_rows(out, &rows).map_err(RunError::from)?;
    write_runs(out, runs).map_err(RunError::from)?;
    write_curves(out, &kept_curves(&folders, &rows))?;
    copy_weights(out, &folders, &rows)?;
    let manifest = merged_manifest(&folders, runs, &rows, &deduplicated.conflicts);
    manifest.write(out).map_err(RunError::from)?;
    Ok(MergeSummary {
        rows: manifest.runs_finished,
        planned: runs.len(),
        duplicates: deduplicated.duplicates,
        conflicts: deduplicated.conflicts,
        charts,
    })
}

/// The first folder, after checking that every other one holds the same resolved suite.
fn check_same_suite<'a>(
    out: &Path,
    folders: &'a [ResultsFolder],
) -> Result<&'a ResultsFolder, MergeError> {
    let Some(first) = folders.first() else {
        return Err(MergeError::NoSources {
            out: out.to_owned(),
        });
    };
    let suite_json =
        |f: &ResultsFolder| serde_json::to_string(&f.manifest.resolved_suite).unwrap_or_default();
    match folders[1..]
        .iter()
        .find(|f| suite_json(f) != suite_json(first))
    {
        Some(other) => Err(MergeError::SuiteMismatch {
            dir: other.dir.clone(),
            first: first.dir.clone(),
            found: other.manifest.suite.clone(),
            expected: first.manifest.suite.clone(),
        }),
        None => Ok(first),
    }
}

/// A recall run has a row per evaluation length, all with its run id.
type RowKey = (String, Option<i64>);

fn key(row: &Row) -> RowKey {
    (row.run_id.clone(), row.eval_seq_len)
}

struct Deduplicated {
    /// One row per key, with the folder it came from.
    kept: BTreeMap<RowKey, (Row, PathBuf)>,
    duplicates: usize,
    conflicts: Vec<String>,
}

/// One row per run id and evaluation length; where two folders disagree, the successful
/// result, else the first, is kept and the conflict is described.
fn deduplicate(folders: &[ResultsFolder]) -> Deduplicated {
    let mut kept: BTreeMap<RowKey, (Row, PathBuf)> = BTreeMap::new();
    let (mut duplicates, mut conflicts) = (0, Vec::new());
    for folder in folders {
        let dir = &folder.dir;
        for row in &folder.rows {
            let Some((old, old_dir)) = kept.get(&key(row)) else {
                kept.insert(key(row), (row.clone(), dir.clone()));
                continue;
            };
            duplicates += 1;
            if same_result(old, row) {
                continue;
            }
            let replace = old.status != Status::Ok && row.status == Status::Ok;
            let (winner, loser) = if replace {
                ((row, dir), (old, old_dir))
            } else {
                ((old, old_dir), (row, dir))
            };
            conflicts.push(format!(
                "{}: kept {} from `{}`, dropped {} from `{}`",
                row.run_id,
                winner.0.status.name(),
                winner.1.display(),
                loser.0.status.name(),
                loser.1.display()
            ));
            if replace {
                kept.insert(key(row), (row.clone(), dir.clone()));
            }
        }
    }
    Deduplicated {
        kept,
        duplicates,
        conflicts,
    }
}

/// The kept rows in plan order, then any the plan no longer names.
fn in_plan_order(runs: &[RunSpec], mut kept: BTreeMap<RowKey, (Row, PathBuf)>) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for spec in runs {
        let lengths: Vec<Option<i64>> = match &spec.recall {
            Some(recall) => recall.eval_seq_len.iter().map(|l| Some(*l)).collect(),
            None => vec![None],
        };
        for len in lengths {
            if let Some((row, _)) = kept.remove(&(spec.run_id.clone(), len)) {
                rows.push(row);
            }
        }
    }
    rows.extend(kept.into_values().map(|(row, _)| row));
    rows
}

/// The trained weights (and their specs) of the kept runs, each from the first folder that has
/// them, so that the merged folder can be probed (`mvt mechanism`) like its sources.
fn copy_weights(out: &Path, folders: &[ResultsFolder], rows: &[Row]) -> Result<(), RunError> {
    let kept: BTreeSet<&str> = rows.iter().map(|r| r.run_id.as_str()).collect();
    let target = out.join(WEIGHTS_DIR);
    let copy = |from: &Path, to: &Path| {
        std::fs::copy(from, to)
            .map(|_| ())
            .map_err(|source| RunError::Folder {
                path: to.to_owned(),
                source,
            })
    };
    for run_id in kept {
        let files = [
            format!("{run_id}.safetensors"),
            format!("{run_id}.spec.json"),
        ];
        let Some(source) = folders
            .iter()
            .map(|f| f.dir.join(WEIGHTS_DIR))
            .find(|dir| dir.join(&files[0]).is_file())
        else {
            continue;
        };
        std::fs::create_dir_all(&target).map_err(|source| RunError::Folder {
            path: target.clone(),
            source,
        })?;
        for file in files.iter().filter(|f| source.join(f).is_file()) {
            copy(&source.join(file), &target.join(file))?;
        }
    }
    Ok(())
}

/// Training curves of the kept runs, each once, in source order.
fn kept_curves(folders: &[ResultsFolder], rows: &[Row]) -> Curves {
    let kept: BTreeSet<&str> = rows.iter().map(|r| r.run_id.as_str()).collect();
    let mut curves: Curves = Vec::new();
    for folder in folders {
        for (run_id, curve) in read_curves(&folder.dir) {
            if kept.contains(run_id.as_str()) && !curves.iter().any(|(id, _)| *id == run_id) {
                curves.push((run_id, curve));
            }
        }
    }
    curves
}

fn write_curves(out: &Path, curves: &Curves) -> Result<(), RunError> {
    if curves.is_empty() {
        return Ok(());
    }
    Ok(write_atomic(
        &out.join(CURVES_FILE),
        curves_csv(curves).as_bytes(),
    )?)
}

/// The first folder's manifest, as one unsharded folder of `runs`, recording its sources.
fn merged_manifest(
    folders: &[ResultsFolder],
    runs: &[RunSpec],
    rows: &[Row],
    conflicts: &[String],
) -> Manifest {
    let finished: BTreeSet<&str> = rows.iter().map(|r| r.run_id.as_str()).collect();
    let missing = runs
        .iter()
        .filter(|s| !finished.contains(s.run_id.as_str()))
        .count();
    let mut manifest = folders[0].manifest.clone();
    manifest.shard = None;
    manifest.runs_planned = runs.len();
    manifest.runs_finished = finished.len();
    manifest.finished_at = folders
        .iter()
        .filter_map(|f| f.manifest.finished_at.clone())
        .max();
    manifest.merge = Some(MergeRecord {
        sources: folders
            .iter()
            .map(|f| MergedSource {
                dir: f.dir.display().to_string(),
                shard: f.manifest.shard.clone(),
                rows: f.rows.len(),
                git_commit: f.manifest.git_commit.clone(),
                started_at: f.manifest.started_at.clone(),
                finished_at: f.manifest.finished_at.clone(),
                cpu_model: f.manifest.environment.cpu_model.clone(),
            })
            .collect(),
        conflicts: conflicts.to_vec(),
        missing,
    });
    manifest
}

/// The same measurement: everything but the wall time and the fitted prediction agrees.
fn same_result(a: &Row, b: &Row) -> bool {
    let strip = |r: &Row| Row {
        wall_s: 0.0,
        predicted_latency_s: None,
        ..r.clone()
    };
    strip(a) == strip(b)
}
