//! The training loop: fresh batches every step from training seeds, AdamW (or Adam) with
//! warm-up and a constant or cosine schedule, gradient clipping, evaluation every `eval_every`
//! steps on evaluation seeds, and early stopping at a target accuracy. Deterministic on the CPU
//! for a given seed: the data, the initialisation and every kernel are.

use super::checkpoint::{self, CheckpointError, Standing};
use super::eval::{evaluate, mode_at, EvalSet, LengthAccuracy};
use super::optimizer::Adam;
pub use super::optimizer::Optimizer;
use super::schedule::{learning_rate, Decay};
use crate::models::lm::{LanguageModel, Mode};
use crate::tasks::{train_seed, Batch, Split, Task, TaskError, IGNORE};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;
use tch::{nn, Kind, Tensor};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub steps: usize,
    pub lr: f64,
    #[serde(default = "defaults::batch_size")]
    pub batch_size: usize,
    #[serde(default)]
    pub optimizer: Optimizer,
    #[serde(default = "defaults::weight_decay")]
    pub weight_decay: f64,
    #[serde(default)]
    pub warmup_steps: usize,
    #[serde(default)]
    pub decay: Decay,
    /// Clip the gradients' global norm to this; `None` to not clip.
    #[serde(default = "defaults::grad_clip")]
    pub grad_clip: Option<f64>,
    #[serde(default = "defaults::eval_every")]
    pub eval_every: usize,
    /// Batches of `batch_size` held-out examples per evaluation.
    #[serde(default = "defaults::eval_batches")]
    pub eval_batches: usize,
    /// Stop once an evaluation reaches this accuracy (and `target_loss`, if set).
    #[serde(default)]
    pub target_accuracy: Option<f64>,
    /// Stop once the targets are met; `false` trains the whole budget whatever the score, and
    /// the targets only mark `steps_to_target` (a fixed budget per run, issue #30).
    #[serde(default = "defaults::yes", skip_serializing_if = "defaults::is_yes")]
    pub stop_at_target: bool,
    /// Stop only once the mean training loss since the previous evaluation is at most this
    /// too. Every training batch is fresh, so that mean is a held-out loss over `eval_every ×
    /// batch_size` sequences, a far finer gauge than the evaluation's accuracy: a perfect
    /// score on 48 sequences can come at a loss of 0.2, while mamba issue #62 trained
    /// induction heads on to near-zero loss before they extrapolated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_loss: Option<f64>,
    /// Seconds between checkpoints of a run's training (taken at evaluation steps), which a
    /// killed run resumes from; 0 saves at every evaluation. It changes no result.
    #[serde(
        default = "defaults::checkpoint_every_s",
        skip_serializing_if = "defaults::is_checkpoint_every_s"
    )]
    pub checkpoint_every_s: f64,
    /// Extrapolation measured as training goes on, not only at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reach: Option<ReachConfig>,
    /// Keep the trained weights: `mvt run` writes `weights/RUN_ID.safetensors` beside the
    /// results, with the run spec (model configuration included) as `RUN_ID.spec.json`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub save_weights: bool,
}

/// Held-out accuracy at lengths beyond the training length, measured at chosen steps, so that
/// one run shows whether its reach grows with training (mamba issue #62 and the paper trained
/// 40K-200K steps) instead of one run per budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReachConfig {
    /// Steps at which to measure, each an evaluation step (a multiple of `eval_every`).
    pub at_steps: Vec<usize>,
    /// Lengths to measure at.
    pub seq_len: Vec<i64>,
    /// Batches of `batch_size` held-out sequences per length: the first batches of the final
    /// evaluation's, so a step's score and the final one are on the same sequences.
    pub batches: usize,
    /// Measured only at a step whose held-out accuracy at the training length is at least
    /// this: a model that has not learned the task has no reach, and a 2^20-token evaluation
    /// costs about as much as 1,000 training steps.
    #[serde(default = "defaults::reach_from_accuracy")]
    pub from_accuracy: f64,
}

mod defaults {
    pub fn yes() -> bool {
        true
    }
    pub fn is_yes(value: &bool) -> bool {
        *value
    }
    pub fn reach_from_accuracy() -> f64 {
        0.9
    }
    pub fn batch_size() -> usize {
        64
    }
    pub fn weight_decay() -> f64 {
        0.1
    }
    pub fn grad_clip() -> Option<f64> {
        Some(1.0)
    }
    pub fn eval_every() -> usize {
        100
    }
    pub fn eval_batches() -> usize {
        4
    }
    /// Every two minutes: a kill loses at most that much, and a d-64 Mamba's save takes
    /// milliseconds.
    pub fn checkpoint_every_s() -> f64 {
        120.0
    }
    pub fn is_checkpoint_every_s(value: &f64) -> bool {
        *value == checkpoint_every_s()
    }
}

/// One line of `curves.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Steps taken so far.
    pub step: usize,
    /// Mean training loss over the steps since the previous point.
    pub loss: f64,
    pub lr: f64,
    /// Accuracy on held-out examples at the training length, when evaluated at this step.
    pub eval_accuracy: Option<f64>,
    /// Accuracy at longer lengths, at the steps `reach` names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reach: Vec<LengthAccuracy>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Trained {
    pub curve: Vec<CurvePoint>,
    pub steps: usize,
    pub final_loss: f64,
    pub eval_accuracy: Option<f64>,
    pub stopped_early: bool,
    /// The first evaluation step at which held-out accuracy reached `target_accuracy`.
    pub steps_to_target: Option<usize>,
    /// Seconds of training, over every process a resumed run has had.
    pub wall_s: f64,
    /// The step a checkpoint resumed training from, if one did.
    pub resumed_from: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Task(#[from] TaskError),
    #[error("a training step failed: {0}")]
    Step(#[from] tch::TchError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// Cross-entropy over the scored positions only.
pub fn loss(logits: &Tensor, targets: &Tensor) -> Tensor {
    let vocab = logits.size()[2];
    logits
        .to_kind(Kind::Float)
        .reshape([-1, vocab])
        .cross_entropy_loss::<Tensor>(
            &targets.reshape([-1]),
            None,
            tch::Reduction::Mean,
            IGNORE,
            0.0,
        )
}

/// One optimisation step on `batch` (on the model's device): the forward pass, the loss at
/// the scored positions, the backward pass and Adam's update at rate `lr`, the gradients
/// clipped to `clip`. Returns the loss before the update.
pub fn train_step(
    model: &LanguageModel,
    optimizer: &mut Adam,
    batch: &Batch,
    lr: f64,
    clip: Option<f64>,
) -> Result<f64, tch::TchError> {
    let logits = model.logits(&batch.inputs, Mode::Parallel);
    let loss = loss(&logits, &batch.targets);
    optimizer.step(&loss, lr, clip)?;
    Ok(loss.double_value(&[]))
}

/// Held-out accuracy at each of `reach.seq_len`, in the mode that keeps the model's memory
/// bounded at that length.
fn measure_reach(
    model: &LanguageModel,
    task: &Task,
    reach: &ReachConfig,
    batch_size: usize,
    seed: u64,
    device: tch::Device,
) -> Result<Vec<LengthAccuracy>, TaskError> {
    reach
        .seq_len
        .iter()
        .map(|&seq_len| {
            let set = EvalSet {
                task,
                seq_len,
                batches: reach.batches,
                batch_size,
                seed,
            };
            let mode = mode_at(model.family(), seq_len);
            Ok(LengthAccuracy::new(
                seq_len,
                evaluate(model, &set, mode, device)?,
            ))
        })
        .collect()
}

/// Whether an evaluation meets every target the configuration sets (and it sets one).
fn targets_met(cfg: &TrainConfig, accuracy: f64, loss: f64) -> bool {
    let accuracy_met = cfg.target_accuracy.map(|target| accuracy >= target);
    let loss_met = cfg.target_loss.map(|target| loss <= target);
    match (accuracy_met, loss_met) {
        (None, None) => false,
        (a, l) => a.unwrap_or(true) && l.unwrap_or(true),
    }
}

/// Trains `model` (whose weights live in `vars`) on `task` at `seq_len`. With a `checkpoint`
/// folder, training saves itself there every `checkpoint_every_s` and, if the folder holds a
/// save, starts from it instead of step 0. `report` sees every curve point as it is made (for
/// a progress bar).
#[allow(clippy::too_many_arguments)]
pub fn train(
    model: &LanguageModel,
    vars: &nn::VarStore,
    task: &Task,
    seq_len: i64,
    cfg: &TrainConfig,
    seed: u64,
    checkpoint: Option<&Path>,
    mut report: impl FnMut(&CurvePoint),
) -> Result<Trained, TrainError> {
    let device = vars.device();
    let mut optimizer = Adam::new(vars, cfg.optimizer, cfg.weight_decay);
    let restored = match checkpoint {
        Some(dir) => checkpoint::load(dir, vars, &mut optimizer)?,
        None => None,
    };
    let resumed_from = restored.as_ref().map(|s| s.step);
    let mut standing = restored.unwrap_or(Standing {
        step: 0,
        curve: Vec::new(),
        steps_to_target: None,
        done: cfg.steps == 0,
        wall_s: 0.0,
        tensors: String::new(),
    });
    let started = Instant::now();
    let prior_wall_s = standing.wall_s;
    let mut last_save = Instant::now();
    let (mut since, mut sum) = (0usize, 0.0);
    while !standing.done {
        let step = standing.step;
        let lr = learning_rate(cfg.lr, step, cfg.steps, cfg.warmup_steps, cfg.decay);
        let batch = task.batch(
            Split::Train,
            seq_len,
            cfg.batch_size,
            train_seed(seed, step as u64),
        )?;
        let batch = Batch {
            inputs: batch.inputs.to_device(device),
            targets: batch.targets.to_device(device),
        };
        sum += train_step(model, &mut optimizer, &batch, lr, cfg.grad_clip)?;
        since += 1;
        standing.step += 1;
        let step = standing.step;
        if step % cfg.eval_every.max(1) != 0 && step < cfg.steps {
            continue;
        }
        let held_out = EvalSet {
            task,
            seq_len,
            batches: cfg.eval_batches,
            batch_size: cfg.batch_size,
            seed,
        };
        let accuracy = evaluate(model, &held_out, Mode::Parallel, device)?.value();
        let reach = match &cfg.reach {
            Some(reach) if reach.at_steps.contains(&step) && accuracy >= reach.from_accuracy => {
                measure_reach(model, task, reach, cfg.batch_size, seed, device)?
            }
            _ => Vec::new(),
        };
        let point = CurvePoint {
            step,
            loss: sum / since as f64,
            lr,
            eval_accuracy: Some(accuracy),
            reach,
        };
        report(&point);
        let met = targets_met(cfg, accuracy, point.loss);
        standing.curve.push(point);
        (since, sum) = (0, 0.0);
        let reached = cfg.target_accuracy.is_some_and(|target| accuracy >= target);
        if reached && standing.steps_to_target.is_none() {
            standing.steps_to_target = Some(step);
        }
        standing.done = (met && cfg.stop_at_target) || step >= cfg.steps;
        let due = last_save.elapsed().as_secs_f64() >= cfg.checkpoint_every_s;
        if let Some(dir) = checkpoint.filter(|_| due || standing.done) {
            standing.wall_s = prior_wall_s + started.elapsed().as_secs_f64();
            standing.tensors = checkpoint::tensors_file(step);
            checkpoint::save(dir, vars, &optimizer, &standing)?;
            last_save = Instant::now();
        }
    }
    let last = standing.curve.last();
    Ok(Trained {
        final_loss: last.map_or(f64::NAN, |p| p.loss),
        eval_accuracy: last.and_then(|p| p.eval_accuracy),
        steps: standing.step,
        stopped_early: standing.step < cfg.steps,
        steps_to_target: standing.steps_to_target,
        wall_s: prior_wall_s + started.elapsed().as_secs_f64(),
        resumed_from,
        curve: standing.curve,
    })
}
