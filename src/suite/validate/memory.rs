//! Runs that the analytic model predicts will not fit in the machine's memory. These are
//! warnings, not errors: an out-of-memory failure is a result row like any other (and the
//! memory chart wants it), but a user who typed one digit too many should hear of it before
//! the sweep, not after.

use super::machine::Machine;
use crate::measure::analytic;
use crate::spec::RunSpec;
use crate::suite::error::Issue;
use crate::suite::locate::Locations;
use crate::suite::schema::Suite;

/// A warning for each experiment with CPU runs predicted to need more than the machine's
/// memory: the run itself when there is one, else how many and the largest.
pub(in crate::suite) fn memory_warnings(
    suite: &Suite,
    runs: &[RunSpec],
    machine: Machine,
    locations: &Locations,
) -> Vec<Issue> {
    let Some(memory) = machine.memory_bytes else {
        return Vec::new();
    };
    let limit = memory as f64;
    let mut warnings = Vec::new();
    for (i, exp) in suite.experiments.iter().enumerate() {
        let over: Vec<(&RunSpec, f64)> = runs
            .iter()
            .filter(|run| run.experiment == exp.name && !run.device.is_cuda())
            .map(|run| (run, analytic::peak_bytes_at_least(run)))
            .filter(|(_, peak)| *peak > limit)
            .collect();
        let Some(&(largest, peak)) = over.iter().max_by(|a, b| a.1.total_cmp(&b.1)) else {
            continue;
        };
        let (memory, peak) = (format_bytes(limit), format_bytes(peak));
        let message = match over.len() {
            1 => format!(
                "experiment `{}`: `{}` at {} is predicted to need at least {peak}, more than this machine's {memory} of memory; the run will likely end as an `oom` row",
                exp.name,
                largest.model,
                shape(largest)
            ),
            n => format!(
                "experiment `{}`: {n} runs are predicted to need more than this machine's {memory} of memory, the largest (`{}` at {}) at least {peak}; they will likely end as `oom` rows",
                exp.name,
                largest.model,
                shape(largest)
            ),
        };
        let path = format!("experiments[{i}].grid");
        warnings.push(Issue {
            location: locations.find(&path),
            path,
            message,
        });
    }
    warnings
}

/// How a warning names a run's size.
fn shape(spec: &RunSpec) -> String {
    let mut shape = format!(
        "d_model {}, seq_len {}, batch {}",
        spec.config.d_model(),
        spec.seq_len,
        spec.batch
    );
    if spec.component.has_depth() {
        shape += &format!(", {} layer(s)", spec.config.n_layers());
    }
    shape
}

/// Bytes in decimal units, as the memory charts give them: `4.4 TB`.
fn format_bytes(bytes: f64) -> String {
    const UNITS: [&str; 6] = ["kB", "MB", "GB", "TB", "PB", "EB"];
    if bytes < 1e3 {
        return format!("{bytes:.0} B");
    }
    let mut value = bytes / 1e3;
    let mut unit = 0;
    while value >= 1e3 && unit + 1 < UNITS.len() {
        value /= 1e3;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}
