//! Step and chunked modes equal parallel mode: token by token, prefill then step, and chunk by
//! chunk give the logits of one parallel forward, within mamba_ssm's fp32 tolerance (rtol 6e-4,
//! atol 2e-3).

mod common;

use common::seeded;
use mamba_vs_transformer::models::hybrid::{self, HybridLm, LayerKind, Pattern};
use mamba_vs_transformer::models::lm::chunk_by_chunk;
use mamba_vs_transformer::models::mamba::{self, MambaLm};
use mamba_vs_transformer::models::mamba2::{self, Mamba2Lm};
use mamba_vs_transformer::models::transformer::{self, TransformerLm};
use mamba_vs_transformer::models::Decoder;
use mamba_vs_transformer::scan::ScanImpl;
use mamba_vs_transformer::tolerance::Tolerance;
use tch::{nn, nn::Module, Device, Kind, Tensor};

const VOCAB: i64 = 40;
const SEQ_LEN: i64 = 11;

fn ids() -> Tensor {
    seeded(1, || {
        Tensor::randint(VOCAB, [2, SEQ_LEN], (Kind::Int64, Device::Cpu))
    })
}

/// Prefills `prompt` tokens, then steps through the rest; checks every position's logits.
fn check<M: Decoder + Module>(model: &M, prompt: i64, what: &str) {
    let ids = ids();
    let parallel = tch::no_grad(|| model.forward(&ids));
    tch::no_grad(|| {
        let (prefill, mut state) = model.prefill(&ids.narrow(1, 0, prompt));
        Tolerance::FP32.assert_close(
            &format!("{what}: prefill"),
            &prefill,
            &parallel.narrow(1, 0, prompt),
        );
        for t in prompt..SEQ_LEN {
            let logits = model.step(&ids.select(1, t), &mut state);
            Tolerance::FP32.assert_close(
                &format!("{what}: step {t}"),
                &logits,
                &parallel.select(1, t),
            );
        }
    });
}

fn mamba_lm(scan: ScanImpl) -> (nn::VarStore, MambaLm) {
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = mamba::Config {
        vocab_size: VOCAB,
        d_state: 8,
        scan,
        ..mamba::Config::new(24)
    };
    let lm = seeded(0, || MambaLm::new(vs.root(), &cfg));
    (vs, lm)
}

fn transformer_lm(n_kv_heads: Option<i64>) -> (nn::VarStore, TransformerLm) {
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = transformer::Config {
        vocab_size: VOCAB,
        n_kv_heads,
        ..transformer::Config::new(32, 8)
    };
    let lm = seeded(0, || TransformerLm::new(vs.root(), &cfg));
    (vs, lm)
}

/// Mamba-2 at d 24 (d_inner 48: 6 heads of 8), N 8, in `groups` groups, SSD chunks of
/// `chunk` steps.
fn mamba2_lm(groups: i64, chunk: i64) -> (nn::VarStore, Mamba2Lm) {
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = mamba2::Config {
        vocab_size: VOCAB,
        d_state: 8,
        headdim: 8,
        ngroups: groups,
        chunk_size: chunk,
        ..mamba2::Config::new(24)
    };
    let lm = seeded(0, || Mamba2Lm::new(vs.root(), &cfg));
    (vs, lm)
}

#[test]
fn mamba2_steps_match_parallel_mode() {
    for (groups, chunk) in [(1, 256), (3, 4), (2, 1)] {
        let (_vs, lm) = mamba2_lm(groups, chunk);
        for prompt in [1, 2, 6] {
            check(
                &lm,
                prompt,
                &format!("mamba2 groups {groups} chunk {chunk} prompt {prompt}"),
            );
        }
    }
}

#[test]
fn mamba2_state_size_does_not_grow_with_context() {
    let (_vs, lm) = mamba2_lm(2, 4);
    let ids = ids();
    let (_, short) = tch::no_grad(|| lm.prefill(&ids.narrow(1, 0, 2)));
    let (_, long) = tch::no_grad(|| lm.prefill(&ids));
    for (a, b) in short.iter().zip(&long) {
        assert_eq!((a.conv.size(), a.ssm.size()), (b.conv.size(), b.ssm.size()));
        // (batch, conv_dim = 48 + 2·2·8, d_conv) and (batch, heads, headdim, N), fp32.
        assert_eq!(a.conv.size(), [2, 80, 4]);
        assert_eq!(a.ssm.size(), [2, 6, 8, 8]);
        assert_eq!(a.ssm.kind(), Kind::Float);
    }
}

#[test]
fn mamba_steps_match_parallel_mode() {
    for scan in [ScanImpl::Reference, ScanImpl::CpuFused, ScanImpl::Chunked] {
        let (_vs, lm) = mamba_lm(scan);
        // A one-token prompt is token by token; a prompt shorter than d_conv pads the window.
        for prompt in [1, 2, 6] {
            check(
                &lm,
                prompt,
                &format!("mamba {} prompt {prompt}", scan.name()),
            );
        }
    }
}

#[test]
fn transformer_steps_match_parallel_mode() {
    for kv in [None, Some(2), Some(1)] {
        let (_vs, lm) = transformer_lm(kv);
        for prompt in [1, 5] {
            check(
                &lm,
                prompt,
                &format!("transformer kv {kv:?} prompt {prompt}"),
            );
        }
    }
}

#[test]
fn mamba_state_size_does_not_grow_with_context() {
    let (_vs, lm) = mamba_lm(ScanImpl::Auto);
    let ids = ids();
    let (_, mut short) = tch::no_grad(|| lm.prefill(&ids.narrow(1, 0, 2)));
    let (_, long) = tch::no_grad(|| lm.prefill(&ids));
    for (a, b) in short.iter().zip(&long) {
        assert_eq!((a.conv.size(), a.ssm.size()), (b.conv.size(), b.ssm.size()));
        assert_eq!(a.ssm.kind(), Kind::Float);
    }
    let before: Vec<_> = short.iter().map(|s| s.ssm.size()).collect();
    let _ = tch::no_grad(|| lm.step(&ids.select(1, 2), &mut short));
    assert_eq!(
        before,
        short.iter().map(|s| s.ssm.size()).collect::<Vec<_>>()
    );
}

/// Chunks of `chunk` tokens, each in parallel from the state the previous one left, give the
/// logits of one parallel pass.
fn check_chunked<M: Decoder + Module>(model: &M, what: &str) {
    let ids = ids();
    let parallel = tch::no_grad(|| model.forward(&ids));
    // Chunks shorter than, equal to and longer than the convolution window (4).
    for chunk in [1, 3, 4, 5] {
        let chunked = tch::no_grad(|| chunk_by_chunk(model, &ids, chunk));
        Tolerance::FP32.assert_close(&format!("{what}: chunks of {chunk}"), &chunked, &parallel);
    }
}

#[test]
fn chunked_mode_matches_parallel_mode() {
    for scan in [ScanImpl::Reference, ScanImpl::CpuFused, ScanImpl::Chunked] {
        let (_vs, lm) = mamba_lm(scan);
        check_chunked(&lm, &format!("mamba {}", scan.name()));
    }
    for kv in [None, Some(2)] {
        let (_vs, lm) = transformer_lm(kv);
        check_chunked(&lm, &format!("transformer kv {kv:?}"));
    }
    for (groups, chunk) in [(1, 256), (3, 4)] {
        let (_vs, lm) = mamba2_lm(groups, chunk);
        check_chunked(&lm, &format!("mamba2 groups {groups} chunk {chunk}"));
    }
}

/// Every kind of layer, the pattern cut short on its second repetition (M 2 A F M 2), so that
/// each layer carries its own state: an SSM state of either kind, a KV cache, or nothing.
fn hybrid_lm() -> (nn::VarStore, HybridLm) {
    let vs = nn::VarStore::new(Device::Cpu);
    let pattern = Pattern::parse("M2AF").expect("a pattern");
    let cfg = hybrid::Config {
        n_layers: 6,
        vocab_size: VOCAB,
        d_state: 4,
        headdim: 8,
        ngroups: 2,
        chunk_size: 4,
        head_dim: 8,
        n_kv_heads: Some(2),
        ..hybrid::Config::new(16, pattern)
    };
    let lm = seeded(0, || HybridLm::new(vs.root(), &cfg));
    (vs, lm)
}

#[test]
fn hybrid_steps_and_chunks_match_parallel_mode() {
    let (_vs, lm) = hybrid_lm();
    for prompt in [1, 4] {
        check(&lm, prompt, &format!("hybrid, prompt {prompt}"));
    }
    check_chunked(&lm, "hybrid");
}

/// In a hybrid only the attention layers' caches grow with the context.
#[test]
fn a_hybrids_state_grows_only_in_its_attention_layers() {
    let (_vs, lm) = hybrid_lm();
    let sizes = |tokens: i64| -> Vec<i64> {
        let (_, states) = tch::no_grad(|| lm.prefill(&ids().narrow(1, 0, tokens)));
        states
            .iter()
            .map(|state| match state {
                hybrid::LayerState::Mamba(s) => (s.conv.numel() + s.ssm.numel()) as i64,
                hybrid::LayerState::Mamba2(s) => (s.conv.numel() + s.ssm.numel()) as i64,
                hybrid::LayerState::Attention(cache) => cache.len(),
                hybrid::LayerState::Mlp => 0,
            })
            .collect()
    };
    let (short, long) = (sizes(3), sizes(9));
    let kinds: Vec<LayerKind> = lm.layers().iter().map(|layer| layer.kind()).collect();
    for ((kind, short), long) in kinds.iter().zip(&short).zip(&long) {
        match kind {
            LayerKind::Attention => assert_eq!((*short, *long), (3, 9), "cached tokens"),
            _ => assert_eq!(short, long, "{kind:?} grew with the context"),
        }
    }
    assert_eq!(kinds[2], LayerKind::Attention);
}
