//! Selective-scan speed on the CPU: the implementations side by side, the roofline of this
//! kernel (the same exp + FMA work with no memory traffic), and the whole Mamba mixer.
//!
//! Shapes follow the project's CPU targets: B = 1, d_inner = 1536 (d_model 768), N = 16,
//! L ∈ {256, 1024, 4096}, f32, libtorch and the kernel on the same thread count.
//!
//! `cargo bench --bench scan`; the README's performance section lists the figures.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mamba_vs_transformer::models::mamba::{Config, Mixer};
use mamba_vs_transformer::scan::cpu_fused::{roofline, LANES};
use mamba_vs_transformer::scan::{ScanImpl, ScanTensors};
use std::hint::black_box;
use tch::{nn, nn::Module, Device, Kind, Tensor};

const D_INNER: i64 = 1536;
const D_STATE: i64 = 16;

/// Sequence lengths to measure. `cargo test --all-targets` also runs this binary, once per
/// benchmark and without `--bench`, only to check that it works: it gets one short length.
fn lengths() -> Vec<i64> {
    if std::env::args().any(|arg| arg == "--bench") {
        vec![256, 1024, 4096]
    } else {
        vec![32]
    }
}

fn inputs(seq_len: i64, requires_grad: bool) -> ScanTensors {
    tch::manual_seed(0);
    let f = (Kind::Float, Device::Cpu);
    let x = ScanTensors {
        u: Tensor::randn([1, D_INNER, seq_len], f),
        delta: Tensor::randn([1, D_INNER, seq_len], f) - 2.0,
        a: -Tensor::arange_start(1, D_STATE + 1, f).repeat([D_INNER, 1]),
        b: Tensor::randn([1, D_STATE, seq_len], f),
        c: Tensor::randn([1, D_STATE, seq_len], f),
        d: Tensor::ones([D_INNER], f),
        z: Tensor::randn([1, D_INNER, seq_len], f),
        bias: Tensor::randn([D_INNER], f) * 0.1,
    };
    let leaf = |t: &Tensor| t.shallow_clone().set_requires_grad(requires_grad);
    x.map(leaf, leaf)
}

fn scan_forward(c: &mut Criterion) {
    let mut group = c.benchmark_group("scan_forward");
    group.sample_size(10);
    for seq_len in lengths() {
        let x = inputs(seq_len, false);
        group.throughput(Throughput::Elements((D_INNER * seq_len * D_STATE) as u64));
        for scan in [ScanImpl::Reference, ScanImpl::CpuFused] {
            group.bench_with_input(BenchmarkId::new(scan.name(), seq_len), &x, |bench, x| {
                bench.iter(|| tch::no_grad(|| black_box(scan.scan(&x.inputs()))))
            });
        }
    }
    group.finish();
}

fn scan_forward_backward(c: &mut Criterion) {
    let mut group = c.benchmark_group("scan_forward_backward");
    group.sample_size(10);
    for seq_len in lengths() {
        let x = inputs(seq_len, true);
        group.throughput(Throughput::Elements((D_INNER * seq_len * D_STATE) as u64));
        // Autograd through the reference loop takes minutes per iteration beyond L = 256.
        let scans = if seq_len <= 256 {
            vec![ScanImpl::Reference, ScanImpl::CpuFused]
        } else {
            vec![ScanImpl::CpuFused]
        };
        for scan in scans {
            group.bench_with_input(BenchmarkId::new(scan.name(), seq_len), &x, |bench, x| {
                bench.iter(|| {
                    scan.scan(&x.inputs()).sum(Kind::Float).backward();
                    for t in [&x.u, &x.delta, &x.a, &x.b, &x.c, &x.d, &x.z, &x.bias] {
                        let mut grad = t.grad();
                        let _ = grad.zero_();
                    }
                })
            });
        }
    }
    group.finish();
}

/// The scan's arithmetic without its memory traffic: the kernel's own inner step (per state
/// index and lane one exp and two FMAs) on operands that stay in registers and L1, split over
/// the same threads. No scan can beat this on this CPU.
fn scan_roofline(c: &mut Criterion) {
    let mut group = c.benchmark_group("scan_roofline");
    group.sample_size(10);
    let threads = tch::get_num_threads().max(1) as usize;
    for seq_len in lengths() {
        let work = (D_INNER * seq_len * D_STATE) as usize;
        group.throughput(Throughput::Elements(work as u64));
        group.bench_function(BenchmarkId::new("exp_fma", seq_len), |bench| {
            bench.iter(|| black_box(exp_fma_work(work / threads, threads)))
        });
    }
    group.finish();
}

fn exp_fma_work(per_thread: usize, threads: usize) -> f32 {
    let steps = per_thread / (roofline::D_STATE * LANES);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|i| scope.spawn(move || roofline::steps(steps, i as f32)))
            .collect();
        handles.into_iter().map(|h| h.join().expect("worker")).sum()
    })
}

/// The whole Mamba mixer at d_model 768 against its four projections alone, the matmul floor.
fn mixer(c: &mut Criterion) {
    let mut group = c.benchmark_group("mixer_d768");
    group.sample_size(10);
    for seq_len in lengths() {
        for scan in [ScanImpl::Reference, ScanImpl::CpuFused] {
            let vs = nn::VarStore::new(Device::Cpu);
            let cfg = Config {
                scan,
                ..Config::new(768)
            };
            let mixer = Mixer::new(vs.root(), &cfg);
            let x = Tensor::randn([1, seq_len, 768], (Kind::Float, Device::Cpu));
            group.bench_with_input(BenchmarkId::new(scan.name(), seq_len), &x, |bench, x| {
                bench.iter(|| tch::no_grad(|| black_box(mixer.forward(x))))
            });
        }
        let (d, di, r, n) = (768, D_INNER, 48, D_STATE);
        let weights = |o: i64, i: i64| Tensor::randn([o, i], (Kind::Float, Device::Cpu));
        let (in_proj, x_proj, dt_proj, out_proj) = (
            weights(2 * di, d),
            weights(r + 2 * n, di),
            weights(di, r),
            weights(d, di),
        );
        let x = Tensor::randn([1, seq_len, d], (Kind::Float, Device::Cpu));
        let inner = Tensor::randn([1, seq_len, di], (Kind::Float, Device::Cpu));
        let low = Tensor::randn([1, seq_len, r], (Kind::Float, Device::Cpu));
        group.bench_function(BenchmarkId::new("projections_only", seq_len), |bench| {
            bench.iter(|| {
                tch::no_grad(|| {
                    black_box((
                        x.matmul(&in_proj.tr()),
                        inner.matmul(&x_proj.tr()),
                        low.matmul(&dt_proj.tr()),
                        inner.matmul(&out_proj.tr()),
                    ))
                })
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    scan_forward,
    scan_forward_backward,
    scan_roofline,
    mixer
);
criterion_main!(benches);
