// The packed-weight GEMM kernels: AVX-512 register tiles of up to 12 rows × 32 columns, or AVX2
// tiles of up to 6 rows × 16 columns (each 32-column panel in two halves: 16 registers hold 12
// accumulators, the two half-rows of the panel and a broadcast), compiled through target
// attributes (no Eigen inside, nothing leaks into code for older CPUs) and picked once by the
// CPU's instruction sets. On an AVX2-only CPU the per-step products went through OpenBLAS, which
// repacked W_hh on every step (sgemm_incopy: 16% of a batch-32 BiLSTM tagger).
#include "packed_gemm.h"

#include <algorithm>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define RNNCORE_PACKED_X86 1
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

#ifdef RNNCORE_PACKED_X86
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

constexpr PIndex kRowsAvx2 = 6;     // 6 × 2 accumulators + 2 panel registers + 1 broadcast <= 16
constexpr PIndex kDepthAvx2 = 256;  // k block: 6 rows of A (6 KB) and the half panel (16 KB) in L1

// C[R, 16] (+)= A[R, kc] · half[kc, 16], half = one 16-column half of a panel (row stride
// kPanel); kMasked: only the lanes of m0 / m1 (the columns that exist) are loaded and stored.
template <int R, bool kMasked>
__attribute__((target("avx2,fma"))) void tile_avx2(const float* const* a, PIndex kc,
                                                   const float* half, float* c, PIndex ldc,
                                                   bool load_c, __m256i m0, __m256i m1) {
  __m256 acc0[R], acc1[R];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    if (!load_c) {
      acc0[r] = acc1[r] = _mm256_setzero_ps();
    } else if constexpr (kMasked) {
      acc0[r] = _mm256_maskload_ps(c + r * ldc, m0);
      acc1[r] = _mm256_maskload_ps(c + r * ldc + 8, m1);
    } else {
      acc0[r] = _mm256_loadu_ps(c + r * ldc);
      acc1[r] = _mm256_loadu_ps(c + r * ldc + 8);
    }
  }
  for (PIndex kk = 0; kk < kc; ++kk) {
    const __m256 b0 = _mm256_loadu_ps(half + kk * kPanel);
    const __m256 b1 = _mm256_loadu_ps(half + kk * kPanel + 8);
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      const __m256 av = _mm256_broadcast_ss(a[r] + kk);
      acc0[r] = _mm256_fmadd_ps(av, b0, acc0[r]);
      acc1[r] = _mm256_fmadd_ps(av, b1, acc1[r]);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    if constexpr (kMasked) {
      _mm256_maskstore_ps(c + r * ldc, m0, acc0[r]);
      _mm256_maskstore_ps(c + r * ldc + 8, m1, acc1[r]);
    } else {
      _mm256_storeu_ps(c + r * ldc, acc0[r]);
      _mm256_storeu_ps(c + r * ldc + 8, acc1[r]);
    }
  }
}

using TileAvx2Fn = void (*)(const float* const*, PIndex, const float*, float*, PIndex, bool,
                            __m256i, __m256i);
template <bool kMasked>
constexpr TileAvx2Fn kTilesAvx2[kRowsAvx2 + 1] = {nullptr,
                                                  tile_avx2<1, kMasked>,
                                                  tile_avx2<2, kMasked>,
                                                  tile_avx2<3, kMasked>,
                                                  tile_avx2<4, kMasked>,
                                                  tile_avx2<5, kMasked>,
                                                  tile_avx2<6, kMasked>};

enum class Kernel { kNone, kAvx2, kAvx512 };

Kernel pick_kernel() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return Kernel::kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Kernel::kAvx2;
  return Kernel::kNone;
}

Kernel kernel() {
  static const Kernel k = pick_kernel();
  return k;
}

// Lanes [0, cols) of a 256-bit mask, cols in [0, 8].
__attribute__((target("avx2"))) inline __m256i lanes_below(PIndex cols) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(cols)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// Row tiles of near-equal height (64 rows in tiles of at most 12: 11,11,11,11,10,10 rather than
// 5 × 12 + 4): a short remainder tile has too few accumulators to hide the FMA latency (measured
// 15% slower for 64 rows than for 60 on AVX-512). Calls f(r0, R) for each.
template <typename F>
void row_tiles(PIndex n, PIndex max_rows, F&& f) {
  const PIndex tiles = (n + max_rows - 1) / max_rows, base = n / tiles, extra = n % tiles;
  for (PIndex t = 0, r0 = 0, R = 0; t < tiles; ++t, r0 += R) {
    R = base + (t < extra ? 1 : 0);
    f(r0, R);
  }
}

// C = 0 where a product over k == 0 rows writes (unless it accumulates).
void zero_product(PIndex n, PIndex m, float* C, PIndex ldc, bool accumulate) {
  if (accumulate) return;
  for (PIndex r = 0; r < n; ++r) std::fill(C + r * ldc, C + r * ldc + m, 0.0f);
}

// The AVX2 path of packed_gemm (same contract).
__attribute__((target("avx2,fma"))) void packed_gemm_avx2(PIndex n, PIndex m, PIndex k,
                                                          const PackedRows& A, PIndex k0,
                                                          const float* packed, PIndex k_total,
                                                          float* C, PIndex ldc, bool accumulate) {
  const PIndex panels = (m + kPanel - 1) / kPanel;
  const float* rows[kRowsAvx2];
  for (PIndex kb = 0; kb < k; kb += kDepthAvx2) {
    const PIndex kc = std::min(kDepthAvx2, k - kb);
    const bool load_c = accumulate || kb > 0;
    for (PIndex p = 0; p < panels; ++p)
      for (PIndex h = 0; h < 2; ++h) {  // the panel's two 16-column halves
        const PIndex c0 = p * kPanel + 16 * h, cols = std::min<PIndex>(16, m - c0);
        if (cols <= 0) break;
        const __m256i m0 = lanes_below(std::min<PIndex>(cols, 8));
        const __m256i m1 = lanes_below(std::max<PIndex>(cols - 8, 0));
        const float* half = packed + p * k_total * kPanel + (k0 + kb) * kPanel + 16 * h;
        const auto* tiles = cols == 16 ? kTilesAvx2<false> : kTilesAvx2<true>;
        row_tiles(n, kRowsAvx2, [&](PIndex r0, PIndex R) {
          for (PIndex r = 0; r < R; ++r) {
            const PIndex row = r0 + r;
            rows[r] = (row < A.na ? A.a + row * A.lda : A.b + (row - A.na) * A.ldb) + k0 + kb;
          }
          tiles[R](rows, kc, half, C + r0 * ldc + c0, ldc, load_c, m0, m1);
        });
      }
  }
}

}  // namespace
#endif

bool packed_gemm_available() {
#ifdef RNNCORE_PACKED_X86
  return kernel() != Kernel::kNone;
#else
  return false;
#endif
}

void packed_gemm(PIndex n, PIndex m, PIndex k, const PackedRows& A, PIndex k0, const float* packed,
                 PIndex k_total, float* C, PIndex ldc, bool accumulate) {
#ifdef RNNCORE_PACKED_X86
  if (n <= 0 || m <= 0) return;
  if (k <= 0) return zero_product(n, m, C, ldc, accumulate);
  if (kernel() == Kernel::kAvx2)
    return packed_gemm_avx2(n, m, k, A, k0, packed, k_total, C, ldc, accumulate);
  const PIndex panels = (m + kPanel - 1) / kPanel;
  const float* rows[kRows];
  for (PIndex kb = 0; kb < k; kb += kDepth) {
    const PIndex kc = std::min(kDepth, k - kb);
    const bool load_c = accumulate || kb > 0;
    for (PIndex p = 0; p < panels; ++p) {
      const PIndex c0 = p * kPanel, cols = std::min(kPanel, m - c0);
      const __mmask16 m0 = static_cast<__mmask16>(cols >= 16 ? 0xFFFF : (1u << cols) - 1u);
      const __mmask16 m1 = static_cast<__mmask16>(cols >= 32   ? 0xFFFF
                                                  : cols <= 16 ? 0
                                                               : (1u << (cols - 16)) - 1u);
      const float* panel = packed + p * k_total * kPanel + (k0 + kb) * kPanel;
      row_tiles(n, kRows, [&](PIndex r0, PIndex R) {
        for (PIndex r = 0; r < R; ++r) {
          const PIndex row = r0 + r;
          rows[r] = (row < A.na ? A.a + row * A.lda : A.b + (row - A.na) * A.ldb) + k0 + kb;
        }
        kTiles[R](rows, kc, panel, C + r0 * ldc + c0, ldc, load_c, m0, m1);
      });
    }
  }
#else
  (void)n, (void)m, (void)k, (void)A, (void)k0, (void)packed, (void)k_total, (void)C, (void)ldc,
      (void)accumulate;
#endif
}

}  // namespace rnncore::detail
