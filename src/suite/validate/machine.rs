//! What the machine offers, passed in so that validation is testable without a GPU and
//! whatever the cores and memory of the machine that runs the tests.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Machine {
    pub cuda_devices: usize,
    /// Cores this process may use: a suite's `threads` may not exceed them.
    pub cpu_cores: usize,
    /// Memory this process may use, if known. CPU runs that the analytic model predicts need
    /// more get a warning; CUDA runs are not checked against it.
    pub memory_bytes: Option<u64>,
}

impl Machine {
    pub fn current() -> Self {
        Self {
            cuda_devices: tch::Cuda::device_count().max(0) as usize,
            cpu_cores: std::thread::available_parallelism().map_or(1, usize::from),
            memory_bytes: memory_bytes(),
        }
    }

    /// A machine without CUDA devices, with `cpu_cores` cores, of unknown memory (so no memory
    /// warnings).
    pub const fn cpu_only(cpu_cores: usize) -> Self {
        Self {
            cuda_devices: 0,
            cpu_cores,
            memory_bytes: None,
        }
    }

    /// This machine with `cuda_devices` CUDA devices.
    pub const fn with_cuda(self, cuda_devices: usize) -> Self {
        Self {
            cuda_devices,
            ..self
        }
    }

    /// This machine with `memory_bytes` of memory.
    pub const fn with_memory(self, memory_bytes: u64) -> Self {
        Self {
            memory_bytes: Some(memory_bytes),
            ..self
        }
    }
}

/// Linux: `MemTotal` of `/proc/meminfo`, or the cgroup's (v2) limit where that is lower, as in a
/// container or a Slurm job.
fn memory_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    let total = kib * 1024;
    // "max" when unlimited.
    let limit = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok());
    Some(limit.map_or(total, |limit| limit.min(total)))
}
