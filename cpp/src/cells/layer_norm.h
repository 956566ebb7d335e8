// Layer normalisation inside the recurrence (Ba et al. 2016; haste's LayerNormLSTM equations):
//   v = γ_x ⊙ LN(W_ih x) + γ_h ⊙ LN(W_hh h) + b_ih + b_hh,  and for the LSTM
//   h' = o ⊙ tanh(γ_c ⊙ LN(c') + β_c),  LN(a) = (a - mean(a)) / sqrt(var(a) + ε) over a row.
// The input side is normalised for all steps at once (lane_cpu.h); the recurrent side and the
// cell state step by step, where a row's units are split over the team: each thread reduces its
// own units, one barrier, and every thread combines the partials of all threads for its rows.
#pragma once

#include <algorithm>
#include <cmath>

#include "step.h"

namespace rnncore::detail {

constexpr double kLayerNormEps = 1e-5;  // PyTorch's LayerNorm default

// Count, mean and sum of squared deviations of v[0, n) (two passes: stable in float).
template <typename T>
inline void moments(const T* v, Index n, T* out3) {
  out3[0] = T(n);
  if (n == 0) {
    out3[1] = out3[2] = T(0);
    return;
  }
  const T mean = ConstRowArr<T>(v, n).mean();
  out3[1] = mean;
  out3[2] = (ConstRowArr<T>(v, n) - mean).square().sum();
}

// Mean and 1/sqrt(var + ε) of a row from the partial moments of `parts` threads (Chan et al.'s
// pairwise combination: no cancellation between large sums). part [parts, stride, 3] at row r.
template <typename T>
inline void combine_moments(const T* part, int parts, Index stride, Index r, T& mean, T& rstd) {
  T n = 0, m = 0, m2 = 0;
  for (int k = 0; k < parts; ++k) {
    const T* p = part + (Index(k) * stride + r) * 3;
    if (p[0] == T(0)) continue;
    const T nk = p[0], total = n + nk, delta = p[1] - m;
    m += delta * nk / total;
    m2 += p[2] + delta * delta * n * nk / total;
    n = total;
  }
  mean = m;
  rstd = T(1) / std::sqrt(m2 / n + T(kLayerNormEps));
}

// Sums of two per-row quantities over the threads: part [parts, stride, 2] at row r.
template <typename T>
inline void combine_sums(const T* part, int parts, Index stride, Index r, T& a, T& b) {
  a = b = T(0);
  for (int k = 0; k < parts; ++k) {
    a += part[(Index(k) * stride + r) * 2];
    b += part[(Index(k) * stride + r) * 2 + 1];
  }
}

// Forward, after the recurrent GEMM: LN(rec) over the whole row of G*H into rhat (saved for
// backward), from this thread's rec [n, G*u] (blocked by gate); with `scale_rec` rec itself
// becomes γ_h ⊙ LN(rec) (else the cell reads rhat and γ_h).
template <typename T>
void ln_recurrent_forward(const Step<T>& s, Index G, bool scale_rec = true) {
  const auto& ln = s.ln;
  const Index H = s.H, u = s.units(), GH = G * H;
  const int nth = thread_count(), tid = thread_id();
  for (Index r = 0; r < s.n; ++r)
    moments(s.rec + r * G * u, G * u, ln.part_h + (Index(tid) * ln.stride + r) * 3);
  barrier();  // every thread's partials
  for (Index r = 0; r < s.n; ++r) {
    T mean, rstd;
    combine_moments(ln.part_h, nth, ln.stride, r, mean, rstd);
    if (tid == 0) ln.rstd_h[r] = rstd;
    for (Index g = 0; g < G; ++g) {
      RowArr<T> rec(s.rec + r * G * u + g * u, u);
      RowArr<T> rhat(ln.rhat + r * GH + g * H + s.j0, u);
      rhat = (rec - mean) * rstd;
      if (scale_rec) rec = rhat * ConstRowArr<T>(ln.gain_h + g * H + s.j0, u);
    }
  }
}

// Backward, after the cell left dL/dv (v = the recurrent side's γ_h ⊙ LN(rec) plus the rest) in
// this thread's units of gates [n, G*H]: accumulates dγ_h, and writes dL/d(rec) of the whole row
// into this thread's own ln.drec for the product with W_hh that follows. Every thread recomputes
// the row (a few flops per unit, against the product's R per unit) instead of waiting at one
// more barrier; the two row constants are kept (ln.coef) so that ln_recurrent_grad can turn the
// lane's rhat into dL/d(rec) for dW_hh after the loop.
template <typename T>
void ln_recurrent_backward(const Step<T>& s, Index G) {
  const auto& ln = s.ln;
  const Index H = s.H, u = s.units(), GH = G * H;
  const int nth = thread_count(), tid = thread_id();
  // dγ_h summed over the rows here, then added once: the gradient buffer's lines at the edges of
  // a thread's units are shared with its neighbour's.
  Eigen::Array<T, 1, Eigen::Dynamic> dgain = Eigen::Array<T, 1, Eigen::Dynamic>::Zero(G * u);
  for (Index r = 0; r < s.n; ++r) {
    T sa = 0, sb = 0;
    for (Index g = 0; g < G; ++g) {
      const Index col = g * H + s.j0;
      ConstRowArr<T> dv(s.gates + r * GH + col, u), rhat(ln.rhat + r * GH + col, u);
      ConstRowArr<T> gain(ln.gain_h + col, u);
      dgain.segment(g * u, u) += dv * rhat;
      sa += (dv * gain).sum();
      sb += (dv * gain * rhat).sum();
    }
    T* p = ln.part_h + (Index(tid) * ln.stride + r) * 2;
    p[0] = sa;
    p[1] = sb;
  }
  for (Index g = 0; g < G; ++g) RowArr<T>(ln.dgain_h + g * H + s.j0, u) += dgain.segment(g * u, u);
  barrier();  // every thread's partial sums (and its units of dv)
  ConstRowArr<T> gain(ln.gain_h, GH);
  for (Index r = 0; r < s.n; ++r) {
    T a, b;
    combine_sums(ln.part_h, nth, ln.stride, r, a, b);
    a /= T(GH);
    b /= T(GH);
    if (tid == 0) {
      ln.coef[2 * r] = a;
      ln.coef[2 * r + 1] = b;
    }
    RowArr<T>(ln.drec + r * GH, GH) = ln.rstd_h[r] * (ConstRowArr<T>(s.gates + r * GH, GH) * gain -
                                                      a - ConstRowArr<T>(ln.rhat + r * GH, GH) * b);
  }
}

// After a lane's step loop: rhat [N, G*H] becomes dL/d(rec) = 1/σ (dv ⊙ γ_h - a - rhat b) with
// each row's constants from ln_recurrent_backward (coef [N, 2]), for dW_hh.
template <typename T>
void ln_recurrent_grad(Index N, Index GH, const T* dv, const T* gain, const T* rstd, const T* coef,
                       T* rhat) {
  for_rows(N, 4 * GH, [&](Index r) {
    RowArr<T> rh(rhat + r * GH, GH);
    rh = rstd[r] * (ConstRowArr<T>(dv + r * GH, GH) * ConstRowArr<T>(gain, GH) - coef[2 * r] -
                    rh * coef[2 * r + 1]);
  });
}

// The input side, all N rows of a lane at once (outside the step loop): proj [N, G*H] = x·W_ihᵀ
// becomes gates = γ_x ⊙ LN(proj) + bias (bias [G*H] or null), LN(proj) kept in xhat.
template <typename T>
void ln_input_forward(Index N, Index GH, T* gates, const T* gain, const T* bias, T* xhat, T* rstd) {
  for_rows(N, 4 * GH, [&](Index r) {
    T m3[3];
    moments(gates + r * GH, GH, m3);
    const T inv = T(1) / std::sqrt(m3[2] / T(GH) + T(kLayerNormEps));
    rstd[r] = inv;
    RowArr<T> xh(xhat + r * GH, GH), g(gates + r * GH, GH);
    xh = (g - m3[1]) * inv;
    g = xh * ConstRowArr<T>(gain, GH);
    if (bias) g += ConstRowArr<T>(bias, GH);
  });
}

// Backward of ln_input_forward: dv [N, G*H] = dL/dgates, given as its first `split` columns in
// dv_a (row stride GH) and the rest in dv_b (row stride GH - split; the reset-after GRU keeps its
// input-side dn apart). dgain += Σ_rows dv ⊙ xhat; xhat is overwritten with dL/dproj.
template <typename T>
void ln_input_backward(Index N, Index GH, const T* dv_a, Index split, const T* dv_b, const T* gain,
                       T* dgain, T* xhat, const T* rstd) {
  const Index nb = GH - split;
  // dγ: the columns split over the team (each thread sums its own columns over all rows).
  team(N * GH >= kParallelWork, [&] {
    const Range c = share(GH, thread_count(), thread_id());
    const Index a1 = std::min(c.end, split), b0 = std::max(c.begin, split);
    for (Index r = 0; r < N; ++r) {
      if (a1 > c.begin)
        RowArr<T>(dgain + c.begin, a1 - c.begin) +=
            ConstRowArr<T>(dv_a + r * GH + c.begin, a1 - c.begin) *
            ConstRowArr<T>(xhat + r * GH + c.begin, a1 - c.begin);
      if (c.end > b0)
        RowArr<T>(dgain + b0, c.end - b0) +=
            ConstRowArr<T>(dv_b + r * nb + b0 - split, c.end - b0) *
            ConstRowArr<T>(xhat + r * GH + b0, c.end - b0);
    }
  });
  for_rows(N, 6 * GH, [&](Index r) {
    // The row's two pieces: dL/d LN = dv ⊙ γ, then LN's backward over the whole row.
    RowArr<T> xa(xhat + r * GH, split), xb(xhat + r * GH + split, nb);
    ConstRowArr<T> ga(gain, split), gb(gain + split, nb);
    ConstRowArr<T> da(dv_a + r * GH, split), db(dv_b ? dv_b + r * nb : dv_a, nb);
    T a = (da * ga).sum(), b = (da * ga * xa).sum();
    if (nb > 0) {
      a += (db * gb).sum();
      b += (db * gb * xb).sum();
    }
    a /= T(GH);
    b /= T(GH);
    xa = rstd[r] * (da * ga - a - xa * b);
    if (nb > 0) xb = rstd[r] * (db * gb - a - xb * b);
  });
}

}  // namespace rnncore::detail
