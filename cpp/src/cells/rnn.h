// Vanilla (Elman) RNN cell, forward and backward: h' = act(W_ih x + b_ih + W_hh h + b_hh), with
// act = tanh ("rnn") or ReLU ("rnn_relu"; the IRNN with identity initialisation).
#pragma once

#include "rnncore/activations.h"
#include "step.h"

namespace rnncore::detail {

template <bool kRelu>
struct RnnCell {
  static constexpr CellType kId = kRelu ? CellType::kRnnRelu : CellType::kRnnTanh;
  static constexpr const char* kName = kRelu ? "rnn_relu" : "rnn";
  static constexpr const char* kTorchMode = kRelu ? "RNN_RELU" : "RNN_TANH";
  static constexpr const char* kLayer = "RNN";  // rnncore.nn class, and the keyword that picks it
  static constexpr const char* kLayerOption = kRelu ? "nonlinearity=relu" : "nonlinearity=tanh";
  static constexpr int kGates = 1;
  static constexpr int kStates = 1;
  static constexpr int kFoldedHiddenBias = 1;  // b_hh adds to the input projection whole
  static constexpr bool kAux = false;
  static constexpr bool kAuxIsInputSideDG = false;
  static constexpr bool kAuxIsRecurrentInput = false;
  static constexpr bool kLayerNorm = false;  // (RecurrentConfig::layer_norm)

  // gates: in a = x·W_ihᵀ + b_ih + b_hh, out act(a + h_prev·W_hhᵀ) (which is also h).
  template <typename T>
  static void forward(const Step<T>& s) {
    const Index u = s.units();
    s.recurrent_gemm(1, 0, 1);
    for (Index r = 0; r < s.n; ++r) {
      RowArr<T> a(s.gate(s.gates, 1, r, 0), u);
      a += ConstRowArr<T>(s.rec_gate(1, r, 0), u);
      if constexpr (kRelu)
        a = a.max(T(0));
      else
        a = a.tanh();
      RowArr<T>(s.h + r * s.ld_h + s.j0, u) = a;
    }
  }

  // gates: in the saved h, out dG = dh ⊙ act'(h). dh_prev = dG·W_hh.
  template <typename T>
  static void backward(const Step<T>& s) {
    const Index u = s.units();
    for (Index r = 0; r < s.n; ++r) {
      RowArr<T> g(s.gate(s.gates, 1, r, 0), u);
      ConstRowArr<T> dh(s.dh + r * s.H + s.j0, u);
      if constexpr (kRelu)
        g = (g > T(0)).select(dh, T(0));
      else
        g = dh * d_tanh(g);
    }
    barrier();
    s.backward_gemm(1, 0, 1, /*accumulate=*/false);
  }
};

}  // namespace rnncore::detail
