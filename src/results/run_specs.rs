//! `runs.jsonl`: the run specs of a suite's whole plan, one JSON object a line, written when a
//! sweep starts. With it a results folder describes itself: `plot`, `report` and `merge` read
//! the specs here and never expand a suite again or open a checkpoint. A shard's folder holds
//! the whole plan too; its manifest says which shard it ran.

use super::store::{read_jsonl, write_jsonl, StoreError};
use crate::spec::RunSpec;
use std::path::Path;

pub const RUNS_FILE: &str = "runs.jsonl";

/// Saves `runs` into results folder `dir`, atomically.
pub fn write_runs(dir: &Path, runs: &[RunSpec]) -> Result<(), StoreError> {
    write_jsonl(&dir.join(RUNS_FILE), runs)
}

/// The run specs saved in `dir`; `None` for a folder written before runs were saved.
pub fn read_runs(dir: &Path) -> Result<Option<Vec<RunSpec>>, StoreError> {
    read_jsonl(&dir.join(RUNS_FILE), "a run spec")
}
