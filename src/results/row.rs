//! One result row: a finished run, whatever its outcome. A failure is a row, never a hole.

use crate::measure::paired::Stop;
use crate::models::lm::Mode;
use crate::scan::Kernel;
use crate::spec::{Component, DType, DeviceId, ExperimentKind, Family, Pass};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    /// Memory ran out: libtorch said so, or the kernel killed the run's process.
    Oom,
    /// The run exceeded its wall-clock limit and was killed.
    Timeout,
    /// The run's process died without reporting (a signal or an exit code; `message` says).
    Crashed,
    /// The run raised an error; `message` says which.
    Error,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Oom => "oom",
            Status::Timeout => "timeout",
            Status::Crashed => "crashed",
            Status::Error => "error",
        }
    }
}

/// Columns in table order; `results.csv` has exactly these, one row per run. Fields with an
/// enum store it; serde writes the same text the columns always had.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub suite: String,
    pub experiment: String,
    #[serde(default = "speed")]
    pub kind: ExperimentKind,
    pub run_id: String,
    pub model: String,
    pub family: Family,
    pub component: Component,
    pub pass: Pass,
    pub device: DeviceId,
    pub dtype: DType,
    pub batch: i64,
    pub seq_len: i64,
    pub d_model: i64,
    pub n_layers: i64,
    /// N, the state size of an SSM family (per channel for Mamba, per head channel for
    /// Mamba-2); empty for the Transformer.
    #[serde(default)]
    pub d_state: Option<i64>,
    /// Channels per head: Mamba-2's headdim, the Transformer's head_dim; empty for Mamba.
    #[serde(default)]
    pub headdim: Option<i64>,
    /// Mamba-2's groups of heads sharing B and C; empty for the other families.
    #[serde(default)]
    pub ngroups: Option<i64>,
    /// A hybrid's layer pattern; empty for the single-family models.
    #[serde(default)]
    pub pattern: Option<String>,
    pub params: i64,
    /// The model whose parameter count this one's depth was chosen to match (`match_params`).
    pub matched_to: Option<String>,
    /// Tokens generated per sequence (`generate_throughput`).
    pub new_tokens: Option<i64>,
    /// The scan kernel that ran (`ScanImpl::kernel`); empty for models without a scan.
    #[serde(with = "kernel_or_empty")]
    pub scan: Option<Kernel>,
    pub threads: i64,
    pub status: Status,
    pub latency_median_s: Option<f64>,
    pub latency_p10_s: Option<f64>,
    pub latency_p90_s: Option<f64>,
    pub latency_min_s: Option<f64>,
    pub latency_max_s: Option<f64>,
    pub samples: i64,
    /// Samples flagged by the MAD rule; they stay in every statistic.
    #[serde(default)]
    pub outliers: i64,
    /// Back-to-back calls in each timed sample (iteration scaling); the latencies are per
    /// call. Empty for rows measured before samples were scaled, and for failed runs.
    #[serde(default)]
    pub calls_per_sample: Option<i64>,
    /// Paired runs (`measure::paired`): the run id of the baseline this run was timed against
    /// in interleaved rounds, in one process; empty for the baseline itself and for runs timed
    /// alone.
    #[serde(default)]
    pub paired_with: Option<String>,
    /// This run's time over the baseline's: the median over the point's processes of each
    /// one's median per-round ratio, and the 95% interval of a bootstrap over processes, then
    /// rounds.
    #[serde(default)]
    pub ratio_median: Option<f64>,
    #[serde(default)]
    pub ratio_ci_low: Option<f64>,
    #[serde(default)]
    pub ratio_ci_high: Option<f64>,
    /// Paired rounds taken in all the point's processes, why they stopped (`converged`,
    /// `max_time`, `max_rounds`, `process_spread`), and the worker processes they were timed
    /// in; set on the baseline's row too.
    #[serde(default)]
    pub rounds: Option<i64>,
    #[serde(default)]
    pub stopped_by: Option<Stop>,
    #[serde(default)]
    pub processes: Option<i64>,
    /// Tokens processed (generated, for `generate_throughput`) per second at the median.
    pub tokens_per_s: Option<f64>,
    /// Peak bytes the pass needed above what was live before it (see `measure::memory`).
    pub peak_mem_bytes: Option<i64>,
    /// CUDA: the most the allocator held from the driver.
    pub reserved_mem_bytes: Option<i64>,
    /// The analytic model's costs of one timed call (`measure::analytic`), for every row.
    #[serde(default)]
    pub flops: f64,
    #[serde(default)]
    pub core_flops: f64,
    #[serde(default)]
    pub core_bytes: f64,
    #[serde(default)]
    pub bytes_moved: f64,
    #[serde(default)]
    pub param_bytes: f64,
    #[serde(default)]
    pub activation_bytes: f64,
    #[serde(default)]
    pub state_bytes: f64,
    /// The latency the analytic model predicts with this device's fitted FLOP/s and bandwidth
    /// (`analysis::fit`); absent until enough runs of the device succeed.
    pub predicted_latency_s: Option<f64>,
    /// Recall: the task, the peak learning rate, the length this row evaluates at (`seq_len`
    /// is the training length), how it was evaluated, and the training outcome.
    #[serde(default)]
    pub task: Option<String>,
    /// Recall: the task's options (`Task::options`), which tell apart the tasks of one
    /// experiment.
    #[serde(default)]
    pub task_options: Option<String>,
    #[serde(default)]
    pub lr: Option<f64>,
    /// The run's seed: its weights' initialisation and, for recall, its training and held-out
    /// data (a grid axis of recall experiments).
    #[serde(default)]
    pub seed: Option<i64>,
    #[serde(default)]
    pub eval_seq_len: Option<i64>,
    #[serde(default)]
    pub eval_mode: Option<Mode>,
    #[serde(default)]
    pub steps: Option<i64>,
    /// The first evaluation step whose held-out accuracy at the training length reached
    /// `train.target_accuracy`; empty if none did.
    #[serde(default)]
    pub steps_to_target: Option<i64>,
    #[serde(default)]
    pub final_loss: Option<f64>,
    /// Accuracy at the scored positions of held-out examples.
    #[serde(default)]
    pub accuracy: Option<f64>,
    /// The Wilson 95% interval of `accuracy` over `accuracy_n` trials: held-out sequences for
    /// single-target tasks (induction), scored positions for multi-target ones (MQAR, copying).
    #[serde(default)]
    pub accuracy_ci_low: Option<f64>,
    #[serde(default)]
    pub accuracy_ci_high: Option<f64>,
    #[serde(default)]
    pub accuracy_n: Option<i64>,
    /// Recall: the accuracy of a uniform guess (`Task::chance`), the floor a model that learned
    /// nothing sits at.
    #[serde(default)]
    pub chance_accuracy: Option<f64>,
    pub wall_s: f64,
    pub message: Option<String>,
}

fn speed() -> ExperimentKind {
    ExperimentKind::Speed
}

/// The `scan` column: a kernel's name, or the empty string for a model without a scan.
mod kernel_or_empty {
    use super::*;

    pub fn serialize<S: Serializer>(scan: &Option<Kernel>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(scan.map_or("", Kernel::name))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Kernel>, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Ok(None);
        }
        serde_json::from_value(serde_json::Value::String(text))
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

/// How many runs `rows` hold: a recall run writes a row per evaluation length.
pub fn runs_in(rows: &[Row]) -> usize {
    rows.iter()
        .map(|r| r.run_id.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}
