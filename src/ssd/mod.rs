//! The state-space dual (SSD) of Mamba-2 (Dao & Gu 2024, arXiv 2405.21060): a selective SSM
//! whose state transition is one scalar per head, A_t = exp(Δ_t · A) (Section 5, Eq. (16)).
//! Per head, with x_t ∈ ℝ^P (P = headdim) and B_t, C_t ∈ ℝ^N (N = d_state) shared by the
//! heads of a group:
//!
//!   h_t = exp(Δ_t A) · h_{t−1} + Δ_t · x_t B_tᵀ     (h_t ∈ ℝ^{P×N})
//!   y_t = h_t C_t
//!
//! Two implementations, compared by the tests on outputs, gradients and final states:
//!
//! - [`reference`]: the recurrence above, step by step (slow, obviously correct);
//! - [`chunked`]: the paper's block decomposition (Section 6, Listing 1) in libtorch matmuls:
//!   outputs within each chunk from the masked quadratic form, chunk states, a recurrence over
//!   chunks, and the states' contribution to outputs. Differentiable by autograd, on any
//!   device.
//!
//! The skip term D·x, the gate and the norm belong to the Mamba-2 block, not here.

mod chunked;
mod reference;

pub use chunked::{chunked, segsum};
pub use reference::reference;

use tch::{Kind, Tensor};

/// The inputs of one SSD call. `heads` must be a multiple of `groups`; head `h` reads the B
/// and C of group `h / (heads / groups)`, as in mamba_ssm.
#[derive(Debug, Clone, Copy)]
pub struct SsdInputs<'a> {
    /// (batch, seq_len, heads, headdim)
    pub x: &'a Tensor,
    /// Δ, positive, after the softplus and any clamp: (batch, seq_len, heads).
    pub dt: &'a Tensor,
    /// A < 0 per head: (heads,).
    pub a: &'a Tensor,
    /// (batch, seq_len, groups, d_state)
    pub b: &'a Tensor,
    /// (batch, seq_len, groups, d_state)
    pub c: &'a Tensor,
}

/// What an SSD call returns.
#[derive(Debug)]
pub struct SsdOutput {
    /// (batch, seq_len, heads, headdim), in x's dtype.
    pub y: Tensor,
    /// The state after the last step, fp32: (batch, heads, headdim, d_state).
    pub last_state: Tensor,
}

/// The sizes of a call, read off its tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SsdDims {
    pub batch: i64,
    pub seq_len: i64,
    pub heads: i64,
    pub headdim: i64,
    pub groups: i64,
    pub d_state: i64,
}

impl SsdInputs<'_> {
    /// The sizes, checked for consistency.
    ///
    /// # Panics
    /// If a shape disagrees with the others: a programming error, as the block builds them.
    pub fn dims(&self) -> SsdDims {
        let [batch, seq_len, heads, headdim] = self.x.size()[..] else {
            panic!(
                "x is (batch, seq_len, heads, headdim), got {:?}",
                self.x.size()
            );
        };
        let [_, _, groups, d_state] = self.b.size()[..] else {
            panic!(
                "B is (batch, seq_len, groups, d_state), got {:?}",
                self.b.size()
            );
        };
        assert_eq!(self.dt.size(), [batch, seq_len, heads], "Δ");
        assert_eq!(self.a.size(), [heads], "A");
        assert_eq!(self.b.size(), [batch, seq_len, groups, d_state], "B");
        assert_eq!(self.c.size(), [batch, seq_len, groups, d_state], "C");
        assert!(
            groups >= 1 && heads % groups == 0,
            "{heads} heads in {groups} groups"
        );
        SsdDims {
            batch,
            seq_len,
            heads,
            headdim,
            groups,
            d_state,
        }
    }
}

impl SsdDims {
    /// A zero state, fp32: (batch, heads, headdim, d_state).
    pub fn zero_state(&self, device: tch::Device) -> Tensor {
        Tensor::zeros(
            [self.batch, self.heads, self.headdim, self.d_state],
            (Kind::Float, device),
        )
    }
}
