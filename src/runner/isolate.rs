//! The parent side of a run: spawns `mvt worker` on one spec, enforces the wall-clock limit,
//! and turns however the child ended into an [`Outcome`].

use super::execute::{is_out_of_memory, Outcome};
use super::recall::Keep;
use super::worker::PROGRESS_EXTENSION;
use crate::results::Status;
use crate::spec::RunSpec;
use std::ffi::OsStr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(20);
/// How much of a dead child's stderr a row keeps.
const STDERR_TAIL: usize = 1500;

/// The files a run's process exchanges with the runner.
struct Exchange {
    spec: PathBuf,
    outcome: PathBuf,
    progress: PathBuf,
    log: PathBuf,
    /// Where a recall run keeps its training checkpoint and, if it is asked to, its trained
    /// weights.
    checkpoint: Option<PathBuf>,
    weights: Option<PathBuf>,
}

/// Runs `spec` in a child process of `worker` (the `mvt` binary), using `work_dir` for the
/// exchange files, and kills it after `timeout_s` seconds; `on_progress` sees each new line of
/// progress the run reports. A recall run keeps its checkpoint and weights where `keep` says.
/// Never fails: an unspawnable or dead child is an outcome too.
pub fn run(
    spec: &RunSpec,
    worker: &Path,
    work_dir: &Path,
    keep: &Keep,
    timeout_s: f64,
    on_progress: &mut dyn FnMut(&str),
) -> Outcome {
    let files = Exchange::new(work_dir, &spec.run_id, keep);
    let outcome = supervise(spec, worker, &files, timeout_s, on_progress);
    files.remove();
    outcome
}

impl Exchange {
    /// The exchange files of the job named `id` in `work_dir`.
    fn new(work_dir: &Path, id: &str, keep: &Keep) -> Self {
        // Whole ids: `with_extension` would drop the hash after a run id's last dot, which
        // is all that tells apart runs that differ only in, say, a task option.
        let file = |suffix: &str| work_dir.join(format!("{id}.{suffix}"));
        Self {
            spec: file("spec.json"),
            progress: file(&format!("outcome.{PROGRESS_EXTENSION}")),
            outcome: file("outcome.json"),
            log: file("stderr.log"),
            checkpoint: keep.checkpoint.map(Path::to_owned),
            weights: keep.weights.map(Path::to_owned),
        }
    }

    /// Deletes the files the job is done with (the checkpoint and weights stay).
    fn remove(&self) {
        for path in [&self.spec, &self.outcome, &self.progress, &self.log] {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// How a worker's process ended.
enum Ended {
    Exited(ExitStatus),
    /// Killed at its wall-clock limit.
    TimedOut,
}

/// How a worker's glibc allocator is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Allocator {
    /// glibc's defaults: a run that measures peak memory needs freed memory given back, or a
    /// pass reusing what warm-up left resident would show no peak at all.
    Default,
    /// [`FIXED_ALLOCATOR_ENV`]: for paired points, which time and never measure memory, and
    /// for recall runs, which train.
    Fixed,
}

/// glibc malloc settings a paired point's worker starts with, unless the environment already
/// sets them.
/// By default glibc serves blocks over a threshold (128 kB at first) with mmap and raises the
/// threshold as such blocks are freed, and trims the heap's top past another: which calls of a
/// pass then page-fault and zero fresh memory depends on the process's allocation history, so
/// two processes timing the same point disagreed (core ops at d 64, L 512: ratios 0.25 and
/// 0.42, each with a ±5% interval). Fixed thresholds (the mmap one at glibc's 32 MiB maximum,
/// so tensors up to that come from the heap, and a trim threshold far above any pass's
/// working set) make every worker's allocator behave as a long-running process's settles to.
/// Two back-to-back runs of the core and mixer forward grids then agreed within 10% at 47 of
/// 56 points, against 41 without.
pub const FIXED_ALLOCATOR_ENV: [(&str, &str); 3] = [
    ("MALLOC_MMAP_THRESHOLD_", "33554432"),
    ("MALLOC_TRIM_THRESHOLD_", "268435456"),
    ("MALLOC_TOP_PAD_", "16777216"),
];

/// Starts `mvt worker` on the job in `files.spec` and waits for it, at most `timeout_s`
/// seconds, passing on its progress lines.
fn spawn_and_wait(
    worker: &Path,
    files: &Exchange,
    timeout_s: f64,
    allocator: Allocator,
    on_progress: &mut dyn FnMut(&str),
) -> Result<Ended, String> {
    let log = std::fs::File::create(&files.log)
        .map_err(|e| format!("cannot create `{}`: {e}", files.log.display()))?;
    let mut command = Command::new(worker);
    if allocator == Allocator::Fixed {
        for (name, value) in FIXED_ALLOCATOR_ENV {
            if std::env::var_os(name).is_none() {
                command.env(name, value);
            }
        }
    }
    die_with_parent(&mut command);
    let mut child = command
        .arg("worker")
        .arg(&files.spec)
        .arg(&files.outcome)
        .args(
            files
                .weights
                .iter()
                .flat_map(|w| [OsStr::new("--weights"), w.as_os_str()]),
        )
        .args(
            files
                .checkpoint
                .iter()
                .flat_map(|c| [OsStr::new("--checkpoint"), c.as_os_str()]),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start `{} worker`: {e}", worker.display()))?;
    let start = Instant::now();
    let mut shown = String::new();
    loop {
        if let Ok(line) = std::fs::read_to_string(&files.progress) {
            if line != shown {
                on_progress(&line);
                shown = line;
            }
        }
        match child.try_wait() {
            Ok(Some(status)) => return Ok(Ended::Exited(status)),
            Ok(None) if start.elapsed().as_secs_f64() > timeout_s => {
                let _ = child.kill();
                let _ = child.wait();
                return Ok(Ended::TimedOut);
            }
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => return Err(format!("lost the run's process: {e}")),
        }
    }
}

/// Makes the worker die with the sweep. A worker orphaned by a killed sweep would otherwise
/// keep training (and checkpointing) beside the run that `--resume` starts on the same
/// checkpoint, or keep timing beside the resumed sweep's points.
fn die_with_parent(command: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let sweep = std::process::id();
        // SAFETY: the closure runs in the forked child before exec and only calls prctl,
        // getppid and _exit, which are async-signal-safe.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The sweep died before the request took effect.
                if libc::getppid() as u32 != sweep {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}

fn supervise(
    spec: &RunSpec,
    worker: &Path,
    files: &Exchange,
    timeout_s: f64,
    on_progress: &mut dyn FnMut(&str),
) -> Outcome {
    let failed = |status, message: String| Outcome::Failed { status, message };
    let json = serde_json::to_vec(spec).expect("run specs serialise");
    if let Err(e) = std::fs::write(&files.spec, json) {
        return failed(Status::Error, format!("cannot write the run spec: {e}"));
    }
    // Recall runs measure no memory, and train for hours: the fixed settings spare every step
    // the page faults of re-mapped blocks.
    let allocator = match spec.recall {
        Some(_) => Allocator::Fixed,
        None => Allocator::Default,
    };
    let status = match spawn_and_wait(worker, files, timeout_s, allocator, on_progress) {
        Ok(Ended::Exited(status)) => status,
        Ok(Ended::TimedOut) => {
            let message = format!("killed after the {timeout_s} s limit (timeout_s)");
            return interrupted(read_outcome(&files.outcome), Status::Timeout, message);
        }
        Err(message) => return failed(Status::Error, message),
    };
    let saved = read_outcome(&files.outcome);
    if status.success() {
        if let Some(outcome) = saved {
            return outcome;
        }
    }
    let stderr = std::fs::read_to_string(&files.log).unwrap_or_default();
    match died(status, &stderr) {
        Outcome::Failed { status, message } => interrupted(saved, status, message),
        other => other,
    }
}

/// Measures the runs of one paired comparison point together in one child process, within
/// `timeout_s` for the whole point; their outcomes in order, or why the process gave none
/// (it died, or ran out of time), so that the runner can measure the runs one by one instead.
pub fn run_point(
    specs: &[RunSpec],
    worker: &Path,
    work_dir: &Path,
    timeout_s: f64,
    on_progress: &mut dyn FnMut(&str),
) -> Result<Vec<Outcome>, String> {
    let files = Exchange::new(
        work_dir,
        &format!("{}.point", specs[0].run_id),
        &Keep::default(),
    );
    let result = supervise_point(specs, worker, &files, timeout_s, on_progress);
    files.remove();
    result
}

fn supervise_point(
    specs: &[RunSpec],
    worker: &Path,
    files: &Exchange,
    timeout_s: f64,
    on_progress: &mut dyn FnMut(&str),
) -> Result<Vec<Outcome>, String> {
    let json = serde_json::to_vec(specs).expect("run specs serialise");
    std::fs::write(&files.spec, json)
        .map_err(|e| format!("cannot write the point's specs: {e}"))?;
    match spawn_and_wait(worker, files, timeout_s, Allocator::Fixed, on_progress)? {
        Ended::TimedOut => Err(format!(
            "was killed after the point's {timeout_s} s limit (timeout_s times its models)"
        )),
        Ended::Exited(status) => {
            let saved: Option<Vec<Outcome>> = std::fs::read(&files.outcome)
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok());
            match saved {
                Some(outcomes) if status.success() && outcomes.len() == specs.len() => Ok(outcomes),
                _ => {
                    let stderr = std::fs::read_to_string(&files.log).unwrap_or_default();
                    Err(match died(status, &stderr) {
                        Outcome::Failed { message, .. } => message,
                        _ => "ended without the outcomes of its runs".to_owned(),
                    })
                }
            }
        }
    }
}

fn read_outcome(path: &Path) -> Option<Outcome> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A process that ended early: what a recall run saved before is kept, with why it ended.
fn interrupted(saved: Option<Outcome>, status: Status, message: String) -> Outcome {
    match saved {
        Some(Outcome::Recalled(partial)) => Outcome::Interrupted {
            partial,
            status,
            message,
        },
        // A final outcome written just before an abnormal exit still stands.
        Some(outcome @ (Outcome::Measured(_) | Outcome::Failed { .. })) => outcome,
        _ => Outcome::Failed { status, message },
    }
}

/// A child that exited without an outcome: classified by its exit status and last words.
fn died(status: ExitStatus, stderr: &str) -> Outcome {
    let tail = tail(stderr);
    let with_tail = |text: String| {
        if tail.is_empty() {
            text
        } else {
            format!("{text}; its stderr ends with: {tail}")
        }
    };
    let (status, message) = match (status.signal(), status.code()) {
        // Nobody here sent SIGKILL (a timeout returns before this): on Linux that is the
        // kernel's out-of-memory killer.
        (Some(9), _) => (
            Status::Oom,
            with_tail("killed by SIGKILL, most likely by the kernel's out-of-memory killer".into()),
        ),
        (Some(signal), _) => (
            Status::Crashed,
            with_tail(format!(
                "killed by signal {signal} ({})",
                signal_name(signal)
            )),
        ),
        (None, code) if is_out_of_memory(stderr) => (
            Status::Oom,
            with_tail(format!(
                "exited with code {code:?} after running out of memory"
            )),
        ),
        (None, Some(code)) => (
            Status::Crashed,
            with_tail(format!(
                "exited with code {code} without reporting a result"
            )),
        ),
        (None, None) => (Status::Crashed, with_tail("ended without a status".into())),
    };
    Outcome::Failed { status, message }
}

fn tail(text: &str) -> String {
    let text = text.trim();
    let start = text
        .char_indices()
        .rev()
        .nth(STDERR_TAIL)
        .map_or(0, |(i, _)| i);
    text[start..].replace('\n', " | ")
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        11 => "SIGSEGV",
        15 => "SIGTERM",
        _ => "see `kill -l`",
    }
}
