//! Claims as first-class verdicts: a suite quotes a claim, names its kind and the experiments
//! it is judged on, and the harness decides `supported`, `refuted`, `mixed` or `inconclusive`
//! by documented rules, never from missing data.

pub mod attention_share;
pub mod crossover_width;
pub mod recall_distance;

use crate::analysis::crossover::Crossover;
use crate::models::{Component, Family};
use crate::results::Row;
use crate::suite::claim::{Claim, ClaimKind, Rule};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Supported,
    Refuted,
    /// True for some widths or lengths, false for others; the findings say which.
    Mixed,
    /// Missing or failed runs, or results within noise; the findings say why.
    Inconclusive,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Supported => "supported",
            Verdict::Refuted => "refuted",
            Verdict::Mixed => "mixed",
            Verdict::Inconclusive => "inconclusive",
        }
    }

    /// The verdict of several findings: unanimous ones stand; support and refutation
    /// together are mixed; any undecided finding without both makes it inconclusive, since a
    /// verdict is never drawn from missing data.
    pub fn combine(findings: impl IntoIterator<Item = Verdict>) -> Verdict {
        let all: Vec<Verdict> = findings.into_iter().collect();
        let has = |v: Verdict| all.contains(&v);
        if all.is_empty() {
            Verdict::Inconclusive
        } else if has(Verdict::Mixed) || (has(Verdict::Supported) && has(Verdict::Refuted)) {
            Verdict::Mixed
        } else if has(Verdict::Inconclusive) {
            Verdict::Inconclusive
        } else {
            all[0]
        }
    }
}

/// One piece of evidence: a width, a model or a point, what was found there, and whether the
/// number is measured or predicted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub at: String,
    pub verdict: Verdict,
    pub detail: String,
    pub measured: bool,
}

/// A judged claim: its verdict, the findings behind it, and one line that says why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judgement {
    pub id: String,
    pub claim: String,
    pub kind: ClaimKind,
    /// For a claim judged at several levels, the headline level's verdict.
    pub verdict: Verdict,
    pub summary: String,
    pub findings: Vec<Finding>,
    /// The verdict at each level a speed claim was measured at, the headline (most complete)
    /// level first; empty for claims without levels.
    pub levels: Vec<LevelVerdict>,
    /// The evidence at a glance, where the claim's kind has one (claim (b): recipe × seeds →
    /// reach).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<ClaimTable>,
}

/// A small table a report prints under a claim's findings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClaimTable {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// A speed claim's verdict at one level of one family's models (see [`crossover_width`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LevelVerdict {
    pub family: Family,
    pub level: Component,
    pub name: String,
    pub verdict: Verdict,
    pub summary: String,
}

/// Judges `claim` on the rows and crossovers of its experiments.
pub fn judge(claim: &Claim, rows: &[Row], crossovers: &[Crossover]) -> Judgement {
    let mine = |experiment: &String| claim.experiments.contains(experiment);
    let rows: Vec<&Row> = rows.iter().filter(|r| mine(&r.experiment)).collect();
    let crossovers: Vec<&Crossover> = crossovers.iter().filter(|c| mine(&c.experiment)).collect();
    let findings = match claim.rule() {
        Err(problems) => vec![Finding {
            at: "the claim".to_owned(),
            verdict: Verdict::Inconclusive,
            detail: problems
                .into_iter()
                .map(|(_, m)| m)
                .collect::<Vec<_>>()
                .join("; "),
            measured: false,
        }],
        Ok(Rule::CrossoverVsWidth { factor }) => {
            return by_level(claim, crossover_width::judge(&crossovers, factor));
        }
        Ok(Rule::RecallAtDistance {
            family,
            threshold,
            min_length,
            full_budget_steps,
        }) => {
            let judged =
                recall_distance::judge(&rows, family, threshold, min_length, full_budget_steps);
            let mut judgement = Judgement::of(
                claim,
                judged.verdict,
                judged.summary,
                judged.findings,
                Vec::new(),
            );
            judgement.table = Some(judged.table);
            return judgement;
        }
        Ok(Rule::AttentionShare {
            negligible_below,
            predict_at,
        }) => attention_share::judge(&rows, negligible_below, &predict_at),
    };
    let verdict = Verdict::combine(findings.iter().map(|f| f.verdict));
    let summary = summarize(&findings);
    Judgement::of(claim, verdict, summary, findings, Vec::new())
}

impl Judgement {
    fn of(
        claim: &Claim,
        verdict: Verdict,
        summary: String,
        findings: Vec<Finding>,
        levels: Vec<LevelVerdict>,
    ) -> Self {
        Judgement {
            id: claim.id.clone(),
            claim: claim.claim.clone(),
            kind: claim.kind,
            verdict,
            summary,
            findings,
            levels,
            table: None,
        }
    }
}

/// A claim judged per family and level: each level's verdict combines its own findings, and
/// the claim's verdict is the headline's: Mamba-1's (the forum's Mamba) where it was measured,
/// at its most complete level (matched layers before mixers before core ops).
fn by_level(claim: &Claim, findings: Vec<(Family, Component, Finding)>) -> Judgement {
    let mut levels: Vec<(Family, Component)> = findings.iter().map(|(f, c, _)| (*f, *c)).collect();
    levels.sort_unstable_by_key(|&(family, component)| {
        (
            family != Family::Mamba,
            family,
            std::cmp::Reverse(component),
        )
    });
    levels.dedup();
    let levels: Vec<LevelVerdict> = levels
        .iter()
        .map(|&(family, level)| {
            let mine: Vec<Finding> = findings
                .iter()
                .filter(|(f, c, _)| (*f, *c) == (family, level))
                .map(|(_, _, f)| f.clone())
                .collect();
            LevelVerdict {
                family,
                level,
                name: crossover_width::level_name(family, level),
                verdict: Verdict::combine(mine.iter().map(|f| f.verdict)),
                summary: summarize(&mine),
            }
        })
        .collect();
    let verdict = levels
        .first()
        .map_or(Verdict::Inconclusive, |headline| headline.verdict);
    let summary = match levels.as_slice() {
        [] => summarize(&[]),
        [only] => only.summary.clone(),
        [headline, others @ ..] => {
            let beside: Vec<String> = others
                .iter()
                .map(|l| format!("{}: {}", l.name, l.verdict.name()))
                .collect();
            format!(
                "{} (the headline level): {}. Beside it: {}",
                headline.name,
                headline.summary,
                beside.join("; ")
            )
        }
    };
    let findings = findings.into_iter().map(|(_, _, f)| f).collect();
    Judgement::of(claim, verdict, summary, findings, levels)
}

/// `supported at d=64, d=128; refuted at d=512` and the like.
fn summarize(findings: &[Finding]) -> String {
    if findings.is_empty() {
        return "no results to judge: the experiments have no usable rows".to_owned();
    }
    let of = |v: Verdict| -> Vec<&str> {
        findings
            .iter()
            .filter(|f| f.verdict == v)
            .map(|f| f.at.as_str())
            .collect()
    };
    let mut parts = Vec::new();
    for v in [Verdict::Supported, Verdict::Refuted, Verdict::Inconclusive] {
        let at = of(v);
        if !at.is_empty() {
            parts.push(format!("{} at {}", v.name(), at.join(" · ")));
        }
    }
    parts.join("; ")
}
