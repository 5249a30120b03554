//! `mvt report`: one readable report per study, `report.md` and a self-contained `report.html`
//! (charts inlined as SVG, so it opens offline): the suite's question and provenance, a table
//! of claims and verdicts, a section per experiment with its charts and a compact table, and
//! every run that failed.

mod html;
mod markdown;

use crate::analysis;
use crate::claims::{judge, Judgement};
use crate::results::folder::FolderError;
use crate::results::store::{write_atomic, StoreError};
use crate::results::{Manifest, ResultsFolder, Row, Status};
use crate::spec::ExperimentKind;
use crate::suite::schema::Experiment;
use std::path::{Path, PathBuf};

pub const MARKDOWN_FILE: &str = "report.md";
pub const HTML_FILE: &str = "report.html";

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    NotResults(#[from] FolderError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot create `{}`: {source}", path.display())]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Everything a report shows, gathered from one or more results folders.
pub struct Report {
    pub title: String,
    pub descriptions: Vec<String>,
    /// (label, value) lines: device, versions, commit, dates, per source folder.
    pub provenance: Vec<(String, String)>,
    pub judgements: Vec<Judgement>,
    pub sections: Vec<Section>,
    /// Runs that did not end `ok`.
    pub failures: Vec<FailedRun>,
}

/// A run that did not end `ok`, and what its row says of why.
pub struct FailedRun {
    pub experiment: String,
    pub run_id: String,
    pub status: Status,
    pub message: String,
}

/// One experiment: its charts and a compact table.
pub struct Section {
    pub experiment: String,
    pub kind: ExperimentKind,
    /// SVG files, and where they were found.
    pub charts: Vec<PathBuf>,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// The claim ids this experiment judges.
    pub claims: Vec<String>,
}

/// Gathers the report of results folders `dirs`.
pub fn gather(dirs: &[PathBuf]) -> Result<Report, ReportError> {
    let mut report = Report {
        title: String::new(),
        descriptions: Vec::new(),
        provenance: Vec::new(),
        judgements: Vec::new(),
        sections: Vec::new(),
        failures: Vec::new(),
    };
    let mut titles = Vec::new();
    for dir in dirs {
        let ResultsFolder {
            manifest,
            mut rows,
            runs,
            ..
        } = ResultsFolder::open(dir)?;
        let crossovers = analysis::analyze(&mut rows, &runs);
        titles.push(manifest.suite.clone());
        report
            .descriptions
            .push(manifest.description.trim().to_owned());
        report.provenance.extend(provenance(&manifest, dir));
        for claim in &manifest.resolved_suite.claims {
            report.judgements.push(judge(claim, &rows, &crossovers));
        }
        for exp in &manifest.resolved_suite.experiments {
            report.sections.push(section(dir, exp, &rows, &manifest));
        }
        report.failures.extend(
            rows.iter()
                .filter(|r| r.status != Status::Ok)
                .map(|r| FailedRun {
                    experiment: r.experiment.clone(),
                    run_id: r.run_id.clone(),
                    status: r.status,
                    message: r.message.clone().unwrap_or_default(),
                }),
        );
    }
    report.title = titles.join(" + ");
    Ok(report)
}

fn provenance(m: &Manifest, dir: &Path) -> Vec<(String, String)> {
    let env = &m.environment;
    let device = match env.gpu_names.first() {
        Some(gpu) if m.device.is_cuda() => format!("{} ({gpu})", m.device),
        _ => format!("{} ({}, {} threads)", m.device, env.cpu_model, m.threads),
    };
    let commit = match (&m.git_commit, m.git_dirty) {
        (Some(c), Some(true)) => format!("{c} (uncommitted changes)"),
        (Some(c), _) => c.clone(),
        (None, _) => "unknown".to_owned(),
    };
    vec![
        (format!("{} results", m.suite), dir.display().to_string()),
        ("device".into(), device),
        (
            "versions".into(),
            format!(
                "mvt {}, tch {}, libtorch {}, CUDA {}",
                env.mvt_version,
                env.tch_version,
                env.libtorch_version.clone().unwrap_or_else(|| "?".into()),
                env.libtorch_cuda.clone().unwrap_or_else(|| "none".into())
            ),
        ),
        ("commit".into(), commit),
        (
            "ran".into(),
            format!(
                "{} to {}, {} of {} runs, dtype {}, seed {}",
                m.started_at,
                m.finished_at
                    .clone()
                    .unwrap_or_else(|| "(unfinished)".into()),
                m.runs_finished,
                m.runs_planned,
                m.dtype.name(),
                m.seed
            ),
        ),
    ]
}

fn section(dir: &Path, exp: &Experiment, rows: &[Row], m: &Manifest) -> Section {
    let mine: Vec<&Row> = rows.iter().filter(|r| r.experiment == exp.name).collect();
    let mut charts: Vec<PathBuf> = m
        .resolved_suite
        .plots
        .iter()
        .filter(|p| p.experiments().first() == Some(&exp.name))
        .map(|p| dir.join("plots").join(format!("{}.svg", p.stem())))
        .filter(|path| path.is_file())
        .collect();
    charts.sort();
    let fmt = |v: Option<f64>, f: fn(f64) -> String| v.map(f).unwrap_or_else(|| "–".into());
    let (header, table): (Vec<&str>, Vec<Vec<String>>) = match exp.kind {
        ExperimentKind::Speed => (
            vec![
                "model",
                "d_model",
                "L",
                "batch",
                "status",
                "median",
                "p10–p90",
                "tokens/s",
                "peak memory",
            ],
            mine.iter()
                .map(|r| {
                    vec![
                        r.model.clone(),
                        r.d_model.to_string(),
                        r.seq_len.to_string(),
                        r.batch.to_string(),
                        r.status.name().to_owned(),
                        fmt(r.latency_median_s, crate::measure::timing::format_seconds),
                        match (r.latency_p10_s, r.latency_p90_s) {
                            (Some(a), Some(b)) => format!(
                                "{}–{}",
                                crate::measure::timing::format_seconds(a),
                                crate::measure::timing::format_seconds(b)
                            ),
                            _ => "–".into(),
                        },
                        fmt(r.tokens_per_s, |t| format!("{t:.0}")),
                        fmt(r.peak_mem_bytes.map(|b| b as f64), |b| {
                            format!("{:.1} MB", b / 1e6)
                        }),
                    ]
                })
                .collect(),
        ),
        ExperimentKind::Recall => (
            vec![
                "model", "d_model", "params", "lr", "train L", "eval L", "steps", "accuracy",
                "status",
            ],
            mine.iter()
                .map(|r| {
                    vec![
                        r.model.clone(),
                        r.d_model.to_string(),
                        r.params.to_string(),
                        fmt(r.lr, |l| format!("{l:e}")),
                        r.seq_len.to_string(),
                        r.eval_seq_len.map(|l| l.to_string()).unwrap_or_default(),
                        r.steps.map(|s| s.to_string()).unwrap_or_default(),
                        fmt(r.accuracy, |a| format!("{a:.3}")),
                        r.status.name().to_owned(),
                    ]
                })
                .collect(),
        ),
    };
    let claims = m
        .resolved_suite
        .claims
        .iter()
        .filter(|c| c.experiments.contains(&exp.name))
        .map(|c| c.id.clone())
        .collect();
    Section {
        experiment: exp.name.clone(),
        kind: exp.kind,
        charts,
        header: header.into_iter().map(str::to_owned).collect(),
        rows: table,
        claims,
    }
}

/// Writes `report.md` and `report.html` for `dirs` into `out`; returns the two files.
pub fn write(dirs: &[PathBuf], out: &Path) -> Result<Vec<PathBuf>, ReportError> {
    let report = gather(dirs)?;
    std::fs::create_dir_all(out).map_err(|source| ReportError::Folder {
        path: out.to_owned(),
        source,
    })?;
    let md = out.join(MARKDOWN_FILE);
    let page = out.join(HTML_FILE);
    write_atomic(&md, markdown::render(&report, out).as_bytes())?;
    write_atomic(&page, html::render(&report).as_bytes())?;
    Ok(vec![md, page])
}
