// Engine-wide settings: the thread count and the GEMM backend.
#include "rnncore/backend.h"

#include <Eigen/Core>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>

#include "linalg.h"
#include "sequence.h"

#if defined(__unix__) || defined(__APPLE__)
#include <dlfcn.h>
#define RNNCORE_HAS_DLOPEN 1
#endif

namespace rnncore {
namespace detail {
namespace {
BlasFns g_blas;
std::string g_blas_name = "eigen";
std::mutex g_blas_mu;
}  // namespace
const BlasFns& blas_fns() { return g_blas; }
}  // namespace detail

void set_blas(SgemmFn sgemm, DgemmFn dgemm, const std::string& name) {
  std::lock_guard<std::mutex> lock(detail::g_blas_mu);
  detail::g_blas.s = sgemm;
  detail::g_blas.d = dgemm;
  detail::g_blas_name = (sgemm || dgemm) ? name : "eigen";
}

std::string load_blas(const std::string& path) {
#ifdef RNNCORE_HAS_DLOPEN
  // One thread from the start: the engine splits the products across its own threads, and an
  // OpenBLAS pool started now would compete with them. The variable is put back afterwards.
  const char* saved = std::getenv("OPENBLAS_NUM_THREADS");
  const std::string before = saved ? saved : "";
  setenv("OPENBLAS_NUM_THREADS", "1", 1);
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (saved)
    setenv("OPENBLAS_NUM_THREADS", before.c_str(), 1);
  else
    unsetenv("OPENBLAS_NUM_THREADS");
  if (!lib) throw std::runtime_error("load_blas: cannot load '" + path + "': " + dlerror());
  // The scipy-openblas wheels prefix their symbols; a plain OpenBLAS or CBLAS does not.
  for (const char* prefix : {"scipy_", ""}) {
    auto* s = reinterpret_cast<SgemmFn>(dlsym(lib, (std::string(prefix) + "cblas_sgemm").c_str()));
    auto* d = reinterpret_cast<DgemmFn>(dlsym(lib, (std::string(prefix) + "cblas_dgemm").c_str()));
    if (!s || !d) continue;
    const std::string openblas = std::string(prefix) + "openblas";
    using SetThreads = void (*)(int);
    if (auto* set =
            reinterpret_cast<SetThreads>(dlsym(lib, (openblas + "_set_num_threads").c_str())))
      set(1);
    set_blas(s, d, "cblas (" + path + ")");
    return gemm_backend();  // the library stays loaded: the engine holds its functions
  }
  dlclose(lib);
  throw std::runtime_error("load_blas: '" + path + "' has no cblas_sgemm / cblas_dgemm");
#else
  throw std::runtime_error("load_blas: loading a library at run time is not supported here (" +
                           path + ")");
#endif
}

std::string gemm_backend() {
  std::lock_guard<std::mutex> lock(detail::g_blas_mu);
  return detail::g_blas_name;
}

Device parse_device(const std::string& name) {
  if (name == "cpu") return Device::kCpu;
  if (name == "cuda" || name == "cuda:0") return Device::kCuda;
  if (name == "cuda-sim") return Device::kCudaSim;
  throw std::invalid_argument("device must be 'cpu', 'cuda' or 'cuda-sim', got '" + name + "'");
}

const char* device_name(Device device) {
  switch (device) {
    case Device::kCuda:
      return "cuda";
    case Device::kCudaSim:
      return "cuda-sim";
    default:
      return "cpu";
  }
}

#ifndef RNNCORE_WITH_CUDA
bool has_cuda() { return false; }
int cuda_device_count() { return 0; }
std::string load_cublas(const std::string& path) {
  throw std::runtime_error("load_cublas('" + path +
                           "'): this build of rnncore has no CUDA backend");
}
#endif

void require_device(Device device) {
  if (device != Device::kCuda) return;
  if (!has_cuda())
    throw std::runtime_error(
        "device 'cuda': this build of rnncore has no CUDA backend (built without CUDA); use "
        "device='cpu', or build with -DRNNCORE_CUDA=ON (pip install \".[cuda]\" -C "
        "cmake.define.RNNCORE_CUDA=ON)");
  if (cuda_device_count() < 1)
    throw std::runtime_error(
        "device 'cuda': no CUDA device is visible (rnncore was built with "
        "CUDA, but this machine shows no GPU); use device='cpu'");
}

namespace {

// The memory calls of `device`, checked available; `what` names the caller in errors.
detail::DeviceMemory& memory_of(Device device, const char* what) {
  switch (device) {
    case Device::kCudaSim:
      return detail::sim_memory();
    case Device::kCuda:
      require_device(device);
#ifdef RNNCORE_WITH_CUDA
      return detail::cuda_memory();
#else
      break;  // require_device has thrown
#endif
    default:
      break;
  }
  throw std::invalid_argument(std::string(what) + ": device must be 'cuda' or 'cuda-sim', got '" +
                              device_name(device) + "'");
}

}  // namespace

std::shared_ptr<void> device_alloc(Device device, std::size_t bytes) {
  detail::DeviceMemory& memory = memory_of(device, "device_alloc");
  if (bytes == 0) return nullptr;
  return std::shared_ptr<void>(memory.alloc(bytes), [&memory](void* p) { memory.release(p); });
}

void device_copy(Device device, void* dst, const void* src, std::size_t bytes, CopyKind kind) {
  if (bytes) memory_of(device, "device_copy").copy(dst, src, bytes, kind);
}

void device_zero(Device device, void* p, std::size_t bytes) {
  if (bytes) memory_of(device, "device_zero").zero(p, bytes);
}

void device_swap01(Device device, void* dst, const void* src, std::int64_t n0, std::int64_t n1,
                   std::int64_t n2, int elem_bytes) {
  if (n0 < 0 || n1 < 0 || n2 < 0) throw std::invalid_argument("device_swap01: negative size");
  memory_of(device, "device_swap01").swap01(dst, src, n0, n1, n2, elem_bytes);
}

void device_synchronize(Device device, std::uintptr_t stream) {
  memory_of(device, "device_synchronize").synchronize(stream);
}

int set_num_threads(int n) {
  if (n < 1)
    throw std::invalid_argument("set_num_threads: n must be >= 1, got " + std::to_string(n));
  const int previous = get_num_threads();
#ifdef _OPENMP
  omp_set_num_threads(n);
#endif
  return previous;
}

int get_num_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

bool set_flush_denormals(bool on) { return detail::flush_denormals_flag().exchange(on); }

bool flush_denormals() { return detail::flush_denormals_flag().load(); }

bool has_openmp() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

}  // namespace rnncore
