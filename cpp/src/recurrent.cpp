// rnncore::Recurrent: the configuration, the parameter layout and the argument checks of the
// sequence layers; the work is done by the backend of the layer's device (sequence.h).
#include "rnncore/recurrent.h"

#include <stdexcept>
#include <string>
#include <type_traits>

#include "sequence.h"

namespace rnncore {

namespace {

// The flat parameter buffer's layout, PyTorch's order: for each layer l and direction d,
// weight_ih, weight_hh, bias_ih, bias_hh (with bias), weight_hr (with proj_size). Sizes in 64 bits:
// a configuration is refused (by validate) or allocates what it says, never a wrapped-around size.
struct Layout {
  std::vector<ParamInfo> params;
  std::vector<detail::LaneLayout> lanes;  // [L*D]
  std::size_t size = 0;
};

Layout layout_of(const RecurrentConfig& cfg) {
  cfg.validate();
  const std::int64_t L = cfg.num_layers, D = cfg.directions(), H = cfg.hidden_size;
  const std::int64_t R = cfg.state_size();
  const std::size_t GH = std::size_t(cfg.gates()) * std::size_t(H);
  Layout out;
  auto add = [&](const std::string& name, std::size_t rows, std::size_t cols) {
    out.params.push_back({name, out.size, rows, cols});
    out.size += cols == 0 ? rows : rows * cols;
    return out.params.back().offset;
  };
  for (std::int64_t l = 0; l < L; ++l) {
    for (std::int64_t d = 0; d < D; ++d) {
      const std::string sfx = "_l" + std::to_string(l) + (d == 1 ? "_reverse" : "");
      detail::LaneLayout lo{};
      lo.input_size = l == 0 ? cfg.input_size : D * R;
      lo.Wx = add("weight_ih" + sfx, GH, std::size_t(lo.input_size));
      lo.Wh = add("weight_hh" + sfx, GH, std::size_t(R));
      if (cfg.bias) {
        lo.bx = add("bias_ih" + sfx, GH, 0);
        lo.bh = add("bias_hh" + sfx, GH, 0);
      }
      if (cfg.proj_size > 0) lo.Wr = add("weight_hr" + sfx, std::size_t(R), std::size_t(H));
      if (cfg.layer_norm) {
        lo.ln_x = add("ln_weight_ih" + sfx, GH, 0);
        lo.ln_h = add("ln_weight_hh" + sfx, GH, 0);
        if (cfg.states() == 2) {
          lo.ln_c = add("ln_weight_c" + sfx, std::size_t(H), 0);
          lo.ln_cb = add("ln_bias_c" + sfx, std::size_t(H), 0);
        }
      }
      out.lanes.push_back(lo);
    }
  }
  return out;
}

}  // namespace

template <typename T>
struct Recurrent<T>::Impl {
  RecurrentConfig cfg;
  std::vector<ParamInfo> info;
  std::size_t num_params = 0;
  std::unique_ptr<detail::SequenceBackend<T>> backend;
  std::vector<SequenceShape> saved;  // training forwards waiting for their backward, oldest first
  bool int8 = false;                 // set_int8_inference

  explicit Impl(const RecurrentConfig& c) : cfg(c) {
    Layout layout = layout_of(cfg);
    require_device(cfg.device);
    info = std::move(layout.params);
    num_params = layout.size;
    switch (cfg.device) {
      case Device::kCpu:
        backend = detail::make_cpu_sequence<T>(cfg, std::move(layout.lanes), num_params);
        break;
      case Device::kCudaSim:
        backend = detail::make_sim_sequence<T>(cfg, std::move(layout.lanes), num_params);
        break;
      case Device::kCuda:
#ifdef RNNCORE_WITH_CUDA
        backend = detail::make_cuda_sequence<T>(cfg, std::move(layout.lanes), num_params);
        break;
#endif
      default:
        throw std::runtime_error("device: no backend for " + std::string(device_name(cfg.device)));
    }
    // Layer norm's gains start at 1 (the identity), everything else at 0 until the caller sets it.
    for (const ParamInfo& p : info)
      if (p.name.rfind("ln_weight", 0) == 0)
        std::fill(backend->params() + p.offset, backend->params() + p.offset + p.size(), T(1));
  }
};

template <typename T>
std::vector<ParamInfo> Recurrent<T>::param_layout(const RecurrentConfig& config) {
  return layout_of(config).params;
}

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
  return impl_->num_params;
}
template <typename T>
T* Recurrent<T>::params() {
  return impl_->backend->params();
}
template <typename T>
const T* Recurrent<T>::params() const {
  return impl_->backend->params();
}
template <typename T>
T* Recurrent<T>::grads() {
  return impl_->backend->grads();
}
template <typename T>
const T* Recurrent<T>::grads() const {
  return impl_->backend->grads();
}
template <typename T>
void Recurrent<T>::zero_grad() {
  impl_->backend->zero_grad();
}
template <typename T>
bool Recurrent<T>::has_saved_forward() const {
  return !impl_->saved.empty();
}
template <typename T>
int Recurrent<T>::saved_forwards() const {
  return int(impl_->saved.size());
}
template <typename T>
std::size_t Recurrent<T>::saved_bytes() const {
  return impl_->backend->saved_bytes();
}
template <typename T>
SequenceShape Recurrent<T>::saved_shape() const {
  return impl_->saved.empty() ? SequenceShape{} : impl_->saved.back();
}
template <typename T>
void Recurrent<T>::discard_saved() {
  impl_->saved.clear();
  impl_->backend->discard_saved();
}

SavedForward::SavedForward() = default;
SavedForward::~SavedForward() = default;
SavedForward::SavedForward(SavedForward&&) noexcept = default;
SavedForward& SavedForward::operator=(SavedForward&&) noexcept = default;

template <typename T>
SavedForward Recurrent<T>::take_saved() {
  Impl& m = *impl_;
  if (m.saved.empty()) throw std::runtime_error("take_saved: no training forward is saved");
  SavedForward out;
  out.shape_ = m.saved.back();
  out.owner_ = &m;
  out.context_ = m.backend->take_saved();
  m.saved.pop_back();
  return out;
}

template <typename T>
void Recurrent<T>::restore_saved(SavedForward&& saved) {
  Impl& m = *impl_;
  if (saved.empty())
    throw std::invalid_argument(
        "restore_saved: the saved forward is empty (its backward already ran: each forward "
        "allows one backward)");
  if (saved.owner_ != &m)
    throw std::invalid_argument("restore_saved: the saved forward belongs to another layer");
  m.backend->restore_saved(std::move(saved.context_));
  m.saved.push_back(saved.shape_);
  saved.owner_ = nullptr;
}

template <typename T>
void Recurrent<T>::set_int8_inference(bool on) {
  if (on && !std::is_same_v<T, float>)
    throw std::invalid_argument("int8 inference is for float32 layers (this one is float64)");
  if (on && impl_->cfg.device != Device::kCpu)
    throw std::invalid_argument(std::string("int8 inference runs on the CPU engine, not device '") +
                                device_name(impl_->cfg.device) + "'");
  // Layer norm divides each row of a product by its standard deviation, which scales the
  // quantization error up to the gates' scale: measured ~0.1 on h against ~2e-3 without it.
  if (on && impl_->cfg.layer_norm)
    throw std::invalid_argument(
        "int8 inference is not offered for layer-normalised layers (the norm scales the "
        "quantization error up to the gates' scale)");
  impl_->int8 = on;
}

template <typename T>
bool Recurrent<T>::int8_inference() const {
  return impl_->int8;
}

namespace {

// The GPU backends take calls on their own memory; the CPU engine has no such thing.
void require_gpu_device(const RecurrentConfig& cfg, const char* what) {
  if (cfg.device == Device::kCpu)
    throw std::invalid_argument(std::string(what) +
                                ": the layer is on the CPU; calls on device memory need a layer "
                                "on 'cuda' or 'cuda-sim'");
}

}  // namespace

template <typename T>
void Recurrent<T>::forward(int steps, int batch, const T* x, const std::int64_t* lengths,
                           const T* h0, const T* c0, T* y, T* hn, T* cn, bool training,
                           std::uint64_t dropout_seed, bool stochastic, std::int64_t batch_offset) {
  run_forward(steps, batch, x, lengths, h0, c0, y, hn, cn, nullptr, false, training, dropout_seed,
              stochastic, batch_offset);
}

template <typename T>
void Recurrent<T>::forward_on_device(int steps, int batch, const T* x, const std::int64_t* lengths,
                                     const T* h0, const T* c0, T* y, T* hn, T* cn, const T* params,
                                     bool training, std::uint64_t dropout_seed, bool stochastic,
                                     std::int64_t batch_offset) {
  require_gpu_device(impl_->cfg, "forward_on_device");
  run_forward(steps, batch, x, lengths, h0, c0, y, hn, cn, params, true, training, dropout_seed,
              stochastic, batch_offset);
}

template <typename T>
void Recurrent<T>::run_forward(int steps, int batch, const T* x, const std::int64_t* lengths,
                               const T* h0, const T* c0, T* y, T* hn, T* cn, const T* params,
                               bool on_device, bool training, std::uint64_t dropout_seed,
                               bool stochastic, std::int64_t batch_offset) {
  Impl& m = *impl_;
  if (training && !stochastic && (m.cfg.zoneout > 0.0 || m.cfg.recurrent_dropout > 0.0))
    throw std::invalid_argument(
        "a deterministic training forward (stochastic=false) does not combine with zoneout or "
        "recurrent dropout");
  if (steps < 1) throw std::invalid_argument("x: sequence length T must be >= 1");
  if (batch < 1) throw std::invalid_argument("x: batch size B must be >= 1");
  if (!x || !y) throw std::invalid_argument("x and y must not be null");
  if (batch_offset < 0)
    throw std::invalid_argument("batch_offset must be >= 0, got " + std::to_string(batch_offset));
  if (lengths)
    for (int b = 0; b < batch; ++b)
      if (lengths[b] < 1 || lengths[b] > steps)
        throw std::invalid_argument("lengths must be in [1, " + std::to_string(steps) + "], got " +
                                    std::to_string(lengths[b]) + " at index " + std::to_string(b));
  if (m.cfg.states() == 1 && c0)
    throw std::invalid_argument(std::string("c0: a ") + cell_info(m.cfg.cell).name +
                                " cell has no cell state");
  detail::ForwardCall<T> call;
  call.steps = steps;
  call.batch = batch;
  call.x = x;
  call.lengths = lengths;
  call.h0 = h0;
  call.c0 = c0;
  call.y = y;
  call.hn = hn;
  call.cn = m.cfg.states() == 2 ? cn : nullptr;
  call.training = training;
  call.stochastic = stochastic;
  call.dropout_seed = dropout_seed;
  call.batch_offset = batch_offset;
  call.on_device = on_device;
  call.device_params = params;
  call.int8 = m.int8 && !training;
  m.backend->forward(call);
  if (training) m.saved.push_back({steps, batch});
}

template <typename T>
void Recurrent<T>::backward(const T* dy, const T* dhn, const T* dcn, T* dx, T* dh0, T* dc0,
                            double* step_grad_norms) {
  run_backward(dy, dhn, dcn, dx, dh0, dc0, step_grad_norms, false, nullptr, nullptr);
}

template <typename T>
void Recurrent<T>::backward_on_device(const T* dy, const T* dhn, const T* dcn, T* dx, T* dh0,
                                      T* dc0, const T* params, T* grads, double* step_grad_norms) {
  require_gpu_device(impl_->cfg, "backward_on_device");
  run_backward(dy, dhn, dcn, dx, dh0, dc0, step_grad_norms, true, params, grads);
}

template <typename T>
void Recurrent<T>::run_backward(const T* dy, const T* dhn, const T* dcn, T* dx, T* dh0, T* dc0,
                                double* step_grad_norms, bool on_device, const T* params,
                                T* grads) {
  Impl& m = *impl_;
  if (m.saved.empty())
    throw std::runtime_error(
        "backward needs a training-mode forward first (and each forward allows one backward)");
  if (!dx) throw std::invalid_argument("dx must not be null");
  if (m.cfg.states() == 1 && dcn)
    throw std::invalid_argument(std::string("dcn: a ") + cell_info(m.cfg.cell).name +
                                " cell has no cell state");
  if (m.backend->saved_device_params() != params)
    throw std::invalid_argument(
        "params must be the parameters the forward read (the same device buffer, or none for "
        "the layer's own)");
  m.saved.pop_back();  // consumed: the saved gates turn into their gradients
  detail::BackwardCall<T> call;
  call.dy = dy;
  call.dhn = dhn;
  call.dcn = dcn;
  call.dx = dx;
  call.dh0 = dh0;
  call.dc0 = m.cfg.states() == 2 ? dc0 : nullptr;
  call.step_grad_norms = step_grad_norms;
  call.on_device = on_device;
  call.device_params = params;
  call.device_grads = grads;
  m.backend->backward(call);
}

template class Recurrent<float>;
template class Recurrent<double>;

}  // namespace rnncore
