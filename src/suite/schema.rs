//! The YAML suite format, as written by users. Every struct denies unknown keys: zoology silently
//! ignored misspelled ones, and a typo must never turn into a default.
//!
//! ```yaml
//! name: smoke
//! description: Forward latency of one Mamba block vs one Transformer block on tiny shapes.
//! device: auto            # auto | cpu | cuda | cuda:N
//! dtype: f32              # f32 | bf16 | f16
//! seed: 0
//! threads: 2              # CPU intra-op threads; default: all cores
//! models:
//!   mamba:       { family: mamba, d_state: 16, d_conv: 4, expand: 2 }
//!   transformer: { family: transformer, head_dim: 32, mlp_ratio: 4 }
//! experiments:
//!   - name: block-forward
//!     kind: speed
//!     pass: forward
//!     component: block      # core | mixer | block | layers | model
//!     models: [mamba, transformer]
//!     grid: { d_model: [64, 128], seq_len: [64, 128, 256], batch: [1] }
//!     # match_params: transformer   # component: layers or model; others get the depth that
//!     #                             # matches this model's parameter count within 5%
//!     # match_tolerance: 0.12       # ... or within this fraction
//!     warmup: 2
//!     repeats: 5
//! plots:
//!   - { kind: latency_vs_seq_len, experiment: block-forward }
//! ```

use super::claim::Claim;
use super::task_grid::TaskGrid;
use crate::models::Component;
use crate::spec::{DType, ExperimentKind, Pass};
use crate::train::trainer::TrainConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    pub name: String,
    /// What question the suite answers; shown in results and reports.
    #[serde(default)]
    pub description: String,
    /// `auto` (CUDA if present, else CPU), `cpu`, `cuda` or `cuda:N`.
    #[serde(default = "default_device")]
    pub device: String,
    #[serde(default)]
    pub dtype: DType,
    #[serde(default)]
    pub seed: u64,
    /// CPU intra-op threads, at most the machine's cores; all cores when absent.
    #[serde(default)]
    pub threads: Option<usize>,
    /// Wall-clock limit of each run, in seconds; a run that exceeds it is killed and recorded
    /// as `timeout`.
    #[serde(default)]
    pub timeout_s: Option<f64>,
    pub models: BTreeMap<String, ModelEntry>,
    pub experiments: Vec<Experiment>,
    #[serde(default)]
    pub plots: Vec<PlotEntry>,
    /// Claims judged on the experiments' results; a suite with claims gets a report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<Claim>,
}

impl Suite {
    /// The model `exp`'s ratios are to: its `baseline`, else its first Transformer, else its
    /// first model.
    pub fn baseline_of(&self, exp: &Experiment) -> String {
        exp.baseline.clone().unwrap_or_else(|| {
            exp.models
                .iter()
                .find(|m| {
                    self.models
                        .get(*m)
                        .is_some_and(|e| e.family == crate::models::Family::Transformer)
                })
                .or(exp.models.first())
                .cloned()
                .unwrap_or_default()
        })
    }

    /// The wall-clock limit of one run of experiment `name`.
    pub fn timeout_s(&self, name: &str) -> f64 {
        self.experiments
            .iter()
            .find(|e| e.name == name)
            .and_then(|e| e.timeout_s)
            .or(self.timeout_s)
            .unwrap_or(DEFAULT_TIMEOUT_S)
    }

    /// Makes relative checkpoint paths relative to `base`, the suite file's folder.
    pub fn resolve_paths(&mut self, base: &Path) {
        for entry in self.models.values_mut() {
            if let Some(dir) = entry.checkpoint.as_mut().filter(|d| d.is_relative()) {
                *dir = base.join(&*dir);
            }
        }
    }
}

fn default_device() -> String {
    "auto".to_owned()
}

// A model entry's options are declared once, with their checks and how they apply, in
// `model_options.rs`.
pub use super::model_options::ModelEntry;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    pub name: String,
    pub kind: ExperimentKind,
    /// The pass a speed experiment times (required there; recall experiments train).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<Pass>,
    /// The part of the model a speed experiment times (required there; recall experiments
    /// train whole language models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<Component>,
    pub models: Vec<String>,
    pub grid: Grid,
    /// A model of this experiment whose size the others match: its depth comes from the grid,
    /// and every other model's depth is chosen so that its parameter count (of the whole model,
    /// or of the stack for `component: layers`) is within `match_tolerance`.
    #[serde(default)]
    pub match_params: Option<String>,
    /// How far a matched parameter count may be from the reference's, as a fraction [default:
    /// 0.05]. Depth moves in whole blocks: without Llama's rounding of its MLP width
    /// (`mlp_multiple_of: 256`), two Mamba blocks are 11% more than one Llama layer at
    /// d_model 256, so such a stack-level match needs more room than 5%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_tolerance: Option<f64>,
    /// Untimed calls before the samples (at least one).
    #[serde(default = "default_warmup")]
    pub warmup: usize,
    /// Keep warming up for at least this many seconds.
    #[serde(default)]
    pub warmup_s: f64,
    /// Timed samples; the median is the headline number.
    #[serde(default = "default_repeats")]
    pub repeats: usize,
    /// Time the models of each grid point in one process, in interleaved rounds [default:
    /// true for a speed experiment of two or more models]. `false` gives each run a process of
    /// its own, which memory measurements need.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paired: Option<bool>,
    /// The model the others' times are divided by [default: the first Transformer, else the
    /// first model].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    /// Paired rounds stop once every ratio's 95% interval is within ±this [default: 0.05].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_rel_ci: Option<f64>,
    /// ... or after this many seconds per point, its processes together [default: 6 on the
    /// CPU, 3 on CUDA].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_time_s: Option<f64>,
    /// Each paired point is timed in this many worker processes, one per pass over the sweep,
    /// and its ratio is their median [default: 3].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<usize>,
    /// Each sample calls the pass back to back until it lasts this long [default: 0.01 on the
    /// CPU, 0.002 on CUDA]; 0 times one call a sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_sample_s: Option<f64>,
    /// Wall-clock limit of each run, in its own process; overrides the suite's.
    #[serde(default)]
    pub timeout_s: Option<f64>,
    /// Tokens generated per sequence by `pass: generate_throughput`.
    #[serde(default)]
    pub new_tokens: Option<i64>,
    /// Recall: the task and its options, e.g. `{ task: mqar, num_kv_pairs: 8 }`; an option
    /// given as a list runs every value (`num_kv_pairs: [4, 8, 16]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskGrid>,
    /// Recall: how to train; a grid's `lr` list overrides `lr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train: Option<TrainConfig>,
    /// Recall: lengths to evaluate at after training [default: the training length].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_seq_len: Option<Vec<i64>>,
    /// Recall: seconds each evaluation length may take [default: no limit but `timeout_s`];
    /// one that runs over is a `timeout` row, and so are the longer ones, not tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_timeout_s: Option<f64>,
}

impl Experiment {
    /// Whether the models of a grid point are timed together (see [`Experiment::paired`]).
    pub fn is_paired(&self) -> bool {
        self.kind == ExperimentKind::Speed && self.paired.unwrap_or(self.models.len() > 1)
    }

    /// The pass: a speed experiment's (validation requires it), a training step for recall.
    pub fn pass(&self) -> Pass {
        self.pass.unwrap_or(match self.kind {
            ExperimentKind::Speed => Pass::Forward,
            ExperimentKind::Recall => Pass::TrainStep,
        })
    }

    /// How far a matched parameter count may be from the reference's (see `match_tolerance`).
    pub fn match_tolerance(&self) -> f64 {
        self.match_tolerance
            .unwrap_or(crate::models::matching::TOLERANCE)
    }

    /// The component: a speed experiment's (validation requires it), a whole model for recall.
    pub fn component(&self) -> Component {
        self.component.unwrap_or(Component::Model)
    }
}

fn default_warmup() -> usize {
    2
}

fn default_repeats() -> usize {
    10
}

/// Tokens generated per sequence when a suite does not say: the Mamba paper's Fig. 8 (right).
pub const DEFAULT_NEW_TOKENS: i64 = 128;

/// Wall-clock limit of one run when neither the suite nor the experiment sets one.
pub const DEFAULT_TIMEOUT_S: f64 = 1800.0;

/// Every combination of these lists is one run per model.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grid {
    /// Widths of the models built from options; checkpoints keep their own.
    #[serde(default)]
    pub d_model: Vec<i64>,
    pub seq_len: Vec<i64>,
    /// Speed only [default: 1]; recall trains with `train.batch_size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<Vec<i64>>,
    /// Depth of a `component: model`; blocks are always one layer deep.
    #[serde(default)]
    pub n_layers: Option<Vec<i64>>,
    /// Recall only: peak learning rates to sweep (zoology plots the best one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<Vec<f64>>,
    /// Recall only: seeds to repeat every run with, each with its own initialisation and data
    /// [default: the suite's `seed`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<Vec<u64>>,
}

impl Grid {
    pub fn batches(&self) -> Vec<i64> {
        self.batch.clone().unwrap_or_else(|| vec![1])
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlotKind {
    /// Latency against sequence length, log-log, one line per model and width.
    LatencyVsSeqLen,
    /// Latency of one decoding step against the context length.
    DecodeVsContext,
    /// Peak memory against sequence length, measured and (dashed) analytic.
    MemoryVsSeqLen,
    /// Tokens per second against batch size.
    ThroughputVsBatch,
    /// The share of the Transformer's time in attention against length, per width.
    AttentionShareVsSeqLen,
    /// Crossover length L* against width, with the line L = d.
    CrossoverVsWidth,
    /// Mamba's time over the baseline's against length, one panel per width, with the 95%
    /// interval as a band, parity, L = d_model and the FLOP model's ratio (claim (a)).
    RatioVsSeqLen,
    /// The core op's latency against the state size N, one line per SSM model, SDPA as a
    /// level (the Mamba-2 paper's Fig. 10 axis).
    LatencyVsDState,
    /// Recall: accuracy against d_model, best over learning rates, one chart per training
    /// length (zoology's Fig. 2).
    AccuracyVsWidth,
    /// Recall: accuracy against the evaluation length (the Mamba paper's Table 2).
    AccuracyVsEvalLen,
    /// Recall: held-out accuracy against the training step, one panel per model, a line per
    /// run (from `curves.csv`): when a run leaves a plateau, and whether it ever does.
    LearningCurve,
    /// Recall: reach (the longest length cleared) against the training step, a panel per
    /// experiment listed, a line per seed (from `curves.csv`'s reach measurements).
    ReachVsStep,
}

impl PlotKind {
    pub fn name(self) -> &'static str {
        match self {
            PlotKind::LatencyVsSeqLen => "latency_vs_seq_len",
            PlotKind::DecodeVsContext => "decode_vs_context",
            PlotKind::MemoryVsSeqLen => "memory_vs_seq_len",
            PlotKind::ThroughputVsBatch => "throughput_vs_batch",
            PlotKind::AttentionShareVsSeqLen => "attention_share_vs_seq_len",
            PlotKind::CrossoverVsWidth => "crossover_vs_width",
            PlotKind::RatioVsSeqLen => "ratio_vs_seq_len",
            PlotKind::LatencyVsDState => "latency_vs_d_state",
            PlotKind::AccuracyVsWidth => "accuracy_vs_width",
            PlotKind::AccuracyVsEvalLen => "accuracy_vs_eval_len",
            PlotKind::LearningCurve => "learning_curve",
            PlotKind::ReachVsStep => "reach_vs_step",
        }
    }

    /// The experiment kind a chart of this kind draws.
    pub fn experiment_kind(self) -> ExperimentKind {
        match self {
            PlotKind::AccuracyVsWidth
            | PlotKind::AccuracyVsEvalLen
            | PlotKind::LearningCurve
            | PlotKind::ReachVsStep => ExperimentKind::Recall,
            _ => ExperimentKind::Speed,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlotEntry {
    pub kind: PlotKind,
    /// The experiment drawn; `accuracy_vs_width` may list several, one panel each in one
    /// figure (zoology's Fig. 2 has a panel per sequence length).
    pub experiment: OneOrMany,
}

impl PlotEntry {
    pub fn experiments(&self) -> &[String] {
        match &self.experiment {
            OneOrMany::One(name) => std::slice::from_ref(name),
            OneOrMany::Many(names) => names,
        }
    }

    /// The charts' file stem: `kind_experiment`, or `kind_first+second+…`.
    pub fn stem(&self) -> String {
        format!("{}_{}", self.kind.name(), self.experiments().join("+"))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged, expecting = "an experiment's name, or a list of names")]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}
