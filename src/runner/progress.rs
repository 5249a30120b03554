//! Progress over a sweep: an indicatif bar with ETA on a terminal, plain lines otherwise (CI
//! logs and pipes get one readable line per run instead of escape codes).

use crate::measure::timing::format_seconds;
use crate::results::manifest::ReuseRecord;
use crate::results::Row;
use crate::spec::RunSpec;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

pub struct Progress {
    bar: Option<ProgressBar>,
    total: usize,
    done: usize,
}

/// `block-forward mamba d=64 L=128 b=1`
pub fn describe(spec: &RunSpec) -> String {
    format!(
        "{} {} d={} L={} b={}",
        spec.experiment,
        spec.model,
        spec.config.d_model(),
        spec.seq_len,
        spec.batch
    )
}

/// Says which folders `--reuse` adopted runs from, before the sweep's progress begins.
pub fn adopted(records: &[ReuseRecord]) {
    for record in records {
        let commit = match record.git_commit.as_deref() {
            Some(hash) => format!("commit {}", hash.get(..10).unwrap_or(hash)),
            None => "unknown commit".to_owned(),
        };
        eprintln!(
            "adopted {} run(s) from {} ({commit}{})",
            record.runs.len(),
            record.folder,
            if record.git_dirty == Some(true) {
                ", dirty"
            } else {
                ""
            }
        );
    }
}

impl Progress {
    /// `done` runs of `total` were finished before (by an earlier, resumed sweep).
    pub fn new(total: usize, done: usize) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} ETA {eta} {msg}",
                )
                .expect("the template is valid"),
            );
            bar.set_position(done as u64);
            bar
        });
        if bar.is_none() && done > 0 {
            eprintln!("resuming: {done} of {total} runs already finished");
        }
        Self { bar, total, done }
    }

    pub fn begin(&self, spec: &RunSpec) {
        if let Some(bar) = &self.bar {
            bar.set_message(describe(spec));
        }
    }

    /// Pass `pass` (from 0) of `passes` over the plan begins: a paired point's rows come
    /// with its last process, in the last pass that times it.
    pub fn pass(&self, pass: usize, passes: usize) {
        let line = format!(
            "pass {} of {passes} over the plan (each paired point is timed once a pass)",
            pass + 1
        );
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// Process `process` (from 0) of `processes` of the point whose first run is `spec` is
    /// done: a plain line without a terminal, so that a log shows the passes move.
    pub fn process_done(&self, spec: &RunSpec, process: usize, processes: usize) {
        let line = format!(
            "{}: process {} of {processes} done",
            describe(spec),
            process + 1
        );
        match &self.bar {
            Some(bar) => bar.set_message(line),
            None => eprintln!("    {line}"),
        }
    }

    /// A line of progress from inside a long run (training loss and accuracy).
    pub fn update(&self, spec: &RunSpec, line: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(format!("{}: {line}", describe(spec))),
            None => eprintln!("    {}: {line}", describe(spec)),
        }
    }

    pub fn end(&mut self, spec: &RunSpec, rows: &[Row]) {
        self.done += 1;
        let outcome = rows
            .iter()
            .map(
                |row| match (row.latency_median_s, row.accuracy, &row.message) {
                    (Some(median), _, _) => format!("ok, median {}", format_seconds(median)),
                    (None, Some(acc), _) => format!(
                        "accuracy {:.3} at L={}",
                        acc,
                        row.eval_seq_len.unwrap_or(row.seq_len)
                    ),
                    (None, None, Some(message)) => {
                        format!("{}: {}", row.status.name(), first_line(message))
                    }
                    (None, None, None) => row.status.name().to_owned(),
                },
            )
            .collect::<Vec<_>>()
            .join("; ");
        let line = format!(
            "[{}/{}] {}: {outcome}",
            self.done,
            self.total,
            describe(spec)
        );
        match &self.bar {
            Some(bar) => {
                bar.println(line);
                bar.inc(1);
            }
            None => eprintln!("{line}"),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}
