//! Reach: how far beyond its training length a model still recalls. It is the longest
//! evaluated length at which the model clears a threshold (the Wilson 95% lower bound of its
//! accuracy at or above it) there and at every shorter length evaluated, so that one lucky
//! length past a failing one does not count as reach.

use crate::results::{Row, Status};

/// The accuracy a length must clear, on its Wilson 95% lower bound: claim (b)'s threshold
/// (experiments/claims.yaml), so that charts, the mechanism's table and the verdict count
/// reach alike.
pub const REACH_THRESHOLD: f64 = 0.9;
use crate::train::eval::LengthAccuracy;

/// The longest length of `measured` (length, the Wilson lower bound of its accuracy) that
/// clears `threshold` together with every shorter one; `None` when the shortest fails.
pub fn reach(measured: impl IntoIterator<Item = (i64, f64)>, threshold: f64) -> Option<i64> {
    let mut measured: Vec<(i64, f64)> = measured.into_iter().collect();
    measured.sort_by_key(|(len, _)| *len);
    measured
        .into_iter()
        .take_while(|(_, low)| *low >= threshold)
        .last()
        .map(|(len, _)| len)
}

/// The lower bounds of a curve point's reach measurements.
pub fn lower_bounds(reach: &[LengthAccuracy]) -> Vec<(i64, f64)> {
    reach
        .iter()
        .map(|r| (r.seq_len, r.accuracy().wilson_interval().0))
        .collect()
}

/// The lower bounds of a run's final evaluation, from its rows; a length whose evaluation
/// failed (timeout, out of memory) counts as not cleared, with a lower bound of 0.
pub fn final_lower_bounds<'a>(rows: impl IntoIterator<Item = &'a Row>) -> Vec<(i64, f64)> {
    rows.into_iter()
        .filter_map(|r| {
            let len = r.eval_seq_len?;
            let low = match r.status {
                Status::Ok => r.accuracy_ci_low.unwrap_or(0.0),
                _ => 0.0,
            };
            Some((len, low))
        })
        .collect()
}

/// The reach a run's final evaluation measured over the lengths `counted` keeps: the longest
/// length beyond `train_len` cleared, the training length when the run learned (its point
/// accuracy there at least the threshold, as claim (b) counts it) but cleared no longer one,
/// and `None` when it did not learn.
pub fn final_reach(rows: &[&Row], train_len: i64, counted: impl Fn(i64) -> bool) -> Option<i64> {
    let learned = rows.iter().any(|r| {
        r.eval_seq_len == Some(train_len) && r.accuracy.is_some_and(|a| a >= REACH_THRESHOLD)
    });
    let longer: Vec<(i64, f64)> = final_lower_bounds(rows.iter().copied())
        .into_iter()
        .filter(|&(len, _)| len > train_len && counted(len))
        .collect();
    learned.then(|| reach(longer, REACH_THRESHOLD).unwrap_or(train_len))
}

#[cfg(test)]
mod tests {
    use super::reach;

    #[test]
    fn reach_stops_at_the_first_length_that_fails() {
        let measured = [(4096, 0.95), (256, 0.93), (65536, 0.5), (1048576, 0.92)];
        assert_eq!(reach(measured, 0.9), Some(4096), "2^20 past a failing 64K");
        assert_eq!(reach([(256, 0.93), (4096, 0.91)], 0.9), Some(4096));
        assert_eq!(reach([(256, 0.8), (4096, 0.95)], 0.9), None);
        assert_eq!(reach([], 0.9), None);
    }
}
