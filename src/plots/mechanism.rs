//! Does Δ explain reach? Each trained Mamba's half-lives (`train::mechanism`: the writers'
//! median, and the slowest tenth of all channels) against the reach it measured, a panel per
//! layer, a line per experiment and statistic through its seeds, and the diagonal where the
//! two are equal: a layer whose points follow it holds the answer as long as its Δ says.

use super::line::{Axis, Line, LineChart};
use super::panels::Panels;
use super::style::{family_color, shade_of, FIRST_FREE_COLOR};
use crate::models::Family;
use crate::results::mechanism::MechanismRow;
use std::collections::BTreeMap;

pub fn half_life_vs_reach(rows: &[MechanismRow]) -> Panels {
    let mut layers: Vec<usize> = rows.iter().map(|r| r.layer.layer).collect();
    layers.sort_unstable();
    layers.dedup();
    Panels {
        title: "Does Δ explain reach? half-lives against measured reach".into(),
        panels: layers.into_iter().map(|l| panel(rows, l)).collect(),
    }
}

/// Reads one half-life, in tokens, off a row.
type HalfLife = fn(&MechanismRow) -> f64;

/// The two half-lives drawn against reach: the writers' median, and the 90th percentile over
/// every channel (the slowest tenth), which can carry the answer without standing out at it.
const STATISTICS: [(&str, HalfLife); 2] = [
    ("writers' median", |r| r.layer.writer_half_life),
    ("slowest tenth", |r| r.layer.half_life.p90),
];

fn panel(rows: &[MechanismRow], layer: usize) -> LineChart {
    // (experiment, statistic) → (reach, half-life) of its learned runs.
    let mut by_series: BTreeMap<(&str, usize), Vec<(f64, f64)>> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.layer.layer == layer) {
        if let Some(reach) = row.measured_reach {
            for (i, (_, statistic)) in STATISTICS.iter().enumerate() {
                by_series
                    .entry((row.experiment.as_str(), i))
                    .or_default()
                    .push((reach as f64, statistic(row)));
            }
        }
    }
    let count = by_series.len();
    let mut extent: Vec<f64> = Vec::new();
    let mut lines: Vec<Line> = by_series
        .into_iter()
        .enumerate()
        .map(|(rank, ((experiment, statistic), mut points))| {
            points.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
            extent.extend(points.iter().flat_map(|&(x, y)| [x, y]));
            Line {
                label: format!("{experiment}: {}", STATISTICS[statistic].0),
                points,
                color: family_color(Family::Mamba),
                shade: shade_of(rank, count),
                ..Line::default()
            }
        })
        .collect();
    // The diagonal is a line, not a reference, so that both axes span it: a point's distance
    // from it is then what the eye reads.
    let (lo, hi) = extent
        .iter()
        .filter(|v| v.is_finite() && **v > 0.0)
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    if lo < hi {
        lines.push(Line {
            label: "half-life = reach".into(),
            points: vec![(lo, lo), (hi, hi)],
            dashed: true,
            color: FIRST_FREE_COLOR,
            ..Line::default()
        });
    }
    LineChart {
        title: format!("layer {layer}"),
        x_desc: "measured reach (tokens, log scale)".into(),
        y_desc: "half-life over noise (tokens, log scale)".into(),
        x_axis: Axis::Log2,
        y_axis: Axis::Log2,
        lines,
        failures: Vec::new(),
        references: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::mechanism::{LayerMechanism, Percentiles};

    fn row(experiment: &str, seed: u64, reach: Option<i64>, half_life: f64) -> MechanismRow {
        let p = Percentiles {
            p10: 1.0,
            p50: 1.0,
            p90: 1.0,
        };
        MechanismRow {
            run_id: format!("{experiment}.s{seed}"),
            experiment: experiment.into(),
            model: "mamba".into(),
            seed,
            lr: 1e-3,
            steps: 40000,
            measured_reach: reach,
            layer: LayerMechanism {
                layer: 0,
                delta_noise: p,
                delta_trigger: p,
                delta_answer: p,
                half_life: p,
                writer_half_life: half_life,
                writer_retention_far: 0.0,
            },
        }
    }

    #[test]
    fn learned_runs_are_points_beside_a_diagonal_spanning_both_axes() {
        let rows = [
            row("paper", 0, Some(4096), 36_000.0),
            row("paper", 1, Some(1024), 700.0),
            row("paper", 2, None, 5.0),
            row("lr2e-4", 0, Some(256), 300.0),
        ];
        let figure = half_life_vs_reach(&rows);
        assert_eq!(figure.panels.len(), 1);
        let lines = &figure.panels[0].lines;
        let labels: Vec<&str> = lines.iter().map(|l| l.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "lr2e-4: writers' median",
                "lr2e-4: slowest tenth",
                "paper: writers' median",
                "paper: slowest tenth",
                "half-life = reach"
            ]
        );
        // Seeds in order of reach; the run that did not learn has no reach to explain.
        assert_eq!(lines[2].points, [(1024.0, 700.0), (4096.0, 36_000.0)]);
        assert_eq!(lines[3].points, [(1024.0, 1.0), (4096.0, 1.0)]);
        let diagonal = &lines[4];
        assert!(diagonal.dashed);
        assert_eq!(diagonal.points, [(1.0, 1.0), (36_000.0, 36_000.0)]);
    }
}
