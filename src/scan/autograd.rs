//! The fused CPU scan as one autograd node: forward and backward run the Rust kernels of
//! [`super::cpu_fused`] through the libtorch shim in [`crate::torch_ext`].

use super::cpu_fused::{self, Grads};
use super::host::{forward_on_host, HostScan};
use super::ScanInputs;
use crate::slices::{host_f32, output, view, view_mut};
use crate::torch_ext::{self, intra_op_threads, Node, NodeInputs, NODE_INPUTS};
use tch::Tensor;

/// `flags`: Δ = softplus(Δ + bias).
const SOFTPLUS: i64 = 1;

/// y = scan(inputs) with gradients for every input that requires them.
pub fn cpu_fused(inputs: &ScanInputs) -> Tensor {
    let tensors = [
        Some(inputs.u),
        Some(inputs.delta),
        Some(inputs.a),
        Some(inputs.b),
        Some(inputs.c),
        inputs.d,
        inputs.z,
        inputs.delta_bias,
    ];
    let flags = if inputs.delta_softplus { SOFTPLUS } else { 0 };
    torch_ext::apply_node::<FusedScan>(tensors, flags).unwrap_or_else(|e| panic!("{e}"))
}

/// The node's inputs as scan inputs.
fn scan_inputs<'a>(t: &NodeInputs<'a>, flags: i64) -> ScanInputs<'a> {
    let required = |i: usize| t[i].expect("the scan's required inputs are always passed");
    ScanInputs {
        u: required(0),
        delta: required(1),
        a: required(2),
        b: required(3),
        c: required(4),
        d: t[5],
        z: t[6],
        delta_bias: t[7],
        delta_softplus: flags & SOFTPLUS != 0,
    }
}

/// The fused scan as a [`Node`]: forward keeps the checkpoints, backward starts from them.
struct FusedScan;

impl Node for FusedScan {
    fn forward(inputs: &NodeInputs, flags: i64) -> (Tensor, Option<Tensor>) {
        let out = forward_on_host(
            &scan_inputs(inputs, flags),
            None,
            intra_op_threads(),
            false,
            true,
        );
        (out.y, out.checkpoints)
    }

    fn backward(
        inputs: &NodeInputs,
        checkpoints: &Tensor,
        flags: i64,
        grad_y: &Tensor,
    ) -> [Option<Tensor>; NODE_INPUTS] {
        gradients(&scan_inputs(inputs, flags), checkpoints, grad_y)
    }
}

/// ∂L/∂input for each of the shim's inputs (None for absent ones), fp32.
fn gradients(
    inputs: &ScanInputs,
    checkpoints: &Tensor,
    grad_y: &Tensor,
) -> [Option<Tensor>; NODE_INPUTS] {
    let host = HostScan::new(inputs, None);
    let dims = host.dims;
    let (b, di, n, l) = (
        dims.batch as i64,
        dims.d_inner as i64,
        dims.d_state as i64,
        dims.seq_len as i64,
    );
    let (mut du, mut ddelta, mut da) = (output(&[b, di, l]), output(&[b, di, l]), output(&[di, n]));
    let (mut db, mut dc) = (output(&[b, n, l]), output(&[b, n, l]));
    let mut dd = inputs.d.map(|_| output(&[di]));
    let mut dz = inputs.z.map(|_| output(&[b, di, l]));
    let mut dbias = inputs.delta_bias.map(|_| output(&[di]));
    let grad_y = host_f32(grad_y);
    cpu_fused::backward(
        dims,
        &host.views(),
        view(checkpoints),
        view(&grad_y),
        Grads {
            du: view_mut(&mut du),
            ddelta: view_mut(&mut ddelta),
            da: view_mut(&mut da),
            db: view_mut(&mut db),
            dc: view_mut(&mut dc),
            dd: dd.as_mut().map(view_mut),
            dz: dz.as_mut().map(view_mut),
            ddelta_bias: dbias.as_mut().map(view_mut),
        },
        intra_op_threads(),
    );
    [
        Some(du),
        Some(ddelta),
        Some(da),
        Some(db),
        Some(dc),
        dd,
        dz,
        dbias,
    ]
}
