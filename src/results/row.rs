//! One result row: a finished run, whatever its outcome. A failure is a row, never a hole.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    /// The run raised an error; `message` says which.
    Error,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Error => "error",
        }
    }
}

/// Columns in table order; `results.csv` has exactly these, one row per run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub suite: String,
    pub experiment: String,
    pub run_id: String,
    pub model: String,
    pub family: String,
    pub component: String,
    pub pass: String,
    pub device: String,
    pub dtype: String,
    pub batch: i64,
    pub seq_len: i64,
    pub d_model: i64,
    pub n_layers: i64,
    pub params: i64,
    /// The model whose parameter count this one's depth was chosen to match (`match_params`).
    pub matched_to: Option<String>,
    pub scan: String,
    pub threads: i64,
    pub status: Status,
    pub latency_median_s: Option<f64>,
    pub latency_min_s: Option<f64>,
    pub latency_max_s: Option<f64>,
    pub samples: i64,
    pub tokens_per_s: Option<f64>,
    pub wall_s: f64,
    pub message: Option<String>,
}
