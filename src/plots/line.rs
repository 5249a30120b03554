//! The one chart shape every kind uses: lines of points on log or linear axes, with failed
//! runs marked where they would have been (an ✕ at the top edge, labelled with the status, as
//! the Mamba paper's Fig. 8 marks OOM), optional bounds as error bars or a band, and reference
//! lines. Log axes are ticked at 1-2-5 values (100 µs, 200 µs, 500 µs, 1 ms) or powers of two,
//! never at 10^(k/5), so that every tick label is a number a reader would say.

use super::style::{shaded, Chart, FONT};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::ops::Range;

/// Headroom added above the data per legend entry, as a fraction of the y span.
const LEGEND_ROOM_PER_ENTRY: f64 = 0.07;

/// Ticks on an axis at most; a log axis spanning more decades keeps only the powers of ten.
const MAX_TICKS: usize = 12;

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

    /// Tick positions over `range` (in the axis's mapped units): powers of two, 1-2-5 values
    /// per decade, or round steps.
    fn ticks(self, range: &Range<f64>) -> Vec<f64> {
        let (lo, hi) = (range.start, range.end);
        if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
            return Vec::new();
        }
        match self {
            Axis::Log2 => {
                let all: Vec<f64> = (lo.ceil() as i64..=hi.floor() as i64)
                    .map(|k| k as f64)
                    .collect();
                let stride = all.len().div_ceil(MAX_TICKS).max(1);
                all.into_iter().step_by(stride).collect()
            }
            Axis::Log10(_) => log_ticks(lo, hi),
            Axis::Linear(_) | Axis::Fraction => linear_ticks(lo, hi),
        }
    }
}

/// log10 of the 1-2-5 values in [10^lo, 10^hi]; only powers of ten when those are too many;
/// 1 to 9 per decade when the range is too narrow for three 1-2-5 ticks.
pub fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let within = |mantissas: &[f64]| -> Vec<f64> {
        (lo.floor() as i64..=hi.ceil() as i64)
            .flat_map(|k| mantissas.iter().map(move |m| m.log10() + k as f64))
            .filter(|t| *t >= lo - 1e-9 && *t <= hi + 1e-9)
            .collect()
    };
    let one_two_five = within(&[1.0, 2.0, 5.0]);
    if one_two_five.len() > MAX_TICKS {
        let decades = within(&[1.0]);
        let stride = decades.len().div_ceil(MAX_TICKS).max(1);
        return decades.into_iter().step_by(stride).collect();
    }
    if one_two_five.len() < 3 {
        return within(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    }
    one_two_five
}

/// Multiples of a 1-2-5 step in [lo, hi], about eight of them.
fn linear_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let rough = (hi - lo) / 8.0;
    let power = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|s| *s >= rough)
        .unwrap_or(10.0 * power);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// A linear coordinate (in an axis's mapped units) ticked at given positions only, as
/// [`Axis::ticks`] chooses them, instead of plotters' evenly spaced ones.
struct Ticked {
    inner: RangedCoordf64,
    ticks: Vec<f64>,
}

impl Ticked {
    fn new(range: Range<f64>, axis: Axis) -> Self {
        Self {
            ticks: axis.ticks(&range),
            inner: range.into(),
        }
    }
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // Bold lines and labels at the ticks; no light lines between them.
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.inner.range()
    }
}

/// A grey reference line: through given points, or across the whole chart at one value.
#[derive(Debug, Clone)]
pub enum Reference {
    Path(String, Vec<(f64, f64)>),
    /// y = value, across the chart.
    Horizontal(String, f64),
    /// x = value, from bottom to top.
    Vertical(String, f64),
}

#[derive(Debug, Clone, Default)]
pub struct Line {
    pub label: String,
    /// (x, y), ascending in x.
    pub points: Vec<(f64, f64)>,
    /// Optional (x, low, high) bounds drawn as error bars, or as a band.
    pub bounds: Vec<(f64, f64, f64)>,
    /// Draw `bounds` as a shaded band between the low and high ends, not as error bars.
    pub band: bool,
    /// Dashed: a prediction rather than a measurement.
    pub dashed: bool,
    /// Lines sharing a colour index are drawn in the same hue ([`super::style::color`]).
    pub color: usize,
    /// How far the hue is darkened (below 0) or lightened (above 0), from −1 to 1: lines of
    /// one family differ by shade.
    pub shade: f64,
}

/// A failed run: at `x`, labelled with its status.
#[derive(Debug, Clone)]
pub struct Failure {
    pub x: f64,
    pub status: String,
    pub color: usize,
    pub shade: f64,
}

pub struct LineChart {
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    pub x_axis: Axis,
    pub y_axis: Axis,
    pub lines: Vec<Line>,
    pub failures: Vec<Failure>,
    /// Reference lines drawn in grey.
    pub references: Vec<Reference>,
}

impl LineChart {
    fn ranges(&self) -> (Range<f64>, Range<f64>) {
        let mut xs: Vec<f64> = self.failures.iter().map(|f| self.x_axis.to(f.x)).collect();
        let mut ys = Vec::new();
        for reference in &self.references {
            match reference {
                Reference::Horizontal(_, y) => ys.push(self.y_axis.to(*y)),
                Reference::Vertical(_, x) => xs.push(self.x_axis.to(*x)),
                Reference::Path(..) => {}
            }
        }
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
        let mut y_range = match self.y_axis {
            Axis::Fraction => return (span(&xs, 0.1), -0.03..1.06),
            Axis::Linear(_) => span(&ys, 0.05),
            Axis::Log2 | Axis::Log10(_) => span(&ys, 0.15),
        };
        // Room above the data for the legend in the upper left, a line's height per entry.
        let entries = self.lines.iter().filter(|l| !l.label.is_empty()).count();
        y_range.end += (y_range.end - y_range.start) * LEGEND_ROOM_PER_ENTRY * entries as f64;
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
            .build_cartesian_2d(
                Ticked::new(x_range.clone(), self.x_axis),
                Ticked::new(y_range.clone(), self.y_axis),
            )
            .map_err(err)?;
        let (x_axis, y_axis) = (self.x_axis, self.y_axis);
        chart
            .configure_mesh()
            .x_desc(&self.x_desc)
            .y_desc(&self.y_desc)
            .label_style((FONT, 16))
            .axis_desc_style((FONT, 20))
            .x_label_formatter(&|x| x_axis.label(*x))
            .y_label_formatter(&|y| y_axis.label(*y))
            .draw()
            .map_err(err)?;
        let to = |(x, y): (f64, f64)| (x_axis.to(x), y_axis.to(y));
        let grey = RGBColor(120, 120, 120);
        // Reference lines are labelled where they end, not in the legend: they are context,
        // and the legend stays for the data.
        for reference in &self.references {
            let (label, points): (&String, Vec<(f64, f64)>) = match reference {
                Reference::Path(label, points) => (label, points.iter().map(|&p| to(p)).collect()),
                Reference::Horizontal(label, y) => {
                    let y = y_axis.to(*y);
                    (label, vec![(x_range.start, y), (x_range.end, y)])
                }
                Reference::Vertical(label, x) => {
                    let x = x_axis.to(*x);
                    (label, vec![(x, y_range.start), (x, y_range.end)])
                }
            };
            // A vertical line is labelled at its foot, clear of the legend in the upper left.
            let end = match reference {
                Reference::Vertical(..) => points.first().copied(),
                _ => points.last().copied(),
            };
            let Some(end) = end else { continue };
            chart
                .draw_series(DashedLineSeries::new(points, 8, 6, grey.stroke_width(2)))
                .map_err(err)?;
            let (dx, dy) = match reference {
                Reference::Horizontal(..) => (-150, -20),
                Reference::Vertical(..) => (6, -24),
                Reference::Path(..) => (-90, 6),
            };
            chart
                .draw_series([EmptyElement::at(end)
                    + Text::new(label.clone(), (dx, dy), (FONT, 15).into_font().color(&grey))])
                .map_err(err)?;
        }
        for line in self.lines.iter().filter(|l| l.band && !l.bounds.is_empty()) {
            let c = shaded(line.color, line.shade);
            let mut outline: Vec<(f64, f64)> = line
                .bounds
                .iter()
                .map(|&(x, lo, _)| (x_axis.to(x), y_axis.to(lo)))
                .collect();
            outline.extend(
                line.bounds
                    .iter()
                    .rev()
                    .map(|&(x, _, hi)| (x_axis.to(x), y_axis.to(hi))),
            );
            chart
                .draw_series([Polygon::new(outline, c.mix(0.18).filled())])
                .map_err(err)?;
        }
        for line in &self.lines {
            let c = shaded(line.color, line.shade);
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
            if !line.band {
                chart
                    .draw_series(line.bounds.iter().map(|&(x, lo, hi)| {
                        let (x, lo, hi) = (x_axis.to(x), y_axis.to(lo), y_axis.to(hi));
                        PathElement::new([(x, lo), (x, hi)], c.stroke_width(2))
                    }))
                    .map_err(err)?;
            }
        }
        for failure in &self.failures {
            let c = shaded(failure.color, failure.shade);
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
        if self.lines.iter().any(|l| !l.label.is_empty()) {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .label_font((FONT, 15))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(err)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(ticks: &[f64]) -> Vec<f64> {
        ticks
            .iter()
            .map(|t| (10f64.powf(*t) * 1e6).round() / 1e6)
            .collect()
    }

    #[test]
    fn log_axes_tick_at_one_two_five() {
        // 80 µs to 3 ms: 100, 200, 500 µs, 1, 2 ms.
        let ticks = log_ticks(8e-5f64.log10(), 3e-3f64.log10());
        assert_eq!(values(&ticks), [1e-4, 2e-4, 5e-4, 1e-3, 2e-3]);
        // Ten decades: powers of ten only, at most a dozen.
        let ticks = log_ticks(-9.0, 1.0);
        assert!(ticks.len() <= MAX_TICKS && ticks.iter().all(|t| (t - t.round()).abs() < 1e-9));
        // Under a third of a decade: every integer mantissa inside.
        assert_eq!(
            values(&log_ticks(0.5f64.log10(), 0.9f64.log10())),
            [0.5, 0.6, 0.7, 0.8, 0.9]
        );
    }

    #[test]
    fn linear_and_power_of_two_axes_tick_at_round_values() {
        let rounded: Vec<f64> = linear_ticks(0.0, 1.0)
            .iter()
            .map(|t| (t * 1e9).round() / 1e9)
            .collect();
        assert_eq!(rounded, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(
            Axis::Log2.ticks(&(5.6..12.2)),
            [6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0]
        );
        assert!(Axis::Log2.ticks(&(0.0..40.0)).len() <= MAX_TICKS);
    }
}
