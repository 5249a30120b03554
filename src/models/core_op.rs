//! The sequence-mixing operation alone, without projections: what the Mamba paper's Fig. 8
//! (left) times. For Mamba it is the selective scan (Algorithm 2, line 6) over `d_model`
//! channels with state size N; for the Transformer, causal fused attention
//! (`scaled_dot_product_attention`, FlashAttention-2 class on CUDA) over d_model / head_dim
//! heads; for Mamba-2, SSD (`crate::ssd::chunked`) plus the D skip over d_model / headdim
//! heads. Each reads its inputs in the layout its kernel wants.

use super::{mamba, mamba2, transformer, ModelConfig};
use crate::scan::{ScanImpl, ScanInputs};
use crate::ssd::{self, SsdInputs};
use tch::{nn, Kind, Tensor};

#[derive(Debug)]
pub enum CoreOp {
    Scan {
        /// (d_model, N), fp32, S4D-real as in [`mamba::Mixer`].
        a_log: Tensor,
        /// (d_model,), fp32.
        d: Tensor,
        /// Δ's bias inside the softplus, (d_model,), fp32.
        delta_bias: Tensor,
        d_state: i64,
        scan: ScanImpl,
    },
    Ssd {
        /// (heads,), fp32, as in [`mamba2::Mixer`].
        a_log: Tensor,
        /// (heads,), fp32.
        d: Tensor,
        /// (heads,), fp32.
        dt_bias: Tensor,
        heads: i64,
        headdim: i64,
        groups: i64,
        d_state: i64,
        chunk_size: i64,
        /// The clamp of Δ, as in [`mamba2::Mixer`], so that the op does the mixer's work.
        dt_limit: Option<[f64; 2]>,
    },
    Attention {
        n_heads: i64,
        n_kv_heads: i64,
        head_dim: i64,
    },
}

impl CoreOp {
    /// # Panics
    /// For a hybrid, which has no single core operation ([`super::Family::has_component`]).
    pub fn new(p: nn::Path, cfg: &ModelConfig) -> Self {
        match cfg {
            ModelConfig::Mamba(c) => Self::scan(p, c),
            ModelConfig::Mamba2(c) => Self::ssd(p, c),
            ModelConfig::Transformer(c) => Self::attention(c),
            ModelConfig::Hybrid(_) => panic!("a hybrid has no single core operation"),
        }
    }

    /// SSD over d_model channels: d_model / headdim heads, A from −(1, …, heads) (HF's
    /// deterministic choice, so that every run times the same decays).
    fn ssd(p: nn::Path, cfg: &mamba2::Config) -> Self {
        let heads = cfg.d_model / cfg.headdim;
        let a = Tensor::arange_start(1, heads + 1, (Kind::Float, p.device()));
        let inv_softplus = (0.01f64.exp() - 1.0).ln();
        Self::Ssd {
            a_log: p.var_copy("A_log", &a.log()),
            d: p.var("D", &[heads], nn::Init::Const(1.0)),
            dt_bias: p.var("dt_bias", &[heads], nn::Init::Const(inv_softplus)),
            heads,
            headdim: cfg.headdim,
            groups: cfg.ngroups,
            d_state: cfg.d_state,
            chunk_size: cfg.chunk_size,
            dt_limit: cfg.dt_limit,
        }
    }

    fn scan(p: nn::Path, cfg: &mamba::Config) -> Self {
        let (d, n) = (cfg.d_model, cfg.d_state);
        let a = Tensor::arange_start(1, n + 1, (Kind::Float, p.device())).repeat([d, 1]);
        // softplus⁻¹(0.01): Δ starts inside mamba_simple.py's initial range.
        let inv_softplus = (0.01f64.exp() - 1.0).ln();
        Self::Scan {
            a_log: p.var_copy("A_log", &a.log()),
            d: p.var("D", &[d], nn::Init::Const(1.0)),
            delta_bias: p.var("delta_bias", &[d], nn::Init::Const(inv_softplus)),
            d_state: n,
            scan: cfg.scan,
        }
    }

    fn attention(cfg: &transformer::Config) -> Self {
        Self::Attention {
            n_heads: cfg.n_heads(),
            n_kv_heads: cfg.n_kv_heads(),
            head_dim: cfg.head_dim,
        }
    }

    /// Random inputs for `batch` sequences of `seq_len`: u, Δ, B, C, z for the scan, time on
    /// dimension 2 — (batch, channels or N, seq_len); x, Δ, B, C for SSD, time on dimension 1 —
    /// (batch, seq_len, heads, headdim), (batch, seq_len, heads) and (batch, seq_len, groups,
    /// N); q, k, v for attention — (batch, heads, seq_len, head_dim).
    pub fn random_inputs(
        &self,
        batch: i64,
        seq_len: i64,
        d_model: i64,
        kind: Kind,
        device: tch::Device,
    ) -> Vec<Tensor> {
        let randn = |shape: &[i64]| Tensor::randn(shape, (kind, device));
        match self {
            CoreOp::Scan { d_state, .. } => vec![
                randn(&[batch, d_model, seq_len]),
                randn(&[batch, d_model, seq_len]),
                randn(&[batch, *d_state, seq_len]),
                randn(&[batch, *d_state, seq_len]),
                randn(&[batch, d_model, seq_len]),
            ],
            CoreOp::Ssd {
                heads,
                headdim,
                groups,
                d_state,
                ..
            } => vec![
                randn(&[batch, seq_len, *heads, *headdim]),
                randn(&[batch, seq_len, *heads]),
                randn(&[batch, seq_len, *groups, *d_state]),
                randn(&[batch, seq_len, *groups, *d_state]),
            ],
            CoreOp::Attention {
                n_heads,
                n_kv_heads,
                head_dim,
            } => vec![
                randn(&[batch, *n_heads, seq_len, *head_dim]),
                randn(&[batch, *n_kv_heads, seq_len, *head_dim]),
                randn(&[batch, *n_kv_heads, seq_len, *head_dim]),
            ],
        }
    }

    /// y = scan(u, Δ, A, B, C, D, z), y = SSD(x, softplus(Δ + bias), A, B, C) + D·x, or
    /// y = softmax(QKᵀ/√d + causal mask) V.
    pub fn forward(&self, inputs: &[Tensor]) -> Tensor {
        match self {
            CoreOp::Scan {
                a_log,
                d,
                delta_bias,
                scan,
                ..
            } => {
                let a = -a_log.exp();
                scan.scan(&ScanInputs {
                    u: &inputs[0],
                    delta: &inputs[1],
                    a: &a,
                    b: &inputs[2],
                    c: &inputs[3],
                    d: Some(d),
                    z: Some(&inputs[4]),
                    delta_bias: Some(delta_bias),
                    delta_softplus: true,
                })
            }
            CoreOp::Ssd {
                a_log,
                d,
                dt_bias,
                heads,
                chunk_size,
                dt_limit,
                ..
            } => {
                let a = -a_log.exp();
                let dt = mamba2::delta(&inputs[1], dt_bias, *dt_limit);
                let x = &inputs[0];
                let y = ssd::chunked(
                    &SsdInputs {
                        x,
                        dt: &dt,
                        a: &a,
                        b: &inputs[2],
                        c: &inputs[3],
                    },
                    *chunk_size,
                    None,
                )
                .y;
                y + x * d.view([*heads, 1]).to_kind(x.kind())
            }
            CoreOp::Attention {
                n_heads,
                n_kv_heads,
                ..
            } => Tensor::scaled_dot_product_attention(
                &inputs[0],
                &inputs[1],
                &inputs[2],
                None::<&Tensor>,
                0.0,
                true,
                None,
                n_kv_heads != n_heads,
            ),
        }
    }
}
