//! Several line charts side by side under one title, as zoology's Fig. 2 shows accuracy
//! against width with one panel per sequence length.

use super::line::LineChart;
use super::style::{Chart, FONT, SIZE};
use plotters::coord::Shift;
use plotters::prelude::*;

/// Panels per row; more wrap onto further rows.
const COLUMNS: usize = 3;
const TITLE_HEIGHT: u32 = 50;

pub struct Panels {
    pub title: String,
    pub panels: Vec<LineChart>,
}

impl Panels {
    fn grid(&self) -> (usize, usize) {
        let columns = self.panels.len().clamp(1, COLUMNS);
        (self.panels.len().div_ceil(columns).max(1), columns)
    }
}

impl Chart for Panels {
    fn is_empty(&self) -> bool {
        self.panels.iter().all(Chart::is_empty)
    }

    fn size(&self) -> (u32, u32) {
        let (rows, columns) = self.grid();
        let panel = (SIZE.0 * 3 / 4, SIZE.1 * 3 / 4);
        (
            panel.0 * columns as u32,
            panel.1 * rows as u32 + TITLE_HEIGHT,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        root.fill(&WHITE).map_err(err)?;
        let (title, body) = root.split_vertically(TITLE_HEIGHT);
        title.titled(&self.title, (FONT, 28)).map_err(err)?;
        let (rows, columns) = self.grid();
        for (area, panel) in body.split_evenly((rows, columns)).iter().zip(&self.panels) {
            panel.draw(area)?;
        }
        Ok(())
    }
}

/// A chart kind's output: one chart, or small multiples when one would hold too many lines.
pub enum Figure {
    Single(LineChart),
    Panels(Panels),
}

impl Chart for Figure {
    fn is_empty(&self) -> bool {
        match self {
            Figure::Single(chart) => chart.is_empty(),
            Figure::Panels(panels) => panels.is_empty(),
        }
    }

    fn size(&self) -> (u32, u32) {
        match self {
            Figure::Single(chart) => chart.size(),
            Figure::Panels(panels) => panels.size(),
        }
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        match self {
            Figure::Single(chart) => chart.draw(root),
            Figure::Panels(panels) => panels.draw(root),
        }
    }
}
