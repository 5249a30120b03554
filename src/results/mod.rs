//! Result rows, the results folder, and its manifest.

pub mod curves;
pub mod folder;
pub mod manifest;
pub mod mechanism;
pub mod row;
pub mod run_specs;
pub mod store;

pub use folder::ResultsFolder;
pub use manifest::Manifest;
pub use row::{runs_in, Row, Status};
