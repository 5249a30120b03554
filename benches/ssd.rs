//! Mamba-2's SSD against Mamba-1's fused scan on the CPU, over the state size N (the Mamba-2
//! paper's Fig. 10 axis): both over d_inner = 1536 channels of one sequence of L = 4096, f32,
//! forward only. SSD splits the channels into 24 heads of 64 with one group of B and C, and runs
//! in chunks of 64 and of 256 steps (mamba_ssm's default); the scan keeps N states per channel.
//! Throughput counts channel-state-steps (d_inner · N · L), the same work for both.
//!
//! `cargo bench --bench ssd`; the README's performance section lists the figures.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mamba_vs_transformer::scan::{ScanImpl, ScanTensors};
use mamba_vs_transformer::ssd::{self, SsdInputs};
use std::hint::black_box;
use tch::{Device, Kind, Tensor};

const D_INNER: i64 = 1536;
const HEADDIM: i64 = 64;

/// (L, state sizes) to measure. `cargo test --all-targets` also runs this binary without
/// `--bench`, only to check that it works: it gets one short length and one size.
fn shapes() -> (i64, Vec<i64>) {
    if std::env::args().any(|arg| arg == "--bench") {
        (4096, vec![16, 64, 128, 256])
    } else {
        (32, vec![16])
    }
}

fn scan_inputs(seq_len: i64, d_state: i64) -> ScanTensors {
    tch::manual_seed(0);
    let f = (Kind::Float, Device::Cpu);
    ScanTensors {
        u: Tensor::randn([1, D_INNER, seq_len], f),
        delta: Tensor::randn([1, D_INNER, seq_len], f) - 2.0,
        a: -Tensor::arange_start(1, d_state + 1, f).repeat([D_INNER, 1]),
        b: Tensor::randn([1, d_state, seq_len], f),
        c: Tensor::randn([1, d_state, seq_len], f),
        d: Tensor::ones([D_INNER], f),
        z: Tensor::randn([1, D_INNER, seq_len], f),
        bias: Tensor::randn([D_INNER], f) * 0.1,
    }
}

/// x, Δ, A, B, C of one SSD call over the same channels.
fn ssd_inputs(seq_len: i64, d_state: i64) -> [Tensor; 5] {
    tch::manual_seed(0);
    let f = (Kind::Float, Device::Cpu);
    let heads = D_INNER / HEADDIM;
    [
        Tensor::randn([1, seq_len, heads, HEADDIM], f),
        (Tensor::randn([1, seq_len, heads], f) - 3.0).softplus(),
        -Tensor::arange_start(1, heads + 1, f),
        Tensor::randn([1, seq_len, 1, d_state], f),
        Tensor::randn([1, seq_len, 1, d_state], f),
    ]
}

fn ssd_vs_scan(c: &mut Criterion) {
    let mut group = c.benchmark_group("ssd_vs_scan");
    group.sample_size(10);
    let (seq_len, states) = shapes();
    for d_state in states {
        group.throughput(Throughput::Elements((D_INNER * seq_len * d_state) as u64));
        let scan = scan_inputs(seq_len, d_state);
        group.bench_with_input(
            BenchmarkId::new("scan_cpu_fused", d_state),
            &scan,
            |bench, x| {
                bench.iter(|| tch::no_grad(|| black_box(ScanImpl::CpuFused.scan(&x.inputs()))))
            },
        );
        let [x, dt, a, b, cc] = ssd_inputs(seq_len, d_state);
        let inputs = SsdInputs {
            x: &x,
            dt: &dt,
            a: &a,
            b: &b,
            c: &cc,
        };
        for chunk in [64, 256] {
            group.bench_with_input(
                BenchmarkId::new(format!("ssd_chunked_{chunk}"), d_state),
                &inputs,
                |bench, inputs| {
                    bench.iter(|| tch::no_grad(|| black_box(ssd::chunked(inputs, chunk, None).y)))
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, ssd_vs_scan);
criterion_main!(benches);
