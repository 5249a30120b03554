//! Selective-scan implementations (S6, Gu & Dao 2023, Algorithm 2).
//!
//! Every fast scan has the reference loop in [`reference`] as its obviously correct twin, and
//! tests compare them.

mod autograd;
pub mod chunked;
pub mod cpu_fused;
pub mod cuda_fused;
pub mod fast_math;
mod host;
pub mod reference;

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

/// The inputs of one selective scan, with mamba_ssm's layout: channels before length.
#[derive(Debug, Clone, Copy)]
pub struct ScanInputs<'a> {
    /// Input sequence u: (batch, d_inner, seq_len).
    pub u: &'a Tensor,
    /// Step sizes Δ before the bias and softplus: (batch, d_inner, seq_len).
    pub delta: &'a Tensor,
    /// State matrix A (diagonal, so one row per channel): (d_inner, d_state), fp32.
    pub a: &'a Tensor,
    /// Input-dependent B: (batch, d_state, seq_len).
    pub b: &'a Tensor,
    /// Input-dependent C: (batch, d_state, seq_len).
    pub c: &'a Tensor,
    /// Skip connection D: (d_inner,), fp32.
    pub d: Option<&'a Tensor>,
    /// Gate z: (batch, d_inner, seq_len); the output is multiplied by SiLU(z).
    pub z: Option<&'a Tensor>,
    /// dt_proj's bias, added to Δ before the softplus: (d_inner,).
    pub delta_bias: Option<&'a Tensor>,
    /// Apply Δ = softplus(Δ + bias), as every Mamba layer does.
    pub delta_softplus: bool,
}

/// The tensors of one scan, owned, with every optional input present: what benchmarks, the
/// self-check and tests build, transform and then borrow as [`ScanInputs`].
#[derive(Debug)]
pub struct ScanTensors {
    pub u: Tensor,
    pub delta: Tensor,
    pub a: Tensor,
    pub b: Tensor,
    pub c: Tensor,
    pub d: Tensor,
    pub z: Tensor,
    pub bias: Tensor,
}

impl ScanTensors {
    /// Random fp32 CPU inputs with S4D-real A (jittered) and typical step sizes: what checks of
    /// one implementation against another scan.
    pub fn random(batch: i64, d_inner: i64, d_state: i64, len: i64) -> Self {
        let f = (tch::Kind::Float, Device::Cpu);
        let a = Tensor::arange_start(1, d_state + 1, f).repeat([d_inner, 1])
            * (Tensor::rand([d_inner, d_state], f) + 0.5);
        Self {
            u: Tensor::randn([batch, d_inner, len], f),
            delta: Tensor::randn([batch, d_inner, len], f) - 2.0,
            a: -a,
            b: Tensor::randn([batch, d_state, len], f),
            c: Tensor::randn([batch, d_state, len], f),
            d: Tensor::randn([d_inner], f),
            z: Tensor::randn([batch, d_inner, len], f),
            bias: Tensor::randn([d_inner], f) * 0.5,
        }
    }

    /// All of them, with Δ through its bias and the softplus as every Mamba layer does.
    pub fn inputs(&self) -> ScanInputs<'_> {
        ScanInputs {
            u: &self.u,
            delta: &self.delta,
            a: &self.a,
            b: &self.b,
            c: &self.c,
            d: Some(&self.d),
            z: Some(&self.z),
            delta_bias: Some(&self.bias),
            delta_softplus: true,
        }
    }

    /// `per_token` applied to u, Δ, B, C and z, and `parameter` to A, D and Δ's bias (which
    /// stay fp32 when the rest changes dtype).
    pub fn map(
        &self,
        per_token: impl Fn(&Tensor) -> Tensor,
        parameter: impl Fn(&Tensor) -> Tensor,
    ) -> Self {
        Self {
            u: per_token(&self.u),
            delta: per_token(&self.delta),
            a: parameter(&self.a),
            b: per_token(&self.b),
            c: per_token(&self.c),
            d: parameter(&self.d),
            z: per_token(&self.z),
            bias: parameter(&self.bias),
        }
    }
}

impl ScanInputs<'_> {
    /// Whether autograd will need gradients of the result: it is recording, and some input
    /// requires them. Model parameters always require gradients, so under `no_grad`
    /// (inference, prefill) only the grad mode tells that no backward will come.
    pub fn needs_grad(&self) -> bool {
        let optional = [self.d, self.z, self.delta_bias];
        let any_input = [self.u, self.delta, self.a, self.b, self.c]
            .iter()
            .any(|t| t.requires_grad())
            || optional.iter().flatten().any(|t| t.requires_grad());
        any_input && crate::torch_ext::grad_enabled()
    }
}

/// Which implementation computes the scan. The one actually used is recorded in every row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanImpl {
    /// The fastest correct implementation for the device and pass, see [`ScanImpl::resolve`].
    #[default]
    Auto,
    /// A plain sequential loop over time with mamba_ssm's `selective_scan_ref` semantics.
    Reference,
    /// The fused multi-threaded CPU kernel of [`cpu_fused`], an autograd node when training.
    CpuFused,
    /// The chunked associative scan of [`chunked`] in libtorch ops, on any device.
    Chunked,
    /// The fused CUDA kernel of [`cuda_fused`], compiled at run time, for passes without
    /// gradients; a pass with them runs the chunked scan. Chosen by name only until it has
    /// been checked on a GPU (`mvt selfcheck --device cuda`).
    CudaFused,
}

impl ScanImpl {
    pub fn name(self) -> &'static str {
        match self {
            ScanImpl::Auto => "auto",
            ScanImpl::Reference => "reference",
            ScanImpl::CpuFused => "cpu_fused",
            ScanImpl::Chunked => "chunked",
            ScanImpl::CudaFused => "cuda_fused",
        }
    }

    /// The kernel that runs when `self` is asked for a scan on `device`, with or without
    /// gradients to follow, from zero or from an initial state. The one place that decides:
    /// dispatch and every result row's `scan` column both call it, so a row cannot name a
    /// kernel that did not run.
    ///
    /// - `auto` is the fused kernel on the CPU and the chunked scan elsewhere (a few kernel
    ///   launches per 64 steps instead of the reference's one per step);
    /// - `cpu_fused` continues from a state only without gradients (its backward starts from
    ///   zero), so a differentiated scan from a state runs chunked;
    /// - `cuda_fused` has no backward, so a scan with gradients runs chunked.
    pub fn kernel(self, device: Device, needs_grad: bool, from_state: bool) -> Kernel {
        match self {
            ScanImpl::Auto if device == Device::Cpu => {
                ScanImpl::CpuFused.kernel(device, needs_grad, from_state)
            }
            ScanImpl::Auto | ScanImpl::Chunked => Kernel::Chunked,
            ScanImpl::Reference => Kernel::Reference,
            ScanImpl::CpuFused if from_state && needs_grad => Kernel::Chunked,
            ScanImpl::CpuFused => Kernel::CpuFused,
            ScanImpl::CudaFused if needs_grad => Kernel::Chunked,
            ScanImpl::CudaFused => Kernel::CudaFused,
        }
    }

    /// y, and the last state (batch, d_inner, d_state) in fp32, from which step-mode decoding
    /// continues. Differentiable in y wherever gradients are due.
    pub fn scan_with_state(self, inputs: &ScanInputs) -> (Tensor, Tensor) {
        self.scan_with_state_from(inputs, None)
    }

    /// Like [`ScanImpl::scan_with_state`], from `initial` (batch, d_inner, d_state) when given:
    /// the scan of a chunk that follows earlier ones.
    pub fn scan_with_state_from(
        self,
        inputs: &ScanInputs,
        initial: Option<&Tensor>,
    ) -> (Tensor, Tensor) {
        let (y, state) = self.dispatch(inputs, initial, true);
        (y, state.expect("the last state was asked for"))
    }

    /// y (batch, d_inner, seq_len) in the dtype of `u`.
    pub fn scan(self, inputs: &ScanInputs) -> Tensor {
        self.dispatch(inputs, None, false).0
    }

    /// Runs the kernel [`ScanImpl::kernel`] picks; the last state when `want_state`.
    fn dispatch(
        self,
        inputs: &ScanInputs,
        initial: Option<&Tensor>,
        want_state: bool,
    ) -> (Tensor, Option<Tensor>) {
        let needs_grad = inputs.needs_grad();
        match self.kernel(inputs.u.device(), needs_grad, initial.is_some()) {
            Kernel::Reference => with_state(reference::selective_scan(inputs, initial)),
            Kernel::Chunked => with_state(chunked::selective_scan(inputs, initial)),
            Kernel::CudaFused => with_state(fused_on_cuda(inputs, initial)),
            Kernel::CpuFused => {
                assert_eq!(
                    inputs.u.device(),
                    Device::Cpu,
                    "the cpu_fused scan runs on the CPU"
                );
                match (needs_grad, want_state) {
                    (false, _) => with_state(fused_on_host_from(inputs, initial, None)),
                    (true, false) => (autograd::cpu_fused(inputs), None),
                    // The autograd node has one output, y. The state is not differentiated
                    // through (decoding continues from it without gradients), so a second,
                    // gradient-free forward gives it: one extra scan on this rare path, where
                    // the reference loop it replaces costs a hundred.
                    (true, true) => {
                        let y = autograd::cpu_fused(inputs);
                        let (_, state) = tch::no_grad(|| fused_on_host(inputs, None));
                        (y, Some(state))
                    }
                }
            }
        }
    }
}

fn with_state((y, state): (Tensor, Tensor)) -> (Tensor, Option<Tensor>) {
    (y, Some(state))
}

/// A scan kernel that actually runs: what [`ScanImpl::kernel`] decides and result rows
/// record (`auto` never appears here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kernel {
    Reference,
    CpuFused,
    Chunked,
    CudaFused,
}

impl Kernel {
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Reference => "reference",
            Kernel::CpuFused => "cpu_fused",
            Kernel::Chunked => "chunked",
            Kernel::CudaFused => "cuda_fused",
        }
    }
}

/// Runs [`cuda_fused::forward`], y and the last state, from `initial` when given. A kernel that
/// cannot run (no driver, no NVRTC, unsupported sizes) is a bug in the caller's choice of scan,
/// so it panics with the reason, which the runner turns into the row's error.
fn fused_on_cuda(inputs: &ScanInputs, initial: Option<&Tensor>) -> (Tensor, Tensor) {
    match cuda_fused::forward(inputs, initial, true) {
        Ok((y, Some(state))) => (y, state),
        Ok((_, None)) => unreachable!("the last state was asked for"),
        Err(e) => panic!("scan cuda_fused: {e}"),
    }
}

/// Runs [`cpu_fused::forward`] on CPU tensors on `threads` threads (libtorch's count when
/// `None`), returning y in `u`'s dtype and the last state (batch, d_inner, d_state) in fp32.
/// Not differentiable: [`ScanImpl::scan`] wraps it in an autograd node when gradients are due.
pub fn fused_on_host(inputs: &ScanInputs, threads: Option<usize>) -> (Tensor, Tensor) {
    fused_on_host_from(inputs, None, threads)
}

/// [`fused_on_host`] from `initial` (batch, d_inner, d_state) when given: the scan of a chunk
/// that follows earlier ones.
pub fn fused_on_host_from(
    inputs: &ScanInputs,
    initial: Option<&Tensor>,
    threads: Option<usize>,
) -> (Tensor, Tensor) {
    let threads = threads.unwrap_or_else(crate::torch_ext::intra_op_threads);
    let out = host::forward_on_host(inputs, initial, threads, true, false);
    let state = out.last_state.expect("the last state was asked for");
    (out.y, state)
}
