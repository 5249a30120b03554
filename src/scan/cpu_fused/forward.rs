//! Forward pass: y = (C h + D u) · SiLU(z), and optionally the last state and the states the
//! backward pass starts its chunks from.

use super::tile::{self, Rows};
use super::{advance, block_positions, channel_chunks, to_time_major};
use super::{BlockPos, Dims, Inputs, Lanes, CHUNK, LANES};
use crate::scan::fast_math::dispatch_simd;
use crate::scan::fast_math::{silu, softplus, FlushSubnormals};
use crate::torch_ext::parallel_items;

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

/// Steps per tile: each tile's u, Δ and z are transposed in one go, and its y out.
const TILE: usize = 256;

/// Per-thread buffers for one tile of a block, reused across tiles and blocks: 16 KiB each,
/// so they stay in L2 while the tile runs.
struct Scratch {
    /// δ (Δ before bias and softplus), u, z and y per (step, lane).
    delta: Vec<Lanes>,
    u: Vec<Lanes>,
    z: Vec<Lanes>,
    y: Vec<Lanes>,
    /// A per (n, lane).
    a: Vec<Lanes>,
    /// The state h per (n, lane).
    h: Vec<Lanes>,
    /// h at the start of every chunk, per (chunk, n, lane).
    checkpoints: Vec<Lanes>,
}

impl Scratch {
    fn new(dims: Dims) -> Self {
        let per_step = || vec![[0.0; LANES]; TILE];
        Self {
            delta: per_step(),
            u: per_step(),
            z: per_step(),
            y: per_step(),
            a: vec![[0.0; LANES]; dims.d_state],
            h: vec![[0.0; LANES]; dims.d_state],
            checkpoints: vec![[0.0; LANES]; dims.chunks() * dims.d_state],
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
    parallel_items(
        blocks,
        threads,
        || Scratch::new(dims),
        |block, scratch| {
            let _flush = FlushSubnormals::on_this_thread();
            scan_block(&shared, block, scratch)
        },
    );
}

dispatch_simd! {
scan_block<M>(shared: &Shared, block: &mut Block, s: &mut Scratch) {
    let Dims { d_state, seq_len, .. } = shared.dims;
    let inputs = shared.inputs;
    let BlockPos { batch, lanes, .. } = block.pos;
    let rows = Rows { stride: seq_len, lanes };
    // The block's rows of u, δ and z start here.
    let first_row = block.pos.first_row(shared.dims);
    let (bias, d) = (block.pos.lanes_of(inputs.delta_bias), block.pos.lanes_of(inputs.d));
    block.pos.a_lanes(inputs.a, d_state, &mut s.a);
    let span = batch * seq_len * d_state..(batch + 1) * seq_len * d_state;
    let (b_all, c_all) = (&shared.b[span.clone()], &shared.c[span]);

    let has_z = inputs.z.is_some();
    let state_rows = Rows { stride: d_state, lanes };
    match inputs.initial_state {
        Some(h0) => {
            let first = (batch * shared.dims.d_inner + block.pos.first_channel) * d_state;
            tile::gather(&h0[first..], state_rows, 0, &mut s.h);
        }
        None => s.h.fill([0.0; LANES]),
    }
    for tile_start in (0..seq_len).step_by(TILE) {
        let (t0, t1) = (tile_start, (tile_start + TILE).min(seq_len));
        let steps = t1 - t0;

        tile::gather(&inputs.delta[first_row..], rows, t0, &mut s.delta[..steps]);
        tile::gather(&inputs.u[first_row..], rows, t0, &mut s.u[..steps]);
        if let Some(z) = inputs.z {
            tile::gather(&z[first_row..], rows, t0, &mut s.z[..steps]);
        }
        // One loop over the steps does all the per-lane work: LLVM vectorises the lanes of
        // each step, where a separate loop of lane-wise work it would vectorise across steps,
        // with gathers.
        for (k, t) in (t0..t1).enumerate() {
            if t % CHUNK == 0 {
                let at = t / CHUNK * d_state;
                s.checkpoints[at..at + d_state].copy_from_slice(&s.h);
            }
            // Δ = softplus(δ + bias).
            let (raw, u, z) = (s.delta[k], s.u[k], s.z[k]);
            let mut delta = [0.0f32; LANES];
            let mut delta_u = [0.0f32; LANES];
            for l in 0..LANES {
                let x = raw[l] + bias[l];
                delta[l] = if inputs.delta_softplus { softplus(x) } else { x };
                delta_u[l] = delta[l] * u[l];
            }
            // The recurrence, Eq. (2a)/(2b): h_t = exp(Δ_t A) h_{t−1} + Δ_t B_t u_t,  y_t = C_t h_t.
            let (b_t, c_t) = (&b_all[t * d_state..(t + 1) * d_state], &c_all[t * d_state..(t + 1) * d_state]);
            let ch = advance::<M>(&mut s.h, &s.a, &delta, &delta_u, b_t, c_t);
            // y = (C h + D u) · SiLU(z).
            let mut y = [0.0f32; LANES];
            for l in 0..LANES {
                y[l] = M::mul_add(d[l], u[l], ch[l]);
                if has_z {
                    y[l] *= silu(z[l]);
                }
            }
            s.y[k] = y;
        }
        tile::scatter(&s.y[..steps], block.y, rows, t0);
    }

    if let Some(state) = block.state.as_deref_mut() {
        tile::scatter(&s.h, state, state_rows, 0);
    }
    if let Some(checkpoints) = block.checkpoints.as_deref_mut() {
        let width = s.checkpoints.len();
        tile::scatter(&s.checkpoints, checkpoints, Rows { stride: width, lanes }, 0);
    }
}
}
