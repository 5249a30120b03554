//! The child side of a run: `mvt worker SPEC OUTCOME` reads one run spec, measures it, and
//! writes its [`Outcome`] as JSON; or reads the specs of one paired comparison point (a JSON
//! list), measures them together ([`super::paired`]), and writes their outcomes as a list. A process per run means an out-of-memory error, a crash or a
//! leak cannot poison the next configuration, and a CPU peak-memory figure belongs to one
//! configuration alone (optimum-benchmark's model).

use super::execute::{failure, guarded, measure_run, Outcome};
use super::recall::{Keep, RecallOutcome};
use crate::device::DeviceSpec;
use crate::results::store::{write_atomic, StoreError};
use crate::spec::RunSpec;
use std::path::{Path, PathBuf};

/// Set in a sweep's environment to make chosen runs' children misbehave, so that tests can
/// prove every way a run ends becomes a row: comma-separated `KIND@TEXT` items, where a run
/// whose id contains TEXT does KIND (`panic`, `abort`, `exit`, `hang`) before measuring.
pub const FAULT_INJECTION_VAR: &str = "MVT_FAULT_INJECTION";

/// Beside the outcome file, a run's latest line of progress for the runner to show.
pub const PROGRESS_EXTENSION: &str = "progress";

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("cannot read the run spec `{}`: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{}` is not a run spec: {source}", path.display())]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Write(#[from] StoreError),
}

/// Measures the spec in `spec_path` and writes its outcome to `outcome_path`; a recall run
/// keeps its checkpoint and trained weights where `keep` says.
pub fn serve(spec_path: &Path, outcome_path: &Path, keep: &Keep) -> Result<(), WorkerError> {
    let text = std::fs::read_to_string(spec_path).map_err(|source| WorkerError::Read {
        path: spec_path.to_owned(),
        source,
    })?;
    let job: Job = serde_json::from_str(&text).map_err(|source| WorkerError::Parse {
        path: spec_path.to_owned(),
        source,
    })?;
    let spec = match job {
        Job::Run(spec) => spec,
        Job::Point(specs) => return serve_point(&specs, outcome_path),
    };
    if let Some(threads) = spec.threads {
        tch::set_num_threads(threads as i32);
    }
    let outcome = match DeviceSpec::from(spec.device).resolve(cuda_devices()) {
        Ok(device) if spec.recall.is_some() => recall_run(&spec, device, outcome_path, keep),
        Ok(device) => measure_run(&spec, device),
        Err(message) => Outcome::Failed {
            status: crate::results::Status::Error,
            message,
        },
    };
    save(outcome_path, &outcome)?;
    Ok(())
}

/// What a worker is asked to measure.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Job {
    Run(Box<RunSpec>),
    /// The runs of one paired comparison point.
    Point(Vec<RunSpec>),
}

/// Measures one paired point and writes the outcomes of its runs, in order, as a list.
fn serve_point(specs: &[RunSpec], outcome_path: &Path) -> Result<(), WorkerError> {
    if let Some(threads) = specs.first().and_then(|s| s.threads) {
        tch::set_num_threads(threads as i32);
    }
    let device = specs
        .first()
        .map(|s| DeviceSpec::from(s.device).resolve(cuda_devices()));
    let outcomes: Vec<Outcome> = match device {
        Some(Ok(device)) => super::paired::measure_point(specs, device),
        Some(Err(message)) => specs.iter().map(|_| failure(message.clone())).collect(),
        None => Vec::new(),
    };
    let json = serde_json::to_vec(&outcomes).expect("outcomes serialise");
    Ok(write_atomic(outcome_path, &json)?)
}

fn save(path: &Path, outcome: &Outcome) -> Result<(), StoreError> {
    let json = serde_json::to_vec(outcome).expect("outcomes serialise");
    write_atomic(path, &json)
}

/// A recall run, saving its partial outcome after training and after every evaluation length,
/// so that the runner keeps them if the process dies on a later length.
fn recall_run(spec: &RunSpec, device: tch::Device, outcome_path: &Path, keep: &Keep) -> Outcome {
    let mut save_partial = |partial: &RecallOutcome| {
        // Losing a partial save only loses progress that the final save also carries.
        let _ = save(outcome_path, &Outcome::Recalled(partial.clone()));
    };
    let progress_path = outcome_path.with_extension(PROGRESS_EXTENSION);
    let mut report = |line: &str| {
        let _ = write_atomic(&progress_path, line.as_bytes());
    };
    let result = guarded(|| {
        inject_fault(&spec.run_id);
        super::recall::run(spec, device, keep, &mut save_partial, &mut report)
    });
    match result {
        Ok(outcome) => Outcome::Recalled(outcome),
        Err(message) => failure(message),
    }
}

fn cuda_devices() -> usize {
    tch::Cuda::device_count().max(0) as usize
}

/// Misbehaves as [`FAULT_INJECTION_VAR`] asks for this run, if it does; called as the first
/// step of the measurement, where a failing model would fail.
pub fn inject_fault(run_id: &str) {
    let Ok(faults) = std::env::var(FAULT_INJECTION_VAR) else {
        return;
    };
    let chosen = faults
        .split(',')
        .filter_map(|item| item.split_once('@'))
        .find(|(_, needle)| run_id.contains(needle));
    let Some((kind, _)) = chosen else {
        return;
    };
    match kind {
        "panic" => panic!("injected panic ({FAULT_INJECTION_VAR})"),
        "abort" => std::process::abort(),
        "exit" => std::process::exit(3),
        "hang" => loop {
            std::thread::sleep(std::time::Duration::from_secs(60));
        },
        _ => {}
    }
}
