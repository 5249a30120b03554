//! `mvt selfcheck`: the equivalence checks a new machine must pass before its numbers count.
//! On a device, every scan implementation is compared with the CPU reference (outputs, and
//! gradients through autograd), both language models in parallel, step and chunked modes with
//! their CPU twins' parallel pass in the same dtype (f32, and bf16 and f16 on CUDA), and, given
//! the fixtures, the golden checkpoints with transformers' logits. Tolerances are mamba_ssm's.

use crate::models::checkpoint::Checkpoint;
use crate::models::lm::{LanguageModel, Mode};
use crate::models::{cast_except_fp32_params, mamba, transformer, ModelConfig};
use crate::scan::{reference, ScanImpl, ScanTensors};
use crate::tolerance::Tolerance;
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

/// One check and how it went.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    /// The worst excess over the tolerance (≤ 0 passes), or why it could not run.
    pub detail: String,
}

/// `got` against `want` under `tolerance`, as a check named `name`.
fn compare(name: String, got: &Tensor, want: &Tensor, tolerance: Tolerance) -> Check {
    let comparison = tolerance.compare(got, want);
    Check {
        name,
        passed: comparison.is_close(),
        detail: comparison.to_string(),
    }
}

/// Runs every check on `device`; `fixtures` is `tests/data` (golden checkpoints), if present.
pub fn run(device: Device, fixtures: Option<&Path>) -> Vec<Check> {
    let mut checks = scans(device);
    checks.extend(models(device));
    if let Some(dir) = fixtures {
        checks.extend(golden(device, dir));
    }
    checks
}

/// The reduced precision this device computes in.
fn reduced(device: Device) -> Vec<Kind> {
    if device.is_cuda() {
        vec![Kind::BFloat16, Kind::Half]
    } else {
        vec![Kind::BFloat16]
    }
}

/// `t` on `device`, its per-token tensors in `kind`.
fn on(t: &ScanTensors, device: Device, kind: Kind) -> ScanTensors {
    t.map(
        |x| x.to_device(device).to_kind(kind),
        |x| x.to_device(device),
    )
}

fn scans(device: Device) -> Vec<Check> {
    let mut checks = Vec::new();
    tch::manual_seed(0);
    let cpu = ScanTensors::random(2, 8, 16, 200);
    let name = crate::device::device_name(device);
    let mut implementations = vec![ScanImpl::Reference, ScanImpl::Chunked];
    implementations.push(match device {
        Device::Cpu => ScanImpl::CpuFused,
        _ => ScanImpl::CudaFused,
    });
    for imp in implementations {
        for kind in std::iter::once(Kind::Float).chain(reduced(device)) {
            let on_device = on(&cpu, device, kind);
            let got = tch::no_grad(|| imp.scan(&on_device.inputs()));
            // Reduced precision is compared with the reference on the same rounded inputs.
            let rounded = on(&cpu, Device::Cpu, kind);
            let want = tch::no_grad(|| reference::selective_scan(&rounded.inputs(), None).0);
            checks.push(compare(
                format!("scan {} {kind:?} on {name} vs CPU reference", imp.name()),
                &got,
                &want,
                Tolerance::for_kind(kind),
            ));
        }
        // The gradient of Σ y·w with respect to u, fp32, through autograd on the device; a
        // forward-only kernel's passes with gradients run another scan, checked on its own.
        if imp.kernel(device, true, false) != imp.kernel(device, false, false) {
            continue;
        }
        let w = Tensor::randn(cpu.u.size(), (Kind::Float, Device::Cpu));
        let grad_u = |imp: ScanImpl, dev: Device| {
            let mut t = on(&cpu, dev, Kind::Float);
            t.u = t.u.set_requires_grad(true);
            let y = imp.scan(&t.inputs());
            (y * w.to_device(dev)).sum(Kind::Float).backward();
            t.u.grad()
        };
        checks.push(compare(
            format!("scan {} du on {name} vs CPU reference", imp.name()),
            &grad_u(imp, device),
            &grad_u(ScanImpl::Reference, Device::Cpu),
            Tolerance::FP32_GRADIENTS,
        ));
    }
    checks
}

/// `cfg`'s language model on `device` in `kind`, with the weights of `source`.
fn twin(
    cfg: &ModelConfig,
    source: &nn::VarStore,
    device: Device,
    kind: Kind,
) -> Result<(nn::VarStore, LanguageModel), tch::TchError> {
    let mut vars = nn::VarStore::new(device);
    let model = LanguageModel::new(vars.root(), cfg);
    if kind != Kind::Float {
        cast_except_fp32_params(&vars, kind);
    }
    vars.copy(source)?;
    Ok((vars, model))
}

/// Each model in every mode on `device` against the CPU's parallel pass in the same dtype:
/// f32 everywhere, and the device's reduced precisions where the device is not the CPU.
fn models(device: Device) -> Vec<Check> {
    let configs = [
        ModelConfig::Mamba(mamba::Config {
            vocab_size: 64,
            ..mamba::Config::new(32)
        }),
        ModelConfig::Transformer(transformer::Config {
            vocab_size: 64,
            n_kv_heads: Some(2),
            ..transformer::Config::new(64, 16)
        }),
    ];
    let kinds: Vec<Kind> = match device {
        Device::Cpu => vec![Kind::Float],
        _ => std::iter::once(Kind::Float)
            .chain(reduced(device))
            .collect(),
    };
    let mut checks = Vec::new();
    tch::manual_seed(1);
    let ids = Tensor::randint(64, [2, 20], (Kind::Int64, Device::Cpu));
    let name = crate::device::device_name(device);
    for cfg in &configs {
        let source = nn::VarStore::new(Device::Cpu);
        let _ = LanguageModel::new(source.root(), cfg);
        for &kind in &kinds {
            let pair = twin(cfg, &source, Device::Cpu, kind)
                .and_then(|cpu| Ok((cpu, twin(cfg, &source, device, kind)?)));
            let ((_cpu_vars, cpu), (_vars, model)) = match pair {
                Ok(pair) => pair,
                Err(e) => {
                    checks.push(Check {
                        name: format!("{} {kind:?} weights", cfg.family().name()),
                        passed: false,
                        detail: e.to_string(),
                    });
                    continue;
                }
            };
            let want = tch::no_grad(|| cpu.logits(&ids, Mode::Parallel)).to_kind(Kind::Float);
            for mode in [Mode::Parallel, Mode::Step, Mode::Chunked] {
                let got = tch::no_grad(|| model.logits(&ids.to_device(device), mode));
                checks.push(compare(
                    format!(
                        "{} {kind:?} {} logits on {name} vs CPU parallel",
                        cfg.family().name(),
                        mode.name()
                    ),
                    &got.to_kind(Kind::Float),
                    &want,
                    Tolerance::for_kind(kind),
                ));
            }
        }
    }
    checks
}

fn golden(device: Device, data: &Path) -> Vec<Check> {
    let mut checks = Vec::new();
    let Ok(entries) = std::fs::read_dir(data.join("hf")) else {
        return vec![Check {
            name: "golden fixtures".into(),
            passed: false,
            detail: format!("no `hf/` folder under {}", data.display()),
        }];
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let name_check = format!("golden {name} on {}", crate::device::device_name(device));
        let golden =
            Tensor::read_safetensors(data.join("golden").join(format!("{name}.safetensors")));
        let checkpoint = Checkpoint::load(&data.join("hf").join(&name), device, Kind::Float);
        let (Ok(golden), Ok(checkpoint)) = (golden, checkpoint) else {
            checks.push(Check {
                name: name_check,
                passed: false,
                detail: "cannot load the fixture or its golden logits".into(),
            });
            continue;
        };
        let get = |key: &str| {
            golden
                .iter()
                .find(|(n, _)| n == key)
                .map(|(_, t)| t.shallow_clone())
        };
        let (Some(ids), Some(want)) = (get("ids"), get("logits")) else {
            continue;
        };
        for mode in [Mode::Parallel, Mode::Step] {
            let got = tch::no_grad(|| {
                checkpoint
                    .model
                    .logits(&ids.unsqueeze(0).to_device(device), mode)
            });
            checks.push(compare(
                format!("{name_check} {}", mode.name()),
                &got.squeeze_dim(0),
                &want,
                Tolerance::FP32,
            ));
        }
    }
    checks
}
