//! Multi-query associative recall (Arora et al. 2023, "Zoology"; format of HazyResearch/zoology
//! `zoology/data/multiquery_ar.py`).
//!
//! Key-value pairs come first; then each key is queried once, at a position drawn with a
//! power-law gap, and the model must answer with its value. Keys come from [1, V/2), values
//! from [V/2, V), both without repetition in an example. With V = 16, L = 12, 2 pairs:
//!
//! ```text
//! position:  0  1  2  3 | 4  5  6  7  8  9 10 11
//! inputs:    3  9  5 12 | 7  2  5  0  3 14 11  1     (keys 3, 5; values 9, 12; the rest noise)
//! targets:   ·  ·  ·  · | ·  · 12  ·  9  ·  ·  ·     (· = -100: only the queried keys score)
//! ```
//!
//! Queries sit at even offsets 2·g of the query section, g drawn without replacement from
//! [0, (L − 2·kv)/2) with p(g) ∝ α·(g+1)^(α−1) (α = 0.01 favours short gaps). The other
//! positions of the query section hold random tokens (`random_non_queries`, as zoology's
//! default) or 0.

use super::{impossible, Example, TaskError, IGNORE};
use crate::rng::Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "defaults::vocab_size")]
    pub vocab_size: i64,
    pub num_kv_pairs: i64,
    #[serde(default = "defaults::power_a")]
    pub power_a: f64,
    #[serde(default = "defaults::yes")]
    pub random_non_queries: bool,
}

mod defaults {
    pub fn vocab_size() -> i64 {
        8192
    }
    pub fn power_a() -> f64 {
        0.01
    }
    pub fn yes() -> bool {
        true
    }
}

impl Config {
    pub fn new(vocab_size: i64, num_kv_pairs: i64) -> Self {
        Self {
            vocab_size,
            num_kv_pairs,
            power_a: defaults::power_a(),
            random_non_queries: true,
        }
    }

    /// An example of total length `seq_len`.
    pub fn example(&self, seq_len: i64, rng: &mut Rng) -> Result<Example, TaskError> {
        let (v, kv) = (self.vocab_size, self.num_kv_pairs);
        if kv < 1 || 4 * kv > seq_len {
            return Err(impossible(
                "mqar",
                format!(
                    "4·num_kv_pairs ({}) must be ≤ seq_len ({seq_len}), with num_kv_pairs ≥ 1",
                    4 * kv
                ),
            ));
        }
        if v / 2 - 1 < kv {
            return Err(impossible(
                "mqar",
                format!(
                    "vocab_size {v} leaves {} keys in [1, V/2) for {kv} pairs",
                    v / 2 - 1
                ),
            ));
        }
        if !(self.power_a > 0.0 && self.power_a.is_finite()) {
            return Err(impossible(
                "mqar",
                format!("power_a {} must be > 0", self.power_a),
            ));
        }
        let keys = rng.distinct(1, v / 2, kv as usize);
        let values = rng.distinct(v / 2, v, kv as usize);
        let context = 2 * kv;
        let mut inputs = Vec::with_capacity(seq_len as usize);
        for (k, val) in keys.iter().zip(&values) {
            inputs.push(*k);
            inputs.push(*val);
        }
        let query_len = seq_len - context;
        inputs.extend((0..query_len).map(|_| {
            if self.random_non_queries {
                rng.range(0, v)
            } else {
                0
            }
        }));
        let mut targets = vec![IGNORE; seq_len as usize];
        let space = query_len / 2;
        let weights: Vec<f64> = (1..=space)
            .map(|i| self.power_a * (i as f64).powf(self.power_a - 1.0))
            .collect();
        let gaps = rng.weighted_distinct(&weights, kv as usize);
        for (pair, gap) in gaps.iter().enumerate() {
            let at = (context + 2 * *gap as i64) as usize;
            inputs[at] = keys[pair];
            targets[at] = values[pair];
        }
        Ok(Example { inputs, targets })
    }
}
