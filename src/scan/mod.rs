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

    /// The concrete implementation `self` stands for on `device`: the fused kernel on the
    /// CPU, the chunked scan elsewhere (a few kernel launches per 64 steps instead of the
    /// reference's one per step).
    pub fn resolve(self, device: Device) -> ScanImpl {
        match self {
            ScanImpl::Auto if device == Device::Cpu => ScanImpl::CpuFused,
            ScanImpl::Auto => ScanImpl::Chunked,
            concrete => concrete,
        }
    }

    /// The implementation that actually runs on `device`, for a pass that does or does not
    /// need gradients: what result rows record.
    pub fn used(self, device: Device, needs_grad: bool) -> ScanImpl {
        match self.resolve(device) {
            ScanImpl::CudaFused if needs_grad => ScanImpl::Chunked,
            concrete => concrete,
        }
    }

    /// y, and the last state (batch, d_inner, d_state) in fp32, from which step-mode decoding
    /// continues. Differentiable in y only where the scan is (the reference always is).
    pub fn scan_with_state(self, inputs: &ScanInputs) -> (Tensor, Tensor) {
        match self.used(inputs.u.device(), inputs.needs_grad()) {
            ScanImpl::CpuFused if !inputs.needs_grad() => fused_on_host(inputs, None),
            ScanImpl::CudaFused => fused_on_cuda(inputs, None),
            ScanImpl::Chunked => chunked::selective_scan(inputs, None),
            _ => reference::selective_scan(inputs, None),
        }
    }

    /// Like [`ScanImpl::scan_with_state`], from `initial` (batch, d_inner, d_state) when given:
    /// the scan of a chunk that follows earlier ones. The fused CPU kernel starts from zero,
    /// so a continued scan runs the chunked one (or the reference, when asked for).
    pub fn scan_with_state_from(
        self,
        inputs: &ScanInputs,
        initial: Option<&Tensor>,
    ) -> (Tensor, Tensor) {
        match (initial, self.used(inputs.u.device(), inputs.needs_grad())) {
            (None, _) => self.scan_with_state(inputs),
            (Some(h), ScanImpl::Reference) => reference::selective_scan(inputs, Some(h)),
            (Some(h), ScanImpl::CudaFused) => fused_on_cuda(inputs, Some(h)),
            (Some(h), _) => chunked::selective_scan(inputs, Some(h)),
        }
    }

    /// y (batch, d_inner, seq_len) in the dtype of `u`.
    pub fn scan(self, inputs: &ScanInputs) -> Tensor {
        match self.used(inputs.u.device(), inputs.needs_grad()) {
            ScanImpl::CudaFused => fused_on_cuda(inputs, None).0,
            ScanImpl::CpuFused => {
                assert_eq!(
                    inputs.u.device(),
                    Device::Cpu,
                    "the cpu_fused scan runs on the CPU"
                );
                if inputs.needs_grad() {
                    autograd::cpu_fused(inputs)
                } else {
                    fused_on_host(inputs, None).0
                }
            }
            ScanImpl::Chunked => chunked::selective_scan(inputs, None).0,
            _ => reference::selective_scan(inputs, None).0,
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
    let threads = threads.unwrap_or_else(crate::torch_ext::intra_op_threads);
    let out = host::forward_on_host(inputs, threads, true, false);
    let state = out.last_state.expect("the last state was asked for");
    (out.y, state)
}
