//! The scan kernel is decided in one place, `ScanImpl::kernel`: dispatch runs what it says,
//! and result rows record what it says.

mod common;

use common::seeded;
use mamba_vs_transformer::models::lm::Mode;
use mamba_vs_transformer::results::Row;
use mamba_vs_transformer::results::Status;
use mamba_vs_transformer::runner::execute::Outcome;
use mamba_vs_transformer::runner::recall::{Evaluated, RecallOutcome, Trained};
use mamba_vs_transformer::runner::record;
use mamba_vs_transformer::scan::{reference, Kernel, ScanImpl, ScanTensors};
use mamba_vs_transformer::suite::{Machine, Plan};
use mamba_vs_transformer::tolerance::Tolerance;
use tch::{Device, Kind, Tensor};

#[test]
fn every_choice_names_the_kernel_that_runs() {
    use Kernel::*;
    let cpu = Device::Cpu;
    let gpu = Device::Cuda(0);
    // (asked for, device, with gradients, from a state) → what runs.
    let table = [
        (ScanImpl::Auto, cpu, false, false, CpuFused),
        (ScanImpl::Auto, cpu, true, false, CpuFused),
        (ScanImpl::Auto, cpu, false, true, CpuFused),
        (ScanImpl::Auto, cpu, true, true, Chunked),
        (ScanImpl::Auto, gpu, false, false, Chunked),
        (ScanImpl::Auto, gpu, true, true, Chunked),
        (ScanImpl::CpuFused, cpu, true, false, CpuFused),
        (ScanImpl::CpuFused, cpu, true, true, Chunked),
        (ScanImpl::CpuFused, cpu, false, true, CpuFused),
        (ScanImpl::CudaFused, gpu, false, false, CudaFused),
        (ScanImpl::CudaFused, gpu, false, true, CudaFused),
        (ScanImpl::CudaFused, gpu, true, false, Chunked),
        (ScanImpl::Chunked, cpu, true, true, Chunked),
        (ScanImpl::Reference, cpu, true, true, Reference),
        (ScanImpl::Reference, gpu, false, false, Reference),
    ];
    for (asked, device, grad, from_state, runs) in table {
        assert_eq!(
            asked.kernel(device, grad, from_state),
            runs,
            "{} on {device:?}, grad {grad}, from a state {from_state}",
            asked.name()
        );
    }
}

/// With gradients, `scan_with_state` runs the fused autograd node (it used to fall back to
/// the reference loop): y, its gradients and the last state agree with the reference.
#[test]
fn scan_with_state_with_gradients_runs_the_fused_node() {
    assert_eq!(
        ScanImpl::Auto.kernel(Device::Cpu, true, false),
        Kernel::CpuFused
    );
    let t = seeded(3, || ScanTensors::random(2, 6, 4, 70));
    let leaf = |x: &Tensor| x.detach().copy().set_requires_grad(true);
    let (fused, want) = (t.map(leaf, leaf), t.map(leaf, leaf));
    let (y, state) = ScanImpl::CpuFused.scan_with_state(&fused.inputs());
    let (want_y, want_state) = reference::selective_scan(&want.inputs(), None);
    assert!(y.requires_grad());
    let w = seeded(4, || Tensor::randn(y.size(), (Kind::Float, Device::Cpu)));
    (&y * &w).sum(Kind::Float).backward();
    (&want_y * &w).sum(Kind::Float).backward();
    Tolerance::FP32.assert_close("y", &y, &want_y);
    Tolerance::FP32.assert_close("last state", &state, &want_state.detach());
    Tolerance::FP32_GRADIENTS.assert_close("du", &fused.u.grad(), &want.u.grad());
    Tolerance::FP32_GRADIENTS.assert_close("dB", &fused.b.grad(), &want.b.grad());
}

const RECALL: &str = "\
name: k
device: cpu
threads: 1
models:
  mamba: { family: mamba, d_state: 4 }
experiments:
  - name: r
    kind: recall
    models: [mamba]
    task: { task: induction_heads }
    grid: { d_model: [16], seq_len: [16] }
    train: { steps: 1, lr: 0.001, batch_size: 2 }
    eval_seq_len: [16, 16384]
";

/// A recall row's `scan` is the evaluation's kernel at its length: the fused kernel in parallel
/// mode, the chunked scan in chunked mode, whose chunks continue from the state.
#[test]
fn recall_rows_name_the_kernel_of_their_evaluation() {
    let plan = Plan::parse(RECALL, Machine::current()).expect("a valid suite");
    let spec = &plan.runs[0];
    let evaluated = |seq_len, mode| Evaluated {
        seq_len,
        mode,
        status: Status::Ok,
        accuracy: Some(0.5),
        correct: Some(1),
        scored: Some(2),
        message: None,
        wall_s: 1.0,
    };
    let outcome = Outcome::Recalled(RecallOutcome {
        trained: Trained {
            steps: 1,
            final_loss: 1.0,
            stopped_early: false,
            steps_to_target: None,
            resumed_from: None,
            curve: Vec::new(),
            wall_s: 1.0,
        },
        evaluated: vec![
            evaluated(16, Mode::Parallel),
            evaluated(16384, Mode::Chunked),
        ],
    });
    let rows: Vec<Row> = record::rows(spec, &outcome, 2.0, 1);
    let scans: Vec<_> = rows.iter().map(|r| (r.eval_seq_len, r.scan)).collect();
    assert_eq!(
        scans,
        [
            (Some(16), Some(Kernel::CpuFused)),
            (Some(16384), Some(Kernel::CpuFused))
        ]
    );
}
