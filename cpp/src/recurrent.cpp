// The stacked, bidirectional sequence layer: batch packing, one lane (layer × direction) at a
// time through a cell, dropout between layers, and BPTT with all-steps weight-gradient GEMMs.
#include "rnncore/recurrent.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <type_traits>
#include <stdexcept>
#include <string>
#include <utility>

#include "cells/gru.h"
#include "cells/lstm.h"
#include "cells/rnn.h"

namespace rnncore {

int num_gates(CellType cell) {
  switch (cell) {
    case CellType::kRnnTanh:
    case CellType::kRnnRelu:
      return 1;
    case CellType::kLstm:
      return 4;
    case CellType::kGru:
      return 3;
  }
  throw std::invalid_argument("cell: unknown cell type");
}

const char* cell_name(CellType cell) {
  switch (cell) {
    case CellType::kRnnTanh:
      return "RNN_TANH";
    case CellType::kRnnRelu:
      return "RNN_RELU";
    case CellType::kLstm:
      return "LSTM";
    case CellType::kGru:
      return "GRU";
  }
  return "?";
}

void RecurrentConfig::validate() const {
  num_gates(cell);  // throws on an unknown cell
  if (input_size < 1)
    throw std::invalid_argument("input_size must be >= 1, got " + std::to_string(input_size));
  if (hidden_size < 1)
    throw std::invalid_argument("hidden_size must be >= 1, got " + std::to_string(hidden_size));
  if (num_layers < 1)
    throw std::invalid_argument("num_layers must be >= 1, got " + std::to_string(num_layers));
  if (!(dropout >= 0.0 && dropout < 1.0))
    throw std::invalid_argument("dropout must be in [0, 1), got " + std::to_string(dropout));
}

namespace detail {

// A variable-length batch laid out as PyTorch's PackedSequence: sequences sorted by length
// (descending, stable), steps stored back to back, step t holding its bs[t] active rows. Without
// lengths this is the plain [T*B] layout and perm is the identity.
struct Packing {
  Index T = 0, B = 0, N = 0;
  bool ragged = false;     // some sequence is shorter than T
  std::vector<Index> bs;   // [T+1] active rows per step; bs[T] = 0
  std::vector<Index> off;  // [T+1] first packed row of each step; off[T] = N
  std::vector<Index> perm; // [B] sorted position -> batch index

  void build(Index steps, Index batch, const std::int64_t* lengths) {
    T = steps;
    B = batch;
    perm.resize(B);
    std::iota(perm.begin(), perm.end(), Index(0));
    bs.assign(T + 1, 0);
    off.assign(T + 1, 0);
    ragged = false;
    if (lengths) {
      for (Index b = 0; b < B; ++b) {
        if (lengths[b] < 1 || lengths[b] > T)
          throw std::invalid_argument("lengths must be in [1, " + std::to_string(T) + "], got " +
                                      std::to_string(lengths[b]) + " at index " +
                                      std::to_string(b));
        if (lengths[b] != T) ragged = true;
      }
    }
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
  Index I = 0;  // this layer's input size
  const T* Wx = nullptr;  // [G*H, I]
  const T* Wh = nullptr;  // [G*H, H]
  const T* bx = nullptr;  // [G*H] or null
  const T* bh = nullptr;  // [G*H] or null
  T* dWx = nullptr;
  T* dWh = nullptr;
  T* dbx = nullptr;
  T* dbh = nullptr;
};

// Workspace of one lane, all packed by step: kept from forward to backward in training.
template <typename T>
struct LaneWork {
  AlignedVec<T> gates;  // [N, G*H] activated gates, then dG in backward
  AlignedVec<T> cs;     // [N, H] LSTM cell states
  AlignedVec<T> aux;    // [N, H] GRU (see Step::aux)
};

// Scratch shared by all lanes, one lane at a time.
template <typename T>
struct Scratch {
  AlignedVec<T> rec;              // [B, G*H]
  AlignedVec<T> dh, dh2, dc, dc2;  // [B, H] each
  AlignedVec<T> hp_all;           // [N, H] gathered previous states for dW_hh of a ragged batch
  AlignedVec<T> bias;             // [G*H] folded input-side bias
  AlignedVec<T> wh_blocked;       // W_hh regrouped (or packed) by thread, see lane_forward
  void reserve(Index B, Index H, Index GH) {
    grow(rec, std::size_t(B * GH));
    for (auto* v : {&dh, &dh2, &dc, &dc2}) grow(*v, std::size_t(B * H));
    grow(bias, std::size_t(GH));
    // Packed panels pad each thread's columns up to a multiple of kPanel.
    grow(wh_blocked, std::size_t(GH * (H + kPanel * get_num_threads())));
  }
};

struct LaneSpec {
  CellType cell;
  bool reset_after;
  bool reverse;
  Index H;
};

template <typename T>
void cell_forward(const LaneSpec& ls, const Step<T>& s) {
  switch (ls.cell) {
    case CellType::kRnnTanh:
      return RnnCell::forward(s, false);
    case CellType::kRnnRelu:
      return RnnCell::forward(s, true);
    case CellType::kLstm:
      return LstmCell::forward(s);
    case CellType::kGru:
      return GruCell::forward(s, ls.reset_after);
  }
}

template <typename T>
void cell_backward(const LaneSpec& ls, const Step<T>& s) {
  switch (ls.cell) {
    case CellType::kRnnTanh:
      return RnnCell::backward(s, false);
    case CellType::kRnnRelu:
      return RnnCell::backward(s, true);
    case CellType::kLstm:
      return LstmCell::backward(s);
    case CellType::kGru:
      return GruCell::backward(s, ls.reset_after);
  }
}

// Whether one step's recurrent work is worth a team of threads (else a fork/join per lane and a
// barrier per step would cost more than they save).
inline bool parallel_steps(Index B, Index G, Index H) {
  return 2.0 * double(B) * double(G * H) * double(H) >= double(1 << 17) && H >= 32;
}

// Forward of one lane over the packed batch.
//   X [N, I] (row stride ldx); Y [N, ldy] written in this lane's H columns; h0, c0 [B, H];
//   hn, cn [B, H] out (sorted order).
// Phases of a lane, so that the driver can run the parallel-friendly GEMMs over the whole team
// and the serial step loops of two directions side by side.
enum Phase : int { kProject = 1, kSteps = 2, kGrads = 4, kAll = 7 };

template <typename T>
void lane_forward(const LaneSpec& ls, const Packing& pk, const LaneParams<T>& p, const T* X,
                  Index ldx, T* Y, Index ldy, const T* h0, const T* c0, T* hn, T* cn,
                  LaneWork<T>& w, Scratch<T>& sc, int phases = kAll) {
  const Index H = ls.H, G = num_gates(ls.cell), GH = G * H, N = pk.N;
  const bool lstm = ls.cell == CellType::kLstm, gru = ls.cell == CellType::kGru;

  // 1. All steps' input projections in one GEMM, with every bias that adds to them folded in.
  if (phases & kProject) {
    grow(w.gates, std::size_t(N * GH));
    if (lstm) grow(w.cs, std::size_t(N * H));
    if (gru) grow(w.aux, std::size_t(N * H));
    const T* bias = nullptr;
    if (p.bx) {
      auto b = Eigen::Map<Eigen::Array<T, 1, Eigen::Dynamic>>(sc.bias.data(), GH);
      b = Eigen::Map<const Eigen::Array<T, 1, Eigen::Dynamic>>(p.bx, GH);
      const Index folded = (gru && ls.reset_after) ? 2 * H : GH;  // b_hn stays inside r ⊙ (·)
      b.head(folded) += Eigen::Map<const Eigen::Array<T, 1, Eigen::Dynamic>>(p.bh, folded);
      bias = sc.bias.data();
    }
    par_gemm(false, true, N, GH, p.I, X, ldx, p.Wx, p.I, T(0), w.gates.data(), GH, bias);
  }
  if (!(phases & kSteps)) return;
  T* gates = w.gates.data();

  // 2. The serial part: per step, the recurrent GEMM and the gate math, split by hidden units.
  team(parallel_steps(pk.B, G, H), [&] {
    const Range units = share(H, thread_count(), thread_id());
    // Each thread copies its rows of W_hh (its units, gate after gate) into one contiguous block
    // starting at row G*j0, so its recurrent product is a single GEMM on cache-resident weights.
    // Small batches get each gate's block packed for the matrix-vector kernel (gemv.h), or for
    // calls of a few steps use W_hh in place (step.h, kGemvPackMinSteps); on AVX-512 CPUs a
    // larger batch's float block is packed into panels for packed_gemm instead.
    T* wh_own = sc.wh_blocked.data() + G * units.begin * H;
    T* wh_region = sc.wh_blocked.data() + GH * (units.begin + kPanel * thread_id());
    const Index u = units.size();
    const bool small_batch = pk.B <= kGemvRows;
    const bool gemv_in_place = small_batch && pk.T < kGemvPackMinSteps;
    const T* wh_packed = nullptr;
    if constexpr (std::is_same_v<T, float>) {
      if (!small_batch && packed_gemm_available()) {
        for (Index g = 0; g < G; ++g)
          pack_transposed(u, H, p.Wh + (g * H + units.begin) * H, H,
                          wh_region + g * packed_size(H, u));
        wh_packed = wh_region;
      }
    }
    for (Index g = 0; g < G && !wh_packed && !gemv_in_place; ++g) {
      const T* src = p.Wh + (g * H + units.begin) * H;
      if (small_batch)
        pack_gemv_panels(u, H, src, H, wh_own + g * u * H);
      else
        copy_rows(u, H, src, H, wh_own + g * u * H, H);
    }
    T* rec_own = sc.rec.data() + pk.B * G * units.begin;  // [B, G*u]
    for (Index k = 0; k < pk.T; ++k) {
      const Index t = ls.reverse ? pk.T - 1 - k : k, n = pk.bs[t];
      Step<T> s;
      s.n = n;
      s.H = H;
      s.j0 = units.begin;
      s.j1 = units.end;
      s.gates = gates + pk.off[t] * GH;
      s.Wh_own = wh_own;
      s.small_batch = small_batch;
      s.gemv_in_place = gemv_in_place;
      s.Wh_packed = wh_packed;
      s.h_prev = prev_state(pk, t, ls.reverse, static_cast<const T*>(Y), ldy, h0, H);
      s.h = Y + pk.off[t] * ldy;
      s.ld_h = ldy;
      if (lstm) {
        s.c_prev = prev_state(pk, t, ls.reverse, static_cast<const T*>(w.cs.data()), H, c0, H);
        s.c = w.cs.data() + pk.off[t] * H;
      }
      if (gru) s.aux = w.aux.data() + pk.off[t] * H;
      s.rec = rec_own;
      s.Wh = p.Wh;
      s.bh_n = (gru && ls.reset_after && p.bh) ? p.bh + 2 * H : nullptr;
      cell_forward(ls, s);
      if (!ls.reverse) {  // sequences whose last step this was hand over their final state
        const Index m = pk.bs[t + 1], j = units.begin, u = units.size();
        copy_rows(n - m, u, s.h + m * ldy + j, ldy, hn + m * H + j, H);
        if (lstm && cn) copy_rows(n - m, u, s.c + m * H + j, H, cn + m * H + j, H);
      }
      barrier();  // the next step's GEMM reads every unit of h
    }
  });
  if (ls.reverse) {
    copy_rows(pk.B, H, Y, ldy, hn, H);
    if (lstm && cn) copy_rows(pk.B, H, w.cs.data(), H, cn, H);
  }
}

// BPTT of one lane over its saved forward.
//   dY [N, ldy] this lane's columns of the output gradient, or null; Y, X, h0, c0 as in forward;
//   dhn, dcn [B, H] or null; dh0, dc0 [B, H] out (=); dX [N, I] out (= if !accumulate_dx, else +=);
//   step_sq [T] or null: += ||dL/dh_t||² summed over the batch, for gradient diagnostics.
template <typename T>
void lane_backward(const LaneSpec& ls, const Packing& pk, const LaneParams<T>& p, const T* X,
                   Index ldx, const T* Y, Index ldy, const T* dY, const T* h0, const T* c0,
                   const T* dhn, const T* dcn, T* dh0, T* dc0, T* dX, bool accumulate_dx,
                   double* step_sq, LaneWork<T>& w, Scratch<T>& sc, int phases = kAll) {
  const Index H = ls.H, G = num_gates(ls.cell), GH = G * H, N = pk.N, B = pk.B, Tn = pk.T;
  const bool lstm = ls.cell == CellType::kLstm, gru = ls.cell == CellType::kGru;
  T* gates = w.gates.data();

  // 1. The serial part, in reverse processing order, split by hidden units.
  if (phases & kSteps) team(parallel_steps(B, G, H), [&] {
    const Range units = share(H, thread_count(), thread_id());
    const Index j = units.begin, u = units.size();
    // On AVX-512 CPUs (float) this thread's columns of W_hh are packed once for all steps.
    const T* wh_packed = nullptr;
    if constexpr (std::is_same_v<T, float>) {
      if (packed_gemm_available() && u > 0) {
        T* region = sc.wh_blocked.data() + GH * (j + kPanel * thread_id());
        pack_rows(GH, u, p.Wh + j, H, region);
        wh_packed = region;
      }
    }
    T* dh = sc.dh.data();
    T* dhp = sc.dh2.data();
    T* dc = sc.dc.data();
    T* dcp = sc.dc2.data();
    // Rows [from, to) whose final state enters at this step take its gradient (or zero).
    auto load_final = [&](Index from, Index to) {
      for (Index r = from; r < to; ++r) {
        RowArr<T> d(dh + r * H + j, u);
        if (dhn)
          d = ConstRowArr<T>(dhn + r * H + j, u);
        else
          d.setZero();
        if (!lstm) continue;
        RowArr<T> e(dc + r * H + j, u);
        if (dcn)
          e = ConstRowArr<T>(dcn + r * H + j, u);
        else
          e.setZero();
      }
    };
    for (Index k = 0; k < Tn; ++k) {
      const Index t = ls.reverse ? k : Tn - 1 - k, n = pk.bs[t];
      if (!ls.reverse)
        load_final(pk.bs[t + 1], n);
      else if (k == 0)
        load_final(0, B);
      if (dY) view(dh + j, n, u, H) += cview(dY + pk.off[t] * ldy + j, n, u, ldy);
      if (step_sq) {
        const double sq = double(view(dh + j, n, u, H).squaredNorm());
#ifdef _OPENMP
#pragma omp atomic
#endif
        step_sq[t] += sq;
      }
      Step<T> s;
      s.n = n;
      s.H = H;
      s.j0 = units.begin;
      s.j1 = units.end;
      s.gates = gates + pk.off[t] * GH;
      s.h_prev = prev_state(pk, t, ls.reverse, Y, ldy, h0, H);
      if (lstm) {
        s.c_prev = prev_state(pk, t, ls.reverse, static_cast<const T*>(w.cs.data()), H, c0, H);
        s.c = w.cs.data() + pk.off[t] * H;
      }
      if (gru) s.aux = w.aux.data() + pk.off[t] * H;
      s.rec = sc.rec.data();
      s.Wh = p.Wh;
      s.Wh_packed = wh_packed;
      s.dh = dh;
      s.dc = dc;
      s.dh_prev = dhp;
      s.dc_prev = dcp;
      cell_backward(ls, s);
      // Rows that started at this step pass their gradient to the initial state.
      const Index m = ls.reverse ? pk.bs[t + 1] : (t == 0 ? 0 : n);
      if (dh0) copy_rows(n - m, u, dhp + m * H + j, H, dh0 + m * H + j, H);
      if (lstm && dc0) copy_rows(n - m, u, dcp + m * H + j, H, dc0 + m * H + j, H);
      std::swap(dh, dhp);
      std::swap(dc, dcp);
      // No barrier here: the next step reads and writes only this thread's columns of dh, dc
      // and its own units' dG until the cell's barrier before the dG·W_hh product, so a thread
      // whose product ended first starts its element-wise work instead of waiting.
    }
  });
  if (!(phases & kGrads)) return;

  // 2. Weight gradients and the input gradient: large GEMMs over all steps at once.
  const T* dG = gates;
  const bool split_n = gru && ls.reset_after;  // input side of the n block differs (in aux)
  const Index gx = split_n ? 2 * H : GH;       // gate rows whose input-side dG is in `gates`
  par_gemm(true, false, gx, p.I, N, dG, GH, X, ldx, T(1), p.dWx, p.I);
  par_gemm(false, false, N, p.I, gx, dG, GH, p.Wx, p.I, accumulate_dx ? T(1) : T(0), dX, p.I);
  if (split_n) {
    par_gemm(true, false, H, p.I, N, static_cast<const T*>(w.aux.data()), H, X, ldx, T(1),
             p.dWx + 2 * H * p.I, p.I);
    par_gemm(false, false, N, p.I, H, static_cast<const T*>(w.aux.data()), H,
             p.Wx + 2 * H * p.I, p.I, T(1), dX, p.I);
  }
  if (p.dbx) {
    // Both biases' gradients are column sums of the same dG: one pass over it (the n block of
    // the reset-after GRU's input side comes from aux instead).
    using Vec = Eigen::Map<Eigen::Array<T, 1, Eigen::Dynamic>>;
    T* colsum = sc.bias.data();  // [GH] free in backward (the forward's folded bias)
    Vec(colsum, GH).setZero();
    par_colsum_acc(N, GH, dG, GH, colsum);
    Vec(p.dbh, GH) += Vec(colsum, GH);
    Vec(p.dbx, gx) += Vec(colsum, gx);
    if (split_n) par_colsum_acc(N, H, static_cast<const T*>(w.aux.data()), H, p.dbx + 2 * H);
  }
  // dW_hh = Σ_t dG_tᵀ · h_prev(t). Reset-before GRU: the n block pairs with r ⊙ h instead.
  const Index gh = (gru && !ls.reset_after) ? 2 * H : GH;
  if (!pk.ragged) {
    // Every step has all B rows: h_prev is h0 for one step and the previous output for the rest.
    const Index rest = N - B;
    const Index first_init = ls.reverse ? rest : 0;  // rows of dG whose h_prev is h0
    const Index first_y = ls.reverse ? 0 : B;        // rows of dG whose h_prev is in Y
    const Index y_row = ls.reverse ? B : 0;
    par_gemm(true, false, gh, H, B, dG + first_init * GH, GH, h0, H, T(1), p.dWh, H);
    par_gemm(true, false, gh, H, rest, dG + first_y * GH, GH, Y + y_row * ldy, ldy, T(1), p.dWh, H);
  } else {
    grow(sc.hp_all, std::size_t(N * H));
    for (Index t = 0; t < Tn; ++t) {
      const RowSrc<T> src = prev_state(pk, t, ls.reverse, Y, ldy, h0, H);
      T* dst = sc.hp_all.data() + pk.off[t] * H;
      for (Index r = 0; r < pk.bs[t]; ++r) std::memcpy(dst + r * H, src.row(r), sizeof(T) * H);
    }
    par_gemm(true, false, gh, H, N, dG, GH, static_cast<const T*>(sc.hp_all.data()), H, T(1),
             p.dWh, H);
  }
  if (gh != GH)
    par_gemm(true, false, H, H, N, dG + 2 * H, GH, static_cast<const T*>(w.aux.data()), H, T(1),
             p.dWh + 2 * H * H, H);
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

}  // namespace detail

using detail::Index;

template <typename T>
struct Recurrent<T>::Impl {
  RecurrentConfig cfg;
  std::vector<ParamInfo> info;
  detail::AlignedVec<T> params, grads;  // [P] each, PyTorch's order
  struct LaneOffsets {
    Index I;
    std::size_t Wx, Wh, bx, bh;
  };
  std::vector<LaneOffsets> lane_off;  // [L*D]

  // The saved forward (valid while `saved`).
  bool saved = false;
  detail::Packing pk;
  // Without lengths the packed layout is the caller's: the first layer reads x in place and the
  // last layer writes y in place (both kept for backward and checked unchanged by a hash).
  const T* x_in = nullptr;                   // [N, I] the caller's x, or null (then x0)
  T* y_out = nullptr;                        // [N, D*H] the caller's y, or null (then Y[L-1])
  std::uint64_t x_hash = 0, y_hash = 0;
  detail::AlignedVec<T> x0;                  // [N, I] packed input (ragged batches)
  std::vector<detail::AlignedVec<T>> Y;      // per layer [N, D*H] packed outputs
  std::vector<detail::AlignedVec<T>> Xd;     // per layer >= 1 [N, D*H] dropped inputs
  std::vector<detail::AlignedVec<T>> mask;   // per layer >= 1 [N, D*H] dropout scales
  std::vector<detail::LaneWork<T>> work;  // [L*D]
  detail::AlignedVec<T> h0s, c0s, hns, cns;    // [L*D, B, H] in sorted batch order
  detail::AlignedVec<T> dA, dB;                // [N, max(I, D*H)] gradient ping-pong
  detail::AlignedVec<T> dhns, dcns, dh0s, dc0s;  // [L*D, B, H]
  detail::Scratch<T> sc[2];  // one per direction (the two may run at once)
  bool dropout_active = false;

  // Both directions of a bidirectional layer run their step loops side by side, one thread each,
  // when the team has 2 or 3 threads: no barrier per step and full-width per-step GEMMs (a
  // measured win over splitting each direction's units across the two threads). With 4+
  // threads every direction gets the whole team instead.
  // Small problems stay on one thread: waking a second costs more than the whole loop.
  bool concurrent_directions() const {
    const int nth = get_num_threads();
    const double H = cfg.hidden_size, work = 2.0 * pk.N * cfg.gates() * H * H;
    return cfg.bidirectional && nth >= 2 && nth < 4 && work >= double(1 << 22);
  }

  explicit Impl(const RecurrentConfig& c) : cfg(c) {
    cfg.validate();
    const int L = cfg.num_layers, D = cfg.directions(), H = cfg.hidden_size, GH = cfg.gates() * H;
    std::size_t off = 0;
    auto add = [&](const std::string& name, std::size_t rows, std::size_t cols) {
      info.push_back({name, off, rows, cols});
      off += cols == 0 ? rows : rows * cols;
      return info.back().offset;
    };
    for (int l = 0; l < L; ++l) {
      for (int d = 0; d < D; ++d) {
        const std::string sfx = "_l" + std::to_string(l) + (d == 1 ? "_reverse" : "");
        LaneOffsets lo{};
        lo.I = l == 0 ? cfg.input_size : D * H;
        lo.Wx = add("weight_ih" + sfx, GH, lo.I);
        lo.Wh = add("weight_hh" + sfx, GH, H);
        if (cfg.bias) {
          lo.bx = add("bias_ih" + sfx, GH, 0);
          lo.bh = add("bias_hh" + sfx, GH, 0);
        }
        lane_off.push_back(lo);
      }
    }
    params.assign(off, T(0));
    grads.assign(off, T(0));
    work.resize(std::size_t(L * D));
    Y.resize(L);
    Xd.resize(L);
    mask.resize(L);
  }

  detail::LaneParams<T> lane_params(int k) {
    const auto& lo = lane_off[k];
    detail::LaneParams<T> p;
    p.I = lo.I;
    p.Wx = params.data() + lo.Wx;
    p.Wh = params.data() + lo.Wh;
    p.dWx = grads.data() + lo.Wx;
    p.dWh = grads.data() + lo.Wh;
    if (cfg.bias) {
      p.bx = params.data() + lo.bx;
      p.bh = params.data() + lo.bh;
      p.dbx = grads.data() + lo.bx;
      p.dbh = grads.data() + lo.bh;
    }
    return p;
  }

  const T* input0() const { return x_in ? x_in : x0.data(); }
  T* output(Index l) { return (l == cfg.num_layers - 1 && y_out) ? y_out : Y[l].data(); }

  detail::LaneSpec lane_spec(int d) const {
    return {cfg.cell, cfg.gru_reset_after, d == 1, Index(cfg.hidden_size)};
  }

  // [L*D, B, H] in batch order -> sorted order (zeros when src is null), and back.
  void to_sorted(const T* src, detail::AlignedVec<T>& dst) const {
    const Index LD = cfg.num_layers * cfg.directions(), B = pk.B, H = cfg.hidden_size;
    dst.assign(std::size_t(LD * B * H), T(0));
    if (!src) return;
    for (Index k = 0; k < LD; ++k)
      for (Index i = 0; i < B; ++i)
        std::memcpy(&dst[(k * B + i) * H], src + (k * B + pk.perm[i]) * H, sizeof(T) * H);
  }
  void from_sorted(const detail::AlignedVec<T>& src, T* dst) const {
    if (!dst) return;
    const Index LD = cfg.num_layers * cfg.directions(), B = pk.B, H = cfg.hidden_size;
    for (Index k = 0; k < LD; ++k)
      for (Index i = 0; i < B; ++i)
        std::memcpy(dst + (k * B + pk.perm[i]) * H, &src[(k * B + i) * H], sizeof(T) * H);
  }
  // Padded [T, B, C] (batch order) <-> packed [N, C] (sorted order). Padding rows read as zero.
  void pack(const T* src, Index C, T* dst) const {
    for (Index t = 0; t < pk.T; ++t)
      for (Index i = 0; i < pk.bs[t]; ++i)
        std::memcpy(dst + (pk.off[t] + i) * C, src + (t * pk.B + pk.perm[i]) * C, sizeof(T) * C);
  }
  void unpack(const T* src, Index C, T* dst) const {
    if (!pk.ragged) {
      std::memcpy(dst, src, sizeof(T) * std::size_t(pk.N * C));
      return;
    }
    for (Index t = 0; t < pk.T; ++t)
      for (Index i = 0; i < pk.B; ++i) {
        T* row = dst + (t * pk.B + pk.perm[i]) * C;
        if (i < pk.bs[t])
          std::memcpy(row, src + (pk.off[t] + i) * C, sizeof(T) * C);
        else
          std::fill(row, row + C, T(0));
      }
  }
};

template <typename T>
Recurrent<T>::Recurrent(const RecurrentConfig& config) : impl_(std::make_unique<Impl>(config)) {}
template <typename T>
Recurrent<T>::~Recurrent() = default;
template <typename T>
Recurrent<T>::Recurrent(Recurrent&&) noexcept = default;
template <typename T>
Recurrent<T>& Recurrent<T>::operator=(Recurrent&&) noexcept = default;

template <typename T>
const RecurrentConfig& Recurrent<T>::config() const {
  return impl_->cfg;
}
template <typename T>
const std::vector<ParamInfo>& Recurrent<T>::param_info() const {
  return impl_->info;
}
template <typename T>
std::size_t Recurrent<T>::num_params() const {
  return impl_->params.size();
}
template <typename T>
T* Recurrent<T>::params() {
  return impl_->params.data();
}
template <typename T>
const T* Recurrent<T>::params() const {
  return impl_->params.data();
}
template <typename T>
T* Recurrent<T>::grads() {
  return impl_->grads.data();
}
template <typename T>
const T* Recurrent<T>::grads() const {
  return impl_->grads.data();
}
template <typename T>
void Recurrent<T>::zero_grad() {
  std::fill(impl_->grads.begin(), impl_->grads.end(), T(0));
}
template <typename T>
bool Recurrent<T>::has_saved_forward() const {
  return impl_->saved;
}
template <typename T>
SequenceShape Recurrent<T>::saved_shape() const {
  return {int(impl_->pk.T), int(impl_->pk.B)};
}

template <typename T>
void Recurrent<T>::forward(int steps, int batch, const T* x, const std::int64_t* lengths,
                           const T* h0, const T* c0, T* y, T* hn, T* cn, bool training,
                           std::uint64_t dropout_seed) {
  Impl& m = *impl_;
  const RecurrentConfig& cfg = m.cfg;
  if (steps < 1) throw std::invalid_argument("x: sequence length T must be >= 1");
  if (batch < 1) throw std::invalid_argument("x: batch size B must be >= 1");
  if (!x || !y) throw std::invalid_argument("x and y must not be null");
  m.saved = false;
  m.pk.build(steps, batch, lengths);
  const auto& pk = m.pk;
  const Index L = cfg.num_layers, D = cfg.directions(), H = cfg.hidden_size, DH = D * H;
  const Index I = cfg.input_size, B = pk.B, N = pk.N;
  const bool lstm = cfg.cell == CellType::kLstm;

  const bool direct = !pk.ragged;
  m.x_in = direct ? x : nullptr;
  m.y_out = direct ? y : nullptr;
  if (!direct) {
    detail::grow(m.x0, std::size_t(N * I));
    m.pack(x, I, m.x0.data());
  }
  m.to_sorted(h0, m.h0s);
  if (lstm) m.to_sorted(c0, m.c0s);
  m.hns.assign(std::size_t(L * D * B * H), T(0));
  if (lstm) m.cns.assign(std::size_t(L * D * B * H), T(0));
  for (auto& sc : m.sc) sc.reserve(B, H, cfg.gates() * H);
  m.dropout_active = training && cfg.dropout > 0.0 && L > 1;

  const T* X = m.input0();
  Index ldx = I;
  for (Index l = 0; l < L; ++l) {
    if (l > 0) {
      const T* prev = m.output(l - 1);
      if (m.dropout_active) {  // inverted dropout on the previous layer's output
        detail::grow(m.mask[l], std::size_t(N * DH));
        detail::grow(m.Xd[l], std::size_t(N * DH));
        const double p = cfg.dropout;
        const T scale = T(1.0 / (1.0 - p));
        const std::uint64_t key = detail::mix64(dropout_seed ^ detail::mix64(std::uint64_t(l)));
        for (Index t = 0; t < pk.T; ++t)
          for (Index i = 0; i < pk.bs[t]; ++i) {
            const Index row = pk.off[t] + i;
            const std::uint64_t pos = std::uint64_t(t * B + pk.perm[i]) * std::uint64_t(DH);
            for (Index j = 0; j < DH; ++j) {
              const double u = double(detail::mix64(key + pos + std::uint64_t(j)) >> 11) * 0x1.0p-53;
              const T keep = u >= p ? scale : T(0);
              m.mask[l][row * DH + j] = keep;
              m.Xd[l][row * DH + j] = prev[row * DH + j] * keep;
            }
          }
        X = m.Xd[l].data();
      } else {
        X = prev;
      }
      ldx = DH;
    }
    if (!(l == L - 1 && direct)) detail::grow(m.Y[l], std::size_t(N * DH));
    T* Yl = m.output(l);
    auto run = [&](Index d, int phases) {
      const Index k = l * D + d;
      const Index st = k * B * H;
      detail::lane_forward(m.lane_spec(int(d)), pk, m.lane_params(int(k)), X, ldx,
                           Yl + d * H, DH, m.h0s.data() + st,
                           lstm ? m.c0s.data() + st : nullptr, m.hns.data() + st,
                           lstm ? m.cns.data() + st : nullptr, m.work[k], m.sc[d], phases);
    };
    if (m.concurrent_directions()) {
      for (Index d = 0; d < D; ++d) run(d, detail::kProject);
#ifdef _OPENMP
#pragma omp parallel num_threads(2)
#endif
      run(detail::thread_id(), detail::kSteps);
    } else {
      for (Index d = 0; d < D; ++d) run(d, detail::kAll);
    }
  }
  if (!direct) m.unpack(m.Y[L - 1].data(), DH, y);
  m.from_sorted(m.hns, hn);
  if (lstm) m.from_sorted(m.cns, cn);
  if (training && direct) {
    m.x_hash = detail::content_hash(x, N * I);
    m.y_hash = detail::content_hash(y, N * DH);
  }
  m.saved = training;
}

template <typename T>
void Recurrent<T>::backward(const T* dy, const T* dhn, const T* dcn, T* dx, T* dh0, T* dc0,
                            double* step_grad_norms) {
  Impl& m = *impl_;
  if (!m.saved)
    throw std::runtime_error(
        "backward needs a training-mode forward first (and each forward allows one backward)");
  if (!dx) throw std::invalid_argument("dx must not be null");
  m.saved = false;  // the gate buffers turn into dG below
  const RecurrentConfig& cfg = m.cfg;
  const auto& pk = m.pk;
  if (m.x_in || m.y_out) {
    const Index n = pk.N, in = cfg.input_size, out = cfg.directions() * cfg.hidden_size;
    if (detail::content_hash(m.x_in, n * in) != m.x_hash)
      throw std::runtime_error(
          "x was modified in place after forward; backward needs the x of that forward");
    if (detail::content_hash(m.y_out, n * out) != m.y_hash)
      throw std::runtime_error(
          "y (the forward output) was modified in place; backward needs it unchanged "
          "(copy it before editing)");
  }
  const Index L = cfg.num_layers, D = cfg.directions(), H = cfg.hidden_size, DH = D * H;
  const Index I = cfg.input_size, B = pk.B, N = pk.N;
  const bool lstm = cfg.cell == CellType::kLstm;

  // Without lengths the packed layout is the caller's [T, B, ·] layout: dy is read in place and
  // the first layer writes dx directly. Scratch is needed only for repacking and between layers.
  const bool direct = !pk.ragged;
  if (!direct || L > 1) {
    const Index width = std::max(I, DH);
    detail::grow(m.dA, std::size_t(N * width));
    detail::grow(m.dB, std::size_t(N * width));
  }
  const T* dYl = nullptr;  // [N, DH] gradient w.r.t. the current layer's output
  if (dy && direct) {
    dYl = dy;
  } else if (dy) {
    m.pack(dy, DH, m.dA.data());
    dYl = m.dA.data();
  }
  m.to_sorted(dhn, m.dhns);
  if (lstm) m.to_sorted(dcn, m.dcns);
  if (step_grad_norms) std::fill(step_grad_norms, step_grad_norms + L * D * pk.T, 0.0);
  m.dh0s.assign(std::size_t(L * D * B * H), T(0));
  if (lstm) m.dc0s.assign(std::size_t(L * D * B * H), T(0));

  for (Index l = L - 1; l >= 0; --l) {
    const T* X = l == 0 ? m.input0() : (m.dropout_active ? m.Xd[l].data() : m.output(l - 1));
    const Index ldx = l == 0 ? I : DH;
    T* dXl = (l == 0 && direct) ? dx : (dYl == m.dA.data()) ? m.dB.data() : m.dA.data();
    auto run = [&](Index d, int phases) {
      const Index k = l * D + d;
      const Index st = k * B * H;
      detail::lane_backward(m.lane_spec(int(d)), pk, m.lane_params(int(k)), X, ldx,
                            m.output(l) + d * H, DH, dYl ? dYl + d * H : nullptr,
                            m.h0s.data() + st, lstm ? m.c0s.data() + st : nullptr,
                            dhn ? m.dhns.data() + st : nullptr,
                            (lstm && dcn) ? m.dcns.data() + st : nullptr, m.dh0s.data() + st,
                            lstm ? m.dc0s.data() + st : nullptr, dXl, /*accumulate_dx=*/d > 0,
                            step_grad_norms ? step_grad_norms + k * pk.T : nullptr, m.work[k],
                            m.sc[d], phases);
    };
    if (m.concurrent_directions()) {
#ifdef _OPENMP
#pragma omp parallel num_threads(2)
#endif
      run(detail::thread_id(), detail::kSteps);
      for (Index d = 0; d < D; ++d) run(d, detail::kGrads);
    } else {
      for (Index d = 0; d < D; ++d) run(d, detail::kAll);
    }
    if (l > 0 && m.dropout_active) {
      auto g = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>(dXl, N * DH);
      g *= Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(m.mask[l].data(), N * DH);
    }
    dYl = dXl;
  }
  if (step_grad_norms)
    for (Index i = 0; i < L * D * pk.T; ++i) step_grad_norms[i] = std::sqrt(step_grad_norms[i]);
  if (!direct) m.unpack(dYl, I, dx);
  m.from_sorted(m.dh0s, dh0);
  if (lstm) m.from_sorted(m.dc0s, dc0);
}

template class Recurrent<float>;
template class Recurrent<double>;

}  // namespace rnncore
