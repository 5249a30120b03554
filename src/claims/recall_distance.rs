//! "A model of this family keeps accuracy ≥ threshold at min_length tokens", judged per model
//! and width, taking the learning rate that did best at the training length:
//!
//! - supported when an evaluation at ≥ min_length succeeded with accuracy ≥ threshold;
//! - inconclusive when the model fell below the threshold at its own training length: it did
//!   not learn the task, so failing far away says nothing about what its state can keep;
//! - refuted when every evaluation at ≥ min_length succeeded and fell below the threshold;
//! - inconclusive when none was planned or those that were failed (oom, timeout, error).
//!
//! Each finding names the longest length that passed.

use super::{Finding, Verdict};
use crate::results::{Row, Status};
use crate::spec::{ExperimentKind, Family};
use std::collections::BTreeMap;

pub fn judge(rows: &[&Row], family: Family, threshold: f64, min_length: i64) -> Vec<Finding> {
    // (model, d_model, training length) → lr → rows.
    let mut runs: BTreeMap<(String, i64, i64), BTreeMap<String, Vec<&Row>>> = BTreeMap::new();
    for row in rows
        .iter()
        .filter(|r| r.kind == ExperimentKind::Recall && r.family == family)
    {
        runs.entry((row.model.clone(), row.d_model, row.seq_len))
            .or_default()
            .entry(format!("{:e}", row.lr.unwrap_or_default()))
            .or_default()
            .push(row);
    }
    runs.into_iter()
        .map(|((model, d, train_len), by_lr)| {
            let in_distribution = |rows: &Vec<&Row>| {
                rows.iter()
                    .find(|r| r.eval_seq_len == Some(train_len))
                    .and_then(|r| r.accuracy)
                    .unwrap_or(-1.0)
            };
            let best = by_lr
                .into_values()
                .max_by(|a, b| in_distribution(a).total_cmp(&in_distribution(b)))
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

fn finding(at: &str, rows: &[&Row], threshold: f64, min_length: i64, train_len: i64) -> Finding {
    let passes = |r: &&&Row| r.status == Status::Ok && r.accuracy.is_some_and(|a| a >= threshold);
    let longest = rows
        .iter()
        .filter(passes)
        .filter_map(|r| r.eval_seq_len)
        .max();
    let far: Vec<&&Row> = rows
        .iter()
        .filter(|r| r.eval_seq_len.is_some_and(|l| l >= min_length))
        .collect();
    let longest_text = match longest {
        Some(l) => format!("longest length passing: {l}"),
        None => "no length passed".to_owned(),
    };
    let unlearned = rows
        .iter()
        .find(|r| r.eval_seq_len == Some(train_len) && r.status == Status::Ok)
        .and_then(|r| r.accuracy)
        .filter(|a| *a < threshold);
    let (verdict, detail) = if far.is_empty() {
        (
            Verdict::Inconclusive,
            format!("not evaluated at {min_length} tokens or more; {longest_text}"),
        )
    } else if let Some(r) = far.iter().find(|r| passes(r)) {
        (
            Verdict::Supported,
            format!(
                "accuracy {:.3} at {} tokens; {longest_text}",
                r.accuracy.unwrap_or_default(),
                r.eval_seq_len.unwrap_or_default()
            ),
        )
    } else if let Some(accuracy) = unlearned {
        (
            Verdict::Inconclusive,
            format!(
                "did not learn the task: accuracy {accuracy:.3} < {threshold} at its training \
                 length {train_len}, so a miss far away says nothing about its memory"
            ),
        )
    } else if far.iter().all(|r| r.status == Status::Ok) {
        let best = far.iter().filter_map(|r| r.accuracy).fold(0.0f64, f64::max);
        (
            Verdict::Refuted,
            format!(
                "accuracy at most {best:.3} < {threshold} at ≥ {min_length} tokens; {longest_text}"
            ),
        )
    } else {
        let failed: Vec<String> = far
            .iter()
            .filter(|r| r.status != Status::Ok)
            .map(|r| {
                format!(
                    "{} at {}",
                    r.status.name(),
                    r.eval_seq_len.unwrap_or_default()
                )
            })
            .collect();
        (
            Verdict::Inconclusive,
            format!("{}; {longest_text}", failed.join(", ")),
        )
    };
    Finding {
        at: at.to_owned(),
        verdict,
        detail,
        measured: true,
    }
}
