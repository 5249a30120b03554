//! Mamba's short convolution with its activation, SiLU(causal depthwise conv1d(x)) (Gu & Dao
//! 2023, Section 3.4; `causal_conv1d_fn` in mamba_ssm): each channel convolved with its own
//! `width`-tap filter over the current and the previous `width − 1` steps.
//!
//! On the CPU a Rust kernel does it in one pass per channel, as one autograd node; libtorch's
//! depthwise conv1d takes several times longer there, as much as the fused scan itself at
//! d_model 768. Elsewhere it is libtorch's conv1d followed by SiLU.

mod autograd;
pub mod kernel;

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
