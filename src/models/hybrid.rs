//! Hybrid stacks: a language model whose layers follow a pattern over Mamba-1, Mamba-2,
//! attention and MLP layers, each a pre-norm residual block of its own (Nemotron-H's layout,
//! in which a layer is one mixer or one MLP).
//!
//! Published layouts, as shorthands for `pattern`:
//! - Jamba (Lieber et al. 2024, arXiv 2403.19887, Section 2): Mamba-1 layers with one attention
//!   layer in every 8 (at offset 4), each followed by an MLP (Jamba's mixture of experts on
//!   every other layer becomes a dense MLP here);
//! - Nemotron-H (NVIDIA 2025, arXiv 2504.03624, Table 1): Mamba-2 and MLP layers with about
//!   8% attention layers (4 of the 8B model's 52);
//! - Samba (Ren et al. 2024, arXiv 2406.07522, Section 2.1): Mamba-1, MLP, attention, MLP in
//!   turn. Samba's attention is over a sliding window; here it sees the whole context.
//!
//! Every layer keeps its own state in step and chunked mode: the SSM layers a fixed-size state,
//! the attention layers a KV cache that grows with the context. A hybrid's memory therefore
//! grows with the length, but only through its few attention layers.

use super::backbone::{Backbone, BackboneShape, SSM_NAMES};
use super::init::WeightInit;
use super::layer::Layer;
use super::residual::{PreNorm, MIXER_BLOCK};
use super::transformer::{Attention, KvCache, Mlp};
use super::{mamba, mamba2, transformer};
use crate::scan::ScanImpl;
use serde::{Deserialize, Serialize};
use std::fmt;
use tch::{nn, nn::Module, Tensor};

/// What one layer of a hybrid is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerKind {
    /// `M`: a Mamba-1 (S6) mixer.
    Mamba,
    /// `2`: a Mamba-2 (SSD) mixer.
    Mamba2,
    /// `A`: causal self-attention with RoPE, as in the Llama layers.
    Attention,
    /// `F`: a SwiGLU MLP.
    Mlp,
}

impl LayerKind {
    pub const ALL: [LayerKind; 4] = [
        LayerKind::Mamba,
        LayerKind::Mamba2,
        LayerKind::Attention,
        LayerKind::Mlp,
    ];

    pub fn letter(self) -> char {
        match self {
            LayerKind::Mamba => 'M',
            LayerKind::Mamba2 => '2',
            LayerKind::Attention => 'A',
            LayerKind::Mlp => 'F',
        }
    }

    fn from_letter(letter: char) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.letter() == letter)
    }
}

/// The published layouts `pattern` may name instead of spelling them out.
pub const SHORTHANDS: [(&str, &str); 3] = [
    // Jamba's 8-layer block: attention at offset 4, an MLP after every mixer.
    ("jamba", "MFMFMFMFAFMFMFMF"),
    // Nemotron-H's ratio, 1 attention layer in 13 (4 in 52), in its order: Mamba-2 and MLP
    // layers in turn, an attention layer before an MLP.
    ("nemotron_h", "2F2F2F2F2F2AF"),
    ("samba", "MFAF"),
];

/// The layer pattern over {`M`, `2`, `A`, `F`}, repeated to the model's depth.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pattern(Vec<LayerKind>);

/// Why a pattern string is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("the layer pattern is empty; give letters from M (Mamba-1), 2 (Mamba-2), A (attention), F (MLP), or one of {}", shorthand_names())]
    Empty,
    #[error("the layer pattern {pattern:?} has {letter:?} at position {position}; a pattern holds M (Mamba-1), 2 (Mamba-2), A (attention) and F (MLP), or is one of {}", shorthand_names())]
    Letter {
        pattern: String,
        letter: char,
        position: usize,
    },
    #[error("the layer pattern {pattern:?} has no sequence mixer (M, 2 or A): its tokens would never see each other")]
    NoMixer { pattern: String },
}

fn shorthand_names() -> String {
    SHORTHANDS
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Pattern {
    /// A pattern from its letters or a shorthand's name.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let letters = SHORTHANDS
            .iter()
            .find(|(name, _)| *name == text)
            .map_or(text, |(_, letters)| letters);
        if letters.is_empty() {
            return Err(PatternError::Empty);
        }
        let kinds = letters
            .chars()
            .enumerate()
            .map(|(position, letter)| {
                LayerKind::from_letter(letter).ok_or_else(|| PatternError::Letter {
                    pattern: text.to_string(),
                    letter,
                    position,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if kinds.iter().all(|kind| *kind == LayerKind::Mlp) {
            return Err(PatternError::NoMixer {
                pattern: text.to_string(),
            });
        }
        Ok(Self(kinds))
    }

    /// Letters in one repetition of the pattern.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The kind of layer `i` of a model, the pattern repeated.
    pub fn layer(&self, i: i64) -> LayerKind {
        self.0[i as usize % self.0.len()]
    }

    /// The kinds of a model's `n_layers` layers, in order.
    pub fn layers(&self, n_layers: i64) -> impl Iterator<Item = LayerKind> + '_ {
        (0..n_layers).map(|i| self.layer(i))
    }

    /// How many of `n_layers` layers are of `kind`.
    pub fn count(&self, n_layers: i64, kind: LayerKind) -> i64 {
        self.layers(n_layers).filter(|k| *k == kind).count() as i64
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0
            .iter()
            .try_for_each(|kind| write!(f, "{}", kind.letter()))
    }
}

impl Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// From a string, or from a number, as YAML reads an unquoted pattern of Mamba-2 layers only
/// (`pattern: 2222`).
impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Letters;
        impl serde::de::Visitor<'_> for Letters {
            type Value = Pattern;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "a layer pattern such as \"2222A2222F\", or one of {}",
                    shorthand_names()
                )
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Pattern, E> {
                Pattern::parse(text).map_err(E::custom)
            }

            fn visit_u64<E: serde::de::Error>(self, number: u64) -> Result<Pattern, E> {
                self.visit_str(&number.to_string())
            }
        }
        deserializer.deserialize_any(Letters)
    }
}

/// A hybrid's configuration: its pattern, and the options of each kind of layer it holds
/// (those of kinds it does not hold are inert). The defaults are each family's own: the SSM
/// options Mamba-2's (which Mamba-1 shares), the attention and MLP options the Transformer's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub d_model: i64,
    pub pattern: Pattern,
    /// Layers, the pattern repeated; at least one repetition.
    pub n_layers: i64,
    #[serde(default = "mamba2::defaults::vocab_size")]
    pub vocab_size: i64,
    /// N of the SSM layers [default: Mamba-2's 128 where the pattern holds Mamba-2 layers,
    /// else Mamba-1's 16].
    pub d_state: i64,
    #[serde(default = "mamba2::defaults::d_conv")]
    pub d_conv: i64,
    #[serde(default = "mamba2::defaults::expand")]
    pub expand: i64,
    /// Rank of the Mamba-1 layers' Δ projection; `None` means ceil(d_model / 16).
    #[serde(default)]
    pub dt_rank: Option<i64>,
    /// Mamba-2's channels per head.
    #[serde(default = "mamba2::defaults::headdim")]
    pub headdim: i64,
    /// Mamba-2's groups of heads sharing B and C.
    #[serde(default = "mamba2::defaults::ngroups")]
    pub ngroups: i64,
    #[serde(default = "mamba2::defaults::chunk_size")]
    pub chunk_size: i64,
    /// Clamp the Mamba-2 layers' Δ into [low, high] after the softplus.
    #[serde(default)]
    pub dt_limit: Option<[f64; 2]>,
    /// Attention's channels per head.
    #[serde(default = "transformer::defaults::head_dim")]
    pub head_dim: i64,
    /// Attention's key-value heads; `None` for as many as query heads.
    #[serde(default)]
    pub n_kv_heads: Option<i64>,
    /// The MLP's width as a multiple of d_model, unless `intermediate_size` is given.
    #[serde(default = "transformer::defaults::mlp_ratio")]
    pub mlp_ratio: f64,
    /// Round the MLP's width from `mlp_ratio` up to a multiple of this.
    #[serde(default)]
    pub mlp_multiple_of: Option<i64>,
    #[serde(default)]
    pub intermediate_size: Option<i64>,
    #[serde(default = "transformer::defaults::rope_theta")]
    pub rope_theta: f64,
    #[serde(default = "mamba2::defaults::norm_eps")]
    pub norm_eps: f64,
    /// Carry the residual stream in fp32 whatever the compute dtype, as mamba_ssm does.
    #[serde(default = "mamba2::defaults::yes")]
    pub residual_in_fp32: bool,
    #[serde(default = "mamba2::defaults::yes")]
    pub tie_embeddings: bool,
    /// Which selective-scan implementation the Mamba-1 layers call.
    #[serde(default)]
    pub scan: ScanImpl,
    /// How the Mamba-1 layers' projections and convolution are drawn.
    #[serde(default, skip_serializing_if = "WeightInit::is_torch")]
    pub init: WeightInit,
}

impl Config {
    /// `pattern` at `d_model`, one repetition deep, every other option at its default.
    pub fn new(d_model: i64, pattern: Pattern) -> Self {
        let ssm = mamba2::Config::new(d_model);
        let attention = transformer::Config::new(d_model, transformer::DEFAULT_HEAD_DIM);
        let d_state = if pattern.0.contains(&LayerKind::Mamba2) {
            ssm.d_state
        } else {
            mamba::Config::new(d_model).d_state
        };
        Self {
            d_model,
            n_layers: pattern.len() as i64,
            pattern,
            vocab_size: ssm.vocab_size,
            d_state,
            d_conv: ssm.d_conv,
            expand: ssm.expand,
            dt_rank: None,
            headdim: ssm.headdim,
            ngroups: ssm.ngroups,
            chunk_size: ssm.chunk_size,
            dt_limit: None,
            head_dim: attention.head_dim,
            n_kv_heads: None,
            mlp_ratio: attention.mlp_ratio,
            mlp_multiple_of: None,
            intermediate_size: None,
            rope_theta: attention.rope_theta,
            norm_eps: ssm.norm_eps,
            residual_in_fp32: ssm.residual_in_fp32,
            tie_embeddings: ssm.tie_embeddings,
            scan: ScanImpl::default(),
            init: WeightInit::default(),
        }
    }

    /// Whether any layer is of `kind`.
    pub fn has(&self, kind: LayerKind) -> bool {
        self.pattern.count(self.n_layers, kind) > 0
    }

    /// The configuration of this model's Mamba-1 layers.
    pub fn mamba(&self) -> mamba::Config {
        let mut cfg = mamba::Config::new(self.d_model);
        cfg.n_layers = self.n_layers;
        cfg.vocab_size = self.vocab_size;
        cfg.d_state = self.d_state;
        cfg.d_conv = self.d_conv;
        cfg.expand = self.expand;
        cfg.dt_rank = self.dt_rank;
        cfg.norm_eps = self.norm_eps;
        cfg.residual_in_fp32 = self.residual_in_fp32;
        cfg.tie_embeddings = self.tie_embeddings;
        cfg.scan = self.scan;
        cfg.init = self.init;
        cfg
    }

    /// The configuration of this model's Mamba-2 layers.
    pub fn mamba2(&self) -> mamba2::Config {
        let mut cfg = mamba2::Config::new(self.d_model);
        cfg.n_layers = self.n_layers;
        cfg.vocab_size = self.vocab_size;
        cfg.d_state = self.d_state;
        cfg.d_conv = self.d_conv;
        cfg.expand = self.expand;
        cfg.headdim = self.headdim;
        cfg.ngroups = self.ngroups;
        cfg.chunk_size = self.chunk_size;
        cfg.dt_limit = self.dt_limit;
        cfg.norm_eps = self.norm_eps;
        cfg.residual_in_fp32 = self.residual_in_fp32;
        cfg.tie_embeddings = self.tie_embeddings;
        cfg
    }

    /// The configuration of this model's attention and MLP layers.
    pub fn transformer(&self) -> transformer::Config {
        let mut cfg = transformer::Config::new(self.d_model, self.head_dim);
        cfg.n_layers = self.n_layers;
        cfg.vocab_size = self.vocab_size;
        cfg.n_kv_heads = self.n_kv_heads;
        cfg.mlp_ratio = self.mlp_ratio;
        cfg.mlp_multiple_of = self.mlp_multiple_of;
        cfg.intermediate_size = self.intermediate_size;
        cfg.rope_theta = self.rope_theta;
        cfg.norm_eps = self.norm_eps;
        cfg.tie_embeddings = self.tie_embeddings;
        cfg
    }

    /// Why this configuration cannot be built, if it cannot.
    pub fn invalid(&self) -> Option<String> {
        if self.n_layers < self.pattern.len() as i64 {
            return Some(format!(
                "n_layers {} is shorter than one repetition of the pattern {} ({} layers), so some of its layers would be missing",
                self.n_layers,
                self.pattern,
                self.pattern.len()
            ));
        }
        if self.has(LayerKind::Mamba2) {
            if let Some(why) = self.mamba2().invalid() {
                return Some(why);
            }
        }
        if self.has(LayerKind::Attention) {
            let attention = self.transformer();
            if self.d_model % self.head_dim != 0 {
                return Some(format!(
                    "d_model {} is not a multiple of the attention layers' head_dim {}",
                    self.d_model, self.head_dim
                ));
            }
            if attention.n_heads() % attention.n_kv_heads() != 0 {
                return Some(format!(
                    "the attention layers' {} heads cannot be shared by {} key-value heads",
                    attention.n_heads(),
                    attention.n_kv_heads()
                ));
            }
        }
        None
    }

    /// Parameters of one layer of `kind`: its norm and what it wraps.
    pub fn layer_params(&self, kind: LayerKind) -> i64 {
        self.d_model
            + match kind {
                LayerKind::Mamba => self.mamba().mixer_params(),
                LayerKind::Mamba2 => self.mamba2().mixer_params(),
                LayerKind::Attention => self.transformer().attention_params(),
                LayerKind::Mlp => self.transformer().mlp_params(),
            }
    }

    /// Parameters of the `n_layers` layers.
    pub fn layers_params(&self) -> i64 {
        self.pattern
            .layers(self.n_layers)
            .map(|kind| self.layer_params(kind))
            .sum()
    }

    pub fn backbone_shape(&self) -> BackboneShape {
        BackboneShape {
            d_model: self.d_model,
            vocab_size: self.vocab_size,
            n_layers: self.n_layers,
            norm_eps: self.norm_eps,
            tie_embeddings: self.tie_embeddings,
        }
    }

    pub fn model_params(&self) -> i64 {
        self.backbone_shape().model_params(self.layers_params())
    }
}

/// One layer of a hybrid: a pre-norm residual block around a layer of its kind.
#[derive(Debug)]
pub enum HybridLayer {
    Mamba(PreNorm<mamba::Mixer>),
    Mamba2(PreNorm<mamba2::Mixer>),
    Attention(PreNorm<Attention>),
    Mlp(PreNorm<Mlp>),
}

/// What one layer of a hybrid carries between tokens.
#[derive(Debug, Clone)]
pub enum LayerState {
    Mamba(mamba::LayerState),
    Mamba2(mamba2::LayerState),
    Attention(KvCache),
    Mlp,
}

impl HybridLayer {
    /// Layer `i` of `cfg`, at `p / norm` and `p / mixer` whatever its kind.
    pub fn new(p: nn::Path, cfg: &Config, i: i64) -> Self {
        match cfg.pattern.layer(i) {
            LayerKind::Mamba => {
                let mamba = cfg.mamba();
                HybridLayer::Mamba(pre_norm(&p, cfg, |p| mamba::Mixer::new(p, &mamba)))
            }
            LayerKind::Mamba2 => {
                let mamba2 = cfg.mamba2();
                HybridLayer::Mamba2(pre_norm(&p, cfg, |p| mamba2::Mixer::new(p, &mamba2)))
            }
            LayerKind::Attention => {
                let attention = cfg.transformer();
                HybridLayer::Attention(pre_norm(&p, cfg, |p| Attention::new(p, &attention)))
            }
            LayerKind::Mlp => {
                let mlp = cfg.transformer();
                HybridLayer::Mlp(pre_norm(&p, cfg, |p| Mlp::new(p, &mlp)))
            }
        }
    }

    pub fn kind(&self) -> LayerKind {
        match self {
            HybridLayer::Mamba(_) => LayerKind::Mamba,
            HybridLayer::Mamba2(_) => LayerKind::Mamba2,
            HybridLayer::Attention(_) => LayerKind::Attention,
            HybridLayer::Mlp(_) => LayerKind::Mlp,
        }
    }
}

fn pre_norm<F>(p: &nn::Path, cfg: &Config, inner: impl FnOnce(nn::Path) -> F) -> PreNorm<F> {
    PreNorm::build(
        p,
        MIXER_BLOCK,
        cfg.d_model,
        cfg.norm_eps,
        cfg.residual_in_fp32,
        inner,
    )
}

impl Module for HybridLayer {
    fn forward(&self, hidden: &Tensor) -> Tensor {
        match self {
            HybridLayer::Mamba(layer) => layer.forward(hidden),
            HybridLayer::Mamba2(layer) => layer.forward(hidden),
            HybridLayer::Attention(layer) => layer.forward(hidden),
            HybridLayer::Mlp(layer) => layer.forward(hidden),
        }
    }
}

const MISMATCH: &str = "a hybrid layer was given the state of a layer of another kind";

impl Layer for HybridLayer {
    type State = LayerState;

    fn prefill(&self, hidden: &Tensor) -> (Tensor, LayerState) {
        match self {
            HybridLayer::Mamba(layer) => {
                let (out, state) = layer.prefill(hidden);
                (out, LayerState::Mamba(state))
            }
            HybridLayer::Mamba2(layer) => {
                let (out, state) = layer.prefill(hidden);
                (out, LayerState::Mamba2(state))
            }
            HybridLayer::Attention(layer) => {
                let (out, cache) = layer.prefill(hidden);
                (out, LayerState::Attention(cache))
            }
            HybridLayer::Mlp(layer) => (layer.forward(hidden), LayerState::Mlp),
        }
    }

    fn extend(&self, hidden: &Tensor, state: &mut LayerState) -> Tensor {
        match (self, state) {
            (HybridLayer::Mamba(layer), LayerState::Mamba(s)) => layer.extend(hidden, s),
            (HybridLayer::Mamba2(layer), LayerState::Mamba2(s)) => layer.extend(hidden, s),
            (HybridLayer::Attention(layer), LayerState::Attention(c)) => layer.extend(hidden, c),
            (HybridLayer::Mlp(layer), LayerState::Mlp) => layer.forward(hidden),
            _ => panic!("{MISMATCH}"),
        }
    }

    fn step(&self, hidden: &Tensor, state: &mut LayerState) -> Tensor {
        match (self, state) {
            (HybridLayer::Mamba(layer), LayerState::Mamba(s)) => layer.step(hidden, s),
            (HybridLayer::Mamba2(layer), LayerState::Mamba2(s)) => layer.step(hidden, s),
            (HybridLayer::Attention(layer), LayerState::Attention(c)) => layer.step(hidden, c),
            (HybridLayer::Mlp(layer), LayerState::Mlp) => layer.forward(hidden),
            _ => panic!("{MISMATCH}"),
        }
    }
}

/// The hybrid language model, named as HF's Nemotron-H is: `backbone.layers.<i>.{norm, mixer}`.
pub type HybridLm = Backbone<HybridLayer>;

impl HybridLm {
    pub fn new(p: nn::Path, cfg: &Config) -> Self {
        if let Some(why) = cfg.invalid() {
            panic!("a hybrid of this configuration cannot be built: {why}");
        }
        Backbone::build(&p, SSM_NAMES, cfg.backbone_shape(), |p, i| {
            HybridLayer::new(p, cfg, i)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorthands_name_the_published_layouts() {
        let jamba = Pattern::parse("jamba").unwrap();
        assert_eq!(jamba.to_string(), "MFMFMFMFAFMFMFMF");
        assert_eq!(jamba.count(16, LayerKind::Attention), 1);
        assert_eq!(jamba.count(16, LayerKind::Mamba), 7);
        let nemotron = Pattern::parse("nemotron_h").unwrap();
        // Nemotron-H-8B: 4 attention layers in 52.
        assert_eq!(nemotron.count(52, LayerKind::Attention), 4);
        assert_eq!(nemotron.count(52, LayerKind::Mamba2), 24);
        assert_eq!(Pattern::parse("samba").unwrap().to_string(), "MFAF");
    }

    #[test]
    fn a_pattern_repeats_to_the_depth() {
        let pattern = Pattern::parse("2A").unwrap();
        let layers: String = pattern.layers(5).map(LayerKind::letter).collect();
        assert_eq!(layers, "2A2A2");
    }

    #[test]
    fn bad_patterns_say_what_is_allowed() {
        assert_eq!(Pattern::parse(""), Err(PatternError::Empty));
        let err = Pattern::parse("2Mx").unwrap_err();
        assert_eq!(
            err,
            PatternError::Letter {
                pattern: "2Mx".into(),
                letter: 'x',
                position: 2
            }
        );
        assert!(err.to_string().contains("A (attention)"), "{err}");
        assert!(matches!(
            Pattern::parse("FF"),
            Err(PatternError::NoMixer { .. })
        ));
    }

    #[test]
    fn a_pattern_reads_from_yaml_quoted_or_not() {
        let quoted: Pattern = serde_yaml::from_str("\"22A\"").unwrap();
        let bare: Pattern = serde_yaml::from_str("2222").unwrap();
        assert_eq!(
            (quoted.to_string(), bare.to_string()),
            ("22A".into(), "2222".into())
        );
        assert!(serde_yaml::from_str::<Pattern>("[1]").is_err());
    }
}
