//! Charts, one function per chart kind, each written as PNG and SVG.
//!
//! Text is drawn with the bundled DejaVu Sans, so charts have labels on machines without
//! fontconfig or system fonts.

pub mod kinds;
pub mod line;
pub mod mechanism;
pub mod panels;
pub mod reach_vs_step;
mod style;

use crate::analysis::crossover::Crossover;
use crate::results::curves::Curves;
use crate::results::Row;
use crate::spec::RunSpec;
use crate::suite::schema::{PlotEntry, PlotKind};
use polars::prelude::PolarsError;
use std::path::{Path, PathBuf};
use style::Chart;

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("the results table lacks what the chart needs: {0}")]
    Table(#[from] PolarsError),
    #[error("cannot draw `{}`: {message}", path.display())]
    Draw { path: PathBuf, message: String },
    #[error("cannot create `{}`: {source}", path.display())]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Draws `plot` from `rows` (with their `runs`, training `curves` and `crossovers`) into
/// `dir`, returning the files written (none when the experiment has nothing to show).
pub fn render(
    plot: &PlotEntry,
    rows: &[Row],
    runs: &[RunSpec],
    curves: &Curves,
    crossovers: &[Crossover],
    dir: &Path,
) -> Result<Vec<PathBuf>, PlotError> {
    std::fs::create_dir_all(dir).map_err(|source| PlotError::Folder {
        path: dir.to_owned(),
        source,
    })?;
    let stem = dir.join(plot.stem());
    let Some(experiment) = plot.experiments().first().map(String::as_str) else {
        return Ok(Vec::new()); // validation requires one
    };
    match plot.kind {
        PlotKind::AccuracyVsWidth => {
            draw(&stem, &kinds::accuracy_vs_width(rows, plot.experiments()))
        }
        PlotKind::AccuracyVsEvalLen => draw(&stem, &kinds::accuracy_vs_eval_len(rows, experiment)),
        PlotKind::LatencyVsSeqLen => draw(&stem, &kinds::latency_vs_seq_len(rows, experiment)),
        PlotKind::DecodeVsContext => draw(&stem, &kinds::decode_vs_context(rows, experiment)),
        PlotKind::MemoryVsSeqLen => draw(&stem, &kinds::memory_vs_seq_len(rows, experiment)),
        PlotKind::ThroughputVsBatch => draw(&stem, &kinds::throughput_vs_batch(rows, experiment)),
        PlotKind::AttentionShareVsSeqLen => {
            draw(&stem, &kinds::attention_share_vs_seq_len(rows, experiment))
        }
        PlotKind::CrossoverVsWidth => {
            draw(&stem, &kinds::crossover_vs_width(crossovers, experiment))
        }
        PlotKind::RatioVsSeqLen => draw(&stem, &kinds::ratio_vs_seq_len(rows, experiment)),
        PlotKind::LatencyVsDState => {
            draw(&stem, &kinds::latency_vs_d_state(rows, runs, experiment))
        }
        PlotKind::LearningCurve => draw(&stem, &kinds::learning_curve(rows, curves, experiment)),
        PlotKind::ReachVsStep => draw(
            &stem,
            &reach_vs_step::reach_vs_step(rows, curves, plot.experiments()),
        ),
    }
}

/// The folder of a results folder's charts.
pub const PLOTS_DIR: &str = "plots";

/// Writes a figure of panels drawn outside a suite's plot list (`mvt mechanism`'s) as
/// `stem.png` and `stem.svg`, creating their folder; nothing when it has no points.
pub fn draw_panels(stem: &Path, figure: &panels::Panels) -> Result<Vec<PathBuf>, PlotError> {
    if let Some(dir) = stem.parent() {
        std::fs::create_dir_all(dir).map_err(|source| PlotError::Folder {
            path: dir.to_owned(),
            source,
        })?;
    }
    draw(stem, figure)
}

/// Writes `chart` as `stem.png` and `stem.svg`, or nothing when it has no points.
fn draw(stem: &Path, chart: &impl Chart) -> Result<Vec<PathBuf>, PlotError> {
    if chart.is_empty() {
        return Ok(Vec::new());
    }
    style::png_and_svg(stem, chart)
}
