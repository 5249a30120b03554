//! Makes every binary, test and bench of this crate runnable without `LD_LIBRARY_PATH`.
//!
//! torch-sys links libtorch but leaves three gaps that we close here:
//! - rustc passes `--as-needed`, which drops `libtorch_cuda.so` because no symbol of ours names
//!   it, so CUDA silently disappears (tch-rs #980). We force it in with `--no-as-needed`.
//! - No rpath is set, so the loader cannot find libtorch. We add rpaths to torch's `lib` folder
//!   and to the wheel's NVIDIA library folders.
//! - `--disable-new-dtags` writes DT_RPATH rather than DT_RUNPATH: NVRTC opens
//!   `libnvrtc-builtins` through the *caller's* search path, which only DT_RPATH provides.
//!
//! It also compiles `src/torch_ext/shim.cpp`, our small C++ extension of libtorch, against the
//! headers of the same libtorch.

use std::env;
use std::path::{Path, PathBuf};

fn main() {
    // Set by torch-sys's `links = "torch"` manifest key, for its direct dependents only.
    let Ok(lib_dir) = env::var("DEP_TCH_LIBTORCH_LIB") else {
        println!("cargo:warning=torch-sys did not report its libtorch lib folder; no rpath set");
        return;
    };
    let lib_dir = PathBuf::from(lib_dir);

    println!("cargo:rustc-link-arg=-Wl,--disable-new-dtags");
    for dir in rpath_dirs(&lib_dir) {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    }
    if lib_dir.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,-ltorch,--as-needed");
    }
    compile_shim(&lib_dir);
}

/// The shim sees libtorch's headers exactly as torch-sys's own C++ wrapper does.
fn compile_shim(lib_dir: &Path) {
    const SHIM: &str = "src/torch_ext/shim.cpp";
    println!("cargo:rerun-if-changed={SHIM}");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let root = lib_dir
        .parent()
        .expect("libtorch's lib folder has a parent");
    let abi = env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    let mut build = cc::Build::new();
    // `at::parallel_for` is a header template: in an OpenMP build of libtorch (one that ships
    // libgomp) it is an `omp parallel` region, which compiles to a serial loop unless the shim
    // is built with OpenMP too. The shim then calls libtorch's own libgomp, so there is one
    // OpenMP runtime and one pool of threads in the process.
    let gomp = lib_dir.join("libgomp.so.1");
    if gomp.exists() {
        build.flag("-fopenmp");
        println!("cargo:rustc-link-arg={}", canonical(&gomp).display());
    } else {
        println!(
            "cargo:warning=no libgomp.so.1 beside libtorch in {}: if this libtorch uses OpenMP, \
             the Rust kernels will run on one thread",
            lib_dir.display()
        );
    }
    build
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .file(SHIM)
        .compile("mvt_torch_ext");
}

/// torch's own `lib`, then every `nvidia/*/lib` beside a wheel install (`site-packages/torch/lib`
/// sits next to `site-packages/nvidia/cu13/lib`, `nvidia/cudnn/lib`, ...).
fn rpath_dirs(lib_dir: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![canonical(lib_dir)];
    let Some(site_packages) = lib_dir.parent().and_then(Path::parent) else {
        return dirs;
    };
    if let Ok(entries) = std::fs::read_dir(site_packages.join("nvidia")) {
        let mut nvidia: Vec<PathBuf> = entries
            .flatten()
            .map(|entry| entry.path().join("lib"))
            .filter(|lib| lib.is_dir())
            .map(|lib| canonical(&lib))
            .collect();
        nvidia.sort();
        dirs.extend(nvidia);
    }
    dirs
}

/// Resolves the `.libtorch` link, so the rpath still works from another checkout.
fn canonical(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}
