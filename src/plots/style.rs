//! What every chart shares: the bundled font, colours and the PNG + SVG pair.

use super::PlotError;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Once;

pub const SIZE: (u32, u32) = (1024, 720);
pub const FONT: &str = "sans-serif";

static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Registers the bundled font under the family name charts ask for.
fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, DEJAVU_SANS)
            .unwrap_or_else(|_| panic!("the bundled DejaVuSans.ttf is a valid font"));
    });
}

/// Tableau 10: distinguishable, and readable in greyscale print.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

pub fn color(index: usize) -> RGBColor {
    PALETTE[index % PALETTE.len()]
}

/// Hue `index` darkened toward black (`shade` below 0) or lightened toward white (above 0),
/// by at most the fraction |shade| ≤ 1.
pub fn shaded(index: usize, shade: f64) -> RGBColor {
    let RGBColor(r, g, b) = color(index);
    let t = shade.clamp(-1.0, 1.0);
    let move_channel = |c: u8| {
        let c = f64::from(c);
        let moved = if t < 0.0 {
            c * (1.0 + t)
        } else {
            c + (255.0 - c) * t
        };
        moved.round() as u8
    };
    RGBColor(move_channel(r), move_channel(g), move_channel(b))
}

/// The hue of a model family, the same in every chart: Mamba blue, the Transformer orange,
/// Mamba-2 green. Other lines (widths of a prediction, tasks) take hues from
/// [`FIRST_FREE_COLOR`] on.
pub fn family_color(family: crate::models::Family) -> usize {
    match family {
        crate::models::Family::Mamba => 0,
        crate::models::Family::Transformer => 1,
        crate::models::Family::Mamba2 => 2,
        crate::models::Family::Hybrid => 3,
    }
}

/// The first colour index no family takes.
pub const FIRST_FREE_COLOR: usize = 4;

/// The shade of the `rank`-th of `count` lines of one hue: from darker (−0.35) to lighter
/// (+0.45), evenly; a lone line keeps the pure hue.
pub fn shade_of(rank: usize, count: usize) -> f64 {
    if count <= 1 {
        return 0.0;
    }
    -0.35 + 0.8 * rank as f64 / (count - 1) as f64
}

/// A chart that can draw itself on any plotters backend.
pub trait Chart {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>;

    /// Nothing to draw: no line has a point.
    fn is_empty(&self) -> bool;

    /// Pixels of the PNG (and the SVG's view box).
    fn size(&self) -> (u32, u32) {
        SIZE
    }
}

/// Draws the same chart into `stem.png` and `stem.svg`.
pub fn png_and_svg(stem: &Path, chart: &impl Chart) -> Result<Vec<PathBuf>, PlotError> {
    register_font();
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    let fail = |path: &Path, message: String| PlotError::Draw {
        path: path.to_owned(),
        message,
    };
    {
        let root = BitMapBackend::new(&png, chart.size()).into_drawing_area();
        chart.draw(&root).map_err(|m| fail(&png, m))?;
        root.present().map_err(|e| fail(&png, e.to_string()))?;
    }
    {
        let root = SVGBackend::new(&svg, chart.size()).into_drawing_area();
        chart.draw(&root).map_err(|m| fail(&svg, m))?;
        root.present().map_err(|e| fail(&svg, e.to_string()))?;
    }
    Ok(vec![png, svg])
}
