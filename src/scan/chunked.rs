//! The chunked scan in libtorch operations: runs on any device, is differentiable by
//! autograd, and is correct by construction — the GPU path's fallback.
//!
//! Time is cut into chunks of `CHUNK` steps. Inside a chunk the recurrence
//! h_t = Ā_t h_{t−1} + B̄_t u_t (Eq. 2a) is an associative scan over pairs (Ā, B̄u) with
//! (a₁, b₁) ∘ (a₂, b₂) = (a₁a₂, a₂b₁ + b₂), computed with log₂(CHUNK) Hillis–Steele doubling
//! steps; the state at a chunk's end seeds the next. It materialises the chunk's
//! (batch, d_inner, CHUNK, d_state) states, never the whole sequence's, so a forward pass
//! needs memory independent of L (autograd keeps every chunk's for backward).

use super::reference::{skip_and_gate, Fp32};
use super::ScanInputs;
use tch::{Kind, Tensor};

/// Time steps per chunk: enough to keep kernel launches few, small enough for memory.
pub const CHUNK: i64 = 64;

/// Runs the scan from `initial_state` (zeros when `None`); returns y in `u`'s dtype and the
/// last state, (batch, d_inner, d_state) in fp32.
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
    let mut ys = Vec::with_capacity((seq_len / CHUNK + 1) as usize);
    let mut start = 0;
    while start < seq_len {
        let len = CHUNK.min(seq_len - start);
        let delta = delta.narrow(2, start, len);
        // Eq. (4): Ā = exp(ΔA) and B̄u = ΔBu, (batch, d_inner, len, d_state).
        let mut decay = (delta.unsqueeze(-1) * a.unsqueeze(1)).exp();
        let input = (&delta * u.narrow(2, start, len)).unsqueeze(-1)
            * b.narrow(2, start, len).transpose(1, 2).unsqueeze(1);
        // The carried state enters through the first step: h_0' = Ā_0 h + B̄_0 u_0.
        let first = input.narrow(2, 0, 1) + decay.narrow(2, 0, 1) * h.unsqueeze(2);
        let mut states = Tensor::cat(&[first, input.narrow(2, 1, len - 1)], 2);
        let mut offset = 1;
        while offset < len {
            let (head, tail) = (len - offset, offset);
            let reach = decay.narrow(2, tail, head);
            let combined = states.narrow(2, tail, head) + &reach * states.narrow(2, 0, head);
            states = Tensor::cat(&[states.narrow(2, 0, tail), combined], 2);
            decay = Tensor::cat(
                &[decay.narrow(2, 0, tail), reach * decay.narrow(2, 0, head)],
                2,
            );
            offset *= 2;
        }
        // Eq. (2b): y_t = C_t h_t.
        let c_chunk = c.narrow(2, start, len).transpose(1, 2).unsqueeze(1);
        ys.push((&states * c_chunk).sum_dim_intlist(-1, false, Kind::Float));
        h = states.select(2, len - 1);
        start += len;
    }
    (skip_and_gate(Tensor::cat(&ys, 2), &u, inputs), h)
}
