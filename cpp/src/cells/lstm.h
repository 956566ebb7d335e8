// LSTM cell (gate order i, f, g, o as PyTorch), forward and backward:
//   i,f,o = σ(·), g = tanh(·), c' = f ⊙ c + i ⊙ g, h' = o ⊙ tanh(c').
#pragma once

#include "rnncore/activations.h"
#include "step.h"

namespace rnncore::detail {

struct LstmCell {
  static constexpr CellType kId = CellType::kLstm;
  static constexpr const char* kName = "lstm";
  static constexpr const char* kTorchMode = "LSTM";
  static constexpr const char* kLayer = "LSTM";
  static constexpr const char* kLayerOption = "";
  static constexpr int kGates = 4;
  static constexpr int kStates = 2;            // h and the cell state c (kept for backward)
  static constexpr int kFoldedHiddenBias = 4;  // b_hh adds to the input projection whole
  static constexpr bool kAux = false;
  static constexpr bool kAuxIsInputSideDG = false;
  static constexpr bool kAuxIsRecurrentInput = false;

  template <typename T>
  static void forward(const Step<T>& s) {
    const Index H = s.H, u = s.units();
    s.recurrent_gemm(4, 0, 4);
    for (Index r = 0; r < s.n; ++r) {
      RowArr<T> i(s.gate(s.gates, 4, r, 0), u), f(s.gate(s.gates, 4, r, 1), u);
      RowArr<T> g(s.gate(s.gates, 4, r, 2), u), o(s.gate(s.gates, 4, r, 3), u);
      i = (i + ConstRowArr<T>(s.rec_gate(4, r, 0), u)).logistic();
      f = (f + ConstRowArr<T>(s.rec_gate(4, r, 1), u)).logistic();
      g = (g + ConstRowArr<T>(s.rec_gate(4, r, 2), u)).tanh();
      o = (o + ConstRowArr<T>(s.rec_gate(4, r, 3), u)).logistic();
      RowArr<T> c(s.c + r * H + s.j0, u);
      c = f * ConstRowArr<T>(s.c_prev.row(r) + s.j0, u) + i * g;
      RowArr<T>(s.h + r * s.ld_h + s.j0, u) = o * c.tanh();
    }
  }

  // gates in: i, f, g, o; out: di, df, dg, do. dc (in) is the carried dL/dc~ of this step's
  // own cell value; dc_prev = dc ⊙ f; dh_prev = dG·W_hh.
  template <typename T>
  static void backward(const Step<T>& s) {
    const Index H = s.H, u = s.units();
    Eigen::Array<T, 1, Eigen::Dynamic> tmp(u);
    for (Index r = 0; r < s.n; ++r) {
      RowArr<T> i(s.gate(s.gates, 4, r, 0), u), f(s.gate(s.gates, 4, r, 1), u);
      RowArr<T> g(s.gate(s.gates, 4, r, 2), u), o(s.gate(s.gates, 4, r, 3), u);
      ConstRowArr<T> dh(s.dh + r * H + s.j0, u);
      RowArr<T> dc(s.dc + r * H + s.j0, u);
      // tanh of this step's own c~ (what h' read): the saved c, or under zoneout (where the
      // saved c is the zoned state) c~ = f ⊙ c_prev + i ⊙ g recomputed.
      if (s.zoned)
        tmp = (f * ConstRowArr<T>(s.c_prev.row(r) + s.j0, u) + i * g).tanh();
      else
        tmp = ConstRowArr<T>(s.c + r * H + s.j0, u).tanh();
      dc += dh * o * d_tanh(tmp);  // total dL/dc~
      RowArr<T>(s.dc_prev + r * H + s.j0, u) = dc * f;
      o = dh * tmp * d_sigmoid(o);  // do
      tmp = dc * i * d_tanh(g);     // dg, parked while i is still needed
      i = dc * g * d_sigmoid(i);    // di
      g = tmp;
      f = dc * ConstRowArr<T>(s.c_prev.row(r) + s.j0, u) * d_sigmoid(f);  // df
    }
    barrier();
    s.backward_gemm(4, 0, 4, /*accumulate=*/false);
  }
};

}  // namespace rnncore::detail
