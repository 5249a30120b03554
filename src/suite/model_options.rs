//! The options of a suite's model entry, declared once. Each entry of the table at the bottom
//! names an option with its type, the family it belongs to, whether a checkpoint entry may set
//! it, the check of its value, and how it applies over the family's defaults. From the table
//! the macro makes:
//!
//! - the [`ModelEntry`] struct users write (every option an `Option`, unknown keys denied);
//! - [`MODEL_OPTIONS`], the list validation reads to reject options of the other family and
//!   options a checkpoint's `config.json` already sets;
//! - the range check of each value (`ModelEntry::check_values`);
//! - [`ModelEntry::apply_options`] and [`ModelEntry::apply_checkpoint_options`], which write an
//!   entry's options into a model configuration.
//!
//! Adding an option is adding an entry to the table. Run ids hash the whole run spec, so a new
//! option that changes a configuration changes its ids too.

use super::validate::Checker;
use crate::models::{Family, ModelConfig};
use crate::scan::ScanImpl;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The families whose models take an option. A hybrid takes the options of every kind of
/// layer it may hold, and its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Belongs {
    All,
    /// Mamba and Mamba-2 (and hybrids): the options of a state-space block.
    Ssm,
    /// One family's (and hybrids', whose layers may be of that family).
    Only(Family),
}

impl Belongs {
    pub fn includes(self, family: Family) -> bool {
        match self {
            Belongs::All => true,
            Belongs::Ssm => family.is_ssm(),
            Belongs::Only(own) => own == family || family == Family::Hybrid,
        }
    }

    /// The families, as a user reads them in an error.
    pub fn names(self) -> String {
        Family::ALL
            .iter()
            .filter(|f| self.includes(**f))
            .map(|f| format!("`{}`", f.name()))
            .collect::<Vec<_>>()
            .join(" and ")
    }
}

/// One option of a model entry, as validation sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelOption {
    /// The YAML key, which is also the field's name.
    pub name: &'static str,
    pub belongs: Belongs,
    /// Whether a checkpoint entry may set it; its `config.json` sets every other option.
    pub checkpoint_may_set: bool,
}

/// Makes the struct, the list and the steps of the module's docs from the option table.
macro_rules! model_options {
    // `(@when CONFIG OPTION { body })`: the body, where an option of family OPTION applies to a
    // configuration of family CONFIG.
    (@when mamba all $body:block) => { $body };
    (@when mamba ssm $body:block) => { $body };
    (@when mamba mamba $body:block) => { $body };
    (@when mamba mamba2 $body:block) => {};
    (@when mamba transformer $body:block) => {};
    (@when mamba2 all $body:block) => { $body };
    (@when mamba2 ssm $body:block) => { $body };
    (@when mamba2 mamba $body:block) => {};
    (@when mamba2 mamba2 $body:block) => { $body };
    (@when mamba2 transformer $body:block) => {};
    (@when transformer all $body:block) => { $body };
    (@when transformer ssm $body:block) => {};
    (@when transformer mamba $body:block) => {};
    (@when transformer mamba2 $body:block) => {};
    (@when transformer transformer $body:block) => { $body };
    (@when mamba hybrid $body:block) => {};
    (@when mamba2 hybrid $body:block) => {};
    (@when transformer hybrid $body:block) => {};
    (@when hybrid $any:ident $body:block) => { $body };
    (@belongs all) => { Belongs::All };
    (@belongs ssm) => { Belongs::Ssm };
    (@belongs mamba) => { Belongs::Only(Family::Mamba) };
    (@belongs mamba2) => { Belongs::Only(Family::Mamba2) };
    (@belongs transformer) => { Belongs::Only(Family::Transformer) };
    (@belongs hybrid) => { Belongs::Only(Family::Hybrid) };
    (
        $(
            $(#[$doc:meta])*
            $name:ident: $ty:ty {
                family: $family:ident,
                checkpoint_may_set: $may_set:literal,
                $(check: |$c:ident, $at:ident, $checked:ident| $check:expr,)?
                apply: |$cfg:ident, $v:ident| $apply:expr $(,)?
            }
        )*
    ) => {
        /// One named model. Options of the other family are rejected during validation; sizes
        /// that a grid sweeps (`d_model`, `n_layers`) come from the experiment's grid.
        #[derive(Debug, Clone, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct ModelEntry {
            pub family: Family,
            /// A local HF checkpoint directory (relative paths are relative to the suite file).
            /// Its `config.json` fixes every size and option and its weights are loaded: the
            /// model runs at its own width and depth, whatever the grid's `d_model` and
            /// `n_layers`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub checkpoint: Option<PathBuf>,
            $(
                $(#[$doc])*
                pub $name: Option<$ty>,
            )*
        }

        /// Every option of a model entry, in the order of its fields.
        pub const MODEL_OPTIONS: &[ModelOption] = &[
            $(
                ModelOption {
                    name: stringify!($name),
                    belongs: model_options!(@belongs $family),
                    checkpoint_may_set: $may_set,
                },
            )*
        ];

        impl ModelEntry {
            /// The options this entry sets, in the order of [`MODEL_OPTIONS`].
            pub fn given(&self) -> Vec<&'static ModelOption> {
                let given = [$(self.$name.is_some()),*];
                MODEL_OPTIONS
                    .iter()
                    .zip(given)
                    .filter_map(|(option, given)| given.then_some(option))
                    .collect()
            }

            /// Checks the value of each option this entry sets where it may set it (of its own
            /// family; on a checkpoint, only those a checkpoint entry may set). The others are
            /// errors already, reported by `validate` under their own words.
            pub(super) fn check_values(&self, checker: &mut Checker, model: &str) {
                let from_checkpoint = self.checkpoint.is_some();
                $($(
                    let may_set: bool = $may_set;
                    let applies = model_options!(@belongs $family).includes(self.family);
                    if let (true, Some($checked)) = (applies && (may_set || !from_checkpoint), self.$name) {
                        let $c = &mut *checker;
                        let $at = format!("models.{model}.{}", stringify!($name));
                        $check;
                    }
                )?)*
            }

            /// Writes the options this entry sets over `config` (on a checkpoint's, only those a
            /// checkpoint entry may set); options of the other family are skipped.
            fn apply(&self, config: &mut ModelConfig, from_checkpoint: bool) {
                match config {
                    ModelConfig::Mamba(config) => {
                        $(model_options!(@when mamba $family {
                            let may_set: bool = $may_set;
                            if let (true, Some($v)) = (may_set || !from_checkpoint, self.$name) {
                                let $cfg = &mut *config;
                                $apply;
                            }
                        });)*
                    }
                    ModelConfig::Mamba2(config) => {
                        $(model_options!(@when mamba2 $family {
                            let may_set: bool = $may_set;
                            if let (true, Some($v)) = (may_set || !from_checkpoint, self.$name) {
                                let $cfg = &mut *config;
                                $apply;
                            }
                        });)*
                    }
                    ModelConfig::Transformer(config) => {
                        $(model_options!(@when transformer $family {
                            let may_set: bool = $may_set;
                            if let (true, Some($v)) = (may_set || !from_checkpoint, self.$name) {
                                let $cfg = &mut *config;
                                $apply;
                            }
                        });)*
                    }
                    ModelConfig::Hybrid(config) => {
                        $(model_options!(@when hybrid $family {
                            let may_set: bool = $may_set;
                            if let (true, Some($v)) = (may_set || !from_checkpoint, self.$name.as_ref().cloned()) {
                                let $cfg = &mut *config;
                                $apply;
                            }
                        });)*
                    }
                }
            }
        }
    };
}

impl ModelEntry {
    /// Writes every option this entry sets over `config`, a configuration of its family built
    /// from the family's defaults.
    pub fn apply_options(&self, config: &mut ModelConfig) {
        self.apply(config, false);
    }

    /// Writes the options a checkpoint entry may set (`scan`) over the checkpoint's own
    /// configuration.
    pub fn apply_checkpoint_options(&self, config: &mut ModelConfig) {
        self.apply(config, true);
    }
}

model_options! {
    /// Tokens of the embedding and LM head; a recall task sets its own.
    vocab_size: i64 {
        family: all,
        checkpoint_may_set: false,
        check: |c, at, v| c.at_least(at, Some(v), 2),
        apply: |cfg, v| cfg.vocab_size = v,
    }
    /// ε of the RMS norms.
    norm_eps: f64 {
        family: all,
        checkpoint_may_set: false,
        check: |c, at, v| c.above_zero(at, Some(v)),
        apply: |cfg, v| cfg.norm_eps = v,
    }
    /// N, the SSM state size per channel (Mamba) or per head channel (Mamba-2).
    d_state: i64 {
        family: ssm,
        checkpoint_may_set: false,
        check: |c, at, v| c.at_least(at, Some(v), 1),
        apply: |cfg, v| cfg.d_state = v,
    }
    /// Width of the depthwise causal convolution.
    d_conv: i64 {
        family: ssm,
        checkpoint_may_set: false,
        check: |c, at, v| c.at_least(at, Some(v), 1),
        apply: |cfg, v| cfg.d_conv = v,
    }
    /// E: d_inner = E · d_model.
    expand: i64 {
        family: ssm,
        checkpoint_may_set: false,
        check: |c, at, v| c.at_least(at, Some(v), 1),
        apply: |cfg, v| cfg.expand = v,
    }
    /// Rank of Δ's projection [default: ceil(d_model / 16)].
    dt_rank: i64 {
        family: mamba,
        checkpoint_may_set: false,
        check: |c, at, v| c.at_least(at, Some(v), 1),
        apply: |cfg, v| cfg.dt_rank = Some(v),
    }
    /// The selective-scan implementation; the device's fit is checked with the suite's device.
    scan: ScanImpl {
        family: mamba,
        checkpoint_may_set: true,
        apply: |cfg, v| cfg.scan = v,
    }
    /// How Mamba-1's projections and convolution are drawn: `torch` (mamba_ssm's, PyTorch's
    /// U(±1/√fan_in), the default) or `tch` (Kaiming-uniform, √6 wider).
    init: crate::models::init::WeightInit {
        family: mamba,
        checkpoint_may_set: false,
        apply: |cfg, v| cfg.init = v,
    }
    /// P, the channels of one Mamba-2 head; d_inner must be a multiple of it.
    headdim: i64 {
        family: mamba2,
        checkpoint_may_set: false,
        check: |c, at, v| c.at_least(at, Some(v), 1),
        apply: |cfg, v| cfg.headdim = v,
    }
    /// Groups of Mamba-2 heads that share B and C; it must divide the heads.
    ngroups: i64 {
        family: mamba2,
        checkpoint_may_set: false,
        check: |c, at, v| c.at_least(at, Some(v), 1),
        apply: |cfg, v| cfg.ngroups = v,
    }
    /// Steps per chunk of the SSD algorithm: the cost changes, the result does not.
    chunk_size: i64 {
        family: mamba2,
        checkpoint_may_set: true,
        check: |c, at, v| c.at_least(at, Some(v), 1),
        apply: |cfg, v| cfg.chunk_size = v,
    }
    /// Clamp Mamba-2's Δ into [low, high] after the softplus (HF `time_step_limit`).
    dt_limit: [f64; 2] {
        family: mamba2,
        checkpoint_may_set: false,
        check: |c, at, v| if !crate::models::mamba2::is_dt_limit(v) {
            c.fail(at, format!("[{}, {}] is not allowed; expected [low, high] with 0 ≤ low < high", v[0], v[1]))
        },
        apply: |cfg, v| cfg.dt_limit = Some(v),
    }
    /// Width of one attention head; d_model must be a multiple of it.
    head_dim: i64 {
        family: transformer,
        checkpoint_may_set: false,
        check: |c, at, v| if v < 2 || v % 2 != 0 {
            c.fail(at, format!("{v} is not allowed; rotary embeddings need an even head_dim ≥ 2"))
        },
        apply: |cfg, v| cfg.head_dim = v,
    }
    /// Key/value heads for grouped-query attention [default: one per query head].
    n_kv_heads: i64 {
        family: transformer,
        checkpoint_may_set: false,
        check: |c, at, v| c.at_least(at, Some(v), 1),
        apply: |cfg, v| cfg.n_kv_heads = Some(v),
    }
    /// SwiGLU hidden width as a multiple of d_model, unless `intermediate_size` is given.
    mlp_ratio: f64 {
        family: transformer,
        checkpoint_may_set: false,
        check: |c, at, v| c.above_zero(at, Some(v)),
        apply: |cfg, v| cfg.mlp_ratio = v,
    }
    /// Round the hidden width from `mlp_ratio` up to a multiple of this (Llama: 256).
    mlp_multiple_of: i64 {
        family: transformer,
        checkpoint_may_set: false,
        check: |c, at, v| c.at_least(at, Some(v), 1),
        apply: |cfg, v| cfg.mlp_multiple_of = Some(v),
    }
    /// SwiGLU hidden width [default: mlp_ratio · d_model].
    intermediate_size: i64 {
        family: transformer,
        checkpoint_may_set: false,
        check: |c, at, v| c.at_least(at, Some(v), 1),
        apply: |cfg, v| cfg.intermediate_size = Some(v),
    }
    /// Base of the rotary embeddings' frequencies.
    rope_theta: f64 {
        family: transformer,
        checkpoint_may_set: false,
        check: |c, at, v| c.above_zero(at, Some(v)),
        apply: |cfg, v| cfg.rope_theta = v,
    }
    /// A hybrid's layers, one repetition: letters from `M` (Mamba-1), `2` (Mamba-2), `A`
    /// (attention) and `F` (MLP), or `jamba`, `nemotron_h` or `samba`; repeated to n_layers.
    pattern: crate::models::hybrid::Pattern {
        family: hybrid,
        checkpoint_may_set: false,
        apply: |cfg, v| cfg.pattern = v,
    }
}
