// Matrix-vector products for batches of one to a few sequences, where a GEMM would repack the
// weights on every step: y_r[i] (+)= W[i, :] · x_r for up to kGemvMaxRows vectors x_r, reading the
// weight in PyTorch's own row-major layout, so nothing is copied or packed per call.
#pragma once

#include <cstddef>

namespace rnncore::detail {

/// Most vectors one call takes (the batch sizes that use it, see kGemvRows in cells/step.h).
constexpr int kGemvMaxRows = 4;

/// y[r * ldy + i] = Σ_j W[i * ldw + j] · x[r][j] for i < m, j < k, r < n (n <= kGemvMaxRows):
/// m dot products per vector, each weight row read once for all n vectors (y += ... when
/// accumulate). float32 uses AVX-512 or AVX2+FMA when the CPU has them (chosen once, at run
/// time), else portable code; double: portable code.
void gemv_rows(std::ptrdiff_t m, std::ptrdiff_t k, const float* W, std::ptrdiff_t ldw, int n,
               const float* const* x, float* y, std::ptrdiff_t ldy, bool accumulate);
void gemv_rows(std::ptrdiff_t m, std::ptrdiff_t k, const double* W, std::ptrdiff_t ldw, int n,
               const double* const* x, double* y, std::ptrdiff_t ldy, bool accumulate);

}  // namespace rnncore::detail
