//! What can be wrong with a checkpoint directory. Each error names the file, field or tensor at
//! fault, so that a user can fix the checkpoint or the config rather than guess.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read `{path}`: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("`{path}` is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },

    #[error("{path}: `{field}` is missing, and the model cannot be built without it")]
    MissingField { path: PathBuf, field: String },

    #[error("{path}: `{field}` = {value} is not supported; expected {expected}")]
    Unsupported {
        path: PathBuf,
        field: String,
        value: String,
        expected: String,
    },

    #[error(
        "{path}: unknown field(s) {}; mvt does not know whether they change the model's math, \
         so it will not guess (remove them if they do not)",
        quoted(fields)
    )]
    UnknownFields { path: PathBuf, fields: Vec<String> },

    #[error("`{dir}` holds neither `model.safetensors` nor `model.safetensors.index.json`{hint}")]
    NoWeights { dir: PathBuf, hint: String },

    #[error("`{path}` is not a readable safetensors file: {message}")]
    Safetensors { path: PathBuf, message: String },

    #[error("tensor `{name}` is stored twice, in `{first}` and in `{second}`")]
    DuplicateTensor {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },

    #[error("{index}: tensor `{name}` is mapped to `{shard}`, which does not hold it")]
    NotInShard {
        index: PathBuf,
        name: String,
        shard: String,
    },

    #[error(
        "the checkpoint lacks tensor(s) that config.json implies: {}; does config.json belong \
         to these weights?",
        quoted(names)
    )]
    MissingTensors { names: Vec<String> },

    #[error("tensor `{name}` has shape {found:?}, but config.json implies {expected:?}")]
    ShapeMismatch {
        name: String,
        expected: Vec<i64>,
        found: Vec<i64>,
    },

    #[error(
        "the checkpoint holds tensor(s) that config.json does not use: {}; {}",
        quoted(names),
        unused_hint(names)
    )]
    UnexpectedTensors { names: Vec<String> },
}

/// The config flags that decide whether tensors like `names` exist.
fn unused_hint(names: &[String]) -> &'static str {
    if names.iter().any(|n| n.ends_with(".bias")) {
        "is a bias flag wrong (`use_bias`, `use_conv_bias`, `attention_bias`, `mlp_bias`)?"
    } else if names.iter().any(|n| n == "lm_head.weight") {
        "is `tie_word_embeddings` wrong?"
    } else {
        "does config.json belong to these weights?"
    }
}

/// `a`, `b`, … and N more: long lists stay readable.
fn quoted(names: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut text = names
        .iter()
        .take(SHOWN)
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}
