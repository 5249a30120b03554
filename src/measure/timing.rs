//! Wall-clock timing of a pass: warm up, then time each sample with the device synchronised on
//! both sides, so that queued GPU work is inside the sample it belongs to.

use crate::device::synchronize;
use serde::{Deserialize, Serialize};
use std::time::Instant;
use tch::Device;

/// A sample is an outlier when its modified z-score, 0.6745·|x − median| / MAD, exceeds this
/// (Iglewicz & Hoaglin's rule). Outliers are counted, never dropped.
pub const OUTLIER_Z: f64 = 3.5;

/// How a pass is warmed up and sampled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Untimed calls first (at least one: the first call pays one-time costs).
    pub warmup: usize,
    /// Keep warming up until this many seconds have passed, after `warmup` calls.
    pub warmup_s: f64,
    /// Timed samples (at least one).
    pub repeats: usize,
}

/// Summary statistics of the timed samples, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    pub median_s: f64,
    /// 10th and 90th percentiles (linear interpolation between order statistics).
    pub p10_s: f64,
    pub p90_s: f64,
    pub min_s: f64,
    pub max_s: f64,
    pub samples: usize,
    /// Samples beyond [`OUTLIER_Z`]; they are kept in every statistic above.
    pub outliers: usize,
}

/// Warms `pass` up as `sampling` says, then times `sampling.repeats` calls.
pub fn measure(device: Device, sampling: Sampling, mut pass: impl FnMut()) -> Timing {
    warm_up(device, sampling, &mut pass);
    sample(device, sampling.repeats, pass)
}

/// Calls `pass` `sampling.warmup` times (at least once), and on until `sampling.warmup_s`
/// seconds have passed.
pub fn warm_up(device: Device, sampling: Sampling, mut pass: impl FnMut()) {
    let start = Instant::now();
    let mut calls = 0;
    while calls < sampling.warmup.max(1) || start.elapsed().as_secs_f64() < sampling.warmup_s {
        pass();
        calls += 1;
    }
    synchronize(device);
}

/// Times `repeats` (at least one) calls of an already warm `pass`.
pub fn sample(device: Device, repeats: usize, mut pass: impl FnMut()) -> Timing {
    let samples: Vec<f64> = (0..repeats.max(1))
        .map(|_| {
            synchronize(device);
            let start = Instant::now();
            pass();
            synchronize(device);
            start.elapsed().as_secs_f64()
        })
        .collect();
    summarize(&samples)
}

/// The statistics of `samples`, which is not empty.
pub fn summarize(samples: &[f64]) -> Timing {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = percentile(&sorted, 0.5);
    let mut deviations: Vec<f64> = sorted.iter().map(|x| (x - median).abs()).collect();
    deviations.sort_by(f64::total_cmp);
    let mad = percentile(&deviations, 0.5);
    let outliers = if mad > 0.0 {
        deviations
            .iter()
            .filter(|d| 0.6745 * **d / mad > OUTLIER_Z)
            .count()
    } else {
        0
    };
    Timing {
        median_s: median,
        p10_s: percentile(&sorted, 0.1),
        p90_s: percentile(&sorted, 0.9),
        min_s: sorted[0],
        max_s: sorted[sorted.len() - 1],
        samples: sorted.len(),
        outliers,
    }
}

/// The `q` quantile of ascending `sorted`, interpolating linearly (NumPy's default).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let position = q * (sorted.len() - 1) as f64;
    let (below, above) = (position.floor() as usize, position.ceil() as usize);
    let weight = position - below as f64;
    sorted[below] * (1.0 - weight) + sorted[above] * weight
}

/// `812 µs`, `12.3 ms`, `1.52 s`.
pub fn format_seconds(seconds: f64) -> String {
    if seconds < 1e-3 {
        format!("{:.0} µs", seconds * 1e6)
    } else if seconds < 1.0 {
        format!("{:.1} ms", seconds * 1e3)
    } else {
        format!("{seconds:.2} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_percentiles_interpolate_like_numpy() {
        let odd = summarize(&[3.0, 1.0, 2.0]);
        assert_eq!(
            (odd.median_s, odd.min_s, odd.max_s, odd.samples),
            (2.0, 1.0, 3.0, 3)
        );
        assert_eq!(summarize(&[4.0, 1.0, 3.0, 2.0]).median_s, 2.5);
        // numpy.percentile(range(1, 12), [10, 90]) == [2, 10]
        let eleven: Vec<f64> = (1..=11).map(f64::from).collect();
        let t = summarize(&eleven);
        assert_eq!((t.p10_s, t.p90_s), (2.0, 10.0));
        // numpy.percentile([1, 2, 3, 4], 10) == 1.3
        assert!((summarize(&[1.0, 2.0, 3.0, 4.0]).p10_s - 1.3).abs() < 1e-12);
    }

    #[test]
    fn a_far_sample_is_flagged_and_kept() {
        let mut samples = vec![1.0, 1.01, 0.99, 1.02, 0.98, 1.0, 1.01, 0.99, 1.0, 1.0];
        samples.push(5.0);
        let t = summarize(&samples);
        assert_eq!((t.outliers, t.samples, t.max_s), (1, 11, 5.0));
        assert_eq!(summarize(&[1.0, 1.0, 1.0]).outliers, 0);
    }

    #[test]
    fn measure_warms_up_at_least_once_and_counts_only_timed_samples() {
        let mut calls = 0;
        let none = Sampling {
            warmup: 0,
            warmup_s: 0.0,
            repeats: 5,
        };
        let timing = measure(Device::Cpu, none, || calls += 1);
        assert_eq!((calls, timing.samples), (6, 5));
        assert!(timing.min_s <= timing.median_s && timing.median_s <= timing.max_s);

        let mut calls = 0;
        let by_time = Sampling {
            warmup: 1,
            warmup_s: 0.05,
            repeats: 1,
        };
        let start = Instant::now();
        warm_up(Device::Cpu, by_time, || {
            calls += 1;
            std::thread::sleep(std::time::Duration::from_millis(10));
        });
        // Calls of at least 10 ms each: 5 of them can already fill the 50 ms, so the count
        // alone says little; the time spent says what the rule promises.
        assert!(
            start.elapsed().as_secs_f64() >= 0.05,
            "warm-up ran for its 50 ms"
        );
        assert!(calls >= 5, "{calls} calls of 10 ms cannot fill 50 ms");
    }
}
