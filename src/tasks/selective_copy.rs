//! Selective copying (Gu & Dao 2023, the Mamba paper's Table 1 and App. E.1): data tokens at
//! random positions in a stretch of noise; after a marker the model must reproduce them in
//! order, skipping the noise. The paper's generator was never released (mamba issue #343), so
//! this is our documented version.
//!
//! Tokens: 0 noise, 1 the marker, data from [2, V). `seq_len` is the length of the noisy region;
//! the example is `seq_len + n_tokens` long, its outputs teacher-forced. With V = 16, 3 data
//! tokens and seq_len 6:
//!
//! ```text
//! inputs:   0  7  0  0 12  4 | 1  7 12
//! targets:  ·  ·  ·  ·  ·  · | 7 12  4      (· = -100)
//! ```

use super::{impossible, Example, TaskError, IGNORE};
use crate::rng::Rng;
use serde::{Deserialize, Serialize};

pub const NOISE: i64 = 0;
pub const MARKER: i64 = 1;
const FIRST_DATA: i64 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "defaults::vocab_size")]
    pub vocab_size: i64,
    /// Data tokens to memorise.
    #[serde(default = "defaults::n_tokens")]
    pub n_tokens: i64,
}

mod defaults {
    pub fn vocab_size() -> i64 {
        16
    }
    pub fn n_tokens() -> i64 {
        16
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            vocab_size: defaults::vocab_size(),
            n_tokens: defaults::n_tokens(),
        }
    }
}

impl Config {
    /// Tokens a data token can be: every one but the noise and the marker.
    pub fn data_tokens(&self) -> i64 {
        self.vocab_size - FIRST_DATA
    }

    pub fn example(&self, seq_len: i64, rng: &mut Rng) -> Result<Example, TaskError> {
        let n = self.n_tokens;
        if n < 1 || n > seq_len {
            return Err(impossible(
                "selective_copying",
                format!("n_tokens ({n}) must be between 1 and seq_len ({seq_len})"),
            ));
        }
        if self.vocab_size <= FIRST_DATA {
            return Err(impossible(
                "selective_copying",
                format!(
                    "vocab_size {} leaves no data tokens after noise and marker",
                    self.vocab_size
                ),
            ));
        }
        let data: Vec<i64> = (0..n)
            .map(|_| rng.range(FIRST_DATA, self.vocab_size))
            .collect();
        let mut positions = rng.distinct(0, seq_len, n as usize);
        positions.sort_unstable();
        let mut inputs = vec![NOISE; seq_len as usize];
        for (p, d) in positions.iter().zip(&data) {
            inputs[*p as usize] = *d;
        }
        let mut targets = vec![IGNORE; seq_len as usize];
        inputs.push(MARKER);
        inputs.extend(&data[..data.len() - 1]);
        targets.extend(&data);
        Ok(Example { inputs, targets })
    }
}
