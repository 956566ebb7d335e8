// Engine-wide settings: devices, threads, and the GEMM backend (Eigen built in, or a CBLAS
// registered at run time).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace rnncore {

/// Where a layer's parameters live and its kernels run. kCudaSim runs the CUDA backend's
/// algorithm on the CPU (host memory, loops, a reference GEMM): slow, for testing that backend on
/// machines without a GPU.
enum class Device : int { kCpu = 0, kCuda = 1, kCudaSim = 2 };

/// "cpu", "cuda" (PyTorch's spellings; "cuda:0" names the first GPU) or "cuda-sim". Throws
/// std::invalid_argument naming the accepted values for anything else.
Device parse_device(const std::string& name);
/// "cpu", "cuda" or "cuda-sim".
const char* device_name(Device device);
/// True when this build has the CUDA backend. A build without it answers every request for
/// Device::kCuda with std::runtime_error saying so.
bool has_cuda();
/// The number of CUDA devices visible (0 without the CUDA backend or without a GPU).
int cuda_device_count();
/// The CUDA backend loads cuBLAS at run time, by default the system's libcublas.so.13; this
/// loads the one at `path` instead (e.g. the nvidia-cublas wheel's), before the first GPU layer.
/// Returns the path; std::runtime_error if it cannot be loaded or without the CUDA backend.
std::string load_cublas(const std::string& path);
/// Throws std::runtime_error when `device` is not available: CUDA in a build without it, or
/// with no GPU visible.
void require_device(Device device);

/// Memory of a GPU device (kCuda, or kCudaSim's host memory) for arrays that cross the API, such
/// as Python's rnncore.cuda.DeviceArray: `bytes` from the backend's allocator (on CUDA its cache
/// of freed blocks), returned to it when the last copy of the pointer goes. Its contents are
/// undefined until written. std::invalid_argument for kCpu; require_device's errors.
std::shared_ptr<void> device_alloc(Device device, std::size_t bytes);
/// Where a device_copy reads and writes.
enum class CopyKind : int { kHostToDevice = 0, kDeviceToHost = 1, kDeviceToDevice = 2 };
/// Copies `bytes` between host and device memory of `device` (kCuda: cudaMemcpy, in order with
/// the backend's work on the legacy default stream; a copy to the host waits for it).
void device_copy(Device device, void* dst, const void* src, std::size_t bytes, CopyKind kind);
/// Sets `bytes` of device memory of `device` to zero (kCuda: cudaMemset, queued in order).
void device_zero(Device device, void* p, std::size_t bytes);
/// Swaps the first two axes of a [n0, n1, n2] array on the device: dst[j, i, :] = src[i, j, :],
/// elements of `elem_bytes` (4 or 8); dst and src must not overlap. (Time-major <-> batch-first.)
void device_swap01(Device device, void* dst, const void* src, std::int64_t n0, std::int64_t n1,
                   std::int64_t n2, int elem_bytes);
/// Waits until the device has finished the work enqueued so far (kCuda: cudaDeviceSynchronize;
/// nothing to wait for on kCudaSim). With a CUDA stream handle, waits for that stream only.
void device_synchronize(Device device, std::uintptr_t stream = 0);

/// Threads used by the engine (OpenMP). n >= 1; returns the previous value.
int set_num_threads(int n);
int get_num_threads();
/// True when built with OpenMP.
bool has_openmp();

/// Whether the engine's threads flush denormal floats to zero while it computes (FTZ/DAZ on x86;
/// on by default). A gradient decaying through many steps (a loss at the last step only) turns
/// denormal, and x86 computes on denormals ~100x slower; flushing loses only values below
/// 1.2e-38 (float). false keeps IEEE arithmetic. Returns the previous setting. The mode is set
/// per engine call and restored after it: the caller's threads are unaffected.
bool set_flush_denormals(bool on);
bool flush_denormals();

/// CBLAS row-major GEMM signatures (cblas_sgemm / cblas_dgemm with int arguments).
using SgemmFn = void (*)(int order, int trans_a, int trans_b, int m, int n, int k, float alpha,
                         const float* a, int lda, const float* b, int ldb, float beta, float* c,
                         int ldc);
using DgemmFn = void (*)(int order, int trans_a, int trans_b, int m, int n, int k, double alpha,
                         const double* a, int lda, const double* b, int ldb, double beta, double* c,
                         int ldc);

/// Route the engine's matrix products to a CBLAS (e.g. OpenBLAS). The library must be
/// single-threaded (the engine splits every product across its own OpenMP threads). Passing
/// nullptr for both returns to the built-in Eigen kernels. `name` is reported by gemm_backend().
void set_blas(SgemmFn sgemm, DgemmFn dgemm, const std::string& name);
/// "eigen" or the name given to set_blas.
std::string gemm_backend();
/// Loads a CBLAS shared library at run time (an OpenBLAS, or the scipy-openblas wheel's, whose
/// symbols are prefixed "scipy_"), sets it to one thread and routes the engine's products to it
/// (set_blas); returns gemm_backend(). Throws std::runtime_error naming the file when it cannot be
/// loaded or has no cblas_sgemm / cblas_dgemm. Python's rnncore does the same at import.
std::string load_blas(const std::string& path);

}  // namespace rnncore
