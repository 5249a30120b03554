//! What the rows say together: the device's fitted throughput, and crossover lengths.

pub mod crossover;
pub mod fit;
