//! Mamba-2: the SSD block and language model.
//!
//! Paper: Dao & Gu, "Transformers are SSMs: Generalized Models and Efficient Algorithms
//! Through Structured State Space Duality", arXiv 2405.21060 (Section 7.1 and Figure 6, the
//! Mamba-2 block; Section 6, the SSD algorithm, in `crate::ssd`).
//! Reference implementation: state-spaces/mamba, `mamba_ssm/modules/mamba2.py`. Parameter
//! names mirror HF transformers' `Mamba2ForCausalLM`, so checkpoints load unrenamed.
//!
//! Against Mamba-1 the block changes in four ways: one projection makes every input at once
//! (z, x, B, C and Δ, in parallel rather than Δ, B, C from x); A is one scalar per head; B and
//! C are shared by the heads of a group, as keys and values are shared in grouped-query
//! attention; and a norm sits before the output projection.
//!
//! Initialisation follows mamba_ssm, which trains these models from scratch: A from
//! U(1, 16) per head. HF initialises A_log from log(1, …, H) instead, a choice that only
//! matters before training; a loaded checkpoint overwrites either.

use super::backbone::{Backbone, BackboneShape, SSM_NAMES};
use super::init::drawn;
use super::layer::Layer;
use super::residual::{PreNorm, MIXER_BLOCK};
use crate::causal_conv;
use crate::ssd::{self, SsdInputs};
use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, Kind, Tensor};

/// Δ is initialised log-uniformly in [DT_MIN, DT_MAX] (mamba2.py defaults).
const DT_MIN: f64 = 1e-3;
const DT_MAX: f64 = 0.1;
const DT_INIT_FLOOR: f64 = 1e-4;
/// A = −U(A_INIT_LOW, A_INIT_HIGH) per head (mamba2.py's `A_init_range`).
const A_INIT_LOW: f64 = 1.0;
const A_INIT_HIGH: f64 = 16.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub d_model: i64,
    #[serde(default = "defaults::n_layers")]
    pub n_layers: i64,
    #[serde(default = "defaults::vocab_size")]
    pub vocab_size: i64,
    /// N, the state size per head and channel.
    #[serde(default = "defaults::d_state")]
    pub d_state: i64,
    #[serde(default = "defaults::d_conv")]
    pub d_conv: i64,
    /// E: d_inner = E · d_model.
    #[serde(default = "defaults::expand")]
    pub expand: i64,
    /// P, the channels per head: d_inner / headdim heads.
    #[serde(default = "defaults::headdim")]
    pub headdim: i64,
    /// Groups of heads that share B and C.
    #[serde(default = "defaults::ngroups")]
    pub ngroups: i64,
    /// Steps per chunk of the SSD algorithm. It changes the cost, never the result.
    #[serde(default = "defaults::chunk_size")]
    pub chunk_size: i64,
    /// Clamp Δ into [low, high] after the softplus (HF `time_step_limit`); `None` for mamba_ssm's
    /// default (0, ∞), which clamps nothing.
    #[serde(default)]
    pub dt_limit: Option<[f64; 2]>,
    /// ε of the block norms and of the gated norm.
    #[serde(default = "defaults::norm_eps")]
    pub norm_eps: f64,
    /// Biases on `in_proj` and `out_proj` (HF `use_bias`).
    #[serde(default)]
    pub proj_bias: bool,
    /// A bias on the depthwise convolution (HF `use_conv_bias`).
    #[serde(default = "defaults::yes")]
    pub conv_bias: bool,
    /// Carry the residual stream in fp32 whatever the compute dtype, as mamba_ssm does.
    #[serde(default = "defaults::yes")]
    pub residual_in_fp32: bool,
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
    pub fn d_state() -> i64 {
        128
    }
    pub fn d_conv() -> i64 {
        4
    }
    pub fn expand() -> i64 {
        2
    }
    pub fn headdim() -> i64 {
        64
    }
    pub fn ngroups() -> i64 {
        1
    }
    pub fn chunk_size() -> i64 {
        256
    }
    pub fn norm_eps() -> f64 {
        1e-5
    }
    pub fn yes() -> bool {
        true
    }
}

impl Config {
    pub fn new(d_model: i64) -> Self {
        Self {
            d_model,
            n_layers: defaults::n_layers(),
            vocab_size: defaults::vocab_size(),
            d_state: defaults::d_state(),
            d_conv: defaults::d_conv(),
            expand: defaults::expand(),
            headdim: defaults::headdim(),
            ngroups: defaults::ngroups(),
            chunk_size: defaults::chunk_size(),
            dt_limit: None,
            norm_eps: defaults::norm_eps(),
            proj_bias: false,
            conv_bias: true,
            residual_in_fp32: true,
            tie_embeddings: true,
        }
    }

    pub fn d_inner(&self) -> i64 {
        self.expand * self.d_model
    }

    /// H = d_inner / headdim.
    pub fn nheads(&self) -> i64 {
        self.d_inner() / self.headdim
    }

    /// The convolution's channels: x, B and C.
    pub fn conv_dim(&self) -> i64 {
        self.d_inner() + 2 * self.ngroups * self.d_state
    }

    /// `in_proj`'s outputs: z, then x B C, then Δ, one per head.
    pub fn in_proj_dim(&self) -> i64 {
        self.d_inner() + self.conv_dim() + self.nheads()
    }

    /// Why the sizes cannot make a block, or `None` when they can.
    pub fn invalid(&self) -> Option<String> {
        if let Some([low, high]) = self.dt_limit.filter(|limit| !is_dt_limit(*limit)) {
            return Some(format!(
                "dt_limit [{low}, {high}] is not an interval of steps ≥ 0"
            ));
        }
        self.invalid_heads(self.d_inner(), "d_inner = expand · d_model")
    }

    /// Why `channels` (d_inner for a block, d_model for the core op alone) cannot split into
    /// heads of `headdim` and the heads into `ngroups` groups, or `None` when they can.
    pub fn invalid_heads(&self, channels: i64, what: &str) -> Option<String> {
        if self.headdim < 1 || channels % self.headdim != 0 {
            return Some(format!(
                "headdim {} does not divide {what} = {channels}",
                self.headdim
            ));
        }
        let heads = channels / self.headdim;
        if self.ngroups < 1 || heads % self.ngroups != 0 {
            return Some(format!(
                "ngroups {} does not divide the {heads} heads of {what} = {channels}",
                self.ngroups
            ));
        }
        None
    }

    /// Parameters of one mixer, by the shapes in [`Mixer::new`].
    pub fn mixer_params(&self) -> i64 {
        let (d, di, h) = (self.d_model, self.d_inner(), self.nheads());
        let bias = |width: i64, present: bool| if present { width } else { 0 };
        let in_proj = d * self.in_proj_dim() + bias(self.in_proj_dim(), self.proj_bias);
        let conv1d = self.conv_dim() * self.d_conv + bias(self.conv_dim(), self.conv_bias);
        let dt_bias_a_log_d = 3 * h;
        let norm = di;
        let out_proj = di * d + bias(d, self.proj_bias);
        in_proj + conv1d + dt_bias_a_log_d + norm + out_proj
    }

    /// Parameters of one residual block: its norm and mixer.
    pub fn block_params(&self) -> i64 {
        self.d_model + self.mixer_params()
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

    /// Parameters of the language model: embedding, blocks, final norm and, when untied, the
    /// LM head.
    pub fn model_params(&self) -> i64 {
        self.backbone_shape()
            .model_params(self.n_layers * self.block_params())
    }
}

/// Δ = softplus(dt + dt_bias), clamped to `dt_limit` where one is set (transformers'
/// `time_step_limit`), in fp32: the step size of every mode, and of the core op alone.
pub fn delta(dt: &Tensor, dt_bias: &Tensor, dt_limit: Option<[f64; 2]>) -> Tensor {
    let dt = (dt.to_kind(Kind::Float) + dt_bias).softplus();
    match dt_limit {
        Some([low, high]) => dt.clamp(low, high),
        None => dt,
    }
}

/// Whether [low, high] can bound Δ: 0 ≤ low < high (high may be ∞).
pub fn is_dt_limit([low, high]: [f64; 2]) -> bool {
    low >= 0.0 && low < high
}

/// What one mixer carries from token to token: fixed in size, whatever the context length.
#[derive(Debug)]
pub struct LayerState {
    /// The last `d_conv` convolution inputs (x, B and C before the convolution):
    /// (batch, conv_dim, d_conv).
    pub conv: Tensor,
    /// The SSM state: (batch, nheads, headdim, d_state), fp32.
    pub ssm: Tensor,
}

impl Clone for LayerState {
    fn clone(&self) -> Self {
        Self {
            conv: self.conv.shallow_clone(),
            ssm: self.ssm.shallow_clone(),
        }
    }
}

/// RMSNorm(y · SiLU(z)) · w, normalised over each group of d_inner / ngroups channels
/// (mamba_ssm's `RMSNormGated` with `norm_before_gate=False` and `group_size = d_inner /
/// ngroups`). HF's PyTorch path normalises over all of d_inner, which differs when
/// ngroups > 1; its CUDA path, like mamba_ssm, is grouped, and so is this.
#[derive(Debug)]
pub struct GatedRmsNorm {
    weight: Tensor,
    groups: i64,
    eps: f64,
}

impl GatedRmsNorm {
    pub fn new(p: nn::Path, dim: i64, groups: i64, eps: f64) -> Self {
        Self {
            weight: p.ones("weight", &[dim]),
            groups,
            eps,
        }
    }

    /// y and z (..., d_inner) → (..., d_inner) in y's dtype, computed in fp32.
    pub fn forward(&self, y: &Tensor, z: &Tensor) -> Tensor {
        let kind = y.kind();
        let mut sizes = y.size();
        let dim = sizes.pop().expect("y has a channel dimension");
        let gated = y.to_kind(Kind::Float) * z.to_kind(Kind::Float).silu();
        let mut grouped = sizes.clone();
        grouped.extend([self.groups, dim / self.groups]);
        let gated = gated.reshape(&grouped);
        let rms = (gated.square().mean_dim(-1, true, Kind::Float) + self.eps).rsqrt();
        sizes.push(dim);
        (gated * rms).reshape(&sizes).to_kind(kind) * &self.weight
    }
}

/// The Mamba-2 mixer (paper Figure 6; `Mamba2` in mamba2.py).
#[derive(Debug)]
pub struct Mixer {
    in_proj: nn::Linear,
    conv1d: nn::Conv1D,
    dt_bias: Tensor,
    a_log: Tensor,
    d: Tensor,
    norm: GatedRmsNorm,
    out_proj: nn::Linear,
    d_inner: i64,
    d_state: i64,
    nheads: i64,
    headdim: i64,
    ngroups: i64,
    chunk_size: i64,
    dt_limit: Option<[f64; 2]>,
}

/// One step's or one sequence's inputs to the SSD, after the projection and the convolution:
/// x (…, nheads, headdim), B and C (…, ngroups, d_state), Δ (…, nheads) in fp32.
struct Selected {
    x: Tensor,
    b: Tensor,
    c: Tensor,
    dt: Tensor,
}

impl Mixer {
    pub fn new(p: nn::Path, cfg: &Config) -> Self {
        if let Some(why) = cfg.invalid() {
            panic!("a Mamba-2 block of this configuration cannot be built: {why}");
        }
        let (d, di, h) = (cfg.d_model, cfg.d_inner(), cfg.nheads());
        // PyTorch's defaults for nn.Linear and nn.Conv1d, which mamba_ssm keeps: U(±1/√fan_in)
        // for weights and biases alike (tch's own default is √6 times wider).
        let torch_default = |fan_in: i64| {
            let bound = 1.0 / (fan_in as f64).sqrt();
            drawn(nn::Init::Uniform {
                lo: -bound,
                up: bound,
            })
        };
        let proj = |fan_in| nn::LinearConfig {
            ws_init: torch_default(fan_in),
            bs_init: Some(nn::Init::Const(0.0)),
            bias: cfg.proj_bias,
        };
        let in_proj = nn::linear(&p / "in_proj", d, cfg.in_proj_dim(), proj(d));
        let conv_dim = cfg.conv_dim();
        let conv_cfg = nn::ConvConfig {
            groups: conv_dim,
            padding: cfg.d_conv - 1,
            bias: cfg.conv_bias,
            ws_init: torch_default(cfg.d_conv),
            bs_init: torch_default(cfg.d_conv),
            ..Default::default()
        };
        let conv1d = nn::conv1d(&p / "conv1d", conv_dim, conv_dim, cfg.d_conv, conv_cfg);

        // Δ's bias: softplus⁻¹(dt) with dt log-uniform in [DT_MIN, DT_MAX], one per head.
        let f32_on = (Kind::Float, p.device());
        let log_span = DT_MAX.ln() - DT_MIN.ln();
        let dt = (Tensor::rand([h], f32_on) * log_span + DT_MIN.ln())
            .exp()
            .clamp_min(DT_INIT_FLOOR);
        let inv_softplus = &dt + (-(-&dt).expm1()).log(); // dt + log(1 − exp(−dt))
        let dt_bias = p.var_copy("dt_bias", &inv_softplus);
        // A < 0, one scalar per head, stored as log(−A).
        let a = Tensor::rand([h], f32_on) * (A_INIT_HIGH - A_INIT_LOW) + A_INIT_LOW;
        let a_log = p.var_copy("A_log", &a.log());
        let d_skip = p.var("D", &[h], nn::Init::Const(1.0));
        // HF's gated norm takes `layer_norm_epsilon`, as the block norms do; mamba2.py fixes
        // it at 1e-5, the default of both.
        let norm = GatedRmsNorm::new(&p / "norm", di, cfg.ngroups, cfg.norm_eps);
        let out_proj = nn::linear(&p / "out_proj", di, d, proj(di));
        // mamba_ssm's `rescale_prenorm_residual`, as for Mamba-1.
        tch::no_grad(|| {
            let _ = out_proj
                .ws
                .shallow_clone()
                .g_div_scalar_((cfg.n_layers.max(1) as f64).sqrt());
        });
        Self {
            in_proj,
            conv1d,
            dt_bias,
            a_log,
            d: d_skip,
            norm,
            out_proj,
            d_inner: di,
            d_state: cfg.d_state,
            nheads: h,
            headdim: cfg.headdim,
            ngroups: cfg.ngroups,
            chunk_size: cfg.chunk_size,
            dt_limit: cfg.dt_limit,
        }
    }

    /// A = −exp(A_log), (nheads,), in fp32.
    fn a(&self) -> Tensor {
        -self.a_log.to_kind(Kind::Float).exp()
    }

    /// `in_proj`'s output (..., in_proj_dim) split into z (..., d_inner), the convolution's
    /// input x B C (..., conv_dim) and the raw Δ (..., nheads), in that order.
    fn split_projection(&self, zxbcdt: &Tensor) -> (Tensor, Tensor, Tensor) {
        let conv_dim = self.d_inner + 2 * self.ngroups * self.d_state;
        let last = zxbcdt.dim() as i64 - 1;
        (
            zxbcdt.narrow(last, 0, self.d_inner),
            zxbcdt.narrow(last, self.d_inner, conv_dim),
            zxbcdt.narrow(last, self.d_inner + conv_dim, self.nheads),
        )
    }

    /// The convolution's output (..., conv_dim) split into x, B and C by head and group, and
    /// Δ = softplus(dt + dt_bias), clamped to `dt_limit`, in fp32.
    fn select(&self, xbc: &Tensor, dt_raw: &Tensor) -> Selected {
        let last = xbc.dim() as i64 - 1;
        let mut lead = xbc.size();
        lead.pop();
        let shaped = |start: i64, width: i64, split: [i64; 2]| {
            let mut sizes = lead.clone();
            sizes.extend(split);
            xbc.narrow(last, start, width).reshape(&sizes)
        };
        let gn = self.ngroups * self.d_state;
        let x = shaped(0, self.d_inner, [self.nheads, self.headdim]);
        let b = shaped(self.d_inner, gn, [self.ngroups, self.d_state]);
        let c = shaped(self.d_inner + gn, gn, [self.ngroups, self.d_state]);
        let dt = delta(dt_raw, &self.dt_bias, self.dt_limit);
        Selected { x, b, c, dt }
    }

    /// y = SSD + D·x, gated and normalised, then projected out: (..., nheads, headdim) →
    /// (..., d_model).
    fn output(&self, y: &Tensor, x: &Tensor, z: &Tensor) -> Tensor {
        let d = self.d.view([self.nheads, 1]);
        let y = (y.to_kind(Kind::Float) + x.to_kind(Kind::Float) * d).to_kind(x.kind());
        let mut sizes = y.size();
        sizes.truncate(sizes.len() - 2);
        sizes.push(self.d_inner);
        self.out_proj
            .forward(&self.norm.forward(&y.reshape(&sizes), z))
    }

    /// The parallel pass over tokens that follow `prior` (or nothing); with `keep_state`, also
    /// the state after the last token.
    fn parallel(
        &self,
        hidden: &Tensor,
        prior: Option<&LayerState>,
        keep_state: bool,
    ) -> (Tensor, Option<LayerState>) {
        let seq_len = hidden.size()[1];
        let (z, xbc, dt_raw) = self.split_projection(&self.in_proj.forward(hidden));
        // The convolution reads channels-major rows: (batch, conv_dim, seq_len).
        let xbc = xbc.transpose(1, 2);
        let d_conv = self.conv1d.ws.size()[2];
        let conv_state = keep_state.then(|| {
            let context = match prior {
                Some(state) => state.conv.shallow_clone(),
                None => {
                    let (batch, width, _) = xbc.size3().expect("(batch, conv_dim, seq_len)");
                    Tensor::zeros([batch, width, d_conv], (xbc.kind(), xbc.device()))
                }
            };
            Tensor::cat(&[&context, &xbc], 2).narrow(2, seq_len, d_conv)
        });
        let (weight, bias) = (&self.conv1d.ws, self.conv1d.bs.as_ref());
        let xbc = match prior {
            Some(state) => {
                let context = state.conv.narrow(2, 1, d_conv - 1);
                causal_conv::conv_silu_after(&xbc, weight, bias, &context)
            }
            None => causal_conv::conv_silu(&xbc, weight, bias),
        }
        .transpose(1, 2);
        let Selected { x, b, c, dt } = self.select(&xbc, &dt_raw);
        let a = self.a();
        let inputs = SsdInputs {
            x: &x,
            dt: &dt,
            a: &a,
            b: &b,
            c: &c,
        };
        let out = ssd::chunked(&inputs, self.chunk_size, prior.map(|p| &p.ssm));
        let state = conv_state.map(|conv| LayerState {
            conv,
            ssm: out.last_state,
        });
        (self.output(&out.y, &x, &z), state)
    }
}

impl Layer for Mixer {
    type State = LayerState;

    /// Prefill: the parallel pass over a prompt, and the state after its last token.
    fn prefill(&self, hidden: &Tensor) -> (Tensor, LayerState) {
        let (out, state) = self.parallel(hidden, None, true);
        (out, state.expect("asked for the state"))
    }

    /// The parallel pass over a chunk that follows `state`, which it advances past the chunk.
    fn extend(&self, hidden: &Tensor, state: &mut LayerState) -> Tensor {
        let (out, next) = self.parallel(hidden, Some(state), true);
        *state = next.expect("asked for the state");
        out
    }

    /// One token, (batch, d_model) → (batch, d_model): the SSD recurrence (the module docs of
    /// `crate::ssd`) advanced by one step.
    fn step(&self, hidden: &Tensor, state: &mut LayerState) -> Tensor {
        let kind = hidden.kind();
        let (z, xbc, dt_raw) = self.split_projection(&self.in_proj.forward(hidden));
        let d_conv = state.conv.size()[2];
        state.conv = Tensor::cat(&[state.conv.narrow(2, 1, d_conv - 1), xbc.unsqueeze(2)], 2);
        let weight = self.conv1d.ws.squeeze_dim(1); // (conv_dim, d_conv)
        let mut xbc = (&state.conv * weight).sum_dim_intlist(-1, false, kind);
        if let Some(bias) = &self.conv1d.bs {
            xbc += bias;
        }
        let Selected { x, b, c, dt } = self.select(&xbc.silu(), &dt_raw);
        // Each head reads its group's B and C: (batch, nheads, d_state).
        let per_head = |t: &Tensor| {
            t.to_kind(Kind::Float)
                .repeat_interleave_self_int(self.nheads / self.ngroups, 1, None)
        };
        let (b, c) = (per_head(&b), per_head(&c));
        let decay = (&dt * self.a()).exp().unsqueeze(-1).unsqueeze(-1); // (batch, nheads, 1, 1)
        let x32 = x.to_kind(Kind::Float);
        let input = (&x32 * dt.unsqueeze(-1)).unsqueeze(-1) * b.unsqueeze(2);
        state.ssm = &state.ssm * decay + input;
        let y = state.ssm.matmul(&c.unsqueeze(-1)).squeeze_dim(-1); // (batch, nheads, headdim)
        self.output(&y, &x, &z)
    }
}

impl Module for Mixer {
    /// (batch, seq_len, d_model) → (batch, seq_len, d_model).
    fn forward(&self, hidden: &Tensor) -> Tensor {
        self.parallel(hidden, None, false).0
    }
}

/// Pre-norm residual block: h + Mixer(RMSNorm(h)), with no MLP (mamba_ssm's `Block` with
/// `d_intermediate = 0`, as every Mamba-2 language model has it; HF's `Mamba2Block`).
pub type ResidualBlock = PreNorm<Mixer>;

impl ResidualBlock {
    pub fn new(p: nn::Path, cfg: &Config) -> Self {
        PreNorm::build(
            &p,
            MIXER_BLOCK,
            cfg.d_model,
            cfg.norm_eps,
            cfg.residual_in_fp32,
            |p| Mixer::new(p, cfg),
        )
    }
}

/// The Mamba-2 language model (`Mamba2ForCausalLM`).
pub type Mamba2Lm = Backbone<ResidualBlock>;

impl Mamba2Lm {
    pub fn new(p: nn::Path, cfg: &Config) -> Self {
        Backbone::build(&p, SSM_NAMES, cfg.backbone_shape(), |p, _| {
            ResidualBlock::new(p, cfg)
        })
    }
}
