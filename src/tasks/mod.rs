//! Long-range recall tasks: each generator is a pure function of (config, length, seed) with a
//! local generator, and documents its format with a worked example. Targets are −100
//! ([`IGNORE`]) wherever nothing is to be predicted, so that loss and accuracy count the
//! recall positions only.

pub mod copying;
pub mod induction;
pub mod mqar;
pub mod selective_copy;

use crate::rng::Rng;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// The target of positions that are not scored (PyTorch's `ignore_index`).
pub const IGNORE: i64 = -100;

/// Training batches draw seeds below this; evaluation batches at or above it, so that no
/// evaluation example can repeat a training one.
pub const EVAL_SEED_BASE: u64 = 1 << 62;

/// The seed of training batch `step` of a run seeded with `run_seed`.
pub fn train_seed(run_seed: u64, step: u64) -> u64 {
    Rng::for_item(run_seed, step).next_u64() % EVAL_SEED_BASE
}

/// The seed of evaluation batch `index` of a run seeded with `run_seed`.
pub fn eval_seed(run_seed: u64, index: u64) -> u64 {
    EVAL_SEED_BASE + Rng::for_item(run_seed ^ 0x5eed, index).next_u64() % EVAL_SEED_BASE
}

/// What an example is for. Tasks generate both alike, except where a paper trains on a
/// spread of sizes and tests on exact ones (copying with `min_len`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Eval,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TaskError {
    #[error("{task}: {message}")]
    Impossible { task: &'static str, message: String },
}

/// One sequence: `inputs[t]` is fed at position t, `targets[t]` is what the model must predict
/// there (or [`IGNORE`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub inputs: Vec<i64>,
    pub targets: Vec<i64>,
}

/// A batch of examples: inputs and targets, (batch, len) int64 each.
#[derive(Debug)]
pub struct Batch {
    pub inputs: Tensor,
    pub targets: Tensor,
}

/// A task and its options, as suites and `mvt sample` name them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "snake_case", deny_unknown_fields)]
pub enum Task {
    Mqar(mqar::Config),
    SelectiveCopying(selective_copy::Config),
    InductionHeads(induction::Config),
    Copying(copying::Config),
    Phonebook(copying::PhonebookConfig),
}

impl Task {
    pub fn name(&self) -> &'static str {
        match self {
            Task::Mqar(_) => "mqar",
            Task::SelectiveCopying(_) => "selective_copying",
            Task::InductionHeads(_) => "induction_heads",
            Task::Copying(_) => "copying",
            Task::Phonebook(_) => "phonebook",
        }
    }

    /// The options, as `key=value` pairs in alphabetical order: what tells apart the tasks of
    /// an experiment whose `task:` lists several values.
    pub fn options(&self) -> String {
        let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(self) else {
            return String::new();
        };
        fields
            .iter()
            .filter(|(key, _)| *key != "task")
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Tokens the model must embed, special tokens included.
    pub fn vocab_size(&self) -> i64 {
        match self {
            Task::Mqar(c) => c.vocab_size,
            Task::SelectiveCopying(c) => c.vocab_size,
            Task::InductionHeads(c) => c.vocab_size,
            Task::Copying(c) => c.vocab_size(),
            Task::Phonebook(c) => c.vocab_size(),
        }
    }

    /// The accuracy of a uniform guess among the tokens a scored target can be: the floor a
    /// model that learned nothing sits at, which charts draw.
    pub fn chance(&self) -> f64 {
        let choices = match self {
            // Values come from [V/2, V).
            Task::Mqar(c) => c.vocab_size - c.vocab_size / 2,
            Task::SelectiveCopying(c) => c.data_tokens(),
            // The target is any token but the special one.
            Task::InductionHeads(c) => c.vocab_size - 1,
            // A letter (or the end token, once per example).
            Task::Copying(c) => c.alphabet,
            // A digit of the number (or the end token, once).
            Task::Phonebook(_) => copying::DIGITS,
        };
        1.0 / choices.max(1) as f64
    }

    /// One example of length parameter `seq_len` (each task says what it measures).
    pub fn example(&self, seq_len: i64, seed: u64) -> Result<Example, TaskError> {
        self.example_for(Split::Eval, seq_len, seed)
    }

    /// One example for `split`; [`Task::example`] is the evaluation one.
    pub fn example_for(&self, split: Split, seq_len: i64, seed: u64) -> Result<Example, TaskError> {
        let mut rng = Rng::new(seed);
        match self {
            Task::Mqar(c) => c.example(seq_len, &mut rng),
            Task::SelectiveCopying(c) => c.example(seq_len, &mut rng),
            Task::InductionHeads(c) => c.example(seq_len, &mut rng),
            Task::Copying(c) => c.example(split, seq_len, &mut rng),
            Task::Phonebook(c) => c.example(seq_len, &mut rng),
        }
    }

    /// `batch` examples from `seed` (example i uses its own generator derived from the seed).
    pub fn batch(
        &self,
        split: Split,
        seq_len: i64,
        batch: usize,
        seed: u64,
    ) -> Result<Batch, TaskError> {
        let examples = (0..batch as u64)
            .map(|i| self.example_for(split, seq_len, Rng::for_item(seed, i).next_u64()))
            .collect::<Result<Vec<_>, _>>()?;
        let stack = |pick: fn(&Example) -> &Vec<i64>| {
            let rows: Vec<Tensor> = examples
                .iter()
                .map(|e| Tensor::from_slice(pick(e)))
                .collect();
            Tensor::stack(&rows, 0)
        };
        Ok(Batch {
            inputs: stack(|e| &e.inputs),
            targets: stack(|e| &e.targets),
        })
    }
}

fn impossible(task: &'static str, message: String) -> TaskError {
    TaskError::Impossible { task, message }
}
