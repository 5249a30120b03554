//! Forward pass: y = (C h + D u) · SiLU(z), and optionally the last state and the states the
//! backward pass starts its chunks from.

use super::{advance, block_positions, channel_chunks, dispatch_simd, parallel, to_time_major};
use super::{BlockPos, Dims, Inputs, Lanes, CHUNK, LANES};
use crate::scan::fast_math::{silu, softplus};

/// One block and where its results go.
struct Block<'a> {
    pos: BlockPos,
    /// (lanes, seq_len) of y.
    y: &'a mut [f32],
    /// (lanes, d_state) of the last state.
    state: Option<&'a mut [f32]>,
    /// (lanes, chunks, d_state) of the states at chunk starts.
    checkpoints: Option<&'a mut [f32]>,
}

/// Read-only data every block shares.
struct Shared<'a> {
    dims: Dims,
    inputs: &'a Inputs<'a>,
    /// B and C time-major: (batch, seq_len, d_state).
    b: Vec<f32>,
    c: Vec<f32>,
}

/// Per-thread buffers, reused across blocks.
struct Scratch {
    row: Vec<f32>,
    /// Δ per (t, lane).
    delta: Vec<Lanes>,
    /// Δ·u per (t, lane).
    delta_u: Vec<Lanes>,
    /// C·h per (t, lane).
    ch: Vec<Lanes>,
    /// A per (n, lane).
    a: Vec<Lanes>,
    /// The state h per (n, lane).
    h: Vec<Lanes>,
    /// h at the start of every chunk, per (chunk, n, lane).
    checkpoints: Vec<Lanes>,
}

impl Scratch {
    fn new(dims: Dims) -> Self {
        let Dims {
            seq_len, d_state, ..
        } = dims;
        Self {
            row: vec![0.0; seq_len],
            delta: vec![[0.0; LANES]; seq_len],
            delta_u: vec![[0.0; LANES]; seq_len],
            ch: vec![[0.0; LANES]; seq_len],
            a: vec![[0.0; LANES]; d_state],
            h: vec![[0.0; LANES]; d_state],
            checkpoints: vec![[0.0; LANES]; dims.chunks() * d_state],
        }
    }
}

/// Where the forward pass writes; only `y` is required.
pub struct Outputs<'a> {
    /// (batch, d_inner, seq_len)
    pub y: &'a mut [f32],
    /// (batch, d_inner, d_state): the state after the last step, to continue from.
    pub last_state: Option<&'a mut [f32]>,
    /// (batch, d_inner, chunks, d_state), see [`Dims::checkpoints_len`]: the state before every
    /// [`CHUNK`]-th step, from which [`super::backward`] recomputes the rest.
    pub checkpoints: Option<&'a mut [f32]>,
}

/// Computes the scan's outputs on up to `threads` threads.
pub fn forward(dims: Dims, inputs: &Inputs, outputs: Outputs, threads: usize) {
    inputs.check(dims);
    let Dims {
        batch,
        d_inner,
        d_state,
        seq_len,
    } = dims;
    let Outputs {
        y,
        last_state,
        checkpoints,
    } = outputs;
    assert_eq!(y.len(), batch * d_inner * seq_len, "y");
    let shared = Shared {
        dims,
        inputs,
        b: to_time_major(inputs.b, dims),
        c: to_time_major(inputs.c, dims),
    };
    let mut states = last_state.map(|s| {
        assert_eq!(s.len(), batch * d_inner * d_state, "last_state");
        channel_chunks(s, d_inner, d_state)
    });
    let checkpoint_width = dims.chunks() * d_state;
    let mut checkpoints = checkpoints.map(|c| {
        assert_eq!(c.len(), dims.checkpoints_len(), "checkpoints");
        channel_chunks(c, d_inner, checkpoint_width)
    });
    let blocks: Vec<Block> = block_positions(dims)
        .zip(channel_chunks(y, d_inner, seq_len))
        .map(|(pos, y)| Block {
            pos,
            y,
            state: states.as_mut().and_then(Iterator::next),
            checkpoints: checkpoints.as_mut().and_then(Iterator::next),
        })
        .collect();
    parallel(
        blocks,
        threads,
        || Scratch::new(dims),
        |block, scratch| scan_block(&shared, block, scratch),
    );
}

dispatch_simd! {
scan_block<M>(shared: &Shared, block: &mut Block, s: &mut Scratch) {
    let Dims { d_inner, d_state, seq_len, .. } = shared.dims;
    let inputs = shared.inputs;
    let BlockPos { batch, first_channel, lanes } = block.pos;
    let row = |lane: usize| {
        let start = (batch * d_inner + first_channel + lane) * seq_len;
        start..start + seq_len
    };

    // Prologue: Δ = softplus(Δ + bias) and Δu, transposed to (t, lane).
    s.delta.fill([0.0; LANES]);
    s.delta_u.fill([0.0; LANES]);
    s.a.fill([0.0; LANES]);
    for lane in 0..lanes {
        let channel = first_channel + lane;
        let bias = inputs.delta_bias.map_or(0.0, |b| b[channel]);
        let (delta, u) = (&inputs.delta[row(lane)], &inputs.u[row(lane)]);
        if inputs.delta_softplus {
            for (out, &x) in s.row.iter_mut().zip(delta) {
                *out = softplus(x + bias);
            }
        } else {
            for (out, &x) in s.row.iter_mut().zip(delta) {
                *out = x + bias;
            }
        }
        let transposed = s.delta.iter_mut().zip(s.delta_u.iter_mut());
        for (((delta, delta_u), &dt), &u) in transposed.zip(&s.row).zip(u) {
            delta[lane] = dt;
            delta_u[lane] = dt * u;
        }
        for (n, a) in s.a.iter_mut().enumerate() {
            a[lane] = inputs.a[channel * d_state + n];
        }
    }

    // The recurrence, Eq. (2a)/(2b): h_t = exp(Δ_t A) h_{t−1} + Δ_t B_t u_t,  y_t = C_t h_t.
    s.h.fill([0.0; LANES]);
    let span = batch * seq_len * d_state..(batch + 1) * seq_len * d_state;
    let (b_all, c_all) = (&shared.b[span.clone()], &shared.c[span]);
    for t in 0..seq_len {
        if t % CHUNK == 0 {
            let at = t / CHUNK * d_state;
            s.checkpoints[at..at + d_state].copy_from_slice(&s.h);
        }
        let b_t = &b_all[t * d_state..(t + 1) * d_state];
        let c_t = &c_all[t * d_state..(t + 1) * d_state];
        s.ch[t] = advance::<M>(&mut s.h, &s.a, &s.delta[t], &s.delta_u[t], b_t, c_t);
    }

    // Epilogue: y = (C h + D u) · SiLU(z), back to (lane, t).
    for lane in 0..lanes {
        let channel = first_channel + lane;
        let u = &inputs.u[row(lane)];
        let d = inputs.d.map_or(0.0, |d| d[channel]);
        let y = &mut block.y[lane * seq_len..(lane + 1) * seq_len];
        for ((y, ch), &u) in y.iter_mut().zip(&s.ch).zip(u) {
            *y = ch[lane] + d * u;
        }
        if let Some(z) = inputs.z {
            for (y, &z) in y.iter_mut().zip(&z[row(lane)]) {
                *y *= silu(z);
            }
        }
        if let Some(state) = block.state.as_deref_mut() {
            for (n, h) in s.h.iter().enumerate() {
                state[lane * d_state + n] = h[lane];
            }
        }
        if let Some(checkpoints) = block.checkpoints.as_deref_mut() {
            let width = s.checkpoints.len();
            for (out, h) in checkpoints[lane * width..(lane + 1) * width].iter_mut().zip(&s.checkpoints) {
                *out = h[lane];
            }
        }
    }
}
}
