//! mamba-vs-transformer: measures Mamba (S6) against a Transformer with fused attention on the
//! same hardware and the same work. The `mvt` binary is a thin shell over this library.
//!
//! # Layers
//!
//! Imports point down this table, never up, and never in a circle. A module may use any
//! module of a lower layer, and one of its own layer only where that other one does not use
//! it back. `tests/layering.rs` reads `src/` and fails on an upward import or a cycle, so keep
//! this table and the code in step.
//!
//! | layer | modules | what they are |
//! | --- | --- | --- |
//! | 0 | `atomic_file` `device` `environment` `panics` `rng` `slices` `tolerance` `torch_ext` | foundations: devices, provenance, the libtorch shim |
//! | 1 | `scan` `causal_conv` `ssd` | kernels and their reference twins |
//! | 2 | `models` `tasks` | the model families; the recall-task generators |
//! | 3 | `train` | training and evaluation on a task |
//! | 4 | `spec` | what a run is: run specs, passes, dtypes (the domain types) |
//! | 5 | `measure` | timing, memory, the analytic FLOP model of a run spec |
//! | 6 | `suite` | the YAML front end: schema, claims as written, validation, grid expansion |
//! | 7 | `results` | rows, manifests, run specs and curves of a results folder |
//! | 8 | `analysis` | device fits and crossovers over rows |
//! | 9 | `claims` `plots` | verdicts and charts |
//! | 10 | `report` | `report.md` and `report.html` |
//! | 11 | `runner` `selfcheck` | orchestration: sweeps, worker processes, merges; the self-check |
//! <!-- layering: the test reads the table above; keep one row per layer -->

pub mod analysis;
pub mod atomic_file;
pub mod causal_conv;
pub mod claims;
pub mod device;
pub mod environment;
pub mod measure;
pub mod models;
pub mod panics;
pub mod plots;
pub mod report;
pub mod results;
pub mod rng;
pub mod runner;
pub mod scan;
pub mod selfcheck;
pub mod slices;
pub mod spec;
pub mod ssd;
pub mod suite;
pub mod tasks;
pub mod tolerance;
pub mod torch_ext;
pub mod train;
