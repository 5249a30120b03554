//! Measurement: timing and its statistics.

pub mod timing;
