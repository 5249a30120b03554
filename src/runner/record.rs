//! Turns a run spec and its outcome into result rows, the same columns whatever happened: one
//! row for a speed run, one per evaluation length for a recall run.

use super::execute::Outcome;
use crate::measure::analytic::costs;
use crate::models::hybrid::LayerKind;
use crate::models::lm::Mode;
use crate::models::ModelConfig;
use crate::results::{Row, Status};
use crate::scan::Kernel;
use crate::spec::RunSpec;

/// The rows of `spec`, which ended as `outcome` after `wall_s` seconds in its process.
/// `threads` is what the run was set to use when its process did not report it.
pub fn rows(spec: &RunSpec, outcome: &Outcome, wall_s: f64, threads: i64) -> Vec<Row> {
    match &spec.recall {
        None => vec![row(spec, outcome, wall_s, threads)],
        Some(recall) => recall
            .eval_seq_len
            .iter()
            .map(|&len| recall_row(spec, outcome, wall_s, threads, len))
            .collect(),
    }
}

/// The row of one evaluation length of a recall run.
fn recall_row(spec: &RunSpec, outcome: &Outcome, wall_s: f64, threads: i64, len: i64) -> Row {
    let recall = spec.recall.as_ref().expect("a recall run");
    let mut row = identity(spec, wall_s, threads);
    row.task = Some(recall.task.name().to_owned());
    row.task_options = Some(recall.task.options());
    row.lr = Some(recall.train.lr);
    row.chance_accuracy = Some(recall.task.chance());
    row.eval_seq_len = Some(len);
    let (partial, ended) = match outcome {
        Outcome::Recalled(o) => (Some(o), None),
        Outcome::Interrupted {
            partial,
            status,
            message,
        } => (Some(partial), Some((*status, message.clone()))),
        Outcome::Failed { status, message } => (None, Some((*status, message.clone()))),
        Outcome::Measured(_) => (
            None,
            Some((
                Status::Error,
                "a recall run reported a speed measurement".to_owned(),
            )),
        ),
    };
    if let Some(o) = partial {
        row.steps = Some(o.trained.steps);
        row.steps_to_target = o.trained.steps_to_target;
        row.final_loss = Some(o.trained.final_loss);
        if let Some(e) = o.evaluated.iter().find(|e| e.seq_len == len) {
            row.status = e.status;
            row.accuracy = e.accuracy;
            row.accuracy_n = e.scored;
            if let Some((low, high)) = e.interval() {
                (row.accuracy_ci_low, row.accuracy_ci_high) = (Some(low), Some(high));
            }
            row.eval_mode = Some(e.mode);
            row.scan = scan_kernel(spec, false, e.mode == Mode::Chunked);
            row.message = e.message.clone().or_else(|| {
                o.trained
                    .resumed_from
                    .map(|step| format!("training resumed from its checkpoint at step {step}"))
            });
            row.wall_s = o.trained.wall_s + e.wall_s;
            return row;
        }
    }
    let (status, message) =
        ended.unwrap_or((Status::Error, "no evaluation was reported".to_owned()));
    row.status = status;
    row.message = Some(if partial.is_some() {
        format!("ended before evaluating at this length: {message}")
    } else {
        message
    });
    row
}

/// The training curve of a recall run, as far as it got.
pub fn curve(outcome: &Outcome) -> Option<&[crate::train::trainer::CurvePoint]> {
    match outcome {
        Outcome::Recalled(o) | Outcome::Interrupted { partial: o, .. } => Some(&o.trained.curve),
        _ => None,
    }
}

/// The row of a speed run.
fn row(spec: &RunSpec, outcome: &Outcome, wall_s: f64, threads: i64) -> Row {
    let mut row = identity(spec, wall_s, threads);
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
            row.calls_per_sample = Some(t.calls_per_sample as i64);
            row.message = m.note.clone();
            if let Some(p) = &m.pairing {
                row.rounds = Some(p.rounds as i64);
                row.stopped_by = Some(p.stopped_by);
                row.processes = Some(p.processes as i64);
                if let Some(ratio) = p.ratio {
                    row.paired_with = Some(p.paired_with.clone());
                    row.ratio_median = Some(ratio.median);
                    row.ratio_ci_low = Some(ratio.ci_low);
                    row.ratio_ci_high = Some(ratio.ci_high);
                }
            }
            row.tokens_per_s = Some(m.tokens_per_call as f64 / t.median_s);
            row.peak_mem_bytes = m.memory.map(|p| p.peak_bytes);
            row.reserved_mem_bytes = m.memory.and_then(|p| p.reserved_bytes);
        }
        Outcome::Failed { status, message } => {
            row.status = *status;
            row.message = Some(message.clone());
        }
        Outcome::Recalled(_) | Outcome::Interrupted { .. } => {
            row.status = Status::Error;
            row.message = Some("a speed run reported a recall outcome".to_owned());
        }
    }
    row
}

/// What a row says of its run whatever the outcome: the spec's columns and the analytic
/// costs, with status `ok` and no measurement yet.
fn identity(spec: &RunSpec, wall_s: f64, threads: i64) -> Row {
    let predicted = costs(spec);
    Row {
        suite: spec.suite.clone(),
        experiment: spec.experiment.clone(),
        kind: spec.kind,
        run_id: spec.run_id.clone(),
        model: spec.model.clone(),
        family: spec.config.family(),
        component: spec.component,
        pass: spec.pass,
        device: spec.device,
        dtype: spec.dtype,
        batch: spec.batch,
        seq_len: spec.seq_len,
        d_model: spec.config.d_model(),
        n_layers: spec.config.n_layers(),
        d_state: spec.config.d_state(),
        headdim: spec.config.headdim(),
        ngroups: spec.config.ngroups(),
        pattern: spec.config.pattern().map(ToString::to_string),
        params: spec.config.params(spec.component),
        matched_to: spec.matched_to.clone(),
        new_tokens: spec.new_tokens,
        scan: scan_kernel(spec, spec.pass.backward(), false),
        threads,
        status: Status::Ok,
        latency_median_s: None,
        latency_p10_s: None,
        latency_p90_s: None,
        latency_min_s: None,
        latency_max_s: None,
        samples: 0,
        outliers: 0,
        calls_per_sample: None,
        paired_with: None,
        ratio_median: None,
        ratio_ci_low: None,
        ratio_ci_high: None,
        rounds: None,
        stopped_by: None,
        processes: None,
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
        task: None,
        task_options: None,
        lr: None,
        seed: Some(spec.seed as i64),
        eval_seq_len: None,
        eval_mode: None,
        steps: None,
        steps_to_target: None,
        final_loss: None,
        accuracy: None,
        accuracy_ci_low: None,
        accuracy_ci_high: None,
        accuracy_n: None,
        chance_accuracy: None,
        wall_s,
        message: None,
    }
}

/// The scan kernel a run's measured work used (see [`crate::scan::ScanImpl::kernel`]): the timed
/// pass of a speed run, the evaluation of a recall row, whose chunked mode continues each
/// chunk from the last one's state. `None` for models without a scan.
fn scan_kernel(spec: &RunSpec, needs_grad: bool, from_state: bool) -> Option<Kernel> {
    match &spec.config {
        ModelConfig::Mamba(cfg) => Some(cfg.scan.kernel(spec.device.tch(), needs_grad, from_state)),
        ModelConfig::Hybrid(cfg) if cfg.has(LayerKind::Mamba) => {
            Some(cfg.scan.kernel(spec.device.tch(), needs_grad, from_state))
        }
        ModelConfig::Mamba2(_) | ModelConfig::Transformer(_) | ModelConfig::Hybrid(_) => None,
    }
}
