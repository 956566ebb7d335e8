// Public C++ API of the recurrent sequence layers: stacked, optionally bidirectional RNN/LSTM/GRU.
//
// Layout legend for the whole engine (stated once, used everywhere):
//   T steps, B batch, I input features, H hidden units, L layers, D directions (1 or 2),
//   G gates per cell (RNN 1, GRU 3, LSTM 4). Tensors are dense, row-major, time-major:
//   x [T,B,I], y [T,B,D*H], states [L*D,B,H]. Gate order inside a [G*H] block follows PyTorch:
//   LSTM (i, f, g, o), GRU (r, z, n). Weights per layer l and direction d, as in PyTorch:
//   weight_ih [G*H, I_l], weight_hh [G*H, H], bias_ih [G*H], bias_hh [G*H], where I_0 = I and
//   I_l = D*H above the first layer. Parameters and their gradients live in one flat buffer each,
//   in that order (l, d, weight_ih, weight_hh, bias_ih, bias_hh), so optimizers run in one call.
//   An LSTM with proj_size P (R below; R = H without one) has h of size P: y [T,B,D*P], h states
//   [L*D,B,P] (c stays [L*D,B,H]), weight_hh [4H, P], I_l = D*P, and weight_hr [P, H] after the
//   biases of each lane. With layer_norm each lane's norm parameters come last (see the config).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "rnncore/backend.h"

namespace rnncore {

/// The engine's cells. Each is one header under cpp/src/cells/ and one entry of the registry
/// (cpp/src/cells/registry.h); registered_cells() lists them with their names.
enum class CellType : int {
  kRnnTanh = 0,
  kRnnRelu = 1,
  kLstm = 2,
  kGru = 3,
  kGruV1 = 4,
  kGatedResidual = 5,  // the lecture's gated cells (cells/gated.h)
  kGatedInput = 6,
  kGatedForget = 7,
};

/// What the registry says of one cell.
struct CellInfo {
  CellType id;
  const char* name;          // config, CLI and checkpoint name: "rnn", "lstm", "gru_v1", ...
  const char* torch_mode;    // PyTorch's mode string ("RNN_TANH", "LSTM", "GRU", ...)
  const char* layer;         // the rnncore.nn layer class ("RNN", "LSTM", "GRU")
  const char* layer_option;  // "key=value" of that class's constructor that selects the cell, or ""
  int gates;                 // G: gate blocks of H rows in weight_ih / weight_hh
  int states;                // 1 (h) or 2 (h and the cell state c)
  bool layer_norm;           // whether RecurrentConfig::layer_norm is available for it
};

/// Every registered cell, in CellType order.
const std::vector<CellInfo>& registered_cells();
/// The registry entry of a cell; throws std::invalid_argument for an unknown id.
const CellInfo& cell_info(CellType cell);
/// The entry named `name` (CellInfo::name), or nullptr.
const CellInfo* find_cell(const std::string& name);

/// Number of gate blocks G of a cell (RNN 1, GRU 3, LSTM 4).
int num_gates(CellType cell);

/// PyTorch's mode string of the cell ("RNN_TANH", "RNN_RELU", "LSTM", "GRU").
const char* cell_name(CellType cell);

struct RecurrentConfig {
  CellType cell = CellType::kLstm;
  int input_size = 0;
  int hidden_size = 0;
  int num_layers = 1;
  bool bidirectional = false;
  bool bias = true;
  double dropout = 0.0;          // between layers, training only
  Device device = Device::kCpu;  // a build without CUDA refuses kCuda (std::runtime_error)
  // LSTM only (PyTorch's LSTMP): 0, or P in [1, H): h_t = W_hr (o_t ⊙ tanh(c_t)) has size P
  // (c stays H), W_hh is [4H, P], layers above the first take D*P inputs, and each lane gets
  // weight_hr [P, H] after its biases.
  int proj_size = 0;
  // Zoneout (Krueger et al. 2016), in [0, 1): in training each unit of h (and of an LSTM's c)
  // keeps its previous value with this probability, a fresh draw per step; in inference the
  // expectation h = p h_prev + (1 - p) h~. Not with proj_size.
  double zoneout = 0.0;
  // Recurrent dropout (Gal & Ghahramani 2016), in [0, 1): in training h_{t-1} entering the
  // recurrent weights is multiplied by one inverted-dropout mask per sequence and lane, the same
  // at every step; off in inference. Not with proj_size.
  double recurrent_dropout = 0.0;
  // Layer normalisation in the recurrence (Ba et al. 2016), for the cells whose CellInfo says so
  // (lstm, gru): v = γ_x ⊙ LN(W_ih x) + γ_h ⊙ LN(W_hh h) + b_ih + b_hh, each LN over the row's
  // G*H pre-activations, and the LSTM's h = o ⊙ tanh(γ_c ⊙ LN(c) + β_c). Each lane gets
  // ln_weight_ih [G*H] (γ_x), ln_weight_hh [G*H] (γ_h) and for the LSTM ln_weight_c [H] (γ_c),
  // ln_bias_c [H] (β_c), after its other parameters.
  bool layer_norm = false;

  int gates() const { return num_gates(cell); }
  /// 2 for a cell with a cell state (LSTM's c), else 1.
  int states() const { return cell_info(cell).states; }
  /// R: the size of h (and of each direction's output): proj_size if set, else hidden_size.
  int state_size() const { return proj_size > 0 ? proj_size : hidden_size; }
  int directions() const { return bidirectional ? 2 : 1; }
  /// Throws std::invalid_argument naming the first bad field.
  void validate() const;
};

/// Where one named parameter lives inside the flat buffer. cols == 0 marks a vector [rows].
struct ParamInfo {
  std::string name;
  std::size_t offset;
  std::size_t rows;
  std::size_t cols;
  std::size_t size() const { return cols == 0 ? rows : rows * cols; }
};

/// Sizes of the arrays a forward call reads and writes, derived from the config and (T, B).
struct SequenceShape {
  int steps = 0;  // T
  int batch = 0;  // B
};

namespace detail {
struct SavedContext;
}

/// One training forward taken out of its layer (Recurrent::take_saved): what its backward needs,
/// owned by the caller. An autograd system keeps it with the graph node, so backwards may come
/// in any order and a forward whose backward never comes frees its memory with the handle.
/// Movable only; empty once given back (restore_saved) or default-constructed.
class SavedForward {
 public:
  SavedForward();
  ~SavedForward();
  SavedForward(SavedForward&&) noexcept;
  SavedForward& operator=(SavedForward&&) noexcept;
  SavedForward(const SavedForward&) = delete;
  SavedForward& operator=(const SavedForward&) = delete;
  bool empty() const { return context_ == nullptr; }
  /// (T, B) of the forward.
  SequenceShape shape() const { return shape_; }

 private:
  template <typename>
  friend class Recurrent;
  SequenceShape shape_{};
  const void* owner_ = nullptr;  // the layer's state it came from
  std::unique_ptr<detail::SavedContext> context_;
};

template <typename Scalar>
class Recurrent {
 public:
  explicit Recurrent(const RecurrentConfig& config);
  ~Recurrent();
  Recurrent(Recurrent&&) noexcept;
  Recurrent& operator=(Recurrent&&) noexcept;
  Recurrent(const Recurrent&) = delete;
  Recurrent& operator=(const Recurrent&) = delete;

  /// The parameters a layer of `config` has, in the flat buffer's order (validates the config;
  /// allocates nothing else): what a loader checks a file against before building the layer.
  static std::vector<ParamInfo> param_layout(const RecurrentConfig& config);

  const RecurrentConfig& config() const;
  const std::vector<ParamInfo>& param_info() const;
  std::size_t num_params() const;
  Scalar* params();  // [num_params]
  const Scalar* params() const;
  Scalar* grads();  // [num_params], same layout; backward accumulates (+=)
  const Scalar* grads() const;
  void zero_grad();

  /// Whole-sequence forward.
  ///   x       [T,B,I]
  ///   lengths [B] in [1,T], or nullptr for all T (PyTorch packed-sequence semantics)
  ///   h0      [L*D,B,R] or nullptr for zeros; c0 [L*D,B,H] or nullptr (cells with a c only)
  ///   y       [T,B,D*R] out; zero past each sequence's end
  ///   hn, cn  [L*D,B,R], [L*D,B,H] out; the state at each sequence's own last step (cn may be
  ///           null)
  /// training=true keeps what backward needs (and applies dropout between layers, drawn from
  /// dropout_seed); training=false keeps nothing. Throws std::invalid_argument on bad sizes.
  /// Without lengths, a training forward reads x and writes y in place and keeps pointers to
  /// both: they must stay alive and unchanged until backward (which checks, and throws
  /// std::runtime_error if either was modified).
  /// stochastic=false (training only) saves for backward without dropout between layers: a
  /// module in evaluation mode whose output still needs gradients. With zoneout or recurrent
  /// dropout it throws std::invalid_argument (their inference forms have no backward).
  /// batch_offset: the index of this call's first sequence in a larger batch that other
  /// processes share (data parallelism). Every random draw (dropout between layers, zoneout,
  /// recurrent dropout) is keyed by (dropout_seed, layer, the sequence's index in that batch,
  /// step), never by the batch size, so a slice draws exactly what the whole batch would.
  void forward(int steps, int batch, const Scalar* x, const std::int64_t* lengths, const Scalar* h0,
               const Scalar* c0, Scalar* y, Scalar* hn, Scalar* cn, bool training,
               std::uint64_t dropout_seed = 0, bool stochastic = true,
               std::int64_t batch_offset = 0);

  /// BPTT over the newest training forward not yet consumed. Each training forward is saved (a
  /// layer may run several before backward: a shared layer, a cell stepped through time), and
  /// each backward consumes the newest, last in first out, as reverse-mode differentiation visits
  /// the calls. Activation gradients are written (=), parameter gradients accumulate (+=). With
  /// nothing saved it throws.
  ///   dy       [T,B,D*R] or nullptr (zeros)
  ///   dhn, dcn [L*D,B,R], [L*D,B,H] or nullptr (zeros): gradients of the final states
  ///   dx       [T,B,I] out
  ///   dh0, dc0 [L*D,B,R], [L*D,B,H] out (dc0 only for LSTM; either may be nullptr)
  ///   step_grad_norms [L*D,T] out or nullptr: ||dL/dh_t|| over the batch for every layer,
  ///            direction and step (the vanishing/exploding-gradient diagnostic)
  void backward(const Scalar* dy, const Scalar* dhn, const Scalar* dcn, Scalar* dx, Scalar* dh0,
                Scalar* dc0, double* step_grad_norms = nullptr);

  /// The GPU devices ("cuda", "cuda-sim") only: forward() on the device's memory, with no host
  /// round trip (how rnncore.torch runs on torch CUDA tensors). x, h0, c0, y, hn, cn are device
  /// pointers (for "cuda-sim", host memory), shaped as for forward(); lengths stays on the host.
  /// params: the flat parameters [num_params] on the device in param_info()'s layout, read in
  /// place (they must stay alive and unchanged until backward), or nullptr for the layer's own
  /// (params(), uploaded). A training forward is consumed by backward_on_device with the same
  /// params. std::invalid_argument on a CPU layer.
  void forward_on_device(int steps, int batch, const Scalar* x, const std::int64_t* lengths,
                         const Scalar* h0, const Scalar* c0, Scalar* y, Scalar* hn, Scalar* cn,
                         const Scalar* params, bool training, std::uint64_t dropout_seed = 0,
                         bool stochastic = true, std::int64_t batch_offset = 0);

  /// backward() on the device's memory: dy, dhn, dcn (each may be nullptr), dx, dh0, dc0 are
  /// device pointers; params must be what the forward read (std::invalid_argument otherwise);
  /// grads: a device buffer [num_params] the parameter gradients accumulate into (+=), or
  /// nullptr for the layer's own grads(); step_grad_norms: host memory [L*D,T] or nullptr, as
  /// for backward(). std::invalid_argument on a CPU layer.
  void backward_on_device(const Scalar* dy, const Scalar* dhn, const Scalar* dcn, Scalar* dx,
                          Scalar* dh0, Scalar* dc0, const Scalar* params, Scalar* grads,
                          double* step_grad_norms = nullptr);

  /// Int8 inference (float32 layers on the CPU): inference forwards multiply by W_ih and W_hh in
  /// int8, as PyTorch's quantize_dynamic does: each weight row quantized to int8 per call (the
  /// parameters themselves stay float32), each input row quantized on the fly to 7 bits, the
  /// products accumulated exactly in int32 and scaled back; biases, gates, states, layer norm and
  /// proj_size's W_hr stay float32. About 4x less weight traffic and 4x more multiply-adds per
  /// instruction (batch-1 latency); outputs differ from float32 by the quantization error (a few
  /// 1e-3 on a PyTorch-initialised LSTM). Training forwards ignore it. std::invalid_argument for
  /// a float64 layer, a GPU layer or a layer-normalised one (the norm scales the quantization
  /// error up to the gates' scale).
  void set_int8_inference(bool on);
  bool int8_inference() const;

  /// True while some training forward waits for its backward.
  bool has_saved_forward() const;
  /// How many training forwards wait for their backward.
  int saved_forwards() const;
  /// Bytes of memory (host, or the GPU's) those saved forwards hold (one taken out with
  /// take_saved() counts again once restored).
  std::size_t saved_bytes() const;
  /// (T, B) of the forward the next backward consumes (valid when has_saved_forward()).
  SequenceShape saved_shape() const;
  /// Drops every saved forward and the memory it holds (a forward whose backward never comes).
  void discard_saved();
  /// Moves the newest saved forward out of the layer (std::runtime_error if there is none).
  /// x and y of a forward without lengths must still stay alive and unchanged until backward.
  SavedForward take_saved();
  /// Makes `saved` the newest saved forward again, so that the next backward consumes it.
  /// std::invalid_argument if it is empty (its backward already ran) or came from another layer.
  void restore_saved(SavedForward&& saved);

 private:
  void run_forward(int steps, int batch, const Scalar* x, const std::int64_t* lengths,
                   const Scalar* h0, const Scalar* c0, Scalar* y, Scalar* hn, Scalar* cn,
                   const Scalar* params, bool on_device, bool training, std::uint64_t dropout_seed,
                   bool stochastic, std::int64_t batch_offset);
  void run_backward(const Scalar* dy, const Scalar* dhn, const Scalar* dcn, Scalar* dx, Scalar* dh0,
                    Scalar* dc0, double* step_grad_norms, bool on_device, const Scalar* params,
                    Scalar* grads);

  struct Impl;
  std::unique_ptr<Impl> impl_;
};

extern template class Recurrent<float>;
extern template class Recurrent<double>;

}  // namespace rnncore
