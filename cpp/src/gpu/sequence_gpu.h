// The CUDA backend's sequence layers, written once over a device policy: cuBLAS and CUDA kernels
// on a GPU (cpp/cuda/cuda_sequence.cu), or memory and loops on the CPU (gpu/device_host.h,
// device "cuda-sim"), so that the algorithm is tested against the CPU engine where no GPU is.
//
// The design is the CPU engine's (and haste's): per layer and direction one input-projection GEMM
// over all steps, one recurrent GEMM and one element-wise kernel per step, and after the loop the
// weight gradients as big GEMMs over all steps. Ragged batches run unpacked: past a sequence's end
// its state is carried through unchanged and its output is zero (the reverse direction starts at
// the sequence's own last step), which is PyTorch's packed-sequence semantics. Parameters and
// gradients keep a host copy (Recurrent::params(), numpy views in Python): every call uploads the
// parameters; backward adds the device's gradients into the host ones. A call on device memory
// (Recurrent::forward_on_device, for torch CUDA tensors) reads its inputs and the caller's
// parameters where they lie on the GPU and writes its outputs and gradients there, so a training
// step never goes through the host. Dropout between layers
// draws the CPU engine's masks (keyed.h), so the two devices agree bit for bit on them.
//
// Cells: rnn (tanh, relu), lstm (also with proj_size), gru (reset-after) and gru_v1 (reset-before:
// a second recurrent GEMM per step, W_hn (r ⊙ h)), the lecture's gated cells (cells/gated.h),
// with zoneout and recurrent dropout, and layer norm (LSTM, GRU) with its row statistics as one
// block reduction per row and everything else one GPU thread per element.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "../keyed.h"
#include "../sequence.h"

namespace rnncore::detail::gpu {

using Index = std::int64_t;

// Throws std::invalid_argument for what the GPU backend does not run yet.
void check_gpu_config(const RecurrentConfig& cfg, const char* device);

// ---- math usable in kernels ----------------------------------------------------------------
RNNCORE_HD inline float exp_(float x) { return expf(x); }
RNNCORE_HD inline double exp_(double x) { return ::exp(x); }
RNNCORE_HD inline float tanh_(float x) { return tanhf(x); }
RNNCORE_HD inline double tanh_(double x) { return ::tanh(x); }
RNNCORE_HD inline float sqrt_(float x) { return sqrtf(x); }
RNNCORE_HD inline double sqrt_(double x) { return ::sqrt(x); }

// LN's ε: PyTorch's LayerNorm default, as the CPU engine's kLayerNormEps (cells/layer_norm.h;
// sim_sequence.cpp checks that the two agree).
constexpr double kLayerNormEps = 1e-5;
template <typename T>
RNNCORE_HD inline T sigmoid_(T x) {
  return T(1) / (T(1) + exp_(-x));
}

// The cell, as the kernels switch on it: CellType's values (the constructor casts one into the
// other once check_gpu_config has accepted the cell).
enum class Kind : int {
  kRnnTanh = int(CellType::kRnnTanh),
  kRnnRelu = int(CellType::kRnnRelu),
  kLstm = int(CellType::kLstm),
  kGru = int(CellType::kGru),
  kGruV1 = int(CellType::kGruV1),
  kGatedResidual = int(CellType::kGatedResidual),  // s' = s + r
  kGatedInput = int(CellType::kGatedInput),        // s' = s + i ⊙ r
  kGatedForget = int(CellType::kGatedForget),      // s' = f ⊙ s + i ⊙ r
};

// Gate blocks of H rows in W_ih and W_hh.
RNNCORE_HD inline int gate_blocks(Kind k) {
  switch (k) {
    case Kind::kLstm:
      return 4;
    case Kind::kGru:
    case Kind::kGruV1:
    case Kind::kGatedForget:
      return 3;
    case Kind::kGatedInput:
      return 2;
    default:
      return 1;
  }
}

// ---- kernels: functors over an index, one GPU thread each ------------------------------------
// out[r, j] = bias[j] (or 0) for r in [0, rows): the input projection's starting value.
template <typename T>
struct FillRows {
  T* out;
  const T* bias;
  Index cols;
  RNNCORE_HD void operator()(Index i) const { out[i] = bias ? bias[i % cols] : T(0); }
};

// Dropout between layers: xd = y * mask, mask as the CPU engine draws it (sequence_cpu.cpp).
template <typename T>
struct DropInputs {
  const T* y;
  T* xd;
  T* mask;
  const std::int64_t* len;
  Index B, DH;
  std::uint64_t key;
  std::int64_t offset;
  double p;
  RNNCORE_HD void operator()(Index i) const {
    const Index j = i % DH, b = (i / DH) % B, t = i / (DH * B);
    const std::uint64_t pos =
        sequence_key(key, offset + b) + std::uint64_t(t) * std::uint64_t(DH) + std::uint64_t(j);
    const double u = double(mix64(pos) >> 11) * 0x1.0p-53;
    const T keep = u >= p ? T(1.0 / (1.0 - p)) : T(0);
    mask[i] = keep;
    xd[i] = t < len[b] ? y[i] * keep : T(0);
  }
};

// Recurrent dropout's mask of one lane [B, H]: one inverted-dropout scale per (sequence, unit)
// for the whole call, drawn as the CPU engine draws it (lane_cpu.h, draw_recurrent_mask).
template <typename T>
struct RecurrentMask {
  T* mask;
  Index H;
  std::uint64_t lane_key;
  std::int64_t offset;
  double p;
  RNNCORE_HD void operator()(Index i) const {
    const Index b = i / H, j = i % H;
    const std::uint64_t key = mix64(lane_key ^ 0x7265632d64726f70ULL);
    const double u =
        double(mix64(sequence_key(key, offset + b) + std::uint64_t(j)) >> 11) * 0x1.0p-53;
    mask[i] = u >= p ? T(1.0 / (1.0 - p)) : T(0);
  }
};

// out = a * m (element-wise), or out += a * m with accumulate.
template <typename T>
struct MultiplyInto {
  T* out;
  const T *a, *m;
  bool accumulate;
  RNNCORE_HD void operator()(Index i) const { out[i] = (accumulate ? out[i] : T(0)) + a[i] * m[i]; }
};

template <typename T>
struct Multiply {
  T* x;
  const T* m;
  RNNCORE_HD void operator()(Index i) const { x[i] *= m[i]; }
};

template <typename T>
struct AddInto {
  T* dst;
  const T* src;
  RNNCORE_HD void operator()(Index i) const { dst[i] += src[i]; }
};

// out[j] += sum over rows of g[r, j].
template <typename T>
struct ColumnSums {
  const T* g;
  T* out;
  Index rows, cols;
  RNNCORE_HD void operator()(Index j) const {
    T s = T(0);
    for (Index r = 0; r < rows; ++r) s += g[r * cols + j];
    out[j] += s;
  }
};

// The reset-before GRU's gates of one step, element (b, j) of [B, H]: rz [B, 3H] holds h_in W_hh^T
// for the r and z blocks (the GEMM's output) and gets r and z themselves; rh = r ⊙ h_in, the
// input of the step's second product W_hn (r ⊙ h).
template <typename T>
struct GruV1Gates {
  Index H;
  const T *xp, *bh, *h_in;
  T *rz, *rh;
  RNNCORE_HD void operator()(Index i) const {
    const Index b = i / H, j = i % H, row = b * 3 * H;
    const T r = sigmoid_(xp[row + j] + rz[row + j] + (bh ? bh[j] : T(0)));
    const T z = sigmoid_(xp[row + H + j] + rz[row + H + j] + (bh ? bh[H + j] : T(0)));
    rz[row + j] = r;
    rz[row + H + j] = z;
    rh[i] = r * h_in[i];
  }
};

// A projected LSTM's step, element (b, q) of [B, R]: hq = m W_hr^T is the new state of the rows
// still running; the others carry theirs and output zero.
template <typename T>
struct ProjSelect {
  Index R, t;
  const std::int64_t* len;
  const T *hq, *h_prev;
  T *h_next, *y;
  Index ld_y;
  RNNCORE_HD void operator()(Index i) const {
    const Index b = i / R, q = i % R;
    const bool active = t < len[b];
    h_next[i] = active ? hq[i] : h_prev[i];
    y[b * ld_y + q] = active ? hq[i] : T(0);
  }
};

// A projected LSTM's backward step, element (b, q) of [B, R]: dq = dL/dh_t of the rows still
// running (carried + output gradient; kept for dW_hr, zero elsewhere), and the carried gradient
// of the rows past their end, which passes through the step unchanged (the recurrent GEMM adds
// dG W_hh for the others).
template <typename T>
struct ProjGradIn {
  Index R, t;
  const std::int64_t* len;
  const T *dh, *dy;
  Index ld_y;
  T *dq, *dh_carry;
  RNNCORE_HD void operator()(Index i) const {
    const Index b = i / R, q = i % R;
    const bool active = t < len[b];
    dq[i] = active ? dh[i] + (dy ? dy[b * ld_y + q] : T(0)) : T(0);
    dh_carry[i] = active ? T(0) : dh[i];
  }
};

// The reset-before GRU's backward through r, element (b, j) of [B, H], after the cell wrote dn
// and dz: drh = dn W_hn is dL/d(r ⊙ h_in); dr goes to dG's r block, drh ⊙ r to dL/dh_in.
template <typename T>
struct GruV1ResetGrad {
  Index H, t;
  const std::int64_t* len;
  const T *drh, *gates, *h_in;
  T *dg, *dh_in;
  RNNCORE_HD void operator()(Index i) const {
    const Index b = i / H, j = i % H;
    if (!(t < len[b])) {
      dh_in[i] = T(0);
      return;
    }
    const T r = gates[b * 3 * H + j];
    dg[b * 3 * H + j] = drh[i] * h_in[i] * r * (T(1) - r);
    dh_in[i] = drh[i] * r;
  }
};

// One step of one lane, forward, element (b, j) of [B, H]. xp: this step's input projection
// [B, G*H] (b_ih included), hp: h_prev W_hh^T [B, G*H], bh: b_hh or null. Writes the new state,
// the output column of y [B, ld_y], and what backward needs (gates [B, G*H]; the GRU's
// W_hn h + b_hn in hn_keep [B, H]; the LSTM's c in c_keep [B, H]; h_prev in hprev [B, H]).
// gru_v1: hp holds r and z (GruV1Gates) and W_hn (r ⊙ h_in) in the n block. A projected LSTM
// passes y = m [B, H] (its cell output before W_hr) and scratch for h_prev / h_next.
template <typename T>
struct CellForward {
  Kind kind;
  Index H, t;
  const std::int64_t* len;
  const T *xp, *hp, *bh, *h_prev, *c_prev;
  T *h_next, *c_next, *y;
  Index ld_y;
  T *gates, *hn_keep, *c_keep, *hprev, *cprev;  // null in inference
  // Zoneout (0: none): in training a unit keeps its previous value where the CPU engine's draw
  // (lane_cpu.h, LaneRandom) says so, recorded in zh/zc [B, H]; in inference the expectation.
  double zoneout;
  std::uint64_t lane_key;
  std::int64_t offset;
  T *zh, *zc;
  RNNCORE_HD bool keeps(std::uint64_t seq, int stream, Index j) const {
    const std::uint64_t d = mix64(seq + std::uint64_t((t * 2 + stream) * ((H + 3) / 4) + j / 4));
    return double((d >> (16 * (j % 4))) & 0xffff) * (1.0 / 65536.0) < zoneout;
  }
  RNNCORE_HD void operator()(Index i) const {
    const Index b = i / H, j = i % H;
    const bool active = t < len[b];
    const T h0 = h_prev[i];
    if (hprev) hprev[i] = h0;
    if (!active) {  // past the end: the state carries through, the output is zero
      h_next[i] = h0;
      if (c_next) c_next[i] = c_prev[i];
      y[b * ld_y + j] = T(0);
      return;
    }
    auto pre = [&](int g) {
      const Index at = b * gate_blocks(kind) * H + g * H + j;
      return xp[at] + hp[at] + (bh ? bh[g * H + j] : T(0));
    };
    T h = T(0);
    if (kind == Kind::kRnnTanh || kind == Kind::kRnnRelu) {
      const T a = pre(0);
      h = kind == Kind::kRnnTanh ? tanh_(a) : (a > T(0) ? a : T(0));
      if (gates) gates[i] = h;
    } else if (kind == Kind::kLstm) {
      const T ig = sigmoid_(pre(0)), fg = sigmoid_(pre(1)), gg = tanh_(pre(2)),
              og = sigmoid_(pre(3));
      const T cp = c_prev[i];
      const T c = fg * cp + ig * gg;
      h = og * tanh_(c);
      c_next[i] = zone(c, cp, 1, b, j, zc ? zc + i : nullptr);
      if (gates) {
        T* g = gates + b * 4 * H + j;
        g[0] = ig;
        g[H] = fg;
        g[2 * H] = gg;
        g[3 * H] = og;
        c_keep[i] = c;
        cprev[i] = cp;
      }
    } else if (kind == Kind::kGatedResidual || kind == Kind::kGatedInput ||
               kind == Kind::kGatedForget) {  // blocks (i, f, r) as present, r last
      const int G = gate_blocks(kind);
      const T r = tanh_(pre(G - 1));
      const T ig = kind == Kind::kGatedResidual ? T(1) : sigmoid_(pre(0));
      const T fg = kind == Kind::kGatedForget ? sigmoid_(pre(1)) : T(1);
      h = fg * h0 + ig * r;
      if (gates) {
        T* g = gates + b * G * H + j;
        g[(G - 1) * H] = r;
        if (kind != Kind::kGatedResidual) g[0] = ig;
        if (kind == Kind::kGatedForget) g[H] = fg;
      }
    } else if (kind == Kind::kGruV1) {  // n = tanh(x_n + W_hn (r ⊙ h) + b_hn)
      const Index row = b * 3 * H;
      const T r = hp[row + j], z = hp[row + H + j];
      const T n = tanh_(pre(2));
      h = (T(1) - z) * n + z * h0;
      if (gates) {
        T* g = gates + row + j;
        g[0] = r;
        g[H] = z;
        g[2 * H] = n;
      }
    } else {  // GRU, reset-after (PyTorch's): n = tanh(x_n + r * (W_hn h + b_hn))
      const Index row = b * 3 * H;
      const T r = sigmoid_(pre(0)), z = sigmoid_(pre(1));
      const T hn = hp[row + 2 * H + j] + (bh ? bh[2 * H + j] : T(0));
      const T n = tanh_(xp[row + 2 * H + j] + r * hn);
      h = (T(1) - z) * n + z * h0;
      if (gates) {
        T* g = gates + row + j;
        g[0] = r;
        g[H] = z;
        g[2 * H] = n;
        hn_keep[i] = hn;
      }
    }
    h = zone(h, h0, 0, b, j, zh ? zh + i : nullptr);
    h_next[i] = h;
    y[b * ld_y + j] = h;
  }
  // The zoned value of a unit whose cell computed `fresh` and whose previous value is `prev`.
  RNNCORE_HD T zone(T fresh, T prev, int stream, Index b, Index j, T* record) const {
    if (zoneout <= 0.0) return fresh;
    if (!record) return T(zoneout) * prev + (T(1) - T(zoneout)) * fresh;  // inference
    const bool keep = keeps(sequence_key(lane_key, offset + b), stream, j);
    *record = keep ? T(1) : T(0);
    return keep ? prev : fresh;
  }
};

// One step of one lane, backward, element (b, j). dh [B, H]: dL/dh after this step (from the
// step after it and the final state); dy: this step's output gradient [B, ld_y] or null. Writes
// the pre-activation gradients (dgx for the input side, dgh for the recurrent side: they differ
// for the GRU only, else dgh == dgx), updates dc in place, and sets dh_carry to the part of
// dL/dh_prev that does not go through W_hh (the recurrent GEMM adds the rest). gru_v1 writes dz
// and dn only: dr needs dn W_hn first (GruV1ResetGrad).
template <typename T>
struct CellBackward {
  Kind kind;
  Index H, t;
  const std::int64_t* len;
  const T *dh, *dy;
  Index ld_y;
  const T *gates, *hn_keep, *c_keep, *cprev, *hprev;
  T *dc, *dgx, *dgh, *dh_carry;
  const T *zh, *zc;  // zoneout's records of this step, or null
  RNNCORE_HD void operator()(Index i) const {
    const Index b = i / H, j = i % H;
    const bool active = t < len[b];
    if (!active) {  // the state passed through this step unchanged
      dh_carry[i] = dh[i];
      return;
    }
    const T total = dh[i] + (dy ? dy[b * ld_y + j] : T(0));
    // a kept unit's gradient goes straight to the previous step, a fresh one's to the cell
    const T kept = zh && zh[i] != T(0) ? total : T(0);
    const T d = total - kept;
    T dc_kept = T(0);
    if (zc && zc[i] != T(0)) {
      dc_kept = dc[i];
      dc[i] = T(0);
    }
    if (kind == Kind::kRnnTanh || kind == Kind::kRnnRelu) {
      const T h = gates[i];
      const T da = kind == Kind::kRnnTanh ? d * (T(1) - h * h) : (h > T(0) ? d : T(0));
      dgx[i] = da;
      dh_carry[i] = kept;
    } else if (kind == Kind::kLstm) {
      const T* g = gates + b * 4 * H + j;
      const T ig = g[0], fg = g[H], gg = g[2 * H], og = g[3 * H];
      const T tc = tanh_(c_keep[i]);
      const T dct = dc[i] + d * og * (T(1) - tc * tc);
      T* o = dgx + b * 4 * H + j;
      o[0] = dct * gg * ig * (T(1) - ig);
      o[H] = dct * cprev[i] * fg * (T(1) - fg);
      o[2 * H] = dct * ig * (T(1) - gg * gg);
      o[3 * H] = d * tc * og * (T(1) - og);
      dc[i] = dct * fg + dc_kept;
      dh_carry[i] = kept;
    } else if (kind == Kind::kGatedResidual || kind == Kind::kGatedInput ||
               kind == Kind::kGatedForget) {
      const int G = gate_blocks(kind);
      const T* g = gates + b * G * H + j;
      T* o = dgx + b * G * H + j;
      const T r = g[(G - 1) * H];
      const T ig = kind == Kind::kGatedResidual ? T(1) : g[0];
      const T fg = kind == Kind::kGatedForget ? g[H] : T(1);
      o[(G - 1) * H] = d * ig * (T(1) - r * r);
      if (kind != Kind::kGatedResidual) o[0] = d * r * ig * (T(1) - ig);
      if (kind == Kind::kGatedForget) o[H] = d * hprev[i] * fg * (T(1) - fg);
      dh_carry[i] = kept + d * fg;
    } else if (kind == Kind::kGruV1) {
      const Index row = b * 3 * H;
      const T* g = gates + row + j;
      const T z = g[H], n = g[2 * H];
      dgx[row + H + j] = d * (hprev[i] - n) * z * (T(1) - z);
      dgx[row + 2 * H + j] = d * (T(1) - z) * (T(1) - n * n);
      dh_carry[i] = kept + d * z;
    } else {
      const Index row = b * 3 * H;
      const T* g = gates + row + j;
      const T r = g[0], z = g[H], n = g[2 * H];
      const T dn = d * (T(1) - z) * (T(1) - n * n);
      const T dz = d * (hprev[i] - n) * z * (T(1) - z);
      const T dr = dn * hn_keep[i] * r * (T(1) - r);
      dgx[row + j] = dr;
      dgx[row + H + j] = dz;
      dgx[row + 2 * H + j] = dn;
      dgh[row + j] = dr;
      dgh[row + H + j] = dz;
      dgh[row + 2 * H + j] = dn * r;
      dh_carry[i] = kept + d * z;
    }
  }
};

// ---- layer norm (cells/layer_norm.h's equations) ---------------------------------------------
// A row's statistics are sums over its elements: each is one reduction (the device's row_sums,
// one GPU block per row), and everything else is one GPU thread per element, so a row of
// thousands of units no longer runs serially in one thread. sum = Σ v, m2 = Σ (v - mean)²;
// 1/sqrt(m2/n + ε) is what the norm divides by.
template <typename T>
RNNCORE_HD inline T inv_std(T m2, Index n) {
  return T(1) / sqrt_(m2 / T(n) + T(kLayerNormEps));
}

// Σ_j v[r, j], and Σ_j (v[r, j] - mean_r)² given the first (row_sums' functors).
template <typename T>
struct RowValues {
  const T* v;
  Index n;
  RNNCORE_HD T operator()(Index r, Index j) const { return v[r * n + j]; }
};
template <typename T>
struct RowDeviations {
  const T *v, *sum;
  Index n;
  RNNCORE_HD T operator()(Index r, Index j) const {
    const T d = v[r * n + j] - sum[r] / T(n);
    return d * d;
  }
};

// Element i of v [rows, n]: xhat = (v - mean) / sqrt(var + ε), kept in xhat and the row's
// 1/sqrt(var + ε) in rstd (either may be null); with a gain v becomes gain ⊙ xhat + bias (bias
// may be null).
template <typename T>
struct NormApply {
  T* v;
  const T *gain, *bias;
  T *xhat, *rstd;
  const T *sum, *m2;
  Index n;
  RNNCORE_HD void operator()(Index i) const {
    const Index r = i / n, j = i % n;
    const T inv = inv_std(m2[r], n);
    if (rstd && j == 0) rstd[r] = inv;
    const T xh = (v[i] - sum[r] / T(n)) * inv;
    if (xhat) xhat[i] = xh;
    if (gain) v[i] = gain[j] * xh + (bias ? bias[j] : T(0));
  }
};

// Σ_j dv[r, j] gain[j] (w null), or Σ_j dv[r, j] gain[j] w[r, j]: the norm backward's two sums.
template <typename T>
struct GainDots {
  const T *dv, *gain, *w;
  Index n;
  RNNCORE_HD T operator()(Index r, Index j) const {
    const T g = dv[r * n + j] * gain[j];
    return w ? g * w[r * n + j] : g;
  }
};

// Backward of NormApply with a gain, element i: dv [rows, n] is dL/d(gain ⊙ xhat + bias); xhat
// becomes dL/dv_in = rstd (dv ⊙ gain - a - xhat b), a = mean(dv ⊙ gain), b = mean(dv ⊙ gain ⊙
// xhat) of the row (sums in a_sum, b_sum).
template <typename T>
struct NormBackwardApply {
  const T *dv, *gain;
  T* xhat;
  const T *rstd, *a_sum, *b_sum;
  Index n;
  RNNCORE_HD void operator()(Index i) const {
    const Index r = i / n, j = i % n;
    xhat[i] = rstd[r] * (dv[i] * gain[j] - a_sum[r] / T(n) - xhat[i] * b_sum[r] / T(n));
  }
};

// out[j] += sum over rows of a[r, j] * b[r, j]: a gain's gradient.
template <typename T>
struct ColumnDotSums {
  const T *a, *b;
  T* out;
  Index rows, cols;
  RNNCORE_HD void operator()(Index j) const {
    T s = T(0);
    for (Index r = 0; r < rows; ++r) s += a[r * cols + j] * b[r * cols + j];
    out[j] += s;
  }
};

// The layer-normalised LSTM's step, in two element passes around the statistics of c' over each
// row: the pre-activations as CellForward's (the recurrent side already γ_h ⊙ LN), then
// h = o ⊙ tanh(γ_c ⊙ LN(c') + β_c). In training LN(c') and its rstd are kept in chat / rstd_c;
// the saved c is c' itself. Zoneout, ragged rows and the projected form as CellForward.
// Pass 1, element (b, j): the gates and c' (kept in c_next until pass 2); a finished row carries
// its state and outputs zero.
template <typename T>
struct LnLstmGates {
  CellForward<T> f;  // the step's pointers (f.kind is kLstm)
  T *chat, *rstd_c;  // training: [B, H], [B]; else null
  RNNCORE_HD void operator()(Index i) const {
    const Index H = f.H, G4 = 4 * H, b = i / H, j = i % H;
    if (f.hprev) f.hprev[i] = f.h_prev[i];
    if (!(f.t < f.len[b])) {
      f.h_next[i] = f.h_prev[i];
      f.c_next[i] = f.c_prev[i];
      f.y[b * f.ld_y + j] = T(0);
      if (chat) chat[i] = T(0);  // dγ_c sums chat over every row after the loop
      if (rstd_c && j == 0) rstd_c[b] = T(0);
      return;
    }
    const Index at = b * G4 + j;
    auto pre = [&](int g) {
      return f.xp[at + g * H] + f.hp[at + g * H] + (f.bh ? f.bh[g * H + j] : T(0));
    };
    const T ig = sigmoid_(pre(0)), fg = sigmoid_(pre(1)), gg = tanh_(pre(2)), og = sigmoid_(pre(3));
    const T c = fg * f.c_prev[i] + ig * gg;
    f.c_next[i] = c;
    if (f.gates) {
      T* g = f.gates + at;
      g[0] = ig;
      g[H] = fg;
      g[2 * H] = gg;
      g[3 * H] = og;
      f.c_keep[i] = c;
      f.cprev[i] = f.c_prev[i];
    } else {
      f.y[b * f.ld_y + j] = og;  // parked until h is known
    }
  }
};
// c' of the rows still running (0 for finished rows: their statistics are never read).
template <typename T>
struct LnLstmCellValues {
  const T* c;
  const std::int64_t* len;
  Index H, t;
  RNNCORE_HD T operator()(Index b, Index j) const { return t < len[b] ? c[b * H + j] : T(0); }
};
template <typename T>
struct LnLstmCellDeviations {
  const T *c, *sum;
  const std::int64_t* len;
  Index H, t;
  RNNCORE_HD T operator()(Index b, Index j) const {
    if (!(t < len[b])) return T(0);
    const T d = c[b * H + j] - sum[b] / T(H);
    return d * d;
  }
};
// Pass 2, element (b, j) of a running row: h from LN(c').
template <typename T>
struct LnLstmOutput {
  CellForward<T> f;
  const T *gain_c, *bias_c;
  T *chat, *rstd_c;
  const T *sum, *m2;  // [B]: Σ c' and Σ (c' - mean)² of each row
  RNNCORE_HD void operator()(Index i) const {
    const Index H = f.H, b = i / H, j = i % H;
    if (!(f.t < f.len[b])) return;
    const T inv = inv_std(m2[b], H);
    if (rstd_c && j == 0) rstd_c[b] = inv;
    const T ch = (f.c_next[i] - sum[b] / T(H)) * inv;
    if (chat) chat[i] = ch;
    const T og = f.gates ? f.gates[b * 4 * H + 3 * H + j] : f.y[b * f.ld_y + j];
    const T h = og * tanh_(gain_c[j] * ch + bias_c[j]);
    f.c_next[i] = f.zone(f.c_next[i], f.c_prev[i], 1, b, j, f.zc ? f.zc + i : nullptr);
    const T hz = f.zone(h, f.h_prev[i], 0, b, j, f.zh ? f.zh + i : nullptr);
    f.h_next[i] = hz;
    f.y[b * f.ld_y + j] = hz;
  }
};

// Backward of the layer-normalised LSTM's step, in two element passes around two row sums.
// Pass 1, element (b, j): dyc = dL/d(γ_c ⊙ LN(c') + β_c) [B, H] (kept for γ_c's and β_c's
// gradients after the loop), the o block of dG, and dh_carry (the part of dL/dh_prev outside
// W_hh: zoneout's kept units; a finished row's whole dh).
template <typename T>
struct LnLstmBackwardOut {
  Index H, t;
  const std::int64_t* len;
  const T *dh, *dy;
  Index ld_y;
  const T *gates, *chat, *gain_c, *bias_c;
  T *dgx, *dh_carry, *dyc;
  const T* zh;
  RNNCORE_HD void operator()(Index i) const {
    const Index b = i / H, j = i % H;
    if (!(t < len[b])) {
      dh_carry[i] = dh[i];
      dyc[i] = T(0);
      return;
    }
    const T total = dh[i] + (dy ? dy[b * ld_y + j] : T(0));
    const T kept = zh && zh[i] != T(0) ? total : T(0);
    const T d = total - kept;
    const T og = gates[b * 4 * H + 3 * H + j];
    const T th = tanh_(gain_c[j] * chat[i] + bias_c[j]);
    dyc[i] = d * og * (T(1) - th * th);
    dgx[b * 4 * H + 3 * H + j] = d * th * og * (T(1) - og);
    dh_carry[i] = kept;
  }
};
// Pass 2, element (b, j) of a running row: through the norm of c' into dc and the i, f, g blocks
// of dG; a = Σ_j dyc γ_c and c2 = Σ_j dyc γ_c chat of the row (GainDots over dyc).
template <typename T>
struct LnLstmBackwardCell {
  Index H, t;
  const std::int64_t* len;
  const T *gates, *cprev, *chat, *rstd_c, *gain_c, *dyc, *a_sum, *c2_sum;
  T *dc, *dgx;
  const T* zc;
  RNNCORE_HD void operator()(Index i) const {
    const Index b = i / H, j = i % H;
    if (!(t < len[b])) return;
    const T* g = gates + b * 4 * H + j;
    const T ig = g[0], fg = g[H], gg = g[2 * H];
    const bool keep_c = zc && zc[i] != T(0);
    const T carried = keep_c ? T(0) : dc[i];
    const T dct =
        carried + rstd_c[b] * (dyc[i] * gain_c[j] - a_sum[b] / T(H) - chat[i] * c2_sum[b] / T(H));
    T* o = dgx + b * 4 * H + j;
    o[0] = dct * gg * ig * (T(1) - ig);
    o[H] = dct * cprev[i] * fg * (T(1) - fg);
    o[2 * H] = dct * ig * (T(1) - gg * gg);
    dc[i] = dct * fg + (keep_c ? dc[i] : T(0));
  }
};

// ||dL/dh_t||² of row b (0 past the end): the step-gradient diagnostic (row_sums' functor).
template <typename T>
struct StepGradSquares {
  const T *dh, *dy;
  Index H, ld_y, t;
  const std::int64_t* len;
  RNNCORE_HD double operator()(Index b, Index j) const {
    if (!(t < len[b])) return 0.0;
    const double v = double(dh[b * H + j] + (dy ? dy[b * ld_y + j] : T(0)));
    return v * v;
  }
};

// ---- memory of arrays crossing the API (sequence.h's DeviceMemory) --------------------------
// dst[j, i, :] = src[i, j, :] of a [n0, n1, n2] array, elements moved as their bits (E: a 4- or
// 8-byte integer), so one kernel serves every dtype of that size.
template <typename E>
struct Swap01 {
  E* dst;
  const E* src;
  Index n0, n1, n2;
  RNNCORE_HD void operator()(Index i) const {
    const Index k = i % n2, j = (i / n2) % n1, r = i / (n2 * n1);
    dst[(j * n0 + r) * n2 + k] = src[i];
  }
};

// DeviceMemory over a device policy's memory calls (alloc, release, upload, download, copy,
// for_each, synchronize).
template <typename Mem>
class MemoryOf final : public DeviceMemory {
 public:
  void* alloc(std::size_t bytes) override { return mem_.template alloc<unsigned char>(bytes); }
  void release(void* p) override { Mem::release(p); }
  void copy(void* dst, const void* src, std::size_t bytes, CopyKind kind) override {
    switch (kind) {
      case CopyKind::kHostToDevice:
        mem_.upload(dst, src, bytes);
        break;
      case CopyKind::kDeviceToHost:
        mem_.download(dst, src, bytes);
        break;
      default:
        mem_.copy(dst, src, bytes);
    }
  }
  void zero(void* p, std::size_t bytes) override { mem_.zero(p, bytes); }
  void swap01(void* dst, const void* src, std::int64_t n0, std::int64_t n1, std::int64_t n2,
              int elem_bytes) override {
    if (elem_bytes == 4)
      swap_as<std::uint32_t>(dst, src, n0, n1, n2);
    else if (elem_bytes == 8)
      swap_as<std::uint64_t>(dst, src, n0, n1, n2);
    else
      throw std::invalid_argument("device_swap01: elem_bytes must be 4 or 8, got " +
                                  std::to_string(elem_bytes));
  }
  void synchronize(std::uintptr_t stream) override { mem_.synchronize(stream); }

 private:
  template <typename E>
  void swap_as(void* dst, const void* src, Index n0, Index n1, Index n2) {
    mem_.for_each(n0 * n1 * n2,
                  Swap01<E>{static_cast<E*>(dst), static_cast<const E*>(src), n0, n1, n2});
  }
  Mem mem_;
};

// ---- buffers ---------------------------------------------------------------------------------
template <typename T, typename Dev>
class Buffer {
 public:
  Buffer() = default;
  Buffer(Dev* dev, std::size_t n) : dev_(dev), n_(n), p_(n ? dev->template alloc<T>(n) : nullptr) {}
  ~Buffer() { reset(); }
  Buffer(Buffer&& o) noexcept : dev_(o.dev_), n_(o.n_), p_(o.p_) {
    o.p_ = nullptr;
    o.n_ = 0;
  }
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      reset();
      dev_ = o.dev_;
      n_ = o.n_;
      p_ = o.p_;
      o.p_ = nullptr;
      o.n_ = 0;
    }
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  T* data() const { return p_; }
  std::size_t size() const { return n_; }
  void zero() {
    if (p_) dev_->zero(p_, n_ * sizeof(T));
  }

 private:
  void reset() {
    if (p_) Dev::release(p_);  // static: a saved forward may outlive its layer
    p_ = nullptr;
    n_ = 0;
  }
  Dev* dev_ = nullptr;
  std::size_t n_ = 0;
  T* p_ = nullptr;
};

// Row-major C[M, N] = alpha op(A) op(B) + beta C through a column-major (cuBLAS) GEMM, which
// computes C^T = op(B)^T op(A)^T: the operands swap places, the transposes stay.
template <typename T, typename Dev>
void gemm(Dev& dev, bool ta, bool tb, Index M, Index N, Index K, T alpha, const T* A, Index lda,
          const T* B, Index ldb, T beta, T* C, Index ldc) {
  if (M == 0 || N == 0) return;
  dev.gemm_colmajor(tb, ta, N, M, K, alpha, B, ldb, A, lda, beta, C, ldc);
}

// ---- the backend -----------------------------------------------------------------------------
template <typename T, typename Dev>
class GpuSequence final : public SequenceBackend<T> {
  // What one training forward keeps for its backward (device memory).
  struct Lane {
    Buffer<T, Dev> gates, hn_keep, c_keep, cprev, hprev, zh, zc;
    Buffer<T, Dev> rmask, hin;  // recurrent dropout: the mask [B, H], h_prev * mask [T, B, H]
    Buffer<T, Dev> rh;          // gru_v1: r ⊙ h_in of every step [T, B, H]
    Buffer<T, Dev> m;           // proj_size: the cell's output before W_hr [T, B, H]
    // layer_norm: LN of the input side [T, B, GH] and of the recurrent side [T, B, GH] with their
    // rstd [T, B]; the LSTM's LN(c') [T, B, H] and its rstd [T, B]
    Buffer<T, Dev> xhat, rstd_x, rhat, rstd_h, chat, rstd_c;
  };
  struct Saved final : SavedContext {
    const void* owner = nullptr;
    Index T_ = 0, B = 0;
    Buffer<std::int64_t, Dev> len;
    std::vector<Buffer<T, Dev>> inputs;  // [L]: each layer's input [T, B, I_l] (dropped if so)
    std::vector<Buffer<T, Dev>> masks;   // [L]: dropout's scales (layers above the first)
    std::vector<Lane> lanes;             // [L*D]
    bool dropout = false;
    const T* device_params = nullptr;  // the caller's parameters it read, or null: the layer's
  };

 public:
  GpuSequence(const RecurrentConfig& cfg, std::vector<LaneLayout> lanes, std::size_t num_params)
      : cfg_(cfg),
        lanes_(std::move(lanes)),
        host_params_(num_params, T(0)),
        host_grads_(num_params, T(0)),
        params_(&dev_, num_params),
        grads_(&dev_, num_params),
        R_(cfg.proj_size > 0 ? cfg.proj_size : cfg.hidden_size) {
    check_gpu_config(cfg, Dev::kName);  // every cell it accepts is a Kind
    kind_ = static_cast<Kind>(cfg.cell);
  }

  T* params() override { return host_params_.data(); }
  T* grads() override { return host_grads_.data(); }
  void zero_grad() override { std::fill(host_grads_.begin(), host_grads_.end(), T(0)); }

  void forward(const ForwardCall<T>& call) override {
    const Index Tn = call.steps, B = call.batch, L = cfg_.num_layers, D = cfg_.directions();
    const Index H = cfg_.hidden_size, R = R_, DR = D * R, G = cfg_.gates(), GH = G * H;
    const Index I = cfg_.input_size;
    const bool lstm = kind_ == Kind::kLstm, gru = kind_ == Kind::kGru;
    const bool v1 = kind_ == Kind::kGruV1, proj = R != H, ln = cfg_.layer_norm;
    const bool zoned = cfg_.zoneout > 0.0;
    const bool rdrop = call.training && cfg_.recurrent_dropout > 0.0;
    const T* P = params_for(call.device_params);
    auto s = std::make_unique<Saved>();
    s->owner = this;
    s->device_params = call.device_params;
    s->T_ = Tn;
    s->B = B;
    s->len = lengths(call.lengths, Tn, B);
    s->dropout = call.training && call.stochastic && cfg_.dropout > 0.0 && L > 1;
    const std::int64_t* len = s->len.data();

    Buffer<T, Dev> x(&dev_, std::size_t(Tn * B * I));
    put(x.data(), call.x, x.size(), call.on_device);
    auto [h0, c0] = load_states(call.h0, call.c0, L * D * B, call.on_device);
    Buffer<T, Dev> hn(&dev_, h0.size()), cn(&dev_, c0.size());
    Buffer<T, Dev> xp(&dev_, std::size_t(Tn * B * GH)), hp(&dev_, std::size_t(B * GH));
    Buffer<T, Dev> ha(&dev_, std::size_t(B * R)), hb(&dev_, std::size_t(B * R));
    Buffer<T, Dev> ca(&dev_, lstm ? std::size_t(B * H) : 0),
        cb(&dev_, lstm ? std::size_t(B * H) : 0);
    // gru_v1 in inference: r ⊙ h_in of the step. A projected LSTM: the cell's output m of the
    // step (inference), m W_hr^T, and [B, H] stand-ins for the cell's h_prev / h_next.
    Buffer<T, Dev> rh(&dev_, v1 && !call.training ? std::size_t(B * H) : 0);
    Buffer<T, Dev> m_step(&dev_, proj && !call.training ? std::size_t(B * H) : 0);
    Buffer<T, Dev> hq(&dev_, proj ? std::size_t(B * R) : 0);
    Buffer<T, Dev> cell_h0(&dev_, proj ? std::size_t(B * H) : 0),
        cell_h1(&dev_, proj ? std::size_t(B * H) : 0);
    if (proj) cell_h0.zero();

    Buffer<T, Dev> input = std::move(x);  // layer l's input [T, B, I_l]
    Buffer<T, Dev> output;
    s->inputs.resize(std::size_t(L));
    s->masks.resize(std::size_t(L));
    if (call.training) s->lanes.resize(std::size_t(L * D));
    for (Index l = 0; l < L; ++l) {
      const Index Il = l == 0 ? I : DR;
      if (l > 0 && s->dropout) {
        Buffer<T, Dev> xd(&dev_, input.size()), mask(&dev_, input.size());
        const std::uint64_t key = mix64(call.dropout_seed ^ mix64(std::uint64_t(l)));
        dev_.for_each(Index(input.size()),
                      DropInputs<T>{input.data(), xd.data(), mask.data(), len, B, DR, key,
                                    call.batch_offset, cfg_.dropout});
        input = std::move(xd);
        s->masks[std::size_t(l)] = std::move(mask);
      }
      output = Buffer<T, Dev>(&dev_, std::size_t(Tn * B * DR));
      for (Index d = 0; d < D; ++d) {
        const Index k = l * D + d;
        const LaneLayout& lo = lanes_[std::size_t(k)];
        const T* bh = cfg_.bias ? P + lo.bh : nullptr;
        Lane lane;
        if (call.training && ln) {
          lane.xhat = Buffer<T, Dev>(&dev_, xp.size());
          lane.rstd_x = Buffer<T, Dev>(&dev_, std::size_t(Tn * B));
          lane.rhat = Buffer<T, Dev>(&dev_, xp.size());
          lane.rstd_h = Buffer<T, Dev>(&dev_, std::size_t(Tn * B));
          if (lstm) {
            lane.chat = Buffer<T, Dev>(&dev_, std::size_t(Tn * B * H));
            lane.rstd_c = Buffer<T, Dev>(&dev_, std::size_t(Tn * B));
          }
        }
        // the input side of every step: x W_ih^T + b_ih, or γ_x ⊙ LN(x W_ih^T) + b_ih
        const T* bx = cfg_.bias ? P + lo.bx : nullptr;
        dev_.for_each(Index(xp.size()), FillRows<T>{xp.data(), ln ? nullptr : bx, GH});
        gemm<T>(dev_, false, true, Tn * B, GH, Il, T(1), input.data(), Il, P + lo.Wx, Il, T(1),
                xp.data(), GH);
        if (ln)
          norm_rows(xp.data(), P + lo.ln_x, bx, lane.xhat.data(), lane.rstd_x.data(), Tn * B, GH);
        if (call.training) {
          lane.gates = Buffer<T, Dev>(&dev_, std::size_t(Tn * B * GH));
          lane.hprev = Buffer<T, Dev>(&dev_, std::size_t(Tn * B * R));
          if (gru) lane.hn_keep = Buffer<T, Dev>(&dev_, std::size_t(Tn * B * H));
          if (v1) lane.rh = Buffer<T, Dev>(&dev_, std::size_t(Tn * B * H));
          if (proj) lane.m = Buffer<T, Dev>(&dev_, std::size_t(Tn * B * H));
          if (lstm) {
            lane.c_keep = Buffer<T, Dev>(&dev_, std::size_t(Tn * B * H));
            lane.cprev = Buffer<T, Dev>(&dev_, std::size_t(Tn * B * H));
          }
          if (zoned) {
            lane.zh = Buffer<T, Dev>(&dev_, std::size_t(Tn * B * H));
            lane.zh.zero();
            if (lstm) {
              lane.zc = Buffer<T, Dev>(&dev_, std::size_t(Tn * B * H));
              lane.zc.zero();
            }
          }
        }
        const std::uint64_t lane_key =
            mix64(call.dropout_seed ^ mix64(0x6c616e6500000000ULL + std::uint64_t(k)));
        if (rdrop) {
          lane.rmask = Buffer<T, Dev>(&dev_, std::size_t(B * H));
          lane.hin = Buffer<T, Dev>(&dev_, std::size_t(Tn * B * H));
          dev_.for_each(B * H, RecurrentMask<T>{lane.rmask.data(), H, lane_key, call.batch_offset,
                                                cfg_.recurrent_dropout});
        }
        T *h_cur = ha.data(), *h_nxt = hb.data(), *c_cur = ca.data(), *c_nxt = cb.data();
        dev_.copy(h_cur, h0.data() + k * B * R, sizeof(T) * std::size_t(B * R));
        if (lstm) dev_.copy(c_cur, c0.data() + k * B * H, sizeof(T) * std::size_t(B * H));
        for (Index step = 0; step < Tn; ++step) {
          const Index t = d == 1 ? Tn - 1 - step : step;
          const std::size_t at = std::size_t(t * B);
          const T* h_in = h_cur;  // what W_hh sees
          if (rdrop) {
            T* hin = lane.hin.data() + at * H;
            dev_.for_each(B * H, MultiplyInto<T>{hin, h_cur, lane.rmask.data(), false});
            h_in = hin;
          }
          if (proj && call.training)
            dev_.copy(lane.hprev.data() + at * R, h_cur, sizeof(T) * std::size_t(B * R));
          if (v1) {  // r and z, then W_hn (r ⊙ h_in) into the n block
            T* rh_t = call.training ? lane.rh.data() + at * H : rh.data();
            gemm<T>(dev_, false, true, B, 2 * H, H, T(1), h_in, H, P + lo.Wh, H, T(0), hp.data(),
                    GH);
            dev_.for_each(B * H, GruV1Gates<T>{H, xp.data() + at * GH, bh, h_in, hp.data(), rh_t});
            gemm<T>(dev_, false, true, B, H, H, T(1), rh_t, H, P + lo.Wh + 2 * H * H, H, T(0),
                    hp.data() + 2 * H, GH);
          } else {
            gemm<T>(dev_, false, true, B, GH, R, T(1), h_in, R, P + lo.Wh, R, T(0), hp.data(), GH);
          }
          if (ln)  // the recurrent side becomes γ_h ⊙ LN(h W_hh^T)
            norm_rows(hp.data(), P + lo.ln_h, nullptr,
                      call.training ? lane.rhat.data() + at * GH : nullptr,
                      call.training ? lane.rstd_h.data() + at : nullptr, B, GH);
          T* m_t = proj ? (call.training ? lane.m.data() + at * H : m_step.data()) : nullptr;
          CellForward<T> f{kind_,
                           H,
                           t,
                           len,
                           xp.data() + at * GH,
                           hp.data(),
                           bh,
                           proj ? cell_h0.data() : h_cur,
                           lstm ? c_cur : nullptr,
                           proj ? cell_h1.data() : h_nxt,
                           lstm ? c_nxt : nullptr,
                           proj ? m_t : output.data() + at * DR + d * R,
                           proj ? H : DR,
                           call.training ? lane.gates.data() + at * GH : nullptr,
                           gru && call.training ? lane.hn_keep.data() + at * H : nullptr,
                           lstm && call.training ? lane.c_keep.data() + at * H : nullptr,
                           call.training && !proj ? lane.hprev.data() + at * H : nullptr,
                           lstm && call.training ? lane.cprev.data() + at * H : nullptr,
                           cfg_.zoneout,
                           lane_key,
                           call.batch_offset,
                           zoned && call.training ? lane.zh.data() + at * H : nullptr,
                           zoned && call.training && lstm ? lane.zc.data() + at * H : nullptr};
          if (ln && lstm)
            ln_lstm_step(f, P + lo.ln_c, P + lo.ln_cb,
                         call.training ? lane.chat.data() + at * H : nullptr,
                         call.training ? lane.rstd_c.data() + at : nullptr, B);
          else
            dev_.for_each(B * H, f);
          if (proj) {  // h = m W_hr^T for the rows still running
            gemm<T>(dev_, false, true, B, R, H, T(1), m_t, H, P + lo.Wr, H, T(0), hq.data(), R);
            dev_.for_each(B * R, ProjSelect<T>{R, t, len, hq.data(), h_cur, h_nxt,
                                               output.data() + at * DR + d * R, DR});
          }
          std::swap(h_cur, h_nxt);
          std::swap(c_cur, c_nxt);
        }
        dev_.copy(hn.data() + k * B * R, h_cur, sizeof(T) * std::size_t(B * R));
        if (lstm) dev_.copy(cn.data() + k * B * H, c_cur, sizeof(T) * std::size_t(B * H));
        if (call.training) s->lanes[std::size_t(k)] = std::move(lane);
      }
      if (call.training) s->inputs[std::size_t(l)] = std::move(input);
      input = std::move(output);
    }
    get(call.y, input.data(), input.size(), call.on_device);
    if (call.hn) get(call.hn, hn.data(), hn.size(), call.on_device);
    if (call.cn && lstm) get(call.cn, cn.data(), cn.size(), call.on_device);
    if (call.training) saved_.push_back(std::move(s));
  }

  void backward(const BackwardCall<T>& call) override {
    if (saved_.empty()) throw std::runtime_error("backward without a saved training forward");
    std::unique_ptr<Saved> s = std::move(saved_.back());
    saved_.pop_back();
    const Index Tn = s->T_, B = s->B, L = cfg_.num_layers, D = cfg_.directions();
    const Index H = cfg_.hidden_size, R = R_, DR = D * R, G = cfg_.gates(), GH = G * H;
    const Index I = cfg_.input_size;
    const bool lstm = kind_ == Kind::kLstm, gru = kind_ == Kind::kGru;
    const bool v1 = kind_ == Kind::kGruV1, proj = R != H, ln = cfg_.layer_norm;
    const std::int64_t* len = s->len.data();
    const T* P = params_for(call.device_params);
    grads_.zero();
    T* dP = grads_.data();

    Buffer<T, Dev> dY(&dev_, std::size_t(Tn * B * DR));
    load_or_zero(dY, call.dy, call.on_device);
    auto [dhn, dcn] = load_states(call.dhn, call.dcn, L * D * B, call.on_device);
    Buffer<T, Dev> dh0(&dev_, dhn.size()), dc0(&dev_, dcn.size());
    Buffer<T, Dev> dh(&dev_, std::size_t(B * R)), dh_next(&dev_, std::size_t(B * R));
    // dL/dh_in before recurrent dropout's mask; gru_v1 sums its two products' parts there.
    const bool split_in = cfg_.recurrent_dropout > 0.0 || v1;
    Buffer<T, Dev> dh_in(&dev_, split_in ? std::size_t(B * H) : 0);
    Buffer<T, Dev> drh(&dev_, v1 ? std::size_t(B * H) : 0);
    // A projected LSTM: dL/dh of every step (for dW_hr), dL/dm of the step, and a stand-in for
    // the cell's dh_carry (all of it goes through W_hh).
    Buffer<T, Dev> dq(&dev_, proj ? std::size_t(Tn * B * R) : 0);
    Buffer<T, Dev> dm(&dev_, proj ? std::size_t(B * H) : 0), cell_carry(&dev_, dm.size());
    Buffer<T, Dev> dc(&dev_, lstm ? std::size_t(B * H) : 0);
    // the layer-normalised LSTM: dL/d(γ_c ⊙ LN(c') + β_c) of every step, for dγ_c and dβ_c
    Buffer<T, Dev> dyc(&dev_, ln && lstm ? std::size_t(Tn * B * H) : 0);
    Buffer<T, Dev> dgx(&dev_, std::size_t(Tn * B * GH)), dgh(&dev_, gru ? dgx.size() : 0);
    Buffer<double, Dev> sq(&dev_, call.step_grad_norms ? std::size_t(Tn * B) : 0);
    std::vector<double> norms(call.step_grad_norms ? std::size_t(L * D * Tn) : 0, 0.0);
    std::vector<double> sq_host(sq.size());

    for (Index l = L - 1; l >= 0; --l) {
      const Index Il = l == 0 ? I : DR;
      const Buffer<T, Dev>& X = s->inputs[std::size_t(l)];
      Buffer<T, Dev> dX(&dev_, std::size_t(Tn * B * Il));
      dX.zero();
      for (Index d = 0; d < D; ++d) {
        const Index k = l * D + d;
        const LaneLayout& lo = lanes_[std::size_t(k)];
        Lane& lane = s->lanes[std::size_t(k)];
        dev_.copy(dh.data(), dhn.data() + k * B * R, sizeof(T) * std::size_t(B * R));
        if (lstm) dev_.copy(dc.data(), dcn.data() + k * B * H, sizeof(T) * std::size_t(B * H));
        dgx.zero();
        if (gru) dgh.zero();
        T* dgh_all = gru ? dgh.data() : dgx.data();
        // h_prev as W_hh saw it, [T, B, R]: masked by recurrent dropout, or as it was
        const T* h_in_all = lane.rmask.size() ? lane.hin.data() : lane.hprev.data();
        for (Index step = 0; step < Tn; ++step) {  // the forward's steps, last first
          const Index t = d == 1 ? step : Tn - 1 - step;
          const std::size_t at = std::size_t(t * B);
          const T* dy_t = dY.data() + at * DR + d * R;
          if (call.step_grad_norms) {
            dev_.row_sums(B, R, sq.data() + at, StepGradSquares<T>{dh.data(), dy_t, R, DR, t, len});
          }
          if (proj) {  // dL/dm = dL/dh W_hr for the rows still running; the rest carry dh
            T* dq_t = dq.data() + at * R;
            dev_.for_each(B * R,
                          ProjGradIn<T>{R, t, len, dh.data(), dy_t, DR, dq_t, dh_next.data()});
            gemm<T>(dev_, false, false, B, H, R, T(1), dq_t, R, P + lo.Wr, H, T(0), dm.data(), H);
          }
          CellBackward<T> f{kind_,
                            H,
                            t,
                            len,
                            proj ? dm.data() : dh.data(),
                            proj ? nullptr : dy_t,
                            DR,
                            lane.gates.data() + at * GH,
                            gru ? lane.hn_keep.data() + at * H : nullptr,
                            lstm ? lane.c_keep.data() + at * H : nullptr,
                            lstm ? lane.cprev.data() + at * H : nullptr,
                            proj ? nullptr : lane.hprev.data() + at * H,
                            lstm ? dc.data() : nullptr,
                            dgx.data() + at * GH,
                            gru ? dgh.data() + at * GH : nullptr,
                            proj ? cell_carry.data() : dh_next.data(),
                            lane.zh.size() ? lane.zh.data() + at * H : nullptr,
                            lane.zc.size() ? lane.zc.data() + at * H : nullptr};
          if (ln && lstm)
            ln_lstm_step_backward(
                LnLstmBackwardOut<T>{H, t, len, proj ? dm.data() : dh.data(), proj ? nullptr : dy_t,
                                     DR, lane.gates.data() + at * GH, lane.chat.data() + at * H,
                                     P + lo.ln_c, P + lo.ln_cb, dgx.data() + at * GH,
                                     proj ? cell_carry.data() : dh_next.data(), dyc.data() + at * H,
                                     lane.zh.size() ? lane.zh.data() + at * H : nullptr},
                lane.cprev.data() + at * H, lane.rstd_c.data() + at, dc.data(),
                lane.zc.size() ? lane.zc.data() + at * H : nullptr, B);
          else
            dev_.for_each(B * H, f);
          const T* dg_t = dgh_all + at * GH;
          if (ln) {  // through the recurrent side's norm: rhat becomes dL/d(h W_hh^T)
            T* rhat_t = lane.rhat.data() + at * GH;
            dev_.for_each(GH, ColumnDotSums<T>{dg_t, rhat_t, dP + lo.ln_h, B, GH});
            norm_rows_backward(dg_t, P + lo.ln_h, rhat_t, lane.rstd_h.data() + at, B, GH);
            dg_t = rhat_t;
          }
          if (v1) {  // through W_hn (r ⊙ h_in): dr, and r ⊙ drh into dL/dh_in
            gemm<T>(dev_, false, false, B, H, H, T(1), dgx.data() + at * GH + 2 * H, GH,
                    P + lo.Wh + 2 * H * H, H, T(0), drh.data(), H);
            dev_.for_each(B * H,
                          GruV1ResetGrad<T>{H, t, len, drh.data(), lane.gates.data() + at * GH,
                                            h_in_all + at * H, dgx.data() + at * GH, dh_in.data()});
            gemm<T>(dev_, false, false, B, H, 2 * H, T(1), dg_t, GH, P + lo.Wh, H, T(1),
                    dh_in.data(), H);
          } else if (split_in) {
            gemm<T>(dev_, false, false, B, H, GH, T(1), dg_t, GH, P + lo.Wh, H, T(0), dh_in.data(),
                    H);
          } else {  // dL/dh_prev += dG W_hh
            gemm<T>(dev_, false, false, B, R, GH, T(1), dg_t, GH, P + lo.Wh, R, T(1),
                    dh_next.data(), R);
          }
          if (split_in) {  // dL/dh_prev += dL/dh_in (* recurrent dropout's mask)
            if (lane.rmask.size())
              dev_.for_each(B * H,
                            MultiplyInto<T>{dh_next.data(), dh_in.data(), lane.rmask.data(), true});
            else
              dev_.for_each(B * H, AddInto<T>{dh_next.data(), dh_in.data()});
          }
          std::swap(dh, dh_next);
        }
        dev_.copy(dh0.data() + k * B * R, dh.data(), sizeof(T) * std::size_t(B * R));
        if (lstm) dev_.copy(dc0.data() + k * B * H, dc.data(), sizeof(T) * std::size_t(B * H));
        if (call.step_grad_norms) {
          dev_.download(sq_host.data(), sq.data(), sizeof(double) * sq.size());
          for (Index t = 0; t < Tn; ++t) {
            double total = 0.0;
            for (Index b = 0; b < B; ++b) total += sq_host[std::size_t(t * B + b)];
            norms[std::size_t(k * Tn + t)] = std::sqrt(total);
          }
        }
        // the weight gradients over all steps at once; with layer norm through the input side's
        // norm first (xhat becomes dL/d(x W_ih^T))
        const T* dpx = dgx.data();
        if (ln) {
          dev_.for_each(GH,
                        ColumnDotSums<T>{dgx.data(), lane.xhat.data(), dP + lo.ln_x, Tn * B, GH});
          norm_rows_backward(dgx.data(), P + lo.ln_x, lane.xhat.data(), lane.rstd_x.data(), Tn * B,
                             GH);
          dpx = lane.xhat.data();
        }
        gemm<T>(dev_, true, false, GH, Il, Tn * B, T(1), dpx, GH, X.data(), Il, T(1), dP + lo.Wx,
                Il);
        if (v1) {  // the r and z blocks pair with h_in, the n block with r ⊙ h_in
          gemm<T>(dev_, true, false, 2 * H, H, Tn * B, T(1), dgx.data(), GH, h_in_all, H, T(1),
                  dP + lo.Wh, H);
          gemm<T>(dev_, true, false, H, H, Tn * B, T(1), dgx.data() + 2 * H, GH, lane.rh.data(), H,
                  T(1), dP + lo.Wh + 2 * H * H, H);
        } else {  // with layer norm, rhat holds dL/d(h W_hh^T) now
          gemm<T>(dev_, true, false, GH, R, Tn * B, T(1), ln ? lane.rhat.data() : dgh_all, GH,
                  h_in_all, R, T(1), dP + lo.Wh, R);
        }
        if (ln && lstm) {
          dev_.for_each(H, ColumnDotSums<T>{dyc.data(), lane.chat.data(), dP + lo.ln_c, Tn * B, H});
          dev_.for_each(H, ColumnSums<T>{dyc.data(), dP + lo.ln_cb, Tn * B, H});
        }
        if (proj)  // dW_hr = Σ_t (dL/dh_t)^T m_t
          gemm<T>(dev_, true, false, R, H, Tn * B, T(1), dq.data(), R, lane.m.data(), H, T(1),
                  dP + lo.Wr, H);
        if (cfg_.bias) {
          dev_.for_each(GH, ColumnSums<T>{dgx.data(), dP + lo.bx, Tn * B, GH});
          dev_.for_each(GH, ColumnSums<T>{dgh_all, dP + lo.bh, Tn * B, GH});
        }
        gemm<T>(dev_, false, false, Tn * B, Il, GH, T(1), dpx, GH, P + lo.Wx, Il, T(1), dX.data(),
                Il);
      }
      if (l > 0 && s->dropout)
        dev_.for_each(Index(dX.size()), Multiply<T>{dX.data(), s->masks[std::size_t(l)].data()});
      dY = std::move(dX);
    }
    get(call.dx, dY.data(), dY.size(), call.on_device);
    if (call.dh0) get(call.dh0, dh0.data(), dh0.size(), call.on_device);
    if (call.dc0 && lstm) get(call.dc0, dc0.data(), dc0.size(), call.on_device);
    if (call.step_grad_norms) std::copy(norms.begin(), norms.end(), call.step_grad_norms);
    if (call.device_grads) {
      dev_.for_each(Index(grads_.size()), AddInto<T>{call.device_grads, grads_.data()});
      return;
    }
    std::vector<T> g(host_grads_.size());
    dev_.download(g.data(), grads_.data(), sizeof(T) * g.size());
    for (std::size_t i = 0; i < g.size(); ++i) host_grads_[i] += g[i];
  }

  const void* saved_device_params() const override {
    return saved_.empty() ? nullptr : saved_.back()->device_params;
  }

  void discard_saved() override { saved_.clear(); }
  std::size_t saved_bytes() const override {
    std::size_t n = 0;
    auto add = [&n](const auto& b) { n += b.size() * sizeof(*b.data()); };
    for (const auto& s : saved_) {
      add(s->len);
      for (const auto& b : s->inputs) add(b);
      for (const auto& b : s->masks) add(b);
      for (const Lane& l : s->lanes)
        for (const Buffer<T, Dev>* b :
             {&l.gates, &l.hn_keep, &l.c_keep, &l.cprev, &l.hprev, &l.zh, &l.zc, &l.rmask, &l.hin,
              &l.rh, &l.m, &l.xhat, &l.rstd_x, &l.rhat, &l.rstd_h, &l.chat, &l.rstd_c})
          add(*b);
    }
    return n;
  }

  std::unique_ptr<SavedContext> take_saved() override {
    std::unique_ptr<SavedContext> out = std::move(saved_.back());
    saved_.pop_back();
    return out;
  }

  void restore_saved(std::unique_ptr<SavedContext> saved) override {
    auto* s = dynamic_cast<Saved*>(saved.get());
    if (!s || s->owner != this)
      throw std::invalid_argument("restore_saved: the saved forward belongs to another layer");
    saved.release();
    saved_.push_back(std::unique_ptr<Saved>(s));
  }

 private:
  // Layer norm over rows [rows, n] of v (NormApply), the statistics by row reductions.
  void norm_rows(T* v, const T* gain, const T* bias, T* xhat, T* rstd, Index rows, Index n) {
    Buffer<T, Dev> sum(&dev_, std::size_t(rows)), m2(&dev_, std::size_t(rows));
    dev_.row_sums(rows, n, sum.data(), RowValues<T>{v, n});
    dev_.row_sums(rows, n, m2.data(), RowDeviations<T>{v, sum.data(), n});
    dev_.for_each(rows * n, NormApply<T>{v, gain, bias, xhat, rstd, sum.data(), m2.data(), n});
  }
  // Its backward with a gain: xhat [rows, n] becomes dL/dv_in (NormBackwardApply).
  void norm_rows_backward(const T* dv, const T* gain, T* xhat, const T* rstd, Index rows, Index n) {
    Buffer<T, Dev> a(&dev_, std::size_t(rows)), b(&dev_, std::size_t(rows));
    dev_.row_sums(rows, n, a.data(), GainDots<T>{dv, gain, nullptr, n});
    dev_.row_sums(rows, n, b.data(), GainDots<T>{dv, gain, xhat, n});
    dev_.for_each(rows * n, NormBackwardApply<T>{dv, gain, xhat, rstd, a.data(), b.data(), n});
  }
  // One step of the layer-normalised LSTM over B rows (LnLstmGates, the statistics of c',
  // LnLstmOutput).
  void ln_lstm_step(const CellForward<T>& f, const T* gain_c, const T* bias_c, T* chat, T* rstd_c,
                    Index B) {
    const Index H = f.H;
    dev_.for_each(B * H, LnLstmGates<T>{f, chat, rstd_c});
    Buffer<T, Dev> sum(&dev_, std::size_t(B)), m2(&dev_, std::size_t(B));
    dev_.row_sums(B, H, sum.data(), LnLstmCellValues<T>{f.c_next, f.len, H, f.t});
    dev_.row_sums(B, H, m2.data(), LnLstmCellDeviations<T>{f.c_next, sum.data(), f.len, H, f.t});
    dev_.for_each(B * H, LnLstmOutput<T>{f, gain_c, bias_c, chat, rstd_c, sum.data(), m2.data()});
  }
  // Its backward (LnLstmBackwardOut, the row sums of dyc, LnLstmBackwardCell).
  void ln_lstm_step_backward(const LnLstmBackwardOut<T>& out, const T* cprev, const T* rstd_c,
                             T* dc, const T* zc, Index B) {
    const Index H = out.H;
    dev_.for_each(B * H, out);
    Buffer<T, Dev> a(&dev_, std::size_t(B)), c2(&dev_, std::size_t(B));
    dev_.row_sums(B, H, a.data(), GainDots<T>{out.dyc, out.gain_c, nullptr, H});
    dev_.row_sums(B, H, c2.data(), GainDots<T>{out.dyc, out.gain_c, out.chat, H});
    dev_.for_each(B * H,
                  LnLstmBackwardCell<T>{H, out.t, out.len, out.gates, cprev, out.chat, rstd_c,
                                        out.gain_c, out.dyc, a.data(), c2.data(), dc, out.dgx, zc});
  }

  // The parameters a call reads on the device: the caller's buffer, or the layer's own uploaded.
  const T* params_for(const T* device_params) {
    if (device_params) return device_params;
    dev_.upload(params_.data(), host_params_.data(), sizeof(T) * host_params_.size());
    return params_.data();
  }
  // n values into device memory from the host, or from the device (on_device).
  void put(T* dst, const T* src, std::size_t n, bool on_device) {
    if (on_device)
      dev_.copy(dst, src, sizeof(T) * n);
    else
      dev_.upload(dst, src, sizeof(T) * n);
  }
  // n values out of device memory to the host, or to the device (on_device).
  void get(T* dst, const T* src, std::size_t n, bool on_device) {
    if (on_device)
      dev_.copy(dst, src, sizeof(T) * n);
    else
      dev_.download(dst, src, sizeof(T) * n);
  }
  void load_or_zero(Buffer<T, Dev>& buf, const T* src, bool on_device) {
    if (src)
      put(buf.data(), src, buf.size(), on_device);
    else
      buf.zero();
  }
  // A state on the device for rows lane-by-sequence: h [rows, R] (and the LSTM's c [rows, H])
  // from the host (or the device: on_device), or zeros where null.
  std::pair<Buffer<T, Dev>, Buffer<T, Dev>> load_states(const T* h, const T* c, Index rows,
                                                        bool on_device) {
    Buffer<T, Dev> hd(&dev_, std::size_t(rows * R_)), cd;
    load_or_zero(hd, h, on_device);
    if (kind_ == Kind::kLstm) {
      cd = Buffer<T, Dev>(&dev_, std::size_t(rows * cfg_.hidden_size));
      load_or_zero(cd, c, on_device);
    }
    return {std::move(hd), std::move(cd)};
  }
  Buffer<std::int64_t, Dev> lengths(const std::int64_t* host, Index Tn, Index B) {
    Buffer<std::int64_t, Dev> len(&dev_, std::size_t(B));
    std::vector<std::int64_t> full(std::size_t(B), Tn);
    dev_.upload(len.data(), host ? host : full.data(), sizeof(std::int64_t) * std::size_t(B));
    return len;
  }

  RecurrentConfig cfg_;
  std::vector<LaneLayout> lanes_;
  Kind kind_ = Kind::kLstm;
  Dev dev_;  // before the buffers: they free through it
  std::vector<T> host_params_, host_grads_;
  Buffer<T, Dev> params_, grads_;
  Index R_;  // the size of h: proj_size, or hidden_size
  std::vector<std::unique_ptr<Saved>> saved_;
};

}  // namespace rnncore::detail::gpu
