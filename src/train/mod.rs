//! Training a language model on a recall task, and measuring what it recalls.

pub mod eval;
pub mod schedule;
pub mod trainer;
