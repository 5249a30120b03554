//! Training: a tiny model learns a tiny task in seconds, the same seed gives the same loss
//! curve, a run resumed from a checkpoint continues its curve to the last bit, `A_log` and `D`
//! do not decay, and step-mode evaluation agrees with parallel evaluation.

mod common;

use common::seeded;
use mamba_vs_transformer::models::lm::{LanguageModel, Mode};
use mamba_vs_transformer::models::{mamba, transformer, ModelConfig};
use mamba_vs_transformer::tasks::{induction, mqar, Task};
use mamba_vs_transformer::train::eval::{evaluate, EvalSet};
use mamba_vs_transformer::train::optimizer::{Adam, Optimizer};
use mamba_vs_transformer::train::schedule::Decay;
use mamba_vs_transformer::train::trainer::{train, ReachConfig, TrainConfig, Trained};
use tch::{nn, Device};

fn model(cfg: &ModelConfig, seed: i64) -> (nn::VarStore, LanguageModel) {
    let vs = nn::VarStore::new(Device::Cpu);
    let lm = seeded(seed, || LanguageModel::new(vs.root(), cfg));
    (vs, lm)
}

fn mamba_cfg(vocab: i64) -> ModelConfig {
    ModelConfig::Mamba(mamba::Config {
        vocab_size: vocab,
        d_state: 8,
        ..mamba::Config::new(32)
    })
}

fn transformer_cfg(vocab: i64) -> ModelConfig {
    ModelConfig::Transformer(transformer::Config {
        vocab_size: vocab,
        ..transformer::Config::new(32, 16)
    })
}

fn quick(steps: usize, lr: f64) -> TrainConfig {
    TrainConfig {
        steps,
        lr,
        batch_size: 32,
        optimizer: Default::default(),
        weight_decay: 0.0,
        warmup_steps: 10,
        decay: Default::default(),
        grad_clip: Some(1.0),
        eval_every: 50,
        eval_batches: 2,
        target_accuracy: Some(0.95),
        target_loss: None,
        stop_at_target: true,
        checkpoint_every_s: 0.0,
        reach: None,
        save_weights: false,
    }
}

fn run(
    cfg: &ModelConfig,
    task: &Task,
    seq_len: i64,
    train_cfg: &TrainConfig,
    seed: u64,
) -> Trained {
    let (vs, lm) = model(cfg, seed as i64);
    train(&lm, &vs, task, seq_len, train_cfg, seed, None, |p| {
        eprintln!("{p:?}")
    })
    .unwrap()
}

#[test]
fn tiny_models_learn_a_tiny_recall_task_in_seconds() {
    // Two pairs among 4 keys and 4 values: chance is about 1/4.
    let task = Task::Mqar(mqar::Config::new(10, 2));
    // Each at a rate it trains well at from HF's N(0, 0.02²) initialisation: the Transformer
    // stalls near 2/3 at 1e-2.
    for (cfg, lr) in [(mamba_cfg(10), 1e-2), (transformer_cfg(10), 1e-3)] {
        let trained = run(&cfg, &task, 8, &quick(400, lr), 0);
        let acc = trained.eval_accuracy.unwrap();
        assert!(
            acc >= 0.95,
            "{:?}: accuracy {acc} after {} steps",
            cfg.family(),
            trained.steps
        );
    }
}

#[test]
fn a_loss_target_trains_on_past_the_first_accurate_evaluation() {
    let task = Task::Mqar(mqar::Config::new(10, 2));
    let accurate = quick(600, 1e-2);
    let first = run(&mamba_cfg(10), &task, 8, &accurate, 0);
    let reached = first
        .steps_to_target
        .expect("the accuracy target is reached");
    assert_eq!(first.steps, reached, "without a loss target it stops there");
    let stop_loss = first.final_loss / 4.0;
    let on = run(
        &mamba_cfg(10),
        &task,
        8,
        &TrainConfig {
            target_loss: Some(stop_loss),
            ..accurate
        },
        0,
    );
    assert_eq!(on.steps_to_target, Some(reached), "the first accurate step");
    assert_eq!(
        on.curve[..first.curve.len()],
        first.curve[..],
        "the same run"
    );
    let last = on.curve.last().unwrap();
    assert!(on.steps > reached, "trained on after step {reached}");
    assert!(on.stopped_early, "and stopped at the loss target: {last:?}");
    assert!(last.loss <= stop_loss && last.eval_accuracy >= Some(0.95));
}

#[test]
fn reach_is_measured_at_the_steps_asked_once_the_task_is_learned() {
    let task = Task::Mqar(mqar::Config::new(10, 2));
    let reach = ReachConfig {
        at_steps: vec![50, 400],
        seq_len: vec![16, 32],
        batches: 2,
        from_accuracy: 0.9,
    };
    let cfg = TrainConfig {
        stop_at_target: false,
        reach: Some(reach),
        ..quick(400, 1e-2)
    };
    let trained = run(&mamba_cfg(10), &task, 8, &cfg, 0);
    assert_eq!(trained.steps, 400, "the whole budget, past the target");
    assert!(!trained.stopped_early);
    let reached = trained.steps_to_target.expect("the target is still marked");
    assert!(reached < 400, "learned at {reached}");
    for point in &trained.curve {
        let measured: Vec<i64> = point.reach.iter().map(|r| r.seq_len).collect();
        match point.step {
            // Not learned yet at step 50: nothing to extrapolate, so nothing measured.
            50 => assert!(measured.is_empty(), "{point:?}"),
            400 => {
                assert_eq!(measured, [16, 32], "{point:?}");
                for r in &point.reach {
                    // Two queries per sequence, 2 batches of 32 sequences.
                    assert_eq!(r.scored, 2 * 2 * 32, "{r:?}");
                    assert!(r.correct <= r.scored);
                }
            }
            _ => assert!(measured.is_empty(), "not asked at {}", point.step),
        }
    }
    let at_50 = &trained.curve[0];
    assert!(
        at_50.eval_accuracy < Some(0.9),
        "not learned at 50: {at_50:?}"
    );
}

#[test]
fn the_same_seed_gives_the_same_loss_curve() {
    let task = Task::InductionHeads(induction::Config { vocab_size: 8 });
    let cfg = TrainConfig {
        eval_every: 10,
        target_accuracy: None,
        ..quick(30, 3e-3)
    };
    let curve = |seed| run(&mamba_cfg(8), &task, 12, &cfg, seed).curve;
    let (a, b, c) = (curve(5), curve(5), curve(6));
    assert_eq!(a.len(), 3);
    assert_eq!(a, b, "same seed, same curve, to the last bit");
    assert_ne!(a, c, "another seed, another curve");
}

/// Every variable of `vs`, by name, as exact bits.
fn weights(vs: &nn::VarStore) -> Vec<(String, Vec<u32>)> {
    let mut named: Vec<(String, Vec<u32>)> = vs
        .variables()
        .into_iter()
        .map(|(name, t)| {
            let values = Vec::<f32>::try_from(t.flatten(0, -1)).unwrap();
            (name, values.iter().map(|v| v.to_bits()).collect())
        })
        .collect();
    named.sort();
    named
}

#[test]
fn a_resumed_run_continues_its_killed_runs_curve_to_the_last_bit() {
    let task = Task::InductionHeads(induction::Config { vocab_size: 8 });
    for (cfg, optimizer) in [
        (mamba_cfg(8), Optimizer::AdamW),
        (transformer_cfg(8), Optimizer::Adam),
    ] {
        let train_cfg = TrainConfig {
            eval_every: 10,
            target_accuracy: None,
            optimizer,
            weight_decay: 0.1,
            decay: Decay::Cosine,
            ..quick(40, 3e-3)
        };
        let (vs, lm) = model(&cfg, 5);
        let whole = train(&lm, &vs, &task, 12, &train_cfg, 5, None, |_| {}).unwrap();
        let whole_weights = weights(&vs);

        // The first run dies at step 30, after saving at 10 and 20 (every evaluation).
        let dir = tempfile::tempdir().unwrap();
        let (vs, lm) = model(&cfg, 5);
        let killed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            train(&lm, &vs, &task, 12, &train_cfg, 5, Some(dir.path()), |p| {
                assert!(p.step < 30, "killed at step 30");
            })
        }));
        assert!(killed.is_err());
        // Another initialisation: the checkpoint, not the seed, must supply the weights.
        let (vs, lm) = model(&cfg, 99);
        let mut seen = Vec::new();
        let resumed = train(&lm, &vs, &task, 12, &train_cfg, 5, Some(dir.path()), |p| {
            seen.push(p.step)
        })
        .unwrap();
        assert_eq!(resumed.resumed_from, Some(20), "{:?}", cfg.family());
        assert_eq!(
            seen,
            [30, 40],
            "only the steps after the save are trained again"
        );
        assert_eq!(resumed.curve, whole.curve, "{:?}", cfg.family());
        assert_eq!(weights(&vs), whole_weights, "{:?}", cfg.family());

        // A run whose training finished goes straight to evaluation.
        let (vs, lm) = model(&cfg, 7);
        let again = train(&lm, &vs, &task, 12, &train_cfg, 5, Some(dir.path()), |_| {
            panic!("trained again")
        })
        .unwrap();
        assert_eq!(again.curve, whole.curve);
        assert_eq!(weights(&vs), whole_weights);
    }
}

#[test]
fn ssm_parameters_norms_and_embeddings_do_not_decay() {
    let (vs, _) = model(&mamba_cfg(8), 0);
    let adam = Adam::new(&vs, Optimizer::AdamW, 0.1);
    let decaying = adam.decaying();
    assert!(!decaying.is_empty());
    for name in decaying {
        assert!(
            !name.ends_with("A_log")
                && !name.ends_with(".D")
                && !name.ends_with("bias")
                && !name.contains("norm")
                && !name.contains("embed"),
            "{name} decays"
        );
    }
    // And the rule is applied: a step with no gradient signal but decay leaves them alone.
    let a_log = vs
        .variables()
        .into_iter()
        .find(|(n, _)| n.ends_with("layers.0.mixer.A_log"))
        .unwrap()
        .1;
    let before = a_log.copy();
    let mut adam = Adam::new(&vs, Optimizer::AdamW, 0.5);
    let in_proj = vs
        .variables()
        .into_iter()
        .find(|(n, _)| n.ends_with("layers.0.mixer.in_proj.weight"))
        .unwrap()
        .1;
    let in_proj_before = in_proj.copy();
    // A loss whose gradient is zero for every variable.
    let loss = vs
        .trainable_variables()
        .iter()
        .map(|v| v.sum(tch::Kind::Float) * 0.0)
        .fold(tch::Tensor::from(0.0f32), |a, b| a + b);
    adam.step(&loss, 1e-1, None).unwrap();
    assert!(a_log.equal(&before), "A_log decayed");
    assert!(!in_proj.equal(&in_proj_before), "in_proj did not decay");
}

#[test]
fn step_and_chunked_evaluation_equal_parallel_evaluation() {
    let task = Task::Mqar(mqar::Config::new(10, 2));
    for cfg in [mamba_cfg(10), transformer_cfg(10)] {
        let (vs, lm) = model(&cfg, 3);
        let short = TrainConfig {
            target_accuracy: None,
            ..quick(60, 1e-2)
        };
        train(&lm, &vs, &task, 8, &short, 3, None, |_| {}).unwrap();
        // At the training length and, extrapolating, at three times it.
        for seq_len in [8, 24] {
            let set = EvalSet {
                task: &task,
                seq_len,
                batches: 2,
                batch_size: 16,
                seed: 9,
            };
            let acc = |mode| evaluate(&lm, &set, mode, Device::Cpu).unwrap();
            let (parallel, step) = (acc(Mode::Parallel), acc(Mode::Step));
            assert_eq!(parallel, step, "{:?} at L={seq_len}", cfg.family());
            assert_eq!(
                parallel,
                acc(Mode::Chunked),
                "{:?} at L={seq_len}",
                cfg.family()
            );
            assert!(parallel.scored == 2 * 16 * 2);
        }
    }
}
