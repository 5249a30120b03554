//! What every check writes to: the issues found so far, each located in the suite file; and the
//! checks of single values and lists that several parts of a suite share.

use crate::suite::error::Issue;
use crate::suite::locate::Locations;
use std::fmt::Display;

pub(in crate::suite) struct Checker<'a> {
    locations: &'a Locations,
    issues: Vec<Issue>,
}

impl<'a> Checker<'a> {
    pub(super) fn new(locations: &'a Locations) -> Self {
        Self {
            locations,
            issues: Vec::new(),
        }
    }

    /// The issues found, in file order, as a reader fixes them.
    pub(super) fn into_issues(mut self) -> Vec<Issue> {
        self.issues
            .sort_by_key(|issue| issue.location.map(|l| (l.line, l.column)));
        self.issues
    }

    pub(in crate::suite) fn fail(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = path.into();
        let location = self.locations.find(&path);
        self.issues.push(Issue {
            path,
            location,
            message: message.into(),
        });
    }

    /// Whether an issue has been found at a path that starts with `prefix`.
    pub(super) fn failed_under(&self, prefix: &str) -> bool {
        self.issues
            .iter()
            .any(|issue| issue.path.starts_with(prefix))
    }

    /// A list a grid sweeps: at least one value, each ≥ 1, none twice.
    pub(super) fn sweep(&mut self, path: String, values: &[i64]) {
        self.positive(&path, values);
        self.distinct(&path, values);
    }

    fn positive(&mut self, path: &str, values: &[i64]) {
        if values.is_empty() {
            self.fail(path, "the list is empty; give at least one value");
            return;
        }
        for (i, value) in values.iter().enumerate() {
            if *value < 1 {
                self.fail(
                    format!("{path}[{i}]"),
                    format!("{value} is not allowed; expected an integer ≥ 1"),
                );
            }
        }
    }

    /// Each value of the list at `path` once: a repeated value would plan the same runs twice,
    /// under the same run ids. Reported at the value's second place.
    pub(super) fn distinct<T: PartialEq + Display>(&mut self, path: &str, values: &[T]) {
        for (j, value) in values.iter().enumerate() {
            let before = values[..j].iter().filter(|v| *v == value).count();
            if before != 1 {
                continue; // its first place, or a third one already reported
            }
            let times = match values.iter().filter(|v| *v == value).count() {
                2 => "twice".to_owned(),
                n => format!("{n} times"),
            };
            self.fail(
                format!("{path}[{j}]"),
                format!("`{value}` appears {times} in the list; each value runs once"),
            );
        }
    }

    pub(in crate::suite) fn at_least(&mut self, path: String, value: Option<i64>, min: i64) {
        if let Some(value) = value.filter(|v| *v < min) {
            self.fail(
                path,
                format!("{value} is not allowed; expected an integer ≥ {min}"),
            );
        }
    }

    pub(in crate::suite) fn above_zero(&mut self, path: String, value: Option<f64>) {
        if let Some(value) = value.filter(|v| !(*v > 0.0 && v.is_finite())) {
            self.fail(
                path,
                format!("{value} is not allowed; expected a number > 0"),
            );
        }
    }
}

/// A name that can name a file or folder: letters, digits, `-`, `_` and `.`, not hidden.
pub(in crate::suite) fn is_file_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
        && !name.starts_with('.')
}
