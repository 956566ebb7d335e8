// The training operations of ops.h on any device: the same functions with a Device first, so a
// whole training step (embedding, output layer, loss, clipping, optimizer update) can stay in the
// GPU's memory beside the recurrent layers.
//
// Device::kCpu runs ops.h's CPU functions on host memory. kCuda and kCudaSim take device memory
// (device_alloc's, or any CUDA allocation: CuPy, PyTorch, DLPack) and run the GPU backend's
// kernels; "cuda-sim" runs the same kernels as loops over host memory (tests without a GPU). The
// arguments are checked as ops.h checks them, with the same messages (std::invalid_argument naming
// the argument); ids and targets out of range are found on the device, which then reads them back
// to name the first. An unavailable device: require_device's std::runtime_error. GPU work is
// queued on CUDA's legacy default stream; a function that returns a number waits for its result.
//
// Results agree with the CPU's to rounding: the same element formulas (the optimizers share their
// code with the CPU's), sums in double over the same chunks, only their order differs. Every GPU
// kernel is deterministic (no atomics).
#pragma once

#include <cstdint>
#include <vector>

#include "rnncore/backend.h"
#include "rnncore/ops.h"

namespace rnncore {

/// out[n, :] = weight[ids[n], :].   ids [N] in [0, V), weight [V, E], out [N, E]
/// On a GPU the ids are checked there, which waits for the device; ids_checked = true (the
/// caller checked them, e.g. on the host before copying them over) skips that. Unchecked ids out
/// of range read outside the weight.
template <typename T>
void embedding_forward(Device device, std::int64_t N, std::int64_t V, std::int64_t E,
                       const std::int64_t* ids, const T* weight, T* out, bool ids_checked = false);

/// dweight[ids[n], :] += dout[n, :] except where ids[n] == padding_idx (< 0: none); each row adds
/// its tokens in n order.   ids [N], dout [N, E], dweight [V, E] (+=)
/// ids_checked: as for embedding_forward (the ids of a checked forward need no second check).
template <typename T>
void embedding_backward(Device device, std::int64_t N, std::int64_t V, std::int64_t E,
                        const std::int64_t* ids, const T* dout, T* dweight,
                        std::int64_t padding_idx = -1, bool ids_checked = false);

/// y = x · weightᵀ + bias.   x [N, I], weight [O, I], bias [O] or nullptr, y [N, O]
template <typename T>
void linear_forward(Device device, std::int64_t N, std::int64_t I, std::int64_t O, const T* x,
                    const T* weight, const T* bias, T* y);

/// dx = dy · weight (skipped when null); dweight += dyᵀ · x; dbias += Σ_n dy[n] (skipped when
/// null).   dy [N, O], x [N, I], weight [O, I], dx [N, I], dweight [O, I], dbias [O]
template <typename T>
void linear_backward(Device device, std::int64_t N, std::int64_t I, std::int64_t O, const T* dy,
                     const T* x, const T* weight, T* dx, T* dweight, T* dbias);

/// ops.h's fused log-softmax + NLL (+ label smoothing) and its gradient; the result is read back
/// (the call waits, once). Targets out of range are counted on the device with the loss and
/// refused after it (std::invalid_argument naming the first; dlogits is then unspecified).
///   logits [N, C], targets [N], dlogits [N, C] (=) or nullptr
template <typename T>
LossResult cross_entropy(Device device, std::int64_t N, std::int64_t C, const T* logits,
                         const std::int64_t* targets, const CrossEntropyOptions& options,
                         T* dlogits);

/// ops.h's mean (or summed) squared error and its gradient times grad_scale; the loss is read
/// back (the call waits).   pred [N], target [N], dpred [N] (=) or nullptr
template <typename T>
double mse_loss(Device device, std::int64_t N, const T* pred, const T* target, Reduction reduction,
                double grad_scale, T* dpred);

/// ops.h's pooling over time. y, pooled, dpooled, dy and argmax lie on the device; lengths [B]
/// are host memory (checked there, then copied over). max_pool_backward checks argmax on the
/// device (one wait) unless argmax_checked (it came from max_pool_forward).
template <typename T>
void mean_pool_forward(Device device, std::int64_t Tn, std::int64_t B, std::int64_t F, const T* y,
                       const std::int64_t* lengths, T* pooled);
template <typename T>
void mean_pool_backward(Device device, std::int64_t Tn, std::int64_t B, std::int64_t F,
                        const T* dpooled, const std::int64_t* lengths, T* dy);
template <typename T>
void max_pool_forward(Device device, std::int64_t Tn, std::int64_t B, std::int64_t F, const T* y,
                      const std::int64_t* lengths, T* pooled, std::int64_t* argmax);
template <typename T>
void max_pool_backward(Device device, std::int64_t Tn, std::int64_t B, std::int64_t F,
                       const T* dpooled, const std::int64_t* argmax, T* dy,
                       bool argmax_checked = false);

/// C[b] = op(A[b]) · op(B[b]) (+ C[b] with accumulate) for b in [0, batch), row-major, op(X) =
/// Xᵀ when its flag is set: A[b] [M, K] ([K, M] with trans_a), B[b] [K, N] ([N, K] with trans_b),
/// C[b] [M, N], each batch's matrices one after another (attention's scores and contexts).
template <typename T>
void batched_gemm(Device device, std::int64_t batch, bool trans_a, bool trans_b, std::int64_t M,
                  std::int64_t N, std::int64_t K, const T* A, const T* B, T* C, bool accumulate);

/// Each row of scores [R, S] turned into a softmax over its first lengths[r / group] entries, the
/// rest weight 0 (attention over padded sources: group = the query steps per sequence). The
/// row's max is subtracted and its sum taken in double. lengths: host memory [R / group] in
/// [1, S].   scores, weights [R, S] (=)
template <typename T>
void masked_softmax(Device device, std::int64_t R, std::int64_t S, std::int64_t group,
                    const T* scores, const std::int64_t* lengths, T* weights);

/// The gradient of a softmax from its output: dscores = w ⊙ (dw - Σ_s dw·w) per row (the dot in
/// double); zero where w is.   dw, w, dscores [R, S]
template <typename T>
void softmax_backward(Device device, std::int64_t R, std::int64_t S, const T* dw, const T* w,
                      T* dscores);

/// y += alpha · x.   x, y [n]
template <typename T>
void axpy(Device device, std::int64_t n, double alpha, const T* x, T* y);

/// out[j] += Σ_r x[r, j] (a sum over the leading axis).   x [rows, cols], out [cols]
template <typename T>
void column_sums(Device device, std::int64_t rows, std::int64_t cols, const T* x, T* out);

/// y = tanh(x) element-wise (y may be x).   x, y [n]
template <typename T>
void tanh_forward(Device device, std::int64_t n, const T* x, T* y);

/// dx = dy · (1 - y²), the gradient of y = tanh(x) given y (dx may be dy).   dy, y, dx [n]
template <typename T>
void tanh_backward(Device device, std::int64_t n, const T* dy, const T* y, T* dx);

/// dst[r, 0:width] = src[r, 0:width] for r in [0, rows), rows src_stride / dst_stride elements
/// apart (>= width): a column block of one matrix into another (concatenating or splitting
/// features along the last axis). The blocks must not overlap.
template <typename T>
void strided_copy(Device device, std::int64_t rows, std::int64_t width, const T* src,
                  std::int64_t src_stride, T* dst, std::int64_t dst_stride);

/// ops.h's keyed inverted dropout: the same masks on every device.   x, y, scale [outer, B, inner]
/// On a GPU scale may be nullptr (only y is written).
template <typename T>
void keyed_dropout(Device device, std::int64_t outer, std::int64_t B, std::int64_t inner,
                   const T* x, double p, std::uint64_t seed, std::int64_t batch_offset, T* y,
                   T* scale);

/// The optimizers' updates of one flat buffer (ops.h documents each); the state buffers lie on
/// the device with the parameters.
template <typename T>
void sgd_step(Device device, std::int64_t P, T* param, const T* grad, T* momentum_buf,
              bool first_step, const SgdOptions& options);
template <typename T>
void adam_step(Device device, std::int64_t P, T* param, const T* grad, T* exp_avg, T* exp_avg_sq,
               T* max_exp_avg_sq, std::int64_t step, const AdamOptions& options);
template <typename T>
void rmsprop_step(Device device, std::int64_t P, T* param, const T* grad, T* square_avg,
                  T* grad_avg, T* momentum_buf, const RmspropOptions& options);
template <typename T>
void adadelta_step(Device device, std::int64_t P, T* param, const T* grad, T* square_avg,
                   T* acc_delta, const AdadeltaOptions& options);
template <typename T>
void adagrad_step(Device device, std::int64_t P, T* param, const T* grad, T* state_sum,
                  std::int64_t step, const AdagradOptions& options);

/// Σ x² over all buffers in double (waits for the result).
template <typename T>
double sum_of_squares(Device device, const std::vector<Span<const T>>& buffers);
/// x *= factor over all buffers.
template <typename T>
void scale_buffers(Device device, const std::vector<Span<T>>& buffers, double factor);
/// The global L2 norm before clipping; the buffers scaled by clip_coefficient when it exceeds
/// max_norm (> 0). Waits for the norm; the scaling is queued.
template <typename T>
double clip_grad_norm(Device device, const std::vector<Span<T>>& buffers, double max_norm);
/// x = clamp(x, -clip_value, clip_value) (clip_value > 0; NaN stays NaN).
template <typename T>
void clip_grad_value(Device device, const std::vector<Span<T>>& buffers, double clip_value);
/// True when no element is NaN or ±inf (waits for the answer).
template <typename T>
bool all_finite(Device device, const std::vector<Span<const T>>& buffers);

}  // namespace rnncore
