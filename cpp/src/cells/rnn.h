// Vanilla (Elman) RNN cell, forward and backward: h' = act(W_ih x + b_ih + W_hh h + b_hh).
#pragma once

#include "step.h"

namespace rnncore::detail {

struct RnnCell {
  static constexpr int kGates = 1;

  // gates: in a = x·W_ihᵀ + b_ih + b_hh, out act(a + h_prev·W_hhᵀ) (which is also h).
  template <typename T>
  static void forward(const Step<T>& s, bool relu) {
    const Index u = s.units();
    s.recurrent_gemm(1, 0, 1);
    for (Index r = 0; r < s.n; ++r) {
      RowArr<T> a(s.gate(s.gates, 1, r, 0), u);
      a += ConstRowArr<T>(s.rec_gate(1, r, 0), u);
      if (relu)
        a = a.max(T(0));
      else
        a = a.tanh();
      RowArr<T>(s.h + r * s.ld_h + s.j0, u) = a;
    }
  }

  // gates: in the saved h, out dG = dh ⊙ act'(h). dh_prev = dG·W_hh.
  template <typename T>
  static void backward(const Step<T>& s, bool relu) {
    const Index u = s.units();
    for (Index r = 0; r < s.n; ++r) {
      RowArr<T> g(s.gate(s.gates, 1, r, 0), u);
      ConstRowArr<T> dh(s.dh + r * s.H + s.j0, u);
      if (relu)
        g = (g > T(0)).select(dh, T(0));
      else
        g = dh * (T(1) - g.square());
    }
    barrier();
    s.backward_gemm(1, 0, 1, /*accumulate=*/false);
  }
};

}  // namespace rnncore::detail
