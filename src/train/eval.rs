//! Accuracy at the scored positions only, in parallel, step or chunked mode. Step and chunked
//! modes carry Mamba's fixed-size state (or the Transformer's KV cache) from token to token or
//! chunk to chunk and keep only the current predictions, so Mamba's memory stays O(1) in the
//! length: that is how a model trained at 256 tokens is evaluated at 2^20.

use crate::models::lm::{LanguageModel, Mode, CHUNK_TOKENS};
use crate::models::Family;
use crate::tasks::{eval_seed, Batch, Split, Task, TaskError, IGNORE};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use tch::{Kind, Tensor};

/// From this length on, the SSM families and hybrids evaluate in chunked mode: a fixed-size
/// state carried from chunk to chunk keeps memory O(1) in the length, where parallel mode
/// would hold (batch, L, d_inner) activations (a hybrid's attention layers still keep their
/// KV cache).
pub const CHUNKED_FROM: i64 = 8192;

/// How `family` is evaluated at `seq_len`: chunked for the SSMs and hybrids from
/// [`CHUNKED_FROM`], in parallel otherwise (the Transformer's KV cache grows with the length
/// either way, and parallel mode is its fastest).
pub fn mode_at(family: Family, seq_len: i64) -> Mode {
    match family {
        Family::Mamba | Family::Mamba2 | Family::Hybrid if seq_len >= CHUNKED_FROM => Mode::Chunked,
        _ => Mode::Parallel,
    }
}

/// Correct predictions over scored positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Accuracy {
    pub correct: i64,
    pub scored: i64,
}

/// z of a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

impl Accuracy {
    pub fn value(&self) -> f64 {
        if self.scored == 0 {
            0.0
        } else {
            self.correct as f64 / self.scored as f64
        }
    }

    /// The Wilson score 95% interval of the accuracy (Wilson 1927): unlike the normal
    /// approximation it stays inside [0, 1] and is not zero-width at 0 or n correct, which is
    /// where recall claims live (48 of 48 correct: 0.926 to 1). Each scored position counts
    /// as one trial; `(0, 1)` when nothing was scored.
    pub fn wilson_interval(&self) -> (f64, f64) {
        if self.scored == 0 {
            return (0.0, 1.0);
        }
        let n = self.scored as f64;
        let p = self.value();
        let z2 = Z95 * Z95;
        let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
        let half = Z95 / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
        ((centre - half).max(0.0), (centre + half).min(1.0))
    }
}

/// The accuracy at one evaluation length, as `curves.csv` records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LengthAccuracy {
    pub seq_len: i64,
    pub correct: i64,
    pub scored: i64,
}

impl LengthAccuracy {
    pub fn new(seq_len: i64, accuracy: Accuracy) -> Self {
        Self {
            seq_len,
            correct: accuracy.correct,
            scored: accuracy.scored,
        }
    }

    pub fn accuracy(&self) -> Accuracy {
        Accuracy {
            correct: self.correct,
            scored: self.scored,
        }
    }
}

impl std::ops::Add for Accuracy {
    type Output = Accuracy;

    fn add(self, other: Accuracy) -> Accuracy {
        Accuracy {
            correct: self.correct + other.correct,
            scored: self.scored + other.scored,
        }
    }
}

/// Held-out examples: `batches` batches of `batch_size` at `seq_len`, drawn from the
/// evaluation seeds of `seed` (disjoint from every training seed).
#[derive(Debug, Clone)]
pub struct EvalSet<'a> {
    pub task: &'a Task,
    pub seq_len: i64,
    pub batches: usize,
    pub batch_size: usize,
    pub seed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Task(#[from] TaskError),
    #[error(
        "ran past its {limit_s} s evaluation limit (eval_timeout_s) in batch {batch} of {batches}"
    )]
    OutOfTime {
        limit_s: f64,
        batch: usize,
        batches: usize,
    },
}

/// When an evaluation must stop: checked between batches and, in chunked mode, between chunks.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
    limit_s: f64,
}

impl Deadline {
    /// `limit_s` seconds from now.
    pub fn after(limit_s: f64) -> Self {
        Self {
            at: Instant::now() + Duration::from_secs_f64(limit_s.max(0.0)),
            limit_s,
        }
    }

    fn passed(&self) -> bool {
        Instant::now() >= self.at
    }
}

/// The accuracy of `model` on `set`, computed in `mode` on `device`.
pub fn evaluate(
    model: &LanguageModel,
    set: &EvalSet,
    mode: Mode,
    device: tch::Device,
) -> Result<Accuracy, TaskError> {
    evaluate_within(model, set, mode, device, None).map_err(|e| match e {
        EvalError::Task(e) => e,
        EvalError::OutOfTime { .. } => unreachable!("no deadline was set"),
    })
}

/// [`evaluate`], given up once `deadline` passes.
pub fn evaluate_within(
    model: &LanguageModel,
    set: &EvalSet,
    mode: Mode,
    device: tch::Device,
    deadline: Option<Deadline>,
) -> Result<Accuracy, EvalError> {
    let mut total = Accuracy::default();
    for i in 0..set.batches {
        let out_of_time = || EvalError::OutOfTime {
            limit_s: deadline.map_or(0.0, |d| d.limit_s),
            batch: i + 1,
            batches: set.batches,
        };
        if deadline.is_some_and(|d| d.passed()) {
            return Err(out_of_time());
        }
        let mut batch = set.task.batch(
            Split::Eval,
            set.seq_len,
            set.batch_size,
            eval_seed(set.seed, i as u64),
        )?;
        batch.inputs = batch.inputs.to_device(device);
        batch.targets = batch.targets.to_device(device);
        let counted = match mode {
            Mode::Chunked => tch::no_grad(|| chunkwise(model, &batch, deadline)),
            _ => Some(accuracy(model, &batch, mode)),
        };
        total = total + counted.ok_or_else(out_of_time)?;
    }
    Ok(total)
}

/// The accuracy of `model` on `batch` (inputs and targets on the model's device).
pub fn accuracy(model: &LanguageModel, batch: &Batch, mode: Mode) -> Accuracy {
    tch::no_grad(|| match mode {
        Mode::Parallel => {
            let predictions = model
                .logits(&batch.inputs, Mode::Parallel)
                .argmax(-1, false);
            count(&predictions, &batch.targets)
        }
        Mode::Step => stepwise(model, batch),
        Mode::Chunked => chunkwise(model, batch, None).expect("no deadline was set"),
    })
}

/// Chunked mode: each chunk in parallel from the state the previous one left; only the
/// chunk's predictions are held, so Mamba's memory is that of one chunk at any length. `None`
/// once `deadline` passes between chunks.
fn chunkwise(model: &LanguageModel, batch: &Batch, deadline: Option<Deadline>) -> Option<Accuracy> {
    let seq_len = batch.inputs.size()[1];
    let first = CHUNK_TOKENS.min(seq_len);
    let (logits, mut state) = model.prefill(&batch.inputs.narrow(1, 0, first));
    let mut total = count(
        &logits.argmax(-1, false),
        &batch.targets.narrow(1, 0, first),
    );
    let mut start = first;
    while start < seq_len {
        if deadline.is_some_and(|d| d.passed()) {
            return None;
        }
        let len = CHUNK_TOKENS.min(seq_len - start);
        let logits = model.extend(&batch.inputs.narrow(1, start, len), &mut state);
        total = total
            + count(
                &logits.argmax(-1, false),
                &batch.targets.narrow(1, start, len),
            );
        start += len;
    }
    Some(total)
}

fn count(predictions: &Tensor, targets: &Tensor) -> Accuracy {
    let scored = targets.ne(IGNORE);
    let correct = predictions.eq_tensor(targets).logical_and(&scored);
    Accuracy {
        correct: correct.sum(Kind::Int64).int64_value(&[]),
        scored: scored.sum(Kind::Int64).int64_value(&[]),
    }
}

/// Step mode: one token at a time, predictions kept only where a target is scored.
fn stepwise(model: &LanguageModel, batch: &Batch) -> Accuracy {
    let seq_len = batch.inputs.size()[1];
    // Positions where any sequence of the batch is scored, read once from the targets.
    let any_scored = batch.targets.ne(IGNORE).any_dim(0, false);
    let any_scored =
        Vec::<bool>::try_from(any_scored.to_device(tch::Device::Cpu)).unwrap_or_default();
    let (first, mut state) = model.prefill(&batch.inputs.narrow(1, 0, 1));
    let mut total = Accuracy::default();
    let mut score = |t: i64, logits: &Tensor| {
        if any_scored.get(t as usize).copied().unwrap_or(false) {
            let predictions = logits.argmax(-1, false);
            total = total + count(&predictions, &batch.targets.select(1, t));
        }
    };
    score(0, &first.squeeze_dim(1));
    for t in 1..seq_len {
        let logits = model.step(&batch.inputs.select(1, t), &mut state);
        score(t, &logits);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::Accuracy;

    #[test]
    fn wilson_intervals_match_hand_computed_values() {
        let interval = |correct, scored| Accuracy { correct, scored }.wilson_interval();
        // A perfect score clears a 0.9 threshold only from 48 trials on (issue #17).
        let (low, high) = interval(48, 48);
        assert!(
            (low - 0.9259).abs() < 5e-4 && (high - 1.0).abs() < 1e-12,
            "{low} {high}"
        );
        let (low, _) = interval(32, 32);
        assert!((low - 0.8928).abs() < 5e-4, "{low}");
        // 5 of 10: 0.2366 to 0.7634.
        let (low, high) = interval(5, 10);
        assert!((low - 0.2366).abs() < 5e-4 && (high - 0.7634).abs() < 5e-4);
        let (low, high) = interval(0, 20);
        assert!(low == 0.0 && (high - 0.1611).abs() < 5e-4, "{high}");
        assert_eq!(interval(0, 0), (0.0, 1.0));
    }
}
