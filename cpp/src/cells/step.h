// What one time step of one lane (layer × direction) reads and writes, shared by every cell.
#pragma once

#include "../linalg.h"

namespace rnncore::detail {

// Rows are the n sequences still active at this step: a prefix of the length-sorted batch.
template <typename T>
struct Step {
  Index n = 0;  // active rows
  Index H = 0;  // hidden size
  // Forward in: x·Wxᵀ + folded biases. Forward out: activated gates, kept for backward.
  // Backward out: dG, the gradient w.r.t. the gate pre-activations.
  T* gates = nullptr;  // [n, G*H], row stride G*H
  const T* h_prev = nullptr;  // [n, H], row stride ld_hprev
  Index ld_hprev = 0;
  T* h = nullptr;  // [n, H], row stride ld_h: the new state (= this step's output)
  Index ld_h = 0;
  const T* c_prev = nullptr;  // [n, H] LSTM cell state before the step
  T* c = nullptr;             // [n, H] LSTM cell state after the step
  T* aux = nullptr;  // [n, H] GRU: W_hn h + b_hn (reset-after) or r ⊙ h_prev (reset-before)
  T* rec = nullptr;  // [n, G*H] scratch for the recurrent GEMM
  const T* Wh = nullptr;  // [G*H, H]
  const T* bh_n = nullptr;  // [H] GRU reset-after only (the other hidden biases are folded in)
  // Backward only.
  T* dh = nullptr;       // [n, H] in: dL/dh_t (carried + from the output); clobbered
  T* dc = nullptr;       // [n, H] in: carried dL/dc_t (LSTM); clobbered
  T* dh_prev = nullptr;  // [n, H] out (=)
  T* dc_prev = nullptr;  // [n, H] out (=), LSTM
};

// Element-wise work below this many scalars per step runs on one thread: the fork/join of an
// OpenMP region costs more than it saves on small batches.
constexpr Index kParallelWork = 1 << 14;

template <typename F>
inline void for_rows(Index n, Index work_per_row, F&& f) {
#ifdef _OPENMP
  if (n > 1 && n * work_per_row >= kParallelWork) {
#pragma omp parallel for schedule(static)
    for (Index r = 0; r < n; ++r) f(r);
    return;
  }
#endif
  for (Index r = 0; r < n; ++r) f(r);
}

}  // namespace rnncore::detail
