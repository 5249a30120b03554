//! Measurement: timing and its statistics, paired timing of the models of one comparison point
//! and the ratio of their times, peak memory, and the analytic cost model the measurements are
//! set against.

pub mod analytic;
pub mod memory;
pub mod paired;
pub mod ratio;
pub mod timing;
