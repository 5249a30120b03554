//! What is wrong with a suite, said so that the user knows where and how to fix it.

use super::locate::Location;
use std::fmt;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("cannot read suite `{}`: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid suite `{}`:\n{}", path.display(), Issues(issues))]
    Invalid { path: PathBuf, issues: Vec<Issue> },
}

/// One problem: the field path, where it stands in the file, and what is allowed instead.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub path: String,
    pub location: Option<Location>,
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(at) = self.location {
            write!(f, "line {}, column {}: ", at.line, at.column)?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

struct Issues<'a>(&'a [Issue]);

impl fmt::Display for Issues<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  - {issue}")?;
        }
        Ok(())
    }
}
