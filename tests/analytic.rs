//! The analytic cost model against values worked out by hand.

use mamba_vs_transformer::measure::analytic::costs;
use mamba_vs_transformer::spec::RunSpec;
use mamba_vs_transformer::suite::{Machine, Plan};

/// The single run of a one-experiment suite.
fn run(model: &str, pass: &str, component: &str, grid: &str, extra: &str) -> RunSpec {
    let text = format!(
        "\
name: a
device: cpu
models:
  m: {{ family: mamba, d_state: 2, d_conv: 4, expand: 2, dt_rank: 1, vocab_size: 10 }}
  t: {{ family: transformer, head_dim: 8, mlp_ratio: 2, vocab_size: 10 }}
  s: {{ family: mamba2, d_state: 2, d_conv: 4, expand: 2, headdim: 4, chunk_size: 2, vocab_size: 10 }}
  h2: {{ family: hybrid, pattern: '2', d_state: 2, d_conv: 4, expand: 2, headdim: 4, chunk_size: 2, vocab_size: 10 }}
  haf: {{ family: hybrid, pattern: AF, head_dim: 8, mlp_ratio: 2, vocab_size: 10 }}
  h2af: {{ family: hybrid, pattern: 2AF, d_state: 2, headdim: 4, chunk_size: 2, head_dim: 8, mlp_ratio: 2, vocab_size: 10 }}
experiments:
  - {{ name: e, kind: speed, pass: {pass}, component: {component}, models: [{model}], grid: {grid}{extra} }}
"
    );
    let mut runs = Plan::parse(&text, Machine::cpu_only(2))
        .expect("valid")
        .runs;
    assert_eq!(runs.len(), 1);
    runs.remove(0)
}

#[test]
fn mamba_mixer_forward_flops() {
    // B 1, L 2, d 4, E 8, N 2, R 1, K 4 (2 FLOPs per multiply-add):
    // in_proj 2·2·4·16 = 256; conv 2·2·8·4 + SiLU 3·2·8 = 176; x_proj 2·2·8·5 = 160;
    // dt_proj 2·2·1·8 = 32; scan 2·8·(7·2 + 9) = 368; out_proj 2·2·8·4 = 128.
    let spec = run(
        "m",
        "forward",
        "mixer",
        "{ d_model: [4], seq_len: [2] }",
        "",
    );
    assert_eq!(costs(&spec).flops, 1120.0);
}

#[test]
fn the_scan_alone_and_its_bytes() {
    // Core op over d 4 channels, N 2, B 1, L 2: 2·4·(7·2 + 9) = 184 FLOPs. Bytes in f32:
    // u, Δ, z, y: 4·2·4 = 32 elements; B, C: 2·2·2 = 8; A, D, bias: 4·(2 + 2) = 16 → 56·4.
    let spec = run("m", "forward", "core", "{ d_model: [4], seq_len: [2] }", "");
    let c = costs(&spec);
    assert_eq!((c.flops, c.core_bytes), (184.0, 224.0));
}

#[test]
fn ssd_alone_in_chunks_and_its_bytes() {
    // Core op over d 8 = 2 heads of P 4, N 2, 1 group, B 1, L 4 in chunks of T 2 (2 chunks).
    // Per token: C·Bᵀ 2·T·N = 8; per head mask 4T = 8, masked form 2TP = 16, chunk state and
    // state-to-output 4PN + 4P = 48, softplus and D 5: 77 → 8 + 2·77 = 162, · 4 tokens = 648.
    // Across chunks: 2 heads · 2·(2 + 1)²·P·N = 288. Bytes in f32: x, y 2·2·4 and Δ 2 per
    // token, B, C 2·2: 22 · 4 tokens + A, D, bias 3·2 = 94 elements.
    let spec = run("s", "forward", "core", "{ d_model: [8], seq_len: [4] }", "");
    let c = costs(&spec);
    assert_eq!((c.flops, c.core_bytes), (936.0, 376.0));
}

#[test]
fn mamba2_mixer_forward_flops() {
    // B 1, L 2, d 4, E 8 = 2 heads of P 4, N 2, 1 group, K 4, chunks of T 2 (one chunk):
    // in_proj to 2E + 2N + H = 22: 2·2·4·22 = 352; conv over x, B, C (12 channels)
    // 2·2·12·4 + SiLU 3·2·12 = 264; SSD per token 2TN + H·(4T + 2TP + 4PN + 4P + 5) = 162,
    // · 2 tokens, and across chunks 2 heads · 2·(1 + 1)²·P·N = 128: 452; gated RMS norm
    // 8·2·8 = 128; out_proj 2·2·8·4 = 128.
    let spec = run(
        "s",
        "forward",
        "mixer",
        "{ d_model: [4], seq_len: [2] }",
        "",
    );
    assert_eq!(costs(&spec).flops, 1324.0);
}

#[test]
fn mamba2_decoding_state_is_fixed_in_the_context() {
    let at = |len: i64| {
        costs(&run(
            "s",
            "decode",
            "model",
            &format!("{{ d_model: [4], seq_len: [{len}] }}"),
            "",
        ))
    };
    let (short, long) = (at(4), at(4096));
    assert_eq!(
        short.flops, long.flops,
        "a Mamba-2 step is O(1) in the context"
    );
    // 2 layers · (conv window: conv_dim (8 + 2·2) · K 4 + SSM state: d_inner 8 · N 2) · 4 bytes.
    assert_eq!(short.state_bytes, 2.0 * (12.0 * 4.0 + 16.0) * 4.0);
}

#[test]
fn causal_attention_counts_the_unmasked_half() {
    // d 16 = 2 heads of 8, B 1, L 4: 2·(4·5/2) = 20 query-key pairs; QKᵀ and AV 2·2·20·8 = 640,
    // softmax 5·20 = 100.
    let spec = run(
        "t",
        "forward",
        "core",
        "{ d_model: [16], seq_len: [4] }",
        "",
    );
    let c = costs(&spec);
    assert_eq!(c.flops, 740.0);
    // Q, O: 2·4·16 = 128 elements; K, V: another 128 → 256 elements of 4 bytes.
    assert_eq!(c.core_bytes, 1024.0);
}

#[test]
fn backward_is_twice_the_forward() {
    let grid = "{ d_model: [16], seq_len: [8] }";
    let forward = costs(&run("t", "forward", "block", grid, "")).flops;
    let both = costs(&run("t", "forward_backward", "block", grid, "")).flops;
    assert_eq!(both, 3.0 * forward);
}

#[test]
fn a_decoding_step_attends_over_its_context_and_mamba_state_is_fixed() {
    // Transformer, 2 layers of d 16 (2 heads of 8, MLP 32), vocab 10, B 1, context 4.
    let spec = run(
        "t",
        "decode",
        "model",
        "{ d_model: [16], seq_len: [4] }",
        "",
    );
    let c = costs(&spec);
    // One new token: QKV 2·16·48 = 1536, RoPE 3·32 = 96, attention over 5 keys per head:
    // 2 heads · 5 pairs → 4·10·8 + 5·10 = 370, O 2·16·16 = 512; MLP 2·16·64 + 4·32 + 2·32·16
    // = 2048 + 128 + 1024 = 3200; 2 norms 2·64 = 128, 2 residuals 32. Layer 5874; 2 layers
    // 11748, final norm 64, head 2·16·10 = 320.
    assert_eq!(c.flops, 12132.0);
    // KV cache at 4 + 1 tokens: 2 layers · (K, V) · 5 · 16 · 4 bytes.
    assert_eq!(c.state_bytes, 2.0 * 2.0 * 5.0 * 16.0 * 4.0);

    let short = costs(&run(
        "m",
        "decode",
        "model",
        "{ d_model: [4], seq_len: [4] }",
        "",
    ));
    let long = costs(&run(
        "m",
        "decode",
        "model",
        "{ d_model: [4], seq_len: [4096] }",
        "",
    ));
    assert_eq!(
        short.flops, long.flops,
        "Mamba's step is O(1) in the context"
    );
    // 2 layers · E 8 · (conv 4 f32 + state 2 f32) · 4 bytes.
    assert_eq!(short.state_bytes, 2.0 * 8.0 * 6.0 * 4.0);
}

#[test]
fn weights_keep_a_log_d_and_dt_bias_in_fp32() {
    // Mamba-1's A_log and D: E·(N + 1) = 8·3 = 24 values. Mamba-2's A_log, D and dt_bias, one
    // of each per head: 3·2 = 6. The rest in 2 bytes.
    for (model, fp32_values) in [("m", 24.0), ("s", 6.0)] {
        let f32 = run(
            model,
            "forward",
            "mixer",
            "{ d_model: [4], seq_len: [2] }",
            "",
        );
        let mut bf16 = f32.clone();
        bf16.dtype = mamba_vs_transformer::spec::DType::Bf16;
        let params = f32.config.params(f32.component) as f64;
        assert_eq!(costs(&f32).param_bytes, 4.0 * params, "{model}");
        assert_eq!(
            costs(&bf16).param_bytes,
            fp32_values * 4.0 + (params - fp32_values) * 2.0,
            "{model}"
        );
    }
}

#[test]
fn generation_is_a_prefill_and_a_step_per_further_token() {
    let grid = "{ d_model: [16], seq_len: [4] }";
    let generate = costs(&run(
        "t",
        "generate_throughput",
        "model",
        grid,
        ", new_tokens: 3",
    ));
    let prefill = costs(&run("t", "prefill", "model", grid, "")).flops;
    let step_at = |context: &str| {
        costs(&run(
            "t",
            "decode",
            "model",
            &format!("{{ d_model: [16], seq_len: [{context}] }}"),
            "",
        ))
        .flops
    };
    assert_eq!(generate.flops, prefill + step_at("4") + step_at("5"));
}

/// A hybrid costs what its layers cost in their own families: one of Mamba-2 layers only is a
/// Mamba-2 model, one of attention and MLP layers a Transformer of half its depth.
#[test]
fn a_hybrid_costs_the_sum_of_its_layers() {
    for pass in ["forward", "forward_backward", "decode"] {
        let grid = "{ d_model: [8], seq_len: [6], n_layers: [2] }";
        let (mamba2, hybrid) = (
            costs(&run("s", pass, "model", grid, "")),
            costs(&run("h2", pass, "model", grid, "")),
        );
        assert_eq!(mamba2, hybrid, "{pass}");
        if pass == "decode" {
            continue; // decoding runs whole models only; the next test covers the hybrid's
        }
        let transformer = costs(&run(
            "t",
            pass,
            "layers",
            "{ d_model: [16], seq_len: [6], n_layers: [2] }",
            "",
        ));
        let hybrid = costs(&run(
            "haf",
            pass,
            "layers",
            "{ d_model: [16], seq_len: [6], n_layers: [4] }",
            "",
        ));
        assert_eq!(transformer, hybrid, "{pass}");
    }
}

/// A hybrid's decoding state grows with the context through its attention layers only.
#[test]
fn a_hybrids_decoding_state_grows_only_through_its_attention_layers() {
    let at = |len: i64| {
        costs(&run(
            "h2af",
            "decode",
            "model",
            &format!("{{ d_model: [16], seq_len: [{len}], n_layers: [6] }}"),
            "",
        ))
        .state_bytes
    };
    // Two attention layers (2AF2AF), each caching K and V, 16 wide, for 100 more tokens, f32.
    assert_eq!(at(104) - at(4), 2.0 * 2.0 * 100.0 * 16.0 * 4.0);
    // At 4 (+1) tokens: 2 Mamba-2 layers' conv window (conv_dim 32 + 2·2 = 36, K 4) and state
    // (d_inner 32 · N 2), and the 2 caches at 5 tokens.
    let ssm = 2.0 * (36.0 * 4.0 + 32.0 * 2.0) * 4.0;
    assert_eq!(at(4), ssm + 2.0 * 2.0 * 5.0 * 16.0 * 4.0);
}
