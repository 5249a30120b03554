//! HF checkpoints: parity with transformers' logits in both modes (fixtures written by
//! `scripts/make_golden.py`), `mvt logits` and `mvt generate` on them, and a clear error for
//! every kind of broken or mismatched checkpoint.

use mamba_vs_transformer::device::cuda_for_test;
use mamba_vs_transformer::models::checkpoint::{Checkpoint, CheckpointError};
use mamba_vs_transformer::models::lm::Mode;
use mamba_vs_transformer::tolerance::Tolerance;
use std::path::{Path, PathBuf};
use std::process::Command;
use tch::{Device, Kind, Tensor};

const FIXTURES: [&str; 6] = [
    "mamba-tied",
    "mamba-untied-biases-sharded",
    "llama-mha-tied",
    "llama-gqa-untied-biases-sharded",
    "mamba2-tied",
    "mamba2-groups2-untied-biases",
];

/// The parity bound for fp32 logits against transformers: max |Δ| ≤ 1e-4.
const PARITY: Tolerance = Tolerance {
    rtol: 0.0,
    atol: 1e-4,
};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn fixture(name: &str) -> PathBuf {
    data().join("hf").join(name)
}

struct Golden {
    ids: Tensor,
    logits: Tensor,
    generated: Tensor,
}

fn golden(name: &str) -> Golden {
    let path = data().join("golden").join(format!("{name}.safetensors"));
    let mut tensors = Tensor::read_safetensors(&path).expect("golden file");
    let mut take = |key: &str| {
        let at = tensors.iter().position(|(n, _)| n == key).expect(key);
        tensors.swap_remove(at).1
    };
    Golden {
        ids: take("ids"),
        logits: take("logits"),
        generated: take("generated"),
    }
}

#[test]
fn logits_match_transformers_in_every_mode() {
    for name in FIXTURES {
        let checkpoint = Checkpoint::load(&fixture(name), Device::Cpu, Kind::Float)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let golden = golden(name);
        let ids = golden.ids.unsqueeze(0);
        for mode in [Mode::Parallel, Mode::Step] {
            let logits = tch::no_grad(|| checkpoint.model.logits(&ids, mode)).squeeze_dim(0);
            PARITY.assert_close(&format!("{name} {}", mode.name()), &logits, &golden.logits);
        }
        // Chunked: a prefill of 5 tokens, then chunks of 4 and 3 from the state.
        let chunked = tch::no_grad(|| {
            let model = &checkpoint.model;
            let (first, mut state) = model.prefill(&ids.narrow(1, 0, 5));
            let second = model.extend(&ids.narrow(1, 5, 4), &mut state);
            let third = model.extend(&ids.narrow(1, 9, 3), &mut state);
            Tensor::cat(&[first, second, third], 1).squeeze_dim(0)
        });
        PARITY.assert_close(&format!("{name} chunked"), &chunked, &golden.logits);
    }
}

#[test]
fn greedy_generation_matches_transformers() {
    for name in FIXTURES {
        let checkpoint = Checkpoint::load(&fixture(name), Device::Cpu, Kind::Float).unwrap();
        let golden = golden(name);
        let max_new = golden.generated.size()[0];
        let new = tch::no_grad(|| {
            checkpoint
                .model
                .generate_greedy(&golden.ids.unsqueeze(0), max_new)
        });
        assert_eq!(
            Vec::<i64>::try_from(new.squeeze_dim(0)).unwrap(),
            Vec::<i64>::try_from(&golden.generated).unwrap(),
            "{name}"
        );
    }
}

/// mamba_ssm's tolerance for logits in `kind`, except that f16 is held to bf16's, looser than
/// [`Tolerance::for_kind`]'s f16 one: this compares a whole model's f16 logits with
/// transformers' fp32 ones.
fn tolerance(kind: Kind) -> Tolerance {
    match kind {
        Kind::Float => Tolerance::FP32,
        _ => Tolerance::BF16,
    }
}

/// Loads every fixture on `device` in `kind` and checks, in both modes, that `A_log` and `D`
/// stayed fp32 and that the logits are within `kind`'s tolerance of transformers' fp32 ones.
fn check_reduced_precision(device: Device, kind: Kind) {
    let tolerance = tolerance(kind);
    for name in FIXTURES {
        let checkpoint = Checkpoint::load(&fixture(name), device, kind).unwrap();
        for (var, tensor) in checkpoint.vars.variables() {
            let fp32 = ["A_log", ".D", "dt_bias"].iter().any(|s| var.ends_with(s));
            let want = if fp32 { Kind::Float } else { kind };
            assert_eq!(tensor.kind(), want, "{name}: {var}");
        }
        let golden = golden(name);
        let ids = golden.ids.unsqueeze(0).to_device(device);
        for mode in [Mode::Parallel, Mode::Step] {
            let logits = tch::no_grad(|| checkpoint.model.logits(&ids, mode)).squeeze_dim(0);
            tolerance.assert_close(
                &format!("{name} {kind:?} {}", mode.name()),
                &logits,
                &golden.logits,
            );
        }
    }
}

#[test]
fn cpu_bf16_keeps_a_log_and_d_in_fp32_and_stays_close() {
    check_reduced_precision(Device::Cpu, Kind::BFloat16);
}

#[test]
fn cuda_logits_match_transformers_in_f32_bf16_and_f16() {
    let Some(device) = cuda_for_test("cuda_logits_match_transformers_in_f32_bf16_and_f16") else {
        return;
    };
    for kind in [Kind::Float, Kind::BFloat16, Kind::Half] {
        check_reduced_precision(device, kind);
    }
}

fn mvt() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mvt"))
}

fn ids_arg(ids: &Tensor) -> String {
    Vec::<i64>::try_from(ids)
        .unwrap()
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn mvt_logits_writes_npy_that_matches_transformers() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "mamba-untied-biases-sharded",
        "llama-gqa-untied-biases-sharded",
    ] {
        let golden = golden(name);
        for mode in ["parallel", "step"] {
            let out = dir.path().join(format!("{name}-{mode}.npy"));
            let status = mvt()
                .args(["logits", "--checkpoint"])
                .arg(fixture(name))
                .args(["--ids", &ids_arg(&golden.ids), "--mode", mode, "--out"])
                .arg(&out)
                .status()
                .unwrap();
            assert!(status.success(), "{name} {mode}");
            let logits = Tensor::read_npy(&out).unwrap();
            assert_eq!(logits.kind(), Kind::Float);
            PARITY.assert_close(&format!("{name} {mode}"), &logits, &golden.logits);
        }
    }
}

#[test]
fn mvt_generate_prints_the_greedy_continuation() {
    let name = "llama-mha-tied";
    let golden = golden(name);
    let max_new = golden.generated.size()[0];
    let output = mvt()
        .args(["generate", "--checkpoint"])
        .arg(fixture(name))
        .args(["--ids", &ids_arg(&golden.ids), "--max-new"])
        .arg(max_new.to_string())
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap().trim(),
        ids_arg(&golden.generated)
    );
}

#[test]
fn mvt_rejects_ids_outside_the_vocabulary_and_broken_checkpoints_with_status_2() {
    let out = tempfile::tempdir().unwrap();
    let npy = out.path().join("x.npy");
    let bad_id = mvt()
        .args(["logits", "--checkpoint"])
        .arg(fixture("mamba-tied"))
        .args(["--ids", "1,48", "--out"])
        .arg(&npy)
        .output()
        .unwrap();
    assert_eq!(bad_id.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_id.stderr).contains("token id 48 is out of range"));

    let broken = broken_copy("mamba-tied", |dir| {
        edit_config(dir, |c| c["hidden_act"] = "relu".into())
    });
    let bad_checkpoint = mvt()
        .args(["generate", "--checkpoint"])
        .arg(broken.path())
        .args(["--ids", "1", "--max-new", "2"])
        .output()
        .unwrap();
    assert_eq!(bad_checkpoint.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_checkpoint.stderr).contains("`hidden_act`"));
}

// --- Broken and mismatched checkpoints ------------------------------------------------------

/// A copy of fixture `name`, changed by `edit`.
fn broken_copy(name: &str, edit: impl FnOnce(&Path)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    edit(dir.path());
    dir
}

/// Loads fixture `name` after `edit`; the load must fail.
fn load_broken(name: &str, edit: impl FnOnce(&Path)) -> CheckpointError {
    let dir = broken_copy(name, edit);
    match Checkpoint::load(dir.path(), Device::Cpu, Kind::Float) {
        Ok(_) => panic!("{name}: a broken checkpoint loaded"),
        Err(e) => e,
    }
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&path, config.to_string()).unwrap();
}

/// Rewrites `file` in `dir` with `edit` applied to its named tensors.
fn edit_tensors(dir: &Path, file: &str, edit: impl FnOnce(&mut Vec<(String, Tensor)>)) {
    let path = dir.join(file);
    let mut tensors = Tensor::read_safetensors(&path).unwrap();
    edit(&mut tensors);
    Tensor::write_safetensors(&tensors, &path).unwrap();
}

fn assert_names(error: &CheckpointError, needles: &[&str]) {
    let message = error.to_string();
    for needle in needles {
        assert!(message.contains(needle), "`{needle}` not in: {message}");
    }
}

#[test]
fn a_missing_tensor_is_named() {
    let error = load_broken("mamba-tied", |dir| {
        edit_tensors(dir, "model.safetensors", |t| {
            t.retain(|(n, _)| n != "backbone.layers.1.mixer.D")
        })
    });
    assert!(matches!(error, CheckpointError::MissingTensors { .. }));
    assert_names(&error, &["`backbone.layers.1.mixer.D`"]);
}

#[test]
fn a_tensor_of_the_wrong_shape_is_named_with_both_shapes() {
    let error = load_broken("mamba-tied", |dir| {
        edit_config(dir, |c| c["state_size"] = 8.into())
    });
    assert!(matches!(error, CheckpointError::ShapeMismatch { .. }));
    assert_names(
        &error,
        &["backbone.layers.0.mixer.A_log", "[32, 4]", "[32, 8]"],
    );
}

#[test]
fn tensors_the_config_does_not_use_are_named() {
    let error = load_broken("llama-gqa-untied-biases-sharded", |dir| {
        edit_config(dir, |c| c["attention_bias"] = false.into())
    });
    assert!(matches!(error, CheckpointError::UnexpectedTensors { .. }));
    assert_names(
        &error,
        &["model.layers.0.self_attn.k_proj.bias", "attention_bias"],
    );
}

#[test]
fn a_missing_bias_the_config_asks_for_is_named() {
    let error = load_broken("mamba-untied-biases-sharded", |dir| {
        edit_config(dir, |c| c["use_conv_bias"] = true.into())
    });
    assert_names(&error, &["backbone.layers.0.mixer.conv1d.bias"]);
}

#[test]
fn unsupported_config_values_are_named_with_what_is_allowed() {
    type ConfigEdit = fn(&mut serde_json::Value);
    let cases: [(&str, ConfigEdit, &[&str]); 5] = [
        (
            "mamba-tied",
            |c| c["hidden_act"] = "gelu".into(),
            &["`hidden_act`", "\"gelu\"", "\"silu\""],
        ),
        (
            "mamba-tied",
            |c| c["model_type"] = "gpt2".into(),
            &["`model_type`", "\"mamba\", \"mamba2\" or \"llama\""],
        ),
        (
            "llama-mha-tied",
            |c| c["rope_parameters"]["rope_type"] = "llama3".into(),
            &["`rope_parameters.rope_type`", "unscaled RoPE"],
        ),
        (
            "llama-mha-tied",
            |c| c["num_key_value_heads"] = 3.into(),
            &["`num_key_value_heads`", "divisor"],
        ),
        (
            "mamba-tied",
            |c| c["time_step_rank"] = "big".into(),
            &["`time_step_rank`", "\"auto\""],
        ),
    ];
    for (name, edit, needles) in cases {
        let error = load_broken(name, |dir| edit_config(dir, edit));
        assert!(
            matches!(error, CheckpointError::Unsupported { .. }),
            "{error}"
        );
        assert_names(&error, needles);
    }
}

#[test]
fn unknown_and_missing_config_fields_are_named() {
    let unknown = load_broken("llama-mha-tied", |dir| {
        edit_config(dir, |c| c["sliding_window"] = 4096.into())
    });
    assert!(matches!(unknown, CheckpointError::UnknownFields { .. }));
    assert_names(&unknown, &["`sliding_window`"]);

    let missing = load_broken("mamba-tied", |dir| {
        edit_config(dir, |c| {
            c.as_object_mut().unwrap().remove("hidden_size");
        })
    });
    assert!(matches!(missing, CheckpointError::MissingField { .. }));
    assert_names(&missing, &["`hidden_size`"]);
}

#[test]
fn corrupt_files_name_the_file() {
    let truncated = load_broken("mamba-tied", |dir| {
        let path = dir.join("model.safetensors");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    });
    assert!(matches!(truncated, CheckpointError::Safetensors { .. }));
    assert_names(&truncated, &["model.safetensors"]);

    let shard = "model-00002-of-00002.safetensors";
    let lost_shard = load_broken("mamba-untied-biases-sharded", |dir| {
        std::fs::remove_file(dir.join(shard)).unwrap()
    });
    assert_names(&lost_shard, &[shard]);

    let bad_json = load_broken("llama-mha-tied", |dir| {
        std::fs::write(dir.join("config.json"), "{ \"model_type\": ").unwrap()
    });
    assert!(matches!(bad_json, CheckpointError::Json { .. }));
    assert_names(&bad_json, &["config.json"]);

    let no_weights = load_broken("llama-mha-tied", |dir| {
        std::fs::rename(
            dir.join("model.safetensors"),
            dir.join("weights.safetensors"),
        )
        .unwrap()
    });
    assert!(matches!(no_weights, CheckpointError::NoWeights { .. }));
    assert_names(&no_weights, &["weights.safetensors"]);
}

#[test]
fn a_shard_index_that_disagrees_with_its_shards_is_named() {
    let error = load_broken("mamba-untied-biases-sharded", |dir| {
        edit_tensors(dir, "model-00001-of-00002.safetensors", |t| {
            t.retain(|(n, _)| n != "backbone.embeddings.weight")
        })
    });
    assert!(
        matches!(error, CheckpointError::NotInShard { .. }),
        "{error}"
    );
    assert_names(&error, &["backbone.embeddings.weight"]);
}
