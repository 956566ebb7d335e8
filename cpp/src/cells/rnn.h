// Vanilla (Elman) RNN cell, forward and backward: h' = act(W_ih x + b_ih + W_hh h + b_hh).
#pragma once

#include "step.h"

namespace rnncore::detail {

struct RnnCell {
  static constexpr int kGates = 1;

  // gates: in a = x·W_ihᵀ + b_ih + b_hh, out act(a + h_prev·W_hhᵀ) (which is also h).
  template <typename T>
  static void forward(const Step<T>& s, bool relu) {
    const Index H = s.H;
    gemm_nt(s.n, H, H, s.h_prev, s.ld_hprev, s.Wh, H, s.gates, H, /*accumulate=*/true);
    for_rows(s.n, H, [&](Index r) {
      RowArr<T> a(s.gates + r * H, H);
      if (relu)
        a = a.max(T(0));
      else
        a = a.tanh();
      RowArr<T>(s.h + r * s.ld_h, H) = a;
    });
  }

  // gates: in the saved h, out dG = dh ⊙ act'(h). dh_prev = dG·W_hh.
  template <typename T>
  static void backward(const Step<T>& s, bool relu) {
    const Index H = s.H;
    for_rows(s.n, H, [&](Index r) {
      RowArr<T> g(s.gates + r * H, H);
      ConstRowArr<T> dh(s.dh + r * H, H);
      if (relu)
        g = (g > T(0)).select(dh, T(0));
      else
        g = dh * (T(1) - g.square());
    });
    gemm_nn(s.n, H, H, s.gates, H, s.Wh, H, s.dh_prev, H, /*accumulate=*/false);
  }
};

}  // namespace rnncore::detail
