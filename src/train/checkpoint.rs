//! A training run's checkpoint: the weights, the optimizer's moments and where the run stood,
//! so that a killed run continues from its last save rather than from step 0, and continues
//! its curve to the last bit (on the CPU).
//!
//! A checkpoint is a folder holding `checkpoint.json` and the tensors it names,
//! `step-N.safetensors`. The tensors are written first and the JSON replaces the old one
//! atomically after, so a kill at any moment leaves either the previous checkpoint or the new
//! one, whole. Saves happen only at evaluation steps, where the loss accumulated since the last
//! curve point is empty, so nothing but the curve itself carries over.

use super::optimizer::{Adam, OptimizerError};
use super::trainer::CurvePoint;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{nn, TchError, Tensor};

const INDEX: &str = "checkpoint.json";
/// Key prefix of the model's variables among a checkpoint's tensors.
const MODEL: &str = "model.";

/// Where a run stood at its last save.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standing {
    /// Steps taken.
    pub step: usize,
    pub curve: Vec<CurvePoint>,
    /// The first evaluation step whose accuracy reached the target, if one has.
    pub steps_to_target: Option<usize>,
    /// Training is over (the budget spent or the target reached): a resumed run goes straight
    /// to evaluation.
    pub done: bool,
    /// Seconds of training so far, over every process the run has had.
    pub wall_s: f64,
    /// The tensors' file, in the checkpoint's folder.
    pub tensors: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("checkpoint `{}` is not a checkpoint index: {source}", path.display())]
    Index {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("checkpoint `{}`: {source}", path.display())]
    Tensors { path: PathBuf, source: TchError },
    #[error("checkpoint `{}` has no tensor for the model's `{name}`", path.display())]
    MissingVariable { path: PathBuf, name: String },
    #[error("checkpoint `{}`: {source}", path.display())]
    Optimizer {
        path: PathBuf,
        source: OptimizerError,
    },
}

/// Saves the model in `vars`, the optimizer and `standing` into `dir`, then deletes the
/// tensors of the checkpoint it replaces.
pub fn save(
    dir: &Path,
    vars: &nn::VarStore,
    optimizer: &Adam,
    standing: &Standing,
) -> Result<(), CheckpointError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| CheckpointError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let previous = read_index(dir).ok().flatten();
    let tensors = dir.join(&standing.tensors);
    let mut named: Vec<(String, Tensor)> = vars
        .variables()
        .into_iter()
        .map(|(name, t)| (format!("{MODEL}{name}"), t))
        .collect();
    named.extend(optimizer.state());
    let partial = tensors.with_extension("partial");
    Tensor::write_safetensors(&named, &partial).map_err(|source| CheckpointError::Tensors {
        path: partial.clone(),
        source,
    })?;
    std::fs::rename(&partial, &tensors).map_err(io(&tensors))?;
    let index = dir.join(INDEX);
    let json = serde_json::to_vec_pretty(standing).expect("a standing serialises");
    crate::atomic_file::write(&index, &json).map_err(io(&index))?;
    if let Some(old) = previous.filter(|old| old.tensors != standing.tensors) {
        let _ = std::fs::remove_file(dir.join(old.tensors));
    }
    Ok(())
}

/// Loads the checkpoint in `dir` into `vars` and `optimizer` and returns where the run stood;
/// `None` when `dir` holds none.
pub fn load(
    dir: &Path,
    vars: &nn::VarStore,
    optimizer: &mut Adam,
) -> Result<Option<Standing>, CheckpointError> {
    let Some(standing) = read_index(dir)? else {
        return Ok(None);
    };
    let path = dir.join(&standing.tensors);
    let tensors: HashMap<String, Tensor> = Tensor::read_safetensors(&path)
        .map_err(|source| CheckpointError::Tensors {
            path: path.clone(),
            source,
        })?
        .into_iter()
        .collect();
    tch::no_grad(|| {
        for (name, var) in vars.variables() {
            let saved = tensors.get(&format!("{MODEL}{name}")).ok_or_else(|| {
                CheckpointError::MissingVariable {
                    path: path.clone(),
                    name: name.clone(),
                }
            })?;
            var.shallow_clone()
                .f_copy_(saved)
                .map_err(|source| CheckpointError::Tensors {
                    path: path.clone(),
                    source,
                })?;
        }
        Ok::<(), CheckpointError>(())
    })?;
    optimizer
        .restore(&tensors)
        .map_err(|source| CheckpointError::Optimizer {
            path: path.clone(),
            source,
        })?;
    Ok(Some(standing))
}

/// The tensors' file name of a save at `step`.
pub fn tensors_file(step: usize) -> String {
    format!("step-{step}.safetensors")
}

/// Deletes the checkpoint in `dir`, once its run's rows are saved.
pub fn remove(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

fn read_index(dir: &Path) -> Result<Option<Standing>, CheckpointError> {
    let path = dir.join(INDEX);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(CheckpointError::Io { path, source }),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|source| CheckpointError::Index { path, source })
}
