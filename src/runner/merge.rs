//! `mvt merge OUT DIR...`: one results folder from the shards (or repeated sweeps) of a suite.
//! Rows are deduplicated by run id; a run id with different results in two folders is a
//! conflict, reported and recorded, and the successful (else the first) result is kept.

use super::{curves_csv, read_curves, write_analysis, RunError, CURVES_FILE};
use crate::results::manifest::{Manifest, MergeRecord, MergedSource, MANIFEST_FILE};
use crate::results::store::{self, write_atomic};
use crate::results::{Row, Status};
use crate::suite::{grid, Plan};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("`{}` is not a results folder: {message}", dir.display())]
    NotResults { dir: PathBuf, message: String },
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
    let mut loaded = Vec::new();
    for dir in sources {
        let not_results = |message: String| MergeError::NotResults {
            dir: dir.clone(),
            message,
        };
        let text = std::fs::read_to_string(dir.join(MANIFEST_FILE))
            .map_err(|e| not_results(format!("{e} reading {MANIFEST_FILE}")))?;
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|e| not_results(e.to_string()))?;
        let rows = store::read_rows(dir).map_err(|e| not_results(e.to_string()))?;
        loaded.push((dir.clone(), manifest, rows));
    }
    let Some((first_dir, first, _)) = loaded.first() else {
        return Err(MergeError::NotResults {
            dir: out.to_owned(),
            message: "no folders to merge".into(),
        });
    };
    let suite_json = |m: &Manifest| serde_json::to_string(&m.resolved_suite).unwrap_or_default();
    for (dir, manifest, _) in &loaded[1..] {
        if suite_json(manifest) != suite_json(first) {
            return Err(MergeError::SuiteMismatch {
                dir: dir.clone(),
                first: first_dir.clone(),
                found: manifest.suite.clone(),
                expected: first.suite.clone(),
            });
        }
    }

    let runs = grid::expand(&first.resolved_suite, &first.device);
    // A recall run has a row per evaluation length, all with its run id.
    let key = |row: &Row| (row.run_id.clone(), row.eval_seq_len);
    let mut kept: BTreeMap<(String, Option<i64>), (Row, PathBuf)> = BTreeMap::new();
    let (mut duplicates, mut conflicts) = (0, Vec::new());
    for (dir, _, rows) in &loaded {
        for row in rows {
            match kept.get(&key(row)) {
                None => {
                    kept.insert(key(row), (row.clone(), dir.clone()));
                }
                Some((old, old_dir)) => {
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
        }
    }
    // Plan order first, then anything the plan no longer names.
    let mut rows: Vec<Row> = Vec::new();
    for spec in &runs {
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

    std::fs::create_dir_all(out).map_err(|source| RunError::Folder {
        path: out.to_owned(),
        source,
    })?;
    let plan = Plan {
        suite: first.resolved_suite.clone(),
        device: tch::Device::Cpu,
        runs,
    };
    let charts = write_analysis(&plan, out, &mut rows)?;
    store::write_rows(out, &rows).map_err(RunError::from)?;
    // Training curves of the kept runs, each once, in source order.
    let mut curves: Vec<(String, Vec<_>)> = Vec::new();
    for (dir, _, _) in &loaded {
        for (run_id, curve) in read_curves(dir) {
            let kept = rows.iter().any(|r| r.run_id == run_id);
            if kept && !curves.iter().any(|(id, _)| *id == run_id) {
                curves.push((run_id, curve));
            }
        }
    }
    if !curves.is_empty() {
        write_atomic(&out.join(CURVES_FILE), curves_csv(&curves).as_bytes())
            .map_err(RunError::from)?;
    }
    let finished = crate::results::runs_in(&rows);
    let finished_runs: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r.run_id.as_str()).collect();
    let missing = plan
        .runs
        .iter()
        .filter(|s| !finished_runs.contains(s.run_id.as_str()))
        .count();
    let mut manifest = first.clone();
    manifest.shard = None;
    manifest.runs_planned = plan.runs.len();
    manifest.runs_finished = finished;
    manifest.finished_at = loaded
        .iter()
        .filter_map(|(_, m, _)| m.finished_at.clone())
        .max();
    manifest.merge = Some(MergeRecord {
        sources: loaded
            .iter()
            .map(|(dir, m, rows)| MergedSource {
                dir: dir.display().to_string(),
                shard: m.shard.clone(),
                rows: rows.len(),
                git_commit: m.git_commit.clone(),
                started_at: m.started_at.clone(),
                finished_at: m.finished_at.clone(),
                cpu_model: m.environment.cpu_model.clone(),
            })
            .collect(),
        conflicts: conflicts.clone(),
        missing,
    });
    let json = serde_json::to_string_pretty(&manifest).expect("manifests serialise");
    write_atomic(&out.join(MANIFEST_FILE), json.as_bytes()).map_err(RunError::from)?;
    Ok(MergeSummary {
        rows: finished,
        planned: plan.runs.len(),
        duplicates,
        conflicts,
        charts,
    })
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
