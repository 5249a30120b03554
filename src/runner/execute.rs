//! Runs one spec in this process and turns the outcome, success or failure, into a row.

use crate::device::synchronize;
use crate::measure::timing::{measure, Timing};
use crate::models::{BuiltModel, ModelConfig};
use crate::results::{Row, Status};
use crate::suite::schema::Pass;
use crate::suite::RunSpec;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;
use tch::Device;

/// Measures `spec` on `device`. libtorch errors surface in tch as panics; they are caught here
/// and recorded as an `error` row with their message.
pub fn execute(spec: &RunSpec, device: Device) -> Row {
    let start = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| measure_pass(spec, device)))
        .map_err(|payload| panic_message(payload.as_ref()))
        .and_then(|result| result);
    let wall_s = start.elapsed().as_secs_f64();
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
        scan: scan_name(spec, device),
        threads: i64::from(tch::get_num_threads()),
        status: Status::Ok,
        latency_median_s: None,
        latency_min_s: None,
        latency_max_s: None,
        samples: 0,
        tokens_per_s: None,
        wall_s,
        message: None,
    };
    match outcome {
        Ok(timing) => {
            row.latency_median_s = Some(timing.median_s);
            row.latency_min_s = Some(timing.min_s);
            row.latency_max_s = Some(timing.max_s);
            row.samples = timing.samples as i64;
            row.tokens_per_s = Some((spec.batch * spec.seq_len) as f64 / timing.median_s);
        }
        Err(message) => {
            row.status = Status::Error;
            row.message = Some(message);
        }
    }
    row
}

fn measure_pass(spec: &RunSpec, device: Device) -> Result<Timing, String> {
    tch::manual_seed(spec.seed as i64);
    let kind = spec.dtype.kind();
    let model = match &spec.checkpoint {
        Some(dir) => BuiltModel::from_checkpoint(dir, device, kind).map_err(|e| e.to_string())?,
        None => BuiltModel::new(&spec.config, spec.component, device, kind),
    };
    let input = model.random_input(spec.batch, spec.seq_len, kind);
    synchronize(device);
    Ok(match spec.pass {
        Pass::Forward => tch::no_grad(|| {
            measure(device, spec.warmup, spec.repeats, || {
                let _ = model.module.forward(&input);
            })
        }),
    })
}

/// The scan implementation a run used, `auto` resolved; empty for models that have none.
fn scan_name(spec: &RunSpec, device: Device) -> String {
    match &spec.config {
        ModelConfig::Mamba(cfg) => cfg.scan.resolve(device).name().to_owned(),
        ModelConfig::Transformer(_) => String::new(),
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "the run panicked with a non-text payload".to_owned())
}
