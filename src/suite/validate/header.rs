//! The suite's own fields (name, device, dtype, limits, threads), and the scan kernels its
//! device can run.

use super::checker::{is_file_name, Checker};
use super::machine::Machine;
use crate::device::DeviceSpec;
use crate::scan::ScanImpl;
use crate::spec::DType;
use crate::suite::schema::Suite;

/// Returns the suite's device, resolved, when that is valid.
pub(super) fn check_header(
    c: &mut Checker,
    suite: &Suite,
    machine: Machine,
) -> Option<tch::Device> {
    if !is_file_name(&suite.name) {
        c.fail("name", format!("`{}` is not allowed; use letters, digits, `-`, `_` and `.` (it names the results folder)", suite.name));
    }
    let device =
        DeviceSpec::parse(&suite.device).and_then(|spec| spec.resolve(machine.cuda_devices));
    match &device {
        Err(message) => c.fail("device", message.clone()),
        Ok(tch::Device::Cpu) if suite.dtype == DType::F16 => {
            c.fail(
                "dtype",
                "f16 runs on CUDA only here; use f32 or bf16 on the CPU",
            );
        }
        Ok(_) => {}
    }
    c.above_zero("timeout_s".to_owned(), suite.timeout_s);
    check_threads(c, suite.threads, machine);
    if suite.models.is_empty() {
        c.fail(
            "models",
            "no models are defined; add one, e.g. `mamba: { family: mamba }`",
        );
    }
    if suite.experiments.is_empty() {
        c.fail(
            "experiments",
            "no experiments are defined; add at least one",
        );
    }
    device.ok()
}

/// At least one thread, and no more than the machine has cores: a timed run whose threads
/// outnumber the cores measures the scheduler's time slicing, not the kernels.
fn check_threads(c: &mut Checker, threads: Option<usize>, machine: Machine) {
    match threads {
        Some(0) => c.fail(
            "threads",
            "0 is not allowed; give a thread count ≥ 1, or leave it out for all cores",
        ),
        Some(threads) if threads > machine.cpu_cores => {
            let cores = machine.cpu_cores;
            let plural = if cores == 1 { "" } else { "s" };
            c.fail(
                "threads",
                format!("{threads} is not allowed: this machine has {cores} CPU core{plural}; more threads than cores oversubscribe them and time the scheduler; give at most {cores}, or leave it out for all cores"),
            );
        }
        _ => {}
    }
}

/// A scan kernel named for another device than the suite's fails every run; say so first.
pub(super) fn check_scans(c: &mut Checker, suite: &Suite, device: tch::Device) {
    for (name, entry) in &suite.models {
        let wrong = match entry.scan {
            Some(ScanImpl::CpuFused) if device != tch::Device::Cpu => "runs on the CPU",
            Some(ScanImpl::CudaFused) if device == tch::Device::Cpu => "runs on CUDA",
            _ => continue,
        };
        c.fail(
            format!("models.{name}.scan"),
            format!(
                "`{}` {wrong}, and this suite's device is {}; use `auto` or `chunked`",
                entry.scan.map(ScanImpl::name).unwrap_or_default(),
                crate::device::device_name(device)
            ),
        );
    }
}
