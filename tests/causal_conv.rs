//! The CPU convolution kernel against libtorch's conv1d + SiLU: outputs and every gradient.

use mamba_vs_transformer::causal_conv::{conv_silu, conv_silu_after};
use tch::{Device, Kind, Tensor};

/// What libtorch computes for the same convolution: pad both sides, keep the first len outputs.
fn reference(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Tensor {
    let (channels, _, width) = weight.size3().expect("(channels, 1, width)");
    let len = x.size()[2];
    x.conv1d(weight, bias, [1], [width - 1], [1], channels)
        .narrow(2, 0, len)
        .silu()
}

/// Random inputs for one case: x, weight and maybe bias, and the loss's weighting of y.
struct Case {
    x: Tensor,
    weight: Tensor,
    bias: Option<Tensor>,
    loss_weights: Tensor,
}

impl Case {
    fn new((batch, channels, len, width): (i64, i64, i64, i64), with_bias: bool) -> Self {
        let f = (Kind::Float, Device::Cpu);
        Self {
            x: Tensor::randn([batch, channels, len], f) * 2.0,
            weight: Tensor::randn([channels, 1, width], f),
            bias: with_bias.then(|| Tensor::randn([channels], f)),
            loss_weights: Tensor::randn([batch, channels, len], f),
        }
    }

    /// y and the gradients of Σ loss_weights · y under `conv`.
    fn run(&self, conv: fn(&Tensor, &Tensor, Option<&Tensor>) -> Tensor) -> Vec<Tensor> {
        let leaf = |t: &Tensor| t.detach().copy().set_requires_grad(true);
        let (x, weight) = (leaf(&self.x), leaf(&self.weight));
        let bias = self.bias.as_ref().map(leaf);
        let y = conv(&x, &weight, bias.as_ref());
        (&y * &self.loss_weights).sum(Kind::Float).backward();
        let mut out = vec![y.detach(), x.grad(), weight.grad()];
        out.extend(bias.map(|b| b.grad()));
        out
    }
}

#[test]
fn matches_libtorch_in_value_and_gradient() {
    for shape in [
        (1, 3, 1, 4),
        (2, 5, 3, 4),
        (2, 5, 37, 4),
        (1, 20, 100, 2),
        (3, 7, 64, 1),
    ] {
        for with_bias in [true, false] {
            let case = Case::new(shape, with_bias);
            let (got, want) = (case.run(conv_silu), case.run(reference));
            let names = ["y", "dx", "dweight", "dbias"];
            for ((got, want), name) in got.iter().zip(&want).zip(names) {
                assert_eq!(got.size(), want.size(), "{name} {shape:?}");
                let err = (got - want).abs().max().double_value(&[]);
                let scale = want.abs().max().double_value(&[]).max(1.0);
                assert!(
                    err <= 1e-5 * scale,
                    "{name} {shape:?} bias {with_bias}: off by {err}"
                );
            }
        }
    }
}

#[test]
fn keeps_the_input_dtype() {
    let f = (Kind::BFloat16, Device::Cpu);
    let x = Tensor::randn([1, 4, 9], f);
    let weight = Tensor::randn([4, 1, 4], f);
    let y = tch::no_grad(|| conv_silu(&x, &weight, None));
    assert_eq!(y.kind(), Kind::BFloat16);
    let want =
        tch::no_grad(|| reference(&x.to_kind(Kind::Float), &weight.to_kind(Kind::Float), None));
    let err = (y.to_kind(Kind::Float) - want)
        .abs()
        .max()
        .double_value(&[]);
    assert!(err < 5e-2, "bf16 off by {err}");
}

/// Chunk by chunk, each continuing from the last width − 1 inputs before it, the kernel gives
/// the whole sequence's convolution: chunks shorter than the context, longer, and one step.
#[test]
fn continues_across_chunk_edges_from_its_left_context() {
    let f = (Kind::Float, Device::Cpu);
    let (batch, channels, width) = (2, 5, 4);
    let x = Tensor::randn([batch, channels, 40], f);
    let weight = Tensor::randn([channels, 1, width], f);
    let bias = Tensor::randn([channels], f);
    let want = reference(&x, &weight, Some(&bias));
    for chunks in [&[1i64, 2, 3, 34][..], &[7, 1, 32], &[40], &[3, 37]] {
        let mut context = Tensor::zeros([batch, channels, width - 1], f);
        let mut start = 0;
        let mut pieces = Vec::new();
        for &len in chunks {
            let piece = x.narrow(2, start, len);
            pieces.push(tch::no_grad(|| {
                conv_silu_after(&piece, &weight, Some(&bias), &context)
            }));
            context = Tensor::cat(&[&context, &piece], 2).narrow(2, len, width - 1);
            start += len;
        }
        let got = Tensor::cat(&pieces, 2);
        assert!(
            got.allclose(&want, 1e-5, 1e-5, false),
            "chunks {chunks:?}: max error {}",
            (&got - &want).abs().max().double_value(&[])
        );
        // With gradients it runs libtorch's conv1d over the context and x joined, alike.
        let leaf = x.narrow(2, 0, 3).detach().set_requires_grad(true);
        let zeros = Tensor::zeros([batch, channels, width - 1], f);
        let with_grad = conv_silu_after(&leaf, &weight, Some(&bias), &zeros);
        assert!(with_grad.requires_grad());
        assert!(with_grad.allclose(&want.narrow(2, 0, 3), 1e-5, 1e-5, false));
    }
}
