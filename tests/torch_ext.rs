//! The shim's switches that tch lacks (which fused-attention kernels SDPA may use, and
//! autocast's compute dtype), and its `parallel_for` on libtorch's threads.

use mamba_vs_transformer::device::cuda_for_test;
use mamba_vs_transformer::torch_ext::{
    self, sdp_backends, set_autocast, set_sdp_backends, SdpBackends,
};
use tch::{Device, Kind, Tensor};

/// One test: both switches are process- or thread-wide state.
#[test]
fn sdp_backends_and_autocast_switch_and_switch_back() {
    let q = Tensor::randn([1, 2, 16, 8], (Kind::Float, Device::Cpu));
    let sdpa = || {
        Tensor::scaled_dot_product_attention(&q, &q, &q, None::<&Tensor>, 0.0, true, None, false)
    };
    let fused = sdpa();

    let math_only = SdpBackends {
        flash: false,
        mem_efficient: false,
        math: true,
        cudnn: false,
    };
    set_sdp_backends(math_only).unwrap();
    assert_eq!(sdp_backends(), math_only);
    let math = sdpa();
    assert!(
        math.allclose(&fused, 1e-5, 1e-5, false),
        "the same attention by another kernel"
    );
    set_sdp_backends(SdpBackends::ALL).unwrap();
    assert_eq!(sdp_backends(), SdpBackends::ALL);

    let a = Tensor::randn([4, 4], (Kind::Float, Device::Cpu));
    set_autocast(Device::Cpu, Some(Kind::BFloat16)).unwrap();
    assert_eq!(
        a.matmul(&a).kind(),
        Kind::BFloat16,
        "autocast computes the matmul in bf16"
    );
    set_autocast(Device::Cpu, None).unwrap();
    assert_eq!(a.matmul(&a).kind(), Kind::Float);
}

/// Where the fused CUDA scan launches: libtorch's current stream, the legacy default (null)
/// stream unless someone installed another; without a GPU the question is an error, not a crash
/// (and, under `MVT_REQUIRE_CUDA=1`, a failed test).
#[test]
fn the_current_cuda_stream_is_the_default_one_or_an_error() {
    let stream = torch_ext::cuda_current_stream(0);
    match cuda_for_test("the_current_cuda_stream_is_the_default_one_or_an_error") {
        Some(_) => assert!(
            stream.expect("a CUDA device").is_null(),
            "the default stream"
        ),
        None => {
            let error = stream.expect_err("no CUDA device");
            assert!(!error.to_string().is_empty());
            eprintln!("without a CUDA device the question is an error: {error}");
        }
    }
}

/// The Rust kernels get their threads from `parallel_for`. If the shim's `at::parallel_for`
/// were compiled without OpenMP, every range would run on the calling thread, silently.
#[test]
fn parallel_for_runs_ranges_on_libtorch_threads() {
    tch::set_num_threads(2);
    let threads = std::sync::Mutex::new(std::collections::HashSet::new());
    torch_ext::parallel_for(2, 1, |_| {
        let mut seen = threads.lock().unwrap_or_else(|e| e.into_inner());
        seen.insert(std::thread::current().id());
    });
    assert_eq!(
        threads
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .len(),
        2,
        "two ranges, two threads"
    );
}
