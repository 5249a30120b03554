//! "Attention is a negligible share of a Transformer's cost": judged on the measured share of a
//! Transformer block's (or model's) time spent in fused attention, at the longest length
//! measured per width, and on the FLOP model's share at frontier points the suite names
//! (a Llama layer: head_dim 128, SwiGLU width 8/3·d rounded to 256). Each point is supported
//! when the share is below the bound and refuted otherwise; measured and predicted points are
//! labelled as such.

use super::{Finding, Verdict};
use crate::measure::analytic::forward_flops;
use crate::models::{transformer, Component, Family, ModelConfig};
use crate::results::{Row, Status};
use crate::suite::claim::Point;
use std::collections::BTreeMap;

pub fn judge(rows: &[&Row], negligible_below: f64, predict_at: &[Point]) -> Vec<Finding> {
    let mut findings = measured(rows, negligible_below);
    findings.extend(predict_at.iter().map(|p| predicted(*p, negligible_below)));
    findings
}

fn verdict(share: f64, bound: f64) -> Verdict {
    if share < bound {
        Verdict::Supported
    } else {
        Verdict::Refuted
    }
}

/// Shares measured against `component: core` runs of the same model and shapes.
fn measured(rows: &[&Row], bound: f64) -> Vec<Finding> {
    let core = |r: &Row| {
        rows.iter()
            .find(|c| {
                c.component == Component::Core
                    && c.status == Status::Ok
                    && (&c.model, c.d_model, c.seq_len, c.batch, &c.pass, &c.device)
                        == (&r.model, r.d_model, r.seq_len, r.batch, &r.pass, &r.device)
            })
            .and_then(|c| c.latency_median_s)
    };
    // Per width, the longest length with both measurements.
    let mut longest: BTreeMap<i64, (i64, f64)> = BTreeMap::new();
    for row in rows.iter().filter(|r| {
        r.family == Family::Transformer
            && r.status == Status::Ok
            && matches!(r.component, Component::Block | Component::Model)
    }) {
        if let (Some(attention), Some(total)) = (core(row), row.latency_median_s) {
            let entry = longest.entry(row.d_model).or_insert((0, 0.0));
            if row.seq_len > entry.0 {
                *entry = (row.seq_len, attention / total);
            }
        }
    }
    longest
        .into_iter()
        .map(|(d, (len, share))| Finding {
            at: format!("d={d}, L={len}"),
            verdict: verdict(share, bound),
            detail: format!(
                "attention is {:.0}% of the time (bound {:.0}%)",
                share * 100.0,
                bound * 100.0
            ),
            measured: true,
        })
        .collect()
}

/// The FLOP model's share for one Llama layer at `point`.
fn predicted(point: Point, bound: f64) -> Finding {
    let d = point.d_model;
    let hidden = ((8 * d / 3 + 255) / 256) * 256;
    let cfg = ModelConfig::Transformer(transformer::Config {
        intermediate_size: Some(hidden),
        ..transformer::Config::new(d, 128.min(d))
    });
    let (flops, core) = forward_flops(&cfg, Component::Block, 1.0, point.seq_len as f64);
    let share = core / flops;
    Finding {
        at: format!("d={d}, L={}", point.seq_len),
        verdict: verdict(share, bound),
        detail: format!(
            "attention is {:.0}% of a layer's FLOPs (bound {:.0}%)",
            share * 100.0,
            bound * 100.0
        ),
        measured: false,
    }
}
