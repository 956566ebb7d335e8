// GRU cell (gate order r, z, n as PyTorch), forward and backward, in both published forms:
//   "gru"    reset-after (PyTorch/cuDNN): n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
//   "gru_v1" reset-before (Cho et al.):   n = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn)
//   r, z = σ(W_i{r,z} x + b_i{r,z} + W_h{r,z} h + b_h{r,z}),  h' = (1 - z) ⊙ n + z ⊙ h.
#pragma once

#include "layer_norm.h"
#include "rnncore/activations.h"
#include "step.h"

namespace rnncore::detail {

template <bool kResetAfter>
struct GruCell {
  static constexpr CellType kId = kResetAfter ? CellType::kGru : CellType::kGruV1;
  static constexpr const char* kName = kResetAfter ? "gru" : "gru_v1";
  static constexpr const char* kTorchMode = "GRU";  // torch.nn.GRU is the reset-after form only
  static constexpr const char* kLayer = "GRU";
  static constexpr const char* kLayerOption = kResetAfter ? "reset_after=1" : "reset_after=0";
  static constexpr int kGates = 3;
  static constexpr int kStates = 1;
  // Reset-after: b_hn sits inside r ⊙ (W_hn h + b_hn), so only b_hr, b_hz fold into the input
  // projection and the step adds b_hn itself (Step::bh_n).
  static constexpr int kFoldedHiddenBias = kResetAfter ? 2 : 3;
  // aux [N, H]: W_hn h + b_hn (reset-after) or r ⊙ h_prev (reset-before), kept for backward.
  static constexpr bool kAux = true;
  // Reset-after: backward leaves the n block's input-side dG (dn, not dn ⊙ r) in aux.
  static constexpr bool kAuxIsInputSideDG = kResetAfter;
  // Reset-before: the n block of dW_hh pairs with r ⊙ h_prev (aux) rather than h_prev.
  static constexpr bool kAuxIsRecurrentInput = !kResetAfter;
  // Layer norm of both sides' pre-activations (layer_norm.h), reset-after only: reset-before's
  // W_hn (r ⊙ h) is a second recurrent product, with no single row to normalise.
  static constexpr bool kLayerNorm = kResetAfter;

  // gates in: x·W_ihᵀ + b_ih + [b_hr, b_hz, (reset-before: b_hn | reset-after: 0)].
  // gates out: r, z, n. aux out: see kAux.
  template <typename T>
  static void forward(const Step<T>& s) {
    const Index H = s.H, u = s.units();
    if constexpr (kResetAfter) {
      s.recurrent_gemm(3, 0, 3);
      if (s.ln.on) ln_recurrent_forward(s, 3);  // rec becomes γ_h ⊙ LN(W_hh h)
      for (Index r = 0; r < s.n; ++r) {
        RowArr<T> rg(s.gate(s.gates, 3, r, 0), u), z(s.gate(s.gates, 3, r, 1), u);
        RowArr<T> nn(s.gate(s.gates, 3, r, 2), u);
        RowArr<T> hn(s.aux + r * H + s.j0, u);
        hn = ConstRowArr<T>(s.rec_gate(3, r, 2), u);
        if (s.bh_n) hn += ConstRowArr<T>(s.bh_n + s.j0, u);
        rg = (rg + ConstRowArr<T>(s.rec_gate(3, r, 0), u)).logistic();
        z = (z + ConstRowArr<T>(s.rec_gate(3, r, 1), u)).logistic();
        nn = (nn + rg * hn).tanh();
        ConstRowArr<T> hp(s.h_prev.row(r) + s.j0, u);
        RowArr<T>(s.h + r * s.ld_h + s.j0, u) = (T(1) - z) * nn + z * hp;
      }
    } else {
      s.recurrent_gemm(3, 0, 2);
      for (Index r = 0; r < s.n; ++r) {
        RowArr<T> rg(s.gate(s.gates, 3, r, 0), u), z(s.gate(s.gates, 3, r, 1), u);
        rg = (rg + ConstRowArr<T>(s.rec_gate(3, r, 0), u)).logistic();
        z = (z + ConstRowArr<T>(s.rec_gate(3, r, 1), u)).logistic();
        RowArr<T>(s.aux + r * H + s.j0, u) = rg * ConstRowArr<T>(s.h_in.row(r) + s.j0, u);
      }
      barrier();  // W_hn (r ⊙ h) needs every unit of r ⊙ h
      s.own_gate_product(3, 2, s.aux, H, s.gates + 2 * H + s.j0, 3 * H);
      for (Index r = 0; r < s.n; ++r) {
        ConstRowArr<T> z(s.gate(s.gates, 3, r, 1), u);
        RowArr<T> nn(s.gate(s.gates, 3, r, 2), u);
        nn = nn.tanh();
        ConstRowArr<T> hp(s.h_prev.row(r) + s.j0, u);
        RowArr<T>(s.h + r * s.ld_h + s.j0, u) = (T(1) - z) * nn + z * hp;
      }
    }
  }

  // reset-after: gates out dG_h = [dr, dz, dn ⊙ r] (the recurrent side), aux out dn (the input
  // side of the n block; the r and z blocks are the same on both sides).
  // reset-before: gates out [dr, dz, dn] (both sides); aux (r ⊙ h) is left for dW_hn.
  template <typename T>
  static void backward(const Step<T>& s) {
    const Index H = s.H, u = s.units();
    Eigen::Array<T, 1, Eigen::Dynamic> dn(u);
    for (Index r = 0; r < s.n; ++r) {
      RowArr<T> rg(s.gate(s.gates, 3, r, 0), u), z(s.gate(s.gates, 3, r, 1), u);
      RowArr<T> nn(s.gate(s.gates, 3, r, 2), u);
      ConstRowArr<T> dh(s.dh + r * H + s.j0, u);
      ConstRowArr<T> hp(s.h_prev.row(r) + s.j0, u);
      dn = dh * (T(1) - z) * d_tanh(nn);
      RowArr<T>(s.dh_prev + r * H + s.j0, u) = dh * z;
      z = dh * (hp - nn) * d_sigmoid(z);
      if constexpr (kResetAfter) {
        RowArr<T> aux(s.aux + r * H + s.j0, u);
        nn = dn * rg;
        rg = dn * aux * d_sigmoid(rg);
        aux = dn;
      } else {
        nn = dn;
      }
    }
    if constexpr (kResetAfter) {
      if (s.ln.on) ln_recurrent_backward(s, 3);  // each thread's own copy of the product's input
    }
    if (!s.ln.on) barrier();  // the GEMMs below read dG of every unit
    if constexpr (kResetAfter) {
      s.backward_gemm(3, 0, 3, /*accumulate=*/true);
    } else {
      // d(r ⊙ h) = dn · W_hn for this thread's units, parked in rec [n, H].
      s.weight_product_bwd(3, 2 * H, H, s.gates, 3 * H, s.rec + s.j0, H, /*accumulate=*/false);
      for (Index r = 0; r < s.n; ++r) {
        RowArr<T> rg(s.gate(s.gates, 3, r, 0), u);
        ConstRowArr<T> drh(s.rec + r * H + s.j0, u);
        ConstRowArr<T> hin(s.h_in.row(r) + s.j0, u);  // h_prev as W_hn saw it
        if (s.in_mask)
          RowArr<T>(s.dh_prev + r * H + s.j0, u) +=
              drh * rg * ConstRowArr<T>(s.in_mask + r * H + s.j0, u);
        else
          RowArr<T>(s.dh_prev + r * H + s.j0, u) += drh * rg;
        rg = drh * hin * d_sigmoid(rg);
      }
      barrier();  // dr of every unit
      s.backward_gemm(3, 0, 2, /*accumulate=*/true);
    }
  }
};

}  // namespace rnncore::detail
