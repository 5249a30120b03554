//! Every fast scan against the reference loop, with mamba_ssm's tolerances
//! (tests/ops/test_selective_scan.py): fp32 rtol 6e-4 / atol 2e-3, bf16 rtol 3e-2 / atol 5e-2.

mod common;

use common::seeded;
use mamba_vs_transformer::scan::{
    fused_on_host, fused_on_host_from, reference, ScanImpl, ScanInputs, ScanTensors,
};
use mamba_vs_transformer::tolerance::Tolerance;
use tch::{Device, Kind, Tensor};

#[derive(Clone, Copy)]
struct Case {
    batch: i64,
    d_inner: i64,
    d_state: i64,
    seq_len: i64,
    /// Scale of the raw Δ before softplus: tiny steps, typical ones, or huge ones.
    delta_scale: f64,
    with_d: bool,
    with_z: bool,
    with_bias: bool,
    softplus: bool,
}

impl Case {
    const fn new(batch: i64, d_inner: i64, d_state: i64, seq_len: i64) -> Self {
        Self {
            batch,
            d_inner,
            d_state,
            seq_len,
            delta_scale: 1.0,
            with_d: true,
            with_z: true,
            with_bias: true,
            softplus: true,
        }
    }
}

/// `base` with each of the 16 combinations of D, z, Δ bias and softplus present or absent.
fn every_option(base: Case) -> impl Iterator<Item = Case> {
    (0..16u32).map(move |mask| Case {
        with_d: mask & 1 != 0,
        with_z: mask & 2 != 0,
        with_bias: mask & 4 != 0,
        softplus: mask & 8 != 0,
        ..base
    })
}

fn tensors(case: &Case, seed: i64) -> ScanTensors {
    let f = (Kind::Float, Device::Cpu);
    let (bs, di, n, l) = (case.batch, case.d_inner, case.d_state, case.seq_len);
    seeded(seed, || {
        // Without the softplus, Δ + bias itself must be a positive step.
        let (delta, bias) = if case.softplus {
            (
                Tensor::randn([bs, di, l], f) * case.delta_scale - 2.0,
                Tensor::randn([di], f) * 0.5,
            )
        } else {
            (
                Tensor::rand([bs, di, l], f) * (case.delta_scale * 0.2) + 1e-3,
                Tensor::rand([di], f) * 0.1,
            )
        };
        ScanTensors {
            u: Tensor::randn([bs, di, l], f),
            delta,
            // A = −(1..N) jittered, as S4D-real initialises it.
            a: -(Tensor::arange_start(1, n + 1, f).repeat([di, 1])
                * (Tensor::rand([di, n], f) + 0.5)),
            b: Tensor::randn([bs, n, l], f),
            c: Tensor::randn([bs, n, l], f),
            d: Tensor::randn([di], f),
            z: Tensor::randn([bs, di, l], f),
            bias,
        }
    })
}

fn inputs<'a>(case: &Case, t: &'a ScanTensors) -> ScanInputs<'a> {
    ScanInputs {
        d: case.with_d.then_some(&t.d),
        z: case.with_z.then_some(&t.z),
        delta_bias: case.with_bias.then_some(&t.bias),
        delta_softplus: case.softplus,
        ..t.inputs()
    }
}

fn check_fused(case: &Case, threads: usize) {
    let t = tensors(case, 17);
    let inputs = inputs(case, &t);
    let (want_y, want_state) = reference::selective_scan(&inputs, None);
    let (y, state) = fused_on_host(&inputs, Some(threads));
    let label = format!(
        "B{} D{} N{} L{} Δ×{} threads {threads}",
        case.batch, case.d_inner, case.d_state, case.seq_len, case.delta_scale
    );
    Tolerance::FP32.assert_close(&format!("y, {label}"), &y, &want_y);
    Tolerance::FP32.assert_close(&format!("last state, {label}"), &state, &want_state);
}

#[test]
fn fused_matches_reference_across_shapes() {
    let shapes = [
        (2, 4, 8, 128),  // mamba_ssm's test shape
        (1, 16, 16, 1),  // a single step
        (2, 13, 16, 37), // odd length, channels not a multiple of the SIMD width
        (1, 8, 4, 64),
        (3, 24, 16, 33),
        (1, 5, 1, 9),
    ];
    for (batch, d_inner, d_state, seq_len) in shapes {
        for threads in [1, 2, 3] {
            check_fused(&Case::new(batch, d_inner, d_state, seq_len), threads);
        }
    }
}

#[test]
fn fused_handles_tiny_and_huge_steps() {
    for delta_scale in [1e-3, 1.0, 8.0, 40.0] {
        check_fused(
            &Case {
                delta_scale,
                ..Case::new(2, 12, 16, 96)
            },
            2,
        );
    }
}

#[test]
fn fused_handles_every_optional_input() {
    for case in every_option(Case::new(2, 10, 8, 40)) {
        check_fused(&case, 2);
    }
}

#[test]
fn fused_takes_bf16_inputs() {
    let case = Case::new(2, 16, 16, 64);
    let t = tensors(&case, 3);
    let half = |x: &Tensor| x.to_kind(Kind::BFloat16);
    let (u, delta, b, c, z) = (
        half(&t.u),
        half(&t.delta),
        half(&t.b),
        half(&t.c),
        half(&t.z),
    );
    let bf16 = ScanInputs {
        u: &u,
        delta: &delta,
        b: &b,
        c: &c,
        z: Some(&z),
        ..inputs(&case, &t)
    };
    // As mamba_ssm does: both scans see the same bf16 inputs and compute in fp32.
    let (want, _) = reference::selective_scan(&bf16, None);
    let (got, _) = fused_on_host(&bf16, Some(2));
    assert_eq!((got.kind(), want.kind()), (Kind::BFloat16, Kind::BFloat16));
    Tolerance::BF16.assert_close("bf16 y", &got, &want);
}

#[test]
fn auto_picks_the_fused_kernel_on_the_cpu() {
    // Which kernel runs where is tests/scan_kernel.rs's subject; here, that auto's is right.
    let case = Case::new(1, 8, 4, 16);
    let t = tensors(&case, 5);
    let y = ScanImpl::Auto.scan(&inputs(&case, &t));
    let (want, _) = reference::selective_scan(&inputs(&case, &t), None);
    Tolerance::FP32.assert_close("auto scan", &y, &want);
}

/// Leaf copies of a case's tensors that require gradients.
fn leaves(t: &ScanTensors) -> ScanTensors {
    let leaf = |x: &Tensor| x.detach().copy().set_requires_grad(true);
    t.map(leaf, leaf)
}

/// w in the loss Σ y·w: fixed random weights, so every output position matters differently.
fn loss_weights(shape: &[i64]) -> Tensor {
    seeded(99, || Tensor::randn(shape, (Kind::Float, Device::Cpu)))
}

/// The gradients of Σ y·w with respect to every present input.
fn grads(case: &Case, t: &ScanTensors, scan: ScanImpl) -> Vec<(&'static str, Tensor)> {
    let y = scan.scan(&inputs(case, t));
    (&y * loss_weights(&y.size())).sum(Kind::Float).backward();
    let mut out = vec![
        ("du", t.u.grad()),
        ("ddelta", t.delta.grad()),
        ("dA", t.a.grad()),
        ("dB", t.b.grad()),
        ("dC", t.c.grad()),
    ];
    if case.with_d {
        out.push(("dD", t.d.grad()));
    }
    if case.with_z {
        out.push(("dz", t.z.grad()));
    }
    if case.with_bias {
        out.push(("dbias", t.bias.grad()));
    }
    out
}

/// Gradients are compared 10× looser than outputs, the loosest of mamba_ssm's factors.
fn check_grads(case: &Case) {
    check_grads_of(case, ScanImpl::CpuFused);
}

fn check_grads_of(case: &Case, scan: ScanImpl) {
    let t = tensors(case, 23);
    let want = grads(case, &leaves(&t), ScanImpl::Reference);
    let got = grads(case, &leaves(&t), scan);
    for ((name, g), (_, w)) in got.iter().zip(&want) {
        let label = format!(
            "{name}, B{} D{} N{} L{}",
            case.batch, case.d_inner, case.d_state, case.seq_len
        );
        Tolerance::FP32_GRADIENTS.assert_close(&label, g, w);
    }
}

#[test]
fn fused_gradients_match_reference_autograd() {
    for (batch, d_inner, d_state, seq_len) in [
        (2, 4, 8, 128),
        (1, 13, 16, 1),
        (2, 9, 4, 150),
        (3, 16, 16, 65),
    ] {
        check_grads(&Case::new(batch, d_inner, d_state, seq_len));
    }
    for delta_scale in [1e-3, 8.0] {
        check_grads(&Case {
            delta_scale,
            ..Case::new(2, 8, 8, 70)
        });
    }
}

#[test]
fn fused_gradients_cover_every_optional_input() {
    for case in every_option(Case::new(2, 10, 4, 20)) {
        check_grads(&case);
    }
}

/// Central finite differences of the autograd node's own forward, accumulated in f64, against
/// its backward: the node is checked on its own terms, not only against the reference.
#[test]
fn autograd_node_passes_a_finite_difference_check() {
    let case = Case::new(1, 3, 2, 5);
    let t = leaves(&tensors(&case, 31));
    let analytic = grads(&case, &t, ScanImpl::CpuFused);
    let weights = loss_weights(&[case.batch, case.d_inner, case.seq_len]).to_kind(Kind::Double);
    let loss = |t: &ScanTensors| -> f64 {
        let y = tch::no_grad(|| ScanImpl::CpuFused.scan(&inputs(&case, t)));
        (y.to_kind(Kind::Double) * &weights)
            .sum(Kind::Double)
            .double_value(&[])
    };
    let eps = 1e-2;
    type Field = fn(&ScanTensors) -> &Tensor;
    let fields: [(&str, Field); 8] = [
        ("du", |t| &t.u),
        ("ddelta", |t| &t.delta),
        ("dA", |t| &t.a),
        ("dB", |t| &t.b),
        ("dC", |t| &t.c),
        ("dD", |t| &t.d),
        ("dz", |t| &t.z),
        ("dbias", |t| &t.bias),
    ];
    for ((name, field), (_, grad)) in fields.iter().zip(&analytic) {
        let n = field(&t).numel() as i64;
        for i in 0..n {
            let shifted = |sign: f64| {
                let copy = tensors(&case, 31);
                let target = field(&copy).shallow_clone();
                let _ = target.view([-1]).get(i).g_add_scalar_(sign * eps);
                loss(&copy)
            };
            let numeric = (shifted(1.0) - shifted(-1.0)) / (2.0 * eps);
            let exact = grad.view([-1]).double_value(&[i]);
            assert!(
                Tolerance {
                    rtol: 2e-2,
                    atol: 2e-3
                }
                .admits(numeric, exact),
                "{name}[{i}]: finite difference {numeric}, autograd {exact}"
            );
        }
    }
}

#[test]
fn inference_does_not_ask_for_gradients() {
    let case = Case::new(1, 8, 4, 16);
    let t = leaves(&tensors(&case, 5));
    assert!(inputs(&case, &t).needs_grad());
    assert!(!tch::no_grad(|| inputs(&case, &t).needs_grad()));
    assert!(!inputs(&case, &tensors(&case, 5)).needs_grad());
}

// --- The chunked scan (libtorch ops: the GPU path's fallback) ----------------------------------

use mamba_vs_transformer::scan::chunked;

#[test]
fn chunked_matches_the_reference_across_chunk_boundaries_and_options() {
    // Lengths below, at and across the chunk size, and several chunks with a ragged end.
    for seq_len in [
        1,
        5,
        chunked::CHUNK,
        chunked::CHUNK + 1,
        3 * chunked::CHUNK - 7,
    ] {
        let base = Case::new(2, 6, 8, seq_len);
        for case in every_option(base) {
            let t = tensors(&case, 41);
            let (want, want_last) = reference::selective_scan(&inputs(&case, &t), None);
            let (got, got_last) = chunked::selective_scan(&inputs(&case, &t), None);
            Tolerance::FP32.assert_close(&format!("chunked y, L{seq_len}"), &got, &want);
            Tolerance::FP32.assert_close("chunked last state", &got_last, &want_last);
        }
    }
    for delta_scale in [1e-3, 8.0] {
        let case = Case {
            delta_scale,
            ..Case::new(1, 4, 16, 150)
        };
        let t = tensors(&case, 42);
        let (want, _) = reference::selective_scan(&inputs(&case, &t), None);
        let (got, _) = chunked::selective_scan(&inputs(&case, &t), None);
        Tolerance::FP32.assert_close("chunked y, extreme Δ", &got, &want);
    }
}

#[test]
fn chunked_continues_from_a_state_like_one_long_scan() {
    let case = Case::new(2, 5, 4, 150);
    let t = tensors(&case, 43);
    let whole = inputs(&case, &t);
    let (want, want_last) = reference::selective_scan(&whole, None);
    // Split the sequence at 100: the second half starts from the first half's last state.
    let part = |from: i64, len: i64| {
        let cut = |x: &Tensor| x.narrow(2, from, len);
        (cut(&t.u), cut(&t.delta), cut(&t.b), cut(&t.c), cut(&t.z))
    };
    let scan_part = |p: &(Tensor, Tensor, Tensor, Tensor, Tensor), state: Option<&Tensor>| {
        let x = ScanInputs {
            u: &p.0,
            delta: &p.1,
            b: &p.2,
            c: &p.3,
            z: Some(&p.4),
            ..whole
        };
        chunked::selective_scan(&x, state)
    };
    let (first, state) = scan_part(&part(0, 100), None);
    let (second, last) = scan_part(&part(100, 50), Some(&state));
    Tolerance::FP32.assert_close("resumed y", &Tensor::cat(&[first, second], 2), &want);
    Tolerance::FP32.assert_close("resumed state", &last, &want_last);
}

#[test]
fn chunked_gradients_match_reference_autograd() {
    for (batch, d_inner, d_state, seq_len) in [(2, 4, 8, 130), (1, 3, 4, 1), (2, 5, 16, 64)] {
        for case in every_option(Case::new(batch, d_inner, d_state, seq_len)).step_by(5) {
            check_grads_of(&case, ScanImpl::Chunked);
        }
    }
}

#[test]
fn chunked_takes_bf16_inputs_and_returns_bf16() {
    let case = Case::new(2, 8, 16, 100);
    let t = tensors(&case, 44);
    let bf = |x: &Tensor| x.to_kind(Kind::BFloat16);
    let (u, delta, b, c, z) = (bf(&t.u), bf(&t.delta), bf(&t.b), bf(&t.c), bf(&t.z));
    let bf16 = ScanInputs {
        u: &u,
        delta: &delta,
        b: &b,
        c: &c,
        z: Some(&z),
        ..inputs(&case, &t)
    };
    let (want, _) = reference::selective_scan(&bf16, None);
    let (got, _) = chunked::selective_scan(&bf16, None);
    assert_eq!(got.kind(), Kind::BFloat16);
    Tolerance::BF16.assert_close("chunked bf16 y", &got, &want);
}

/// Chunk by chunk, each starting from the state the last one left, the fused forward gives the
/// whole sequence's scan: y and the last state, with chunk edges inside a 64-step checkpoint
/// chunk and a 256-step tile, a one-step chunk, and channels not a multiple of the SIMD width.
#[test]
fn fused_continues_from_an_initial_state_across_chunk_edges() {
    let case = Case::new(2, 21, 16, 600);
    let t = tensors(&case, 23);
    let whole = inputs(&case, &t);
    let (want_y, want_state) = reference::selective_scan(&whole, None);
    for chunks in [&[1i64, 63, 200, 336][..], &[300, 300], &[257, 1, 342]] {
        let mut state: Option<Tensor> = None;
        let mut start = 0;
        let mut pieces = Vec::new();
        for &len in chunks {
            let part = |x: &Tensor| x.narrow(2, start, len).contiguous();
            let sliced = ScanTensors {
                u: part(&t.u),
                delta: part(&t.delta),
                b: part(&t.b),
                c: part(&t.c),
                z: part(&t.z),
                a: t.a.shallow_clone(),
                d: t.d.shallow_clone(),
                bias: t.bias.shallow_clone(),
            };
            let (y, last) = fused_on_host_from(&inputs(&case, &sliced), state.as_ref(), Some(2));
            pieces.push(y);
            state = Some(last);
            start += len;
        }
        let label = format!("chunks {chunks:?}");
        Tolerance::FP32.assert_close(&format!("y, {label}"), &Tensor::cat(&pieces, 2), &want_y);
        Tolerance::FP32.assert_close(
            &format!("last state, {label}"),
            state.as_ref().unwrap(),
            &want_state,
        );
    }
    // And through the dispatch: without gradients, a scan from a state runs the fused kernel.
    let h0 = seeded(5, || Tensor::randn([2, 21, 16], (Kind::Float, Device::Cpu)));
    let (y, state) = tch::no_grad(|| ScanImpl::Auto.scan_with_state_from(&whole, Some(&h0)));
    let (want_y, want_state) = reference::selective_scan(&whole, Some(&h0));
    Tolerance::FP32.assert_close("y from h0", &y, &want_y);
    Tolerance::FP32.assert_close("state from h0", &state, &want_state);
}
