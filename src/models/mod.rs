//! The two model families and what the runner needs to build either one uniformly.

pub mod backbone;
pub mod checkpoint;
pub mod core_op;
pub mod hybrid;
pub mod init;
pub mod layer;
pub mod lm;
pub mod mamba;
pub mod mamba2;
pub mod matching;
pub mod norm;
pub mod residual;
pub mod stack;
pub mod transformer;

use core_op::CoreOp;
use lm::LanguageModel;
use serde::{Deserialize, Serialize};
use stack::Stack;
use tch::{nn, nn::Module, Device, Kind, Tensor};

/// Autoregressive decoding: a prompt in parallel, then one token at a time.
pub trait Decoder {
    /// What the model carries between tokens: Mamba's fixed-size states, or the Transformer's
    /// growing KV cache.
    type State;

    /// Logits (batch, seq_len, vocab) for a prompt (batch, seq_len) ≥ 1 token long, and the
    /// state after its last token.
    fn prefill(&self, ids: &Tensor) -> (Tensor, Self::State);

    /// Logits (batch, vocab) for the next tokens (batch,), advancing the state by one token.
    fn step(&self, ids: &Tensor, state: &mut Self::State) -> Tensor;

    /// Logits (batch, len, vocab) for a chunk of tokens (batch, len) that follows the state,
    /// computed in parallel, advancing the state past the chunk.
    fn extend(&self, ids: &Tensor, state: &mut Self::State) -> Tensor;
}

/// Which family a model belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Mamba,
    Mamba2,
    Transformer,
    /// A stack whose layers follow a pattern over the others' layers.
    Hybrid,
}

impl Family {
    pub const ALL: [Family; 4] = [
        Family::Mamba,
        Family::Mamba2,
        Family::Transformer,
        Family::Hybrid,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Family::Mamba => "mamba",
            Family::Mamba2 => "mamba2",
            Family::Transformer => "transformer",
            Family::Hybrid => "hybrid",
        }
    }

    /// Whether the family's models are built on a state-space model, with attention at most
    /// in some layers: the contenders the Transformer is compared with.
    pub fn is_ssm(self) -> bool {
        self != Family::Transformer
    }

    /// Whether the family's models can be measured at `component`. A hybrid has no single
    /// core operation, mixer or block: only its stack of layers and its whole model.
    pub fn has_component(self, component: Component) -> bool {
        self != Family::Hybrid || component.has_depth()
    }
}

/// How much of a model a measurement covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    /// The sequence-mixing operation alone, as in the Mamba paper's Fig. 8 (left): Mamba's
    /// selective scan over d_model channels with its state size, or the Transformer's causal
    /// fused attention over d_model / head_dim heads. No projections.
    Core,
    /// The sequence mixer alone on hidden states (batch, seq_len, d_model): Mamba's selective
    /// SSM mixer, or the Transformer's attention layer with its projections.
    Mixer,
    /// One residual block (norm + mixer for Mamba, norm + attention + norm + MLP for Llama)
    /// on hidden states of shape (batch, seq_len, d_model).
    Block,
    /// `n_layers` residual blocks on hidden states: the whole model but its embedding, final
    /// norm and head. Under `match_params` the stacks have equal parameter counts: one Llama
    /// layer against about two Mamba blocks, the Mamba paper's pairing.
    Layers,
    /// The whole language model on token ids: embedding, `n_layers` blocks, final norm, LM head.
    Model,
}

impl Component {
    pub const ALL: [Component; 5] = [
        Component::Core,
        Component::Mixer,
        Component::Block,
        Component::Layers,
        Component::Model,
    ];

    /// Whether the component is `n_layers` deep, so that depth is a grid axis and
    /// `match_params` can size it.
    pub fn has_depth(self) -> bool {
        matches!(self, Component::Layers | Component::Model)
    }

    pub fn name(self) -> &'static str {
        match self {
            Component::Core => "core",
            Component::Mixer => "mixer",
            Component::Block => "block",
            Component::Layers => "layers",
            Component::Model => "model",
        }
    }
}

/// A fully resolved model configuration of either family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "snake_case")]
pub enum ModelConfig {
    Mamba(mamba::Config),
    Mamba2(mamba2::Config),
    Transformer(transformer::Config),
    Hybrid(hybrid::Config),
}

impl ModelConfig {
    pub fn family(&self) -> Family {
        match self {
            ModelConfig::Mamba(_) => Family::Mamba,
            ModelConfig::Mamba2(_) => Family::Mamba2,
            ModelConfig::Transformer(_) => Family::Transformer,
            ModelConfig::Hybrid(_) => Family::Hybrid,
        }
    }

    pub fn d_model(&self) -> i64 {
        match self {
            ModelConfig::Mamba(cfg) => cfg.d_model,
            ModelConfig::Mamba2(cfg) => cfg.d_model,
            ModelConfig::Transformer(cfg) => cfg.d_model,
            ModelConfig::Hybrid(cfg) => cfg.d_model,
        }
    }

    pub fn n_layers(&self) -> i64 {
        match self {
            ModelConfig::Mamba(cfg) => cfg.n_layers,
            ModelConfig::Mamba2(cfg) => cfg.n_layers,
            ModelConfig::Transformer(cfg) => cfg.n_layers,
            ModelConfig::Hybrid(cfg) => cfg.n_layers,
        }
    }

    pub fn vocab_size(&self) -> i64 {
        match self {
            ModelConfig::Mamba(cfg) => cfg.vocab_size,
            ModelConfig::Mamba2(cfg) => cfg.vocab_size,
            ModelConfig::Transformer(cfg) => cfg.vocab_size,
            ModelConfig::Hybrid(cfg) => cfg.vocab_size,
        }
    }

    /// The shallowest model of this configuration: one layer, or one repetition of a
    /// hybrid's pattern.
    pub fn min_layers(&self) -> i64 {
        match self {
            ModelConfig::Hybrid(cfg) => cfg.pattern.len() as i64,
            _ => 1,
        }
    }

    /// The same configuration, `n_layers` deep.
    pub fn with_n_layers(&self, n_layers: i64) -> ModelConfig {
        let mut cfg = self.clone();
        match &mut cfg {
            ModelConfig::Mamba(c) => c.n_layers = n_layers,
            ModelConfig::Mamba2(c) => c.n_layers = n_layers,
            ModelConfig::Transformer(c) => c.n_layers = n_layers,
            ModelConfig::Hybrid(c) => c.n_layers = n_layers,
        }
        cfg
    }

    /// The same configuration with a vocabulary of `vocab_size` tokens.
    pub fn with_vocab_size(&self, vocab_size: i64) -> ModelConfig {
        let mut cfg = self.clone();
        match &mut cfg {
            ModelConfig::Mamba(c) => c.vocab_size = vocab_size,
            ModelConfig::Mamba2(c) => c.vocab_size = vocab_size,
            ModelConfig::Transformer(c) => c.vocab_size = vocab_size,
            ModelConfig::Hybrid(c) => c.vocab_size = vocab_size,
        }
        cfg
    }

    /// N, the state size, for the SSM families and the SSM layers of a hybrid.
    pub fn d_state(&self) -> Option<i64> {
        match self {
            ModelConfig::Mamba(cfg) => Some(cfg.d_state),
            ModelConfig::Mamba2(cfg) => Some(cfg.d_state),
            ModelConfig::Transformer(_) => None,
            ModelConfig::Hybrid(cfg) => {
                let ssm = cfg.has(hybrid::LayerKind::Mamba) || cfg.has(hybrid::LayerKind::Mamba2);
                ssm.then_some(cfg.d_state)
            }
        }
    }

    /// Channels per head: Mamba-2's headdim or the Transformer's head_dim (Mamba-1 has no
    /// heads); a hybrid's Mamba-2 layers', else its attention layers'.
    pub fn headdim(&self) -> Option<i64> {
        match self {
            ModelConfig::Mamba(_) => None,
            ModelConfig::Mamba2(cfg) => Some(cfg.headdim),
            ModelConfig::Transformer(cfg) => Some(cfg.head_dim),
            ModelConfig::Hybrid(cfg) => {
                if cfg.has(hybrid::LayerKind::Mamba2) {
                    Some(cfg.headdim)
                } else {
                    cfg.has(hybrid::LayerKind::Attention)
                        .then_some(cfg.head_dim)
                }
            }
        }
    }

    /// Mamba-2's groups of heads sharing B and C.
    pub fn ngroups(&self) -> Option<i64> {
        match self {
            ModelConfig::Mamba2(cfg) => Some(cfg.ngroups),
            ModelConfig::Hybrid(cfg) => cfg.has(hybrid::LayerKind::Mamba2).then_some(cfg.ngroups),
            ModelConfig::Mamba(_) | ModelConfig::Transformer(_) => None,
        }
    }

    /// A hybrid's layer pattern, one repetition.
    pub fn pattern(&self) -> Option<&hybrid::Pattern> {
        match self {
            ModelConfig::Hybrid(cfg) => Some(&cfg.pattern),
            _ => None,
        }
    }

    /// Whether the LM head reuses the embedding matrix.
    pub fn tie_embeddings(&self) -> bool {
        match self {
            ModelConfig::Mamba(cfg) => cfg.tie_embeddings,
            ModelConfig::Mamba2(cfg) => cfg.tie_embeddings,
            ModelConfig::Transformer(cfg) => cfg.tie_embeddings,
            ModelConfig::Hybrid(cfg) => cfg.tie_embeddings,
        }
    }

    /// Parameter count of `component`, from the configuration alone.
    pub fn params(&self, component: Component) -> i64 {
        match (self, component) {
            // A, D and Δ's bias: the scan's own parameters.
            (ModelConfig::Mamba(cfg), Component::Core) => cfg.d_model * (cfg.d_state + 2),
            (ModelConfig::Transformer(_), Component::Core) => 0,
            (ModelConfig::Mamba(cfg), Component::Mixer) => cfg.mixer_params(),
            (ModelConfig::Transformer(cfg), Component::Mixer) => cfg.attention_params(),
            (ModelConfig::Mamba(cfg), Component::Block) => cfg.block_params(),
            (ModelConfig::Mamba(cfg), Component::Layers) => cfg.n_layers * cfg.block_params(),
            (ModelConfig::Mamba(cfg), Component::Model) => cfg.model_params(),
            // A, D and Δ's bias: one of each per head of d_model / headdim.
            (ModelConfig::Mamba2(cfg), Component::Core) => 3 * (cfg.d_model / cfg.headdim),
            (ModelConfig::Mamba2(cfg), Component::Mixer) => cfg.mixer_params(),
            (ModelConfig::Mamba2(cfg), Component::Block) => cfg.block_params(),
            (ModelConfig::Mamba2(cfg), Component::Layers) => cfg.n_layers * cfg.block_params(),
            (ModelConfig::Mamba2(cfg), Component::Model) => cfg.model_params(),
            (ModelConfig::Transformer(cfg), Component::Block) => cfg.block_params(),
            (ModelConfig::Transformer(cfg), Component::Layers) => cfg.n_layers * cfg.block_params(),
            (ModelConfig::Transformer(cfg), Component::Model) => cfg.model_params(),
            (ModelConfig::Hybrid(cfg), Component::Layers) => cfg.layers_params(),
            (ModelConfig::Hybrid(cfg), Component::Model) => cfg.model_params(),
            (ModelConfig::Hybrid(_), Component::Core | Component::Mixer | Component::Block) => {
                panic!("a hybrid has no single {}", component.name())
            }
        }
    }
}

/// What a [`BuiltModel`] runs.
#[derive(Debug)]
pub enum Network {
    /// A mixer or residual block on hidden states (batch, seq_len, d_model).
    Layer(Box<dyn nn::Module>),
    /// A language model on token ids, with step mode.
    Lm(LanguageModel),
    /// The sequence-mixing operation alone.
    Core(CoreOp),
}

/// A model instance with its parameters, ready to run.
pub struct BuiltModel {
    pub vars: nn::VarStore,
    pub network: Network,
    d_model: i64,
    vocab_size: i64,
}

impl BuiltModel {
    /// Builds `component` of `cfg` with freshly initialised weights on `device` in `kind`.
    /// Parameters that mamba_ssm keeps in fp32 (`A_log`, `D`) stay fp32 whatever `kind` is.
    ///
    /// # Panics
    /// If the family has no such component ([`Family::has_component`]); suites refuse those
    /// before they run.
    pub fn new(cfg: &ModelConfig, component: Component, device: Device, kind: Kind) -> Self {
        let vars = nn::VarStore::new(device);
        let root = vars.root();
        let network = match (cfg, component) {
            (_, Component::Core) => Network::Core(CoreOp::new(root, cfg)),
            (_, Component::Model) => Network::Lm(LanguageModel::new(root, cfg)),
            (ModelConfig::Mamba(c), Component::Mixer) => {
                Network::Layer(Box::new(mamba::Mixer::new(root, c)))
            }
            (ModelConfig::Mamba2(c), Component::Mixer) => {
                Network::Layer(Box::new(mamba2::Mixer::new(root, c)))
            }
            (ModelConfig::Transformer(c), Component::Mixer) => {
                Network::Layer(Box::new(transformer::Attention::new(root, c)))
            }
            (ModelConfig::Mamba(c), Component::Block) => {
                Network::Layer(Box::new(mamba::ResidualBlock::new(root, c)))
            }
            (ModelConfig::Mamba2(c), Component::Block) => {
                Network::Layer(Box::new(mamba2::ResidualBlock::new(root, c)))
            }
            (ModelConfig::Transformer(c), Component::Block) => {
                Network::Layer(Box::new(transformer::DecoderBlock::new(root, c)))
            }
            (ModelConfig::Mamba(c), Component::Layers) => {
                Network::Layer(Box::new(Stack::new(c.n_layers, |i| {
                    mamba::ResidualBlock::new(&root / "layers" / i, c)
                })))
            }
            (ModelConfig::Mamba2(c), Component::Layers) => {
                Network::Layer(Box::new(Stack::new(c.n_layers, |i| {
                    mamba2::ResidualBlock::new(&root / "layers" / i, c)
                })))
            }
            (ModelConfig::Transformer(c), Component::Layers) => {
                Network::Layer(Box::new(Stack::new(c.n_layers, |i| {
                    transformer::DecoderBlock::new(&root / "layers" / i, c)
                })))
            }
            (ModelConfig::Hybrid(c), Component::Layers) => {
                Network::Layer(Box::new(Stack::new(c.n_layers, |i| {
                    hybrid::HybridLayer::new(&root / "layers" / i, c, i)
                })))
            }
            (ModelConfig::Hybrid(_), Component::Mixer | Component::Block) => {
                panic!("a hybrid has no single {}", component.name())
            }
        };
        if kind != Kind::Float {
            cast_except_fp32_params(&vars, kind);
        }
        Self {
            vars,
            network,
            d_model: cfg.d_model(),
            vocab_size: cfg.vocab_size(),
        }
    }

    /// The pretrained language model in checkpoint `dir`, computing in `kind`.
    pub fn from_checkpoint(
        dir: &std::path::Path,
        device: Device,
        kind: Kind,
    ) -> Result<Self, checkpoint::CheckpointError> {
        let checkpoint::Checkpoint {
            config,
            vars,
            model,
        } = checkpoint::Checkpoint::load(dir, device, kind)?;
        Ok(Self {
            vars,
            network: Network::Lm(model),
            d_model: config.d_model(),
            vocab_size: config.vocab_size(),
        })
    }

    /// Random inputs of the right kind: hidden states for a layer, token ids for a language
    /// model, the operation's own tensors for a core op (see [`CoreOp::random_inputs`]).
    pub fn random_inputs(&self, batch: i64, seq_len: i64, kind: Kind) -> Vec<Tensor> {
        let device = self.vars.device();
        match &self.network {
            Network::Layer(_) => vec![Tensor::randn(
                [batch, seq_len, self.d_model],
                (kind, device),
            )],
            Network::Lm(_) => vec![Tensor::randint(
                self.vocab_size,
                [batch, seq_len],
                (Kind::Int64, device),
            )],
            Network::Core(op) => op.random_inputs(batch, seq_len, self.d_model, kind, device),
        }
    }

    /// The parallel-mode forward pass on `inputs` from [`BuiltModel::random_inputs`].
    pub fn forward(&self, inputs: &[Tensor]) -> Tensor {
        match &self.network {
            Network::Layer(layer) => layer.forward(&inputs[0]),
            Network::Lm(lm) => lm.forward(&inputs[0]),
            Network::Core(op) => op.forward(inputs),
        }
    }

    pub fn param_count(&self) -> i64 {
        self.vars
            .trainable_variables()
            .iter()
            .map(Tensor::numel)
            .sum::<usize>() as i64
    }
}

/// Token embeddings drawn from N(0, 0.02²), as mamba_ssm's `_init_weights` and HF's Llama
/// initialise them. tch's default N(0, 1) would start a tied LM head with logits of size
/// √d_model, and the loss far above ln(vocab_size).
fn token_embedding(p: nn::Path, vocab_size: i64, d_model: i64) -> nn::Embedding {
    let config = nn::EmbeddingConfig {
        ws_init: init::drawn(nn::Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        }),
        ..Default::default()
    };
    nn::embedding(p, vocab_size, d_model, config)
}

/// An untied LM head's weight, `lm_head.weight` at the root as in HF checkpoints:
/// (vocab_size, d_model), no bias.
fn untied_lm_head(p: &nn::Path, d_model: i64, vocab_size: i64) -> Tensor {
    let no_bias = nn::LinearConfig {
        ws_init: init::drawn(nn::LinearConfig::default().ws_init),
        bias: false,
        ..Default::default()
    };
    nn::linear(p / "lm_head", d_model, vocab_size, no_bias).ws
}

fn is_fp32_param(name: &str) -> bool {
    name.ends_with("A_log")
        || name.ends_with(".D")
        || name == "D"
        || name == "delta_bias"
        || name.ends_with("dt_bias")
}

pub(crate) fn cast_except_fp32_params(vars: &nn::VarStore, kind: Kind) {
    tch::no_grad(|| {
        for (name, var) in vars.variables() {
            if !is_fp32_param(&name) {
                var.shallow_clone().set_data(&var.to_kind(kind));
            }
        }
    });
}
