//! Expands a validated suite into a flat list of run specs, each with a stable `run_id`.

use super::schema::{Experiment, ModelEntry, Suite, DEFAULT_NEW_TOKENS};
use crate::models::checkpoint::{hf_config, CheckpointError};
use crate::models::matching::{match_depth, NoMatchingDepth};
use crate::models::{hybrid, mamba, mamba2, transformer, Component, Family, ModelConfig};
use crate::spec::{
    default_max_time_s, DeviceId, ExperimentKind, Pairing, Pass, RecallSpec, RunSpec,
    DEFAULT_PROCESSES, DEFAULT_TARGET_REL_CI,
};
use crate::train::trainer::TrainConfig;
use std::path::{Path, PathBuf};

/// Depth of a `component: model` when the grid names none.
pub const DEFAULT_MODEL_LAYERS: i64 = 2;

/// Why a suite's grid cannot be expanded. Validation rules out both before a sweep, so only a
/// suite read back from an old results folder meets them (a checkpoint that has moved since).
#[derive(Debug, thiserror::Error)]
pub enum ExpandError {
    #[error("model `{model}`: {source}")]
    Checkpoint {
        model: String,
        source: CheckpointError,
    },
    #[error("model `{model}` in experiment `{experiment}`: {source}")]
    NoMatchingDepth {
        model: String,
        experiment: String,
        source: NoMatchingDepth,
    },
}

/// Every grid point of every experiment, sequence length varying fastest. In a speed
/// experiment the models take turns at each grid point, so that the runs a comparison pairs
/// are measured moments apart, not a sweep apart: a shared machine's speed drifts within the
/// hour. Recall runs go model by model.
pub fn expand(suite: &Suite, device: DeviceId) -> Result<Vec<RunSpec>, ExpandError> {
    let mut runs = Vec::new();
    for exp in &suite.experiments {
        let mut per_model = Vec::new();
        for model in &exp.models {
            let mut runs = Vec::new();
            for sized in sizes(suite, exp, model)? {
                match exp.kind {
                    ExperimentKind::Speed => {
                        for batch in exp.grid.batches() {
                            for &seq_len in &exp.grid.seq_len {
                                let mut run = spec(suite, exp, model, sized.clone(), device);
                                run.batch = batch;
                                run.seq_len = seq_len;
                                run.paired = pairing(suite, exp, &sized, batch, seq_len, device);
                                run.run_id = run_id(&run);
                                runs.push(run);
                            }
                        }
                    }
                    ExperimentKind::Recall => {
                        runs.extend(recall_runs(suite, exp, model, &sized, device));
                    }
                }
            }
            per_model.push(runs);
        }
        match exp.kind {
            ExperimentKind::Speed => runs.extend(take_turns(per_model)),
            ExperimentKind::Recall => runs.extend(per_model.into_iter().flatten()),
        }
    }
    Ok(runs)
}

/// How a speed run at this grid point is timed with the other models at it, when its
/// experiment is paired. A checkpoint model has its own size rather than the grid's, so it
/// shares no grid point and runs in a process of its own.
fn pairing(
    suite: &Suite,
    exp: &Experiment,
    sized: &SizedModel,
    batch: i64,
    seq_len: i64,
    device: DeviceId,
) -> Option<Pairing> {
    let (d_model, n_layers) = sized.grid_point?;
    exp.is_paired().then(|| Pairing {
        point: format!("{}.d{d_model}.n{n_layers}.L{seq_len}.b{batch}", exp.name),
        baseline: suite.baseline_of(exp),
        target_rel_ci: exp.target_rel_ci.unwrap_or(DEFAULT_TARGET_REL_CI),
        max_time_s: exp.max_time_s.unwrap_or_else(|| default_max_time_s(device)),
        processes: exp.processes.unwrap_or(DEFAULT_PROCESSES),
        process: 0,
    })
}

/// The lists' first items, then their second ones, and so on; a list that runs out drops out.
fn take_turns<T>(lists: Vec<Vec<T>>) -> Vec<T> {
    let mut iters: Vec<_> = lists.into_iter().map(Vec::into_iter).collect();
    let mut out = Vec::new();
    loop {
        let before = out.len();
        out.extend(iters.iter_mut().filter_map(Iterator::next));
        if out.len() == before {
            return out;
        }
    }
}

/// One run per task variant, learning rate, training length and seed: the model, sized for
/// the task's vocabulary.
fn recall_runs(
    suite: &Suite,
    exp: &Experiment,
    model: &str,
    sized: &SizedModel,
    device: DeviceId,
) -> Vec<RunSpec> {
    let (Some(tasks), Some(train)) = (&exp.task, &exp.train) else {
        return Vec::new(); // validation requires both
    };
    let rates = exp.grid.lr.clone().unwrap_or_else(|| vec![train.lr]);
    let seeds = exp.grid.seed.clone().unwrap_or_else(|| vec![suite.seed]);
    let mut runs = Vec::new();
    for task in tasks.variants() {
        for &lr in &rates {
            for &seq_len in &exp.grid.seq_len {
                for &seed in &seeds {
                    let mut sized = sized.clone();
                    sized.config = sized.config.with_vocab_size(task.vocab_size());
                    let mut run = spec(suite, exp, model, sized, device);
                    run.batch = train.batch_size as i64;
                    run.seq_len = seq_len;
                    run.seed = seed;
                    run.recall = Some(RecallSpec {
                        task: task.clone(),
                        train: TrainConfig {
                            lr,
                            ..train.clone()
                        },
                        eval_seq_len: exp.eval_seq_len.clone().unwrap_or_else(|| vec![seq_len]),
                        eval_timeout_s: exp.eval_timeout_s,
                    });
                    run.run_id = run_id(&run);
                    runs.push(run);
                }
            }
        }
    }
    runs
}

/// A model's configuration at a grid point, the model it was sized to match, if any, and the
/// checkpoint its weights come from, if any.
#[derive(Debug, Clone)]
pub struct SizedModel {
    pub config: ModelConfig,
    pub matched_to: Option<String>,
    pub checkpoint: Option<PathBuf>,
    /// The grid's (d_model, n_layers) this size stands at; `None` for a checkpoint's own.
    pub grid_point: Option<(i64, i64)>,
}

/// Every size `model` runs at in `exp`: one per grid width and depth, or a checkpoint's own.
fn sizes(suite: &Suite, exp: &Experiment, model: &str) -> Result<Vec<SizedModel>, ExpandError> {
    let entry = &suite.models[model];
    if let Some(dir) = &entry.checkpoint {
        let config = checkpoint_config(entry).map_err(|source| ExpandError::Checkpoint {
            model: model.to_owned(),
            source,
        })?;
        return Ok(vec![SizedModel {
            config,
            matched_to: None,
            checkpoint: Some(dir.clone()),
            grid_point: None,
        }]);
    }
    let mut sizes = Vec::new();
    for &d_model in &exp.grid.d_model {
        for n_layers in layers(exp) {
            let sized = sized_config(suite, exp, model, d_model, n_layers).map_err(|source| {
                ExpandError::NoMatchingDepth {
                    model: model.to_owned(),
                    experiment: exp.name.clone(),
                    source,
                }
            })?;
            sizes.push(sized);
        }
    }
    Ok(sizes)
}

/// The configuration of a checkpoint entry: its `config.json`, with the options a checkpoint
/// entry may set (its scan choice) over it.
pub fn checkpoint_config(entry: &ModelEntry) -> Result<ModelConfig, CheckpointError> {
    let dir = entry.checkpoint.as_deref().unwrap_or(Path::new(""));
    let mut config = hf_config::read(dir)?;
    entry.apply_checkpoint_options(&mut config);
    Ok(config)
}

/// `model`, built from options, at width `d_model` and grid depth `n_layers`; under
/// `match_params`, every model but the reference gets the depth that matches the reference's
/// parameter count instead.
pub fn sized_config(
    suite: &Suite,
    exp: &Experiment,
    model: &str,
    d_model: i64,
    n_layers: i64,
) -> Result<SizedModel, NoMatchingDepth> {
    let config = resolve(&suite.models[model], d_model, n_layers);
    match exp.match_params.as_deref() {
        Some(reference) if reference != model => {
            let target = resolve(&suite.models[reference], d_model, n_layers);
            Ok(SizedModel {
                config: match_depth(
                    &config,
                    exp.component(),
                    target.params(exp.component()),
                    exp.match_tolerance(),
                )?,
                matched_to: Some(reference.to_owned()),
                checkpoint: None,
                grid_point: Some((d_model, n_layers)),
            })
        }
        _ => Ok(SizedModel {
            config,
            matched_to: None,
            checkpoint: None,
            grid_point: Some((d_model, n_layers)),
        }),
    }
}

pub fn layers(exp: &Experiment) -> Vec<i64> {
    match (exp.component(), &exp.grid.n_layers) {
        (Component::Core | Component::Mixer | Component::Block, _) => vec![1],
        (Component::Layers | Component::Model, Some(layers)) => layers.clone(),
        (Component::Layers, None) => vec![1],
        (Component::Model, None) => vec![DEFAULT_MODEL_LAYERS],
    }
}

/// The configuration of an entry built from options at one grid point: the entry's options
/// over the family defaults.
pub fn resolve(entry: &ModelEntry, d_model: i64, n_layers: i64) -> ModelConfig {
    let mut config = match entry.family {
        Family::Mamba => ModelConfig::Mamba(mamba::Config {
            n_layers,
            ..mamba::Config::new(d_model)
        }),
        Family::Mamba2 => ModelConfig::Mamba2(mamba2::Config {
            n_layers,
            ..mamba2::Config::new(d_model)
        }),
        // `new` only stores the head width; the entry's `head_dim`, if any, replaces it below.
        Family::Transformer => ModelConfig::Transformer(transformer::Config {
            n_layers,
            ..transformer::Config::new(d_model, transformer::DEFAULT_HEAD_DIM)
        }),
        // The pattern comes first: the SSM layers' default state size depends on it.
        Family::Hybrid => {
            let pattern = entry
                .pattern
                .clone()
                .expect("validation requires a hybrid entry's pattern");
            ModelConfig::Hybrid(hybrid::Config {
                n_layers,
                ..hybrid::Config::new(d_model, pattern)
            })
        }
    };
    entry.apply_options(&mut config);
    config
}

/// The spec of one grid point before its batch, length and id are filled in.
fn spec(
    suite: &Suite,
    exp: &Experiment,
    model: &str,
    sized: SizedModel,
    device: DeviceId,
) -> RunSpec {
    RunSpec {
        run_id: String::new(),
        suite: suite.name.clone(),
        experiment: exp.name.clone(),
        kind: exp.kind,
        model: model.to_owned(),
        component: exp.component(),
        pass: exp.pass(),
        device,
        dtype: suite.dtype,
        batch: 0,
        seq_len: 0,
        warmup: exp.warmup,
        warmup_s: exp.warmup_s,
        min_sample_s: exp.min_sample_s,
        repeats: exp.repeats,
        new_tokens: (exp.pass() == Pass::GenerateThroughput)
            .then(|| exp.new_tokens.unwrap_or(DEFAULT_NEW_TOKENS)),
        seed: suite.seed,
        threads: suite.threads,
        config: sized.config,
        matched_to: sized.matched_to,
        checkpoint: sized.checkpoint,
        paired: None,
        recall: None,
    }
}

/// Readable prefix plus a hash of every parameter, so that changing any option (say `d_state`)
/// gives a new id and `--resume` never reuses a stale result.
fn run_id(spec: &RunSpec) -> String {
    let canonical = serde_json::to_string(spec).expect("run specs serialise");
    let recall = spec
        .recall
        .as_ref()
        .map(|r| format!(".lr{}.s{}", r.train.lr, spec.seed))
        .unwrap_or_default();
    format!(
        "{}.{}.d{}.L{}.b{}.n{}{recall}.{:08x}",
        spec.experiment,
        spec.model,
        spec.config.d_model(),
        spec.seq_len,
        spec.batch,
        spec.config.n_layers(),
        fnv1a(canonical.as_bytes()) as u32
    )
}

/// FNV-1a, 64-bit: stable across Rust versions and platforms, unlike `DefaultHasher`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}
