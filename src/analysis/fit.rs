//! The device model behind `predicted_latency_s`: t ≈ flops / F + bytes_moved / W, with the
//! achieved FLOP/s F and bandwidth W fitted, per machine, to the suite's own successful runs.
//! The fit minimises relative error, so that short and long runs weigh alike.

use crate::results::{Row, Status};
use crate::spec::{DType, DeviceId};
use std::collections::BTreeMap;

/// A machine's fitted rates. A rate that does not help explain the timings is infinite (its
/// term drops out).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeviceFit {
    pub flops_per_s: f64,
    pub bytes_per_s: f64,
    /// The successful runs it was fitted to.
    pub runs: usize,
}

impl DeviceFit {
    pub fn predict(&self, flops: f64, bytes: f64) -> f64 {
        flops / self.flops_per_s + bytes / self.bytes_per_s
    }
}

/// (device, dtype, threads): runs that share these share a fit.
pub type Machine = (DeviceId, DType, i64);

fn machine(row: &Row) -> Machine {
    (row.device, row.dtype, row.threads)
}

/// Fits every machine in `rows` and fills each row's `predicted_latency_s` (failed rows too:
/// the prediction says what the run would have taken).
pub fn predict(rows: &mut [Row]) -> BTreeMap<Machine, DeviceFit> {
    let mut samples: BTreeMap<Machine, Vec<(f64, f64, f64)>> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.status == Status::Ok) {
        if let Some(t) = row.latency_median_s.filter(|t| *t > 0.0) {
            samples
                .entry(machine(row))
                .or_default()
                .push((row.flops, row.bytes_moved, t));
        }
    }
    let fits: BTreeMap<Machine, DeviceFit> = samples
        .into_iter()
        .filter_map(|(m, s)| fit(&s).map(|f| (m, f)))
        .collect();
    for row in rows.iter_mut() {
        row.predicted_latency_s = fits
            .get(&machine(row))
            .map(|f| f.predict(row.flops, row.bytes_moved));
    }
    fits
}

/// Least squares of Σ (a·x/t + b·y/t − 1)² with a, b ≥ 0, where a = 1/F and b = 1/W.
pub fn fit(samples: &[(f64, f64, f64)]) -> Option<DeviceFit> {
    let (mut uu, mut uv, mut vv, mut u1, mut v1) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(x, y, t) in samples {
        let (u, v) = (x / t, y / t);
        uu += u * u;
        uv += u * v;
        vv += v * v;
        u1 += u;
        v1 += v;
    }
    let residual = |a: f64, b: f64| -> f64 {
        samples
            .iter()
            .map(|&(x, y, t)| ((a * x + b * y) / t - 1.0).powi(2))
            .sum()
    };
    let mut candidates = Vec::new();
    let det = uu * vv - uv * uv;
    if samples.len() >= 2 && det.abs() > 1e-12 * uu * vv {
        let (a, b) = ((u1 * vv - v1 * uv) / det, (v1 * uu - u1 * uv) / det);
        if a >= 0.0 && b >= 0.0 {
            candidates.push((a, b));
        }
    }
    if uu > 0.0 {
        candidates.push((u1 / uu, 0.0));
    }
    if vv > 0.0 {
        candidates.push((0.0, v1 / vv));
    }
    let (a, b) = candidates
        .into_iter()
        .filter(|(a, b)| a.is_finite() && b.is_finite())
        .min_by(|p, q| residual(p.0, p.1).total_cmp(&residual(q.0, q.1)))?;
    Some(DeviceFit {
        flops_per_s: 1.0 / a,
        bytes_per_s: 1.0 / b,
        runs: samples.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_the_rates_that_made_the_timings() {
        let (f, w) = (2e10, 5e9);
        let samples: Vec<_> = [(1e9, 1e7), (4e9, 2e8), (1e8, 4e8), (3e9, 3e9)]
            .iter()
            .map(|&(x, y)| (x, y, x / f + y / w))
            .collect();
        let fit = fit(&samples).unwrap();
        assert!((fit.flops_per_s / f - 1.0).abs() < 1e-9, "{fit:?}");
        assert!((fit.bytes_per_s / w - 1.0).abs() < 1e-9, "{fit:?}");
    }

    #[test]
    fn a_rate_that_would_be_negative_drops_out() {
        // Timings proportional to FLOPs alone, with bytes anti-correlated.
        let samples = [(1e9, 3e9, 0.1), (2e9, 2e9, 0.2), (3e9, 1e9, 0.3)];
        let fit = fit(&samples).unwrap();
        assert!((fit.flops_per_s / 1e10 - 1.0).abs() < 1e-9);
        assert!(fit.bytes_per_s.is_infinite());
    }
}
