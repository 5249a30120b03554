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

/// A concrete device, `auto` resolved: what run specs, rows and manifests record, written
/// `cpu` or `cuda:N`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceId {
    #[default]
    Cpu,
    Cuda(usize),
}

impl DeviceId {
    pub fn tch(self) -> Device {
        match self {
            DeviceId::Cpu => Device::Cpu,
            DeviceId::Cuda(n) => Device::Cuda(n),
        }
    }

    pub fn is_cuda(self) -> bool {
        matches!(self, DeviceId::Cuda(_))
    }
}

impl From<DeviceId> for DeviceSpec {
    fn from(device: DeviceId) -> Self {
        match device {
            DeviceId::Cpu => DeviceSpec::Cpu,
            DeviceId::Cuda(n) => DeviceSpec::Cuda(n),
        }
    }
}

impl From<Device> for DeviceId {
    fn from(device: Device) -> Self {
        match device {
            Device::Cuda(n) => DeviceId::Cuda(n),
            _ => DeviceId::Cpu,
        }
    }
}

impl std::fmt::Display for DeviceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceId::Cpu => f.write_str("cpu"),
            DeviceId::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl From<DeviceId> for String {
    fn from(device: DeviceId) -> String {
        device.to_string()
    }
}

impl TryFrom<String> for DeviceId {
    type Error = String;

    /// `cpu` or `cuda:N`; `auto` and a bare `cuda` are for suites, not resolved records.
    fn try_from(text: String) -> Result<Self, String> {
        match DeviceSpec::parse(&text)? {
            DeviceSpec::Cpu => Ok(DeviceId::Cpu),
            DeviceSpec::Cuda(n) if text != "cuda" => Ok(DeviceId::Cuda(n)),
            _ => Err(format!(
                "`{text}` is not a resolved device; expected `cpu` or `cuda:N`"
            )),
        }
    }
}

/// `cpu` or `cuda:N`, as recorded in result rows.
pub fn device_name(device: Device) -> String {
    DeviceId::from(device).to_string()
}

/// Waits for queued GPU work so that a timer around it measures the work, not its launch.
pub fn synchronize(device: Device) {
    if let Device::Cuda(n) = device {
        tch::Cuda::synchronize(n as i64);
    }
}

/// The environment variable that turns every CUDA test skipped for want of a GPU into a
/// failure, for whoever runs the test binaries on a GPU machine: a skip there is a bug.
pub const REQUIRE_CUDA_VAR: &str = "MVT_REQUIRE_CUDA";

/// CUDA device 0 for a test that needs a GPU, or `None` (after saying so on stderr) on a
/// machine without one. Panics instead of skipping when `MVT_REQUIRE_CUDA=1`, so that a GPU
/// run can tell a passed CUDA test from a skipped one.
pub fn cuda_for_test(test: &str) -> Option<Device> {
    if tch::Cuda::is_available() {
        return Some(Device::Cuda(0));
    }
    let required = std::env::var(REQUIRE_CUDA_VAR).is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{test}: {REQUIRE_CUDA_VAR}=1, but libtorch sees no CUDA device"
    );
    eprintln!("{test}: skipped, no CUDA device ({REQUIRE_CUDA_VAR}=1 makes this a failure)");
    None
}
