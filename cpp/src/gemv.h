// Matrix-vector products for batches of one to a few sequences, where a GEMM would repack the
// weights on every step: y[m] (+)= Σ_j x[j] · Wt[j, 0:m], with the weight stored transposed
// (Wt row-major [k, m], row stride ldw), so each x[j] scales one contiguous row: no horizontal sums.
#pragma once

#include <cstddef>

namespace rnncore::detail {

/// y[0:m] = x[0:k] · Wt[0:k, 0:m] (y += ... when accumulate). float32 uses AVX-512 or AVX2+FMA
/// when the CPU has them (chosen once, at run time), else portable code; double: portable code.
void gemv_t(std::ptrdiff_t m, std::ptrdiff_t k, const float* Wt, std::ptrdiff_t ldw,
            const float* x, float* y, bool accumulate);
void gemv_t(std::ptrdiff_t m, std::ptrdiff_t k, const double* Wt, std::ptrdiff_t ldw,
            const double* x, double* y, bool accumulate);

}  // namespace rnncore::detail
