//! Induction heads (Olsson et al. 2022; the Mamba paper's Table 2, in the format of
//! HazyResearch/safari's `generate_induction_head`): a special token followed by a target
//! somewhere in a random sequence; the sequence ends with the special token again, and the model
//! must predict the target that followed it the first time. Trained at one length, evaluated
//! at lengths up to 2^20 to test extrapolation.
//!
//! Tokens: random from [0, V − 1); the special token is V − 1 and appears only twice. `seq_len`
//! is the whole length. With V = 16 and seq_len 8:
//!
//! ```text
//! inputs:   3  9 15  6  2 11  4 15
//! targets:  ·  ·  ·  ·  ·  ·  ·  6      (· = -100)
//! ```

use super::{impossible, Example, TaskError, IGNORE};
use crate::rng::Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "defaults::vocab_size")]
    pub vocab_size: i64,
}

mod defaults {
    pub fn vocab_size() -> i64 {
        16
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            vocab_size: defaults::vocab_size(),
        }
    }
}

impl Config {
    pub fn special(&self) -> i64 {
        self.vocab_size - 1
    }

    pub fn example(&self, seq_len: i64, rng: &mut Rng) -> Result<Example, TaskError> {
        if seq_len < 3 {
            return Err(impossible(
                "induction_heads",
                format!("seq_len {seq_len} is too short: the pattern needs 3 tokens"),
            ));
        }
        if self.vocab_size < 3 {
            return Err(impossible(
                "induction_heads",
                format!("vocab_size {} must be ≥ 3", self.vocab_size),
            ));
        }
        let special = self.special();
        let mut inputs: Vec<i64> = (0..seq_len).map(|_| rng.range(0, special)).collect();
        let at = rng.range(0, seq_len - 2) as usize;
        inputs[at] = special;
        let target = inputs[at + 1];
        let last = seq_len as usize - 1;
        inputs[last] = special;
        let mut targets = vec![IGNORE; seq_len as usize];
        targets[last] = target;
        Ok(Example { inputs, targets })
    }
}
