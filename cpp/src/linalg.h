// Matrix views, the GEMM backend (Eigen or a registered CBLAS), and products split across threads.
//
// Threading lives here and in the sequence driver only: every GEMM call below is single-threaded
// (Eigen is built with EIGEN_DONT_PARALLELIZE, a registered BLAS must run on one thread), and the
// par_* helpers split one product's output across the OpenMP team.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "denormals.h"
#include "rnncore/backend.h"

namespace rnncore::detail {

using Index = Eigen::Index;

// Buffers aligned to a cache line (the widest vector register): kernels then split their work into
// vector and scalar parts the same way on every call, so results never depend on where malloc put
// a buffer (same inputs, same threads, same bits).
template <typename T>
struct CacheAligned {
  using value_type = T;
  static constexpr std::size_t kAlign = 64;
  CacheAligned() = default;
  template <typename U>
  CacheAligned(const CacheAligned<U>&) {}
  T* allocate(std::size_t n) {
    if (n > (SIZE_MAX - kAlign) / sizeof(T)) throw std::bad_alloc();  // the byte count would wrap
    const std::size_t bytes = ((n * sizeof(T) + kAlign - 1) / kAlign) * kAlign;
    void* p = std::aligned_alloc(kAlign, bytes == 0 ? kAlign : bytes);
    if (!p) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t) { std::free(p); }
  template <typename U>
  bool operator==(const CacheAligned<U>&) const {
    return true;
  }
  template <typename U>
  bool operator!=(const CacheAligned<U>&) const {
    return false;
  }
};
template <typename T>
using AlignedVec = std::vector<T, CacheAligned<T>>;

template <typename T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
// A row-major [rows, cols] view with row stride ld (ld >= cols).
template <typename T>
using MatView = Eigen::Map<RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <typename T>
using ConstMatView = Eigen::Map<const RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
// A contiguous run of n elements as an array, for element-wise kernels.
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

// The registered CBLAS, if any (backend.cpp).
struct BlasFns {
  SgemmFn s = nullptr;
  DgemmFn d = nullptr;
};
const BlasFns& blas_fns();

// C[m,n] = op(A)·op(B) + beta·C, row-major, op(X) = Xᵀ when the flag is set; one thread.
// A is [m,k] (or [k,m] when ta), B is [k,n] (or [n,k] when tb). beta is 0 or 1.
template <typename T>
void gemm(bool ta, bool tb, Index m, Index n, Index k, const T* A, Index lda, const T* B, Index ldb,
          T beta, T* C, Index ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    if (beta == T(0)) view(C, m, n, ldc).setZero();
    return;
  }
  const bool fits = std::max({m, n, k, lda, ldb, ldc}) < Index(INT_MAX);
  if constexpr (std::is_same_v<T, float>) {
    if (auto f = blas_fns().s; f && fits)
      return f(101, ta ? 112 : 111, tb ? 112 : 111, int(m), int(n), int(k), 1.0f, A, int(lda), B,
               int(ldb), beta, C, int(ldc));
  } else {
    if (auto f = blas_fns().d; f && fits)
      return f(101, ta ? 112 : 111, tb ? 112 : 111, int(m), int(n), int(k), 1.0, A, int(lda), B,
               int(ldb), beta, C, int(ldc));
  }
  auto c = view(C, m, n, ldc);
  auto run = [&](const auto& a, const auto& b) {
    if (beta == T(0))
      c.noalias() = a * b;
    else
      c.noalias() += a * b;
  };
  if (!ta && !tb) run(cview(A, m, k, lda), cview(B, k, n, ldb));
  if (!ta && tb) run(cview(A, m, k, lda), cview(B, n, k, ldb).transpose());
  if (ta && !tb) run(cview(A, k, m, lda).transpose(), cview(B, k, n, ldb));
  if (ta && tb) run(cview(A, k, m, lda).transpose(), cview(B, n, k, ldb).transpose());
}

// C[m,n] (+)= A[m,k] · B[n,k]ᵀ   (activations times a PyTorch-layout weight, transposed)
template <typename T>
inline void gemm_nt(Index m, Index n, Index k, const T* A, Index lda, const T* B, Index ldb, T* C,
                    Index ldc, bool accumulate) {
  gemm(false, true, m, n, k, A, lda, B, ldb, accumulate ? T(1) : T(0), C, ldc);
}
// C[m,n] (+)= A[m,k] · B[k,n]   (gradients back through a weight)
template <typename T>
inline void gemm_nn(Index m, Index n, Index k, const T* A, Index lda, const T* B, Index ldb, T* C,
                    Index ldc, bool accumulate) {
  gemm(false, false, m, n, k, A, lda, B, ldb, accumulate ? T(1) : T(0), C, ldc);
}

// ---- splitting work across the OpenMP team ------------------------------------------------

inline int thread_count() {
#ifdef _OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}
inline int thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}
inline void barrier() {
#ifdef _OPENMP
#pragma omp barrier
#endif
}

// This thread's share [begin, end) of n items, in chunks that are multiples of `align` (so that
// threads never share a cache line of output and vector loops start aligned).
struct Range {
  Index begin, end;
  Index size() const { return end - begin; }
};
inline Range share(Index n, int nth, int tid, Index align = 16) {
  Index chunk = (n + nth - 1) / nth;
  chunk = ((chunk + align - 1) / align) * align;
  const Index b = std::min(n, chunk * tid);
  return {b, std::min(n, b + chunk)};
}

// f() once per thread of a new team when `parallel`, else once on this thread without entering
// OpenMP at all: libgomp's `parallel if (false)` still makes a futex system call (~0.6 us) per
// region, which was a third of a tiny (B=1, T=1, H=8) training step. Inside another region the
// region is always entered (a team of one), so that thread_count() and thread_id() describe the
// team f runs on, not the enclosing one.
// Every thread of the team computes with denormals flushed (denormals.h).
template <typename F>
inline void team(bool parallel, F&& f) {
#ifdef _OPENMP
  if (parallel || omp_in_parallel()) {
#pragma omp parallel if (parallel)
    {
      DenormalScope flush;
      f();
    }
    return;
  }
#endif
  (void)parallel;
  DenormalScope flush;
  f();
}

// Products with at most this many rows of A (untransposed, B transposed) run as matrix-vector
// products in par_gemm.
constexpr Index kFewRows = 4;

// Products below this many flops run on one thread: a fork/join costs more than it saves.
constexpr double kParallelFlops = 1 << 21;

// Same as gemm(), the output split across threads by its longer side. row_bias [n] (optional) is
// added to every row of C by the thread that computed it, while those rows are still in cache.
template <typename T>
void par_gemm(bool ta, bool tb, Index m, Index n, Index k, const T* A, Index lda, const T* B,
              Index ldb, T beta, T* C, Index ldc, const T* row_bias = nullptr) {
  const bool par = 2.0 * double(m) * double(n) * double(k) >= kParallelFlops;
  if (!ta && tb && m <= kFewRows) {
    // A few rows times a PyTorch-layout weight (the input projection of a one-step call, a
    // decoder's output layer): one matrix-vector product per row on the weight as it lies. A
    // BLAS GEMM repacks the whole weight on every call (OpenBLAS: a third of a B=1, T=1 LSTM).
    using Vec = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>>;
    using CVec = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>;
    team(par, [&] {
      const Range c = share(n, thread_count(), thread_id());
      if (c.size() == 0) return;
      const auto w = cview(B + c.begin * ldb, c.size(), k, ldb);
      for (Index r = 0; r < m; ++r) {
        Vec out(C + r * ldc + c.begin, c.size());
        if (beta == T(0))
          out.noalias() = w * CVec(A + r * lda, k);
        else
          out.noalias() += w * CVec(A + r * lda, k);
        if (row_bias) out += CVec(row_bias + c.begin, c.size());
      }
    });
    return;
  }
  team(par, [&] {
    const int nth = thread_count(), tid = thread_id();
    if (m >= n) {  // rows of C: rows of A (or its columns when transposed)
      const Range r = share(m, nth, tid);
      if (r.size() > 0) {
        gemm(ta, tb, r.size(), n, k, ta ? A + r.begin : A + r.begin * lda, lda, B, ldb, beta,
             C + r.begin * ldc, ldc);
        if (row_bias)
          view(C + r.begin * ldc, r.size(), n, ldc).rowwise() +=
              Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(row_bias, n);
      }
    } else {  // columns of C: columns of B (or its rows when transposed)
      const Range c = share(n, nth, tid);
      if (c.size() > 0) {
        gemm(ta, tb, m, c.size(), k, A, lda, tb ? B + c.begin * ldb : B + c.begin, ldb, beta,
             C + c.begin, ldc);
        if (row_bias)
          view(C + c.begin, m, c.size(), ldc).rowwise() +=
              Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(row_bias + c.begin, c.size());
      }
    }
  });
}

// out[n] += Σ_rows A[rows, n]   (bias gradients), split across threads by columns. Each column is
// summed over the rows in row order with plain loops (vectorised across columns): Eigen's
// colwise().sum() summed the unaligned head columns in another order than the rest, so a bias
// gradient's last bits depended on where dy lay (issue 13).
template <typename T>
void par_colsum_acc(Index rows, Index n, const T* A, Index lda, T* out) {
  if (rows == 0 || n == 0) return;
  team(rows * n >= (1 << 16), [&] {
    const Range c = share(n, thread_count(), thread_id());
    if (c.size() == 0) return;
    std::vector<T> sum(A + c.begin, A + c.end);
    for (Index r = 1; r < rows; ++r) {
      const T* row = A + r * lda + c.begin;
      for (Index j = 0; j < c.size(); ++j) sum[std::size_t(j)] += row[j];
    }
    for (Index j = 0; j < c.size(); ++j) out[c.begin + j] += sum[std::size_t(j)];
  });
}

// C[m,n] += A[k,m]ᵀ · B[k,n]   (weight gradients summed over all rows), over the team.
template <typename T>
inline void gemm_tn_acc(Index m, Index n, Index k, const T* A, Index lda, const T* B, Index ldb,
                        T* C, Index ldc) {
  par_gemm(true, false, m, n, k, A, lda, B, ldb, T(1), C, ldc);
}
// out[n] += Σ_rows A[rows, n]   (bias gradients), over the team.
template <typename T>
inline void colsum_acc(Index rows, Index n, const T* A, Index lda, T* out) {
  par_colsum_acc(rows, n, A, lda, out);
}

// Σ f(x[i]) for i < n in double, in an order fixed by i alone: 8 lanes by i mod 8, then the lanes
// in a fixed tree. Eigen's vectorised sum starts its packets at the first aligned element, so its
// rounding depended on where a buffer lay (the same loss differed by 1e-12..3e-9 across heap
// layouts); this gives the same bits for any address and stays vectorisable.   x [n]
template <typename T, typename F>
inline double lane_sum(const T* x, Index n, F f) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  Index i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += double(f(x[i + k]));
  double tail = 0.0;
  for (; i < n; ++i) tail += double(f(x[i]));
  return (((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))) + tail;
}
template <typename T>
inline double lane_sum(const T* x, Index n) {
  return lane_sum(x, n, [](T v) { return v; });
}

// Copy a [rows, cols] block between strided row-major buffers.
template <typename T>
inline void copy_rows(Index rows, Index cols, const T* src, Index lds, T* dst, Index ldd) {
  for (Index r = 0; r < rows; ++r) std::memcpy(dst + r * ldd, src + r * lds, sizeof(T) * cols);
}

// Element-wise work below this many scalars runs on one thread.
constexpr Index kParallelWork = 1 << 14;

// f(i) for i in [0, n), split statically over a new team when `parallel`, else a plain loop on
// this thread that never enters OpenMP (see team()).
template <typename F>
inline void parallel_for(std::int64_t n, bool parallel, F&& f) {
#ifdef _OPENMP
  if (parallel) {
#pragma omp parallel
    {
      DenormalScope flush;
#pragma omp for schedule(static)
      for (std::int64_t i = 0; i < n; ++i) f(i);
    }
    return;
  }
#endif
  (void)parallel;
  DenormalScope flush;
  for (std::int64_t i = 0; i < n; ++i) f(i);
}

// f(r) for r in [0, n), over the team when the work is large enough (called outside regions).
template <typename F>
inline void for_rows(Index n, Index work_per_row, F&& f) {
  parallel_for(n, n > 1 && n * work_per_row >= kParallelWork, f);
}

}  // namespace rnncore::detail
