//! Latency against sequence length, log-log: a straight line of slope 1 is linear scaling, of
//! slope 2 quadratic, so Mamba's and attention's asymptotics can be read off the chart.

use super::style::{color, png_and_svg, Chart, FONT};
use super::PlotError;
use crate::measure::timing::format_seconds;
use plotters::coord::Shift;
use plotters::prelude::*;
use polars::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One line: a model at one width and batch size.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct SeriesKey {
    model: String,
    d_model: i64,
    batch: i64,
}

struct LatencyChart {
    title: String,
    series: BTreeMap<SeriesKey, Vec<(f64, f64)>>,
    show_batch: bool,
}

pub fn latency_vs_seq_len(
    table: &DataFrame,
    experiment: &str,
    stem: &Path,
) -> Result<Vec<PathBuf>, PlotError> {
    let series = collect(table, experiment)?;
    if series.is_empty() {
        return Ok(Vec::new());
    }
    let batches: std::collections::BTreeSet<i64> = series.keys().map(|k| k.batch).collect();
    let chart = LatencyChart {
        title: format!("{experiment}: median latency vs sequence length"),
        show_batch: batches.len() > 1,
        series,
    };
    png_and_svg(stem, &chart)
}

/// Successful rows of `experiment`, grouped into lines sorted by sequence length.
fn collect(
    table: &DataFrame,
    experiment: &str,
) -> PolarsResult<BTreeMap<SeriesKey, Vec<(f64, f64)>>> {
    let experiments = table.column("experiment")?.str()?;
    let status = table.column("status")?.str()?;
    let model = table.column("model")?.str()?;
    let d_model = table.column("d_model")?.i64()?;
    let batch = table.column("batch")?.i64()?;
    let seq_len = table.column("seq_len")?.i64()?;
    let latency = table.column("latency_median_s")?.f64()?;
    let mut series: BTreeMap<SeriesKey, Vec<(f64, f64)>> = BTreeMap::new();
    for i in 0..table.height() {
        if experiments.get(i) != Some(experiment) || status.get(i) != Some("ok") {
            continue;
        }
        let (Some(m), Some(d), Some(b), Some(l), Some(t)) = (
            model.get(i),
            d_model.get(i),
            batch.get(i),
            seq_len.get(i),
            latency.get(i),
        ) else {
            continue;
        };
        let key = SeriesKey {
            model: m.to_owned(),
            d_model: d,
            batch: b,
        };
        series.entry(key).or_default().push((l as f64, t));
    }
    for points in series.values_mut() {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    Ok(series)
}

/// The range of `values` padded by `pad` on both sides (values are already logarithms).
fn padded(values: impl Iterator<Item = f64>, pad: f64) -> std::ops::Range<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    (lo - pad)..(hi + pad)
}

fn log_point((seq_len, seconds): (f64, f64)) -> (f64, f64) {
    (seq_len.log2(), seconds.log10())
}

impl Chart for LatencyChart {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        root.fill(&WHITE).map_err(err)?;
        // Axes are linear in log2 L and log10 seconds, labelled in plain units: plotters' own
        // log axes label too sparsely to read values off.
        let points = || self.series.values().flatten();
        let x_range = padded(points().map(|p| p.0.log2()), 0.3);
        let y_range = padded(points().map(|p| p.1.log10()), 0.15);
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FONT, 26))
            .margin(20)
            .x_label_area_size(55)
            .y_label_area_size(90)
            .build_cartesian_2d(x_range, y_range)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("sequence length L (tokens, log scale)")
            .y_desc("median latency (log scale)")
            .label_style((FONT, 16))
            .axis_desc_style((FONT, 20))
            .max_light_lines(1)
            .x_labels(12)
            .y_labels(12)
            .x_label_formatter(&|x| format!("{:.0}", x.exp2()))
            .y_label_formatter(&|y| format_seconds(10f64.powf(*y)))
            .draw()
            .map_err(err)?;
        for (i, (key, line)) in self.series.iter().enumerate() {
            let c = color(i);
            let label = if self.show_batch {
                format!("{} d={} b={}", key.model, key.d_model, key.batch)
            } else {
                format!("{} d={}", key.model, key.d_model)
            };
            chart
                .draw_series(LineSeries::new(
                    line.iter().map(|&p| log_point(p)),
                    c.stroke_width(2),
                ))
                .map_err(err)?
                .label(label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], c.stroke_width(3)));
            chart
                .draw_series(
                    line.iter()
                        .map(|&p| Circle::new(log_point(p), 4, c.filled())),
                )
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FONT, 16))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        Ok(())
    }
}
