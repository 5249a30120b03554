//! A results folder stands on its own: `plot`, `report` and `merge` read its manifest, rows
//! and run specs (`runs.jsonl`) and never the suite's checkpoints; a folder from before
//! `runs.jsonl` falls back to its suite, with a clear error where that needs a checkpoint
//! that is gone. And typed rows write the text the committed folders hold, column for column.

mod common;

use common::{mvt, text};
use mamba_vs_transformer::results::store::{
    read_frame, read_rows, to_frame, write_rows, ROWS_FILE,
};
use mamba_vs_transformer::results::Row;
use polars::prelude::*;
use std::path::Path;

const SUITE: &str = "\
name: standalone
device: cpu
threads: 1
models:
  pretrained: { family: mamba, checkpoint: ckpt }
  llama: { family: transformer, head_dim: 8 }
experiments:
  - name: lm
    kind: speed
    pass: forward
    component: model
    models: [pretrained, llama]
    grid: { d_model: [16], seq_len: [8, 16] }
    warmup: 1
    repeats: 1
plots:
  - { kind: latency_vs_seq_len, experiment: lm }
";

/// A finished run of [`SUITE`] in `dir/r`, whose checkpoint folder `dir/ckpt` is a copy of a
/// fixture.
fn run_suite(dir: &Path) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/hf/mamba-tied");
    std::fs::create_dir(dir.join("ckpt")).unwrap();
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture.join(file), dir.join("ckpt").join(file)).unwrap();
    }
    std::fs::write(dir.join("s.yaml"), SUITE).unwrap();
    let out = mvt(&["run", "s.yaml", "--out", "r"], dir);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn plot_report_and_merge_work_after_the_checkpoint_moved() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    run_suite(dir);
    let runs = std::fs::read_to_string(dir.join("r/runs.jsonl")).unwrap();
    assert_eq!(runs.lines().count(), 4, "every planned run spec: {runs}");
    assert!(runs.contains("\"checkpoint\""), "{runs}");

    std::fs::rename(dir.join("ckpt"), dir.join("moved")).unwrap();
    for args in [
        vec!["plot", "r"],
        vec!["report", "r"],
        vec!["merge", "merged", "r"],
    ] {
        let out = mvt(&args, dir);
        assert!(out.status.success(), "mvt {args:?}: {}", text(&out));
    }
    assert!(dir.join("r/plots/latency_vs_seq_len_lm.svg").is_file());
    assert!(dir.join("r/report.md").is_file());
    let merged = std::fs::read_to_string(dir.join("merged/runs.jsonl")).unwrap();
    assert_eq!(merged, runs, "the merge keeps the plan");
    assert_eq!(read_rows(&dir.join("merged")).unwrap().len(), 4);
}

#[test]
fn an_old_folder_without_run_specs_falls_back_to_its_suite_or_says_why_not() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    run_suite(dir);
    let runs = std::fs::read_to_string(dir.join("r/runs.jsonl")).unwrap();
    std::fs::remove_file(dir.join("r/runs.jsonl")).unwrap();
    std::fs::rename(dir.join("ckpt"), dir.join("moved")).unwrap();

    for args in [
        vec!["plot", "r"],
        vec!["report", "r"],
        vec!["merge", "m", "r"],
    ] {
        let out = mvt(&args, dir);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(2), "mvt {args:?}: {said}");
        assert!(!said.contains("panicked"), "{said}");
        for words in ["runs.jsonl", "model `pretrained`", "ckpt", "--resume"] {
            assert!(
                said.contains(words),
                "mvt {args:?} should say {words:?}: {said}"
            );
        }
    }

    // With the checkpoint back, the suite expands again: plot works and saves the specs, so
    // the folder stands on its own from then on.
    std::fs::rename(dir.join("moved"), dir.join("ckpt")).unwrap();
    let out = mvt(&["plot", "r"], dir);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(dir.join("r/runs.jsonl")).unwrap(),
        runs
    );
}

/// The table's columns: those from before rows were typed (typing must not change them), and
/// the columns added since: `calls_per_sample` by iteration scaling, the paired columns,
/// `processes`, the recall columns `seed`, `steps_to_target` and the accuracy interval, and
/// the model columns `d_state`, `headdim`, `ngroups` and `pattern` of Mamba-2 and hybrids.
const COLUMNS: &str = "suite,experiment,kind,run_id,model,family,component,pass,device,dtype,\
batch,seq_len,d_model,n_layers,d_state,headdim,ngroups,pattern,params,matched_to,new_tokens,scan,threads,status,\
latency_median_s,latency_p10_s,latency_p90_s,latency_min_s,latency_max_s,samples,outliers,\
calls_per_sample,paired_with,ratio_median,ratio_ci_low,ratio_ci_high,rounds,stopped_by,\
processes,tokens_per_s,peak_mem_bytes,reserved_mem_bytes,flops,core_flops,core_bytes,\
bytes_moved,param_bytes,activation_bytes,state_bytes,predicted_latency_s,task,task_options,lr,\
seed,eval_seq_len,eval_mode,steps,steps_to_target,final_loss,accuracy,accuracy_ci_low,\
accuracy_ci_high,accuracy_n,chance_accuracy,wall_s,message";

/// Every committed results folder: its rows read as typed rows and write back the same JSON
/// values, and every column of its Parquet table, with the same type and values (older
/// folders have fewer columns); the CSV has the columns it always had.
#[test]
fn typed_rows_write_the_committed_columns_unchanged() {
    let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    let mut folders = 0;
    for entry in std::fs::read_dir(&results).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.join(ROWS_FILE).is_file() {
            continue;
        }
        folders += 1;
        let rows = read_rows(&dir).unwrap();
        let stored = std::fs::read_to_string(dir.join(ROWS_FILE)).unwrap();
        for (row, line) in rows.iter().zip(stored.lines()) {
            let written = serde_json::to_value(row).unwrap();
            let original: serde_json::Value = serde_json::from_str(line).unwrap();
            for (field, value) in original.as_object().unwrap() {
                assert_eq!(
                    &written[field],
                    value,
                    "{}: field {field} of {}",
                    dir.display(),
                    row.run_id
                );
            }
        }
        let mut frame = to_frame(&rows).unwrap();
        let mut csv = Vec::new();
        CsvWriter::new(&mut csv).finish(&mut frame).unwrap();
        let csv = String::from_utf8(csv).unwrap();
        assert_eq!(csv.lines().next(), Some(COLUMNS), "the CSV header");
        let committed = read_frame(&dir).unwrap();
        for column in committed.columns() {
            let name = column.name();
            let rewritten = frame.column(name).unwrap();
            assert!(
                same_column(rewritten, column),
                "{}: column {name}: {:?} against the committed {:?}",
                dir.display(),
                rewritten.head(Some(3)),
                column.head(Some(3))
            );
        }
    }
    assert!(folders >= 5, "found {folders} committed folders");
}

/// The same type and values; floats to 1e-12 relative, as serde_json's default parser may
/// read a stored float one unit in the last place off.
fn same_column(a: &Column, b: &Column) -> bool {
    if a.dtype() != b.dtype() || a.len() != b.len() {
        return false;
    }
    if a.dtype() != &DataType::Float64 {
        return a
            .as_materialized_series()
            .equals_missing(b.as_materialized_series());
    }
    let (a, b) = (a.f64().unwrap(), b.f64().unwrap());
    a.iter().zip(b.iter()).all(|pair| match pair {
        (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
        (None, None) => true,
        _ => false,
    })
}

/// A recall suite in two spellings: another suite, experiment and model name, the same runs.
fn recall_suite(suite: &str, experiment: &str, model: &str, seeds: &str) -> String {
    format!(
        "\
name: {suite}
device: cpu
threads: 1
models:
  {model}: {{ family: mamba, d_state: 4 }}
experiments:
  - name: {experiment}
    kind: recall
    task: {{ task: induction_heads, vocab_size: 8 }}
    models: [{model}]
    grid: {{ d_model: [8], n_layers: [1], seq_len: [12], seed: {seeds} }}
    train: {{ steps: 20, lr: 3.0e-3, batch_size: 4, eval_every: 10, eval_batches: 1 }}
    eval_seq_len: [12, 24]
"
    )
}

#[test]
fn a_run_finished_in_another_folder_with_the_same_spec_is_adopted_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(
        dir.join("a.yaml"),
        recall_suite("a", "induction", "mamba", "[0, 1]"),
    )
    .unwrap();
    let out = mvt(&["run", "a.yaml", "--out", "a"], dir);
    assert!(out.status.success(), "{}", text(&out));
    // Seed 2 is new; seeds 0 and 1 were trained in `a`.
    let b = recall_suite("b", "claims-induction", "mamba-small", "[0, 1, 2]");
    std::fs::write(dir.join("b.yaml"), b).unwrap();
    let out = mvt(&["run", "b.yaml", "--out", "b", "--reuse", "a"], dir);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("1 ran"), "{}", text(&out));

    let (a, b) = (
        read_rows(&dir.join("a")).unwrap(),
        read_rows(&dir.join("b")).unwrap(),
    );
    assert_eq!((a.len(), b.len()), (4, 6));
    for (from, to) in a.iter().zip(&b) {
        assert_eq!(
            (to.suite.as_str(), to.experiment.as_str()),
            ("b", "claims-induction")
        );
        assert_eq!(to.model, "mamba-small");
        assert!(to.run_id.starts_with("claims-induction.mamba-small."));
        assert_eq!(
            (to.seed, to.accuracy, to.final_loss),
            (from.seed, from.accuracy, from.final_loss)
        );
    }
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("b/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["reused"][0]["folder"], "a");
    assert_eq!(manifest["reused"][0]["runs"].as_array().unwrap().len(), 2);
    let curves = std::fs::read_to_string(dir.join("b/curves.csv")).unwrap();
    assert_eq!(
        curves.lines().filter(|l| l.contains(".s0.")).count(),
        2,
        "{curves}"
    );
}

/// A paired speed suite in two spellings: another suite, experiment and model names, the
/// same comparison points at `seq_lens`. Its second experiment times the same baseline
/// against another SSM, as crossover_cpu times Llama beside Mamba-1 and beside Mamba-2: the
/// baseline's runs of the two are the same spec.
fn paired_suite(suite: &str, experiment: &str, ssm: &str, seq_lens: &str) -> String {
    let speed = |name: &str, model: &str| {
        format!(
            "  - name: {name}
    kind: speed
    pass: forward
    component: block
    models: [{model}, attention]
    grid: {{ d_model: [8], seq_len: {seq_lens} }}
    warmup: 1
    max_time_s: 0.1
    processes: 1
"
        )
    };
    format!(
        "\
name: {suite}
device: cpu
threads: 1
timeout_s: 60
models:
  {ssm}: {{ family: mamba, d_state: 4 }}
  {ssm}-wide: {{ family: mamba, d_state: 8 }}
  attention: {{ family: transformer, head_dim: 8 }}
experiments:
{}{}",
        speed(experiment, ssm),
        speed(&format!("{experiment}-wide"), &format!("{ssm}-wide")),
    )
}

/// The row of `model` at `seq_len` in `experiment`.
fn row_at<'a>(rows: &'a [Row], experiment: &str, model: &str, seq_len: i64) -> &'a Row {
    rows.iter()
        .find(|r| r.experiment == experiment && r.model == model && r.seq_len == seq_len)
        .unwrap_or_else(|| panic!("no {experiment} row of {model} at L {seq_len}: {rows:#?}"))
}

#[test]
fn a_paired_point_is_adopted_whole_with_its_pairing_renamed_or_measured_again() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("a.yaml"), paired_suite("a", "fwd", "m", "[4, 8]")).unwrap();
    let out = mvt(&["run", "a.yaml", "--out", "a"], dir);
    assert!(out.status.success(), "{}", text(&out));
    let a = read_rows(&dir.join("a")).unwrap();

    // L 12 is new in both experiments; L 4 and 8 were timed, paired, in `a`.
    let b = paired_suite("b", "claims-fwd", "mamba-small", "[4, 8, 12]");
    std::fs::write(dir.join("b.yaml"), b).unwrap();
    let out = mvt(&["run", "b.yaml", "--out", "b", "--reuse", "a"], dir);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(": 4 ran,"),
        "the new points: {}",
        text(&out)
    );
    assert!(
        text(&out).contains("adopted 8 run(s) from a ("),
        "{}",
        text(&out)
    );
    let b = read_rows(&dir.join("b")).unwrap();
    assert_eq!(b.len(), 12);
    for seq_len in [4, 8] {
        for (from, to, ssm) in [
            ("fwd", "claims-fwd", "mamba-small"),
            ("fwd-wide", "claims-fwd-wide", "mamba-small-wide"),
        ] {
            let (model, baseline) = (
                row_at(&b, to, ssm, seq_len),
                row_at(&b, to, "attention", seq_len),
            );
            assert!(
                model.run_id.starts_with(&format!("{to}.{ssm}.")),
                "{model:?}"
            );
            assert_eq!(model.paired_with.as_deref(), Some(baseline.run_id.as_str()));
            let source = row_at(&a, from, ssm.replace("mamba-small", "m").as_str(), seq_len);
            assert!(source.ratio_median.is_some(), "{source:?}");
            assert_eq!(
                (model.ratio_median, model.latency_median_s),
                (source.ratio_median, source.latency_median_s)
            );
        }
    }
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("b/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["reused"][0]["runs"].as_array().unwrap().len(), 8);

    // Half a point is not adopted, nor made whole with the other experiment's run of the same
    // baseline: with the first experiment's baseline row at L 8 gone from `a`, that point is
    // timed again here, both of its runs side by side.
    let half: Vec<Row> = a
        .into_iter()
        .filter(|r| !(r.experiment == "fwd" && r.model == "attention" && r.seq_len == 8))
        .collect();
    write_rows(&dir.join("a"), &half).unwrap();
    let c = paired_suite("c", "fwd", "m", "[4, 8]");
    std::fs::write(dir.join("c.yaml"), c).unwrap();
    let out = mvt(&["run", "c.yaml", "--out", "c", "--reuse", "a"], dir);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(": 2 ran,"),
        "the half point: {}",
        text(&out)
    );
    let c = read_rows(&dir.join("c")).unwrap();
    let (model, baseline) = (row_at(&c, "fwd", "m", 8), row_at(&c, "fwd", "attention", 8));
    assert_eq!(model.paired_with.as_deref(), Some(baseline.run_id.as_str()));
    let reused = row_at(&half, "fwd", "m", 8);
    assert_ne!(
        model.latency_median_s, reused.latency_median_s,
        "timed again"
    );
}

/// Rows say what was compared: the state size, heads and groups of each family's model.
#[test]
fn rows_carry_each_familys_shape_columns() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let suite = "\
name: shapes
device: cpu
threads: 1
models:
  m1: { family: mamba, d_state: 4 }
  m2: { family: mamba2, d_state: 8, headdim: 8, ngroups: 2 }
  t: { family: transformer, head_dim: 8 }
experiments:
  - name: blocks
    kind: speed
    pass: forward
    component: block
    models: [m1, m2, t]
    grid: { d_model: [16], seq_len: [8] }
    warmup: 1
    repeats: 1
";
    std::fs::write(dir.join("s.yaml"), suite).unwrap();
    let out = mvt(&["run", "s.yaml", "--out", "r"], dir);
    assert!(out.status.success(), "{}", text(&out));
    let rows = read_rows(&dir.join("r")).unwrap();
    let shape = |model: &str| {
        let row = rows.iter().find(|r| r.model == model).expect(model);
        (row.d_state, row.headdim, row.ngroups, row.pattern.clone())
    };
    assert_eq!(shape("m1"), (Some(4), None, None, None));
    assert_eq!(shape("m2"), (Some(8), Some(8), Some(2), None));
    assert_eq!(shape("t"), (None, Some(8), None, None));
    assert!(rows.iter().all(|r| r.status.name() == "ok"), "{rows:?}");
}
