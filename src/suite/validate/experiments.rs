//! The experiments: unique names, the models they compare, the fields of their kind, their
//! pass, and a grid whose every point can be built and runs once.

use super::checker::{is_file_name, Checker};
use super::recall::check_recall;
use crate::models::{transformer, Component, Family, ModelConfig};
use crate::spec::{ExperimentKind, Pass};
use crate::suite::grid;
use crate::suite::schema::{Experiment, ModelEntry, Suite};
use std::collections::HashSet;

pub(super) fn check_experiments(c: &mut Checker, suite: &Suite) {
    let mut names = HashSet::new();
    for (i, exp) in suite.experiments.iter().enumerate() {
        check_name(c, i, exp, &mut names);
        check_models(c, suite, i, exp);
        match exp.kind {
            ExperimentKind::Speed => check_speed(c, i, exp),
            ExperimentKind::Recall => check_recall(c, i, exp, suite),
        }
        check_pass(c, i, exp);
        check_grid(c, suite, i, exp);
        // Last: it sizes models only once everything else about the experiment is valid.
        check_match_params(c, suite, i, exp);
    }
}

/// A name that can name files, used once in the suite (`names` holds the ones before).
fn check_name<'a>(c: &mut Checker, i: usize, exp: &'a Experiment, names: &mut HashSet<&'a str>) {
    let path = format!("experiments[{i}].name");
    if !is_file_name(&exp.name) {
        c.fail(
            path,
            format!(
                "`{}` is not allowed; use letters, digits, `-`, `_` and `.`",
                exp.name
            ),
        );
    } else if !names.insert(exp.name.as_str()) {
        c.fail(
            path,
            format!(
                "experiment `{}` is defined twice; names must be unique",
                exp.name
            ),
        );
    }
}

/// At least one model, each defined and listed once; a checkpoint runs only as a whole model
/// at its own size.
fn check_models(c: &mut Checker, suite: &Suite, i: usize, exp: &Experiment) {
    let known: Vec<&str> = suite.models.keys().map(String::as_str).collect();
    if exp.models.is_empty() {
        c.fail(
            format!("experiments[{i}].models"),
            format!(
                "the list is empty; name at least one of: {}",
                known.join(", ")
            ),
        );
    }
    let mut seen = HashSet::new();
    for (j, model) in exp.models.iter().enumerate() {
        let path = format!("experiments[{i}].models[{j}]");
        let Some(entry) = suite.models.get(model) else {
            c.fail(
                path,
                format!(
                    "unknown model `{model}` in experiments[{i}].models; expected one of: {}",
                    known.join(", ")
                ),
            );
            continue;
        };
        if !seen.insert(model) {
            c.fail(path.clone(), format!("model `{model}` is listed twice"));
        }
        if entry.checkpoint.is_none() {
            continue;
        }
        if exp.component() != Component::Model {
            c.fail(path.clone(), format!("`{model}` is a checkpoint, which runs as a whole model; use `component: model`"));
        }
        if exp.match_params.is_some() {
            c.fail(path, format!("`{model}` is a checkpoint, whose size is fixed; `match_params` sizes models built from options"));
        }
    }
}

/// A speed experiment names its pass and component, and none of recall's fields.
fn check_speed(c: &mut Checker, i: usize, exp: &Experiment) {
    check_pairing(c, i, exp);
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
        ("grid.seed", exp.grid.seed.is_some()),
        ("eval_timeout_s", exp.eval_timeout_s.is_some()),
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
    if let Some(min) = exp.min_sample_s.filter(|s| !(*s >= 0.0 && s.is_finite())) {
        c.fail(
            at("min_sample_s"),
            format!("{min} is not allowed; expected seconds ≥ 0 (0 times one call a sample)"),
        );
    }
    if exp.repeats == 0 {
        c.fail(
            at("repeats"),
            "0 is not allowed; take at least 1 timed sample (10 is the default)",
        );
    }
    c.above_zero(at("timeout_s"), exp.timeout_s);
}

/// The grid's lists each sweep distinct values ≥ 1, depth only where there is more than one
/// layer, and widths every Transformer splits into whole heads. Widths are not swept when
/// every model is a checkpoint, which keeps its own.
fn check_grid(c: &mut Checker, suite: &Suite, i: usize, exp: &Experiment) {
    let at = |field: &str| format!("experiments[{i}].grid.{field}");
    let grid = &exp.grid;
    let from_checkpoint = |m: &String| {
        suite
            .models
            .get(m)
            .is_some_and(|entry| entry.checkpoint.is_some())
    };
    if !exp.models.iter().all(from_checkpoint) {
        c.sweep(at("d_model"), &grid.d_model);
    }
    c.sweep(at("seq_len"), &grid.seq_len);
    if let Some(batch) = &grid.batch {
        c.sweep(at("batch"), batch);
    }
    if let Some(layers) = &grid.n_layers {
        if !exp.component().has_depth() {
            c.fail(at("n_layers"), format!("a `component: {}` is one layer deep; remove n_layers or use `component: layers` or `model`", exp.component().name()));
        } else {
            c.sweep(at("n_layers"), layers);
        }
    }
    for model in exp
        .models
        .iter()
        .filter_map(|m| suite.models.get_key_value(m))
        .filter(|(_, e)| e.checkpoint.is_none())
    {
        check_widths(c, i, model, &grid.d_model);
        check_mamba2_heads(c, i, exp.component(), model, &grid.d_model);
        check_hybrid(c, i, exp, model);
    }
}

/// A Mamba-2 block's d_inner (the core op's d_model) must split into whole heads, and its
/// heads into whole groups.
fn check_mamba2_heads(
    c: &mut Checker,
    i: usize,
    component: Component,
    (name, entry): (&String, &ModelEntry),
    widths: &[i64],
) {
    if entry.family != Family::Mamba2 {
        return;
    }
    for (j, d_model) in widths.iter().enumerate().filter(|(_, d)| **d >= 1) {
        let ModelConfig::Mamba2(cfg) = grid::resolve(entry, *d_model, 1) else {
            continue;
        };
        let why = match component {
            Component::Core => cfg.invalid_heads(*d_model, "d_model"),
            _ => cfg.invalid_heads(cfg.d_inner(), "d_inner = expand · d_model"),
        };
        if let Some(why) = why {
            c.fail(
                format!("experiments[{i}].grid.d_model[{j}]"),
                format!("model `{name}` at d_model {d_model}: {why}"),
            );
        }
    }
}

/// A hybrid is measured as a stack or a whole model, at least one repetition of its pattern
/// deep, with every kind of layer it holds buildable at each width.
fn check_hybrid(
    c: &mut Checker,
    i: usize,
    exp: &Experiment,
    (name, entry): (&String, &ModelEntry),
) {
    if entry.family != Family::Hybrid || entry.pattern.is_none() {
        return;
    }
    if !Family::Hybrid.has_component(exp.component()) {
        c.fail(
            format!("experiments[{i}].component"),
            format!(
                "model `{name}` is a hybrid, which has no single {}; use `component: layers` or `model`",
                exp.component().name()
            ),
        );
        return;
    }
    // Matched to another model, the hybrid takes the matched depth, never below one
    // repetition of its pattern; otherwise the grid's.
    let matched = exp
        .match_params
        .as_ref()
        .is_some_and(|reference| reference != name);
    let depths = match (matched, entry.pattern.as_ref()) {
        (true, Some(pattern)) => vec![pattern.len() as i64],
        _ => grid::layers(exp),
    };
    for (j, d_model) in exp
        .grid
        .d_model
        .iter()
        .enumerate()
        .filter(|(_, d)| **d >= 1)
    {
        for n_layers in depths.iter().filter(|n| **n >= 1) {
            let ModelConfig::Hybrid(cfg) = grid::resolve(entry, *d_model, *n_layers) else {
                continue;
            };
            if let Some(why) = cfg.invalid() {
                c.fail(
                    format!("experiments[{i}].grid.d_model[{j}]"),
                    format!("model `{name}` at d_model {d_model}, {n_layers} layers: {why}"),
                );
                return;
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

/// The reference must be one of the experiment's models, the component one with depth (a
/// stack of layers or a whole model), and every other model must have a depth within
/// tolerance at every grid point.
fn check_match_params(c: &mut Checker, suite: &Suite, i: usize, exp: &Experiment) {
    let Some(reference) = &exp.match_params else {
        if exp.match_tolerance.is_some() {
            c.fail(
                format!("experiments[{i}].match_tolerance"),
                "`match_tolerance` bounds a `match_params` match; name the reference model in `match_params`, or remove it",
            );
        }
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
    if !exp.component().has_depth() {
        c.fail(path, format!("a `component: {}` is one layer deep, so depth cannot match sizes; use `component: layers` or `model`", exp.component().name()));
        return;
    }
    if let Some(tolerance) = exp.match_tolerance {
        if !(tolerance > 0.0 && tolerance < 1.0) {
            c.fail(
                format!("experiments[{i}].match_tolerance"),
                format!("{tolerance} is not a fraction between 0 and 1 (0.05 allows ±5%)"),
            );
            return;
        }
    }
    let usable = |m: &String| suite.models.contains_key(m);
    let sane = exp.grid.d_model.iter().all(|d| *d >= 1)
        && grid::layers(exp).iter().all(|n| *n >= 1)
        && exp.models.iter().all(usable);
    if !sane || c.failed_under(&format!("experiments[{i}]")) {
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

/// A paired experiment's baseline is one of its models, and its stopping rule makes sense.
fn check_pairing(c: &mut Checker, i: usize, exp: &Experiment) {
    let at = |field: &str| format!("experiments[{i}].{field}");
    if exp.paired == Some(true) && exp.models.len() < 2 {
        c.fail(
            at("paired"),
            "a paired experiment compares two or more models; name more, or remove `paired`",
        );
    }
    if let Some(baseline) = &exp.baseline {
        if !exp.models.contains(baseline) {
            c.fail(
                at("baseline"),
                format!(
                    "`{baseline}` is not one of this experiment's models; expected one of: {}",
                    exp.models.join(", ")
                ),
            );
        }
    }
    let paired_only = [
        ("baseline", exp.baseline.is_some()),
        ("target_rel_ci", exp.target_rel_ci.is_some()),
        ("max_time_s", exp.max_time_s.is_some()),
        ("processes", exp.processes.is_some()),
    ];
    for (field, present) in paired_only {
        if present && !exp.is_paired() {
            c.fail(
                at(field),
                format!("`{field}` belongs to paired experiments, and this one is not paired"),
            );
        }
    }
    if let Some(ci) = exp.target_rel_ci.filter(|v| !(*v > 0.0 && *v < 1.0)) {
        c.fail(
            at("target_rel_ci"),
            format!("{ci} is not allowed; expected a relative width in (0, 1), e.g. 0.05 for ±5%"),
        );
    }
    c.above_zero(at("max_time_s"), exp.max_time_s);
    c.at_least(at("processes"), exp.processes.map(|p| p as i64), 1);
}
