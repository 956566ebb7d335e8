// The argument checks of the training operations (ops.cpp), shared by the CPU ops and their GPU
// versions (device_ops.cpp), so that both refuse the same arguments with the same messages.
// Each throws std::invalid_argument naming the argument. Pointers are only tested for null: on a
// GPU they are device addresses.
#pragma once

#include <cstdint>

#include "keyed.h"  // RNNCORE_HD
#include "rnncore/ops.h"

namespace rnncore::detail {

void check_sgd(std::int64_t P, const void* param, const void* grad, const void* momentum_buf,
               const SgdOptions& o);
void check_adam(std::int64_t P, const void* param, const void* grad, const void* exp_avg,
                const void* exp_avg_sq, std::int64_t step, const AdamOptions& o);
void check_adadelta(std::int64_t P, const void* param, const void* grad, const void* square_avg,
                    const void* acc_delta, const AdadeltaOptions& o);
void check_rmsprop(std::int64_t P, const void* param, const void* grad, const void* square_avg,
                   const void* grad_avg, const void* momentum_buf, const RmspropOptions& o);
void check_adagrad(std::int64_t P, const void* param, const void* grad, const void* state_sum,
                   std::int64_t step, const AdagradOptions& o);
/// N, C, the pointers and the options (not the targets' range: the caller checks it where the
/// targets lie).
void check_cross_entropy(std::int64_t N, std::int64_t C, const void* logits, const void* targets,
                         const CrossEntropyOptions& o);
/// keyed_dropout's sizes, offset, p in [0, 1) and pointers (scale may be null when
/// scale_optional: a GPU dropout that draws its mask again for backward keeps none).
void check_keyed_dropout(std::int64_t outer, std::int64_t B, std::int64_t inner,
                         std::int64_t batch_offset, double p, const void* x, const void* y,
                         const void* scale, bool scale_optional = false);
/// How many targets[0:N] are not ignore_index; std::invalid_argument ("targets: class ... at
/// position ...") for the first other one outside [0, C). Host memory.
std::int64_t check_targets(std::int64_t N, std::int64_t C, const std::int64_t* targets,
                           std::int64_t ignore_index);
/// N >= 0, I >= 1, O >= 1.
void check_linear(std::int64_t N, std::int64_t I, std::int64_t O);
/// N >= 0, V >= 1, E >= 1, padding_idx < V.
void check_embedding(std::int64_t N, std::int64_t V, std::int64_t E, std::int64_t padding_idx);
/// A buffer of a clipping or norm call: size >= 0, data non-null when size > 0.
void check_buffer(std::int64_t size, const void* data);
/// clip_value > 0.
void check_clip_value(double clip_value);
/// batched_gemm's sizes (>= 0) and pointers.
void check_batched_gemm(std::int64_t batch, std::int64_t M, std::int64_t N, std::int64_t K,
                        const void* A, const void* B, const void* C);
/// masked_softmax's R >= 0, S >= 1, group >= 1 dividing R, pointers, lengths (host) in [1, S].
void check_masked_softmax(std::int64_t R, std::int64_t S, std::int64_t group, const void* scores,
                          const std::int64_t* lengths, const void* weights);
/// strided_copy's rows >= 0, width >= 0, strides >= width, pointers.
void check_strided_copy(std::int64_t rows, std::int64_t width, const void* src,
                        std::int64_t src_stride, const void* dst, std::int64_t dst_stride);
/// mse_loss's N, pointers, reduction and grad_scale.
void check_mse(std::int64_t N, const void* pred, const void* target, Reduction reduction,
               double grad_scale);
/// The pooling ops' T >= 1, B >= 0, F >= 0, the pointers, and lengths (host memory) in [1, T].
void check_time_pool(std::int64_t Tn, std::int64_t B, std::int64_t F, const void* in,
                     const void* out, const std::int64_t* lengths);

/// argmax[0:n] (host memory) in [0, T): std::invalid_argument naming "argmax" and the first
/// other step.
void check_pool_argmax(std::int64_t Tn, std::int64_t n, const std::int64_t* argmax);

/// Whether max pooling's running maximum `best` gives way to `v`: a larger value, or a NaN
/// after a number (the first NaN stays, as numpy's argmax). Shared by the CPU and GPU loops.
template <typename T>
RNNCORE_HD inline bool max_pool_takes(T v, T best) {
  return v > best || (v != v && best == best);
}

}  // namespace rnncore::detail
