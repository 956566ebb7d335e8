// The training operations on a GPU device (embedding, linear, cross-entropy, squared error,
// pooling over time, dropout masks, the optimizers' updates, norms and clipping), written once over
// a device policy as the sequence layers are (gpu/sequence_gpu.h): CUDA kernels and cuBLAS on a
// GPU, loops on the host for "cuda-sim". Every array is device memory. The arguments were checked
// by device_ops.cpp (the CPU ops' own checks, ops_checks.h); ids and targets are checked here, on
// the device, because only the device can read them.
//
// Numerics follow the CPU ops (ops.cpp): the optimizers run optim_math.h's element updates, the
// softmax subtracts each row's max and sums in double, reductions are in double over fixed
// chunks. Results agree with the CPU engine to rounding (the order of the sums differs); every
// kernel is deterministic (no atomics): the embedding's scatter-add gives each column to one
// thread, which adds the tokens in order.
#pragma once

#include <cstdint>
#include <mutex>
#include <vector>

#include "../keyed.h"
#include "../ops_checks.h"  // max_pool_takes
#include "../optim_math.h"
#include "rnncore/ops.h"
#include "sequence_gpu.h"

namespace rnncore::detail::gpu {

// What a device runs, per float type; the GPU's and cuda-sim's are OpsOf below.
template <typename T>
class DeviceOps {
 public:
  virtual ~DeviceOps() = default;
  // How many of ids[0:N] lie in [0, V) (*valid) or outside it (*bad); those equal to *ignore
  // (when not null) count as neither.
  virtual void id_counts(Index N, Index V, const std::int64_t* ids, const std::int64_t* ignore,
                         std::int64_t* valid, std::int64_t* bad) = 0;
  virtual void embedding_forward(Index N, Index E, const std::int64_t* ids, const T* weight,
                                 T* out) = 0;
  virtual void embedding_backward(Index N, Index E, const std::int64_t* ids, const T* dout,
                                  T* dweight, std::int64_t padding_idx) = 0;
  virtual void linear_forward(Index N, Index I, Index O, const T* x, const T* weight, const T* bias,
                              T* y) = 0;
  virtual void linear_backward(Index N, Index I, Index O, const T* dy, const T* x, const T* weight,
                               T* dx, T* dweight, T* dbias) = 0;
  // Σ of the rows' losses and dlogits as the CPU's, with *count targets not ignored and *bad
  // out of [0, C) (those add no loss; dlogits is then not meaningful). One read back: the
  // gradient's scale (1/count for the mean) is read on the device.
  virtual double cross_entropy(Index N, Index C, const T* logits, const std::int64_t* targets,
                               const CrossEntropyOptions& o, T* dlogits, std::int64_t* count,
                               std::int64_t* bad) = 0;
  virtual void batched_gemm(Index batch, bool ta, bool tb, Index M, Index N, Index K, const T* A,
                            const T* B, T* C, bool accumulate) = 0;
  // lengths [R / group] are host memory.
  virtual void masked_softmax(Index R, Index S, Index group, const T* scores,
                              const std::int64_t* lengths, T* weights) = 0;
  virtual void softmax_backward(Index R, Index S, const T* dw, const T* w, T* dscores) = 0;
  virtual void axpy(Index n, double alpha, const T* x, T* y) = 0;
  virtual void column_sums(Index rows, Index cols, const T* x, T* out) = 0;
  virtual void tanh_forward(Index n, const T* x, T* y) = 0;
  virtual void tanh_backward(Index n, const T* dy, const T* y, T* dx) = 0;
  virtual void strided_copy(Index rows, Index width, const T* src, Index src_stride, T* dst,
                            Index dst_stride) = 0;
  // Σ (pred - target)² in double over fixed chunks; dpred (when not null) = 2·grad_scale/denom ·
  // (pred - target).
  virtual double mse_loss(Index N, const T* pred, const T* target, double denom, double grad_scale,
                          T* dpred) = 0;
  // Pooling over time (ops.h); lengths [B] are host memory, argmax device memory.
  virtual void mean_pool(Index Tn, Index B, Index F, const T* y, const std::int64_t* lengths,
                         T* pooled) = 0;
  virtual void mean_pool_backward(Index Tn, Index B, Index F, const T* dpooled,
                                  const std::int64_t* lengths, T* dy) = 0;
  virtual void max_pool(Index Tn, Index B, Index F, const T* y, const std::int64_t* lengths,
                        T* pooled, std::int64_t* argmax) = 0;
  virtual void max_pool_backward(Index Tn, Index B, Index F, const T* dpooled,
                                 const std::int64_t* argmax, T* dy) = 0;
  virtual void keyed_dropout(Index outer, Index B, Index inner, const T* x, double p,
                             std::uint64_t seed, Index batch_offset, T* y, T* scale) = 0;
  virtual void sgd_step(Index P, T* param, const T* grad, T* buf, bool first_step,
                        const SgdOptions& o) = 0;
  virtual void adam_step(Index P, T* param, const T* grad, T* m, T* v, T* vmax, std::int64_t step,
                         const AdamOptions& o) = 0;
  virtual void rmsprop_step(Index P, T* param, const T* grad, T* sq, T* ga, T* buf,
                            const RmspropOptions& o) = 0;
  virtual void adadelta_step(Index P, T* param, const T* grad, T* sq, T* acc,
                             const AdadeltaOptions& o) = 0;
  virtual void adagrad_step(Index P, T* param, const T* grad, T* sum, std::int64_t step,
                            const AdagradOptions& o) = 0;
  // Σ x² in double over fixed chunks (summed in chunk order on the host).
  virtual double sum_of_squares(Index n, const T* x) = 0;
  // How many of x[0:n] are NaN or ±inf.
  virtual std::int64_t count_nonfinite(Index n, const T* x) = 0;
  virtual void scale(Index n, T* x, double factor) = 0;
  virtual void clamp(Index n, T* x, double clip_value) = 0;
};

// The ops of device "cuda-sim" and, in a CUDA build, of the GPU.
template <typename T>
DeviceOps<T>& sim_ops();
template <typename T>
DeviceOps<T>& cuda_ops();

// ---- kernels (functors: one GPU thread per index) -------------------------------------------
template <typename T>
struct Gather {  // out[n, e] = weight[ids[n], e]
  const std::int64_t* ids;
  const T* weight;
  T* out;
  Index E;
  RNNCORE_HD void operator()(Index k) const { out[k] = weight[ids[k / E] * E + k % E]; }
};

template <typename T>
struct ScatterColumn {  // column e of dweight += the tokens' rows, in token order
  const std::int64_t* ids;
  const T* dout;
  T* dweight;
  Index N, E;
  std::int64_t padding_idx;
  RNNCORE_HD void operator()(Index e) const {
    for (Index n = 0; n < N; ++n) {
      const std::int64_t id = ids[n];
      if (id != padding_idx) dweight[id * E + e] += dout[n * E + e];
    }
  }
};

template <typename T>
struct BiasRows {  // y[n, o] = bias[o]
  const T* bias;
  T* y;
  Index O;
  RNNCORE_HD void operator()(Index k) const { y[k] = bias[k % O]; }
};

struct IdCounts {  // row 0: ids in [0, V); row 1: ids outside it (ignore counts as neither)
  const std::int64_t* ids;
  Index V;
  std::int64_t ignore;
  bool use_ignore;
  RNNCORE_HD double operator()(Index row, Index n) const {
    const std::int64_t id = ids[n];
    if (use_ignore && id == ignore) return 0.0;
    const bool ok = id >= 0 && id < V;
    return (row == 0) == ok ? 1.0 : 0.0;
  }
};

template <typename T>
struct RowElement {  // rows [N, C] as f(r, j)
  const T* rows;
  Index C;
  RNNCORE_HD T operator()(Index r, Index j) const { return rows[r * C + j]; }
};

template <typename T>
struct ShiftedExp {  // exp(z - max z) of a row, summed in double as the CPU's lane_sum
  const T* z;
  const T* row_max;
  Index C;
  RNNCORE_HD double operator()(Index r, Index j) const {
    return double(exp_(T(z[r * C + j] - row_max[r])));
  }
};

template <typename T>
struct AsDouble {
  const T* z;
  Index C;
  RNNCORE_HD double operator()(Index r, Index j) const { return double(z[r * C + j]); }
};

template <typename T>
struct RowLoss {  // -Σ_c q_c log p_c of row r (0 for an ignored row)
  const T* z;
  const std::int64_t* targets;
  const T* row_max;
  const double *sums, *zsums;
  double* loss;
  Index C;
  std::int64_t ignore;
  double eps, smooth;
  RNNCORE_HD void operator()(Index r) const {
    const std::int64_t t = targets[r];
    if (t == ignore || t < 0 || t >= C) {  // out of range: counted and refused by the caller
      loss[r] = 0.0;
      return;
    }
    const double lse = double(row_max[r]) + log(sums[r]);
    loss[r] = lse - (1.0 - eps) * double(z[r * C + t]) - (zsums ? smooth * zsums[r] : 0.0);
  }
};

template <typename T>
struct SoftmaxGrad {  // d(loss)/dz = (p - q) · scale
  const T* z;
  const std::int64_t* targets;
  const T* row_max;
  const double* sums;
  T* d;
  Index C;
  std::int64_t ignore;
  T q_other, q_target;
  const double* count;  // targets not ignored, counted on the device
  double grad_scale;
  bool mean;
  RNNCORE_HD void operator()(Index k) const {
    const Index r = k / C, c = k % C;
    const std::int64_t t = targets[r];
    if (t == ignore) {
      d[k] = T(0);
      return;
    }
    const double n = *count;  // the CPU's scale: grad_scale / count for the mean, in double
    const T g = n == 0.0 ? T(0) : T(grad_scale / (mean ? n : 1.0));
    const T inv_s = T(1.0 / sums[r]);
    const T e = exp_(T(z[k] - row_max[r]));
    d[k] = (e * inv_s - (c == t ? q_target : q_other)) * g;
  }
};

template <typename U>
struct Element {  // v[j] as f(0, j)
  const U* v;
  RNNCORE_HD U operator()(Index, Index j) const { return v[j]; }
};

template <typename T>
struct KeyedDropout {  // the CPU's keyed masks (ops.cpp for_keyed), one element per thread
  const T* x;
  T *y, *scale;
  Index B, inner, pairs, batch_offset;
  std::uint64_t key, cut;
  T keep;
  RNNCORE_HD void operator()(Index k) const {
    const Index r = k / inner, i = k % inner, o = r / B, b = r % B;
    const std::uint64_t ex = sequence_key(key, batch_offset + b);
    const std::uint64_t bits =
        mix64(ex + std::uint64_t(o) * std::uint64_t(pairs) + std::uint64_t(i / 2));
    const std::uint32_t half = (i % 2) ? std::uint32_t(bits >> 32) : std::uint32_t(bits);
    const T s = std::uint64_t(half) >= cut ? keep : T(0);
    if (scale) scale[k] = s;  // null: the caller draws the mask again rather than keep it
    y[k] = x[k] * s;
  }
};

template <typename T>
struct MaskedRow {  // score (r, s) of a row over its valid entries (entry 0, always valid, past
                    // them)
  const T* z;
  const std::int64_t* lengths;
  Index S, group;
  RNNCORE_HD T operator()(Index r, Index s) const {
    return z[r * S + (s < lengths[r / group] ? s : 0)];
  }
};

template <typename T>
struct MaskedShiftedExp {  // exp(z - max) over a row's valid entries, in double
  const T *z, *row_max;
  const std::int64_t* lengths;
  Index S, group;
  RNNCORE_HD double operator()(Index r, Index s) const {
    return s < lengths[r / group] ? double(exp_(T(z[r * S + s] - row_max[r]))) : 0.0;
  }
};

template <typename T>
struct MaskedSoftmax {  // one weight per thread
  const T *z, *row_max;
  const double* sums;
  const std::int64_t* lengths;
  T* w;
  Index S, group;
  RNNCORE_HD void operator()(Index k) const {
    const Index r = k / S, s = k % S;
    w[k] = s < lengths[r / group] ? T(double(exp_(T(z[k] - row_max[r]))) / sums[r]) : T(0);
  }
};

template <typename T>
struct RowDot {  // Σ_s a·b of a row, in double
  const T *a, *b;
  Index S;
  RNNCORE_HD double operator()(Index r, Index s) const {
    return double(a[r * S + s]) * double(b[r * S + s]);
  }
};

template <typename T>
struct SoftmaxRowsGrad {  // ds = w (dw - dot)
  const T *dw, *w;
  const double* dot;
  T* ds;
  Index S;
  RNNCORE_HD void operator()(Index k) const { ds[k] = w[k] * (dw[k] - T(dot[k / S])); }
};

template <typename T>
struct Axpy {
  const T* x;
  T* y;
  T alpha;
  RNNCORE_HD void operator()(Index i) const { y[i] += alpha * x[i]; }
};

template <typename T>
struct Tanh {
  const T* x;
  T* y;
  RNNCORE_HD void operator()(Index i) const { y[i] = tanh_(x[i]); }
};

template <typename T>
struct TanhGrad {  // dx = dy · (1 - y²)
  const T *dy, *y;
  T* dx;
  RNNCORE_HD void operator()(Index i) const { dx[i] = dy[i] * (T(1) - y[i] * y[i]); }
};

template <typename T>
struct StridedCopy {  // one element of the rows x width block per thread
  const T* src;
  T* dst;
  Index width, src_stride, dst_stride;
  RNNCORE_HD void operator()(Index k) const {
    const Index r = k / width, c = k % width;
    dst[r * dst_stride + c] = src[r * src_stride + c];
  }
};

template <typename T>
struct ChunkSquaredError {  // chunk r: Σ (pred - target)², in double
  const T *pred, *target;
  Index n, chunk;
  RNNCORE_HD double operator()(Index r, Index j) const {
    const Index i = r * chunk + j;
    if (i >= n) return 0.0;
    const double d = double(pred[i]) - double(target[i]);
    return d * d;
  }
};

template <typename T>
struct SquaredErrorGrad {
  const T *pred, *target;
  T* d;
  T g;
  RNNCORE_HD void operator()(Index i) const { d[i] = g * (pred[i] - target[i]); }
};

template <typename T>
struct MeanPool {  // one (b, f) per thread; the steps in order, in double (as the CPU's)
  const T* y;
  const std::int64_t* lengths;
  T* pooled;
  Index B, F;
  RNNCORE_HD void operator()(Index k) const {
    const Index n = lengths[k / F];
    double s = 0.0;
    for (Index t = 0; t < n; ++t) s += double(y[t * B * F + k]);
    pooled[k] = T(s / double(n));
  }
};

template <typename T>
struct MeanPoolGrad {  // one element of dy [T, B, F] per thread
  const T* dpooled;
  const std::int64_t* lengths;
  T* dy;
  Index B, F;
  RNNCORE_HD void operator()(Index k) const {
    const Index t = k / (B * F), r = k % (B * F), n = lengths[r / F];
    dy[k] = t < n ? T(1.0 / double(n)) * dpooled[r] : T(0);
  }
};

template <typename T>
struct MaxPool {  // one (b, f) per thread: the first maximum over the valid steps
  const T* y;
  const std::int64_t* lengths;
  T* pooled;
  std::int64_t* argmax;
  Index B, F;
  RNNCORE_HD void operator()(Index k) const {
    const Index n = lengths[k / F];
    T best = y[k];
    std::int64_t at = 0;
    for (Index t = 1; t < n; ++t) {
      const T v = y[t * B * F + k];
      if (max_pool_takes(v, best)) {
        best = v;
        at = t;
      }
    }
    pooled[k] = best;
    argmax[k] = at;
  }
};

template <typename T>
struct MaxPoolGrad {  // one element of dy [T, B, F] per thread
  const T* dpooled;
  const std::int64_t* argmax;
  T* dy;
  Index BF;
  RNNCORE_HD void operator()(Index k) const {
    const Index t = k / BF, r = k % BF;
    dy[k] = argmax[r] == t ? dpooled[r] : T(0);
  }
};

template <typename T>
struct SgdKernel {
  T *p, *buf;
  const T* g;
  optim::SgdConstants<T> c;
  RNNCORE_HD void operator()(Index i) const { optim::sgd_element(i, p, g, buf, c); }
};

template <bool kCoupled, bool kDecay, bool kAms, bool kLow, typename T>
struct AdamKernel {
  T *p, *m, *v, *vmax;
  const T* g;
  optim::AdamConstants<T> c;
  RNNCORE_HD void operator()(Index i) const {
    optim::adam_element<kCoupled, kDecay, kAms, kLow>(i, p, g, m, v, vmax, c);
  }
};

template <bool kWd, bool kCentered, bool kMomentum, bool kLow, typename T>
struct RmspropKernel {
  T *p, *sq, *ga, *buf;
  const T* g;
  optim::RmspropConstants<T> c;
  RNNCORE_HD void operator()(Index i) const {
    optim::rmsprop_element<kWd, kCentered, kMomentum, kLow>(i, p, g, sq, ga, buf, c);
  }
};

template <bool kWd, typename T>
struct AdadeltaKernel {
  T *p, *sq, *acc;
  const T* g;
  optim::AdadeltaConstants<T> c;
  RNNCORE_HD void operator()(Index i) const { optim::adadelta_element<kWd>(i, p, g, sq, acc, c); }
};

template <bool kWd, typename T>
struct AdagradKernel {
  T *p, *sum;
  const T* g;
  optim::AdagradConstants<T> c;
  RNNCORE_HD void operator()(Index i) const { optim::adagrad_element<kWd>(i, p, g, sum, c); }
};

template <typename T>
struct ChunkSquares {  // chunk r of x: Σ x², in double
  const T* x;
  Index n, chunk;
  RNNCORE_HD double operator()(Index r, Index j) const {
    const Index i = r * chunk + j;
    return i < n ? double(x[i]) * double(x[i]) : 0.0;
  }
};

template <typename T>
struct ChunkNonfinite {  // chunk r of x: how many are NaN or ±inf (x - x is NaN for those)
  const T* x;
  Index n, chunk;
  RNNCORE_HD double operator()(Index r, Index j) const {
    const Index i = r * chunk + j;
    return i < n && !(x[i] - x[i] == T(0)) ? 1.0 : 0.0;
  }
};

template <typename T>
struct Scale {
  T* x;
  T f;
  RNNCORE_HD void operator()(Index i) const { x[i] *= f; }
};

template <typename T>
struct Clamp {
  T* x;
  T lo, hi;
  RNNCORE_HD void operator()(Index i) const { x[i] = optim::clamp_value(x[i], lo, hi); }
};

// ---- the ops over a device policy -----------------------------------------------------------
template <typename T, typename Dev>
class OpsOf final : public DeviceOps<T> {
 public:
  // The reductions' chunk: the CPU's (ops.cpp kChunk).
  static constexpr Index kChunk = Index(1) << 14;

  void id_counts(Index N, Index V, const std::int64_t* ids, const std::int64_t* ignore,
                 std::int64_t* valid, std::int64_t* bad) override {
    double counts[2] = {0.0, 0.0};
    if (N > 0) {
      Buffer<double, Dev> out(&dev_, 2);
      dev_.row_sums(2, N, out.data(), IdCounts{ids, V, ignore ? *ignore : 0, ignore != nullptr});
      dev_.download(counts, out.data(), sizeof(counts));
    }
    *valid = std::int64_t(counts[0]);
    *bad = std::int64_t(counts[1]);
  }

  void embedding_forward(Index N, Index E, const std::int64_t* ids, const T* weight,
                         T* out) override {
    dev_.for_each(N * E, Gather<T>{ids, weight, out, E});
  }

  void embedding_backward(Index N, Index E, const std::int64_t* ids, const T* dout, T* dweight,
                          std::int64_t padding_idx) override {
    if (N > 0) dev_.for_each(E, ScatterColumn<T>{ids, dout, dweight, N, E, padding_idx});
  }

  void linear_forward(Index N, Index I, Index O, const T* x, const T* weight, const T* bias,
                      T* y) override {
    if (N == 0) return;
    std::lock_guard<std::mutex> lock(blas_mu_);
    if (bias) dev_.for_each(N * O, BiasRows<T>{bias, y, O});
    gemm<T>(dev_, false, true, N, O, I, T(1), x, I, weight, I, bias ? T(1) : T(0), y, O);
  }

  void linear_backward(Index N, Index I, Index O, const T* dy, const T* x, const T* weight, T* dx,
                       T* dweight, T* dbias) override {
    if (N == 0) return;
    std::lock_guard<std::mutex> lock(blas_mu_);
    if (dx) gemm<T>(dev_, false, false, N, I, O, T(1), dy, O, weight, I, T(0), dx, I);
    gemm<T>(dev_, true, false, O, I, N, T(1), dy, O, x, I, T(1), dweight, I);
    if (dbias) dev_.for_each(O, ColumnSums<T>{dy, dbias, N, O});
  }

  double cross_entropy(Index N, Index C, const T* logits, const std::int64_t* targets,
                       const CrossEntropyOptions& o, T* dlogits, std::int64_t* count,
                       std::int64_t* bad) override {
    *count = *bad = 0;
    if (N == 0) return 0.0;
    const double eps = o.label_smoothing, smooth = eps / double(C);
    // [Σ loss, targets not ignored, targets out of range]: read back together at the end.
    Buffer<double, Dev> result(&dev_, 3);
    dev_.row_sums(2, N, result.data() + 1, IdCounts{targets, C, o.ignore_index, true});
    Buffer<T, Dev> row_max(&dev_, std::size_t(N));
    Buffer<double, Dev> sums(&dev_, std::size_t(N)), loss(&dev_, std::size_t(N));
    Buffer<double, Dev> zsums(&dev_, eps > 0.0 ? std::size_t(N) : 0);
    dev_.row_max(N, C, row_max.data(), RowElement<T>{logits, C});
    dev_.row_sums(N, C, sums.data(), ShiftedExp<T>{logits, row_max.data(), C});
    if (eps > 0.0) dev_.row_sums(N, C, zsums.data(), AsDouble<T>{logits, C});
    dev_.for_each(N, RowLoss<T>{logits, targets, row_max.data(), sums.data(), zsums.data(),
                                loss.data(), C, o.ignore_index, eps, smooth});
    if (dlogits) {
      dev_.for_each(
          N * C, SoftmaxGrad<T>{logits, targets, row_max.data(), sums.data(), dlogits, C,
                                o.ignore_index, T(smooth), T(smooth + (1.0 - eps)),
                                result.data() + 1, o.grad_scale, o.reduction == Reduction::kMean});
    }
    dev_.row_sums(1, N, result.data(), Element<double>{loss.data()});
    double out[3] = {0.0, 0.0, 0.0};
    dev_.download(out, result.data(), sizeof(out));
    *count = std::int64_t(out[1]);
    *bad = std::int64_t(out[2]);
    return out[0];
  }

  void batched_gemm(Index batch, bool ta, bool tb, Index M, Index N, Index K, const T* A,
                    const T* B, T* C, bool accumulate) override {
    if (batch == 0 || M == 0 || N == 0) return;
    if (K == 0) {  // an empty product: C = 0 (or unchanged)
      if (!accumulate) dev_.zero(C, sizeof(T) * std::size_t(batch * M * N));
      return;
    }
    std::lock_guard<std::mutex> lock(blas_mu_);
    const Index lda = ta ? M : K, ldb = tb ? K : N;
    for (Index b = 0; b < batch; ++b)  // one product per sequence (a strided batch: later)
      gemm<T>(dev_, ta, tb, M, N, K, T(1), A + b * M * K, lda, B + b * K * N, ldb,
              accumulate ? T(1) : T(0), C + b * M * N, N);
  }

  void masked_softmax(Index R, Index S, Index group, const T* scores, const std::int64_t* lengths,
                      T* weights) override {
    if (R == 0) return;
    Buffer<std::int64_t, Dev> lens = upload_lengths(R / group, lengths);
    Buffer<T, Dev> row_max(&dev_, std::size_t(R));
    Buffer<double, Dev> sums(&dev_, std::size_t(R));
    dev_.row_max(R, S, row_max.data(), MaskedRow<T>{scores, lens.data(), S, group});
    dev_.row_sums(R, S, sums.data(),
                  MaskedShiftedExp<T>{scores, row_max.data(), lens.data(), S, group});
    dev_.for_each(R * S, MaskedSoftmax<T>{scores, row_max.data(), sums.data(), lens.data(), weights,
                                          S, group});
  }

  void softmax_backward(Index R, Index S, const T* dw, const T* w, T* dscores) override {
    if (R * S == 0) return;
    Buffer<double, Dev> dot(&dev_, std::size_t(R));
    dev_.row_sums(R, S, dot.data(), RowDot<T>{dw, w, S});
    dev_.for_each(R * S, SoftmaxRowsGrad<T>{dw, w, dot.data(), dscores, S});
  }

  void axpy(Index n, double alpha, const T* x, T* y) override {
    if (n > 0) dev_.for_each(n, Axpy<T>{x, y, T(alpha)});
  }

  void column_sums(Index rows, Index cols, const T* x, T* out) override {
    if (cols > 0) dev_.for_each(cols, ColumnSums<T>{x, out, rows, cols});
  }

  void tanh_forward(Index n, const T* x, T* y) override {
    if (n > 0) dev_.for_each(n, Tanh<T>{x, y});
  }

  void tanh_backward(Index n, const T* dy, const T* y, T* dx) override {
    if (n > 0) dev_.for_each(n, TanhGrad<T>{dy, y, dx});
  }

  void strided_copy(Index rows, Index width, const T* src, Index src_stride, T* dst,
                    Index dst_stride) override {
    if (rows * width > 0)
      dev_.for_each(rows * width, StridedCopy<T>{src, dst, width, src_stride, dst_stride});
  }

  double mse_loss(Index N, const T* pred, const T* target, double denom, double grad_scale,
                  T* dpred) override {
    if (N == 0) return 0.0;
    if (dpred)
      dev_.for_each(N, SquaredErrorGrad<T>{pred, target, dpred, T(2.0 * grad_scale / denom)});
    return chunked(N, ChunkSquaredError<T>{pred, target, N, kChunk});
  }

  void mean_pool(Index /*Tn: the lengths bound the steps*/, Index B, Index F, const T* y,
                 const std::int64_t* lengths, T* pooled) override {
    if (B == 0) return;
    Buffer<std::int64_t, Dev> lens = upload_lengths(B, lengths);
    dev_.for_each(B * F, MeanPool<T>{y, lens.data(), pooled, B, F});
  }

  void mean_pool_backward(Index Tn, Index B, Index F, const T* dpooled, const std::int64_t* lengths,
                          T* dy) override {
    if (B == 0) return;
    Buffer<std::int64_t, Dev> lens = upload_lengths(B, lengths);
    dev_.for_each(Tn * B * F, MeanPoolGrad<T>{dpooled, lens.data(), dy, B, F});
  }

  void max_pool(Index /*Tn: the lengths bound the steps*/, Index B, Index F, const T* y,
                const std::int64_t* lengths, T* pooled, std::int64_t* argmax) override {
    if (B == 0) return;
    Buffer<std::int64_t, Dev> lens = upload_lengths(B, lengths);
    dev_.for_each(B * F, MaxPool<T>{y, lens.data(), pooled, argmax, B, F});
  }

  void max_pool_backward(Index Tn, Index B, Index F, const T* dpooled, const std::int64_t* argmax,
                         T* dy) override {
    if (B == 0) return;
    dev_.for_each(Tn * B * F, MaxPoolGrad<T>{dpooled, argmax, dy, B * F});
  }

  void keyed_dropout(Index outer, Index B, Index inner, const T* x, double p, std::uint64_t seed,
                     Index batch_offset, T* y, T* scale) override {
    const Index n = outer * B * inner;
    if (n == 0) return;
    const std::uint64_t cut = std::uint64_t(std::ceil(p * 0x1.0p32));
    dev_.for_each(n, KeyedDropout<T>{x, y, scale, B, inner, (inner + 1) / 2, batch_offset,
                                     dropout_key(seed), cut, T(1.0 / (1.0 - p))});
  }

  void sgd_step(Index P, T* param, const T* grad, T* buf, bool first_step,
                const SgdOptions& o) override {
    dev_.for_each(P, SgdKernel<T>{param, buf, grad, optim::sgd_constants<T>(o, first_step)});
  }

  void adam_step(Index P, T* param, const T* grad, T* m, T* v, T* vmax, std::int64_t step,
                 const AdamOptions& o) override {
    const auto c = optim::adam_constants<T>(o, step);
    optim::with_adam_flags(o, vmax != nullptr, c, [&](auto cw, auto dw, auto ams, auto low) {
      dev_.for_each(P, AdamKernel<decltype(cw)::value, decltype(dw)::value, decltype(ams)::value,
                                  decltype(low)::value, T>{param, m, v, vmax, grad, c});
    });
  }

  void rmsprop_step(Index P, T* param, const T* grad, T* sq, T* ga, T* buf,
                    const RmspropOptions& o) override {
    const auto c = optim::rmsprop_constants<T>(o);
    optim::with_rmsprop_flags(o, c, [&](auto wd, auto centred, auto mom, auto low) {
      dev_.for_each(
          P, RmspropKernel<decltype(wd)::value, decltype(centred)::value, decltype(mom)::value,
                           decltype(low)::value, T>{param, sq, ga, buf, grad, c});
    });
  }

  void adadelta_step(Index P, T* param, const T* grad, T* sq, T* acc,
                     const AdadeltaOptions& o) override {
    const auto c = optim::adadelta_constants<T>(o);
    optim::with_flag(o.weight_decay != 0.0, [&](auto wd) {
      dev_.for_each(P, AdadeltaKernel<decltype(wd)::value, T>{param, sq, acc, grad, c});
    });
  }

  void adagrad_step(Index P, T* param, const T* grad, T* sum, std::int64_t step,
                    const AdagradOptions& o) override {
    const auto c = optim::adagrad_constants<T>(o, step);
    optim::with_flag(o.weight_decay != 0.0, [&](auto wd) {
      dev_.for_each(P, AdagradKernel<decltype(wd)::value, T>{param, sum, grad, c});
    });
  }

  double sum_of_squares(Index n, const T* x) override {
    return chunked(n, ChunkSquares<T>{x, n, kChunk});
  }

  std::int64_t count_nonfinite(Index n, const T* x) override {
    return std::int64_t(chunked(n, ChunkNonfinite<T>{x, n, kChunk}));
  }

  void scale(Index n, T* x, double factor) override { dev_.for_each(n, Scale<T>{x, T(factor)}); }

  void clamp(Index n, T* x, double clip_value) override {
    dev_.for_each(n, Clamp<T>{x, T(-clip_value), T(clip_value)});
  }

 private:
  // Host lengths [B] in device memory (the kernels' copy; freed after they ran).
  Buffer<std::int64_t, Dev> upload_lengths(Index B, const std::int64_t* lengths) {
    Buffer<std::int64_t, Dev> lens(&dev_, std::size_t(B));
    dev_.upload(lens.data(), lengths, sizeof(std::int64_t) * std::size_t(B));
    return lens;
  }

  // Σ over the chunks of [0, n) of f's per-chunk sums, the chunks summed in order on the host.
  template <typename F>
  double chunked(Index n, const F& f) {
    if (n <= 0) return 0.0;
    const Index chunks = (n + kChunk - 1) / kChunk;
    Buffer<double, Dev> part(&dev_, std::size_t(chunks));
    dev_.row_sums(chunks, kChunk, part.data(), f);
    std::vector<double> host(static_cast<std::size_t>(chunks));
    dev_.download(host.data(), part.data(), sizeof(double) * host.size());
    double total = 0.0;
    for (double s : host) total += s;
    return total;
  }

  Dev dev_;
  // One BLAS handle serves the process (cuBLAS handles are not for concurrent use): Python
  // threads training two models at once take turns for the products.
  std::mutex blas_mu_;
};

}  // namespace rnncore::detail::gpu
