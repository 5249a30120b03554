//! Sharding a sweep across machines and merging the shards back into one results set.

mod common;

use common::{mvt, rows};
use mamba_vs_transformer::measure::analytic;
use mamba_vs_transformer::runner;
use mamba_vs_transformer::suite::{Machine, Plan, Shard};
use std::collections::HashMap;

const SUITE: &str = "\
name: sharded
device: cpu
threads: 1
models:
  m: { family: mamba, d_state: 4 }
  t: { family: transformer, head_dim: 8 }
experiments:
  - name: fwd
    kind: speed
    pass: forward
    component: mixer
    models: [m, t]
    grid: { d_model: [16], seq_len: [8, 16, 32] }
    warmup: 1
    repeats: 2
";

#[test]
fn shards_cover_the_plan_exactly_once() {
    let plan = Plan::parse(SUITE, Machine::cpu_only(2)).unwrap();
    for count in 1..=7 {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for index in 0..count {
            let shard: Shard = format!("{index}/{count}").parse().unwrap();
            for run in shard.select(&plan.runs, analytic::total_flops) {
                *seen.entry(run.run_id).or_default() += 1;
            }
        }
        assert_eq!(seen.len(), plan.runs.len(), "{count} shards");
        assert!(seen.values().all(|n| *n == 1), "{count} shards: {seen:?}");
    }
    for bad in ["2/2", "1", "a/3", "0/0", "-1/2"] {
        assert!(bad.parse::<Shard>().is_err(), "{bad}");
    }
}

#[test]
fn a_paired_point_is_one_unit_of_a_shard() {
    let plan = Plan::parse(SUITE, Machine::cpu_only(2)).unwrap();
    let units = runner::units(&plan.runs);
    assert_eq!(units.len(), 3, "one unit per grid point");
    for unit in &units {
        let models: Vec<&str> = unit.iter().map(|r| r.model.as_str()).collect();
        assert_eq!(models, ["m", "t"]);
        assert_eq!(unit[0].seq_len, unit[1].seq_len);
    }
    for count in 1..=3 {
        let mut seen = 0;
        for index in 0..count {
            let shard = Shard { index, count };
            for unit in shard.select(&units, |u| u.iter().map(analytic::total_flops).sum()) {
                assert_eq!(unit.len(), 2);
                seen += unit.len();
            }
        }
        assert_eq!(seen, plan.runs.len(), "{count} shards");
    }
}

#[test]
fn shards_carry_about_equal_work() {
    // A grid whose period (4 widths per model) is a multiple of the shard count: taking every
    // other run would give one shard both wide models of each family.
    let suite = SUITE.replace(
        "d_model: [16], seq_len: [8, 16, 32]",
        "d_model: [16, 32, 64, 128], seq_len: [32]",
    );
    let plan = Plan::parse(&suite, Machine::cpu_only(2)).unwrap();
    let largest = plan
        .runs
        .iter()
        .map(analytic::total_flops)
        .fold(0.0, f64::max);
    for count in 2..=5 {
        let loads: Vec<f64> = (0..count)
            .map(|index| {
                let shard = Shard { index, count };
                let runs = shard.select(&plan.runs, analytic::total_flops);
                runs.iter().map(analytic::total_flops).sum()
            })
            .collect();
        let (lightest, heaviest) = (
            loads.iter().copied().fold(f64::INFINITY, f64::min),
            loads.iter().copied().fold(0.0, f64::max),
        );
        assert!(
            heaviest - lightest <= largest,
            "{count} shards: loads {loads:?}, largest run {largest}"
        );
    }
}

#[test]
fn merged_shards_hold_every_run_once_and_conflicts_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s.yaml"), SUITE).unwrap();
    for shard in ["0/2", "1/2"] {
        let out = mvt(&["run", "s.yaml", "--shard", shard], dir.path());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let results = dir.path().join("results");
    let (a, b) = (
        results.join("sharded.shard-0of2"),
        results.join("sharded.shard-1of2"),
    );
    // Shards take whole comparison points: both models of each point sit in one folder.
    assert_eq!(rows(&a).len() + rows(&b).len(), 6);
    for folder in [&a, &b] {
        let points: Vec<(i64, String)> = rows(folder)
            .iter()
            .map(|r| {
                (
                    r["seq_len"].as_i64().unwrap(),
                    r["model"].as_str().unwrap().into(),
                )
            })
            .collect();
        for (len, _) in &points {
            for model in ["m", "t"] {
                assert!(points.contains(&(*len, model.into())), "{points:?}");
            }
        }
    }

    // A third folder repeats shard 0, with one run recorded as a failure instead.
    let again = results.join("again");
    std::fs::create_dir(&again).unwrap();
    std::fs::copy(a.join("manifest.json"), again.join("manifest.json")).unwrap();
    let mut repeated = rows(&a);
    repeated[0]["status"] = "error".into();
    repeated[0]["message"] = "injected".into();
    let jsonl: String = repeated.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(again.join("rows.jsonl"), jsonl).unwrap();
    // Training curves travel with their runs: each run's once, none of runs not kept.
    let id = |r: &serde_json::Value| r["run_id"].as_str().unwrap().to_owned();
    let (first, second) = (id(&rows(&a)[0]), id(&rows(&b)[0]));
    let curve = |run: &str| format!("run_id,step,loss,lr,eval_accuracy\n{run},10,1.5,0.001,0.5\n");
    std::fs::write(a.join("curves.csv"), curve(&first)).unwrap();
    std::fs::write(again.join("curves.csv"), curve(&first)).unwrap();
    std::fs::write(
        b.join("curves.csv"),
        curve(&second) + "gone,10,1.5,0.001,0.5\n",
    )
    .unwrap();

    // Kept weights travel too (what `mvt mechanism` reads); a run not kept leaves its own.
    for (folder, run) in [(&a, first.as_str()), (&b, second.as_str()), (&b, "gone")] {
        std::fs::create_dir_all(folder.join("weights")).unwrap();
        for file in [format!("{run}.safetensors"), format!("{run}.spec.json")] {
            std::fs::write(folder.join("weights").join(file), run).unwrap();
        }
    }

    let out = mvt(
        &[
            "merge",
            "results/all",
            "results/again",
            "results/sharded.shard-0of2",
            "results/sharded.shard-1of2",
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("conflict:") && stderr.contains("kept ok"),
        "{stderr}"
    );

    let merged = rows(&results.join("all"));
    let curves = std::fs::read_to_string(results.join("all/curves.csv")).unwrap();
    assert_eq!(curves.lines().count(), 3, "{curves}");
    assert!(curves.contains(&first) && curves.contains(&second) && !curves.contains("gone"));
    let weights = results.join("all/weights");
    for run in [&first, &second] {
        let kept = std::fs::read_to_string(weights.join(format!("{run}.safetensors"))).unwrap();
        assert_eq!(&kept, run);
        assert!(weights.join(format!("{run}.spec.json")).is_file());
    }
    assert!(!weights.join("gone.safetensors").exists());
    assert_eq!(merged.len(), 6);
    assert!(
        merged.iter().all(|r| r["status"] == "ok"),
        "the successful result wins"
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("all/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["runs_planned"], 6);
    assert_eq!(manifest["merge"]["sources"].as_array().unwrap().len(), 3);
    assert_eq!(manifest["merge"]["conflicts"].as_array().unwrap().len(), 1);
    assert_eq!(manifest["merge"]["missing"], 0);
    assert!(results.join("all/crossover.csv").exists());

    // Folders of another suite do not merge.
    std::fs::write(
        dir.path().join("other.yaml"),
        SUITE.replace("name: sharded", "name: other"),
    )
    .unwrap();
    assert!(mvt(&["run", "other.yaml"], dir.path()).status.success());
    let out = mvt(
        &["merge", "results/bad", "results/all", "results/other"],
        dir.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
