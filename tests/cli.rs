//! End to end through the `mvt` binary: a tiny suite from YAML to tables, manifest and charts.

mod common;

use common::{mvt, text};
use std::path::Path;

const SUITE: &str = "\
name: e2e
description: tiny end-to-end suite
device: cpu
threads: 1
models:
  mamba: { family: mamba, d_state: 4 }
  transformer: { family: transformer, head_dim: 8 }
experiments:
  - name: fwd
    kind: speed
    pass: forward
    component: block
    models: [mamba, transformer]
    grid: { d_model: [16], seq_len: [8, 16] }
    warmup: 1
    repeats: 2
  - name: lm
    kind: speed
    pass: forward
    component: model
    models: [mamba, transformer]
    grid: { d_model: [16], seq_len: [8], n_layers: [2] }
    warmup: 1
    repeats: 1
plots:
  - { kind: latency_vs_seq_len, experiment: fwd }
  - { kind: ratio_vs_seq_len, experiment: fwd }
";

#[test]
fn run_writes_rows_tables_manifest_and_charts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("e2e.yaml"), SUITE).unwrap();
    let out = mvt(&["run", "e2e.yaml"], dir.path());
    assert!(out.status.success(), "{}", text(&out));

    let results = dir.path().join("results/e2e");
    let csv = std::fs::read_to_string(results.join("results.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    for column in [
        "suite",
        "experiment",
        "run_id",
        "model",
        "family",
        "component",
        "pass",
        "device",
        "dtype",
        "batch",
        "seq_len",
        "d_model",
        "n_layers",
        "params",
        "status",
        "latency_median_s",
        "latency_min_s",
        "latency_max_s",
        "tokens_per_s",
    ] {
        assert!(header.contains(&column), "missing column {column}");
    }
    let status = header.iter().position(|c| *c == "status").unwrap();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 2 * 2 + 2, "one row per grid point and model");
    assert!(rows.iter().all(|r| r[status] == "ok"), "{csv}");
    // Tiny blocks take microseconds a call: each sample of 10 ms holds many calls.
    let calls = header
        .iter()
        .position(|c| *c == "calls_per_sample")
        .unwrap();
    let scaled: Vec<i64> = rows.iter().map(|r| r[calls].parse().unwrap()).collect();
    assert!(
        scaled.iter().all(|&k| k > 1),
        "calls per sample: {scaled:?}"
    );

    assert!(results.join("results.parquet").metadata().unwrap().len() > 0);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["runs_finished"], 6);
    assert_eq!(manifest["device"], "cpu");
    assert!(manifest["finished_at"].is_string());
    assert_eq!(manifest["environment"]["tch_version"], "0.24.0");
    assert_eq!(manifest["resolved_suite"]["experiments"][0]["warmup"], 1);

    let png = results.join("plots/latency_vs_seq_len_fwd.png");
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    let svg = std::fs::read_to_string(results.join("plots/latency_vs_seq_len_fwd.svg")).unwrap();
    assert!(
        svg.contains("sequence length") && svg.contains("mamba d=16"),
        "labels in the SVG"
    );

    // The ratio chart: Mamba over the paired baseline, parity and L = d_model drawn.
    let ratio = std::fs::read_to_string(results.join("plots/ratio_vs_seq_len_fwd.svg")).unwrap();
    for label in [
        "mamba d=16 / transformer",
        "FLOP model: mamba d=16",
        "parity (ratio 1)",
        "L = d_model",
        "d_model = 16",
    ] {
        assert!(ratio.contains(label), "`{label}` in the ratio chart");
    }
    assert!(results.join("plots/ratio_vs_seq_len_fwd.png").is_file());

    // Charts re-render from the stored table alone.
    std::fs::remove_file(&png).unwrap();
    let out = mvt(&["plot", "results/e2e"], dir.path());
    assert!(out.status.success() && png.exists(), "{}", text(&out));

    // A resumed sweep with nothing missing runs nothing and keeps every row.
    let out = mvt(&["run", "e2e.yaml", "--resume"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("0 ran, 6 resumed"), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(results.join("results.csv")).unwrap(),
        csv
    );
}

/// The Mamba-2 paper's Fig. 10 axis as suites write it: one model entry per state size.
const STATE_SIZES: &str = "\
name: state-sizes
device: cpu
threads: 1
models:
  m4: { family: mamba, d_state: 4 }
  m8: { family: mamba, d_state: 8 }
  s4: { family: mamba2, d_state: 4, headdim: 8, chunk_size: 4 }
  s8: { family: mamba2, d_state: 8, headdim: 8, chunk_size: 4 }
  s8-long-chunks: { family: mamba2, d_state: 8, headdim: 8, chunk_size: 8 }
  sdpa: { family: transformer, head_dim: 8 }
experiments:
  - name: core
    kind: speed
    pass: forward
    component: core
    models: [m4, m8, s4, s8, s8-long-chunks, sdpa]
    grid: { d_model: [16], seq_len: [8] }
    paired: false
    warmup: 1
    repeats: 2
plots:
  - { kind: latency_vs_d_state, experiment: core }
";

#[test]
fn latency_vs_d_state_draws_one_line_per_family_over_its_models() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s.yaml"), STATE_SIZES).unwrap();
    let out = mvt(&["run", "s.yaml", "--out", "r"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let svg =
        std::fs::read_to_string(dir.path().join("r/plots/latency_vs_d_state_core.svg")).unwrap();
    // Mamba's two entries are one line; Mamba-2's differ in their chunks, which the labels say
    // (each label is a text element of its own line).
    for label in [
        "\nmamba d=16\n",
        "\nmamba2 d=16 chunk_size=4\n",
        "\nmamba2 d=16 chunk_size=8\n",
        "sdpa d=16 (no state)",
    ] {
        assert!(svg.contains(label), "`{label}` in the chart: {svg}");
    }
    assert!(!svg.contains("m4 d=16"), "a line per model entry: {svg}");
}

#[test]
fn invalid_suite_exits_2_with_a_located_message() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        SUITE.replace(
            "[mamba, transformer]\n    grid: { d_model: [16], seq_len: [8, 16] }",
            "[mamab]\n    grid: { d_model: [16], seq_len: [8, 16] }",
        ),
    )
    .unwrap();
    for command in ["validate", "run"] {
        let out = mvt(&[command, "bad.yaml"], dir.path());
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let shown = text(&out);
        assert!(
            shown.contains("line 13") && shown.contains("unknown model `mamab`"),
            "{shown}"
        );
    }
    assert!(
        !dir.path().join("results").exists(),
        "nothing runs before validation passes"
    );
}

#[test]
fn missing_suite_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = mvt(&["validate", "nope.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn info_reports_versions_and_threads() {
    let out = mvt(&["info", "--json"], Path::new("."));
    assert!(out.status.success(), "{}", text(&out));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["tch_version"], "0.24.0");
    assert!(
        info["libtorch_version"]
            .as_str()
            .unwrap()
            .starts_with("2.11.0"),
        "{info}"
    );
    assert!(info["torch_threads"].as_i64().unwrap() >= 1);
}

#[test]
fn tch_is_pinned_to_the_version_we_report() {
    let manifest = std::fs::read_to_string("Cargo.toml").unwrap();
    let pin = format!(
        "tch = \"={}\"",
        mamba_vs_transformer::environment::TCH_VERSION
    );
    assert!(manifest.contains(&pin), "Cargo.toml must pin {pin}");
}

#[test]
fn pretrained_checkpoints_run_in_suites_and_a_broken_one_is_an_error_row() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/hf");
    // The same weights without one tensor: the suite validates (config.json is fine) and the
    // run fails when it loads the weights.
    let broken = dir.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    let source = fixtures.join("mamba-tied");
    std::fs::copy(source.join("config.json"), broken.join("config.json")).unwrap();
    let mut tensors = tch::Tensor::read_safetensors(source.join("model.safetensors")).unwrap();
    tensors.retain(|(name, _)| name != "backbone.norm_f.weight");
    tch::Tensor::write_safetensors(&tensors, broken.join("model.safetensors")).unwrap();

    let suite = format!(
        "\
name: pretrained
device: cpu
threads: 1
models:
  llama: {{ family: transformer, checkpoint: {} }}
  broken: {{ family: mamba, checkpoint: broken }}
experiments:
  - name: lm
    kind: speed
    pass: forward
    component: model
    models: [llama, broken]
    grid: {{ seq_len: [8] }}
    warmup: 1
    repeats: 1
",
        fixtures.join("llama-gqa-untied-biases-sharded").display()
    );
    std::fs::write(dir.path().join("p.yaml"), suite).unwrap();
    let out = mvt(&["run", "p.yaml"], dir.path());
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed run fails the command: {}",
        text(&out)
    );

    let rows = std::fs::read_to_string(dir.path().join("results/pretrained/rows.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = rows
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let row = |model: &str| rows.iter().find(|r| r["model"] == model).unwrap();
    let llama = row("llama");
    assert_eq!(llama["status"], "ok", "{llama}");
    assert_eq!(
        (llama["d_model"].as_i64(), llama["n_layers"].as_i64()),
        (Some(32), Some(2))
    );
    // The parameter count is that of the stored tensors.
    let stored: usize = (1..=5)
        .flat_map(|i| {
            let shard =
                format!("llama-gqa-untied-biases-sharded/model-0000{i}-of-00005.safetensors");
            tch::Tensor::read_safetensors(fixtures.join(shard)).unwrap()
        })
        .map(|(_, t)| t.numel())
        .sum();
    assert_eq!(llama["params"].as_i64(), Some(stored as i64));
    let broken = row("broken");
    assert_eq!(broken["status"], "error");
    assert!(broken["message"]
        .as_str()
        .unwrap()
        .contains("`backbone.norm_f.weight`"));
}

#[test]
fn sample_prints_one_example_and_names_bad_options() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "sample",
        "--task",
        "mqar",
        "--set",
        "num_kv_pairs=2",
        "--set",
        "vocab_size=16",
        "--seq-len",
        "12",
        "--seed",
        "3",
    ];
    let out = mvt(&args, dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    assert!(
        shown.contains("mqar (vocab 16), seq_len 12, seed 3: 12 tokens, 2 scored"),
        "{shown}"
    );
    assert!(shown.contains("inputs") && shown.contains("targets"));
    assert_eq!(
        text(&mvt(&args, dir.path())),
        shown,
        "the same seed prints the same example"
    );

    let typo = mvt(
        &[
            "sample",
            "--task",
            "mqar",
            "--set",
            "kv=2",
            "--seq-len",
            "12",
        ],
        dir.path(),
    );
    assert_eq!(typo.status.code(), Some(2));
    assert!(
        text(&typo).contains("unknown field `kv`"),
        "{}",
        text(&typo)
    );
    let impossible = mvt(
        &[
            "sample",
            "--task",
            "mqar",
            "--set",
            "num_kv_pairs=8",
            "--seq-len",
            "12",
        ],
        dir.path(),
    );
    assert_eq!(impossible.status.code(), Some(2));
}

#[test]
fn selfcheck_passes_on_this_cpu() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let out = mvt(
        &[
            "selfcheck",
            "--device",
            "cpu",
            "--fixtures",
            fixtures.to_str().unwrap(),
        ],
        Path::new("."),
    );
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("scan cpu_fused Float on cpu vs CPU reference"),
        "{shown}"
    );
    assert!(shown.contains("golden mamba-tied on cpu step"), "{shown}");
    assert!(shown.contains(" 0 failed"), "{shown}");
}
