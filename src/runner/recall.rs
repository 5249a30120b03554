//! A recall run, in its own process: train the model on the task at the training length, then
//! evaluate it at every `eval_seq_len`, shortest first. The outcome so far is handed to `save`
//! after training and after each length, so that a run killed at 2^20 tokens (out of memory,
//! out of time) still reports every length it finished.

use super::execute::{failure_status, guarded};
use crate::models::lm::{LanguageModel, Mode};
use crate::results::Status;
use crate::spec::RunSpec;
use crate::train::eval::{evaluate_within, mode_at, Accuracy, Deadline, EvalError, EvalSet};
use crate::train::trainer::{train, CurvePoint};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;
use tch::{nn, Device};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trained {
    pub steps: i64,
    pub final_loss: f64,
    pub stopped_early: bool,
    /// The first evaluation step whose held-out accuracy reached `target_accuracy`.
    #[serde(default)]
    pub steps_to_target: Option<i64>,
    /// The step a checkpoint of a killed process resumed training from, if one did.
    #[serde(default)]
    pub resumed_from: Option<i64>,
    pub curve: Vec<CurvePoint>,
    /// Seconds of training, over every process a resumed run has had.
    pub wall_s: f64,
}

/// The accuracy at one evaluation length, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluated {
    pub seq_len: i64,
    pub mode: Mode,
    pub status: Status,
    pub accuracy: Option<f64>,
    /// Correct predictions and scored positions behind `accuracy` (one position per sequence
    /// for single-target tasks).
    #[serde(default)]
    pub correct: Option<i64>,
    #[serde(default)]
    pub scored: Option<i64>,
    pub message: Option<String>,
    pub wall_s: f64,
}

impl Evaluated {
    /// The Wilson 95% interval of `accuracy`, when there is one.
    pub fn interval(&self) -> Option<(f64, f64)> {
        let (correct, scored) = (self.correct?, self.scored?);
        Some(Accuracy { correct, scored }.wilson_interval())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecallOutcome {
    pub trained: Trained,
    pub evaluated: Vec<Evaluated>,
}

/// Where a recall run keeps what outlives its process: its training checkpoint, which a
/// resumed sweep continues from, and, when asked to, the trained weights.
#[derive(Debug, Clone, Default)]
pub struct Keep<'a> {
    pub checkpoint: Option<&'a Path>,
    pub weights: Option<&'a Path>,
}

/// Trains and evaluates `spec`, continuing from `keep.checkpoint` if a killed process saved
/// one there; the trained weights go to `keep.weights` (safetensors) when given, `save` receives the outcome after training and after each length, `report` a line of
/// progress (loss, accuracy) at each evaluation. An error in training is returned as the
/// message; an error at one length is that length's status, and the longer lengths are still
/// tried.
pub fn run(
    spec: &RunSpec,
    device: Device,
    keep: &Keep,
    save: &mut dyn FnMut(&RecallOutcome),
    report: &mut dyn FnMut(&str),
) -> Result<RecallOutcome, String> {
    let recall = spec.recall.as_ref().ok_or("not a recall run")?;
    tch::manual_seed(spec.seed as i64);
    let vars = nn::VarStore::new(device);
    let model = LanguageModel::new(vars.root(), &spec.config);
    let trained = train(
        &model,
        &vars,
        &recall.task,
        spec.seq_len,
        &recall.train,
        spec.seed,
        keep.checkpoint,
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
            steps_to_target: trained.steps_to_target.map(|s| s as i64),
            resumed_from: trained.resumed_from.map(|s| s as i64),
            curve: trained.curve,
            wall_s: trained.wall_s,
        },
        evaluated: Vec::new(),
    };
    if let Some(path) = keep.weights {
        save_weights(&vars, path)?;
    }
    save(&outcome);
    let mut lengths = recall.eval_seq_len.clone();
    lengths.sort_unstable();
    // The first length that ran past `eval_timeout_s`: the longer ones would only take longer.
    let mut ran_over: Option<i64> = None;
    for seq_len in lengths {
        let mode = mode_at(spec.config.family(), seq_len);
        let start = Instant::now();
        let (status, accuracy, message) = match ran_over {
            Some(shorter) => (
                Status::Timeout,
                None,
                Some(format!(
                    "not evaluated: the shorter length {shorter} already ran past eval_timeout_s"
                )),
            ),
            None => {
                let set = EvalSet {
                    task: &recall.task,
                    seq_len,
                    batches: recall.train.eval_batches,
                    batch_size: recall.train.batch_size,
                    seed: spec.seed,
                };
                report(&format!("evaluating at L={seq_len} ({})", mode.name()));
                let deadline = recall.eval_timeout_s.map(Deadline::after);
                // A panic (out of memory, say) is caught as a message; an error is a status.
                let result = guarded(|| {
                    Ok(
                        evaluate_within(&model, &set, mode, device, deadline).map_err(
                            |e| match e {
                                EvalError::OutOfTime { .. } => (Status::Timeout, e.to_string()),
                                EvalError::Task(e) => (Status::Error, e.to_string()),
                            },
                        ),
                    )
                });
                match result {
                    Ok(Ok(acc)) => (Status::Ok, Some(acc), None),
                    Ok(Err((status, message))) => {
                        ran_over = (status == Status::Timeout).then_some(seq_len);
                        (status, None, Some(message))
                    }
                    Err(message) => (failure_status(&message), None, Some(message)),
                }
            }
        };
        outcome.evaluated.push(Evaluated {
            seq_len,
            mode,
            status,
            accuracy: accuracy.map(|a| a.value()),
            correct: accuracy.map(|a| a.correct),
            scored: accuracy.map(|a| a.scored),
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
