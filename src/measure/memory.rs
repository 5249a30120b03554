//! Peak memory of a pass, measured around the timed region only.
//!
//! - CUDA: the caching allocator's peak of bytes held by tensors, reset before the pass, so the
//!   number is what the pass needed on top of what was live before it (weights, inputs).
//!   Reserved bytes (the allocator's cache included) are recorded beside it.
//! - CPU: the process's peak resident set (`VmHWM`) over its resident set before the pass. The
//!   peak is reset first through `/proc/self/clear_refs`, so allocations made while building
//!   the model do not count; every run has its own process, so no other run's memory does.

use crate::torch_ext;
use tch::Device;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PeakMemory {
    /// Bytes above the baseline at the peak of the pass.
    pub peak_bytes: i64,
    /// CUDA only: the most the allocator held from the driver, its cache included.
    pub reserved_bytes: Option<i64>,
}

/// Started right before the timed region; [`MemoryProbe::finish`] right after it.
pub struct MemoryProbe {
    device: Device,
    baseline: i64,
}

impl MemoryProbe {
    pub fn start(device: Device) -> Self {
        let baseline = match device {
            Device::Cuda(n) => {
                crate::device::synchronize(device);
                // A failure here means no CUDA allocator, which the pass itself will report.
                let _ = torch_ext::reset_cuda_peak_memory(n);
                torch_ext::cuda_memory(n).map_or(0, |m| m.allocated_current)
            }
            _ => {
                reset_peak_rss();
                resident_bytes("VmRSS").unwrap_or(0)
            }
        };
        Self { device, baseline }
    }

    /// `None` when the platform does not report memory (no `/proc`, no CUDA statistics).
    pub fn finish(self) -> Option<PeakMemory> {
        match self.device {
            Device::Cuda(n) => {
                crate::device::synchronize(self.device);
                let m = torch_ext::cuda_memory(n).ok()?;
                Some(PeakMemory {
                    peak_bytes: m.allocated_peak - self.baseline,
                    reserved_bytes: Some(m.reserved_peak),
                })
            }
            _ => Some(PeakMemory {
                peak_bytes: (resident_bytes("VmHWM")? - self.baseline).max(0),
                reserved_bytes: None,
            }),
        }
    }
}

/// Linux ≥ 4.0: writing 5 to clear_refs makes VmHWM equal to the current resident set.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// A `/proc/self/status` field given in kB, in bytes.
fn resident_bytes(field: &str) -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_cpu_allocation_shows_in_the_peak() {
        let probe = MemoryProbe::start(Device::Cpu);
        let bytes = 64 << 20;
        let big = tch::Tensor::ones([bytes / 4], (tch::Kind::Float, Device::Cpu));
        drop(big);
        let peak = probe.finish().expect("Linux reports VmHWM");
        assert!(peak.peak_bytes >= bytes * 9 / 10, "{peak:?}");
    }
}
