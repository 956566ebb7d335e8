// The lecture's gated cells, built one gate at a time toward the LSTM, forward and backward.
// The state s is also the output (and what the next step and the next layer see):
//   residual ("gated-residual"): s' = s + r,          r = tanh(U_r x + V_r s + b_r)
//   input    ("gated-input"):    s' = s + i ⊙ r,      i = σ(U_i x + V_i s + b_i)
//   forget   ("gated-forget"):   s' = f ⊙ s + i ⊙ r,  f = σ(U_f x + V_f s + b_f)
// Gate blocks in the order (input, forget, candidate), restricted to the gates present: the
// LSTM's (i, f, g, o) without o. Adding the output gate, h = o ⊙ tanh(s) fed back instead of s,
// gives the LSTM itself (lstm.h), which rnncore.nn.GatedRNN uses for all three gates.
#pragma once

#include "rnncore/activations.h"
#include "step.h"

namespace rnncore::detail {

template <int kSigmoidGates>  // 0: residual, 1: + input gate, 2: + input and forget gates
struct GatedCell {
  static_assert(kSigmoidGates >= 0 && kSigmoidGates <= 2, "gates: (), (input,), (input, forget)");
  static constexpr bool kInput = kSigmoidGates >= 1, kForget = kSigmoidGates >= 2;
  static constexpr CellType kId = kSigmoidGates == 0   ? CellType::kGatedResidual
                                  : kSigmoidGates == 1 ? CellType::kGatedInput
                                                       : CellType::kGatedForget;
  static constexpr const char* kName = kSigmoidGates == 0   ? "gated-residual"
                                       : kSigmoidGates == 1 ? "gated-input"
                                                            : "gated-forget";
  static constexpr const char* kTorchMode = "";  // no PyTorch (or ONNX) counterpart
  static constexpr const char* kLayer = "GatedRNN";
  static constexpr const char* kLayerOption = kSigmoidGates == 0   ? "gates="
                                              : kSigmoidGates == 1 ? "gates=input"
                                                                   : "gates=input,forget";
  static constexpr int kGates = kSigmoidGates + 1;  // the candidate r is the last block
  static constexpr int kStates = 1;
  static constexpr int kFoldedHiddenBias = kGates;  // b_hh adds to the input projection whole
  static constexpr bool kAux = false;
  static constexpr bool kAuxIsInputSideDG = false;
  static constexpr bool kAuxIsRecurrentInput = false;
  static constexpr bool kLayerNorm = false;  // (RecurrentConfig::layer_norm)
  static constexpr int kCand = kGates - 1;

  // gates: in x·W_ihᵀ + biases, out the activated blocks (i, f, r); h = s'.
  template <typename T>
  static void forward(const Step<T>& s) {
    constexpr int G = kGates;
    const Index u = s.units();
    s.recurrent_gemm(G, 0, G);
    for (Index r = 0; r < s.n; ++r) {
      RowArr<T> cand(s.gate(s.gates, G, r, kCand), u);
      cand = (cand + ConstRowArr<T>(s.rec_gate(G, r, kCand), u)).tanh();
      ConstRowArr<T> sp(s.h_prev.row(r) + s.j0, u);
      RowArr<T> out(s.h + r * s.ld_h + s.j0, u);
      if constexpr (!kInput) {
        out = sp + cand;
      } else {
        RowArr<T> i(s.gate(s.gates, G, r, 0), u);
        i = (i + ConstRowArr<T>(s.rec_gate(G, r, 0), u)).logistic();
        if constexpr (kForget) {
          RowArr<T> f(s.gate(s.gates, G, r, 1), u);
          f = (f + ConstRowArr<T>(s.rec_gate(G, r, 1), u)).logistic();
          out = f * sp + i * cand;
        } else {
          out = sp + i * cand;
        }
      }
    }
  }

  // dh is dL/ds'. gates in: i, f, r; out: di, df, dr.
  // ds_prev = ds' ⊙ f (1 without a forget gate) + dG·W_hh.
  template <typename T>
  static void backward(const Step<T>& s) {
    constexpr int G = kGates;
    const Index H = s.H, u = s.units();
    Eigen::Array<T, 1, Eigen::Dynamic> dr(u);
    for (Index r = 0; r < s.n; ++r) {
      ConstRowArr<T> ds(s.dh + r * H + s.j0, u);
      RowArr<T> cand(s.gate(s.gates, G, r, kCand), u);
      RowArr<T> dprev(s.dh_prev + r * H + s.j0, u);
      if constexpr (!kInput) {
        cand = ds * d_tanh(cand);
        dprev = ds;
      } else {
        RowArr<T> i(s.gate(s.gates, G, r, 0), u);
        if constexpr (kForget) {
          RowArr<T> f(s.gate(s.gates, G, r, 1), u);
          dprev = ds * f;
          f = ds * ConstRowArr<T>(s.h_prev.row(r) + s.j0, u) * d_sigmoid(f);
        } else {
          dprev = ds;
        }
        dr = ds * i * d_tanh(cand);  // parked while r is still needed
        i = ds * cand * d_sigmoid(i);
        cand = dr;
      }
    }
    barrier();  // the product below reads dG of every unit
    s.backward_gemm(G, 0, G, /*accumulate=*/true);
  }
};

}  // namespace rnncore::detail
