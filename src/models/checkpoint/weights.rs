//! The tensors of a checkpoint directory, found as transformers finds them: shards listed by
//! `model.safetensors.index.json`, else `model.safetensors`; then copied into a model's
//! variables by name.

use super::CheckpointError;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use tch::{nn, Tensor};

const INDEX_FILE: &str = "model.safetensors.index.json";
const SINGLE_FILE: &str = "model.safetensors";

/// Every tensor in the checkpoint, by name.
pub fn read(dir: &Path) -> Result<BTreeMap<String, Tensor>, CheckpointError> {
    let index_path = dir.join(INDEX_FILE);
    let mut tensors = BTreeMap::new();
    let mut origin: BTreeMap<String, PathBuf> = BTreeMap::new();
    let index = if index_path.exists() {
        Some(read_index(&index_path)?)
    } else {
        None
    };
    let files = match &index {
        Some(index) => index
            .weight_map
            .values()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|shard| dir.join(shard))
            .collect(),
        None if dir.join(SINGLE_FILE).is_file() => vec![dir.join(SINGLE_FILE)],
        None => return Err(no_weights(dir)),
    };
    for file in files {
        let named = Tensor::read_safetensors(&file).map_err(|e| CheckpointError::Safetensors {
            path: file.clone(),
            message: e.to_string(),
        })?;
        for (name, tensor) in named {
            if let Some(first) = origin.insert(name.clone(), file.clone()) {
                return Err(CheckpointError::DuplicateTensor {
                    name,
                    first,
                    second: file,
                });
            }
            tensors.insert(name, tensor);
        }
    }
    if let Some(index) = &index {
        for (name, shard) in &index.weight_map {
            if origin.get(name) != Some(&dir.join(shard)) {
                return Err(CheckpointError::NotInShard {
                    index: index_path,
                    name: name.clone(),
                    shard: shard.clone(),
                });
            }
        }
    }
    Ok(tensors)
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: BTreeMap<String, String>,
}

fn read_index(path: &Path) -> Result<ShardIndex, CheckpointError> {
    let text = std::fs::read_to_string(path).map_err(|source| CheckpointError::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| CheckpointError::Json {
        path: path.to_owned(),
        source,
    })
}

/// Explains what the directory holds instead of weights we can read.
fn no_weights(dir: &Path) -> CheckpointError {
    let mut others = Vec::new();
    let mut pickles = false;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        match Path::new(&name).extension().and_then(|e| e.to_str()) {
            Some("safetensors") => others.push(name),
            Some("bin" | "pt" | "pth") => pickles = true,
            _ => {}
        }
    }
    others.sort();
    let hint = if pickles {
        "; it has PyTorch pickle weights, which mvt does not read (they can run code): \
         convert them with `save_pretrained(dir, safe_serialization=True)`"
            .to_owned()
    } else if !others.is_empty() {
        format!(
            " named like transformers saves them; found {}",
            others.join(", ")
        )
    } else {
        String::new()
    };
    CheckpointError::NoWeights {
        dir: dir.to_owned(),
        hint,
    }
}

/// Copies `tensors` into `vars` by name, converting each to its variable's dtype and device.
/// Every variable must be found with its exact shape; every tensor must be used, except those
/// `ignorable` accepts (derived buffers, a tied head saved anyway).
pub fn copy_into(
    vars: &nn::VarStore,
    mut tensors: BTreeMap<String, Tensor>,
    ignorable: impl Fn(&str) -> bool,
) -> Result<(), CheckpointError> {
    let mut missing = Vec::new();
    let mut variables: Vec<_> = vars.variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| {
        for (name, var) in &variables {
            let Some(tensor) = tensors.remove(name) else {
                missing.push(name.clone());
                continue;
            };
            if tensor.size() != var.size() {
                return Err(CheckpointError::ShapeMismatch {
                    name: name.clone(),
                    expected: var.size(),
                    found: tensor.size(),
                });
            }
            var.shallow_clone()
                .copy_(&tensor.to_device(var.device()).to_kind(var.kind()));
        }
        Ok(())
    })?;
    if !missing.is_empty() {
        return Err(CheckpointError::MissingTensors { names: missing });
    }
    let unexpected: Vec<String> = tensors.into_keys().filter(|n| !ignorable(n)).collect();
    if !unexpected.is_empty() {
        return Err(CheckpointError::UnexpectedTensors { names: unexpected });
    }
    Ok(())
}
