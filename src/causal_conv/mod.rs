//! Mamba's short convolution with its activation, SiLU(causal depthwise conv1d(x)) (Gu & Dao
//! 2023, Section 3.4; `causal_conv1d_fn` in mamba_ssm): each channel convolved with its own
//! `width`-tap filter over the current and the previous `width − 1` steps.
//!
//! On the CPU a Rust kernel does it in one pass per channel, as one autograd node; libtorch's
//! depthwise conv1d takes several times longer there, as much as the fused scan itself at
//! d_model 768. Elsewhere it is libtorch's conv1d followed by SiLU.

mod autograd;
pub mod kernel;

use crate::slices::{host_f32, output, view, view_mut};
use crate::torch_ext::{grad_enabled, intra_op_threads};
use tch::{Device, Tensor};

/// SiLU(causal depthwise conv(x) + bias) for x (batch, channels, len), `weight`
/// (channels, 1, width) as `nn::conv1d` holds it, and `bias` (channels,): (batch, channels, len)
/// in x's dtype, differentiable in all three.
pub fn conv_silu(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Tensor {
    if x.device() == Device::Cpu {
        return autograd::conv_silu(x, weight, bias);
    }
    let (channels, _, width) = weight.size3().expect("weight is (channels, 1, width)");
    let len = x.size()[2];
    x.conv1d(weight, bias, [1], [width - 1], [1], channels)
        .narrow(2, 0, len)
        .silu()
}

/// [`conv_silu`] of x continuing a sequence after `context`, (batch, channels, width − 1): the
/// inputs just before x, which the first width − 1 steps' windows reach back into. Chunked
/// evaluation carries them from chunk to chunk. Without gradients on the CPU it runs the Rust
/// kernel; otherwise libtorch's conv1d over the context and x joined.
pub fn conv_silu_after(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    context: &Tensor,
) -> Tensor {
    let (channels, _, width) = weight.size3().expect("weight is (channels, 1, width)");
    let needs_grad = grad_enabled()
        && (x.requires_grad()
            || weight.requires_grad()
            || context.requires_grad()
            || bias.is_some_and(Tensor::requires_grad));
    if x.device() != Device::Cpu || needs_grad {
        let joined = Tensor::cat(&[context, x], 2);
        return joined.conv1d(weight, bias, [1], [0], [1], channels).silu();
    }
    let (batch, _, len) = x.size3().expect("x is (batch, channels, len)");
    let (host_x, host_weight) = (host_f32(x), host_f32(weight));
    let host_bias = bias.map(host_f32);
    let host_context = host_f32(context);
    let dims = kernel::Dims {
        batch: batch as usize,
        channels: channels as usize,
        len: len as usize,
        width: width as usize,
    };
    let inputs = kernel::Inputs {
        x: view(&host_x),
        weight: view(&host_weight),
        bias: host_bias.as_ref().map(view),
        context: Some(view(&host_context)),
    };
    let mut y = output(&host_x.size());
    kernel::forward(dims, &inputs, view_mut(&mut y), intra_op_threads());
    y.to_kind(x.kind())
}
