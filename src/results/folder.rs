//! A results folder read back as a whole: its manifest, rows and run specs. This is all that
//! `mvt plot`, `mvt report` and `mvt merge` need; they never re-read a suite, a checkpoint or
//! the machine.

use super::manifest::{Manifest, ManifestError};
use super::row::Row;
use super::run_specs::{read_runs, write_runs, RUNS_FILE};
use super::store::{read_rows, StoreError};
use crate::spec::RunSpec;
use crate::suite::grid::{self, ExpandError};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "`{}` was written before results folders kept their run specs ({RUNS_FILE}), and its \
         suite no longer expands: {source}; restore what moved, or rerun the suite into this \
         folder with `mvt run SUITE --out {} --resume`, which keeps its rows",
        dir.display(), dir.display()
    )]
    OldFolder {
        dir: PathBuf,
        source: Box<ExpandError>,
    },
}

#[derive(Debug, Clone)]
pub struct ResultsFolder {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub rows: Vec<Row>,
    /// Every run of the suite's plan, in plan order.
    pub runs: Vec<RunSpec>,
}

impl ResultsFolder {
    /// Reads folder `dir`. One written before `runs.jsonl` existed gets its specs by
    /// expanding the suite its manifest holds, which needs any checkpoint the suite names.
    pub fn open(dir: &Path) -> Result<Self, FolderError> {
        let manifest = Manifest::read(dir)?;
        let rows = read_rows(dir)?;
        let runs = match read_runs(dir)? {
            Some(runs) => runs,
            None => grid::expand(&manifest.resolved_suite, manifest.device).map_err(|source| {
                FolderError::OldFolder {
                    dir: dir.to_owned(),
                    source: Box::new(source),
                }
            })?,
        };
        Ok(Self {
            dir: dir.to_owned(),
            manifest,
            rows,
            runs,
        })
    }

    /// Saves the run specs into a folder written before `runs.jsonl` existed, so that it
    /// stands on its own from now on; whether it had to.
    pub fn save_runs_if_missing(&self) -> Result<bool, StoreError> {
        if self.dir.join(RUNS_FILE).is_file() {
            return Ok(false);
        }
        write_runs(&self.dir, &self.runs)?;
        Ok(true)
    }
}
