//! [`CudaFusedError`]: why the fused CUDA scan could not run, each variant saying what to do.

use cudarc::driver::DriverError;
use tch::{Device, Kind, TchError};

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
