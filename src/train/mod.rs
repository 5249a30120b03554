//! Training a language model on a recall task, and measuring what it recalls.

pub mod checkpoint;
pub mod eval;
pub mod mechanism;
pub mod optimizer;
pub mod schedule;
pub mod trainer;
