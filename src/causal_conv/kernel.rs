//! The causal depthwise convolution with SiLU on fp32 slices, forward and backward, one channel
//! row at a time on libtorch's threads. Along a row every step is independent, so the loops run
//! along time and vectorise.
//!
//! With pre_t = bias + Σ_k w_k x_{t−(width−1)+k} (x zero before the start, or the `context` of
//! earlier inputs when the convolution continues a sequence) and y_t = SiLU(pre_t):
//! ∂pre_t = ∂y_t · SiLU'(pre_t), ∂x_s = Σ_k w_k ∂pre_{s+(width−1)−k}, ∂w_k = Σ_t ∂pre_t
//! x_{t−(width−1)+k}, ∂bias = Σ_t ∂pre_t.

use crate::scan::fast_math::{dispatch_simd, exp, silu, FlushSubnormals, MulAdd};
use crate::torch_ext::parallel_items;

/// Sizes of one convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    pub batch: usize,
    pub channels: usize,
    pub len: usize,
    pub width: usize,
}

/// Row-major fp32 inputs.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// (batch, channels, len)
    pub x: &'a [f32],
    /// (channels, width)
    pub weight: &'a [f32],
    /// (channels,)
    pub bias: Option<&'a [f32]>,
    /// (batch, channels, width − 1): the inputs just before x, when the convolution continues
    /// a sequence chunk by chunk; zeros when `None`. Forward only.
    pub context: Option<&'a [f32]>,
}

impl Inputs<'_> {
    fn check(&self, dims: Dims) {
        assert_eq!(self.x.len(), dims.batch * dims.channels * dims.len, "x");
        assert_eq!(self.weight.len(), dims.channels * dims.width, "weight");
        assert!(self.bias.is_none_or(|b| b.len() == dims.channels), "bias");
        let context = dims.batch * dims.channels * dims.width.saturating_sub(1);
        assert!(self.context.is_none_or(|c| c.len() == context), "context");
    }

    fn row(&self, dims: Dims, row: usize) -> Row<'_> {
        let channel = row % dims.channels;
        let before = dims.width.saturating_sub(1);
        Row {
            x: &self.x[row * dims.len..(row + 1) * dims.len],
            weight: &self.weight[channel * dims.width..(channel + 1) * dims.width],
            bias: self.bias.map_or(0.0, |b| b[channel]),
            context: self
                .context
                .map_or(&[][..], |c| &c[row * before..(row + 1) * before]),
        }
    }
}

/// One channel of one sequence.
struct Row<'a> {
    x: &'a [f32],
    weight: &'a [f32],
    bias: f32,
    /// The width − 1 inputs before x, or empty for zeros.
    context: &'a [f32],
}

/// y = SiLU(conv(x) + bias), (batch, channels, len), on up to `threads` threads.
pub fn forward(dims: Dims, inputs: &Inputs, y: &mut [f32], threads: usize) {
    inputs.check(dims);
    assert_eq!(y.len(), inputs.x.len(), "y");
    let rows: Vec<(usize, &mut [f32])> = y.chunks_mut(dims.len.max(1)).enumerate().collect();
    parallel_items(
        rows,
        threads,
        || (),
        |(row, y), ()| {
            let _flush = FlushSubnormals::on_this_thread();
            forward_row(&inputs.row(dims, *row), y)
        },
    );
}

/// Where the gradients go; every slice is overwritten.
pub struct Grads<'a> {
    /// (batch, channels, len)
    pub dx: &'a mut [f32],
    /// (channels, width)
    pub dweight: &'a mut [f32],
    /// (channels,)
    pub dbias: Option<&'a mut [f32]>,
}

/// One row's gradients: ∂x, then its shares of ∂w and ∂bias (summed over the batch after).
struct RowGrads<'a> {
    row: usize,
    dx: &'a mut [f32],
    dweight: &'a mut [f32],
    dbias: &'a mut f32,
}

/// Every gradient given ∂L/∂y, (batch, channels, len), on up to `threads` threads.
pub fn backward(dims: Dims, inputs: &Inputs, grad_y: &[f32], grads: Grads, threads: usize) {
    inputs.check(dims);
    assert!(
        inputs.context.is_none(),
        "the backward pass starts from zeros"
    );
    let Dims {
        batch,
        channels,
        len,
        width,
    } = dims;
    assert_eq!(grad_y.len(), inputs.x.len(), "grad_y");
    assert_eq!(grads.dx.len(), inputs.x.len(), "dx");
    assert_eq!(grads.dweight.len(), channels * width, "dweight");
    // Each (batch, channel) row writes its own share of ∂w and ∂bias.
    let mut dweight_parts = vec![0.0; batch * channels * width];
    let mut dbias_parts = vec![0.0; batch * channels];
    let rows: Vec<RowGrads> = grads
        .dx
        .chunks_mut(len.max(1))
        .zip(dweight_parts.chunks_mut(width))
        .zip(dbias_parts.iter_mut())
        .enumerate()
        .map(|(row, ((dx, dweight), dbias))| RowGrads {
            row,
            dx,
            dweight,
            dbias,
        })
        .collect();
    parallel_items(
        rows,
        threads,
        || vec![0.0; len],
        |grads, scratch| {
            let _flush = FlushSubnormals::on_this_thread();
            let g = &grad_y[grads.row * len..(grads.row + 1) * len];
            backward_row(&inputs.row(dims, grads.row), g, grads, scratch)
        },
    );
    grads.dweight.fill(0.0);
    for part in dweight_parts.chunks(channels * width) {
        for (out, p) in grads.dweight.iter_mut().zip(part) {
            *out += p;
        }
    }
    if let Some(dbias) = grads.dbias {
        assert_eq!(dbias.len(), channels, "dbias");
        dbias.fill(0.0);
        for part in dbias_parts.chunks(channels) {
            for (out, p) in dbias.iter_mut().zip(part) {
                *out += p;
            }
        }
    }
}

/// pre = bias + Σ_k w_k x shifted right by (width − 1 − k), one pass per tap; the first
/// width − 1 steps then reach back into the context, if there is one.
#[inline(always)]
fn convolve<M: MulAdd>(row: &Row, pre: &mut [f32]) {
    let (len, width) = (row.x.len(), row.weight.len());
    pre.fill(row.bias);
    for (k, &w) in row.weight.iter().enumerate() {
        let shift = width - 1 - k;
        if shift >= len {
            continue;
        }
        for (p, &x) in pre[shift..].iter_mut().zip(&row.x[..len - shift]) {
            *p = M::mul_add(w, x, *p);
        }
    }
    if row.context.is_empty() {
        return;
    }
    // pre_t for t < shift takes x_{t − shift}, which is context[width − 1 + t − shift].
    for (k, &w) in row.weight.iter().enumerate() {
        let shift = width - 1 - k;
        for (t, p) in pre.iter_mut().enumerate().take(shift) {
            *p = M::mul_add(w, row.context[k + t], *p);
        }
    }
}

/// Partial sums per lane of a 16-wide vector, so that reductions vectorise.
const LANES: usize = 16;

/// Σ a.
#[inline(always)]
fn sum(a: &[f32]) -> f32 {
    let mut sums = [0.0f32; LANES];
    let chunks = a.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for a in chunks {
        for l in 0..LANES {
            sums[l] += a[l];
        }
    }
    sums.iter().sum::<f32>() + tail
}

/// Σ a·b.
#[inline(always)]
fn dot<M: MulAdd>(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0.0f32; LANES];
    let (a_main, b_main) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_main
        .remainder()
        .iter()
        .zip(b_main.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (a, b) in a_main.zip(b_main) {
        for l in 0..LANES {
            sums[l] = M::mul_add(a[l], b[l], sums[l]);
        }
    }
    sums.iter().sum::<f32>() + tail
}

dispatch_simd! {
forward_row<M>(row: &Row, y: &mut [f32]) {
    convolve::<M>(row, y);
    for y in y.iter_mut() {
        *y = silu(*y);
    }
}
}

dispatch_simd! {
backward_row<M>(row: &Row, g: &[f32], grads: &mut RowGrads, dpre: &mut [f32]) {
    let (len, width) = (row.x.len(), row.weight.len());
    convolve::<M>(row, dpre);
    // ∂pre = g · SiLU'(pre), SiLU'(p) = σ(p) (1 + p (1 − σ(p))).
    for (d, &g) in dpre.iter_mut().zip(g) {
        let p = *d;
        let sigma = 1.0 / (1.0 + exp(-p));
        *d = g * sigma * (1.0 + p * (1.0 - sigma));
    }
    *grads.dbias = sum(dpre);
    grads.dx.fill(0.0);
    for (k, &w) in row.weight.iter().enumerate() {
        let shift = width - 1 - k;
        if shift >= len {
            grads.dweight[k] = 0.0;
            continue;
        }
        grads.dweight[k] = dot::<M>(&dpre[shift..], &row.x[..len - shift]);
        for (dx, &d) in grads.dx[..len - shift].iter_mut().zip(&dpre[shift..]) {
            *dx = M::mul_add(w, d, *dx);
        }
    }
}
}
