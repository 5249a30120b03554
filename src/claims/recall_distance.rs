//! "A model of this family can keep accuracy ≥ threshold at min_length tokens" (claim (b):
//! "S6 can keep a token from a million steps ago"). "Can" is existential: the claim stands if
//! some training recipe makes models that do, reliably. Rows are grouped by recipe (one
//! experiment's model, width, training length and learning rate), and each recipe is judged
//! seed by seed on the Wilson 95% interval of each accuracy rather than its point value:
//!
//! - a seed *learned* unless its held-out accuracy at its own training length fell below the
//!   threshold;
//! - a learned seed *passes* when an evaluation at ≥ min_length succeeded with the interval's
//!   lower bound at or above the threshold, and *fails* when every such evaluation succeeded
//!   with the upper bound below it; an interval that straddles the threshold, or a failed
//!   evaluation (oom, timeout, error), leaves it undecided; a seed that did not learn fails;
//! - a recipe is supported when a majority of its seeds pass, refuted when they no longer can
//!   (passing and undecided seeds together are at most half), inconclusive otherwise, and says
//!   nothing when no seed learned.
//!
//! The claim is supported when some recipe is, naming it. It is refuted only when every
//! recipe that learned is refuted and, where the claim gives the source's whole budget
//! (`full_budget_steps`), one of them trained that long: a failure at a few percent of the
//! paper's budget does not refute what the paper did. Otherwise it is inconclusive, saying
//! which share of the budget was tried.

use super::{ClaimTable, Finding, Verdict};
use crate::analysis::reach::{final_lower_bounds, reach};
use crate::results::{Row, Status};
use crate::spec::{ExperimentKind, Family};
use std::collections::BTreeMap;

/// (experiment, model, d_model, training length, lr) → seed → that run's rows.
type Recipes<'a> = BTreeMap<(String, String, i64, i64, String), BTreeMap<i64, Vec<&'a Row>>>;

/// The claim judged: its verdict, one line that says why, a finding per recipe and the table
/// of recipes × seeds → reach.
pub struct Judged {
    pub verdict: Verdict,
    pub summary: String,
    pub findings: Vec<Finding>,
    pub table: ClaimTable,
}

pub fn judge(
    rows: &[&Row],
    family: Family,
    threshold: f64,
    min_length: i64,
    full_budget_steps: Option<i64>,
) -> Judged {
    let mut recipes: Recipes = BTreeMap::new();
    for row in rows
        .iter()
        .filter(|r| r.kind == ExperimentKind::Recall && r.family == family)
    {
        let lr = format!("{:e}", row.lr.unwrap_or_default());
        recipes
            .entry((
                row.experiment.clone(),
                row.model.clone(),
                row.d_model,
                row.seq_len,
                lr,
            ))
            .or_default()
            .entry(row.seed.unwrap_or_default())
            .or_default()
            .push(row);
    }
    let several_experiments = recipes
        .keys()
        .any(|k| recipes.keys().next().is_some_and(|first| first.0 != k.0));
    let mut table = ClaimTable {
        header: [
            "recipe",
            "seeds passing",
            "learned",
            "steps",
            "accuracy far (best, worst)",
            "reach per seed",
        ]
        .map(String::from)
        .to_vec(),
        rows: Vec::new(),
    };
    let judged: Vec<RecipeFinding> = recipes
        .iter()
        .map(|((experiment, model, d, train_len, lr), seeds)| {
            let name = match several_experiments {
                true => format!("{experiment} ({model} d={d}, lr {lr})"),
                false => format!("{model} d={d}"),
            };
            let finding = recipe_finding(name, seeds, threshold, min_length, *train_len);
            table.rows.push(table_row(
                &finding, seeds, threshold, min_length, *train_len,
            ));
            finding
        })
        .collect();
    let (verdict, summary) = verdict(&judged, min_length, full_budget_steps);
    Judged {
        verdict,
        summary,
        findings: judged.into_iter().map(|r| r.finding).collect(),
        table,
    }
}

/// A recipe at a glance: seeds passing, learned, steps, the accuracy at the farthest length
/// (best and worst seed), and each seed's reach.
fn table_row(
    recipe: &RecipeFinding,
    seeds: &BTreeMap<i64, Vec<&Row>>,
    threshold: f64,
    min_length: i64,
    train_len: i64,
) -> Vec<String> {
    let far: Vec<f64> = seeds
        .values()
        .filter_map(|rows| {
            rows.iter()
                .filter(|r| r.eval_seq_len.is_some_and(|l| l >= min_length))
                .max_by_key(|r| r.eval_seq_len)
                .and_then(|r| r.accuracy.filter(|_| r.status == Status::Ok))
        })
        .collect();
    let percent = |a: f64| format!("{:.0}%", a * 100.0);
    let best_worst = match (
        far.iter().copied().reduce(f64::max),
        far.iter().copied().reduce(f64::min),
    ) {
        (Some(best), Some(worst)) => format!("{}, {}", percent(best), percent(worst)),
        _ => "–".to_owned(),
    };
    let reaches: Vec<String> = seeds
        .iter()
        .map(|(seed, rows)| {
            let learned = in_distribution(rows, train_len).is_none_or(|a| a >= threshold);
            let longer: Vec<(i64, f64)> = final_lower_bounds(rows.iter().copied())
                .into_iter()
                .filter(|(len, _)| *len > train_len)
                .collect();
            let shown = match learned {
                true => tokens(reach(longer, threshold).unwrap_or(train_len)),
                false => "not learned".to_owned(),
            };
            format!("s{seed} {shown}")
        })
        .collect();
    vec![
        recipe.finding.at.clone(),
        format!("{} of {}", recipe.passing, recipe.seeds),
        format!("{} of {}", recipe.learned, recipe.seeds),
        recipe.steps.to_string(),
        best_worst,
        reaches.join(", "),
    ]
}

/// A length as a reader counts tokens: 256, 4K, 64K, 1M.
fn tokens(len: i64) -> String {
    match len {
        l if l >= 1 << 20 && l % (1 << 20) == 0 => format!("{}M", l >> 20),
        l if l >= 1 << 10 && l % (1 << 10) == 0 => format!("{}K", l >> 10),
        l => l.to_string(),
    }
}

/// The claim's verdict over its recipes (see the module's docs).
fn verdict(
    recipes: &[RecipeFinding],
    min_length: i64,
    full_budget_steps: Option<i64>,
) -> (Verdict, String) {
    if recipes.is_empty() {
        return (
            Verdict::Inconclusive,
            "no results to judge: the experiments have no usable rows".to_owned(),
        );
    }
    let supported: Vec<&RecipeFinding> = recipes
        .iter()
        .filter(|r| r.finding.verdict == Verdict::Supported)
        .collect();
    if !supported.is_empty() {
        let names: Vec<String> = supported
            .iter()
            .map(|r| format!("{} ({} of {} seeds)", r.finding.at, r.passing, r.seeds))
            .collect();
        return (
            Verdict::Supported,
            format!(
                "supported: a majority of seeds keep accuracy at {min_length} tokens with {}",
                names.join(" · ")
            ),
        );
    }
    let learned: Vec<&RecipeFinding> = recipes.iter().filter(|r| r.learned > 0).collect();
    let all_refuted = !learned.is_empty()
        && learned
            .iter()
            .all(|r| r.finding.verdict == Verdict::Refuted);
    let longest = learned.iter().map(|r| r.steps).max().unwrap_or(0);
    match (all_refuted, full_budget_steps) {
        (true, Some(budget)) if longest >= budget => (
            Verdict::Refuted,
            format!(
                "refuted: no recipe keeps accuracy at {min_length} tokens in a majority of its seeds, one trained for the whole budget ({longest} steps) included"
            ),
        ),
        (true, None) => (
            Verdict::Refuted,
            format!("refuted: no recipe keeps accuracy at {min_length} tokens in a majority of its seeds"),
        ),
        (true, Some(budget)) => (
            Verdict::Inconclusive,
            format!(
                "inconclusive: no recipe keeps accuracy at {min_length} tokens in a majority of its seeds, but the longest training was {longest} steps, {:.0}% of the {budget}-step budget the claim's source used",
                100.0 * longest as f64 / budget as f64
            ),
        ),
        (false, _) => (
            Verdict::Inconclusive,
            "inconclusive: no recipe keeps accuracy in a majority of its seeds, and not every recipe is decided (too few examples, failed evaluations or no learned seed)"
                .to_owned(),
        ),
    }
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

/// One recipe's finding, with the counts the claim's verdict needs.
struct RecipeFinding {
    finding: Finding,
    seeds: usize,
    learned: usize,
    passing: usize,
    /// The most steps any of its seeds trained.
    steps: i64,
}

/// The finding of one recipe, over its seeds.
fn recipe_finding(
    at: String,
    seeds: &BTreeMap<i64, Vec<&Row>>,
    threshold: f64,
    min_length: i64,
    train_len: i64,
) -> RecipeFinding {
    let findings: Vec<(i64, SeedFinding)> = seeds
        .iter()
        .map(|(seed, rows)| (*seed, seed_finding(rows, threshold, min_length, train_len)))
        .collect();
    let learned: Vec<&SeedFinding> = findings
        .iter()
        .map(|(_, f)| f)
        .filter(|f| f.learned)
        .collect();
    let count = |v: Verdict| learned.iter().filter(|f| f.verdict == v).count();
    let (passing, undecided) = (count(Verdict::Supported), count(Verdict::Inconclusive));
    let n = findings.len();
    let verdict = if learned.is_empty() {
        Verdict::Inconclusive
    } else if 2 * passing > n {
        Verdict::Supported
    } else if 2 * (passing + undecided) <= n {
        Verdict::Refuted
    } else {
        Verdict::Inconclusive
    };
    let steps = seeds
        .values()
        .flat_map(|rows| rows.iter().filter_map(|r| r.steps))
        .max()
        .unwrap_or(0);
    let mut summary = format!(
        "{passing} of {n} seeds pass at ≥{min_length} tokens, trained {steps} steps; learned in {} of {n} seeds",
        learned.len()
    );
    let to_target: Vec<i64> = learned.iter().filter_map(|f| f.steps_to_target).collect();
    if let (Some(fewest), Some(most)) = (to_target.iter().min(), to_target.iter().max()) {
        summary += &match fewest == most {
            true => format!(", after {fewest} steps"),
            false => format!(", after {fewest}–{most} steps"),
        };
    }
    // The length every learned seed passes at: the shortest of their longest passing ones.
    let longest: Option<Vec<i64>> = learned.iter().map(|f| f.longest_passing).collect();
    let every = match learned.len() == n {
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
        .map(|(seed, f)| match n {
            1 => f.detail.clone(),
            _ => format!("seed {seed}: {}", f.detail),
        })
        .collect();
    RecipeFinding {
        finding: Finding {
            at,
            verdict,
            detail: format!("{summary}. {}", per_seed.join("; ")),
            measured: true,
        },
        seeds: n,
        learned: learned.len(),
        passing,
        steps,
    }
}
