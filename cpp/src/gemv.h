// Matrix-vector products for batches of one to a few sequences, where a GEMM would repack the
// weights on every step: y_r (+)= W · x_r for up to kGemvMaxRows vectors x_r, on a copy of W packed
// once per call (pack_gemv_panels) so that every step streams it contiguously.
#pragma once

#include <cstddef>

namespace rnncore::detail {

/// Most vectors one call takes (the batch sizes that use it, see kGemvRows in cells/step.h).
constexpr int kGemvMaxRows = 4;

/// Packs W[0:m, 0:k] (row-major, row stride ldw: m outputs of k inputs, PyTorch's layout)
/// transposed, in panels of nb outputs, each panel [k, nb] contiguous (nb = the width of the
/// kernel gemv_panels picked for this CPU: 128 for AVX-512, else 64; less for the last panel).
/// Writes m*k values to out. float32 transposes 16x16 (AVX-512) or 8x8 (AVX2) tiles in registers
/// when the CPU has them (100 us for 1 MB, a seventh of a scalar loop).
void pack_gemv_panels(std::ptrdiff_t m, std::ptrdiff_t k, const float* W, std::ptrdiff_t ldw,
                      float* out);
void pack_gemv_panels(std::ptrdiff_t m, std::ptrdiff_t k, const double* W, std::ptrdiff_t ldw,
                      double* out);

/// Fewest steps for which a call should pack W (pack_gemv_panels) rather than multiply it where it
/// lies (Eigen's row-major kernel, a dot product per output; see kGemvRows in cells/step.h): 32
/// with the AVX-512 kernels, where the in-place product is only ~15% slower per step; 5 with the
/// AVX2 ones, where it takes ~30 us per step of a 256-unit LSTM (1 MB W_hh, AMD EPYC, 1 thread)
/// against ~15 us packed, and packing costs 70 us: the two meet at 4.7 steps. 32 for the portable
/// scalar packing (~700 us per MB).
int gemv_pack_min_steps();

/// y[r * ldy + i] = Σ_j W[i, j] · x[r][j] for i < m, r < n (n <= kGemvMaxRows; y += ... when
/// accumulate), with W packed by pack_gemv_panels(m, k, ...). float32 uses AVX-512 or AVX2+FMA
/// when the CPU has them (chosen once, at run time), else portable code; double: portable code.
void gemv_panels(std::ptrdiff_t m, std::ptrdiff_t k, const float* packed, int n,
                 const float* const* x, float* y, std::ptrdiff_t ldy, bool accumulate);
void gemv_panels(std::ptrdiff_t m, std::ptrdiff_t k, const double* packed, int n,
                 const double* const* x, double* y, std::ptrdiff_t ldy, bool accumulate);

}  // namespace rnncore::detail
