// GRU cell (gate order r, z, n as PyTorch), forward and backward, in both published forms:
//   reset-after (PyTorch/cuDNN): n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
//   reset-before (Cho et al.):   n = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn)
//   r, z = σ(W_i{r,z} x + b_i{r,z} + W_h{r,z} h + b_h{r,z}),  h' = (1 - z) ⊙ n + z ⊙ h.
#pragma once

#include "step.h"

namespace rnncore::detail {

struct GruCell {
  static constexpr int kGates = 3;

  // gates in: x·W_ihᵀ + b_ih + [b_hr, b_hz, (reset-before: b_hn | reset-after: 0)].
  // gates out: r, z, n. aux out: W_hn h + b_hn (reset-after) or r ⊙ h (reset-before).
  template <typename T>
  static void forward(const Step<T>& s, bool reset_after) {
    const Index H = s.H, G = 3 * H;
    if (reset_after) {
      gemm_nt(s.n, G, H, s.h_prev, s.ld_hprev, s.Wh, H, s.rec, G, /*accumulate=*/false);
      for_rows(s.n, G, [&](Index r) {
        RowArr<T> g(s.gates + r * G, G);
        ConstRowArr<T> rec(s.rec + r * G, G);
        ConstRowArr<T> hp(s.h_prev + r * s.ld_hprev, H);
        RowArr<T> hn(s.aux + r * H, H);
        g.head(2 * H) = (g.head(2 * H) + rec.head(2 * H)).logistic();
        if (s.bh_n)
          hn = rec.tail(H) + ConstRowArr<T>(s.bh_n, H);
        else
          hn = rec.tail(H);
        g.tail(H) = (g.tail(H) + g.head(H) * hn).tanh();
        RowArr<T>(s.h + r * s.ld_h, H) = (T(1) - g.segment(H, H)) * g.tail(H) + g.segment(H, H) * hp;
      });
    } else {
      gemm_nt(s.n, 2 * H, H, s.h_prev, s.ld_hprev, s.Wh, H, s.rec, G, /*accumulate=*/false);
      for_rows(s.n, 2 * H, [&](Index r) {
        RowArr<T> g(s.gates + r * G, G);
        g.head(2 * H) = (g.head(2 * H) + ConstRowArr<T>(s.rec + r * G, 2 * H)).logistic();
        RowArr<T>(s.aux + r * H, H) = g.head(H) * ConstRowArr<T>(s.h_prev + r * s.ld_hprev, H);
      });
      // W_hn (r ⊙ h) accumulates straight into the n pre-activation.
      gemm_nt(s.n, H, H, s.aux, H, s.Wh + 2 * H * H, H, s.gates + 2 * H, G, /*accumulate=*/true);
      for_rows(s.n, 2 * H, [&](Index r) {
        RowArr<T> g(s.gates + r * G, G);
        ConstRowArr<T> hp(s.h_prev + r * s.ld_hprev, H);
        g.tail(H) = g.tail(H).tanh();
        RowArr<T>(s.h + r * s.ld_h, H) = (T(1) - g.segment(H, H)) * g.tail(H) + g.segment(H, H) * hp;
      });
    }
  }

  // reset-after: gates out dG_h = [dr, dz, dn ⊙ r] (the recurrent side), aux out dn (the input
  // side of the n block; the r and z blocks are the same on both sides).
  // reset-before: gates out [dr, dz, dn] (both sides); aux (r ⊙ h) is left for dW_hn.
  template <typename T>
  static void backward(const Step<T>& s, bool reset_after) {
    const Index H = s.H, G = 3 * H;
    if (reset_after) {
      for_rows(s.n, G, [&](Index r) {
        RowArr<T> g(s.gates + r * G, G);
        auto rg = g.head(H);
        auto z = g.segment(H, H);
        auto nn = g.tail(H);
        ConstRowArr<T> dh(s.dh + r * H, H);
        ConstRowArr<T> hp(s.h_prev + r * s.ld_hprev, H);
        RowArr<T> aux(s.aux + r * H, H);
        Eigen::Array<T, 1, Eigen::Dynamic> dn = dh * (T(1) - z) * (T(1) - nn.square());
        RowArr<T>(s.dh_prev + r * H, H) = dh * z;
        z = dh * (hp - nn) * z * (T(1) - z);
        nn = dn * rg;
        rg = dn * aux * rg * (T(1) - rg);
        aux = dn;
      });
      gemm_nn(s.n, H, G, s.gates, G, s.Wh, H, s.dh_prev, H, /*accumulate=*/true);
    } else {
      for_rows(s.n, G, [&](Index r) {
        RowArr<T> g(s.gates + r * G, G);
        auto z = g.segment(H, H);
        auto nn = g.tail(H);
        ConstRowArr<T> dh(s.dh + r * H, H);
        ConstRowArr<T> hp(s.h_prev + r * s.ld_hprev, H);
        Eigen::Array<T, 1, Eigen::Dynamic> dn = dh * (T(1) - z) * (T(1) - nn.square());
        RowArr<T>(s.dh_prev + r * H, H) = dh * z;
        z = dh * (hp - nn) * z * (T(1) - z);
        nn = dn;
      });
      // d(r ⊙ h) = dn · W_hn, parked in rec [n, H].
      gemm_nn(s.n, H, H, s.gates + 2 * H, G, s.Wh + 2 * H * H, H, s.rec, H, /*accumulate=*/false);
      for_rows(s.n, G, [&](Index r) {
        RowArr<T> rg(s.gates + r * G, H);
        ConstRowArr<T> drh(s.rec + r * H, H);
        ConstRowArr<T> hp(s.h_prev + r * s.ld_hprev, H);
        RowArr<T>(s.dh_prev + r * H, H) += drh * rg;
        rg = drh * hp * rg * (T(1) - rg);
      });
      gemm_nn(s.n, H, 2 * H, s.gates, G, s.Wh, H, s.dh_prev, H, /*accumulate=*/true);
    }
  }
};

}  // namespace rnncore::detail
