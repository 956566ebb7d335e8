// Matrix-vector kernels with run-time CPU dispatch (AVX-512, AVX2+FMA, portable), for small batches.
//
// y[0:m] = Σ_j x[j] · Wt[j, 0:m]: a block of y stays in registers while every x[j] is broadcast
// and multiplied into one contiguous run of the transposed weight. The wide versions are compiled
// for their instruction sets through target attributes (no Eigen inside, so nothing compiled for
// AVX-512 can leak into code that runs on older CPUs), and picked once with __builtin_cpu_supports.
#include "gemv.h"

#include <cstdint>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define RNNCORE_X86_DISPATCH 1
#endif

namespace rnncore::detail {
namespace {

template <typename T>
void gemv_t_portable(std::ptrdiff_t m, std::ptrdiff_t k, const T* Wt, std::ptrdiff_t ldw,
                     const T* x, T* y, bool accumulate) {
  constexpr std::ptrdiff_t kBlock = 64;
  for (std::ptrdiff_t i0 = 0; i0 < m; i0 += kBlock) {
    const std::ptrdiff_t n = m - i0 < kBlock ? m - i0 : kBlock;
    T acc[kBlock];
    for (std::ptrdiff_t i = 0; i < n; ++i) acc[i] = accumulate ? y[i0 + i] : T(0);
    for (std::ptrdiff_t j = 0; j < k; ++j) {
      const T xj = x[j];
      const T* w = Wt + j * ldw + i0;
      for (std::ptrdiff_t i = 0; i < n; ++i) acc[i] += xj * w[i];
    }
    for (std::ptrdiff_t i = 0; i < n; ++i) y[i0 + i] = acc[i];
  }
}

#ifdef RNNCORE_X86_DISPATCH
// 8 accumulators of 16 floats: a block of 128 outputs per pass over x.
__attribute__((target("avx512f"))) void gemv_t_avx512(std::ptrdiff_t m, std::ptrdiff_t k,
                                                       const float* Wt, std::ptrdiff_t ldw,
                                                       const float* x, float* y,
                                                       bool accumulate) {
  std::ptrdiff_t i0 = 0;
  for (; i0 + 128 <= m; i0 += 128) {
    __m512 a[8];
    for (int q = 0; q < 8; ++q)
      a[q] = accumulate ? _mm512_loadu_ps(y + i0 + 16 * q) : _mm512_setzero_ps();
    for (std::ptrdiff_t j = 0; j < k; ++j) {
      const __m512 xb = _mm512_set1_ps(x[j]);
      const float* w = Wt + j * ldw + i0;
      for (int q = 0; q < 8; ++q) a[q] = _mm512_fmadd_ps(_mm512_loadu_ps(w + 16 * q), xb, a[q]);
    }
    for (int q = 0; q < 8; ++q) _mm512_storeu_ps(y + i0 + 16 * q, a[q]);
  }
  for (; i0 < m; i0 += 16) {  // the rest, 16 (or fewer, masked) at a time
    const std::ptrdiff_t n = m - i0 < 16 ? m - i0 : 16;
    const __mmask16 mask = static_cast<__mmask16>((1u << n) - 1u);
    __m512 a = accumulate ? _mm512_maskz_loadu_ps(mask, y + i0) : _mm512_setzero_ps();
    for (std::ptrdiff_t j = 0; j < k; ++j)
      a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, Wt + j * ldw + i0), _mm512_set1_ps(x[j]), a);
    _mm512_mask_storeu_ps(y + i0, mask, a);
  }
}

// 8 accumulators of 8 floats: a block of 64 outputs per pass over x.
__attribute__((target("avx2,fma"))) void gemv_t_avx2(std::ptrdiff_t m, std::ptrdiff_t k,
                                                      const float* Wt, std::ptrdiff_t ldw,
                                                      const float* x, float* y, bool accumulate) {
  std::ptrdiff_t i0 = 0;
  for (; i0 + 64 <= m; i0 += 64) {
    __m256 a[8];
    for (int q = 0; q < 8; ++q)
      a[q] = accumulate ? _mm256_loadu_ps(y + i0 + 8 * q) : _mm256_setzero_ps();
    for (std::ptrdiff_t j = 0; j < k; ++j) {
      const __m256 xb = _mm256_set1_ps(x[j]);
      const float* w = Wt + j * ldw + i0;
      for (int q = 0; q < 8; ++q) a[q] = _mm256_fmadd_ps(_mm256_loadu_ps(w + 8 * q), xb, a[q]);
    }
    for (int q = 0; q < 8; ++q) _mm256_storeu_ps(y + i0 + 8 * q, a[q]);
  }
  if (i0 < m) gemv_t_portable<float>(m - i0, k, Wt + i0, ldw, x, y + i0, accumulate);
}
#endif

using GemvF = void (*)(std::ptrdiff_t, std::ptrdiff_t, const float*, std::ptrdiff_t, const float*,
                       float*, bool);

GemvF pick_gemv() {
#ifdef RNNCORE_X86_DISPATCH
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return gemv_t_avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return gemv_t_avx2;
#endif
  return gemv_t_portable<float>;
}

}  // namespace

void gemv_t(std::ptrdiff_t m, std::ptrdiff_t k, const float* Wt, std::ptrdiff_t ldw,
            const float* x, float* y, bool accumulate) {
  static const GemvF impl = pick_gemv();
  impl(m, k, Wt, ldw, x, y, accumulate);
}

void gemv_t(std::ptrdiff_t m, std::ptrdiff_t k, const double* Wt, std::ptrdiff_t ldw,
            const double* x, double* y, bool accumulate) {
  gemv_t_portable<double>(m, k, Wt, ldw, x, y, accumulate);
}

}  // namespace rnncore::detail
