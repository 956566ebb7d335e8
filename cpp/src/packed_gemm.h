// GEMM against a weight packed once into column panels, for the per-step recurrent products:
// the weight stays in the kernel's own layout across all T steps instead of being repacked by the
// BLAS on every call (which cost as much as a third of a training step).
#pragma once

#include <cstddef>

namespace rnncore::detail {

using PIndex = std::ptrdiff_t;

/// Columns per panel (two AVX-512 registers of floats).
constexpr PIndex kPanel = 32;

/// True when the CPU runs a packed kernel (AVX-512F, or AVX2 with FMA); otherwise callers use
/// their GEMM path.
bool packed_gemm_available();

/// Floats needed to pack a [k, m] operand: ceil(m / kPanel) panels of k × kPanel.
inline PIndex packed_size(PIndex k, PIndex m) { return ((m + kPanel - 1) / kPanel) * kPanel * k; }

/// Pack B[k, m] given as W[m, k] row-major (B = Wᵀ, row stride ldw) into panels (zero padded).
void pack_transposed(PIndex m, PIndex k, const float* W, PIndex ldw, float* out);
/// Pack B[k, m] given row-major (row stride ldb) into panels (zero padded).
void pack_rows(PIndex k, PIndex m, const float* B, PIndex ldb, float* out);

/// Rows of the left operand in up to two pieces (see RowSrc): rows [0, na) at a, the rest at b.
struct PackedRows {
  const float* a;
  PIndex lda;
  PIndex na;
  const float* b;
  PIndex ldb;
};

/// C[0:n, 0:m] (+)= A[0:n, k0:k0+k] · B[k0:k0+k, 0:m], with B packed for K_total rows: `packed`
/// points at the first panel, `k0` selects the row range of B (and the column offset into A).
void packed_gemm(PIndex n, PIndex m, PIndex k, const PackedRows& A, PIndex k0, const float* packed,
                 PIndex k_total, float* C, PIndex ldc, bool accumulate);

}  // namespace rnncore::detail
