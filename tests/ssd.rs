//! The chunked SSD against the step-by-step recurrence, with mamba_ssm's tolerances: outputs,
//! final states and every gradient, at lengths that are not a multiple of the chunk, chunk 1,
//! several groups, bf16 inputs (outputs and gradients) and an initial state; and the guards
//! mamba_ssm and transformers users needed: causality, and chunked = recurrent at chunk sizes
//! 1, 7 and 256.

mod common;

use common::seeded;
use mamba_vs_transformer::ssd::{chunked, reference, segsum, SsdInputs};
use mamba_vs_transformer::tolerance::Tolerance;
use tch::{Device, Kind, Tensor};

#[derive(Clone, Copy, Debug)]
struct Case {
    batch: i64,
    seq_len: i64,
    heads: i64,
    headdim: i64,
    groups: i64,
    d_state: i64,
}

const BASE: Case = Case {
    batch: 2,
    seq_len: 37,
    heads: 4,
    headdim: 8,
    groups: 1,
    d_state: 16,
};

/// Inputs as a Mamba-2 block makes them: Δ from a softplus around 0.01–0.1, A = −exp(A_log)
/// with A_log from log(1..16), B and C of unit scale; and an initial state.
struct Drawn {
    x: Tensor,
    dt: Tensor,
    a: Tensor,
    b: Tensor,
    c: Tensor,
    h0: Tensor,
}

fn draw(case: Case, seed: i64) -> Drawn {
    let f = (Kind::Float, Device::Cpu);
    let Case {
        batch,
        seq_len,
        heads,
        headdim,
        groups,
        d_state,
    } = case;
    seeded(seed, || Drawn {
        x: Tensor::randn([batch, seq_len, heads, headdim], f),
        dt: (Tensor::randn([batch, seq_len, heads], f) - 3.0).softplus(),
        a: -(Tensor::rand([heads], f) * 15.0 + 1.0),
        b: Tensor::randn([batch, seq_len, groups, d_state], f),
        c: Tensor::randn([batch, seq_len, groups, d_state], f),
        h0: Tensor::randn([batch, heads, headdim, d_state], f),
    })
}

impl Drawn {
    fn inputs(&self) -> SsdInputs<'_> {
        SsdInputs {
            x: &self.x,
            dt: &self.dt,
            a: &self.a,
            b: &self.b,
            c: &self.c,
        }
    }

    fn in_kind(&self, kind: Kind) -> Drawn {
        let k = |t: &Tensor| t.to_kind(kind);
        Drawn {
            x: k(&self.x),
            dt: self.dt.shallow_clone(),
            a: self.a.shallow_clone(),
            b: k(&self.b),
            c: k(&self.c),
            h0: self.h0.shallow_clone(),
        }
    }

    fn requiring_grad(&self) -> Drawn {
        let g = |t: &Tensor| t.detach().set_requires_grad(true);
        Drawn {
            x: g(&self.x),
            dt: g(&self.dt),
            a: g(&self.a),
            b: g(&self.b),
            c: g(&self.c),
            h0: g(&self.h0),
        }
    }

    fn grads(&self) -> Vec<(&'static str, Tensor)> {
        [
            ("x", &self.x),
            ("dt", &self.dt),
            ("A", &self.a),
            ("B", &self.b),
            ("C", &self.c),
            ("h0", &self.h0),
        ]
        .into_iter()
        .map(|(name, t)| (name, t.grad()))
        .collect()
    }
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor, tol: Tolerance) {
    let excess = tol.worst_excess(got, want);
    assert!(excess <= 0.0, "{what}: exceeds {tol:?} by {excess}");
}

/// Chunked against the recurrence on outputs and final state, from zeros and from h0.
fn check_forward(case: Case, chunk: i64) {
    let d = draw(case, 7);
    for h0 in [None, Some(&d.h0)] {
        let want = reference(&d.inputs(), h0);
        let got = chunked(&d.inputs(), chunk, h0);
        let label = format!("{case:?}, chunk {chunk}, h0 {}", h0.is_some());
        assert_close(&format!("y, {label}"), &got.y, &want.y, Tolerance::FP32);
        assert_close(
            &format!("last state, {label}"),
            &got.last_state,
            &want.last_state,
            Tolerance::FP32,
        );
    }
}

#[test]
fn segment_sums_are_sums_of_the_segments() {
    let x = Tensor::from_slice(&[1.0f32, 2.0, 4.0]);
    let s = segsum(&x);
    let inf = f32::NEG_INFINITY;
    let want = Tensor::from_slice(&[0.0f32, inf, inf, 2.0, 0.0, inf, 6.0, 4.0, 0.0]).view([3, 3]);
    assert!(s.equal(&want), "{s:?}");
}

#[test]
fn chunked_equals_the_recurrence_at_lengths_off_the_chunk_grid() {
    for chunk in [1, 5, 16, 64] {
        check_forward(BASE, chunk);
    }
}

#[test]
fn chunked_equals_the_recurrence_with_several_groups() {
    check_forward(
        Case {
            heads: 6,
            groups: 3,
            ..BASE
        },
        8,
    );
    check_forward(
        Case {
            heads: 4,
            groups: 4,
            d_state: 8,
            ..BASE
        },
        16,
    );
}

/// The guard from mamba_ssm and transformers bug reports (chunk-size-dependent outputs):
/// chunked = recurrent at chunk sizes 1, 7 and 256, on a length that 7 and 256 do not divide.
#[test]
fn chunked_equals_the_recurrence_at_chunk_sizes_1_7_and_256() {
    let case = Case {
        seq_len: 300,
        batch: 1,
        ..BASE
    };
    for chunk in [1, 7, 256] {
        check_forward(case, chunk);
    }
}

#[test]
fn every_gradient_matches_the_recurrence() {
    for (case, chunk) in [
        (BASE, 8),
        (
            Case {
                heads: 4,
                groups: 2,
                seq_len: 20,
                ..BASE
            },
            1,
        ),
    ] {
        let d = draw(case, 11);
        let probe = seeded(12, || Tensor::randn(d.x.size(), (Kind::Float, Device::Cpu)));
        let state_probe = seeded(13, || {
            Tensor::randn(d.h0.size(), (Kind::Float, Device::Cpu))
        });
        let grads = |run: &dyn Fn(&Drawn) -> (Tensor, Tensor)| {
            let d = d.requiring_grad();
            let (y, last) = run(&d);
            let loss = (y * &probe).sum(Kind::Float) + (last * &state_probe).sum(Kind::Float);
            loss.backward();
            d.grads()
        };
        let want = grads(&|d| {
            let out = reference(&d.inputs(), Some(&d.h0));
            (out.y, out.last_state)
        });
        let got = grads(&|d| {
            let out = chunked(&d.inputs(), chunk, Some(&d.h0));
            (out.y, out.last_state)
        });
        for ((name, got), (_, want)) in got.iter().zip(&want) {
            assert_close(
                &format!("∂{name}, {case:?}, chunk {chunk}"),
                got,
                want,
                Tolerance::FP32_GRADIENTS,
            );
        }
    }
}

#[test]
fn bf16_inputs_stay_within_bf16_tolerance_of_the_fp32_recurrence() {
    let d = draw(BASE, 3);
    let low = d.in_kind(Kind::BFloat16);
    // The reference in fp32 from the same rounded inputs, as mamba_ssm compares.
    let want = reference(&low.in_kind(Kind::Float).inputs(), Some(&d.h0));
    let got = chunked(&low.inputs(), 16, Some(&d.h0));
    assert_eq!(got.y.kind(), Kind::BFloat16);
    assert_close("bf16 y", &got.y, &want.y, Tolerance::BF16);
    assert_close(
        "bf16 last state",
        &got.last_state,
        &want.last_state,
        Tolerance::FP32,
    );
}

/// Gradients through bf16 inputs against the fp32 recurrence's from the same rounded inputs,
/// with mamba_ssm's loosening for gradients: 2× the bf16 tolerance for the inputs that are
/// bf16 (x, B, C), 5× for the fp32 ones that sum over the whole sequence (Δ, A, h0).
#[test]
fn bf16_gradients_stay_within_bf16_tolerance_of_the_fp32_recurrence() {
    let d = draw(BASE, 5);
    let low = d.in_kind(Kind::BFloat16);
    let probe = seeded(6, || Tensor::randn(d.x.size(), (Kind::Float, Device::Cpu)));
    let grads = |inputs: &Drawn, run: &dyn Fn(&Drawn) -> Tensor| {
        let inputs = inputs.requiring_grad();
        let y = run(&inputs).to_kind(Kind::Float);
        (y * &probe).sum(Kind::Float).backward();
        inputs.grads()
    };
    let want = grads(&low.in_kind(Kind::Float), &|d| {
        reference(&d.inputs(), Some(&d.h0)).y
    });
    let got = grads(&low, &|d| chunked(&d.inputs(), 16, Some(&d.h0)).y);
    for ((name, got), (_, want)) in got.iter().zip(&want) {
        let factor = if ["x", "B", "C"].contains(name) {
            2.0
        } else {
            5.0
        };
        assert_close(
            &format!("bf16 ∂{name}"),
            &got.to_kind(Kind::Float),
            want,
            Tolerance::BF16.times(factor),
        );
    }
}

/// Perturbing token t changes no output before t, to the last bit, and does change t's.
#[test]
fn outputs_never_see_later_tokens() {
    let case = Case {
        seq_len: 40,
        ..BASE
    };
    let d = draw(case, 5);
    for chunk in [1, 7, 16, 64] {
        let before = chunked(&d.inputs(), chunk, None).y;
        for t in [0, 6, 7, 20, 39] {
            let bump = |x: &Tensor| {
                let x = x.copy();
                let _ = x.narrow(1, t, 1).g_add_scalar_(1.0);
                x
            };
            let (x, b, dt) = (bump(&d.x), bump(&d.b), bump(&d.dt));
            let inputs = SsdInputs {
                x: &x,
                dt: &dt,
                b: &b,
                ..d.inputs()
            };
            let after = chunked(&inputs, chunk, None).y;
            if t > 0 {
                assert!(
                    after.narrow(1, 0, t).equal(&before.narrow(1, 0, t)),
                    "chunk {chunk}: perturbing token {t} changed an earlier output"
                );
            }
            let changed = (after.select(1, t) - before.select(1, t)).abs().max();
            assert!(changed.double_value(&[]) > 1e-4, "token {t} itself changes");
        }
    }
}
