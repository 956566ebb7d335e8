// Matrix-vector kernels with run-time CPU dispatch (AVX-512, AVX2+FMA, portable), for small
// batches.
//
// The weight is packed once per call, transposed into panels of kGemvPanel outputs: panel
// [k, nb] holds, for each input j, the nb weights it contributes to the panel's outputs, so
// y[panel] = Σ_j x[j] · panel[j, :] keeps the panel's outputs in registers while each x[j] is
// broadcast against one contiguous run, and a whole panel is one contiguous stream the prefetchers
// follow. Measured for 512 KB at 1 thread: 5.3 us per product, against 10.7 us on a plain
// transposed copy (rows a stride apart) and 6-8 us for dot products on W's own rows (which also
// pay a horizontal sum per output); packing costs about as much as ten products. The wide
// versions are compiled for their instruction sets through target attributes (no Eigen inside, so
// nothing compiled for AVX-512 can leak into code that runs on older CPUs), and picked once with
// __builtin_cpu_supports.
#include "gemv.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define RNNCORE_X86_DISPATCH 1
#endif

namespace rnncore::detail {
namespace {

using Idx = std::ptrdiff_t;

inline Idx panel_width(Idx m, Idx i0) { return m - i0 < kGemvPanel ? m - i0 : kGemvPanel; }

// out[j * nb + i] = W[i * ldw + j] for rows [i0, i1) and columns [j0, j1) of one panel.
template <typename T>
void pack_block_scalar(const T* W, Idx ldw, Idx nb, Idx i0, Idx i1, Idx j0, Idx j1, T* panel) {
  for (Idx i = i0; i < i1; ++i)
    for (Idx j = j0; j < j1; ++j) panel[j * nb + i] = W[i * ldw + j];
}

template <typename T>
void pack_portable(Idx m, Idx k, const T* W, Idx ldw, T* out) {
  for (Idx p0 = 0; p0 < m; p0 += kGemvPanel) {
    const Idx nb = panel_width(m, p0);
    pack_block_scalar(W + p0 * ldw, ldw, nb, 0, nb, 0, k, out + p0 * k);
  }
}

// y[r][0:m] (+)= x[r] · packed, one output block of a panel at a time.
template <typename T>
void gemv_portable(Idx m, Idx k, const T* packed, int n, const T* const* x, T* y, Idx ldy,
                   bool accumulate) {
  constexpr Idx kBlock = 64;
  for (Idx p0 = 0; p0 < m; p0 += kGemvPanel) {
    const Idx nb = panel_width(m, p0);
    const T* panel = packed + p0 * k;
    for (int r = 0; r < n; ++r)
      for (Idx c0 = 0; c0 < nb; c0 += kBlock) {
        const Idx w = nb - c0 < kBlock ? nb - c0 : kBlock;
        T acc[kBlock];
        T* out = y + r * ldy + p0 + c0;
        for (Idx i = 0; i < w; ++i) acc[i] = accumulate ? out[i] : T(0);
        for (Idx j = 0; j < k; ++j) {
          const T xj = x[r][j];
          const T* wj = panel + j * nb + c0;
          for (Idx i = 0; i < w; ++i) acc[i] += xj * wj[i];
        }
        for (Idx i = 0; i < w; ++i) out[i] = acc[i];
      }
  }
}

#ifdef RNNCORE_X86_DISPATCH
// Transposes the 16x16 tile r[0..15] (row i in r[i]) in registers.
__attribute__((target("avx512f"), always_inline)) inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {  // interleave 32-bit elements of row pairs
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {  // then 64-bit pairs
    const __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]);
    const __m512d c = _mm512_castps_pd(t[i + 2]), d = _mm512_castps_pd(t[i + 3]);
    r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int h = 0; h < 16; h += 8)  // then 128-bit lanes, twice
    for (int i = 0; i < 4; ++i) {
      t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + 4 + i], 0x88);
      t[h + 4 + i] = _mm512_shuffle_f32x4(r[h + i], r[h + 4 + i], 0xdd);
    }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
    r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xdd);
  }
}

__attribute__((target("avx512f"))) void pack_avx512(Idx m, Idx k, const float* W, Idx ldw,
                                                    float* out) {
  const Idx k16 = k - k % 16;
  for (Idx p0 = 0; p0 < m; p0 += kGemvPanel) {
    const Idx nb = panel_width(m, p0), nb16 = nb - nb % 16;
    const float* src = W + p0 * ldw;
    float* panel = out + p0 * k;
    for (Idx i0 = 0; i0 < nb16; i0 += 16)
      for (Idx j0 = 0; j0 < k16; j0 += 16) {
        __m512 r[16];
        for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + (i0 + i) * ldw + j0);
        transpose16(r);
        for (int j = 0; j < 16; ++j) _mm512_storeu_ps(panel + (j0 + j) * nb + i0, r[j]);
      }
    pack_block_scalar(src, ldw, nb, 0, nb16, k16, k, panel);  // the edges
    pack_block_scalar(src, ldw, nb, nb16, nb, 0, k, panel);
  }
}

// y[r][c0 : c0+w] (+)= Σ_j x[r][j] · P[j, 0:w] for the NR vectors, with P = panel + c0 (row stride
// nb), w <= 16*NQ: NQ*NR accumulators, loads past w masked off.
template <int NR, int NQ>
__attribute__((target("avx512f"))) inline void panel_avx512(Idx k, const float* P, Idx nb, Idx w,
                                                            const float* const* x, float* y,
                                                            Idx ldy, bool accumulate) {
  __mmask16 mask[NQ];
  for (int q = 0; q < NQ; ++q) {
    const Idx left = w - 16 * q;
    mask[q] =
        left >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>(left > 0 ? (1u << left) - 1u : 0u);
  }
  __m512 acc[NR][NQ];
  for (int r = 0; r < NR; ++r)
    for (int q = 0; q < NQ; ++q)
      acc[r][q] =
          accumulate ? _mm512_maskz_loadu_ps(mask[q], y + r * ldy + 16 * q) : _mm512_setzero_ps();
  for (Idx j = 0; j < k; ++j) {
    const float* pj = P + j * nb;
    __m512 wv[NQ];
    for (int q = 0; q < NQ; ++q) wv[q] = _mm512_maskz_loadu_ps(mask[q], pj + 16 * q);
    for (int r = 0; r < NR; ++r) {
      const __m512 xb = _mm512_set1_ps(x[r][j]);
      for (int q = 0; q < NQ; ++q) acc[r][q] = _mm512_fmadd_ps(wv[q], xb, acc[r][q]);
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int q = 0; q < NQ; ++q) _mm512_mask_storeu_ps(y + r * ldy + 16 * q, mask[q], acc[r][q]);
}

// One panel for NR vectors: 8 x 16 outputs at once for one or two vectors, else 4 x 16 twice.
template <int NR>
__attribute__((target("avx512f"))) void panels_avx512_n(Idx m, Idx k, const float* packed,
                                                        const float* const* x, float* y, Idx ldy,
                                                        bool accumulate) {
  constexpr int NQ = NR <= 2 ? 8 : 4;
  for (Idx p0 = 0; p0 < m; p0 += kGemvPanel) {
    const Idx nb = panel_width(m, p0);
    for (Idx c0 = 0; c0 < nb; c0 += 16 * NQ) {
      const Idx w = nb - c0 < 16 * NQ ? nb - c0 : 16 * NQ;
      panel_avx512<NR, NQ>(k, packed + p0 * k + c0, nb, w, x, y + p0 + c0, ldy, accumulate);
    }
  }
}

__attribute__((target("avx512f"))) void gemv_avx512(Idx m, Idx k, const float* packed, int n,
                                                    const float* const* x, float* y, Idx ldy,
                                                    bool accumulate) {
  switch (n) {
    case 1:
      return panels_avx512_n<1>(m, k, packed, x, y, ldy, accumulate);
    case 2:
      return panels_avx512_n<2>(m, k, packed, x, y, ldy, accumulate);
    case 3:
      return panels_avx512_n<3>(m, k, packed, x, y, ldy, accumulate);
    default:
      return panels_avx512_n<4>(m, k, packed, x, y, ldy, accumulate);
  }
}

// 8 accumulators of 8 floats: 64 outputs of a panel per pass, one vector at a time.
__attribute__((target("avx2,fma"))) void gemv_avx2(Idx m, Idx k, const float* packed, int n,
                                                   const float* const* x, float* y, Idx ldy,
                                                   bool accumulate) {
  for (Idx p0 = 0; p0 < m; p0 += kGemvPanel) {
    const Idx nb = panel_width(m, p0), nb64 = nb - nb % 64;
    const float* panel = packed + p0 * k;
    for (int r = 0; r < n; ++r) {
      float* out = y + r * ldy + p0;
      for (Idx c0 = 0; c0 < nb64; c0 += 64) {
        __m256 a[8];
        for (int q = 0; q < 8; ++q)
          a[q] = accumulate ? _mm256_loadu_ps(out + c0 + 8 * q) : _mm256_setzero_ps();
        for (Idx j = 0; j < k; ++j) {
          const __m256 xb = _mm256_set1_ps(x[r][j]);
          const float* pj = panel + j * nb + c0;
          for (int q = 0; q < 8; ++q) a[q] = _mm256_fmadd_ps(_mm256_loadu_ps(pj + 8 * q), xb, a[q]);
        }
        for (int q = 0; q < 8; ++q) _mm256_storeu_ps(out + c0 + 8 * q, a[q]);
      }
      for (Idx i = nb64; i < nb; ++i) {  // the rest of the panel
        float s = accumulate ? out[i] : 0.0f;
        for (Idx j = 0; j < k; ++j) s += x[r][j] * panel[j * nb + i];
        out[i] = s;
      }
    }
  }
}
#endif

using GemvF = void (*)(Idx, Idx, const float*, int, const float* const*, float*, Idx, bool);
using PackF = void (*)(Idx, Idx, const float*, Idx, float*);

bool has_avx512() {
#ifdef RNNCORE_X86_DISPATCH
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f");
#else
  return false;
#endif
}

GemvF pick_gemv() {
#ifdef RNNCORE_X86_DISPATCH
  if (has_avx512()) return gemv_avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return gemv_avx2;
#endif
  return gemv_portable<float>;
}

PackF pick_pack() {
#ifdef RNNCORE_X86_DISPATCH
  if (has_avx512()) return pack_avx512;
#endif
  return pack_portable<float>;
}

}  // namespace

void pack_gemv_panels(Idx m, Idx k, const float* W, Idx ldw, float* out) {
  static const PackF impl = pick_pack();
  impl(m, k, W, ldw, out);
}

void pack_gemv_panels(Idx m, Idx k, const double* W, Idx ldw, double* out) {
  pack_portable<double>(m, k, W, ldw, out);
}

void gemv_panels(Idx m, Idx k, const float* packed, int n, const float* const* x, float* y, Idx ldy,
                 bool accumulate) {
  static const GemvF impl = pick_gemv();
  if (m <= 0 || n <= 0) return;
  impl(m, k, packed, n, x, y, ldy, accumulate);
}

void gemv_panels(Idx m, Idx k, const double* packed, int n, const double* const* x, double* y,
                 Idx ldy, bool accumulate) {
  if (m <= 0 || n <= 0) return;
  gemv_portable<double>(m, k, packed, n, x, y, ldy, accumulate);
}

}  // namespace rnncore::detail
