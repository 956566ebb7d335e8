// The CUDA backend (built with -DRNNCORE_CUDA=ON): the device policy of gpu/sequence_gpu.h on a
// GPU (cudaMalloc, cuBLAS for the products, one kernel launch per element-wise step), and the
// engine's CUDA queries. The algorithm itself is shared with device "cuda-sim", which the CPU
// test suite checks against the CPU engine.
//
// The CUDA runtime is linked statically; cuBLAS is loaded at run time (dlopen), so a build needs
// only nvcc, and the library comes from the machine or from the nvidia-cublas wheel of the
// `cuda` extra (rnncore's Python side passes its path: load_cublas).
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <cstddef>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "../src/gpu/ops_gpu.h"
#include "../src/gpu/sequence_gpu.h"
#include "rnncore/backend.h"

namespace rnncore {

namespace detail::gpu {
namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(e));
}

// cuBLAS's C interface, the four entry points used (their stable, documented signatures; the
// handle is opaque). Operation: 0 = N, 1 = T.
using CublasCreate = int (*)(void** handle);
using CublasDestroy = int (*)(void* handle);
using CublasSgemm = int (*)(void* handle, int ta, int tb, int m, int n, int k, const float* alpha,
                            const float* A, int lda, const float* B, int ldb, const float* beta,
                            float* C, int ldc);
using CublasDgemm = int (*)(void* handle, int ta, int tb, int m, int n, int k, const double* alpha,
                            const double* A, int lda, const double* B, int ldb, const double* beta,
                            double* C, int ldc);

struct Cublas {
  std::string path;
  CublasCreate create = nullptr;
  CublasDestroy destroy = nullptr;
  CublasSgemm sgemm = nullptr;
  CublasDgemm dgemm = nullptr;
};

std::mutex g_cublas_mu;
Cublas g_cublas;

// Loads cuBLAS from `path` into g_cublas (the lock held); the error, or "" on success.
std::string open_cublas(const std::string& path) {
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) return dlerror();
  Cublas c;
  c.path = path;
  c.create = reinterpret_cast<CublasCreate>(dlsym(lib, "cublasCreate_v2"));
  c.destroy = reinterpret_cast<CublasDestroy>(dlsym(lib, "cublasDestroy_v2"));
  c.sgemm = reinterpret_cast<CublasSgemm>(dlsym(lib, "cublasSgemm_v2"));
  c.dgemm = reinterpret_cast<CublasDgemm>(dlsym(lib, "cublasDgemm_v2"));
  if (!c.create || !c.destroy || !c.sgemm || !c.dgemm) {
    dlclose(lib);
    return "no cublasCreate_v2/cublasSgemm_v2/cublasDgemm_v2 in it";
  }
  g_cublas = c;  // stays loaded
  return "";
}

// The loaded cuBLAS, loading the system's (libcublas.so.13) on first use.
const Cublas& cublas() {
  std::lock_guard<std::mutex> lock(g_cublas_mu);
  if (g_cublas.sgemm) return g_cublas;
  std::string errors;
  for (const char* name : {"libcublas.so.13", "libcublas.so"}) {
    const std::string e = open_cublas(name);
    if (e.empty()) return g_cublas;
    errors += std::string("\n  ") + name + ": " + e;
  }
  throw std::runtime_error(
      "CUDA: cannot load cuBLAS (pip install \"rnncore[cuda]\" brings it; from C++ call "
      "rnncore::load_cublas(path)):" +
      errors);
}

void check(int status, const char* what) {
  if (status != 0)
    throw std::runtime_error(std::string("cuBLAS: ") + what + " failed (status " +
                             std::to_string(status) + ")");
}

// Device memory freed by the backend, kept for reuse by size. Every call allocates a few dozen
// buffers, and cudaFree synchronises the whole device: without reuse each forward and backward
// would wait for the GPU to drain many times over. All work runs on the legacy default stream,
// in order, so a block freed after its last use was enqueued is safe to hand to later work.
// At most kCachedBytes are kept; beyond that blocks go back to the driver.
class BlockCache {
 public:
  void* take(std::size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = free_.find(bytes);
    if (it == free_.end() || it->second.empty()) return nullptr;
    void* p = it->second.back();
    it->second.pop_back();
    cached_ -= bytes;
    return p;
  }
  void give(void* p) {
    std::lock_guard<std::mutex> lock(mu_);
    auto size = sizes_.find(p);
    if (size == sizes_.end() || cached_ + size->second > kCachedBytes) {
      if (size != sizes_.end()) sizes_.erase(size);
      cudaFree(p);
      return;
    }
    free_[size->second].push_back(p);
    cached_ += size->second;
  }
  void note(void* p, std::size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    sizes_[p] = bytes;
  }

 private:
  static constexpr std::size_t kCachedBytes = std::size_t(1) << 30;
  std::mutex mu_;
  std::unordered_map<std::size_t, std::vector<void*>> free_;  // bytes -> free blocks
  std::unordered_map<void*, std::size_t> sizes_;              // every live or cached block
  std::size_t cached_ = 0;
};

BlockCache& block_cache() {
  static BlockCache* cache = new BlockCache;  // never destroyed: blocks may be freed at exit
  return *cache;
}

template <typename F>
__global__ void each_kernel(Index n, F f) {
  const Index i = Index(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) f(i);
}

// out[r] = Σ_j f(r, j): block r strides over its row, then a tree reduction in shared memory.
constexpr int kRowThreads = 256;
template <typename U, typename F>
__global__ void row_sums_kernel(Index n, U* out, F f) {
  __shared__ U part[kRowThreads];
  const Index r = blockIdx.x;
  U s = U(0);
  for (Index j = threadIdx.x; j < n; j += kRowThreads) s += f(r, j);
  part[threadIdx.x] = s;
  __syncthreads();
  for (int w = kRowThreads / 2; w > 0; w /= 2) {
    if (int(threadIdx.x) < w) part[threadIdx.x] += part[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[r] = part[0];
}

// out[r] = max_j f(r, j) (n >= 1): as row_sums_kernel, with max for +.
template <typename U, typename F>
__global__ void row_max_kernel(Index n, U* out, F f) {
  __shared__ U part[kRowThreads];
  const Index r = blockIdx.x;
  U m = f(r, 0);
  for (Index j = threadIdx.x; j < n; j += kRowThreads) {
    const U v = f(r, j);
    m = m < v ? v : m;
  }
  part[threadIdx.x] = m;
  __syncthreads();
  for (int w = kRowThreads / 2; w > 0; w /= 2) {
    if (int(threadIdx.x) < w) {
      const U v = part[threadIdx.x + w];
      part[threadIdx.x] = part[threadIdx.x] < v ? v : part[threadIdx.x];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) out[r] = part[0];
}

}  // namespace

// The device's memory calls and kernel launches (without cuBLAS: arrays crossing the API use
// these alone).
struct CudaMemory {
  template <typename T>
  T* alloc(std::size_t n) {
    const std::size_t bytes = n * sizeof(T);
    if (void* p = block_cache().take(bytes)) return static_cast<T*>(p);
    void* p = nullptr;
    check(cudaMalloc(&p, bytes), "cudaMalloc");
    block_cache().note(p, bytes);
    return static_cast<T*>(p);
  }
  static void release(void* p) { block_cache().give(p); }
  void upload(void* dst, const void* src, std::size_t bytes) {
    if (bytes) check(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "copy to the GPU");
  }
  void download(void* dst, const void* src, std::size_t bytes) {
    if (bytes) check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "copy from the GPU");
  }
  void copy(void* dst, const void* src, std::size_t bytes) {
    if (bytes) check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice), "copy on the GPU");
  }
  void zero(void* p, std::size_t bytes) {
    if (bytes) check(cudaMemset(p, 0, bytes), "cudaMemset");
  }
  template <typename F>
  void for_each(Index n, const F& f) {
    if (n <= 0) return;
    constexpr int kThreads = 256;
    const Index blocks = (n + kThreads - 1) / kThreads;
    each_kernel<<<unsigned(blocks), kThreads>>>(n, f);
    check(cudaGetLastError(), "kernel launch");
  }
  template <typename U, typename F>
  void row_sums(Index rows, Index n, U* out, const F& f) {
    if (rows <= 0) return;
    row_sums_kernel<<<unsigned(rows), kRowThreads>>>(n, out, f);
    check(cudaGetLastError(), "kernel launch");
  }
  template <typename U, typename F>
  void row_max(Index rows, Index n, U* out, const F& f) {
    if (rows <= 0) return;
    row_max_kernel<<<unsigned(rows), kRowThreads>>>(n, out, f);
    check(cudaGetLastError(), "kernel launch");
  }
  // 0: the whole device; otherwise a cudaStream_t handle.
  void synchronize(std::uintptr_t stream) {
    if (stream == 0)
      check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    else
      check(cudaStreamSynchronize(reinterpret_cast<cudaStream_t>(stream)), "cudaStreamSynchronize");
  }
};

struct CudaDevice : CudaMemory {
  static constexpr const char* kName = "cuda";
  const Cublas* lib = nullptr;
  void* blas = nullptr;  // the cuBLAS handle

  CudaDevice() : lib(&cublas()) { check(lib->create(&blas), "cublasCreate"); }
  ~CudaDevice() {
    if (blas) lib->destroy(blas);
  }
  CudaDevice(const CudaDevice&) = delete;
  CudaDevice& operator=(const CudaDevice&) = delete;

  void gemm_colmajor(bool ta, bool tb, Index m, Index n, Index k, float alpha, const float* A,
                     Index lda, const float* B, Index ldb, float beta, float* C, Index ldc) {
    check(lib->sgemm(blas, ta ? 1 : 0, tb ? 1 : 0, int(m), int(n), int(k), &alpha, A, int(lda), B,
                     int(ldb), &beta, C, int(ldc)),
          "sgemm");
  }
  void gemm_colmajor(bool ta, bool tb, Index m, Index n, Index k, double alpha, const double* A,
                     Index lda, const double* B, Index ldb, double beta, double* C, Index ldc) {
    check(lib->dgemm(blas, ta ? 1 : 0, tb ? 1 : 0, int(m), int(n), int(k), &alpha, A, int(lda), B,
                     int(ldb), &beta, C, int(ldc)),
          "dgemm");
  }
};

}  // namespace detail::gpu

namespace detail {

DeviceMemory& cuda_memory() {
  static auto* memory =
      new gpu::MemoryOf<gpu::CudaMemory>;  // never destroyed: arrays may outlive exit
  return *memory;
}

namespace gpu {
// One instance per float type for the process (its cuBLAS handle loaded on first use).
template <typename T>
DeviceOps<T>& cuda_ops() {
  static auto* ops = new OpsOf<T, CudaDevice>;  // never destroyed: work may be queued at exit
  return *ops;
}
template DeviceOps<float>& cuda_ops<float>();
template DeviceOps<double>& cuda_ops<double>();
}  // namespace gpu

template <typename T>
std::unique_ptr<SequenceBackend<T>> make_cuda_sequence(const RecurrentConfig& cfg,
                                                       std::vector<LaneLayout> lanes,
                                                       std::size_t num_params) {
  return std::make_unique<gpu::GpuSequence<T, gpu::CudaDevice>>(cfg, std::move(lanes), num_params);
}

template std::unique_ptr<SequenceBackend<float>> make_cuda_sequence<float>(const RecurrentConfig&,
                                                                           std::vector<LaneLayout>,
                                                                           std::size_t);
template std::unique_ptr<SequenceBackend<double>> make_cuda_sequence<double>(
    const RecurrentConfig&, std::vector<LaneLayout>, std::size_t);

}  // namespace detail

bool has_cuda() { return true; }

std::string load_cublas(const std::string& path) {
  std::lock_guard<std::mutex> lock(detail::gpu::g_cublas_mu);
  const std::string e = detail::gpu::open_cublas(path);
  if (!e.empty()) throw std::runtime_error("load_cublas: cannot load '" + path + "': " + e);
  return path;
}

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" / "no driver" error
    return 0;
  }
  return n;
}

}  // namespace rnncore
