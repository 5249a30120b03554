//! The parent side of a paired comparison point. Its runs are timed together in one worker
//! process at a time, `processes` times, each process in a later pass over the sweep than
//! the one before and with its share of the point's `max_time_s` and its own order of rounds;
//! after the last, the processes' rounds are combined
//! ([`crate::measure::ratio::ratio_of_processes`]). On a shared machine the ratio at a point
//! is not fixed: a process now and then runs one model 2–3× slower throughout while the other
//! model is unaffected, and every round of it agrees (a point of `crossover_cpu` measured 0.13
//! in one sweep and 0.34 in another, each ±4%). Processes spread over the sweep see the
//! machine at different times and with different memory, and their median, with an interval
//! that holds their spread, is what a second sweep reproduces.
//!
//! A finished process's outcomes are kept in the sweep's work folder until the point's rows
//! are saved, so that a resumed sweep goes on from its last finished process. If any process
//! dies or runs out of time, the point's finished processes are set aside and each run is
//! measured again in a process of its own, so that each gets its own row and status, and the
//! rows say so.

use super::execute::{failure, Measurement, Outcome, PairedStats};
use super::progress::Progress;
use super::{isolate, run_one, Measured, Options, RunError};
use crate::measure::paired::Stop;
use crate::measure::ratio::{ratio_of_processes, round_ratios, RatioEstimate};
use crate::measure::timing::{summarize, Timing};
use crate::results::store::write_atomic;
use crate::spec::RunSpec;
use crate::suite::Plan;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where a sweep's work folder keeps the finished processes of points not yet saved.
const PROCESSES_DIR: &str = "processes";

/// The worker processes a unit of the plan is timed in (one for a run timed alone).
pub fn processes_of(unit: &[RunSpec]) -> usize {
    match unit {
        [_, _, ..] => unit[0].paired.as_ref().map_or(1, |p| p.processes.max(1)),
        _ => 1,
    }
}

/// Forgets every finished process kept in `work_dir`: for a sweep that does not resume, and
/// once a sweep has saved every point.
pub fn forget_processes(work_dir: &Path) {
    let _ = std::fs::remove_dir_all(work_dir.join(PROCESSES_DIR));
}

/// Forgets the kept processes of the point `unit`, once its rows are saved.
pub fn forget_point(work_dir: &Path, unit: &[RunSpec]) {
    for process in 0..processes_of(unit) {
        let _ = std::fs::remove_file(kept_process(work_dir, unit, process));
    }
}

/// One finished process of a point, as kept between passes.
#[derive(Serialize, Deserialize)]
struct FinishedProcess {
    /// The point's runs, in the order of `outcomes`: a kept file whose runs differ (the suite
    /// changed before a resume) is not this point's.
    run_ids: Vec<String>,
    wall_s: f64,
    outcomes: Vec<Outcome>,
}

/// Times process `process` of the paired point `unit`, unless an earlier, resumed sweep did;
/// after its last process, every run's combined outcome and the wall time of all its
/// processes. `None` while processes remain. The caller forgets the point's kept processes
/// ([`forget_point`]) once it has saved the rows.
pub fn measure_process<'a>(
    plan: &Plan,
    options: &Options,
    work_dir: &Path,
    progress: &mut Progress,
    unit: &'a [RunSpec],
    process: usize,
) -> Result<Option<Vec<Measured<'a>>>, RunError> {
    let first = &unit[0];
    let processes = processes_of(unit);
    if read_process(work_dir, unit, process).is_none() {
        progress.begin(first);
        let start = std::time::Instant::now();
        let timeout_s = plan.suite.timeout_s(&first.experiment) * unit.len() as f64;
        let specs = process_share(unit, process);
        let measured =
            isolate::run_point(&specs, &options.worker, work_dir, timeout_s, &mut |line| {
                progress.update(first, line)
            });
        match measured {
            Ok(outcomes) => {
                let finished = FinishedProcess {
                    run_ids: unit.iter().map(|s| s.run_id.clone()).collect(),
                    wall_s: start.elapsed().as_secs_f64(),
                    outcomes,
                };
                keep(work_dir, unit, process, &finished)?;
                progress.process_done(first, process, processes);
            }
            Err(why) => {
                let why = if processes > 1 {
                    format!("(the {} of {processes}) {why}", ordinal(process))
                } else {
                    why
                };
                return measure_alone(plan, options, work_dir, progress, unit, &why).map(Some);
            }
        }
    }
    if process + 1 < processes {
        return Ok(None);
    }
    // Every process kept; one lost from the work folder meanwhile is simply not combined.
    let finished: Vec<FinishedProcess> = (0..processes)
        .filter_map(|k| read_process(work_dir, unit, k))
        .collect();
    let wall_s: f64 = finished.iter().map(|f| f.wall_s).sum();
    let per_process: Vec<Vec<Outcome>> = finished.into_iter().map(|f| f.outcomes).collect();
    Ok(Some(
        unit.iter()
            .zip(combine(unit, &per_process))
            .map(|(spec, outcome)| (spec, (outcome, wall_s)))
            .collect(),
    ))
}

/// `first`, `second`, ... for process numbers from 0.
fn ordinal(process: usize) -> String {
    match process {
        0 => "first".into(),
        1 => "second".into(),
        2 => "third".into(),
        k => format!("{}th", k + 1),
    }
}

/// Where process `process` of the point `unit` is kept once finished.
fn kept_process(work_dir: &Path, unit: &[RunSpec], process: usize) -> PathBuf {
    work_dir
        .join(PROCESSES_DIR)
        .join(format!("{}.process{process}.json", unit[0].run_id))
}

fn keep(
    work_dir: &Path,
    unit: &[RunSpec],
    process: usize,
    finished: &FinishedProcess,
) -> Result<(), RunError> {
    let path = kept_process(work_dir, unit, process);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| RunError::Folder {
            path: dir.to_owned(),
            source,
        })?;
    }
    let json = serde_json::to_vec(finished).expect("outcomes serialise");
    Ok(write_atomic(&path, &json)?)
}

/// Process `process` of the point `unit`, if it is kept, whole, and of this point's runs (an
/// unreadable or foreign file counts as never finished).
fn read_process(work_dir: &Path, unit: &[RunSpec], process: usize) -> Option<FinishedProcess> {
    let bytes = std::fs::read(kept_process(work_dir, unit, process)).ok()?;
    let finished: FinishedProcess = serde_json::from_slice(&bytes).ok()?;
    let same_runs = finished.run_ids.iter().eq(unit.iter().map(|s| &s.run_id));
    (same_runs && finished.outcomes.len() == unit.len()).then_some(finished)
}

/// The point's specs as process `process` of its processes measures them: with its share of
/// the point's time for rounds, and its own order of rounds.
fn process_share(unit: &[RunSpec], process: usize) -> Vec<RunSpec> {
    unit.iter()
        .cloned()
        .map(|mut spec| {
            if let Some(pairing) = spec.paired.as_mut() {
                pairing.max_time_s /= pairing.processes.max(1) as f64;
                pairing.process = process;
            }
            spec
        })
        .collect()
}

/// Each run of `unit` measured in a process of its own after the point's process `why`.
fn measure_alone<'a>(
    plan: &Plan,
    options: &Options,
    work_dir: &Path,
    progress: &mut Progress,
    unit: &'a [RunSpec],
    why: &str,
) -> Result<Vec<Measured<'a>>, RunError> {
    let mut measured = Vec::new();
    for spec in unit {
        let (outcome, wall_s) = run_one(plan, options, work_dir, progress, spec)?;
        measured.push((spec, (unpaired(outcome, why), wall_s)));
    }
    Ok(measured)
}

/// The outcome of a run measured alone after its paired point's process `why`.
fn unpaired(outcome: Outcome, why: &str) -> Outcome {
    let note = format!("measured unpaired: the paired point's process {why}");
    match outcome {
        Outcome::Failed { status, message } => Outcome::Failed {
            status,
            message: format!("{message} ({note})"),
        },
        Outcome::Measured(mut m) => {
            m.note = Some(note);
            Outcome::Measured(m)
        }
        other => other,
    }
}

/// One outcome per run of `unit` from the outcomes every process gave (`per_process[k][i]`
/// is process k's of run i). A run that failed in any process fails, saying in which; a run
/// timed alone in some process (its point's only survivor there) keeps its first process's
/// timing; paired runs pool their rounds: per-call statistics over every round of every
/// process, and the ratio over the processes.
pub fn combine(unit: &[RunSpec], per_process: &[Vec<Outcome>]) -> Vec<Outcome> {
    let of_run = |i: usize| per_process.iter().filter_map(move |p| p.get(i));
    let mut combined: Vec<Outcome> = (0..unit.len())
        .map(|i| {
            let failed = of_run(i)
                .enumerate()
                .find(|(_, o)| !matches!(o, Outcome::Measured(_)));
            let paired: Option<Vec<&Measurement>> = of_run(i)
                .map(|o| match o {
                    Outcome::Measured(m) if m.pairing.is_some() => Some(m),
                    _ => None,
                })
                .collect();
            match (failed, paired) {
                (Some((k, failed)), _) => in_process(failed.clone(), k, per_process.len()),
                (None, Some(measured)) if !measured.is_empty() => {
                    Outcome::Measured(pooled(&measured, unit, per_process, i))
                }
                _ => of_run(i).next().cloned().map_or_else(
                    || failure("the point reported nothing for this run".into()),
                    without_rounds,
                ),
            }
        })
        .collect();
    let stop = point_stop(&combined, per_process, unit);
    for outcome in &mut combined {
        if let Outcome::Measured(Measurement {
            pairing: Some(stats),
            ..
        }) = outcome
        {
            stats.stopped_by = stop;
        }
    }
    combined
}

/// A failure in process `k` of `processes`, saying so when there were several.
fn in_process(outcome: Outcome, k: usize, processes: usize) -> Outcome {
    match outcome {
        Outcome::Failed { status, message } if processes > 1 => Outcome::Failed {
            status,
            message: format!("{message} (in the {} of {processes} processes)", ordinal(k)),
        },
        other => other,
    }
}

/// One process's outcome as a row keeps it: without the per-round times.
fn without_rounds(mut outcome: Outcome) -> Outcome {
    if let Outcome::Measured(Measurement {
        pairing: Some(stats),
        ..
    }) = &mut outcome
    {
        stats.round_times_s.clear();
    }
    outcome
}

/// Run `i`'s measurements (one per process) pooled into one.
fn pooled(
    measured: &[&Measurement],
    unit: &[RunSpec],
    per_process: &[Vec<Outcome>],
    i: usize,
) -> Measurement {
    let first = measured[0];
    let stats = first.pairing.as_ref().expect("paired measurements");
    let times: Vec<f64> = measured
        .iter()
        .flat_map(|m| {
            m.pairing
                .iter()
                .flat_map(|p| p.round_times_s.iter().copied())
        })
        .collect();
    // Each process calibrates its own calls per sample; the row gives their median.
    let mut calls: Vec<usize> = measured.iter().map(|m| m.timing.calls_per_sample).collect();
    calls.sort_unstable();
    let timing = if times.is_empty() {
        first.timing
    } else {
        Timing {
            calls_per_sample: calls[calls.len() / 2],
            ..summarize(&times)
        }
    };
    let is_baseline = unit[i].run_id == stats.paired_with;
    let ratio = (!is_baseline)
        .then(|| ratio_across(unit, per_process, i, &stats.paired_with))
        .flatten();
    Measurement {
        timing,
        pairing: Some(PairedStats {
            paired_with: stats.paired_with.clone(),
            ratio,
            rounds: measured
                .iter()
                .filter_map(|m| m.pairing.as_ref())
                .map(|p| p.rounds)
                .sum(),
            stopped_by: stats.stopped_by,
            // The processes the ratio rests on (a process of one round has none to give).
            processes: ratio.map_or(measured.len(), |r| r.processes),
            round_times_s: Vec::new(),
        }),
        ..first.clone()
    }
}

/// Run `i`'s ratio to `baseline_id` over every process that timed both against each other.
fn ratio_across(
    unit: &[RunSpec],
    per_process: &[Vec<Outcome>],
    i: usize,
    baseline_id: &str,
) -> Option<RatioEstimate> {
    let baseline = unit.iter().position(|s| s.run_id == baseline_id)?;
    let times = |outcome: &Outcome, paired_with: Option<&str>| match outcome {
        Outcome::Measured(Measurement {
            pairing: Some(p), ..
        }) if paired_with.is_none_or(|id| p.paired_with == id) => Some(p.round_times_s.clone()),
        _ => None,
    };
    let ratios: Vec<Vec<f64>> = per_process
        .iter()
        .filter_map(|p| {
            let model = times(p.get(i)?, Some(baseline_id))?;
            let base = times(p.get(baseline)?, None)?;
            round_ratios(&model, &base)
        })
        .collect();
    ratio_of_processes(&ratios, unit[i].seed)
}

/// How a point's rounds ended, all processes together: converged if every process converged
/// and every ratio's combined interval is within the target; else the first limit any
/// process hit (`max_time`, `max_rounds`); else the processes converged one by one but
/// together are wider than the target (`process_spread`).
fn point_stop(combined: &[Outcome], per_process: &[Vec<Outcome>], unit: &[RunSpec]) -> Stop {
    let target = unit
        .first()
        .and_then(|s| s.paired.as_ref())
        .map_or(0.0, |p| p.target_rel_ci);
    let process_stops: Vec<Stop> = per_process
        .iter()
        .flatten()
        .filter_map(|o| match o {
            Outcome::Measured(m) => Some(m.pairing.as_ref()?.stopped_by),
            _ => None,
        })
        .collect();
    if let Some(limit) = [Stop::MaxTime, Stop::MaxRounds]
        .into_iter()
        .find(|limit| process_stops.contains(limit))
    {
        return limit;
    }
    let within_target = combined
        .iter()
        .filter_map(|o| match o {
            Outcome::Measured(m) => m.pairing.as_ref()?.ratio,
            _ => None,
        })
        .all(|r| r.relative_half_width() <= target);
    if within_target {
        Stop::Converged
    } else {
        Stop::ProcessSpread
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::{Machine, Plan};

    /// The two runs of one paired point: Mamba, then its Transformer baseline.
    fn point() -> Vec<RunSpec> {
        let text = "\
name: s
device: cpu
models:
  m: { family: mamba, d_state: 2, d_conv: 4, expand: 2 }
  t: { family: transformer, head_dim: 8, mlp_ratio: 2 }
experiments:
  - { name: e, kind: speed, pass: forward, component: mixer, models: [m, t], grid: { d_model: [8], seq_len: [4] } }
";
        let runs = Plan::parse(text, Machine::cpu_only(2)).expect("valid").runs;
        assert_eq!(runs.len(), 2);
        runs
    }

    /// One process's outcome for a run: its per-round times and how its rounds stopped.
    fn measured(spec: &RunSpec, baseline: &RunSpec, times: Vec<f64>, stop: Stop) -> Outcome {
        let baseline_itself = spec.run_id == baseline.run_id;
        Outcome::Measured(Measurement {
            timing: summarize(&times),
            memory: None,
            tokens_per_call: 4,
            threads: 2,
            pairing: Some(PairedStats {
                paired_with: baseline.run_id.clone(),
                ratio: (!baseline_itself).then_some(RatioEstimate {
                    median: 1.0,
                    ci_low: 1.0,
                    ci_high: 1.0,
                    rounds: times.len(),
                    processes: 1,
                }),
                rounds: times.len(),
                stopped_by: stop,
                processes: 1,
                round_times_s: times,
            }),
            note: None,
        })
    }

    /// Ten rounds a process, the baseline at 1 ms, Mamba at `level` times that.
    fn process(unit: &[RunSpec], level: f64) -> Vec<Outcome> {
        let base: Vec<f64> = (0..10).map(|i| 1e-3 * (1.0 + 0.001 * i as f64)).collect();
        let model = base.iter().map(|t| t * level).collect();
        vec![
            measured(&unit[0], &unit[1], model, Stop::Converged),
            measured(&unit[1], &unit[1], base, Stop::Converged),
        ]
    }

    fn stats(outcome: &Outcome) -> (&Measurement, &PairedStats) {
        match outcome {
            Outcome::Measured(m) => (m, m.pairing.as_ref().expect("paired")),
            other => panic!("not measured: {other:?}"),
        }
    }

    #[test]
    fn processes_combine_into_their_median_with_the_spread_in_the_interval() {
        let unit = point();
        let processes = vec![
            process(&unit, 1.0),
            process(&unit, 1.02),
            process(&unit, 2.7),
        ];
        let combined = combine(&unit, &processes);
        let (model, mamba) = stats(&combined[0]);
        let ratio = mamba.ratio.expect("Mamba's ratio");
        assert!((ratio.median - 1.02).abs() < 1e-9, "{ratio:?}");
        assert!(ratio.ci_high > 2.0, "the odd process is in the interval");
        assert_eq!((mamba.processes, mamba.rounds, ratio.processes), (3, 30, 3));
        assert_eq!(
            model.timing.samples, 30,
            "per-call statistics pool every round"
        );
        assert!(
            mamba.round_times_s.is_empty(),
            "the rounds are not kept in rows"
        );
        // Each process converged on its own; together they disagree.
        assert_eq!(mamba.stopped_by, Stop::ProcessSpread);
        let (_, baseline) = stats(&combined[1]);
        assert_eq!(
            (baseline.ratio, baseline.stopped_by),
            (None, Stop::ProcessSpread)
        );

        let agreeing = vec![process(&unit, 0.5), process(&unit, 0.5)];
        let combined = combine(&unit, &agreeing);
        let (_, mamba) = stats(&combined[0]);
        assert_eq!(mamba.stopped_by, Stop::Converged);
        assert!((mamba.ratio.expect("ratio").median - 0.5).abs() < 1e-9);
    }

    #[test]
    fn a_model_that_failed_in_any_process_keeps_its_failure() {
        let unit = point();
        let mut processes = vec![process(&unit, 1.0), process(&unit, 1.0)];
        processes[1][0] = failure("out of memory".into());
        let combined = combine(&unit, &processes);
        assert!(
            matches!(&combined[0], Outcome::Failed { message, .. }
                if message == "out of memory (in the second of 2 processes)"),
            "{:?}",
            combined[0]
        );
        let (_, baseline) = stats(&combined[1]);
        assert_eq!(
            baseline.processes, 2,
            "the baseline still has both processes"
        );
    }

    #[test]
    fn each_process_gets_its_share_of_the_time_and_its_own_number() {
        let unit = point();
        let total = unit[0].paired.as_ref().expect("paired").max_time_s;
        let share = process_share(&unit, 2);
        let pairing = share[0].paired.as_ref().expect("paired");
        assert_eq!(pairing.process, 2);
        assert!((pairing.max_time_s * pairing.processes as f64 - total).abs() < 1e-12);
        assert_eq!(processes_of(&unit), pairing.processes);
        assert_eq!(processes_of(&unit[..1]), 1, "a run alone is one process");
    }
}
