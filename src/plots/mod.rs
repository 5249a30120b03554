//! Charts, one function per chart kind, each written as PNG and SVG.
//!
//! Text is drawn with the bundled DejaVu Sans, so charts have labels on machines without
//! fontconfig or system fonts.

pub mod latency;
mod style;

use crate::suite::schema::{PlotEntry, PlotKind};
use polars::prelude::{DataFrame, PolarsError};
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

/// Draws `plot` from `table` into `dir`, returning the files written (none when the experiment
/// has no successful rows to show).
pub fn render(plot: &PlotEntry, table: &DataFrame, dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
    std::fs::create_dir_all(dir).map_err(|source| PlotError::Folder {
        path: dir.to_owned(),
        source,
    })?;
    let stem = dir.join(format!("{}_{}", plot.kind.name(), plot.experiment));
    match plot.kind {
        PlotKind::LatencyVsSeqLen => latency::latency_vs_seq_len(table, &plot.experiment, &stem),
    }
}
