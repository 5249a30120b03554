//! Every pass runs end to end on tiny models of every family, the models of each point paired
//! in one process (and once unpaired, each in its own), and reports what it measures: tokens
//! per second per pass, the ratio to the Transformer, sample statistics, and peak memory where
//! unpaired. A hybrid has no one core op or mixer, so it runs the whole-model passes, at 4
//! layers: one repetition of its pattern.

use std::path::Path;
use std::process::Command;

const SUITE: &str = "\
name: passes
device: cpu
threads: 1
models:
  m: { family: mamba, d_state: 4, vocab_size: 32 }
  m2: { family: mamba2, d_state: 4, headdim: 8, chunk_size: 4, vocab_size: 32 }
  h: { family: hybrid, pattern: \"2AMF\", d_state: 4, headdim: 8, chunk_size: 4, head_dim: 8, vocab_size: 32 }
  t: { family: transformer, head_dim: 8, vocab_size: 32 }
experiments:
  - { name: core-fwd, kind: speed, pass: forward, component: core, models: [m, m2, t], grid: { d_model: [16], seq_len: [8] }, warmup: 1, repeats: 3 }
  - { name: core-bwd, kind: speed, pass: forward_backward, component: core, models: [m, m2, t], grid: { d_model: [16], seq_len: [8] }, warmup: 1, repeats: 3 }
  - { name: mixer-bwd, kind: speed, pass: forward_backward, component: mixer, models: [m, m2, t], grid: { d_model: [16], seq_len: [8] }, warmup: 1, repeats: 3 }
  - { name: train, kind: speed, pass: train_step, component: model, models: [m, m2, h, t], grid: { d_model: [16], seq_len: [8], n_layers: [4] }, warmup: 1, repeats: 3 }
  - { name: prefill, kind: speed, pass: prefill, component: model, models: [m, m2, h, t], grid: { d_model: [16], seq_len: [8], n_layers: [4] }, warmup: 1, repeats: 3 }
  - { name: decode, kind: speed, pass: decode, component: model, models: [m, m2, h, t], grid: { d_model: [16], seq_len: [8], n_layers: [4], batch: [2] }, warmup: 1, repeats: 3 }
  - { name: generate, kind: speed, pass: generate_throughput, component: model, models: [m, m2, h, t], grid: { d_model: [16], seq_len: [8], n_layers: [4], batch: [2] }, new_tokens: 5, warmup: 1, repeats: 3 }
  - { name: unpaired, kind: speed, pass: forward, component: mixer, models: [m, m2, t], grid: { d_model: [16], seq_len: [8] }, paired: false, warmup: 1, repeats: 3 }
";

#[test]
fn every_pass_runs_and_reports_its_throughput() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), SUITE).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mvt"))
        .args(["run", "p.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text =
        std::fs::read_to_string(Path::new(dir.path()).join("results/passes/rows.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // 4 experiments of 3 models (core and mixer), 4 of 4 (whole models).
    assert_eq!(rows.len(), 28);
    for row in &rows {
        assert_eq!(row["status"], "ok", "{row}");
        if row["experiment"] == "unpaired" {
            assert_eq!(row["samples"], 3);
            assert!(row["peak_mem_bytes"].as_i64().is_some(), "{row}");
            assert!(
                row["rounds"].is_null() && row["paired_with"].is_null(),
                "{row}"
            );
        } else {
            // One sample a round; peak memory is a process's, which paired models share.
            let rounds = row["rounds"]
                .as_i64()
                .expect("a paired row says its rounds");
            assert!(rounds >= 3 && row["samples"] == rounds, "{row}");
            assert!(row["peak_mem_bytes"].is_null(), "{row}");
            if row["model"] != "t" {
                let t_run = rows
                    .iter()
                    .find(|r| r["model"] == "t" && r["experiment"] == row["experiment"])
                    .unwrap();
                assert_eq!(row["paired_with"], t_run["run_id"], "{row}");
                let (low, mid, high) = (
                    row["ratio_ci_low"].as_f64().unwrap(),
                    row["ratio_median"].as_f64().unwrap(),
                    row["ratio_ci_high"].as_f64().unwrap(),
                );
                assert!(0.0 < low && low <= mid && mid <= high, "{row}");
            } else {
                assert!(
                    row["paired_with"].is_null(),
                    "the baseline's own row: {row}"
                );
            }
        }
        let median = row["latency_median_s"].as_f64().unwrap();
        let per_s = row["tokens_per_s"].as_f64().unwrap();
        // Tokens per call: batch·L for whole-sequence passes, batch for a decoding step,
        // batch·new_tokens for generation.
        let tokens = match row["pass"].as_str().unwrap() {
            "decode" => 2.0,
            "generate_throughput" => {
                assert_eq!(row["new_tokens"], 5);
                10.0
            }
            _ => 8.0,
        };
        assert!(
            (per_s * median - tokens).abs() < 1e-6 * tokens,
            "{}: {per_s} tokens/s at {median} s",
            row["run_id"]
        );
    }
}
