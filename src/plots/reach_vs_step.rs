//! Reach against the training step (issue #30): does a model's reach grow as training goes
//! on, as mamba issue #62 (40K steps) and the paper (about 200K) suggest? One panel per
//! experiment (recipe), a line per run (seed): at each step where reach was measured, the
//! longest length cleared (`analysis::reach`), and at the last step the final evaluation's,
//! over the same lengths.

use super::line::{Axis, Line, LineChart, Reference};
use super::panels::Panels;
use super::style::{family_color, shade_of};
use crate::analysis::reach::{final_reach, lower_bounds, reach, REACH_THRESHOLD};
use crate::results::curves::Curves;
use crate::results::Row;
use crate::train::trainer::CurvePoint;
use std::collections::BTreeMap;

pub fn reach_vs_step(rows: &[Row], curves: &Curves, experiments: &[String]) -> Panels {
    let panels = experiments
        .iter()
        .map(|experiment| panel(rows, curves, experiment))
        .collect();
    Panels {
        title: format!("Reach during training (95% lower bound ≥ {REACH_THRESHOLD} up to it)"),
        panels,
    }
}

fn panel(rows: &[Row], curves: &Curves, experiment: &str) -> LineChart {
    // run id → its rows, one per evaluation length.
    let mut runs: BTreeMap<(i64, &str), Vec<&Row>> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.experiment == experiment) {
        runs.entry((row.seed.unwrap_or_default(), row.run_id.as_str()))
            .or_default()
            .push(row);
    }
    let count = runs.len();
    let mut models: Vec<&str> = runs.values().map(|rows| rows[0].model.as_str()).collect();
    models.sort_unstable();
    models.dedup();
    let several_models = models.len() > 1;
    let mut train_len = None;
    let lines = runs
        .iter()
        .enumerate()
        .map(|(rank, ((seed, run_id), rows))| {
            let first = rows[0];
            train_len = Some(first.seq_len);
            let curve = curves
                .iter()
                .find(|(id, _)| id == run_id)
                .map_or(&[][..], |(_, points)| points.as_slice());
            let model = match several_models {
                true => format!("{} ", first.model),
                false => String::new(),
            };
            Line {
                label: format!("{model}seed {seed}"),
                points: points(curve, rows, first.seq_len),
                color: family_color(first.family),
                shade: shade_of(rank, count),
                ..Line::default()
            }
        })
        .collect();
    let mut references = vec![Reference::Horizontal("2^20 (the claim)".into(), 1048576.0)];
    if let Some(len) = train_len {
        references.push(Reference::Horizontal("training length".into(), len as f64));
    }
    // An experiment with nothing finished keeps its panel, saying so, rather than vanishing.
    let title = match count {
        0 => format!("{experiment}: no finished runs yet"),
        _ => experiment.to_owned(),
    };
    LineChart {
        title,
        x_desc: "training step".into(),
        y_desc: "reach (tokens, log scale)".into(),
        x_axis: Axis::Linear(thousands),
        y_axis: Axis::Log2,
        lines,
        failures: Vec::new(),
        references,
    }
}

/// 40000 as "40K", 2500 as "2.5K", 250 as "250".
fn thousands(step: f64) -> String {
    match step {
        s if s >= 1000.0 && (s / 1000.0).fract() == 0.0 => format!("{:.0}K", s / 1000.0),
        s if s >= 1000.0 => format!("{:.1}K", s / 1000.0),
        s => format!("{s:.0}"),
    }
}

/// (step, reach) where reach was measured, then the final evaluation's at the last step over
/// the lengths measured during training (all of them when none were). A step whose model has
/// learned but clears no longer length has the training length as its reach.
fn points(curve: &[CurvePoint], rows: &[&Row], train_len: i64) -> Vec<(f64, f64)> {
    let measured: Vec<&CurvePoint> = curve.iter().filter(|p| !p.reach.is_empty()).collect();
    let lengths: Vec<i64> = measured
        .iter()
        .flat_map(|p| p.reach.iter().map(|r| r.seq_len))
        .collect();
    let with_training = |mut bounds: Vec<(i64, f64)>| {
        bounds.retain(|(len, _)| *len > train_len);
        reach(bounds, REACH_THRESHOLD).unwrap_or(train_len) as f64
    };
    let mut points: Vec<(f64, f64)> = measured
        .iter()
        .map(|p| (p.step as f64, with_training(lower_bounds(&p.reach))))
        .collect();
    let counted = |len: i64| lengths.is_empty() || lengths.contains(&len);
    if let (Some(reach), Some(steps)) = (final_reach(rows, train_len, counted), rows[0].steps) {
        points.push((steps as f64, reach as f64));
    }
    points.dedup_by(|a, b| a.0 == b.0);
    points
}
