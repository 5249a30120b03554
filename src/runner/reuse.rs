//! `mvt run --reuse DIR`: a run that another results folder already finished with the same
//! spec is not run again; its rows (and training curve) are adopted under this suite's names.
//! The claims suite judges claim (b) on the induction experiment's trained models this way,
//! instead of training the same models twice.
//!
//! Two runs are the same when their specs are equal once what only names them (suite,
//! experiment, model entry, run id) is set aside, and, for a recall run, its thread count, which changes
//! its numbers by rounding only. Only runs that ended `ok` at every row are adopted; anything
//! else is run here.

use crate::results::curves::read_curves;
use crate::results::folder::{FolderError, ResultsFolder};
use crate::results::manifest::ReuseRecord;
use crate::results::{Row, Status};
use crate::spec::RunSpec;
use crate::train::trainer::CurvePoint;
use std::collections::HashMap;
use std::path::PathBuf;

/// Rows and curves adopted from other folders, renamed to the runs of this plan.
#[derive(Debug, Default)]
pub struct Adopted {
    pub rows: Vec<Row>,
    pub curves: Vec<(String, Vec<CurvePoint>)>,
    pub records: Vec<ReuseRecord>,
}

/// What a spec measures, without what only names it.
fn identity(spec: &RunSpec) -> String {
    let mut spec = spec.clone();
    spec.suite.clear();
    spec.experiment.clear();
    spec.run_id.clear();
    spec.model.clear();
    if spec.recall.is_some() {
        spec.threads = None;
    }
    serde_json::to_string(&spec).expect("run specs serialise")
}

/// Adopts, from `folders`, every run of `pending` that one of them finished `ok`; the first
/// folder that has a run wins.
pub fn adopt(pending: &[&RunSpec], folders: &[PathBuf]) -> Result<Adopted, FolderError> {
    let mut adopted = Adopted::default();
    let mut wanted: HashMap<String, &RunSpec> =
        pending.iter().map(|spec| (identity(spec), *spec)).collect();
    for dir in folders {
        let folder = ResultsFolder::open(dir)?;
        let curves: HashMap<String, Vec<CurvePoint>> = read_curves(dir).into_iter().collect();
        let mut record = ReuseRecord {
            folder: dir.display().to_string(),
            git_commit: folder.manifest.git_commit.clone(),
            git_dirty: folder.manifest.git_dirty,
            runs: Vec::new(),
        };
        for source in &folder.runs {
            let rows: Vec<&Row> = folder
                .rows
                .iter()
                .filter(|r| r.run_id == source.run_id)
                .collect();
            if rows.is_empty() || rows.iter().any(|r| r.status != Status::Ok) {
                continue;
            }
            let Some(spec) = wanted.remove(&identity(source)) else {
                continue;
            };
            adopted.rows.extend(rows.into_iter().map(|row| Row {
                suite: spec.suite.clone(),
                experiment: spec.experiment.clone(),
                run_id: spec.run_id.clone(),
                model: spec.model.clone(),
                ..row.clone()
            }));
            if let Some(curve) = curves.get(&source.run_id) {
                adopted.curves.push((spec.run_id.clone(), curve.clone()));
            }
            record.runs.push(spec.run_id.clone());
        }
        if !record.runs.is_empty() {
            adopted.records.push(record);
        }
    }
    Ok(adopted)
}
