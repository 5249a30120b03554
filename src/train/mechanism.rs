//! What a trained Mamba's state can hold, read from its own parameters on held-out induction
//! sequences (issue #30). The common variable of the papers that explain Mamba's fragile reach
//! (DeciMamba, LongMamba, Stuffed Mamba) is Δ: channel c's state n keeps what it wrote with
//! the factor exp(Δ_t · A_cn) per token (Eq. 4), so over a gap of G noise tokens it keeps
//! exp(−|A_cn| · Σ Δ_t). A leak of Δ·|A| = 1e-4 per token costs e^−0.026 over the 256 tokens
//! training sees, and e^−105 over 2^20.
//!
//! Per layer this measures Δ on noise tokens, at the trigger (the first special token) and at
//! the answer (the token after it, which the convolution sees beside the trigger), and from
//! the mean Δ on noise the half-life of each channel's slowest state, ln 2 / (mean Δ · min |A|).
//! The *writers* are the channels whose Δ at the answer stands out most over their Δ on noise
//! (the top tenth): the ones that open to take the answer in and must then hold it. Their
//! median half-life, and what they keep after 2^20 tokens, is the reach the parameters imply.

use crate::models::lm::LanguageModel;
use crate::tasks::{eval_seed, Split, Task, TaskError};
use tch::{Kind, Tensor};

/// Sequences the probe reads: enough noise positions for stable percentiles (48 × 250 × the
/// channels), at the training length where Δ was learned.
pub const PROBE_BATCHES: usize = 6;
pub const PROBE_BATCH_SIZE: usize = 8;

/// The share of channels counted as writers.
const WRITER_SHARE: f64 = 0.1;

/// The gap, in tokens, at which [`LayerMechanism::writer_retention_far`] is read: claim (b)'s.
pub const FAR_GAP: f64 = 1_048_576.0;

/// The 10th, 50th and 90th percentiles of a quantity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    pub p10: f64,
    pub p50: f64,
    pub p90: f64,
}

impl Percentiles {
    fn of(values: &Tensor) -> Self {
        let values = values.to_kind(Kind::Double).flatten(0, -1);
        let at = |q: f64| {
            values
                .quantile_scalar(q, None, false, "linear")
                .double_value(&[])
        };
        Self {
            p10: at(0.1),
            p50: at(0.5),
            p90: at(0.9),
        }
    }
}

/// One layer's Δ and the memory it implies.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerMechanism {
    pub layer: usize,
    /// Δ over noise tokens, every channel.
    pub delta_noise: Percentiles,
    /// Δ at the trigger, every channel.
    pub delta_trigger: Percentiles,
    /// Δ at the answer, every channel.
    pub delta_answer: Percentiles,
    /// Half-life in tokens of each channel's slowest state over noise, across channels.
    pub half_life: Percentiles,
    /// The writers' median half-life in tokens.
    pub writer_half_life: f64,
    /// What the writers' slowest states keep of the answer after [`FAR_GAP`] noise tokens
    /// (median over writers).
    pub writer_retention_far: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum MechanismError {
    #[error("the mechanism is read from Mamba-1 models; this one is {0}")]
    NotMamba(&'static str),
    #[error(
        "the mechanism is read on induction heads, whose trigger it locates; this task is `{0}`"
    )]
    NotInduction(String),
    #[error(transparent)]
    Task(#[from] TaskError),
}

/// Every layer's mechanism of `model` (on `device`), trained with `seed` on `task` at
/// `seq_len`, read on the held-out sequences of that seed.
pub fn probe(
    model: &LanguageModel,
    task: &Task,
    seq_len: i64,
    seed: u64,
    device: tch::Device,
) -> Result<Vec<LayerMechanism>, MechanismError> {
    let LanguageModel::Mamba(lm) = model else {
        return Err(MechanismError::NotMamba(model.family().name()));
    };
    let Task::InductionHeads(induction) = task else {
        return Err(MechanismError::NotInduction(task.name().to_owned()));
    };
    let mut ids = Vec::with_capacity(PROBE_BATCHES);
    for i in 0..PROBE_BATCHES {
        let batch = task.batch(
            Split::Eval,
            seq_len,
            PROBE_BATCH_SIZE,
            eval_seed(seed, i as u64),
        )?;
        ids.push(batch.inputs);
    }
    let ids = Tensor::cat(&ids, 0).to_device(device);
    let places = Places::of(&ids, induction.special(), lm.layers()[0].inner().d_conv());
    Ok(tch::no_grad(|| {
        let mut hidden = lm.embed(&ids);
        let mut layers = Vec::with_capacity(lm.layers().len());
        for (layer, block) in lm.layers().iter().enumerate() {
            let mixer = block.inner();
            let delta = mixer.delta(&block.normed(&hidden)); // (batch, d_inner, seq_len)
            layers.push(layer_mechanism(layer, &delta, &mixer.a(), &places));
            hidden = tch::nn::Module::forward(block, &hidden);
        }
        layers
    }))
}

/// Where the trigger, the answer and the noise are in each sequence.
struct Places {
    /// (batch, seq_len) masks.
    trigger: Tensor,
    answer: Tensor,
    noise: Tensor,
}

impl Places {
    /// Noise is every position but the trigger and the `d_conv` positions from it (whose
    /// convolution window holds it) and the final trigger.
    fn of(ids: &Tensor, special: i64, d_conv: i64) -> Self {
        let seq_len = ids.size()[1];
        let is_special = ids.eq(special);
        // The first special token of each row: argmax returns the first maximum.
        let first = is_special.to_kind(Kind::Int64).argmax(1, true); // (batch, 1)
        let positions = Tensor::arange(seq_len, (Kind::Int64, ids.device())).unsqueeze(0);
        let offset = &positions - &first;
        let trigger = offset.eq(0);
        let answer = offset.eq(1);
        let near = offset.ge(0).logical_and(&offset.lt(d_conv));
        let last = positions.eq(seq_len - 1);
        let noise = near.logical_or(&last).logical_not();
        Self {
            trigger,
            answer,
            noise: noise.expand_as(ids),
        }
    }
}

fn layer_mechanism(layer: usize, delta: &Tensor, a: &Tensor, places: &Places) -> LayerMechanism {
    // (batch, seq_len, d_inner), so a (batch, seq_len) mask selects rows of channels.
    let delta = delta.transpose(1, 2).to_kind(Kind::Double);
    let d_inner = delta.size()[2];
    let at = |mask: &Tensor| delta.index(&[Some(mask.shallow_clone())]); // (positions, d_inner)
    let (noise, answer) = (at(&places.noise), at(&places.answer));
    let mean_noise = noise.mean_dim(0, false, Kind::Double); // (d_inner,)
    let slowest = a.abs().to_kind(Kind::Double).amin(1, false); // (d_inner,): min_n |A_cn|
    let rate = &mean_noise * &slowest;
    let half_life = rate.reciprocal() * std::f64::consts::LN_2;
    let standout = answer.mean_dim(0, false, Kind::Double) / &mean_noise;
    let writers = ((d_inner as f64 * WRITER_SHARE).ceil() as i64).max(1);
    let (_, writer_ids) = standout.topk(writers, 0, true, true);
    let writer_rate = rate.index_select(0, &writer_ids);
    let median = |t: &Tensor| t.median().double_value(&[]);
    LayerMechanism {
        layer,
        delta_noise: Percentiles::of(&noise),
        delta_trigger: Percentiles::of(&at(&places.trigger)),
        delta_answer: Percentiles::of(&answer),
        half_life: Percentiles::of(&half_life),
        writer_half_life: std::f64::consts::LN_2 / median(&writer_rate),
        writer_retention_far: (-median(&writer_rate) * FAR_GAP).exp(),
    }
}
