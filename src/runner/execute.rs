//! Measures one run spec in the current process: builds the model, times the pass, probes
//! peak memory. The runner calls this inside a child process of its own (see
//! [`super::worker`]); its result, or its failure, is an [`Outcome`].

use super::recall::RecallOutcome;
use crate::measure::memory::{MemoryProbe, PeakMemory};
use crate::measure::paired::Stop;
use crate::measure::ratio::RatioEstimate;
use crate::measure::timing::{
    calls_per_sample, default_min_sample_s, sample, warm_up, Sampling, Timing,
};
use crate::models::{BuiltModel, Network};
use crate::panics::panic_message;
use crate::results::Status;
use crate::spec::Pass;
use crate::spec::RunSpec;
use serde::{Deserialize, Serialize};
use std::panic::{catch_unwind, AssertUnwindSafe};
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

/// What a finished measurement reports to the runner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub timing: Timing,
    /// `None` where the platform reports no memory.
    pub memory: Option<PeakMemory>,
    /// Tokens one timed call processes (or, for generation, produces).
    pub tokens_per_call: i64,
    /// libtorch's intra-op threads in the process that measured.
    pub threads: i64,
    /// How a paired point timed this run against its baseline; `None` when timed alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pairing: Option<PairedStats>,
    /// What the row's message should say of how it was measured, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A paired run's side of its comparison point (see [`crate::measure::paired`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedStats {
    /// The run id of the baseline the ratio is to.
    pub paired_with: String,
    /// This run's time over the baseline's; `None` for the baseline itself.
    pub ratio: Option<RatioEstimate>,
    /// Rounds in all the point's processes together.
    pub rounds: usize,
    pub stopped_by: Stop,
    /// Worker processes whose rounds were combined (see `runner::point`).
    #[serde(default = "crate::spec::one")]
    pub processes: usize,
    /// One process's seconds per call in each of its rounds, for the runner to combine
    /// processes with; empty once combined.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub round_times_s: Vec<f64>,
}

/// How a run ended, as the process that ran it saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    Measured(Measurement),
    /// A recall run: trained, and evaluated at every length it reached.
    Recalled(RecallOutcome),
    /// A recall run whose process ended early (`status`, `message`) after `partial`.
    Interrupted {
        partial: RecallOutcome,
        status: Status,
        message: String,
    },
    Failed {
        status: Status,
        message: String,
    },
}

/// Runs `spec` on `device`. libtorch errors surface in tch as panics; they are caught here and
/// become `error` (or `oom`, when the message says memory ran out).
pub fn measure_run(spec: &RunSpec, device: Device) -> Outcome {
    match guarded(|| measure_pass(spec, device)) {
        Ok(measurement) => Outcome::Measured(measurement),
        Err(message) => failure(message),
    }
}

/// Runs `work`, turning a panic (how tch surfaces libtorch errors) into its message.
pub fn guarded<T>(work: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(work))
        .unwrap_or_else(|payload| Err(panic_message(payload.as_ref())))
}

/// `oom` when a failure's message says memory ran out, else `error`.
pub fn failure_status(message: &str) -> Status {
    if is_out_of_memory(message) {
        Status::Oom
    } else {
        Status::Error
    }
}

/// A failure with its message and [`failure_status`].
pub fn failure(message: String) -> Outcome {
    Outcome::Failed {
        status: failure_status(&message),
        message,
    }
}

/// libtorch's wording for a failed allocation, on CUDA and on the CPU.
pub fn is_out_of_memory(message: &str) -> bool {
    let lower = message.to_lowercase();
    lower.contains("out of memory")
        || lower.contains("can't allocate memory")
        || lower.contains("not enough memory")
}

/// A spec's model, built on its device, and the inputs its pass runs on.
pub struct Prepared {
    pub model: BuiltModel,
    pub inputs: Vec<Tensor>,
}

/// Builds `spec`'s model and inputs on `device` (the step where a failing model fails).
pub fn prepare(spec: &RunSpec, device: Device) -> Result<Prepared, String> {
    super::worker::inject_fault(&spec.run_id);
    tch::manual_seed(spec.seed as i64);
    let kind = spec.dtype.kind();
    let model = match &spec.checkpoint {
        Some(dir) => BuiltModel::from_checkpoint(dir, device, kind).map_err(|e| e.to_string())?,
        None => BuiltModel::new(&spec.config, spec.component, device, kind),
    };
    let inputs = model.random_inputs(spec.batch, spec.seq_len, kind);
    let inputs = if spec.pass == Pass::ForwardBackward {
        differentiable(inputs)
    } else {
        inputs
    };
    Ok(Prepared { model, inputs })
}

/// One call of a pass, run for its time alone.
pub type PassCall<'a> = Box<dyn FnMut() + 'a>;

/// One call of `spec`'s pass over `prepared`, as a closure, and the tokens one call processes
/// (or, for generation, produces). Inference passes run each call without autograd.
pub fn pass_of<'a>(spec: &RunSpec, prepared: &'a Prepared) -> Result<(PassCall<'a>, i64), String> {
    let (model, inputs) = (&prepared.model, &prepared.inputs);
    let tokens = spec.batch * spec.seq_len;
    Ok(match (spec.pass, &model.network) {
        (Pass::Forward, _) => (
            Box::new(move || {
                tch::no_grad(|| {
                    let _ = model.forward(inputs);
                })
            }),
            tokens,
        ),
        (Pass::ForwardBackward, network) => (
            Box::new(move || {
                let out = model.forward(inputs);
                let loss = match network {
                    Network::Lm(_) => next_token_loss(&out, &inputs[0]),
                    _ => out.to_kind(Kind::Float).sum(Kind::Float),
                };
                loss.backward();
            }),
            tokens,
        ),
        (Pass::TrainStep, Network::Lm(_)) => {
            let mut optimizer = nn::AdamW::default()
                .build(&model.vars, 1e-4)
                .map_err(|e| e.to_string())?;
            (
                Box::new(move || {
                    let logits = model.forward(inputs);
                    optimizer.backward_step(&next_token_loss(&logits, &inputs[0]));
                }),
                tokens,
            )
        }
        (Pass::Prefill, Network::Lm(lm)) => (
            Box::new(move || {
                tch::no_grad(|| {
                    let _ = lm.prefill(&inputs[0]);
                })
            }),
            tokens,
        ),
        (Pass::Decode, Network::Lm(lm)) => {
            // One step at a context of seq_len tokens, from the same state every call.
            let (_, state) = tch::no_grad(|| lm.prefill(&inputs[0]));
            let next = inputs[0].select(1, -1);
            (
                Box::new(move || {
                    tch::no_grad(|| {
                        let mut state = state.clone();
                        let _ = lm.step(&next, &mut state);
                    })
                }),
                spec.batch,
            )
        }
        (Pass::GenerateThroughput, Network::Lm(lm)) => {
            let new_tokens = spec.new_tokens.unwrap_or(1);
            (
                Box::new(move || {
                    tch::no_grad(|| {
                        let _ = lm.generate_greedy(&inputs[0], new_tokens);
                    })
                }),
                spec.batch * new_tokens,
            )
        }
        (pass, _) => return Err(format!("`pass: {}` needs `component: model`", pass.name())),
    })
}

/// The sampling a spec asks for on `device`.
pub fn sampling_of(spec: &RunSpec, device: Device) -> Sampling {
    Sampling {
        warmup: spec.warmup,
        warmup_s: spec.warmup_s,
        repeats: spec.repeats,
        min_sample_s: spec
            .min_sample_s
            .unwrap_or_else(|| default_min_sample_s(device)),
    }
}

fn measure_pass(spec: &RunSpec, device: Device) -> Result<Measurement, String> {
    let prepared = prepare(spec, device)?;
    let (mut pass, tokens_per_call) = pass_of(spec, &prepared)?;
    let sampling = sampling_of(spec, device);
    // Warm up outside the memory probe: the first call's one-time allocations are not what
    // the pass needs in steady state.
    warm_up(device, sampling, &mut *pass);
    let calls = calls_per_sample(device, sampling.min_sample_s, &mut *pass);
    let probe = MemoryProbe::start(device);
    let timing = sample(device, sampling.repeats, calls, &mut *pass);
    Ok(Measurement {
        timing,
        memory: probe.finish(),
        tokens_per_call,
        threads: i64::from(tch::get_num_threads()),
        pairing: None,
        note: None,
    })
}

/// The inputs with gradients on every floating-point tensor (token ids have none).
fn differentiable(inputs: Vec<Tensor>) -> Vec<Tensor> {
    inputs
        .into_iter()
        .map(|t| {
            if t.is_floating_point() {
                t.set_requires_grad(true)
            } else {
                t
            }
        })
        .collect()
}

/// Cross-entropy of predicting token t+1 from position t.
fn next_token_loss(logits: &Tensor, ids: &Tensor) -> Tensor {
    let (batch, seq_len, vocab) = logits.size3().expect("(batch, seq_len, vocab)");
    if seq_len < 2 {
        return logits.to_kind(Kind::Float).mean(Kind::Float);
    }
    let predictions = logits.narrow(1, 0, seq_len - 1).reshape([-1, vocab]);
    let targets = ids
        .narrow(1, 1, seq_len - 1)
        .reshape([batch * (seq_len - 1)]);
    predictions
        .to_kind(Kind::Float)
        .cross_entropy_for_logits(&targets)
}
