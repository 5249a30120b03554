//! Maps field paths such as `experiments[0].grid.d_model[1]` to where they stand in the YAML
//! text, so that checks made after deserialisation can still name a line and column.

use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column in the suite file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

/// Where each field path starts. Keys are located at the key itself (the line that names the
/// field), sequence elements at the element.
#[derive(Debug, Default)]
pub struct Locations {
    paths: HashMap<String, Location>,
}

impl Locations {
    /// Indexes `text`; a document that does not parse yields an empty index (serde reports the
    /// syntax error with its own location).
    pub fn index(text: &str) -> Self {
        let mut indexer = Indexer::default();
        if Parser::new_from_str(text)
            .load(&mut indexer, false)
            .is_err()
        {
            return Self::default();
        }
        Self {
            paths: indexer.paths,
        }
    }

    /// The location of `path`, or of its nearest located ancestor.
    pub fn find(&self, path: &str) -> Option<Location> {
        let mut path = path;
        loop {
            if let Some(location) = self.paths.get(path) {
                return Some(*location);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

#[derive(Default)]
struct Indexer {
    stack: Vec<Frame>,
    paths: HashMap<String, Location>,
}

impl Indexer {
    fn record(&mut self, path: &str, mark: Marker) {
        // yaml-rust2 counts lines from 1 and columns from 0.
        let location = Location {
            line: mark.line(),
            column: mark.col() + 1,
        };
        self.paths.entry(path.to_owned()).or_insert(location);
    }

    /// The path of the node that this event starts, or `None` when the event is a mapping key.
    fn node_path(&mut self, event: &Event, mark: Marker) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, next }) => {
                let child = format!("{path}[{next}]");
                *next += 1;
                self.record(&child, mark);
                Some(child)
            }
            Some(Frame::Map { path, key }) => match key.take() {
                Some(key) => Some(join(path, &key)),
                None => {
                    if let Event::Scalar(name, ..) = event {
                        let child = join(path, name);
                        *key = Some(name.clone());
                        self.record(&child, mark);
                    }
                    None
                }
            },
        }
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

impl MarkedEventReceiver for Indexer {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::MappingStart(..) | Event::SequenceStart(..) | Event::Scalar(..) => {
                let Some(path) = self.node_path(&event, mark) else {
                    return;
                };
                match event {
                    Event::MappingStart(..) => self.stack.push(Frame::Map { path, key: None }),
                    Event::SequenceStart(..) => self.stack.push(Frame::Seq { path, next: 0 }),
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_block_and_flow_paths() {
        let text = "name: x\nexperiments:\n  - name: a\n    grid: { d_model: [64, 128] }\n";
        let index = Locations::index(text);
        assert_eq!(index.find("name"), Some(Location { line: 1, column: 1 }));
        assert_eq!(
            index.find("experiments[0].name"),
            Some(Location { line: 3, column: 5 })
        );
        assert_eq!(
            index.find("experiments[0].grid.d_model"),
            Some(Location {
                line: 4,
                column: 13
            })
        );
        assert_eq!(
            index.find("experiments[0].grid.d_model[1]"),
            Some(Location {
                line: 4,
                column: 27
            })
        );
        // Unknown paths fall back to their nearest ancestor.
        assert_eq!(
            index.find("experiments[0].grid.batch"),
            index.find("experiments[0].grid")
        );
    }
}
