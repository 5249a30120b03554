//! What this process runs on: versions, devices and CPU. Shown by `mvt info` and recorded in
//! every manifest, so a result can be traced to the software and hardware that produced it.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `tch` version we are built against; Cargo.toml pins it exactly (a test checks).
pub const TCH_VERSION: &str = "0.24.0";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    pub mvt_version: String,
    pub tch_version: String,
    /// Read from the `version.py` beside the libtorch actually loaded, e.g. `2.11.0+cu130`.
    pub libtorch_version: Option<String>,
    /// The CUDA version libtorch was built with, if any.
    pub libtorch_cuda: Option<String>,
    pub libtorch_dir: Option<PathBuf>,
    pub cuda_available: bool,
    pub cuda_devices: usize,
    pub cudnn_version: Option<i64>,
    pub gpu_names: Vec<String>,
    pub cpu_model: String,
    pub cpu_cores: usize,
    /// libtorch's intra-op thread count at the time of collection.
    pub torch_threads: i64,
    pub os: String,
}

impl Environment {
    pub fn collect() -> Self {
        let libtorch_dir = loaded_libtorch_dir();
        let version_py = libtorch_dir
            .as_deref()
            .and_then(|lib| std::fs::read_to_string(lib.parent()?.join("version.py")).ok())
            .unwrap_or_default();
        let cuda_devices = tch::Cuda::device_count().max(0) as usize;
        Self {
            mvt_version: env!("CARGO_PKG_VERSION").to_owned(),
            tch_version: TCH_VERSION.to_owned(),
            libtorch_version: python_string(&version_py, "__version__"),
            libtorch_cuda: python_string(&version_py, "cuda"),
            libtorch_dir,
            cuda_available: tch::Cuda::is_available(),
            cuda_devices,
            cudnn_version: (cuda_devices > 0 && tch::Cuda::cudnn_is_available())
                .then(tch::utils::version_cudnn),
            gpu_names: if cuda_devices > 0 {
                gpu_names()
            } else {
                Vec::new()
            },
            cpu_model: cpu_model(),
            cpu_cores: std::thread::available_parallelism().map_or(1, usize::from),
            torch_threads: i64::from(tch::get_num_threads()),
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        }
    }
}

/// The folder of the `libtorch_cpu.so` mapped into this process (Linux), which may differ
/// from the one we were built against when `LD_LIBRARY_PATH` points elsewhere.
fn loaded_libtorch_dir() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| path.ends_with("/libtorch_cpu.so"))
        .and_then(|path| Path::new(path).parent().map(Path::to_path_buf))
}

/// The value of `name = '...'` in a Python source file.
fn python_string(source: &str, name: &str) -> Option<String> {
    source.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        // `cuda: Optional[str] = '13.0'` carries a type annotation.
        if key.split(':').next().map(str::trim) != Some(name) {
            return None;
        }
        let value = value.trim().trim_matches(|c| c == '\'' || c == '"');
        (value != "None" && !value.is_empty()).then(|| value.to_owned())
    })
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// GPU names from `nvidia-smi`, which every NVIDIA driver installs; libtorch's C API has none.
fn gpu_names() -> Vec<String> {
    Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The commit a copy without `.git` was prepared from (`scripts/gpu_check.sh` sets it on the GPU
/// machine from `.gpu/provenance.env`); read only when git gives nothing.
pub const GIT_COMMIT_VAR: &str = "MVT_GIT_COMMIT";
/// Whether that tree had uncommitted changes: `true` or `false` (also `1` or `0`).
pub const GIT_DIRTY_VAR: &str = "MVT_GIT_DIRTY";

/// The git commit of the working tree at `dir` and whether it has uncommitted changes, apart
/// from any inside `output`: the folder a run writes is its product, not its source, and
/// re-measuring a committed results folder changes it before its manifest is written. Where
/// git gives no commit (a copy without `.git`, or no git at all), the commit and dirty flag
/// come from `MVT_GIT_COMMIT` and `MVT_GIT_DIRTY` when those are set.
pub fn git_state(dir: &Path, output: &Path) -> (Option<String>, Option<bool>) {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "HEAD"]);
    // The whole tree (`:/`) but the output folder, where that is inside the tree.
    let top =
        git(&["rev-parse", "--show-toplevel"]).and_then(|t| Path::new(&t).canonicalize().ok());
    let inside = top.and_then(|top| {
        let output = output.canonicalize().ok()?;
        let relative = output.strip_prefix(&top).ok()?.to_str()?.to_owned();
        (!relative.is_empty()).then(|| format!(":(exclude,top){relative}"))
    });
    let mut status = vec!["status", "--porcelain", "--", ":/"];
    status.extend(inside.as_deref());
    let dirty = commit.as_ref().and(git(&status)).map(|s| !s.is_empty());
    if commit.is_none() {
        return provenance_from(
            std::env::var(GIT_COMMIT_VAR).ok(),
            std::env::var(GIT_DIRTY_VAR).ok(),
        );
    }
    (commit, dirty)
}

/// The commit and dirty flag given by the values of `MVT_GIT_COMMIT` and `MVT_GIT_DIRTY`: no
/// commit when it is unset or blank, and no dirty flag without a commit or when the flag is
/// neither true nor false.
fn provenance_from(
    commit: Option<String>,
    dirty: Option<String>,
) -> (Option<String>, Option<bool>) {
    let commit = commit
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty());
    let dirty = commit.as_ref().and(dirty).and_then(|d| match d.trim() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    });
    (commit, dirty)
}

/// Seconds since the Unix epoch as an RFC 3339 UTC timestamp, e.g. `2026-11-29T03:04:05Z`.
pub fn rfc3339(unix_seconds: u64) -> String {
    let (days, secs) = (unix_seconds / 86_400, unix_seconds % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3_600,
        secs % 3_600 / 60,
        secs % 60
    )
}

pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    rfc3339(now.map_or(0, |d| d.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_921_445), "2026-11-29T03:04:05Z");
    }

    #[test]
    fn reads_provenance_from_variables() {
        let sha = "d6aedea0123456789abcdef0123456789abcdef0";
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(
            provenance_from(some(sha), some("false")),
            (some(sha), Some(false))
        );
        assert_eq!(
            provenance_from(some(format!(" {sha}\n").as_str()), some("1")),
            (some(sha), Some(true))
        );
        assert_eq!(provenance_from(some(sha), some("maybe")), (some(sha), None));
        assert_eq!(provenance_from(some(sha), None), (some(sha), None));
        assert_eq!(provenance_from(some("  "), some("true")), (None, None));
        assert_eq!(provenance_from(None, some("true")), (None, None));
    }

    #[test]
    fn changes_inside_the_runs_own_output_folder_leave_the_tree_clean() {
        let repo = tempfile::tempdir().expect("a temporary folder");
        let dir = repo.path();
        let git = |args: &[&str]| {
            let ok = Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(["-c", "user.name=t", "-c", "user.email=t@t"])
                .args(args)
                .output()
                .is_ok_and(|o| o.status.success());
            assert!(ok, "git {args:?}");
        };
        let write = |path: &str, text: &str| {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        };
        write("suite.yaml", "name: s\n");
        write("results/s/rows.jsonl", "{}\n");
        git(&["init", "-q"]);
        git(&["add", "."]);
        git(&["commit", "-q", "-m", "c"]);
        let output = dir.join("results/s");
        let dirty = || git_state(dir, &output).1;
        assert_eq!(dirty(), Some(false));
        // Re-measuring the committed folder rewrites and deletes its files: still clean.
        write("results/s/rows.jsonl", "{\"new\": 1}\n");
        write("results/s/plots/a.svg", "<svg/>");
        assert_eq!(dirty(), Some(false));
        assert_eq!(
            git_state(dir, &dir.join("results")).1,
            Some(false),
            "a folder above it"
        );
        // Anything else that differs from the commit is uncommitted source.
        write("results/other.csv", "x\n");
        assert_eq!(dirty(), Some(true));
        assert_eq!(git_state(dir, Path::new("/nonexistent")).1, Some(true));
    }

    #[test]
    fn reads_python_version_strings() {
        let src = "__version__ = '2.11.0+cu130'\ncuda: Optional[str] = '13.0'\nhip = None\n";
        assert_eq!(
            python_string(src, "__version__").as_deref(),
            Some("2.11.0+cu130")
        );
        assert_eq!(python_string(src, "hip"), None);
    }
}
