//! Copying and phonebook lookup (Jelassi et al. 2024, "Repeat After Me"; format of
//! sjelassi/transformers_ssm_copy): a fixed-size state must hold the whole string to copy it.
//!
//! **Copying** `$ s | s .`: a random string s of `seq_len` letters, a separator, then s again,
//! teacher-forced, and the end token. Tokens: 0 `$`, 1 `|`, 2 `.`, letters from 3. With
//! s = "cab" (c = 5, a = 3, b = 4):
//!
//! ```text
//! inputs:   0  5  3  4  1  5  3  4
//! targets:  ·  ·  ·  ·  5  3  4  2      (· = -100)
//! ```
//!
//! With `min_len`, training strings take every length from `min_len` to `seq_len` (uniformly),
//! as Jelassi et al. train, and end tokens pad each example to the length of the longest, with
//! no targets; evaluation strings have exactly `seq_len` letters. A training example with
//! min_len 2 at seq_len 3 may be s = "ca":
//!
//! ```text
//! inputs:   0  5  3  1  5  3  2  2
//! targets:  ·  ·  ·  5  3  2  ·  ·
//! ```
//!
//! **Phonebook** `$ name : number , … | name : number .`: `seq_len` entries of distinct
//! `name_len`-letter names and `number_len`-digit numbers, then one of the names as a query;
//! the model must produce its number. Tokens: 0 `$`, 1 `:`, 2 `,`, 3 `|`, 4 `.`, digits from 5,
//! letters from 15. With one entry "ab: 42":
//!
//! ```text
//! inputs:   0 15 16  1  9  7  3 15 16  1  9  7
//! targets:  ·  ·  ·  ·  ·  ·  ·  ·  ·  9  7  4
//! ```

use super::{impossible, Example, Split, TaskError, IGNORE};
use crate::rng::Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Letters in the alphabet (26: a–z).
    #[serde(default = "defaults::alphabet")]
    pub alphabet: i64,
    /// The shortest training string; absent, training strings have exactly `seq_len` letters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_len: Option<i64>,
}

mod defaults {
    pub fn alphabet() -> i64 {
        26
    }
    pub fn name_len() -> i64 {
        4
    }
    pub fn number_len() -> i64 {
        10
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            alphabet: defaults::alphabet(),
            min_len: None,
        }
    }
}

const START: i64 = 0;
const SEPARATOR: i64 = 1;
const END: i64 = 2;
const FIRST_LETTER: i64 = 3;

impl Config {
    pub fn vocab_size(&self) -> i64 {
        FIRST_LETTER + self.alphabet
    }

    pub fn example(&self, split: Split, seq_len: i64, rng: &mut Rng) -> Result<Example, TaskError> {
        if seq_len < 1 || self.alphabet < 1 {
            return Err(impossible(
                "copying",
                format!(
                    "the string length ({seq_len}) and alphabet ({}) must be ≥ 1",
                    self.alphabet
                ),
            ));
        }
        let len = match (split, self.min_len) {
            (Split::Train, Some(min_len)) if !(1..=seq_len).contains(&min_len) => {
                return Err(impossible(
                    "copying",
                    format!(
                        "min_len ({min_len}) must be from 1 to the training length ({seq_len})"
                    ),
                ));
            }
            (Split::Train, Some(min_len)) => rng.range(min_len, seq_len + 1),
            _ => seq_len,
        };
        let mut example = self.copy_of(len, rng);
        // Padding after the end token: a causal model's predictions before it cannot see it.
        let full = 2 * seq_len as usize + 2;
        example.inputs.resize(full, END);
        example.targets.resize(full, IGNORE);
        Ok(example)
    }

    /// `$ s | s .` for a random string s of `seq_len` letters.
    fn copy_of(&self, seq_len: i64, rng: &mut Rng) -> Example {
        let s: Vec<i64> = (0..seq_len)
            .map(|_| rng.range(FIRST_LETTER, self.vocab_size()))
            .collect();
        let n = seq_len as usize;
        let mut inputs = Vec::with_capacity(2 * n + 2);
        inputs.push(START);
        inputs.extend(&s);
        inputs.push(SEPARATOR);
        inputs.extend(&s);
        let mut targets = vec![IGNORE; n + 1];
        targets.extend(&s);
        targets.push(END);
        Example { inputs, targets }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhonebookConfig {
    #[serde(default = "defaults::alphabet")]
    pub alphabet: i64,
    #[serde(default = "defaults::name_len")]
    pub name_len: i64,
    #[serde(default = "defaults::number_len")]
    pub number_len: i64,
}

impl Default for PhonebookConfig {
    fn default() -> Self {
        Self {
            alphabet: defaults::alphabet(),
            name_len: defaults::name_len(),
            number_len: defaults::number_len(),
        }
    }
}

const COLON: i64 = 1;
const COMMA: i64 = 2;
const QUERY: i64 = 3;
const PERIOD: i64 = 4;
const FIRST_DIGIT: i64 = 5;
/// Digits of a phone number, 0–9.
pub const DIGITS: i64 = 10;
const FIRST_NAME_LETTER: i64 = FIRST_DIGIT + DIGITS;

impl PhonebookConfig {
    pub fn vocab_size(&self) -> i64 {
        FIRST_NAME_LETTER + self.alphabet
    }

    /// A phonebook of `seq_len` entries and one query.
    pub fn example(&self, seq_len: i64, rng: &mut Rng) -> Result<Example, TaskError> {
        let names_possible = (self.alphabet as f64).powf(self.name_len as f64);
        if seq_len < 1 || self.name_len < 1 || self.number_len < 1 || self.alphabet < 1 {
            return Err(impossible(
                "phonebook",
                "entries, name_len, number_len and alphabet must all be ≥ 1".into(),
            ));
        }
        if (seq_len as f64) > names_possible {
            return Err(impossible(
                "phonebook",
                format!(
                    "{seq_len} distinct names cannot be made of {} letters from {}",
                    self.name_len, self.alphabet
                ),
            ));
        }
        let mut names: Vec<Vec<i64>> = Vec::with_capacity(seq_len as usize);
        while names.len() < seq_len as usize {
            let name: Vec<i64> = (0..self.name_len)
                .map(|_| rng.range(FIRST_NAME_LETTER, self.vocab_size()))
                .collect();
            if !names.contains(&name) {
                names.push(name);
            }
        }
        let numbers: Vec<Vec<i64>> = (0..seq_len)
            .map(|_| {
                (0..self.number_len)
                    .map(|_| rng.range(FIRST_DIGIT, FIRST_NAME_LETTER))
                    .collect()
            })
            .collect();
        let mut inputs = vec![START];
        for (i, (name, number)) in names.iter().zip(&numbers).enumerate() {
            inputs.extend(name);
            inputs.push(COLON);
            inputs.extend(number);
            if i + 1 < names.len() {
                inputs.push(COMMA);
            }
        }
        let asked = rng.range(0, seq_len) as usize;
        inputs.push(QUERY);
        inputs.extend(&names[asked]);
        inputs.push(COLON);
        let mut targets = vec![IGNORE; inputs.len() - 1];
        targets.extend(&numbers[asked]);
        targets.push(PERIOD);
        inputs.extend(&numbers[asked]);
        Ok(Example { inputs, targets })
    }
}
