//! The one chart shape every kind uses: lines of points on log or linear axes, with failed
//! runs marked where they would have been (an ✕ at the top edge, labelled with the status, as
//! the Mamba paper's Fig. 8 marks OOM), optional bounds as error bars, and reference lines.

use super::style::{color, Chart, FONT};
use plotters::coord::Shift;
use plotters::prelude::*;

/// How an axis maps values and prints them.
#[derive(Debug, Clone, Copy)]
pub enum Axis {
    /// Log base 2, printed as plain integers (lengths, widths, batch sizes).
    Log2,
    /// Log base 10, printed by the formatter.
    Log10(fn(f64) -> String),
    /// Linear, printed by the formatter.
    Linear(fn(f64) -> String),
    /// A fraction, always drawn from 0% to 100% so that charts of accuracy compare at a glance.
    Fraction,
}

impl Axis {
    fn to(self, v: f64) -> f64 {
        match self {
            Axis::Log2 => v.log2(),
            Axis::Log10(_) => v.log10(),
            Axis::Linear(_) | Axis::Fraction => v,
        }
    }

    fn label(self, x: f64) -> String {
        match self {
            // Powers of two only: 2^4.3 printed as "20" would read as a measured width.
            Axis::Log2 if (x - x.round()).abs() < 1e-6 => format!("{:.0}", x.exp2()),
            Axis::Log2 => String::new(),
            Axis::Log10(f) => f(10f64.powf(x)),
            Axis::Linear(f) => f(x),
            Axis::Fraction => format!("{:.0}%", x * 100.0),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Line {
    pub label: String,
    /// (x, y), ascending in x.
    pub points: Vec<(f64, f64)>,
    /// Optional (x, low, high) bounds drawn as error bars.
    pub bounds: Vec<(f64, f64, f64)>,
    /// Dashed: a prediction rather than a measurement.
    pub dashed: bool,
    /// Lines sharing a colour index are drawn in the same colour.
    pub color: usize,
}

/// A failed run: at `x`, labelled with its status.
#[derive(Debug, Clone)]
pub struct Failure {
    pub x: f64,
    pub status: String,
    pub color: usize,
}

pub struct LineChart {
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    pub x_axis: Axis,
    pub y_axis: Axis,
    pub lines: Vec<Line>,
    pub failures: Vec<Failure>,
    /// Reference lines drawn in grey, as (label, points).
    pub references: Vec<(String, Vec<(f64, f64)>)>,
}

impl LineChart {
    fn ranges(&self) -> (std::ops::Range<f64>, std::ops::Range<f64>) {
        let mut xs: Vec<f64> = self.failures.iter().map(|f| self.x_axis.to(f.x)).collect();
        let mut ys = Vec::new();
        for line in &self.lines {
            for &(x, y) in &line.points {
                xs.push(self.x_axis.to(x));
                ys.push(self.y_axis.to(y));
            }
            for &(_, lo, hi) in &line.bounds {
                ys.push(self.y_axis.to(lo));
                ys.push(self.y_axis.to(hi));
            }
        }
        let span = |values: &[f64], pad: f64| {
            let finite = values.iter().copied().filter(|v| v.is_finite());
            let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
            if lo > hi {
                return 0.0..1.0;
            }
            let pad = if hi - lo < 1e-9 {
                pad.max(0.5)
            } else {
                pad * (hi - lo).max(1.0)
            };
            (lo - pad)..(hi + pad)
        };
        let y_range = match self.y_axis {
            Axis::Fraction => -0.03..1.06,
            Axis::Linear(_) => span(&ys, 0.05),
            Axis::Log2 | Axis::Log10(_) => span(&ys, 0.15),
        };
        (span(&xs, 0.1), y_range)
    }
}

impl Chart for LineChart {
    fn is_empty(&self) -> bool {
        self.lines.iter().all(|l| l.points.is_empty())
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        root.fill(&WHITE).map_err(err)?;
        let (x_range, y_range) = self.ranges();
        let top = y_range.end;
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FONT, 24))
            .margin(20)
            .x_label_area_size(55)
            .y_label_area_size(95)
            .build_cartesian_2d(x_range.clone(), y_range)
            .map_err(err)?;
        let (x_axis, y_axis) = (self.x_axis, self.y_axis);
        chart
            .configure_mesh()
            .x_desc(&self.x_desc)
            .y_desc(&self.y_desc)
            .label_style((FONT, 16))
            .axis_desc_style((FONT, 20))
            .max_light_lines(1)
            .x_labels(12)
            .y_labels(12)
            .x_label_formatter(&|x| x_axis.label(*x))
            .y_label_formatter(&|y| y_axis.label(*y))
            .draw()
            .map_err(err)?;
        let to = |(x, y): (f64, f64)| (x_axis.to(x), y_axis.to(y));
        for (label, points) in &self.references {
            let grey = RGBColor(120, 120, 120);
            chart
                .draw_series(DashedLineSeries::new(
                    points.iter().map(|&p| to(p)),
                    8,
                    6,
                    grey.stroke_width(2),
                ))
                .map_err(err)?
                .label(label.clone())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 24, y)], grey.stroke_width(2))
                });
        }
        for line in &self.lines {
            let c = color(line.color);
            let points: Vec<(f64, f64)> = line.points.iter().map(|&p| to(p)).collect();
            let legend = move |(x, y): (i32, i32)| {
                PathElement::new([(x, y), (x + 24, y)], c.stroke_width(3))
            };
            if line.dashed {
                chart
                    .draw_series(DashedLineSeries::new(
                        points.clone(),
                        10,
                        6,
                        c.stroke_width(2),
                    ))
                    .map_err(err)?
                    .label(line.label.clone())
                    .legend(legend);
            } else {
                chart
                    .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))
                    .map_err(err)?
                    .label(line.label.clone())
                    .legend(legend);
                chart
                    .draw_series(points.iter().map(|&p| Circle::new(p, 4, c.filled())))
                    .map_err(err)?;
            }
            chart
                .draw_series(line.bounds.iter().map(|&(x, lo, hi)| {
                    let (x, lo, hi) = (x_axis.to(x), y_axis.to(lo), y_axis.to(hi));
                    PathElement::new([(x, lo), (x, hi)], c.stroke_width(2))
                }))
                .map_err(err)?;
        }
        for failure in &self.failures {
            let c = color(failure.color);
            let at = (x_axis.to(failure.x), top);
            chart
                .draw_series([EmptyElement::at(at)
                    + Cross::new((0, 14), 7, c.stroke_width(3))
                    + Text::new(
                        failure.status.clone(),
                        (6, 22),
                        (FONT, 14).into_font().color(&c),
                    )])
                .map_err(err)?;
        }
        if self.lines.iter().any(|l| !l.label.is_empty()) || !self.references.is_empty() {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .label_font((FONT, 15))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(err)?;
        }
        let _ = x_range;
        Ok(())
    }
}
