//! fp32 CPU tensors as Rust slices, for the Rust kernels (the fused scan, the causal
//! convolution): contiguous copies of their inputs, fresh outputs, and views of both.

use tch::{Device, Kind, Tensor};

/// A detached fp32 contiguous CPU copy.
pub fn host_f32(tensor: &Tensor) -> Tensor {
    tensor
        .detach()
        .to_device(Device::Cpu)
        .to_kind(Kind::Float)
        .contiguous()
}

/// A read-only view of a tensor made with [`host_f32`] or [`output`].
pub fn view(tensor: &Tensor) -> &[f32] {
    check(tensor);
    if tensor.numel() == 0 {
        return &[];
    }
    // SAFETY: a contiguous fp32 CPU tensor of `numel` elements; the borrow of `tensor` keeps
    // its storage alive, and no writer exists while the view does (see `view_mut`).
    unsafe { std::slice::from_raw_parts(tensor.data_ptr() as *const f32, tensor.numel()) }
}

/// A writable view; the exclusive borrow keeps every other view of this tensor away. Only for
/// tensors from [`output`], which share storage with nothing.
pub fn view_mut(tensor: &mut Tensor) -> &mut [f32] {
    check(tensor);
    if tensor.numel() == 0 {
        return &mut [];
    }
    // SAFETY: as in `view`, and `&mut` rules out other views through this handle; fresh
    // allocations from `output` have no other handles.
    unsafe { std::slice::from_raw_parts_mut(tensor.data_ptr() as *mut f32, tensor.numel()) }
}

fn check(tensor: &Tensor) {
    assert_eq!(tensor.kind(), Kind::Float, "host kernels take fp32");
    assert_eq!(
        tensor.device(),
        Device::Cpu,
        "host kernels take CPU tensors"
    );
    assert!(
        tensor.is_contiguous(),
        "host kernels take contiguous tensors"
    );
}

/// A fresh fp32 CPU tensor for a kernel's output, left uninitialised: the kernels overwrite
/// their outputs whole, and filling 25 MB of zeros first costs milliseconds.
pub fn output(shape: &[i64]) -> Tensor {
    Tensor::empty(shape, (Kind::Float, Device::Cpu))
}
