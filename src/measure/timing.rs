//! Wall-clock timing of a pass: warm up, find how many back-to-back calls make a sample long
//! enough to time (as criterion scales its iterations), then time each sample with the device
//! synchronised on both sides, so that queued GPU work is inside the sample it belongs to.
//! A 200 µs forward is then timed over 50 calls a sample, not one: a single short call is
//! mostly timer resolution, scheduler noise and cache state.

use crate::device::synchronize;
use serde::{Deserialize, Serialize};
use std::time::Instant;
use tch::Device;

/// A sample is an outlier when its modified z-score, 0.6745·|x − median| / MAD, exceeds this
/// (Iglewicz & Hoaglin's rule). Outliers are counted, never dropped.
pub const OUTLIER_Z: f64 = 3.5;

/// The shortest sample worth timing when a suite does not say: 10 ms on the CPU, where a
/// scheduler tick is 1–4 ms, and 2 ms on CUDA, whose timer around a synchronised region
/// resolves microseconds.
pub fn default_min_sample_s(device: Device) -> f64 {
    match device {
        Device::Cpu => 0.010,
        _ => 0.002,
    }
}

/// No sample calls a pass more often than this, however fast it is.
pub const MAX_CALLS_PER_SAMPLE: usize = 1 << 16;

/// How a pass is warmed up and sampled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Untimed calls first (at least one: the first call pays one-time costs).
    pub warmup: usize,
    /// Keep warming up until this many seconds have passed, after `warmup` calls.
    pub warmup_s: f64,
    /// Timed samples (at least one).
    pub repeats: usize,
    /// Each sample calls the pass back to back until it lasts at least this long (see
    /// [`calls_per_sample`]); zero times one call a sample.
    pub min_sample_s: f64,
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
    /// Back-to-back calls in each sample; the statistics above are per call.
    #[serde(default = "crate::spec::one")]
    pub calls_per_sample: usize,
}

/// Warms `pass` up as `sampling` says, scales its samples to `sampling.min_sample_s`, then
/// takes `sampling.repeats` samples.
pub fn measure(device: Device, sampling: Sampling, mut pass: impl FnMut()) -> Timing {
    warm_up(device, sampling, &mut pass);
    let calls = calls_per_sample(device, sampling.min_sample_s, &mut pass);
    sample(device, sampling.repeats, calls, pass)
}

/// How many back-to-back calls of a warm `pass` take at least `min_sample_s`: one call, then
/// a count scaled from the last trial's time (with 10% headroom, at most ×10 a step), until a
/// trial lasts long enough or reaches [`MAX_CALLS_PER_SAMPLE`]. The trials are untimed
/// warm-up as far as the samples are concerned.
pub fn calls_per_sample(device: Device, min_sample_s: f64, pass: impl FnMut()) -> usize {
    if min_sample_s <= 0.0 {
        return 1;
    }
    calibrate(device, min_sample_s, pass).calls
}

/// What scaling a sample found: its calls, and the seconds per call its last trial took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    pub calls: usize,
    pub per_call_s: f64,
}

/// [`calls_per_sample`], with the time per call the last trial measured (which takes one
/// trial call even when `min_sample_s` is zero).
pub fn calibrate(device: Device, min_sample_s: f64, mut pass: impl FnMut()) -> Calibration {
    let mut calls = 1;
    loop {
        let elapsed = time_calls(device, calls, &mut pass);
        if elapsed >= min_sample_s || calls >= MAX_CALLS_PER_SAMPLE {
            return Calibration {
                calls,
                per_call_s: elapsed / calls as f64,
            };
        }
        let wanted = if elapsed > 0.0 {
            (calls as f64 * 1.1 * min_sample_s / elapsed).ceil() as usize
        } else {
            calls * 10
        };
        calls = wanted
            .clamp(calls + 1, calls * 10)
            .min(MAX_CALLS_PER_SAMPLE);
    }
}

/// Seconds that `calls` back-to-back calls of `pass` take, the device synchronised around them.
pub(super) fn time_calls(device: Device, calls: usize, mut pass: impl FnMut()) -> f64 {
    synchronize(device);
    let start = Instant::now();
    for _ in 0..calls {
        pass();
    }
    synchronize(device);
    start.elapsed().as_secs_f64()
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

/// Takes `repeats` (at least one) samples of `calls` (at least one) back-to-back calls of an
/// already warm `pass`; the statistics are per call.
pub fn sample(device: Device, repeats: usize, calls: usize, mut pass: impl FnMut()) -> Timing {
    let calls = calls.max(1);
    let samples: Vec<f64> = (0..repeats.max(1))
        .map(|_| time_calls(device, calls, &mut pass) / calls as f64)
        .collect();
    Timing {
        calls_per_sample: calls,
        ..summarize(&samples)
    }
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
        calls_per_sample: 1,
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
            min_sample_s: 0.0,
        };
        let timing = measure(Device::Cpu, none, || calls += 1);
        assert_eq!((calls, timing.samples), (6, 5));
        assert!(timing.min_s <= timing.median_s && timing.median_s <= timing.max_s);

        let mut calls = 0;
        let by_time = Sampling {
            warmup: 1,
            warmup_s: 0.05,
            repeats: 1,
            min_sample_s: 0.0,
        };
        let start = Instant::now();
        warm_up(Device::Cpu, by_time, || {
            calls += 1;
            std::thread::sleep(std::time::Duration::from_millis(10));
        });
        // Calls of at least 10 ms each (a loaded machine sleeps longer, never shorter): the
        // warm-up lasts its 50 ms, and stops once they have passed, so within 5 calls.
        assert!(
            start.elapsed().as_secs_f64() >= 0.05,
            "warm-up ran for its 50 ms"
        );
        assert!(calls <= 5, "{calls} calls of 10 ms each went past 50 ms");
    }

    #[test]
    fn samples_scale_their_calls_to_reach_the_minimum_sample_time() {
        // A pass of at least 200 µs (sleeps overshoot, never undershoot) needs at most 50
        // calls to fill a 10 ms sample, and the scaling's 10% headroom rounds that up to 55.
        let pass = || std::thread::sleep(std::time::Duration::from_micros(200));
        let start = Instant::now();
        let calls = calls_per_sample(Device::Cpu, 0.010, pass);
        assert!((1..=55).contains(&calls), "{calls} calls");
        // The last trial, of `calls` calls, lasted the 10 ms: so did the calibration.
        assert!(
            start.elapsed().as_secs_f64() >= 0.010,
            "{calls} calls reach 10 ms"
        );

        let mut count = 0;
        let timing = sample(Device::Cpu, 3, calls, || count += 1);
        assert_eq!(
            (count, timing.calls_per_sample, timing.samples),
            (3 * calls, calls, 3)
        );

        // A pass that already lasts longer than the minimum is called once a sample, and a
        // pass too fast to time stops at the cap.
        let slow = || std::thread::sleep(std::time::Duration::from_millis(3));
        assert_eq!(calls_per_sample(Device::Cpu, 0.002, slow), 1);
        assert_eq!(
            calls_per_sample(Device::Cpu, 3600.0, || ()),
            MAX_CALLS_PER_SAMPLE
        );
    }
}
