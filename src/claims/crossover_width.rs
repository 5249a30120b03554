//! "Below a length of factor·d_model, attention is cheaper than Mamba", judged per width on
//! measured crossovers:
//!
//! - supported at a width when Mamba is slower at every measured length below factor·d: the
//!   crossover L* and its optimistic bound lie at or above factor·d, or Mamba never caught up
//!   within lengths reaching factor·d;
//! - refuted when Mamba is already as fast below factor·d, with the pessimistic bound also
//!   below it (or from the shortest length measured);
//! - inconclusive when the bounds straddle factor·d (noise), when nothing was measured on the
//!   relevant side of factor·d, or when runs are missing.
//!
//! The FLOP model's L* is quoted beside each measured one, marked as predicted.
//!
//! The claim is judged at each level its experiments measure (the core ops, the mixers, stacks
//! of layers matched in parameters) and for each SSM family measured (Mamba-1, Mamba-2,
//! hybrids), and the verdict is Mamba-1's most complete level's: the forum's Mamba is Mamba-1,
//! and a forum comparing Llama with Mamba means models of equal size, not a 6d² mixer against a
//! 4d² attention layer. The other families' levels stand beside it.

use super::{Finding, Verdict};
use crate::analysis::crossover::{Crossover, CrossoverOutcome as Crossing};
use crate::models::{Component, Family};

/// The findings at each width, with the family and level (component) each was measured at.
pub fn judge(crossovers: &[&Crossover], factor: f64) -> Vec<(Family, Component, Finding)> {
    crossovers
        .iter()
        .map(|c| (c.family, c.component, finding(c, factor)))
        .collect()
}

/// How a verdict names the level of one family.
pub fn level_name(family: Family, component: Component) -> String {
    let (who, core) = match family {
        Family::Mamba => ("Mamba-1", "selective scan"),
        Family::Mamba2 => ("Mamba-2", "chunked SSD"),
        Family::Hybrid => ("hybrid", "core op"),
        Family::Transformer => ("Transformer", "attention"),
    };
    let level = match component {
        Component::Core => format!("core ops ({core} vs causal SDPA)"),
        Component::Mixer => format!("mixers ({who} mixer vs attention layer)"),
        Component::Block => "one block each".to_owned(),
        Component::Layers => {
            format!("matched layers (Llama layer vs {who} layers of equal parameters)")
        }
        Component::Model => "whole models".to_owned(),
    };
    format!("{who}, {level}")
}

fn finding(c: &Crossover, factor: f64) -> Finding {
    let bound = factor * c.d_model as f64;
    let predicted = match c.flops_crossover.and_then(|p| p.length()) {
        Some(l) => format!("; FLOP model (predicted): L* = {l:.0}"),
        None => String::new(),
    };
    let (verdict, detail) = match c.finding {
        Crossing::Crossed => {
            let l = c.measured.unwrap_or(f64::NAN);
            let low = c.measured_low.unwrap_or(l);
            let ratio = l / c.d_model as f64;
            if l >= bound && low >= bound {
                (Verdict::Supported, format!("measured L* = {l:.0} ≥ {bound:.0} ({ratio:.1}·d)"))
            } else if l < bound && c.measured_high.is_some_and(|h| h < bound) {
                (Verdict::Refuted, format!("measured L* = {l:.0} < {bound:.0} ({ratio:.1}·d)"))
            } else {
                let range = match (c.measured_low, c.measured_high) {
                    (Some(lo), Some(hi)) => format!("{lo:.0}–{hi:.0}"),
                    _ => "unbounded".to_owned(),
                };
                let level = match (c.level_from, c.level_to) {
                    (Some(from), Some(to)) if from < to => format!(
                        "; the two are level (the ratio's interval holds 1) from L = {from} to {to}, a finding in itself"
                    ),
                    _ => String::new(),
                };
                (
                    Verdict::Inconclusive,
                    format!("measured L* = {l:.0}, but its bounds ({range}) straddle {bound:.0}: within noise{level}"),
                )
            }
        }
        Crossing::NoneInRange => match c.max_len {
            Some(max) if max as f64 >= bound => (
                Verdict::Supported,
                format!(
                    "Mamba slower at every length measured, up to {max} ≥ {bound:.0} ({:.2}× at {max})",
                    c.ratio_at_max_len.unwrap_or(f64::NAN)
                ),
            ),
            max => (
                Verdict::Inconclusive,
                format!("Mamba slower up to L = {}, but nothing was measured up to {bound:.0}", max.unwrap_or(0)),
            ),
        },
        Crossing::ModelFasterThroughout => match c.min_len {
            Some(min) if (min as f64) < bound => (
                Verdict::Refuted,
                format!("Mamba already as fast at the shortest length, {min} < {bound:.0}"),
            ),
            min => (
                Verdict::Inconclusive,
                format!("Mamba as fast from L = {}, but nothing was measured below {bound:.0}", min.unwrap_or(0)),
            ),
        },
        Crossing::InsufficientData => (
            Verdict::Inconclusive,
            "fewer than two lengths where both models succeeded".to_owned(),
        ),
    };
    Finding {
        at: format!(
            "d={} ({} vs {}, {} {} {}, batch {})",
            c.d_model,
            c.model,
            c.baseline,
            c.experiment,
            c.pass.name(),
            c.component.name(),
            c.batch
        ),
        verdict,
        detail: detail + &predicted,
        measured: true,
    }
}
