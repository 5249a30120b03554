//! YAML suites: the schema users write, its validation, and its expansion into run specs.

pub mod claim;
pub mod error;
pub mod grid;
pub mod locate;
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
use std::path::Path;

/// A suite that passed validation, with its device resolved and its grid expanded.
#[derive(Debug, Clone)]
pub struct Plan {
    pub suite: Suite,
    pub device: DeviceId,
    pub runs: Vec<RunSpec>,
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
        Ok(Self {
            suite,
            device,
            runs,
        })
    }
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
