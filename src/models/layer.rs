//! What every layer of a language model can do, whichever family it comes from: the one
//! contract that lets Mamba, Mamba-2 and Llama stacks, and hybrids mixing their layers, share
//! one residual block and one language model.

use tch::{nn::Module, Tensor};

/// A layer on hidden states in the three ways a language model runs it: in parallel over a
/// whole sequence ([`Module::forward`], for training), over a prompt or a chunk that keeps what
/// it has seen, and one token at a time.
pub trait Layer: Module {
    /// What the layer carries from one token to the next: an SSM's fixed-size state,
    /// attention's growing KV cache, or nothing for a feed-forward layer. Clones are cheap and
    /// independent (a step replaces tensors rather than writing into them).
    type State: Clone;

    /// (batch, seq_len, d_model) → the same shape, and the state after the last token.
    fn prefill(&self, hidden: &Tensor) -> (Tensor, Self::State);

    /// A chunk (batch, len, d_model) that follows `state`, computed in parallel, advancing the
    /// state past it: a long sequence in chunks gives the outputs of one parallel pass.
    fn extend(&self, hidden: &Tensor, state: &mut Self::State) -> Tensor;

    /// One token, (batch, d_model) → (batch, d_model), advancing the state by one token.
    fn step(&self, hidden: &Tensor, state: &mut Self::State) -> Tensor;
}
