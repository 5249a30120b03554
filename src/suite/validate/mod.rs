//! Checks a deserialised suite for values that parse but cannot run. Every problem is collected,
//! so one `mvt validate` shows them all. One file per part of a suite: its header, the model
//! entries, the experiments (recall's own fields apart), the plots; claims are checked in
//! `claim.rs`, beside their schema. After expansion, `memory` warns of runs that will not fit.

mod checker;
mod experiments;
mod header;
mod machine;
mod memory;
mod models;
mod plots;
mod recall;

pub(super) use checker::{is_file_name, Checker};
pub use machine::Machine;
pub(super) use memory::memory_warnings;

use super::error::Issue;
use super::locate::Locations;
use super::schema::Suite;

pub fn check(suite: &Suite, locations: &Locations, machine: Machine) -> Vec<Issue> {
    let mut c = Checker::new(locations);
    let device = header::check_header(&mut c, suite, machine);
    for (name, entry) in &suite.models {
        models::check_model(&mut c, name, entry);
    }
    if let Some(device) = device {
        header::check_scans(&mut c, suite, device);
    }
    experiments::check_experiments(&mut c, suite);
    plots::check_plots(&mut c, suite);
    super::claim::check_claims(&mut c, suite);
    c.into_issues()
}
