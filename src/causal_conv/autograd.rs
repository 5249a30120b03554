//! The CPU convolution as one autograd node: forward and backward run [`super::kernel`] through
//! the libtorch shim in [`crate::torch_ext`].

use super::kernel::{self, Dims, Grads, Inputs};
use crate::slices::{host_f32, output, view, view_mut};
use crate::torch_ext::{self, intra_op_threads, Node, NodeInputs, NODE_INPUTS};
use tch::Tensor;

/// The node's inputs in the shim's slots; the rest stay empty.
const X: usize = 0;
const WEIGHT: usize = 1;
const BIAS: usize = 2;

/// [`super::conv_silu`] on the CPU.
pub fn conv_silu(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Tensor {
    let mut tensors: NodeInputs = [None; NODE_INPUTS];
    (tensors[X], tensors[WEIGHT], tensors[BIAS]) = (Some(x), Some(weight), bias);
    torch_ext::apply_node::<CausalConv>(tensors, 0).unwrap_or_else(|e| panic!("{e}"))
}

/// The input in `slot`, which `conv_silu` always fills.
fn required<'a>(inputs: &NodeInputs<'a>, slot: usize) -> &'a Tensor {
    inputs[slot].expect("x and the weight are always passed")
}

/// fp32 host copies of the inputs and the sizes they imply.
struct Host {
    dims: Dims,
    x: Tensor,
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Host {
    fn new(tensors: &NodeInputs) -> Self {
        let x = host_f32(required(tensors, X));
        let weight = host_f32(required(tensors, WEIGHT));
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
            bias: tensors[BIAS].map(host_f32),
        }
    }

    fn inputs(&self) -> Inputs<'_> {
        Inputs {
            x: view(&self.x),
            weight: view(&self.weight),
            bias: self.bias.as_ref().map(view),
            context: None,
        }
    }
}

/// The convolution as a [`Node`]; backward recomputes the pre-activations, so forward keeps
/// nothing of its own.
struct CausalConv;

impl Node for CausalConv {
    fn forward(inputs: &NodeInputs, _flags: i64) -> (Tensor, Option<Tensor>) {
        let host = Host::new(inputs);
        let mut y = output(&host.x.size());
        kernel::forward(
            host.dims,
            &host.inputs(),
            view_mut(&mut y),
            intra_op_threads(),
        );
        (y.to_kind(required(inputs, X).kind()), None)
    }

    fn backward(
        inputs: &NodeInputs,
        _saved: &Tensor,
        _flags: i64,
        grad_y: &Tensor,
    ) -> [Option<Tensor>; NODE_INPUTS] {
        let host = Host::new(inputs);
        let grad_y = host_f32(grad_y);
        let mut dx = output(&host.x.size());
        let mut dweight = output(&host.weight.size());
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
