// device_ops.h: the training operations dispatched by device (the CPU's ops.cpp, or the GPU
// kernels of gpu/ops_gpu.h), after the CPU ops' own argument checks.
#include "rnncore/device_ops.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "gpu/ops_gpu.h"
#include "linalg.h"
#include "ops_checks.h"

namespace rnncore {

namespace {

using detail::gpu::DeviceOps;

// The GPU ops of `device`, or null for the CPU.
template <typename T>
DeviceOps<T>* gpu_ops(Device device) {
  switch (device) {
    case Device::kCpu:
      return nullptr;
    case Device::kCudaSim:
      return &detail::gpu::sim_ops<T>();
    case Device::kCuda:
      require_device(device);
#ifdef RNNCORE_WITH_CUDA
      return &detail::gpu::cuda_ops<T>();
#else
      break;  // require_device has thrown
#endif
  }
  throw std::invalid_argument("device must be 'cpu', 'cuda' or 'cuda-sim'");
}

// The CPU check's error for device ids [N] the device found out of range [0, V): they are read
// back to name the first.
[[noreturn]] void throw_bad_ids(Device device, std::int64_t N, std::int64_t V,
                                const std::int64_t* ids, const std::int64_t* ignore_index,
                                const char* name) {
  std::vector<std::int64_t> host(static_cast<std::size_t>(N));
  device_copy(device, host.data(), ids, sizeof(std::int64_t) * host.size(),
              CopyKind::kDeviceToHost);
  if (ignore_index)
    detail::check_targets(N, V, host.data(), *ignore_index);
  else
    check_ids(N, V, host.data(), name);
  throw std::logic_error(std::string(name) + ": the device counted ids out of range");
}

// ids [N] on the device checked against [0, V) (ignore_index, when given, passes): the number of
// those in range. Out-of-range ones are read back to name the first, as the CPU check does.
template <typename T>
std::int64_t check_device_ids(DeviceOps<T>& ops, Device device, std::int64_t N, std::int64_t V,
                              const std::int64_t* ids, const std::int64_t* ignore_index,
                              const char* name) {
  std::int64_t valid = 0, bad = 0;
  ops.id_counts(N, V, ids, ignore_index, &valid, &bad);
  if (bad > 0) throw_bad_ids(device, N, V, ids, ignore_index, name);
  return valid;
}

}  // namespace

template <typename T>
void embedding_forward(Device device, std::int64_t N, std::int64_t V, std::int64_t E,
                       const std::int64_t* ids, const T* weight, T* out, bool ids_checked) {
  DeviceOps<T>* ops = gpu_ops<T>(device);
  if (!ops) return embedding_forward<T>(N, V, E, ids, weight, out);
  detail::check_embedding(N, V, E, -1);
  detail::check_buffer(N, ids);
  detail::check_buffer(V * E, weight);
  detail::check_buffer(N * E, out);
  if (!ids_checked) check_device_ids(*ops, device, N, V, ids, nullptr, "ids");
  ops->embedding_forward(N, E, ids, weight, out);
}

template <typename T>
void embedding_backward(Device device, std::int64_t N, std::int64_t V, std::int64_t E,
                        const std::int64_t* ids, const T* dout, T* dweight,
                        std::int64_t padding_idx, bool ids_checked) {
  DeviceOps<T>* ops = gpu_ops<T>(device);
  if (!ops) return embedding_backward<T>(N, V, E, ids, dout, dweight, padding_idx);
  detail::check_embedding(N, V, E, padding_idx);
  detail::check_buffer(N, ids);
  detail::check_buffer(N * E, dout);
  detail::check_buffer(V * E, dweight);
  if (!ids_checked) check_device_ids(*ops, device, N, V, ids, nullptr, "ids");
  ops->embedding_backward(N, E, ids, dout, dweight, padding_idx < 0 ? -1 : padding_idx);
}

template <typename T>
void linear_forward(Device device, std::int64_t N, std::int64_t I, std::int64_t O, const T* x,
                    const T* weight, const T* bias, T* y) {
  DeviceOps<T>* ops = gpu_ops<T>(device);
  if (!ops) return linear_forward<T>(N, I, O, x, weight, bias, y);
  detail::check_linear(N, I, O);
  detail::check_buffer(N * I, x);
  detail::check_buffer(O * I, weight);
  detail::check_buffer(N * O, y);
  ops->linear_forward(N, I, O, x, weight, bias, y);
}

template <typename T>
void linear_backward(Device device, std::int64_t N, std::int64_t I, std::int64_t O, const T* dy,
                     const T* x, const T* weight, T* dx, T* dweight, T* dbias) {
  DeviceOps<T>* ops = gpu_ops<T>(device);
  if (!ops) return linear_backward<T>(N, I, O, dy, x, weight, dx, dweight, dbias);
  detail::check_linear(N, I, O);
  detail::check_buffer(N * O, dy);
  detail::check_buffer(N * I, x);
  detail::check_buffer(O * I, weight);
  detail::check_buffer(O * I, dweight);
  ops->linear_backward(N, I, O, dy, x, weight, dx, dweight, dbias);
}

template <typename T>
LossResult cross_entropy(Device device, std::int64_t N, std::int64_t C, const T* logits,
                         const std::int64_t* targets, const CrossEntropyOptions& options,
                         T* dlogits) {
  DeviceOps<T>* ops = gpu_ops<T>(device);
  if (!ops) return cross_entropy<T>(N, C, logits, targets, options, dlogits);
  detail::check_cross_entropy(N, C, logits, targets, options);
  std::int64_t count = 0, bad = 0;  // counted with the loss: one read back for both
  const double total = ops->cross_entropy(N, C, logits, targets, options, dlogits, &count, &bad);
  if (bad > 0) throw_bad_ids(device, N, C, targets, &options.ignore_index, "targets");
  LossResult r;
  r.count = count;
  const bool mean = options.reduction == Reduction::kMean;
  r.loss = count == 0 ? 0.0 : total / (mean ? static_cast<double>(count) : 1.0);
  return r;
}

template <typename T>
void batched_gemm(Device device, std::int64_t batch, bool trans_a, bool trans_b, std::int64_t M,
                  std::int64_t N, std::int64_t K, const T* A, const T* B, T* C, bool accumulate) {
  detail::check_batched_gemm(batch, M, N, K, A, B, C);
  DeviceOps<T>* ops = gpu_ops<T>(device);
  if (ops) return ops->batched_gemm(batch, trans_a, trans_b, M, N, K, A, B, C, accumulate);
  const std::int64_t lda = trans_a ? M : K, ldb = trans_b ? K : N;
  for (std::int64_t b = 0; b < batch; ++b)
    detail::gemm<T>(trans_a, trans_b, M, N, K, A + b * M * K, lda, B + b * K * N, ldb,
                    accumulate ? T(1) : T(0), C + b * M * N, N);
}

template <typename T>
void masked_softmax(Device device, std::int64_t R, std::int64_t S, std::int64_t group,
                    const T* scores, const std::int64_t* lengths, T* weights) {
  detail::check_masked_softmax(R, S, group, scores, lengths, weights);
  DeviceOps<T>* ops = gpu_ops<T>(device);
  if (ops) return ops->masked_softmax(R, S, group, scores, lengths, weights);
  for (std::int64_t r = 0; r < R; ++r) {
    const T* z = scores + r * S;
    T* w = weights + r * S;
    const std::int64_t n = lengths[r / group];
    T m = z[0];
    for (std::int64_t s = 1; s < n; ++s) m = m < z[s] ? z[s] : m;
    double sum = 0.0;
    for (std::int64_t s = 0; s < n; ++s) sum += double(std::exp(T(z[s] - m)));
    for (std::int64_t s = 0; s < S; ++s)
      w[s] = s < n ? T(double(std::exp(T(z[s] - m))) / sum) : T(0);
  }
}

template <typename T>
void softmax_backward(Device device, std::int64_t R, std::int64_t S, const T* dw, const T* w,
                      T* dscores) {
  detail::check_buffer(R * S, dw);
  detail::check_buffer(R * S, w);
  detail::check_buffer(R * S, dscores);
  DeviceOps<T>* ops = gpu_ops<T>(device);
  if (ops) return ops->softmax_backward(R, S, dw, w, dscores);
  for (std::int64_t r = 0; r < R; ++r) {
    double dot = 0.0;
    for (std::int64_t s = 0; s < S; ++s) dot += double(dw[r * S + s]) * double(w[r * S + s]);
    for (std::int64_t s = 0; s < S; ++s)
      dscores[r * S + s] = w[r * S + s] * (dw[r * S + s] - T(dot));
  }
}

template <typename T>
void axpy(Device device, std::int64_t n, double alpha, const T* x, T* y) {
  detail::check_buffer(n, x);
  detail::check_buffer(n, y);
  DeviceOps<T>* ops = gpu_ops<T>(device);
  if (ops) return ops->axpy(n, alpha, x, y);
  for (std::int64_t i = 0; i < n; ++i) y[i] += T(alpha) * x[i];
}

template <typename T>
void column_sums(Device device, std::int64_t rows, std::int64_t cols, const T* x, T* out) {
  detail::check_buffer(rows * cols, x);
  detail::check_buffer(cols, out);
  DeviceOps<T>* ops = gpu_ops<T>(device);
  if (ops) return ops->column_sums(rows, cols, x, out);
  for (std::int64_t j = 0; j < cols; ++j) {
    T s = T(0);  // in the leading axis' order, as the GPU's ColumnSums
    for (std::int64_t r = 0; r < rows; ++r) s += x[r * cols + j];
    out[j] += s;
  }
}

template <typename T>
void tanh_forward(Device device, std::int64_t n, const T* x, T* y) {
  detail::check_buffer(n, x);
  detail::check_buffer(n, y);
  DeviceOps<T>* ops = gpu_ops<T>(device);
  if (!ops) {
    for (std::int64_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
    return;
  }
  ops->tanh_forward(n, x, y);
}

template <typename T>
void tanh_backward(Device device, std::int64_t n, const T* dy, const T* y, T* dx) {
  detail::check_buffer(n, dy);
  detail::check_buffer(n, y);
  detail::check_buffer(n, dx);
  DeviceOps<T>* ops = gpu_ops<T>(device);
  if (!ops) {
    for (std::int64_t i = 0; i < n; ++i) dx[i] = dy[i] * (T(1) - y[i] * y[i]);
    return;
  }
  ops->tanh_backward(n, dy, y, dx);
}

template <typename T>
void strided_copy(Device device, std::int64_t rows, std::int64_t width, const T* src,
                  std::int64_t src_stride, T* dst, std::int64_t dst_stride) {
  detail::check_strided_copy(rows, width, src, src_stride, dst, dst_stride);
  DeviceOps<T>* ops = gpu_ops<T>(device);
  if (!ops) {
    for (std::int64_t r = 0; r < rows; ++r)
      std::copy(src + r * src_stride, src + r * src_stride + width, dst + r * dst_stride);
    return;
  }
  ops->strided_copy(rows, width, src, src_stride, dst, dst_stride);
}

template <typename T>
double mse_loss(Device device, std::int64_t N, const T* pred, const T* target, Reduction reduction,
                double grad_scale, T* dpred) {
  DeviceOps<T>* ops = gpu_ops<T>(device);
  if (!ops) return mse_loss<T>(N, pred, target, reduction, grad_scale, dpred);
  detail::check_mse(N, pred, target, reduction, grad_scale);
  if (N == 0) return 0.0;
  const double denom = reduction == Reduction::kMean ? static_cast<double>(N) : 1.0;
  return ops->mse_loss(N, pred, target, denom, grad_scale, dpred) / denom;
}

template <typename T>
void mean_pool_forward(Device device, std::int64_t Tn, std::int64_t B, std::int64_t F, const T* y,
                       const std::int64_t* lengths, T* pooled) {
  DeviceOps<T>* ops = gpu_ops<T>(device);
  if (!ops) return mean_pool_forward<T>(Tn, B, F, y, lengths, pooled);
  detail::check_time_pool(Tn, B, F, y, pooled, lengths);
  ops->mean_pool(Tn, B, F, y, lengths, pooled);
}

template <typename T>
void mean_pool_backward(Device device, std::int64_t Tn, std::int64_t B, std::int64_t F,
                        const T* dpooled, const std::int64_t* lengths, T* dy) {
  DeviceOps<T>* ops = gpu_ops<T>(device);
  if (!ops) return mean_pool_backward<T>(Tn, B, F, dpooled, lengths, dy);
  detail::check_time_pool(Tn, B, F, dy, dpooled, lengths);
  ops->mean_pool_backward(Tn, B, F, dpooled, lengths, dy);
}

template <typename T>
void max_pool_forward(Device device, std::int64_t Tn, std::int64_t B, std::int64_t F, const T* y,
                      const std::int64_t* lengths, T* pooled, std::int64_t* argmax) {
  DeviceOps<T>* ops = gpu_ops<T>(device);
  if (!ops) return max_pool_forward<T>(Tn, B, F, y, lengths, pooled, argmax);
  detail::check_time_pool(Tn, B, F, y, pooled, lengths);
  detail::check_buffer(B * F, argmax);
  ops->max_pool(Tn, B, F, y, lengths, pooled, argmax);
}

template <typename T>
void max_pool_backward(Device device, std::int64_t Tn, std::int64_t B, std::int64_t F,
                       const T* dpooled, const std::int64_t* argmax, T* dy, bool argmax_checked) {
  DeviceOps<T>* ops = gpu_ops<T>(device);
  if (!ops) return max_pool_backward<T>(Tn, B, F, dpooled, argmax, dy);
  detail::check_time_pool(Tn, B, F, dy, dpooled, nullptr);
  detail::check_buffer(B * F, argmax);
  if (!argmax_checked) {
    std::int64_t valid = 0, bad = 0;
    ops->id_counts(B * F, Tn, argmax, nullptr, &valid, &bad);
    if (bad > 0) {  // read back to name the first, as the CPU check does
      std::vector<std::int64_t> host(static_cast<std::size_t>(B * F));
      device_copy(device, host.data(), argmax, sizeof(std::int64_t) * host.size(),
                  CopyKind::kDeviceToHost);
      detail::check_pool_argmax(Tn, B * F, host.data());
    }
  }
  ops->max_pool_backward(Tn, B, F, dpooled, argmax, dy);
}

template <typename T>
void keyed_dropout(Device device, std::int64_t outer, std::int64_t B, std::int64_t inner,
                   const T* x, double p, std::uint64_t seed, std::int64_t batch_offset, T* y,
                   T* scale) {
  DeviceOps<T>* ops = gpu_ops<T>(device);
  if (!ops) return keyed_dropout<T>(outer, B, inner, x, p, seed, batch_offset, y, scale);
  detail::check_keyed_dropout(outer, B, inner, batch_offset, p, x, y, scale, true);
  ops->keyed_dropout(outer, B, inner, x, p, seed, batch_offset, y, scale);
}

template <typename T>
void sgd_step(Device device, std::int64_t P, T* param, const T* grad, T* momentum_buf,
              bool first_step, const SgdOptions& options) {
  DeviceOps<T>* ops = gpu_ops<T>(device);
  if (!ops) return sgd_step<T>(P, param, grad, momentum_buf, first_step, options);
  detail::check_sgd(P, param, grad, momentum_buf, options);
  ops->sgd_step(P, param, grad, momentum_buf, first_step, options);
}

template <typename T>
void adam_step(Device device, std::int64_t P, T* param, const T* grad, T* exp_avg, T* exp_avg_sq,
               T* max_exp_avg_sq, std::int64_t step, const AdamOptions& options) {
  DeviceOps<T>* ops = gpu_ops<T>(device);
  if (!ops) return adam_step<T>(P, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step, options);
  detail::check_adam(P, param, grad, exp_avg, exp_avg_sq, step, options);
  ops->adam_step(P, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step, options);
}

template <typename T>
void rmsprop_step(Device device, std::int64_t P, T* param, const T* grad, T* square_avg,
                  T* grad_avg, T* momentum_buf, const RmspropOptions& options) {
  DeviceOps<T>* ops = gpu_ops<T>(device);
  if (!ops) return rmsprop_step<T>(P, param, grad, square_avg, grad_avg, momentum_buf, options);
  detail::check_rmsprop(P, param, grad, square_avg, grad_avg, momentum_buf, options);
  ops->rmsprop_step(P, param, grad, square_avg, grad_avg, momentum_buf, options);
}

template <typename T>
void adadelta_step(Device device, std::int64_t P, T* param, const T* grad, T* square_avg,
                   T* acc_delta, const AdadeltaOptions& options) {
  DeviceOps<T>* ops = gpu_ops<T>(device);
  if (!ops) return adadelta_step<T>(P, param, grad, square_avg, acc_delta, options);
  detail::check_adadelta(P, param, grad, square_avg, acc_delta, options);
  ops->adadelta_step(P, param, grad, square_avg, acc_delta, options);
}

template <typename T>
void adagrad_step(Device device, std::int64_t P, T* param, const T* grad, T* state_sum,
                  std::int64_t step, const AdagradOptions& options) {
  DeviceOps<T>* ops = gpu_ops<T>(device);
  if (!ops) return adagrad_step<T>(P, param, grad, state_sum, step, options);
  detail::check_adagrad(P, param, grad, state_sum, step, options);
  ops->adagrad_step(P, param, grad, state_sum, step, options);
}

template <typename T>
double sum_of_squares(Device device, const std::vector<Span<const T>>& buffers) {
  DeviceOps<T>* ops = gpu_ops<T>(device);
  if (!ops) return sum_of_squares<T>(buffers);
  double total = 0.0;
  for (const auto& b : buffers) {
    detail::check_buffer(b.size, b.data);
    total += ops->sum_of_squares(b.size, b.data);
  }
  return total;
}

template <typename T>
void scale_buffers(Device device, const std::vector<Span<T>>& buffers, double factor) {
  DeviceOps<T>* ops = gpu_ops<T>(device);
  if (!ops) return scale_buffers<T>(buffers, factor);
  for (const auto& b : buffers) detail::check_buffer(b.size, b.data);
  for (const auto& b : buffers) ops->scale(b.size, b.data, factor);
}

template <typename T>
double clip_grad_norm(Device device, const std::vector<Span<T>>& buffers, double max_norm) {
  if (!gpu_ops<T>(device)) return clip_grad_norm<T>(buffers, max_norm);
  clip_coefficient(0.0, max_norm);  // checks max_norm before any work
  std::vector<Span<const T>> views;
  views.reserve(buffers.size());
  for (const auto& b : buffers) views.push_back({b.data, b.size});
  const double norm = std::sqrt(sum_of_squares<T>(device, views));
  const double coef = clip_coefficient(norm, max_norm);
  if (coef != 1.0) scale_buffers<T>(device, buffers, coef);
  return norm;
}

template <typename T>
void clip_grad_value(Device device, const std::vector<Span<T>>& buffers, double clip_value) {
  DeviceOps<T>* ops = gpu_ops<T>(device);
  if (!ops) return clip_grad_value<T>(buffers, clip_value);
  detail::check_clip_value(clip_value);
  for (const auto& b : buffers) detail::check_buffer(b.size, b.data);
  for (const auto& b : buffers) ops->clamp(b.size, b.data, clip_value);
}

template <typename T>
bool all_finite(Device device, const std::vector<Span<const T>>& buffers) {
  DeviceOps<T>* ops = gpu_ops<T>(device);
  if (!ops) return all_finite<T>(buffers);
  for (const auto& b : buffers) {
    detail::check_buffer(b.size, b.data);
    if (ops->count_nonfinite(b.size, b.data) > 0) return false;
  }
  return true;
}

#define RNNCORE_DEVICE_OPS_INSTANTIATE(T)                                                         \
  template void embedding_forward<T>(Device, std::int64_t, std::int64_t, std::int64_t,            \
                                     const std::int64_t*, const T*, T*, bool);                    \
  template void embedding_backward<T>(Device, std::int64_t, std::int64_t, std::int64_t,           \
                                      const std::int64_t*, const T*, T*, std::int64_t, bool);     \
  template void linear_forward<T>(Device, std::int64_t, std::int64_t, std::int64_t, const T*,     \
                                  const T*, const T*, T*);                                        \
  template void linear_backward<T>(Device, std::int64_t, std::int64_t, std::int64_t, const T*,    \
                                   const T*, const T*, T*, T*, T*);                               \
  template LossResult cross_entropy<T>(Device, std::int64_t, std::int64_t, const T*,              \
                                       const std::int64_t*, const CrossEntropyOptions&, T*);      \
  template void batched_gemm<T>(Device, std::int64_t, bool, bool, std::int64_t, std::int64_t,     \
                                std::int64_t, const T*, const T*, T*, bool);                      \
  template void masked_softmax<T>(Device, std::int64_t, std::int64_t, std::int64_t, const T*,     \
                                  const std::int64_t*, T*);                                       \
  template void softmax_backward<T>(Device, std::int64_t, std::int64_t, const T*, const T*, T*);  \
  template void axpy<T>(Device, std::int64_t, double, const T*, T*);                              \
  template void column_sums<T>(Device, std::int64_t, std::int64_t, const T*, T*);                 \
  template void tanh_forward<T>(Device, std::int64_t, const T*, T*);                              \
  template void tanh_backward<T>(Device, std::int64_t, const T*, const T*, T*);                   \
  template void strided_copy<T>(Device, std::int64_t, std::int64_t, const T*, std::int64_t, T*,   \
                                std::int64_t);                                                    \
  template double mse_loss<T>(Device, std::int64_t, const T*, const T*, Reduction, double, T*);   \
  template void mean_pool_forward<T>(Device, std::int64_t, std::int64_t, std::int64_t, const T*,  \
                                     const std::int64_t*, T*);                                    \
  template void mean_pool_backward<T>(Device, std::int64_t, std::int64_t, std::int64_t, const T*, \
                                      const std::int64_t*, T*);                                   \
  template void max_pool_forward<T>(Device, std::int64_t, std::int64_t, std::int64_t, const T*,   \
                                    const std::int64_t*, T*, std::int64_t*);                      \
  template void max_pool_backward<T>(Device, std::int64_t, std::int64_t, std::int64_t, const T*,  \
                                     const std::int64_t*, T*, bool);                              \
  template void keyed_dropout<T>(Device, std::int64_t, std::int64_t, std::int64_t, const T*,      \
                                 double, std::uint64_t, std::int64_t, T*, T*);                    \
  template void sgd_step<T>(Device, std::int64_t, T*, const T*, T*, bool, const SgdOptions&);     \
  template void adam_step<T>(Device, std::int64_t, T*, const T*, T*, T*, T*, std::int64_t,        \
                             const AdamOptions&);                                                 \
  template void rmsprop_step<T>(Device, std::int64_t, T*, const T*, T*, T*, T*,                   \
                                const RmspropOptions&);                                           \
  template void adadelta_step<T>(Device, std::int64_t, T*, const T*, T*, T*,                      \
                                 const AdadeltaOptions&);                                         \
  template void adagrad_step<T>(Device, std::int64_t, T*, const T*, T*, std::int64_t,             \
                                const AdagradOptions&);                                           \
  template double sum_of_squares<T>(Device, const std::vector<Span<const T>>&);                   \
  template void scale_buffers<T>(Device, const std::vector<Span<T>>&, double);                    \
  template double clip_grad_norm<T>(Device, const std::vector<Span<T>>&, double);                 \
  template void clip_grad_value<T>(Device, const std::vector<Span<T>>&, double);                  \
  template bool all_finite<T>(Device, const std::vector<Span<const T>>&);

RNNCORE_DEVICE_OPS_INSTANTIATE(float)
RNNCORE_DEVICE_OPS_INSTANTIATE(double)

}  // namespace rnncore
