// LSTM cell (gate order i, f, g, o as PyTorch), forward and backward:
//   i,f,o = σ(·), g = tanh(·), c' = f ⊙ c + i ⊙ g, h' = o ⊙ tanh(c').
#pragma once

#include "step.h"

namespace rnncore::detail {

struct LstmCell {
  static constexpr int kGates = 4;

  template <typename T>
  static void forward(const Step<T>& s) {
    const Index H = s.H, G = 4 * H;
    gemm_nt(s.n, G, H, s.h_prev, s.ld_hprev, s.Wh, H, s.gates, G, /*accumulate=*/true);
    for_rows(s.n, G, [&](Index r) {
      RowArr<T> g(s.gates + r * G, G);
      g.head(2 * H) = g.head(2 * H).logistic();  // i, f
      g.segment(2 * H, H) = g.segment(2 * H, H).tanh();
      g.tail(H) = g.tail(H).logistic();  // o
      RowArr<T> c(s.c + r * H, H);
      c = g.segment(H, H) * ConstRowArr<T>(s.c_prev + r * H, H) + g.head(H) * g.segment(2 * H, H);
      RowArr<T>(s.h + r * s.ld_h, H) = g.tail(H) * c.tanh();
    });
  }

  // gates in: i, f, g, o; out: di, df, dg, do. dc_prev = dc ⊙ f; dh_prev = dG·W_hh.
  template <typename T>
  static void backward(const Step<T>& s) {
    const Index H = s.H, G = 4 * H;
    for_rows(s.n, G, [&](Index r) {
      RowArr<T> g(s.gates + r * G, G);
      auto i = g.head(H);
      auto f = g.segment(H, H);
      auto gg = g.segment(2 * H, H);
      auto o = g.tail(H);
      ConstRowArr<T> dh(s.dh + r * H, H);
      RowArr<T> dc(s.dc + r * H, H);
      Eigen::Array<T, 1, Eigen::Dynamic> tmp = ConstRowArr<T>(s.c + r * H, H).tanh();
      dc += dh * o * (T(1) - tmp.square());  // total dL/dc_t
      RowArr<T>(s.dc_prev + r * H, H) = dc * f;
      o = dh * tmp * o * (T(1) - o);  // do
      tmp = dc * i * (T(1) - gg.square());  // dg, parked while i is still needed
      i = dc * gg * i * (T(1) - i);  // di
      gg = tmp;
      f = dc * ConstRowArr<T>(s.c_prev + r * H, H) * f * (T(1) - f);  // df
    });
    gemm_nn(s.n, H, G, s.gates, G, s.Wh, H, s.dh_prev, H, /*accumulate=*/false);
  }
};

}  // namespace rnncore::detail
