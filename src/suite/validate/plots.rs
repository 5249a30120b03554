//! Plots draw experiments that exist, of the kind the chart needs; only `accuracy_vs_width`
//! and `reach_vs_step` draw several.

use super::checker::Checker;
use crate::suite::schema::{OneOrMany, PlotKind, Suite};

pub(super) fn check_plots(c: &mut Checker, suite: &Suite) {
    for (i, plot) in suite.plots.iter().enumerate() {
        let names = plot.experiments();
        let at = |j: usize| match plot.experiment {
            OneOrMany::One(_) => format!("plots[{i}].experiment"),
            OneOrMany::Many(_) => format!("plots[{i}].experiment[{j}]"),
        };
        if names.is_empty() {
            c.fail(at(0), "the list is empty; name at least one experiment");
        }
        let takes_a_list = matches!(plot.kind, PlotKind::AccuracyVsWidth | PlotKind::ReachVsStep);
        if names.len() > 1 && !takes_a_list {
            c.fail(
                format!("plots[{i}].experiment"),
                format!(
                    "a {} plot draws one experiment; only accuracy_vs_width and reach_vs_step take a list",
                    plot.kind.name()
                ),
            );
        }
        for (j, name) in names.iter().enumerate() {
            match suite.experiments.iter().find(|e| e.name == *name) {
                None => {
                    let known: Vec<&str> =
                        suite.experiments.iter().map(|e| e.name.as_str()).collect();
                    c.fail(
                        at(j),
                        format!(
                            "unknown experiment `{name}`; expected one of: {}",
                            known.join(", ")
                        ),
                    );
                }
                Some(exp) if exp.kind != plot.kind.experiment_kind() => {
                    c.fail(
                        at(j),
                        format!(
                            "a {} plot needs a {} experiment, and `{}` is {}",
                            plot.kind.name(),
                            plot.kind.experiment_kind().name(),
                            exp.name,
                            exp.kind.name()
                        ),
                    );
                }
                Some(exp) if plot.kind == PlotKind::MemoryVsSeqLen && exp.is_paired() => {
                    c.fail(
                        at(j),
                        format!(
                            "`{}` is paired, and a paired point measures time only: peak memory is a whole process's, so models sharing one would spoil each other's; set `paired: false` on the experiment",
                            exp.name
                        ),
                    );
                }
                Some(exp) if plot.kind == PlotKind::RatioVsSeqLen && exp.models.len() < 2 => {
                    c.fail(
                        at(j),
                        format!(
                            "a ratio_vs_seq_len plot divides one model's time by another's, and `{}` has {} model; name two or more in it",
                            exp.name,
                            exp.models.len()
                        ),
                    );
                }
                Some(_) => {}
            }
        }
    }
}
