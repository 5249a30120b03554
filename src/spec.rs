//! What a run is: the domain types every layer above the models shares. A run spec is one
//! configuration to measure, with everything needed to run it and nothing else; the YAML
//! front end (`suite`) expands suites into these, the worker measures them, and results
//! folders store them (`runs.jsonl`), so that nothing downstream re-reads a suite.
//!
//! This module imports no front-end code: only the models, tasks and training it describes.
//! [`Family`] and [`Component`] live in [`crate::models`], their lowest user, and are
//! re-exported here.

pub use crate::device::DeviceId;
pub use crate::models::{Component, Family, ModelConfig};
use crate::tasks::Task;
use crate::train::trainer::TrainConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// One configuration to measure: everything needed to run it, and nothing else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    /// `experiment.model.dD.LL.bB.nN.HASH`: readable, and unique to every parameter below.
    pub run_id: String,
    pub suite: String,
    pub experiment: String,
    pub kind: ExperimentKind,
    pub model: String,
    pub config: ModelConfig,
    /// The model whose parameter count this one's depth was chosen to match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_to: Option<String>,
    /// The HF checkpoint directory whose weights the model loads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<PathBuf>,
    pub component: Component,
    pub pass: Pass,
    /// `cpu` or `cuda:N`, already resolved from `auto`.
    pub device: DeviceId,
    pub dtype: DType,
    pub batch: i64,
    pub seq_len: i64,
    pub warmup: usize,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub warmup_s: f64,
    pub repeats: usize,
    /// The shortest timed sample, when the suite sets one (else the device's default,
    /// `measure::timing::default_min_sample_s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_sample_s: Option<f64>,
    /// Tokens generated per sequence (`generate_throughput` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_tokens: Option<i64>,
    pub seed: u64,
    pub threads: Option<usize>,
    /// Speed runs timed in one process with the other models of their comparison point
    /// (`measure::paired`); `None` for a run timed in a process of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paired: Option<Pairing>,
    /// Recall runs: what to train on, how, and where to evaluate; `seq_len` is the training
    /// length and `batch` the training batch size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recall: Option<RecallSpec>,
}

/// How a speed run is timed together with the other models at its grid point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pairing {
    /// The comparison point: the runs of one experiment that share it are timed in one process,
    /// in interleaved rounds (`experiment.dD.nN.LL.bB` of the grid, whatever depth a
    /// `match_params` model was given).
    pub point: String,
    /// The model whose time the others' are divided by.
    pub baseline: String,
    /// Rounds stop once every ratio's 95% interval is within ±this, relative.
    pub target_rel_ci: f64,
    /// ... or once this many seconds of rounds have passed, all its processes together.
    pub max_time_s: f64,
    /// Worker processes the point is timed in, each in a separate pass over the sweep (see
    /// `runner::point`); one in folders from before there were several.
    #[serde(default = "crate::spec::one")]
    pub processes: usize,
    /// Which of them a worker is: set only in the specs a worker is given.
    #[serde(default, skip_serializing_if = "is_zero_usize")]
    pub process: usize,
}

/// Paired points are timed in this many processes unless a suite says otherwise.
pub const DEFAULT_PROCESSES: usize = 3;

/// serde's default for a count that older files leave out, where one is what they meant.
pub fn one() -> usize {
    1
}

fn is_zero_usize(value: &usize) -> bool {
    *value == 0
}

/// Rounds stop at a ±5% interval on every ratio unless a suite says otherwise.
pub const DEFAULT_TARGET_REL_CI: f64 = 0.05;

/// The seconds of rounds a paired point may take unless a suite says otherwise: 6 s on the
/// CPU, which keeps `crossover_cpu` within its budget, and 3 s on CUDA.
pub fn default_max_time_s(device: DeviceId) -> f64 {
    match device {
        DeviceId::Cpu => 6.0,
        DeviceId::Cuda(_) => 3.0,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecallSpec {
    pub task: Task,
    /// With the grid's learning rate.
    pub train: TrainConfig,
    pub eval_seq_len: Vec<i64>,
    /// Seconds each evaluation length may take; one that runs over is a timeout, and the
    /// longer ones are not tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_timeout_s: Option<f64>,
}

fn is_zero(value: &f64) -> bool {
    *value == 0.0
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    #[default]
    F32,
    Bf16,
    F16,
}

impl DType {
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::Bf16 => "bf16",
            DType::F16 => "f16",
        }
    }

    pub fn kind(self) -> tch::Kind {
        match self {
            DType::F32 => tch::Kind::Float,
            DType::Bf16 => tch::Kind::BFloat16,
            DType::F16 => tch::Kind::Half,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExperimentKind {
    /// Latency and throughput of a pass over a grid of shapes.
    Speed,
    /// Train each model on a recall task, then measure its accuracy at `eval_seq_len`.
    Recall,
}

impl ExperimentKind {
    pub fn name(self) -> &'static str {
        match self {
            ExperimentKind::Speed => "speed",
            ExperimentKind::Recall => "recall",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pass {
    /// Inference forward, without autograd.
    Forward,
    /// Forward with autograd, then backward to every input and parameter.
    ForwardBackward,
    /// One AdamW step of the language model on random tokens (forward, loss, backward, update).
    TrainStep,
    /// The prompt in parallel mode, returning the state or KV cache to decode from.
    Prefill,
    /// One decoding step at a context of `seq_len` tokens: Mamba's O(1) state update against
    /// the Transformer's step over its KV cache.
    Decode,
    /// Prefill a `seq_len` prompt, then greedily generate `new_tokens` tokens per sequence;
    /// throughput is generated tokens per second (the Mamba paper's Fig. 8, right).
    GenerateThroughput,
}

impl Pass {
    pub const ALL: [Pass; 6] = [
        Pass::Forward,
        Pass::ForwardBackward,
        Pass::TrainStep,
        Pass::Prefill,
        Pass::Decode,
        Pass::GenerateThroughput,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Pass::Forward => "forward",
            Pass::ForwardBackward => "forward_backward",
            Pass::TrainStep => "train_step",
            Pass::Prefill => "prefill",
            Pass::Decode => "decode",
            Pass::GenerateThroughput => "generate_throughput",
        }
    }

    /// Passes that exist only for a whole language model.
    /// Whether the pass computes gradients (recall runs train, so theirs do).
    pub fn backward(self) -> bool {
        matches!(self, Pass::ForwardBackward | Pass::TrainStep)
    }

    pub fn needs_whole_model(self) -> bool {
        matches!(
            self,
            Pass::TrainStep | Pass::Prefill | Pass::Decode | Pass::GenerateThroughput
        )
    }
}
