// Training operations of the engine: embedding, linear, losses, optimizers, clipping (CPU).
#include "rnncore/ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "keyed.h"
#include "linalg.h"
#include "ops_checks.h"
#include "optim_math.h"

namespace rnncore {

namespace {

using detail::Index;
using detail::parallel_for;
using detail::team;
using detail::thread_count;
using detail::thread_id;

// Element-wise loops shorter than this run on one thread: a parallel region costs more than the
// loop itself below it.
constexpr std::int64_t kParallelMin = std::int64_t(1) << 15;
// Fixed chunk of the deterministic reductions: partial sums per chunk, then summed in order, so the
// result does not depend on the thread count.
constexpr std::int64_t kChunk = std::int64_t(1) << 14;
// Elements per piece of an optimizer's update (its state lines stay in L1/L2 within a piece).
constexpr std::int64_t kOptimizerChunk = 4096;

std::string num(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

void require_size(std::int64_t n, const char* name) {
  require(n >= 0, std::string(name) + " must be >= 0, got " + std::to_string(n));
}

void require_positive(std::int64_t n, const char* name) {
  require(n >= 1, std::string(name) + " must be >= 1, got " + std::to_string(n));
}

void require_ptr(const void* p, std::int64_t n, const char* name) {
  require(p != nullptr || n == 0, std::string(name) + " must not be null");
}

// v >= 0 and finite (NaN fails).
void require_nonneg(double v, const char* name) {
  require(v >= 0.0 && std::isfinite(v),
          std::string(name) + " must be >= 0 and finite, got " + num(v));
}

void require_unit(double v, const char* name) {  // [0, 1)
  require(v >= 0.0 && v < 1.0, std::string(name) + " must be in [0, 1), got " + num(v));
}

// Σ_{i<n} term(i) in double over fixed chunks, summed in chunk order: thread-count independent.
template <typename F>
double chunked_sum(std::int64_t n, F term) {
  if (n <= 0) return 0.0;
  const std::int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> part(static_cast<std::size_t>(chunks), 0.0);
  parallel_for(chunks, n >= kParallelMin, [&](std::int64_t c) {
    const std::int64_t lo = c * kChunk, hi = std::min(n, lo + kChunk);
    double s = 0.0;
    for (std::int64_t i = lo; i < hi; ++i) s += term(i);
    part[static_cast<std::size_t>(c)] = s;
  });
  double total = 0.0;
  for (double s : part) total += s;
  return total;
}

// Σ x[i]² in double over the same fixed chunks; each chunk is one vectorised lane_sum (a scalar
// double accumulator was latency-bound: ~10x slower on 5M-parameter models), whose order does
// not depend on the buffer's address.
template <typename T>
double chunked_sum_of_squares(std::int64_t n, const T* x) {
  if (n <= 0) return 0.0;
  const std::int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> part(static_cast<std::size_t>(chunks), 0.0);
  parallel_for(chunks, n >= kParallelMin, [&](std::int64_t c) {
    const std::int64_t lo = c * kChunk, hi = std::min(n, lo + kChunk);
    part[static_cast<std::size_t>(c)] =
        detail::lane_sum(x + lo, hi - lo, [](T v) { return double(v) * double(v); });
  });
  double total = 0.0;
  for (double s : part) total += s;
  return total;
}

// f(lo, n) for the pieces [lo, lo + n) of [0, P), n <= kOptimizerChunk, over the team when P is
// large enough.
template <typename F>
void for_optimizer_chunks(std::int64_t P, F&& f) {
  const std::int64_t chunks = (P + kOptimizerChunk - 1) / kOptimizerChunk;
  parallel_for(chunks, P >= kParallelMin, [&](std::int64_t c) {
    const std::int64_t lo = c * kOptimizerChunk;
    f(lo, std::min(P, lo + kOptimizerChunk) - lo);
  });
}

// The row statistics of a softmax: max z, Σ exp(z - max z) (in double) and the log-sum-exp.
struct ExpSum {
  double max, sum;
  double lse() const { return max + std::log(sum); }
};

// e[0:C] = exp(z - max z) (e may be z, or null when only the sums are wanted). The engine's one
// softmax kernel: cross-entropy, log_softmax_rows and softmax_rows all run it. Vectorised (Eigen's
// exp): a scalar std::exp per class made the loss a third of a PTB training step (10k classes).
template <typename T>
ExpSum shifted_exp(const T* z, std::int64_t C, T* e) {
  using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
  const T m = Eigen::Map<const Arr>(z, C).maxCoeff();
  // Eigen computes the first elements of an unaligned destination with the scalar std::exp,
  // whose last bits differ from its vector exp: the exponentials go to an aligned scratch row
  // first, so every element takes the same path wherever z and e lie (the same loss for the
  // same logits at any address; issue 13).
  thread_local detail::AlignedVec<T> scratch;
  if (scratch.size() < static_cast<std::size_t>(C)) scratch.resize(static_cast<std::size_t>(C));
  Eigen::Map<Arr, Eigen::Aligned64> es(scratch.data(), C);
  es = (Eigen::Map<const Arr>(z, C) - m).exp();
  if (e) std::copy(scratch.data(), scratch.data() + C, e);
  return {static_cast<double>(m), detail::lane_sum(scratch.data(), C)};
}

}  // namespace

// ---- Embedding --------------------------------------------------------------------------------

void check_ids(std::int64_t N, std::int64_t V, const std::int64_t* ids, const char* name) {
  require_size(N, "N");
  require_positive(V, "V (vocabulary size)");
  require_ptr(ids, N, name);
  for (std::int64_t n = 0; n < N; ++n) {
    if (ids[n] < 0 || ids[n] >= V)
      throw std::invalid_argument(std::string(name) + ": id " + std::to_string(ids[n]) +
                                  " at position " + std::to_string(n) + " is out of range [0, " +
                                  std::to_string(V) + ")");
  }
}

namespace {

void check_keyed(std::int64_t outer, std::int64_t B, std::int64_t inner,
                 std::int64_t batch_offset) {
  require(outer >= 0 && B >= 0 && inner >= 0, "outer, B and inner must be >= 0, got " +
                                                  std::to_string(outer) + ", " + std::to_string(B) +
                                                  ", " + std::to_string(inner));
  require(batch_offset >= 0, "batch_offset must be >= 0, got " + std::to_string(batch_offset));
}

// f(flat index, 32 random bits) over [outer, B, inner], one example's stream per (o, b) row: one
// hash serves two neighbouring elements of a row (the hash is the cost; 32 bits resolve p to
// 2^-32).
template <typename F>
void for_keyed(std::int64_t outer, std::int64_t B, std::int64_t inner, std::uint64_t key,
               std::int64_t batch_offset, F&& f) {
  const std::int64_t rows = outer * B, pairs = (inner + 1) / 2;
  parallel_for(rows, rows * inner >= kParallelMin, [&](std::int64_t r) {
    const std::int64_t o = r / B, b = r % B;
    const std::uint64_t ex = detail::sequence_key(key, batch_offset + b);
    const std::uint64_t pos = std::uint64_t(o) * std::uint64_t(pairs);
    const std::int64_t base = r * inner;
    for (std::int64_t i = 0; i < inner; i += 2) {
      const std::uint64_t bits = detail::mix64(ex + pos + std::uint64_t(i / 2));
      f(base + i, std::uint32_t(bits));
      if (i + 1 < inner) f(base + i + 1, std::uint32_t(bits >> 32));
    }
  });
}

}  // namespace

void keyed_uniform(std::int64_t outer, std::int64_t B, std::int64_t inner, std::uint64_t seed,
                   std::int64_t batch_offset, double* out) {
  check_keyed(outer, B, inner, batch_offset);
  require_ptr(out, outer * B * inner, "out");
  for_keyed(outer, B, inner, detail::dropout_key(seed), batch_offset,
            [&](std::int64_t k, std::uint32_t bits) { out[k] = double(bits) * 0x1.0p-32; });
}

void detail::check_keyed_dropout(std::int64_t outer, std::int64_t B, std::int64_t inner,
                                 std::int64_t batch_offset, double p, const void* x, const void* y,
                                 const void* scale, bool scale_optional) {
  check_keyed(outer, B, inner, batch_offset);
  require(p >= 0.0 && p < 1.0, "p must be in [0, 1), got " + std::to_string(p));
  const std::int64_t n = outer * B * inner;
  require_ptr(x, n, "x");
  require_ptr(y, n, "y");
  if (!scale_optional) require_ptr(scale, n, "scale");
}

template <typename T>
void keyed_dropout(std::int64_t outer, std::int64_t B, std::int64_t inner, const T* x, double p,
                   std::uint64_t seed, std::int64_t batch_offset, T* y, T* scale) {
  detail::check_keyed_dropout(outer, B, inner, batch_offset, p, x, y, scale);
  const T keep = T(1.0 / (1.0 - p));
  // draw >= p, with draw = bits / 2^32, in integers: bits >= ceil(p * 2^32)
  const std::uint64_t cut = std::uint64_t(std::ceil(p * 0x1.0p32));
  for_keyed(outer, B, inner, detail::dropout_key(seed), batch_offset,
            [&](std::int64_t k, std::uint32_t bits) {
              const T s = std::uint64_t(bits) >= cut ? keep : T(0);
              scale[k] = s;
              y[k] = x[k] * s;
            });
}

template <typename T>
void embedding_forward(std::int64_t N, std::int64_t V, std::int64_t E, const std::int64_t* ids,
                       const T* weight, T* out) {
  detail::check_embedding(N, V, E, -1);
  check_ids(N, V, ids, "ids");
  require_ptr(weight, V * E, "weight");
  require_ptr(out, N * E, "out");
  parallel_for(N, N * E >= kParallelMin, [&](std::int64_t n) {
    std::memcpy(out + n * E, weight + ids[n] * E, sizeof(T) * static_cast<std::size_t>(E));
  });
}

template <typename T>
void embedding_backward(std::int64_t N, std::int64_t V, std::int64_t E, const std::int64_t* ids,
                        const T* dout, T* dweight, std::int64_t padding_idx) {
  detail::check_embedding(N, V, E, padding_idx);
  check_ids(N, V, ids, "ids");
  require_ptr(dout, N * E, "dout");
  require_ptr(dweight, V * E, "dweight");
  // Each thread owns a slice of the vocabulary and scans all ids: no two threads touch one row,
  // and every row adds its contributions in n order (deterministic for any thread count).
  team(N * E >= kParallelMin, [&] {
    const int nt = thread_count(), t = thread_id();
    const std::int64_t lo = V * t / nt, hi = V * (t + 1) / nt;
    for (std::int64_t n = 0; n < N; ++n) {
      const std::int64_t id = ids[n];
      if (id < lo || id >= hi || id == padding_idx) continue;
      T* row = dweight + id * E;
      const T* src = dout + n * E;
      for (std::int64_t e = 0; e < E; ++e) row[e] += src[e];
    }
  });
}

// ---- Linear -----------------------------------------------------------------------------------

void detail::check_linear(std::int64_t N, std::int64_t I, std::int64_t O) {
  require_size(N, "N");
  require_positive(I, "I (in_features)");
  require_positive(O, "O (out_features)");
}

void detail::check_embedding(std::int64_t N, std::int64_t V, std::int64_t E,
                             std::int64_t padding_idx) {
  require_size(N, "N");
  require_positive(V, "V (vocabulary size)");
  require_positive(E, "E (embedding size)");
  require(padding_idx < V,
          "padding_idx must be < V=" + std::to_string(V) + ", got " + std::to_string(padding_idx));
}

template <typename T>
void linear_forward(std::int64_t N, std::int64_t I, std::int64_t O, const T* x, const T* weight,
                    const T* bias, T* y) {
  detail::check_linear(N, I, O);
  require_ptr(x, N * I, "x");
  require_ptr(weight, O * I, "weight");
  require_ptr(y, N * O, "y");
  if (bias) {
    for (std::int64_t n = 0; n < N; ++n)
      std::memcpy(y + n * O, bias, sizeof(T) * static_cast<std::size_t>(O));
  }
  // The products are split across the OpenMP team by linalg.h (Eigen itself runs single-threaded).
  detail::par_gemm<T>(false, true, N, O, I, x, I, weight, I, bias ? T(1) : T(0), y, O);
}

template <typename T>
void linear_backward(std::int64_t N, std::int64_t I, std::int64_t O, const T* dy, const T* x,
                     const T* weight, T* dx, T* dweight, T* dbias) {
  detail::check_linear(N, I, O);
  require_ptr(dy, N * O, "dy");
  require_ptr(x, N * I, "x");
  require_ptr(weight, O * I, "weight");
  require_ptr(dweight, O * I, "dweight");
  if (dx) detail::par_gemm<T>(false, false, N, I, O, dy, O, weight, I, T(0), dx, I);
  detail::gemm_tn_acc<T>(O, I, N, dy, O, x, I, dweight, I);
  if (dbias) detail::colsum_acc<T>(N, O, dy, O, dbias);
}

// ---- Conv1d -----------------------------------------------------------------------------------

namespace {

void check_conv1d(std::int64_t N, std::int64_t L, std::int64_t C, std::int64_t O, std::int64_t K,
                  std::int64_t pad) {
  require_size(N, "N");
  require_positive(L, "L (length)");
  require_positive(C, "C (in_channels)");
  require_positive(O, "O (out_channels)");
  require_positive(K, "K (kernel_size)");
  require_size(pad, "padding");
  require(conv1d_out_length(L, K, pad) >= 1,
          "the input length L=" + std::to_string(L) + " with padding " + std::to_string(pad) +
              " is shorter than kernel_size " + std::to_string(K));
}

// cols [N*Lo, K*C]: row (n, t) holds x[n, t + k - pad, :] for k = 0..K-1 side by side (zeros
// outside the sequence). Reused per thread: the buffer of a batch of sentences is tens of MB,
// and allocating it per call would fault its pages in every time.
template <typename T>
T* im2col(std::int64_t N, std::int64_t L, std::int64_t C, std::int64_t K, std::int64_t pad,
          const T* x) {
  thread_local detail::AlignedVec<T> cols;
  const std::int64_t Lo = conv1d_out_length(L, K, pad), KC = K * C;
  if (cols.size() < std::size_t(N * Lo * KC)) cols.resize(std::size_t(N * Lo * KC));
  T* out = cols.data();
  detail::for_rows(N * Lo, KC, [&](std::int64_t row) {
    const std::int64_t n = row / Lo, t = row % Lo;
    T* dst = out + row * KC;
    for (std::int64_t k = 0; k < K; ++k) {
      const std::int64_t s = t + k - pad;
      if (s >= 0 && s < L)
        std::memcpy(dst + k * C, x + (n * L + s) * C, sizeof(T) * std::size_t(C));
      else
        std::fill(dst + k * C, dst + (k + 1) * C, T(0));
    }
  });
  return out;
}

// weight [O, C, K] <-> [O, K*C] (the im2col order).
template <typename T>
void to_kc(std::int64_t O, std::int64_t C, std::int64_t K, const T* w, T* out) {
  for (std::int64_t o = 0; o < O; ++o)
    for (std::int64_t c = 0; c < C; ++c)
      for (std::int64_t k = 0; k < K; ++k) out[(o * K + k) * C + c] = w[(o * C + c) * K + k];
}

}  // namespace

template <typename T>
void conv1d_forward(std::int64_t N, std::int64_t L, std::int64_t C, std::int64_t O, std::int64_t K,
                    std::int64_t pad, const T* x, const T* weight, const T* bias, T* y) {
  check_conv1d(N, L, C, O, K, pad);
  const std::int64_t Lo = conv1d_out_length(L, K, pad), KC = K * C;
  require_ptr(x, N * L * C, "x");
  require_ptr(weight, O * KC, "weight");
  require_ptr(y, N * Lo * O, "y");
  if (N == 0) return;
  const T* cols = im2col(N, L, C, K, pad, x);
  detail::AlignedVec<T> w(std::size_t(O * KC));
  to_kc(O, C, K, weight, w.data());
  if (bias)
    for (std::int64_t r = 0; r < N * Lo; ++r)
      std::memcpy(y + r * O, bias, sizeof(T) * std::size_t(O));
  detail::par_gemm<T>(false, true, N * Lo, O, KC, cols, KC, w.data(), KC, bias ? T(1) : T(0), y, O);
}

template <typename T>
void conv1d_backward(std::int64_t N, std::int64_t L, std::int64_t C, std::int64_t O, std::int64_t K,
                     std::int64_t pad, const T* dy, const T* x, const T* weight, T* dx, T* dweight,
                     T* dbias) {
  check_conv1d(N, L, C, O, K, pad);
  const std::int64_t Lo = conv1d_out_length(L, K, pad), KC = K * C, M = N * Lo;
  require_ptr(dy, M * O, "dy");
  require_ptr(x, N * L * C, "x");
  require_ptr(weight, O * KC, "weight");
  require_ptr(dweight, O * KC, "dweight");
  if (N == 0) return;
  // dW = dyᵀ · cols in the im2col order, then added into PyTorch's layout.
  const T* cols = im2col(N, L, C, K, pad, x);
  detail::AlignedVec<T> dw(std::size_t(O * KC), T(0));
  detail::gemm_tn_acc<T>(O, KC, M, dy, O, cols, KC, dw.data(), KC);
  for (std::int64_t o = 0; o < O; ++o)
    for (std::int64_t c = 0; c < C; ++c)
      for (std::int64_t k = 0; k < K; ++k) dweight[(o * C + c) * K + k] += dw[(o * K + k) * C + c];
  if (dbias) detail::colsum_acc<T>(M, O, dy, O, dbias);
  if (!dx) return;
  // dcols = dy · W, then each row's K slices added back where im2col read them (col2im).
  detail::AlignedVec<T> w(std::size_t(O * KC));
  to_kc(O, C, K, weight, w.data());
  thread_local detail::AlignedVec<T> dcols;  // reused, as im2col's buffer
  if (dcols.size() < std::size_t(M * KC)) dcols.resize(std::size_t(M * KC));
  detail::par_gemm<T>(false, false, M, KC, O, dy, O, w.data(), KC, T(0), dcols.data(), KC);
  // The team's threads must read this thread's buffer, not their own (empty) thread_local one.
  const T* dc = dcols.data();
  detail::for_rows(N, Lo * KC, [&](std::int64_t n) {
    T* d = dx + n * L * C;
    std::fill(d, d + L * C, T(0));
    for (std::int64_t t = 0; t < Lo; ++t)
      for (std::int64_t k = 0; k < K; ++k) {
        const std::int64_t s = t + k - pad;
        if (s < 0 || s >= L) continue;
        const T* src = dc + (n * Lo + t) * KC + k * C;
        for (std::int64_t c = 0; c < C; ++c) d[s * C + c] += src[c];
      }
  });
}

// ---- Softmax ----------------------------------------------------------------------------------

namespace {

// f(row) for each row [V] of rows [N, V], after the checks both softmax kernels share; a single
// token's row (sampling) runs without an OpenMP region (see detail::team).
template <typename T, typename F>
void for_each_row(std::int64_t N, std::int64_t V, T* rows, F f) {
  require_size(N, "N");
  require_positive(V, "V");
  require_ptr(rows, N * V, "rows");
  team(N * V >= kParallelMin, [&] {
#pragma omp for schedule(static)
    for (std::int64_t n = 0; n < N; ++n) f(rows + n * V);
  });
}

}  // namespace

template <typename T>
void log_softmax_rows(std::int64_t N, std::int64_t V, T* rows) {
  for_each_row(N, V, rows, [V](T* r) {
    const T lse = T(shifted_exp(r, V, static_cast<T*>(nullptr)).lse());  // r is kept
    for (std::int64_t v = 0; v < V; ++v) r[v] -= lse;
  });
}

template <typename T>
void softmax_rows(std::int64_t N, std::int64_t V, T* rows) {
  for_each_row(N, V, rows, [V](T* r) {
    const T scale = T(1.0 / shifted_exp(r, V, r).sum);  // r = exp(r - max) in place
    for (std::int64_t v = 0; v < V; ++v) r[v] *= scale;
  });
}

// ---- Losses -----------------------------------------------------------------------------------
void detail::check_cross_entropy(std::int64_t N, std::int64_t C, const void* logits,
                                 const void* targets, const CrossEntropyOptions& options) {
  require_size(N, "N");
  require_positive(C, "C (classes)");
  require_ptr(logits, N * C, "logits");
  require_ptr(targets, N, "targets");
  const double eps = options.label_smoothing;
  require(eps >= 0.0 && eps <= 1.0, "label_smoothing must be in [0, 1], got " + num(eps));
  require(std::isfinite(options.grad_scale),
          "grad_scale must be finite, got " + num(options.grad_scale));
  require(options.reduction == Reduction::kMean || options.reduction == Reduction::kSum,
          "reduction must be mean or sum");
}

std::int64_t detail::check_targets(std::int64_t N, std::int64_t C, const std::int64_t* targets,
                                   std::int64_t ignore_index) {
  std::int64_t count = 0;
  for (std::int64_t n = 0; n < N; ++n) {
    const std::int64_t t = targets[n];
    if (t == ignore_index) continue;
    if (t < 0 || t >= C)
      throw std::invalid_argument("targets: class " + std::to_string(t) + " at position " +
                                  std::to_string(n) + " is out of range [0, " + std::to_string(C) +
                                  ") (and is not ignore_index=" + std::to_string(ignore_index) +
                                  ")");
    ++count;
  }
  return count;
}

template <typename T>
LossResult cross_entropy(std::int64_t N, std::int64_t C, const T* logits,
                         const std::int64_t* targets, const CrossEntropyOptions& options,
                         T* dlogits) {
  detail::check_cross_entropy(N, C, logits, targets, options);
  const double eps = options.label_smoothing;
  const std::int64_t ignore = options.ignore_index;
  const std::int64_t count = detail::check_targets(N, C, targets, ignore);
  const bool mean = options.reduction == Reduction::kMean;
  const double denom = mean ? static_cast<double>(count) : 1.0;
  const double gscale = count == 0 ? 0.0 : options.grad_scale / denom;
  const double smooth = eps / static_cast<double>(C);  // ε/C on every class
  const T q_other = T(smooth), q_target = T(smooth + (1.0 - eps));
  std::vector<double> row_loss(static_cast<std::size_t>(N), 0.0);

  // Rows are independent; each runs the engine's softmax kernel (shifted_exp).
  using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
  team(N * C >= kParallelMin, [&] {
#pragma omp for schedule(static)
    for (std::int64_t n = 0; n < N; ++n) {
      const Eigen::Map<const Arr> z(logits + n * C, C);
      T* d = dlogits ? dlogits + n * C : nullptr;
      const std::int64_t t = targets[n];
      if (t == ignore) {
        if (d) std::fill(d, d + C, T(0));
        continue;
      }
      // The exponentials are kept (in dlogits) only when there is a gradient to make of them.
      const ExpSum es = shifted_exp(logits + n * C, C, d);
      const double s = es.sum, lse = es.lse();
      const double zsum = eps > 0.0 ? detail::lane_sum(logits + n * C, C) : 0.0;
      // -Σ_c q_c log p_c with q = (1-ε)·onehot(t) + ε/C and log p_c = z_c - lse.
      row_loss[static_cast<std::size_t>(n)] =
          lse - (1.0 - eps) * static_cast<double>(z[t]) - smooth * zsum;
      if (d) {  // d(loss)/dz_c = (p_c - q_c) · scale
        Eigen::Map<Arr> e(d, C);
        const T inv_s = T(1.0 / s), g = T(gscale), e_target = d[t];
        e = (e * inv_s - q_other) * g;
        d[t] = (e_target * inv_s - q_target) * g;
      }
    }
  });
  double total = 0.0;
  for (double l : row_loss) total += l;
  LossResult r;
  r.count = count;
  r.loss = count == 0 ? 0.0 : total / denom;
  return r;
}

template <typename T>
double mse_loss(std::int64_t N, const T* pred, const T* target, Reduction reduction,
                double grad_scale, T* dpred) {
  detail::check_mse(N, pred, target, reduction, grad_scale);
  const bool mean = reduction == Reduction::kMean;
  if (N == 0) return 0.0;
  const double denom = mean ? static_cast<double>(N) : 1.0;
  const double sum = chunked_sum(N, [&](std::int64_t i) {
    const double r = static_cast<double>(pred[i]) - static_cast<double>(target[i]);
    return r * r;
  });
  if (dpred) {
    const T g = T(2.0 * grad_scale / denom);
    parallel_for(N, N >= kParallelMin,
                 [&](std::int64_t i) { dpred[i] = g * (pred[i] - target[i]); });
  }
  return sum / denom;
}

void detail::check_batched_gemm(std::int64_t batch, std::int64_t M, std::int64_t N, std::int64_t K,
                                const void* A, const void* B, const void* C) {
  require_size(batch, "batch");
  require_size(M, "M");
  require_size(N, "N");
  require_size(K, "K");
  require_ptr(A, batch * M * K, "A");
  require_ptr(B, batch * K * N, "B");
  require_ptr(C, batch * M * N, "C");
}

void detail::check_masked_softmax(std::int64_t R, std::int64_t S, std::int64_t group,
                                  const void* scores, const std::int64_t* lengths,
                                  const void* weights) {
  require_size(R, "R");
  require_positive(S, "S");
  require_positive(group, "group");
  require(R % group == 0,
          "R=" + std::to_string(R) + " must be a multiple of group=" + std::to_string(group));
  require_ptr(scores, R * S, "scores");
  require_ptr(weights, R * S, "weights");
  require_ptr(lengths, R / group, "lengths");
  for (std::int64_t b = 0; b < R / group; ++b)
    if (lengths[b] < 1 || lengths[b] > S)
      throw std::invalid_argument("lengths: " + std::to_string(lengths[b]) + " at position " +
                                  std::to_string(b) + " is outside [1, S=" + std::to_string(S) +
                                  "]");
}

void detail::check_strided_copy(std::int64_t rows, std::int64_t width, const void* src,
                                std::int64_t src_stride, const void* dst, std::int64_t dst_stride) {
  require_size(rows, "rows");
  require_size(width, "width");
  require(src_stride >= width && dst_stride >= width,
          "strides must be >= width=" + std::to_string(width) + ", got " +
              std::to_string(src_stride) + " and " + std::to_string(dst_stride));
  require_ptr(src, rows * width, "src");
  require_ptr(dst, rows * width, "dst");
}

void detail::check_mse(std::int64_t N, const void* pred, const void* target, Reduction reduction,
                       double grad_scale) {
  require_size(N, "N");
  require_ptr(pred, N, "pred");
  require_ptr(target, N, "target");
  require(reduction == Reduction::kMean || reduction == Reduction::kSum,
          "reduction must be mean or sum");
  require(std::isfinite(grad_scale), "grad_scale must be finite, got " + num(grad_scale));
}

// ---- Pooling over time ------------------------------------------------------------------------

void detail::check_time_pool(std::int64_t Tn, std::int64_t B, std::int64_t F, const void* in,
                             const void* out, const std::int64_t* lengths) {
  require_positive(Tn, "T (steps)");
  require_size(B, "B");
  require_size(F, "F (features)");
  require_ptr(in, Tn * B * F, "input");
  require_ptr(out, B * F, "output");
  if (!lengths) return;  // max_pool_backward: its steps are in argmax
  for (std::int64_t b = 0; b < B; ++b)
    if (lengths[b] < 1 || lengths[b] > Tn)
      throw std::invalid_argument("lengths: " + std::to_string(lengths[b]) + " at position " +
                                  std::to_string(b) + " is outside [1, T=" + std::to_string(Tn) +
                                  "]");
}

void detail::check_pool_argmax(std::int64_t Tn, std::int64_t n, const std::int64_t* argmax) {
  for (std::int64_t k = 0; k < n; ++k)
    if (argmax[k] < 0 || argmax[k] >= Tn)  // the message is built only for the bad one
      throw std::invalid_argument("argmax: step " + std::to_string(argmax[k]) + " at position " +
                                  std::to_string(k) + " is outside [0, T=" + std::to_string(Tn) +
                                  ")");
}

template <typename T>
void mean_pool_forward(std::int64_t Tn, std::int64_t B, std::int64_t F, const T* y,
                       const std::int64_t* lengths, T* pooled) {
  detail::check_time_pool(Tn, B, F, y, pooled, lengths);
  parallel_for(B, Tn * B * F >= kParallelMin, [&](std::int64_t b) {
    std::vector<double> acc(static_cast<std::size_t>(F), 0.0);
    for (std::int64_t t = 0; t < lengths[b]; ++t) {  // step rows in order: the GPU's order too
      const T* row = y + (t * B + b) * F;
      for (std::int64_t f = 0; f < F; ++f) acc[static_cast<std::size_t>(f)] += double(row[f]);
    }
    const double n = double(lengths[b]);
    for (std::int64_t f = 0; f < F; ++f)
      pooled[b * F + f] = T(acc[static_cast<std::size_t>(f)] / n);
  });
}

template <typename T>
void mean_pool_backward(std::int64_t Tn, std::int64_t B, std::int64_t F, const T* dpooled,
                        const std::int64_t* lengths, T* dy) {
  detail::check_time_pool(Tn, B, F, dy, dpooled, lengths);
  parallel_for(Tn, Tn * B * F >= kParallelMin, [&](std::int64_t t) {
    for (std::int64_t b = 0; b < B; ++b) {
      T* row = dy + (t * B + b) * F;
      const T inv = T(1.0 / double(lengths[b]));
      if (t < lengths[b]) {
        for (std::int64_t f = 0; f < F; ++f) row[f] = inv * dpooled[b * F + f];
      } else {
        std::fill(row, row + F, T(0));
      }
    }
  });
}

template <typename T>
void max_pool_forward(std::int64_t Tn, std::int64_t B, std::int64_t F, const T* y,
                      const std::int64_t* lengths, T* pooled, std::int64_t* argmax) {
  detail::check_time_pool(Tn, B, F, y, pooled, lengths);
  require_ptr(argmax, B * F, "argmax");
  parallel_for(B, Tn * B * F >= kParallelMin, [&](std::int64_t b) {
    T* best = pooled + b * F;
    std::int64_t* at = argmax + b * F;
    std::copy(y + b * F, y + (b + 1) * F, best);
    std::fill(at, at + F, std::int64_t(0));
    for (std::int64_t t = 1; t < lengths[b]; ++t) {
      const T* row = y + (t * B + b) * F;
      for (std::int64_t f = 0; f < F; ++f)
        if (detail::max_pool_takes(row[f], best[f])) {
          best[f] = row[f];
          at[f] = t;
        }
    }
  });
}

template <typename T>
void max_pool_backward(std::int64_t Tn, std::int64_t B, std::int64_t F, const T* dpooled,
                       const std::int64_t* argmax, T* dy) {
  detail::check_time_pool(Tn, B, F, dy, dpooled, nullptr);
  require_ptr(argmax, B * F, "argmax");
  detail::check_pool_argmax(Tn, B * F, argmax);
  const std::int64_t BF = B * F;
  parallel_for(Tn, Tn * BF >= kParallelMin,
               [&](std::int64_t t) { std::fill(dy + t * BF, dy + (t + 1) * BF, T(0)); });
  for (std::int64_t k = 0; k < BF; ++k) dy[argmax[k] * BF + k] = dpooled[k];  // one per feature
}

// ---- Optimizers -------------------------------------------------------------------------------
// Each element's update is optim_math.h's (shared with the GPU kernels): torch's op sequence for
// one element, with torch's association order (add(alpha): a + α·b; addcmul: a + v·b·c;
// addcdiv: a + v·(b/c)).

void detail::check_sgd(std::int64_t P, const void* param, const void* grad,
                       const void* momentum_buf, const SgdOptions& o) {
  require_size(P, "P");
  require_ptr(param, P, "param");
  require_ptr(grad, P, "grad");
  require_nonneg(o.lr, "lr");
  require_nonneg(o.momentum, "momentum");
  require(std::isfinite(o.dampening), "dampening must be finite, got " + num(o.dampening));
  require_nonneg(o.weight_decay, "weight_decay");
  require(!o.nesterov || (o.momentum > 0.0 && o.dampening == 0.0),
          "nesterov needs momentum > 0 and dampening == 0");
  if (o.momentum != 0.0) require_ptr(momentum_buf, P, "momentum_buf");
}

template <typename T>
void sgd_step(std::int64_t P, T* param, const T* grad, T* momentum_buf, bool first_step,
              const SgdOptions& o) {
  detail::check_sgd(P, param, grad, momentum_buf, o);
  const auto c = detail::optim::sgd_constants<T>(o, first_step);
  parallel_for(P, P >= kParallelMin, [&](std::int64_t i) {
    detail::optim::sgd_element(i, param, grad, momentum_buf, c);
  });
}

void detail::check_adam(std::int64_t P, const void* param, const void* grad, const void* exp_avg,
                        const void* exp_avg_sq, std::int64_t step, const AdamOptions& o) {
  require_size(P, "P");
  require_ptr(param, P, "param");
  require_ptr(grad, P, "grad");
  require_ptr(exp_avg, P, "exp_avg");
  require_ptr(exp_avg_sq, P, "exp_avg_sq");
  require_nonneg(o.lr, "lr");
  require_unit(o.beta1, "beta1");
  require_unit(o.beta2, "beta2");
  require_nonneg(o.eps, "eps");
  require_nonneg(o.weight_decay, "weight_decay");
  require_positive(step, "step");
}

// The update loops take __restrict pointers (GCC vectorises them without run-time overlap checks,
// which it gives up on past a few arrays) and call optim_math.h's element update.
template <bool kCoupledWd, bool kDecoupledWd, bool kAmsgrad, bool kLowLerp, typename T>
void adam_piece(std::int64_t n, T* __restrict p, const T* __restrict g, T* __restrict m,
                T* __restrict v, T* __restrict vmax, const detail::optim::AdamConstants<T> c) {
  for (std::int64_t i = 0; i < n; ++i)
    detail::optim::adam_element<kCoupledWd, kDecoupledWd, kAmsgrad, kLowLerp>(i, p, g, m, v, vmax,
                                                                              c);
}

template <typename T>
void adam_step(std::int64_t P, T* param, const T* grad, T* exp_avg, T* exp_avg_sq,
               T* max_exp_avg_sq, std::int64_t step, const AdamOptions& o) {
  detail::check_adam(P, param, grad, exp_avg, exp_avg_sq, step, o);
  const bool amsgrad = max_exp_avg_sq != nullptr;
  const auto c = detail::optim::adam_constants<T>(o, step);
  for_optimizer_chunks(P, [&](std::int64_t lo, std::int64_t n) {
    detail::optim::with_adam_flags(o, amsgrad, c, [&](auto cw, auto dw, auto ams, auto low) {
      adam_piece<decltype(cw)::value, decltype(dw)::value, decltype(ams)::value,
                 decltype(low)::value>(n, param + lo, grad + lo, exp_avg + lo, exp_avg_sq + lo,
                                       amsgrad ? max_exp_avg_sq + lo : nullptr, c);
    });
  });
}

void detail::check_adadelta(std::int64_t P, const void* param, const void* grad,
                            const void* square_avg, const void* acc_delta,
                            const AdadeltaOptions& o) {
  require_size(P, "P");
  require_ptr(param, P, "param");
  require_ptr(grad, P, "grad");
  require_ptr(square_avg, P, "square_avg");
  require_ptr(acc_delta, P, "acc_delta");
  require_nonneg(o.lr, "lr");
  require(o.rho >= 0.0 && o.rho <= 1.0, "rho must be in [0, 1], got " + num(o.rho));
  require_nonneg(o.eps, "eps");
  require_nonneg(o.weight_decay, "weight_decay");
}

template <bool kWd, typename T>
void adadelta_piece(std::int64_t n, T* __restrict p, const T* __restrict g, T* __restrict sq,
                    T* __restrict acc, const detail::optim::AdadeltaConstants<T> c) {
  for (std::int64_t i = 0; i < n; ++i) detail::optim::adadelta_element<kWd>(i, p, g, sq, acc, c);
}

template <typename T>
void adadelta_step(std::int64_t P, T* param, const T* grad, T* square_avg, T* acc_delta,
                   const AdadeltaOptions& o) {
  detail::check_adadelta(P, param, grad, square_avg, acc_delta, o);
  const auto c = detail::optim::adadelta_constants<T>(o);
  for_optimizer_chunks(P, [&](std::int64_t lo, std::int64_t n) {
    detail::optim::with_flag(o.weight_decay != 0.0, [&](auto wd) {
      adadelta_piece<decltype(wd)::value>(n, param + lo, grad + lo, square_avg + lo, acc_delta + lo,
                                          c);
    });
  });
}

void detail::check_rmsprop(std::int64_t P, const void* param, const void* grad,
                           const void* square_avg, const void* grad_avg, const void* momentum_buf,
                           const RmspropOptions& o) {
  require_size(P, "P");
  require_ptr(param, P, "param");
  require_ptr(grad, P, "grad");
  require_ptr(square_avg, P, "square_avg");
  require_nonneg(o.lr, "lr");
  require_nonneg(o.alpha, "alpha");
  require_nonneg(o.eps, "eps");
  require_nonneg(o.weight_decay, "weight_decay");
  require_nonneg(o.momentum, "momentum");
  if (o.centered) require_ptr(grad_avg, P, "grad_avg (centered)");
  if (o.momentum > 0.0) require_ptr(momentum_buf, P, "momentum_buf");
}

template <bool kWd, bool kCentered, bool kMomentum, bool kLowLerp, typename T>
void rmsprop_piece(std::int64_t n, T* __restrict p, const T* __restrict g, T* __restrict sq,
                   T* __restrict ga, T* __restrict buf,
                   const detail::optim::RmspropConstants<T> c) {
  for (std::int64_t i = 0; i < n; ++i)
    detail::optim::rmsprop_element<kWd, kCentered, kMomentum, kLowLerp>(i, p, g, sq, ga, buf, c);
}

template <typename T>
void rmsprop_step(std::int64_t P, T* param, const T* grad, T* square_avg, T* grad_avg,
                  T* momentum_buf, const RmspropOptions& o) {
  detail::check_rmsprop(P, param, grad, square_avg, grad_avg, momentum_buf, o);
  const auto c = detail::optim::rmsprop_constants<T>(o);
  const bool centered = o.centered, use_mom = o.momentum > 0.0;
  for_optimizer_chunks(P, [&](std::int64_t lo, std::int64_t n) {
    detail::optim::with_rmsprop_flags(o, c, [&](auto wd, auto centred, auto mom, auto low) {
      rmsprop_piece<decltype(wd)::value, decltype(centred)::value, decltype(mom)::value,
                    decltype(low)::value>(n, param + lo, grad + lo, square_avg + lo,
                                          centered ? grad_avg + lo : nullptr,
                                          use_mom ? momentum_buf + lo : nullptr, c);
    });
  });
}

void detail::check_adagrad(std::int64_t P, const void* param, const void* grad,
                           const void* state_sum, std::int64_t step, const AdagradOptions& o) {
  require_size(P, "P");
  require_ptr(param, P, "param");
  require_ptr(grad, P, "grad");
  require_ptr(state_sum, P, "state_sum");
  require_nonneg(o.lr, "lr");
  require_nonneg(o.lr_decay, "lr_decay");
  require_nonneg(o.weight_decay, "weight_decay");
  require_nonneg(o.eps, "eps");
  require_positive(step, "step");
}

template <bool kWd, typename T>
void adagrad_piece(std::int64_t n, T* __restrict p, const T* __restrict g, T* __restrict sum,
                   const detail::optim::AdagradConstants<T> c) {
  for (std::int64_t i = 0; i < n; ++i) detail::optim::adagrad_element<kWd>(i, p, g, sum, c);
}

template <typename T>
void adagrad_step(std::int64_t P, T* param, const T* grad, T* state_sum, std::int64_t step,
                  const AdagradOptions& o) {
  detail::check_adagrad(P, param, grad, state_sum, step, o);
  const auto c = detail::optim::adagrad_constants<T>(o, step);
  for_optimizer_chunks(P, [&](std::int64_t lo, std::int64_t n) {
    detail::optim::with_flag(o.weight_decay != 0.0, [&](auto wd) {
      adagrad_piece<decltype(wd)::value>(n, param + lo, grad + lo, state_sum + lo, c);
    });
  });
}

// ---- Gradient clipping and checks -------------------------------------------------------------

void detail::check_buffer(std::int64_t size, const void* data) {
  require_size(size, "buffer size");
  require_ptr(data, size, "buffer");
}

void detail::check_clip_value(double clip_value) {
  require(clip_value > 0.0, "clip_value must be > 0, got " + num(clip_value));
}

template <typename T>
double sum_of_squares(const std::vector<Span<const T>>& buffers) {
  double total = 0.0;
  for (const auto& b : buffers) {
    detail::check_buffer(b.size, b.data);
    total += chunked_sum_of_squares(b.size, b.data);
  }
  return total;
}

template <typename T>
void scale_buffers(const std::vector<Span<T>>& buffers, double factor) {
  const T f = T(factor);
  for (const auto& b : buffers) {
    detail::check_buffer(b.size, b.data);
    T* x = b.data;
    const std::int64_t n = b.size;
    parallel_for(n, n >= kParallelMin, [&](std::int64_t i) { x[i] *= f; });
  }
}

double clip_coefficient(double total_norm, double max_norm) {
  require(max_norm > 0.0, "max_norm must be > 0, got " + num(max_norm));
  if (!std::isfinite(total_norm) || total_norm <= max_norm) return 1.0;
  return max_norm / (total_norm + 1e-6);
}

template <typename T>
double clip_grad_norm(const std::vector<Span<T>>& buffers, double max_norm) {
  require(max_norm > 0.0, "max_norm must be > 0, got " + num(max_norm));
  std::vector<Span<const T>> views;
  views.reserve(buffers.size());
  for (const auto& b : buffers) views.push_back({b.data, b.size});
  const double norm = std::sqrt(sum_of_squares(views));
  const double coef = clip_coefficient(norm, max_norm);
  if (coef != 1.0) scale_buffers(buffers, coef);
  return norm;
}

template <typename T>
void clip_grad_value(const std::vector<Span<T>>& buffers, double clip_value) {
  detail::check_clip_value(clip_value);
  const T hi = T(clip_value), lo = T(-clip_value);
  for (const auto& b : buffers) {
    detail::check_buffer(b.size, b.data);
    T* x = b.data;
    const std::int64_t n = b.size;
    parallel_for(n, n >= kParallelMin,
                 [&](std::int64_t i) { x[i] = detail::optim::clamp_value(x[i], lo, hi); });
  }
}

template <typename T>
bool all_finite(const std::vector<Span<const T>>& buffers) {
  for (const auto& b : buffers) {
    detail::check_buffer(b.size, b.data);
    const T* x = b.data;
    const std::int64_t n = b.size;
    bool ok = true;
    // x - x is 0 for finite x and NaN for NaN/inf: a branch-free test the compiler vectorizes.
    if (n >= kParallelMin) {
#pragma omp parallel for schedule(static) reduction(&& : ok)
      for (std::int64_t i = 0; i < n; ++i) ok = ok && (x[i] - x[i] == T(0));
    } else {  // no OpenMP region for short buffers (see detail::team)
      for (std::int64_t i = 0; i < n; ++i) ok = ok && (x[i] - x[i] == T(0));
    }
    if (!ok) return false;
  }
  return true;
}

// ---- Instantiations ---------------------------------------------------------------------------

#define RNNCORE_OPS_INSTANTIATE(T)                                                                \
  template void embedding_forward<T>(std::int64_t, std::int64_t, std::int64_t,                    \
                                     const std::int64_t*, const T*, T*);                          \
  template void embedding_backward<T>(std::int64_t, std::int64_t, std::int64_t,                   \
                                      const std::int64_t*, const T*, T*, std::int64_t);           \
  template void linear_forward<T>(std::int64_t, std::int64_t, std::int64_t, const T*, const T*,   \
                                  const T*, T*);                                                  \
  template void keyed_dropout<T>(std::int64_t, std::int64_t, std::int64_t, const T*, double,      \
                                 std::uint64_t, std::int64_t, T*, T*);                            \
  template void linear_backward<T>(std::int64_t, std::int64_t, std::int64_t, const T*, const T*,  \
                                   const T*, T*, T*, T*);                                         \
  template void conv1d_forward<T>(std::int64_t, std::int64_t, std::int64_t, std::int64_t,         \
                                  std::int64_t, std::int64_t, const T*, const T*, const T*, T*);  \
  template void conv1d_backward<T>(std::int64_t, std::int64_t, std::int64_t, std::int64_t,        \
                                   std::int64_t, std::int64_t, const T*, const T*, const T*, T*,  \
                                   T*, T*);                                                       \
  template void log_softmax_rows<T>(std::int64_t, std::int64_t, T*);                              \
  template void softmax_rows<T>(std::int64_t, std::int64_t, T*);                                  \
  template LossResult cross_entropy<T>(std::int64_t, std::int64_t, const T*, const std::int64_t*, \
                                       const CrossEntropyOptions&, T*);                           \
  template double mse_loss<T>(std::int64_t, const T*, const T*, Reduction, double, T*);           \
  template void mean_pool_forward<T>(std::int64_t, std::int64_t, std::int64_t, const T*,          \
                                     const std::int64_t*, T*);                                    \
  template void mean_pool_backward<T>(std::int64_t, std::int64_t, std::int64_t, const T*,         \
                                      const std::int64_t*, T*);                                   \
  template void max_pool_forward<T>(std::int64_t, std::int64_t, std::int64_t, const T*,           \
                                    const std::int64_t*, T*, std::int64_t*);                      \
  template void max_pool_backward<T>(std::int64_t, std::int64_t, std::int64_t, const T*,          \
                                     const std::int64_t*, T*);                                    \
  template void sgd_step<T>(std::int64_t, T*, const T*, T*, bool, const SgdOptions&);             \
  template void adam_step<T>(std::int64_t, T*, const T*, T*, T*, T*, std::int64_t,                \
                             const AdamOptions&);                                                 \
  template void rmsprop_step<T>(std::int64_t, T*, const T*, T*, T*, T*, const RmspropOptions&);   \
  template void adadelta_step<T>(std::int64_t, T*, const T*, T*, T*, const AdadeltaOptions&);     \
  template void adagrad_step<T>(std::int64_t, T*, const T*, T*, std::int64_t,                     \
                                const AdagradOptions&);                                           \
  template double sum_of_squares<T>(const std::vector<Span<const T>>&);                           \
  template void scale_buffers<T>(const std::vector<Span<T>>&, double);                            \
  template double clip_grad_norm<T>(const std::vector<Span<T>>&, double);                         \
  template void clip_grad_value<T>(const std::vector<Span<T>>&, double);                          \
  template bool all_finite<T>(const std::vector<Span<const T>>&);

RNNCORE_OPS_INSTANTIATE(float)
RNNCORE_OPS_INSTANTIATE(double)
#undef RNNCORE_OPS_INSTANTIATE

}  // namespace rnncore
