//! Turns a run spec and its outcome into a result row: the same columns whatever happened.

use super::execute::Outcome;
use crate::measure::analytic::costs;
use crate::models::ModelConfig;
use crate::results::{Row, Status};
use crate::suite::RunSpec;
use tch::Device;

/// The row of `spec`, which ended as `outcome` after `wall_s` seconds in its process.
/// `threads` is what the run was set to use when its process did not report it.
pub fn row(spec: &RunSpec, outcome: &Outcome, wall_s: f64, threads: i64) -> Row {
    let predicted = costs(spec);
    let mut row = Row {
        suite: spec.suite.clone(),
        experiment: spec.experiment.clone(),
        run_id: spec.run_id.clone(),
        model: spec.model.clone(),
        family: spec.config.family().name().to_owned(),
        component: spec.component.name().to_owned(),
        pass: spec.pass.name().to_owned(),
        device: spec.device.clone(),
        dtype: spec.dtype.name().to_owned(),
        batch: spec.batch,
        seq_len: spec.seq_len,
        d_model: spec.config.d_model(),
        n_layers: spec.config.n_layers(),
        params: spec.config.params(spec.component),
        matched_to: spec.matched_to.clone(),
        new_tokens: spec.new_tokens,
        scan: scan_name(spec),
        threads,
        status: Status::Ok,
        latency_median_s: None,
        latency_p10_s: None,
        latency_p90_s: None,
        latency_min_s: None,
        latency_max_s: None,
        samples: 0,
        outliers: 0,
        tokens_per_s: None,
        peak_mem_bytes: None,
        reserved_mem_bytes: None,
        flops: predicted.flops,
        core_flops: predicted.core_flops,
        core_bytes: predicted.core_bytes,
        bytes_moved: predicted.bytes_moved,
        param_bytes: predicted.param_bytes,
        activation_bytes: predicted.activation_bytes,
        state_bytes: predicted.state_bytes,
        predicted_latency_s: None,
        wall_s,
        message: None,
    };
    match outcome {
        Outcome::Measured(m) => {
            let t = &m.timing;
            row.threads = m.threads;
            row.latency_median_s = Some(t.median_s);
            row.latency_p10_s = Some(t.p10_s);
            row.latency_p90_s = Some(t.p90_s);
            row.latency_min_s = Some(t.min_s);
            row.latency_max_s = Some(t.max_s);
            row.samples = t.samples as i64;
            row.outliers = t.outliers as i64;
            row.tokens_per_s = Some(m.tokens_per_call as f64 / t.median_s);
            row.peak_mem_bytes = m.memory.map(|p| p.peak_bytes);
            row.reserved_mem_bytes = m.memory.and_then(|p| p.reserved_bytes);
        }
        Outcome::Failed { status, message } => {
            row.status = *status;
            row.message = Some(message.clone());
        }
    }
    row
}

/// The scan implementation a run used, `auto` resolved; empty for models that have none.
fn scan_name(spec: &RunSpec) -> String {
    let device = if spec.device.starts_with("cuda") {
        Device::Cuda(0)
    } else {
        Device::Cpu
    };
    match &spec.config {
        ModelConfig::Mamba(cfg) => cfg.scan.resolve(device).name().to_owned(),
        ModelConfig::Transformer(_) => String::new(),
    }
}
