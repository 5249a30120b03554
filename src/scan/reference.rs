//! The reference selective scan: a readable loop over time.
//!
//! Semantics follow mamba_ssm's `selective_scan_ref` (ops/selective_scan_interface.py):
//! zero-order hold for A, Euler for B, everything computed in fp32.

use super::ScanInputs;
use tch::{Kind, Tensor};

/// Runs the scan and returns `(y, last_state)`.
///
/// `initial_state` (batch, d_inner, d_state) continues a scan from where an earlier one stopped;
/// the returned last state (fp32, same shape) lets step-mode decoding continue from here.
pub fn selective_scan(inputs: &ScanInputs, initial_state: Option<&Tensor>) -> (Tensor, Tensor) {
    let Fp32 {
        u,
        a,
        b,
        c,
        delta,
        mut h,
    } = Fp32::new(inputs, initial_state);
    let seq_len = u.size()[2];

    // Eq. (4), zero-order hold: Ā = exp(Δ A), (batch, d_inner, seq_len, d_state).
    let delta_a = (delta.unsqueeze(-1) * a.unsqueeze(1)).exp();
    // Euler step for B: B̄ u = Δ B u, (batch, d_inner, seq_len, d_state).
    let delta_b_u = (&delta * &u).unsqueeze(-1) * b.transpose(1, 2).unsqueeze(1);

    let mut ys = Vec::with_capacity(seq_len as usize);
    for t in 0..seq_len {
        // Eq. (2a): h_t = Ā_t h_{t-1} + B̄_t u_t
        h = delta_a.select(2, t) * &h + delta_b_u.select(2, t);
        // Eq. (2b): y_t = C_t h_t, (batch, d_inner)
        ys.push(h.matmul(&c.select(2, t).unsqueeze(-1)).squeeze_dim(-1));
    }
    (skip_and_gate(Tensor::stack(&ys, 2), &u, inputs), h)
}

/// A scan's inputs in fp32, Δ already discretised, and the state to start from (zeros when
/// none is given): what every scan built from libtorch ops begins with.
pub(super) struct Fp32 {
    pub u: Tensor,
    pub a: Tensor,
    pub b: Tensor,
    pub c: Tensor,
    pub delta: Tensor,
    /// (batch, d_inner, d_state).
    pub h: Tensor,
}

impl Fp32 {
    pub fn new(inputs: &ScanInputs, initial_state: Option<&Tensor>) -> Self {
        let u = inputs.u.to_kind(Kind::Float);
        let a = inputs.a.to_kind(Kind::Float);
        let (batch, d_inner, _) = u.size3().expect("u is (batch, d_inner, seq_len)");
        let h = match initial_state {
            Some(state) => state.to_kind(Kind::Float),
            None => Tensor::zeros([batch, d_inner, a.size()[1]], (Kind::Float, u.device())),
        };
        Self {
            b: inputs.b.to_kind(Kind::Float),
            c: inputs.c.to_kind(Kind::Float),
            delta: step_sizes(inputs),
            u,
            a,
            h,
        }
    }
}

/// Δ = softplus(Δ + bias) in fp32, (batch, d_inner, seq_len), out of place throughout so that
/// autograd can differentiate through it.
pub(super) fn step_sizes(inputs: &ScanInputs) -> Tensor {
    let delta = inputs.delta.to_kind(Kind::Float);
    let delta = match inputs.delta_bias {
        Some(bias) => delta + bias.to_kind(Kind::Float).unsqueeze(-1),
        None => delta,
    };
    if inputs.delta_softplus {
        delta.softplus()
    } else {
        delta
    }
}

/// y + D·u, times SiLU(z), in `u`'s original dtype; `y` and `u` are fp32.
pub(super) fn skip_and_gate(y: Tensor, u: &Tensor, inputs: &ScanInputs) -> Tensor {
    let y = match inputs.d {
        Some(d) => y + u * d.to_kind(Kind::Float).unsqueeze(-1),
        None => y,
    };
    let y = match inputs.z {
        Some(z) => y * z.to_kind(Kind::Float).silu(),
        None => y,
    };
    y.to_kind(inputs.u.kind())
}
