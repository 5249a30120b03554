//! One launch of the kernel: how it spreads channels and states over threads and blocks, the
//! operands it reads and writes, and the launch itself, with the argument for its safety.

use cudarc::driver::{CudaStream, LaunchConfig, PushKernelArg};
use tch::{Kind, TchError, Tensor};

use super::driver::{driver_error, Kernel};
use super::{CudaFusedError, Dims, CHUNK, MAX_CHANNELS_PER_BLOCK, MAX_THREADS, SHARED_LIMIT, WARP};
use crate::scan::ScanInputs;

/// How a launch spreads channels and states over threads (see kernel.cu).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    /// Lanes per channel, S: d_state rounded up to a power of two, at most a warp.
    lanes: usize,
    /// Channels per block.
    channels: usize,
}

impl Geometry {
    fn new(d_state: usize) -> Self {
        let lanes = d_state.next_power_of_two().min(WARP);
        let channels = (MAX_THREADS / lanes).min(MAX_CHANNELS_PER_BLOCK);
        Self { lanes, channels }
    }

    /// A multiple of 32 (whole warps, as the kernel's full-mask shuffles need) for every lane
    /// count: 32 × 1, 32 × 2, then 128.
    fn threads(self) -> usize {
        self.lanes * self.channels
    }

    /// Δ', u and C·h tiles per channel, B and C tiles per state, rows of `CHUNK + 1` floats.
    fn shared_bytes(self, d_state: usize) -> usize {
        (3 * self.channels + 2 * d_state) * (CHUNK + 1) * std::mem::size_of::<f32>()
    }

    /// Sizes within `Dims::check_limits` fit every field: the grid's x is at most
    /// `i32::MAX`, its y at most [`MAX_GRID_Y`](super::MAX_GRID_Y), and the rest is bounded
    /// by constants.
    fn config(self, dims: Dims) -> LaunchConfig {
        let d_inner = dims.d_inner as usize;
        let shared = self.shared_bytes(dims.d_state as usize);
        debug_assert!(shared <= SHARED_LIMIT, "{shared} bytes of shared memory");
        LaunchConfig {
            grid_dim: (d_inner.div_ceil(self.channels) as u32, dims.batch as u32, 1),
            block_dim: (self.threads() as u32, 1, 1),
            shared_mem_bytes: shared as u32,
        }
    }
}

/// What the kernel reads and writes, each tensor contiguous and of the dtype the kernel reads
/// it as. Held until the launch is queued; see the safety argument in [`launch`].
pub(super) struct Operands {
    u: Tensor,
    delta: Tensor,
    a: Tensor,
    b: Tensor,
    c: Tensor,
    d: Option<Tensor>,
    z: Option<Tensor>,
    bias: Option<Tensor>,
    initial: Option<Tensor>,
    /// (batch, d_inner, seq_len) in u's dtype.
    pub(super) y: Tensor,
    /// (batch, d_inner, d_state) in fp32.
    pub(super) last_state: Option<Tensor>,
}

impl Operands {
    pub(super) fn new(
        inputs: &ScanInputs,
        initial: Option<&Tensor>,
        dims: Dims,
        want_last_state: bool,
    ) -> Result<Self, CudaFusedError> {
        let device = inputs.u.device();
        let per_token = |t: &Tensor| t.f_contiguous();
        // The reference casts A, D, the bias and the initial state to fp32; so does this.
        let fp32 =
            |t: &Tensor| -> Result<Tensor, TchError> { t.f_to_kind(Kind::Float)?.f_contiguous() };
        let Dims {
            batch,
            d_inner,
            d_state,
            seq_len,
        } = dims;
        let last_state = if want_last_state {
            Some(Tensor::f_empty(
                [batch, d_inner, d_state],
                (Kind::Float, device),
            )?)
        } else {
            None
        };
        Ok(Self {
            u: per_token(inputs.u)?,
            delta: per_token(inputs.delta)?,
            a: fp32(inputs.a)?,
            b: per_token(inputs.b)?,
            c: per_token(inputs.c)?,
            d: inputs.d.map(fp32).transpose()?,
            z: inputs.z.map(per_token).transpose()?,
            bias: inputs.delta_bias.map(fp32).transpose()?,
            initial: initial.map(fp32).transpose()?,
            y: Tensor::f_empty([batch, d_inner, seq_len], (inputs.u.kind(), device))?,
            last_state,
        })
    }
}

/// The device address of a tensor's first element, as the kernel takes it.
fn address(tensor: &Tensor) -> u64 {
    tensor.data_ptr() as u64
}

/// Like [`address`], with 0, the kernel's null, for an absent optional tensor.
fn optional_address(tensor: Option<&Tensor>) -> u64 {
    tensor.map_or(0, address)
}

/// Queues the kernel on `stream`, libtorch's current stream on the operands' device.
pub(super) fn launch(
    kernel: &Kernel,
    stream: &CudaStream,
    operands: &Operands,
    dims: Dims,
    delta_softplus: bool,
) -> Result<(), CudaFusedError> {
    let geometry = Geometry::new(dims.d_state as usize);
    let config = geometry.config(dims);
    // The arguments, in kernel.cu's order. cudarc's `arg` keeps a pointer to each value until
    // the launch, so each one lives in a local declared before the builder.
    let u = address(&operands.u);
    let delta = address(&operands.delta);
    let a = address(&operands.a);
    let b = address(&operands.b);
    let c = address(&operands.c);
    let d = optional_address(operands.d.as_ref());
    let z = optional_address(operands.z.as_ref());
    let bias = optional_address(operands.bias.as_ref());
    let initial = optional_address(operands.initial.as_ref());
    let y = address(&operands.y);
    let last_state = optional_address(operands.last_state.as_ref());
    // All within `int`: checked in `Dims::check_limits`, or bounded by constants.
    let d_inner = dims.d_inner as i32;
    let d_state = dims.d_state as i32;
    let seq_len = dims.seq_len as i32;
    let lanes = geometry.lanes as i32;
    let softplus = i32::from(delta_softplus);

    let mut builder = stream.launch_builder(&kernel.function);
    builder
        .arg(&u)
        .arg(&delta)
        .arg(&a)
        .arg(&b)
        .arg(&c)
        .arg(&d)
        .arg(&z)
        .arg(&bias)
        .arg(&initial)
        .arg(&y)
        .arg(&last_state);
    builder
        .arg(&d_inner)
        .arg(&d_state)
        .arg(&seq_len)
        .arg(&lanes)
        .arg(&softplus);
    // SAFETY: cudarc cannot check a launch, so this argues each of its conditions.
    // - Signature: `selective_scan_fwd` takes 11 pointers, then 5 `int`s. Each pointer is
    //   passed as a u64 (a device pointer is 8 bytes on the 64-bit hosts libtorch supports),
    //   each `int` as an i32, in that order; the compiled PTX declares exactly these
    //   parameters.
    // - Memory: every non-zero address is the first element of a live, contiguous CUDA tensor
    //   on this device, of the shape `Dims::check` verified and the dtype the kernel reads it
    //   as (the element type for u, Δ, B, C, z and y, fp32 for the rest). The kernel indexes
    //   only within those shapes (the bounds are noted in kernel.cu), reads the inputs, and
    //   writes only y and the last state, which were just allocated and alias nothing.
    // - Context: libtorch allocated them through the CUDA runtime in the device's primary
    //   context, which is the context `CudaContext::new` retained, so the addresses are valid
    //   where the kernel runs.
    // - Lifetimes: the launch is asynchronous and `operands` may drop before the kernel ends.
    //   libtorch's caching allocator allocated every tensor here on its current stream, the
    //   stream the kernel is queued on; a freed block is handed out again only to work queued
    //   later on that stream, which runs after the kernel.
    // - Configuration: whole warps, at most `MAX_THREADS` threads and `SHARED_LIMIT` bytes of
    //   shared memory for every d_state that `check_limits` admits (see the geometry test).
    unsafe { builder.launch(config) }.map_err(driver_error("launching the scan kernel"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::cuda_fused::{MAX_D_STATE, MAX_STATES_PER_THREAD};

    #[test]
    fn every_supported_d_state_fits_one_block() {
        for d_state in 1..=MAX_D_STATE {
            let geometry = Geometry::new(d_state);
            let threads = geometry.threads();
            assert!(
                geometry.lanes.is_power_of_two() && geometry.lanes <= WARP,
                "d_state {d_state}"
            );
            assert_eq!(threads % WARP, 0, "d_state {d_state}: whole warps only");
            assert!(
                threads <= MAX_THREADS,
                "d_state {d_state}: {threads} threads"
            );
            assert!(
                d_state.div_ceil(geometry.lanes) <= MAX_STATES_PER_THREAD,
                "d_state {d_state}: too many states per thread"
            );
            let shared = geometry.shared_bytes(d_state);
            assert!(shared <= SHARED_LIMIT, "d_state {d_state}: {shared} bytes");
        }
    }
}
