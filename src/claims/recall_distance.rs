//! "A model of this family keeps accuracy ≥ threshold at min_length tokens", judged per model
//! and width, at the learning rate that did best at the training length (mean over seeds),
//! seed by seed, on the Wilson 95% interval of each accuracy rather than its point value:
//!
//! - a seed *learned* unless its held-out accuracy at its own training length fell below the
//!   threshold; one that did not says nothing about what its state can keep, so it is counted
//!   ("learned in 2 of 3 seeds") and left out of the verdict;
//! - a learned seed supports the claim when an evaluation at ≥ min_length succeeded with the
//!   interval's lower bound at or above the threshold, and refutes it when every such
//!   evaluation succeeded with the upper bound below it; an interval that straddles the
//!   threshold, or a failed evaluation (oom, timeout, error), leaves it inconclusive;
//! - the learned seeds' verdicts combine as every claim's findings do (agreement stands,
//!   support and refutation together are mixed); no learned seed is inconclusive.
//!
//! Each finding says how many seeds learned, after how many steps, and what each seed scored
//! at the longest length it was evaluated at.

use super::{Finding, Verdict};
use crate::results::{Row, Status};
use crate::spec::{ExperimentKind, Family};
use std::collections::BTreeMap;

/// lr → seed → that run's rows.
type ByRate<'a> = BTreeMap<String, BTreeMap<i64, Vec<&'a Row>>>;

pub fn judge(rows: &[&Row], family: Family, threshold: f64, min_length: i64) -> Vec<Finding> {
    // (model, d_model, training length) → lr → seed → rows.
    let mut runs: BTreeMap<(String, i64, i64), ByRate> = BTreeMap::new();
    for row in rows
        .iter()
        .filter(|r| r.kind == ExperimentKind::Recall && r.family == family)
    {
        runs.entry((row.model.clone(), row.d_model, row.seq_len))
            .or_default()
            .entry(format!("{:e}", row.lr.unwrap_or_default()))
            .or_default()
            .entry(row.seed.unwrap_or_default())
            .or_default()
            .push(row);
    }
    runs.into_iter()
        .map(|((model, d, train_len), by_rate)| {
            let mean_in_distribution = |seeds: &BTreeMap<i64, Vec<&Row>>| {
                let total: f64 = seeds
                    .values()
                    .map(|rows| in_distribution(rows, train_len).unwrap_or(-1.0))
                    .sum();
                total / seeds.len().max(1) as f64
            };
            let best = by_rate
                .into_values()
                .max_by(|a, b| mean_in_distribution(a).total_cmp(&mean_in_distribution(b)))
                .unwrap_or_default();
            finding(
                &format!("{model} d={d}"),
                &best,
                threshold,
                min_length,
                train_len,
            )
        })
        .collect()
}

/// Held-out accuracy at the training length, where that evaluation succeeded.
fn in_distribution(rows: &[&Row], train_len: i64) -> Option<f64> {
    rows.iter()
        .find(|r| r.eval_seq_len == Some(train_len) && r.status == Status::Ok)
        .and_then(|r| r.accuracy)
}

/// What one evaluation says about the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// The interval's lower bound is at or above the threshold.
    Above,
    /// Its upper bound is below.
    Below,
    /// The interval holds the threshold: too few examples to tell.
    Straddles,
    /// The evaluation failed, or its row has no interval.
    Unknown,
}

fn reading(row: &Row, threshold: f64) -> Reading {
    match (row.status, row.accuracy_ci_low, row.accuracy_ci_high) {
        (Status::Ok, Some(low), _) if low >= threshold => Reading::Above,
        (Status::Ok, _, Some(high)) if high < threshold => Reading::Below,
        (Status::Ok, Some(_), Some(_)) => Reading::Straddles,
        _ => Reading::Unknown,
    }
}

/// "0.979 (47/48, 95% CI 0.89–1.00)", or the status of a failed evaluation.
fn describe(row: &Row) -> String {
    let Some(accuracy) = row.accuracy.filter(|_| row.status == Status::Ok) else {
        return row.status.name().to_owned();
    };
    match (row.accuracy_n, row.accuracy_ci_low, row.accuracy_ci_high) {
        (Some(n), Some(low), Some(high)) => format!(
            "{accuracy:.3} ({}/{n}, 95% CI {low:.3}–{high:.3})",
            (accuracy * n as f64).round() as i64
        ),
        _ => format!("{accuracy:.3} (no interval)"),
    }
}

/// One seed: whether it learned, its verdict and what it scored far away.
struct SeedFinding {
    learned: bool,
    verdict: Verdict,
    detail: String,
    steps_to_target: Option<i64>,
    /// The longest length at which it was at or above the threshold.
    longest_passing: Option<i64>,
}

fn seed_finding(rows: &[&Row], threshold: f64, min_length: i64, train_len: i64) -> SeedFinding {
    let near = in_distribution(rows, train_len);
    let learned = near.is_none_or(|a| a >= threshold);
    let longest_passing = rows
        .iter()
        .filter(|r| reading(r, threshold) == Reading::Above)
        .filter_map(|r| r.eval_seq_len)
        .max();
    let mut far: Vec<&&Row> = rows
        .iter()
        .filter(|r| r.eval_seq_len.is_some_and(|l| l >= min_length))
        .collect();
    far.sort_by_key(|r| r.eval_seq_len);
    let readings: Vec<Reading> = far.iter().map(|r| reading(r, threshold)).collect();
    let (verdict, detail) = if !learned {
        (
            Verdict::Inconclusive,
            format!(
                "did not learn the task: accuracy {:.3} < {threshold} at its training length \
                 {train_len}",
                near.unwrap_or_default()
            ),
        )
    } else if far.is_empty() {
        (
            Verdict::Inconclusive,
            format!("not evaluated at {min_length} tokens or more"),
        )
    } else if let Some(r) = far
        .iter()
        .zip(&readings)
        .filter(|(_, reading)| **reading == Reading::Above)
        .map(|(r, _)| r)
        .next_back()
    {
        (
            Verdict::Supported,
            format!(
                "accuracy {} at {} tokens",
                describe(r),
                r.eval_seq_len.unwrap_or_default()
            ),
        )
    } else if readings.iter().all(|reading| *reading == Reading::Below) {
        let r = far[far.len() - 1];
        (
            Verdict::Refuted,
            format!(
                "accuracy {} < {threshold} at {} tokens",
                describe(r),
                r.eval_seq_len.unwrap_or_default()
            ),
        )
    } else {
        let undecided: Vec<String> = far
            .iter()
            .zip(&readings)
            .filter(|(_, reading)| **reading != Reading::Below)
            .map(|(r, reading)| {
                let why = match reading {
                    Reading::Straddles => format!("its interval holds {threshold}"),
                    _ => "no interval".to_owned(),
                };
                let what = describe(r);
                match r.status {
                    Status::Ok => format!(
                        "accuracy {what} at {} ({why})",
                        r.eval_seq_len.unwrap_or_default()
                    ),
                    _ => format!("{what} at {}", r.eval_seq_len.unwrap_or_default()),
                }
            })
            .collect();
        (Verdict::Inconclusive, undecided.join(", "))
    };
    SeedFinding {
        learned,
        verdict,
        detail,
        steps_to_target: rows.iter().find_map(|r| r.steps_to_target),
        longest_passing,
    }
}

/// The finding of one model at one width, over its seeds.
fn finding(
    at: &str,
    seeds: &BTreeMap<i64, Vec<&Row>>,
    threshold: f64,
    min_length: i64,
    train_len: i64,
) -> Finding {
    let findings: Vec<(i64, SeedFinding)> = seeds
        .iter()
        .map(|(seed, rows)| (*seed, seed_finding(rows, threshold, min_length, train_len)))
        .collect();
    let learned: Vec<&SeedFinding> = findings
        .iter()
        .map(|(_, f)| f)
        .filter(|f| f.learned)
        .collect();
    let verdict = match learned.is_empty() {
        true => Verdict::Inconclusive,
        false => Verdict::combine(learned.iter().map(|f| f.verdict)),
    };
    let mut summary = format!("learned in {} of {} seeds", learned.len(), findings.len());
    let steps: Vec<i64> = learned.iter().filter_map(|f| f.steps_to_target).collect();
    if let (Some(fewest), Some(most)) = (steps.iter().min(), steps.iter().max()) {
        summary += &match fewest == most {
            true => format!(", after {fewest} steps"),
            false => format!(", after {fewest}–{most} steps"),
        };
    }
    // The length every learned seed passes at: the shortest of their longest passing ones.
    let longest: Option<Vec<i64>> = learned.iter().map(|f| f.longest_passing).collect();
    let every = match learned.len() == findings.len() {
        true => "every seed",
        false => "every learned seed",
    };
    summary += &match longest.and_then(|l| l.into_iter().min()) {
        Some(l) => format!("; {every} passes up to {l} tokens"),
        None if learned.is_empty() => String::new(),
        None => format!("; not {every} passes at any length"),
    };
    let per_seed: Vec<String> = findings
        .iter()
        .map(|(seed, f)| match findings.len() {
            1 => f.detail.clone(),
            _ => format!("seed {seed}: {}", f.detail),
        })
        .collect();
    Finding {
        at: at.to_owned(),
        verdict,
        detail: format!("{summary}. {}", per_seed.join("; ")),
        measured: true,
    }
}
