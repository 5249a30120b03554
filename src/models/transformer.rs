//! A Llama-style decoder-only Transformer with fused attention.
//!
//! Papers: Touvron et al., "LLaMA", arXiv 2302.13971 (pre-RMSNorm, SwiGLU, RoPE);
//! Su et al., "RoFormer", arXiv 2104.09864 (rotary embeddings, Eq. 34);
//! Shazeer, "GLU Variants Improve Transformer", arXiv 2002.05202 (SwiGLU).
//! Reference implementation: HF transformers' `modeling_llama.py`, whose parameter names we
//! mirror. Attention is libtorch's fused `scaled_dot_product_attention` (FlashAttention-2 or
//! memory-efficient kernels on CUDA, a fused flash kernel on CPU).

use super::backbone::{Backbone, BackboneShape, LLAMA_NAMES};
use super::init::drawn;
use super::layer::Layer;
use super::residual::{BlockNames, PreNorm};
use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, Kind, Tensor};

pub const DEFAULT_HEAD_DIM: i64 = 64;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub d_model: i64,
    #[serde(default = "defaults::n_layers")]
    pub n_layers: i64,
    #[serde(default = "defaults::vocab_size")]
    pub vocab_size: i64,
    #[serde(default = "defaults::head_dim")]
    pub head_dim: i64,
    /// Query heads; `None` means d_model / head_dim. HF configs may set both, so that
    /// n_heads · head_dim differs from d_model.
    #[serde(default)]
    pub n_heads: Option<i64>,
    /// Key/value heads for grouped-query attention; `None` means one per query head.
    #[serde(default)]
    pub n_kv_heads: Option<i64>,
    /// SwiGLU hidden width; `None` means `mlp_ratio · d_model`, rounded up to a multiple of
    /// `mlp_multiple_of` where that is set.
    #[serde(default)]
    pub intermediate_size: Option<i64>,
    #[serde(default = "defaults::mlp_ratio")]
    pub mlp_ratio: f64,
    /// Llama's `multiple_of`: the hidden width from `mlp_ratio` is rounded up to a multiple of
    /// this (256 in Llama, so that 8/3 · 4096 becomes 11008, a width the matmul kernels tile
    /// well). Absent from serialised configs when unset, so older run ids stand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlp_multiple_of: Option<i64>,
    #[serde(default = "defaults::rope_theta")]
    pub rope_theta: f64,
    #[serde(default = "defaults::norm_eps")]
    pub norm_eps: f64,
    /// Biases on the q, k, v and o projections (HF `attention_bias`).
    #[serde(default)]
    pub attention_bias: bool,
    /// Biases on the gate, up and down projections (HF `mlp_bias`).
    #[serde(default)]
    pub mlp_bias: bool,
    /// The LM head reuses the embedding matrix (HF `tie_word_embeddings`).
    #[serde(default = "defaults::yes")]
    pub tie_embeddings: bool,
}

pub(super) mod defaults {
    pub fn n_layers() -> i64 {
        2
    }
    pub fn vocab_size() -> i64 {
        256
    }
    pub fn head_dim() -> i64 {
        super::DEFAULT_HEAD_DIM
    }
    pub fn mlp_ratio() -> f64 {
        4.0
    }
    pub fn rope_theta() -> f64 {
        10_000.0
    }
    pub fn norm_eps() -> f64 {
        1e-5
    }
    pub fn yes() -> bool {
        true
    }
}

impl Config {
    pub fn new(d_model: i64, head_dim: i64) -> Self {
        Self {
            d_model,
            n_layers: defaults::n_layers(),
            vocab_size: defaults::vocab_size(),
            head_dim,
            n_heads: None,
            n_kv_heads: None,
            intermediate_size: None,
            mlp_ratio: defaults::mlp_ratio(),
            mlp_multiple_of: None,
            rope_theta: defaults::rope_theta(),
            norm_eps: defaults::norm_eps(),
            attention_bias: false,
            mlp_bias: false,
            tie_embeddings: true,
        }
    }

    pub fn n_heads(&self) -> i64 {
        self.n_heads.unwrap_or(self.d_model / self.head_dim)
    }

    pub fn n_kv_heads(&self) -> i64 {
        self.n_kv_heads.unwrap_or_else(|| self.n_heads())
    }

    pub fn intermediate_size(&self) -> i64 {
        self.intermediate_size.unwrap_or_else(|| {
            let width = (self.mlp_ratio * self.d_model as f64).round() as i64;
            match self.mlp_multiple_of {
                Some(multiple) if multiple > 1 => multiple * ((width + multiple - 1) / multiple),
                _ => width,
            }
        })
    }

    /// Parameters of one attention layer: q, k, v and o projections.
    pub fn attention_params(&self) -> i64 {
        let (q, kv) = (
            self.n_heads() * self.head_dim,
            self.n_kv_heads() * self.head_dim,
        );
        let biases = if self.attention_bias {
            q + 2 * kv + self.d_model
        } else {
            0
        };
        self.d_model * q + 2 * self.d_model * kv + q * self.d_model + biases
    }

    /// Parameters of one SwiGLU MLP: gate, up and down projections.
    pub fn mlp_params(&self) -> i64 {
        let hidden = self.intermediate_size();
        let biases = if self.mlp_bias {
            2 * hidden + self.d_model
        } else {
            0
        };
        3 * self.d_model * hidden + biases
    }

    /// Parameters of one decoder block: two norms, attention and MLP.
    pub fn block_params(&self) -> i64 {
        2 * self.d_model + self.attention_params() + self.mlp_params()
    }

    /// Parameters of the language model: embedding, blocks, final norm and, when untied, the
    /// LM head.
    pub fn model_params(&self) -> i64 {
        self.backbone_shape()
            .model_params(self.n_layers * self.block_params())
    }

    /// The sizes the language model around the blocks takes.
    pub fn backbone_shape(&self) -> BackboneShape {
        BackboneShape {
            d_model: self.d_model,
            vocab_size: self.vocab_size,
            n_layers: self.n_layers,
            norm_eps: self.norm_eps,
            tie_embeddings: self.tie_embeddings,
        }
    }
}

/// Rotary position embedding, rotate-half convention (HF Llama).
#[derive(Debug)]
struct Rotary {
    inv_freq: Tensor,
}

impl Rotary {
    fn new(cfg: &Config, device: tch::Device) -> Self {
        // θ_i = base^(−2i/d), i = 0 … d/2 − 1 (RoFormer Eq. 15).
        let exponents = Tensor::arange_start_step(0, cfg.head_dim, 2, (Kind::Float, device));
        let inv_freq = (exponents * (-cfg.rope_theta.ln() / cfg.head_dim as f64)).exp();
        Self { inv_freq }
    }

    /// Rotates q or k, (batch, heads, seq_len, head_dim), whose first position is `offset`.
    fn apply(&self, xs: &Tensor, offset: i64) -> Tensor {
        let seq_len = xs.size()[2];
        let positions = Tensor::arange_start(offset, offset + seq_len, (Kind::Float, xs.device()));
        let freqs = positions.outer(&self.inv_freq); // (seq_len, head_dim / 2)
        let angles = Tensor::cat(&[&freqs, &freqs], -1);
        let (cos, sin) = (
            angles.cos().to_kind(xs.kind()),
            angles.sin().to_kind(xs.kind()),
        );
        let half = xs.size()[3] / 2;
        let rotated = Tensor::cat(&[-xs.narrow(3, half, half), xs.narrow(3, 0, half)], -1);
        xs * cos + rotated * sin
    }
}

/// Keys and values of every token seen so far, for one attention layer:
/// (batch, kv_heads, tokens, head_dim) each. It grows by one token per step, so a step costs
/// O(context) time and the cache O(context) memory, unlike Mamba's fixed state.
#[derive(Debug, Default)]
pub struct KvCache {
    keys: Option<Tensor>,
    values: Option<Tensor>,
}

/// Cheap: appending builds new tensors, so clones never see each other's tokens.
impl Clone for KvCache {
    fn clone(&self) -> Self {
        Self {
            keys: self.keys.as_ref().map(Tensor::shallow_clone),
            values: self.values.as_ref().map(Tensor::shallow_clone),
        }
    }
}

impl KvCache {
    /// Tokens cached so far.
    pub fn len(&self) -> i64 {
        self.keys.as_ref().map_or(0, |k| k.size()[2])
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends this chunk's keys and values; returns all of them.
    fn extend(&mut self, keys: Tensor, values: Tensor) -> (Tensor, Tensor) {
        let join = |old: &Option<Tensor>, new: Tensor| match old {
            Some(old) => Tensor::cat(&[old, &new], 2),
            None => new,
        };
        let (keys, values) = (join(&self.keys, keys), join(&self.values, values));
        self.keys = Some(keys.shallow_clone());
        self.values = Some(values.shallow_clone());
        (keys, values)
    }
}

/// Causal multi-head (or grouped-query) self-attention.
#[derive(Debug)]
pub struct Attention {
    q_proj: nn::Linear,
    k_proj: nn::Linear,
    v_proj: nn::Linear,
    o_proj: nn::Linear,
    rotary: Rotary,
    n_heads: i64,
    n_kv_heads: i64,
    head_dim: i64,
}

/// HF Llama's initialisation of every linear layer: weights from N(0, 0.02²), biases zero. The
/// scale matches the embeddings' (`token_embedding`): with PyTorch's larger default, the blocks'
/// random outputs would drown the token signal in the residual stream at the start.
fn llama_linear() -> nn::LinearConfig {
    nn::LinearConfig {
        ws_init: drawn(nn::Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        }),
        bs_init: Some(nn::Init::Const(0.0)),
        bias: true,
    }
}

impl Attention {
    pub fn new(p: nn::Path, cfg: &Config) -> Self {
        let linear = nn::LinearConfig {
            bias: cfg.attention_bias,
            ..llama_linear()
        };
        let (q, kv) = (
            cfg.n_heads() * cfg.head_dim,
            cfg.n_kv_heads() * cfg.head_dim,
        );
        Self {
            q_proj: nn::linear(&p / "q_proj", cfg.d_model, q, linear),
            k_proj: nn::linear(&p / "k_proj", cfg.d_model, kv, linear),
            v_proj: nn::linear(&p / "v_proj", cfg.d_model, kv, linear),
            o_proj: nn::linear(&p / "o_proj", q, cfg.d_model, linear),
            rotary: Rotary::new(cfg, p.device()),
            n_heads: cfg.n_heads(),
            n_kv_heads: cfg.n_kv_heads(),
            head_dim: cfg.head_dim,
        }
    }

    /// (batch, seq_len, width) → (batch, heads, seq_len, head_dim).
    fn split_heads(&self, xs: &Tensor, heads: i64) -> Tensor {
        let (batch, seq_len, _) = xs.size3().expect("(batch, seq_len, width)");
        xs.view([batch, seq_len, heads, self.head_dim])
            .transpose(1, 2)
    }
}

impl Module for Attention {
    fn forward(&self, hidden: &Tensor) -> Tensor {
        self.forward_cached(hidden, &mut KvCache::default())
    }
}

impl Layer for Attention {
    type State = KvCache;

    fn prefill(&self, hidden: &Tensor) -> (Tensor, KvCache) {
        let mut cache = KvCache::default();
        (self.forward_cached(hidden, &mut cache), cache)
    }

    fn extend(&self, hidden: &Tensor, cache: &mut KvCache) -> Tensor {
        self.forward_cached(hidden, cache)
    }

    fn step(&self, hidden: &Tensor, cache: &mut KvCache) -> Tensor {
        self.forward_cached(&hidden.unsqueeze(1), cache)
            .squeeze_dim(1)
    }
}

impl Attention {
    /// Attends from `hidden` (batch, seq_len, d_model), whose first token comes right after the
    /// cached ones, to the cache and itself; appends its keys and values to `cache`.
    pub fn forward_cached(&self, hidden: &Tensor, cache: &mut KvCache) -> Tensor {
        let (batch, seq_len, _) = hidden.size3().expect("(batch, seq_len, d_model)");
        let offset = cache.len();
        let q = self.split_heads(&self.q_proj.forward(hidden), self.n_heads);
        let k = self.split_heads(&self.k_proj.forward(hidden), self.n_kv_heads);
        let v = self.split_heads(&self.v_proj.forward(hidden), self.n_kv_heads);
        let (q, k) = (self.rotary.apply(&q, offset), self.rotary.apply(&k, offset));
        let (k, v) = cache.extend(k, v);
        // softmax(QKᵀ/√d_head + causal mask) V, fused: the (L, L) scores never reach memory.
        // SDPA's `is_causal` aligns the mask top-left, which is right when there is no cache.
        // A single new token sees everything; a chunk after a cache needs an explicit mask.
        let mask = (offset > 0 && seq_len > 1).then(|| {
            let rows = Tensor::arange_start(offset, offset + seq_len, (Kind::Int64, q.device()));
            let cols = Tensor::arange(offset + seq_len, (Kind::Int64, q.device()));
            cols.unsqueeze(0).le_tensor(&rows.unsqueeze(1))
        });
        let attn = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            mask.as_ref(),
            0.0,
            offset == 0 && seq_len > 1,
            None,
            self.n_kv_heads != self.n_heads,
        );
        let merged = attn.transpose(1, 2).contiguous().view([batch, seq_len, -1]);
        self.o_proj.forward(&merged)
    }
}

/// SwiGLU feed-forward: down(SiLU(gate(x)) ⊙ up(x)).
#[derive(Debug)]
pub struct Mlp {
    gate_proj: nn::Linear,
    up_proj: nn::Linear,
    down_proj: nn::Linear,
}

impl Mlp {
    pub fn new(p: nn::Path, cfg: &Config) -> Self {
        let linear = nn::LinearConfig {
            bias: cfg.mlp_bias,
            ..llama_linear()
        };
        let hidden = cfg.intermediate_size();
        Self {
            gate_proj: nn::linear(&p / "gate_proj", cfg.d_model, hidden, linear),
            up_proj: nn::linear(&p / "up_proj", cfg.d_model, hidden, linear),
            down_proj: nn::linear(&p / "down_proj", hidden, cfg.d_model, linear),
        }
    }
}

impl Module for Mlp {
    fn forward(&self, xs: &Tensor) -> Tensor {
        let gated = self.gate_proj.forward(xs).silu() * self.up_proj.forward(xs);
        self.down_proj.forward(&gated)
    }
}

/// Position-wise: nothing to carry, and a token or a chunk is computed as in parallel.
impl Layer for Mlp {
    type State = ();

    fn prefill(&self, hidden: &Tensor) -> (Tensor, ()) {
        (self.forward(hidden), ())
    }

    fn extend(&self, hidden: &Tensor, _: &mut ()) -> Tensor {
        self.forward(hidden)
    }

    fn step(&self, hidden: &Tensor, _: &mut ()) -> Tensor {
        self.forward(hidden)
    }
}

/// Pre-norm decoder block: h += Attn(RMSNorm(h)); h += MLP(RMSNorm(h)).
#[derive(Debug)]
pub struct DecoderBlock {
    attention: PreNorm<Attention>,
    mlp: PreNorm<Mlp>,
}

/// HF Llama's names for the two halves of a layer.
const ATTENTION_HALF: BlockNames = BlockNames {
    norm: "input_layernorm",
    inner: "self_attn",
};
const MLP_HALF: BlockNames = BlockNames {
    norm: "post_attention_layernorm",
    inner: "mlp",
};

impl DecoderBlock {
    pub fn new(p: nn::Path, cfg: &Config) -> Self {
        // Llama keeps its residual stream in the compute dtype.
        Self {
            attention: PreNorm::build(&p, ATTENTION_HALF, cfg.d_model, cfg.norm_eps, false, |p| {
                Attention::new(p, cfg)
            }),
            mlp: PreNorm::build(&p, MLP_HALF, cfg.d_model, cfg.norm_eps, false, |p| {
                Mlp::new(p, cfg)
            }),
        }
    }
}

impl Module for DecoderBlock {
    fn forward(&self, hidden: &Tensor) -> Tensor {
        self.mlp.forward(&self.attention.forward(hidden))
    }
}

impl Layer for DecoderBlock {
    type State = KvCache;

    fn prefill(&self, hidden: &Tensor) -> (Tensor, KvCache) {
        let (attended, cache) = self.attention.prefill(hidden);
        (self.mlp.forward(&attended), cache)
    }

    fn extend(&self, hidden: &Tensor, cache: &mut KvCache) -> Tensor {
        self.mlp.forward(&self.attention.extend(hidden, cache))
    }

    fn step(&self, hidden: &Tensor, cache: &mut KvCache) -> Tensor {
        self.mlp.forward(&self.attention.step(hidden, cache))
    }
}

/// The Transformer language model (`LlamaForCausalLM`).
pub type TransformerLm = Backbone<DecoderBlock>;

impl TransformerLm {
    pub fn new(p: nn::Path, cfg: &Config) -> Self {
        Backbone::build(&p, LLAMA_NAMES, cfg.backbone_shape(), |p, _| {
            DecoderBlock::new(p, cfg)
        })
    }
}
