//! Claims as first-class verdicts: a suite quotes a claim, names its kind and the experiments
//! it is judged on, and the harness decides `supported`, `refuted`, `mixed` or `inconclusive`
//! by documented rules, never from missing data.

pub mod attention_share;
pub mod crossover_width;
pub mod recall_distance;

use crate::analysis::crossover::Crossover;
use crate::results::Row;
use serde::{Deserialize, Serialize};

/// A claim as a suite states it: the kind's parameters sit beside the other fields.
///
/// ```yaml
/// - id: attention-cheaper-below-width
///   claim: "for sequences shorter than the hidden width, attention is cheaper than Mamba"
///   kind: crossover_vs_width
///   factor: 1.0
///   experiments: [mixer-forward]
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    /// A short name: letters, digits, `-`, `_`.
    pub id: String,
    /// The claim's words, quoted.
    pub claim: String,
    pub kind: KindName,
    /// The experiments whose results judge it.
    pub experiments: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<crate::models::Family>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negligible_below: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predict_at: Option<Vec<Point>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KindName {
    CrossoverVsWidth,
    RecallAtDistance,
    AttentionShare,
}

impl Claim {
    /// The claim's rule with its parameters, or which parameter is missing or foreign.
    pub fn rule(&self) -> Result<ClaimKind, Vec<(&'static str, String)>> {
        let mut problems = Vec::new();
        let mut need = |field: &'static str, present: bool| {
            if !present {
                problems.push((
                    field,
                    format!("a {} claim needs `{field}`", self.kind_name()),
                ));
            }
        };
        let rule = match self.kind {
            KindName::CrossoverVsWidth => ClaimKind::CrossoverVsWidth {
                factor: self.factor.unwrap_or(1.0),
            },
            KindName::RecallAtDistance => {
                need("family", self.family.is_some());
                need("threshold", self.threshold.is_some());
                need("min_length", self.min_length.is_some());
                ClaimKind::RecallAtDistance {
                    family: self.family.unwrap_or(crate::models::Family::Mamba),
                    threshold: self.threshold.unwrap_or(1.0),
                    min_length: self.min_length.unwrap_or(1),
                }
            }
            KindName::AttentionShare => {
                need("negligible_below", self.negligible_below.is_some());
                ClaimKind::AttentionShare {
                    negligible_below: self.negligible_below.unwrap_or(1.0),
                    predict_at: self.predict_at.clone().unwrap_or_default(),
                }
            }
        };
        let used: &[&str] = match self.kind {
            KindName::CrossoverVsWidth => &["factor"],
            KindName::RecallAtDistance => &["family", "threshold", "min_length"],
            KindName::AttentionShare => &["negligible_below", "predict_at"],
        };
        let given = [
            ("factor", self.factor.is_some()),
            ("family", self.family.is_some()),
            ("threshold", self.threshold.is_some()),
            ("min_length", self.min_length.is_some()),
            ("negligible_below", self.negligible_below.is_some()),
            ("predict_at", self.predict_at.is_some()),
        ];
        for (field, present) in given {
            if present && !used.contains(&field) {
                problems.push((
                    field,
                    format!(
                        "`{field}` is not a parameter of a {} claim",
                        self.kind_name()
                    ),
                ));
            }
        }
        if problems.is_empty() {
            Ok(rule)
        } else {
            Err(problems)
        }
    }

    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            KindName::CrossoverVsWidth => "crossover_vs_width",
            KindName::RecallAtDistance => "recall_at_distance",
            KindName::AttentionShare => "attention_share",
        }
    }
}

/// A claim's decision rule with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimKind {
    /// "Below a length of `factor`·d_model, attention is cheaper than Mamba": judged per width
    /// on the crossover of speed experiments (see [`crossover_width`]).
    CrossoverVsWidth { factor: f64 },
    /// "A `family` model keeps accuracy ≥ `threshold` at `min_length` tokens": judged on recall
    /// experiments (see [`recall_distance`]).
    RecallAtDistance {
        family: crate::models::Family,
        threshold: f64,
        min_length: i64,
    },
    /// "Attention is a negligible share (< `negligible_below`) of a Transformer's cost": judged
    /// on measured shares and on the FLOP model at `predict_at` (see [`attention_share`]).
    AttentionShare {
        negligible_below: f64,
        predict_at: Vec<Point>,
    },
}

/// A (width, length) where the FLOP model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Point {
    pub d_model: i64,
    pub seq_len: i64,
}

impl ClaimKind {
    /// The experiment kind whose results judge this claim.
    pub fn experiment_kind(&self) -> crate::suite::schema::ExperimentKind {
        match self {
            ClaimKind::RecallAtDistance { .. } => crate::suite::schema::ExperimentKind::Recall,
            _ => crate::suite::schema::ExperimentKind::Speed,
        }
    }
}

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
    pub kind: String,
    pub verdict: Verdict,
    pub summary: String,
    pub findings: Vec<Finding>,
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
        Ok(ClaimKind::CrossoverVsWidth { factor }) => crossover_width::judge(&crossovers, factor),
        Ok(ClaimKind::RecallAtDistance {
            family,
            threshold,
            min_length,
        }) => recall_distance::judge(&rows, family, threshold, min_length),
        Ok(ClaimKind::AttentionShare {
            negligible_below,
            predict_at,
        }) => attention_share::judge(&rows, negligible_below, &predict_at),
    };
    let verdict = Verdict::combine(findings.iter().map(|f| f.verdict));
    let summary = summarize(&findings);
    Judgement {
        id: claim.id.clone(),
        claim: claim.claim.clone(),
        kind: claim.kind_name().to_owned(),
        verdict,
        summary,
        findings,
    }
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
