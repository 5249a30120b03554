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
//!
//! # Files
//!
//! - `error.rs`: [`CudaFusedError`];
//! - `driver.rs`: cudarc's driver and NVRTC: contexts, compilation and the kernel cache, streams;
//! - `launch.rs`: the launch geometry, the operands, and the launch with its safety argument;
//! - here: [`forward`], the checks of its inputs, and the tests against the reference.

mod driver;
mod error;
mod launch;

pub use error::CudaFusedError;

use tch::{Device, Tensor};

use super::ScanInputs;
use driver::{
    catch_panics, check_driver_library, compiled_kernel, libtorch_stream, CurrentContext, Element,
};
use launch::{launch, Operands};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::{reference, ScanTensors};
    use crate::tolerance::Tolerance;
    use tch::Kind;

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
        let Some(device) = crate::device::cuda_for_test("matches_the_reference_on_cuda") else {
            return;
        };
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
                    Tolerance::for_kind(kind).assert_close(&format!("{name} y"), &y, &want_y);
                    let last = last.expect("the last state was asked for");
                    Tolerance::FP32.assert_close(&format!("{name} last state"), &last, &want_last);
                }
            }
        }
    }

    /// On a CUDA machine (skipped elsewhere): no softplus, no last state asked for, and
    /// non-contiguous inputs (Δ and z as transposed views), which take the copying paths.
    #[test]
    fn matches_the_reference_without_softplus_on_strided_inputs() {
        let Some(device) = crate::device::cuda_for_test(
            "matches_the_reference_without_softplus_on_strided_inputs",
        ) else {
            return;
        };
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
        Tolerance::FP32.assert_close("no softplus, strided", &y, &want);
    }
}
