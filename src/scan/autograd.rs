//! The fused CPU scan as one autograd node: forward and backward run the Rust kernels of
//! [`super::cpu_fused`] through the libtorch shim in [`crate::torch_ext`].

use super::cpu_fused::{self, Grads};
use super::host::{forward_on_host, host_f32, intra_op_threads, view, view_mut, zeros, HostScan};
use super::ScanInputs;
use crate::torch_ext::{self, C_tensor, SCAN_INPUTS};
use std::ffi::{c_char, c_int};
use tch::Tensor;

const HAS_D: i64 = 1;
const HAS_Z: i64 = 2;
const HAS_BIAS: i64 = 4;
const SOFTPLUS: i64 = 8;

/// y = scan(inputs) with gradients for every input that requires them.
pub fn cpu_fused(inputs: &ScanInputs) -> Tensor {
    // libtorch's custom functions reject undefined inputs, so an absent optional input travels
    // as an empty placeholder that `flags` tells the callbacks to ignore.
    let absent = Tensor::empty([0], (tch::Kind::Float, inputs.u.device()));
    let flags = [
        (inputs.d.is_some(), HAS_D),
        (inputs.z.is_some(), HAS_Z),
        (inputs.delta_bias.is_some(), HAS_BIAS),
        (inputs.delta_softplus, SOFTPLUS),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, bit)| bit)
    .sum();
    let tensors = [
        inputs.u,
        inputs.delta,
        inputs.a,
        inputs.b,
        inputs.c,
        inputs.d.unwrap_or(&absent),
        inputs.z.unwrap_or(&absent),
        inputs.delta_bias.unwrap_or(&absent),
    ];
    torch_ext::apply_selective_scan(tensors, flags, forward, backward)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The shim's tensors as scan inputs.
fn scan_inputs<'a>(t: &[&'a Tensor; SCAN_INPUTS], flags: i64) -> ScanInputs<'a> {
    ScanInputs {
        u: t[0],
        delta: t[1],
        a: t[2],
        b: t[3],
        c: t[4],
        d: (flags & HAS_D != 0).then_some(t[5]),
        z: (flags & HAS_Z != 0).then_some(t[6]),
        delta_bias: (flags & HAS_BIAS != 0).then_some(t[7]),
        delta_softplus: flags & SOFTPLUS != 0,
    }
}

unsafe extern "C" fn forward(
    inputs: *const *const C_tensor,
    flags: i64,
    y: *mut *mut C_tensor,
    saved: *mut *mut C_tensor,
    error: *mut c_char,
    error_len: usize,
) -> c_int {
    torch_ext::guard(error, error_len, || {
        let borrowed = torch_ext::borrow_array::<SCAN_INPUTS>(inputs);
        let tensors: [&Tensor; SCAN_INPUTS] = std::array::from_fn(|i| &*borrowed[i]);
        let out = forward_on_host(
            &scan_inputs(&tensors, flags),
            intra_op_threads(),
            false,
            true,
        );
        let checkpoints = out.checkpoints.expect("the checkpoints were asked for");
        *y = torch_ext::into_raw(out.y);
        *saved = torch_ext::into_raw(checkpoints);
        Ok(())
    })
}

unsafe extern "C" fn backward(
    inputs: *const *const C_tensor,
    flags: i64,
    grad_y: *const C_tensor,
    grads: *mut *mut C_tensor,
    error: *mut c_char,
    error_len: usize,
) -> c_int {
    torch_ext::guard(error, error_len, || {
        // The scan's inputs, then the checkpoints `forward` saved.
        let borrowed = torch_ext::borrow_array::<{ SCAN_INPUTS + 1 }>(inputs);
        let tensors: [&Tensor; SCAN_INPUTS] = std::array::from_fn(|i| &*borrowed[i]);
        let inputs = scan_inputs(&tensors, flags);
        let checkpoints = &*borrowed[SCAN_INPUTS];
        let mut out = gradients(&inputs, checkpoints, &torch_ext::borrow(grad_y));
        for (i, grad) in out.iter_mut().enumerate() {
            *grads.add(i) = match grad.take() {
                Some(grad) => torch_ext::into_raw(grad.to_kind(tensors[i].kind())),
                None => std::ptr::null_mut(),
            };
        }
        Ok(())
    })
}

/// ∂L/∂input for each of the shim's inputs (None for absent ones), fp32.
fn gradients(
    inputs: &ScanInputs,
    checkpoints: &Tensor,
    grad_y: &Tensor,
) -> [Option<Tensor>; SCAN_INPUTS] {
    let host = HostScan::new(inputs);
    let dims = host.dims;
    let (b, di, n, l) = (
        dims.batch as i64,
        dims.d_inner as i64,
        dims.d_state as i64,
        dims.seq_len as i64,
    );
    let (mut du, mut ddelta, mut da) = (zeros(&[b, di, l]), zeros(&[b, di, l]), zeros(&[di, n]));
    let (mut db, mut dc) = (zeros(&[b, n, l]), zeros(&[b, n, l]));
    let mut dd = inputs.d.map(|_| zeros(&[di]));
    let mut dz = inputs.z.map(|_| zeros(&[b, di, l]));
    let mut dbias = inputs.delta_bias.map(|_| zeros(&[di]));
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
