// The CPU backend of the sequence layers: the layer stack over lane_cpu.h's lanes (layers,
// directions side by side, dropout between layers, states in and out), its workspace, and the
// dispatch to the cell's instantiation of the driver (once per call).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

#include "cells/registry.h"
#include "lane_cpu.h"
#include "sequence.h"

namespace rnncore::detail {

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
    std::vector<std::size_t> zh_at(L * D), zc_at(L * D), rmask_at(L * D);
    // Layer norm: the normalised products and cell states, and 1/σ of each row (x, h, c).
    std::vector<std::size_t> xn_at(L * D), rn_at(L * D), chat_at(L * D), rstd_at(L * D);
    const bool ln = cfg.layer_norm;
    // Training with zoneout keeps each step's draws for backward; recurrent dropout one mask.
    const bool zoned = training && cfg.zoneout > 0.0;
    const bool rdrop = training && cfg.recurrent_dropout > 0.0;
    for (Index k = 0; k < L * D; ++k) {
      const bool own = training || k < D;  // inference: one set per direction
      gates_at[k] = own ? take(N * GH) : gates_at[k % D];
      if constexpr (Cell::kStates == 2) cs_at[k] = own ? take(N * H) : cs_at[k % D];
      if constexpr (Cell::kAux) aux_at[k] = own ? take(N * H) : aux_at[k % D];
      if (proj) m_at[k] = own ? take(N * H) : m_at[k % D];
      if (zoned) zh_at[k] = take(N * H);
      if (zoned && Cell::kStates == 2) zc_at[k] = take(N * H);
      if (rdrop) rmask_at[k] = take(pk.B * cfg.state_size());
      if (ln) {
        xn_at[k] = own ? take(N * GH) : xn_at[k % D];
        rn_at[k] = own ? take(N * GH) : rn_at[k % D];
        if (Cell::kStates == 2) chat_at[k] = own ? take(N * H) : chat_at[k % D];
        rstd_at[k] = own ? take(5 * N) : rstd_at[k % D];
      }
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
      if (zoned) lanes[k].zh = base + zh_at[k];
      if (zoned && Cell::kStates == 2) lanes[k].zc = base + zc_at[k];
      if (rdrop) lanes[k].rmask = base + rmask_at[k];
      if (ln) {
        lanes[k].xn = base + xn_at[k];
        lanes[k].rn = base + rn_at[k];
        if (Cell::kStates == 2) lanes[k].chat = base + chat_at[k];
        lanes[k].rstd_x = base + rstd_at[k];
        lanes[k].rstd_h = lanes[k].rstd_x + N;
        lanes[k].rstd_c = lanes[k].rstd_x + 2 * N;
        lanes[k].coef = lanes[k].rstd_x + 3 * N;
      }
    }
  }
};

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
    DenormalScope flush;  // this thread's part outside the teams (each team thread has its own)
    s_ = &slot(depth_);   // an inference call uses the first free slot as scratch
    int8_ = std::is_same_v<T, float> && call.int8 && !call.training;
    with_cell(cfg_.cell, [&](auto cell) { forward_with<decltype(cell)>(call); });
    if (call.training) ++depth_;
  }
  void backward(const BackwardCall<T>& call) override {
    DenormalScope flush;
    if (depth_ == 0) throw std::logic_error("CpuSequence::backward: no saved forward");
    s_ = saved_[--depth_].get();  // consumed even if the checks below throw
    with_cell(cfg_.cell, [&](auto cell) { backward_with<decltype(cell)>(call); });
  }
  std::size_t saved_bytes() const override {
    std::size_t n = 0;
    for (std::size_t i = 0; i < depth_; ++i) {
      const Saved& s = *saved_[i];
      n += s.ws.buf.size() + s.h0s.size() + s.c0s.size();
    }
    return n * sizeof(T);
  }
  void discard_saved() override {
    depth_ = 0;
    saved_.clear();  // the memory too: a caller dropping unconsumed forwards wants it back
  }
  // The taken context leaves the slot list (a fresh slot is allocated for the next forward);
  // restored and consumed, it stays behind as a free slot, so a forward-take-restore-backward
  // cycle reuses memory as the plain stack does.
  std::unique_ptr<SavedContext> take_saved() override {
    if (depth_ == 0) throw std::logic_error("CpuSequence::take_saved: no saved forward");
    std::unique_ptr<SavedContext> out = std::move(saved_[--depth_]);
    saved_.erase(saved_.begin() + std::ptrdiff_t(depth_));
    return out;
  }
  void restore_saved(std::unique_ptr<SavedContext> saved) override {
    auto* own = dynamic_cast<Saved*>(saved.get());
    if (!own || own->owner != this)
      throw std::invalid_argument("restore_saved: the saved forward belongs to another layer");
    saved_.insert(saved_.begin() + std::ptrdiff_t(depth_), std::unique_ptr<Saved>(own));
    saved.release();  // now owned by saved_
    ++depth_;
  }

 private:
  RecurrentConfig cfg_;
  std::vector<LaneLayout> lanes_;  // [L*D]
  AlignedVec<T> params_, grads_;   // [P] each, PyTorch's order

  // What one forward call keeps for its backward. Training forwards stack up (a layer called
  // several times before backward, as a shared layer or a cell stepped through time is) and each
  // backward consumes the newest: saved_[0, depth_) wait for backward; the slots above are
  // reused, so a layer's steady state allocates nothing per call.
  struct Saved final : SavedContext {
    const CpuSequence* owner = nullptr;  // restore_saved accepts its own contexts only
    Packing pk;
    Workspace<T> ws;
    // Without lengths the packed layout is the caller's: the first layer reads x in place and the
    // last layer writes y in place (both kept for backward and checked unchanged by a hash).
    const T* x_in = nullptr;  // [N, I] the caller's x, or null (then ws.x0)
    T* y_out = nullptr;       // [N, D*R] the caller's y, or null (then ws.Y[L-1])
    std::uint64_t x_hash = 0, y_hash = 0;
    // Initial states in sorted batch order: h-like [L*D, B, R], c-like [L*D, B, H].
    AlignedVec<T> h0s, c0s;
    bool dropout_active = false;
    std::uint64_t seed = 0;  // the call's dropout_seed: zoneout's and recurrent dropout's streams
    std::int64_t batch_offset = 0;  // the call's batch_offset (the masks' sequence keys)
  };
  std::vector<std::unique_ptr<Saved>> saved_;
  std::size_t depth_ = 0;
  Saved* s_ = nullptr;  // the context of the call in progress
  bool int8_ = false;   // the call in progress is an int8 inference (ForwardCall::int8)

  Saved& slot(std::size_t i) {
    while (saved_.size() <= i) {
      saved_.push_back(std::make_unique<Saved>());
      saved_.back()->owner = this;
    }
    return *saved_[i];
  }

  // Scratch of one call (nothing here outlives it).
  AlignedVec<T> hns_, cns_;  // final states in sorted order
  AlignedVec<T> dA_, dB_;    // [N, max(I, D*R)] gradient ping-pong
  AlignedVec<T> dhns_, dcns_, dh0s_, dc0s_;
  Scratch<T> sc_[2];  // one per direction (the two may run at once)

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
    if (cfg_.layer_norm) {
      p.ln_x = params_.data() + lo.ln_x;
      p.ln_h = params_.data() + lo.ln_h;
      p.dln_x = grads_.data() + lo.ln_x;
      p.dln_h = grads_.data() + lo.ln_h;
      if (cfg_.states() == 2) {
        p.ln_c = params_.data() + lo.ln_c;
        p.ln_cb = params_.data() + lo.ln_cb;
        p.dln_c = grads_.data() + lo.ln_c;
        p.dln_cb = grads_.data() + lo.ln_cb;
      }
    }
    return p;
  }

  // Lane k's zoneout / recurrent dropout for the call in progress.
  LaneRandom lane_random(Index k, bool training) const {
    LaneRandom r;
    r.zoneout = cfg_.zoneout;
    r.recurrent_dropout = cfg_.recurrent_dropout;
    r.training = training;
    r.key = mix64(s_->seed ^ mix64(0x6c616e6500000000ULL + std::uint64_t(k)));
    r.batch_offset = s_->batch_offset;
    return r;
  }

  LaneShape lane_shape(Index d) const {
    return {d == 1, Index(cfg_.hidden_size), Index(cfg_.state_size()), int8_};
  }

  const T* input0() const { return s_->x_in ? s_->x_in : s_->ws.x0; }
  T* output(Index l) {
    return (l == cfg_.num_layers - 1 && s_->y_out) ? s_->y_out : s_->ws.Y[std::size_t(l)];
  }

  // Both directions of a bidirectional layer run their step loops side by side, one thread each,
  // when the team has 2 or 3 threads: no barrier per step and full-width per-step GEMMs (a
  // measured win over splitting each direction's units across the two threads). With 4+
  // threads every direction gets the whole team instead.
  // Small problems stay on one thread: waking a second costs more than the whole loop.
  bool concurrent_directions() const {
    const int nth = get_num_threads();
    const double H = cfg_.hidden_size, work = 2.0 * s_->pk.N * cfg_.gates() * H * cfg_.state_size();
    return cfg_.bidirectional && nth >= 2 && nth < 4 && work >= double(1 << 22);
  }

  // [L*D, B, H] in batch order -> sorted order (zeros when src is null), and back; H is the
  // width of the state (R for h, hidden_size for c).
  void to_sorted(const T* src, Index H, AlignedVec<T>& dst) const {
    const Index LD = cfg_.num_layers * cfg_.directions(), B = s_->pk.B;
    dst.assign(std::size_t(LD * B * H), T(0));
    if (!src) return;
    for (Index k = 0; k < LD; ++k)
      for (Index i = 0; i < B; ++i)
        std::memcpy(&dst[(k * B + i) * H], src + (k * B + s_->pk.perm[i]) * H, sizeof(T) * H);
  }
  void from_sorted(const AlignedVec<T>& src, Index H, T* dst) const {
    if (!dst) return;
    const Index LD = cfg_.num_layers * cfg_.directions(), B = s_->pk.B;
    for (Index k = 0; k < LD; ++k)
      for (Index i = 0; i < B; ++i)
        std::memcpy(dst + (k * B + s_->pk.perm[i]) * H, &src[(k * B + i) * H], sizeof(T) * H);
  }
  // Padded [T, B, C] (batch order) <-> packed [N, C] (sorted order). Padding rows read as zero.
  void pack(const T* src, Index C, T* dst) const {
    for (Index t = 0; t < s_->pk.T; ++t)
      for (Index i = 0; i < s_->pk.bs[t]; ++i)
        std::memcpy(dst + (s_->pk.off[t] + i) * C, src + (t * s_->pk.B + s_->pk.perm[i]) * C,
                    sizeof(T) * C);
  }
  void unpack(const T* src, Index C, T* dst) const {
    if (!s_->pk.ragged) {
      std::memcpy(dst, src, sizeof(T) * std::size_t(s_->pk.N * C));
      return;
    }
    for (Index t = 0; t < s_->pk.T; ++t)
      for (Index i = 0; i < s_->pk.B; ++i) {
        T* row = dst + (t * s_->pk.B + s_->pk.perm[i]) * C;
        if (i < s_->pk.bs[t])
          std::memcpy(row, src + (s_->pk.off[t] + i) * C, sizeof(T) * C);
        else
          std::fill(row, row + C, T(0));
      }
  }

  // Inverted dropout on layer l's input prev [N, D*R] into s_->ws.Xd[l], the scales into
  // s_->ws.mask[l]; each mask value depends on (seed, layer, position) only.
  void drop_inputs(Index l, const T* prev, std::uint64_t seed) {
    const Index DH = cfg_.directions() * cfg_.state_size();
    const double p = cfg_.dropout;
    const T scale = T(1.0 / (1.0 - p));
    const std::uint64_t key = mix64(seed ^ mix64(std::uint64_t(l)));
    T* mask = s_->ws.mask[std::size_t(l)];
    T* xd = s_->ws.Xd[std::size_t(l)];
    for (Index t = 0; t < s_->pk.T; ++t)
      for (Index i = 0; i < s_->pk.bs[t]; ++i) {
        const Index row = s_->pk.off[t] + i;
        const std::uint64_t pos = sequence_key(key, s_->batch_offset + s_->pk.perm[i]) +
                                  std::uint64_t(t) * std::uint64_t(DH);
        for (Index j = 0; j < DH; ++j) {
          const double u = double(mix64(pos + std::uint64_t(j)) >> 11) * 0x1.0p-53;
          const T keep = u >= p ? scale : T(0);
          mask[row * DH + j] = keep;
          xd[row * DH + j] = prev[row * DH + j] * keep;
        }
      }
  }

  template <typename Cell>
  void forward_with(const ForwardCall<T>& call) {
    constexpr bool has_c = Cell::kStates == 2;
    s_->pk.build(call.steps, call.batch, call.lengths);
    const Index L = cfg_.num_layers, D = cfg_.directions(), H = cfg_.hidden_size;
    const Index R = cfg_.state_size(), DH = D * R;
    const Index I = cfg_.input_size, B = s_->pk.B, N = s_->pk.N;
    s_->dropout_active = call.training && call.stochastic && cfg_.dropout > 0.0 && L > 1;
    s_->seed = call.dropout_seed;
    s_->batch_offset = call.batch_offset;
    const bool direct = !s_->pk.ragged;
    s_->ws.template plan<Cell>(cfg_, s_->pk, call.training, s_->dropout_active, direct);

    s_->x_in = direct ? call.x : nullptr;
    s_->y_out = direct ? call.y : nullptr;
    if (!direct) pack(call.x, I, s_->ws.x0);
    to_sorted(call.h0, R, s_->h0s);
    if (has_c) to_sorted(call.c0, H, s_->c0s);
    hns_.assign(std::size_t(L * D * B * R), T(0));
    if (has_c) cns_.assign(std::size_t(L * D * B * H), T(0));
    for (auto& sc : sc_) sc.reserve(B, H, Cell::kGates * H, cfg_.layer_norm);

    const T* X = input0();
    Index ldx = I;
    for (Index l = 0; l < L; ++l) {
      if (l > 0) {
        const T* prev = output(l - 1);
        if (s_->dropout_active) {
          drop_inputs(l, prev, call.dropout_seed);
          X = s_->ws.Xd[std::size_t(l)];
        } else {
          X = prev;
        }
        ldx = DH;
      }
      T* Yl = output(l);
      auto run = [&](Index d, int phases) {
        const Index k = l * D + d, h_at = k * B * R, c_at = k * B * H;
        lane_forward<Cell>(lane_shape(d), s_->pk, lane_params(k), X, ldx, Yl + d * R, DH,
                           s_->h0s.data() + h_at, has_c ? s_->c0s.data() + c_at : nullptr,
                           hns_.data() + h_at, has_c ? cns_.data() + c_at : nullptr,
                           s_->ws.lanes[std::size_t(k)], sc_[d], lane_random(k, call.training),
                           phases);
      };
      if (concurrent_directions()) {
        for (Index d = 0; d < D; ++d) run(d, kProject);
#ifdef _OPENMP
#pragma omp parallel num_threads(2)
#endif
        {
          DenormalScope flush;
          run(thread_id(), kSteps);
        }
      } else {
        for (Index d = 0; d < D; ++d) run(d, kAll);
      }
    }
    if (!direct) unpack(s_->ws.Y[std::size_t(L - 1)], DH, call.y);
    from_sorted(hns_, R, call.hn);
    if (has_c) from_sorted(cns_, H, call.cn);
    if (call.training && direct) {
      s_->x_hash = content_hash(call.x, N * I);
      s_->y_hash = content_hash(call.y, N * DH);
    }
  }

  template <typename Cell>
  void backward_with(const BackwardCall<T>& call) {
    constexpr bool has_c = Cell::kStates == 2;
    const Index L = cfg_.num_layers, D = cfg_.directions(), H = cfg_.hidden_size;
    const Index R = cfg_.state_size(), DH = D * R;
    const Index I = cfg_.input_size, B = s_->pk.B, N = s_->pk.N;
    if (s_->x_in || s_->y_out) {
      if (content_hash(s_->x_in, N * I) != s_->x_hash)
        throw std::runtime_error(
            "x was modified in place after forward; backward needs the x of that forward");
      if (content_hash(s_->y_out, N * DH) != s_->y_hash)
        throw std::runtime_error(
            "y (the forward output) was modified in place; backward needs it unchanged "
            "(copy it before editing)");
    }

    // Without lengths the packed layout is the caller's [T, B, ·] layout: dy is read in place and
    // the first layer writes dx directly. Scratch is needed only for repacking and between layers.
    const bool direct = !s_->pk.ragged;
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
    if (norms) std::fill(norms, norms + L * D * s_->pk.T, 0.0);
    dh0s_.assign(std::size_t(L * D * B * R), T(0));
    if (has_c) dc0s_.assign(std::size_t(L * D * B * H), T(0));

    for (Index l = L - 1; l >= 0; --l) {
      const T* X =
          l == 0 ? input0() : (s_->dropout_active ? s_->ws.Xd[std::size_t(l)] : output(l - 1));
      const Index ldx = l == 0 ? I : DH;
      T* dXl = (l == 0 && direct) ? call.dx : (dYl == dA_.data()) ? dB_.data() : dA_.data();
      auto run = [&](Index d, int phases) {
        const Index k = l * D + d, h_at = k * B * R, c_at = k * B * H;
        lane_backward<Cell>(lane_shape(d), s_->pk, lane_params(k), X, ldx, output(l) + d * R, DH,
                            dYl ? dYl + d * R : nullptr, s_->h0s.data() + h_at,
                            has_c ? s_->c0s.data() + c_at : nullptr,
                            call.dhn ? dhns_.data() + h_at : nullptr,
                            (has_c && call.dcn) ? dcns_.data() + c_at : nullptr,
                            dh0s_.data() + h_at, has_c ? dc0s_.data() + c_at : nullptr, dXl,
                            /*accumulate_dx=*/d > 0, norms ? norms + k * s_->pk.T : nullptr,
                            s_->ws.lanes[std::size_t(k)], sc_[d], lane_random(k, true), phases);
      };
      if (concurrent_directions()) {
#ifdef _OPENMP
#pragma omp parallel num_threads(2)
#endif
        {
          DenormalScope flush;
          run(thread_id(), kSteps);
        }
        for (Index d = 0; d < D; ++d) run(d, kGrads);
      } else {
        for (Index d = 0; d < D; ++d) run(d, kAll);
      }
      if (l > 0 && s_->dropout_active) {
        auto g = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>(dXl, N * DH);
        g *= Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(s_->ws.mask[std::size_t(l)],
                                                                  N * DH);
      }
      dYl = dXl;
    }
    if (norms)
      for (Index i = 0; i < L * D * s_->pk.T; ++i) norms[i] = std::sqrt(norms[i]);
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
