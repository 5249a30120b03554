//! What the rows say together: the device's fitted throughput, and crossover lengths.

pub mod crossover;
pub mod fit;
pub mod reach;

use crate::results::Row;
use crate::spec::RunSpec;

/// Fits the device model to `rows` (filling their `predicted_latency_s`) and finds every
/// crossover they allow; `runs` are the specs the rows came from.
pub fn analyze(rows: &mut [Row], runs: &[RunSpec]) -> Vec<crossover::Crossover> {
    let fits = fit::predict(rows);
    crossover::analyze(rows, runs, &fits)
}
