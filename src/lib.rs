//! mamba-vs-transformer: measures Mamba (S6) against a Transformer with fused attention on the
//! same hardware and the same work. The `mvt` binary is a thin shell over this library.

pub mod analysis;
pub mod causal_conv;
pub mod claims;
pub mod device;
pub mod environment;
pub mod measure;
pub mod models;
pub mod plots;
pub mod report;
pub mod results;
pub mod runner;
pub mod scan;
pub mod selfcheck;
pub mod slices;
pub mod suite;
pub mod tasks;
pub mod torch_ext;
pub mod train;
