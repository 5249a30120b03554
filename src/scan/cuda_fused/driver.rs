//! The CUDA driver and NVRTC through cudarc: the device's primary context, the kernel compiled
//! from kernel.cu once per (device, element type) and cached for the process, libtorch's
//! current stream as cudarc's, and the guards around cudarc (the thread's current context put
//! back, missing libraries and cudarc's panics turned into errors).

use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use cudarc::driver::{self, CudaContext, CudaFunction, CudaStream, DriverError};
use cudarc::nvrtc::{self, CompileError, CompileOptions};
use tch::Kind;

use super::{CudaFusedError, CHUNK, MAX_STATES_PER_THREAD, MAX_THREADS};
use crate::panics::panic_message;

/// The CUDA C++ source of the kernel.
const SOURCE: &str = include_str!("kernel.cu");
/// The kernel's `extern "C"` name in [`SOURCE`].
const KERNEL: &str = "selective_scan_fwd";

/// The element type of u, Δ, B, C, z and y, which selects the kernel's variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Element {
    F32,
    Bf16,
    F16,
}

impl Element {
    pub(super) fn of(kind: Kind) -> Result<Self, CudaFusedError> {
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

/// One compiled kernel, ready to launch on a stream of its device.
pub(super) struct Kernel {
    /// The device's primary context, in which the kernel's module is loaded.
    pub(super) context: Arc<CudaContext>,
    /// Holds its module, and through it the context, alive.
    pub(super) function: CudaFunction,
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
pub(super) fn compiled_kernel(
    ordinal: usize,
    element: Element,
) -> Result<Arc<Kernel>, CudaFusedError> {
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

/// libtorch's current stream on device `ordinal`, as cudarc's: the legacy default stream unless
/// a caller installed another, which the kernel must then follow to stay ordered with the work
/// that made its inputs.
pub(super) fn libtorch_stream(
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

/// The calling thread's current CUDA context, made current again on drop. cudarc binds its
/// context to the thread, and the CUDA runtime inside libtorch reads the current context as
/// the current device.
pub(super) struct CurrentContext(Option<driver::sys::CUcontext>);

impl CurrentContext {
    pub(super) fn save() -> Result<Self, CudaFusedError> {
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
pub(super) fn check_driver_library() -> Result<(), CudaFusedError> {
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

/// Wraps a failed driver call as [`CudaFusedError::Driver`], saying what it was doing.
pub(super) fn driver_error(context: &'static str) -> impl FnOnce(DriverError) -> CudaFusedError {
    move |source| CudaFusedError::Driver { context, source }
}

/// Runs `run`, turning a panic into an error. With dynamic loading, cudarc panics when a
/// library or one of its symbols is missing (for example a driver older than the CUDA 13.0
/// bindings); a run then fails with a message instead of taking the process down.
pub(super) fn catch_panics<T>(
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
