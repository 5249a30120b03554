//! Splitting a plan across machines so that every shard has about the same work: shards are
//! disjoint, cover the plan exactly once, and each process computes the same split on its own.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Shard `index` of `count`, 0-based (Slurm's `$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT`
/// with `--array=0-(N-1)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// The runs of `runs` that belong to this shard, in plan order, given each run's estimated
    /// `work`. Largest first, each run goes to the shard with the least work so far (Graham's
    /// LPT rule): no shard ends up more than one run's work above another. Taking every n-th
    /// run instead would hand one shard all the widest models whenever the grid's period is a
    /// multiple of n.
    pub fn select<T: Clone>(&self, runs: &[T], work: impl Fn(&T) -> f64) -> Vec<T> {
        let mut order: Vec<(usize, f64)> = runs.iter().map(&work).enumerate().collect();
        // Stable, and ties keep plan order, so every process computes the same split.
        order.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut load = vec![0.0f64; self.count];
        let mut mine = vec![false; runs.len()];
        for (run, w) in order {
            let lightest = (0..self.count)
                .min_by(|&a, &b| load[a].total_cmp(&load[b]))
                .expect("a shard count is at least 1");
            load[lightest] += w.max(0.0);
            mine[run] = lightest == self.index;
        }
        runs.iter()
            .zip(mine)
            .filter(|(_, m)| *m)
            .map(|(run, _)| run.clone())
            .collect()
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not a shard; expected I/N with 0 ≤ I < N, e.g. 0/4");
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let (index, count): (usize, usize) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}
