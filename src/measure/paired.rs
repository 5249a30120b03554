//! Paired, interleaved timing of the contenders of one comparison point, in one process. Each
//! contender is already warm and knows its calls per sample (see [`super::timing`]), scaled by
//! [`equal_sample_durations`] so that every contender's sample spans about the same time; then
//! rounds follow, each timing every contender once, in an order shuffled from a seed round by
//! round, so that no model always goes first and a slow drift of a shared machine hits every
//! model alike. Rounds go on until every contender's ratio to the baseline has a 95% interval
//! within ±`target_rel_ci` (judged from [`MIN_ROUNDS_TO_CONVERGE`] rounds on), or `max_time_s`
//! is spent (with at least `min_rounds` rounds, so a pass slower than the whole budget is still
//! timed three times).

use super::ratio::{ratio_of_rounds, RatioEstimate};
use super::timing::{summarize, time_calls, Calibration, Timing, MAX_CALLS_PER_SAMPLE};
use crate::rng::Rng;
use serde::{Deserialize, Serialize};
use std::time::Instant;
use tch::Device;

/// When the rounds stop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairedSampling {
    /// Rounds before the intervals are first looked at (at least 3).
    pub min_rounds: usize,
    /// Stop once every ratio's 95% interval is within ±this, relative (0.05 is ±5%).
    pub target_rel_ci: f64,
    /// Stop once this many seconds of rounds have passed, converged or not.
    pub max_time_s: f64,
    /// A bound on the rounds whatever the clock says, for passes too fast to fill the budget.
    pub max_rounds: usize,
    /// Seeds the order of each round and the bootstrap.
    pub seed: u64,
}

/// The fewest rounds a paired point takes, however long a pass is.
pub const MIN_ROUNDS: usize = 3;

/// The fewest rounds whose interval may count as converged. A bootstrap of three rounds can
/// only return their range, and three rounds that happen to agree say little on a machine
/// whose speed drifts by ±30%: a point stops on its target only from here, and before that
/// only when its time runs out.
pub const MIN_ROUNDS_TO_CONVERGE: usize = 10;

/// The intervals are first looked at after the minimum rounds, then whenever the rounds have
/// grown by a fifth (at least by [`CHECK_EVERY`]): a bootstrap is thousands of medians, so
/// checking every round would cost more than the rounds at large counts.
const CHECK_EVERY: usize = 5;

/// One model of a comparison point: its warm pass and the calls each of its samples makes.
pub struct Contender<'a> {
    pub calls_per_sample: usize,
    pub pass: Box<dyn FnMut() + 'a>,
}

/// Why the rounds ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// Every ratio's interval reached the target width.
    Converged,
    /// `max_time_s` ran out first; the rows report the width reached.
    MaxTime,
    /// `max_rounds` ran out first.
    MaxRounds,
    /// Several processes timed the point, each converged on its own, and they disagree by more
    /// than the target (see `runner::point`).
    ProcessSpread,
}

impl Stop {
    pub fn name(self) -> &'static str {
        match self {
            Stop::Converged => "converged",
            Stop::MaxTime => "max_time",
            Stop::MaxRounds => "max_rounds",
            Stop::ProcessSpread => "process_spread",
        }
    }
}

/// What the rounds measured.
#[derive(Debug, Clone, PartialEq)]
pub struct PairedTiming {
    /// Per contender, its per-call statistics over the rounds.
    pub timings: Vec<Timing>,
    /// Per contender, its ratio to the baseline; `None` for the baseline itself.
    pub ratios: Vec<Option<RatioEstimate>>,
    /// Per contender, its seconds per call in each round, in round order.
    pub round_times_s: Vec<Vec<f64>>,
    pub rounds: usize,
    pub stop: Stop,
    /// The contenders' indices in the order each round timed them.
    pub orders: Vec<Vec<usize>>,
}

/// Calls per sample that give every contender's sample about the duration of the longest
/// calibrated one. A 0.2 ms pass sampled over 10 ms next to a 5 ms pass sampled over 15 ms
/// would see the machine over windows of different lengths, and a ratio of samples of
/// different lengths moves with the machine's noise spectrum and with how the calibration
/// happened to round: two runs of the same point then disagree. Equal windows make the
/// ratio's two sides alike. No contender gets fewer calls than its own calibration asked for.
pub fn equal_sample_durations(calibrations: &[Calibration]) -> Vec<usize> {
    let window = calibrations
        .iter()
        .map(|c| c.calls as f64 * c.per_call_s)
        .fold(0.0, f64::max);
    calibrations
        .iter()
        .map(|c| {
            // A call too fast for the clock to see keeps its calibration's count.
            let fill = if c.per_call_s > 0.0 {
                (window / c.per_call_s).round() as usize
            } else {
                c.calls
            };
            fill.clamp(c.calls.max(1), MAX_CALLS_PER_SAMPLE.max(c.calls))
        })
        .collect()
}

/// Times `contenders` in interleaved rounds until `sampling` says stop; ratios are to
/// `contenders[baseline]`.
pub fn interleaved(
    device: Device,
    contenders: &mut [Contender],
    baseline: usize,
    sampling: PairedSampling,
) -> PairedTiming {
    let n = contenders.len();
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut orders = Vec::new();
    let mut rng = Rng::new(sampling.seed);
    let min_rounds = sampling.min_rounds.max(MIN_ROUNDS);
    let start = Instant::now();
    let mut ratios = vec![None; n];
    let mut next_check = min_rounds.max(MIN_ROUNDS_TO_CONVERGE);
    let stop = loop {
        let order = shuffled(n, &mut rng);
        for &i in &order {
            let contender = &mut contenders[i];
            samples[i].push(time_sample(device, contender));
        }
        orders.push(order);
        let rounds = orders.len();
        let out_of_time = start.elapsed().as_secs_f64() >= sampling.max_time_s;
        let check = rounds >= min_rounds && (rounds >= next_check || out_of_time);
        if check || rounds >= sampling.max_rounds {
            next_check = (rounds + CHECK_EVERY).max(rounds + rounds / 5);
            ratios = ratios_to(&samples, baseline, sampling.seed);
            let converged = ratios
                .iter()
                .flatten()
                .all(|r| r.relative_half_width() <= sampling.target_rel_ci);
            if rounds >= min_rounds.max(MIN_ROUNDS_TO_CONVERGE) && converged {
                break Stop::Converged;
            }
        }
        if rounds >= min_rounds && out_of_time {
            break Stop::MaxTime;
        }
        if rounds >= sampling.max_rounds.max(min_rounds) {
            break Stop::MaxRounds;
        }
    };
    PairedTiming {
        timings: contenders
            .iter()
            .zip(&samples)
            .map(|(c, s)| Timing {
                calls_per_sample: c.calls_per_sample,
                ..summarize(s)
            })
            .collect(),
        ratios,
        round_times_s: samples,
        rounds: orders.len(),
        stop,
        orders,
    }
}

/// Each contender's ratio to the baseline over the rounds so far.
fn ratios_to(samples: &[Vec<f64>], baseline: usize, seed: u64) -> Vec<Option<RatioEstimate>> {
    samples
        .iter()
        .enumerate()
        .map(|(i, s)| (i != baseline).then(|| ratio_of_rounds(s, &samples[baseline], seed))?)
        .collect()
}

/// Seconds per call of one sample of `contender`.
fn time_sample(device: Device, contender: &mut Contender) -> f64 {
    let calls = contender.calls_per_sample.max(1);
    time_calls(device, calls, &mut *contender.pass) / calls as f64
}

/// 0..n in a uniformly random order (Fisher–Yates).
fn shuffled(n: usize, rng: &mut Rng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.range(0, i as i64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::time::Duration;

    fn sleeper<'a>(micros: u64, log: &'a RefCell<Vec<usize>>, id: usize) -> Contender<'a> {
        Contender {
            calls_per_sample: 1,
            pass: Box::new(move || {
                log.borrow_mut().push(id);
                std::thread::sleep(Duration::from_micros(micros));
            }),
        }
    }

    fn sampling(max_time_s: f64) -> PairedSampling {
        PairedSampling {
            min_rounds: 3,
            target_rel_ci: 0.05,
            max_time_s,
            max_rounds: 10_000,
            seed: 1,
        }
    }

    #[test]
    fn rounds_interleave_every_contender_once_in_shuffled_orders() {
        let log = RefCell::new(Vec::new());
        let mut contenders: Vec<Contender> = (0..3).map(|i| sleeper(50, &log, i)).collect();
        let timing = interleaved(Device::Cpu, &mut contenders, 0, sampling(0.0));
        drop(contenders);
        let log = log.into_inner();
        assert!(timing.rounds >= MIN_ROUNDS && timing.rounds == timing.orders.len());
        assert_eq!(log.len(), 3 * timing.rounds, "one sample each per round");
        for (round, order) in log.chunks(3).zip(&timing.orders) {
            let mut seen = round.to_vec();
            seen.sort_unstable();
            assert_eq!(seen, [0, 1, 2], "every contender once a round");
            assert_eq!(
                round,
                order.as_slice(),
                "the order recorded is the order run"
            );
        }
        // Out of many rounds, no contender always goes first.
        let mut firsts = std::collections::BTreeSet::new();
        for seed in 0..20 {
            firsts.insert(shuffled(3, &mut Rng::new(seed))[0]);
        }
        assert_eq!(firsts.len(), 3, "each contender goes first for some seed");
    }

    #[test]
    fn every_contender_samples_over_the_longest_window() {
        let calibrated = |calls, per_call_s| Calibration { calls, per_call_s };
        // 50 × 0.2 ms = 10 ms against 3 × 5 ms = 15 ms: the fast one fills 15 ms with 75.
        let calls = equal_sample_durations(&[calibrated(50, 2e-4), calibrated(3, 5e-3)]);
        assert_eq!(calls, [75, 3]);
        // Never below a contender's own calibration, never above the cap.
        let calls = equal_sample_durations(&[calibrated(4, 1e-2), calibrated(9, 1e-9)]);
        assert_eq!(calls, [4, MAX_CALLS_PER_SAMPLE]);
        assert_eq!(equal_sample_durations(&[calibrated(7, 0.0)]), [7]);
    }

    #[test]
    fn steady_contenders_converge_and_a_tight_budget_stops_the_rounds() {
        let log = RefCell::new(Vec::new());
        // 1 ms against 2 ms: sleeps are steady to well within ±5% at this length.
        let mut steady = vec![sleeper(1000, &log, 0), sleeper(2000, &log, 1)];
        let timing = interleaved(Device::Cpu, &mut steady, 0, sampling(30.0));
        assert_eq!(timing.stop, Stop::Converged, "{timing:?}");
        assert!(timing.rounds >= MIN_ROUNDS_TO_CONVERGE, "{}", timing.rounds);
        let ratio = timing.ratios[1].expect("a ratio to the baseline");
        assert!(timing.ratios[0].is_none(), "the baseline has no ratio");
        assert!(
            (1.5..2.5).contains(&ratio.median) && ratio.relative_half_width() <= 0.05,
            "{ratio:?}"
        );
        assert_eq!(timing.timings[1].samples, timing.rounds);

        // A budget spent before the first check still takes the minimum rounds, then stops.
        let mut slow = vec![sleeper(3000, &log, 0), sleeper(3000, &log, 1)];
        let timing = interleaved(
            Device::Cpu,
            &mut slow,
            0,
            PairedSampling {
                target_rel_ci: 0.0,
                ..sampling(0.001)
            },
        );
        assert_eq!((timing.stop, timing.rounds), (Stop::MaxTime, MIN_ROUNDS));
        assert!(
            timing.ratios[1].is_some(),
            "the width reached is still reported"
        );
    }
}
