//! SSD by blocks (Dao & Gu 2024, Section 6 and Listing 1): the sequence is cut into chunks of
//! T steps, and per head
//!
//! 1. within each chunk, y_t = Σ_{s≤t} (C_tᵀ B_s) · exp(Σ_{k=s+1..t} Δ_k A) · Δ_s x_s: the
//!    quadratic, attention-like form, masked by the decays (Eq. (18)'s 1-semiseparable L);
//! 2. each chunk's own contribution to the state at its end,
//!    Σ_s exp(Σ_{k=s+1..T−1} Δ_k A) · Δ_s x_s B_sᵀ;
//! 3. the recurrence across chunks, a 1-semiseparable product over the chunks' total decays,
//!    which gives the state entering each chunk (the caller's initial state entering the first)
//!    and the state after the last;
//! 4. the entering state's share of each output, exp(Σ_{k≤t} Δ_k A) · h_enter C_t.
//!
//! Everything is batched matmuls over (batch, chunk, group, head-in-group); no (L, L) mask is
//! ever built, only (T, T) ones per chunk. The decays are summed in fp32 as segment sums
//! ([`segsum`]), never as differences of cumulative sums, which cancel catastrophically once
//! the sums grow large. Inputs are computed in fp32 and y is returned in x's dtype.

use super::{SsdInputs, SsdOutput};
use tch::{Kind, Tensor};

/// Segment sums: for x (..., T), the (..., T, T) tensor whose (i, j) entry is
/// Σ_{k=j+1..i} x_k for i ≥ j (0 on the diagonal) and −∞ above it, so that its exp is the
/// lower-triangular decay mask. Each entry is a sum of the x_k themselves (a cumulative sum of
/// a masked copy), not a difference of two prefix sums.
pub fn segsum(x: &Tensor) -> Tensor {
    let mut sizes = x.size();
    let t = *sizes
        .last()
        .expect("segsum of a tensor with at least one dimension");
    sizes.push(t);
    let ones = Tensor::ones([t, t], (Kind::Bool, x.device()));
    let strictly_below = ones.tril(-1);
    let on_or_below = ones.tril(0);
    // (..., k, j) = x_k where k > j, else 0; summed over k ≤ i.
    let terms = x
        .unsqueeze(-1)
        .expand(&sizes, false)
        .masked_fill(&strictly_below.logical_not(), 0.0);
    terms
        .cumsum(-2, None::<Kind>)
        .masked_fill(&on_or_below.logical_not(), f64::NEG_INFINITY)
}

/// SSD in chunks of `chunk` steps (the last one padded with steps of Δ = 0, which leave the
/// state unchanged), from `initial_state` (fp32, (batch, heads, headdim, d_state); zeros if
/// absent). Equals [`super::reference`] for every chunk size.
///
/// # Panics
/// If `chunk` is 0 or the inputs' shapes disagree.
pub fn chunked(inputs: &SsdInputs, chunk: i64, initial_state: Option<&Tensor>) -> SsdOutput {
    assert!(chunk >= 1, "chunks of {chunk} steps");
    let dims = inputs.dims();
    let device = inputs.x.device();
    let h0 = match initial_state {
        Some(state) => state.to_kind(Kind::Float),
        None => dims.zero_state(device),
    };
    let (batch, len, heads, p, groups, n) = (
        dims.batch,
        dims.seq_len,
        dims.heads,
        dims.headdim,
        dims.groups,
        dims.d_state,
    );
    if len == 0 {
        return SsdOutput {
            y: inputs.x.shallow_clone(),
            last_state: h0,
        };
    }
    let r = heads / groups;
    let t = chunk.min(len);
    let chunks = (len + t - 1) / t;
    let padded = chunks * t;
    // Zeros after the last step, along the sequence (dim 1).
    let pad = |x: &Tensor| {
        let x = x.to_kind(Kind::Float);
        if padded == len {
            return x;
        }
        let mut spec = vec![0; 2 * (x.dim() - 2)];
        spec.extend([0, padded - len]);
        x.constant_pad_nd(spec)
    };
    // Per (batch, chunk, group, head in group, step): Δ and ΔA.
    let by_chunk = |x: Tensor| {
        x.view([batch, chunks, t, groups, r])
            .permute([0, 1, 3, 4, 2])
    };
    let dt = by_chunk(pad(inputs.dt));
    let da = &dt * inputs.a.to_kind(Kind::Float).view([groups, r, 1]);
    // Δ_s x_s: (batch, chunk, group, head, T, headdim).
    let x_dt = pad(inputs.x)
        .reshape([batch, chunks, t, groups, r, p])
        .permute([0, 1, 3, 4, 2, 5])
        * dt.unsqueeze(-1);
    // B and C, shared by a group's heads: (batch, chunk, group, 1, T, d_state).
    let per_group = |x: &Tensor| {
        pad(x)
            .reshape([batch, chunks, t, groups, n])
            .permute([0, 1, 3, 2, 4])
            .unsqueeze(3)
    };
    let (b, c) = (per_group(inputs.b), per_group(inputs.c));

    // 1. Within chunks.
    let decay_within = segsum(&da).exp(); // (…, T, T)
    let y_diag = (c.matmul(&b.transpose(-1, -2)) * &decay_within).matmul(&x_dt);

    // 2. Each chunk's state from its own steps; the decay from step s to the chunk's end is
    // the last row of the within-chunk mask.
    let to_end = decay_within.select(-2, t - 1).unsqueeze(-1); // (…, T, 1)
    let states = (x_dt * to_end).transpose(-1, -2).matmul(&b); // (…, headdim, d_state)

    // 3. Across chunks: the initial state as chunk "−1", with a total decay of 0 before it.
    let totals = da.sum_dim_intlist(-1, false, None::<Kind>); // (batch, chunk, group, head)
    let totals = totals.permute([0, 2, 3, 1]).constant_pad_nd([1, 0]); // (…, chunks + 1)
    let decay_across = segsum(&totals).exp(); // (batch, group, head, chunks + 1, chunks + 1)
    let h0 = h0.reshape([batch, 1, groups, r, p, n]);
    let sources = Tensor::cat(&[h0, states], 1)
        .permute([0, 2, 3, 1, 4, 5])
        .reshape([batch, groups, r, chunks + 1, p * n]);
    let entering = decay_across.matmul(&sources); // state before chunk i, and after the last
    let last_state = entering.select(3, chunks).reshape([batch, heads, p, n]);
    let entering = entering
        .narrow(3, 0, chunks)
        .view([batch, groups, r, chunks, p, n])
        .permute([0, 3, 1, 2, 4, 5]); // (batch, chunk, group, head, headdim, d_state)

    // 4. The entering state's share: exp(Σ_{k≤t} Δ_k A) · h_enter C_t.
    let from_start = da.cumsum(-1, None::<Kind>).exp().unsqueeze(-1); // (…, T, 1)
    let y_off = c.matmul(&entering.transpose(-1, -2)) * from_start;

    let y = (y_diag + y_off)
        .permute([0, 1, 4, 2, 3, 5])
        .reshape([batch, padded, heads, p])
        .narrow(1, 0, len)
        .to_kind(inputs.x.kind());
    SsdOutput { y, last_state }
}
