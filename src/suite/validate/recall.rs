//! A recall experiment trains whole models from scratch, on a task that makes a valid example
//! at every training and evaluation length.

use super::checker::Checker;
use crate::suite::schema::{Experiment, Suite};
use crate::suite::task_grid::TaskGrid;
use crate::tasks::Split;
use crate::train::trainer::{ReachConfig, TrainConfig};

pub(super) fn check_recall(c: &mut Checker, i: usize, exp: &Experiment, suite: &Suite) {
    check_no_speed_fields(c, i, exp);
    let Some(tasks) = &exp.task else {
        c.fail(
            format!("experiments[{i}]"),
            "a recall experiment needs `task`, e.g. `task: { task: mqar, num_kv_pairs: 8 }`",
        );
        return;
    };
    if let Some(error) = tasks.error() {
        c.fail(format!("experiments[{i}].task"), error);
        return;
    }
    let Some(train) = &exp.train else {
        c.fail(
            format!("experiments[{i}]"),
            "a recall experiment needs `train`, e.g. `train: { steps: 2000, lr: 1e-3 }`",
        );
        return;
    };
    check_train(c, i, train);
    check_rates(c, i, exp);
    check_seeds(c, i, exp);
    if let Some(lengths) = &exp.eval_seq_len {
        c.sweep(format!("experiments[{i}].eval_seq_len"), lengths);
    }
    c.above_zero(
        format!("experiments[{i}].eval_timeout_s"),
        exp.eval_timeout_s,
    );
    check_lengths_fit(c, i, exp, tasks);
    check_models(c, i, exp, suite, tasks);
}

/// Speed's fields: recall trains whole language models with `train.batch_size`.
fn check_no_speed_fields(c: &mut Checker, i: usize, exp: &Experiment) {
    let speed_only = [
        ("pass", exp.pass.is_some()),
        ("component", exp.component.is_some()),
        ("grid.batch", exp.grid.batch.is_some()),
        ("new_tokens", exp.new_tokens.is_some()),
        ("paired", exp.paired.is_some()),
        ("baseline", exp.baseline.is_some()),
        ("target_rel_ci", exp.target_rel_ci.is_some()),
        ("max_time_s", exp.max_time_s.is_some()),
        ("processes", exp.processes.is_some()),
    ];
    for (field, present) in speed_only {
        if present {
            c.fail(format!("experiments[{i}].{field}"), format!("`{field}` belongs to speed experiments; a recall experiment trains whole language models with `train.batch_size`"));
        }
    }
}

/// Counts of at least one, a learning rate > 0, a target accuracy that is a fraction, a
/// target loss > 0.
fn check_train(c: &mut Checker, i: usize, train: &TrainConfig) {
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
    c.above_zero(t("target_loss"), train.target_loss);
    if let Some(reach) = &train.reach {
        check_reach(c, i, train, reach);
    }
}

/// Reach is measured at evaluation steps within the budget, at lengths of a sweep, on at
/// least one batch.
fn check_reach(c: &mut Checker, i: usize, train: &TrainConfig, reach: &ReachConfig) {
    let r = |field: &str| format!("experiments[{i}].train.reach.{field}");
    if reach.at_steps.is_empty() {
        c.fail(
            r("at_steps"),
            "the list is empty; give the steps at which to measure, e.g. [5000, 10000, 20000]",
        );
    }
    for (j, &step) in reach.at_steps.iter().enumerate() {
        if step == 0 || step > train.steps || step % train.eval_every.max(1) != 0 {
            c.fail(
                format!("{}[{j}]", r("at_steps")),
                format!("{step} is not allowed; expected an evaluation step: a multiple of eval_every ({}) from 1 to steps ({})", train.eval_every, train.steps),
            );
        }
    }
    c.sweep(r("seq_len"), &reach.seq_len);
    if reach.batches == 0 {
        c.fail(r("batches"), "0 is not allowed; expected an integer ≥ 1");
    }
    if !(0.0..=1.0).contains(&reach.from_accuracy) {
        c.fail(
            r("from_accuracy"),
            format!(
                "{} is not allowed; expected a fraction in [0, 1]",
                reach.from_accuracy
            ),
        );
    }
}

/// The grid's learning rates: at least one, each > 0, none twice.
fn check_rates(c: &mut Checker, i: usize, exp: &Experiment) {
    let Some(rates) = &exp.grid.lr else {
        return;
    };
    let path = format!("experiments[{i}].grid.lr");
    if rates.is_empty() {
        c.fail(
            path.clone(),
            "the list is empty; give at least one learning rate",
        );
    }
    for (j, lr) in rates.iter().enumerate() {
        c.above_zero(format!("{path}[{j}]"), Some(*lr));
    }
    c.distinct(&path, rates);
}

/// The grid's seeds: at least one, none twice.
fn check_seeds(c: &mut Checker, i: usize, exp: &Experiment) {
    let Some(seeds) = &exp.grid.seed else {
        return;
    };
    let path = format!("experiments[{i}].grid.seed");
    if seeds.is_empty() {
        c.fail(
            path.clone(),
            "the list is empty; give at least one seed, or remove it to use the suite's",
        );
    }
    c.distinct(&path, seeds);
}

/// Every training and evaluation length makes a valid example of every task; the first
/// length that does not is reported.
fn check_lengths_fit(c: &mut Checker, i: usize, exp: &Experiment, tasks: &TaskGrid) {
    let train = exp.grid.seq_len.iter().map(|l| (Split::Train, *l));
    let reach = exp
        .train
        .iter()
        .flat_map(|t| t.reach.iter())
        .flat_map(|r| &r.seq_len);
    let eval = exp
        .eval_seq_len
        .iter()
        .flatten()
        .chain(reach)
        .map(|l| (Split::Eval, *l));
    let lengths: Vec<(Split, i64)> = train.chain(eval).filter(|(_, l)| *l >= 1).collect();
    for task in tasks.variants() {
        for &(split, len) in &lengths {
            if let Err(e) = task.example_for(split, len, 0) {
                c.fail(
                    format!("experiments[{i}].task"),
                    format!("at length {len}: {e}"),
                );
                return;
            }
        }
    }
}

/// Models trained from scratch, whose vocabulary, if given, is every task's.
fn check_models(c: &mut Checker, i: usize, exp: &Experiment, suite: &Suite, tasks: &TaskGrid) {
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
        let Some(vocab) = entry.vocab_size else {
            continue;
        };
        if let Some(task) = tasks.variants().iter().find(|t| t.vocab_size() != vocab) {
            c.fail(format!("models.{model}.vocab_size"), format!("{vocab} differs from the {} tokens of task `{}` in experiment `{}`; remove vocab_size (the task sets it)", task.vocab_size(), task.name(), exp.name));
        }
    }
}
