// The CPU backend of the sequence layers: the sequence driver, written once and instantiated per
// cell (batch packing, one lane = layer × direction at a time through the cell, dropout between
// layers, BPTT with all-steps weight-gradient GEMMs, threads), and its workspace.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "cells/registry.h"
#include "sequence.h"

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
};

// The sizes of one lane: H cell units, R = the width of its state h (H, or proj_size).
struct LaneShape {
  bool reverse = false;
  Index H = 0, R = 0;
  bool projected() const { return R != H; }
};

// What one lane keeps from forward to backward (views into the workspace), packed by step.
template <typename T>
struct LaneWork {
  T* gates = nullptr;  // [N, G*H] activated gates, then dG in backward
  T* cs = nullptr;     // [N, H] cell states (cells with kStates == 2)
  T* aux = nullptr;    // [N, H] the cell's aux buffer (Cell::kAux)
  T* m = nullptr;      // [N, H] the cell's output before the projection (proj_size), or null
};

// The buffers of one call as views into one allocation (llm.c's fill_in_activation_sizes): the
// sizes follow from (config, T, B, lengths, training) and are laid out once per call. A training
// call keeps everything backward reads, per layer and lane; an inference call keeps nothing, so
// the lanes of a direction share one set of buffers and the layers alternate between two outputs.
template <typename T>
struct Workspace {
  AlignedVec<T> buf;
  T* x0 = nullptr;                 // [N, I] packed input (ragged batches only)
  std::vector<T*> Y;               // [L] of [N, D*H] layer outputs; the caller's y may stand in
  std::vector<T*> Xd, mask;        // [L] of [N, D*H] dropped inputs and their scales (l >= 1)
  std::vector<LaneWork<T>> lanes;  // [L*D]

  // Scalars of each buffer rounded up to a cache line, so every view starts aligned.
  static std::size_t padded(Index n) {
    constexpr std::size_t line = CacheAligned<T>::kAlign / sizeof(T);
    return (std::size_t(n) + line - 1) / line * line;
  }

  // direct: the last layer writes the caller's y (no buffer for it here).
  template <typename Cell>
  void plan(const RecurrentConfig& cfg, const Packing& pk, bool training, bool dropout,
            bool direct) {
    const Index L = cfg.num_layers, D = cfg.directions(), H = cfg.hidden_size, N = pk.N;
    const Index DH = D * cfg.state_size(), GH = Cell::kGates * H;
    const bool proj = cfg.proj_size > 0;
    // Pass 1 sizes every view as an offset; pass 2 turns the offsets into pointers.
    std::size_t total = 0;
    auto take = [&](Index n) {
      const std::size_t at = total;
      total += padded(n);
      return at;
    };
    const std::size_t x0_at = pk.ragged ? take(N * cfg.input_size) : 0;
    std::vector<std::size_t> y_at(L), xd_at(L), mask_at(L);
    for (Index l = 0; l < L; ++l) {
      if (!(direct && l == L - 1)) y_at[l] = (training || l < 2) ? take(N * DH) : y_at[l - 2];
      if (dropout && l > 0) {
        xd_at[l] = take(N * DH);
        mask_at[l] = take(N * DH);
      }
    }
    std::vector<std::size_t> gates_at(L * D), cs_at(L * D), aux_at(L * D), m_at(L * D);
    for (Index k = 0; k < L * D; ++k) {
      const bool own = training || k < D;  // inference: one set per direction
      gates_at[k] = own ? take(N * GH) : gates_at[k % D];
      if constexpr (Cell::kStates == 2) cs_at[k] = own ? take(N * H) : cs_at[k % D];
      if constexpr (Cell::kAux) aux_at[k] = own ? take(N * H) : aux_at[k % D];
      if (proj) m_at[k] = own ? take(N * H) : m_at[k % D];
    }
    grow(buf, total);
    T* base = buf.data();
    x0 = pk.ragged ? base + x0_at : nullptr;
    Y.assign(L, nullptr);
    Xd.assign(L, nullptr);
    mask.assign(L, nullptr);
    for (Index l = 0; l < L; ++l) {
      if (!(direct && l == L - 1)) Y[l] = base + y_at[l];
      if (dropout && l > 0) {
        Xd[l] = base + xd_at[l];
        mask[l] = base + mask_at[l];
      }
    }
    lanes.assign(L * D, LaneWork<T>{});
    for (Index k = 0; k < L * D; ++k) {
      lanes[k].gates = base + gates_at[k];
      if constexpr (Cell::kStates == 2) lanes[k].cs = base + cs_at[k];
      if constexpr (Cell::kAux) lanes[k].aux = base + aux_at[k];
      if (proj) lanes[k].m = base + m_at[k];
    }
  }
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
  void reserve(Index B, Index H, Index GH) {
    grow(rec, std::size_t(B * GH));
    for (auto* v : {&dh, &dh2, &dc, &dc2, &dm}) grow(*v, std::size_t(B * H));
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

// Phases of a lane, so that the driver can run the parallel-friendly GEMMs over the whole team
// and the serial step loops of two directions side by side.
enum Phase : int { kProject = 1, kSteps = 2, kGrads = 4, kAll = 7 };

// Forward of one lane over the packed batch.
//   X [N, I] (row stride ldx); Y [N, ldy] written in this lane's R columns; h0 [B, R], c0 [B, H];
//   hn [B, R], cn [B, H] out (sorted order).
template <typename Cell, typename T>
void lane_forward(const LaneShape& ls, const Packing& pk, const LaneParams<T>& p, const T* X,
                  Index ldx, T* Y, Index ldy, const T* h0, const T* c0, T* hn, T* cn,
                  const LaneWork<T>& w, Scratch<T>& sc, int phases = kAll) {
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
    par_gemm(false, true, N, GH, p.I, X, ldx, p.Wx, p.I, T(0), gates, GH, bias);
  }
  if (!(phases & kSteps)) return;

  // 2. The serial part: per step, the recurrent GEMM and the gate math, split by hidden units.
  team(parallel_steps(pk.B, G, H), [&] {
    const Range units = share(H, thread_count(), thread_id());
    const Range outs = proj ? share(R, thread_count(), thread_id()) : units;  // columns of h
    // Each thread copies its rows of W_hh (its units, gate after gate) into one contiguous block
    // starting at row G*j0, so its recurrent product is a single GEMM on cache-resident weights.
    // Small batches get each gate's block packed for the matrix-vector kernel (gemv.h), or for
    // calls of a few steps use W_hh in place (step.h, kGemvPackMinSteps); on AVX-512 CPUs a
    // larger batch's float block is packed into panels for packed_gemm instead.
    T* wh_own = sc.wh_blocked.data() + G * units.begin * R;
    T* wh_region = sc.wh_blocked.data() + G * R * (units.begin + kPanel * thread_id());
    const Index u = units.size(), uq = outs.size();
    const bool small_batch = pk.B <= kGemvRows;
    const bool gemv_in_place = small_batch && pk.T < kGemvPackMinSteps;
    const T* wh_packed = nullptr;
    if constexpr (std::is_same_v<T, float>) {
      if (!small_batch && packed_gemm_available()) {
        for (Index g = 0; g < G; ++g)
          pack_transposed(u, R, p.Wh + (g * H + units.begin) * R, R,
                          wh_region + g * packed_size(R, u));
        wh_packed = wh_region;
      }
    }
    for (Index g = 0; g < G && !wh_packed && !gemv_in_place; ++g) {
      const T* src = p.Wh + (g * H + units.begin) * R;
      if (small_batch)
        pack_gemv_panels(u, R, src, R, wh_own + g * u * R);
      else
        copy_rows(u, R, src, R, wh_own + g * u * R, R);
    }
    Step<T> s;
    s.H = H;
    s.R = R;
    s.j0 = units.begin;
    s.j1 = units.end;
    s.q0 = outs.begin;
    s.q1 = outs.end;
    s.Wh_own = wh_own;
    s.small_batch = small_batch;
    s.gemv_in_place = gemv_in_place;
    s.Wh_packed = wh_packed;
    s.ld_h = proj ? H : ldy;  // a projected lane's cell writes m, the input of W_hr
    s.rec = sc.rec.data() + pk.B * G * units.begin;  // [B, G*u]
    s.Wh = p.Wh;
    // The hidden biases the input projection did not take (the GRU's b_hn) enter in the step.
    s.bh_n = (Cell::kFoldedHiddenBias < G && p.bh) ? p.bh + Cell::kFoldedHiddenBias * H : nullptr;
    for (Index k = 0; k < pk.T; ++k) {
      const Index t = visit_step(ls, pk, k), n = pk.bs[t];
      T* h = Y + pk.off[t] * ldy;
      s.n = n;
      s.gates = gates + pk.off[t] * GH;
      s.h_prev = prev_state(pk, t, ls.reverse, static_cast<const T*>(Y), ldy, h0, R);
      s.h = proj ? w.m + pk.off[t] * H : h;
      if constexpr (has_c) {
        s.c_prev = prev_state(pk, t, ls.reverse, static_cast<const T*>(w.cs), H, c0, H);
        s.c = w.cs + pk.off[t] * H;
      }
      if constexpr (Cell::kAux) s.aux = w.aux + pk.off[t] * H;
      Cell::forward(s);
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
                   double* step_sq, const LaneWork<T>& w, Scratch<T>& sc, int phases = kAll) {
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
      // On AVX-512 CPUs (float) this thread's columns of W_hh are packed once for all steps.
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
      Step<T> s;
      s.H = H;
      s.R = R;
      s.j0 = units.begin;
      s.j1 = units.end;
      s.q0 = outs.begin;
      s.q1 = outs.end;
      s.rec = sc.rec.data();
      s.Wh = p.Wh;
      s.Wh_packed = wh_packed;
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
        if constexpr (has_c) {
          s.c_prev = prev_state(pk, t, ls.reverse, static_cast<const T*>(w.cs), H, c0, H);
          s.c = w.cs + pk.off[t] * H;
        }
        if constexpr (Cell::kAux) s.aux = w.aux + pk.off[t] * H;
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
        Cell::backward(s);
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
  par_gemm(true, false, gx, p.I, N, dG, GH, X, ldx, T(1), p.dWx, p.I);
  par_gemm(false, false, N, p.I, gx, dG, GH, p.Wx, p.I, accumulate_dx ? T(1) : T(0), dX, p.I);
  if constexpr (Cell::kAuxIsInputSideDG) {
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
  // dW_hh = Σ_t dG_tᵀ · h_prev(t); a cell may pair its last gate block with aux instead.
  const Index gh = Cell::kAuxIsRecurrentInput ? (G - 1) * H : GH;
  if (!pk.ragged) {
    // Every step has all B rows: h_prev is h0 for one step and the previous output for the rest.
    const Index rest = N - B;
    const Index first_init = ls.reverse ? rest : 0;  // rows of dG whose h_prev is h0
    const Index first_y = ls.reverse ? 0 : B;        // rows of dG whose h_prev is in Y
    const Index y_row = ls.reverse ? B : 0;
    par_gemm(true, false, gh, R, B, dG + first_init * GH, GH, h0, R, T(1), p.dWh, R);
    par_gemm(true, false, gh, R, rest, dG + first_y * GH, GH, Y + y_row * ldy, ldy, T(1), p.dWh, R);
  } else {
    grow(sc.hp_all, std::size_t(N * R));
    for (Index t = 0; t < Tn; ++t) {
      const RowSrc<T> src = prev_state(pk, t, ls.reverse, Y, ldy, h0, R);
      T* dst = sc.hp_all.data() + pk.off[t] * R;
      for (Index r = 0; r < pk.bs[t]; ++r) std::memcpy(dst + r * R, src.row(r), sizeof(T) * R);
    }
    par_gemm(true, false, gh, R, N, dG, GH, static_cast<const T*>(sc.hp_all.data()), R, T(1), p.dWh,
             R);
  }
  if constexpr (Cell::kAuxIsRecurrentInput)
    par_gemm(true, false, H, R, N, dG + gh, GH, aux, H, T(1), p.dWh + gh * R, R);
}

// splitmix64: a counter-based hash, so dropout masks depend on (seed, layer, position) only.
inline std::uint64_t mix64(std::uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// A 64-bit hash of a buffer's bytes: detects a caller editing, between forward and backward, an
// array the engine reads in place. Four independent lanes (one multiply per 8 bytes each) keep
// the multiplier busy: a single dependent chain cost ~4% of a small training step.
template <typename T>
std::uint64_t content_hash(const T* p, Index n) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(p);
  const std::size_t size = std::size_t(n) * sizeof(T), blocks = size / 32;
  std::uint64_t h[4] = {0x9e3779b97f4a7c15ULL ^ size, 0xbf58476d1ce4e5b9ULL, 0x94d049bb133111ebULL,
                        0x2545f4914f6cdd1dULL};
  for (std::size_t i = 0; i < blocks; ++i) {
    std::uint64_t w[4];
    std::memcpy(w, bytes + 32 * i, 32);
    for (int l = 0; l < 4; ++l) h[l] = (h[l] ^ w[l]) * 0x100000001b3ULL + (h[l] >> 29);
  }
  std::uint64_t out = h[0];
  for (int l = 1; l < 4; ++l) out = mix64(out ^ h[l]);
  for (std::size_t i = 32 * blocks; i < size; ++i) out = (out ^ bytes[i]) * 0x100000001b3ULL;
  return out;
}

template <typename T>
class CpuSequence final : public SequenceBackend<T> {
 public:
  CpuSequence(const RecurrentConfig& cfg, std::vector<LaneLayout> lanes, std::size_t num_params)
      : cfg_(cfg), lanes_(std::move(lanes)), params_(num_params, T(0)), grads_(num_params, T(0)) {}

  T* params() override { return params_.data(); }
  T* grads() override { return grads_.data(); }
  void zero_grad() override { std::fill(grads_.begin(), grads_.end(), T(0)); }

  // The cell is chosen once per call; everything below runs the driver instantiated for it.
  void forward(const ForwardCall<T>& call) override {
    with_cell(cfg_.cell, [&](auto cell) { forward_with<decltype(cell)>(call); });
  }
  void backward(const BackwardCall<T>& call) override {
    with_cell(cfg_.cell, [&](auto cell) { backward_with<decltype(cell)>(call); });
  }

 private:
  RecurrentConfig cfg_;
  std::vector<LaneLayout> lanes_;  // [L*D]
  AlignedVec<T> params_, grads_;   // [P] each, PyTorch's order

  // The saved forward.
  Packing pk_;
  Workspace<T> ws_;
  // Without lengths the packed layout is the caller's: the first layer reads x in place and the
  // last layer writes y in place (both kept for backward and checked unchanged by a hash).
  const T* x_in_ = nullptr;  // [N, I] the caller's x, or null (then ws_.x0)
  T* y_out_ = nullptr;       // [N, D*R] the caller's y, or null (then ws_.Y[L-1])
  std::uint64_t x_hash_ = 0, y_hash_ = 0;
  // States in sorted batch order: h-like [L*D, B, R], c-like [L*D, B, H].
  AlignedVec<T> h0s_, c0s_, hns_, cns_;
  AlignedVec<T> dA_, dB_;  // [N, max(I, D*R)] gradient ping-pong
  AlignedVec<T> dhns_, dcns_, dh0s_, dc0s_;
  Scratch<T> sc_[2];  // one per direction (the two may run at once)
  bool dropout_active_ = false;

  LaneParams<T> lane_params(Index k) {
    const auto& lo = lanes_[std::size_t(k)];
    LaneParams<T> p;
    p.I = lo.input_size;
    p.Wx = params_.data() + lo.Wx;
    p.Wh = params_.data() + lo.Wh;
    p.dWx = grads_.data() + lo.Wx;
    p.dWh = grads_.data() + lo.Wh;
    if (cfg_.bias) {
      p.bx = params_.data() + lo.bx;
      p.bh = params_.data() + lo.bh;
      p.dbx = grads_.data() + lo.bx;
      p.dbh = grads_.data() + lo.bh;
    }
    if (cfg_.proj_size > 0) {
      p.Wr = params_.data() + lo.Wr;
      p.dWr = grads_.data() + lo.Wr;
    }
    return p;
  }

  LaneShape lane_shape(Index d) const {
    return {d == 1, Index(cfg_.hidden_size), Index(cfg_.state_size())};
  }

  const T* input0() const { return x_in_ ? x_in_ : ws_.x0; }
  T* output(Index l) {
    return (l == cfg_.num_layers - 1 && y_out_) ? y_out_ : ws_.Y[std::size_t(l)];
  }

  // Both directions of a bidirectional layer run their step loops side by side, one thread each,
  // when the team has 2 or 3 threads: no barrier per step and full-width per-step GEMMs (a
  // measured win over splitting each direction's units across the two threads). With 4+
  // threads every direction gets the whole team instead.
  // Small problems stay on one thread: waking a second costs more than the whole loop.
  bool concurrent_directions() const {
    const int nth = get_num_threads();
    const double H = cfg_.hidden_size, work = 2.0 * pk_.N * cfg_.gates() * H * cfg_.state_size();
    return cfg_.bidirectional && nth >= 2 && nth < 4 && work >= double(1 << 22);
  }

  // [L*D, B, H] in batch order -> sorted order (zeros when src is null), and back; H is the
  // width of the state (R for h, hidden_size for c).
  void to_sorted(const T* src, Index H, AlignedVec<T>& dst) const {
    const Index LD = cfg_.num_layers * cfg_.directions(), B = pk_.B;
    dst.assign(std::size_t(LD * B * H), T(0));
    if (!src) return;
    for (Index k = 0; k < LD; ++k)
      for (Index i = 0; i < B; ++i)
        std::memcpy(&dst[(k * B + i) * H], src + (k * B + pk_.perm[i]) * H, sizeof(T) * H);
  }
  void from_sorted(const AlignedVec<T>& src, Index H, T* dst) const {
    if (!dst) return;
    const Index LD = cfg_.num_layers * cfg_.directions(), B = pk_.B;
    for (Index k = 0; k < LD; ++k)
      for (Index i = 0; i < B; ++i)
        std::memcpy(dst + (k * B + pk_.perm[i]) * H, &src[(k * B + i) * H], sizeof(T) * H);
  }
  // Padded [T, B, C] (batch order) <-> packed [N, C] (sorted order). Padding rows read as zero.
  void pack(const T* src, Index C, T* dst) const {
    for (Index t = 0; t < pk_.T; ++t)
      for (Index i = 0; i < pk_.bs[t]; ++i)
        std::memcpy(dst + (pk_.off[t] + i) * C, src + (t * pk_.B + pk_.perm[i]) * C, sizeof(T) * C);
  }
  void unpack(const T* src, Index C, T* dst) const {
    if (!pk_.ragged) {
      std::memcpy(dst, src, sizeof(T) * std::size_t(pk_.N * C));
      return;
    }
    for (Index t = 0; t < pk_.T; ++t)
      for (Index i = 0; i < pk_.B; ++i) {
        T* row = dst + (t * pk_.B + pk_.perm[i]) * C;
        if (i < pk_.bs[t])
          std::memcpy(row, src + (pk_.off[t] + i) * C, sizeof(T) * C);
        else
          std::fill(row, row + C, T(0));
      }
  }

  // Inverted dropout on layer l's input prev [N, D*R] into ws_.Xd[l], the scales into
  // ws_.mask[l]; each mask value depends on (seed, layer, position) only.
  void drop_inputs(Index l, const T* prev, std::uint64_t seed) {
    const Index B = pk_.B, DH = cfg_.directions() * cfg_.state_size();
    const double p = cfg_.dropout;
    const T scale = T(1.0 / (1.0 - p));
    const std::uint64_t key = mix64(seed ^ mix64(std::uint64_t(l)));
    T* mask = ws_.mask[std::size_t(l)];
    T* xd = ws_.Xd[std::size_t(l)];
    for (Index t = 0; t < pk_.T; ++t)
      for (Index i = 0; i < pk_.bs[t]; ++i) {
        const Index row = pk_.off[t] + i;
        const std::uint64_t pos = std::uint64_t(t * B + pk_.perm[i]) * std::uint64_t(DH);
        for (Index j = 0; j < DH; ++j) {
          const double u = double(mix64(key + pos + std::uint64_t(j)) >> 11) * 0x1.0p-53;
          const T keep = u >= p ? scale : T(0);
          mask[row * DH + j] = keep;
          xd[row * DH + j] = prev[row * DH + j] * keep;
        }
      }
  }

  template <typename Cell>
  void forward_with(const ForwardCall<T>& call) {
    constexpr bool has_c = Cell::kStates == 2;
    pk_.build(call.steps, call.batch, call.lengths);
    const Index L = cfg_.num_layers, D = cfg_.directions(), H = cfg_.hidden_size;
    const Index R = cfg_.state_size(), DH = D * R;
    const Index I = cfg_.input_size, B = pk_.B, N = pk_.N;
    dropout_active_ = call.training && cfg_.dropout > 0.0 && L > 1;
    const bool direct = !pk_.ragged;
    ws_.template plan<Cell>(cfg_, pk_, call.training, dropout_active_, direct);

    x_in_ = direct ? call.x : nullptr;
    y_out_ = direct ? call.y : nullptr;
    if (!direct) pack(call.x, I, ws_.x0);
    to_sorted(call.h0, R, h0s_);
    if (has_c) to_sorted(call.c0, H, c0s_);
    hns_.assign(std::size_t(L * D * B * R), T(0));
    if (has_c) cns_.assign(std::size_t(L * D * B * H), T(0));
    for (auto& sc : sc_) sc.reserve(B, H, Cell::kGates * H);

    const T* X = input0();
    Index ldx = I;
    for (Index l = 0; l < L; ++l) {
      if (l > 0) {
        const T* prev = output(l - 1);
        if (dropout_active_) {
          drop_inputs(l, prev, call.dropout_seed);
          X = ws_.Xd[std::size_t(l)];
        } else {
          X = prev;
        }
        ldx = DH;
      }
      T* Yl = output(l);
      auto run = [&](Index d, int phases) {
        const Index k = l * D + d, h_at = k * B * R, c_at = k * B * H;
        lane_forward<Cell>(lane_shape(d), pk_, lane_params(k), X, ldx, Yl + d * R, DH,
                           h0s_.data() + h_at, has_c ? c0s_.data() + c_at : nullptr,
                           hns_.data() + h_at, has_c ? cns_.data() + c_at : nullptr,
                           ws_.lanes[std::size_t(k)], sc_[d], phases);
      };
      if (concurrent_directions()) {
        for (Index d = 0; d < D; ++d) run(d, kProject);
#ifdef _OPENMP
#pragma omp parallel num_threads(2)
#endif
        run(thread_id(), kSteps);
      } else {
        for (Index d = 0; d < D; ++d) run(d, kAll);
      }
    }
    if (!direct) unpack(ws_.Y[std::size_t(L - 1)], DH, call.y);
    from_sorted(hns_, R, call.hn);
    if (has_c) from_sorted(cns_, H, call.cn);
    if (call.training && direct) {
      x_hash_ = content_hash(call.x, N * I);
      y_hash_ = content_hash(call.y, N * DH);
    }
  }

  template <typename Cell>
  void backward_with(const BackwardCall<T>& call) {
    constexpr bool has_c = Cell::kStates == 2;
    const Index L = cfg_.num_layers, D = cfg_.directions(), H = cfg_.hidden_size;
    const Index R = cfg_.state_size(), DH = D * R;
    const Index I = cfg_.input_size, B = pk_.B, N = pk_.N;
    if (x_in_ || y_out_) {
      if (content_hash(x_in_, N * I) != x_hash_)
        throw std::runtime_error(
            "x was modified in place after forward; backward needs the x of that forward");
      if (content_hash(y_out_, N * DH) != y_hash_)
        throw std::runtime_error(
            "y (the forward output) was modified in place; backward needs it unchanged "
            "(copy it before editing)");
    }

    // Without lengths the packed layout is the caller's [T, B, ·] layout: dy is read in place and
    // the first layer writes dx directly. Scratch is needed only for repacking and between layers.
    const bool direct = !pk_.ragged;
    if (!direct || L > 1) {
      const Index width = std::max(I, DH);
      grow(dA_, std::size_t(N * width));
      grow(dB_, std::size_t(N * width));
    }
    const T* dYl = nullptr;  // [N, DH] gradient w.r.t. the current layer's output
    if (call.dy && direct) {
      dYl = call.dy;
    } else if (call.dy) {
      pack(call.dy, DH, dA_.data());
      dYl = dA_.data();
    }
    to_sorted(call.dhn, R, dhns_);
    if (has_c) to_sorted(call.dcn, H, dcns_);
    double* norms = call.step_grad_norms;
    if (norms) std::fill(norms, norms + L * D * pk_.T, 0.0);
    dh0s_.assign(std::size_t(L * D * B * R), T(0));
    if (has_c) dc0s_.assign(std::size_t(L * D * B * H), T(0));

    for (Index l = L - 1; l >= 0; --l) {
      const T* X = l == 0 ? input0() : (dropout_active_ ? ws_.Xd[std::size_t(l)] : output(l - 1));
      const Index ldx = l == 0 ? I : DH;
      T* dXl = (l == 0 && direct) ? call.dx : (dYl == dA_.data()) ? dB_.data() : dA_.data();
      auto run = [&](Index d, int phases) {
        const Index k = l * D + d, h_at = k * B * R, c_at = k * B * H;
        lane_backward<Cell>(lane_shape(d), pk_, lane_params(k), X, ldx, output(l) + d * R, DH,
                            dYl ? dYl + d * R : nullptr, h0s_.data() + h_at,
                            has_c ? c0s_.data() + c_at : nullptr,
                            call.dhn ? dhns_.data() + h_at : nullptr,
                            (has_c && call.dcn) ? dcns_.data() + c_at : nullptr,
                            dh0s_.data() + h_at, has_c ? dc0s_.data() + c_at : nullptr, dXl,
                            /*accumulate_dx=*/d > 0, norms ? norms + k * pk_.T : nullptr,
                            ws_.lanes[std::size_t(k)], sc_[d], phases);
      };
      if (concurrent_directions()) {
#ifdef _OPENMP
#pragma omp parallel num_threads(2)
#endif
        run(thread_id(), kSteps);
        for (Index d = 0; d < D; ++d) run(d, kGrads);
      } else {
        for (Index d = 0; d < D; ++d) run(d, kAll);
      }
      if (l > 0 && dropout_active_) {
        auto g = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>(dXl, N * DH);
        g *= Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(ws_.mask[std::size_t(l)], N * DH);
      }
      dYl = dXl;
    }
    if (norms)
      for (Index i = 0; i < L * D * pk_.T; ++i) norms[i] = std::sqrt(norms[i]);
    if (!direct) unpack(dYl, I, call.dx);
    from_sorted(dh0s_, R, call.dh0);
    if (has_c) from_sorted(dc0s_, H, call.dc0);
  }
};

template <typename T>
std::unique_ptr<SequenceBackend<T>> make_cpu_sequence(const RecurrentConfig& cfg,
                                                      std::vector<LaneLayout> lanes,
                                                      std::size_t num_params) {
  return std::make_unique<CpuSequence<T>>(cfg, std::move(lanes), num_params);
}

template std::unique_ptr<SequenceBackend<float>> make_cpu_sequence<float>(const RecurrentConfig&,
                                                                          std::vector<LaneLayout>,
                                                                          std::size_t);
template std::unique_ptr<SequenceBackend<double>> make_cpu_sequence<double>(const RecurrentConfig&,
                                                                            std::vector<LaneLayout>,
                                                                            std::size_t);

}  // namespace rnncore::detail
