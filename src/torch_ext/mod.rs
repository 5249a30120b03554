//! What libtorch offers and tch does not expose, through the small C++ shim `shim.cpp` beside
//! this file (compiled by build.rs against the torch headers). This module owns the shim: it
//! declares its entry points and gives the rest of the crate safe wrappers.
//!
//! - [`apply_node`]: a `torch::autograd::Function` whose forward and backward are Rust
//!   callbacks, so a Rust kernel (the fused scan, the causal convolution) becomes one
//!   differentiable node (tch has no custom-autograd API; tch-rs #70, #279, #437).
//!
//! - [`grad_enabled`]: whether autograd is recording (tch offers `no_grad` but no query);
//! - [`parallel_for`]: `at::parallel_for`, so Rust kernels run on libtorch's intra-op threads.
//!
//! Tensors cross the boundary as `at::Tensor*`, which is what tch's `C_tensor` pointers are.
//! Borrowed ones are wrapped without taking ownership; owned ones are heap tensors whose
//! ownership passes with the pointer.

use crate::panics::panic_message;
use std::ffi::{c_char, c_int, c_void};
use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;
use tch::Tensor;
use torch_sys::C_tensor;

/// Room for an error message coming back from the shim.
const ERROR_CAPACITY: usize = 4096;

/// Inputs of every Rust node: the most any takes (the scan: u, Δ, A, B, C, D, z, Δ bias).
/// Nodes with fewer pass placeholders.
pub const NODE_INPUTS: usize = 8;

/// Computes y from the borrowed inputs; writes an owned tensor to `y`, and optionally one to
/// `saved` that the backward callback will receive. Non-zero means failure, with a message in
/// `error`.
type NodeForwardFn = unsafe extern "C" fn(
    inputs: *const *const C_tensor,
    flags: i64,
    y: *mut *mut C_tensor,
    saved: *mut *mut C_tensor,
    error: *mut c_char,
    error_len: usize,
) -> c_int;

/// Computes the inputs' gradients from the borrowed inputs, followed by forward's `saved`
/// tensor (undefined if it gave none), and ∂L/∂y; writes owned tensors (or null, for no
/// gradient) to `grads[0..NODE_INPUTS]`.
type NodeBackwardFn = unsafe extern "C" fn(
    inputs: *const *const C_tensor,
    flags: i64,
    grad_y: *const C_tensor,
    grads: *mut *mut C_tensor,
    error: *mut c_char,
    error_len: usize,
) -> c_int;

extern "C" {
    fn mvt_grad_enabled() -> c_int;

    fn mvt_parallel_for(
        n: i64,
        grain: i64,
        body: unsafe extern "C" fn(context: *mut c_void, begin: i64, end: i64),
        context: *mut c_void,
        error: *mut c_char,
        error_len: usize,
    ) -> c_int;

    fn mvt_cuda_memory_stats(
        device: c_int,
        allocated_current: *mut i64,
        allocated_peak: *mut i64,
        reserved_current: *mut i64,
        reserved_peak: *mut i64,
        error: *mut c_char,
        error_len: usize,
    ) -> c_int;

    fn mvt_cuda_reset_peak_memory(device: c_int, error: *mut c_char, error_len: usize) -> c_int;

    fn mvt_cuda_current_stream(
        device: c_int,
        stream: *mut *mut c_void,
        error: *mut c_char,
        error_len: usize,
    ) -> c_int;

    fn mvt_set_sdp_backends(mask: c_int, error: *mut c_char, error_len: usize) -> c_int;

    fn mvt_sdp_backends() -> c_int;

    fn mvt_set_autocast(
        cuda: c_int,
        enabled: c_int,
        scalar_type: c_int,
        error: *mut c_char,
        error_len: usize,
    ) -> c_int;

    fn mvt_apply_rust_node(
        inputs: *const *const C_tensor,
        flags: i64,
        forward: NodeForwardFn,
        backward: NodeBackwardFn,
        y: *mut *mut C_tensor,
        error: *mut c_char,
        error_len: usize,
    ) -> c_int;
}

#[derive(Debug, thiserror::Error)]
#[error("libtorch extension failed: {0}")]
pub struct TorchExtError(pub String);

/// A Rust kernel as one differentiable operation: what [`apply_node`] runs in the shim's
/// autograd node. A panic in either callback becomes a torch error, and both must be
/// thread-safe: on CUDA, autograd runs backward on a thread of its own.
pub trait Node {
    /// y, and optionally a tensor of the node's own that [`Node::backward`] will receive.
    fn forward(inputs: &NodeInputs, flags: i64) -> (Tensor, Option<Tensor>);

    /// ∂L/∂input for each input (None for none, and for absent inputs), given ∂L/∂y and the
    /// tensor `forward` kept (undefined if it kept none). The shim converts each to its
    /// input's dtype.
    fn backward(
        inputs: &NodeInputs,
        saved: &Tensor,
        flags: i64,
        grad_y: &Tensor,
    ) -> [Option<Tensor>; NODE_INPUTS];
}

/// A node's inputs by slot, None where the node takes fewer or an optional one is absent.
pub type NodeInputs<'a> = [Option<&'a Tensor>; NODE_INPUTS];

/// Applies node `N` to `inputs`. `flags` reaches both callbacks unchanged.
pub fn apply_node<N: Node>(inputs: NodeInputs, flags: i64) -> Result<Tensor, TorchExtError> {
    // libtorch's custom functions reject undefined inputs, so an absent one travels as an
    // empty placeholder, and the low bits of the shim's flags say which slots hold one.
    let device = inputs
        .iter()
        .flatten()
        .next()
        .map_or(tch::Device::Cpu, |t| t.device());
    let absent = Tensor::empty([0], (tch::Kind::Float, device));
    let present = inputs
        .iter()
        .enumerate()
        .filter(|(_, t)| t.is_some())
        .map(|(i, _)| 1i64 << i)
        .sum::<i64>();
    let tensors = inputs.map(|t| t.unwrap_or(&absent));
    let shim_flags = flags << NODE_INPUTS | present;
    apply_rust_node(tensors, shim_flags, node_forward::<N>, node_backward::<N>)
}

/// The inputs a callback receives, placeholders dropped again, and the node's own flags: what
/// [`apply_node`] packed into the shim's flags.
fn unpack(borrowed: &[ManuallyDrop<Tensor>], shim_flags: i64) -> (NodeInputs<'_>, i64) {
    let inputs = std::array::from_fn(|i| (shim_flags >> i & 1 != 0).then(|| &*borrowed[i]));
    (inputs, shim_flags >> NODE_INPUTS)
}

unsafe extern "C" fn node_forward<N: Node>(
    inputs: *const *const C_tensor,
    shim_flags: i64,
    y: *mut *mut C_tensor,
    saved: *mut *mut C_tensor,
    error: *mut c_char,
    error_len: usize,
) -> c_int {
    guard(error, error_len, || {
        let borrowed = borrow_array::<NODE_INPUTS>(inputs);
        let (tensors, flags) = unpack(&borrowed, shim_flags);
        let (out, kept) = N::forward(&tensors, flags);
        *y = into_raw(out);
        if let Some(kept) = kept {
            *saved = into_raw(kept);
        }
        Ok(())
    })
}

unsafe extern "C" fn node_backward<N: Node>(
    inputs: *const *const C_tensor,
    shim_flags: i64,
    grad_y: *const C_tensor,
    grads: *mut *mut C_tensor,
    error: *mut c_char,
    error_len: usize,
) -> c_int {
    guard(error, error_len, || {
        // The node's inputs, then the tensor `forward` kept.
        let borrowed = borrow_array::<{ NODE_INPUTS + 1 }>(inputs);
        let (tensors, flags) = unpack(&borrowed, shim_flags);
        let out = N::backward(&tensors, &borrowed[NODE_INPUTS], flags, &borrow(grad_y));
        for (i, grad) in out.into_iter().enumerate() {
            *grads.add(i) = match (grad, tensors[i]) {
                (Some(grad), Some(input)) => into_raw(grad.to_kind(input.kind())),
                _ => std::ptr::null_mut(),
            };
        }
        Ok(())
    })
}

/// Applies the shim's autograd node with these callbacks to `inputs`.
fn apply_rust_node(
    inputs: [&Tensor; NODE_INPUTS],
    flags: i64,
    forward: NodeForwardFn,
    backward: NodeBackwardFn,
) -> Result<Tensor, TorchExtError> {
    let pointers: Vec<*const C_tensor> = inputs.iter().map(|t| t.as_ptr()).collect();
    let mut y: *mut C_tensor = std::ptr::null_mut();
    call_shim(|error, error_len| {
        // SAFETY: the pointers are live tch tensors for the duration of the call; the shim
        // writes an owned tensor to `y` on success and a NUL-terminated message to `error` on
        // failure.
        unsafe {
            mvt_apply_rust_node(
                pointers.as_ptr(),
                flags,
                forward,
                backward,
                &mut y,
                error,
                error_len,
            )
        }
    })?;
    if y.is_null() {
        return Err(TorchExtError(
            "the shim's autograd node returned no tensor".to_owned(),
        ));
    }
    // SAFETY: on success `y` is a heap tensor whose ownership the shim passed to us.
    Ok(unsafe { Tensor::from_ptr(y) })
}

/// Bytes of the CUDA caching allocator on one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CudaMemory {
    /// Held by live tensors now, and at most since the last reset.
    pub allocated_current: i64,
    pub allocated_peak: i64,
    /// Held from the driver by the allocator (tensors plus its cache), now and at most.
    pub reserved_current: i64,
    pub reserved_peak: i64,
}

/// The CUDA caching allocator's statistics for `device`.
pub fn cuda_memory(device: usize) -> Result<CudaMemory, TorchExtError> {
    let mut m = CudaMemory::default();
    call_shim(|error, error_len| {
        // SAFETY: plain out-pointers to live locals; the shim catches every C++ exception.
        unsafe {
            mvt_cuda_memory_stats(
                device as c_int,
                &mut m.allocated_current,
                &mut m.allocated_peak,
                &mut m.reserved_current,
                &mut m.reserved_peak,
                error,
                error_len,
            )
        }
    })?;
    Ok(m)
}

/// libtorch's current CUDA stream on `device`, as the driver's `CUstream` handle (null for the
/// legacy default stream): where a kernel launched outside libtorch must go to be ordered with
/// libtorch's work on that device.
pub fn cuda_current_stream(device: usize) -> Result<*mut c_void, TorchExtError> {
    let mut stream: *mut c_void = std::ptr::null_mut();
    call_shim(|error, error_len| {
        // SAFETY: an out-pointer to a live local; the shim catches every C++ exception.
        unsafe { mvt_cuda_current_stream(device as c_int, &mut stream, error, error_len) }
    })?;
    Ok(stream)
}

/// Makes the CUDA allocator's peaks equal to its current values on `device`.
pub fn reset_cuda_peak_memory(device: usize) -> Result<(), TorchExtError> {
    call_shim(|error, error_len| {
        // SAFETY: the shim catches every C++ exception and writes at most `error_len` bytes.
        unsafe { mvt_cuda_reset_peak_memory(device as c_int, error, error_len) }
    })
}

/// The kernels `scaled_dot_product_attention` may choose from (libtorch picks the fastest
/// allowed one for the inputs). Process-wide, like `torch.backends.cuda.enable_*_sdp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdpBackends {
    pub flash: bool,
    pub mem_efficient: bool,
    pub math: bool,
    pub cudnn: bool,
}

impl SdpBackends {
    pub const ALL: SdpBackends = SdpBackends {
        flash: true,
        mem_efficient: true,
        math: true,
        cudnn: true,
    };

    fn mask(self) -> c_int {
        c_int::from(self.flash)
            | c_int::from(self.mem_efficient) << 1
            | c_int::from(self.math) << 2
            | c_int::from(self.cudnn) << 3
    }
}

/// Allows only `backends` for fused attention from now on.
pub fn set_sdp_backends(backends: SdpBackends) -> Result<(), TorchExtError> {
    call_shim(|error, error_len| {
        // SAFETY: the shim catches every C++ exception and writes at most `error_len` bytes.
        unsafe { mvt_set_sdp_backends(backends.mask(), error, error_len) }
    })
}

/// The kernels fused attention may choose from now.
pub fn sdp_backends() -> SdpBackends {
    // SAFETY: reads process-wide flags; no arguments, no failure.
    let mask = unsafe { mvt_sdp_backends() };
    SdpBackends {
        flash: mask & 1 != 0,
        mem_efficient: mask & 2 != 0,
        math: mask & 4 != 0,
        cudnn: mask & 8 != 0,
    }
}

/// Turns autocast (mixed precision) for `device`'s type on this thread on, computing in
/// `kind`, or off when `kind` is `None`.
pub fn set_autocast(device: tch::Device, kind: Option<tch::Kind>) -> Result<(), TorchExtError> {
    let cuda = c_int::from(device.is_cuda());
    // c10::ScalarType's values for the dtypes autocast computes in.
    let scalar_type = match kind.unwrap_or(tch::Kind::BFloat16) {
        tch::Kind::Half => 5,
        tch::Kind::Float => 6,
        tch::Kind::BFloat16 => 15,
        other => {
            return Err(TorchExtError(format!(
                "autocast computes in f16, bf16 or f32, not {other:?}"
            )))
        }
    };
    call_shim(|error, error_len| {
        // SAFETY: plain integers in; the shim catches every C++ exception.
        unsafe {
            mvt_set_autocast(
                cuda,
                c_int::from(kind.is_some()),
                scalar_type,
                error,
                error_len,
            )
        }
    })
}

/// Whether autograd records operations on this thread: false inside `tch::no_grad`.
pub fn grad_enabled() -> bool {
    // SAFETY: reads a thread-local flag; no arguments, no failure.
    unsafe { mvt_grad_enabled() != 0 }
}

/// libtorch's intra-op thread count, which the Rust kernels share through [`parallel_for`].
pub fn intra_op_threads() -> usize {
    tch::get_num_threads().max(1) as usize
}

/// Calls `body(begin..end)` on disjoint ranges covering `0..n`, each at least `grain` long
/// (except the last), on libtorch's intra-op thread pool. A panic in `body` is caught on its
/// thread and re-raised here once every range has finished.
pub fn parallel_for(n: usize, grain: usize, body: impl Fn(std::ops::Range<usize>) + Sync) {
    struct Context<'a> {
        body: &'a (dyn Fn(std::ops::Range<usize>) + Sync),
        panic: Mutex<Option<Box<dyn std::any::Any + Send>>>,
    }
    unsafe extern "C" fn trampoline(context: *mut c_void, begin: i64, end: i64) {
        // SAFETY: `context` is the `Context` below, alive for the whole `mvt_parallel_for`.
        let context = unsafe { &*(context as *const Context) };
        let range = begin as usize..end as usize;
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| (context.body)(range))) {
            let mut slot = context.panic.lock().unwrap_or_else(|e| e.into_inner());
            slot.get_or_insert(payload);
        }
    }
    if n == 0 {
        return;
    }
    let context = Context {
        body: &body,
        panic: Mutex::new(None),
    };
    let outcome = call_shim(|error, error_len| {
        // SAFETY: the trampoline matches the shim's signature and never unwinds; `context`
        // outlives the call, which returns only after every range is done.
        unsafe {
            mvt_parallel_for(
                n as i64,
                grain.max(1) as i64,
                trampoline,
                &context as *const Context as *mut c_void,
                error,
                error_len,
            )
        }
    });
    if let Some(payload) = context
        .panic
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
    {
        std::panic::resume_unwind(payload);
    }
    if let Err(TorchExtError(text)) = outcome {
        panic!("at::parallel_for failed: {text}");
    }
}

/// Calls a shim entry point that reports failure through an error buffer: `call` gets a fresh
/// buffer of [`ERROR_CAPACITY`] bytes and its length, and returns the shim's status. A
/// non-zero status becomes an error with the NUL-terminated message the shim wrote there.
fn call_shim(call: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<(), TorchExtError> {
    let mut error = vec![0 as c_char; ERROR_CAPACITY];
    let status = call(error.as_mut_ptr(), error.len());
    if status == 0 {
        Ok(())
    } else {
        Err(TorchExtError(message(&error)))
    }
}

/// The text of a NUL-terminated message in `buffer` (all of it, if there is no NUL).
fn message(buffer: &[c_char]) -> String {
    let bytes: Vec<u8> = buffer
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A tensor the shim lends to a callback. It must not be dropped: the shim still owns it.
///
/// # Safety
/// `pointer` must point to a live `at::Tensor` for as long as the result is used.
unsafe fn borrow(pointer: *const C_tensor) -> ManuallyDrop<Tensor> {
    ManuallyDrop::new(Tensor::from_ptr(pointer as *mut C_tensor))
}

/// The `N` tensors of a pointer array the shim lends to a callback, as [`borrow`] does.
///
/// # Safety
/// `pointers` must point to `N` pointers to live `at::Tensor`s, valid while the result is used.
unsafe fn borrow_array<const N: usize>(
    pointers: *const *const C_tensor,
) -> [ManuallyDrop<Tensor>; N] {
    std::array::from_fn(|i| borrow(*pointers.add(i)))
}

/// Passes ownership of `tensor` to the shim.
fn into_raw(tensor: Tensor) -> *mut C_tensor {
    let tensor = ManuallyDrop::new(tensor);
    tensor.as_ptr() as *mut C_tensor
}

/// Runs a callback body: a returned error or a panic becomes status 1 with its message in
/// `error`, so neither crosses into C++ as an unwind.
///
/// # Safety
/// `error` must be valid for writes of `error_len` bytes.
unsafe fn guard(
    error: *mut c_char,
    error_len: usize,
    body: impl FnOnce() -> Result<(), String>,
) -> c_int {
    let outcome = catch_unwind(AssertUnwindSafe(body))
        .unwrap_or_else(|payload| Err(panic_message(payload.as_ref())));
    match outcome {
        Ok(()) => 0,
        Err(text) => {
            if !error.is_null() && error_len > 0 {
                let bytes = text.as_bytes();
                let n = bytes.len().min(error_len - 1);
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), error as *mut u8, n);
                *error.add(n) = 0;
            }
            1
        }
    }
}

/// Runs `work` on every item, in at most `threads` ranges on libtorch's intra-op pool (so the
/// kernel never competes with libtorch for cores), each range with its own scratch from
/// `init`. Returns every range's scratch.
pub fn parallel_items<T: Send, S: Send>(
    mut items: Vec<T>,
    threads: usize,
    init: impl Fn() -> S + Sync,
    work: impl Fn(&mut T, &mut S) + Sync,
) -> Vec<S> {
    let scratches = Mutex::new(Vec::new());
    let len = items.len();
    let base = SendPtr(items.as_mut_ptr());
    let grain = len.div_ceil(threads.max(1));
    parallel_for(len, grain, |range| {
        let base = &base;
        // SAFETY: parallel_for hands out disjoint ranges within 0..len, so each item is
        // borrowed mutably by exactly one range, while `items` outlives the call.
        let group = unsafe { std::slice::from_raw_parts_mut(base.0.add(range.start), range.len()) };
        let mut scratch = init();
        for item in group {
            work(item, &mut scratch);
        }
        scratches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(scratch);
    });
    scratches.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// A pointer that may cross threads: [`parallel_items`] guarantees the accesses are disjoint.
struct SendPtr<T>(*mut T);
// SAFETY: only dereferenced in `parallel_items`, on disjoint ranges.
unsafe impl<T: Send> Sync for SendPtr<T> {}
