//! Every run has a process of its own: a panic, an abort, an exit, a hang or an allocation that
//! cannot succeed each become a row with its status, the sweep goes on, and a sweep killed with
//! SIGKILL resumes without losing or repeating a row.

mod common;

use common::{rows, text};
use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn mvt(args: &[&str], cwd: &Path, faults: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mvt"));
    // A panicking child would otherwise resolve a backtrace from debug info, which on a busy
    // machine can outlast the sweep's 3 s limit and turn the `error` row into `timeout`.
    command
        .args(args)
        .current_dir(cwd)
        .env("RUST_BACKTRACE", "0");
    if !faults.is_empty() {
        command.env("MVT_FAULT_INJECTION", faults);
    }
    command
}

/// Six tiny runs (L = 4 … 24), and one whose input alone needs 2^46 bytes.
const SUITE: &str = "\
name: faults
device: cpu
threads: 1
timeout_s: 60
models:
  m: { family: mamba, d_state: 4 }
experiments:
  - name: fwd
    kind: speed
    pass: forward
    component: block
    models: [m]
    grid: { d_model: [8], seq_len: [4, 8, 12, 16, 20, 24] }
    warmup: 1
    repeats: 2
    timeout_s: 3
  - name: huge
    kind: speed
    pass: forward
    component: block
    models: [m]
    grid: { d_model: [16], seq_len: [1048576], batch: [1048576] }
    warmup: 1
    repeats: 1
";

#[test]
fn every_way_a_run_ends_is_a_row_and_the_sweep_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s.yaml"), SUITE).unwrap();
    let faults = "panic@.L4.,abort@.L8.,exit@.L12.,hang@.L16.";
    let out = mvt(&["run", "s.yaml"], dir.path(), faults)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "failed runs fail the sweep: {}",
        text(&out)
    );

    let rows = rows(&dir.path().join("results/faults"));
    assert_eq!(rows.len(), 7, "every run is a row: {rows:#?}");
    let at = |seq_len: i64| {
        rows.iter()
            .find(|r| r["seq_len"] == seq_len)
            .unwrap_or_else(|| panic!("no row for L={seq_len}"))
    };
    let expect = [
        (4, "error", "injected panic"),
        (8, "crashed", "signal 6 (SIGABRT)"),
        (12, "crashed", "exited with code 3"),
        (16, "timeout", "3 s limit"),
        (1_048_576, "oom", "allocate"),
    ];
    for (seq_len, status, words) in expect {
        let row = at(seq_len);
        assert_eq!(row["status"], status, "L={seq_len}: {row}");
        let message = row["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(words),
            "L={seq_len}: `{message}` lacks `{words}`"
        );
        assert!(row["latency_median_s"].is_null());
    }
    for seq_len in [20, 24] {
        let row = at(seq_len);
        assert_eq!(row["status"], "ok", "the sweep went on: {row}");
        assert_eq!(row["samples"], 2);
        assert!(row["latency_p10_s"].as_f64().unwrap() <= row["latency_p90_s"].as_f64().unwrap());
    }
    let hung = at(16)["wall_s"].as_f64().unwrap();
    assert!(
        (3.0..30.0).contains(&hung),
        "the hang was cut at its limit: {hung} s"
    );
    assert!(
        !dir.path().join("results/faults/.work").exists(),
        "exchange files are cleaned up"
    );
}

#[test]
fn a_sweep_killed_with_sigkill_resumes_without_losing_or_repeating_rows() {
    let dir = tempfile::tempdir().unwrap();
    let suite = SUITE.split("  - name: huge").next().unwrap();
    std::fs::write(dir.path().join("s.yaml"), suite).unwrap();
    let results = dir.path().join("results/faults");

    let mut sweep = mvt(&["run", "s.yaml"], dir.path(), "")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while rows(&results).len() < 2 {
        assert!(Instant::now() < deadline, "the sweep never wrote two rows");
        std::thread::sleep(Duration::from_millis(10));
    }
    sweep.kill().unwrap(); // SIGKILL: no handler runs, no file is finalised.
    sweep.wait().unwrap();
    let before = rows(&results);
    assert!(
        before.len() < 6,
        "killed mid-sweep, with {} rows",
        before.len()
    );

    let out = mvt(&["run", "s.yaml", "--resume"], dir.path(), "")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let after = rows(&results);
    assert_eq!(after.len(), 6, "{after:#?}");
    let ids: HashSet<_> = after
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 6, "no run repeated");
    // Measured values are kept as they were; only the fitted prediction moves with new rows.
    let measured = |rows: &[serde_json::Value]| -> Vec<serde_json::Value> {
        rows.iter()
            .map(|r| {
                let mut r = r.clone();
                r.as_object_mut().unwrap().remove("predicted_latency_s");
                r
            })
            .collect()
    };
    assert_eq!(
        measured(&after[..before.len()]),
        measured(&before),
        "finished rows kept as they were"
    );
    let csv = std::fs::read_to_string(results.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 7, "the table has every row once");
}

/// Two models at each of three lengths, paired: each length's two runs share one process
/// (one a point, so that a point's rows follow its only process).
const PAIRED: &str = "\
name: pairs
device: cpu
threads: 1
timeout_s: 60
models:
  m: { family: mamba, d_state: 4 }
  t: { family: transformer, head_dim: 8 }
experiments:
  - name: fwd
    kind: speed
    pass: forward
    component: block
    models: [m, t]
    grid: { d_model: [8], seq_len: [4, 8, 12] }
    warmup: 1
    max_time_s: 0.2
    processes: 1
";

#[test]
fn a_failed_model_of_a_pair_keeps_its_row_and_a_dead_point_is_measured_unpaired() {
    let dir = tempfile::tempdir().unwrap();
    // Two processes a point: a point whose first process dies is measured alone once.
    let suite = PAIRED.replace("processes: 1", "processes: 2");
    std::fs::write(dir.path().join("s.yaml"), suite).unwrap();
    // At L 4 Mamba panics inside the paired process; at L 8 it aborts the whole process.
    let out = mvt(
        &["run", "s.yaml"],
        dir.path(),
        "panic@fwd.m.d8.L4.,abort@fwd.m.d8.L8.",
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let rows = rows(&dir.path().join("results/pairs"));
    assert_eq!(rows.len(), 6, "every run is a row once: {rows:#?}");
    let at = |model: &str, seq_len: i64| {
        rows.iter()
            .find(|r| r["model"] == model && r["seq_len"] == seq_len)
            .unwrap_or_else(|| panic!("no row for {model} at L={seq_len}"))
    };
    let message = |row: &serde_json::Value| row["message"].as_str().unwrap_or_default().to_owned();

    // Caught: Mamba's row says why; the Transformer is still measured, alone in the process.
    assert_eq!(at("m", 4)["status"], "error");
    assert!(message(at("m", 4)).contains("injected panic"));
    assert_eq!(at("t", 4)["status"], "ok", "{}", at("t", 4));
    assert!(
        at("t", 4)["rounds"].is_null(),
        "timed alone: {}",
        at("t", 4)
    );

    // The process died: both runs were measured again, each in its own process, and say so.
    assert_eq!(at("m", 8)["status"], "crashed");
    assert!(message(at("m", 8)).contains("SIGABRT"));
    assert!(message(at("m", 8)).contains("measured unpaired"));
    assert_eq!(at("t", 8)["status"], "ok", "{}", at("t", 8));
    assert!(
        message(at("t", 8)).contains("measured unpaired"),
        "{}",
        at("t", 8)
    );
    assert!(
        at("t", 8)["peak_mem_bytes"].is_i64(),
        "measured alone, memory too"
    );

    // An untouched point is paired: Mamba's ratio is to the Transformer's run.
    assert_eq!(at("m", 12)["paired_with"], at("t", 12)["run_id"]);
    assert!(at("m", 12)["ratio_median"].as_f64().unwrap() > 0.0);
}

/// Starts `s.yaml`'s sweep in `dir` with `faults`, waits (at most two minutes) until `ready`
/// says the sweep got as far as `what`, lets it run on into the hang a moment, and kills it.
fn kill_when(dir: &Path, faults: &str, what: &str, ready: impl Fn() -> bool) {
    let mut sweep = mvt(&["run", "s.yaml"], dir, faults)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ready() {
        assert!(Instant::now() < deadline, "the sweep never wrote {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    sweep.kill().unwrap();
    sweep.wait().unwrap();
}

#[test]
fn a_sweep_killed_mid_point_resumes_with_every_pair_whole() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s.yaml"), PAIRED).unwrap();
    let results = dir.path().join("results/pairs");
    // The last point hangs, so the kill lands inside it, after the first two points' rows.
    kill_when(dir.path(), "hang@fwd.t.d8.L12.", "two points' rows", || {
        rows(&results).len() >= 4
    });
    assert_eq!(
        rows(&results).len(),
        4,
        "no half of the hung point was written"
    );

    let out = mvt(&["run", "s.yaml", "--resume"], dir.path(), "")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let after = rows(&results);
    let ids: HashSet<&str> = after
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        (after.len(), ids.len()),
        (6, 6),
        "every run once: {after:#?}"
    );
    let last: Vec<&serde_json::Value> = after.iter().filter(|r| r["seq_len"] == 12).collect();
    assert!(
        last.iter()
            .all(|r| r["status"] == "ok" && r["rounds"].is_i64()),
        "{last:#?}"
    );
}

#[test]
fn a_sweep_killed_between_a_points_processes_resumes_from_the_last_one_finished() {
    let dir = tempfile::tempdir().unwrap();
    let suite = PAIRED
        .replace("processes: 1", "processes: 2")
        .replace("seq_len: [4, 8, 12]", "seq_len: [4, 12]");
    std::fs::write(dir.path().join("s.yaml"), suite).unwrap();
    let results = dir.path().join("results/pairs");
    let kept = results.join(".work/processes");
    let kept_files = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&kept)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    // In the first pass, L 4's first process finishes and L 12's hangs: the kill lands there.
    kill_when(dir.path(), "hang@fwd.t.d8.L12.", "a kept process", || {
        !kept_files().is_empty()
    });
    assert!(
        rows(&results).is_empty(),
        "a point's rows wait for its last process"
    );
    let files = kept_files();
    assert_eq!(files.len(), 1, "{files:?}");
    // Mark the kept process, to see that the resumed sweep combines it instead of timing it again.
    let mut finished: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    finished["wall_s"] = serde_json::json!(1000.0);
    std::fs::write(&files[0], serde_json::to_vec(&finished).unwrap()).unwrap();

    let out = mvt(&["run", "s.yaml", "--resume"], dir.path(), "")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let after = rows(&results);
    assert_eq!(after.len(), 4, "every run once: {after:#?}");
    for row in &after {
        assert_eq!(row["status"], "ok", "{row}");
        assert_eq!(row["processes"], 2, "{row}");
        let wall_s = row["wall_s"].as_f64().unwrap();
        let resumed = row["seq_len"] == 4;
        assert_eq!(
            wall_s >= 1000.0,
            resumed,
            "L 4's first process was kept: {row}"
        );
    }
    assert!(kept_files().is_empty(), "combined processes are not kept");
}

/// A recall run that checkpoints at every evaluation.
const TRAINING: &str = "\
name: training
device: cpu
threads: 1
models:
  m: { family: mamba, d_state: 4 }
experiments:
  - name: induction
    kind: recall
    task: { task: induction_heads, vocab_size: 8 }
    models: [m]
    grid: { d_model: [8], n_layers: [1], seq_len: [12] }
    train: { steps: 1500, lr: 3.0e-3, batch_size: 4, eval_every: 10, eval_batches: 1, checkpoint_every_s: 0 }
    eval_seq_len: [12, 24]
";

/// The step of the checkpoint a run left under `training/`, if any.
fn checkpoint_step(results: &Path) -> Option<u64> {
    let dir = std::fs::read_dir(results.join("training"))
        .ok()?
        .next()?
        .ok()?;
    let index = std::fs::read_to_string(dir.path().join("checkpoint.json")).ok()?;
    serde_json::from_str::<serde_json::Value>(&index).ok()?["step"].as_u64()
}

#[test]
fn a_training_run_killed_with_sigkill_resumes_from_its_checkpoint_with_the_same_curve() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s.yaml"), TRAINING).unwrap();
    let results = dir.path().join("results/training");
    kill_when(dir.path(), "", "a checkpoint past step 100", || {
        checkpoint_step(&results).is_some_and(|step| step >= 100)
    });
    assert!(rows(&results).is_empty(), "killed before the run's rows");
    let saved = checkpoint_step(&results).expect("the killed run's checkpoint");
    assert!(saved < 1500, "killed mid-training, at step {saved}");

    let out = mvt(&["run", "s.yaml", "--resume"], dir.path(), "")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let resumed = rows(&results);
    assert_eq!(resumed.len(), 2);
    assert!(
        resumed[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("resumed from its checkpoint at step {saved}"))),
        "{resumed:#?}"
    );
    assert!(!results.join("training").exists(), "the checkpoint is gone");

    // The same suite, never killed.
    std::fs::create_dir(dir.path().join("whole")).unwrap();
    std::fs::write(dir.path().join("whole/s.yaml"), TRAINING).unwrap();
    let out = mvt(&["run", "s.yaml"], &dir.path().join("whole"), "")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let whole = dir.path().join("whole/results/training");
    let curve = |folder: &Path| std::fs::read_to_string(folder.join("curves.csv")).unwrap();
    assert_eq!(
        curve(&results),
        curve(&whole),
        "the curve continues exactly"
    );
    for (a, b) in resumed.iter().zip(rows(&whole)) {
        for column in ["accuracy", "final_loss", "steps"] {
            assert_eq!(a[column], b[column], "{column}");
        }
    }
}
