//! YAML suites: the schema users write, its validation, and its expansion into run specs.

pub mod claim;
pub mod error;
pub mod grid;
pub mod locate;
pub mod model_options;
pub mod schema;
pub mod shard;
pub mod task_grid;
pub mod validate;

pub use error::{Issue, SuiteError};
pub use schema::Suite;
pub use shard::Shard;
pub use validate::Machine;

use crate::device::{DeviceId, DeviceSpec};
use crate::spec::RunSpec;
use locate::{Location, Locations};
use std::collections::HashSet;
use std::path::Path;

/// A suite that passed validation, with its device resolved and its grid expanded.
#[derive(Debug, Clone)]
pub struct Plan {
    pub suite: Suite,
    pub device: DeviceId,
    pub runs: Vec<RunSpec>,
    /// What does not stop the suite but should be said before it runs: runs the analytic model
    /// predicts will not fit in memory (they will likely end as `oom` rows). In file order.
    pub warnings: Vec<Issue>,
}

impl Plan {
    /// Reads, parses, validates and expands the suite at `path`.
    pub fn load(path: &Path, machine: Machine) -> Result<Self, SuiteError> {
        let text = std::fs::read_to_string(path).map_err(|source| SuiteError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        Self::parse_relative_to(&text, machine, base).map_err(|issues| SuiteError::Invalid {
            path: path.to_owned(),
            issues,
        })
    }

    /// Parses and validates suite text; every problem found is returned. Relative checkpoint
    /// paths are relative to the current directory.
    pub fn parse(text: &str, machine: Machine) -> Result<Self, Vec<Issue>> {
        Self::parse_relative_to(text, machine, Path::new(""))
    }

    /// Like [`Plan::parse`], with relative checkpoint paths relative to `base`.
    pub fn parse_relative_to(
        text: &str,
        machine: Machine,
        base: &Path,
    ) -> Result<Self, Vec<Issue>> {
        let locations = Locations::index(text);
        let mut suite: Suite =
            serde_yaml::from_str(text).map_err(|e| vec![serde_issue(&e, &locations)])?;
        suite.resolve_paths(base);
        let issues = validate::check(&suite, &locations, machine);
        if !issues.is_empty() {
            return Err(issues);
        }
        let device = DeviceSpec::parse(&suite.device)
            .and_then(|spec| spec.resolve(machine.cuda_devices))
            .expect("validated above")
            .into();
        // Validation read every checkpoint and matched every size, so this succeeds unless a
        // checkpoint changed in between; then it is one more issue.
        let runs = grid::expand(&suite, device).map_err(|e| {
            vec![Issue {
                path: "models".to_owned(),
                location: None,
                message: e.to_string(),
            }]
        })?;
        let repeated = repeated_runs(&suite, &runs, &locations);
        if !repeated.is_empty() {
            return Err(repeated);
        }
        let warnings = validate::memory_warnings(&suite, &runs, machine, &locations);
        Ok(Self {
            suite,
            device,
            runs,
            warnings,
        })
    }
}

/// Runs planned more than once under one id, one issue per experiment. Validation rejects the
/// repeated grid values that would plan them; this catches any other way to the same spec (a
/// task option listed twice, say), since a results folder keeps one row per id.
fn repeated_runs(suite: &Suite, runs: &[RunSpec], locations: &Locations) -> Vec<Issue> {
    let mut seen = HashSet::new();
    let mut repeated = HashSet::new();
    let mut second_plans: Vec<&RunSpec> = Vec::new();
    for run in runs {
        if !seen.insert(run.run_id.as_str()) && repeated.insert(run.run_id.as_str()) {
            second_plans.push(run);
        }
    }
    let mut issues = Vec::new();
    for (i, exp) in suite.experiments.iter().enumerate() {
        let mine: Vec<&str> = second_plans
            .iter()
            .filter(|run| run.experiment == exp.name)
            .map(|run| run.run_id.as_str())
            .collect();
        let Some(first) = mine.first() else {
            continue;
        };
        let which = match mine.len() {
            1 => format!("run `{first}` is"),
            n => format!("{n} runs, `{first}` among them, are"),
        };
        let path = format!("experiments[{i}]");
        issues.push(Issue {
            location: locations.find(&path),
            path,
            message: format!("{which} planned more than once: two points of the grid give the same run; list each value once"),
        });
    }
    issues
}

/// serde_yaml's message already names the field path; its location becomes ours, except for an
/// unknown key, which serde locates at its parent and our index at the key itself.
fn serde_issue(error: &serde_yaml::Error, locations: &Locations) -> Issue {
    let text = error.to_string();
    let mut location = error.location().map(|l| Location {
        line: l.line(),
        column: l.column(),
    });
    // Drop the trailing " at line L column C": the location is printed in front.
    let message = match text.rfind(" at line ") {
        Some(cut) if location.is_some() => text[..cut].to_owned(),
        _ => text,
    };
    let (path, message) = match message.split_once(": ") {
        Some((path, rest)) if !path.contains(' ') => (path.to_owned(), rest.to_owned()),
        _ => (String::new(), message),
    };
    if let Some(key) = unknown_key(&message) {
        let key_path = if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        };
        location = locations.find(&key_path).or(location);
    }
    Issue {
        path,
        location,
        message,
    }
}

/// `x` from "unknown field `x`, expected ...".
fn unknown_key(message: &str) -> Option<&str> {
    message.strip_prefix("unknown field `")?.split('`').next()
}
