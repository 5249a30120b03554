//! The training loop: fresh batches every step from training seeds, AdamW (or Adam) with
//! warm-up and a constant or cosine schedule, gradient clipping, evaluation every `eval_every`
//! steps on evaluation seeds, and early stopping at a target accuracy. Deterministic on the CPU
//! for a given seed: the data, the initialisation and every kernel are.

use super::eval::{evaluate, EvalSet};
use super::schedule::{learning_rate, Decay};
use crate::models::lm::{LanguageModel, Mode};
use crate::tasks::{train_seed, Split, Task, TaskError, IGNORE};
use serde::{Deserialize, Serialize};
use tch::{nn, nn::OptimizerConfig, Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Optimizer {
    #[default]
    AdamW,
    Adam,
}

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
    /// Stop once an evaluation reaches this accuracy.
    #[serde(default)]
    pub target_accuracy: Option<f64>,
    /// Keep the trained weights: `mvt run` writes `weights/RUN_ID.safetensors` beside the
    /// results, with the run spec (model configuration included) as `RUN_ID.spec.json`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub save_weights: bool,
}

mod defaults {
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
}

#[derive(Debug, Clone, PartialEq)]
pub struct Trained {
    pub curve: Vec<CurvePoint>,
    pub steps: usize,
    pub final_loss: f64,
    pub eval_accuracy: Option<f64>,
    pub stopped_early: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Task(#[from] TaskError),
    #[error("cannot build the optimizer: {0}")]
    Optimizer(#[from] tch::TchError),
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

/// Trains `model` (whose weights live in `vars`) on `task` at `seq_len`. `report` sees every
/// curve point as it is made (for a progress bar).
pub fn train(
    model: &LanguageModel,
    vars: &nn::VarStore,
    task: &Task,
    seq_len: i64,
    cfg: &TrainConfig,
    seed: u64,
    mut report: impl FnMut(&CurvePoint),
) -> Result<Trained, TrainError> {
    let device = vars.device();
    let mut optimizer = match cfg.optimizer {
        Optimizer::AdamW => nn::AdamW {
            wd: cfg.weight_decay,
            ..Default::default()
        }
        .build(vars, cfg.lr)?,
        Optimizer::Adam => nn::Adam {
            wd: cfg.weight_decay,
            ..Default::default()
        }
        .build(vars, cfg.lr)?,
    };
    let mut curve = Vec::new();
    let (mut since, mut sum) = (0usize, 0.0);
    let mut last_eval = None;
    let mut stopped_early = false;
    let mut step = 0;
    while step < cfg.steps {
        let lr = learning_rate(cfg.lr, step, cfg.steps, cfg.warmup_steps, cfg.decay);
        optimizer.set_lr(lr);
        let batch = task.batch(
            Split::Train,
            seq_len,
            cfg.batch_size,
            train_seed(seed, step as u64),
        )?;
        let logits = model.logits(&batch.inputs.to_device(device), Mode::Parallel);
        let loss = loss(&logits, &batch.targets.to_device(device));
        match cfg.grad_clip {
            Some(max) => optimizer.backward_step_clip_norm(&loss, max),
            None => optimizer.backward_step(&loss),
        }
        sum += loss.double_value(&[]);
        since += 1;
        step += 1;
        if step % cfg.eval_every.max(1) == 0 || step == cfg.steps {
            let held_out = EvalSet {
                task,
                seq_len,
                batches: cfg.eval_batches,
                batch_size: cfg.batch_size,
                seed,
            };
            let acc = evaluate(model, &held_out, Mode::Parallel, device)?.value();
            let point = CurvePoint {
                step,
                loss: sum / since as f64,
                lr,
                eval_accuracy: Some(acc),
            };
            report(&point);
            curve.push(point);
            (since, sum) = (0, 0.0);
            last_eval = Some(acc);
            if cfg.target_accuracy.is_some_and(|target| acc >= target) {
                stopped_early = step < cfg.steps;
                break;
            }
        }
    }
    Ok(Trained {
        final_loss: curve.last().map_or(f64::NAN, |p| p.loss),
        steps: step,
        eval_accuracy: last_eval,
        stopped_early,
        curve,
    })
}
