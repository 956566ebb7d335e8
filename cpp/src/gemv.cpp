// Matrix-vector kernels with run-time CPU dispatch (AVX-512, AVX2+FMA, portable), for small batches.
//
// y_r[i] = W[i, :] · x_r: a few weight rows at a time are streamed once against every x_r (which
// stay in L1), with one vector accumulator per (row, vector) pair and a horizontal sum at the end.
// Reading W's rows in place beats a transposed copy twice over: a transposed [k, m] copy is read
// a stride apart (half the L2 bandwidth, measured 10.7 vs 6 us for 512 KB at 1 thread), and
// making any copy costs a call as much as 100 steps of the product. The wide versions are compiled
// for their instruction sets through target attributes (no Eigen inside, so nothing compiled for
// AVX-512 can leak into code that runs on older CPUs), and picked once with
// __builtin_cpu_supports.
#include "gemv.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define RNNCORE_X86_DISPATCH 1
#endif

namespace rnncore::detail {
namespace {

template <typename T>
void gemv_rows_portable(std::ptrdiff_t m, std::ptrdiff_t k, const T* W, std::ptrdiff_t ldw, int n,
                        const T* const* x, T* y, std::ptrdiff_t ldy, bool accumulate) {
  for (std::ptrdiff_t i = 0; i < m; ++i) {
    const T* w = W + i * ldw;
    for (int r = 0; r < n; ++r) {
      T acc = 0;
      for (std::ptrdiff_t j = 0; j < k; ++j) acc += w[j] * x[r][j];
      T& out = y[r * ldy + i];
      out = accumulate ? out + acc : acc;
    }
  }
}

#ifdef RNNCORE_X86_DISPATCH
// NO weight rows against NR vectors: NO*NR accumulators of 16 lanes; the tail of k masked.
template <int NR, int NO>
__attribute__((target("avx512f"))) inline void dots_avx512(std::ptrdiff_t no, std::ptrdiff_t k,
                                                           const float* W, std::ptrdiff_t ldw,
                                                           const float* const* x, float* y,
                                                           std::ptrdiff_t ldy, bool accumulate) {
  __m512 acc[NO][NR];
  for (int o = 0; o < NO; ++o)
    for (int r = 0; r < NR; ++r) acc[o][r] = _mm512_setzero_ps();
  // Rows past `no` (the last block of m) re-read row 0 and are dropped at the end.
  const float* w[NO];
  for (int o = 0; o < NO; ++o) w[o] = W + (o < no ? o : 0) * ldw;
  std::ptrdiff_t j = 0;
  for (; j + 16 <= k; j += 16) {
    __m512 xv[NR];
    for (int r = 0; r < NR; ++r) xv[r] = _mm512_loadu_ps(x[r] + j);
    for (int o = 0; o < NO; ++o) {
      const __m512 wv = _mm512_loadu_ps(w[o] + j);
      for (int r = 0; r < NR; ++r) acc[o][r] = _mm512_fmadd_ps(wv, xv[r], acc[o][r]);
    }
  }
  if (j < k) {
    const __mmask16 mask = static_cast<__mmask16>((1u << (k - j)) - 1u);
    __m512 xv[NR];
    for (int r = 0; r < NR; ++r) xv[r] = _mm512_maskz_loadu_ps(mask, x[r] + j);
    for (int o = 0; o < NO; ++o) {
      const __m512 wv = _mm512_maskz_loadu_ps(mask, w[o] + j);
      for (int r = 0; r < NR; ++r) acc[o][r] = _mm512_fmadd_ps(wv, xv[r], acc[o][r]);
    }
  }
  for (int o = 0; o < no; ++o)
    for (int r = 0; r < NR; ++r) {
      const float s = _mm512_reduce_add_ps(acc[o][r]);
      float& out = y[r * ldy + o];
      out = accumulate ? out + s : s;
    }
}

template <int NR>
__attribute__((target("avx512f"))) void gemv_rows_avx512_n(std::ptrdiff_t m, std::ptrdiff_t k,
                                                            const float* W, std::ptrdiff_t ldw,
                                                            const float* const* x, float* y,
                                                            std::ptrdiff_t ldy, bool accumulate) {
  constexpr int NO = NR <= 2 ? 8 : 4;  // 8 or 16 accumulators, 8 or more chains of FMAs
  for (std::ptrdiff_t i = 0; i < m; i += NO) {
    const std::ptrdiff_t no = m - i < NO ? m - i : NO;
    dots_avx512<NR, NO>(no, k, W + i * ldw, ldw, x, y + i, ldy, accumulate);
  }
}

__attribute__((target("avx512f"))) void gemv_rows_avx512(std::ptrdiff_t m, std::ptrdiff_t k,
                                                          const float* W, std::ptrdiff_t ldw,
                                                          int n, const float* const* x, float* y,
                                                          std::ptrdiff_t ldy, bool accumulate) {
  switch (n) {
    case 1: return gemv_rows_avx512_n<1>(m, k, W, ldw, x, y, ldy, accumulate);
    case 2: return gemv_rows_avx512_n<2>(m, k, W, ldw, x, y, ldy, accumulate);
    case 3: return gemv_rows_avx512_n<3>(m, k, W, ldw, x, y, ldy, accumulate);
    default: return gemv_rows_avx512_n<4>(m, k, W, ldw, x, y, ldy, accumulate);
  }
}

// The same with 8 lanes; the tail of k in scalar code.
template <int NR>
__attribute__((target("avx2,fma"))) void gemv_rows_avx2_n(std::ptrdiff_t m, std::ptrdiff_t k,
                                                           const float* W, std::ptrdiff_t ldw,
                                                           const float* const* x, float* y,
                                                           std::ptrdiff_t ldy, bool accumulate) {
  constexpr int NO = 4;
  const std::ptrdiff_t k8 = k - k % 8;
  for (std::ptrdiff_t i = 0; i < m; i += NO) {
    const std::ptrdiff_t no = m - i < NO ? m - i : NO;
    __m256 acc[NO][NR];
    for (int o = 0; o < NO; ++o)
      for (int r = 0; r < NR; ++r) acc[o][r] = _mm256_setzero_ps();
    const float* w[NO];
    for (int o = 0; o < NO; ++o) w[o] = W + (i + (o < no ? o : 0)) * ldw;
    for (std::ptrdiff_t j = 0; j < k8; j += 8) {
      __m256 xv[NR];
      for (int r = 0; r < NR; ++r) xv[r] = _mm256_loadu_ps(x[r] + j);
      for (int o = 0; o < NO; ++o) {
        const __m256 wv = _mm256_loadu_ps(w[o] + j);
        for (int r = 0; r < NR; ++r) acc[o][r] = _mm256_fmadd_ps(wv, xv[r], acc[o][r]);
      }
    }
    for (int o = 0; o < no; ++o)
      for (int r = 0; r < NR; ++r) {
        alignas(32) float lanes[8];
        _mm256_store_ps(lanes, acc[o][r]);
        float s = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) +
                  ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
        for (std::ptrdiff_t j = k8; j < k; ++j) s += w[o][j] * x[r][j];
        float& out = y[r * ldy + i + o];
        out = accumulate ? out + s : s;
      }
  }
}

__attribute__((target("avx2,fma"))) void gemv_rows_avx2(std::ptrdiff_t m, std::ptrdiff_t k,
                                                         const float* W, std::ptrdiff_t ldw, int n,
                                                         const float* const* x, float* y,
                                                         std::ptrdiff_t ldy, bool accumulate) {
  switch (n) {
    case 1: return gemv_rows_avx2_n<1>(m, k, W, ldw, x, y, ldy, accumulate);
    case 2: return gemv_rows_avx2_n<2>(m, k, W, ldw, x, y, ldy, accumulate);
    case 3: return gemv_rows_avx2_n<3>(m, k, W, ldw, x, y, ldy, accumulate);
    default: return gemv_rows_avx2_n<4>(m, k, W, ldw, x, y, ldy, accumulate);
  }
}
#endif

using GemvF = void (*)(std::ptrdiff_t, std::ptrdiff_t, const float*, std::ptrdiff_t, int,
                       const float* const*, float*, std::ptrdiff_t, bool);

GemvF pick_gemv() {
#ifdef RNNCORE_X86_DISPATCH
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return gemv_rows_avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return gemv_rows_avx2;
#endif
  return gemv_rows_portable<float>;
}

}  // namespace

void gemv_rows(std::ptrdiff_t m, std::ptrdiff_t k, const float* W, std::ptrdiff_t ldw, int n,
               const float* const* x, float* y, std::ptrdiff_t ldy, bool accumulate) {
  static const GemvF impl = pick_gemv();
  if (m <= 0 || n <= 0) return;
  impl(m, k, W, ldw, n, x, y, ldy, accumulate);
}

void gemv_rows(std::ptrdiff_t m, std::ptrdiff_t k, const double* W, std::ptrdiff_t ldw, int n,
               const double* const* x, double* y, std::ptrdiff_t ldy, bool accumulate) {
  if (m <= 0 || n <= 0) return;
  gemv_rows_portable<double>(m, k, W, ldw, n, x, y, ldy, accumulate);
}

}  // namespace rnncore::detail
