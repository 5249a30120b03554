//! Does Δ explain reach? Each trained Mamba's writer half-life (the median half-life of the
//! channels that take the answer in, `train::mechanism`) against the reach it measured, a
//! panel per layer, a line per experiment through its seeds, and the diagonal where the two
//! are equal: a layer whose points follow it holds the answer as long as its Δ says.

use super::line::{Axis, Line, LineChart, Reference};
use super::panels::Panels;
use super::style::{family_color, shade_of};
use crate::models::Family;
use crate::results::mechanism::MechanismRow;
use std::collections::BTreeMap;

pub fn half_life_vs_reach(rows: &[MechanismRow]) -> Panels {
    let mut layers: Vec<usize> = rows.iter().map(|r| r.layer.layer).collect();
    layers.sort_unstable();
    layers.dedup();
    Panels {
        title: "Does Δ explain reach? Writers' half-life against measured reach".into(),
        panels: layers.into_iter().map(|l| panel(rows, l)).collect(),
    }
}

fn panel(rows: &[MechanismRow], layer: usize) -> LineChart {
    // experiment → (reach, half-life) of its learned runs.
    let mut by_experiment: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.layer.layer == layer) {
        if let Some(reach) = row.measured_reach {
            by_experiment
                .entry(row.experiment.as_str())
                .or_default()
                .push((reach as f64, row.layer.writer_half_life));
        }
    }
    let count = by_experiment.len();
    let mut extent: Vec<f64> = Vec::new();
    let lines = by_experiment
        .into_iter()
        .enumerate()
        .map(|(rank, (experiment, mut points))| {
            points.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
            extent.extend(points.iter().flat_map(|&(x, y)| [x, y]));
            Line {
                label: experiment.to_owned(),
                points,
                color: family_color(Family::Mamba),
                shade: shade_of(rank, count),
                ..Line::default()
            }
        })
        .collect();
    let (lo, hi) = extent
        .iter()
        .filter(|v| v.is_finite() && **v > 0.0)
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let references = match lo < hi {
        true => vec![Reference::Path(
            "half-life = reach".into(),
            vec![(lo, lo), (hi, hi)],
        )],
        false => Vec::new(),
    };
    LineChart {
        title: format!("layer {layer}"),
        x_desc: "measured reach (tokens, log scale)".into(),
        y_desc: "writers' half-life (tokens, log scale)".into(),
        x_axis: Axis::Log2,
        y_axis: Axis::Log2,
        lines,
        failures: Vec::new(),
        references,
    }
}
