//! The results folder of one suite run. Every row is saved the moment it exists, atomically
//! (temporary file, then rename), so a crash or kill keeps every finished row.
//!
//! - `rows.jsonl`: the rows, one JSON object a line; the source of truth that `--resume` reads;
//! - `results.csv`, `results.parquet`: the same rows as a table, written through polars;
//! - `manifest.json`: provenance (see [`super::manifest`]);
//! - `plots/`: charts.

use super::row::Row;
use crate::scan::Kernel;
use polars::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot write `{}`: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read `{}`: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{}` line {line} is not {what}: {source}", path.display())]
    Corrupt {
        path: PathBuf,
        line: usize,
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("cannot build the results table: {0}")]
    Table(#[from] PolarsError),
}

pub const ROWS_FILE: &str = "rows.jsonl";
pub const CSV_FILE: &str = "results.csv";
pub const PARQUET_FILE: &str = "results.parquet";

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so that
/// readers see the old or the new file, never half of one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    crate::atomic_file::write(path, bytes).map_err(|source| StoreError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Rows saved in `dir`; none if the folder holds no results yet.
pub fn read_rows(dir: &Path) -> Result<Vec<Row>, StoreError> {
    Ok(read_jsonl(&dir.join(ROWS_FILE), "a result row")?.unwrap_or_default())
}

/// Saves all `rows` to `dir`: the JSON lines, then the CSV and Parquet tables.
pub fn write_rows(dir: &Path, rows: &[Row]) -> Result<(), StoreError> {
    write_jsonl(&dir.join(ROWS_FILE), rows)?;
    let mut frame = to_frame(rows)?;
    let mut csv = Vec::new();
    CsvWriter::new(&mut csv).finish(&mut frame)?;
    write_atomic(&dir.join(CSV_FILE), &csv)?;
    let mut parquet = Vec::new();
    ParquetWriter::new(&mut parquet).finish(&mut frame)?;
    write_atomic(&dir.join(PARQUET_FILE), &parquet)
}

/// The items of JSON-lines file `path`, each `what` (for the error); `None` if there is no
/// such file.
pub fn read_jsonl<T: DeserializeOwned>(
    path: &Path,
    what: &'static str,
) -> Result<Option<Vec<T>>, StoreError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StoreError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|source| StoreError::Corrupt {
                path: path.to_owned(),
                line: i + 1,
                what,
                source,
            })
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

/// Writes `items` to `path` as JSON lines, atomically.
pub fn write_jsonl<T: Serialize>(path: &Path, items: &[T]) -> Result<(), StoreError> {
    let mut jsonl = String::new();
    for item in items {
        jsonl.push_str(&serde_json::to_string(item).expect("records serialise"));
        jsonl.push('\n');
    }
    write_atomic(path, jsonl.as_bytes())
}

/// Reads the Parquet table of `dir`, the form charts and analysis work on.
pub fn read_frame(dir: &Path) -> Result<DataFrame, StoreError> {
    let path = dir.join(PARQUET_FILE);
    let file = fs::File::open(&path).map_err(|source| StoreError::Read { path, source })?;
    Ok(ParquetReader::new(file).finish()?)
}

/// The rows as a polars table, one column per [`Row`] field, in field order.
pub fn to_frame(rows: &[Row]) -> PolarsResult<DataFrame> {
    fn col<T>(name: &str, rows: &[Row], get: impl Fn(&Row) -> T) -> Column
    where
        Series: NamedFrom<Vec<T>, [T]>,
    {
        Column::new(name.into(), rows.iter().map(get).collect::<Vec<T>>())
    }
    let columns = vec![
        col("suite", rows, |r| r.suite.clone()),
        col("experiment", rows, |r| r.experiment.clone()),
        col("kind", rows, |r| r.kind.name().to_owned()),
        col("run_id", rows, |r| r.run_id.clone()),
        col("model", rows, |r| r.model.clone()),
        col("family", rows, |r| r.family.name().to_owned()),
        col("component", rows, |r| r.component.name().to_owned()),
        col("pass", rows, |r| r.pass.name().to_owned()),
        col("device", rows, |r| r.device.to_string()),
        col("dtype", rows, |r| r.dtype.name().to_owned()),
        col("batch", rows, |r| r.batch),
        col("seq_len", rows, |r| r.seq_len),
        col("d_model", rows, |r| r.d_model),
        col("n_layers", rows, |r| r.n_layers),
        col("d_state", rows, |r| r.d_state),
        col("headdim", rows, |r| r.headdim),
        col("ngroups", rows, |r| r.ngroups),
        col("pattern", rows, |r| r.pattern.clone()),
        col("params", rows, |r| r.params),
        col("matched_to", rows, |r| r.matched_to.clone()),
        col("new_tokens", rows, |r| r.new_tokens),
        col("scan", rows, |r| r.scan.map_or("", Kernel::name).to_owned()),
        col("threads", rows, |r| r.threads),
        col("status", rows, |r| r.status.name().to_owned()),
        col("latency_median_s", rows, |r| r.latency_median_s),
        col("latency_p10_s", rows, |r| r.latency_p10_s),
        col("latency_p90_s", rows, |r| r.latency_p90_s),
        col("latency_min_s", rows, |r| r.latency_min_s),
        col("latency_max_s", rows, |r| r.latency_max_s),
        col("samples", rows, |r| r.samples),
        col("outliers", rows, |r| r.outliers),
        col("calls_per_sample", rows, |r| r.calls_per_sample),
        col("paired_with", rows, |r| r.paired_with.clone()),
        col("ratio_median", rows, |r| r.ratio_median),
        col("ratio_ci_low", rows, |r| r.ratio_ci_low),
        col("ratio_ci_high", rows, |r| r.ratio_ci_high),
        col("rounds", rows, |r| r.rounds),
        col("stopped_by", rows, |r| {
            r.stopped_by.map(|s| s.name().to_owned())
        }),
        col("processes", rows, |r| r.processes),
        col("tokens_per_s", rows, |r| r.tokens_per_s),
        col("peak_mem_bytes", rows, |r| r.peak_mem_bytes),
        col("reserved_mem_bytes", rows, |r| r.reserved_mem_bytes),
        col("flops", rows, |r| r.flops),
        col("core_flops", rows, |r| r.core_flops),
        col("core_bytes", rows, |r| r.core_bytes),
        col("bytes_moved", rows, |r| r.bytes_moved),
        col("param_bytes", rows, |r| r.param_bytes),
        col("activation_bytes", rows, |r| r.activation_bytes),
        col("state_bytes", rows, |r| r.state_bytes),
        col("predicted_latency_s", rows, |r| r.predicted_latency_s),
        col("task", rows, |r| r.task.clone()),
        col("task_options", rows, |r| r.task_options.clone()),
        col("lr", rows, |r| r.lr),
        col("seed", rows, |r| r.seed),
        col("eval_seq_len", rows, |r| r.eval_seq_len),
        col("eval_mode", rows, |r| {
            r.eval_mode.map(|m| m.name().to_owned())
        }),
        col("steps", rows, |r| r.steps),
        col("steps_to_target", rows, |r| r.steps_to_target),
        col("final_loss", rows, |r| r.final_loss),
        col("accuracy", rows, |r| r.accuracy),
        col("accuracy_ci_low", rows, |r| r.accuracy_ci_low),
        col("accuracy_ci_high", rows, |r| r.accuracy_ci_high),
        col("accuracy_n", rows, |r| r.accuracy_n),
        col("chance_accuracy", rows, |r| r.chance_accuracy),
        col("wall_s", rows, |r| r.wall_s),
        col("message", rows, |r| r.message.clone()),
    ];
    DataFrame::new(rows.len(), columns)
}
