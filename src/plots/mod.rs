//! Charts, one function per chart kind, each written as PNG and SVG.
//!
//! Text is drawn with the bundled DejaVu Sans, so charts have labels on machines without
//! fontconfig or system fonts.

pub mod kinds;
pub mod line;
mod style;

use crate::analysis::crossover::Crossover;
use crate::results::Row;
use crate::suite::schema::{PlotEntry, PlotKind};
use polars::prelude::PolarsError;
use std::path::{Path, PathBuf};

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

/// Draws `plot` from `rows` (and their `crossovers`) into `dir`, returning the files written
/// (none when the experiment has nothing to show).
pub fn render(
    plot: &PlotEntry,
    rows: &[Row],
    crossovers: &[Crossover],
    dir: &Path,
) -> Result<Vec<PathBuf>, PlotError> {
    std::fs::create_dir_all(dir).map_err(|source| PlotError::Folder {
        path: dir.to_owned(),
        source,
    })?;
    let stem = dir.join(format!("{}_{}", plot.kind.name(), plot.experiment));
    let experiment = plot.experiment.as_str();
    let single = |chart| vec![(stem.clone(), chart)];
    let charts = match plot.kind {
        PlotKind::AccuracyVsWidth => kinds::accuracy_vs_width(rows, experiment)
            .into_iter()
            .map(|(len, chart)| {
                (
                    stem.with_file_name(format!("{}_L{len}", file_name(&stem))),
                    chart,
                )
            })
            .collect(),
        PlotKind::AccuracyVsEvalLen => single(kinds::accuracy_vs_eval_len(rows, experiment)),
        PlotKind::LatencyVsSeqLen => single(kinds::latency_vs_seq_len(rows, experiment)),
        PlotKind::DecodeVsContext => single(kinds::decode_vs_context(rows, experiment)),
        PlotKind::MemoryVsSeqLen => single(kinds::memory_vs_seq_len(rows, experiment)),
        PlotKind::ThroughputVsBatch => single(kinds::throughput_vs_batch(rows, experiment)),
        PlotKind::AttentionShareVsSeqLen => {
            single(kinds::attention_share_vs_seq_len(rows, experiment))
        }
        PlotKind::CrossoverVsWidth => single(kinds::crossover_vs_width(crossovers, experiment)),
    };
    let mut files = Vec::new();
    for (stem, chart) in charts.iter().filter(|(_, c)| !c.is_empty()) {
        files.extend(style::png_and_svg(stem, chart)?);
    }
    Ok(files)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
