//! Claims as a suite states them, and their validation: the YAML fields, the decision rule
//! they stand for, and the checks that a claim names experiments of the kind it is judged on
//! with sensible parameters. The judging itself is [`crate::claims`].

use super::schema::Suite;
use super::validate::{is_file_name, Checker};
use crate::models::Family;
use crate::spec::ExperimentKind;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

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
    pub kind: ClaimKind,
    /// The experiments whose results judge it.
    pub experiments: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<Family>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<i64>,
    /// recall_at_distance: the training steps of the source's whole budget (the Mamba paper's
    /// 204,800 for induction heads). The claim is refuted only when a recipe trained that long
    /// fails too; failures at smaller budgets leave it inconclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_budget_steps: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negligible_below: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predict_at: Option<Vec<Point>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimKind {
    CrossoverVsWidth,
    RecallAtDistance,
    AttentionShare,
}

impl Claim {
    /// The claim's rule with its parameters, or which parameter is missing or foreign.
    pub fn rule(&self) -> Result<Rule, Vec<(&'static str, String)>> {
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
            ClaimKind::CrossoverVsWidth => Rule::CrossoverVsWidth {
                factor: self.factor.unwrap_or(1.0),
            },
            ClaimKind::RecallAtDistance => {
                need("family", self.family.is_some());
                need("threshold", self.threshold.is_some());
                need("min_length", self.min_length.is_some());
                Rule::RecallAtDistance {
                    family: self.family.unwrap_or(Family::Mamba),
                    threshold: self.threshold.unwrap_or(1.0),
                    min_length: self.min_length.unwrap_or(1),
                    full_budget_steps: self.full_budget_steps,
                }
            }
            ClaimKind::AttentionShare => {
                need("negligible_below", self.negligible_below.is_some());
                Rule::AttentionShare {
                    negligible_below: self.negligible_below.unwrap_or(1.0),
                    predict_at: self.predict_at.clone().unwrap_or_default(),
                }
            }
        };
        let used: &[&str] = match self.kind {
            ClaimKind::CrossoverVsWidth => &["factor"],
            ClaimKind::RecallAtDistance => {
                &["family", "threshold", "min_length", "full_budget_steps"]
            }
            ClaimKind::AttentionShare => &["negligible_below", "predict_at"],
        };
        let given = [
            ("factor", self.factor.is_some()),
            ("family", self.family.is_some()),
            ("threshold", self.threshold.is_some()),
            ("min_length", self.min_length.is_some()),
            ("full_budget_steps", self.full_budget_steps.is_some()),
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
            ClaimKind::CrossoverVsWidth => "crossover_vs_width",
            ClaimKind::RecallAtDistance => "recall_at_distance",
            ClaimKind::AttentionShare => "attention_share",
        }
    }
}

/// A claim's decision rule with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// "Below a length of `factor`·d_model, attention is cheaper than Mamba": judged per width
    /// on the crossover of speed experiments (see [`crossover_width`]).
    CrossoverVsWidth { factor: f64 },
    /// "A `family` model keeps accuracy ≥ `threshold` at `min_length` tokens": judged on recall
    /// experiments (see [`recall_distance`]).
    RecallAtDistance {
        family: Family,
        threshold: f64,
        min_length: i64,
        full_budget_steps: Option<i64>,
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

impl Rule {
    /// The experiment kind whose results judge this claim.
    pub fn experiment_kind(&self) -> ExperimentKind {
        match self {
            Rule::RecallAtDistance { .. } => ExperimentKind::Recall,
            _ => ExperimentKind::Speed,
        }
    }
}

/// Claims name experiments of the kind they are judged on, with sensible parameters.
pub(super) fn check_claims(c: &mut Checker, suite: &Suite) {
    let mut ids = HashSet::new();
    for (i, claim) in suite.claims.iter().enumerate() {
        let at = |field: &str| format!("claims[{i}].{field}");
        if !is_file_name(&claim.id) {
            c.fail(
                at("id"),
                format!(
                    "`{}` is not allowed; use letters, digits, `-`, `_` and `.`",
                    claim.id
                ),
            );
        } else if !ids.insert(claim.id.as_str()) {
            c.fail(
                at("id"),
                format!("claim `{}` is defined twice; ids must be unique", claim.id),
            );
        }
        if claim.experiments.is_empty() {
            c.fail(
                at("experiments"),
                "the list is empty; name the experiments that judge this claim",
            );
        }
        let rule = match claim.rule() {
            Ok(rule) => rule,
            Err(problems) => {
                for (field, message) in problems {
                    c.fail(at(field), message);
                }
                continue;
            }
        };
        let wanted = rule.experiment_kind();
        for (j, name) in claim.experiments.iter().enumerate() {
            let path = format!("claims[{i}].experiments[{j}]");
            match suite.experiments.iter().find(|e| &e.name == name) {
                None => {
                    let names: Vec<&str> =
                        suite.experiments.iter().map(|e| e.name.as_str()).collect();
                    c.fail(
                        path,
                        format!(
                            "unknown experiment `{name}`; expected one of: {}",
                            names.join(", ")
                        ),
                    );
                }
                Some(exp) if exp.kind != wanted => c.fail(
                    path,
                    format!(
                        "a {} claim is judged on {} experiments, and `{name}` is {}",
                        claim.kind_name(),
                        wanted.name(),
                        exp.kind.name()
                    ),
                ),
                Some(_) => {}
            }
        }
        let fraction = |c: &mut Checker, field: &str, v: f64| {
            if !(v > 0.0 && v <= 1.0) {
                c.fail(
                    at(field),
                    format!("{v} is not allowed; expected a fraction in (0, 1]"),
                );
            }
        };
        match &rule {
            Rule::CrossoverVsWidth { factor } => c.above_zero(at("factor"), Some(*factor)),
            Rule::RecallAtDistance {
                threshold,
                min_length,
                full_budget_steps,
                ..
            } => {
                fraction(c, "threshold", *threshold);
                c.at_least(at("min_length"), Some(*min_length), 1);
                c.at_least(at("full_budget_steps"), *full_budget_steps, 1);
            }
            Rule::AttentionShare {
                negligible_below,
                predict_at,
            } => {
                fraction(c, "negligible_below", *negligible_below);
                for (j, p) in predict_at.iter().enumerate() {
                    c.at_least(
                        format!("claims[{i}].predict_at[{j}].d_model"),
                        Some(p.d_model),
                        128,
                    );
                    c.at_least(
                        format!("claims[{i}].predict_at[{j}].seq_len"),
                        Some(p.seq_len),
                        1,
                    );
                }
            }
        }
    }
}
