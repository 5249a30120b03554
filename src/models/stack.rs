//! A stack of residual blocks on hidden states: a language model without its embedding, final
//! norm and head. This is the unit the Mamba paper compares at equal size (Section 4.2: two
//! Mamba blocks stand in for one Transformer layer of attention and MLP), so that a speed
//! comparison weighs equal parameter counts rather than one 6d² mixer against one 4d²
//! attention layer.

use tch::{nn::Module, Tensor};

/// `blocks` applied in order: (batch, seq_len, d_model) → (batch, seq_len, d_model).
#[derive(Debug)]
pub struct Stack<Block> {
    blocks: Vec<Block>,
}

impl<Block> Stack<Block> {
    /// `n_layers` blocks, the i-th built by `block(i)`.
    pub fn new(n_layers: i64, block: impl FnMut(i64) -> Block) -> Self {
        Self {
            blocks: (0..n_layers).map(block).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }
}

impl<Block: Module> Module for Stack<Block> {
    fn forward(&self, hidden: &Tensor) -> Tensor {
        self.blocks
            .iter()
            .fold(hidden.shallow_clone(), |h, block| block.forward(&h))
    }
}
