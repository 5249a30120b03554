//! A language model around any stack of [`Layer`]s: token embedding, the layers, a final
//! RMSNorm and the LM head (tied to the embedding or not). Mamba, Mamba-2, Llama and hybrid
//! models differ only in their layers and in the names their checkpoints give these parts.

use super::layer::Layer;
use super::norm::RmsNorm;
use super::{token_embedding, untied_lm_head, Decoder};
use tch::{nn, nn::Module, Tensor};

/// Where a checkpoint keeps the parts around the layers: `<root>.<embeddings>`,
/// `<root>.layers.<i>`, `<root>.<norm>`; an untied head is `lm_head` in every family.
#[derive(Debug, Clone, Copy)]
pub struct BackboneNames {
    pub root: &'static str,
    pub embeddings: &'static str,
    pub norm: &'static str,
}

/// HF's `MambaForCausalLM`, `Mamba2ForCausalLM` and `NemotronHForCausalLM`.
pub const SSM_NAMES: BackboneNames = BackboneNames {
    root: "backbone",
    embeddings: "embeddings",
    norm: "norm_f",
};

/// HF's `LlamaForCausalLM`.
pub const LLAMA_NAMES: BackboneNames = BackboneNames {
    root: "model",
    embeddings: "embed_tokens",
    norm: "norm",
};

/// The sizes and choices every family's language model shares.
#[derive(Debug, Clone, Copy)]
pub struct BackboneShape {
    pub d_model: i64,
    pub vocab_size: i64,
    pub n_layers: i64,
    pub norm_eps: f64,
    pub tie_embeddings: bool,
}

impl BackboneShape {
    /// Parameters of the language model whose layers hold `layer_params` in all: embedding,
    /// layers, final norm and, when untied, the LM head.
    pub fn model_params(&self, layer_params: i64) -> i64 {
        let embeddings = self.vocab_size * self.d_model;
        let head = if self.tie_embeddings { 0 } else { embeddings };
        embeddings + layer_params + self.d_model + head
    }
}

#[derive(Debug)]
pub struct Backbone<L> {
    embeddings: nn::Embedding,
    layers: Vec<L>,
    norm: RmsNorm,
    /// (vocab_size, d_model); `None` when tied to the embedding.
    lm_head: Option<Tensor>,
}

impl<L> Backbone<L> {
    /// The embedding, `shape.n_layers` layers (the i-th built by `layer` at its path), the
    /// final norm and, when untied, the head, created in that order.
    pub fn build(
        p: &nn::Path,
        names: BackboneNames,
        shape: BackboneShape,
        mut layer: impl FnMut(nn::Path, i64) -> L,
    ) -> Self {
        let root = p / names.root;
        let embeddings = token_embedding(&root / names.embeddings, shape.vocab_size, shape.d_model);
        let layers = (0..shape.n_layers)
            .map(|i| layer(&root / "layers" / i, i))
            .collect();
        let norm = RmsNorm::new(&root / names.norm, shape.d_model, shape.norm_eps);
        let lm_head =
            (!shape.tie_embeddings).then(|| untied_lm_head(p, shape.d_model, shape.vocab_size));
        Self {
            embeddings,
            layers,
            norm,
            lm_head,
        }
    }

    /// The token embeddings (batch, seq_len, d_model) that enter the first layer.
    pub fn embed(&self, ids: &Tensor) -> Tensor {
        self.embeddings.forward(ids)
    }

    pub fn layers(&self) -> &[L] {
        &self.layers
    }

    /// Logits (…, vocab) of the last layer's output (…, d_model).
    fn logits(&self, hidden: &Tensor) -> Tensor {
        let head = self.lm_head.as_ref().unwrap_or(&self.embeddings.ws);
        // An fp32 residual stream meets the head in the head's dtype, as in HF.
        self.norm
            .forward(hidden)
            .to_kind(head.kind())
            .matmul(&head.tr())
    }
}

impl<L: Module> Module for Backbone<L> {
    /// Token ids (batch, seq_len) → logits (batch, seq_len, vocab_size).
    fn forward(&self, ids: &Tensor) -> Tensor {
        let hidden = self
            .layers
            .iter()
            .fold(self.embeddings.forward(ids), |h, layer| layer.forward(&h));
        self.logits(&hidden)
    }
}

impl<L: Layer> Decoder for Backbone<L> {
    type State = Vec<L::State>;

    fn prefill(&self, ids: &Tensor) -> (Tensor, Self::State) {
        let mut hidden = self.embeddings.forward(ids);
        let mut states = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let (out, state) = layer.prefill(&hidden);
            hidden = out;
            states.push(state);
        }
        (self.logits(&hidden), states)
    }

    fn step(&self, ids: &Tensor, states: &mut Self::State) -> Tensor {
        let mut hidden = self.embeddings.forward(ids);
        for (layer, state) in self.layers.iter().zip(states.iter_mut()) {
            hidden = layer.step(&hidden, state);
        }
        self.logits(&hidden)
    }

    fn extend(&self, ids: &Tensor, states: &mut Self::State) -> Tensor {
        let mut hidden = self.embeddings.forward(ids);
        for (layer, state) in self.layers.iter().zip(states.iter_mut()) {
            hidden = layer.extend(&hidden, state);
        }
        self.logits(&hidden)
    }
}
