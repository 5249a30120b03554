//! Measurement: timing and its statistics.

pub mod memory;
pub mod timing;
