//! The tensors of a checkpoint directory, found as transformers finds them: shards listed by
//! `model.safetensors.index.json`, else `model.safetensors`; then copied into a model's
//! variables by name. The files are memory-mapped and each tensor is copied once, from the
//! page cache straight into its variable: reading a file into a buffer, making tensors of it
//! and copying those again cost three passes over the weights.

use super::CheckpointError;
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use tch::{nn, Device, Kind, Tensor};

const INDEX_FILE: &str = "model.safetensors.index.json";
const SINGLE_FILE: &str = "model.safetensors";

/// A checkpoint's safetensors files, mapped, each checked to parse and to hold its own
/// tensors only.
pub struct Weights {
    files: Vec<(PathBuf, Mmap)>,
}

/// Maps every weight file of `dir`, checking names against each other and the shard index.
pub fn read(dir: &Path) -> Result<Weights, CheckpointError> {
    let index_path = dir.join(INDEX_FILE);
    let index = if index_path.exists() {
        Some(read_index(&index_path)?)
    } else {
        None
    };
    let paths: Vec<PathBuf> = match &index {
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
    let mut origin: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut files = Vec::new();
    for path in paths {
        let map = map(&path)?;
        for (name, _) in parse(&path, &map)?.tensors() {
            if let Some(first) = origin.insert(name.clone(), path.clone()) {
                return Err(CheckpointError::DuplicateTensor {
                    name,
                    first,
                    second: path,
                });
            }
        }
        files.push((path, map));
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
    Ok(Weights { files })
}

fn map(path: &Path) -> Result<Mmap, CheckpointError> {
    let file = std::fs::File::open(path).map_err(|source| CheckpointError::Io {
        path: path.to_owned(),
        source,
    })?;
    // SAFETY: the map is read-only and lives as long as the Weights; a checkpoint rewritten
    // while it loads is the one hazard, as it is for every reader of safetensors files.
    unsafe { Mmap::map(&file) }.map_err(|source| CheckpointError::Io {
        path: path.to_owned(),
        source,
    })
}

fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<SafeTensors<'a>, CheckpointError> {
    SafeTensors::deserialize(bytes).map_err(|e| CheckpointError::Safetensors {
        path: path.to_owned(),
        message: format!("{e:?}"),
    })
}

/// The libtorch kind of a stored dtype, where mvt reads it.
fn kind_of(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F64 => Kind::Double,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::I16 => Kind::Int16,
        Dtype::I8 => Kind::Int8,
        Dtype::U8 => Kind::Uint8,
        Dtype::BOOL => Kind::Bool,
        _ => return None,
    })
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

/// Copies the tensors of `weights` into `vars` by name, converting each to its variable's
/// dtype and device. Every variable must be found with its exact shape; every tensor must be
/// used, except those `ignorable` accepts (derived buffers, a tied head saved anyway).
pub fn copy_into(
    vars: &nn::VarStore,
    weights: &Weights,
    ignorable: impl Fn(&str) -> bool,
) -> Result<(), CheckpointError> {
    let parsed = weights
        .files
        .iter()
        .map(|(path, map)| Ok((path, parse(path, map)?)))
        .collect::<Result<Vec<_>, CheckpointError>>()?;
    let mut stored = BTreeMap::new();
    for (path, file) in &parsed {
        for (name, view) in file.tensors() {
            stored.insert(name, (*path, view));
        }
    }
    let mut missing = Vec::new();
    let mut variables: Vec<_> = vars.variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| {
        for (name, var) in &variables {
            let Some((path, view)) = stored.remove(name) else {
                missing.push(name.clone());
                continue;
            };
            let shape: Vec<i64> = view.shape().iter().map(|&n| n as i64).collect();
            if shape != var.size() {
                return Err(CheckpointError::ShapeMismatch {
                    name: name.clone(),
                    expected: var.size(),
                    found: shape,
                });
            }
            let Some(kind) = kind_of(view.dtype()) else {
                return Err(CheckpointError::Safetensors {
                    path: path.clone(),
                    message: format!(
                        "tensor `{name}` is stored as {:?}, which mvt does not read",
                        view.dtype()
                    ),
                });
            };
            let data = view.data();
            // A view of the mapped bytes, where they are aligned for their kind, so that the
            // one copy is the copy into the variable; otherwise a copy of them first.
            let source = if (data.as_ptr() as usize).is_multiple_of(kind.elt_size_in_bytes()) {
                let strides = contiguous_strides(&shape);
                // SAFETY: `data` holds the tensor's bytes, aligned, and outlives this view,
                // which copy_ reads before the loop moves on.
                unsafe { Tensor::from_blob(data.as_ptr(), &shape, &strides, kind, Device::Cpu) }
            } else {
                Tensor::from_data_size(data, &shape, kind)
            };
            var.shallow_clone()
                .copy_(&source.to_device(var.device()).to_kind(var.kind()));
        }
        Ok(())
    })?;
    if !missing.is_empty() {
        return Err(CheckpointError::MissingTensors { names: missing });
    }
    let unexpected: Vec<String> = stored.into_keys().filter(|n| !ignorable(n)).collect();
    if !unexpected.is_empty() {
        return Err(CheckpointError::UnexpectedTensors { names: unexpected });
    }
    Ok(())
}

/// Row-major strides of `shape`, in elements.
fn contiguous_strides(shape: &[i64]) -> Vec<i64> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A safetensors file whose f32 tensor starts 6 bytes into the data, after three bf16
    /// values: misaligned for its kind, as files with odd-sized half-precision tensors are.
    fn misaligned_file(dir: &Path) {
        let a: Vec<u8> = [1.0f32, 2.0, 3.0]
            .iter()
            .flat_map(|v| (v.to_bits() >> 16).to_le_bytes()[..2].to_vec()) // bf16: the top half
            .collect();
        let b: Vec<u8> = [4.5f32, -1.25]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let mut header = String::from(
            r#"{"a":{"dtype":"BF16","shape":[3],"data_offsets":[0,6]},"b":{"dtype":"F32","shape":[2],"data_offsets":[6,14]}}"#,
        );
        while (8 + header.len()) % 8 != 0 {
            header.push(' ');
        }
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header.as_bytes());
        bytes.extend(a);
        bytes.extend(b);
        std::fs::write(dir.join(SINGLE_FILE), bytes).unwrap();
    }

    #[test]
    fn tensors_are_copied_whatever_their_alignment_and_converted_to_the_variables_kind() {
        let dir = tempfile::tempdir().unwrap();
        misaligned_file(dir.path());
        let weights = read(dir.path()).unwrap();
        let vars = nn::VarStore::new(Device::Cpu);
        let a = vars.root().var("a", &[3], nn::Init::Const(0.0));
        let b = vars.root().var("b", &[2], nn::Init::Const(0.0));
        copy_into(&vars, &weights, |_| false).unwrap();
        assert_eq!(Vec::<f32>::try_from(&a).unwrap(), [1.0, 2.0, 3.0]);
        assert_eq!(Vec::<f32>::try_from(&b).unwrap(), [4.5, -1.25]);
    }

    #[test]
    fn strides_are_row_major() {
        assert_eq!(contiguous_strides(&[2, 3, 4]), [12, 4, 1]);
        assert_eq!(contiguous_strides(&[5]), [1]);
        assert!(contiguous_strides(&[]).is_empty());
    }
}
