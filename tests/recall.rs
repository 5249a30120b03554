//! Recall experiments end to end: train each model in its own process, evaluate at every length,
//! one row per length, curves.csv and charts; a run cut off mid-evaluation keeps the lengths it
//! finished and marks the rest.

mod common;

use common::{mvt, rows};
const SUITE: &str = "\
name: recall
device: cpu
threads: 1
timeout_s: 120
models:
  m: { family: mamba, d_state: 8 }
  t: { family: transformer, head_dim: 16 }
experiments:
  - name: mqar
    kind: recall
    task: { task: mqar, vocab_size: 8, num_kv_pairs: 1 }
    models: [m, t]
    grid: { d_model: [32], n_layers: [2], seq_len: [4], lr: [1.0e-2, 1.0e-6] }
    train: { steps: 300, lr: 1.0e-2, batch_size: 32, warmup_steps: 10, weight_decay: 0.0, eval_every: 50, eval_batches: 2, target_accuracy: 0.95, save_weights: true }
    eval_seq_len: [4, 8]
plots:
  - { kind: accuracy_vs_width, experiment: mqar }
  - { kind: accuracy_vs_eval_len, experiment: mqar }
  - { kind: learning_curve, experiment: mqar }
";

#[test]
fn recall_experiments_train_evaluate_and_chart() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("r.yaml"), SUITE).unwrap();
    let out = mvt(&["run", "r.yaml"], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results = dir.path().join("results/recall");
    let rows = rows(&results);
    assert_eq!(rows.len(), 2 * 2 * 2, "model × lr × eval length");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["runs_finished"], 2 * 2, "runs, not rows");
    for row in &rows {
        assert_eq!(
            (row["kind"].as_str(), row["status"].as_str()),
            (Some("recall"), Some("ok")),
            "{row}"
        );
        assert_eq!(row["task"], "mqar");
        assert_eq!(row["seq_len"], 4, "trained at 4");
        assert!(row["accuracy"].as_f64().is_some() && row["steps"].as_i64().unwrap() >= 50);
    }
    // The good learning rate learns the task; the tiny one does not.
    for model in ["m", "t"] {
        let acc = |lr: f64| {
            rows.iter()
                .find(|r| r["model"] == model && r["lr"] == lr && r["eval_seq_len"] == 4)
                .and_then(|r| r["accuracy"].as_f64())
                .unwrap()
        };
        assert!(acc(1e-2) >= 0.9, "{model}: {}", acc(1e-2));
        assert!(acc(1e-6) < 0.6, "{model}: {}", acc(1e-6));
    }
    let curves = std::fs::read_to_string(results.join("curves.csv")).unwrap();
    assert!(curves.starts_with("run_id,step,loss,lr,eval_accuracy"));
    assert!(curves.lines().count() > 4);
    assert!(results.join("plots/accuracy_vs_width_mqar.png").exists());
    assert!(results.join("plots/accuracy_vs_eval_len_mqar.svg").exists());
    // The learning curves: a panel per model, a line per learning rate, and chance.
    let learning = std::fs::read_to_string(results.join("plots/learning_curve_mqar.svg")).unwrap();
    for label in [
        "\nd=32 lr=1e-2\n",
        "\nd=32 lr=1e-6\n",
        "training step",
        "chance",
    ] {
        assert!(learning.contains(label), "`{label}` in the learning curves");
    }

    // Each trained model is kept: its weights, readable as safetensors, and the spec that says
    // which model they are.
    for row in rows.iter().filter(|r| r["eval_seq_len"] == 4) {
        let id = row["run_id"].as_str().unwrap();
        let weights = results.join(format!("weights/{id}.safetensors"));
        let tensors = tch::Tensor::read_safetensors(&weights).unwrap();
        let params: i64 = tensors.iter().map(|(_, t)| t.numel() as i64).sum();
        assert_eq!(Some(params), row["params"].as_i64(), "{id}");
        let spec = std::fs::read_to_string(results.join(format!("weights/{id}.spec.json")));
        assert!(spec.unwrap().contains(id));
    }
}

#[test]
fn a_run_cut_off_mid_evaluation_keeps_the_lengths_it_finished() {
    let dir = tempfile::tempdir().unwrap();
    let suite = SUITE
        .replace("timeout_s: 120", "timeout_s: 12")
        .replace("models: [m, t]", "models: [t]")
        .replace("lr: [1.0e-2, 1.0e-6]", "lr: [1.0e-2]")
        .replace("batch_size: 32", "batch_size: 4")
        .replace("eval_batches: 2", "eval_batches: 1")
        .replace("eval_seq_len: [4, 8]", "eval_seq_len: [4, 262144]");
    std::fs::write(dir.path().join("r.yaml"), suite).unwrap();
    let out = mvt(&["run", "r.yaml"], dir.path());
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = rows(&dir.path().join("results/recall"));
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["status"], "ok", "{}", rows[0]);
    assert_eq!(rows[1]["status"], "timeout", "{}", rows[1]);
    let message = rows[1]["message"].as_str().unwrap();
    assert!(
        message.contains("ended before evaluating at this length"),
        "{message}"
    );
}
