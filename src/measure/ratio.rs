//! The ratio of one contender's time to a baseline's, from paired rounds: per round
//! r = t_model / t_baseline, the median of r, and a 95% percentile-bootstrap interval of that
//! median (rounds resampled with replacement, seeded). Pairing by round is what makes the
//! interval narrow on a drifting machine: a slow minute slows both times of a round alike, so
//! it cancels in r instead of widening both distributions.
//!
//! A point measured in several worker processes ([`ratio_of_processes`]) is estimated by the
//! median of the processes' medians, and its interval by a two-stage bootstrap: processes
//! resampled with replacement, then rounds within each process drawn. On a shared machine a
//! process can run one model 2–3× slower than the next process does, with every round of it
//! agreeing (its own interval ±5%); rounds cannot see that, and only the spread between
//! processes can. With few processes that interval is about the range of their medians, a
//! nominal 95%: three processes' range holds the median over processes 3 times in 4
//! (1 − 2·0.5³), two processes' half the time, and of two the estimate is their mean.

use crate::rng::Rng;
use serde::{Deserialize, Serialize};

/// Bootstrap resamples: enough for stable 2.5% and 97.5% percentiles.
pub const RESAMPLES: usize = 2000;

/// Mamba's (or any model's) time over the baseline's, with its 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RatioEstimate {
    pub median: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    /// Rounds the estimate rests on, in all its processes together.
    pub rounds: usize,
    /// Worker processes the rounds were timed in.
    #[serde(default = "crate::spec::one")]
    pub processes: usize,
}

impl RatioEstimate {
    /// The interval's larger half, relative to the median: ±5% is 0.05.
    pub fn relative_half_width(&self) -> f64 {
        (self.ci_high - self.median).max(self.median - self.ci_low) / self.median
    }
}

/// Per round, `model`'s time over `baseline`'s (the two slices are the same rounds in the
/// same order); `None` when their lengths differ or a round lacks a positive time on a side.
pub fn round_ratios(model: &[f64], baseline: &[f64]) -> Option<Vec<f64>> {
    if model.len() != baseline.len() {
        return None;
    }
    model
        .iter()
        .zip(baseline)
        .map(|(m, b)| (*m > 0.0 && *b > 0.0).then(|| m / b))
        .collect()
}

/// The ratio of `model`'s times to `baseline`'s over the rounds of one process; `None` with
/// fewer than two rounds or a round without a positive time on both sides.
pub fn ratio_of_rounds(model: &[f64], baseline: &[f64], seed: u64) -> Option<RatioEstimate> {
    ratio_of_processes(&[round_ratios(model, baseline)?], seed)
}

/// The ratio over several processes, each given as its rounds' ratios: the median of the
/// processes' medians, with the two-stage bootstrap's 95% interval. `None` without a process
/// of at least two rounds; processes with fewer are left out, as a single round has no spread
/// to resample.
pub fn ratio_of_processes(processes: &[Vec<f64>], seed: u64) -> Option<RatioEstimate> {
    let processes: Vec<&Vec<f64>> = processes.iter().filter(|p| p.len() >= 2).collect();
    if processes.is_empty() {
        return None;
    }
    let mut rng = Rng::new(seed);
    let count = processes.len();
    let mut chosen = vec![0.0; count];
    let mut resample = Vec::new();
    let mut medians: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            for slot in chosen.iter_mut() {
                // One process is drawn with certainty: no draw, so that its interval is the
                // rounds' bootstrap draw for draw.
                let pick = if count == 1 {
                    0
                } else {
                    rng.range(0, count as i64) as usize
                };
                let rounds = processes[pick];
                resample.clear();
                resample.extend(
                    (0..rounds.len()).map(|_| rounds[rng.range(0, rounds.len() as i64) as usize]),
                );
                *slot = median(&mut resample);
            }
            median(&mut chosen)
        })
        .collect();
    medians.sort_by(f64::total_cmp);
    let at = |q: f64| medians[((q * (RESAMPLES - 1) as f64).round()) as usize];
    let mut process_medians: Vec<f64> = processes.iter().map(|p| median(&mut p.to_vec())).collect();
    Some(RatioEstimate {
        median: median(&mut process_medians),
        ci_low: at(0.025),
        ci_high: at(0.975),
        rounds: processes.iter().map(|p| p.len()).sum(),
        processes: count,
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

    #[test]
    fn processes_that_disagree_widen_the_interval_and_their_median_resists_one() {
        // Three processes of 20 steady rounds each: two agree near 1.0, one ran the model
        // 2.7x slower throughout (as a shared machine did to one process of ours).
        let steady = |level: f64, seed: u64| {
            let mut rng = Rng::new(seed);
            (0..20)
                .map(|_| level * (1.0 + 0.02 * (rng.unit() - 0.5)))
                .collect::<Vec<f64>>()
        };
        let processes = vec![steady(1.0, 1), steady(1.02, 2), steady(2.7, 3)];
        let r = ratio_of_processes(&processes, 5).expect("three processes");
        assert_eq!((r.processes, r.rounds), (3, 60));
        assert!((1.0..1.03).contains(&r.median), "the middle process: {r:?}");
        assert!(
            r.ci_high > 2.5,
            "the interval reaches the odd process: {r:?}"
        );
        // Each process alone claims a narrow interval that the spread between them belies.
        let alone = ratio_of_processes(&processes[2..], 5).expect("one process");
        assert!(alone.relative_half_width() < 0.02, "{alone:?}");

        // Processes that agree keep the interval narrow; one process is the rounds' bootstrap.
        let agreeing = vec![steady(1.0, 4), steady(1.0, 5), steady(1.0, 6)];
        let r = ratio_of_processes(&agreeing, 5).expect("three processes");
        assert!(r.relative_half_width() < 0.02, "{r:?}");
        let (model, baseline) = drifting_rounds(12, 7);
        let one = ratio_of_rounds(&model, &baseline, 3).expect("12 rounds");
        let ratios = round_ratios(&model, &baseline).expect("same rounds");
        assert_eq!(one, ratio_of_processes(&[ratios], 3).expect("one process"));
        assert_eq!(one.processes, 1);
        // A process of one round has no spread to resample and is left out.
        let r = ratio_of_processes(&[vec![1.0, 1.1], vec![9.0]], 1).expect("one usable");
        assert_eq!((r.processes, r.rounds), (1, 2));
    }
}
