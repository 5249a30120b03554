//! Result rows, the results folder, and its manifest.

pub mod manifest;
pub mod row;
pub mod store;

pub use manifest::Manifest;
pub use row::{runs_in, Row, Status};
