//! Scan inputs copied to contiguous fp32 CPU tensors, viewed as slices for the Rust kernels.

use super::cpu_fused::{self, Dims, Inputs, Outputs};
use super::ScanInputs;
use crate::slices::{host_f32, output, view, view_mut};
use tch::Tensor;

/// Owns fp32 contiguous copies of a scan's inputs; they are never written, so slices of them
/// stay valid for as long as this lives.
pub struct HostScan {
    pub dims: Dims,
    u: Tensor,
    delta: Tensor,
    a: Tensor,
    b: Tensor,
    c: Tensor,
    d: Option<Tensor>,
    z: Option<Tensor>,
    delta_bias: Option<Tensor>,
    delta_softplus: bool,
    initial_state: Option<Tensor>,
}

impl HostScan {
    /// Copies of `inputs`, and of the state to start from, if any.
    pub fn new(inputs: &ScanInputs, initial_state: Option<&Tensor>) -> Self {
        let u = host_f32(inputs.u);
        let a = host_f32(inputs.a);
        let (batch, d_inner, seq_len) = u.size3().expect("u is (batch, d_inner, seq_len)");
        let dims = Dims {
            batch: batch as usize,
            d_inner: d_inner as usize,
            d_state: a.size()[1] as usize,
            seq_len: seq_len as usize,
        };
        Self {
            dims,
            u,
            delta: host_f32(inputs.delta),
            a,
            b: host_f32(inputs.b),
            c: host_f32(inputs.c),
            d: inputs.d.map(host_f32),
            z: inputs.z.map(host_f32),
            delta_bias: inputs.delta_bias.map(host_f32),
            delta_softplus: inputs.delta_softplus,
            initial_state: initial_state.map(host_f32),
        }
    }

    pub fn views(&self) -> Inputs<'_> {
        Inputs {
            u: view(&self.u),
            delta: view(&self.delta),
            a: view(&self.a),
            b: view(&self.b),
            c: view(&self.c),
            d: self.d.as_ref().map(view),
            z: self.z.as_ref().map(view),
            delta_bias: self.delta_bias.as_ref().map(view),
            delta_softplus: self.delta_softplus,
            initial_state: self.initial_state.as_ref().map(view),
        }
    }
}

/// What [`forward_on_host`] returns: y in the dtype of `u`, and the fp32 extras asked for.
pub struct HostForward {
    pub y: Tensor,
    /// (batch, d_inner, d_state)
    pub last_state: Option<Tensor>,
    /// (batch, d_inner, chunks, d_state): see [`cpu_fused::Outputs`].
    pub checkpoints: Option<Tensor>,
}

/// Runs [`cpu_fused::forward`] on CPU tensors on `threads` threads, from `initial_state` when
/// given, keeping the last state and the checkpoints when asked.
pub fn forward_on_host(
    inputs: &ScanInputs,
    initial_state: Option<&Tensor>,
    threads: usize,
    keep_state: bool,
    keep_checkpoints: bool,
) -> HostForward {
    let host = HostScan::new(inputs, initial_state);
    let Dims {
        batch,
        d_inner,
        d_state,
        seq_len,
    } = host.dims;
    let (b, di, n) = (batch as i64, d_inner as i64, d_state as i64);
    let mut y = output(&[b, di, seq_len as i64]);
    let mut last_state = keep_state.then(|| output(&[b, di, n]));
    let mut checkpoints = keep_checkpoints.then(|| output(&[b, di, host.dims.chunks() as i64, n]));
    cpu_fused::forward(
        host.dims,
        &host.views(),
        Outputs {
            y: view_mut(&mut y),
            last_state: last_state.as_mut().map(view_mut),
            checkpoints: checkpoints.as_mut().map(view_mut),
        },
        threads,
    );
    HostForward {
        y: y.to_kind(inputs.u.kind()),
        last_state,
        checkpoints,
    }
}
