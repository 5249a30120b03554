//! Model properties that hold for any weights: shapes, causality, parameter counts.

mod common;

use common::seeded;
use mamba_vs_transformer::models::{
    hybrid, mamba, mamba2, transformer, BuiltModel, Component, ModelConfig,
};
use tch::{Device, Kind, Tensor};

fn tiny_configs() -> Vec<ModelConfig> {
    let mut m = mamba::Config::new(16);
    m.d_state = 4;
    m.vocab_size = 32;
    let mut t = transformer::Config::new(16, 8);
    t.vocab_size = 32;
    let mut gqa = t.clone();
    gqa.n_kv_heads = Some(1);
    vec![
        ModelConfig::Mamba(m),
        ModelConfig::Transformer(t),
        ModelConfig::Transformer(gqa),
        ModelConfig::Mamba2(tiny_mamba2(1)),
        ModelConfig::Mamba2(tiny_mamba2(2)),
    ]
}

/// d 16, 4 heads of 8 (d_inner 32, so the core op alone has 2 heads over d_model), N 4, in
/// `groups` groups, chunks of 4 steps so that tests cross chunk edges.
fn tiny_mamba2(groups: i64) -> mamba2::Config {
    mamba2::Config {
        d_state: 4,
        vocab_size: 32,
        headdim: 8,
        ngroups: groups,
        chunk_size: 4,
        ..mamba2::Config::new(16)
    }
}

fn build(cfg: &ModelConfig, component: Component) -> BuiltModel {
    seeded(0, || {
        BuiltModel::new(cfg, component, Device::Cpu, Kind::Float)
    })
}

#[test]
fn outputs_have_the_expected_shapes() {
    for cfg in tiny_configs() {
        let block = build(&cfg, Component::Block);
        let hidden = block.random_inputs(2, 7, Kind::Float);
        assert_eq!(hidden[0].size(), [2, 7, 16]);
        assert_eq!(block.forward(&hidden).size(), [2, 7, 16], "{cfg:?}");

        let model = build(&cfg, Component::Model);
        let ids = model.random_inputs(2, 7, Kind::Float);
        assert_eq!(ids[0].kind(), Kind::Int64);
        assert_eq!(model.forward(&ids).size(), [2, 7, 32], "{cfg:?}");

        // The core op: (batch, channels, L) for the scan, (batch, heads, L, head_dim) for SDPA,
        // (batch, L, heads, headdim) for SSD.
        let core = build(&cfg, Component::Core);
        let inputs = core.random_inputs(2, 7, Kind::Float);
        let want: &[i64] = match cfg {
            ModelConfig::Mamba(_) => &[2, 16, 7],
            ModelConfig::Transformer(_) => &[2, 2, 7, 8],
            ModelConfig::Mamba2(_) => &[2, 7, 2, 8],
            ModelConfig::Hybrid(_) => unreachable!("a hybrid has no core op; tiny_hybrid tests it"),
        };
        assert_eq!(core.forward(&inputs).size(), want, "{cfg:?}");
    }
}

/// Perturbing position t must leave every output before t unchanged, and change position t.
#[test]
fn outputs_never_depend_on_future_tokens() {
    let seq_len = 12;
    for cfg in tiny_configs() {
        for component in Component::ALL {
            let model = build(&cfg, component);
            let inputs = model.random_inputs(1, seq_len, Kind::Float);
            let base = model.forward(&inputs);
            // The scan and attention keep time on dimension 2, the others on dimension 1.
            let time = match (&cfg, component) {
                (ModelConfig::Mamba2(_), _) => 1,
                (_, Component::Core) => 2,
                _ => 1,
            };
            for t in [0, 5, seq_len - 1] {
                let perturbed: Vec<Tensor> = inputs.iter().map(Tensor::copy).collect();
                match component {
                    Component::Core | Component::Mixer | Component::Block | Component::Layers => {
                        for input in &perturbed {
                            let _ = input.narrow(time, t, 1).g_add_scalar_(1.0);
                        }
                    }
                    Component::Model => {
                        let token = (inputs[0].int64_value(&[0, t]) + 1) % cfg.vocab_size();
                        let _ = perturbed[0].narrow(1, t, 1).fill_(token);
                    }
                }
                let out = model.forward(&perturbed);
                let (out, base) = (out.transpose(1, time), base.transpose(1, time));
                let before = (out.narrow(1, 0, t) - base.narrow(1, 0, t)).abs();
                let max_before = if t == 0 {
                    0.0
                } else {
                    before.max().double_value(&[])
                };
                assert_eq!(
                    max_before, 0.0,
                    "{cfg:?} {component:?}: t={t} leaked backwards"
                );
                let at_t = (out.narrow(1, t, 1) - base.narrow(1, t, 1)).abs().max();
                assert!(
                    at_t.double_value(&[]) > 0.0,
                    "{cfg:?} {component:?}: t={t} had no effect"
                );
            }
        }
    }
}

#[test]
fn parameter_counts_match_the_formulas() {
    for cfg in tiny_configs() {
        for component in Component::ALL {
            let built = build(&cfg, component);
            assert_eq!(
                built.param_count(),
                cfg.params(component),
                "{cfg:?} {component:?}"
            );
        }
    }
    // Hand-computed Mamba mixer at d_model 16, N 4, d_conv 4, expand 2 (d_inner 32, dt_rank 1):
    // in_proj 16·64 + conv 32·4+32 + x_proj 32·(1+8) + dt_proj 1·32+32 + A_log 32·4 + D 32
    // + out_proj 32·16 = 1024 + 160 + 288 + 64 + 128 + 32 + 512.
    let ModelConfig::Mamba(m) = &tiny_configs()[0] else {
        unreachable!()
    };
    assert_eq!(m.mixer_params(), 2208);
    // Llama block at d 16, 2 heads of 8, MLP 64: 2 norms 32 + attention 4·256 + MLP 3·16·64.
    let ModelConfig::Transformer(t) = &tiny_configs()[1] else {
        unreachable!()
    };
    assert_eq!(t.block_params(), 32 + 1024 + 3072);
    // Mamba-2 mixer at d 16, expand 2 (d_inner 32), headdim 8 (4 heads), N 4, 2 groups, d_conv
    // 4: in_proj 16·(32 + (32 + 2·2·4) + 4) + conv 48·4+48 + dt_bias, A_log, D 3·4 + gated
    // norm 32 + out_proj 32·16 = 1344 + 240 + 12 + 32 + 512.
    assert_eq!(tiny_mamba2(2).mixer_params(), 2140);
}

#[test]
fn reduced_precision_keeps_a_log_and_d_in_fp32() {
    let cfg = &tiny_configs()[0];
    let built = BuiltModel::new(cfg, Component::Block, Device::Cpu, Kind::BFloat16);
    for (name, var) in built.vars.variables() {
        let fp32 = name.ends_with("A_log") || name.ends_with(".D");
        let expected = if fp32 { Kind::Float } else { Kind::BFloat16 };
        assert_eq!(var.kind(), expected, "{name}");
    }
    let mamba2 = ModelConfig::Mamba2(tiny_mamba2(2));
    let built = BuiltModel::new(&mamba2, Component::Block, Device::Cpu, Kind::BFloat16);
    for (name, var) in built.vars.variables() {
        let fp32 = ["A_log", ".D", "dt_bias"].iter().any(|s| name.ends_with(s));
        let expected = if fp32 { Kind::Float } else { Kind::BFloat16 };
        assert_eq!(var.kind(), expected, "{name}");
    }
    let out = built.forward(&built.random_inputs(1, 5, Kind::BFloat16));
    assert_eq!(out.isfinite().all().int64_value(&[]), 1);
    let out = built.forward(&built.random_inputs(1, 5, Kind::BFloat16));
    // mamba_ssm's default `residual_in_fp32`: the stream between blocks stays fp32.
    assert_eq!(out.kind(), Kind::Float);
    assert_eq!(out.isfinite().all().int64_value(&[]), 1);

    let ModelConfig::Mamba(mamba) = cfg else {
        unreachable!()
    };
    let bf16_stream = ModelConfig::Mamba(mamba::Config {
        residual_in_fp32: false,
        ..mamba.clone()
    });
    let built = BuiltModel::new(&bf16_stream, Component::Block, Device::Cpu, Kind::BFloat16);
    let out = built.forward(&built.random_inputs(1, 5, Kind::BFloat16));
    assert_eq!(out.kind(), Kind::BFloat16);
}

#[test]
fn the_reference_scan_matches_a_hand_computed_recurrence() {
    use mamba_vs_transformer::scan::{reference, ScanInputs};
    // One channel, one state, Δ = 1 without softplus: h_t = e^{A} h_{t-1} + B_t u_t, y = C h + D u.
    let u = Tensor::from_slice(&[1.0f32, 2.0, 3.0]).view([1, 1, 3]);
    let delta = Tensor::ones([1, 1, 3], (Kind::Float, Device::Cpu));
    let a = Tensor::from_slice(&[-0.5f32]).view([1, 1]);
    let b = Tensor::from_slice(&[1.0f32, 0.5, 2.0]).view([1, 1, 3]);
    let c = Tensor::from_slice(&[2.0f32, 1.0, 1.0]).view([1, 1, 3]);
    let d = Tensor::from_slice(&[0.1f32]);
    let inputs = ScanInputs {
        u: &u,
        delta: &delta,
        a: &a,
        b: &b,
        c: &c,
        d: Some(&d),
        z: None,
        delta_bias: None,
        delta_softplus: false,
    };
    let (y, last) = reference::selective_scan(&inputs, None);
    let decay = (-0.5f64).exp();
    let h1 = 1.0;
    let h2 = decay * h1 + 0.5 * 2.0;
    let h3 = decay * h2 + 2.0 * 3.0;
    let expected = [2.0 * h1 + 0.1, h2 + 0.2, h3 + 0.3];
    for (t, want) in expected.iter().enumerate() {
        let got = y.double_value(&[0, 0, t as i64]);
        assert!((got - want).abs() < 1e-5, "y[{t}] = {got}, expected {want}");
    }
    assert!((last.double_value(&[0, 0, 0]) - h3).abs() < 1e-5);
}

/// Fresh language models predict close to uniformly, as mamba_ssm's and HF's initialisations
/// (embeddings from N(0, 0.02²)) make them: the first loss is about ln(vocab_size). Embeddings
/// from N(0, 1) under a tied head would start it several times higher.
#[test]
fn a_fresh_language_model_starts_near_the_uniform_loss() {
    let vocab = 128;
    let mut m = mamba::Config::new(64);
    m.vocab_size = vocab;
    let mut t = transformer::Config::new(64, 16);
    t.vocab_size = vocab;
    let m2 = mamba2::Config {
        vocab_size: vocab,
        headdim: 16,
        ..mamba2::Config::new(64)
    };
    for cfg in [
        ModelConfig::Mamba(m),
        ModelConfig::Transformer(t),
        ModelConfig::Mamba2(m2),
    ] {
        let model = build(&cfg, Component::Model);
        let ids = model.random_inputs(4, 32, Kind::Float);
        let logits = model.forward(&ids);
        // Targets independent of the inputs: a tied head favours the input token itself.
        let targets = seeded(1, || {
            Tensor::randint(vocab, [4 * 32], (Kind::Int64, Device::Cpu))
        });
        let loss = logits
            .reshape([-1, vocab])
            .cross_entropy_for_logits(&targets)
            .double_value(&[]);
        let uniform = (vocab as f64).ln();
        assert!(
            (loss - uniform).abs() < 0.25,
            "{cfg:?}: first loss {loss:.3}, uniform {uniform:.3}"
        );
    }
}

/// Every kind of layer at d 16 (N 4, Mamba-2 heads of 8 in one group, attention heads of 8,
/// SwiGLU 64 wide), the pattern repeated once and a half.
fn tiny_hybrid() -> hybrid::Config {
    hybrid::Config {
        n_layers: 6,
        vocab_size: 32,
        d_state: 4,
        headdim: 8,
        chunk_size: 4,
        head_dim: 8,
        ..hybrid::Config::new(16, hybrid::Pattern::parse("M2AF").expect("a pattern"))
    }
}

#[test]
fn hybrids_have_the_shapes_causality_and_parameters_of_their_layers() {
    let cfg = ModelConfig::Hybrid(tiny_hybrid());
    let layers = build(&cfg, Component::Layers);
    let hidden = layers.random_inputs(1, 9, Kind::Float);
    let base = layers.forward(&hidden);
    assert_eq!(base.size(), [1, 9, 16]);
    let perturbed = hidden[0].copy();
    let _ = perturbed.narrow(1, 5, 1).g_add_scalar_(1.0);
    let out = layers.forward(&[perturbed]);
    let before = (out.narrow(1, 0, 5) - base.narrow(1, 0, 5)).abs().max();
    assert_eq!(before.double_value(&[]), 0.0, "a hybrid leaked backwards");
    let model = build(&cfg, Component::Model);
    assert_eq!(
        model
            .forward(&model.random_inputs(2, 7, Kind::Float))
            .size(),
        [2, 7, 32]
    );
    for (built, component) in [(&layers, Component::Layers), (&model, Component::Model)] {
        assert_eq!(built.param_count(), cfg.params(component), "{component:?}");
    }
    // By hand, each layer's norm (16) and what it wraps: M the Mamba mixer above (2208); 2 a
    // Mamba-2 mixer in one group, in_proj 16·(32 + 32 + 2·4 + 4) + conv 40·4+40 + 3·4 + norm
    // 32 + out_proj 512 = 1972; A 4·16·16 = 1024; F 3·16·64 = 3072. M2AFM2:
    let (m, two, a, f) = (16 + 2208, 16 + 1972, 16 + 1024, 16 + 3072);
    assert_eq!(cfg.params(Component::Layers), 2 * (m + two) + a + f);
    // Tied embedding 32·16 and the final norm.
    assert_eq!(
        cfg.params(Component::Model),
        32 * 16 + 2 * (m + two) + a + f + 16
    );
}
