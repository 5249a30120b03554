//! Measurement: timing and its statistics, peak memory, and the analytic cost model the
//! measurements are set against.

pub mod analytic;
pub mod memory;
pub mod timing;
