// Public C++ API of the training operations: embedding, linear, losses, optimizers, clipping.
//
// Layout legend (the engine's, see recurrent.h): dense, row-major. N rows (tokens or examples),
// V vocabulary size, E embedding size, I input features, O output features, C classes,
// P parameters of one flat buffer. Pointers are raw views; every one has its shape beside it.
// Accumulation rule, as everywhere in the engine: parameter gradients `+=`, activation gradients
// `=`. Every function checks its arguments first and throws std::invalid_argument naming the
// argument; kernels run after the checks. float and double are instantiated (templates).
//
// The optimizer updates reproduce torch.optim's single-tensor (CPU) code paths formula by formula,
// with scalar coefficients computed in double and cast to the buffer type as torch does.
#pragma once

#include <cstdint>
#include <vector>

namespace rnncore {

/// A contiguous buffer of `size` elements (one parameter or gradient array, or a flat run of them).
template <typename T>
struct Span {
  T* data = nullptr;
  std::int64_t size = 0;
};

enum class Reduction : int { kMean = 0, kSum = 1 };

// ---- Keyed random masks ----------------------------------------------------------------------
// An array viewed as [outer, B, inner], B its examples (the batch axis): element (o, b, i) draws
// from (seed, example batch_offset + b, position o * inner + i). A slice of the examples, given
// its offset, draws exactly what the whole batch draws (data parallelism); the thread count never
// matters.

/// Uniform draws in [0, 1), multiples of 2^-32.   out [outer, B, inner]
void keyed_uniform(std::int64_t outer, std::int64_t B, std::int64_t inner, std::uint64_t seed,
                   std::int64_t batch_offset, double* out);

/// Inverted dropout with keyed masks: scale = 1/(1-p) where the element's draw is >= p, else 0;
/// y = x * scale. p in [0, 1).   x, y, scale [outer, B, inner]
template <typename T>
void keyed_dropout(std::int64_t outer, std::int64_t B, std::int64_t inner, const T* x, double p,
                   std::uint64_t seed, std::int64_t batch_offset, T* y, T* scale);

// ---- Embedding --------------------------------------------------------------------------------

/// Throws std::invalid_argument if some ids[n] is outside [0, V), naming `name`, the first
/// offending value and its position.   ids [N]
void check_ids(std::int64_t N, std::int64_t V, const std::int64_t* ids, const char* name = "ids");

/// Gather: out[n, :] = weight[ids[n], :] (=). Checks the ids.
///   ids [N] in [0, V), weight [V, E], out [N, E]
template <typename T>
void embedding_forward(std::int64_t N, std::int64_t V, std::int64_t E, const std::int64_t* ids,
                       const T* weight, T* out);

/// Scatter-add: dweight[ids[n], :] += dout[n, :] for every n with ids[n] != padding_idx
/// (padding_idx < 0: no padding row). Deterministic: each row sums its contributions in n order,
/// whatever the thread count. Checks the ids.
///   ids [N] in [0, V), dout [N, E], dweight [V, E] (+=)
template <typename T>
void embedding_backward(std::int64_t N, std::int64_t V, std::int64_t E, const std::int64_t* ids,
                        const T* dout, T* dweight, std::int64_t padding_idx = -1);

// ---- Linear (PyTorch layout) ------------------------------------------------------------------

/// y = x · weightᵀ + bias (=).
///   x [N, I], weight [O, I], bias [O] or nullptr, y [N, O]
template <typename T>
void linear_forward(std::int64_t N, std::int64_t I, std::int64_t O, const T* x, const T* weight,
                    const T* bias, T* y);

/// dx = dy · weight (=, skipped when dx is nullptr); dweight += dyᵀ · x; dbias += Σ_n dy[n]
/// (skipped when dbias is nullptr).
///   dy [N, O], x [N, I], weight [O, I], dx [N, I], dweight [O, I], dbias [O]
template <typename T>
void linear_backward(std::int64_t N, std::int64_t I, std::int64_t O, const T* dy, const T* x,
                     const T* weight, T* dx, T* dweight, T* dbias);

// ---- Conv1d (PyTorch's weight layout, channels-last activations) ---------------------------

/// The output length of a stride-1 convolution: L + 2 pad - K + 1 (may be < 1: refused below).
inline std::int64_t conv1d_out_length(std::int64_t L, std::int64_t K, std::int64_t pad) {
  return L + 2 * pad - K + 1;
}

/// y[n, t, o] = bias[o] + Σ_{c, k} weight[o, c, k] · x[n, t + k - pad, c] (zero outside [0, L)):
/// PyTorch's Conv1d (stride 1, zero padding `pad` on both ends) on channels-last arrays, as one
/// GEMM over an im2col copy of x.
///   x [N, L, C], weight [O, C, K], bias [O] or nullptr, y [N, Lo, O] (=), Lo = L + 2 pad - K + 1
template <typename T>
void conv1d_forward(std::int64_t N, std::int64_t L, std::int64_t C, std::int64_t O, std::int64_t K,
                    std::int64_t pad, const T* x, const T* weight, const T* bias, T* y);

/// dx (=, skipped when nullptr), dweight (+=) and dbias (+=, skipped when nullptr) of
/// conv1d_forward.   dy [N, Lo, O], x [N, L, C], weight [O, C, K], dx [N, L, C]
template <typename T>
void conv1d_backward(std::int64_t N, std::int64_t L, std::int64_t C, std::int64_t O, std::int64_t K,
                     std::int64_t pad, const T* dy, const T* x, const T* weight, T* dx, T* dweight,
                     T* dbias);

// ---- Linear-chain CRF (Lafferty et al. 2001; the tagger's output layer) ---------------------

/// The parameters of a linear-chain CRF over K tags: transitions[i, j] scores tag i followed by
/// tag j; start[j] / end[i] score a sequence's first / last tag. `allowed` [K*K] (or nullptr:
/// everything) and `allowed_start` [K] (or nullptr) forbid transitions and first tags (BIO: I-X
/// only after B-X or I-X, never first): a forbidden path has probability 0.
template <typename T>
struct CrfParams {
  std::int64_t K = 0;
  const T* transitions = nullptr;                // [K, K]
  const T* start = nullptr;                      // [K]
  const T* end = nullptr;                        // [K]
  const unsigned char* allowed = nullptr;        // [K, K] or nullptr
  const unsigned char* allowed_start = nullptr;  // [K] or nullptr
};

/// Σ over the batch of -log p(tags | emissions): the forward algorithm in log space, one sequence
/// per thread. With d_emissions non-null also the gradients: d_emissions (=) [T, B, K] (zero past
/// each length), d_transitions [K, K], d_start [K], d_end [K] (+=), from the forward-backward
/// marginals. Emissions and tags are time-major; lengths [B] in [1, T]; tags in [0, K) on each
/// sequence's steps (others ignored). A gold path the constraints forbid is an
/// std::invalid_argument naming the sequence and step.
template <typename T>
double crf_nll(std::int64_t Tn, std::int64_t B, const CrfParams<T>& crf, const T* emissions,
               const std::int64_t* lengths, const std::int64_t* tags, T* d_emissions,
               T* d_transitions, T* d_start, T* d_end);

/// The most probable tag sequence of each sequence (Viterbi): out [T, B] (=), -1 past each
/// length; the lowest tag id wins ties.
template <typename T>
void crf_viterbi(std::int64_t Tn, std::int64_t B, const CrfParams<T>& crf, const T* emissions,
                 const std::int64_t* lengths, std::int64_t* out);

// ---- Softmax: the engine's one implementation (losses, inference, the sampler use it) ---------

/// rows[n, :] = log_softmax(rows[n, :]) (in place); each row's sum of exponentials in double.
///   rows [N, V]
template <typename T>
void log_softmax_rows(std::int64_t N, std::int64_t V, T* rows);

/// rows[n, :] = softmax(rows[n, :]) (in place).   rows [N, V]
template <typename T>
void softmax_rows(std::int64_t N, std::int64_t V, T* rows);

// ---- Losses -----------------------------------------------------------------------------------

struct CrossEntropyOptions {
  std::int64_t ignore_index = -100;  // rows with this target add no loss and get zero gradient
  Reduction reduction = Reduction::kMean;  // mean over the non-ignored rows, or sum
  double label_smoothing = 0.0;            // in [0, 1]: target (1-ε)·onehot + ε/C, as PyTorch
  double grad_scale = 1.0;                 // dlogits are multiplied by this (e.g. 1/accum steps)
};

struct LossResult {
  double loss = 0.0;       // reduced loss (0 when every row is ignored; PyTorch's mean gives NaN)
  std::int64_t count = 0;  // rows that were not ignored
};

/// Fused log-softmax + NLL (+ label smoothing) and its gradient, one pass per row, stable for any
/// finite logits (max subtracted, sums in double). Targets other than ignore_index must be in
/// [0, C) (checked, std::invalid_argument naming "targets").
///   logits [N, C], targets [N], dlogits [N, C] out (=) or nullptr for the loss only
template <typename T>
LossResult cross_entropy(std::int64_t N, std::int64_t C, const T* logits,
                         const std::int64_t* targets, const CrossEntropyOptions& options,
                         T* dlogits);

/// Mean (over N) or sum of (pred - target)² and its gradient times grad_scale.
///   pred [N], target [N], dpred [N] out (=) or nullptr
template <typename T>
double mse_loss(std::int64_t N, const T* pred, const T* target, Reduction reduction,
                double grad_scale, T* dpred);

// ---- Pooling over time (a classifier's "mean" / "max" readout of a recurrent layer's outputs) --
// y is time-major [T, B, F]; lengths [B] in [1, T] are host memory on every device. Only each
// sequence's first lengths[b] steps take part; the gradients are zero past them.

/// pooled[b, f] = Σ_{t < lengths[b]} y[t, b, f] / lengths[b], summed in double.
///   y [T, B, F], pooled [B, F] (=)
template <typename T>
void mean_pool_forward(std::int64_t Tn, std::int64_t B, std::int64_t F, const T* y,
                       const std::int64_t* lengths, T* pooled);

/// dy[t, b, f] = dpooled[b, f] · (1 / lengths[b]) for t < lengths[b], else 0.
///   dpooled [B, F], dy [T, B, F] (=)
template <typename T>
void mean_pool_backward(std::int64_t Tn, std::int64_t B, std::int64_t F, const T* dpooled,
                        const std::int64_t* lengths, T* dy);

/// pooled[b, f] = max_{t < lengths[b]} y[t, b, f]; argmax[b, f] the step of the first maximum
/// (a NaN counts as the maximum, as numpy's argmax).   pooled [B, F] (=), argmax [B, F] (=)
template <typename T>
void max_pool_forward(std::int64_t Tn, std::int64_t B, std::int64_t F, const T* y,
                      const std::int64_t* lengths, T* pooled, std::int64_t* argmax);

/// dy[t, b, f] = dpooled[b, f] where t == argmax[b, f], else 0. Steps in argmax outside [0, T)
/// are refused (std::invalid_argument naming "argmax").   dpooled, argmax [B, F], dy [T, B, F] (=)
template <typename T>
void max_pool_backward(std::int64_t Tn, std::int64_t B, std::int64_t F, const T* dpooled,
                       const std::int64_t* argmax, T* dy);

// ---- Optimizers: one call updates one flat buffer in place ------------------------------------

struct SgdOptions {
  double lr = 1e-3;  // >= 0 (a schedule may reach 0)
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;  // needs momentum > 0 and dampening == 0
};

/// torch.optim.SGD. momentum_buf [P] is required when momentum != 0; on the first step
/// (first_step) it is set to the gradient, as torch creates it.
///   param [P] (updated), grad [P], momentum_buf [P] or nullptr
template <typename T>
void sgd_step(std::int64_t P, T* param, const T* grad, T* momentum_buf, bool first_step,
              const SgdOptions& options);

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;  // in [0, 1)
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool decoupled_weight_decay = false;  // true: AdamW (param *= 1 - lr·wd before the update)
};

/// torch.optim.Adam / AdamW. `step` is the step number after incrementing (1 on the first call).
/// max_exp_avg_sq non-null selects AMSGrad.
///   param [P] (updated), grad [P], exp_avg [P], exp_avg_sq [P], max_exp_avg_sq [P] or nullptr
template <typename T>
void adam_step(std::int64_t P, T* param, const T* grad, T* exp_avg, T* exp_avg_sq,
               T* max_exp_avg_sq, std::int64_t step, const AdamOptions& options);

struct RmspropOptions {
  double lr = 1e-2;
  double alpha = 0.99;
  double eps = 1e-8;
  double weight_decay = 0.0;
  double momentum = 0.0;
  bool centered = false;
};

/// torch.optim.RMSprop. grad_avg is required when centered, momentum_buf when momentum > 0.
///   param [P] (updated), grad [P], square_avg [P], grad_avg [P] or nullptr,
///   momentum_buf [P] or nullptr
template <typename T>
void rmsprop_step(std::int64_t P, T* param, const T* grad, T* square_avg, T* grad_avg,
                  T* momentum_buf, const RmspropOptions& options);

struct AdadeltaOptions {
  double lr = 1.0;
  double rho = 0.9;
  double eps = 1e-6;
  double weight_decay = 0.0;
};

/// torch.optim.Adadelta (Zeiler 2012): with g = grad + weight_decay·p, s = ρ·s + (1-ρ)·g²,
/// Δ = sqrt(u + eps) / sqrt(s + eps) · g, u = ρ·u + (1-ρ)·Δ², p -= lr·Δ.
///   param [P] (updated), grad [P], square_avg [P], acc_delta [P]
template <typename T>
void adadelta_step(std::int64_t P, T* param, const T* grad, T* square_avg, T* acc_delta,
                   const AdadeltaOptions& options);

struct AdagradOptions {
  double lr = 1e-2;
  double lr_decay = 0.0;
  double weight_decay = 0.0;
  double eps = 1e-10;
};

/// torch.optim.Adagrad (dense). `step` is the step number after incrementing (1 first).
/// state_sum starts at initial_accumulator_value (the caller fills it).
///   param [P] (updated), grad [P], state_sum [P]
template <typename T>
void adagrad_step(std::int64_t P, T* param, const T* grad, T* state_sum, std::int64_t step,
                  const AdagradOptions& options);

// ---- Gradient clipping and checks -------------------------------------------------------------

/// Σ x² over all buffers, accumulated in double in fixed chunks (same result for any thread
/// count). NaN/inf propagate.
template <typename T>
double sum_of_squares(const std::vector<Span<const T>>& buffers);

/// x *= factor over all buffers.
template <typename T>
void scale_buffers(const std::vector<Span<T>>& buffers, double factor);

/// The factor clip_grad_norm multiplies by: max_norm / (total_norm + 1e-6) when total_norm >
/// max_norm (finite), else 1 (no change; a non-finite norm is left for the caller to detect).
double clip_coefficient(double total_norm, double max_norm);

/// Global L2 norm over all buffers; when it exceeds max_norm (> 0), every buffer is scaled by
/// clip_coefficient. Returns the norm before clipping.
template <typename T>
double clip_grad_norm(const std::vector<Span<T>>& buffers, double max_norm);

/// x = clamp(x, -clip_value, clip_value) over all buffers (clip_value > 0; NaN stays NaN).
template <typename T>
void clip_grad_value(const std::vector<Span<T>>& buffers, double clip_value);

/// True when no element of any buffer is NaN or ±inf.
template <typename T>
bool all_finite(const std::vector<Span<const T>>& buffers);

}  // namespace rnncore
