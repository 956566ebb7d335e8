// What one time step of one lane (layer × direction) reads and writes, shared by every cell.
//
// A step runs inside the driver's OpenMP region: every thread owns the hidden units [j0, j1)
// and computes the recurrent GEMM and the element-wise gate math for those units only (so a
// thread keeps its slice of W_hh hot in its own cache). A barrier separates the phases where a
// thread needs values other threads produced (the full h for the next GEMM).
#pragma once

#include <type_traits>

#include "../gemv.h"
#include "../linalg.h"
#include "../packed_gemm.h"
#include "../qgemv.h"
#include "rnncore/recurrent.h"

namespace rnncore::detail {

// Rows [0, n) of a matrix stored in up to two pieces: rows [0, na) at a (row stride lda), the rest
// at b (row stride ldb). The reverse direction of a ragged batch reads its previous state this
// way: sequences still running from the last output, sequences starting here from h0.
template <typename T>
struct RowSrc {
  const T* a = nullptr;
  Index lda = 0;
  Index na = 0;
  const T* b = nullptr;
  Index ldb = 0;
  const T* row(Index r) const { return r < na ? a + r * lda : b + (r - na) * ldb; }
};

// Up to this many rows (sequences in the batch), a step's recurrent product is a matrix-vector
// product per row on a copy of W_hh packed once per call (see gemv.h): a GEMM would repack the
// weights on every step, which costs more than the product itself.
constexpr Index kGemvRows = kGemvMaxRows;
// Calls of fewer steps than gemv_pack_min_steps() (decoding one token at a time, say) multiply
// W_hh where it lies instead. With the AVX-512 kernels packing costs ~100 us per MB of weights
// while the in-place product (Eigen's row-major matrix-vector kernel, dot products) is only ~15%
// slower per step, so the two meet at ~45 steps for H = 256 (32 is used); a B=1, T=1, H=256 LSTM
// call at 1 thread (C++, I=1): 110 -> 22 us. The AVX2 kernels pack sooner (gemv.h).
template <typename T>
Index gemv_pack_min_steps_for() {
  // double always uses the portable kernel and its scalar packing.
  return std::is_same_v<T, float> ? gemv_pack_min_steps() : 32;
}

// C[0:n, :cols] (+)= src[0:n, :k] · W[cols, k]ᵀ with src given as a RowSrc.
template <typename T>
inline void gemm_src_nt(const RowSrc<T>& src, Index n, Index cols, Index k, const T* W, Index ldw,
                        T* C, Index ldc, bool accumulate) {
  const Index na = std::min(n, src.na);
  gemm_nt(na, cols, k, src.a, src.lda, W, ldw, C, ldc, accumulate);
  if (n > na) gemm_nt(n - na, cols, k, src.b, src.ldb, W, ldw, C + na * ldc, ldc, accumulate);
}

// The layer-norm state of one step (Step::ln), the rows of this step in the lane's buffers.
template <typename T>
struct LayerNormStep {
  bool on = false;
  const T* gain_h = nullptr;  // [G*H] γ_h
  const T* gain_c = nullptr;  // [H] γ_c (LSTM)
  const T* bias_c = nullptr;  // [H] β_c (LSTM)
  T* dgain_h = nullptr;       // gradients (+=), backward
  T* dgain_c = nullptr;
  T* dbias_c = nullptr;
  T* rhat = nullptr;    // [n, G*H] LN(W_hh h) of this step
  T* rstd_h = nullptr;  // [n]
  T* coef = nullptr;    // [n, 2] backward: the row constants of LN's gradient (layer_norm.h)
  T* drec = nullptr;    // [B, G*H] backward: this thread's copy of dL/d(W_hh h), for dh_prev
  T* chat = nullptr;    // [n, H] LN(c') (LSTM)
  T* rstd_c = nullptr;  // [n]
  // [threads, stride, 3] per-thread partials: one buffer for the recurrent norm, one for the
  // cell state's (a thread may start the second while another still reads the first).
  T* part_h = nullptr;
  T* part_c = nullptr;
  Index stride = 0;    // B
  T* dchat = nullptr;  // [B, H] backward scratch: dL/d LN(c')
};

template <typename T>
struct Step {
  Index n = 0;  // active rows: a prefix of the length-sorted batch
  Index H = 0;  // hidden size (cell units)
  // State size: the width of h, the K of every product with W_hh [G*H, R]. H, or the LSTM's
  // proj_size P, whose h = W_hr (o ⊙ tanh(c)) the driver computes from the cell's output.
  Index R = 0;
  Index j0 = 0, j1 = 0;  // this thread's hidden units
  Index q0 = 0, q1 = 0;  // this thread's columns of the state h (the same as j without projection)
  // Forward in: x·Wxᵀ + folded biases. Forward out: activated gates, kept for backward.
  // Backward out: dG, the gradient w.r.t. the gate pre-activations.
  T* gates = nullptr;  // [n, G*H], row stride G*H
  RowSrc<T> h_prev;    // [n, R]
  // [n, R] the state entering the recurrent weights: h_prev, or with recurrent dropout
  // h_prev ⊙ in_mask (the GEMMs with W_hh read it; element-wise terms like the GRU's z ⊙ h read
  // h_prev).
  RowSrc<T> h_in;
  const T* in_mask = nullptr;  // [n, R] recurrent dropout's scales (rows of the sorted batch)
  T* in_scratch = nullptr;     // [n, R] backward: dG·W_hh before the mask (with in_mask)
  T* h = nullptr;  // [n, H], row stride ld_h: the cell's output (the new state, or with a
                   // projection the driver's input to W_hr)
  Index ld_h = 0;
  bool zoned = false;  // zoneout replaced the saved h and c of some units by their previous values
  RowSrc<T> c_prev;    // [n, H] LSTM cell state before the step
  T* c = nullptr;      // [n, H] LSTM cell state after the step, row stride H
  T* aux = nullptr;    // [n, H] GRU: W_hn h + b_hn (reset-after) or r ⊙ h_prev (reset-before)
  // Forward: this thread's recurrent pre-activations [n, G*u] (row stride G*u, gate blocks of u
  // units), from its own block of the thread-blocked W_hh copy. Backward: scratch [n, H].
  T* rec = nullptr;
  const T* Wh = nullptr;  // [G*H, R] PyTorch layout (backward)
  // Forward: this thread's rows of W_hh, gate by gate: [G*u, R], or when small_batch (batches of
  // at most kGemvRows) each gate's [u, R] block packed by pack_gemv_panels (u*R values each).
  const T* Wh_own = nullptr;
  bool small_batch = false;
  // Short calls of a small batch (see gemv_pack_min_steps_for): Wh_own is unused and gate g's block
  // of this thread's units is rows [g*H + j0, g*H + j1) of Wh itself.
  bool gemv_in_place = false;
  // float on AVX-512 and AVX2 CPUs: this thread's weights packed for packed_gemm, once per call:
  // forward, per gate block [R, u] (packed_size(R, u) floats each); backward, W_hh[:, q0:q1] as
  // [G*H, uq].
  const T* Wh_packed = nullptr;
  // Int8 inference (float only): this thread's gate blocks of W_hh quantized by pack_quant_panels,
  // quant_panel_bytes(u, R) bytes apart, with u scales and row sums per gate; hq [n,
  // quant_padded(R)] and hq_scale [n]: this thread's scratch for the quantized rows of the
  // product's input.
  const std::int8_t* Wq = nullptr;
  const float* wq_scale = nullptr;
  const std::int32_t* wq_sum = nullptr;
  std::uint8_t* hq = nullptr;
  float* hq_scale = nullptr;
  const T* bh_n = nullptr;  // [H] GRU reset-after only (the other hidden biases are folded in)
  // Backward only.
  T* dh = nullptr;       // [n, H] in: dL/d(cell output h_t) (carried + from the output); clobbered
  T* dc = nullptr;       // [n, H] in: carried dL/dc_t (LSTM); clobbered
  T* dh_prev = nullptr;  // [n, R] out (=)
  T* dc_prev = nullptr;  // [n, H] out (=), LSTM
  LayerNormStep<T> ln;   // layer_norm (layer_norm.h), or ln.on == false

  Index units() const { return j1 - j0; }
  using VecMap = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>>;
  using CVecMap = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>;
  // Rows of W_hh for gate block g and this thread's units: [u, R] (gemv_in_place).
  ConstMatView<T> own_rows(Index g) const { return cview(Wh + (g * H + j0) * R, units(), R, R); }
  // This thread's units of gate block g in row r of a [n, G*H] buffer.
  T* gate(T* base, Index G, Index r, Index g) const { return base + r * G * H + g * H + j0; }
  // rec[:, g0*u : g1*u] = h_prev · (rows of gate blocks [g0, g1) of W_hh for this thread's units)ᵀ:
  // one GEMM, since the thread's rows are contiguous in the blocked copy.
  void recurrent_gemm(Index G, Index g0, Index g1) const {
    const Index u = units();
    if constexpr (std::is_same_v<T, float>) {
      if (Wq) {
        quantize_rows(h_in);
        for (Index g = g0; g < g1; ++g) quant_product(g, rec + g * u, G * u, false);
        return;
      }
    }
    if (gemv_in_place) {
      for (Index g = g0; g < g1; ++g)
        for (Index r = 0; r < n; ++r)
          VecMap(rec + r * G * u + g * u, u).noalias() = own_rows(g) * CVecMap(h_in.row(r), R);
      return;
    }
    if constexpr (std::is_same_v<T, float>) {
      if (Wh_packed) {
        const PackedRows rows{h_in.a, h_in.lda, h_in.na, h_in.b, h_in.ldb};
        for (Index g = g0; g < g1; ++g)
          packed_gemm(n, u, R, rows, 0, Wh_packed + g * packed_size(R, u), R, rec + g * u, G * u,
                      /*accumulate=*/false);
        return;
      }
    }
    if (small_batch) {
      const T* xs[kGemvMaxRows];
      for (Index r = 0; r < n; ++r) xs[r] = h_in.row(r);
      for (Index g = g0; g < g1; ++g)
        gemv_panels(u, R, Wh_own + g * u * R, int(n), xs, rec + g * u, G * u,
                    /*accumulate=*/false);
      return;
    }
    gemm_src_nt(h_in, n, (g1 - g0) * u, R, Wh_own + g0 * u * R, R, rec + g0 * u, G * u,
                /*accumulate=*/false);
  }
  // out[r, 0:u] += a[r, 0:R] · (this thread's rows of gate block g)ᵀ for r < n (row strides lda,
  // ldo): the GRU reset-before product W_hn (r ⊙ h).
  void own_gate_product(Index /*G*/, Index g, const T* a, Index lda, T* out, Index ldo) const {
    const Index u = units();
    if constexpr (std::is_same_v<T, float>) {
      if (Wq) {
        quantize_rows(RowSrc<T>{a, lda, n, nullptr, 0});
        quant_product(g, out, ldo, true);
        return;
      }
    }
    if (gemv_in_place) {
      for (Index r = 0; r < n; ++r)
        VecMap(out + r * ldo, u).noalias() += own_rows(g) * CVecMap(a + r * lda, R);
      return;
    }
    if constexpr (std::is_same_v<T, float>) {
      if (Wh_packed) {
        packed_gemm(n, u, R, PackedRows{a, lda, n, nullptr, 0}, 0,
                    Wh_packed + g * packed_size(R, u), R, out, ldo, /*accumulate=*/true);
        return;
      }
    }
    if (small_batch) {
      const T* xs[kGemvMaxRows];
      for (Index r = 0; r < n; ++r) xs[r] = a + r * lda;
      gemv_panels(u, R, Wh_own + g * u * R, int(n), xs, out, ldo, /*accumulate=*/true);
      return;
    }
    gemm_nt(n, u, R, a, lda, Wh_own + g * u * R, R, out, ldo, /*accumulate=*/true);
  }
  // Int8 inference: rows r < n of the product's input quantized into hq / hq_scale.
  void quantize_rows(const RowSrc<T>& src) const {
    const Index kp = quant_padded(R);
    for (Index r = 0; r < n; ++r) hq_scale[r] = quantize_vector(R, src.row(r), hq + r * kp);
  }
  // out[r, 0:u] (+)= (the quantized row r) · (this thread's rows of gate block g)ᵀ for r < n.
  void quant_product(Index g, T* out, Index ldo, bool accumulate) const {
    const Index u = units(), kp = quant_padded(R);
    const std::int8_t* w = Wq + std::ptrdiff_t(g) * std::ptrdiff_t(quant_panel_bytes(u, R));
    for (Index r = 0; r < n; ++r)
      quant_gemv(u, R, w, wq_scale + g * u, wq_sum + g * u, hq + r * kp, hq_scale[r], out + r * ldo,
                 accumulate);
  }
  // This thread's recurrent pre-activations of gate block g in row r.
  const T* rec_gate(Index G, Index r, Index g) const { return rec + r * G * units() + g * units(); }
  // C[:, 0:uq] (+)= A[:, k0:k0+k] · W_hh[k0:k0+k, q0:q1] (A row stride lda, C row stride ldc).
  void weight_product_bwd(Index G, Index k0, Index k, const T* A, Index lda, T* C, Index ldc,
                          bool accumulate) const {
    if constexpr (std::is_same_v<T, float>) {
      if (Wh_packed) {
        packed_gemm(n, q1 - q0, k, PackedRows{A, lda, n, nullptr, 0}, k0, Wh_packed, G * H, C, ldc,
                    accumulate);
        return;
      }
    }
    gemm_nn(n, q1 - q0, k, A + k0, lda, Wh + k0 * R + q0, R, C, ldc, accumulate);
  }
  // dh_prev[:, q0:q1] (+)= (dG[:, rows of W_hh in [g0*H, g1*H)] · W_hh[g0*H : g1*H, q0:q1])
  // ⊙ in_mask (recurrent dropout: the gradient w.r.t. h_prev of a product that read h_in).
  void backward_gemm(Index G, Index g0, Index g1, bool accumulate) const {
    // With layer norm the product reads dL/d(W_hh h), which differs from the gates' dG.
    const T* dg = ln.on ? ln.drec : gates;
    if (!in_mask) {
      weight_product_bwd(G, g0 * H, (g1 - g0) * H, dg, G * H, dh_prev + q0, R, accumulate);
      return;
    }
    weight_product_bwd(G, g0 * H, (g1 - g0) * H, dg, G * H, in_scratch + q0, R, false);
    for (Index r = 0; r < n; ++r) {
      RowArr<T> out(dh_prev + r * R + q0, q1 - q0);
      const auto masked = ConstRowArr<T>(in_scratch + r * R + q0, q1 - q0) *
                          ConstRowArr<T>(in_mask + r * R + q0, q1 - q0);
      if (accumulate)
        out += masked;
      else
        out = masked;
    }
  }
};

}  // namespace rnncore::detail
