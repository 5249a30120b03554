//! The analytic cost model: FLOPs, bytes moved and memory of a run, from its configuration
//! alone. Measurements are checked against it, and it predicts what cannot be measured here
//! (frontier widths, lengths past memory).
//!
//! Conventions:
//! - a multiply-add is 2 FLOPs; exp, softplus, sigmoid and division count 1 each;
//! - causal attention computes only the unmasked half, L(L+1)/2 query-key pairs, as
//!   FlashAttention-2 and SDPA's fused kernels do;
//! - backward costs twice the forward (the standard 3× rule for a training step), for the
//!   scan too (our kernels recompute states in backward instead of storing them);
//! - bytes are what the fused kernels must move: the scan reads u, Δ, z, B, C and writes y, never
//!   the (B, L, D, N) states (paper §3.3.2); fused attention reads Q, K, V and writes O, never
//!   the (L, L) scores.

use crate::models::hybrid::{self, LayerKind};
use crate::models::{mamba, mamba2, transformer, Component, ModelConfig};
use crate::spec::{DType, Pass, RunSpec};
use serde::{Deserialize, Serialize};

/// The predicted costs of one timed call of a run.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Costs {
    pub flops: f64,
    /// The part of `flops` spent in the core op (scan or attention), all layers.
    pub core_flops: f64,
    /// Bytes of the core op's inputs and outputs (scan or fused attention), all layers.
    pub core_bytes: f64,
    /// Bytes the whole call must move at least: weights read, activations written and read.
    pub bytes_moved: f64,
    /// Weights, at their stored dtypes (A_log and D in fp32).
    pub param_bytes: f64,
    /// Activations kept for backward (training passes only).
    pub activation_bytes: f64,
    /// What decoding carries: Mamba's states, or the Transformer's KV cache at its longest.
    pub state_bytes: f64,
}

/// The forward of one part of a model over a [`Shape`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Layer {
    flops: f64,
    core_flops: f64,
    /// Elements the core op reads and writes.
    core_elems: f64,
    /// Activation elements written (and later read) by the layer's ops.
    activation_elems: f64,
    /// Activation elements saved for backward.
    saved_elems: f64,
}

/// A batch of sequences, and where attention's keys start: `context` tokens are cached
/// before the `new` ones processed now (0 for a parallel pass).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    pub batch: f64,
    pub new: f64,
    pub context: f64,
}

impl Shape {
    fn tokens(&self) -> f64 {
        self.batch * self.new
    }

    /// Query-key pairs under the causal mask, per sequence and head.
    fn causal_pairs(&self) -> f64 {
        // Σ_{i=1..new} (context + i)
        self.new * self.context + self.new * (self.new + 1.0) / 2.0
    }
}

pub fn bytes_per_element(dtype: DType) -> f64 {
    match dtype {
        DType::F32 => 4.0,
        DType::Bf16 | DType::F16 => 2.0,
    }
}

/// The costs of one timed call of `spec`.
pub fn costs(spec: &RunSpec) -> Costs {
    let elt = bytes_per_element(spec.dtype);
    let cfg = &spec.config;
    let (batch, len) = (spec.batch as f64, spec.seq_len as f64);
    let parallel = Shape {
        batch,
        new: len,
        context: 0.0,
    };
    let param_bytes = param_bytes(cfg, spec.component, elt);
    let forward = |shape: Shape| component_forward(cfg, spec.component, shape);
    // One inference call: weights read once, every activation written and read once, and a
    // decoding state (if any) read.
    let inference = |f: Layer, state: f64| Costs {
        flops: f.flops,
        core_flops: f.core_flops,
        core_bytes: f.core_elems * elt,
        bytes_moved: param_bytes + 2.0 * f.activation_elems * elt + state,
        ..Costs::default()
    };
    let mut costs = match spec.pass {
        Pass::Forward | Pass::Prefill => inference(forward(parallel), 0.0),
        Pass::ForwardBackward | Pass::TrainStep => {
            let f = forward(parallel);
            let optimizer = if spec.pass == Pass::TrainStep {
                // AdamW: two moments and the update, about 12 FLOPs and 4 fp32 tensors a weight.
                let params = cfg.params(spec.component) as f64;
                (12.0 * params, 16.0 * params)
            } else {
                (0.0, 0.0)
            };
            Costs {
                flops: 3.0 * f.flops + optimizer.0,
                core_flops: 3.0 * f.core_flops,
                core_bytes: 3.0 * f.core_elems * elt,
                // Forward reads weights and writes activations; backward reads both and writes
                // gradients of each.
                bytes_moved: 3.0 * param_bytes + 6.0 * f.activation_elems * elt + optimizer.1,
                activation_bytes: f.saved_elems * elt,
                ..Costs::default()
            }
        }
        Pass::Decode => {
            let step = Shape {
                batch,
                new: 1.0,
                context: len,
            };
            inference(forward(step), state_bytes(cfg, batch, len, elt))
        }
        Pass::GenerateThroughput => {
            let mut total = inference(forward(parallel), 0.0);
            // The first token comes from the prefill's logits; each further one is a step.
            for i in 0..(spec.new_tokens.unwrap_or(1) - 1).max(0) {
                let context = len + i as f64;
                let step = Shape {
                    batch,
                    new: 1.0,
                    context,
                };
                let cost = inference(forward(step), state_bytes(cfg, batch, context, elt));
                total.flops += cost.flops;
                total.core_flops += cost.core_flops;
                total.core_bytes += cost.core_bytes;
                total.bytes_moved += cost.bytes_moved;
            }
            total
        }
    };
    costs.param_bytes = param_bytes;
    if matches!(spec.pass, Pass::Decode | Pass::GenerateThroughput) {
        let context = len + spec.new_tokens.unwrap_or(1) as f64;
        costs.state_bytes = state_bytes(cfg, batch, context, elt);
    }
    costs
}

/// The FLOPs `spec` executes in all: every timed and warm-up call, or every training step
/// and the final evaluation at each length. What balances shards; early stopping and
/// time-based warm-up make it an estimate.
pub fn total_flops(spec: &RunSpec) -> f64 {
    let per_call = costs(spec).flops;
    match &spec.recall {
        Some(recall) => {
            let eval: f64 = recall
                .eval_seq_len
                .iter()
                .map(|&len| {
                    forward_flops(&spec.config, spec.component, spec.batch as f64, len as f64).0
                })
                .sum();
            let reach: f64 = recall
                .train
                .reach
                .iter()
                .map(|reach| {
                    let per_step: f64 = reach
                        .seq_len
                        .iter()
                        .map(|&len| {
                            forward_flops(
                                &spec.config,
                                spec.component,
                                spec.batch as f64,
                                len as f64,
                            )
                            .0
                        })
                        .sum();
                    per_step * (reach.batches * reach.at_steps.len()) as f64
                })
                .sum();
            per_call * recall.train.steps as f64 + eval * recall.train.eval_batches as f64 + reach
        }
        None => per_call * (spec.warmup + spec.repeats) as f64,
    }
}

/// FLOPs of one parallel forward of `component` over `batch` sequences of `seq_len`, and the
/// part spent in the core op: for predictions at sizes no run measured.
pub fn forward_flops(
    cfg: &ModelConfig,
    component: Component,
    batch: f64,
    seq_len: f64,
) -> (f64, f64) {
    let f = component_forward(
        cfg,
        component,
        Shape {
            batch,
            new: seq_len,
            context: 0.0,
        },
    );
    (f.flops, f.core_flops)
}

/// The forward of `component` over `shape`.
fn component_forward(cfg: &ModelConfig, component: Component, shape: Shape) -> Layer {
    let layers = cfg.n_layers() as f64;
    let d = cfg.d_model() as f64;
    let tokens = shape.tokens();
    let norm = Layer {
        flops: 4.0 * tokens * d,
        activation_elems: tokens * d,
        saved_elems: tokens * d,
        ..Layer::default()
    };
    let residual = Layer {
        flops: tokens * d,
        activation_elems: tokens * d,
        ..Layer::default()
    };
    match (cfg, component) {
        (ModelConfig::Mamba(c), Component::Core) => scan(c, shape, c.d_model as f64),
        (ModelConfig::Transformer(c), Component::Core) => attention_core(c, shape),
        (ModelConfig::Mamba(c), Component::Mixer) => mamba_mixer(c, shape),
        (ModelConfig::Transformer(c), Component::Mixer) => attention_layer(c, shape),
        (ModelConfig::Mamba(c), Component::Block) => sum(&[norm, mamba_mixer(c, shape), residual]),
        (ModelConfig::Transformer(c), Component::Block) => {
            transformer_block(c, shape, norm, residual)
        }
        (ModelConfig::Mamba(c), Component::Layers) => {
            scale(sum(&[norm, mamba_mixer(c, shape), residual]), layers)
        }
        (ModelConfig::Transformer(c), Component::Layers) => {
            scale(transformer_block(c, shape, norm, residual), layers)
        }
        (ModelConfig::Mamba(c), Component::Model) => {
            let block = sum(&[norm, mamba_mixer(c, shape), residual]);
            model(block, layers, norm, tokens, d, c.vocab_size as f64)
        }
        (ModelConfig::Transformer(c), Component::Model) => {
            let block = transformer_block(c, shape, norm, residual);
            model(block, layers, norm, tokens, d, c.vocab_size as f64)
        }
        (ModelConfig::Mamba2(c), Component::Core) => ssd(c, shape, c.d_model / c.headdim),
        (ModelConfig::Mamba2(c), Component::Mixer) => mamba2_mixer(c, shape),
        (ModelConfig::Mamba2(c), Component::Block) => {
            sum(&[norm, mamba2_mixer(c, shape), residual])
        }
        (ModelConfig::Mamba2(c), Component::Layers) => {
            scale(sum(&[norm, mamba2_mixer(c, shape), residual]), layers)
        }
        (ModelConfig::Mamba2(c), Component::Model) => {
            let block = sum(&[norm, mamba2_mixer(c, shape), residual]);
            model(block, layers, norm, tokens, d, c.vocab_size as f64)
        }
        (ModelConfig::Hybrid(c), Component::Layers) => hybrid_layers(c, shape, norm, residual),
        (ModelConfig::Hybrid(c), Component::Model) => {
            let all_layers = hybrid_layers(c, shape, norm, residual);
            model(all_layers, 1.0, norm, tokens, d, c.vocab_size as f64)
        }
        (ModelConfig::Hybrid(_), Component::Core | Component::Mixer | Component::Block) => {
            panic!("a hybrid has no single {}", component.name())
        }
    }
}

/// A hybrid's layers, each a pre-norm residual block around the layer its pattern names.
fn hybrid_layers(c: &hybrid::Config, shape: Shape, norm: Layer, residual: Layer) -> Layer {
    let (mamba, mamba2, transformer) = (c.mamba(), c.mamba2(), c.transformer());
    let blocks: Vec<Layer> = c
        .pattern
        .layers(c.n_layers)
        .map(|kind| {
            let inner = match kind {
                LayerKind::Mamba => mamba_mixer(&mamba, shape),
                LayerKind::Mamba2 => mamba2_mixer(&mamba2, shape),
                LayerKind::Attention => attention_layer(&transformer, shape),
                LayerKind::Mlp => mlp(&transformer, shape),
            };
            sum(&[norm, inner, residual])
        })
        .collect();
    sum(&blocks)
}

/// `layers` blocks, the final norm and the LM head (the embedding is a lookup).
fn model(block: Layer, layers: f64, norm: Layer, tokens: f64, d: f64, vocab: f64) -> Layer {
    let head = Layer {
        flops: 2.0 * tokens * d * vocab,
        activation_elems: tokens * vocab,
        saved_elems: tokens * vocab,
        ..Layer::default()
    };
    sum(&[scale(block, layers), norm, head])
}

fn transformer_block(c: &transformer::Config, shape: Shape, norm: Layer, residual: Layer) -> Layer {
    sum(&[
        norm,
        attention_layer(c, shape),
        residual,
        norm,
        mlp(c, shape),
        residual,
    ])
}

/// A dense projection of `tokens` rows from `fan_in` to `fan_out`.
fn linear(tokens: f64, fan_in: f64, fan_out: f64) -> Layer {
    Layer {
        flops: 2.0 * tokens * fan_in * fan_out,
        activation_elems: tokens * fan_out,
        saved_elems: tokens * fan_in,
        ..Layer::default()
    }
}

/// The selective scan over `channels` (Algorithm 2, lines 5–6, with the D skip and the gate):
/// per state element Δ·A, exp, Δu·B, h = Āh + B̄u and y += C·h (7 FLOPs); per channel Δ's
/// bias and softplus, Δ·u, the D skip, and the SiLU gate (9 FLOPs).
fn scan(c: &mamba::Config, shape: Shape, channels: f64) -> Layer {
    let n = c.d_state as f64;
    let tokens = shape.tokens();
    let flops = tokens * channels * (7.0 * n + 9.0);
    Layer {
        flops,
        core_flops: flops,
        // u, Δ, z in and y out per channel, B and C per state; A, D and Δ's bias once.
        core_elems: tokens * (4.0 * channels + 2.0 * n) + channels * (n + 2.0),
        activation_elems: tokens * channels,
        saved_elems: 0.0,
    }
}

fn mamba_mixer(c: &mamba::Config, shape: Shape) -> Layer {
    let tokens = shape.tokens();
    let (d, e) = (c.d_model as f64, c.d_inner() as f64);
    let (n, r, k) = (c.d_state as f64, c.dt_rank() as f64, c.d_conv as f64);
    let conv = Layer {
        flops: 2.0 * tokens * e * k + 3.0 * tokens * e, // and SiLU
        activation_elems: tokens * e,
        saved_elems: tokens * e,
        ..Layer::default()
    };
    let mut scan = scan(c, shape, e);
    scan.saved_elems = tokens * e; // Δ; the states are recomputed
    sum(&[
        linear(tokens, d, 2.0 * e),
        conv,
        linear(tokens, e, r + 2.0 * n),
        linear(tokens, r, e),
        scan,
        linear(tokens, e, d),
    ])
}

/// SSD as `crate::ssd::chunked` computes it, over `heads` heads of headdim P, in chunks of
/// T = min(chunk_size, new tokens) (a decoding step is the recurrence, T = 1). Per token: C·Bᵀ
/// for its row of the chunk (2TN per group); per head the decay mask (segment sum, exp and
/// product: 4T), the masked form times Δx (2TP), its share of the chunk's state and the
/// entering state's share of its output (2PN each, with their decays: 4PN + 2P), Δ's softplus
/// and the D skip (2P + 5); once per chunk and head, the recurrence across chunks.
fn ssd(c: &mamba2::Config, shape: Shape, heads: i64) -> Layer {
    let (h, p, n, g) = (
        heads as f64,
        c.headdim as f64,
        c.d_state as f64,
        c.ngroups as f64,
    );
    let tokens = shape.tokens();
    let t = (c.chunk_size as f64).min(shape.new.max(1.0));
    let chunks = (shape.new / t).ceil();
    let per_token = g * 2.0 * t * n + h * (4.0 * t + 2.0 * t * p + 4.0 * p * n + 4.0 * p + 5.0);
    let across = shape.batch * h * 2.0 * (chunks + 1.0) * (chunks + 1.0) * p * n;
    let flops = tokens * per_token + across;
    Layer {
        flops,
        core_flops: flops,
        // x in and y out per head and channel, Δ per head, B and C per group; A, D and Δ's
        // bias once per head.
        core_elems: tokens * (2.0 * h * p + h + 2.0 * g * n) + 3.0 * h,
        activation_elems: tokens * h * p,
        // The chunk's decay masks and states that autograd keeps.
        saved_elems: tokens * h * (t + p * n / t.max(1.0)),
    }
}

fn mamba2_mixer(c: &mamba2::Config, shape: Shape) -> Layer {
    let tokens = shape.tokens();
    let (d, e, k) = (c.d_model as f64, c.d_inner() as f64, c.d_conv as f64);
    let conv_dim = c.conv_dim() as f64;
    let conv = Layer {
        flops: 2.0 * tokens * conv_dim * k + 3.0 * tokens * conv_dim, // and SiLU
        activation_elems: tokens * conv_dim,
        saved_elems: tokens * conv_dim,
        ..Layer::default()
    };
    // y · SiLU(z) (4 FLOPs an element), then the RMS norm and its weight (4).
    let gated_norm = Layer {
        flops: 8.0 * tokens * e,
        activation_elems: tokens * e,
        saved_elems: 2.0 * tokens * e,
        ..Layer::default()
    };
    sum(&[
        linear(tokens, d, c.in_proj_dim() as f64),
        conv,
        ssd(c, shape, c.nheads()),
        gated_norm,
        linear(tokens, e, d),
    ])
}

/// QKᵀ, the softmax and AV under the causal mask: the fused kernel alone.
fn attention_core(c: &transformer::Config, shape: Shape) -> Layer {
    let (heads, kv_heads, hd) = (c.n_heads() as f64, c.n_kv_heads() as f64, c.head_dim as f64);
    let pairs = shape.batch * heads * shape.causal_pairs();
    let tokens = shape.tokens();
    // Q and O for the new tokens; K and V for every cached and new token.
    let keys = shape.batch * (shape.context + shape.new);
    let flops = 2.0 * 2.0 * pairs * hd + 5.0 * pairs;
    Layer {
        flops,
        core_flops: flops,
        core_elems: 2.0 * tokens * heads * hd + 2.0 * keys * kv_heads * hd,
        activation_elems: tokens * heads * hd,
        // The output and the softmax's log-sum-exp (FlashAttention's backward recomputes P).
        saved_elems: tokens * heads * (hd + 1.0),
    }
}

fn attention_layer(c: &transformer::Config, shape: Shape) -> Layer {
    let tokens = shape.tokens();
    let d = c.d_model as f64;
    let (q, kv) = (
        (c.n_heads() * c.head_dim) as f64,
        (c.n_kv_heads() * c.head_dim) as f64,
    );
    let rope = Layer {
        flops: 3.0 * tokens * (q + kv),
        activation_elems: tokens * (q + kv),
        ..Layer::default()
    };
    sum(&[
        linear(tokens, d, q + 2.0 * kv),
        rope,
        attention_core(c, shape),
        linear(tokens, q, d),
    ])
}

/// SwiGLU: gate and up projections, SiLU(gate)·up (4 FLOPs an element), down projection.
fn mlp(c: &transformer::Config, shape: Shape) -> Layer {
    let tokens = shape.tokens();
    let (d, f) = (c.d_model as f64, c.intermediate_size() as f64);
    let gate = Layer {
        flops: 4.0 * tokens * f,
        activation_elems: tokens * f,
        saved_elems: tokens * f,
        ..Layer::default()
    };
    sum(&[linear(tokens, d, 2.0 * f), gate, linear(tokens, f, d)])
}

fn sum(parts: &[Layer]) -> Layer {
    parts.iter().fold(Layer::default(), |a, b| Layer {
        flops: a.flops + b.flops,
        core_flops: a.core_flops + b.core_flops,
        core_elems: a.core_elems + b.core_elems,
        activation_elems: a.activation_elems + b.activation_elems,
        saved_elems: a.saved_elems + b.saved_elems,
    })
}

fn scale(layer: Layer, by: f64) -> Layer {
    Layer {
        flops: layer.flops * by,
        core_flops: layer.core_flops * by,
        core_elems: layer.core_elems * by,
        activation_elems: layer.activation_elems * by,
        saved_elems: layer.saved_elems * by,
    }
}

/// Weight bytes: everything at the compute dtype except the fp32 `A_log`, `D` (and the core
/// scan's Δ bias, Mamba-2's `dt_bias`).
fn param_bytes(cfg: &ModelConfig, component: Component, elt: f64) -> f64 {
    let params = cfg.params(component) as f64;
    let fp32 = match cfg {
        ModelConfig::Mamba(c) => {
            let per_layer = mamba_fp32_params(c);
            match component {
                Component::Core => params,
                Component::Mixer | Component::Block => per_layer,
                Component::Layers | Component::Model => per_layer * c.n_layers as f64,
            }
        }
        ModelConfig::Mamba2(c) => {
            let per_layer = mamba2_fp32_params(c);
            match component {
                Component::Core => params,
                Component::Mixer | Component::Block => per_layer,
                Component::Layers | Component::Model => per_layer * c.n_layers as f64,
            }
        }
        ModelConfig::Transformer(_) => 0.0,
        ModelConfig::Hybrid(c) => {
            let (mamba, mamba2) = (c.mamba(), c.mamba2());
            c.pattern
                .layers(c.n_layers)
                .map(|kind| match kind {
                    LayerKind::Mamba => mamba_fp32_params(&mamba),
                    LayerKind::Mamba2 => mamba2_fp32_params(&mamba2),
                    LayerKind::Attention | LayerKind::Mlp => 0.0,
                })
                .sum()
        }
    };
    fp32 * 4.0 + (params - fp32) * elt
}

/// A Mamba-1 mixer's `A_log` and `D`.
fn mamba_fp32_params(c: &mamba::Config) -> f64 {
    (c.d_inner() * (c.d_state + 1)) as f64
}

/// A Mamba-2 mixer's `A_log`, `D` and `dt_bias`, one of each per head.
fn mamba2_fp32_params(c: &mamba2::Config) -> f64 {
    (3 * c.nheads()) as f64
}

/// Decoding state at `context` tokens: the SSM layers' conv window (compute dtype) and fp32
/// state, fixed in size; the attention layers' keys and values, growing with the context.
pub fn state_bytes(cfg: &ModelConfig, batch: f64, context: f64, elt: f64) -> f64 {
    match cfg {
        ModelConfig::Mamba(c) => c.n_layers as f64 * mamba_state(c, batch, elt),
        ModelConfig::Mamba2(c) => c.n_layers as f64 * mamba2_state(c, batch, elt),
        ModelConfig::Transformer(c) => c.n_layers as f64 * kv_cache(c, batch, context, elt),
        ModelConfig::Hybrid(c) => {
            let (mamba, mamba2, transformer) = (c.mamba(), c.mamba2(), c.transformer());
            c.pattern
                .layers(c.n_layers)
                .map(|kind| match kind {
                    LayerKind::Mamba => mamba_state(&mamba, batch, elt),
                    LayerKind::Mamba2 => mamba2_state(&mamba2, batch, elt),
                    LayerKind::Attention => kv_cache(&transformer, batch, context, elt),
                    LayerKind::Mlp => 0.0,
                })
                .sum()
        }
    }
}

/// One Mamba-1 layer's conv window (batch, d_inner, d_conv) and state (batch, d_inner, N).
fn mamba_state(c: &mamba::Config, batch: f64, elt: f64) -> f64 {
    let e = c.d_inner() as f64;
    batch * e * (c.d_conv as f64 * elt + c.d_state as f64 * 4.0)
}

/// One Mamba-2 layer's conv window (batch, conv_dim, d_conv) and state (batch, H, P, N).
fn mamba2_state(c: &mamba2::Config, batch: f64, elt: f64) -> f64 {
    let (conv, ssm) = (c.conv_dim() * c.d_conv, c.d_inner() * c.d_state);
    batch * (conv as f64 * elt + ssm as f64 * 4.0)
}

/// One attention layer's keys and values at `context` tokens.
fn kv_cache(c: &transformer::Config, batch: f64, context: f64, elt: f64) -> f64 {
    let kv = (c.n_kv_heads() * c.head_dim) as f64;
    2.0 * batch * context * kv * elt
}

/// The bytes `spec` holds at its peak, at least, by the analytic model: the weights, what the
/// pass keeps (activations for backward, a decoding state), and, where that is more than the
/// kept activations, the input and output of the call. An inference pass keeps no activations,
/// but it cannot free its input before its output exists. Gradients, optimizer moments and
/// the intermediates inside a layer come on top, so the true peak is higher.
pub fn peak_bytes_at_least(spec: &RunSpec) -> f64 {
    let costs = costs(spec);
    costs.param_bytes + costs.state_bytes + costs.activation_bytes.max(call_bytes(spec))
}

/// The input and output of one call: hidden states (batch, tokens, d_model) in and out, or,
/// for a whole model, token ids in and logits (batch, tokens, vocab) out.
fn call_bytes(spec: &RunSpec) -> f64 {
    let element = bytes_per_element(spec.dtype);
    let tokens_per_sequence = match spec.pass {
        Pass::Decode => 1.0,
        _ => spec.seq_len as f64,
    };
    let tokens = spec.batch as f64 * tokens_per_sequence;
    let d_model = spec.config.d_model() as f64;
    let (input, output) = match spec.component {
        // Token ids are i64.
        Component::Model => (8.0, spec.config.vocab_size() as f64 * element),
        _ => (d_model * element, d_model * element),
    };
    tokens * (input + output)
}
