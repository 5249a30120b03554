//! `mvt run --reuse DIR`: a run that another results folder already finished with the same
//! spec is not run again; its rows (and training curve) are adopted under this suite's names.
//! The claims suite judges claim (b) on the induction experiment's trained models this way,
//! instead of training the same models twice, and adopts the crossover suite's timings for
//! claim (a) instead of timing them again.
//!
//! Two runs are the same when their specs are equal once what only names them (suite,
//! experiment, model entry, run id, paired point) is set aside, and, for a recall run, its
//! thread count, which changes its numbers by rounding only. Only runs that ended `ok` at every
//! row are adopted; anything else is run here.
//!
//! A paired comparison point is adopted whole or not at all, and from one folder: its ratios
//! were measured in the same processes, so half a point from one folder beside half from
//! another (or from this sweep) would pair timings that never ran side by side.

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
    if let Some(paired) = spec.paired.as_mut() {
        paired.point.clear();
    }
    if spec.recall.is_some() {
        spec.threads = None;
    }
    serde_json::to_string(&spec).expect("run specs serialise")
}

/// Adopts, from `folders`, every unit of `pending` (a run timed or trained alone, or the runs
/// of one paired point) whose runs one of them finished `ok`; the first folder that has the
/// whole unit wins.
pub fn adopt(pending: &[&[RunSpec]], folders: &[PathBuf]) -> Result<Adopted, FolderError> {
    let mut adopted = Adopted::default();
    let mut open: Vec<&[RunSpec]> = pending.to_vec();
    for dir in folders {
        let folder = ResultsFolder::open(dir)?;
        let curves: HashMap<String, Vec<CurvePoint>> = read_curves(dir).into_iter().collect();
        let mut rows_of: HashMap<&str, Vec<&Row>> = HashMap::new();
        for row in &folder.rows {
            rows_of.entry(row.run_id.as_str()).or_default().push(row);
        }
        let mut finished: HashMap<String, Vec<&RunSpec>> = HashMap::new();
        for source in &folder.runs {
            // A run with no rows has no entry: it never finished.
            let ok = rows_of
                .get(source.run_id.as_str())
                .is_some_and(|rows| rows.iter().all(|r| r.status == Status::Ok));
            if ok {
                finished.entry(identity(source)).or_default().push(source);
            }
        }
        let mut record = ReuseRecord {
            folder: dir.display().to_string(),
            git_commit: folder.manifest.git_commit.clone(),
            git_dirty: folder.manifest.git_dirty,
            runs: Vec::new(),
        };
        open.retain(|unit| {
            let Some(sources) = sources_of(unit, &finished) else {
                return true;
            };
            // A paired row names its baseline's run, which is renamed with the rest.
            let renamed: HashMap<&str, &str> = sources
                .iter()
                .zip(unit.iter())
                .map(|(source, spec)| (source.run_id.as_str(), spec.run_id.as_str()))
                .collect();
            for (source, spec) in sources.iter().zip(unit.iter()) {
                let rows = rows_of.get(source.run_id.as_str()).into_iter().flatten();
                adopted.rows.extend(rows.map(|row| {
                    Row {
                        suite: spec.suite.clone(),
                        experiment: spec.experiment.clone(),
                        run_id: spec.run_id.clone(),
                        model: spec.model.clone(),
                        paired_with: row
                            .paired_with
                            .as_deref()
                            .map(|id| renamed.get(id).map_or(id, |to| *to).to_owned()),
                        ..(*row).clone()
                    }
                }));
                if let Some(curve) = curves.get(&source.run_id) {
                    adopted.curves.push((spec.run_id.clone(), curve.clone()));
                }
                record.runs.push(spec.run_id.clone());
            }
            false
        });
        if !record.runs.is_empty() {
            adopted.records.push(record);
        }
    }
    Ok(adopted)
}

/// The runs of one folder that measured `unit`: for a paired point, runs of one point of
/// that folder. Two experiments of a folder can hold the same spec (one baseline beside
/// Mamba-1 and beside Mamba-2, say), and a point must not be put together from both.
fn sources_of<'a>(
    unit: &[RunSpec],
    finished: &HashMap<String, Vec<&'a RunSpec>>,
) -> Option<Vec<&'a RunSpec>> {
    fn point(spec: &RunSpec) -> Option<&str> {
        spec.paired.as_ref().map(|p| p.point.as_str())
    }
    let (first, rest) = unit.split_first()?;
    finished.get(&identity(first))?.iter().find_map(|lead| {
        let mut sources = vec![*lead];
        for spec in rest {
            let source = finished.get(&identity(spec))?.iter().find(|source| {
                point(source) == point(lead) && sources.iter().all(|s| s.run_id != source.run_id)
            })?;
            sources.push(*source);
        }
        Some(sources)
    })
}
