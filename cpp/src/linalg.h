// Matrix views and the three GEMM shapes the engine uses, in one place (swap the backend here).
#pragma once

#include <Eigen/Core>
#include <cstring>

namespace rnncore::detail {

using Index = Eigen::Index;

template <typename T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
// A row-major [rows, cols] view with row stride ld (ld >= cols).
template <typename T>
using MatView = Eigen::Map<RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <typename T>
using ConstMatView = Eigen::Map<const RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
// A contiguous row of n elements as an array, for element-wise kernels.
template <typename T>
using RowArr = Eigen::Map<Eigen::Array<T, 1, Eigen::Dynamic>>;
template <typename T>
using ConstRowArr = Eigen::Map<const Eigen::Array<T, 1, Eigen::Dynamic>>;

template <typename T>
inline MatView<T> view(T* p, Index rows, Index cols, Index ld) {
  return MatView<T>(p, rows, cols, Eigen::OuterStride<>(ld));
}
template <typename T>
inline ConstMatView<T> cview(const T* p, Index rows, Index cols, Index ld) {
  return ConstMatView<T>(p, rows, cols, Eigen::OuterStride<>(ld));
}

// C[m,n] (+)= A[m,k] · B[n,k]ᵀ   (activations times a PyTorch-layout weight, transposed)
template <typename T>
inline void gemm_nt(Index m, Index n, Index k, const T* A, Index lda, const T* B, Index ldb, T* C,
                    Index ldc, bool accumulate) {
  if (m == 0 || n == 0) return;
  auto c = view(C, m, n, ldc);
  if (k == 0) {
    if (!accumulate) c.setZero();
    return;
  }
  if (accumulate)
    c.noalias() += cview(A, m, k, lda) * cview(B, n, k, ldb).transpose();
  else
    c.noalias() = cview(A, m, k, lda) * cview(B, n, k, ldb).transpose();
}

// C[m,n] (+)= A[m,k] · B[k,n]   (gradients back through a weight)
template <typename T>
inline void gemm_nn(Index m, Index n, Index k, const T* A, Index lda, const T* B, Index ldb, T* C,
                    Index ldc, bool accumulate) {
  if (m == 0 || n == 0) return;
  auto c = view(C, m, n, ldc);
  if (k == 0) {
    if (!accumulate) c.setZero();
    return;
  }
  if (accumulate)
    c.noalias() += cview(A, m, k, lda) * cview(B, k, n, ldb);
  else
    c.noalias() = cview(A, m, k, lda) * cview(B, k, n, ldb);
}

// C[m,n] += A[k,m]ᵀ · B[k,n]   (weight gradients summed over all rows of all steps)
template <typename T>
inline void gemm_tn_acc(Index m, Index n, Index k, const T* A, Index lda, const T* B, Index ldb,
                        T* C, Index ldc) {
  if (m == 0 || n == 0 || k == 0) return;
  view(C, m, n, ldc).noalias() += cview(A, k, m, lda).transpose() * cview(B, k, n, ldb);
}

// out[n] += Σ_rows A[rows, n]   (bias gradients)
template <typename T>
inline void colsum_acc(Index rows, Index n, const T* A, Index lda, T* out) {
  if (rows == 0 || n == 0) return;
  Eigen::Map<Eigen::Matrix<T, 1, Eigen::Dynamic>>(out, n) += cview(A, rows, n, lda).colwise().sum();
}

// Copy a [rows, cols] block between strided row-major buffers.
template <typename T>
inline void copy_rows(Index rows, Index cols, const T* src, Index lds, T* dst, Index ldd) {
  for (Index r = 0; r < rows; ++r) std::memcpy(dst + r * ldd, src + r * lds, sizeof(T) * cols);
}

}  // namespace rnncore::detail
