//! One function per chart kind: which rows, which axes, which lines.

use super::line::{Axis, Failure, Line, LineChart, Reference};
use super::panels::{Figure, Panels};
use super::style::{family_color, shade_of, FIRST_FREE_COLOR};
use crate::analysis::crossover::Crossover;
use crate::measure::timing::format_seconds;
use crate::results::curves::Curves;
use crate::results::{Row, Status};
use crate::spec::{Component, ExperimentKind, Family, RunSpec};
use crate::train::trainer::CurvePoint;
use std::collections::{BTreeMap, BTreeSet, HashMap};

fn bytes(b: f64) -> String {
    match b {
        b if b >= 1e9 => format!("{:.1} GB", b / 1e9),
        b if b >= 1e6 => format!("{:.1} MB", b / 1e6),
        b if b >= 1e3 => format!("{:.0} kB", b / 1e3),
        b => format!("{b:.0} B"),
    }
}

fn rate(r: f64) -> String {
    match r {
        r if r >= 1e6 => format!("{:.1}M", r / 1e6),
        r if r >= 1e3 => format!("{:.1}k", r / 1e3),
        r => format!("{r:.0}"),
    }
}

fn percent(v: f64) -> String {
    format!("{:.0}%", v * 100.0)
}

/// Lines of `experiment`'s rows: one per `label`, points at (x, y) of successful rows, and
/// an ✕ for each failed one. Lines are ordered naturally (d=64 before d=128); each is drawn in
/// its family's hue, the lines of one family in shades from dark to light in that order, and a
/// failure takes the colour of its line.
fn lines(
    rows: &[Row],
    experiment: &str,
    label: impl Fn(&Row) -> String,
    x: impl Fn(&Row) -> f64,
    y: impl Fn(&Row) -> Option<f64>,
) -> (Vec<Line>, Vec<Failure>) {
    let mine: Vec<&Row> = rows.iter().filter(|r| r.experiment == experiment).collect();
    let mut labels: Vec<(String, Family)> = mine.iter().map(|r| (label(r), r.family)).collect();
    labels.sort_by(|a, b| natural_order(&a.0, &b.0).then(a.1.cmp(&b.1)));
    labels.dedup_by(|a, b| a.0 == b.0);
    let index_of = |r: &Row| {
        let l = label(r);
        labels.iter().position(|(m, _)| *m == l).unwrap_or(0)
    };
    let mut lines: Vec<Line> = labels
        .iter()
        .map(|(l, family)| {
            let kin: Vec<&String> = labels
                .iter()
                .filter(|(_, f)| f == family)
                .map(|(m, _)| m)
                .collect();
            let rank = kin.iter().position(|m| *m == l).unwrap_or(0);
            Line {
                label: l.clone(),
                color: family_color(*family),
                shade: shade_of(rank, kin.len()),
                ..Line::default()
            }
        })
        .collect();
    let mut failures = Vec::new();
    for row in &mine {
        let line = &mut lines[index_of(row)];
        match (row.status, y(row)) {
            (Status::Ok, Some(value)) if value > 0.0 => line.points.push((x(row), value)),
            (Status::Ok, _) => {}
            (status, _) => failures.push(Failure {
                x: x(row),
                status: status.name().to_owned(),
                color: line.color,
                shade: line.shade,
            }),
        }
    }
    for line in &mut lines {
        line.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    (lines, failures)
}

/// Compares text with its digit runs as numbers: `d=64` < `d=128`.
fn natural_order(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, String)> {
        let mut out: Vec<(bool, String)> = Vec::new();
        for ch in s.chars() {
            let digit = ch.is_ascii_digit();
            match out.last_mut() {
                Some((d, text)) if *d == digit => text.push(ch),
                _ => out.push((digit, ch.to_string())),
            }
        }
        out
    }
    let key = |s: &str| -> Vec<(u64, String)> {
        chunks(s)
            .into_iter()
            .map(|(digit, text)| {
                if digit {
                    (text.parse().unwrap_or(u64::MAX), String::new())
                } else {
                    (0, text)
                }
            })
            .collect()
    };
    key(a).cmp(&key(b))
}

/// `mamba d=1024`, with the batch when `experiment` sweeps it.
fn model_width(rows: &[Row], experiment: &str) -> impl Fn(&Row) -> String {
    let batches: std::collections::BTreeSet<i64> = rows
        .iter()
        .filter(|r| r.experiment == experiment)
        .map(|r| r.batch)
        .collect();
    let show_batch = batches.len() > 1;
    move |r: &Row| {
        if show_batch {
            format!("{} d={} b={}", r.model, r.d_model, r.batch)
        } else {
            format!("{} d={}", r.model, r.d_model)
        }
    }
}

/// Lines a single chart holds before a figure splits into one panel per width.
const MAX_LINES_PER_CHART: usize = 4;

/// Median latency against L, log-log: slope 1 is linear scaling, slope 2 quadratic. With more
/// than four lines, one panel per width, each with every model at that width.
pub fn latency_vs_seq_len(rows: &[Row], experiment: &str) -> Figure {
    let mine: Vec<Row> = rows
        .iter()
        .filter(|r| r.experiment == experiment)
        .cloned()
        .collect();
    let whole = latency_chart(
        &mine,
        experiment,
        format!("{experiment}: median latency vs sequence length"),
    );
    if whole.lines.len() <= MAX_LINES_PER_CHART {
        return Figure::Single(whole);
    }
    let panels = widths(&mine)
        .into_iter()
        .map(|d| {
            let at_width: Vec<Row> = mine.iter().filter(|r| r.d_model == d).cloned().collect();
            latency_chart(&at_width, experiment, format!("d_model = {d}"))
        })
        .collect();
    Figure::Panels(Panels {
        title: format!("{experiment}: median latency vs sequence length, one panel per width"),
        panels,
    })
}

/// The widths among `rows`, ascending.
fn widths(rows: &[Row]) -> Vec<i64> {
    let mut widths: Vec<i64> = rows.iter().map(|r| r.d_model).collect();
    widths.sort_unstable();
    widths.dedup();
    widths
}

fn latency_chart(rows: &[Row], experiment: &str, title: String) -> LineChart {
    let (lines, failures) = lines(
        rows,
        experiment,
        model_width(rows, experiment),
        |r| r.seq_len as f64,
        |r| r.latency_median_s,
    );
    LineChart {
        title,
        x_desc: "sequence length L (tokens, log scale)".into(),
        y_desc: "median latency (log scale)".into(),
        x_axis: Axis::Log2,
        y_axis: Axis::Log10(format_seconds),
        lines,
        failures,
        references: Vec::new(),
    }
}

/// `0.5×`, `2×`, `1.25×`, `0.002×`: three significant digits at most.
fn times(ratio: f64) -> String {
    let decimals = if ratio > 0.0 {
        (2 - ratio.log10().floor() as i64).clamp(0, 12) as usize
    } else {
        0
    };
    let text = format!("{ratio:.decimals$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    format!("{text}×")
}

/// Claim (a) at a glance: Mamba's time over the baseline's (the Transformer) against L, one
/// panel per width. A paired experiment's line is the paired ratio (the processes' median of
/// per-round ratios) with its 95% interval as a band; an unpaired one divides the medians. A grey line at 1 is parity, a
/// vertical one marks L = d_model (the claim's bound), and the FLOP model's ratio is dashed.
pub fn ratio_vs_seq_len(rows: &[Row], experiment: &str) -> Panels {
    let mine: Vec<&Row> = rows.iter().filter(|r| r.experiment == experiment).collect();
    // The baseline is a model, the same at every point: the one the paired rows name, else
    // the first Transformer. A point where it failed leaves its contenders without a ratio.
    let paired_to: std::collections::BTreeSet<&str> = mine
        .iter()
        .filter_map(|r| r.paired_with.as_deref())
        .collect();
    let baseline = mine
        .iter()
        .find(|r| paired_to.contains(r.run_id.as_str()))
        .or_else(|| mine.iter().find(|r| r.family == Family::Transformer))
        .map(|r| r.model.clone());
    let Some(baseline) = baseline else {
        return Panels {
            title: format!("{experiment}: no baseline to divide by"),
            panels: Vec::new(),
        };
    };
    let point = |r: &Row| (r.d_model, r.seq_len, r.batch);
    let baseline_at = |r: &Row| {
        mine.iter()
            .find(|b| b.model == baseline && point(b) == point(r))
            .copied()
    };
    let ratio = |r: &Row| -> Option<(f64, Option<(f64, f64)>)> {
        let base = baseline_at(r)?;
        if r.paired_with.as_deref() == Some(base.run_id.as_str()) {
            let interval = r.ratio_ci_low.zip(r.ratio_ci_high);
            return Some((r.ratio_median?, interval));
        }
        let both_ok = r.status == Status::Ok && base.status == Status::Ok;
        both_ok.then_some((r.latency_median_s? / base.latency_median_s?, None))
    };
    let contenders: Vec<Row> = mine
        .iter()
        .filter(|r| r.model != baseline)
        .map(|r| (*r).clone())
        .collect();
    let width_label = model_width(rows, experiment);
    let label = |r: &Row| format!("{} / {baseline}", width_label(r));
    let panels = widths(&contenders)
        .into_iter()
        .map(|d| {
            let at_width: Vec<Row> = contenders
                .iter()
                .filter(|r| r.d_model == d)
                .cloned()
                .collect();
            let (mut measured, failures) = lines(
                &at_width,
                experiment,
                label,
                |r| r.seq_len as f64,
                |r| ratio(r).map(|(median, _)| median),
            );
            for line in &mut measured {
                line.band = true;
                line.bounds = at_width
                    .iter()
                    .filter(|r| r.status == Status::Ok && label(r) == line.label)
                    .filter_map(|r| {
                        let (low, high) = ratio(r)?.1?;
                        Some((r.seq_len as f64, low, high))
                    })
                    .collect();
                line.bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
            }
            let (mut predicted, _) = lines(
                &at_width,
                experiment,
                |r| format!("FLOP model: {}", label(r)),
                |r| r.seq_len as f64,
                |r| Some(r.flops / baseline_at(r).filter(|b| b.flops > 0.0)?.flops),
            );
            for line in &mut predicted {
                line.dashed = true;
            }
            measured.extend(predicted);
            LineChart {
                title: format!("d_model = {d}"),
                x_desc: "sequence length L (tokens, log scale)".into(),
                y_desc: format!("time ÷ {baseline}'s (log scale; below 1: cheaper)"),
                x_axis: Axis::Log2,
                y_axis: Axis::Log10(times),
                lines: measured,
                failures,
                references: vec![
                    Reference::Horizontal("parity (ratio 1)".into(), 1.0),
                    Reference::Vertical("L = d_model".into(), d as f64),
                ],
            }
        })
        .collect();
    Panels {
        title: format!(
            "{experiment}: time ratio to {baseline} vs sequence length (95% interval shaded)"
        ),
        panels,
    }
}

/// The core op's median time against the state size N (the Mamba-2 paper's Fig. 10 axis):
/// one line per SSM family and width (see [`family_over_d_state`]), and a grey level for each
/// model without a state (SDPA), whose cost N does not change. One panel per sequence length
/// when the experiment has several.
pub fn latency_vs_d_state(rows: &[Row], runs: &[RunSpec], experiment: &str) -> Figure {
    let mine: Vec<Row> = rows
        .iter()
        .filter(|r| r.experiment == experiment)
        .cloned()
        .collect();
    let mut lengths: Vec<i64> = mine.iter().map(|r| r.seq_len).collect();
    lengths.sort_unstable();
    lengths.dedup();
    let chart = |at_length: &[Row], title: String| {
        let with_state: Vec<Row> = at_length
            .iter()
            .filter(|r| r.d_state.is_some())
            .cloned()
            .collect();
        let (lines, failures) = lines(
            &with_state,
            experiment,
            family_over_d_state(runs, experiment),
            |r| r.d_state.unwrap_or_default() as f64,
            |r| r.latency_median_s,
        );
        let references = at_length
            .iter()
            .filter(|r| r.d_state.is_none() && r.status == Status::Ok)
            .filter_map(|r| {
                let label = format!("{} d={} (no state)", r.model, r.d_model);
                r.latency_median_s.map(|t| Reference::Horizontal(label, t))
            })
            .collect();
        LineChart {
            title,
            x_desc: "state size N (d_state, log scale)".into(),
            y_desc: "median latency (log scale)".into(),
            x_axis: Axis::Log2,
            y_axis: Axis::Log10(format_seconds),
            lines,
            failures,
            references,
        }
    };
    let title = format!("{experiment}: median latency of the core op vs state size");
    match lengths[..] {
        [] | [_] => Figure::Single(chart(&mine, title)),
        _ => Figure::Panels(Panels {
            title: format!("{title}, one panel per length"),
            panels: lengths
                .iter()
                .map(|&l| {
                    let at: Vec<Row> = mine.iter().filter(|r| r.seq_len == l).cloned().collect();
                    chart(&at, format!("L = {l}"))
                })
                .collect(),
        }),
    }
}

/// A line's label over N: the family and width, and the settings other than `d_state` in
/// which that family's models in `experiment` differ (`mamba2 d=1536 chunk_size=256` beside
/// `chunk_size=64`), so that a suite with one model entry per state size still draws one line
/// per family. Settings come from the run specs; a row without one is labelled by its model.
fn family_over_d_state(runs: &[RunSpec], experiment: &str) -> impl Fn(&Row) -> String {
    let settings: HashMap<String, (Family, BTreeMap<String, String>)> = runs
        .iter()
        .filter(|spec| spec.experiment == experiment)
        .map(|spec| {
            let mut config = match serde_json::to_value(&spec.config) {
                Ok(serde_json::Value::Object(config)) => config,
                _ => Default::default(),
            };
            for shared in ["family", "d_state", "d_model"] {
                config.remove(shared);
            }
            let config = config
                .into_iter()
                .map(|(key, value)| (key, value.to_string()))
                .collect();
            (spec.run_id.clone(), (spec.config.family(), config))
        })
        .collect();
    let mut varying: HashMap<Family, BTreeSet<String>> = HashMap::new();
    for (family, config) in settings.values() {
        for (key, value) in config {
            let differs = settings
                .values()
                .any(|(other, theirs)| other == family && theirs.get(key) != Some(value));
            if differs {
                varying.entry(*family).or_default().insert(key.clone());
            }
        }
    }
    move |r: &Row| match settings.get(&r.run_id) {
        Some((family, config)) => {
            let shown: String = varying
                .get(family)
                .into_iter()
                .flatten()
                .map(|key| format!(" {key}={}", config[key]))
                .collect();
            format!("{} d={}{shown}", family.name(), r.d_model)
        }
        None => format!("{} d={}", r.model, r.d_model),
    }
}

/// One decoding step against the context it attends to (or, for Mamba, does not).
pub fn decode_vs_context(rows: &[Row], experiment: &str) -> LineChart {
    let mut chart = latency_chart(
        rows,
        experiment,
        format!("{experiment}: latency of one decoding step vs context"),
    );
    chart.x_desc = "context length (tokens, log scale)".into();
    chart.y_desc = "median step latency (log scale)".into();
    chart
}

/// Peak memory of the pass against L, measured; dashed, the analytic activation or state
/// bytes where the pass has them.
pub fn memory_vs_seq_len(rows: &[Row], experiment: &str) -> LineChart {
    let label = model_width(rows, experiment);
    let (mut lines, failures) = lines(
        rows,
        experiment,
        &label,
        |r| r.seq_len as f64,
        |r| r.peak_mem_bytes.map(|b| b as f64),
    );
    let (predicted, _) = lines_of_prediction(rows, experiment, &label);
    lines.extend(predicted);
    LineChart {
        title: format!("{experiment}: peak memory vs sequence length"),
        x_desc: "sequence length L (tokens, log scale)".into(),
        y_desc: "peak memory above weights and inputs (log scale)".into(),
        x_axis: Axis::Log2,
        y_axis: Axis::Log10(bytes),
        lines,
        failures,
        references: Vec::new(),
    }
}

/// Dashed lines of the analytic memory (activations kept for backward, or decoding state).
fn lines_of_prediction(
    rows: &[Row],
    experiment: &str,
    label: &impl Fn(&Row) -> String,
) -> (Vec<Line>, Vec<Failure>) {
    let (mut predicted, failures) = lines(
        rows,
        experiment,
        |r| format!("{} (analytic)", label(r)),
        |r| r.seq_len as f64,
        |r| Some(r.activation_bytes + r.state_bytes),
    );
    for line in &mut predicted {
        line.dashed = true;
    }
    (predicted, failures)
}

/// Tokens per second against batch size (generation throughput: the paper's Fig. 8 right).
pub fn throughput_vs_batch(rows: &[Row], experiment: &str) -> LineChart {
    let (lines, failures) = lines(
        rows,
        experiment,
        |r| format!("{} d={} L={}", r.model, r.d_model, r.seq_len),
        |r| r.batch as f64,
        |r| r.tokens_per_s,
    );
    LineChart {
        title: format!("{experiment}: throughput vs batch size"),
        x_desc: "batch size (log scale)".into(),
        y_desc: "tokens per second (log scale)".into(),
        x_axis: Axis::Log2,
        y_axis: Axis::Log10(rate),
        lines,
        failures,
        references: Vec::new(),
    }
}

/// The share of a Transformer's time spent in attention: measured where a `component: core`
/// run of the same model, width, length, batch and pass exists in the results; and, dashed,
/// the analytic FLOP share.
pub fn attention_share_vs_seq_len(rows: &[Row], experiment: &str) -> LineChart {
    let core_time = |r: &Row| {
        rows.iter()
            .find(|c| {
                c.component == Component::Core
                    && c.status == Status::Ok
                    && (
                        &c.model, c.d_model, c.seq_len, c.batch, &c.pass, &c.device, &c.dtype,
                    ) == (
                        &r.model, r.d_model, r.seq_len, r.batch, &r.pass, &r.device, &r.dtype,
                    )
            })
            .and_then(|c| c.latency_median_s)
    };
    let transformer: Vec<Row> = rows
        .iter()
        .filter(|r| r.family == Family::Transformer)
        .cloned()
        .collect();
    let (mut lines_measured, failures) = lines(
        &transformer,
        experiment,
        |r| format!("measured d={}", r.d_model),
        |r| r.seq_len as f64,
        |r| Some(core_time(r)? / r.latency_median_s?),
    );
    let (mut flops, _) = lines(
        &transformer,
        experiment,
        |r| format!("FLOP model d={}", r.d_model),
        |r| r.seq_len as f64,
        |r| (r.flops > 0.0).then(|| r.core_flops / r.flops),
    );
    for line in &mut flops {
        line.dashed = true;
    }
    lines_measured.extend(flops);
    LineChart {
        title: format!("{experiment}: share of Transformer time in attention"),
        x_desc: "sequence length L (tokens, log scale)".into(),
        y_desc: "attention share".into(),
        x_axis: Axis::Log2,
        y_axis: Axis::Linear(percent),
        lines: lines_measured,
        failures,
        references: Vec::new(),
    }
}

/// Measured crossover L* (with bounds) and the FLOP model's, against width, with L = d: the
/// forum claim "attention is cheaper below a length equal to the width" in one picture.
pub fn crossover_vs_width(crossovers: &[Crossover], experiment: &str) -> LineChart {
    let mine: Vec<&Crossover> = crossovers
        .iter()
        .filter(|c| c.experiment == experiment)
        .collect();
    let mut grouped: BTreeMap<String, (Line, Line)> = BTreeMap::new();
    for c in &mine {
        let key = format!(
            "{} vs {}, {} {} b={}",
            c.model,
            c.baseline,
            c.pass.name(),
            c.component.name(),
            c.batch
        );
        let index = grouped.len();
        let (measured, flops) = grouped.entry(key.clone()).or_insert_with(|| {
            (
                Line {
                    label: format!("measured L*: {key}"),
                    color: index + FIRST_FREE_COLOR,
                    ..Line::default()
                },
                Line {
                    label: format!("FLOP model L*: {key}"),
                    color: index + FIRST_FREE_COLOR,
                    dashed: true,
                    ..Line::default()
                },
            )
        });
        let d = c.d_model as f64;
        if let Some(l) = c.measured {
            measured.points.push((d, l));
            if let (Some(lo), Some(hi)) = (c.measured_low, c.measured_high) {
                measured.bounds.push((d, lo.min(hi), lo.max(hi)));
            }
        }
        if let Some(l) = c.flops_crossover.and_then(|p| p.length()) {
            flops.points.push((d, l));
        }
    }
    let mut lines = Vec::new();
    for (_, (mut measured, mut flops)) in grouped {
        measured.points.sort_by(|a, b| a.0.total_cmp(&b.0));
        flops.points.sort_by(|a, b| a.0.total_cmp(&b.0));
        lines.push(measured);
        lines.push(flops);
    }
    let widths: Vec<f64> = mine.iter().map(|c| c.d_model as f64).collect();
    let (lo, hi) = widths.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &d| {
        (lo.min(d), hi.max(d))
    });
    let references = if lo <= hi {
        vec![Reference::Path(
            "L = d_model".to_owned(),
            vec![(lo, lo), (hi, hi)],
        )]
    } else {
        Vec::new()
    };
    LineChart {
        title: format!("{experiment}: crossover length vs width"),
        x_desc: "d_model (log scale)".into(),
        y_desc: "crossover L* (tokens, log scale)".into(),
        x_axis: Axis::Log2,
        y_axis: Axis::Log10(|l| format!("{l:.0}")),
        lines,
        failures: Vec::new(),
        references,
    }
}

/// The runs of one recall configuration: the task's options, the training length, the model
/// and its width.
type RecallKey = (String, i64, String, i64);

/// Recall rows of `experiment` grouped by (task options, training length, model, d_model),
/// keeping for each the learning rate with the best accuracy at the training length (zoology
/// plots the best).
fn best_lr_runs<'a>(rows: &'a [Row], experiment: &str) -> BTreeMap<RecallKey, Vec<&'a Row>> {
    let mut by_lr: BTreeMap<RecallKey, BTreeMap<String, Vec<&Row>>> = BTreeMap::new();
    for row in rows
        .iter()
        .filter(|r| r.experiment == experiment && r.kind == ExperimentKind::Recall)
    {
        let lr = format!("{:e}", row.lr.unwrap_or_default());
        let options = row.task_options.clone().unwrap_or_default();
        by_lr
            .entry((options, row.seq_len, row.model.clone(), row.d_model))
            .or_default()
            .entry(lr)
            .or_default()
            .push(row);
    }
    by_lr
        .into_iter()
        .map(|(key, runs)| {
            // The mean over seeds of the held-out accuracy at the training length.
            let in_distribution = |rows: &Vec<&Row>| {
                let near: Vec<f64> = rows
                    .iter()
                    .filter(|r| r.eval_seq_len == Some(r.seq_len))
                    .map(|r| r.accuracy.unwrap_or(-1.0))
                    .collect();
                match near.is_empty() {
                    true => -1.0,
                    false => near.iter().sum::<f64>() / near.len() as f64,
                }
            };
            let best = runs
                .into_values()
                .max_by(|a, b| in_distribution(a).total_cmp(&in_distribution(b)))
                .unwrap_or_default();
            (key, best)
        })
        .collect()
}

/// The `key=value` options that differ between `options` (each a `Task::options` string), so
/// that a label names what tells tasks apart and not what they share.
fn varying_options<'a>(options: impl Iterator<Item = &'a str> + Clone) -> Vec<String> {
    let all: Vec<Vec<&str>> = options.map(|o| o.split(' ').collect()).collect();
    let mut varying: Vec<String> = all
        .iter()
        .flatten()
        .filter(|pair| !all.iter().all(|o| o.contains(pair)))
        .map(|pair| pair.split('=').next().unwrap_or_default().to_owned())
        .collect();
    varying.sort();
    varying.dedup();
    varying
}

/// The pairs of `options` whose keys are in `varying`, each after a space.
fn shown(options: &str, varying: &[String]) -> String {
    options
        .split(' ')
        .filter(|pair| varying.iter().any(|v| pair.split('=').next() == Some(v)))
        .map(|pair| format!(" {pair}"))
        .collect()
}

/// Accuracy against width, best over learning rates: one panel per experiment, training
/// length and task (zoology's Fig. 2), all in one figure.
pub fn accuracy_vs_width(rows: &[Row], experiments: &[String]) -> Panels {
    let mut panels = Vec::new();
    for experiment in experiments {
        let best = best_lr_runs(rows, experiment);
        let varying = varying_options(best.keys().map(|k| k.0.as_str()));
        let mut groups: Vec<(&str, i64)> = best.keys().map(|k| (k.0.as_str(), k.1)).collect();
        groups.dedup();
        groups.sort_by_key(|g| g.1);
        for (options, len) in groups {
            let chosen: Vec<Row> = best
                .iter()
                .filter(|(k, _)| k.0 == options && k.1 == len)
                .flat_map(|(_, rows)| rows.iter().filter(|r| r.eval_seq_len == Some(len)))
                .map(|r| (*r).clone())
                .collect();
            let seeds = seed_label(&chosen);
            let label = |r: &Row| format!("{}{}", r.model, seeds(r));
            let x = |r: &Row| r.d_model as f64;
            let series = accuracy_lines(&chosen, experiment, &label, &x);
            let title = format!("{experiment}, L={len}{}", shown(options, &varying));
            panels.push(accuracy_chart(
                title,
                "d_model (log scale)",
                series,
                &chosen,
            ));
        }
    }
    Panels {
        title: format!(
            "{}: accuracy vs width (best learning rate)",
            experiments.join(", ")
        ),
        panels,
    }
}

/// Accuracy, kept above zero so that a line can still be drawn through chance-level points.
fn accuracy(r: &Row) -> Option<f64> {
    r.accuracy.map(|a| a.max(1e-9))
}

/// `" seed N"` for rows of an experiment run with several seeds, so that each seed is its own
/// line; nothing otherwise.
fn seed_label(rows: &[Row]) -> impl Fn(&Row) -> String {
    let first = rows.first().map(|r| r.seed);
    let several = rows.iter().any(|r| Some(r.seed) != first);
    move |r: &Row| match (several, r.seed) {
        (true, Some(seed)) => format!(" seed {seed}"),
        _ => String::new(),
    }
}

/// Accuracy lines with each point's Wilson 95% interval as an error bar.
fn accuracy_lines(
    rows: &[Row],
    experiment: &str,
    label: &impl Fn(&Row) -> String,
    x: &impl Fn(&Row) -> f64,
) -> (Vec<Line>, Vec<Failure>) {
    let (mut lines, failures) = lines(rows, experiment, label, x, accuracy);
    for row in rows.iter().filter(|r| r.experiment == experiment) {
        let (Some(low), Some(high)) = (row.accuracy_ci_low, row.accuracy_ci_high) else {
            continue;
        };
        if let Some(line) = lines.iter_mut().find(|l| l.label == label(row)) {
            line.bounds.push((x(row), low.max(1e-9), high));
        }
    }
    for line in &mut lines {
        line.bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    (lines, failures)
}

fn accuracy_chart(
    title: String,
    x_desc: &str,
    (lines, failures): (Vec<Line>, Vec<Failure>),
    rows: &[Row],
) -> LineChart {
    let references = chance_level(rows);
    LineChart {
        title,
        x_desc: x_desc.into(),
        y_desc: "accuracy at the recall positions (95% interval)".into(),
        x_axis: Axis::Log2,
        y_axis: Axis::Fraction,
        lines,
        failures,
        references,
    }
}

/// A grey line at the chance level, where `rows` share one (one task per chart).
fn chance_level<'a>(rows: impl IntoIterator<Item = &'a Row>) -> Vec<Reference> {
    let mut chances: Vec<f64> = rows.into_iter().filter_map(|r| r.chance_accuracy).collect();
    chances.dedup();
    match chances[..] {
        [chance] => vec![Reference::Horizontal("chance".into(), chance)],
        _ => Vec::new(),
    }
}

/// Accuracy against evaluation length for models trained at one length: extrapolation.
pub fn accuracy_vs_eval_len(rows: &[Row], experiment: &str) -> LineChart {
    let best = best_lr_runs(rows, experiment);
    let varying = varying_options(best.keys().map(|k| k.0.as_str()));
    let chosen: Vec<Row> = best.into_values().flatten().cloned().collect();
    let task = |r: &Row| shown(r.task_options.as_deref().unwrap_or_default(), &varying);
    let seeds = seed_label(&chosen);
    let label = |r: &Row| {
        format!(
            "{} d={} trained at L={}{}{}",
            r.model,
            r.d_model,
            r.seq_len,
            task(r),
            seeds(r)
        )
    };
    let x = |r: &Row| r.eval_seq_len.unwrap_or(r.seq_len) as f64;
    let series = accuracy_lines(&chosen, experiment, &label, &x);
    accuracy_chart(
        format!("{experiment}: accuracy vs evaluation length"),
        "evaluation length (tokens, log scale)",
        series,
        &chosen,
    )
}

/// Held-out accuracy at each evaluation during training, against the step: one panel per
/// model, a line per run, labelled with its width, learning rate and (where the experiment
/// has several) seed, and the chance level. Recall runs plateau (at chance, or at knowing the
/// answer is one of a few tokens) before they learn; this shows when each left, if it did.
pub fn learning_curve(rows: &[Row], curves: &Curves, experiment: &str) -> Panels {
    let mut runs: Vec<Row> = rows
        .iter()
        .filter(|r| r.experiment == experiment)
        .cloned()
        .collect();
    // One row a run, its row at the training length first: the curve is evaluated there.
    let off_length = |r: &Row| r.eval_seq_len.is_some_and(|len| len != r.seq_len);
    runs.sort_by(|a, b| {
        natural_order(&a.run_id, &b.run_id).then(off_length(a).cmp(&off_length(b)))
    });
    runs.dedup_by(|a, b| a.run_id == b.run_id);
    let seeds = seed_label(&runs);
    let curve_of: HashMap<&str, &[CurvePoint]> = curves
        .iter()
        .map(|(id, points)| (id.as_str(), points.as_slice()))
        .collect();
    let mut models: Vec<&str> = runs.iter().map(|r| r.model.as_str()).collect();
    models.sort_by(|a, b| natural_order(a, b));
    models.dedup();
    let panels = models
        .into_iter()
        .map(|model| {
            let mine: Vec<&Row> = runs.iter().filter(|r| r.model == model).collect();
            let lines = mine
                .iter()
                .enumerate()
                .map(|(rank, run)| Line {
                    label: format!(
                        "d={} lr={:e}{}",
                        run.d_model,
                        run.lr.unwrap_or(f64::NAN),
                        seeds(run)
                    ),
                    points: curve_of
                        .get(run.run_id.as_str())
                        .into_iter()
                        .flat_map(|points| points.iter())
                        .filter_map(|p| p.eval_accuracy.map(|a| (p.step as f64, a)))
                        .collect(),
                    color: family_color(run.family),
                    shade: shade_of(rank, mine.len()),
                    ..Line::default()
                })
                .collect();
            let references = chance_level(mine.iter().copied());
            LineChart {
                title: model.to_owned(),
                x_desc: "training step".into(),
                y_desc: "held-out accuracy at the training length".into(),
                x_axis: Axis::Linear(|step| format!("{step:.0}")),
                y_axis: Axis::Fraction,
                lines,
                failures: Vec::new(),
                references,
            }
        })
        .collect();
    Panels {
        title: format!("{experiment}: held-out accuracy during training"),
        panels,
    }
}
