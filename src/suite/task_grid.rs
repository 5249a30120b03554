//! A recall experiment's `task:` mapping, in which any option may be a list. The experiment
//! runs every combination of the listed values, as it does every combination of the grid's
//! widths and lengths:
//!
//! ```yaml
//! task: { task: mqar, vocab_size: 512, num_kv_pairs: [4, 8, 16] }   # three tasks
//! ```

use crate::tasks::Task;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_yaml::{Mapping, Value};

/// The tasks of one experiment: the cross product of its listed options, in the order written.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskGrid {
    /// The mapping as written, so that manifests show the suite's own words.
    written: Mapping,
    /// The tasks, or what is wrong with the mapping; validation reports the latter under the
    /// experiment's `task` field, where the suite's line is known.
    variants: Result<Vec<Task>, String>,
}

impl TaskGrid {
    /// Every task of the grid, the first listed value of each option first (none if the
    /// mapping is not valid).
    pub fn variants(&self) -> &[Task] {
        self.variants.as_deref().unwrap_or_default()
    }

    /// What makes the mapping invalid, if anything.
    pub fn error(&self) -> Option<&str> {
        self.variants.as_ref().err().map(String::as_str)
    }
}

fn expand(written: &Mapping) -> Result<Vec<Task>, String> {
    let mut combinations = vec![Mapping::new()];
    for (key, value) in written {
        let choices = match value {
            Value::Sequence(list) if list.is_empty() => {
                return Err(format!(
                    "option `{}` has an empty list; give at least one value",
                    key.as_str().unwrap_or("?")
                ))
            }
            Value::Sequence(list) => list.clone(),
            single => vec![single.clone()],
        };
        combinations = combinations
            .into_iter()
            .flat_map(|partial| {
                choices.iter().map(move |choice| {
                    let mut next = partial.clone();
                    next.insert(key.clone(), choice.clone());
                    next
                })
            })
            .collect();
    }
    combinations
        .into_iter()
        .map(|m| serde_yaml::from_value::<Task>(Value::Mapping(m)).map_err(|e| e.to_string()))
        .collect()
}

impl<'de> Deserialize<'de> for TaskGrid {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let written = Mapping::deserialize(deserializer)?;
        let variants = expand(&written);
        Ok(Self { written, variants })
    }
}

impl Serialize for TaskGrid {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.written.serialize(serializer)
    }
}
