// One lane (layer × direction) of the CPU sequence driver, forward and BPTT, written once as
// templates on the cell: batch packing, the per-step loop split by hidden units over the threads,
// the small-batch matrix-vector and packed-GEMM paths, and the all-steps weight-gradient GEMMs.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <type_traits>
#include <utility>
#include <vector>

#include "cells/layer_norm.h"
#include "cells/step.h"
#include "keyed.h"

namespace rnncore::detail {

// A variable-length batch laid out as PyTorch's PackedSequence: sequences sorted by length
// (descending, stable), steps stored back to back, step t holding its bs[t] active rows. Without
// lengths this is the plain [T*B] layout and perm is the identity. Lengths were checked to lie in
// [1, T] at the API boundary.
struct Packing {
  Index T = 0, B = 0, N = 0;
  bool ragged = false;      // some sequence is shorter than T
  std::vector<Index> bs;    // [T+1] active rows per step; bs[T] = 0
  std::vector<Index> off;   // [T+1] first packed row of each step; off[T] = N
  std::vector<Index> perm;  // [B] sorted position -> batch index

  void build(Index steps, Index batch, const std::int64_t* lengths) {
    T = steps;
    B = batch;
    perm.resize(B);
    std::iota(perm.begin(), perm.end(), Index(0));
    bs.assign(T + 1, 0);
    off.assign(T + 1, 0);
    ragged = lengths && std::any_of(lengths, lengths + B, [&](std::int64_t n) { return n != T; });
    if (!ragged) {
      for (Index t = 0; t < T; ++t) bs[t] = B;
    } else {
      std::stable_sort(perm.begin(), perm.end(),
                       [&](Index a, Index b) { return lengths[a] > lengths[b]; });
      for (Index b = 0; b < B; ++b)
        for (Index t = 0; t < lengths[b]; ++t) ++bs[t];
    }
    for (Index t = 0; t < T; ++t) off[t + 1] = off[t] + bs[t];
    N = off[T];
  }
};

// The random parts of a lane's recurrence (zoneout, recurrent dropout) for one call.
struct LaneRandom {
  double zoneout = 0.0;            // p: a unit keeps its previous value with probability p
  double recurrent_dropout = 0.0;  // p of the per-sequence mask on h_{t-1} into W_hh
  bool training = false;
  std::uint64_t key = 0;          // this lane's stream (seed, layer, direction)
  std::int64_t batch_offset = 0;  // the call's ForwardCall::batch_offset
  bool zoned() const { return zoneout > 0.0; }
  bool rdrop() const { return training && recurrent_dropout > 0.0; }
  // The stream of the call's sequence b.
  std::uint64_t sequence(Index b) const { return sequence_key(key, batch_offset + b); }
  // Zoneout's draws for units [4*(j/4), 4*(j/4) + 4) at step t of the sequence whose stream is
  // seq (stream 0: h, 1: c): one hash, four uniform 16-bit fields (p resolved to 1/65536).
  std::uint64_t draws(std::uint64_t seq, int stream, Index t, Index j, Index H) const {
    const Index slot = (t * 2 + stream) * ((H + 3) / 4) + j / 4;
    return mix64(seq + std::uint64_t(slot));
  }
  // Whether unit j keeps its previous value, from the draws of its group of four.
  bool keeps(std::uint64_t draws, Index j) const {
    return double((draws >> (16 * (j % 4))) & 0xffff) * (1.0 / 65536.0) < zoneout;
  }
};

template <typename V>
void grow(V& v, std::size_t n) {
  if (v.size() < n) v.resize(n);
}

// Rows [0, bs[t]) of the state entering step t: the state after the previous step in processing
// order, or the initial state for sequences that start here (the reverse direction starts each
// sequence at its own last step). states is packed [N, ld]; init is [B, H].
template <typename T>
RowSrc<T> prev_state(const Packing& pk, Index t, bool reverse, const T* states, Index ld,
                     const T* init, Index H) {
  if (!reverse) {
    if (t == 0) return {init, H, pk.B, nullptr, 0};
    return {states + pk.off[t - 1] * ld, ld, pk.B, nullptr, 0};
  }
  if (t == pk.T - 1) return {init, H, pk.B, nullptr, 0};
  const Index m = pk.bs[t + 1];
  return {states + pk.off[t + 1] * ld, ld, m, init + m * H, H};
}

// Pointers of one lane into the flat parameter and gradient buffers.
template <typename T>
struct LaneParams {
  Index I = 0;            // this layer's input size
  const T* Wx = nullptr;  // [G*H, I]
  const T* Wh = nullptr;  // [G*H, H]
  const T* bx = nullptr;  // [G*H] or null
  const T* bh = nullptr;  // [G*H] or null
  const T* Wr = nullptr;  // [R, H] the LSTM's projection (proj_size), or null
  T* dWx = nullptr;
  T* dWh = nullptr;
  T* dbx = nullptr;
  T* dbh = nullptr;
  T* dWr = nullptr;
  // layer_norm (cells/layer_norm.h), or null: γ_x, γ_h [G*H]; the LSTM's γ_c, β_c [H].
  const T* ln_x = nullptr;
  const T* ln_h = nullptr;
  const T* ln_c = nullptr;
  const T* ln_cb = nullptr;
  T* dln_x = nullptr;
  T* dln_h = nullptr;
  T* dln_c = nullptr;
  T* dln_cb = nullptr;
};

// The sizes of one lane: H cell units, R = the width of its state h (H, or proj_size).
struct LaneShape {
  bool reverse = false;
  Index H = 0, R = 0;
  bool int8 = false;  // an int8 inference call: W_ih and W_hh products in int8 (qgemv.h)
  bool projected() const { return R != H; }
};

// What one lane keeps from forward to backward (views into the workspace), packed by step.
template <typename T>
struct LaneWork {
  T* gates = nullptr;  // [N, G*H] activated gates, then dG in backward
  T* cs = nullptr;     // [N, H] cell states (cells with kStates == 2)
  T* aux = nullptr;    // [N, H] the cell's aux buffer (Cell::kAux)
  T* m = nullptr;      // [N, H] the cell's output before the projection (proj_size), or null
  T* zh = nullptr;     // [N, H] zoneout: 1 where h kept its previous value (training), or null
  T* zc = nullptr;     // [N, H] the same for an LSTM's c, or null
  T* rmask = nullptr;  // [B, R] recurrent dropout's scales, sorted rows (training), or null
  // layer_norm: LN(W_ih x), LN(W_hh h) [N, G*H] (backward overwrites both with the gradients
  // w.r.t. the raw products), LN(c) [N, H] (LSTM), and each row's 1/σ [N] of the three.
  T* xn = nullptr;
  T* rn = nullptr;
  T* chat = nullptr;
  T* rstd_x = nullptr;
  T* rstd_h = nullptr;
  T* rstd_c = nullptr;
  T* coef = nullptr;  // [N, 2] backward: LN(W_hh h)'s gradient constants per row
};

// Scratch of one direction, reused by every lane and call (never kept for backward).
template <typename T>
struct Scratch {
  AlignedVec<T> rec;               // [B, G*H]
  AlignedVec<T> dh, dh2, dc, dc2;  // [B, H] each (dh, dh2 as [B, R])
  AlignedVec<T> dm;                // [B, H] dL/d(cell output) of a projected lane
  AlignedVec<T> dhs;               // [N, R] dL/dh of every step of a projected lane (for dW_hr)
  AlignedVec<T> hp_all;            // [N, R] gathered previous states for dW_hh of a ragged batch
  AlignedVec<T> bias;              // [G*H] folded input-side bias
  AlignedVec<T> wh_blocked;        // W_hh regrouped (or packed) by thread, see lane_forward
  AlignedVec<T> hin, hin_grad;     // [B, R] recurrent dropout: h_prev ⊙ mask; dG·W_hh unmasked
  AlignedVec<T> zdh, zdc;          // [B, H] zoneout: the gradient a kept unit passes straight back
  // [2, threads, B, 3] layer norm's per-thread partials, alternating by step: a thread may write
  // the next step's while another still reads this step's (the GRU's backward has no barrier in
  // between).
  AlignedVec<T> ln_part_h, ln_part_c;
  AlignedVec<T> ln_dchat;  // [B, H] layer norm: dL/d LN(c) of a step
  AlignedVec<T> ln_drec;   // [threads, B, G*H] layer norm: each thread's dL/d(rec)
  // Int8 inference (qgemv.h): W_ih quantized [G*H outputs] with its scales and row sums; each
  // thread's gate blocks of W_hh likewise (see lane_forward); per thread, the quantized rows of
  // the product's input and their scales.
  std::vector<std::int8_t> qx_w, qh_w;
  std::vector<float> qx_scale, qh_scale;
  std::vector<std::int32_t> qx_sum, qh_sum;
  std::vector<std::uint8_t> q_rows;
  std::vector<float> q_row_scale;
  void reserve(Index B, Index H, Index GH, bool layer_norm) {
    grow(rec, std::size_t(B * GH));
    for (auto* v : {&dh, &dh2, &dc, &dc2, &dm, &hin, &hin_grad, &zdh, &zdc, &ln_dchat})
      grow(*v, std::size_t(B * H));
    for (auto* v : {&ln_part_h, &ln_part_c}) grow(*v, std::size_t(6 * B * get_num_threads()));
    if (layer_norm) grow(ln_drec, std::size_t(B * GH * get_num_threads()));
    grow(bias, std::size_t(GH));
    // Packed panels pad each thread's columns up to a multiple of kPanel.
    grow(wh_blocked, std::size_t(GH * (H + kPanel * get_num_threads())));
  }
};

// Whether one step's recurrent work is worth a team of threads (else a fork/join per lane and a
// barrier per step would cost more than they save).
inline bool parallel_steps(Index B, Index G, Index H) {
  return 2.0 * double(B) * double(G * H) * double(H) >= double(1 << 17) && H >= 32;
}

// The step a lane's forward visits k-th (backward visits them in the opposite order).
inline Index visit_step(const LaneShape& ls, const Packing& pk, Index k) {
  return ls.reverse ? pk.T - 1 - k : k;
}

// The parts of a step every step of one thread shares: the sizes, this thread's hidden units
// and columns of h, and W_hh.
template <typename T>
Step<T> thread_step(const LaneShape& ls, const Range& units, const Range& outs, const T* Wh) {
  Step<T> s;
  s.H = ls.H;
  s.R = ls.R;
  s.j0 = units.begin;
  s.j1 = units.end;
  s.q0 = outs.begin;
  s.q1 = outs.end;
  s.Wh = Wh;
  return s;
}

// The layer-norm parts of a thread's Step (cells/layer_norm.h) that every step shares, and
// (ln_rows) the rows of step t in the lane's buffers.
template <typename T>
void ln_setup(Step<T>& s, const LaneParams<T>& p, const Packing& pk, Scratch<T>& sc, Index GH) {
  if (!p.ln_h) return;
  s.ln.on = true;
  s.ln.gain_h = p.ln_h;
  s.ln.gain_c = p.ln_c;
  s.ln.bias_c = p.ln_cb;
  s.ln.dgain_h = p.dln_h;
  s.ln.dgain_c = p.dln_c;
  s.ln.dbias_c = p.dln_cb;
  s.ln.stride = pk.B;
  s.ln.dchat = sc.ln_dchat.data();
  s.ln.drec = sc.ln_drec.data() + Index(thread_id()) * pk.B * GH;
}
template <typename T>
void ln_rows(Step<T>& s, const LaneWork<T>& w, Index row0, Index GH, Index k, Scratch<T>& sc) {
  if (!s.ln.on) return;
  const Index half = 3 * s.ln.stride * thread_count();
  s.ln.part_h = sc.ln_part_h.data() + (k % 2) * half;
  s.ln.part_c = sc.ln_part_c.data() + (k % 2) * half;
  s.ln.rhat = w.rn + row0 * GH;
  s.ln.rstd_h = w.rstd_h + row0;
  s.ln.coef = w.coef + 2 * row0;
  if (w.chat) {
    s.ln.chat = w.chat + row0 * s.H;
    s.ln.rstd_c = w.rstd_c + row0;
  }
}

// Phases of a lane, so that the driver can run the parallel-friendly GEMMs over the whole team
// and the serial step loops of two directions side by side.
enum Phase : int { kProject = 1, kSteps = 2, kGrads = 4, kAll = 7 };

// Zoneout after a step's cell: this thread's units of h (and c) keep their previous value where
// the step's draw says so (training, recording the draw for backward), or take the expectation
// p * previous + (1 - p) * new (inference).
template <bool kHasC, typename T>
void zone_forward(const Step<T>& s, const LaneRandom& rnd, const Packing& pk, Index t,
                  const LaneWork<T>& w) {
  const Index H = s.H, u = s.units();
  const T p = T(rnd.zoneout);
  for (Index r = 0; r < s.n; ++r) {
    T* h = s.h + r * s.ld_h + s.j0;
    const T* hp = s.h_prev.row(r) + s.j0;
    T* c = kHasC ? s.c + r * H + s.j0 : nullptr;
    const T* cp = kHasC ? s.c_prev.row(r) + s.j0 : nullptr;
    if (!rnd.training) {
      RowArr<T>(h, u) = p * ConstRowArr<T>(hp, u) + (T(1) - p) * RowArr<T>(h, u);
      if constexpr (kHasC)
        RowArr<T>(c, u) = p * ConstRowArr<T>(cp, u) + (T(1) - p) * RowArr<T>(c, u);
      continue;
    }
    const Index row = pk.off[t] + r;
    const std::uint64_t seq = rnd.sequence(pk.perm[r]);
    T* zh = w.zh + row * H + s.j0;
    T* zc = kHasC ? w.zc + row * H + s.j0 : nullptr;
    std::uint64_t dh = 0, dc = 0;  // the draws of the current group of four units
    for (Index k = 0; k < u; ++k) {
      const Index j = s.j0 + k;
      if (k == 0 || j % 4 == 0) {
        dh = rnd.draws(seq, 0, t, j, H);
        if constexpr (kHasC) dc = rnd.draws(seq, 1, t, j, H);
      }
      const bool keep_h = rnd.keeps(dh, j);
      zh[k] = keep_h ? T(1) : T(0);
      if (keep_h) h[k] = hp[k];
      if constexpr (kHasC) {
        const bool keep_c = rnd.keeps(dc, j);
        zc[k] = keep_c ? T(1) : T(0);
        if (keep_c) c[k] = cp[k];
      }
    }
  }
}

// Zoneout in backward, before the cell: a kept unit's gradient goes straight to the previous
// step (parked in sc.zdh / sc.zdc), a fresh one's to the cell. zone_join adds the parked part to
// the cell's dh_prev (dc_prev). This thread's units only.
template <bool kHasC, typename T>
void zone_split(const Step<T>& s, Index row0, const LaneWork<T>& w, Scratch<T>& sc) {
  const Index H = s.H, u = s.units();
  for (Index r = 0; r < s.n; ++r) {
    ConstRowArr<T> m(w.zh + (row0 + r) * H + s.j0, u);
    RowArr<T> dh(s.dh + r * H + s.j0, u);
    RowArr<T>(sc.zdh.data() + r * H + s.j0, u) = dh * m;
    dh *= T(1) - m;
    if constexpr (kHasC) {
      ConstRowArr<T> mc(w.zc + (row0 + r) * H + s.j0, u);
      RowArr<T> dc(s.dc + r * H + s.j0, u);
      RowArr<T>(sc.zdc.data() + r * H + s.j0, u) = dc * mc;
      dc *= T(1) - mc;
    }
  }
}
template <bool kHasC, typename T>
void zone_join(const Step<T>& s, Scratch<T>& sc) {
  const Index H = s.H, u = s.units();
  for (Index r = 0; r < s.n; ++r) {
    RowArr<T>(s.dh_prev + r * H + s.j0, u) += ConstRowArr<T>(sc.zdh.data() + r * H + s.j0, u);
    if constexpr (kHasC)
      RowArr<T>(s.dc_prev + r * H + s.j0, u) += ConstRowArr<T>(sc.zdc.data() + r * H + s.j0, u);
  }
}

// Recurrent dropout's mask of one lane: [B, R] inverted-dropout scales in sorted row order, one
// draw per (sequence, unit) for the whole call.
template <typename T>
void draw_recurrent_mask(const LaneRandom& rnd, const Packing& pk, Index R, T* mask) {
  const double p = rnd.recurrent_dropout;
  const T scale = T(1.0 / (1.0 - p));
  const std::uint64_t key = mix64(rnd.key ^ 0x7265632d64726f70ULL);  // its own stream
  for (Index r = 0; r < pk.B; ++r) {
    const std::uint64_t seq = sequence_key(key, rnd.batch_offset + pk.perm[r]);
    for (Index q = 0; q < R; ++q) {
      const double u = double(mix64(seq + std::uint64_t(q)) >> 11) * 0x1.0p-53;
      mask[r * R + q] = u >= p ? scale : T(0);
    }
  }
}

// h_in = h_prev ⊙ mask for rows [0, n) and this thread's columns [q0, q1) (recurrent dropout).
template <typename T>
void mask_rows(const RowSrc<T>& h_prev, const T* mask, Index n, Index R, Index q0, Index q1,
               T* out) {
  for (Index r = 0; r < n; ++r)
    RowArr<T>(out + r * R + q0, q1 - q0) =
        ConstRowArr<T>(h_prev.row(r) + q0, q1 - q0) * ConstRowArr<T>(mask + r * R + q0, q1 - q0);
}

// gates[0:N, 0:GH] = X · W_ihᵀ (+ bias [GH], optional) in int8 (qgemv.h): W_ih quantized per
// output row, each row of X quantized on the fly; the threads share the packing, then the rows.
inline void project_int8(Index N, Index GH, Index I, const float* X, Index ldx, const float* Wx,
                         const float* bias, float* gates, Scratch<float>& sc) {
  const Index kp = quant_padded(I), panels = (GH + 63) / 64;
  const int threads = get_num_threads();
  grow(sc.qx_w, quant_panel_bytes(GH, I));
  grow(sc.qx_scale, std::size_t(GH));
  grow(sc.qx_sum, std::size_t(GH));
  grow(sc.q_rows, std::size_t(kp * threads));
  team(2.0 * double(N) * double(GH) * double(I) >= kParallelFlops, [&] {
    const Range mine = share(panels, thread_count(), thread_id(), 1);
    for (Index p = mine.begin; p < mine.end; ++p)
      pack_quant_panels(std::min<Index>(64, GH - 64 * p), I, Wx + 64 * p * I, I,
                        sc.qx_w.data() + 64 * p * kp, sc.qx_scale.data() + 64 * p,
                        sc.qx_sum.data() + 64 * p);
    barrier();  // every row reads every panel
    std::uint8_t* xq = sc.q_rows.data() + thread_id() * kp;
    const Range rows = share(N, thread_count(), thread_id(), 1);
    for (Index r = rows.begin; r < rows.end; ++r) {
      const float xs = quantize_vector(I, X + r * ldx, xq);
      float* out = gates + r * GH;
      quant_gemv(GH, I, sc.qx_w.data(), sc.qx_scale.data(), sc.qx_sum.data(), xq, xs, out, false);
      if (bias) RowArr<float>(out, GH) += ConstRowArr<float>(bias, GH);
    }
  });
}

// Forward of one lane over the packed batch.
//   X [N, I] (row stride ldx); Y [N, ldy] written in this lane's R columns; h0 [B, R], c0 [B, H];
//   hn [B, R], cn [B, H] out (sorted order); rnd: zoneout and recurrent dropout of this lane.
template <typename Cell, typename T>
void lane_forward(const LaneShape& ls, const Packing& pk, const LaneParams<T>& p, const T* X,
                  Index ldx, T* Y, Index ldy, const T* h0, const T* c0, T* hn, T* cn,
                  const LaneWork<T>& w, Scratch<T>& sc, const LaneRandom& rnd, int phases = kAll) {
  constexpr Index G = Cell::kGates;
  constexpr bool has_c = Cell::kStates == 2;
  const Index H = ls.H, R = ls.R, GH = G * H, N = pk.N;
  const bool proj = ls.projected();
  T* gates = w.gates;

  // 1. All steps' input projections in one GEMM, with every bias that adds to them folded in.
  if (phases & kProject) {
    const T* bias = nullptr;
    if (p.bx) {
      auto b = Eigen::Map<Eigen::Array<T, 1, Eigen::Dynamic>>(sc.bias.data(), GH);
      b = Eigen::Map<const Eigen::Array<T, 1, Eigen::Dynamic>>(p.bx, GH);
      const Index folded = Cell::kFoldedHiddenBias * H;
      b.head(folded) += Eigen::Map<const Eigen::Array<T, 1, Eigen::Dynamic>>(p.bh, folded);
      bias = sc.bias.data();
    }
    // The biases add after the norm.
    const T* gemm_bias = p.ln_x ? nullptr : bias;
    if constexpr (std::is_same_v<T, float>) {
      if (ls.int8)
        project_int8(N, GH, p.I, X, ldx, p.Wx, gemm_bias, gates, sc);
      else
        par_gemm(false, true, N, GH, p.I, X, ldx, p.Wx, p.I, T(0), gates, GH, gemm_bias);
    } else {
      par_gemm(false, true, N, GH, p.I, X, ldx, p.Wx, p.I, T(0), gates, GH, gemm_bias);
    }
    if (p.ln_x) ln_input_forward(N, GH, gates, p.ln_x, bias, w.xn, w.rstd_x);
  }
  if (!(phases & kSteps)) return;
  const bool rdrop = rnd.rdrop(), zoned = rnd.zoned();
  if (rdrop) draw_recurrent_mask(rnd, pk, R, w.rmask);
  const bool int8 = std::is_same_v<T, float> && ls.int8;
  const Index kp = quant_padded(R);
  if (int8) {  // each thread's region: see the packing below
    const int threads = get_num_threads();
    grow(sc.qh_w, std::size_t(G * kp * (H + 8 * threads)));
    grow(sc.qh_scale, std::size_t(GH));
    grow(sc.qh_sum, std::size_t(GH));
    grow(sc.q_rows, std::size_t(kp * pk.B * threads));
    grow(sc.q_row_scale, std::size_t(pk.B * threads));
  }

  // 2. The serial part: per step, the recurrent GEMM and the gate math, split by hidden units.
  team(parallel_steps(pk.B, G, H), [&] {
    const Range units = share(H, thread_count(), thread_id());
    const Range outs = proj ? share(R, thread_count(), thread_id()) : units;  // columns of h
    // Each thread copies its rows of W_hh (its units, gate after gate) into one contiguous block
    // starting at row G*j0, so its recurrent product is a single GEMM on cache-resident weights.
    // Small batches get each gate's block packed for the matrix-vector kernel (gemv.h), or for
    // calls of a few steps use W_hh in place (step.h, gemv_pack_min_steps_for); on AVX-512 and AVX2
    // CPUs a larger batch's float block is packed into panels for packed_gemm instead.
    T* wh_own = sc.wh_blocked.data() + G * units.begin * R;
    T* wh_region = sc.wh_blocked.data() + G * R * (units.begin + kPanel * thread_id());
    const Index u = units.size(), uq = outs.size();
    const bool small_batch = pk.B <= kGemvRows;
    const bool gemv_in_place = small_batch && pk.T < gemv_pack_min_steps_for<T>() && !int8;
    const T* wh_packed = nullptr;
    // Int8: this thread's gate blocks of W_hh quantized, gate after gate, from byte
    // G*kp*(j0 + 8*thread) (a block pads its units up to a multiple of 8), scales and row sums
    // from G*j0.
    std::int8_t* wq = int8 ? sc.qh_w.data() + G * kp * (units.begin + 8 * thread_id()) : nullptr;
    float* wq_scale = int8 ? sc.qh_scale.data() + G * units.begin : nullptr;
    std::int32_t* wq_sum = int8 ? sc.qh_sum.data() + G * units.begin : nullptr;
    const std::size_t wq_block = quant_panel_bytes(u, R);
    for (Index g = 0; g < G && int8; ++g) {
      if constexpr (std::is_same_v<T, float>)
        pack_quant_panels(u, R, p.Wh + (g * H + units.begin) * R, R, wq + g * wq_block,
                          wq_scale + g * u, wq_sum + g * u);
    }
    if constexpr (std::is_same_v<T, float>) {
      if (!small_batch && packed_gemm_available() && !int8) {
        for (Index g = 0; g < G; ++g)
          pack_transposed(u, R, p.Wh + (g * H + units.begin) * R, R,
                          wh_region + g * packed_size(R, u));
        wh_packed = wh_region;
      }
    }
    for (Index g = 0; g < G && !wh_packed && !gemv_in_place && !int8; ++g) {
      const T* src = p.Wh + (g * H + units.begin) * R;
      if (small_batch)
        pack_gemv_panels(u, R, src, R, wh_own + g * u * R);
      else
        copy_rows(u, R, src, R, wh_own + g * u * R, R);
    }
    Step<T> s = thread_step<T>(ls, units, outs, p.Wh);
    s.Wh_own = wh_own;
    s.small_batch = small_batch;
    s.gemv_in_place = gemv_in_place;
    s.Wh_packed = wh_packed;
    if (int8) {
      s.Wq = wq;
      s.wq_scale = wq_scale;
      s.wq_sum = wq_sum;
      s.hq = sc.q_rows.data() + thread_id() * pk.B * kp;
      s.hq_scale = sc.q_row_scale.data() + thread_id() * pk.B;
    }
    s.ld_h = proj ? H : ldy;  // a projected lane's cell writes m, the input of W_hr
    s.rec = sc.rec.data() + pk.B * G * units.begin;  // [B, G*u]
    // The hidden biases the input projection did not take (the GRU's b_hn) enter in the step.
    s.bh_n = (Cell::kFoldedHiddenBias < G && p.bh) ? p.bh + Cell::kFoldedHiddenBias * H : nullptr;
    ln_setup(s, p, pk, sc, GH);
    for (Index k = 0; k < pk.T; ++k) {
      const Index t = visit_step(ls, pk, k), n = pk.bs[t];
      T* h = Y + pk.off[t] * ldy;
      s.n = n;
      s.gates = gates + pk.off[t] * GH;
      s.h_prev = prev_state(pk, t, ls.reverse, static_cast<const T*>(Y), ldy, h0, R);
      s.h_in = s.h_prev;
      if (rdrop) {
        mask_rows(s.h_prev, static_cast<const T*>(w.rmask), n, R, outs.begin, outs.end,
                  sc.hin.data());
        barrier();  // the recurrent product reads every column of h_in
        s.h_in = {sc.hin.data(), R, pk.B, nullptr, 0};
      }
      s.h = proj ? w.m + pk.off[t] * H : h;
      if constexpr (has_c) {
        s.c_prev = prev_state(pk, t, ls.reverse, static_cast<const T*>(w.cs), H, c0, H);
        s.c = w.cs + pk.off[t] * H;
      }
      if constexpr (Cell::kAux) s.aux = w.aux + pk.off[t] * H;
      ln_rows(s, w, pk.off[t], GH, k, sc);
      Cell::forward(s);
      if (zoned) zone_forward<has_c>(s, rnd, pk, t, w);
      if (proj) {   // h[:, q0:q1] = m · W_hr[q0:q1, :]ᵀ
        barrier();  // the projection reads every unit of m
        if (uq > 0)
          gemm_nt(n, uq, H, static_cast<const T*>(s.h), H, p.Wr + outs.begin * H, H, h + outs.begin,
                  ldy, /*accumulate=*/false);
      }
      if (!ls.reverse) {  // sequences whose last step this was hand over their final state
        const Index m = pk.bs[t + 1];
        copy_rows(n - m, uq, h + m * ldy + outs.begin, ldy, hn + m * R + outs.begin, R);
        if (has_c && cn)
          copy_rows(n - m, u, s.c + m * H + units.begin, H, cn + m * H + units.begin, H);
      }
      barrier();  // the next step's GEMM reads every unit of h
    }
  });
  if (ls.reverse) {
    copy_rows(pk.B, R, Y, ldy, hn, R);
    if (has_c && cn) copy_rows(pk.B, H, static_cast<const T*>(w.cs), H, cn, H);
  }
}

// BPTT of one lane over its saved forward.
//   dY [N, ldy] this lane's columns of the output gradient, or null; Y, X, h0, c0 as in forward;
//   dhn [B, R], dcn [B, H] or null; dh0 [B, R], dc0 [B, H] out (=); dX [N, I] out (= if
//   !accumulate_dx, else +=); step_sq [T] or null: += ||dL/dh_t||² summed over the batch.
template <typename Cell, typename T>
void lane_backward(const LaneShape& ls, const Packing& pk, const LaneParams<T>& p, const T* X,
                   Index ldx, const T* Y, Index ldy, const T* dY, const T* h0, const T* c0,
                   const T* dhn, const T* dcn, T* dh0, T* dc0, T* dX, bool accumulate_dx,
                   double* step_sq, const LaneWork<T>& w, Scratch<T>& sc, const LaneRandom& rnd,
                   int phases = kAll) {
  constexpr Index G = Cell::kGates;
  constexpr bool has_c = Cell::kStates == 2;
  const Index H = ls.H, R = ls.R, GH = G * H, N = pk.N, B = pk.B, Tn = pk.T;
  const bool proj = ls.projected();
  T* gates = w.gates;
  if (proj) grow(sc.dhs, std::size_t(N * R));

  // 1. The serial part, in reverse processing order, split by hidden units (and by columns of h).
  if (phases & kSteps)
    team(parallel_steps(B, G, H), [&] {
      const Range units = share(H, thread_count(), thread_id());
      const Range outs = proj ? share(R, thread_count(), thread_id()) : units;
      const Index j = units.begin, u = units.size(), q = outs.begin, uq = outs.size();
      // On AVX-512 and AVX2 CPUs (float) this thread's columns of W_hh are packed once for all
      // steps.
      const T* wh_packed = nullptr;
      if constexpr (std::is_same_v<T, float>) {
        if (packed_gemm_available() && uq > 0) {
          T* region = sc.wh_blocked.data() + GH * (q + kPanel * thread_id());
          pack_rows(GH, uq, p.Wh + q, R, region);
          wh_packed = region;
        }
      }
      T* dh = sc.dh.data();  // [B, R]
      T* dhp = sc.dh2.data();
      T* dc = sc.dc.data();  // [B, H]
      T* dcp = sc.dc2.data();
      // Rows [from, to) whose final state enters at this step take its gradient (or zero).
      auto load_final = [&](Index from, Index to) {
        for (Index r = from; r < to; ++r) {
          RowArr<T> d(dh + r * R + q, uq);
          if (dhn)
            d = ConstRowArr<T>(dhn + r * R + q, uq);
          else
            d.setZero();
          if constexpr (has_c) {
            RowArr<T> e(dc + r * H + j, u);
            if (dcn)
              e = ConstRowArr<T>(dcn + r * H + j, u);
            else
              e.setZero();
          }
        }
      };
      Step<T> s = thread_step<T>(ls, units, outs, p.Wh);
      s.rec = sc.rec.data();
      s.Wh_packed = wh_packed;
      ln_setup(s, p, pk, sc, GH);
      for (Index k = 0; k < Tn; ++k) {
        const Index t = Tn - 1 - visit_step(ls, pk, k), n = pk.bs[t];
        if (!ls.reverse)
          load_final(pk.bs[t + 1], n);
        else if (k == 0)
          load_final(0, B);
        if (dY) view(dh + q, n, uq, R) += cview(dY + pk.off[t] * ldy + q, n, uq, ldy);
        if (step_sq) {
          const double sq = double(view(dh + q, n, uq, R).squaredNorm());
#ifdef _OPENMP
#pragma omp atomic
#endif
          step_sq[t] += sq;
        }
        s.n = n;
        s.gates = gates + pk.off[t] * GH;
        s.h_prev = prev_state(pk, t, ls.reverse, Y, ldy, h0, R);
        s.h_in = s.h_prev;
        s.in_mask = nullptr;
        if (rnd.rdrop()) {  // this thread's columns only: the cells read h_in for their own units
          mask_rows(s.h_prev, static_cast<const T*>(w.rmask), n, R, q, q + uq, sc.hin.data());
          s.h_in = {sc.hin.data(), R, pk.B, nullptr, 0};
          s.in_mask = w.rmask;
          s.in_scratch = sc.hin_grad.data();
        }
        if constexpr (has_c) {
          s.c_prev = prev_state(pk, t, ls.reverse, static_cast<const T*>(w.cs), H, c0, H);
          s.c = w.cs + pk.off[t] * H;
        }
        if constexpr (Cell::kAux) s.aux = w.aux + pk.off[t] * H;
        ln_rows(s, w, pk.off[t], GH, k, sc);
        s.dh = dh;
        if (proj) {  // dL/dm = dh · W_hr for this thread's units; dh is kept for dW_hr
          copy_rows(n, uq, dh + q, R, sc.dhs.data() + pk.off[t] * R + q, R);
          barrier();  // dm reads every column of dh
          gemm_nn(n, u, R, static_cast<const T*>(dh), R, p.Wr + j, H, sc.dm.data() + j, H,
                  /*accumulate=*/false);
          s.dh = sc.dm.data();
        }
        s.dc = dc;
        s.dh_prev = dhp;
        s.dc_prev = dcp;
        const bool zoned = rnd.zoned();
        s.zoned = zoned;
        if (zoned) zone_split<has_c>(s, pk.off[t], w, sc);
        Cell::backward(s);
        if (zoned) zone_join<has_c>(s, sc);
        // Rows that started at this step pass their gradient to the initial state.
        const Index m = ls.reverse ? pk.bs[t + 1] : (t == 0 ? 0 : n);
        if (dh0) copy_rows(n - m, uq, dhp + m * R + q, R, dh0 + m * R + q, R);
        if (has_c && dc0) copy_rows(n - m, u, dcp + m * H + j, H, dc0 + m * H + j, H);
        std::swap(dh, dhp);
        std::swap(dc, dcp);
        // No barrier here: the next step reads and writes only this thread's columns of dh, dc
        // and its own units' dG until the cell's barrier before the dG·W_hh product (or the
        // projection's barrier), so a thread whose product ended first starts its element-wise
        // work instead of waiting.
      }
    });
  if (!(phases & kGrads)) return;

  // 2. Weight gradients and the input gradient: large GEMMs over all steps at once.
  const T* dG = gates;
  const T* aux = w.aux;
  // A cell may leave its last gate block's input-side dG in aux (the reset-after GRU's dn).
  const Index gx = Cell::kAuxIsInputSideDG ? (G - 1) * H : GH;  // input-side rows in `gates`
  const bool ln = p.ln_x != nullptr;
  if (ln) {  // through the input side's norm: dL/d(x·W_ihᵀ) replaces LN(x·W_ihᵀ) in xn
    ln_input_backward(N, GH, dG, gx, Cell::kAuxIsInputSideDG ? aux : nullptr, p.ln_x, p.dln_x, w.xn,
                      static_cast<const T*>(w.rstd_x));
    par_gemm(true, false, GH, p.I, N, static_cast<const T*>(w.xn), GH, X, ldx, T(1), p.dWx, p.I);
    par_gemm(false, false, N, p.I, GH, static_cast<const T*>(w.xn), GH, p.Wx, p.I,
             accumulate_dx ? T(1) : T(0), dX, p.I);
  } else {
    par_gemm(true, false, gx, p.I, N, dG, GH, X, ldx, T(1), p.dWx, p.I);
    par_gemm(false, false, N, p.I, gx, dG, GH, p.Wx, p.I, accumulate_dx ? T(1) : T(0), dX, p.I);
  }
  if (Cell::kAuxIsInputSideDG && !ln) {
    par_gemm(true, false, H, p.I, N, aux, H, X, ldx, T(1), p.dWx + gx * p.I, p.I);
    par_gemm(false, false, N, p.I, H, aux, H, p.Wx + gx * p.I, p.I, T(1), dX, p.I);
  }
  if (p.dbx) {
    // Both biases' gradients are column sums of the same dG: one pass over it.
    using Vec = Eigen::Map<Eigen::Array<T, 1, Eigen::Dynamic>>;
    T* colsum = sc.bias.data();  // [GH] free in backward (the forward's folded bias)
    Vec(colsum, GH).setZero();
    par_colsum_acc(N, GH, dG, GH, colsum);
    Vec(p.dbh, GH) += Vec(colsum, GH);
    Vec(p.dbx, gx) += Vec(colsum, gx);
    if constexpr (Cell::kAuxIsInputSideDG) par_colsum_acc(N, H, aux, H, p.dbx + gx);
  }
  // dW_hr = Σ_t dh_tᵀ · m_t.
  if (proj)
    par_gemm(true, false, R, H, N, static_cast<const T*>(sc.dhs.data()), R,
             static_cast<const T*>(w.m), H, T(1), p.dWr, H);
  // dW_hh = Σ_t dG_tᵀ · h_prev(t); a cell may pair its last gate block with aux instead. With
  // layer norm the recurrent side's gradient is its own (rn).
  const Index gh = Cell::kAuxIsRecurrentInput ? (G - 1) * H : GH;
  if (ln) ln_recurrent_grad(N, GH, dG, p.ln_h, static_cast<const T*>(w.rstd_h), w.coef, w.rn);
  const T* dGh = ln ? static_cast<const T*>(w.rn) : dG;
  if (!pk.ragged && !rnd.rdrop()) {
    // Every step has all B rows: h_prev is h0 for one step and the previous output for the rest.
    const Index rest = N - B;
    const Index first_init = ls.reverse ? rest : 0;  // rows of dG whose h_prev is h0
    const Index first_y = ls.reverse ? 0 : B;        // rows of dG whose h_prev is in Y
    const Index y_row = ls.reverse ? B : 0;
    par_gemm(true, false, gh, R, B, dGh + first_init * GH, GH, h0, R, T(1), p.dWh, R);
    par_gemm(true, false, gh, R, rest, dGh + first_y * GH, GH, Y + y_row * ldy, ldy, T(1), p.dWh,
             R);
  } else {
    grow(sc.hp_all, std::size_t(N * R));
    for (Index t = 0; t < Tn; ++t) {
      const RowSrc<T> src = prev_state(pk, t, ls.reverse, Y, ldy, h0, R);
      T* dst = sc.hp_all.data() + pk.off[t] * R;
      for (Index r = 0; r < pk.bs[t]; ++r) std::memcpy(dst + r * R, src.row(r), sizeof(T) * R);
      if (rnd.rdrop())  // W_hh saw h_prev ⊙ mask
        mask_rows(RowSrc<T>{dst, R, pk.bs[t], nullptr, 0}, static_cast<const T*>(w.rmask), pk.bs[t],
                  R, 0, R, dst);
    }
    par_gemm(true, false, gh, R, N, dGh, GH, static_cast<const T*>(sc.hp_all.data()), R, T(1),
             p.dWh, R);
  }
  if constexpr (Cell::kAuxIsRecurrentInput)
    par_gemm(true, false, H, R, N, dG + gh, GH, aux, H, T(1), p.dWh + gh * R, R);
}

}  // namespace rnncore::detail
