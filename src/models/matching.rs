//! Matched sizes: the depth at which one model has as many parameters as another at the same
//! width, so that a comparison is between models of equal capacity.
//!
//! The Mamba paper (Section 4.2) compares models of equal parameter count at equal width, with
//! two Mamba blocks standing in for one Transformer layer (attention + MLP), because a Mamba
//! block (≈ 3·E·d² = 6d² weights) is about half a Llama layer (4d² attention + 8d² SwiGLU).
//! Depth moves the count in steps of one block, so a match is the depth whose count is nearest.
//! A hybrid is matched at any depth of at least one repetition of its pattern.

use super::{Component, Family, ModelConfig};

/// Parameter counts must agree within this fraction of the reference's, unless an experiment
/// says otherwise (`match_tolerance`).
pub const TOLERANCE: f64 = 0.05;

/// The deepest model a match considers.
const MAX_LAYERS: i64 = 1 << 20;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "no {family} depth at d_model {d_model} has within {:.0}% of {target} parameters: the nearest, \
     {nearest_layers} layer(s), has {nearest_params} ({:+.1}%); make the reference deeper so that \
     one {family} layer is a smaller step, or allow a wider `match_tolerance`",
    tolerance * 100.0,
    relative_error(*nearest_params, *target) * 100.0,
    family = family.name()
)]
pub struct NoMatchingDepth {
    pub tolerance: f64,
    pub family: Family,
    pub d_model: i64,
    pub target: i64,
    pub nearest_layers: i64,
    pub nearest_params: i64,
}

/// (params − target) / target.
pub fn relative_error(params: i64, target: i64) -> f64 {
    (params - target) as f64 / target as f64
}

/// `cfg` at the depth whose parameter count of `component` (a whole model, or a stack of
/// layers) is nearest `target`, if that count is within `tolerance` of it (a fraction). Width
/// and every other option stay as they are.
pub fn match_depth(
    cfg: &ModelConfig,
    component: Component,
    target: i64,
    tolerance: f64,
) -> Result<ModelConfig, NoMatchingDepth> {
    let params = |layers: i64| cfg.with_n_layers(layers).params(component);
    // The count grows with depth, by one block per layer (a hybrid's blocks differ from layer
    // to layer): the nearest depth is the first whose count reaches the target, or the one
    // before it.
    let shallowest = cfg.min_layers();
    let mut deep_enough = shallowest;
    while params(deep_enough) < target && deep_enough < MAX_LAYERS {
        deep_enough = (deep_enough * 2).min(MAX_LAYERS);
    }
    let (mut below, mut reaches) = (shallowest, deep_enough);
    while below < reaches {
        let middle = below + (reaches - below) / 2;
        if params(middle) < target {
            below = middle + 1;
        } else {
            reaches = middle;
        }
    }
    let best = [reaches - 1, reaches]
        .into_iter()
        .filter(|&layers| layers >= shallowest)
        .min_by_key(|&layers| (params(layers) - target).abs())
        .unwrap_or(shallowest);
    if relative_error(params(best), target).abs() > tolerance {
        return Err(NoMatchingDepth {
            tolerance,
            family: cfg.family(),
            d_model: cfg.d_model(),
            target,
            nearest_layers: best,
            nearest_params: params(best),
        });
    }
    Ok(cfg.with_n_layers(best))
}
