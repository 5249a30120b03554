//! Grid expansion: one run per grid point and model, each with a stable, unique id.

use mamba_vs_transformer::models::ModelConfig;
use mamba_vs_transformer::scan::ScanImpl;
use mamba_vs_transformer::suite::{Machine, Plan};
use std::collections::HashSet;

const SUITE: &str = "\
name: g
device: cpu
seed: 7
models:
  m: { family: mamba, d_state: 4 }
  t: { family: transformer, head_dim: 8, n_kv_heads: 2 }
experiments:
  - name: blocks
    kind: speed
    pass: forward
    component: block
    models: [m, t]
    grid: { d_model: [16, 32], seq_len: [8, 16, 32], batch: [1, 2] }
  - name: models
    kind: speed
    pass: forward
    component: model
    models: [t]
    grid: { d_model: [16], seq_len: [8], n_layers: [1, 3] }
";

fn plan(text: &str) -> Plan {
    Plan::parse(text, Machine::cpu_only(2)).expect("valid suite")
}

#[test]
fn expands_the_full_cartesian_product() {
    let runs = plan(SUITE).runs;
    assert_eq!(runs.len(), 2 * 2 * 3 * 2 + 2);
    let first = &runs[0];
    assert_eq!(
        (
            first.model.as_str(),
            first.config.d_model(),
            first.batch,
            first.seq_len
        ),
        ("m", 16, 1, 8)
    );
    let second = &runs[1];
    assert_eq!(
        (
            second.model.as_str(),
            second.config.d_model(),
            second.seq_len
        ),
        ("t", 16, 8),
        "the models take turns at each grid point"
    );
    assert_eq!(runs[2].seq_len, 16, "sequence length varies fastest");
    assert_eq!(runs[2].model, "m");
    assert_eq!(
        runs.iter()
            .filter(|r| r.experiment == "models")
            .map(|r| r.config.n_layers())
            .collect::<Vec<_>>(),
        [1, 3]
    );
    assert!(runs
        .iter()
        .filter(|r| r.experiment == "blocks")
        .all(|r| r.config.n_layers() == 1));
}

#[test]
fn model_options_reach_the_configs() {
    for run in plan(SUITE).runs {
        match &run.config {
            ModelConfig::Mamba(cfg) => assert_eq!((cfg.d_state, cfg.d_conv, cfg.expand), (4, 4, 2)),
            ModelConfig::Transformer(cfg) => assert_eq!((cfg.head_dim, cfg.n_kv_heads()), (8, 2)),
            ModelConfig::Mamba2(_) => unreachable!("the suite has no Mamba-2 model"),
            ModelConfig::Hybrid(_) => unreachable!("the suite has no hybrid model"),
        }
        assert_eq!((run.seed, run.device.to_string()), (7, "cpu".to_owned()));
    }
}

#[test]
fn every_model_option_reaches_the_config() {
    let text = SUITE
        .replace(
            "m: { family: mamba, d_state: 4 }",
            "m: { family: mamba, vocab_size: 300, norm_eps: 1.0e-6, d_state: 4, d_conv: 3, expand: 3, dt_rank: 5, scan: reference }",
        )
        .replace(
            "t: { family: transformer, head_dim: 8, n_kv_heads: 2 }",
            "t: { family: transformer, vocab_size: 300, norm_eps: 1.0e-6, head_dim: 8, n_kv_heads: 2, mlp_ratio: 2.5, intermediate_size: 40, rope_theta: 500000.0 }",
        );
    for run in plan(&text).runs {
        match &run.config {
            ModelConfig::Mamba(c) => assert_eq!(
                (
                    c.vocab_size,
                    c.norm_eps,
                    c.d_state,
                    c.d_conv,
                    c.expand,
                    c.dt_rank,
                    c.scan
                ),
                (300, 1e-6, 4, 3, 3, Some(5), ScanImpl::Reference)
            ),
            ModelConfig::Transformer(c) => assert_eq!(
                (
                    c.vocab_size,
                    c.norm_eps,
                    c.head_dim,
                    c.n_kv_heads,
                    c.mlp_ratio,
                    c.intermediate_size,
                    c.rope_theta
                ),
                (300, 1e-6, 8, Some(2), 2.5, Some(40), 500_000.0)
            ),
            ModelConfig::Mamba2(_) => unreachable!("the suite has no Mamba-2 model"),
            ModelConfig::Hybrid(_) => unreachable!("the suite has no hybrid model"),
        }
    }
}

#[test]
fn every_mamba2_option_reaches_the_config() {
    let text = SUITE.replace(
        "m: { family: mamba, d_state: 4 }",
        "m: { family: mamba2, vocab_size: 300, norm_eps: 1.0e-6, d_state: 4, d_conv: 3, expand: 4, headdim: 8, ngroups: 2, chunk_size: 16, dt_limit: [0.001, 0.5] }",
    );
    let mut seen = 0;
    for run in plan(&text).runs {
        if let ModelConfig::Mamba2(c) = &run.config {
            seen += 1;
            assert_eq!(
                (
                    c.vocab_size,
                    c.norm_eps,
                    c.d_state,
                    c.d_conv,
                    c.expand,
                    c.headdim,
                    c.ngroups,
                    c.chunk_size,
                    c.dt_limit
                ),
                (300, 1e-6, 4, 3, 4, 8, 2, 16, Some([0.001, 0.5]))
            );
        }
    }
    assert_eq!(seen, 2 * 3 * 2, "every block grid point");
}

#[test]
fn a_mamba2_width_that_does_not_split_into_heads_is_refused_by_name() {
    let text = SUITE.replace(
        "m: { family: mamba, d_state: 4 }",
        "m: { family: mamba2, d_state: 4, headdim: 24 }",
    );
    let Err(err) = Plan::parse(&text, Machine::cpu_only(2)) else {
        panic!("d_inner 32 does not split into heads of 24");
    };
    let err = format!("{err:?}");
    assert!(
        err.contains("experiments[0].grid.d_model[0]") && err.contains("headdim 24"),
        "{err}"
    );
    let options = SUITE.replace(
        "m: { family: mamba, d_state: 4 }",
        "m: { family: mamba, d_state: 4, headdim: 8 }",
    );
    let Err(err) = Plan::parse(&options, Machine::cpu_only(2)) else {
        panic!("headdim is not a Mamba-1 option");
    };
    let err = format!("{err:?}");
    assert!(
        err.contains("models.m.headdim") && err.contains("`mamba2`"),
        "{err}"
    );
}

#[test]
fn run_ids_are_unique_stable_and_readable() {
    let runs = plan(SUITE).runs;
    let ids: HashSet<_> = runs.iter().map(|r| r.run_id.clone()).collect();
    assert_eq!(ids.len(), runs.len());
    let again: Vec<_> = plan(SUITE).runs.into_iter().map(|r| r.run_id).collect();
    assert_eq!(
        again,
        runs.iter().map(|r| r.run_id.clone()).collect::<Vec<_>>()
    );
    assert!(
        runs[0].run_id.starts_with("blocks.m.d16.L8.b1.n1."),
        "{}",
        runs[0].run_id
    );
}

#[test]
fn changing_any_option_changes_the_id() {
    let base = plan(SUITE).runs[0].run_id.clone();
    let changed = plan(&SUITE.replace("d_state: 4", "d_state: 8")).runs[0]
        .run_id
        .clone();
    let reseeded = plan(&SUITE.replace("seed: 7", "seed: 8")).runs[0]
        .run_id
        .clone();
    assert_ne!(base, changed);
    assert_ne!(base, reseeded);
}

// --- Matched sizes ---------------------------------------------------------------------------

use mamba_vs_transformer::models::matching::{match_depth, relative_error, TOLERANCE};
use mamba_vs_transformer::models::{mamba, transformer, Component};

#[test]
fn at_llama_proportions_two_mamba_layers_match_one_transformer_layer() {
    // The Mamba paper's pairing, at GPT-3 Small's width and depth with Llama's 8/3 SwiGLU.
    let llama = ModelConfig::Transformer(transformer::Config {
        n_layers: 12,
        vocab_size: 50_280,
        intermediate_size: Some(2048),
        ..transformer::Config::new(768, 64)
    });
    let target = llama.params(Component::Model);
    let matched = match_depth(
        &ModelConfig::Mamba(mamba::Config {
            vocab_size: 50_280,
            ..mamba::Config::new(768)
        }),
        Component::Model,
        target,
        TOLERANCE,
    )
    .expect("a depth within 5%");
    let error = relative_error(matched.params(Component::Model), target);
    assert!(error.abs() <= TOLERANCE, "{error}");
    assert!(
        (22..=25).contains(&matched.n_layers()),
        "{} Mamba layers for 12 Llama layers",
        matched.n_layers()
    );
    assert_eq!(matched.d_model(), 768, "width is kept");
}

#[test]
fn one_llama_layer_matches_two_mamba_blocks_without_embedding_or_head() {
    // Attention 4d² + SwiGLU at 8/3·d 8d² = 12d², against a Mamba block's 6d² plus x_proj, Δ
    // and A, which grow with d: two blocks are the larger, by less as d grows.
    let llama = |d_model| {
        ModelConfig::Transformer(transformer::Config {
            n_layers: 1,
            mlp_ratio: 8.0 / 3.0,
            ..transformer::Config::new(d_model, 64)
        })
    };
    let mut excess = Vec::new();
    for d_model in [256, 512, 1024, 2048, 4096] {
        let target = llama(d_model).params(Component::Layers);
        let mamba = ModelConfig::Mamba(mamba::Config::new(d_model));
        let matched = match_depth(&mamba, Component::Layers, target, 0.12).expect("within 12%");
        assert_eq!(matched.n_layers(), 2, "d_model {d_model}");
        excess.push(relative_error(matched.params(Component::Layers), target));
    }
    assert!(
        excess.iter().all(|e| *e > 0.0),
        "Mamba is the larger: {excess:?}"
    );
    assert!(
        excess.windows(2).all(|w| w[1] < w[0]),
        "less so as d grows: {excess:?}"
    );
    assert!(excess[4] <= TOLERANCE, "within 5% at d 4096: {excess:?}");
    // At d 64 two blocks are about 30% more and one 35% less: no depth is within 12%.
    let target = llama(64).params(Component::Layers);
    let narrow = ModelConfig::Mamba(mamba::Config::new(64));
    assert!(match_depth(&narrow, Component::Layers, target, 0.12).is_err());
    // With a 4·d MLP one Llama layer is 16d²: 2 blocks are too few, 3 too many.
    let wide_mlp = ModelConfig::Transformer(transformer::Config {
        n_layers: 1,
        ..transformer::Config::new(1024, 64)
    });
    let target = wide_mlp.params(Component::Layers);
    let mamba = ModelConfig::Mamba(mamba::Config::new(1024));
    assert!(match_depth(&mamba, Component::Layers, target, 0.12).is_err());
}

#[test]
fn with_llamas_rounding_two_mamba_blocks_match_one_llama_layer_within_five_percent() {
    let llama = |d_model| transformer::Config {
        n_layers: 1,
        mlp_ratio: 2.6666667,
        mlp_multiple_of: Some(256),
        ..transformer::Config::new(d_model, 64)
    };
    assert_eq!(
        llama(4096).intermediate_size(),
        11008,
        "Llama 7B's MLP width"
    );
    assert_eq!(llama(256).intermediate_size(), 768);
    for d_model in [256, 512, 1024, 2048, 4096] {
        let target = ModelConfig::Transformer(llama(d_model)).params(Component::Layers);
        let mamba = ModelConfig::Mamba(mamba::Config::new(d_model));
        let matched = match_depth(&mamba, Component::Layers, target, TOLERANCE).expect("within 5%");
        assert_eq!(matched.n_layers(), 2, "d_model {d_model}");
    }
}

#[test]
fn the_matched_depth_is_the_nearest_one() {
    let mamba = ModelConfig::Mamba(mamba::Config::new(64));
    for target in [1_000_000, 2_000_000, 5_000_000] {
        let matched = match_depth(&mamba, Component::Model, target, TOLERANCE).unwrap();
        let n = matched.n_layers();
        let miss = |layers: i64| {
            let mut cfg = mamba::Config::new(64);
            cfg.n_layers = layers;
            (ModelConfig::Mamba(cfg).params(Component::Model) - target).abs()
        };
        assert!(miss(n) <= miss(n + 1) && (n == 1 || miss(n) <= miss(n - 1)));
    }
}

#[test]
fn every_hybrid_option_reaches_the_config() {
    let text = "\
name: g
device: cpu
models:
  h: { family: hybrid, pattern: samba, d_state: 4, d_conv: 3, expand: 3, dt_rank: 5, headdim: 8, ngroups: 2, head_dim: 8, n_kv_heads: 2, intermediate_size: 40 }
experiments:
  - name: models
    kind: speed
    pass: forward
    component: model
    models: [h]
    grid: { d_model: [16], seq_len: [8], n_layers: [4, 8] }
";
    let runs = plan(text).runs;
    assert_eq!(runs.len(), 2);
    for run in &runs {
        let ModelConfig::Hybrid(c) = &run.config else {
            panic!("a hybrid model plans hybrid runs");
        };
        assert_eq!(
            (
                c.pattern.to_string(),
                c.d_state,
                c.d_conv,
                c.expand,
                c.dt_rank,
                c.headdim,
                c.ngroups,
                c.head_dim,
                c.n_kv_heads,
                c.intermediate_size
            ),
            (
                "MFAF".to_owned(),
                4,
                3,
                3,
                Some(5),
                8,
                2,
                8,
                Some(2),
                Some(40)
            )
        );
    }
    assert_eq!(
        runs.iter().map(|r| r.config.n_layers()).collect::<Vec<_>>(),
        [4, 8]
    );
}
