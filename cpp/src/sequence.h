// The device seam of the sequence layers: what a backend implements for one Recurrent layer.
//
// rnncore::Recurrent (recurrent.cpp) owns the configuration and the parameter layout, checks every
// argument at the API boundary and then calls a backend, whose kernels trust their inputs. The
// CPU backend is sequence_cpu.cpp; a CUDA backend implements the same class for its memory.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "rnncore/backend.h"
#include "rnncore/recurrent.h"

namespace rnncore::detail {

// One forward call, already checked: shapes as in Recurrent::forward (R = state_size()).
template <typename T>
struct ForwardCall {
  int steps = 0, batch = 0;
  const T* x = nullptr;                   // [T,B,I]
  const std::int64_t* lengths = nullptr;  // [B] in [1,T], or null
  const T* h0 = nullptr;                  // [L*D,B,R] or null
  const T* c0 = nullptr;                  // [L*D,B,H] or null (cells with a cell state)
  T* y = nullptr;                         // [T,B,D*R] out
  T* hn = nullptr;                        // [L*D,B,R] out
  T* cn = nullptr;                        // [L*D,B,H] out or null
  bool training = false;
  // Training only: false keeps what backward needs but draws no dropout between layers (a
  // PyTorch module in eval mode whose output still needs gradients). Recurrent refuses it with
  // zoneout or recurrent dropout, whose inference forms have no backward.
  bool stochastic = true;
  std::uint64_t dropout_seed = 0;
  std::int64_t batch_offset = 0;  // index of sequence 0 in the batch the masks are keyed by
  // The GPU backends only (Recurrent::forward_on_device): x, h0, c0, y, hn, cn are the backend's
  // device memory (no host round trip), and device_params, when set, is the flat parameter
  // buffer [P] on the device, read in place of the layer's own.
  bool on_device = false;
  const T* device_params = nullptr;
  // Inference only, float32 on the CPU (Recurrent::set_int8_inference): the products with W_ih
  // and W_hh in int8 (qgemv.h).
  bool int8 = false;
};

// One backward call over the saved forward, already checked: shapes as in Recurrent::backward.
template <typename T>
struct BackwardCall {
  const T* dy = nullptr;              // [T,B,D*R] or null
  const T* dhn = nullptr;             // [L*D,B,R] or null
  const T* dcn = nullptr;             // [L*D,B,H] or null
  T* dx = nullptr;                    // [T,B,I] out
  T* dh0 = nullptr;                   // [L*D,B,R] out or null
  T* dc0 = nullptr;                   // [L*D,B,H] out or null
  double* step_grad_norms = nullptr;  // [L*D,T] out or null
  // The GPU backends only (Recurrent::backward_on_device): dy, dhn, dcn, dx, dh0, dc0 are device
  // memory; device_params must be what the forward read; device_grads, when set, is a device
  // buffer [P] the parameter gradients accumulate into (+=) instead of the layer's own.
  bool on_device = false;
  const T* device_params = nullptr;
  T* device_grads = nullptr;
};

// Where one lane's (layer l, direction d; lane k = l*D + d) tensors start in the flat parameter
// buffer (offsets in scalars; bias offsets are meaningless without biases).
struct LaneLayout {
  std::int64_t input_size;         // I_l
  std::size_t Wx, Wh, bx, bh, Wr;  // Wr: weight_hr with proj_size (else meaningless)
  // layer_norm: γ_x, γ_h [G*H]; the LSTM's γ_c, β_c [H] (else meaningless)
  std::size_t ln_x, ln_h, ln_c, ln_cb;
};

// What one training forward keeps for its backward, once taken out of its backend
// (SequenceBackend::take_saved): each backend derives its own.
struct SavedContext {
  virtual ~SavedContext() = default;
};

template <typename T>
class SequenceBackend {
 public:
  virtual ~SequenceBackend() = default;
  // The flat parameter and gradient buffers [P] (device memory of the backend).
  virtual T* params() = 0;
  virtual T* grads() = 0;
  virtual void zero_grad() = 0;
  // A training forward pushes its saved context; backward pops the newest (last in, first out).
  virtual void forward(const ForwardCall<T>& call) = 0;
  // Throws std::runtime_error if the backend finds the saved forward's inputs changed.
  virtual void backward(const BackwardCall<T>& call) = 0;
  // The device parameters the newest saved forward read (ForwardCall::device_params), or null.
  virtual const void* saved_device_params() const { return nullptr; }
  // Drops every saved forward (and the memory they hold).
  virtual void discard_saved() = 0;
  // Bytes of memory (host or device) the saved forwards waiting for backward hold.
  virtual std::size_t saved_bytes() const = 0;
  // Moves the newest saved forward out of the backend (there is one: the caller checks).
  virtual std::unique_ptr<SavedContext> take_saved() = 0;
  // Puts a context take_saved returned back as the newest saved forward; std::invalid_argument
  // if it came from another backend.
  virtual void restore_saved(std::unique_ptr<SavedContext> saved) = 0;
};

template <typename T>
std::unique_ptr<SequenceBackend<T>> make_cpu_sequence(const RecurrentConfig& cfg,
                                                      std::vector<LaneLayout> lanes,
                                                      std::size_t num_params);

// Memory operations of a GPU device, behind backend.h's device_alloc / device_copy /
// device_swap01 / device_synchronize: sim_memory() is cuda-sim's (host memory, poisoned when
// allocated, as its layers' buffers are), cuda_memory() the CUDA backend's (CUDA builds only).
struct DeviceMemory {
  virtual ~DeviceMemory() = default;
  virtual void* alloc(std::size_t bytes) = 0;
  virtual void release(void* p) = 0;
  virtual void copy(void* dst, const void* src, std::size_t bytes, CopyKind kind) = 0;
  virtual void zero(void* p, std::size_t bytes) = 0;
  virtual void swap01(void* dst, const void* src, std::int64_t n0, std::int64_t n1, std::int64_t n2,
                      int elem_bytes) = 0;
  virtual void synchronize(std::uintptr_t stream) = 0;
};
DeviceMemory& sim_memory();
DeviceMemory& cuda_memory();

// The CUDA backend's algorithm on the CPU (device "cuda-sim", gpu/sim_sequence.cpp), and on a GPU
// in a CUDA build (cpp/cuda/cuda_sequence.cu).
template <typename T>
std::unique_ptr<SequenceBackend<T>> make_sim_sequence(const RecurrentConfig& cfg,
                                                      std::vector<LaneLayout> lanes,
                                                      std::size_t num_params);
template <typename T>
std::unique_ptr<SequenceBackend<T>> make_cuda_sequence(const RecurrentConfig& cfg,
                                                       std::vector<LaneLayout> lanes,
                                                       std::size_t num_params);

}  // namespace rnncore::detail
