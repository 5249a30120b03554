//! The mechanism probe (`train::mechanism`): Δ and the half-lives it implies, checked on a
//! Mamba whose Δ is set by hand, so that every number has a value worked out on paper.

mod common;

use common::seeded;
use mamba_vs_transformer::models::lm::LanguageModel;
use mamba_vs_transformer::models::{mamba, ModelConfig};
use mamba_vs_transformer::tasks::{induction, Task};
use mamba_vs_transformer::train::mechanism::{probe, FAR_GAP};
use tch::{nn, Device};

const VOCAB: i64 = 16;

fn tiny_mamba() -> (nn::VarStore, LanguageModel) {
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = ModelConfig::Mamba(mamba::Config {
        vocab_size: VOCAB,
        d_state: 4,
        ..mamba::Config::new(16)
    });
    let lm = seeded(0, || LanguageModel::new(vs.root(), &cfg));
    (vs, lm)
}

/// softplus⁻¹(x) = x + ln(1 − e^−x).
fn inverse_softplus(x: f64) -> f64 {
    x + (-(-x).exp_m1()).ln()
}

#[test]
fn a_constant_delta_gives_the_half_life_worked_out_by_hand() {
    let (vs, lm) = tiny_mamba();
    // Δ = 1e-3 everywhere: dt_proj's weight zero, its bias softplus⁻¹(1e-3). A = −(1..4), so
    // each channel's slowest state decays at Δ·1 per token: half-life ln 2 / 1e-3 ≈ 693
    // tokens, and after 2^20 tokens exp(−1048.576) = 0.
    let delta = 1e-3;
    tch::no_grad(|| {
        for (name, mut var) in vs.variables() {
            if name.ends_with("dt_proj.weight") {
                let _ = var.zero_();
            } else if name.ends_with("dt_proj.bias") {
                let _ = var.fill_(inverse_softplus(delta));
            }
        }
    });
    let task = Task::InductionHeads(induction::Config { vocab_size: VOCAB });
    let layers = probe(&lm, &task, 64, 0, Device::Cpu).unwrap();
    assert_eq!(layers.len(), 2);
    let close = |got: f64, want: f64| (got - want).abs() <= 1e-4 * want.abs();
    for layer in &layers {
        for p in [layer.delta_noise, layer.delta_trigger, layer.delta_answer] {
            assert!(close(p.p10, delta) && close(p.p90, delta), "{layer:?}");
        }
        let half_life = std::f64::consts::LN_2 / delta;
        assert!(close(layer.half_life.p50, half_life), "{layer:?}");
        assert!(close(layer.writer_half_life, half_life), "{layer:?}");
        assert!(layer.writer_retention_far < 1e-300, "{layer:?}");
    }
    // A slower channel outlives the rest: with A_log of channel 0 set so that its slowest
    // |A| is 1e-3, its half-life is 1,000 times longer, and it shows at the top percentile
    // only (one channel of 32).
    tch::no_grad(|| {
        for (name, var) in vs.variables() {
            if name.ends_with("layers.0.mixer.A_log") {
                let _ = var.get(0).fill_((1e-3f64).ln());
            }
        }
    });
    let layers = probe(&lm, &task, 64, 0, Device::Cpu).unwrap();
    let first = &layers[0];
    assert!(
        close(first.half_life.p50, std::f64::consts::LN_2 / delta),
        "{first:?}"
    );
    assert!(
        first.half_life.p90 < 2.0 * std::f64::consts::LN_2 / delta,
        "{first:?}"
    );
    assert!(close(
        layers[1].half_life.p50,
        std::f64::consts::LN_2 / delta
    ));
    let retention = (-delta * 1e-3 * FAR_GAP).exp();
    assert!(
        retention > 0.3,
        "the slow channel keeps {retention} after 2^20"
    );
}

#[test]
fn delta_on_noise_is_told_apart_from_delta_at_the_answer() {
    // An untrained model's Δ varies with the token; the probe reads it at the trigger, the
    // answer and the noise from the same sequences, and the writers are the channels whose Δ
    // at the answer stands out: their median half-life is within the spread of all channels.
    let (_vs, lm) = tiny_mamba();
    let task = Task::InductionHeads(induction::Config { vocab_size: VOCAB });
    let layers = probe(&lm, &task, 256, 3, Device::Cpu).unwrap();
    for layer in &layers {
        let d = layer.delta_noise;
        assert!(0.0 < d.p10 && d.p10 <= d.p50 && d.p50 <= d.p90, "{layer:?}");
        assert!(layer.delta_answer.p50 > 0.0 && layer.delta_trigger.p50 > 0.0);
        let h = layer.half_life;
        assert!(h.p10 <= h.p50 && h.p50 <= h.p90, "{layer:?}");
        assert!(layer.writer_half_life.is_finite() && layer.writer_half_life > 0.0);
        assert!((0.0..=1.0).contains(&layer.writer_retention_far));
    }
    let not_induction = Task::Mqar(mamba_vs_transformer::tasks::mqar::Config::new(64, 4));
    let error = probe(&lm, &not_induction, 64, 0, Device::Cpu).unwrap_err();
    assert!(error.to_string().contains("induction heads"), "{error}");
}
