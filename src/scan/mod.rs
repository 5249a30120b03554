//! Selective-scan implementations (S6, Gu & Dao 2023, Algorithm 2).
//!
//! Every fast scan has the reference loop in [`reference`] as its obviously correct twin.

pub mod reference;

use tch::Tensor;

/// The inputs of one selective scan, with mamba_ssm's layout: channels before length.
#[derive(Debug, Clone, Copy)]
pub struct ScanInputs<'a> {
    /// Input sequence u: (batch, d_inner, seq_len).
    pub u: &'a Tensor,
    /// Step sizes Δ before the bias and softplus: (batch, d_inner, seq_len).
    pub delta: &'a Tensor,
    /// State matrix A (diagonal, so one row per channel): (d_inner, d_state), fp32.
    pub a: &'a Tensor,
    /// Input-dependent B: (batch, d_state, seq_len).
    pub b: &'a Tensor,
    /// Input-dependent C: (batch, d_state, seq_len).
    pub c: &'a Tensor,
    /// Skip connection D: (d_inner,), fp32.
    pub d: Option<&'a Tensor>,
    /// Gate z: (batch, d_inner, seq_len); the output is multiplied by SiLU(z).
    pub z: Option<&'a Tensor>,
    /// dt_proj's bias, added to Δ before the softplus: (d_inner,).
    pub delta_bias: Option<&'a Tensor>,
    /// Apply Δ = softplus(Δ + bias), as every Mamba layer does.
    pub delta_softplus: bool,
}

/// Which implementation computes the scan. Recorded in every result row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScanImpl {
    /// A plain sequential loop over time with mamba_ssm's `selective_scan_ref` semantics.
    #[default]
    Reference,
}

impl ScanImpl {
    pub fn name(self) -> &'static str {
        match self {
            ScanImpl::Reference => "reference",
        }
    }

    /// y (batch, d_inner, seq_len) in the dtype of `u`.
    pub fn scan(self, inputs: &ScanInputs) -> Tensor {
        match self {
            ScanImpl::Reference => reference::selective_scan(inputs, None).0,
        }
    }
}
