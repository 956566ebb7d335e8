// Matrix-vector products for batches of one to a few sequences, where a GEMM would repack the
// weights on every step: y_r (+)= W · x_r for up to kGemvMaxRows vectors x_r, on a copy of W packed
// once per call (pack_gemv_panels) so that every step streams it contiguously.
#pragma once

#include <cstddef>

namespace rnncore::detail {

/// Most vectors one call takes (the batch sizes that use it, see kGemvRows in cells/step.h).
constexpr int kGemvMaxRows = 4;
/// Outputs per panel of the packed layout: 8 AVX-512 registers of accumulators.
constexpr std::ptrdiff_t kGemvPanel = 128;

/// Packs W[0:m, 0:k] (row-major, row stride ldw: m outputs of k inputs, PyTorch's layout)
/// transposed, in panels of kGemvPanel outputs, each panel [k, nb] contiguous (nb = the panel's
/// outputs, kGemvPanel but for the last). Writes m*k values to out. float32 transposes 16x16
/// tiles in AVX-512 registers when the CPU has them (100 us for 1 MB, a seventh of a scalar loop).
void pack_gemv_panels(std::ptrdiff_t m, std::ptrdiff_t k, const float* W, std::ptrdiff_t ldw,
                      float* out);
void pack_gemv_panels(std::ptrdiff_t m, std::ptrdiff_t k, const double* W, std::ptrdiff_t ldw,
                      double* out);

/// y[r * ldy + i] = Σ_j W[i, j] · x[r][j] for i < m, r < n (n <= kGemvMaxRows; y += ... when
/// accumulate), with W packed by pack_gemv_panels(m, k, ...). float32 uses AVX-512 or AVX2+FMA
/// when the CPU has them (chosen once, at run time), else portable code; double: portable code.
void gemv_panels(std::ptrdiff_t m, std::ptrdiff_t k, const float* packed, int n,
                 const float* const* x, float* y, std::ptrdiff_t ldy, bool accumulate);
void gemv_panels(std::ptrdiff_t m, std::ptrdiff_t k, const double* packed, int n,
                 const double* const* x, double* y, std::ptrdiff_t ldy, bool accumulate);

}  // namespace rnncore::detail
