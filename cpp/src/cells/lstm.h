// LSTM cell (gate order i, f, g, o as PyTorch), forward and backward:
//   i,f,o = σ(·), g = tanh(·), c' = f ⊙ c + i ⊙ g, h' = o ⊙ tanh(c'),
// and with layer norm h' = o ⊙ tanh(γ_c ⊙ LN(c') + β_c) (layer_norm.h).
#pragma once

#include "layer_norm.h"
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
  static constexpr bool kLayerNorm = true;

  template <typename T>
  static void forward(const Step<T>& s) {
    if (s.ln.on) return forward_ln(s);
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
    if (s.ln.on) return backward_ln(s);
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

  // Layer norm: the recurrent pre-activations are normalised after the GEMM, and c' before its
  // tanh, each over the whole row (a barrier per norm: the row's units span the team).
  template <typename T>
  static void forward_ln(const Step<T>& s) {
    const Index H = s.H, u = s.units();
    const auto& ln = s.ln;
    const int nth = thread_count(), tid = thread_id();
    s.recurrent_gemm(4, 0, 4);
    ln_recurrent_forward(s, 4, /*scale_rec=*/false);
    // γ_h ⊙ LN(W_hh h) of gate block k in row r
    auto rec = [&](Index r, Index k) {
      return ConstRowArr<T>(s.gate(ln.rhat, 4, r, k), u) *
             ConstRowArr<T>(ln.gain_h + k * H + s.j0, u);
    };
    for (Index r = 0; r < s.n; ++r) {
      RowArr<T> i(s.gate(s.gates, 4, r, 0), u), f(s.gate(s.gates, 4, r, 1), u);
      RowArr<T> g(s.gate(s.gates, 4, r, 2), u), o(s.gate(s.gates, 4, r, 3), u);
      i = (i + rec(r, 0)).logistic();
      f = (f + rec(r, 1)).logistic();
      g = (g + rec(r, 2)).tanh();
      o = (o + rec(r, 3)).logistic();
      RowArr<T> c(s.c + r * H + s.j0, u);
      c = f * ConstRowArr<T>(s.c_prev.row(r) + s.j0, u) + i * g;
      moments(s.c + r * H + s.j0, u, ln.part_c + (Index(tid) * ln.stride + r) * 3);
    }
    barrier();  // every thread's partial moments of c'
    for (Index r = 0; r < s.n; ++r) {
      T mean, rstd;
      combine_moments(ln.part_c, nth, ln.stride, r, mean, rstd);
      if (tid == 0) ln.rstd_c[r] = rstd;
      RowArr<T> chat(ln.chat + r * H + s.j0, u);
      chat = (ConstRowArr<T>(s.c + r * H + s.j0, u) - mean) * rstd;
      RowArr<T>(s.h + r * s.ld_h + s.j0, u) =
          ConstRowArr<T>(s.gate(s.gates, 4, r, 3), u) *
          (chat * ConstRowArr<T>(ln.gain_c + s.j0, u) + ConstRowArr<T>(ln.bias_c + s.j0, u)).tanh();
    }
  }

  // gates in: i, f, g, o; out: dv (the gradient w.r.t. the summed pre-activations); rhat out:
  // dL/d(W_hh h) (layer_norm.h); dγ_c, dβ_c accumulate.
  template <typename T>
  static void backward_ln(const Step<T>& s) {
    const Index H = s.H, u = s.units();
    const auto& ln = s.ln;
    const int nth = thread_count(), tid = thread_id();
    Eigen::Array<T, 1, Eigen::Dynamic> th(u), dy(u);
    // dγ_c, dβ_c summed over the rows here, then added once (see ln_recurrent_backward)
    Eigen::Array<T, 1, Eigen::Dynamic> dgain = Eigen::Array<T, 1, Eigen::Dynamic>::Zero(u);
    Eigen::Array<T, 1, Eigen::Dynamic> dbeta = Eigen::Array<T, 1, Eigen::Dynamic>::Zero(u);
    ConstRowArr<T> gain(ln.gain_c + s.j0, u), beta(ln.bias_c + s.j0, u);
    for (Index r = 0; r < s.n; ++r) {
      RowArr<T> o(s.gate(s.gates, 4, r, 3), u);
      ConstRowArr<T> dh(s.dh + r * H + s.j0, u), chat(ln.chat + r * H + s.j0, u);
      th = (chat * gain + beta).tanh();
      dy = dh * o * d_tanh(th);  // dL/d(γ_c ⊙ LN(c') + β_c)
      dgain += dy * chat;
      dbeta += dy;
      RowArr<T> dchat(ln.dchat + r * H + s.j0, u);
      dchat = dy * gain;
      T* p = ln.part_c + (Index(tid) * ln.stride + r) * 2;
      p[0] = dchat.sum();
      p[1] = (dchat * chat).sum();
      o = dh * th * d_sigmoid(o);  // do
    }
    RowArr<T>(ln.dgain_c + s.j0, u) += dgain;
    RowArr<T>(ln.dbias_c + s.j0, u) += dbeta;
    barrier();  // every thread's partial sums over c'
    for (Index r = 0; r < s.n; ++r) {
      RowArr<T> i(s.gate(s.gates, 4, r, 0), u), f(s.gate(s.gates, 4, r, 1), u);
      RowArr<T> g(s.gate(s.gates, 4, r, 2), u);
      RowArr<T> dc(s.dc + r * H + s.j0, u);
      T a, b;
      combine_sums(ln.part_c, nth, ln.stride, r, a, b);
      a /= T(H);
      b /= T(H);
      dc += ln.rstd_c[r] * (ConstRowArr<T>(ln.dchat + r * H + s.j0, u) - a -
                            ConstRowArr<T>(ln.chat + r * H + s.j0, u) * b);
      RowArr<T>(s.dc_prev + r * H + s.j0, u) = dc * f;
      th = dc * i * d_tanh(g);  // dg, parked while i is still needed
      i = dc * g * d_sigmoid(i);
      g = th;
      f = dc * ConstRowArr<T>(s.c_prev.row(r) + s.j0, u) * d_sigmoid(f);
    }
    ln_recurrent_backward(s, 4);  // each thread's own copy of dL/d(W_hh h): no barrier
    s.backward_gemm(4, 0, 4, /*accumulate=*/false);
  }
};

}  // namespace rnncore::detail
