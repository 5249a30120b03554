//! The SSD recurrence, one step at a time (the module docs' two equations), in fp32 libtorch
//! operations that autograd differentiates: the twin the chunked algorithm is tested against.

use super::{SsdInputs, SsdOutput};
use tch::{Kind, Tensor};

/// Runs the recurrence from `initial_state` (fp32, (batch, heads, headdim, d_state); zeros if
/// absent).
pub fn reference(inputs: &SsdInputs, initial_state: Option<&Tensor>) -> SsdOutput {
    let dims = inputs.dims();
    let fp32 = |t: &Tensor| t.to_kind(Kind::Float);
    let (x, dt, a) = (fp32(inputs.x), fp32(inputs.dt), fp32(inputs.a));
    // Each head reads its group's B and C: (batch, seq_len, heads, d_state).
    let heads_per_group = dims.heads / dims.groups;
    let per_head = |t: &Tensor| fp32(t).repeat_interleave_self_int(heads_per_group, 2, None);
    let (b, c) = (per_head(inputs.b), per_head(inputs.c));
    let mut h = match initial_state {
        Some(state) => fp32(state),
        None => dims.zero_state(x.device()),
    };
    if dims.seq_len == 0 {
        return SsdOutput {
            y: inputs.x.shallow_clone(),
            last_state: h,
        };
    }
    let mut ys = Vec::with_capacity(dims.seq_len as usize);
    for t in 0..dims.seq_len {
        let dt_t = dt.select(1, t); // (batch, heads)
        let decay = (&dt_t * &a).exp().view([dims.batch, dims.heads, 1, 1]);
        // Δ_t · x_t B_tᵀ: (batch, heads, headdim, 1) × (batch, heads, 1, d_state).
        let x_dt = (x.select(1, t) * dt_t.unsqueeze(-1)).unsqueeze(-1);
        h = decay * &h + x_dt * b.select(1, t).unsqueeze(2);
        // y_t = h_t C_t: (batch, heads, headdim).
        ys.push(h.matmul(&c.select(1, t).unsqueeze(-1)).squeeze_dim(-1));
    }
    SsdOutput {
        y: Tensor::stack(&ys, 1).to_kind(inputs.x.kind()),
        last_state: h,
    }
}
