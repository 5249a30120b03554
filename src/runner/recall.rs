//! A recall run, in its own process: train the model on the task at the training length, then
//! evaluate it at every `eval_seq_len`, shortest first. The outcome so far is handed to `save`
//! after training and after each length, so that a run killed at 2^20 tokens (out of memory,
//! out of time) still reports every length it finished.

use super::execute::{failure_status, guarded};
use crate::models::lm::{LanguageModel, Mode};
use crate::models::Family;
use crate::results::Status;
use crate::spec::RunSpec;
use crate::train::eval::{evaluate, EvalSet};
use crate::train::trainer::{train, CurvePoint};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;
use tch::{nn, Device};

/// From this length on, Mamba evaluates in chunked mode: its fixed-size state carried from
/// chunk to chunk keeps memory O(1) in the length, where parallel mode would hold
/// (batch, L, d_inner) activations.
pub const MAMBA_CHUNKED_FROM: i64 = 8192;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trained {
    pub steps: i64,
    pub final_loss: f64,
    pub stopped_early: bool,
    pub curve: Vec<CurvePoint>,
    pub wall_s: f64,
}

/// The accuracy at one evaluation length, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluated {
    pub seq_len: i64,
    pub mode: Mode,
    pub status: Status,
    pub accuracy: Option<f64>,
    pub message: Option<String>,
    pub wall_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecallOutcome {
    pub trained: Trained,
    pub evaluated: Vec<Evaluated>,
}

/// Trains and evaluates `spec`; the trained weights go to `weights` (safetensors) when given,
/// `save` receives the outcome after training and after each length, `report` a line of
/// progress (loss, accuracy) at each evaluation. An error in training is returned as the
/// message; an error at one length is that length's status, and the longer lengths are still
/// tried.
pub fn run(
    spec: &RunSpec,
    device: Device,
    weights: Option<&Path>,
    save: &mut dyn FnMut(&RecallOutcome),
    report: &mut dyn FnMut(&str),
) -> Result<RecallOutcome, String> {
    let recall = spec.recall.as_ref().ok_or("not a recall run")?;
    tch::manual_seed(spec.seed as i64);
    let vars = nn::VarStore::new(device);
    let model = LanguageModel::new(vars.root(), &spec.config);
    let start = Instant::now();
    let trained = train(
        &model,
        &vars,
        &recall.task,
        spec.seq_len,
        &recall.train,
        spec.seed,
        |point| {
            report(&format!(
                "step {}/{}, loss {:.4}, accuracy {:.3}",
                point.step,
                recall.train.steps,
                point.loss,
                point.eval_accuracy.unwrap_or(f64::NAN)
            ))
        },
    )
    .map_err(|e| e.to_string())?;
    let mut outcome = RecallOutcome {
        trained: Trained {
            steps: trained.steps as i64,
            final_loss: trained.final_loss,
            stopped_early: trained.stopped_early,
            curve: trained.curve,
            wall_s: start.elapsed().as_secs_f64(),
        },
        evaluated: Vec::new(),
    };
    if let Some(path) = weights {
        save_weights(&vars, path)?;
    }
    save(&outcome);
    let mut lengths = recall.eval_seq_len.clone();
    lengths.sort_unstable();
    for seq_len in lengths {
        let mode = match spec.config.family() {
            Family::Mamba if seq_len >= MAMBA_CHUNKED_FROM => Mode::Chunked,
            _ => Mode::Parallel,
        };
        let set = EvalSet {
            task: &recall.task,
            seq_len,
            batches: recall.train.eval_batches,
            batch_size: recall.train.batch_size,
            seed: spec.seed,
        };
        report(&format!("evaluating at L={seq_len} ({})", mode.name()));
        let start = Instant::now();
        let result = guarded(|| evaluate(&model, &set, mode, device).map_err(|e| e.to_string()));
        let (status, accuracy, message) = match result {
            Ok(acc) => (Status::Ok, Some(acc.value()), None),
            Err(message) => (failure_status(&message), None, Some(message)),
        };
        outcome.evaluated.push(Evaluated {
            seq_len,
            mode,
            status,
            accuracy,
            message,
            wall_s: start.elapsed().as_secs_f64(),
        });
        save(&outcome);
    }
    Ok(outcome)
}

/// Writes the weights through a temporary file, so that a run killed while saving leaves no
/// truncated checkpoint under the final name.
fn save_weights(vars: &nn::VarStore, path: &Path) -> Result<(), String> {
    let partial = path.with_extension("partial.safetensors");
    vars.save(&partial)
        .and_then(|()| std::fs::rename(&partial, path).map_err(tch::TchError::from))
        .map_err(|e| {
            format!(
                "cannot save the trained weights to `{}`: {e}",
                path.display()
            )
        })
}
