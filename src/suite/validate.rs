//! Checks a deserialised suite for values that parse but cannot run. Every problem is collected,
//! so one `mvt validate` shows them all.

use super::error::Issue;
use super::grid;
use super::locate::Locations;
use super::schema::{Experiment, ModelEntry, OneOrMany, PlotKind, Suite};
use crate::device::DeviceSpec;
use crate::models::{transformer, Component, Family};
use crate::scan::ScanImpl;
use crate::spec::{DType, ExperimentKind, Pass};
use crate::tasks::Split;
use std::collections::HashSet;

/// What the machine offers, passed in so that validation is testable without a GPU.
#[derive(Debug, Clone, Copy)]
pub struct Machine {
    pub cuda_devices: usize,
}

impl Machine {
    pub fn current() -> Self {
        Self {
            cuda_devices: tch::Cuda::device_count().max(0) as usize,
        }
    }
}

pub(super) struct Checker<'a> {
    locations: &'a Locations,
    issues: Vec<Issue>,
}

impl Checker<'_> {
    pub(super) fn fail(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = path.into();
        let location = self.locations.find(&path);
        self.issues.push(Issue {
            path,
            location,
            message: message.into(),
        });
    }

    fn positive(&mut self, path: String, values: &[i64]) {
        if values.is_empty() {
            self.fail(path, "the list is empty; give at least one value");
            return;
        }
        for (i, value) in values.iter().enumerate() {
            if *value < 1 {
                self.fail(
                    format!("{path}[{i}]"),
                    format!("{value} is not allowed; expected an integer ≥ 1"),
                );
            }
        }
    }

    pub(super) fn at_least(&mut self, path: String, value: Option<i64>, min: i64) {
        if let Some(value) = value.filter(|v| *v < min) {
            self.fail(
                path,
                format!("{value} is not allowed; expected an integer ≥ {min}"),
            );
        }
    }

    pub(super) fn above_zero(&mut self, path: String, value: Option<f64>) {
        if let Some(value) = value.filter(|v| !(*v > 0.0 && v.is_finite())) {
            self.fail(
                path,
                format!("{value} is not allowed; expected a number > 0"),
            );
        }
    }
}

pub fn check(suite: &Suite, locations: &Locations, machine: Machine) -> Vec<Issue> {
    let mut c = Checker {
        locations,
        issues: Vec::new(),
    };
    let device = check_header(&mut c, suite, machine);
    for (name, entry) in &suite.models {
        check_model(&mut c, name, entry);
    }
    if let Some(device) = device {
        check_scans(&mut c, suite, device);
    }
    check_experiments(&mut c, suite);
    check_plots(&mut c, suite);
    super::claim::check_claims(&mut c, suite);
    // In file order, as a reader fixes them.
    c.issues
        .sort_by_key(|issue| issue.location.map(|l| (l.line, l.column)));
    c.issues
}

pub(super) fn is_file_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
        && !name.starts_with('.')
}

/// The suite's own fields; returns its device, resolved, when that is valid.
fn check_header(c: &mut Checker, suite: &Suite, machine: Machine) -> Option<tch::Device> {
    if !is_file_name(&suite.name) {
        c.fail("name", format!("`{}` is not allowed; use letters, digits, `-`, `_` and `.` (it names the results folder)", suite.name));
    }
    let device =
        DeviceSpec::parse(&suite.device).and_then(|spec| spec.resolve(machine.cuda_devices));
    match &device {
        Err(message) => c.fail("device", message.clone()),
        Ok(tch::Device::Cpu) if suite.dtype == DType::F16 => {
            c.fail(
                "dtype",
                "f16 runs on CUDA only here; use f32 or bf16 on the CPU",
            );
        }
        Ok(_) => {}
    }
    c.above_zero("timeout_s".to_owned(), suite.timeout_s);
    if suite.threads == Some(0) {
        c.fail(
            "threads",
            "0 is not allowed; give a thread count ≥ 1, or leave it out for all cores",
        );
    }
    if suite.models.is_empty() {
        c.fail(
            "models",
            "no models are defined; add one, e.g. `mamba: { family: mamba }`",
        );
    }
    if suite.experiments.is_empty() {
        c.fail(
            "experiments",
            "no experiments are defined; add at least one",
        );
    }
    device.ok()
}

/// A scan kernel named for another device than the suite's fails every run; say so first.
fn check_scans(c: &mut Checker, suite: &Suite, device: tch::Device) {
    for (name, entry) in &suite.models {
        let wrong = match entry.scan {
            Some(ScanImpl::CpuFused) if device != tch::Device::Cpu => "runs on the CPU",
            Some(ScanImpl::CudaFused) if device == tch::Device::Cpu => "runs on CUDA",
            _ => continue,
        };
        c.fail(
            format!("models.{name}.scan"),
            format!(
                "`{}` {wrong}, and this suite's device is {}; use `auto` or `chunked`",
                entry.scan.map(ScanImpl::name).unwrap_or_default(),
                crate::device::device_name(device)
            ),
        );
    }
}

fn check_model(c: &mut Checker, name: &str, m: &ModelEntry) {
    let at = |field: &str| format!("models.{name}.{field}");
    if !is_file_name(name) {
        c.fail(
            format!("models.{name}"),
            format!("model name `{name}` is not allowed; use letters, digits, `-`, `_` and `.`"),
        );
    }
    if m.checkpoint.is_some() {
        check_checkpoint_model(c, name, m);
        return;
    }
    let foreign: &[(&str, bool)] = match m.family {
        Family::Mamba => &[
            ("head_dim", m.head_dim.is_some()),
            ("n_kv_heads", m.n_kv_heads.is_some()),
            ("mlp_ratio", m.mlp_ratio.is_some()),
            ("intermediate_size", m.intermediate_size.is_some()),
            ("rope_theta", m.rope_theta.is_some()),
        ],
        Family::Transformer => &[
            ("d_state", m.d_state.is_some()),
            ("d_conv", m.d_conv.is_some()),
            ("expand", m.expand.is_some()),
            ("dt_rank", m.dt_rank.is_some()),
            ("scan", m.scan.is_some()),
        ],
    };
    for (field, present) in foreign {
        if *present {
            let other = match m.family {
                Family::Mamba => "transformer",
                Family::Transformer => "mamba",
            };
            c.fail(
                at(field),
                format!(
                    "`{field}` is a {other} option, but this model has `family: {}`",
                    m.family.name()
                ),
            );
        }
    }
    c.at_least(at("vocab_size"), m.vocab_size, 2);
    c.above_zero(at("norm_eps"), m.norm_eps);
    c.at_least(at("d_state"), m.d_state, 1);
    c.at_least(at("d_conv"), m.d_conv, 1);
    c.at_least(at("expand"), m.expand, 1);
    c.at_least(at("dt_rank"), m.dt_rank, 1);
    c.at_least(at("n_kv_heads"), m.n_kv_heads, 1);
    c.at_least(at("intermediate_size"), m.intermediate_size, 1);
    c.above_zero(at("mlp_ratio"), m.mlp_ratio);
    c.above_zero(at("rope_theta"), m.rope_theta);
    if let Some(head_dim) = m.head_dim.filter(|_| m.family == Family::Transformer) {
        if head_dim < 2 || head_dim % 2 != 0 {
            c.fail(
                at("head_dim"),
                format!("{head_dim} is not allowed; rotary embeddings need an even head_dim ≥ 2"),
            );
        }
    }
}

/// Options a model built from options may set; a checkpoint's config.json sets them all.
fn sizing_options(m: &ModelEntry) -> [(&'static str, bool); 11] {
    [
        ("vocab_size", m.vocab_size.is_some()),
        ("norm_eps", m.norm_eps.is_some()),
        ("d_state", m.d_state.is_some()),
        ("d_conv", m.d_conv.is_some()),
        ("expand", m.expand.is_some()),
        ("dt_rank", m.dt_rank.is_some()),
        ("head_dim", m.head_dim.is_some()),
        ("n_kv_heads", m.n_kv_heads.is_some()),
        ("mlp_ratio", m.mlp_ratio.is_some()),
        ("intermediate_size", m.intermediate_size.is_some()),
        ("rope_theta", m.rope_theta.is_some()),
    ]
}

/// A checkpoint entry: readable, of the family it claims, with no options of its own but `scan`.
fn check_checkpoint_model(c: &mut Checker, name: &str, m: &ModelEntry) {
    let at = |field: &str| format!("models.{name}.{field}");
    for (field, present) in sizing_options(m) {
        if present {
            c.fail(
                at(field),
                format!("`{field}` is set by the checkpoint's config.json; remove it"),
            );
        }
    }
    if m.family == Family::Transformer && m.scan.is_some() {
        c.fail(
            at("scan"),
            "`scan` is a mamba option, but this model has `family: transformer`",
        );
    }
    match grid::checkpoint_config(m) {
        Err(e) => c.fail(at("checkpoint"), e.to_string()),
        Ok(config) if config.family() != m.family => c.fail(
            at("family"),
            format!(
                "the checkpoint holds a {} model, but this entry says `family: {}`",
                config.family().name(),
                m.family.name()
            ),
        ),
        Ok(_) => {}
    }
}

fn check_experiments(c: &mut Checker, suite: &Suite) {
    let known: Vec<&str> = suite.models.keys().map(String::as_str).collect();
    let mut names = HashSet::new();
    for (i, exp) in suite.experiments.iter().enumerate() {
        let at = |field: &str| format!("experiments[{i}].{field}");
        if !is_file_name(&exp.name) {
            c.fail(
                at("name"),
                format!(
                    "`{}` is not allowed; use letters, digits, `-`, `_` and `.`",
                    exp.name
                ),
            );
        } else if !names.insert(exp.name.as_str()) {
            c.fail(
                at("name"),
                format!(
                    "experiment `{}` is defined twice; names must be unique",
                    exp.name
                ),
            );
        }
        if exp.models.is_empty() {
            c.fail(
                at("models"),
                format!(
                    "the list is empty; name at least one of: {}",
                    known.join(", ")
                ),
            );
        }
        let mut seen = HashSet::new();
        for (j, model) in exp.models.iter().enumerate() {
            if !suite.models.contains_key(model) {
                c.fail(
                    format!("experiments[{i}].models[{j}]"),
                    format!(
                        "unknown model `{model}` in experiments[{i}].models; expected one of: {}",
                        known.join(", ")
                    ),
                );
            } else if !seen.insert(model) {
                c.fail(
                    format!("experiments[{i}].models[{j}]"),
                    format!("model `{model}` is listed twice"),
                );
            }
        }
        match exp.kind {
            ExperimentKind::Speed => check_speed(c, i, exp),
            ExperimentKind::Recall => check_recall(c, i, exp, suite),
        }
        check_pass(c, i, exp);
        if exp.repeats == 0 {
            c.fail(
                at("repeats"),
                "0 is not allowed; take at least 1 timed sample (10 is the default)",
            );
        }
        let grid = &exp.grid;
        let from_checkpoint = |m: &String| {
            suite
                .models
                .get(m)
                .is_some_and(|entry| entry.checkpoint.is_some())
        };
        if !exp.models.iter().all(from_checkpoint) {
            c.positive(at("grid.d_model"), &grid.d_model);
        }
        for (j, model) in exp.models.iter().enumerate() {
            if from_checkpoint(model) && exp.component() != Component::Model {
                c.fail(format!("experiments[{i}].models[{j}]"), format!("`{model}` is a checkpoint, which runs as a whole model; use `component: model`"));
            }
            if from_checkpoint(model) && exp.match_params.is_some() {
                c.fail(format!("experiments[{i}].models[{j}]"), format!("`{model}` is a checkpoint, whose size is fixed; `match_params` sizes models built from options"));
            }
        }
        c.positive(at("grid.seq_len"), &grid.seq_len);
        if let Some(batch) = &grid.batch {
            c.positive(at("grid.batch"), batch);
        }
        if let Some(layers) = &grid.n_layers {
            if exp.component() != Component::Model {
                c.fail(at("grid.n_layers"), format!("a `component: {}` is one layer deep; remove n_layers or use `component: model`", exp.component().name()));
            } else {
                c.positive(at("grid.n_layers"), layers);
            }
        }
        for model in exp
            .models
            .iter()
            .filter_map(|m| suite.models.get(m).map(|e| (m, e)))
            .filter(|(_, e)| e.checkpoint.is_none())
        {
            check_widths(c, i, model, &grid.d_model);
        }
        check_match_params(c, suite, i, exp);
    }
}

/// A speed experiment names its pass and component, and none of recall's fields.
fn check_speed(c: &mut Checker, i: usize, exp: &Experiment) {
    let at = |field: &str| format!("experiments[{i}].{field}");
    if exp.pass.is_none() {
        let passes: Vec<&str> = Pass::ALL.iter().map(|p| p.name()).collect();
        c.fail(
            format!("experiments[{i}]"),
            format!(
                "a speed experiment needs `pass`: one of {}",
                passes.join(", ")
            ),
        );
    }
    if exp.component.is_none() {
        let components: Vec<&str> = Component::ALL.iter().map(|p| p.name()).collect();
        c.fail(
            format!("experiments[{i}]"),
            format!(
                "a speed experiment needs `component`: one of {}",
                components.join(", ")
            ),
        );
    }
    let recall_only = [
        ("task", exp.task.is_some()),
        ("train", exp.train.is_some()),
        ("eval_seq_len", exp.eval_seq_len.is_some()),
        ("grid.lr", exp.grid.lr.is_some()),
    ];
    for (field, present) in recall_only {
        if present {
            c.fail(
                at(field),
                format!(
                    "`{field}` belongs to `kind: recall` experiments; remove it or change the kind"
                ),
            );
        }
    }
}

/// A recall experiment trains whole models from scratch on a task that fits every length.
fn check_recall(c: &mut Checker, i: usize, exp: &Experiment, suite: &Suite) {
    let at = |field: &str| format!("experiments[{i}].{field}");
    let speed_only = [
        ("pass", exp.pass.is_some()),
        ("component", exp.component.is_some()),
        ("grid.batch", exp.grid.batch.is_some()),
        ("new_tokens", exp.new_tokens.is_some()),
    ];
    for (field, present) in speed_only {
        if present {
            c.fail(at(field), format!("`{field}` belongs to speed experiments; a recall experiment trains whole language models with `train.batch_size`"));
        }
    }
    let Some(tasks) = &exp.task else {
        c.fail(
            format!("experiments[{i}]"),
            "a recall experiment needs `task`, e.g. `task: { task: mqar, num_kv_pairs: 8 }`",
        );
        return;
    };
    if let Some(error) = tasks.error() {
        c.fail(at("task"), error);
        return;
    }
    let Some(train) = &exp.train else {
        c.fail(
            format!("experiments[{i}]"),
            "a recall experiment needs `train`, e.g. `train: { steps: 2000, lr: 1e-3 }`",
        );
        return;
    };
    let t = |field: &str| format!("experiments[{i}].train.{field}");
    for (field, value) in [
        ("steps", train.steps),
        ("batch_size", train.batch_size),
        ("eval_every", train.eval_every),
        ("eval_batches", train.eval_batches),
    ] {
        if value == 0 {
            c.fail(t(field), "0 is not allowed; expected an integer ≥ 1");
        }
    }
    c.above_zero(t("lr"), Some(train.lr));
    if let Some(target) = train.target_accuracy.filter(|a| !(*a > 0.0 && *a <= 1.0)) {
        c.fail(
            t("target_accuracy"),
            format!("{target} is not allowed; expected a fraction in (0, 1]"),
        );
    }
    if let Some(rates) = &exp.grid.lr {
        if rates.is_empty() {
            c.fail(
                at("grid.lr"),
                "the list is empty; give at least one learning rate",
            );
        }
        for (j, lr) in rates.iter().enumerate() {
            c.above_zero(format!("experiments[{i}].grid.lr[{j}]"), Some(*lr));
        }
    }
    if let Some(lengths) = &exp.eval_seq_len {
        c.positive(at("eval_seq_len"), lengths);
    }
    // Every training and evaluation length must make a valid example.
    let train = exp.grid.seq_len.iter().map(|l| (Split::Train, *l));
    let eval = exp.eval_seq_len.iter().flatten().map(|l| (Split::Eval, *l));
    let lengths: Vec<(Split, i64)> = train.chain(eval).filter(|(_, l)| *l >= 1).collect();
    'tasks: for task in tasks.variants() {
        for &(split, len) in &lengths {
            if let Err(e) = task.example_for(split, len, 0) {
                c.fail(at("task"), format!("at length {len}: {e}"));
                break 'tasks;
            }
        }
    }
    for (j, model) in exp.models.iter().enumerate() {
        let Some(entry) = suite.models.get(model) else {
            continue;
        };
        if entry.checkpoint.is_some() {
            c.fail(
                format!("experiments[{i}].models[{j}]"),
                format!("`{model}` is a checkpoint; recall experiments train models from scratch"),
            );
        }
        for task in tasks.variants() {
            if let Some(vocab) = entry.vocab_size.filter(|v| *v != task.vocab_size()) {
                c.fail(format!("models.{model}.vocab_size"), format!("{vocab} differs from the {} tokens of task `{}` in experiment `{}`; remove vocab_size (the task sets it)", task.vocab_size(), task.name(), exp.name));
                break;
            }
        }
    }
}

/// Which passes and components go together, and the sampling and limit values.
fn check_pass(c: &mut Checker, i: usize, exp: &Experiment) {
    let at = |field: &str| format!("experiments[{i}].{field}");
    if exp.pass().needs_whole_model() && exp.component() != Component::Model {
        c.fail(
            at("pass"),
            format!(
                "`pass: {}` needs a whole language model; use `component: model`",
                exp.pass().name()
            ),
        );
    }
    if exp.new_tokens.is_some() && exp.pass() != Pass::GenerateThroughput {
        c.fail(
            at("new_tokens"),
            "`new_tokens` belongs to `pass: generate_throughput`; remove it",
        );
    }
    c.at_least(at("new_tokens"), exp.new_tokens, 1);
    if exp.warmup == 0 {
        c.fail(
            at("warmup"),
            "0 is not allowed: the first call pays one-time costs (allocation, kernel selection) and is never timed; use 1 or more",
        );
    }
    if !(exp.warmup_s >= 0.0 && exp.warmup_s.is_finite()) {
        c.fail(
            at("warmup_s"),
            format!("{} is not allowed; expected seconds ≥ 0", exp.warmup_s),
        );
    }
    c.above_zero(at("timeout_s"), exp.timeout_s);
}

/// The reference must be one of the experiment's models, the component a whole model, and
/// every other model must have a depth within tolerance at every grid point.
fn check_match_params(c: &mut Checker, suite: &Suite, i: usize, exp: &Experiment) {
    let Some(reference) = &exp.match_params else {
        return;
    };
    let path = format!("experiments[{i}].match_params");
    if !exp.models.contains(reference) {
        c.fail(
            path,
            format!(
                "`{reference}` is not one of this experiment's models; expected one of: {}",
                exp.models.join(", ")
            ),
        );
        return;
    }
    if exp.component() != Component::Model {
        c.fail(path, format!("a `component: {}` is one layer deep, so depth cannot match sizes; use `component: model`", exp.component().name()));
        return;
    }
    let usable = |m: &String| suite.models.contains_key(m);
    let sane = exp.grid.d_model.iter().all(|d| *d >= 1)
        && grid::layers(exp).iter().all(|n| *n >= 1)
        && exp.models.iter().all(usable);
    if !sane
        || c.issues
            .iter()
            .any(|issue| issue.path.starts_with(&format!("experiments[{i}]")))
    {
        return; // Sizes are checked once the grid itself is valid.
    }
    for model in exp.models.iter().filter(|m| *m != reference) {
        for &d_model in &exp.grid.d_model {
            for n_layers in grid::layers(exp) {
                if let Err(e) = grid::sized_config(suite, exp, model, d_model, n_layers) {
                    c.fail(
                        path.clone(),
                        format!(
                            "model `{model}` against `{reference}` at {n_layers} layer(s): {e}"
                        ),
                    );
                }
            }
        }
    }
}

/// A Transformer's width must split into whole heads, and its heads into whole kv groups.
fn check_widths(c: &mut Checker, i: usize, (name, entry): (&String, &ModelEntry), widths: &[i64]) {
    if entry.family != Family::Transformer {
        return;
    }
    let head_dim = entry.head_dim.unwrap_or(transformer::DEFAULT_HEAD_DIM);
    if head_dim < 1 {
        return;
    }
    for (j, d_model) in widths.iter().enumerate().filter(|(_, d)| **d >= 1) {
        let path = format!("experiments[{i}].grid.d_model[{j}]");
        if d_model % head_dim != 0 {
            c.fail(path, format!("d_model {d_model} is not a multiple of model `{name}`'s head_dim {head_dim}; use a multiple of {head_dim} or change head_dim"));
        } else if let Some(kv) = entry.n_kv_heads.filter(|kv| *kv >= 1) {
            let heads = d_model / head_dim;
            if heads % kv != 0 {
                c.fail(path, format!("d_model {d_model} gives {heads} heads, which model `{name}`'s n_kv_heads {kv} does not divide"));
            }
        }
    }
}

fn check_plots(c: &mut Checker, suite: &Suite) {
    for (i, plot) in suite.plots.iter().enumerate() {
        let names = plot.experiments();
        let at = |j: usize| match plot.experiment {
            OneOrMany::One(_) => format!("plots[{i}].experiment"),
            OneOrMany::Many(_) => format!("plots[{i}].experiment[{j}]"),
        };
        if names.is_empty() {
            c.fail(at(0), "the list is empty; name at least one experiment");
        }
        if names.len() > 1 && plot.kind != PlotKind::AccuracyVsWidth {
            c.fail(
                format!("plots[{i}].experiment"),
                format!(
                    "a {} plot draws one experiment; only accuracy_vs_width takes a list",
                    plot.kind.name()
                ),
            );
        }
        for (j, name) in names.iter().enumerate() {
            match suite.experiments.iter().find(|e| e.name == *name) {
                None => {
                    let known: Vec<&str> =
                        suite.experiments.iter().map(|e| e.name.as_str()).collect();
                    c.fail(
                        at(j),
                        format!(
                            "unknown experiment `{name}`; expected one of: {}",
                            known.join(", ")
                        ),
                    );
                }
                Some(exp) if exp.kind != plot.kind.experiment_kind() => {
                    c.fail(
                        at(j),
                        format!(
                            "a {} plot needs a {} experiment, and `{}` is {}",
                            plot.kind.name(),
                            plot.kind.experiment_kind().name(),
                            exp.name,
                            exp.kind.name()
                        ),
                    );
                }
                Some(_) => {}
            }
        }
    }
}
