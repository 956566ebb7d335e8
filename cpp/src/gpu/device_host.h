// The host device policy of the GPU backend's algorithm (gpu/sequence_gpu.h): plain memory,
// loops for the kernels and a column-major reference GEMM with cuBLAS's argument convention, so
// that the algorithm, its indexing and its GEMM calls run and are tested on a machine without a
// GPU (device "cuda-sim"). Small shapes only: nothing here is fast.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>

namespace rnncore::detail::gpu {

using Index = std::int64_t;

struct HostDevice {
  static constexpr const char* kName = "cuda-sim";

  // New memory is filled with 0xFF bytes (NaN as float or double, -1 as an integer), so that an
  // algorithm that reads device memory it never wrote fails the cuda-sim tests every time rather
  // than when the allocator happens to hand out garbage (cudaMalloc's memory is uninitialised).
  template <typename T>
  T* alloc(std::size_t n) {
    void* p = ::operator new(n * sizeof(T));
    std::memset(p, 0xFF, n * sizeof(T));
    return static_cast<T*>(p);
  }
  static void release(void* p) { ::operator delete(p); }
  void upload(void* dst, const void* src, std::size_t bytes) {
    if (bytes) std::memcpy(dst, src, bytes);
  }
  void download(void* dst, const void* src, std::size_t bytes) {
    if (bytes) std::memcpy(dst, src, bytes);
  }
  void copy(void* dst, const void* src, std::size_t bytes) {
    if (bytes) std::memmove(dst, src, bytes);
  }
  void zero(void* p, std::size_t bytes) {
    if (bytes) std::memset(p, 0, bytes);
  }
  // Everything ran when the call returned.
  void synchronize(std::uintptr_t /*stream*/) {}
  // f(i) for i in [0, n): one GPU thread each on the device.
  template <typename F>
  void for_each(Index n, const F& f) {
    for (Index i = 0; i < n; ++i) f(i);
  }
  // out[r] = Σ_j f(r, j) for r in [0, rows), j in [0, n): one GPU block per row on the device.
  template <typename U, typename F>
  void row_sums(Index rows, Index n, U* out, const F& f) {
    for (Index r = 0; r < rows; ++r) {
      U s = U(0);
      for (Index j = 0; j < n; ++j) s += f(r, j);
      out[r] = s;
    }
  }
  // out[r] = max_j f(r, j) (n >= 1). A NaN is skipped unless it comes first (the GPU's tree
  // order differs): a softmax over the row still turns NaN through its sum of exponentials.
  template <typename U, typename F>
  void row_max(Index rows, Index n, U* out, const F& f) {
    for (Index r = 0; r < rows; ++r) {
      U m = f(r, 0);
      for (Index j = 1; j < n; ++j) {
        const U v = f(r, j);
        m = m < v ? v : m;
      }
      out[r] = m;
    }
  }
  // cuBLAS's gemm: column-major C[m, n] = alpha op(A)[m, k] op(B)[k, n] + beta C; beta == 0
  // ignores C's contents.
  template <typename T>
  void gemm_colmajor(bool ta, bool tb, Index m, Index n, Index k, T alpha, const T* A, Index lda,
                     const T* B, Index ldb, T beta, T* C, Index ldc) {
    for (Index j = 0; j < n; ++j)
      for (Index i = 0; i < m; ++i) {
        T acc = T(0);
        for (Index p = 0; p < k; ++p) {
          const T a = ta ? A[p + i * lda] : A[i + p * lda];
          const T b = tb ? B[j + p * ldb] : B[p + j * ldb];
          acc += a * b;
        }
        T& c = C[i + j * ldc];
        c = alpha * acc + (beta == T(0) ? T(0) : beta * c);
      }
  }
};

}  // namespace rnncore::detail::gpu
