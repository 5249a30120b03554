//! Where a suite runs: `auto`, `cpu`, `cuda` or `cuda:N`.

use tch::Device;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    /// CUDA device 0 when one exists, else the CPU.
    Auto,
    Cpu,
    Cuda(usize),
}

impl DeviceSpec {
    pub fn parse(text: &str) -> Result<Self, String> {
        let index = |n: &str| n.parse::<usize>().ok();
        match text {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => match text.strip_prefix("cuda:").and_then(index) {
                Some(n) => Ok(Self::Cuda(n)),
                None => Err(format!(
                    "unknown device `{text}`; expected one of: auto, cpu, cuda, cuda:N"
                )),
            },
        }
    }

    /// The concrete device on a machine with `cuda_devices` GPUs.
    pub fn resolve(self, cuda_devices: usize) -> Result<Device, String> {
        match self {
            Self::Auto if cuda_devices > 0 => Ok(Device::Cuda(0)),
            Self::Auto | Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(n) if n < cuda_devices => Ok(Device::Cuda(n)),
            Self::Cuda(n) => Err(format!(
                "`cuda:{n}` was requested, but this machine has {cuda_devices} CUDA device(s) visible to libtorch; use `cpu`, `auto`{}",
                if cuda_devices > 0 { format!(" or cuda:0 … cuda:{}", cuda_devices - 1) } else { String::new() }
            )),
        }
    }
}

/// `cpu` or `cuda:N`, as recorded in result rows.
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(n) => format!("cuda:{n}"),
        _ => "cpu".to_owned(),
    }
}

/// Waits for queued GPU work so that a timer around it measures the work, not its launch.
pub fn synchronize(device: Device) {
    if let Device::Cuda(n) = device {
        tch::Cuda::synchronize(n as i64);
    }
}
