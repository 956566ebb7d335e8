// Matrix-vector kernels with run-time CPU dispatch (AVX-512, AVX2+FMA, portable), for small
// batches.
//
// The weight is packed once per call, transposed into panels of nb outputs: panel
// [k, nb] holds, for each input j, the nb weights it contributes to the panel's outputs, so
// y[panel] = Σ_j x[j] · panel[j, :] keeps the panel's outputs in registers while each x[j] is
// broadcast against one contiguous run, and a whole panel is one contiguous stream the prefetchers
// follow. Measured for 512 KB at 1 thread: 5.3 us per product, against 10.7 us on a plain
// transposed copy (rows a stride apart) and 6-8 us for dot products on W's own rows (which also
// pay a horizontal sum per output); packing costs about as much as ten products. The panel is as
// wide as the kernel's accumulators (128 outputs for AVX-512, 64 for AVX2), so each pass streams
// one whole panel front to back: with 128-wide panels the AVX2 kernel read each one twice, half a
// row at a time, and ran at 51 GB/s on a 1 MB W_hh where 64-wide panels give 73 GB/s (AMD EPYC,
// 1 thread: 20.4 -> 14.3 us per step of a 256-unit LSTM). The wide
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

// Outputs per panel for each kernel: its accumulators (8 x 16 floats for AVX-512, 8 x 8 for AVX2;
// the portable kernel blocks like the AVX2 one).
constexpr Idx kPanelAvx512 = 128;
constexpr Idx kPanelAvx2 = 64;
constexpr Idx kPanelPortable = 64;

inline Idx panel_width(Idx m, Idx i0, Idx panel) { return m - i0 < panel ? m - i0 : panel; }

// out[j * nb + i] = W[i * ldw + j] for rows [i0, i1) and columns [j0, j1) of one panel.
template <typename T>
void pack_block_scalar(const T* W, Idx ldw, Idx nb, Idx i0, Idx i1, Idx j0, Idx j1, T* panel) {
  for (Idx i = i0; i < i1; ++i)
    for (Idx j = j0; j < j1; ++j) panel[j * nb + i] = W[i * ldw + j];
}

template <typename T>
void pack_portable(Idx m, Idx k, const T* W, Idx ldw, T* out) {
  for (Idx p0 = 0; p0 < m; p0 += kPanelPortable) {
    const Idx nb = panel_width(m, p0, kPanelPortable);
    pack_block_scalar(W + p0 * ldw, ldw, nb, 0, nb, 0, k, out + p0 * k);
  }
}

// y[r][0:m] (+)= x[r] · packed, one output block of a panel at a time.
template <typename T>
void gemv_portable(Idx m, Idx k, const T* packed, int n, const T* const* x, T* y, Idx ldy,
                   bool accumulate) {
  constexpr Idx kBlock = 64;
  for (Idx p0 = 0; p0 < m; p0 += kPanelPortable) {
    const Idx nb = panel_width(m, p0, kPanelPortable);
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
  for (Idx p0 = 0; p0 < m; p0 += kPanelAvx512) {
    const Idx nb = panel_width(m, p0, kPanelAvx512), nb16 = nb - nb % 16;
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
  for (Idx p0 = 0; p0 < m; p0 += kPanelAvx512) {
    const Idx nb = panel_width(m, p0, kPanelAvx512);
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

// Transposes the 8x8 tile r[0..7] (row i in r[i]) in registers.
__attribute__((target("avx2"), always_inline)) inline void transpose8(__m256 r[8]) {
  __m256 t[8], q[8];
  for (int i = 0; i < 8; i += 2) {  // interleave 32-bit elements of row pairs
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {  // then 64-bit pairs: q[i + c] holds column c (and c + 4)
    q[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    q[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    q[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    q[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int c = 0; c < 4; ++c) {  // then 128-bit halves: rows 0-3 from q[c], rows 4-7 from q[c + 4]
    r[c] = _mm256_permute2f128_ps(q[c], q[c + 4], 0x20);
    r[c + 4] = _mm256_permute2f128_ps(q[c], q[c + 4], 0x31);
  }
}

__attribute__((target("avx2"))) void pack_avx2(Idx m, Idx k, const float* W, Idx ldw, float* out) {
  const Idx k8 = k - k % 8;
  for (Idx p0 = 0; p0 < m; p0 += kPanelAvx2) {
    const Idx nb = panel_width(m, p0, kPanelAvx2), nb8 = nb - nb % 8;
    const float* src = W + p0 * ldw;
    float* panel = out + p0 * k;
    for (Idx i0 = 0; i0 < nb8; i0 += 8)
      for (Idx j0 = 0; j0 < k8; j0 += 8) {
        __m256 r[8];
        for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + (i0 + i) * ldw + j0);
        transpose8(r);
        for (int j = 0; j < 8; ++j) _mm256_storeu_ps(panel + (j0 + j) * nb + i0, r[j]);
      }
    pack_block_scalar(src, ldw, nb, 0, nb8, k8, k, panel);  // the edges
    pack_block_scalar(src, ldw, nb, nb8, nb, 0, k, panel);
  }
}

// Loads 8 floats, or (masked) those lanes of them that mask selects.
template <bool kMasked>
__attribute__((target("avx2"), always_inline)) inline __m256 load8(const float* p, __m256i mask) {
  if constexpr (kMasked) return _mm256_maskload_ps(p, mask);
  return _mm256_loadu_ps(p);
}

// out[0:w] (+)= Σ_j x[j] · P[j, 0:w] (P row stride nb) with NQ accumulators of 8 outputs,
// w <= 8*NQ; kMasked: the last vector is partial (w = 8*NQ - a few), its loads and store masked.
template <int NQ, bool kMasked>
__attribute__((target("avx2,fma"))) inline void panel_avx2(Idx k, const float* P, Idx nb, Idx w,
                                                           const float* x, float* out,
                                                           bool accumulate) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i last = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(w - 8 * (NQ - 1))), lanes);
  constexpr int kFull = kMasked ? NQ - 1 : NQ;  // vectors loaded whole
  __m256 a[NQ];
  for (int q = 0; q < NQ; ++q)
    a[q] = !accumulate ? _mm256_setzero_ps()
           : q < kFull ? _mm256_loadu_ps(out + 8 * q)
                       : load8<kMasked>(out + 8 * q, last);
  for (Idx j = 0; j < k; ++j) {
    const __m256 xb = _mm256_broadcast_ss(x + j);
    const float* pj = P + j * nb;
    for (int q = 0; q < kFull; ++q) a[q] = _mm256_fmadd_ps(_mm256_loadu_ps(pj + 8 * q), xb, a[q]);
    if constexpr (kMasked)
      a[NQ - 1] = _mm256_fmadd_ps(load8<true>(pj + 8 * (NQ - 1), last), xb, a[NQ - 1]);
  }
  for (int q = 0; q < NQ; ++q) {
    if (kMasked && q == NQ - 1)
      _mm256_maskstore_ps(out + 8 * q, last, a[q]);
    else
      _mm256_storeu_ps(out + 8 * q, a[q]);
  }
}

// A panel of w < kPanelAvx2 outputs (the last of m): as many accumulators as it needs.
template <int NQ = 1>
__attribute__((target("avx2,fma"))) void partial_panel_avx2(Idx k, const float* P, Idx nb, Idx w,
                                                            const float* x, float* out,
                                                            bool accumulate) {
  if constexpr (NQ < kPanelAvx2 / 8) {
    if (w > 8 * NQ) return partial_panel_avx2<NQ + 1>(k, P, nb, w, x, out, accumulate);
  }
  if (w == 8 * NQ)
    panel_avx2<NQ, false>(k, P, nb, w, x, out, accumulate);
  else
    panel_avx2<NQ, true>(k, P, nb, w, x, out, accumulate);
}

// One vector at a time: a full panel is one contiguous stream through 8 accumulators.
__attribute__((target("avx2,fma"))) void gemv_avx2(Idx m, Idx k, const float* packed, int n,
                                                   const float* const* x, float* y, Idx ldy,
                                                   bool accumulate) {
  for (Idx p0 = 0; p0 < m; p0 += kPanelAvx2) {
    const Idx nb = panel_width(m, p0, kPanelAvx2);
    const float* panel = packed + p0 * k;
    for (int r = 0; r < n; ++r) {
      float* out = y + r * ldy + p0;
      if (nb == kPanelAvx2)
        panel_avx2<kPanelAvx2 / 8, false>(k, panel, nb, nb, x[r], out, accumulate);
      else
        partial_panel_avx2(k, panel, nb, nb, x[r], out, accumulate);
    }
  }
}
#endif

using GemvF = void (*)(Idx, Idx, const float*, int, const float* const*, float*, Idx, bool);
using PackF = void (*)(Idx, Idx, const float*, Idx, float*);

// A packing and the kernel that reads it: picked together, since their panel widths must agree.
struct FloatKernels {
  PackF pack;
  GemvF gemv;
  int pack_min_steps;  // see gemv_pack_min_steps
};

FloatKernels pick_kernels() {
#ifdef RNNCORE_X86_DISPATCH
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return {pack_avx512, gemv_avx512, 32};
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return {pack_avx2, gemv_avx2, 5};
#endif
  return {pack_portable<float>, gemv_portable<float>, 32};
}

const FloatKernels& float_kernels() {
  static const FloatKernels k = pick_kernels();
  return k;
}

}  // namespace

int gemv_pack_min_steps() { return float_kernels().pack_min_steps; }

void pack_gemv_panels(Idx m, Idx k, const float* W, Idx ldw, float* out) {
  float_kernels().pack(m, k, W, ldw, out);
}

void pack_gemv_panels(Idx m, Idx k, const double* W, Idx ldw, double* out) {
  pack_portable<double>(m, k, W, ldw, out);
}

void gemv_panels(Idx m, Idx k, const float* packed, int n, const float* const* x, float* y, Idx ldy,
                 bool accumulate) {
  if (m <= 0 || n <= 0) return;
  float_kernels().gemv(m, k, packed, n, x, y, ldy, accumulate);
}

void gemv_panels(Idx m, Idx k, const double* packed, int n, const double* const* x, double* y,
                 Idx ldy, bool accumulate) {
  if (m <= 0 || n <= 0) return;
  gemv_portable<double>(m, k, packed, n, x, y, ldy, accumulate);
}

}  // namespace rnncore::detail
