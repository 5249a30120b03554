//! Runs a plan: every spec in a child process of its own, each row saved the moment it
//! exists; a paired point in several processes, one per pass over the plan (see [`point`]);
//! then the charts.

pub mod execute;
pub mod isolate;
pub mod mechanism;
pub mod merge;
pub mod paired;
pub mod point;
pub mod progress;
pub mod recall;
pub mod record;
pub mod reuse;
pub mod worker;

use crate::analysis::{self, crossover, fit};
use crate::environment::{git_state, now_rfc3339, Environment};
use crate::measure::analytic;
use crate::plots::{self, PlotError};
use crate::results::curves::{curves_csv, read_curves, CURVES_FILE};
use crate::results::manifest::{Manifest, ManifestError};
use crate::results::run_specs::write_runs;
use crate::results::store::{self, write_atomic, StoreError};
use crate::results::{Row, Status};
use crate::spec::RunSpec;
use crate::suite::schema::PlotEntry;
use crate::suite::{Plan, Shard};
use crate::train::checkpoint;
use execute::Outcome;
use progress::Progress;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Plot(#[from] PlotError),
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    #[error("cannot create the folder `{}`: {source}", path.display())]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--reuse: {0}")]
    Reuse(#[from] crate::results::folder::FolderError),
}

#[derive(Debug, Clone)]
pub struct Options {
    pub suite_path: PathBuf,
    pub out_dir: PathBuf,
    /// Keep the rows already in `out_dir` and skip their run ids, and go on from the finished
    /// processes of points not yet saved.
    pub resume: bool,
    /// The `mvt` binary, started once per run as `mvt worker`.
    pub worker: PathBuf,
    /// Run only this shard of the plan.
    pub shard: Option<Shard>,
    /// Results folders whose finished runs of the same spec are adopted rather than run again
    /// (see `reuse`).
    pub reuse: Vec<PathBuf>,
}

/// Where a sweep keeps the files it exchanges with its runs' processes.
const WORK_DIR: &str = ".work";
/// Where recall runs with `train.save_weights` keep their trained models.
pub const WEIGHTS_DIR: &str = "weights";
/// Where unfinished recall runs keep their training checkpoints, one folder per run id, until
/// their rows are saved. Unlike `.work`, it is not git-ignored: commit it with the folder and a
/// later checkout's `--resume` continues those runs.
pub const TRAINING_DIR: &str = "training";

#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub planned: usize,
    pub skipped: usize,
    pub ran: usize,
    pub failed: usize,
    pub charts: Vec<PathBuf>,
    /// report.md and report.html, for suites with claims.
    pub report: Vec<PathBuf>,
}

pub fn run(plan: &Plan, options: &Options) -> Result<Summary, RunError> {
    let out = &options.out_dir;
    let work_dir = out.join(WORK_DIR);
    std::fs::create_dir_all(&work_dir).map_err(|source| RunError::Folder {
        path: work_dir.clone(),
        source,
    })?;
    let threads = plan
        .suite
        .threads
        .map_or_else(|| i64::from(tch::get_num_threads()), |t| t as i64);

    let mut rows: Vec<Row> = if options.resume {
        store::read_rows(out)?
    } else {
        Vec::new()
    };
    let mut curves = if options.resume {
        read_curves(out)
    } else {
        Vec::new()
    };
    // Runs another folder finished with the same spec are adopted, not run (`--reuse`); a
    // paired point is adopted whole or not at all, and only where none of it was resumed.
    let units = units(&plan.runs);
    let adopted = {
        let resumed: HashSet<&str> = rows.iter().map(|r| r.run_id.as_str()).collect();
        let untouched: Vec<&[RunSpec]> = units
            .iter()
            .filter(|unit| unit.iter().all(|s| !resumed.contains(s.run_id.as_str())))
            .map(Vec::as_slice)
            .collect();
        match options.reuse.is_empty() {
            true => reuse::Adopted::default(),
            false => reuse::adopt(&untouched, &options.reuse)?,
        }
    };
    if !adopted.records.is_empty() {
        rows.extend(adopted.rows);
        curves.extend(adopted.curves);
        store::write_rows(out, &rows)?;
        write_atomic(&out.join(CURVES_FILE), curves_csv(&curves).as_bytes())?;
    }
    let finished: HashSet<String> = rows.iter().map(|r| r.run_id.clone()).collect();
    // A paired comparison point is one unit: sharded, resumed and measured whole, so that no
    // sweep ever times half a pair.
    let mine: Vec<Vec<RunSpec>> = match options.shard {
        Some(shard) => shard.select(&units, |unit| unit.iter().map(analytic::total_flops).sum()),
        None => units,
    };
    let pending: Vec<&Vec<RunSpec>> = mine
        .iter()
        .filter(|unit| unit.iter().any(|s| !finished.contains(&s.run_id)))
        .collect();
    // A point that lost some rows (a folder merged from elsewhere, say) is measured again.
    let remeasured: HashSet<&str> = pending
        .iter()
        .flat_map(|unit| unit.iter().map(|s| s.run_id.as_str()))
        .collect();
    rows.retain(|r| !remeasured.contains(r.run_id.as_str()));
    let planned: usize = mine.iter().map(Vec::len).sum();
    let mut summary = Summary {
        planned,
        skipped: planned - remeasured.len(),
        ..Summary::default()
    };

    let already = crate::results::runs_in(&rows);
    let mut manifest = new_manifest(plan, options, planned, already, threads);
    manifest.reused = adopted.records;
    manifest.write(out)?;
    write_runs(out, &plan.runs)?;
    progress::adopted(&manifest.reused);
    let mut progress = Progress::new(planned, summary.skipped);
    if !options.resume {
        point::forget_processes(&work_dir);
        let _ = std::fs::remove_dir_all(out.join(TRAINING_DIR));
    }
    // A paired point is timed in several processes, one per pass over the plan, so that each
    // sees the machine at another time (see `point`); a run timed alone goes in the first.
    let passes = pending
        .iter()
        .map(|u| point::processes_of(u))
        .max()
        .unwrap_or(1);
    // Units whose rows are saved: a point whose process died was measured alone at once.
    let mut saved = vec![false; pending.len()];
    for pass in 0..passes {
        if passes > 1 {
            progress.pass(pass, passes);
        }
        for (unit, saved) in pending.iter().zip(saved.iter_mut()) {
            if *saved {
                continue;
            }
            let measured = match unit.as_slice() {
                [spec] if pass == 0 => Some(vec![(
                    spec,
                    run_one(plan, options, &work_dir, &mut progress, spec)?,
                )]),
                [_] => None,
                _ if pass < point::processes_of(unit) => {
                    point::measure_process(plan, options, &work_dir, &mut progress, unit, pass)?
                }
                _ => None,
            };
            let Some(measured) = measured else { continue };
            for (spec, (outcome, wall_s)) in measured {
                let new_rows = record::rows(spec, &outcome, wall_s, threads);
                progress.end(spec, &new_rows);
                summary.ran += 1;
                summary.failed += usize::from(new_rows.iter().any(|r| r.status != Status::Ok));
                rows.extend(new_rows);
                if let Some(curve) = record::curve(&outcome) {
                    curves.push((spec.run_id.clone(), curve.to_vec()));
                    write_atomic(&out.join(CURVES_FILE), curves_csv(&curves).as_bytes())?;
                }
            }
            fit::predict(&mut rows);
            store::write_rows(out, &rows)?;
            point::forget_point(&work_dir, unit);
            for spec in unit.iter() {
                checkpoint::remove(&checkpoint_dir(out, spec));
            }
            *saved = true;
        }
    }
    progress.finish();
    if rows.is_empty() {
        store::write_rows(out, &rows)?;
    }
    // Every point was combined: what is left in the work folder is empty folders.
    point::forget_processes(&work_dir);
    let _ = std::fs::remove_dir(&work_dir);
    let _ = std::fs::remove_dir(out.join(TRAINING_DIR));

    manifest.finished_at = Some(now_rfc3339());
    manifest.runs_finished = crate::results::runs_in(&rows);
    manifest.write(out)?;
    summary.charts = write_analysis(&plan.suite.plots, &plan.runs, out, &mut rows)?;
    if !plan.suite.claims.is_empty() {
        summary.report = crate::report::write(std::slice::from_ref(out), out)?;
    }
    Ok(summary)
}

/// The plan as units of measurement: the runs of one paired comparison point together (in
/// plan order, where the first of them stands), every other run alone.
pub fn units(runs: &[RunSpec]) -> Vec<Vec<RunSpec>> {
    let mut units: Vec<Vec<RunSpec>> = Vec::new();
    let mut at_point: std::collections::HashMap<&str, usize> = Default::default();
    for run in runs {
        match run.paired.as_ref().map(|p| p.point.as_str()) {
            Some(point) => match at_point.get(point) {
                Some(&unit) => units[unit].push(run.clone()),
                None => {
                    at_point.insert(point, units.len());
                    units.push(vec![run.clone()]);
                }
            },
            None => units.push(vec![run.clone()]),
        }
    }
    units
}

/// A run of a unit, with its outcome and the wall time of the process that measured it.
pub(super) type Measured<'a> = (&'a RunSpec, (Outcome, f64));

/// Runs `spec` in a process of its own; its outcome and wall time.
pub(super) fn run_one(
    plan: &Plan,
    options: &Options,
    work_dir: &Path,
    progress: &mut Progress,
    spec: &RunSpec,
) -> Result<(Outcome, f64), RunError> {
    progress.begin(spec);
    let start = std::time::Instant::now();
    let weights = weights_path(&options.out_dir, spec)?;
    let checkpoint = spec
        .recall
        .is_some()
        .then(|| checkpoint_dir(&options.out_dir, spec));
    let keep = recall::Keep {
        checkpoint: checkpoint.as_deref(),
        weights: weights.as_deref(),
    };
    let outcome = isolate::run(
        spec,
        &options.worker,
        work_dir,
        &keep,
        plan.suite.timeout_s(&spec.experiment),
        &mut |line| progress.update(spec, line),
    );
    Ok((outcome, start.elapsed().as_secs_f64()))
}

/// Analyses `rows` of `runs` once (fitting the device model, which fills their predictions,
/// and finding the crossovers), writes `crossover.csv` when there are crossovers, and draws
/// every chart of `plots` into `out/plots`; returns the chart files.
pub fn write_analysis(
    plots: &[PlotEntry],
    runs: &[RunSpec],
    out: &Path,
    rows: &mut [Row],
) -> Result<Vec<PathBuf>, RunError> {
    let crossovers = analysis::analyze(rows, runs);
    if !crossovers.is_empty() {
        write_atomic(
            &out.join(crossover::CROSSOVER_FILE),
            crossover::to_csv(&crossovers).as_bytes(),
        )?;
    }
    let curves = read_curves(out);
    let mut files = Vec::new();
    for plot in plots {
        let dir = out.join(crate::plots::PLOTS_DIR);
        files.extend(plots::render(plot, rows, runs, &curves, &crossovers, &dir)?);
    }
    Ok(files)
}

/// `training/RUN_ID/`: where a recall run checkpoints its training.
fn checkpoint_dir(out: &Path, spec: &RunSpec) -> PathBuf {
    out.join(TRAINING_DIR).join(&spec.run_id)
}

/// `weights/RUN_ID.safetensors` for a recall run that saves its weights, after writing the
/// run spec beside it (so that the weights say which model they are); `None` otherwise.
fn weights_path(out: &Path, spec: &RunSpec) -> Result<Option<PathBuf>, RunError> {
    if !spec.recall.as_ref().is_some_and(|r| r.train.save_weights) {
        return Ok(None);
    }
    let dir = out.join(WEIGHTS_DIR);
    std::fs::create_dir_all(&dir).map_err(|source| RunError::Folder {
        path: dir.clone(),
        source,
    })?;
    let json = serde_json::to_vec_pretty(spec).expect("run specs serialise");
    write_atomic(&dir.join(format!("{}.spec.json", spec.run_id)), &json)?;
    Ok(Some(dir.join(format!("{}.safetensors", spec.run_id))))
}

/// The manifest of a run of `planned` runs (this shard's), `already` of them finished.
fn new_manifest(
    plan: &Plan,
    options: &Options,
    planned: usize,
    already: usize,
    threads: i64,
) -> Manifest {
    let suite_dir = options.suite_path.parent().unwrap_or(Path::new("."));
    let (git_commit, git_dirty) = git_state(suite_dir, &options.out_dir);
    Manifest {
        suite: plan.suite.name.clone(),
        description: plan.suite.description.clone(),
        suite_path: options.suite_path.display().to_string(),
        git_commit,
        git_dirty,
        started_at: now_rfc3339(),
        finished_at: None,
        device: plan.device,
        dtype: plan.suite.dtype,
        seed: plan.suite.seed,
        threads,
        runs_planned: planned,
        runs_finished: already,
        shard: options.shard.map(|s| s.to_string()),
        merge: None,
        reused: Vec::new(),
        environment: Environment::collect(),
        resolved_suite: plan.suite.clone(),
    }
}
