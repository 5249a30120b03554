//! The CPU convolution as one autograd node: forward and backward run [`super::kernel`] through
//! the libtorch shim in [`crate::torch_ext`].

use super::kernel::{self, Dims, Grads, Inputs};
use crate::slices::{host_f32, output, view, view_mut};
use crate::torch_ext::{self, intra_op_threads, Node, NODE_INPUTS};
use tch::{Kind, Tensor};

/// The node's inputs in the shim's slots; the rest are placeholders.
const X: usize = 0;
const WEIGHT: usize = 1;
const BIAS: usize = 2;
/// `flags`: the bias slot holds a real bias.
const HAS_BIAS: i64 = 1;

/// [`super::conv_silu`] on the CPU.
pub fn conv_silu(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Tensor {
    let absent = Tensor::empty([0], (Kind::Float, x.device()));
    let mut tensors = [&absent; NODE_INPUTS];
    tensors[X] = x;
    tensors[WEIGHT] = weight;
    let flags = match bias {
        Some(bias) => {
            tensors[BIAS] = bias;
            HAS_BIAS
        }
        None => 0,
    };
    torch_ext::apply_node::<CausalConv>(tensors, flags).unwrap_or_else(|e| panic!("{e}"))
}

/// fp32 host copies of the inputs and the sizes they imply.
struct Host {
    dims: Dims,
    x: Tensor,
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Host {
    fn new(tensors: &[&Tensor], flags: i64) -> Self {
        let x = host_f32(tensors[X]);
        let weight = host_f32(tensors[WEIGHT]);
        let (batch, channels, len) = x.size3().expect("x is (batch, channels, len)");
        let (weight_channels, _, width) = weight.size3().expect("weight is (channels, 1, width)");
        assert_eq!(weight_channels, channels, "one filter per channel");
        Self {
            dims: Dims {
                batch: batch as usize,
                channels: channels as usize,
                len: len as usize,
                width: width as usize,
            },
            x,
            weight,
            bias: (flags & HAS_BIAS != 0).then(|| host_f32(tensors[BIAS])),
        }
    }

    fn inputs(&self) -> Inputs<'_> {
        Inputs {
            x: view(&self.x),
            weight: view(&self.weight),
            bias: self.bias.as_ref().map(view),
        }
    }
}

/// The convolution as a [`Node`]; backward recomputes the pre-activations, so forward keeps
/// nothing of its own.
struct CausalConv;

impl Node for CausalConv {
    fn forward(inputs: &[&Tensor; NODE_INPUTS], flags: i64) -> (Tensor, Option<Tensor>) {
        let host = Host::new(inputs, flags);
        let mut y = output(&inputs[X].size());
        kernel::forward(
            host.dims,
            &host.inputs(),
            view_mut(&mut y),
            intra_op_threads(),
        );
        (y.to_kind(inputs[X].kind()), None)
    }

    fn backward(
        inputs: &[&Tensor; NODE_INPUTS],
        _saved: &Tensor,
        flags: i64,
        grad_y: &Tensor,
    ) -> [Option<Tensor>; NODE_INPUTS] {
        let host = Host::new(inputs, flags);
        let grad_y = host_f32(grad_y);
        let mut dx = output(&inputs[X].size());
        let mut dweight = output(&inputs[WEIGHT].size());
        let mut dbias = host.bias.as_ref().map(|b| output(&b.size()));
        kernel::backward(
            host.dims,
            &host.inputs(),
            view(&grad_y),
            Grads {
                dx: view_mut(&mut dx),
                dweight: view_mut(&mut dweight),
                dbias: dbias.as_mut().map(view_mut),
            },
            intra_op_threads(),
        );
        let mut grads: [Option<Tensor>; NODE_INPUTS] = Default::default();
        (grads[X], grads[WEIGHT], grads[BIAS]) = (Some(dx), Some(dweight), dbias);
        grads
    }
}
