//! The ratio of one contender's time to a baseline's, from paired rounds: per round
//! r = t_model / t_baseline, the median of r, and a 95% percentile-bootstrap interval of that
//! median (rounds resampled with replacement, seeded). Pairing by round is what makes the
//! interval narrow on a drifting machine: a slow minute slows both times of a round alike, so
//! it cancels in r instead of widening both distributions.

use crate::rng::Rng;
use serde::{Deserialize, Serialize};

/// Bootstrap resamples of the rounds: enough for stable 2.5% and 97.5% percentiles.
pub const RESAMPLES: usize = 2000;

/// Mamba's (or any model's) time over the baseline's, with its 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RatioEstimate {
    pub median: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    /// Rounds the estimate rests on.
    pub rounds: usize,
}

impl RatioEstimate {
    /// The interval's larger half, relative to the median: ±5% is 0.05.
    pub fn relative_half_width(&self) -> f64 {
        (self.ci_high - self.median).max(self.median - self.ci_low) / self.median
    }
}

/// The ratio of `model`'s times to `baseline`'s, round by round (the two slices are the same
/// rounds in the same order); `None` with fewer than two rounds or a round without a positive
/// time on both sides.
pub fn ratio_of_rounds(model: &[f64], baseline: &[f64], seed: u64) -> Option<RatioEstimate> {
    if model.len() != baseline.len() || model.len() < 2 {
        return None;
    }
    let ratios: Vec<f64> = model
        .iter()
        .zip(baseline)
        .map(|(m, b)| (*m > 0.0 && *b > 0.0).then(|| m / b))
        .collect::<Option<_>>()?;
    let mut rng = Rng::new(seed);
    let n = ratios.len();
    let mut resample = vec![0.0; n];
    let mut medians: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            for slot in resample.iter_mut() {
                *slot = ratios[rng.range(0, n as i64) as usize];
            }
            median(&mut resample)
        })
        .collect();
    medians.sort_by(f64::total_cmp);
    let at = |q: f64| medians[((q * (RESAMPLES - 1) as f64).round()) as usize];
    Some(RatioEstimate {
        median: median(&mut ratios.clone()),
        ci_low: at(0.025),
        ci_high: at(0.975),
        rounds: n,
    })
}

/// The median of `values` (reordered in place), the mean of the middle two for an even count.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rounds of a model twice as slow as its baseline on a machine whose speed drifts by a
    /// factor of 2 across the rounds, with 5% independent noise on every time.
    fn drifting_rounds(rounds: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
        let mut rng = Rng::new(seed);
        let mut noise = move || 1.0 + 0.1 * (rng.unit() - 0.5);
        let drift = |i: usize| 1.0 + i as f64 / rounds as f64;
        let baseline = (0..rounds).map(|i| 1e-3 * drift(i) * noise()).collect();
        let model = (0..rounds).map(|i| 2e-3 * drift(i) * noise()).collect();
        (model, baseline)
    }

    #[test]
    fn the_interval_covers_a_known_ratio_despite_drift() {
        let mut covered = 0;
        for trial in 0..40 {
            let (model, baseline) = drifting_rounds(30, 1000 + trial);
            let r = ratio_of_rounds(&model, &baseline, trial).expect("30 rounds");
            assert!(r.ci_low <= r.median && r.median <= r.ci_high, "{r:?}");
            assert!(
                r.relative_half_width() < 0.05,
                "pairing cancels the drift: {r:?}"
            );
            covered += usize::from(r.ci_low <= 2.0 && 2.0 <= r.ci_high);
        }
        // A 95% interval of the median misses now and then; far fewer than 1 in 4 times.
        assert!(
            covered >= 30,
            "covered the true ratio in {covered} of 40 trials"
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_interval_and_bad_input_gives_none() {
        let (model, baseline) = drifting_rounds(12, 7);
        assert_eq!(
            ratio_of_rounds(&model, &baseline, 3),
            ratio_of_rounds(&model, &baseline, 3)
        );
        assert_eq!(ratio_of_rounds(&model[..1], &baseline[..1], 3), None);
        assert_eq!(ratio_of_rounds(&model, &baseline[1..], 3), None);
        assert_eq!(ratio_of_rounds(&[1.0, 0.0], &[1.0, 1.0], 3), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0, 10.0]), 2.5);
    }
}
