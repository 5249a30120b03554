//! `mvt mechanism DIR`: every trained Mamba of a results folder (its `weights/`) probed for
//! the Δ that sets its memory (`train::mechanism`), written as `mechanism.csv` beside its
//! rows, one line per run and layer, with the reach each run measured, so that the two can be
//! read side by side.

use super::WEIGHTS_DIR;
use crate::analysis::reach::final_reach;
use crate::models::lm::LanguageModel;
use crate::models::Family;
use crate::plots::mechanism::half_life_vs_reach;
use crate::plots::{draw_panels, PlotError, PLOTS_DIR};
use crate::results::folder::ResultsFolder;
use crate::results::mechanism::{mechanism_csv, MechanismRow, MECHANISM_FILE};
use crate::results::store::{write_atomic, StoreError};
use crate::results::Row;
use crate::spec::RunSpec;
use crate::train::mechanism::{probe, LayerMechanism, MechanismError};
use std::path::{Path, PathBuf};
use tch::{nn, Device};

#[derive(Debug, thiserror::Error)]
pub enum MechanismFileError {
    #[error("cannot load the trained weights `{}`: {source}", path.display())]
    Weights {
        path: PathBuf,
        source: tch::TchError,
    },
    #[error("run `{run_id}`: {source}")]
    Probe {
        run_id: String,
        source: MechanismError,
    },
    #[error("`{}` has no trained Mamba on induction heads with saved weights (train.save_weights)", dir.display())]
    Nothing { dir: PathBuf },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Plot(#[from] PlotError),
}

/// Probes every Mamba of `folder` trained on induction heads whose weights it kept, writes
/// `mechanism.csv` into it and draws the half-life against the reach; returns the files.
pub fn write_mechanism(folder: &ResultsFolder) -> Result<Vec<PathBuf>, MechanismFileError> {
    let mut rows = Vec::new();
    for spec in folder.runs.iter().filter(|s| probed_kind(s)) {
        let weights = weights_file(&folder.dir, &spec.run_id);
        if !weights.is_file() {
            continue;
        }
        let results: Vec<&Row> = folder
            .rows
            .iter()
            .filter(|r| r.run_id == spec.run_id)
            .collect();
        for layer in probe_run(spec, &weights)? {
            rows.push(MechanismRow {
                run_id: spec.run_id.clone(),
                experiment: spec.experiment.clone(),
                model: spec.model.clone(),
                seed: spec.seed,
                lr: spec.recall.as_ref().map_or(f64::NAN, |r| r.train.lr),
                steps: results.iter().find_map(|r| r.steps).unwrap_or_default(),
                measured_reach: final_reach(&results, spec.seq_len, |_| true),
                layer,
            });
        }
    }
    if rows.is_empty() {
        return Err(MechanismFileError::Nothing {
            dir: folder.dir.clone(),
        });
    }
    let csv = folder.dir.join(MECHANISM_FILE);
    write_atomic(&csv, mechanism_csv(&rows).as_bytes())?;
    let stem = folder.dir.join(PLOTS_DIR).join("half_life_vs_reach");
    let mut files = vec![csv];
    files.extend(draw_panels(&stem, &half_life_vs_reach(&rows))?);
    Ok(files)
}

fn probed_kind(spec: &RunSpec) -> bool {
    spec.config.family() == Family::Mamba
        && spec
            .recall
            .as_ref()
            .is_some_and(|r| r.task.name() == "induction_heads")
}

pub fn weights_file(dir: &Path, run_id: &str) -> PathBuf {
    dir.join(WEIGHTS_DIR).join(format!("{run_id}.safetensors"))
}

fn probe_run(spec: &RunSpec, weights: &Path) -> Result<Vec<LayerMechanism>, MechanismFileError> {
    let recall = spec.recall.as_ref().expect("a recall run");
    let mut vars = nn::VarStore::new(Device::Cpu);
    let model = LanguageModel::new(vars.root(), &spec.config);
    vars.load(weights)
        .map_err(|source| MechanismFileError::Weights {
            path: weights.to_owned(),
            source,
        })?;
    probe(&model, &recall.task, spec.seq_len, spec.seed, Device::Cpu).map_err(|source| {
        MechanismFileError::Probe {
            run_id: spec.run_id.clone(),
            source,
        }
    })
}
