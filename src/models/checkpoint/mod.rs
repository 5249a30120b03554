//! Pretrained models from a local HF-format directory: `config.json` and `*.safetensors`
//! (single file or sharded), in the naming of transformers' `MambaForCausalLM` and
//! `LlamaForCausalLM`. Nothing is downloaded: users point at checkpoints they already have.

mod error;
pub mod hf_config;
mod weights;

pub use error::CheckpointError;

use super::init;
use super::lm::LanguageModel;
use super::{cast_except_fp32_params, ModelConfig};
use std::path::Path;
use tch::{nn, Device, Kind};

/// A loaded checkpoint: its configuration, and the model holding its weights.
pub struct Checkpoint {
    pub config: ModelConfig,
    pub vars: nn::VarStore,
    pub model: LanguageModel,
}

impl Checkpoint {
    /// Loads `dir` onto `device`, computing in `kind`; `A_log` and `D` stay fp32.
    pub fn load(dir: &Path, device: Device, kind: Kind) -> Result<Self, CheckpointError> {
        if !dir.is_dir() {
            return Err(CheckpointError::Io {
                path: dir.to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
            });
        }
        let config = hf_config::read(dir)?;
        let tensors = weights::read(dir)?;
        let vars = nn::VarStore::new(device);
        // Every variable is overwritten below, so none is drawn first.
        let model =
            tch::no_grad(|| init::skipping_draws(|| LanguageModel::new(vars.root(), &config)));
        if kind != Kind::Float {
            cast_except_fp32_params(&vars, kind);
        }
        let tied = config.tie_embeddings();
        weights::copy_into(&vars, &tensors, |name| {
            // A tied head is the embedding, whatever a file says; RoPE frequencies are
            // recomputed from rope_theta.
            (tied && name == "lm_head.weight") || name.ends_with("rotary_emb.inv_freq")
        })?;
        Ok(Self {
            config,
            vars,
            model,
        })
    }
}
