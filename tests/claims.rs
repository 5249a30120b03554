//! Claims: each kind's decision rules on small synthetic results, covering every verdict;
//! validation of bad claims; and a report produced end to end from a tiny suite.

mod common;

use common::mvt;
use mamba_vs_transformer::analysis::crossover::{
    Crossover, CrossoverOutcome as Crossing, Predicted,
};
use mamba_vs_transformer::claims::{judge, Verdict};
use mamba_vs_transformer::results::Row;
use mamba_vs_transformer::spec::{Component, DType, DeviceId, Family, Pass};
use mamba_vs_transformer::suite::claim::{Claim, ClaimKind, Point};
use mamba_vs_transformer::suite::{Machine, Plan};
use mamba_vs_transformer::train::eval::Accuracy;

fn claim(kind: ClaimKind, experiments: &[&str]) -> Claim {
    Claim {
        id: "c".into(),
        claim: "words".into(),
        kind,
        experiments: experiments.iter().map(|e| e.to_string()).collect(),
        factor: None,
        family: None,
        threshold: None,
        min_length: None,
        full_budget_steps: None,
        negligible_below: None,
        predict_at: None,
    }
}

fn crossing(
    d_model: i64,
    finding: Crossing,
    measured: Option<(f64, f64, f64)>,
    lens: (i64, i64),
) -> Crossover {
    Crossover {
        experiment: "e".into(),
        device: DeviceId::Cpu,
        dtype: DType::F32,
        pass: Pass::Forward,
        component: Component::Mixer,
        d_model,
        batch: 1,
        family: Family::Mamba,
        model: "m".into(),
        baseline: "t".into(),
        finding,
        measured: measured.map(|m| m.0),
        measured_low: measured.map(|m| m.1),
        measured_high: measured.map(|m| m.2),
        min_len: Some(lens.0),
        max_len: Some(lens.1),
        ratio_at_max_len: Some(1.2),
        level_from: None,
        level_to: None,
        flops_crossover: Some(Predicted::At(300.0)),
        predicted_crossover: None,
    }
}

#[test]
fn crossover_claims_are_judged_per_width() {
    let c = claim(ClaimKind::CrossoverVsWidth, &["e"]);
    let judged = |crossovers: &[Crossover]| judge(&c, &[], crossovers);
    let supported = [
        crossing(
            64,
            Crossing::Crossed,
            Some((2000.0, 1500.0, 2500.0)),
            (64, 4096),
        ),
        crossing(128, Crossing::NoneInRange, None, (64, 4096)),
    ];
    let j = judged(&supported);
    assert_eq!(j.verdict, Verdict::Supported, "{}", j.summary);
    assert!(j.findings[0]
        .detail
        .contains("FLOP model (predicted): L* = 300"));

    let refuted = [
        crossing(
            256,
            Crossing::Crossed,
            Some((100.0, 80.0, 150.0)),
            (64, 4096),
        ),
        crossing(512, Crossing::ModelFasterThroughout, None, (64, 4096)),
    ];
    assert_eq!(judged(&refuted).verdict, Verdict::Refuted);

    let mixed = [supported[0].clone(), refuted[0].clone()];
    let j = judged(&mixed);
    assert_eq!(j.verdict, Verdict::Mixed);
    assert!(
        j.summary.contains("supported at d=64") && j.summary.contains("refuted at d=256"),
        "{}",
        j.summary
    );

    // Bounds straddling L = d, lengths that never reach d, or no data: never a verdict.
    for unsure in [
        crossing(
            1024,
            Crossing::Crossed,
            Some((1000.0, 900.0, 1200.0)),
            (64, 4096),
        ),
        crossing(8192, Crossing::NoneInRange, None, (64, 4096)),
        crossing(64, Crossing::InsufficientData, None, (64, 64)),
    ] {
        let j = judged(std::slice::from_ref(&unsure));
        assert_eq!(
            j.verdict,
            Verdict::Inconclusive,
            "{:?}: {}",
            unsure.finding,
            j.summary
        );
    }
    assert_eq!(
        judged(&[]).verdict,
        Verdict::Inconclusive,
        "no data, no verdict"
    );
}

#[test]
fn a_crossover_claim_is_judged_per_level_with_matched_layers_as_the_headline() {
    let c = claim(ClaimKind::CrossoverVsWidth, &["e"]);
    let at_level = |component: Component, crossover: Crossover| Crossover {
        component,
        ..crossover
    };
    let supported = crossing(64, Crossing::NoneInRange, None, (64, 4096));
    let refuted = crossing(
        256,
        Crossing::Crossed,
        Some((100.0, 80.0, 150.0)),
        (64, 4096),
    );
    let crossovers = [
        at_level(Component::Core, supported.clone()),
        at_level(Component::Layers, refuted.clone()),
        at_level(Component::Mixer, supported.clone()),
        at_level(Component::Mixer, refuted.clone()),
    ];
    let j = judge(&c, &[], &crossovers);
    let levels: Vec<(Component, Verdict)> = j.levels.iter().map(|l| (l.level, l.verdict)).collect();
    assert_eq!(
        levels,
        [
            (Component::Layers, Verdict::Refuted),
            (Component::Mixer, Verdict::Mixed),
            (Component::Core, Verdict::Supported),
        ],
        "deepest level first, each judged on its own findings"
    );
    assert_eq!(
        j.verdict,
        Verdict::Refuted,
        "the headline is matched layers"
    );
    assert!(
        j.summary.starts_with("Mamba-1, matched layers") && j.summary.contains("core ops"),
        "the summary names the headline level and those beside it: {}",
        j.summary
    );
    assert_eq!(j.findings.len(), 4, "every width's finding is kept");

    // Without a matched-layers experiment the mixers are the headline.
    let j = judge(&c, &[], &crossovers[2..]);
    assert_eq!(
        (j.levels[0].level, j.verdict),
        (Component::Mixer, Verdict::Mixed)
    );
}

#[test]
fn a_crossover_claim_is_headlined_by_mamba_1_with_the_other_families_beside_it() {
    let c = claim(ClaimKind::CrossoverVsWidth, &["e"]);
    let of = |family: Family, component: Component, crossover: Crossover| Crossover {
        family,
        model: family.name().to_owned(),
        component,
        ..crossover
    };
    let supported = crossing(64, Crossing::NoneInRange, None, (64, 4096));
    let refuted = crossing(512, Crossing::ModelFasterThroughout, None, (64, 4096));
    let crossovers = [
        of(Family::Mamba2, Component::Layers, refuted.clone()),
        of(Family::Mamba, Component::Mixer, supported.clone()),
        of(Family::Mamba, Component::Core, refuted.clone()),
        of(Family::Mamba2, Component::Core, refuted),
    ];
    let j = judge(&c, &[], &crossovers);
    let levels: Vec<(Family, Component, Verdict)> = j
        .levels
        .iter()
        .map(|l| (l.family, l.level, l.verdict))
        .collect();
    assert_eq!(
        levels,
        [
            (Family::Mamba, Component::Mixer, Verdict::Supported),
            (Family::Mamba, Component::Core, Verdict::Refuted),
            (Family::Mamba2, Component::Layers, Verdict::Refuted),
            (Family::Mamba2, Component::Core, Verdict::Refuted),
        ],
        "Mamba-1 first, even where Mamba-2 has the more complete level"
    );
    assert_eq!(j.verdict, Verdict::Supported, "{}", j.summary);
    assert!(
        j.summary.starts_with("Mamba-1, mixers") && j.summary.contains("Mamba-2, matched layers"),
        "{}",
        j.summary
    );
    assert!(
        j.findings[0].at.contains("mamba2 vs t"),
        "a finding names its pair: {}",
        j.findings[0].at
    );

    // With Mamba-2 alone, its most complete level is the headline.
    let j = judge(&c, &[], &crossovers[..1]);
    assert_eq!(
        (j.levels[0].family, j.verdict),
        (Family::Mamba2, Verdict::Refuted)
    );
}

/// A recall row of seed 0 with `correct` of `n` sequences right (an ok evaluation), or a
/// failure with no accuracy.
fn recall_row(
    model: &str,
    family: &str,
    eval_len: i64,
    status: &str,
    correct: Option<(i64, i64)>,
) -> Row {
    seeded_recall_row(model, family, eval_len, status, correct, 0)
}

fn seeded_recall_row(
    model: &str,
    family: &str,
    eval_len: i64,
    status: &str,
    correct: Option<(i64, i64)>,
    seed: i64,
) -> Row {
    let mut row: Row = serde_json::from_value(serde_json::json!({
        "suite": "s", "experiment": "r", "kind": "recall", "run_id": format!("r.{model}.s{seed}"),
        "model": model, "family": family, "component": "model", "pass": "train_step",
        "device": "cpu", "dtype": "f32", "batch": 8, "seq_len": 256, "d_model": 64,
        "n_layers": 2, "params": 1000, "scan": "", "threads": 2, "status": status,
        "samples": 0, "wall_s": 1.0, "task": "induction_heads", "lr": 1e-3, "seed": seed,
        "eval_seq_len": eval_len, "steps": 100
    }))
    .unwrap();
    if let Some((correct, scored)) = correct {
        let (low, high) = Accuracy { correct, scored }.wilson_interval();
        row.accuracy = Some(correct as f64 / scored as f64);
        (row.accuracy_ci_low, row.accuracy_ci_high) = (Some(low), Some(high));
        row.accuracy_n = Some(scored);
    }
    row
}

#[test]
fn recall_claims_need_an_evaluation_at_the_distance() {
    let mut c = claim(ClaimKind::RecallAtDistance, &["r"]);
    c.family = Some(Family::Mamba);
    c.threshold = Some(0.9);
    c.min_length = Some(1 << 20);
    let near = recall_row("m", "mamba", 256, "ok", Some((48, 48)));
    let cases = [
        (
            recall_row("m", "mamba", 1 << 20, "ok", Some((48, 48))),
            Verdict::Supported,
            "accuracy 1.000 (48/48, 95% CI 0.926–1.000) at 1048576",
        ),
        (
            recall_row("m", "mamba", 1 << 20, "ok", Some((24, 48))),
            Verdict::Refuted,
            "every seed passes up to 256 tokens",
        ),
        // 32 of 32 right is not enough examples to clear 0.9 (its lower bound is 0.893).
        (
            recall_row("m", "mamba", 1 << 20, "ok", Some((32, 32))),
            Verdict::Inconclusive,
            "its interval holds 0.9",
        ),
        (
            recall_row("m", "mamba", 1 << 20, "timeout", None),
            Verdict::Inconclusive,
            "timeout at 1048576",
        ),
        (
            recall_row("m", "mamba", 1024, "ok", Some((48, 48))),
            Verdict::Inconclusive,
            "not evaluated at 1048576",
        ),
    ];
    for (far, want, words) in cases {
        let j = judge(&c, &[near.clone(), far], &[]);
        assert_eq!(j.verdict, want, "{}", j.summary);
        assert!(
            j.findings[0].detail.contains(words),
            "{}",
            j.findings[0].detail
        );
    }
    // A model that never learned the task at its training length says nothing either way.
    let unlearned = recall_row("m", "mamba", 256, "ok", Some((3, 48)));
    let far = recall_row("m", "mamba", 1 << 20, "ok", Some((2, 48)));
    let j = judge(&c, &[unlearned, far], &[]);
    assert_eq!(j.verdict, Verdict::Inconclusive, "{}", j.summary);
    assert!(j.findings[0].detail.contains("did not learn the task"));
    assert!(j.findings[0].detail.contains("learned in 0 of 1 seeds"));
    // Two Mamba models that disagree: "can" is existential, so the one that keeps the token
    // supports the claim, named; the Transformer's rows are not this claim's evidence.
    let rows = [
        recall_row("m", "mamba", 1 << 20, "ok", Some((48, 48))),
        recall_row("small", "mamba", 1 << 20, "ok", Some((10, 48))),
        recall_row("t", "transformer", 1 << 20, "oom", None),
    ];
    let j = judge(&c, &rows, &[]);
    assert_eq!(j.verdict, Verdict::Supported, "{}", j.summary);
    assert!(j.summary.contains("m d=64 (1 of 1 seeds)"), "{}", j.summary);
    assert_eq!(j.findings.len(), 2);
    assert_eq!(j.findings[1].verdict, Verdict::Refuted);
}

#[test]
fn recall_claims_are_refuted_only_at_the_sources_whole_budget() {
    let mut c = claim(ClaimKind::RecallAtDistance, &["r"]);
    c.family = Some(Family::Mamba);
    c.threshold = Some(0.9);
    c.min_length = Some(1 << 20);
    c.full_budget_steps = Some(204_800);
    let forgets = |steps| {
        let mut rows = [
            recall_row("m", "mamba", 256, "ok", Some((48, 48))),
            recall_row("m", "mamba", 1 << 20, "ok", Some((5, 48))),
        ];
        for row in &mut rows {
            row.steps = Some(steps);
        }
        rows
    };
    let j = judge(&c, &forgets(40_000), &[]);
    assert_eq!(j.verdict, Verdict::Inconclusive, "{}", j.summary);
    assert!(
        j.summary
            .contains("40000 steps, 20% of the 204800-step budget"),
        "{}",
        j.summary
    );
    assert_eq!(
        j.findings[0].verdict,
        Verdict::Refuted,
        "the recipe itself fails"
    );
    let j = judge(&c, &forgets(204_800), &[]);
    assert_eq!(j.verdict, Verdict::Refuted, "{}", j.summary);
    assert!(
        j.summary.contains("whole budget (204800 steps)"),
        "{}",
        j.summary
    );
}

#[test]
fn a_recipe_needs_a_majority_of_its_seeds() {
    let mut c = claim(ClaimKind::RecallAtDistance, &["r", "r2"]);
    c.family = Some(Family::Mamba);
    c.threshold = Some(0.9);
    c.min_length = Some(1 << 20);
    let run = |experiment: &str, seed, far: (i64, i64)| {
        let mut rows = [
            seeded_recall_row("m", "mamba", 256, "ok", Some((48, 48)), seed),
            seeded_recall_row("m", "mamba", 1 << 20, "ok", Some(far), seed),
        ];
        for row in &mut rows {
            row.experiment = experiment.to_owned();
        }
        rows
    };
    // Recipe r: 2 of 3 seeds keep the token. Recipe r2: 1 of 3.
    let rows: Vec<Row> = [
        run("r", 0, (48, 48)),
        run("r", 1, (48, 48)),
        run("r", 2, (4, 48)),
        run("r2", 0, (48, 48)),
        run("r2", 1, (4, 48)),
        run("r2", 2, (4, 48)),
    ]
    .concat();
    let j = judge(&c, &rows, &[]);
    assert_eq!(j.verdict, Verdict::Supported, "{}", j.summary);
    assert!(
        j.summary.contains("r (m d=64, lr 1e-3) (2 of 3 seeds)"),
        "{}",
        j.summary
    );
    let verdicts: Vec<Verdict> = j.findings.iter().map(|f| f.verdict).collect();
    assert_eq!(verdicts, [Verdict::Supported, Verdict::Refuted]);
    assert!(
        j.findings[1].detail.starts_with("1 of 3 seeds pass"),
        "{}",
        j.findings[1].detail
    );
    // Without recipe r, the claim has no recipe that keeps it.
    let r2: Vec<Row> = rows.into_iter().filter(|r| r.experiment == "r2").collect();
    assert_eq!(judge(&c, &r2, &[]).verdict, Verdict::Refuted);
}

#[test]
fn recall_claims_count_the_seeds_that_learned() {
    let mut c = claim(ClaimKind::RecallAtDistance, &["r"]);
    c.family = Some(Family::Mamba);
    c.threshold = Some(0.9);
    c.min_length = Some(1 << 20);
    let run = |seed, near: (i64, i64), far: (i64, i64), steps: Option<i64>| {
        let mut rows = [
            seeded_recall_row("m", "mamba", 256, "ok", Some(near), seed),
            seeded_recall_row("m", "mamba", 1 << 20, "ok", Some(far), seed),
        ];
        for row in &mut rows {
            row.steps_to_target = steps;
        }
        rows
    };
    // Two seeds learned (after 7,000 and 12,000 steps) and keep the token; one never learned.
    let rows: Vec<Row> = [
        run(0, (48, 48), (48, 48), Some(7000)),
        run(1, (48, 48), (48, 48), Some(12000)),
        run(2, (4, 48), (3, 48), None),
    ]
    .concat();
    let j = judge(&c, &rows, &[]);
    assert_eq!(j.verdict, Verdict::Supported, "{}", j.summary);
    let detail = &j.findings[0].detail;
    assert!(
        detail.starts_with("2 of 3 seeds pass at ≥1048576 tokens, trained 100 steps; learned in 2 of 3 seeds, after 7000–12000 steps; every learned seed passes up to 1048576 tokens"),
        "{detail}"
    );
    assert!(
        detail.contains("seed 2: did not learn the task"),
        "{detail}"
    );
    // One seed of two is no majority: the recipe does not keep the token reliably.
    let rows: Vec<Row> = [
        run(0, (48, 48), (48, 48), Some(7000)),
        run(1, (48, 48), (5, 48), Some(9000)),
    ]
    .concat();
    let j = judge(&c, &rows, &[]);
    assert_eq!(j.verdict, Verdict::Refuted, "{}", j.summary);
}

fn speed_row(component: &str, seq_len: i64, median: f64) -> Row {
    serde_json::from_value(serde_json::json!({
        "suite": "s", "experiment": if component == "core" { "core" } else { "block" },
        "run_id": format!("{component}{seq_len}"), "model": "t", "family": "transformer",
        "component": component, "pass": "forward", "device": "cpu", "dtype": "f32", "batch": 1,
        "seq_len": seq_len, "d_model": 512, "n_layers": 1, "params": 1, "scan": "", "threads": 2,
        "status": "ok", "samples": 10, "wall_s": 1.0, "latency_median_s": median
    }))
    .unwrap()
}

#[test]
fn attention_share_claims_use_measurements_and_the_flop_model() {
    let mut c = claim(ClaimKind::AttentionShare, &["block", "core"]);
    c.negligible_below = Some(0.1);
    let measured = |core: f64| {
        [
            speed_row("block", 256, 1.0),
            speed_row("core", 256, core * 0.5),
            speed_row("block", 1024, 1.0),
            speed_row("core", 1024, core),
        ]
    };
    // At the longest length measured, 4096: the share is core / block.
    let j = judge(&c, &measured(0.05), &[]);
    assert_eq!(j.verdict, Verdict::Supported, "{}", j.summary);
    assert!(j.findings[0].measured && j.findings[0].at.contains("L=1024"));
    assert_eq!(judge(&c, &measured(0.5), &[]).verdict, Verdict::Refuted);

    // A Llama layer at d 8192: attention is ~4% of the FLOPs at 4K tokens, ~57% at 128K.
    c.predict_at = Some(vec![
        Point {
            d_model: 8192,
            seq_len: 4096,
        },
        Point {
            d_model: 8192,
            seq_len: 131072,
        },
    ]);
    let j = judge(&c, &[], &[]);
    assert_eq!(j.verdict, Verdict::Mixed, "{}", j.summary);
    assert!(j.findings.iter().all(|f| !f.measured));
    assert_eq!(j.findings[0].verdict, Verdict::Supported);
    assert_eq!(j.findings[1].verdict, Verdict::Refuted);
}

const SUITE: &str = "\
name: claimed
description: a tiny study with claims
device: cpu
threads: 1
models:
  m: { family: mamba, d_state: 4 }
  t: { family: transformer, head_dim: 8 }
experiments:
  - { name: mix, kind: speed, pass: forward, component: mixer, models: [m, t], grid: { d_model: [16], seq_len: [8, 32] }, warmup: 1, repeats: 2 }
  - { name: blk, kind: speed, pass: forward, component: block, models: [t], grid: { d_model: [16], seq_len: [8, 32] }, warmup: 1, repeats: 2 }
  - { name: core, kind: speed, pass: forward, component: core, models: [t], grid: { d_model: [16], seq_len: [8, 32] }, warmup: 1, repeats: 2 }
plots:
  - { kind: latency_vs_seq_len, experiment: mix }
claims:
  - id: attention-cheaper-below-width
    claim: for sequences shorter than the hidden width, attention is cheaper than Mamba
    kind: crossover_vs_width
    factor: 1.0
    experiments: [mix]
  - id: attention-negligible
    claim: at frontier sizes attention cost is negligible next to the matmuls
    kind: attention_share
    negligible_below: 0.1
    predict_at: [{ d_model: 8192, seq_len: 131072 }]
    experiments: [blk, core]
";

#[test]
fn bad_claims_are_rejected_before_anything_runs() {
    let parse = |text: &str| Plan::parse(text, Machine::cpu_only(2));
    assert!(parse(SUITE).is_ok());
    let cases = [
        (
            "experiments: [mix]",
            "experiments: [nope]",
            "unknown experiment `nope`",
        ),
        (
            "factor: 1.0",
            "threshold: 0.5",
            "`threshold` is not a parameter of a crossover_vs_width claim",
        ),
        (
            "    negligible_below: 0.1\n",
            "",
            "needs `negligible_below`",
        ),
        (
            "negligible_below: 0.1",
            "negligible_below: 2.0",
            "expected a fraction",
        ),
        (
            "id: attention-negligible",
            "id: attention-cheaper-below-width",
            "defined twice",
        ),
    ];
    for (from, to, words) in cases {
        let issues = parse(&SUITE.replace(from, to)).expect_err(words);
        let text: Vec<String> = issues.iter().map(|i| i.to_string()).collect();
        assert!(text.iter().any(|t| t.contains(words)), "{words}: {text:?}");
    }
    let recall_kind = SUITE.replace(
        "kind: crossover_vs_width\n    factor: 1.0",
        "kind: recall_at_distance\n    family: mamba\n    threshold: 0.9\n    min_length: 1024",
    );
    let issues = parse(&recall_kind).unwrap_err();
    assert!(issues[0]
        .to_string()
        .contains("judged on recall experiments, and `mix` is speed"));
}

#[test]
fn a_suite_with_claims_gets_a_report() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.yaml"), SUITE).unwrap();
    let out = mvt(&["run", "c.yaml"], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results = dir.path().join("results/claimed");
    let md = std::fs::read_to_string(results.join("report.md")).unwrap();
    assert!(
        md.contains("## Claims") && md.contains("attention-cheaper-below-width"),
        "{md}"
    );
    assert!(
        md.contains("d=8192, L=131072 (predicted): **refuted**"),
        "{md}"
    );
    assert!(md.contains("## Runs that did not succeed"));
    let html = std::fs::read_to_string(results.join("report.html")).unwrap();
    assert!(
        html.contains("<svg") && html.contains("class=\"refuted\""),
        "charts inlined, verdicts styled"
    );

    // `mvt report` writes the same for any results folders, elsewhere.
    let out = mvt(
        &["report", "results/claimed", "--out", "elsewhere"],
        dir.path(),
    );
    assert!(out.status.success());
    assert!(dir.path().join("elsewhere/report.html").exists());
}
