// pybind11 module rnncore._core: numpy arrays in and out of the engine, checked at the boundary.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "checks.h"
#include "rnncore/recurrent.h"

namespace py = pybind11;
using rnncore::Recurrent;
using rnncore::RecurrentConfig;
using rnncore::bindings::checked;

namespace {

// The layer's lock, taken without the GIL (so that a thread holding the lock can always get the
// GIL back) and held for a whole forward or backward: checks against the saved forward, the
// engine call (which releases the GIL) and the bookkeeping after it. Two Python threads on one
// layer then run one call at a time, never one call's checks against another call's state.
class CallLock {
 public:
  explicit CallLock(std::mutex& mu) : lock_(mu, std::defer_lock) {
    py::gil_scoped_release release;
    lock_.lock();
  }

 private:
  std::unique_lock<std::mutex> lock_;
};

template <typename T>
struct PyRecurrent {
  Recurrent<T> core;
  std::mutex mu;  // held by CallLock for each forward and backward
  // One per training forward waiting for its backward (the engine's stack, oldest first). Without
  // lengths the engine reads x and writes y in place and backward reads them again: the arrays
  // are kept alive here until then. `thread` ran the forward: backward from another thread would
  // silently get that thread's gradients, so it is refused.
  struct Saved {
    py::object x, y;
    std::thread::id thread;
  };
  std::vector<Saved> saved;
  // A training forward taken out of the layer (forward_saved), with the arrays it reads in place.
  struct Handle {
    rnncore::SavedForward saved;
    py::object x, y;
  };
  explicit PyRecurrent(const RecurrentConfig& c) : core(c) {}

  // h-like states are [L*D, B, R] (R = proj_size or H), c-like [L*D, B, H].
  std::string state_shape(int B, bool cell_state = false) const {
    const auto& c = core.config();
    const std::string width = cell_state || c.proj_size == 0
                                  ? "H=" + std::to_string(c.hidden_size)
                                  : "proj_size=" + std::to_string(c.proj_size);
    return "[L*D=" + std::to_string(c.num_layers * c.directions()) + ", B=" + std::to_string(B) +
           ", " + width + "]";
  }
  std::vector<py::ssize_t> state_dims(int B, bool cell_state = false) const {
    const auto& c = core.config();
    return {c.num_layers * c.directions(), B, cell_state ? c.hidden_size : c.state_size()};
  }

  py::tuple forward(py::handle x_obj, py::handle lengths_obj, py::handle h0_obj, py::handle c0_obj,
                    bool training, std::uint64_t seed, std::int64_t batch_offset) {
    CallLock lock(mu);
    return forward_locked(x_obj, lengths_obj, h0_obj, c0_obj, training, seed, true, batch_offset);
  }

  // A training forward whose saved context goes to the caller (an autograd graph node) instead
  // of the layer's stack: (y, hn, cn, saved). One lock over both, so that no other thread's
  // forward can come between.
  py::tuple forward_saved(py::handle x_obj, py::handle lengths_obj, py::handle h0_obj,
                          py::handle c0_obj, std::uint64_t seed, bool stochastic,
                          std::int64_t batch_offset) {
    CallLock lock(mu);
    py::tuple out =
        forward_locked(x_obj, lengths_obj, h0_obj, c0_obj, true, seed, stochastic, batch_offset);
    auto handle = std::make_unique<Handle>();
    handle->saved = core.take_saved();
    handle->x = std::move(saved.back().x);
    handle->y = std::move(saved.back().y);
    saved.pop_back();
    return py::make_tuple(out[0], out[1], out[2], py::cast(std::move(handle)));
  }

  // BPTT through a forward_saved handle: (dx, dh0, dc0, dparams) with dparams [P] this
  // forward's parameter gradients alone (the layer's own gradient buffer is left zeroed).
  py::tuple backward_saved(Handle& handle, py::handle dy_obj, py::handle dhn_obj,
                           py::handle dcn_obj) {
    CallLock lock(mu);
    if (handle.saved.empty())
      throw std::runtime_error(
          "backward through this forward already ran (each forward allows one backward: "
          "retain_graph=True / double backward is not supported)");
    core.restore_saved(std::move(handle.saved));
    saved.push_back({std::move(handle.x), std::move(handle.y), std::this_thread::get_id()});
    const std::size_t depth = saved.size();
    core.zero_grad();
    py::tuple r;
    try {
      r = backward_locked(dy_obj, dhn_obj, dcn_obj, false);
    } catch (...) {
      // Argument checks throw before the engine consumes the forward: hand it back, so a
      // corrected call can still run.
      if (saved.size() == depth) {
        handle.saved = core.take_saved();
        handle.x = std::move(saved.back().x);
        handle.y = std::move(saved.back().y);
        saved.pop_back();
      }
      core.zero_grad();
      throw;
    }
    py::array_t<T> dparams(py::ssize_t(core.num_params()));
    std::copy(core.grads(), core.grads() + core.num_params(), dparams.mutable_data());
    core.zero_grad();
    return py::make_tuple(r[0], r[1], r[2], dparams);
  }

  // Calls on device memory (a layer on "cuda" or "cuda-sim"): every array is an address the
  // caller owns and has checked (rnncore.torch: torch tensors of the layer's dtype, contiguous,
  // on the layer's device, shaped as forward's), 0 for none. lengths stays a host array. A
  // training forward returns its saved context; inference returns None.
  py::object forward_device(std::uintptr_t x, int steps, int batch, py::handle lengths_obj,
                            std::uintptr_t h0, std::uintptr_t c0, std::uintptr_t y,
                            std::uintptr_t hn, std::uintptr_t cn, std::uintptr_t params,
                            bool training, std::uint64_t seed, bool stochastic, bool keep,
                            std::int64_t batch_offset) {
    CallLock lock(mu);
    py::array_t<std::int64_t> lengths;
    if (!lengths_obj.is_none())
      lengths = checked<std::int64_t>(lengths_obj, "lengths", "[B=" + std::to_string(batch) + "]",
                                      {batch});
    {
      const std::int64_t* lp = lengths_obj.is_none() ? nullptr : lengths.data();
      py::gil_scoped_release release;
      core.forward_on_device(steps, batch, ptr<const T>(x), lp, ptr<const T>(h0), ptr<const T>(c0),
                             ptr<T>(y), ptr<T>(hn), ptr<T>(cn), ptr<const T>(params), training,
                             seed, stochastic, batch_offset);
    }
    if (!training) return py::none();
    if (keep) {  // on the layer's stack, as a host forward (the engine copied what it reads)
      saved.push_back({py::none(), py::none(), std::this_thread::get_id()});
      return py::none();
    }
    auto handle = std::make_unique<Handle>();
    handle->saved = core.take_saved();
    return py::cast(std::move(handle));
  }

  // BPTT through a forward_device context (once), gradients written to the caller's device
  // memory: dx, dh0, dc0 (=) and grads (+=, the flat buffer [P]).
  void backward_device(Handle* handle, std::uintptr_t dy, std::uintptr_t dhn, std::uintptr_t dcn,
                       std::uintptr_t dx, std::uintptr_t dh0, std::uintptr_t dc0,
                       std::uintptr_t params, std::uintptr_t grads, std::uintptr_t norms) {
    CallLock lock(mu);
    auto run = [&] {
      py::gil_scoped_release release;
      core.backward_on_device(ptr<const T>(dy), ptr<const T>(dhn), ptr<const T>(dcn), ptr<T>(dx),
                              ptr<T>(dh0), ptr<T>(dc0), ptr<const T>(params), ptr<T>(grads),
                              ptr<double>(norms));
    };
    if (!handle) {  // the newest forward on the layer's stack
      check_newest_forward();
      const int depth = core.saved_forwards();
      try {
        run();
      } catch (...) {
        if (core.saved_forwards() < depth) saved.pop_back();  // consumed even though it failed
        throw;
      }
      saved.pop_back();
      return;
    }
    if (handle->saved.empty())
      throw std::runtime_error(
          "backward through this forward already ran (each forward allows one backward)");
    const int depth = core.saved_forwards() + 1;
    core.restore_saved(std::move(handle->saved));
    try {
      run();
    } catch (...) {
      // An argument the engine refused before consuming the forward: hand it back.
      if (core.saved_forwards() == depth) handle->saved = core.take_saved();
      throw;
    }
  }

  template <typename P>
  static P* ptr(std::uintptr_t address) {
    return reinterpret_cast<P*>(address);
  }

  py::tuple forward_locked(py::handle x_obj, py::handle lengths_obj, py::handle h0_obj,
                           py::handle c0_obj, bool training, std::uint64_t seed, bool stochastic,
                           std::int64_t batch_offset) {
    const auto& c = core.config();
    const bool lstm = c.states() == 2;
    auto x = checked<T>(x_obj, "x", "[T, B, I=" + std::to_string(c.input_size) + "]",
                        {-1, -1, c.input_size});
    const py::ssize_t Tn = x.shape(0), B = x.shape(1);
    if (Tn < 1 || B < 1)
      throw py::value_error("x: T and B must be >= 1, got shape " +
                            rnncore::bindings::shape_str(x));
    if (Tn > INT32_MAX || B > INT32_MAX) throw py::value_error("x: T or B too large");
    const int T32 = int(Tn), B32 = int(B);
    py::array_t<std::int64_t> lengths;
    if (!lengths_obj.is_none())
      lengths = checked<std::int64_t>(lengths_obj, "lengths", "[B=" + std::to_string(B) + "]", {B});
    py::array_t<T> h0, c0;
    if (!h0_obj.is_none()) h0 = checked<T>(h0_obj, "h0", state_shape(B32), state_dims(B32));
    if (!c0_obj.is_none()) {
      if (!lstm) throw py::value_error("c0: only an LSTM has a cell state");
      c0 = checked<T>(c0_obj, "c0", state_shape(B32, true), state_dims(B32, true));
    }
    py::array_t<T> y({Tn, B, py::ssize_t(c.directions() * c.state_size())});
    py::array_t<T> hn(state_dims(B32));
    py::array_t<T> cn;
    if (lstm) cn = py::array_t<T>(state_dims(B32, true));
    {
      const T* xp = x.data();
      const std::int64_t* lp = lengths_obj.is_none() ? nullptr : lengths.data();
      const T* h0p = h0_obj.is_none() ? nullptr : h0.data();
      const T* c0p = c0_obj.is_none() ? nullptr : c0.data();
      T* yp = y.mutable_data();
      T* hnp = hn.mutable_data();
      T* cnp = lstm ? cn.mutable_data() : nullptr;
      py::gil_scoped_release release;
      core.forward(T32, B32, xp, lp, h0p, c0p, yp, hnp, cnp, training, seed, stochastic,
                   batch_offset);
    }
    if (training) saved.push_back({x, y, std::this_thread::get_id()});
    if (lstm) return py::make_tuple(y, hn, cn);
    return py::make_tuple(y, hn, py::none());
  }

  py::tuple backward(py::handle dy_obj, py::handle dhn_obj, py::handle dcn_obj,
                     bool step_grad_norms) {
    CallLock lock(mu);
    return backward_locked(dy_obj, dhn_obj, dcn_obj, step_grad_norms);
  }

  // A backward on the layer's stack needs a saved forward, and one this thread ran.
  void check_newest_forward() const {
    if (!core.has_saved_forward())
      throw std::runtime_error(
          "backward needs a training-mode forward first (backward after eval(), before any "
          "forward, or twice for one forward is not possible)");
    if (saved.back().thread != std::this_thread::get_id())
      throw std::runtime_error(
          "backward: the training forward it would consume ran in another thread; a thread "
          "can only backpropagate through its own forward (use one layer per thread)");
  }

  py::tuple backward_locked(py::handle dy_obj, py::handle dhn_obj, py::handle dcn_obj,
                            bool step_grad_norms) {
    const auto& c = core.config();
    const bool lstm = c.states() == 2;
    check_newest_forward();
    const auto shape = core.saved_shape();
    const int Tn = shape.steps, B = shape.batch;
    const int DH = c.directions() * c.state_size();
    py::array_t<T> dy, dhn, dcn;
    if (!dy_obj.is_none())
      dy = checked<T>(dy_obj, "dy",
                      "[T=" + std::to_string(Tn) + ", B=" + std::to_string(B) +
                          ", D*R=" + std::to_string(DH) + "] like the forward output",
                      {Tn, B, DH});
    if (!dhn_obj.is_none()) dhn = checked<T>(dhn_obj, "dhn", state_shape(B), state_dims(B));
    if (!dcn_obj.is_none()) {
      if (!lstm) throw py::value_error("dcn: only an LSTM has a cell state");
      dcn = checked<T>(dcn_obj, "dcn", state_shape(B, true), state_dims(B, true));
    }
    py::array_t<T> dx({py::ssize_t(Tn), py::ssize_t(B), py::ssize_t(c.input_size)});
    auto dims = state_dims(B);
    py::array_t<T> dh0(dims);
    py::array_t<T> dc0;
    if (lstm) dc0 = py::array_t<T>(state_dims(B, true));
    py::array_t<double> norms;
    if (step_grad_norms) norms = py::array_t<double>({py::ssize_t(dims[0]), py::ssize_t(Tn)});
    try {
      double* normsp = step_grad_norms ? norms.mutable_data() : nullptr;
      const T* dyp = dy_obj.is_none() ? nullptr : dy.data();
      const T* dhnp = dhn_obj.is_none() ? nullptr : dhn.data();
      const T* dcnp = dcn_obj.is_none() ? nullptr : dcn.data();
      T* dxp = dx.mutable_data();
      T* dh0p = dh0.mutable_data();
      T* dc0p = lstm ? dc0.mutable_data() : nullptr;
      py::gil_scoped_release release;
      core.backward(dyp, dhnp, dcnp, dxp, dh0p, dc0p, normsp);
    } catch (...) {
      saved.pop_back();  // the engine consumed the forward even though backward failed
      throw;
    }
    saved.pop_back();
    py::object norms_out = step_grad_norms ? py::object(norms) : py::object(py::none());
    if (lstm) return py::make_tuple(dx, dh0, dc0, norms_out);
    return py::make_tuple(dx, dh0, py::none(), norms_out);
  }
};

template <typename T>
void bind_recurrent(py::module_& m, const char* name, const char* handle_name) {
  using Cls = PyRecurrent<T>;
  py::class_<typename Cls::Handle>(m, handle_name,
                                   "A training forward's saved context, taken out of its layer.")
      .def_property_readonly("consumed",
                             [](const typename Cls::Handle& h) { return h.saved.empty(); });
  py::class_<Cls>(m, name, "Stacked, optionally bidirectional RNN/LSTM/GRU over whole sequences.")
      .def(py::init([](const std::string& cell, int input_size, int hidden_size, int num_layers,
                       bool bidirectional, bool bias, double dropout, const std::string& device,
                       int proj_size, double zoneout, double recurrent_dropout, bool layer_norm) {
             const rnncore::CellInfo* info = rnncore::find_cell(cell);
             if (!info) throw py::value_error("cell: '" + cell + "' is not a registered cell");
             RecurrentConfig c;
             c.cell = info->id;
             c.input_size = input_size;
             c.hidden_size = hidden_size;
             c.num_layers = num_layers;
             c.bidirectional = bidirectional;
             c.bias = bias;
             c.dropout = dropout;
             c.device = rnncore::parse_device(device);
             c.proj_size = proj_size;
             c.zoneout = zoneout;
             c.recurrent_dropout = recurrent_dropout;
             c.layer_norm = layer_norm;
             return new Cls(c);
           }),
           py::arg("cell"), py::arg("input_size"), py::arg("hidden_size"), py::arg("num_layers"),
           py::arg("bidirectional"), py::arg("bias"), py::arg("dropout"), py::arg("device") = "cpu",
           py::arg("proj_size") = 0, py::arg("zoneout") = 0.0, py::arg("recurrent_dropout") = 0.0,
           py::arg("layer_norm") = false)
      .def_property_readonly(
          "params",
          [](py::object self) {
            auto& r = self.cast<Cls&>();
            return py::array_t<T>({py::ssize_t(r.core.num_params())}, {py::ssize_t(sizeof(T))},
                                  r.core.params(), self);
          },
          "Flat parameter buffer [P] (a view; writes go to the engine).")
      .def_property_readonly(
          "grads",
          [](py::object self) {
            auto& r = self.cast<Cls&>();
            return py::array_t<T>({py::ssize_t(r.core.num_params())}, {py::ssize_t(sizeof(T))},
                                  r.core.grads(), self);
          },
          "Flat gradient buffer [P], same layout as params (a view).")
      .def(
          "param_info",
          [](Cls& r) {
            py::list out;
            for (const auto& p : r.core.param_info()) {
              py::tuple shape = p.cols == 0 ? py::tuple(py::make_tuple(p.rows))
                                            : py::tuple(py::make_tuple(p.rows, p.cols));
              out.append(py::make_tuple(p.name, p.offset, shape));
            }
            return out;
          },
          "[(name, offset, shape)] of every parameter inside the flat buffer, PyTorch's names.")
      .def("zero_grad",
           [](Cls& r) {
             CallLock lock(r.mu);  // not while a backward of another thread accumulates
             r.core.zero_grad();
           })
      .def_property(
          "int8_inference", [](Cls& r) { return r.core.int8_inference(); },
          [](Cls& r, bool on) {
            CallLock lock(r.mu);  // not in the middle of another thread's forward
            r.core.set_int8_inference(on);
          },
          "Inference forwards multiply by W_ih and W_hh in int8 (float32 CPU layers; see "
          "Recurrent::set_int8_inference).")
      .def_property_readonly("has_saved_forward", [](Cls& r) { return r.core.has_saved_forward(); })
      .def_property_readonly(
          "saved_forwards", [](Cls& r) { return r.core.saved_forwards(); },
          "How many training forwards wait for their backward (each backward takes the newest).")
      .def_property_readonly(
          "saved_shape",
          [](Cls& r) {
            const auto shape = r.core.saved_shape();
            return py::make_tuple(shape.steps, shape.batch);
          },
          "(T, B) of the forward the next backward consumes ((0, 0) with none saved).")
      .def_property_readonly(
          "saved_bytes", [](Cls& r) { return r.core.saved_bytes(); },
          "Bytes of memory the saved training forwards hold (host, or the GPU's).")
      .def(
          "discard_saved",
          [](Cls& r) {
            CallLock lock(r.mu);
            r.core.discard_saved();
            r.saved.clear();
          },
          "Drop every saved training forward (and the memory it holds).")
      .def("forward", &Cls::forward, py::arg("x"), py::arg("lengths") = py::none(),
           py::arg("h0") = py::none(), py::arg("c0") = py::none(), py::arg("training") = true,
           py::arg("seed") = 0, py::arg("batch_offset") = 0,
           "x [T,B,I], lengths int64 [B] or None, h0 [L*D,B,R] / c0 [L*D,B,H] or None -> "
           "(y [T,B,D*R], hn [L*D,B,R], cn [L*D,B,H] or None); R = proj_size or H. "
           "batch_offset: index of sequence 0 in the batch the random masks are keyed by "
           "(data parallelism)")
      .def("forward_saved", &Cls::forward_saved, py::arg("x"), py::arg("lengths") = py::none(),
           py::arg("h0") = py::none(), py::arg("c0") = py::none(), py::arg("seed") = 0,
           py::arg("stochastic") = true, py::arg("batch_offset") = 0,
           "A training forward whose saved context is returned instead of kept: (y, hn, cn, "
           "saved); stochastic=False draws no dropout. For autograd systems (rnncore.torch).")
      .def("backward_saved", &Cls::backward_saved, py::arg("saved"), py::arg("dy") = py::none(),
           py::arg("dhn") = py::none(), py::arg("dcn") = py::none(),
           "BPTT through a forward_saved context (once): (dx, dh0, dc0 or None, dparams [P]), "
           "dparams holding this call's parameter gradients; the layer's grads stay zero.")
      .def("forward_device", &Cls::forward_device, py::arg("x"), py::arg("steps"), py::arg("batch"),
           py::arg("lengths"), py::arg("h0"), py::arg("c0"), py::arg("y"), py::arg("hn"),
           py::arg("cn"), py::arg("params"), py::arg("training"), py::arg("seed"),
           py::arg("stochastic"), py::arg("keep") = false, py::arg("batch_offset") = 0,
           "A GPU layer's forward on device memory: x, h0, c0, y, hn, cn, params are device "
           "addresses (0: none; params 0: the layer's own) the caller checked; lengths an int64 "
           "host array or None. A training forward returns its saved context, or with keep=True "
           "stays on the layer's stack (as forward's); inference returns None.")
      .def("backward_device", &Cls::backward_device, py::arg("saved"), py::arg("dy"),
           py::arg("dhn"), py::arg("dcn"), py::arg("dx"), py::arg("dh0"), py::arg("dc0"),
           py::arg("params"), py::arg("grads"), py::arg("step_grad_norms") = 0,
           "BPTT through a forward_device context (None: the layer's newest saved forward) on "
           "device memory: dx, dh0, dc0 written, grads "
           "[P] accumulated (device addresses, 0: none; grads 0: the layer's own); "
           "step_grad_norms: the host address of a float64 [L*D, T] array, or 0.")
      .def("backward", &Cls::backward, py::arg("dy") = py::none(), py::arg("dhn") = py::none(),
           py::arg("dcn") = py::none(), py::arg("step_grad_norms") = false,
           "dy [T,B,D*R] or None, dhn [L*D,B,R] / dcn [L*D,B,H] or None -> (dx [T,B,I], dh0, dc0 "
           "or None, "
           "norms [L*D,T] of dL/dh_t or None); parameter gradients accumulate into grads");
}

}  // namespace

// Training operations (embedding, linear, losses, optimizers, clipping): bind_ops.cpp.
void bind_ops(py::module_& m);
// GPU device memory and DLPack (rnncore.cuda.DeviceArray): bind_device.cpp.
void bind_device(py::module_& m);
// The training operations on a GPU device (rnncore/device_ops.h): bind_device_ops.cpp.
void bind_device_ops(py::module_& m);

// The same bindings are built once per instruction-set variant (_core, _core_avx2, _core_avx512);
// the build names the module, and rnncore/_native.py imports the best one for the CPU.
#ifndef RNNCORE_MODULE_NAME
#define RNNCORE_MODULE_NAME _core
#endif

PYBIND11_MODULE(RNNCORE_MODULE_NAME, m) {
  m.doc() = "rnncore's C++ engine (private: use rnncore.nn)";
  bind_recurrent<float>(m, "RecurrentF32", "SavedForwardF32");
  bind_recurrent<double>(m, "RecurrentF64", "SavedForwardF64");
  m.def("set_num_threads", &rnncore::set_num_threads, py::arg("n"),
        "Set the engine's thread count (OpenMP); returns the previous value.");
  m.def("get_num_threads", &rnncore::get_num_threads);
  m.def(
      "cells",
      [] {
        py::list out;
        for (const auto& c : rnncore::registered_cells()) {
          py::dict d;
          d["name"] = c.name;
          d["torch_mode"] = c.torch_mode;
          d["layer"] = c.layer;
          d["layer_option"] = c.layer_option;
          d["gates"] = c.gates;
          d["states"] = c.states;
          d["layer_norm"] = c.layer_norm;
          out.append(d);
        }
        return out;
      },
      "The cell registry: [{name, torch_mode, layer, layer_option, gates, states, layer_norm}] per "
      "cell.");
  m.def("has_cuda", &rnncore::has_cuda, "True when this build has the CUDA backend.");
  m.def("cuda_device_count", &rnncore::cuda_device_count,
        "CUDA devices visible (0 without the CUDA backend or without a GPU).");
  m.def("load_cublas", &rnncore::load_cublas, py::arg("path"),
        "Load cuBLAS from path for the CUDA backend (before the first GPU layer); returns path.");
  m.def(
      "require_device",
      [](const std::string& device) {
        rnncore::require_device(rnncore::parse_device(device));
        return std::string(rnncore::device_name(rnncore::parse_device(device)));
      },
      py::arg("device"),
      "The canonical name of a device this build can use; ValueError for an unknown name, "
      "RuntimeError for one this build lacks (CUDA without the CUDA backend).");
  m.def("has_openmp", &rnncore::has_openmp);
  m.def("set_flush_denormals", &rnncore::set_flush_denormals, py::arg("on"),
        "Flush denormal floats to zero in the engine's computations (default on); returns the "
        "previous setting.");
  m.def("flush_denormals", &rnncore::flush_denormals);
  m.def(
      "_set_blas",
      [](std::uintptr_t sgemm, std::uintptr_t dgemm, const std::string& name) {
        rnncore::set_blas(reinterpret_cast<rnncore::SgemmFn>(sgemm),
                          reinterpret_cast<rnncore::DgemmFn>(dgemm), name);
      },
      py::arg("sgemm"), py::arg("dgemm"), py::arg("name"),
      "Route GEMMs to CBLAS functions at these addresses (0, 0: back to Eigen). The library "
      "must be single-threaded. Used by rnncore._blas at import.");
  m.def("gemm_backend", &rnncore::gemm_backend, "'eigen' or the registered BLAS's name.");
  bind_ops(m);
  bind_device(m);
  bind_device_ops(m);
}
