//! The pre-norm residual block, h + F(RMSNorm(h)), that every family builds its stack from:
//! Mamba and Mamba-2 with F their mixer (mamba_ssm's `Block`), Llama twice per layer, with F
//! attention and then the MLP, and hybrids with F whichever layer the pattern names.

use super::layer::Layer;
use super::norm::RmsNorm;
use tch::{nn, nn::Module, Kind, Tensor};

/// h + F(RMSNorm(h)).
#[derive(Debug)]
pub struct PreNorm<F> {
    norm: RmsNorm,
    inner: F,
    residual_in_fp32: bool,
}

/// Where a block's two parameters live under its path: mamba_ssm and HF's Mamba, Mamba-2 and
/// Nemotron-H use `norm` and `mixer`; Llama names each of its two blocks.
#[derive(Debug, Clone, Copy)]
pub struct BlockNames {
    pub norm: &'static str,
    pub inner: &'static str,
}

/// `norm` and `mixer`, the SSM families' names.
pub const MIXER_BLOCK: BlockNames = BlockNames {
    norm: "norm",
    inner: "mixer",
};

impl<F> PreNorm<F> {
    /// The norm at `p / names.norm`, then `inner` built at `p / names.inner`. With
    /// `residual_in_fp32` the stream between blocks stays fp32 under a reduced-precision
    /// compute dtype, as mamba_ssm keeps it.
    pub fn build(
        p: &nn::Path,
        names: BlockNames,
        d_model: i64,
        norm_eps: f64,
        residual_in_fp32: bool,
        inner: impl FnOnce(nn::Path) -> F,
    ) -> Self {
        let norm = RmsNorm::new(p / names.norm, d_model, norm_eps);
        Self {
            norm,
            inner: inner(p / names.inner),
            residual_in_fp32,
        }
    }

    /// The layer inside the residual.
    pub fn inner(&self) -> &F {
        &self.inner
    }

    /// F's input: `hidden` normalised in the compute dtype.
    pub fn normed(&self, hidden: &Tensor) -> Tensor {
        self.norm_and_residual(hidden).0
    }

    /// F's input, normalised in the compute dtype, and the residual it is added to.
    fn norm_and_residual(&self, hidden: &Tensor) -> (Tensor, Tensor) {
        let normed = self.norm.forward(&hidden.to_kind(self.norm.kind()));
        let residual = if self.residual_in_fp32 {
            hidden.to_kind(Kind::Float)
        } else {
            hidden.shallow_clone()
        };
        (normed, residual)
    }
}

impl<F: Module> Module for PreNorm<F> {
    fn forward(&self, hidden: &Tensor) -> Tensor {
        let (normed, residual) = self.norm_and_residual(hidden);
        residual + self.inner.forward(&normed)
    }
}

impl<F: Layer> Layer for PreNorm<F> {
    type State = F::State;

    fn prefill(&self, hidden: &Tensor) -> (Tensor, F::State) {
        let (normed, residual) = self.norm_and_residual(hidden);
        let (out, state) = self.inner.prefill(&normed);
        (residual + out, state)
    }

    fn extend(&self, hidden: &Tensor, state: &mut F::State) -> Tensor {
        let (normed, residual) = self.norm_and_residual(hidden);
        residual + self.inner.extend(&normed, state)
    }

    fn step(&self, hidden: &Tensor, state: &mut F::State) -> Tensor {
        let (normed, residual) = self.norm_and_residual(hidden);
        residual + self.inner.step(&normed, state)
    }
}
