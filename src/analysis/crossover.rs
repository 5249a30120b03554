//! Crossover lengths: the sequence length L* from which an SSM-family model's (Mamba, Mamba-2
//! or a hybrid) median latency stays at most its baseline's (a Transformer), per (experiment,
//! device, dtype, pass, component, d_model, batch) and pair of models, measured and predicted.
//! This is the forum claim "below a length equal to the width, attention is cheaper" put as a
//! number per width.
//!
//! Measured L* interpolates log(t_model / t_baseline) linearly in log L between the last
//! grid length where the model is slower and the next one. For paired runs the ratio is the median
//! of the processes' median per-round ratios, and the bounds are where its 95% interval's ends cross 1; for
//! unpaired ones it is the ratio of the medians, and the bounds repeat the interpolation with
//! the pessimistic and optimistic ratios of the sample spreads (p90/p10 and p10/p90).
//! A crossover outside the measured range is said in words, never as a made-up number.

use super::fit::{DeviceFit, Machine};
use crate::measure::analytic::costs;
use crate::results::{Row, Status};
use crate::spec::{Component, DType, DeviceId, ExperimentKind, Family, Pass, RunSpec};
use serde::Serialize;
use std::collections::BTreeMap;

pub const CROSSOVER_FILE: &str = "crossover.csv";

/// Where the measured ratio crosses 1 for good.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CrossoverOutcome {
    /// The model is slower at some shorter length and not slower from L* to the longest.
    Crossed,
    /// The model is at most as slow already at the shortest length measured.
    ModelFasterThroughout,
    /// The model is slower at every length measured.
    NoneInRange,
    /// Fewer than two lengths where both models succeeded.
    InsufficientData,
}

impl CrossoverOutcome {
    pub fn name(self) -> &'static str {
        match self {
            CrossoverOutcome::Crossed => "crossed",
            CrossoverOutcome::ModelFasterThroughout => "model faster throughout",
            CrossoverOutcome::NoneInRange => "none in range",
            CrossoverOutcome::InsufficientData => "insufficient data",
        }
    }
}

/// One crossover: a row of `crossover.csv`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Crossover {
    pub experiment: String,
    pub device: DeviceId,
    pub dtype: DType,
    pub pass: Pass,
    pub component: Component,
    pub d_model: i64,
    pub batch: i64,
    /// The SSM-family model's family and name, and the Transformer it is divided by.
    pub family: Family,
    pub model: String,
    pub baseline: String,
    pub finding: CrossoverOutcome,
    /// Interpolated L*, when `finding` is `crossed`.
    pub measured: Option<f64>,
    /// L* with the spreads against the model and for it; absent where that ratio does not cross.
    pub measured_low: Option<f64>,
    pub measured_high: Option<f64>,
    /// The lengths where both models succeeded.
    pub min_len: Option<i64>,
    pub max_len: Option<i64>,
    /// The model's median over the baseline's at the longest common length.
    pub ratio_at_max_len: Option<f64>,
    /// The longest run of consecutive measured lengths where the ratio's bounds hold 1 (the
    /// paired 95% interval; for unpaired runs, the spreads' bounds): the models are level
    /// there, as far as the measurement can tell, and a crossover inside it is better read as
    /// that range than as a point.
    pub level_from: Option<i64>,
    pub level_to: Option<i64>,
    /// L* where the model's FLOPs fall to the baseline's (analytic model, any length).
    pub flops_crossover: Option<Predicted>,
    /// L* of the fitted device model (FLOPs and bytes at the fitted rates).
    pub predicted_crossover: Option<Predicted>,
}

/// A crossover predicted over all lengths in [`SEARCH_MIN`, `SEARCH_MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Predicted {
    At(f64),
    /// The model is predicted cheaper already at the shortest length searched.
    Below,
    /// The model is predicted dearer at every length searched.
    Never,
}

impl Predicted {
    pub fn length(self) -> Option<f64> {
        match self {
            Predicted::At(l) => Some(l),
            _ => None,
        }
    }

    fn cell(self) -> String {
        match self {
            Predicted::At(l) => format!("{l:.1}"),
            Predicted::Below => format!("below {SEARCH_MIN}"),
            Predicted::Never => format!("none up to {SEARCH_MAX}"),
        }
    }
}

/// The lengths a predicted crossover is searched over.
pub const SEARCH_MIN: i64 = 2;
pub const SEARCH_MAX: i64 = 1 << 24;

/// Every crossover that `rows` (from runs `specs`) allow, given the device fits.
pub fn analyze(
    rows: &[Row],
    specs: &[RunSpec],
    fits: &BTreeMap<Machine, DeviceFit>,
) -> Vec<Crossover> {
    let spec_of: BTreeMap<&str, &RunSpec> = specs.iter().map(|s| (s.run_id.as_str(), s)).collect();
    // Series of (L, row) per key and model.
    type Key = (String, DeviceId, DType, Pass, Component, i64, i64);
    let mut series: BTreeMap<Key, BTreeMap<(Family, String), Vec<&Row>>> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.kind == ExperimentKind::Speed) {
        let key = (
            row.experiment.clone(),
            row.device,
            row.dtype,
            row.pass,
            row.component,
            row.d_model,
            row.batch,
        );
        series
            .entry(key)
            .or_default()
            .entry((row.family, row.model.clone()))
            .or_default()
            .push(row);
    }
    let mut out = Vec::new();
    // Generation sweeps batch at one prompt length: there is no length to cross at.
    series.retain(|key, _| key.3 != Pass::GenerateThroughput);
    for (key, models) in series {
        let of = |wanted: fn(Family) -> bool| {
            models
                .iter()
                .filter(move |((family, _), _)| wanted(*family))
        };
        for ((family, model_name), model_rows) in of(Family::is_ssm) {
            for ((_, baseline_name), baseline_rows) in of(|f| f == Family::Transformer) {
                let (experiment, device, dtype, pass, component, d_model, batch) = key.clone();
                let mut c = measured(model_rows, baseline_rows);
                c.experiment = experiment;
                c.device = device;
                c.dtype = dtype;
                c.pass = pass;
                c.component = component;
                c.d_model = d_model;
                c.batch = batch;
                c.family = *family;
                c.model = model_name.clone();
                c.baseline = baseline_name.clone();
                let pair = (
                    model_rows
                        .iter()
                        .find_map(|r| spec_of.get(r.run_id.as_str())),
                    baseline_rows
                        .iter()
                        .find_map(|r| spec_of.get(r.run_id.as_str())),
                );
                if let (Some(m), Some(t)) = pair {
                    c.flops_crossover = predicted(m, t, |s| costs(s).flops);
                    let machine = (c.device, c.dtype, model_rows[0].threads);
                    c.predicted_crossover = fits.get(&machine).and_then(|fit| {
                        predicted(m, t, |s| {
                            let k = costs(s);
                            fit.predict(k.flops, k.bytes_moved)
                        })
                    });
                }
                out.push(c);
            }
        }
    }
    out
}

/// The measured crossover of two series of rows at the same widths. Where the rows were
/// paired (the model's row carries its ratio to this baseline row), the ratio is the paired
/// median (over processes, of per-round ratios) and its bounds the 95% interval; otherwise the ratio of the medians,
/// bounded by the ratios of the spreads (p10 over p90 and p90 over p10).
fn measured(model: &[&Row], baseline: &[&Row]) -> Crossover {
    let ok = |rows: &[&Row]| -> BTreeMap<i64, Row> {
        rows.iter()
            .filter(|r| r.status == Status::Ok && r.latency_median_s.is_some())
            .map(|r| (r.seq_len, (*r).clone()))
            .collect()
    };
    let (m, t) = (ok(model), ok(baseline));
    let common: Vec<(f64, (f64, f64, f64))> = m
        .iter()
        .filter_map(|(l, a)| Some((*l as f64, ratio(a, t.get(l)?)?)))
        .collect();
    let mut c = Crossover {
        experiment: String::new(),
        device: DeviceId::Cpu,
        dtype: DType::F32,
        pass: Pass::Forward,
        component: Component::Core,
        d_model: 0,
        batch: 0,
        family: Family::Mamba,
        model: String::new(),
        baseline: String::new(),
        finding: CrossoverOutcome::InsufficientData,
        measured: None,
        measured_low: None,
        measured_high: None,
        min_len: common.first().map(|p| p.0 as i64),
        max_len: common.last().map(|p| p.0 as i64),
        ratio_at_max_len: common.last().map(|p| p.1 .0),
        level_from: None,
        level_to: None,
        flops_crossover: None,
        predicted_crossover: None,
    };
    if common.len() < 2 {
        return c;
    }
    let curve = |pick: fn(&(f64, f64, f64)) -> f64| -> Vec<(f64, f64)> {
        common.iter().map(|(l, r)| (*l, pick(r))).collect()
    };
    let median = first_crossing(&curve(|r| r.0));
    c.finding = match median {
        Crossing::At(l) => {
            c.measured = Some(l);
            CrossoverOutcome::Crossed
        }
        Crossing::Before => CrossoverOutcome::ModelFasterThroughout,
        Crossing::Never => CrossoverOutcome::NoneInRange,
    };
    (c.level_from, c.level_to) = longest_level_run(&common);
    // The optimistic ratio (the model's p10 over the baseline's p90) crosses earliest.
    c.measured_low = first_crossing(&curve(|r| r.1)).length();
    c.measured_high = first_crossing(&curve(|r| r.2)).length();
    c
}

/// (ratio, optimistic bound, pessimistic bound) of the model's row `m` over the baseline's `t`.
fn ratio(m: &Row, t: &Row) -> Option<(f64, f64, f64)> {
    if m.paired_with.as_deref() == Some(t.run_id.as_str()) {
        if let (Some(r), Some(low), Some(high)) = (m.ratio_median, m.ratio_ci_low, m.ratio_ci_high)
        {
            return Some((r, low, high));
        }
    }
    let (mm, m10, m90) = (m.latency_median_s?, m.latency_p10_s?, m.latency_p90_s?);
    let (tm, t10, t90) = (t.latency_median_s?, t.latency_p10_s?, t.latency_p90_s?);
    Some((mm / tm, m10 / t90, m90 / t10))
}

/// The longest run of consecutive measured lengths whose bounds hold 1 (the first such run
/// on a tie), as its first and last length.
fn longest_level_run(common: &[(f64, (f64, f64, f64))]) -> (Option<i64>, Option<i64>) {
    let level = |(_, (_, low, high)): &(f64, (f64, f64, f64))| *low <= 1.0 && 1.0 <= *high;
    let (mut best, mut start): (Option<(usize, usize)>, Option<usize>) = (None, None);
    for (i, point) in common.iter().enumerate() {
        if !level(point) {
            start = None;
            continue;
        }
        let first = *start.get_or_insert(i);
        if best.is_none_or(|(a, b)| i - first > b - a) {
            best = Some((first, i));
        }
    }
    match best {
        Some((a, b)) => (Some(common[a].0 as i64), Some(common[b].0 as i64)),
        None => (None, None),
    }
}

enum Crossing {
    At(f64),
    Before,
    Never,
}

impl Crossing {
    fn length(&self) -> Option<f64> {
        match self {
            Crossing::At(l) => Some(*l),
            _ => None,
        }
    }
}

/// The L from which `ratio` stays ≤ 1 up to the longest length, interpolated log-log between
/// the last length where the model is slower and the next; `points` ascend in L. A dip below 1
/// that does not last (noise at short lengths) is not a crossover.
fn first_crossing(points: &[(f64, f64)]) -> Crossing {
    let Some(last_above) = points.iter().rposition(|(_, r)| *r > 1.0) else {
        return Crossing::Before;
    };
    if last_above + 1 == points.len() {
        return Crossing::Never;
    }
    let ((l0, r0), (l1, r1)) = (points[last_above], points[last_above + 1]);
    let (x0, x1, y0, y1) = (l0.ln(), l1.ln(), r0.ln(), r1.ln());
    let x = if (y1 - y0).abs() < f64::EPSILON {
        x1
    } else {
        x0 + (0.0 - y0) * (x1 - x0) / (y1 - y0)
    };
    Crossing::At(x.exp())
}

/// The smallest L in [SEARCH_MIN, SEARCH_MAX] with cost(model at L) ≤ cost(baseline at L),
/// found on a power-of-√2 grid, then by bisection on log L.
fn predicted(
    model: &RunSpec,
    baseline: &RunSpec,
    cost: impl Fn(&RunSpec) -> f64,
) -> Option<Predicted> {
    let at = |spec: &RunSpec, len: f64| {
        let mut s = spec.clone();
        s.seq_len = len.round().max(1.0) as i64;
        cost(&s)
    };
    let ratio = |len: f64| at(model, len) / at(baseline, len);
    let steps = 2 * (SEARCH_MAX as f64).log2() as i64;
    let grid: Vec<f64> = (2..=steps).map(|i| 2f64.powf(i as f64 / 2.0)).collect();
    let Some(first) = grid.iter().position(|l| ratio(*l) <= 1.0) else {
        return Some(Predicted::Never);
    };
    if first == 0 {
        return Some(Predicted::Below);
    }
    let (mut lo, mut hi) = (grid[first - 1].ln(), grid[first].ln());
    for _ in 0..40 {
        let mid = (lo + hi) / 2.0;
        if ratio(mid.exp()) <= 1.0 {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(Predicted::At(hi.exp()))
}

/// `crossover.csv`: one line per crossover, with empty cells for absent values.
pub fn to_csv(crossovers: &[Crossover]) -> String {
    let mut csv = String::from(
        "experiment,device,dtype,pass,component,d_model,batch,family,model,baseline,finding,\
         measured,measured_low,measured_high,min_len,max_len,ratio_at_max_len,\
         level_from,level_to,flops_crossover,predicted_crossover\n",
    );
    let num = |v: Option<f64>| v.map(|x| format!("{x:.1}")).unwrap_or_default();
    let int = |v: Option<i64>| v.map(|x| x.to_string()).unwrap_or_default();
    for c in crossovers {
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            c.experiment,
            c.device,
            c.dtype.name(),
            c.pass.name(),
            c.component.name(),
            c.d_model,
            c.batch,
            c.family.name(),
            c.model,
            c.baseline,
            c.finding.name(),
            num(c.measured),
            num(c.measured_low),
            num(c.measured_high),
            int(c.min_len),
            int(c.max_len),
            c.ratio_at_max_len
                .map(|x| format!("{x:.3}"))
                .unwrap_or_default(),
            int(c.level_from),
            int(c.level_to),
            c.flops_crossover.map(Predicted::cell).unwrap_or_default(),
            c.predicted_crossover
                .map(Predicted::cell)
                .unwrap_or_default(),
        ));
    }
    csv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_level_range_is_the_longest_run_of_lengths_whose_bounds_hold_one() {
        let at = |l: f64, low: f64, high: f64| (l, (1.0, low, high));
        let points = [
            at(64.0, 0.9, 1.1),
            at(128.0, 1.1, 1.3),
            at(256.0, 0.95, 1.05),
            at(512.0, 0.8, 1.02),
            at(1024.0, 0.99, 1.2),
            at(2048.0, 0.5, 0.7),
        ];
        assert_eq!(longest_level_run(&points), (Some(256), Some(1024)));
        assert_eq!(longest_level_run(&points[..2]), (Some(64), Some(64)));
        assert_eq!(longest_level_run(&points[5..]), (None, None));
    }

    #[test]
    fn interpolates_in_log_space() {
        // Ratio 2 at L=100, 0.5 at L=400: log r falls linearly to 0 halfway, at L = 200.
        let Crossing::At(l) = first_crossing(&[(100.0, 2.0), (400.0, 0.5)]) else {
            panic!("no crossing")
        };
        assert!((l - 200.0).abs() < 1e-9);
        assert!(matches!(
            first_crossing(&[(1.0, 0.9), (2.0, 0.5)]),
            Crossing::Before
        ));
        assert!(matches!(
            first_crossing(&[(1.0, 3.0), (2.0, 1.5)]),
            Crossing::Never
        ));
    }

    fn row(model: &str, seq_len: i64, median: f64, paired: Option<(&str, f64)>) -> Row {
        let mut row: Row = serde_json::from_value(serde_json::json!({
            "suite": "s", "experiment": "e", "run_id": format!("{model}{seq_len}"),
            "model": model, "family": "mamba", "component": "mixer", "pass": "forward",
            "device": "cpu", "dtype": "f32", "batch": 1, "seq_len": seq_len, "d_model": 64,
            "n_layers": 1, "params": 1, "scan": "", "threads": 1, "status": "ok", "samples": 3,
            "wall_s": 1.0, "latency_median_s": median, "latency_p10_s": median * 0.9,
            "latency_p90_s": median * 1.1
        }))
        .unwrap();
        if let Some((with, ratio)) = paired {
            row.paired_with = Some(with.to_owned());
            row.ratio_median = Some(ratio);
            row.ratio_ci_low = Some(ratio * 0.95);
            row.ratio_ci_high = Some(ratio * 1.05);
        }
        row
    }

    #[test]
    fn paired_rows_cross_where_their_ratio_does() {
        let t = [row("t", 100, 1.0, None), row("t", 400, 1.0, None)];
        // The medians say 2 then 0.5 (L* = 200); the rounds' own ratios say 4 then 0.5.
        let paired = [
            row("m", 100, 2.0, Some(("t100", 4.0))),
            row("m", 400, 0.5, Some(("t400", 0.5))),
        ];
        let c = measured(
            &paired.iter().collect::<Vec<_>>(),
            &t.iter().collect::<Vec<_>>(),
        );
        let want = 100.0 * 4f64.powf(2.0 / 3.0);
        assert!((c.measured.unwrap() - want).abs() < 1e-6, "{c:?}");
        assert!(c.measured_low.unwrap() < want && want < c.measured_high.unwrap());
        // A ratio to some other run is not this pair's: the medians decide.
        let other = [
            row("m", 100, 2.0, Some(("x", 4.0))),
            row("m", 400, 0.5, Some(("x", 0.5))),
        ];
        let c = measured(
            &other.iter().collect::<Vec<_>>(),
            &t.iter().collect::<Vec<_>>(),
        );
        assert!((c.measured.unwrap() - 200.0).abs() < 1e-6, "{c:?}");
    }
}
