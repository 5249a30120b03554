//! Accuracy at the scored positions only, in parallel, step or chunked mode. Step and chunked
//! modes carry Mamba's fixed-size state (or the Transformer's KV cache) from token to token or
//! chunk to chunk and keep only the current predictions, so Mamba's memory stays O(1) in the
//! length: that is how a model trained at 256 tokens is evaluated at 2^20.

use crate::models::lm::{LanguageModel, Mode, CHUNK_TOKENS};
use crate::tasks::{eval_seed, Batch, Split, Task, TaskError, IGNORE};
use tch::{Kind, Tensor};

/// Correct predictions over scored positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Accuracy {
    pub correct: i64,
    pub scored: i64,
}

impl Accuracy {
    pub fn value(&self) -> f64 {
        if self.scored == 0 {
            0.0
        } else {
            self.correct as f64 / self.scored as f64
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

/// The accuracy of `model` on `set`, computed in `mode` on `device`.
pub fn evaluate(
    model: &LanguageModel,
    set: &EvalSet,
    mode: Mode,
    device: tch::Device,
) -> Result<Accuracy, TaskError> {
    let mut total = Accuracy::default();
    for i in 0..set.batches as u64 {
        let mut batch = set.task.batch(
            Split::Eval,
            set.seq_len,
            set.batch_size,
            eval_seed(set.seed, i),
        )?;
        batch.inputs = batch.inputs.to_device(device);
        batch.targets = batch.targets.to_device(device);
        total = total + accuracy(model, &batch, mode);
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
        Mode::Chunked => chunkwise(model, batch),
    })
}

/// Chunked mode: each chunk in parallel from the state the previous one left; only the
/// chunk's predictions are held, so Mamba's memory is that of one chunk at any length.
fn chunkwise(model: &LanguageModel, batch: &Batch) -> Accuracy {
    let seq_len = batch.inputs.size()[1];
    let first = CHUNK_TOKENS.min(seq_len);
    let (logits, mut state) = model.prefill(&batch.inputs.narrow(1, 0, first));
    let mut total = count(
        &logits.argmax(-1, false),
        &batch.targets.narrow(1, 0, first),
    );
    let mut start = first;
    while start < seq_len {
        let len = CHUNK_TOKENS.min(seq_len - start);
        let logits = model.extend(&batch.inputs.narrow(1, start, len), &mut state);
        total = total
            + count(
                &logits.argmax(-1, false),
                &batch.targets.narrow(1, start, len),
            );
        start += len;
    }
    total
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
