//! Wall-clock timing of a pass: warm up, then time each sample with the device synchronised on
//! both sides, so that queued GPU work is inside the sample it belongs to.

use crate::device::synchronize;
use std::time::Instant;
use tch::Device;

/// Summary statistics of the timed samples, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    pub median_s: f64,
    pub min_s: f64,
    pub max_s: f64,
    pub samples: usize,
}

/// Runs `pass` `warmup` times untimed, then `repeats` (≥ 1) times timed.
pub fn measure(device: Device, warmup: usize, repeats: usize, mut pass: impl FnMut()) -> Timing {
    for _ in 0..warmup {
        pass();
    }
    synchronize(device);
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

/// Median (the mean of the middle two for an even count), min and max. `samples` is not empty.
pub fn summarize(samples: &[f64]) -> Timing {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    Timing {
        median_s: median,
        min_s: sorted[0],
        max_s: sorted[n - 1],
        samples: n,
    }
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
    fn median_of_odd_and_even_counts() {
        let odd = summarize(&[3.0, 1.0, 2.0]);
        assert_eq!(
            (odd.median_s, odd.min_s, odd.max_s, odd.samples),
            (2.0, 1.0, 3.0, 3)
        );
        assert_eq!(summarize(&[4.0, 1.0, 3.0, 2.0]).median_s, 2.5);
    }

    #[test]
    fn measure_counts_only_timed_samples() {
        let mut calls = 0;
        let timing = measure(Device::Cpu, 2, 5, || calls += 1);
        assert_eq!((calls, timing.samples), (7, 5));
        assert!(timing.min_s <= timing.median_s && timing.median_s <= timing.max_s);
    }
}
