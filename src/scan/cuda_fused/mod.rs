//! The fused CUDA selective scan, forward only: one kernel that keeps the state h in registers,
//! so the (batch, d_inner, seq_len, d_state) tensors of the reference never exist in memory. This
//! is the hardware-aware scan of the Mamba paper (Gu & Dao 2023, Section 3.3.2); mamba_ssm's
//! `csrc/selective_scan` is the reference implementation, and [`crate::scan::reference`] is the
//! obviously correct twin it is tested against.
//!
//! The CUDA source, `kernel.cu`, is compiled at run time with NVRTC through `cudarc`, once per
//! (device, element type), so building the crate needs no CUDA toolkit: cudarc opens libcuda and
//! libnvrtc when first used. The work decomposition and the next optimisations are described at
//! the top of `kernel.cu`.
//!
//! # Streams and contexts
//!
//! The kernel reads and writes libtorch's tensors in place, through their device addresses, so
//! it must run in libtorch's context and in order with libtorch's work:
//! - Context: libtorch allocates through the CUDA runtime, which uses each device's *primary*
//!   context. `CudaContext::new` retains that same primary context, so the addresses are valid
//!   in it.
//! - Stream: the kernel is launched on libtorch's current stream on the device, which the
//!   shim reads through c10's device-guard interface ([`crate::torch_ext::cuda_current_stream`]):
//!   the legacy default stream (cudarc's `default_stream()`, a null handle passed to plain
//!   `cuLaunchKernel`) unless a caller installed another, which is then borrowed. The kernel is
//!   therefore ordered after the work that produced its inputs and before whatever reads y,
//!   and nothing here synchronises.
//!
//! cudarc binds its context to the calling thread, and the CUDA runtime reads the thread's
//! current context as its current device; [`forward`] puts the previous context back, so
//! libtorch's notion of the current device is unchanged.
//!
//! # Scope
//!
//! u, Δ, B, C and z share one dtype, f32, bf16 or f16, and y has it too; everything is computed
//! in fp32. A, D, Δ's bias and the initial state are cast to fp32 as the reference does.
//! d_state is at most [`MAX_D_STATE`]. The result carries no autograd history: callers that
//! need gradients use the chunked scan or the reference.

use std::any::Any;
use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use cudarc::driver::{
    self, CudaContext, CudaFunction, CudaStream, DriverError, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::{self, CompileError, CompileOptions};
use tch::{Device, Kind, TchError, Tensor};

use super::ScanInputs;

/// The CUDA C++ source of the kernel.
const SOURCE: &str = include_str!("kernel.cu");
/// The kernel's `extern "C"` name in [`SOURCE`].
const KERNEL: &str = "selective_scan_fwd";

/// Time steps per shared-memory tile (`SCAN_CHUNK` in kernel.cu). 32 steps of fp32 are one
/// 128-byte line per row.
const CHUNK: usize = 32;
/// Register slots for the state per thread (`SCAN_MAX_STATES_PER_THREAD`).
const MAX_STATES_PER_THREAD: usize = 4;
/// Threads of the largest block (`SCAN_MAX_THREADS`, the kernel's `__launch_bounds__`).
const MAX_THREADS: usize = 128;
/// Channels one block holds at most: bounds the shared tiles when d_state is tiny.
const MAX_CHANNELS_PER_BLOCK: usize = 32;
/// Lanes of a warp: the most lanes one channel's states spread over.
const WARP: usize = 32;
/// Dynamic shared memory a launch gets without opting into more per function.
const SHARED_LIMIT: usize = 48 * 1024;
/// The grid's y dimension holds the batch.
const MAX_GRID_Y: i64 = 65_535;

/// The largest d_state the kernel supports: a warp of lanes, each with its register slots.
pub const MAX_D_STATE: usize = WARP * MAX_STATES_PER_THREAD;

/// Why the fused CUDA scan could not run.
#[derive(Debug, thiserror::Error)]
pub enum CudaFusedError {
    #[error(
        "the fused CUDA scan needs CUDA tensors, but u is on {0:?}; use the cpu_fused or \
         chunked scan there"
    )]
    NotCuda(Device),
    #[error("{name} is on {found:?} but u is on {expected:?}; put every scan input on one device")]
    DeviceMismatch {
        name: &'static str,
        found: Device,
        expected: Device,
    },
    #[error("{name} has shape {found:?}; expected {expected}")]
    Shape {
        name: &'static str,
        found: Vec<i64>,
        expected: String,
    },
    #[error("u has dtype {0:?}; the fused CUDA scan takes Float, BFloat16 or Half")]
    UnsupportedKind(Kind),
    #[error(
        "{name} has dtype {found:?} but u has {expected:?}; u, delta, B, C and z must share \
         one dtype"
    )]
    KindMismatch {
        name: &'static str,
        found: Kind,
        expected: Kind,
    },
    #[error(
        "d_state = {d_state} is outside the fused CUDA scan's range 1..={max}; use the \
         chunked scan"
    )]
    StateSize { d_state: i64, max: usize },
    #[error("{what} = {value} is above the fused CUDA scan's limit of {limit}; split the input")]
    TooLarge {
        what: &'static str,
        value: i64,
        limit: i64,
    },
    #[error(
        "could not load the CUDA driver library (libcuda.so.1); is the NVIDIA driver installed?"
    )]
    DriverLibrary,
    #[error(
        "could not load NVRTC (libnvrtc.so.13); add the folder that holds it \
         (nvidia/cu13/lib beside torch/ in a wheel install) to LD_LIBRARY_PATH"
    )]
    NvrtcLibrary,
    #[error("a CUDA driver call failed while {context}: {source}")]
    Driver {
        context: &'static str,
        source: DriverError,
    },
    #[error("NVRTC could not compile the {element} scan kernel for {arch}:\n{log}")]
    Compile {
        element: &'static str,
        arch: String,
        log: String,
    },
    #[error("cudarc panicked while {context}: {message}")]
    Panicked {
        context: &'static str,
        message: String,
    },
    #[error("cannot ask libtorch for its current CUDA stream: {0}")]
    Stream(String),
    #[error(transparent)]
    Torch(#[from] TchError),
}

/// Runs the scan on the CUDA device that holds `inputs`, from `initial` (batch, d_inner,
/// d_state) when given, else from zeros. Returns y (batch, d_inner, seq_len) in u's dtype and,
/// if `want_last_state`, the last state (batch, d_inner, d_state) in fp32.
///
/// The kernel is queued, not finished, when this returns; anything libtorch does with the
/// results afterwards is ordered after it (see the module docs).
pub fn forward(
    inputs: &ScanInputs,
    initial: Option<&Tensor>,
    want_last_state: bool,
) -> Result<(Tensor, Option<Tensor>), CudaFusedError> {
    let (dims, ordinal) = Dims::check(inputs, initial)?;
    let element = Element::of(inputs.u.kind())?;
    let operands = Operands::new(inputs, initial, dims, want_last_state)?;
    // An empty grid is an invalid launch; with no channel there is nothing to compute.
    if dims.batch > 0 && dims.d_inner > 0 {
        catch_panics("running the fused CUDA scan", || {
            check_driver_library()?;
            let _restore = CurrentContext::save()?;
            let kernel = compiled_kernel(ordinal, element)?;
            let stream = libtorch_stream(&kernel.context, ordinal)?;
            launch(&kernel, &stream, &operands, dims, inputs.delta_softplus)
        })?;
    }
    let Operands { y, last_state, .. } = operands;
    Ok((y, last_state))
}

/// Sizes of one scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dims {
    batch: i64,
    d_inner: i64,
    d_state: i64,
    seq_len: i64,
}

impl Dims {
    /// The sizes `inputs` describe, and the ordinal of their CUDA device, once every tensor is
    /// on u's device with the shape and dtype the kernel indexes it with.
    fn check(
        inputs: &ScanInputs,
        initial: Option<&Tensor>,
    ) -> Result<(Self, usize), CudaFusedError> {
        let device = inputs.u.device();
        let Device::Cuda(ordinal) = device else {
            return Err(CudaFusedError::NotCuda(device));
        };
        let u_size = inputs.u.size();
        let &[batch, d_inner, seq_len] = u_size.as_slice() else {
            return Err(CudaFusedError::Shape {
                name: "u",
                found: inputs.u.size(),
                expected: "(batch, d_inner, seq_len)".to_owned(),
            });
        };
        let a_size = inputs.a.size();
        let &[_, d_state] = a_size.as_slice() else {
            return Err(CudaFusedError::Shape {
                name: "A",
                found: inputs.a.size(),
                expected: "(d_inner, d_state)".to_owned(),
            });
        };
        let expected = [
            ("delta", Some(inputs.delta), vec![batch, d_inner, seq_len]),
            ("A", Some(inputs.a), vec![d_inner, d_state]),
            ("B", Some(inputs.b), vec![batch, d_state, seq_len]),
            ("C", Some(inputs.c), vec![batch, d_state, seq_len]),
            ("D", inputs.d, vec![d_inner]),
            ("z", inputs.z, vec![batch, d_inner, seq_len]),
            ("delta_bias", inputs.delta_bias, vec![d_inner]),
            ("the initial state", initial, vec![batch, d_inner, d_state]),
        ];
        for (name, tensor, want) in expected {
            let Some(tensor) = tensor else { continue };
            if tensor.device() != device {
                return Err(CudaFusedError::DeviceMismatch {
                    name,
                    found: tensor.device(),
                    expected: device,
                });
            }
            let found = tensor.size();
            if found != want {
                return Err(CudaFusedError::Shape {
                    name,
                    found,
                    expected: format!("{want:?}"),
                });
            }
        }
        // The kernel reads these through one element type; A, D, the bias and the initial
        // state are cast to fp32 instead (see `Operands::new`).
        let per_token = [
            ("delta", Some(inputs.delta)),
            ("B", Some(inputs.b)),
            ("C", Some(inputs.c)),
            ("z", inputs.z),
        ];
        for (name, tensor) in per_token {
            let Some(tensor) = tensor else { continue };
            if tensor.kind() != inputs.u.kind() {
                return Err(CudaFusedError::KindMismatch {
                    name,
                    found: tensor.kind(),
                    expected: inputs.u.kind(),
                });
            }
        }
        let dims = Self {
            batch,
            d_inner,
            d_state,
            seq_len,
        };
        dims.check_limits()?;
        Ok((dims, ordinal))
    }

    /// The kernel takes its sizes as `int`, the batch as the grid's y dimension, and holds at
    /// most [`MAX_D_STATE`] states per channel.
    fn check_limits(self) -> Result<(), CudaFusedError> {
        if !(1..=MAX_D_STATE as i64).contains(&self.d_state) {
            return Err(CudaFusedError::StateSize {
                d_state: self.d_state,
                max: MAX_D_STATE,
            });
        }
        let int_max = i64::from(i32::MAX);
        let limits = [
            ("batch", self.batch, MAX_GRID_Y),
            // The last block's channel indices reach d_inner + a block's channels − 1.
            (
                "d_inner",
                self.d_inner,
                int_max - MAX_CHANNELS_PER_BLOCK as i64,
            ),
            ("seq_len", self.seq_len, int_max),
        ];
        for (what, value, limit) in limits {
            if value > limit {
                return Err(CudaFusedError::TooLarge { what, value, limit });
            }
        }
        Ok(())
    }
}

/// The element type of u, Δ, B, C, z and y, which selects the kernel's variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Element {
    F32,
    Bf16,
    F16,
}

impl Element {
    fn of(kind: Kind) -> Result<Self, CudaFusedError> {
        match kind {
            Kind::Float => Ok(Self::F32),
            Kind::BFloat16 => Ok(Self::Bf16),
            Kind::Half => Ok(Self::F16),
            other => Err(CudaFusedError::UnsupportedKind(other)),
        }
    }

    /// The NVRTC option that selects this type in kernel.cu.
    fn define(self) -> &'static str {
        match self {
            Self::F32 => "-DSCAN_ELEM_F32",
            Self::Bf16 => "-DSCAN_ELEM_BF16",
            Self::F16 => "-DSCAN_ELEM_F16",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::F16 => "f16",
        }
    }
}

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
    /// `i32::MAX`, its y at most [`MAX_GRID_Y`], and the rest is bounded by constants.
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
struct Operands {
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
    y: Tensor,
    /// (batch, d_inner, d_state) in fp32.
    last_state: Option<Tensor>,
}

impl Operands {
    fn new(
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

/// libtorch's current stream on device `ordinal`, as cudarc's: the legacy default stream unless
/// a caller installed another, which the kernel must then follow to stay ordered with the work
/// that made its inputs.
fn libtorch_stream(
    context: &Arc<CudaContext>,
    ordinal: usize,
) -> Result<Arc<CudaStream>, CudaFusedError> {
    let handle = crate::torch_ext::cuda_current_stream(ordinal)
        .map_err(|e| CudaFusedError::Stream(e.to_string()))?;
    if handle.is_null() {
        return Ok(context.default_stream());
    }
    // SAFETY: the handle is libtorch's current stream on this device, created in its primary
    // context (the one `context` retained); libtorch keeps its streams alive for the process,
    // and work on the stream is ordered by the stream itself.
    Ok(unsafe { context.wrap_borrowed_stream(handle.cast()) })
}

/// Queues the kernel on `stream`, libtorch's current stream on the operands' device.
fn launch(
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

/// One compiled kernel, ready to launch on a stream of its device.
struct Kernel {
    /// The device's primary context, in which the kernel's module is loaded.
    context: Arc<CudaContext>,
    /// Holds its module, and through it the context, alive.
    function: CudaFunction,
}

impl Kernel {
    fn compile(context: &Arc<CudaContext>, element: Element) -> Result<Self, CudaFusedError> {
        check_nvrtc_library()?;
        let (major, minor) = context
            .compute_capability()
            .map_err(driver_error("reading the compute capability"))?;
        // A virtual architecture: NVRTC emits PTX, which the driver compiles for this exact
        // GPU when the module loads (`sm_XX` would make NVRTC emit a cubin instead, which
        // `compile_ptx_with_opts` does not return).
        let arch = format!("compute_{major}{minor}");
        let options = CompileOptions {
            name: Some("selective_scan_fwd.cu".to_owned()),
            options: vec![
                format!("--gpu-architecture={arch}"),
                element.define().to_owned(),
                format!("-DSCAN_CHUNK={CHUNK}"),
                format!("-DSCAN_MAX_STATES_PER_THREAD={MAX_STATES_PER_THREAD}"),
                format!("-DSCAN_MAX_THREADS={MAX_THREADS}"),
            ],
            ..Default::default()
        };
        let ptx = match nvrtc::compile_ptx_with_opts(SOURCE, options) {
            Ok(ptx) => ptx,
            Err(error) => {
                return Err(CudaFusedError::Compile {
                    element: element.name(),
                    arch,
                    log: compile_log(&error),
                })
            }
        };
        let module = context
            .load_module(ptx)
            .map_err(driver_error("loading the compiled kernel"))?;
        let function = module
            .load_function(KERNEL)
            .map_err(driver_error("looking up the kernel in its module"))?;
        Ok(Self {
            context: Arc::clone(context),
            function,
        })
    }
}

/// The contexts and kernels of this process, built on first use and kept until it exits.
/// Nothing here is ever dropped, so no primary context is released while libtorch uses it.
#[derive(Default)]
struct Cache {
    /// The primary context of each device ordinal, retained once.
    contexts: HashMap<usize, Arc<CudaContext>>,
    kernels: HashMap<(usize, Element), Arc<Kernel>>,
}

/// The kernel for `element` on device `ordinal`, compiled on first use.
fn compiled_kernel(ordinal: usize, element: Element) -> Result<Arc<Kernel>, CudaFusedError> {
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    // A panic while the lock was held (caught in `forward`) leaves the maps consistent:
    // entries are inserted only once complete. So a poisoned lock is still usable.
    let mut cache = CACHE
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(kernel) = cache.kernels.get(&(ordinal, element)) {
        return Ok(Arc::clone(kernel));
    }
    let context = match cache.contexts.get(&ordinal) {
        Some(context) => Arc::clone(context),
        None => {
            let context = CudaContext::new(ordinal)
                .map_err(driver_error("retaining the device's primary context"))?;
            cache.contexts.insert(ordinal, Arc::clone(&context));
            context
        }
    };
    let kernel = Arc::new(Kernel::compile(&context, element)?);
    cache
        .kernels
        .insert((ordinal, element), Arc::clone(&kernel));
    Ok(kernel)
}

/// The calling thread's current CUDA context, made current again on drop. cudarc binds its
/// context to the thread, and the CUDA runtime inside libtorch reads the current context as
/// the current device.
struct CurrentContext(Option<driver::sys::CUcontext>);

impl CurrentContext {
    fn save() -> Result<Self, CudaFusedError> {
        // Idempotent; libtorch has already initialised the driver in any process with CUDA
        // tensors, but `cuCtxGetCurrent` fails on an uninitialised one.
        driver::result::init().map_err(driver_error("initialising the CUDA driver"))?;
        let current = driver::result::ctx::get_current()
            .map_err(driver_error("reading the thread's current context"))?;
        Ok(Self(current))
    }
}

impl Drop for CurrentContext {
    fn drop(&mut self) {
        let previous = self.0.unwrap_or(std::ptr::null_mut());
        // SAFETY: `previous` was current on this thread when `save` ran, or is null, which
        // unbinds. Nothing since can have destroyed it: this module only retains primary
        // contexts and never releases them, and libtorch releases none while it runs.
        // A failure cannot be reported from `drop`; it leaves the scan's primary context
        // current, which is still a valid context for libtorch to work in.
        let _ = unsafe { driver::result::ctx::set_current(previous) };
    }
}

/// Whether libcuda can be opened. cudarc panics on first use when it cannot, so this is asked
/// first, for an error that says what to do.
fn check_driver_library() -> Result<(), CudaFusedError> {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    // SAFETY: `is_culib_present` dlopens candidate names of the driver library (and closes
    // them), which runs the library's initialisers. libcuda is made to be opened this way, the
    // CUDA runtime inside libtorch opens it so too, and in a process that holds CUDA tensors it
    // is already loaded, so the call finds that copy.
    let present = *PRESENT.get_or_init(|| unsafe { driver::sys::is_culib_present() });
    if present {
        Ok(())
    } else {
        Err(CudaFusedError::DriverLibrary)
    }
}

/// Whether libnvrtc can be opened; see [`check_driver_library`].
fn check_nvrtc_library() -> Result<(), CudaFusedError> {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    // SAFETY: as in `check_driver_library`: libnvrtc is made to be dlopened, and libtorch
    // opens it the same way for its own run-time compiled kernels.
    let present = *PRESENT.get_or_init(|| unsafe { nvrtc::sys::is_culib_present() });
    if present {
        Ok(())
    } else {
        Err(CudaFusedError::NvrtcLibrary)
    }
}

/// NVRTC's log, which names the line of kernel.cu at fault, rather than its escaped `Debug`.
fn compile_log(error: &CompileError) -> String {
    match error {
        CompileError::CompileError {
            nvrtc: code, log, ..
        } => {
            format!("{code}\n{}", log.to_string_lossy())
        }
        other => other.to_string(),
    }
}

fn driver_error(context: &'static str) -> impl FnOnce(DriverError) -> CudaFusedError {
    move |source| CudaFusedError::Driver { context, source }
}

/// Runs `run`, turning a panic into an error. With dynamic loading, cudarc panics when a
/// library or one of its symbols is missing (for example a driver older than the CUDA 13.0
/// bindings); a run then fails with a message instead of taking the process down.
fn catch_panics<T>(
    context: &'static str,
    run: impl FnOnce() -> Result<T, CudaFusedError>,
) -> Result<T, CudaFusedError> {
    // Unwind safety: after a panic nothing that `run` touched is used again except the kernel
    // cache, whose invariant survives a panic (see `compiled_kernel`).
    panic::catch_unwind(AssertUnwindSafe(run)).unwrap_or_else(|payload| {
        Err(CudaFusedError::Panicked {
            context,
            message: panic_message(&*payload),
        })
    })
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "(a panic without a message)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::{reference, ScanTensors};

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

    #[test]
    fn limits_name_the_offending_size() {
        let dims = Dims {
            batch: 1,
            d_inner: 8,
            d_state: MAX_D_STATE as i64 + 1,
            seq_len: 4,
        };
        assert!(matches!(
            dims.check_limits(),
            Err(CudaFusedError::StateSize { .. })
        ));
        let dims = Dims {
            batch: MAX_GRID_Y + 1,
            d_state: 16,
            ..dims
        };
        assert!(matches!(
            dims.check_limits(),
            Err(CudaFusedError::TooLarge { what: "batch", .. })
        ));
    }

    #[test]
    fn refuses_cpu_tensors() {
        let t = ScanTensors::random(1, 2, 4, 5);
        let error = forward(&t.inputs(), None, false).expect_err("CPU tensors");
        assert!(
            matches!(error, CudaFusedError::NotCuda(Device::Cpu)),
            "{error}"
        );
    }

    /// mamba_ssm's tolerances against an fp32 reference: (rtol, atol).
    fn tolerance(kind: Kind) -> (f64, f64) {
        match kind {
            Kind::Float => (6e-4, 2e-3),
            Kind::Half => (3e-3, 5e-3),
            _ => (3e-2, 5e-2),
        }
    }

    fn assert_close(name: &str, got: &Tensor, want: &Tensor, (rtol, atol): (f64, f64)) {
        let got = got.to_device(Device::Cpu).to_kind(Kind::Double);
        let want = want.to_device(Device::Cpu).to_kind(Kind::Double);
        assert_eq!(got.size(), want.size(), "{name}: shapes");
        let finite = got.isfinite().all().int64_value(&[]) == 1;
        let excess = ((&got - &want).abs() - (want.abs() * rtol + atol))
            .max()
            .double_value(&[]);
        assert!(
            finite && excess <= 0.0,
            "{name}: worst excess over tolerance {excess:.2e} (finite: {finite})"
        );
    }

    /// `t` without D, z and Δ's bias (the softplus stays: raw Δ can be negative).
    fn bare(t: &ScanTensors) -> ScanInputs<'_> {
        ScanInputs {
            d: None,
            z: None,
            delta_bias: None,
            ..t.inputs()
        }
    }

    /// On a CUDA machine (skipped elsewhere): y and the last state against the CPU reference
    /// on the same rounded inputs, in every dtype, with and without the optional inputs, for
    /// d_state below, at and above a warp, and lengths that end mid-chunk.
    #[test]
    fn matches_the_reference_on_cuda() {
        if !tch::Cuda::is_available() {
            eprintln!("no CUDA device: the fused CUDA scan is not checked here");
            return;
        }
        let device = Device::Cuda(0);
        tch::manual_seed(0);
        let sizes = [
            (2, 37, 16, 300),
            (1, 5, 3, 33),
            (2, 9, 64, 70),
            (1, 4, MAX_D_STATE as i64, 40),
            (1, 33, 1, 65),
            // A partly owned second register slot; 64-thread blocks; whole chunks only.
            (1, 3, 33, 31),
            (2, 70, 2, 64),
        ];
        for (batch, d_inner, d_state, len) in sizes {
            let cpu = ScanTensors::random(batch, d_inner, d_state, len);
            let initial = Tensor::randn([batch, d_inner, d_state], (Kind::Float, Device::Cpu));
            for kind in [Kind::Float, Kind::BFloat16, Kind::Half] {
                let on_device = cpu.map(
                    |x| x.to_device(device).to_kind(kind),
                    |x| x.to_device(device),
                );
                let rounded = cpu.map(|x| x.to_kind(kind), |x| x.shallow_clone());
                for full in [true, false] {
                    let (got_inputs, want_inputs) = if full {
                        (on_device.inputs(), rounded.inputs())
                    } else {
                        (bare(&on_device), bare(&rounded))
                    };
                    let initial_on_device = initial.to_device(device);
                    let start = full.then_some(&initial_on_device);
                    let (y, last) =
                        forward(&got_inputs, start, true).expect("the fused CUDA scan runs");
                    let (want_y, want_last) = tch::no_grad(|| {
                        reference::selective_scan(&want_inputs, full.then_some(&initial))
                    });
                    let name = format!("{batch}x{d_inner}x{d_state}x{len} {kind:?} full={full}");
                    assert_close(&format!("{name} y"), &y, &want_y, tolerance(kind));
                    let last = last.expect("the last state was asked for");
                    assert_close(
                        &format!("{name} last state"),
                        &last,
                        &want_last,
                        tolerance(Kind::Float),
                    );
                }
            }
        }
    }

    /// On a CUDA machine (skipped elsewhere): no softplus, no last state asked for, and
    /// non-contiguous inputs (Δ and z as transposed views), which take the copying paths.
    #[test]
    fn matches_the_reference_without_softplus_on_strided_inputs() {
        if !tch::Cuda::is_available() {
            eprintln!("no CUDA device: the fused CUDA scan is not checked here");
            return;
        }
        let device = Device::Cuda(0);
        tch::manual_seed(1);
        let mut cpu = ScanTensors::random(2, 24, 16, 50);
        // Without the softplus Δ is used as given, so it must be a positive step size.
        cpu.delta = cpu.delta.abs() * 0.1;
        let strided = |x: &Tensor| x.transpose(1, 2).contiguous().transpose(1, 2);
        let on_device = cpu.map(|x| strided(&x.to_device(device)), |x| x.to_device(device));
        assert!(!on_device.delta.is_contiguous());
        fn plain(t: &ScanTensors) -> ScanInputs<'_> {
            ScanInputs {
                delta_softplus: false,
                ..t.inputs()
            }
        }
        let (y, last) = forward(&plain(&on_device), None, false).expect("the fused CUDA scan runs");
        assert!(last.is_none());
        let want = tch::no_grad(|| reference::selective_scan(&plain(&cpu), None).0);
        assert_close("no softplus, strided", &y, &want, tolerance(Kind::Float));
    }
}
