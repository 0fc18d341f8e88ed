// The drop-in's native hot path (kernels/native.py): one kept Triton kernel launched from C++,
// with its backward as a C++ autograd node.
//
// Why: per call, the Python hot path spends ~8 us more host time than F.dropout in
// torch.autograd.Function's machinery and Triton's Python launcher, and its backward runs
// Python on autograd's device thread. Here a call is one pybind call: draw (key, offset) from
// torch's CUDA generator, allocate the output, cuLaunchKernel the compiled Triton kernel with the
// kept arguments, and attach a C++ node whose backward launches the same kernel with the same
// (key, offset) on the gradient.
//
// Needs no CUDA headers: libcuda's cuLaunchKernel is looked up at run time, as Triton's own
// launcher does, and the current stream comes from c10's device-generic stream API.

#include <dlfcn.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include <ATen/Context.h>
#include <c10/core/DeviceType.h>
#include <c10/core/impl/VirtualGuardImpl.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/extension.h>

namespace {

using CUresult = int;
using LaunchKernel = CUresult (*)(void* function, unsigned grid_x, unsigned grid_y, unsigned grid_z,
                                  unsigned block_x, unsigned block_y, unsigned block_z, unsigned shared_bytes,
                                  void* stream, void** params, void** extra);
using GetErrorString = CUresult (*)(CUresult error, const char** text);
using CtxGetCurrent = CUresult (*)(void** context);
using CtxSetCurrent = CUresult (*)(void* context);
using DeviceGet = CUresult (*)(int* device, int ordinal);
using PrimaryCtxRetain = CUresult (*)(void** context, int device);

struct Driver {
  LaunchKernel launch_kernel = nullptr;
  GetErrorString error_string = nullptr;
  CtxGetCurrent context_get = nullptr;
  CtxSetCurrent context_set = nullptr;
  DeviceGet device_get = nullptr;
  PrimaryCtxRetain primary_context = nullptr;
};

const Driver& driver() {
  static const Driver found = [] {
    Driver symbols;
    void* library = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
    if (library == nullptr) throw std::runtime_error("dropbench native launch: cannot open libcuda.so.1");
    symbols.launch_kernel = reinterpret_cast<LaunchKernel>(dlsym(library, "cuLaunchKernel"));
    symbols.error_string = reinterpret_cast<GetErrorString>(dlsym(library, "cuGetErrorString"));
    symbols.context_get = reinterpret_cast<CtxGetCurrent>(dlsym(library, "cuCtxGetCurrent"));
    symbols.context_set = reinterpret_cast<CtxSetCurrent>(dlsym(library, "cuCtxSetCurrent"));
    symbols.device_get = reinterpret_cast<DeviceGet>(dlsym(library, "cuDeviceGet"));
    symbols.primary_context = reinterpret_cast<PrimaryCtxRetain>(dlsym(library, "cuDevicePrimaryCtxRetain"));
    if (symbols.launch_kernel == nullptr || symbols.context_get == nullptr || symbols.context_set == nullptr ||
        symbols.device_get == nullptr || symbols.primary_context == nullptr)
      throw std::runtime_error("dropbench native launch: libcuda.so.1 lacks cuLaunchKernel or the context calls");
    return symbols;
  }();
  return found;
}

[[noreturn]] void fail(const Driver& cuda, const char* call, CUresult status) {
  const char* text = "unknown error";
  if (cuda.error_string != nullptr) cuda.error_string(status, &text);
  throw std::runtime_error(std::string("dropbench native launch: ") + call + " failed: " + text);
}

// Make `device`'s primary context current on this thread where none is. Autograd's device thread
// never called the driver (torch skips cudaSetDevice to the device already selected), so a
// backward launched there would find no context; Triton's own launcher does the same check.
void make_context_current(const Driver& cuda, int device) {
  void* context = nullptr;
  CUresult status = cuda.context_get(&context);
  if (status != 0) fail(cuda, "cuCtxGetCurrent", status);
  if (context != nullptr) return;
  int handle = 0;
  if ((status = cuda.device_get(&handle, device)) != 0) fail(cuda, "cuDeviceGet", status);
  if ((status = cuda.primary_context(&context, handle)) != 0) fail(cuda, "cuDevicePrimaryCtxRetain", status);
  if ((status = cuda.context_set(context)) != 0) fail(cuda, "cuCtxSetCurrent", status);
}

// What fills each kernel parameter: the input, the output, the per-call key and offset, or a
// value fixed when the launch was kept. Widths are 4 or 8 bytes (Triton's i32/u32/fp32 bits,
// i64/u64 and pointers).
enum Role : int64_t { kInput = 0, kOutput = 1, kKey = 2, kOffset = 3, kFixed = 4 };
// Parameters of the longest launch kept (the element, tiles and runs kernels have 11 to 18).
constexpr size_t kMaxParameters = 30;

class NativeLaunch {
 public:
  NativeLaunch(int64_t function, int64_t grid, int64_t threads, int64_t shared_bytes, bool aligned,
               std::vector<int64_t> roles, std::vector<int64_t> widths, std::vector<int64_t> values)
      : function_(reinterpret_cast<void*>(function)),
        grid_(static_cast<unsigned>(grid)),
        threads_(static_cast<unsigned>(threads)),
        shared_bytes_(static_cast<unsigned>(shared_bytes)),
        aligned_(aligned),
        roles_(std::move(roles)),
        widths_(std::move(widths)),
        values_(std::move(values)) {
    if (roles_.size() != widths_.size() || roles_.size() != values_.size())
      throw std::invalid_argument("roles, widths and values must have one entry per kernel parameter");
    if (roles_.size() > kMaxParameters)
      throw std::invalid_argument("a kernel of at most " + std::to_string(kMaxParameters) + " parameters");
    for (size_t i = 0; i < roles_.size(); ++i) {
      if (roles_[i] < kInput || roles_[i] > kFixed)
        throw std::invalid_argument("role must be 0 (input), 1 (output), 2 (key), 3 (offset) or 4 (fixed)");
      if (widths_[i] != 4 && widths_[i] != 8) throw std::invalid_argument("width must be 4 or 8 bytes");
    }
  }

  // The kernel on `x` (contiguous, x's device current) into a new tensor: the mask of (key, offset).
  at::Tensor run(const at::Tensor& x, int64_t key, int64_t offset) const {
    at::Tensor out = at::empty(x.sizes(), x.options());
    std::array<uint64_t, kMaxParameters + 2> slots{};  // + Triton's global and profile scratch (null)
    std::array<void*, kMaxParameters + 2> params{};
    for (size_t i = 0; i < roles_.size(); ++i) {
      int64_t value = values_[i];
      switch (roles_[i]) {
        case kInput: value = reinterpret_cast<int64_t>(x.data_ptr()); break;
        case kOutput: value = reinterpret_cast<int64_t>(out.data_ptr()); break;
        case kKey: value = key; break;
        case kOffset: value = offset; break;
        default: break;
      }
      if (widths_[i] == 4) {
        uint32_t low = static_cast<uint32_t>(value);
        std::memcpy(&slots[i], &low, sizeof(low));
      } else {
        std::memcpy(&slots[i], &value, sizeof(value));
      }
    }
    for (size_t i = 0; i < roles_.size() + 2; ++i) params[i] = &slots[i];
    c10::impl::VirtualGuardImpl guard(c10::DeviceType::CUDA);
    void* stream = guard.getStream(x.device()).native_handle();
    const Driver& cuda = driver();
    make_context_current(cuda, x.get_device());
    CUresult status = cuda.launch_kernel(function_, grid_, 1, 1, threads_, 1, 1, shared_bytes_, stream,
                                         params.data(), nullptr);
    if (status != 0) fail(cuda, "cuLaunchKernel", status);
    return out;
  }

  // Whether the kept launch takes `tensor` as it took x (contiguous; 16-byte aligned where x was).
  bool fits(const at::Tensor& tensor) const {
    return tensor.is_contiguous() && (!aligned_ || reinterpret_cast<uintptr_t>(tensor.data_ptr()) % 16 == 0);
  }

 private:
  void* function_;
  unsigned grid_, threads_, shared_bytes_;
  bool aligned_;
  std::vector<int64_t> roles_, widths_, values_;
};

// Backward of a native call: the same kernel, key and offset on the gradient (nothing saved but ints).
struct NativeDropoutBackward : public torch::autograd::Node {
  std::shared_ptr<NativeLaunch> launch;
  int64_t key = 0, offset = 0;

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    const at::Tensor& grad = grads[0];
    if (!grad.defined()) return {at::Tensor()};
    at::Tensor taken = launch->fits(grad) ? grad : grad.clone(at::MemoryFormat::Contiguous);
    return {launch->run(taken, key, offset)};
  }

  std::string name() const override { return "NativeDropoutBackward"; }
};

// A new autograd node: torch 2.13 holds nodes in c10::intrusive_ptr, earlier releases in std::shared_ptr.
template <typename NodeType>
auto make_node() {
  if constexpr (std::is_base_of_v<c10::intrusive_ptr_target, NodeType>) {
    return c10::make_intrusive<NodeType>();
  } else {
    return std::make_shared<NodeType>();
  }
}

// y = the kept kernel on x; with autograd recording, y's grad_fn is a NativeDropoutBackward.
at::Tensor launch_with_backward(const std::shared_ptr<NativeLaunch>& launch, const at::Tensor& x, int64_t key,
                                int64_t offset) {
  at::Tensor out = launch->run(x, key, offset);
  if (at::GradMode::is_enabled() && x.requires_grad()) {
    auto node = make_node<NativeDropoutBackward>();
    node->launch = launch;
    node->key = key;
    node->offset = offset;
    node->set_next_edges(torch::autograd::collect_next_edges(x));
    torch::autograd::set_history(out, node);
  }
  return out;
}

// The kept launches for one class of input (kernels.hot_path: shape, dtype, device, p, alignment), by
// the stream class a (key, offset) falls in: a call draws its (key, offset) from torch's CUDA generator
// and launches here, as KeptLaunches.take draws in Python (kernels.rng.torch_stream), one pybind call.
class NativeClasses {
 public:
  NativeClasses(int64_t numel, int64_t advance) : numel_(numel), advance_(static_cast<uint64_t>(advance)) {
    if (numel < 0 || advance < 0) throw std::invalid_argument("numel and advance must be >= 0");
  }

  // Keep `launch` for keys that fit int32 (narrow_key) or not, offsets that start a Philox counter
  // (aligned) or not, and wide stream indices or not (RepeatLaunches.offset_class).
  void keep(bool narrow_key, bool aligned, bool wide, std::shared_ptr<NativeLaunch> launch) {
    slots_[index(narrow_key, aligned, wide)] = std::move(launch);
  }

  // The kept launch for the generator's next (key, offset) and the call's output, the generator moved
  // on by `advance`; or nothing, the generator untouched, when no launch is kept for that class.
  std::optional<at::Tensor> dropout(const at::Tensor& x) const;

 private:
  static size_t index(bool narrow_key, bool aligned, bool wide) {
    return (narrow_key ? 4 : 0) + (aligned ? 2 : 0) + (wide ? 1 : 0);
  }

  int64_t numel_;
  uint64_t advance_;
  std::array<std::shared_ptr<NativeLaunch>, 8> slots_;
};

std::optional<at::Tensor> NativeClasses::dropout(const at::Tensor& x) const {
  constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
  constexpr int64_t kInt32Min = std::numeric_limits<int32_t>::min();
  at::Generator generator = at::globalContext().defaultGenerator(x.device());
  int64_t key = 0, offset = 0;
  std::shared_ptr<NativeLaunch> launch;
  {
    std::lock_guard<std::mutex> lock(generator.mutex());
    uint64_t generator_offset = generator.get_offset();
    if (generator_offset > static_cast<uint64_t>(std::numeric_limits<int64_t>::max() / 4)) return std::nullopt;
    key = static_cast<int64_t>(generator.current_seed());  // the seed's bits as int64 (contract.as_int64_bits)
    offset = 2 * static_cast<int64_t>(generator_offset);  // a stream offset is twice torch's (rng.torch_stream)
    bool wide = offset > kInt32Max;
    if (!wide && offset + numel_ > kInt32Max) return std::nullopt;  // the op decides: the Python path does
    launch = slots_[index(kInt32Min <= key && key <= kInt32Max, offset % 8 == 0, wide)];
    if (launch == nullptr) return std::nullopt;
    generator.set_offset(generator_offset + advance_);
  }
  return launch_with_backward(launch, x, key, offset);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.doc() = "dropbench's native hot path: a kept Triton launch and its C++ autograd node";
  pybind11::class_<NativeLaunch, std::shared_ptr<NativeLaunch>>(module, "NativeLaunch")
      .def(pybind11::init<int64_t, int64_t, int64_t, int64_t, bool, std::vector<int64_t>, std::vector<int64_t>,
                          std::vector<int64_t>>(),
           pybind11::arg("function"), pybind11::arg("grid"), pybind11::arg("threads"),
           pybind11::arg("shared_bytes"), pybind11::arg("aligned"), pybind11::arg("roles"),
           pybind11::arg("widths"), pybind11::arg("values"))
      .def("fits", &NativeLaunch::fits);
  pybind11::class_<NativeClasses, std::shared_ptr<NativeClasses>>(module, "NativeClasses")
      .def(pybind11::init<int64_t, int64_t>(), pybind11::arg("numel"), pybind11::arg("advance"))
      .def("keep", &NativeClasses::keep, pybind11::arg("narrow_key"), pybind11::arg("aligned"),
           pybind11::arg("wide"), pybind11::arg("launch"))
      .def("dropout", &NativeClasses::dropout, "x's dropout with the stream drawn from torch's generator, or None",
           pybind11::arg("x"));
}
