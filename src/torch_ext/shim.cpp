// What libtorch offers and tch does not expose, behind a small C ABI. Owned by
// src/torch_ext/mod.rs, which documents each entry point; nothing else calls this file.
//
// Errors never cross the boundary as exceptions: every entry point catches them and returns a
// non-zero status with the message copied into the caller's buffer. Rust callbacks report
// failure the same way, and the shim rethrows their message as a C++ exception inside libtorch,
// where autograd expects it.

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <c10/core/CachingDeviceAllocator.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cstdint>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

constexpr int kNodeInputs = 8;  // the most any Rust node takes; the scan takes all 8
constexpr size_t kErrorCapacity = 4096;

// Rust callbacks. `inputs` are borrowed; outputs are heap tensors whose ownership passes to the
// shim. A non-zero return means failure, with a NUL-terminated message in `error`. Forward may
// also hand over `saved`, a tensor of its own that backward receives after the inputs.
using NodeForward = int (*)(const at::Tensor* const* inputs, int64_t flags, at::Tensor** y,
                            at::Tensor** saved, char* error, size_t error_len);
using NodeBackward = int (*)(const at::Tensor* const* inputs, int64_t flags,
                             const at::Tensor* grad_y, at::Tensor** grads, char* error,
                             size_t error_len);

void copy_message(const char* message, char* error, size_t error_len) {
  if (error == nullptr || error_len == 0) return;
  std::strncpy(error, message, error_len - 1);
  error[error_len - 1] = '\0';
}

at::Tensor take(at::Tensor* owned) {
  at::Tensor tensor = std::move(*owned);
  delete owned;
  return tensor;
}

// A Rust kernel as one autograd node (the selective scan, the causal convolution): forward and
// backward are Rust callbacks, and autograd sees a single operation with the node's inputs,
// whatever the kernel does inside. Nodes with fewer inputs pad with placeholders.
struct RustNode : public torch::autograd::Function<RustNode> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& i0, const at::Tensor& i1,
                            const at::Tensor& i2, const at::Tensor& i3, const at::Tensor& i4,
                            const at::Tensor& i5, const at::Tensor& i6, const at::Tensor& i7,
                            int64_t flags, int64_t forward_fn, int64_t backward_fn) {
    const at::Tensor* inputs[kNodeInputs] = {&i0, &i1, &i2, &i3, &i4, &i5, &i6, &i7};
    at::Tensor* y = nullptr;
    at::Tensor* saved = nullptr;
    char error[kErrorCapacity] = {0};
    auto run = reinterpret_cast<NodeForward>(forward_fn);
    if (run(inputs, flags, &y, &saved, error, sizeof error) != 0 || y == nullptr) {
      delete y;
      delete saved;
      throw std::runtime_error(std::string("Rust node forward: ") + error);
    }
    at::Tensor kept = saved ? take(saved) : at::Tensor();
    ctx->save_for_backward({i0, i1, i2, i3, i4, i5, i6, i7, kept});
    ctx->saved_data["flags"] = flags;
    ctx->saved_data["backward"] = backward_fn;
    return take(y);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    variable_list saved = ctx->get_saved_variables();
    const at::Tensor* inputs[kNodeInputs + 1];
    for (int i = 0; i <= kNodeInputs; ++i) inputs[i] = &saved[i];
    at::Tensor grad_y = grad_outputs[0].contiguous();
    at::Tensor* grads[kNodeInputs] = {nullptr};
    char error[kErrorCapacity] = {0};
    auto run = reinterpret_cast<NodeBackward>(ctx->saved_data["backward"].toInt());
    if (run(inputs, ctx->saved_data["flags"].toInt(), &grad_y, grads, error, sizeof error) != 0) {
      for (at::Tensor* grad : grads) delete grad;
      throw std::runtime_error(std::string("Rust node backward: ") + error);
    }
    variable_list result;
    for (at::Tensor* grad : grads) result.push_back(grad ? take(grad) : at::Tensor());
    // No gradients for flags and the two callbacks.
    result.insert(result.end(), {at::Tensor(), at::Tensor(), at::Tensor()});
    return result;
  }
};

}  // namespace

extern "C" {

// Whether autograd records operations on this thread (false inside `no_grad`).
int mvt_grad_enabled() { return at::GradMode::is_enabled() ? 1 : 0; }

// Runs `body(context, begin, end)` over [0, n) in chunks of at least `grain` on libtorch's own
// intra-op pool, so Rust kernels share its threads instead of competing with them (OpenMP
// workers spin-wait after each parallel region, so a second pool would oversubscribe the
// cores). `body` must not unwind.
int mvt_parallel_for(int64_t n, int64_t grain, void (*body)(void*, int64_t, int64_t),
                     void* context, char* error, size_t error_len) {
  try {
    at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) { body(context, begin, end); });
    return 0;
  } catch (const std::exception& e) {
    copy_message(e.what(), error, error_len);
    return 1;
  }
}

// Applies a Rust node to `inputs`: kNodeInputs borrowed, defined
// tensors (the caller passes placeholders for absent optional inputs and says so in `flags`);
// on success `*y` receives an owned tensor.
int mvt_apply_rust_node(const at::Tensor* const* inputs, int64_t flags, NodeForward forward_fn,
                        NodeBackward backward_fn, at::Tensor** y, char* error, size_t error_len) {
  try {
    at::Tensor out = RustNode::apply(
        *inputs[0], *inputs[1], *inputs[2], *inputs[3], *inputs[4], *inputs[5], *inputs[6],
        *inputs[7], flags, reinterpret_cast<int64_t>(forward_fn),
        reinterpret_cast<int64_t>(backward_fn));
    *y = new at::Tensor(std::move(out));
    return 0;
  } catch (const std::exception& e) {
    copy_message(e.what(), error, error_len);
    return 1;
  }
}

// The CUDA caching allocator's byte counts for `device`: current and peak, of memory handed to
// tensors (allocated) and memory held from the driver (reserved). Fails when CUDA is absent.
int mvt_cuda_memory_stats(int device, int64_t* allocated_current, int64_t* allocated_peak,
                          int64_t* reserved_current, int64_t* reserved_peak, char* error,
                          size_t error_len) {
  try {
    constexpr auto all = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    auto stats = c10::getDeviceAllocator(c10::DeviceType::CUDA)
                     ->getDeviceStats(static_cast<c10::DeviceIndex>(device));
    *allocated_current = stats.allocated_bytes[all].current;
    *allocated_peak = stats.allocated_bytes[all].peak;
    *reserved_current = stats.reserved_bytes[all].current;
    *reserved_peak = stats.reserved_bytes[all].peak;
    return 0;
  } catch (const std::exception& e) {
    copy_message(e.what(), error, error_len);
    return 1;
  }
}

// libtorch's current CUDA stream on `device`, as the driver's handle (null for the legacy
// default stream), so that a kernel launched outside libtorch is ordered with its work. Goes
// through the device-guard interface, which needs no CUDA header here.
int mvt_cuda_current_stream(int device, void** stream, char* error, size_t error_len) {
  try {
    const auto* guard = c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA);
    auto current = guard->getStream(c10::Device(c10::DeviceType::CUDA,
                                                static_cast<c10::DeviceIndex>(device)));
    *stream = guard->getStreamNativeHandle(current);
    return 0;
  } catch (const std::exception& e) {
    copy_message(e.what(), error, error_len);
    return 1;
  }
}

// Starts a new peak: the peaks become the current values.
int mvt_cuda_reset_peak_memory(int device, char* error, size_t error_len) {
  try {
    c10::getDeviceAllocator(c10::DeviceType::CUDA)
        ->resetPeakStats(static_cast<c10::DeviceIndex>(device));
    return 0;
  } catch (const std::exception& e) {
    copy_message(e.what(), error, error_len);
    return 1;
  }
}

// The fused-attention kernels scaled_dot_product_attention may choose, as bits: 1 flash,
// 2 memory-efficient, 4 math, 8 cuDNN. Global to the process, like torch.backends.cuda.*.
int mvt_set_sdp_backends(int mask, char* error, size_t error_len) {
  try {
    auto& ctx = at::globalContext();
    ctx.setSDPUseFlash(mask & 1);
    ctx.setSDPUseMemEfficient(mask & 2);
    ctx.setSDPUseMath(mask & 4);
    ctx.setSDPUseCuDNN(mask & 8);
    return 0;
  } catch (const std::exception& e) {
    copy_message(e.what(), error, error_len);
    return 1;
  }
}

int mvt_sdp_backends() {
  auto& ctx = at::globalContext();
  return (ctx.userEnabledFlashSDP() ? 1 : 0) | (ctx.userEnabledMemEfficientSDP() ? 2 : 0) |
         (ctx.userEnabledMathSDP() ? 4 : 0) | (ctx.userEnabledCuDNNSDP() ? 8 : 0);
}

// Mixed precision on this thread: autocast for `cuda` (else the CPU) on or off, computing in
// `scalar_type` (a c10::ScalarType value).
int mvt_set_autocast(int cuda, int enabled, int scalar_type, char* error, size_t error_len) {
  try {
    const auto device = cuda ? at::kCUDA : at::kCPU;
    at::autocast::set_autocast_dtype(device, static_cast<at::ScalarType>(scalar_type));
    at::autocast::set_autocast_enabled(device, enabled != 0);
    return 0;
  } catch (const std::exception& e) {
    copy_message(e.what(), error, error_len);
    return 1;
  }
}

}  // extern "C"
