//! Backward pass: gradients of every input, with states recomputed chunk by chunk.
//!
//! With g = ∂L/∂out, per channel and state index n (⊙ element-wise, sums over n implied where
//! a per-channel quantity receives them):
//!
//! - gate: g_y = g · SiLU(z),  ∂z = g · y · SiLU'(z),  ∂D = Σ_t g_y u;
//! - state adjoint, backwards in time: ∂h_t = g_y,t C_t + Ā_{t+1} ⊙ ∂h_{t+1};
//! - ∂Ā_t = ∂h_t ⊙ h_{t−1}, with Ā_t = exp(Δ_t A):  ∂Δ_t = Σ_n ∂Ā_t Ā_t A + ∂h_t B_t u_t,
//!   ∂A = Σ_t ∂Ā_t Ā_t Δ_t;
//! - inputs: ∂u_t = g_y D + Σ_n ∂h_t Δ_t B_t,  ∂B_t = Σ_channels ∂h_t Δ_t u_t,
//!   ∂C_t = Σ_channels g_y h_t;
//! - softplus: ∂δ = ∂Δ · σ(δ + bias),  ∂bias = Σ_t ∂δ.
//!
//! The forward states are not stored: the reverse sweep recomputes each chunk's states, and
//! their decays Ā, from the state the forward pass kept at the chunk's start (its
//! `checkpoints`), so one exp per state and step is paid here, as in the forward pass.

use super::tile::{self, Rows};
use super::{add_from_time_major, to_time_major, BlockPos, Dims, Inputs, Lanes, CHUNK, LANES};
use super::{block_positions, channel_chunks, channel_rows};
use crate::scan::fast_math::dispatch_simd;
use crate::scan::fast_math::{exp, exp_with, softplus, FlushSubnormals, MulAdd};
use crate::torch_ext::parallel_items;

/// Where the gradients go; same shapes as the inputs. The optional ones are written only when
/// the input exists. Every slice is overwritten, not accumulated into.
pub struct Grads<'a> {
    /// (batch, d_inner, seq_len)
    pub du: &'a mut [f32],
    /// (batch, d_inner, seq_len), with respect to Δ before bias and softplus.
    pub ddelta: &'a mut [f32],
    /// (d_inner, d_state)
    pub da: &'a mut [f32],
    /// (batch, d_state, seq_len)
    pub db: &'a mut [f32],
    /// (batch, d_state, seq_len)
    pub dc: &'a mut [f32],
    /// (d_inner,)
    pub dd: Option<&'a mut [f32]>,
    /// (batch, d_inner, seq_len)
    pub dz: Option<&'a mut [f32]>,
    /// (d_inner,)
    pub ddelta_bias: Option<&'a mut [f32]>,
}

/// One block and where its gradients go.
struct Block<'a> {
    pos: BlockPos,
    /// (lanes, chunks, d_state) of the forward pass's checkpoints.
    checkpoints: &'a [f32],
    du: &'a mut [f32],
    ddelta: &'a mut [f32],
    dz: Option<&'a mut [f32]>,
    /// This batch element's share of ∂A, ∂D and ∂bias: (lanes, d_state), (lanes), (lanes).
    da: &'a mut [f32],
    dd: &'a mut [f32],
    dbias: &'a mut [f32],
}

struct Shared<'a> {
    dims: Dims,
    inputs: &'a Inputs<'a>,
    grad_out: &'a [f32],
    /// B and C time-major: (batch, seq_len, d_state).
    b: Vec<f32>,
    c: Vec<f32>,
}

/// Per-thread buffers. `db` and `dc` sum over every channel the thread handles, time-major,
/// lane by lane: the adjoint adds whole vectors, and the lanes are summed once per thread at
/// the end instead of at every step, state and block.
struct Scratch {
    /// The sizes the buffers were made for.
    dims: Dims,
    /// ∂Δ/∂(δ + bias): σ(δ + bias) under the softplus, else 1.
    dsoftplus: Vec<Lanes>,
    /// δ, then Δ once the reverse sweep has recomputed its chunk.
    delta: Vec<Lanes>,
    u: Vec<Lanes>,
    g: Vec<Lanes>,
    z: Vec<Lanes>,
    a: Vec<Lanes>,
    d: Lanes,
    h: Vec<Lanes>,
    checkpoints: Vec<Lanes>,
    /// A chunk's recomputed states and decays Ā, per (step in chunk, n, lane).
    states: Vec<Lanes>,
    decays: Vec<Lanes>,
    carry: Vec<Lanes>,
    da: Vec<Lanes>,
    du: Vec<Lanes>,
    ddelta: Vec<Lanes>,
    dz: Vec<Lanes>,
    db: Vec<Lanes>,
    dc: Vec<Lanes>,
}

/// Scratches of earlier calls, kept for the next one. A fresh multi-megabyte `db`/`dc` comes
/// from the kernel as zero pages: the adjoint's first read of each page maps the shared zero
/// page and its first write faults again to replace it, with a TLB shootdown across cores,
/// which cost more than the adjoint itself at training sizes (d_inner 128, L 256, batch 8).
/// Reused buffers are resident and only need zeroing.
static POOL: std::sync::Mutex<Vec<Scratch>> = std::sync::Mutex::new(Vec::new());

/// How many scratches the pool keeps: one per thread of the widest call, in practice.
const POOL_SIZE: usize = 8;

impl Scratch {
    /// A scratch for `dims` from the pool, with its sums zeroed, or a new one.
    fn take(dims: Dims) -> Self {
        let reused = {
            let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
            let found = pool.iter().position(|s| s.dims == dims);
            found.map(|i| pool.swap_remove(i))
        };
        match reused {
            Some(mut scratch) => {
                scratch.db.fill([0.0; LANES]);
                scratch.dc.fill([0.0; LANES]);
                scratch
            }
            None => Self::new(dims),
        }
    }

    /// Returns scratches to the pool, keeping the most recent.
    fn give_back(scratches: Vec<Scratch>) {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        pool.extend(scratches);
        let excess = pool.len().saturating_sub(POOL_SIZE);
        pool.drain(..excess);
    }

    fn new(dims: Dims) -> Self {
        let Dims {
            batch,
            d_state,
            seq_len,
            ..
        } = dims;
        let per_t = || vec![[0.0; LANES]; seq_len];
        let per_n = || vec![[0.0; LANES]; d_state];
        Self {
            dims,
            dsoftplus: per_t(),
            delta: per_t(),
            u: per_t(),
            g: per_t(),
            z: per_t(),
            a: per_n(),
            d: [0.0; LANES],
            h: per_n(),
            checkpoints: vec![[0.0; LANES]; dims.chunks() * d_state],
            states: vec![[0.0; LANES]; CHUNK * d_state],
            decays: vec![[0.0; LANES]; CHUNK * d_state],
            carry: per_n(),
            da: per_n(),
            du: per_t(),
            ddelta: per_t(),
            dz: per_t(),
            db: vec![[0.0; LANES]; batch * seq_len * d_state],
            dc: vec![[0.0; LANES]; batch * seq_len * d_state],
        }
    }
}

/// Computes every gradient of the scan given `grad_out` = ∂L/∂y, (batch, d_inner, seq_len),
/// and the `checkpoints` that [`super::forward`] kept for these inputs.
pub fn backward(
    dims: Dims,
    inputs: &Inputs,
    checkpoints: &[f32],
    grad_out: &[f32],
    grads: Grads,
    threads: usize,
) {
    inputs.check(dims);
    assert!(
        inputs.initial_state.is_none(),
        "the backward pass starts from a zero state"
    );
    assert_eq!(checkpoints.len(), dims.checkpoints_len(), "checkpoints");
    let Dims {
        batch,
        d_inner,
        d_state,
        seq_len,
    } = dims;
    let seq = batch * d_inner * seq_len;
    assert_eq!(grad_out.len(), seq, "grad_out");
    assert_eq!(
        (grads.du.len(), grads.ddelta.len()),
        (seq, seq),
        "du, ddelta"
    );
    assert_eq!(grads.da.len(), d_inner * d_state, "dA");
    assert_eq!(
        (grads.db.len(), grads.dc.len()),
        (batch * d_state * seq_len, batch * d_state * seq_len),
        "dB, dC"
    );
    let shared = Shared {
        dims,
        inputs,
        grad_out,
        b: to_time_major(inputs.b, dims),
        c: to_time_major(inputs.c, dims),
    };
    // Per batch element shares of the per-channel gradients, summed over the batch at the end.
    let mut da_parts = vec![0.0; batch * d_inner * d_state];
    let mut dd_parts = vec![0.0; batch * d_inner];
    let mut dbias_parts = vec![0.0; batch * d_inner];
    let mut dz = grads.dz.map(|dz| {
        assert_eq!(dz.len(), seq, "dz");
        channel_chunks(dz, d_inner, seq_len)
    });
    let blocks: Vec<Block> = block_positions(dims)
        .zip(channel_rows(checkpoints, d_inner, dims.chunks() * d_state))
        .zip(channel_chunks(grads.du, d_inner, seq_len))
        .zip(channel_chunks(grads.ddelta, d_inner, seq_len))
        .zip(channel_chunks(&mut da_parts, d_inner, d_state))
        .zip(channel_chunks(&mut dd_parts, d_inner, 1))
        .zip(channel_chunks(&mut dbias_parts, d_inner, 1))
        .map(
            |((((((pos, checkpoints), du), ddelta), da), dd), dbias)| Block {
                pos,
                checkpoints,
                du,
                ddelta,
                dz: dz.as_mut().and_then(Iterator::next),
                da,
                dd,
                dbias,
            },
        )
        .collect();
    let scratches = parallel_items(
        blocks,
        threads,
        || Scratch::take(dims),
        |block, scratch| {
            let _flush = FlushSubnormals::on_this_thread();
            backward_block(&shared, block, scratch)
        },
    );

    grads.db.fill(0.0);
    grads.dc.fill(0.0);
    let mut lane_sums = vec![0.0; batch * seq_len * d_state];
    for scratch in &scratches {
        for (sums, gradient) in [(&scratch.db, &mut *grads.db), (&scratch.dc, &mut *grads.dc)] {
            sum_lanes(sums, &mut lane_sums);
            add_from_time_major(&lane_sums, dims, gradient);
        }
    }
    Scratch::give_back(scratches);
    sum_over_batch(&da_parts, grads.da);
    if let Some(dd) = grads.dd {
        sum_over_batch(&dd_parts, dd);
    }
    if let Some(dbias) = grads.ddelta_bias {
        sum_over_batch(&dbias_parts, dbias);
    }
}

/// Each vector's lanes summed, into `out`.
fn sum_lanes(x: &[Lanes], out: &mut [f32]) {
    for (out, v) in out.iter_mut().zip(x) {
        *out = v.iter().sum();
    }
}

/// out = Σ_b parts[b], where `parts` holds one `out`-sized slice per batch element.
fn sum_over_batch(parts: &[f32], out: &mut [f32]) {
    assert_eq!(parts.len() % out.len(), 0);
    out.fill(0.0);
    for part in parts.chunks(out.len()) {
        for (o, p) in out.iter_mut().zip(part) {
            *o += p;
        }
    }
}

/// What one time step of the adjoint reads: states after and before the step, the step's
/// decays Ā_t = exp(Δ_t A) and the block's A, this step's B and C, and per lane Δ, u and
/// g_y = ∂L/∂y · SiLU(z).
struct Step<'a> {
    h_t: &'a [Lanes],
    h_prev: &'a [Lanes],
    decay: &'a [Lanes],
    a: &'a [Lanes],
    b_t: &'a [f32],
    c_t: &'a [f32],
    delta: &'a Lanes,
    u: &'a Lanes,
    gy: &'a Lanes,
}

/// One step of the adjoint (module docs), over the state index n with the lanes vectorised.
/// Updates the carried Ā ⊙ ∂h and the ∂A sums, adds this step's channel sums to ∂B and ∂C, and
/// returns C·h, ∂Δ (before the softplus) and the state's part of ∂u, per lane.
#[inline(always)]
fn adjoint_step<M: MulAdd>(
    x: Step,
    carry: &mut [Lanes],
    da: &mut [Lanes],
    db_t: &mut [Lanes],
    dc_t: &mut [Lanes],
) -> (Lanes, Lanes, Lanes) {
    // Local copies throughout, as in `advance`, so the lane loop vectorises.
    let (delta, u, gy) = (*x.delta, *x.u, *x.gy);
    let mut ch = [0.0f32; LANES];
    let mut ddelta = [0.0f32; LANES];
    let mut du = [0.0f32; LANES];
    for n in 0..carry.len() {
        let (h_t, h_prev, decay, a) = (x.h_t[n], x.h_prev[n], x.decay[n], x.a[n]);
        let (b, c) = (x.b_t[n], x.c_t[n]);
        let (mut carried, mut d_a) = (carry[n], da[n]);
        let (mut db, mut dc) = (db_t[n], dc_t[n]);
        for l in 0..LANES {
            ch[l] = M::mul_add(h_t[l], c, ch[l]);
            let gh = M::mul_add(gy[l], c, carried[l]);
            let d_decay_decay = gh * h_prev[l] * decay[l];
            ddelta[l] = M::mul_add(d_decay_decay, a[l], M::mul_add(gh * b, u[l], ddelta[l]));
            d_a[l] = M::mul_add(d_decay_decay, delta[l], d_a[l]);
            let gh_delta = gh * delta[l];
            du[l] = M::mul_add(gh_delta, b, du[l]);
            db[l] = M::mul_add(gh_delta, u[l], db[l]);
            dc[l] = M::mul_add(gy[l], h_t[l], dc[l]);
            carried[l] = decay[l] * gh;
        }
        (carry[n], da[n]) = (carried, d_a);
        (db_t[n], dc_t[n]) = (db, dc);
    }
    (ch, ddelta, du)
}

/// One step of the forward recurrence, Eq. (2a), recomputing the state and keeping this
/// step's decays. A function rather than a closure in [`backward_block`]: a closure is its own
/// function, compiled for the baseline target rather than the SIMD features of the body it sits
/// in, unless inlined.
#[inline(always)]
fn recompute<M: MulAdd>(
    h: &mut [Lanes],
    decays: &mut [Lanes],
    a: &[Lanes],
    delta: &Lanes,
    u: &Lanes,
    b_t: &[f32],
) {
    let delta_u: Lanes = std::array::from_fn(|l| delta[l] * u[l]);
    let delta = *delta;
    for (((h, decay), a), &b) in h.iter_mut().zip(decays).zip(a).zip(b_t) {
        let (mut state, mut d, a) = (*h, [0.0f32; LANES], *a);
        for l in 0..LANES {
            d[l] = exp_with::<M>(delta[l] * a[l]);
            state[l] = M::mul_add(d[l], state[l], delta_u[l] * b);
        }
        (*h, *decay) = (state, d);
    }
}

/// σ(x) = 1 / (1 + e⁻ˣ).
#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

dispatch_simd! {
backward_block<M>(shared: &Shared, block: &mut Block, s: &mut Scratch) {
    let Dims { d_state, seq_len, .. } = shared.dims;
    let inputs = shared.inputs;
    let BlockPos { batch, lanes, .. } = block.pos;
    // Prologue: δ, u, g and z per (t, lane), zeros in unused lanes; Δ comes from δ as the
    // reverse sweep recomputes each chunk.
    let rows = Rows { stride: seq_len, lanes };
    let first_row = block.pos.first_row(shared.dims);
    tile::gather(&inputs.delta[first_row..], rows, 0, &mut s.delta);
    tile::gather(&inputs.u[first_row..], rows, 0, &mut s.u);
    tile::gather(&shared.grad_out[first_row..], rows, 0, &mut s.g);
    match inputs.z {
        Some(z) => tile::gather(&z[first_row..], rows, 0, &mut s.z),
        None => s.z.fill([0.0; LANES]),
    }
    let bias = block.pos.lanes_of(inputs.delta_bias);
    s.d = block.pos.lanes_of(inputs.d);
    block.pos.a_lanes(inputs.a, d_state, &mut s.a);

    let span = batch * seq_len * d_state..(batch + 1) * seq_len * d_state;
    let (b_all, c_all) = (&shared.b[span.clone()], &shared.c[span]);

    // The forward pass's checkpoints, per (chunk, n, lane).
    let width = s.checkpoints.len();
    tile::gather(block.checkpoints, Rows { stride: width, lanes }, 0, &mut s.checkpoints);

    // Backwards chunk by chunk: recompute the chunk's states, then run the adjoint.
    s.carry.fill([0.0; LANES]);
    s.da.fill([0.0; LANES]);
    let (mut dd_acc, mut dbias_acc) = ([0.0f32; LANES], [0.0f32; LANES]);
    let has_z = inputs.z.is_some();
    for chunk in (0..seq_len.div_ceil(CHUNK)).rev() {
        let (t0, t1) = (chunk * CHUNK, ((chunk + 1) * CHUNK).min(seq_len));
        let checkpoint = &s.checkpoints[chunk * d_state..(chunk + 1) * d_state];
        s.h.copy_from_slice(checkpoint);
        for t in t0..t1 {
            // Δ = softplus(δ + bias) and ∂Δ/∂(δ + bias) = σ(δ + bias), in place of δ.
            let raw = s.delta[t];
            let (mut delta, mut dsoftplus) = ([0.0f32; LANES], [1.0f32; LANES]);
            for l in 0..LANES {
                let x = raw[l] + bias[l];
                if inputs.delta_softplus {
                    (delta[l], dsoftplus[l]) = (softplus(x), sigmoid(x));
                } else {
                    delta[l] = x;
                }
            }
            (s.delta[t], s.dsoftplus[t]) = (delta, dsoftplus);
            let at = (t - t0) * d_state;
            let decays = &mut s.decays[at..at + d_state];
            recompute::<M>(&mut s.h, decays, &s.a, &s.delta[t], &s.u[t], &b_all[t * d_state..(t + 1) * d_state]);
            s.states[at..at + d_state].copy_from_slice(&s.h);
        }
        for t in (t0..t1).rev() {
            let k = t - t0;
            let (delta, u, g, z) = (s.delta[t], s.u[t], s.g[t], s.z[t]);
            let mut gy = g;
            let mut sig = [0.0f32; LANES];
            if has_z {
                for l in 0..LANES {
                    sig[l] = sigmoid(z[l]);
                    gy[l] = g[l] * z[l] * sig[l];
                }
            }
            let (b_t, c_t) = (&b_all[t * d_state..(t + 1) * d_state], &c_all[t * d_state..(t + 1) * d_state]);
            let at = (batch * seq_len + t) * d_state;
            let h_t = &s.states[k * d_state..(k + 1) * d_state];
            let decay = &s.decays[k * d_state..(k + 1) * d_state];
            let h_prev = match k {
                0 => checkpoint,
                _ => &s.states[(k - 1) * d_state..k * d_state],
            };
            let (ch, mut ddelta, mut du) = adjoint_step::<M>(
                Step { h_t, h_prev, decay, a: &s.a, b_t, c_t, delta: &delta, u: &u, gy: &gy },
                &mut s.carry,
                &mut s.da,
                &mut s.db[at..at + d_state],
                &mut s.dc[at..at + d_state],
            );
            let mut dz = [0.0f32; LANES];
            for l in 0..LANES {
                du[l] += gy[l] * s.d[l];
                dd_acc[l] += gy[l] * u[l];
                if has_z {
                    let y = ch[l] + s.d[l] * u[l];
                    dz[l] = g[l] * y * sig[l] * (1.0 + z[l] * (1.0 - sig[l]));
                }
                ddelta[l] *= s.dsoftplus[t][l];
                dbias_acc[l] += ddelta[l];
            }
            s.du[t] = du;
            s.ddelta[t] = ddelta;
            s.dz[t] = dz;
        }
    }

    // Epilogue: back to (lane, t) rows, and the per-lane sums.
    tile::scatter(&s.du, block.du, rows, 0);
    tile::scatter(&s.ddelta, block.ddelta, rows, 0);
    if let Some(dz) = block.dz.as_deref_mut() {
        tile::scatter(&s.dz, dz, rows, 0);
    }
    for lane in 0..lanes {
        for (n, da) in s.da.iter().enumerate() {
            block.da[lane * d_state + n] = da[lane];
        }
        block.dd[lane] = dd_acc[lane];
        block.dbias[lane] = dbias_acc[lane];
    }
}
}
