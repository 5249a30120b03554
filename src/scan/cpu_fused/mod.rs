//! The fused CPU selective scan: one pass over the sequence per block of channels, with the
//! state in registers and no (batch, d_inner, seq_len, d_state) tensor anywhere.
//!
//! The hardware-aware idea of the Mamba paper (Section 3.3.2) carried to a CPU: the expanded
//! state h lives only in registers and L1, Ā and B̄u are formed on the fly, and only y goes back
//! to memory. The forward pass keeps the state every [`CHUNK`] steps, and the backward pass
//! recomputes the states in between instead of storing them.
//!
//! Vectorisation runs across channels: one SIMD lane per channel, [`LANES`] channels at a time,
//! so every operation of the recurrence is element-wise. A block's rows are transposed into
//! (step, lane) tiles, a few hundred steps at a time ([`tile`]). Unused lanes of the last block
//! hold zeros, which keep a zero state and contribute nothing.

pub mod backward;
pub mod forward;
pub mod roofline;
mod tile;

use crate::scan::fast_math::{exp_with, MulAdd};

pub use backward::{backward, Grads};
pub use forward::{forward, Outputs};

/// Channels per block: one 512-bit vector of f32 under AVX-512, two 256-bit ones under AVX2.
pub const LANES: usize = 16;

/// Steps between the states the forward pass keeps for the backward one: memory O(L/CHUNK · N)
/// per channel instead of O(L · N), and a chunk's recomputed states stay in L1.
pub const CHUNK: usize = 64;

/// One SIMD vector's worth of channels.
type Lanes = [f32; LANES];

/// Sizes of one scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    pub batch: usize,
    pub d_inner: usize,
    pub d_state: usize,
    pub seq_len: usize,
}

/// Contiguous row-major f32 inputs, shapes as in [`crate::scan::ScanInputs`].
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// (batch, d_inner, seq_len)
    pub u: &'a [f32],
    /// (batch, d_inner, seq_len), before bias and softplus.
    pub delta: &'a [f32],
    /// (d_inner, d_state)
    pub a: &'a [f32],
    /// (batch, d_state, seq_len)
    pub b: &'a [f32],
    /// (batch, d_state, seq_len)
    pub c: &'a [f32],
    /// (d_inner,)
    pub d: Option<&'a [f32]>,
    /// (batch, d_inner, seq_len)
    pub z: Option<&'a [f32]>,
    /// (d_inner,)
    pub delta_bias: Option<&'a [f32]>,
    pub delta_softplus: bool,
    /// (batch, d_inner, d_state): the state before the first step, when the scan continues a
    /// sequence (chunked evaluation); zeros when `None`. Forward only.
    pub initial_state: Option<&'a [f32]>,
}

impl Dims {
    /// Chunks of [`CHUNK`] steps, the last one possibly shorter.
    pub fn chunks(&self) -> usize {
        self.seq_len.div_ceil(CHUNK)
    }

    /// Length of the checkpoints, (batch, d_inner, chunks, d_state).
    pub fn checkpoints_len(&self) -> usize {
        self.batch * self.d_inner * self.chunks() * self.d_state
    }
}

impl Inputs<'_> {
    /// Panics unless every slice has the length `dims` implies: the kernels index without
    /// further checks after this.
    fn check(&self, dims: Dims) {
        let Dims {
            batch,
            d_inner,
            d_state,
            seq_len,
        } = dims;
        let seq = batch * d_inner * seq_len;
        assert_eq!(self.u.len(), seq, "u");
        assert_eq!(self.delta.len(), seq, "delta");
        assert_eq!(self.a.len(), d_inner * d_state, "A");
        assert_eq!(self.b.len(), batch * d_state * seq_len, "B");
        assert_eq!(self.c.len(), batch * d_state * seq_len, "C");
        assert!(self.d.is_none_or(|d| d.len() == d_inner), "D");
        assert!(self.z.is_none_or(|z| z.len() == seq), "z");
        assert!(
            self.delta_bias.is_none_or(|b| b.len() == d_inner),
            "delta_bias"
        );
        assert!(
            self.initial_state
                .is_none_or(|h| h.len() == batch * d_inner * d_state),
            "initial_state"
        );
    }
}

/// Which channels a block covers.
#[derive(Debug, Clone, Copy)]
struct BlockPos {
    batch: usize,
    first_channel: usize,
    lanes: usize,
}

impl BlockPos {
    /// Where the block's first row of a (batch, d_inner, seq_len) tensor starts.
    fn first_row(&self, dims: Dims) -> usize {
        (self.batch * dims.d_inner + self.first_channel) * dims.seq_len
    }

    /// The block's lanes of a per-channel vector: zeros in absent lanes, and all zeros for an
    /// absent vector.
    fn lanes_of(&self, values: Option<&[f32]>) -> Lanes {
        std::array::from_fn(|lane| match values {
            Some(v) if lane < self.lanes => v[self.first_channel + lane],
            _ => 0.0,
        })
    }

    /// The block's rows of A, (d_inner, d_state), per (n, lane).
    fn a_lanes(&self, a: &[f32], d_state: usize, out: &mut [Lanes]) {
        for (n, out) in out.iter_mut().enumerate() {
            *out = std::array::from_fn(|lane| match lane < self.lanes {
                true => a[(self.first_channel + lane) * d_state + n],
                false => 0.0,
            });
        }
    }
}

/// Every block, batch-major, in the order [`channel_chunks`] splits outputs.
fn block_positions(dims: Dims) -> impl Iterator<Item = BlockPos> {
    let Dims { batch, d_inner, .. } = dims;
    (0..batch).flat_map(move |b| {
        (0..d_inner).step_by(LANES).map(move |first| BlockPos {
            batch: b,
            first_channel: first,
            lanes: LANES.min(d_inner - first),
        })
    })
}

/// Splits `data`, laid out (batch, d_inner, width), into one (lanes, width) chunk per block.
fn channel_chunks(
    data: &mut [f32],
    d_inner: usize,
    width: usize,
) -> impl Iterator<Item = &mut [f32]> {
    data.chunks_mut(d_inner * width)
        .flat_map(move |b| b.chunks_mut(LANES * width))
}

/// [`channel_chunks`] of a slice that is only read.
fn channel_rows(data: &[f32], d_inner: usize, width: usize) -> impl Iterator<Item = &[f32]> {
    data.chunks(d_inner * width)
        .flat_map(move |b| b.chunks(LANES * width))
}

/// One step of Eq. (2a) for a block, h ← exp(Δ A) ⊙ h + Δu B_t, returning C_t·h (Eq. 2b) per
/// lane. The lane loop works on local copies: LLVM vectorises it only when it can see that
/// nothing it writes aliases what it reads.
#[inline(always)]
fn advance<M: MulAdd>(
    h: &mut [Lanes],
    a: &[Lanes],
    delta: &Lanes,
    delta_u: &Lanes,
    b_t: &[f32],
    c_t: &[f32],
) -> Lanes {
    let (delta, delta_u) = (*delta, *delta_u);
    let mut ch = [0.0f32; LANES];
    for (((h, a), &b), &c) in h.iter_mut().zip(a).zip(b_t).zip(c_t) {
        let (mut state, a) = (*h, *a);
        for l in 0..LANES {
            state[l] = M::mul_add(exp_with::<M>(delta[l] * a[l]), state[l], delta_u[l] * b);
            ch[l] = M::mul_add(state[l], c, ch[l]);
        }
        *h = state;
    }
    ch
}

/// (batch, d_state, seq_len) → (batch, seq_len, d_state), so a time step reads N adjacent values.
fn to_time_major(x: &[f32], dims: Dims) -> Vec<f32> {
    let Dims {
        d_state, seq_len, ..
    } = dims;
    let mut out = vec![0.0; x.len()];
    for (src, dst) in x
        .chunks(d_state * seq_len)
        .zip(out.chunks_mut(d_state * seq_len))
    {
        for n in 0..d_state {
            for t in 0..seq_len {
                dst[t * d_state + n] = src[n * seq_len + t];
            }
        }
    }
    out
}

/// The inverse of [`to_time_major`], added into `out`.
fn add_from_time_major(x: &[f32], dims: Dims, out: &mut [f32]) {
    let Dims {
        d_state, seq_len, ..
    } = dims;
    for (src, dst) in x
        .chunks(d_state * seq_len)
        .zip(out.chunks_mut(d_state * seq_len))
    {
        for n in 0..d_state {
            for t in 0..seq_len {
                dst[n * seq_len + t] += src[t * d_state + n];
            }
        }
    }
}
