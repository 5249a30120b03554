//! A language model of any family behind one type, with the two ways to run it: parallel
//! mode (one forward over the whole sequence) and step mode (token by token from a state).

use super::hybrid::{self, HybridLm};
use super::mamba::{self, MambaLm};
use super::mamba2::{self, Mamba2Lm};
use super::transformer::{KvCache, TransformerLm};
use super::{Decoder, Family, ModelConfig};
use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, Tensor};

/// How logits are computed over a sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// One forward over the whole sequence (training and prefill).
    Parallel,
    /// The first token, then one `step` per token: Mamba's recurrent state or the
    /// Transformer's KV cache.
    Step,
    /// Chunks of [`CHUNK_TOKENS`] in parallel, each continuing from the state (or KV cache)
    /// the previous one left: Mamba's memory stays that of one chunk at any length.
    Chunked,
}

/// Tokens per chunk in [`Mode::Chunked`].
pub const CHUNK_TOKENS: i64 = 2048;

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Parallel => "parallel",
            Mode::Step => "step",
            Mode::Chunked => "chunked",
        }
    }
}

/// What a [`LanguageModel`] carries between decoding steps.
#[derive(Debug, Clone)]
pub enum State {
    Mamba(Vec<mamba::LayerState>),
    Mamba2(Vec<mamba2::LayerState>),
    Transformer(Vec<KvCache>),
    Hybrid(Vec<hybrid::LayerState>),
}

/// A family's own decoding state, in and out of [`State`].
trait FamilyState: Sized {
    fn wrap(self) -> State;
    /// # Panics
    /// If `state` is another family's.
    fn of(state: &mut State) -> &mut Self;
}

macro_rules! family_state {
    ($($variant:ident: $state:ty),* $(,)?) => {$(
        impl FamilyState for $state {
            fn wrap(self) -> State {
                State::$variant(self)
            }

            fn of(state: &mut State) -> &mut Self {
                match state {
                    State::$variant(inner) => inner,
                    _ => panic!("a decoding state of one family was passed to a model of another"),
                }
            }
        }
    )*};
}

family_state!(
    Mamba: Vec<mamba::LayerState>,
    Mamba2: Vec<mamba2::LayerState>,
    Transformer: Vec<KvCache>,
    Hybrid: Vec<hybrid::LayerState>,
);

#[derive(Debug)]
pub enum LanguageModel {
    Mamba(MambaLm),
    Mamba2(Mamba2Lm),
    Transformer(TransformerLm),
    Hybrid(HybridLm),
}

/// `$body` with `$lm` bound to the model inside `$model`, whichever family it is.
macro_rules! with_model {
    ($model:expr, $lm:ident => $body:expr) => {
        match $model {
            LanguageModel::Mamba($lm) => $body,
            LanguageModel::Mamba2($lm) => $body,
            LanguageModel::Transformer($lm) => $body,
            LanguageModel::Hybrid($lm) => $body,
        }
    };
}

impl LanguageModel {
    pub fn new(p: nn::Path, cfg: &ModelConfig) -> Self {
        match cfg {
            ModelConfig::Mamba(c) => LanguageModel::Mamba(MambaLm::new(p, c)),
            ModelConfig::Mamba2(c) => LanguageModel::Mamba2(Mamba2Lm::new(p, c)),
            ModelConfig::Transformer(c) => LanguageModel::Transformer(TransformerLm::new(p, c)),
            ModelConfig::Hybrid(c) => LanguageModel::Hybrid(HybridLm::new(p, c)),
        }
    }

    pub fn family(&self) -> Family {
        match self {
            LanguageModel::Mamba(_) => Family::Mamba,
            LanguageModel::Mamba2(_) => Family::Mamba2,
            LanguageModel::Transformer(_) => Family::Transformer,
            LanguageModel::Hybrid(_) => Family::Hybrid,
        }
    }

    /// Logits (batch, seq_len, vocab) for ids (batch, seq_len), computed in `mode`.
    pub fn logits(&self, ids: &Tensor, mode: Mode) -> Tensor {
        with_model!(self, lm => match mode {
            Mode::Parallel => lm.forward(ids),
            Mode::Step => token_by_token(lm, ids),
            Mode::Chunked => chunk_by_chunk(lm, ids, CHUNK_TOKENS),
        })
    }

    /// Logits of a chunk (batch, len) that follows `state`, advancing it.
    ///
    /// # Panics
    /// If `state` came from a model of another family.
    pub fn extend(&self, ids: &Tensor, state: &mut State) -> Tensor {
        with_model!(self, lm => lm.extend(ids, FamilyState::of(state)))
    }

    /// Logits (batch, seq_len, vocab) of a prompt (batch, seq_len), and the state after it.
    pub fn prefill(&self, ids: &Tensor) -> (Tensor, State) {
        with_model!(self, lm => {
            let (logits, state) = lm.prefill(ids);
            (logits, state.wrap())
        })
    }

    /// Logits (batch, vocab) of the next tokens (batch,), advancing `state`.
    ///
    /// # Panics
    /// If `state` came from a model of another family.
    pub fn step(&self, ids: &Tensor, state: &mut State) -> Tensor {
        with_model!(self, lm => lm.step(ids, FamilyState::of(state)))
    }

    /// Greedy decoding: prefills `prompt` (batch, prompt_len), then appends `max_new` argmax
    /// tokens one step at a time. Returns the new tokens, (batch, max_new).
    pub fn generate_greedy(&self, prompt: &Tensor, max_new: i64) -> Tensor {
        with_model!(self, lm => greedy(lm, prompt, max_new))
    }
}

impl Module for LanguageModel {
    /// Token ids (batch, seq_len) → logits (batch, seq_len, vocab), in parallel mode.
    fn forward(&self, ids: &Tensor) -> Tensor {
        self.logits(ids, Mode::Parallel)
    }
}

/// Logits (batch, seq_len, vocab) from a one-token prefill followed by a step per token.
pub fn token_by_token<D: Decoder>(model: &D, ids: &Tensor) -> Tensor {
    let seq_len = ids.size()[1];
    let (first, mut state) = model.prefill(&ids.narrow(1, 0, 1));
    let mut logits = vec![first.squeeze_dim(1)];
    for t in 1..seq_len {
        logits.push(model.step(&ids.select(1, t), &mut state));
    }
    Tensor::stack(&logits, 1)
}

/// Logits (batch, seq_len, vocab) from a prefill of the first `chunk` tokens and an `extend`
/// per further chunk.
pub fn chunk_by_chunk<D: Decoder>(model: &D, ids: &Tensor, chunk: i64) -> Tensor {
    let seq_len = ids.size()[1];
    let first = chunk.min(seq_len);
    let (logits, mut state) = model.prefill(&ids.narrow(1, 0, first));
    let mut parts = vec![logits];
    let mut start = first;
    while start < seq_len {
        let len = chunk.min(seq_len - start);
        parts.push(model.extend(&ids.narrow(1, start, len), &mut state));
        start += len;
    }
    Tensor::cat(&parts, 1)
}

fn greedy<D: Decoder>(model: &D, prompt: &Tensor, max_new: i64) -> Tensor {
    let (logits, mut state) = model.prefill(prompt);
    let mut next = logits.select(1, -1).argmax(-1, false);
    let mut tokens = Vec::with_capacity(max_new.max(0) as usize);
    for i in 0..max_new {
        tokens.push(next.shallow_clone());
        if i + 1 < max_new {
            next = model.step(&next, &mut state).argmax(-1, false);
        }
    }
    if tokens.is_empty() {
        return prompt.narrow(1, 0, 0);
    }
    Tensor::stack(&tokens, 1)
}
