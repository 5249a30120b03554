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
