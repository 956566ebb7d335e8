// The packed-weight GEMM kernel: AVX-512 register tiles of up to 12 rows × 32 columns, compiled
// through a target attribute (no Eigen inside, nothing leaks into code for older CPUs) and used
// only when the CPU has AVX-512F.
#include "packed_gemm.h"

#include <algorithm>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define RNNCORE_PACKED_AVX512 1
#endif

namespace rnncore::detail {

void pack_transposed(PIndex m, PIndex k, const float* W, PIndex ldw, float* out) {
  const PIndex panels = (m + kPanel - 1) / kPanel;
  for (PIndex p = 0; p < panels; ++p) {
    float* dst = out + p * k * kPanel;
    const PIndex c0 = p * kPanel, cols = std::min(kPanel, m - c0);
    for (PIndex kk = 0; kk < k; ++kk) {
      float* row = dst + kk * kPanel;
      for (PIndex c = 0; c < cols; ++c) row[c] = W[(c0 + c) * ldw + kk];
      for (PIndex c = cols; c < kPanel; ++c) row[c] = 0.0f;
    }
  }
}

void pack_rows(PIndex k, PIndex m, const float* B, PIndex ldb, float* out) {
  const PIndex panels = (m + kPanel - 1) / kPanel;
  for (PIndex p = 0; p < panels; ++p) {
    float* dst = out + p * k * kPanel;
    const PIndex c0 = p * kPanel, cols = std::min(kPanel, m - c0);
    for (PIndex kk = 0; kk < k; ++kk) {
      std::memcpy(dst + kk * kPanel, B + kk * ldb + c0, sizeof(float) * cols);
      std::fill(dst + kk * kPanel + cols, dst + (kk + 1) * kPanel, 0.0f);
    }
  }
}

#ifdef RNNCORE_PACKED_AVX512
namespace {

constexpr PIndex kRows = 12;    // 12 × 2 accumulators + 2 panel registers + 1 broadcast <= 32
constexpr PIndex kDepth = 512;  // k block: 12 rows of A (24 KB) stay in L1, the panel slice in L2

// C[R, 32 (masked)] (+)= A[R, kc] · panel[kc, 32].
template <int R>
__attribute__((target("avx512f"))) void tile(const float* const* a, PIndex kc, const float* panel,
                                             float* c, PIndex ldc, bool load_c, __mmask16 m0,
                                             __mmask16 m1) {
  __m512 acc0[R], acc1[R];
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r) {
    acc0[r] = load_c ? _mm512_maskz_loadu_ps(m0, c + r * ldc) : _mm512_setzero_ps();
    acc1[r] = load_c ? _mm512_maskz_loadu_ps(m1, c + r * ldc + 16) : _mm512_setzero_ps();
  }
  for (PIndex kk = 0; kk < kc; ++kk) {
    const __m512 b0 = _mm512_load_ps(panel + kk * kPanel);
    const __m512 b1 = _mm512_load_ps(panel + kk * kPanel + 16);
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) {
      const __m512 av = _mm512_set1_ps(a[r][kk]);
      acc0[r] = _mm512_fmadd_ps(av, b0, acc0[r]);
      acc1[r] = _mm512_fmadd_ps(av, b1, acc1[r]);
    }
  }
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r) {
    _mm512_mask_storeu_ps(c + r * ldc, m0, acc0[r]);
    _mm512_mask_storeu_ps(c + r * ldc + 16, m1, acc1[r]);
  }
}

using TileFn = void (*)(const float* const*, PIndex, const float*, float*, PIndex, bool, __mmask16,
                        __mmask16);
constexpr TileFn kTiles[kRows + 1] = {nullptr,  tile<1>,  tile<2>, tile<3>, tile<4>,
                                      tile<5>,  tile<6>,  tile<7>, tile<8>, tile<9>,
                                      tile<10>, tile<11>, tile<12>};

}  // namespace
#endif

bool packed_gemm_available() {
#ifdef RNNCORE_PACKED_AVX512
  static const bool ok = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") != 0;
  }();
  return ok;
#else
  return false;
#endif
}

void packed_gemm(PIndex n, PIndex m, PIndex k, const PackedRows& A, PIndex k0, const float* packed,
                 PIndex k_total, float* C, PIndex ldc, bool accumulate) {
#ifdef RNNCORE_PACKED_AVX512
  if (n <= 0 || m <= 0) return;
  const PIndex panels = (m + kPanel - 1) / kPanel;
  const float* rows[kRows];
  for (PIndex kb = 0; kb < k || (k == 0 && kb == 0); kb += kDepth) {
    const PIndex kc = std::min(kDepth, k - kb);
    const bool load_c = accumulate || kb > 0;
    for (PIndex p = 0; p < panels; ++p) {
      const PIndex c0 = p * kPanel, cols = std::min(kPanel, m - c0);
      const __mmask16 m0 = static_cast<__mmask16>(cols >= 16 ? 0xFFFF : (1u << cols) - 1u);
      const __mmask16 m1 = static_cast<__mmask16>(cols >= 32   ? 0xFFFF
                                                  : cols <= 16 ? 0
                                                               : (1u << (cols - 16)) - 1u);
      const float* panel = packed + p * k_total * kPanel + (k0 + kb) * kPanel;
      // Row tiles of near-equal height (64 rows: 11,11,11,11,10,10 rather than 5 × 12 + 4): a
      // short remainder tile has too few accumulators to hide the FMA latency (measured 15%
      // slower for 64 rows than for 60).
      const PIndex tiles = (n + kRows - 1) / kRows, base = n / tiles, extra = n % tiles;
      for (PIndex t = 0, r0 = 0, R = 0; t < tiles; ++t, r0 += R) {
        R = base + (t < extra ? 1 : 0);
        for (PIndex r = 0; r < R; ++r) {
          const PIndex row = r0 + r;
          rows[r] = (row < A.na ? A.a + row * A.lda : A.b + (row - A.na) * A.ldb) + k0 + kb;
        }
        if (kc <= 0) {  // k == 0: C = 0 (or unchanged)
          if (!accumulate)
            for (PIndex r = 0; r < R; ++r)
              std::fill(C + (r0 + r) * ldc + c0, C + (r0 + r) * ldc + c0 + cols, 0.0f);
          continue;
        }
        kTiles[R](rows, kc, panel, C + r0 * ldc + c0, ldc, load_c, m0, m1);
      }
    }
    if (k == 0) break;
  }
#else
  (void)n, (void)m, (void)k, (void)A, (void)k0, (void)packed, (void)k_total, (void)C, (void)ldc,
      (void)accumulate;
#endif
}

}  // namespace rnncore::detail
