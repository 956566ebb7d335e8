// pybind11 bindings of the training operations on a GPU device (rnncore/device_ops.h): addresses
// cross as integers, the float type as `bits` (32 or 64). Private (_core): rnncore/cuda.py's
// functions check every array's device, dtype and shape before they call these.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "rnncore/device_ops.h"

namespace py = pybind11;

namespace {

using Addr = std::uintptr_t;

template <typename T>
T* ptr(Addr a) {
  return reinterpret_cast<T*>(a);
}

// f(float{}) or f(double{}) by the element size in bits.
template <typename F>
auto by_bits(int bits, F&& f) {
  if (bits == 64) return f(double{});
  if (bits != 32) throw py::value_error("bits must be 32 or 64, got " + std::to_string(bits));
  return f(float{});
}

// (address, size) pairs as Spans.
template <typename T>
std::vector<rnncore::Span<T>> spans(const std::vector<std::pair<Addr, std::int64_t>>& buffers) {
  std::vector<rnncore::Span<T>> out;
  out.reserve(buffers.size());
  for (const auto& [a, n] : buffers) out.push_back({ptr<T>(a), n});
  return out;
}

using Buffers = std::vector<std::pair<Addr, std::int64_t>>;

}  // namespace

void bind_device_ops(py::module_& m) {
  using rnncore::Device;
  using rnncore::parse_device;
  m.def(
      "device_embedding_forward",
      [](const std::string& device, int bits, std::int64_t N, std::int64_t V, std::int64_t E,
         Addr ids, Addr weight, Addr out, bool checked) {
        const Device d = parse_device(device);
        py::gil_scoped_release release;
        by_bits(bits, [&](auto t) {
          using T = decltype(t);
          rnncore::embedding_forward<T>(d, N, V, E, ptr<const std::int64_t>(ids),
                                        ptr<const T>(weight), ptr<T>(out), checked);
        });
      },
      py::arg("device"), py::arg("bits"), py::arg("N"), py::arg("V"), py::arg("E"), py::arg("ids"),
      py::arg("weight"), py::arg("out"), py::arg("ids_checked") = false,
      "out[N, E] = weight[ids[n]] on the device.");
  m.def(
      "device_embedding_backward",
      [](const std::string& device, int bits, std::int64_t N, std::int64_t V, std::int64_t E,
         Addr ids, Addr dout, Addr dweight, std::int64_t padding_idx, bool checked) {
        const Device d = parse_device(device);
        py::gil_scoped_release release;
        by_bits(bits, [&](auto t) {
          using T = decltype(t);
          rnncore::embedding_backward<T>(d, N, V, E, ptr<const std::int64_t>(ids),
                                         ptr<const T>(dout), ptr<T>(dweight), padding_idx, checked);
        });
      },
      py::arg("device"), py::arg("bits"), py::arg("N"), py::arg("V"), py::arg("E"), py::arg("ids"),
      py::arg("dout"), py::arg("dweight"), py::arg("padding_idx"), py::arg("ids_checked") = false,
      "dweight[ids[n]] += dout[n] (padding_idx < 0: none) on the device.");
  m.def(
      "device_linear_forward",
      [](const std::string& device, int bits, std::int64_t N, std::int64_t I, std::int64_t O,
         Addr x, Addr weight, Addr bias, Addr y) {
        const Device d = parse_device(device);
        py::gil_scoped_release release;
        by_bits(bits, [&](auto t) {
          using T = decltype(t);
          rnncore::linear_forward<T>(d, N, I, O, ptr<const T>(x), ptr<const T>(weight),
                                     ptr<const T>(bias), ptr<T>(y));
        });
      },
      py::arg("device"), py::arg("bits"), py::arg("N"), py::arg("I"), py::arg("O"), py::arg("x"),
      py::arg("weight"), py::arg("bias"), py::arg("y"),
      "y = x weight^T + bias (bias 0: none) on the device.");
  m.def(
      "device_linear_backward",
      [](const std::string& device, int bits, std::int64_t N, std::int64_t I, std::int64_t O,
         Addr dy, Addr x, Addr weight, Addr dx, Addr dweight, Addr dbias) {
        const Device d = parse_device(device);
        py::gil_scoped_release release;
        by_bits(bits, [&](auto t) {
          using T = decltype(t);
          rnncore::linear_backward<T>(d, N, I, O, ptr<const T>(dy), ptr<const T>(x),
                                      ptr<const T>(weight), ptr<T>(dx), ptr<T>(dweight),
                                      ptr<T>(dbias));
        });
      },
      py::arg("device"), py::arg("bits"), py::arg("N"), py::arg("I"), py::arg("O"), py::arg("dy"),
      py::arg("x"), py::arg("weight"), py::arg("dx"), py::arg("dweight"), py::arg("dbias"),
      "dx = dy weight (0: skipped), dweight += dy^T x, dbias += column sums (0: skipped).");
  m.def(
      "device_cross_entropy",
      [](const std::string& device, int bits, std::int64_t N, std::int64_t C, Addr logits,
         Addr targets, std::int64_t ignore_index, bool mean, double label_smoothing,
         double grad_scale, Addr dlogits) {
        const Device d = parse_device(device);
        rnncore::CrossEntropyOptions o;
        o.ignore_index = ignore_index;
        o.reduction = mean ? rnncore::Reduction::kMean : rnncore::Reduction::kSum;
        o.label_smoothing = label_smoothing;
        o.grad_scale = grad_scale;
        py::gil_scoped_release release;
        const rnncore::LossResult r = by_bits(bits, [&](auto t) {
          using T = decltype(t);
          return rnncore::cross_entropy<T>(d, N, C, ptr<const T>(logits),
                                           ptr<const std::int64_t>(targets), o, ptr<T>(dlogits));
        });
        return std::make_pair(r.loss, r.count);
      },
      py::arg("device"), py::arg("bits"), py::arg("N"), py::arg("C"), py::arg("logits"),
      py::arg("targets"), py::arg("ignore_index"), py::arg("mean"), py::arg("label_smoothing"),
      py::arg("grad_scale"), py::arg("dlogits"),
      "(loss, count) of the fused softmax cross-entropy; dlogits (0: none) its gradient.");
  m.def(
      "device_batched_gemm",
      [](const std::string& device, int bits, std::int64_t batch, bool ta, bool tb, std::int64_t M,
         std::int64_t N, std::int64_t K, Addr A, Addr B, Addr C, bool accumulate) {
        const Device d = parse_device(device);
        py::gil_scoped_release release;
        by_bits(bits, [&](auto t) {
          using T = decltype(t);
          rnncore::batched_gemm<T>(d, batch, ta, tb, M, N, K, ptr<const T>(A), ptr<const T>(B),
                                   ptr<T>(C), accumulate);
        });
      },
      py::arg("device"), py::arg("bits"), py::arg("batch"), py::arg("trans_a"), py::arg("trans_b"),
      py::arg("M"), py::arg("N"), py::arg("K"), py::arg("A"), py::arg("B"), py::arg("C"),
      py::arg("accumulate"), "C[b] (+)= op(A[b]) op(B[b]) on the device, row-major.");
  m.def(
      "device_masked_softmax",
      [](const std::string& device, int bits, std::int64_t R, std::int64_t S, std::int64_t group,
         Addr scores, Addr lengths, Addr weights) {
        const Device d = parse_device(device);
        py::gil_scoped_release release;
        by_bits(bits, [&](auto t) {
          using T = decltype(t);
          rnncore::masked_softmax<T>(d, R, S, group, ptr<const T>(scores),
                                     ptr<const std::int64_t>(lengths), ptr<T>(weights));
        });
      },
      py::arg("device"), py::arg("bits"), py::arg("R"), py::arg("S"), py::arg("group"),
      py::arg("scores"), py::arg("lengths"), py::arg("weights"),
      "Row softmax over each row's first lengths[r / group] entries (lengths: a host address).");
  m.def(
      "device_softmax_backward",
      [](const std::string& device, int bits, std::int64_t R, std::int64_t S, Addr dw, Addr w,
         Addr ds) {
        const Device d = parse_device(device);
        py::gil_scoped_release release;
        by_bits(bits, [&](auto t) {
          using T = decltype(t);
          rnncore::softmax_backward<T>(d, R, S, ptr<const T>(dw), ptr<const T>(w), ptr<T>(ds));
        });
      },
      py::arg("device"), py::arg("bits"), py::arg("R"), py::arg("S"), py::arg("dw"), py::arg("w"),
      py::arg("dscores"), "dscores = w (dw - rowsum(dw w)) on the device.");
  m.def(
      "device_axpy",
      [](const std::string& device, int bits, std::int64_t n, double alpha, Addr x, Addr y) {
        const Device d = parse_device(device);
        py::gil_scoped_release release;
        by_bits(bits, [&](auto t) {
          using T = decltype(t);
          rnncore::axpy<T>(d, n, alpha, ptr<const T>(x), ptr<T>(y));
        });
      },
      py::arg("device"), py::arg("bits"), py::arg("n"), py::arg("alpha"), py::arg("x"),
      py::arg("y"), "y += alpha x on the device.");
  m.def(
      "device_column_sums",
      [](const std::string& device, int bits, std::int64_t rows, std::int64_t cols, Addr x,
         Addr out) {
        const Device d = parse_device(device);
        py::gil_scoped_release release;
        by_bits(bits, [&](auto t) {
          using T = decltype(t);
          rnncore::column_sums<T>(d, rows, cols, ptr<const T>(x), ptr<T>(out));
        });
      },
      py::arg("device"), py::arg("bits"), py::arg("rows"), py::arg("cols"), py::arg("x"),
      py::arg("out"), "out[j] += sum_r x[r, j] on the device.");
  m.def(
      "device_tanh",
      [](const std::string& device, int bits, std::int64_t n, Addr x, Addr y, Addr dy,
         bool backward) {
        const Device d = parse_device(device);
        py::gil_scoped_release release;
        by_bits(bits, [&](auto t) {
          using T = decltype(t);
          if (backward)  // x receives dx = dy (1 - y^2)
            rnncore::tanh_backward<T>(d, n, ptr<const T>(dy), ptr<const T>(y), ptr<T>(x));
          else
            rnncore::tanh_forward<T>(d, n, ptr<const T>(x), ptr<T>(y));
        });
      },
      py::arg("device"), py::arg("bits"), py::arg("n"), py::arg("x"), py::arg("y"), py::arg("dy"),
      py::arg("backward"),
      "y = tanh(x) on the device; with backward=True x = dy (1 - y^2) instead.");
  m.def(
      "device_strided_copy",
      [](const std::string& device, int bits, std::int64_t rows, std::int64_t width, Addr src,
         std::int64_t src_stride, Addr dst, std::int64_t dst_stride) {
        const Device d = parse_device(device);
        py::gil_scoped_release release;
        by_bits(bits, [&](auto t) {
          using T = decltype(t);
          rnncore::strided_copy<T>(d, rows, width, ptr<const T>(src), src_stride, ptr<T>(dst),
                                   dst_stride);
        });
      },
      py::arg("device"), py::arg("bits"), py::arg("rows"), py::arg("width"), py::arg("src"),
      py::arg("src_stride"), py::arg("dst"), py::arg("dst_stride"),
      "dst[r, :width] = src[r, :width] on the device (rows src_stride / dst_stride apart).");
  m.def(
      "device_mse_loss",
      [](const std::string& device, int bits, std::int64_t N, Addr pred, Addr target, bool mean,
         double grad_scale, Addr dpred) {
        const Device d = parse_device(device);
        const auto red = mean ? rnncore::Reduction::kMean : rnncore::Reduction::kSum;
        py::gil_scoped_release release;
        return by_bits(bits, [&](auto t) {
          using T = decltype(t);
          return rnncore::mse_loss<T>(d, N, ptr<const T>(pred), ptr<const T>(target), red,
                                      grad_scale, ptr<T>(dpred));
        });
      },
      py::arg("device"), py::arg("bits"), py::arg("N"), py::arg("pred"), py::arg("target"),
      py::arg("mean"), py::arg("grad_scale"), py::arg("dpred"),
      "The squared error's loss; dpred (0: none) its gradient.");
  m.def(
      "device_time_pool_forward",
      [](const std::string& device, int bits, bool max, std::int64_t Tn, std::int64_t B,
         std::int64_t F, Addr y, Addr lengths, Addr pooled, Addr argmax) {
        const Device d = parse_device(device);
        py::gil_scoped_release release;
        by_bits(bits, [&](auto t) {
          using T = decltype(t);
          if (max)
            rnncore::max_pool_forward<T>(d, Tn, B, F, ptr<const T>(y),
                                         ptr<const std::int64_t>(lengths), ptr<T>(pooled),
                                         ptr<std::int64_t>(argmax));
          else
            rnncore::mean_pool_forward<T>(d, Tn, B, F, ptr<const T>(y),
                                          ptr<const std::int64_t>(lengths), ptr<T>(pooled));
        });
      },
      py::arg("device"), py::arg("bits"), py::arg("max"), py::arg("T"), py::arg("B"), py::arg("F"),
      py::arg("y"), py::arg("lengths"), py::arg("pooled"), py::arg("argmax"),
      "Mean or max pooling over each sequence's steps; lengths is a host address.");
  m.def(
      "device_time_pool_backward",
      [](const std::string& device, int bits, bool max, std::int64_t Tn, std::int64_t B,
         std::int64_t F, Addr dpooled, Addr lengths, Addr argmax, Addr dy, bool checked) {
        const Device d = parse_device(device);
        py::gil_scoped_release release;
        by_bits(bits, [&](auto t) {
          using T = decltype(t);
          if (max)
            rnncore::max_pool_backward<T>(d, Tn, B, F, ptr<const T>(dpooled),
                                          ptr<const std::int64_t>(argmax), ptr<T>(dy), checked);
          else
            rnncore::mean_pool_backward<T>(d, Tn, B, F, ptr<const T>(dpooled),
                                           ptr<const std::int64_t>(lengths), ptr<T>(dy));
        });
      },
      py::arg("device"), py::arg("bits"), py::arg("max"), py::arg("T"), py::arg("B"), py::arg("F"),
      py::arg("dpooled"), py::arg("lengths"), py::arg("argmax"), py::arg("dy"),
      py::arg("argmax_checked") = false,
      "dy of mean pooling (lengths: host address) or max pooling (argmax: device address).");
  m.def(
      "device_keyed_dropout",
      [](const std::string& device, int bits, std::int64_t outer, std::int64_t B,
         std::int64_t inner, Addr x, double p, std::uint64_t seed, std::int64_t batch_offset,
         Addr y, Addr scale) {
        const Device d = parse_device(device);
        py::gil_scoped_release release;
        by_bits(bits, [&](auto t) {
          using T = decltype(t);
          rnncore::keyed_dropout<T>(d, outer, B, inner, ptr<const T>(x), p, seed, batch_offset,
                                    ptr<T>(y), ptr<T>(scale));
        });
      },
      py::arg("device"), py::arg("bits"), py::arg("outer"), py::arg("B"), py::arg("inner"),
      py::arg("x"), py::arg("p"), py::arg("seed"), py::arg("batch_offset"), py::arg("y"),
      py::arg("scale"), "Keyed inverted dropout of [outer, B, inner] on the device.");
  m.def(
      "device_sgd_step",
      [](const std::string& device, int bits, std::int64_t P, Addr param, Addr grad, Addr buf,
         bool first_step, double lr, double momentum, double dampening, double weight_decay,
         bool nesterov) {
        const Device d = parse_device(device);
        const rnncore::SgdOptions o{lr, momentum, dampening, weight_decay, nesterov};
        py::gil_scoped_release release;
        by_bits(bits, [&](auto t) {
          using T = decltype(t);
          rnncore::sgd_step<T>(d, P, ptr<T>(param), ptr<const T>(grad), ptr<T>(buf), first_step, o);
        });
      },
      py::arg("device"), py::arg("bits"), py::arg("P"), py::arg("param"), py::arg("grad"),
      py::arg("momentum_buf"), py::arg("first_step"), py::arg("lr"), py::arg("momentum"),
      py::arg("dampening"), py::arg("weight_decay"), py::arg("nesterov"),
      "torch.optim.SGD's update of a flat device buffer.");
  m.def(
      "device_adam_step",
      [](const std::string& device, int bits, std::int64_t P, Addr param, Addr grad, Addr m1,
         Addr m2, Addr vmax, std::int64_t step, double lr, double beta1, double beta2, double eps,
         double weight_decay, bool decoupled) {
        const Device d = parse_device(device);
        const rnncore::AdamOptions o{lr, beta1, beta2, eps, weight_decay, decoupled};
        py::gil_scoped_release release;
        by_bits(bits, [&](auto t) {
          using T = decltype(t);
          rnncore::adam_step<T>(d, P, ptr<T>(param), ptr<const T>(grad), ptr<T>(m1), ptr<T>(m2),
                                ptr<T>(vmax), step, o);
        });
      },
      py::arg("device"), py::arg("bits"), py::arg("P"), py::arg("param"), py::arg("grad"),
      py::arg("exp_avg"), py::arg("exp_avg_sq"), py::arg("max_exp_avg_sq"), py::arg("step"),
      py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"),
      py::arg("decoupled_weight_decay"),
      "torch.optim.Adam/AdamW's update of a flat device buffer (max_exp_avg_sq 0: no AMSGrad).");
  m.def(
      "device_rmsprop_step",
      [](const std::string& device, int bits, std::int64_t P, Addr param, Addr grad, Addr sq,
         Addr gavg, Addr buf, double lr, double alpha, double eps, double weight_decay,
         double momentum, bool centered) {
        const Device d = parse_device(device);
        const rnncore::RmspropOptions o{lr, alpha, eps, weight_decay, momentum, centered};
        py::gil_scoped_release release;
        by_bits(bits, [&](auto t) {
          using T = decltype(t);
          rnncore::rmsprop_step<T>(d, P, ptr<T>(param), ptr<const T>(grad), ptr<T>(sq),
                                   ptr<T>(gavg), ptr<T>(buf), o);
        });
      },
      py::arg("device"), py::arg("bits"), py::arg("P"), py::arg("param"), py::arg("grad"),
      py::arg("square_avg"), py::arg("grad_avg"), py::arg("momentum_buf"), py::arg("lr"),
      py::arg("alpha"), py::arg("eps"), py::arg("weight_decay"), py::arg("momentum"),
      py::arg("centered"), "torch.optim.RMSprop's update of a flat device buffer.");
  m.def(
      "device_adadelta_step",
      [](const std::string& device, int bits, std::int64_t P, Addr param, Addr grad, Addr sq,
         Addr acc, double lr, double rho, double eps, double weight_decay) {
        const Device d = parse_device(device);
        const rnncore::AdadeltaOptions o{lr, rho, eps, weight_decay};
        py::gil_scoped_release release;
        by_bits(bits, [&](auto t) {
          using T = decltype(t);
          rnncore::adadelta_step<T>(d, P, ptr<T>(param), ptr<const T>(grad), ptr<T>(sq),
                                    ptr<T>(acc), o);
        });
      },
      py::arg("device"), py::arg("bits"), py::arg("P"), py::arg("param"), py::arg("grad"),
      py::arg("square_avg"), py::arg("acc_delta"), py::arg("lr"), py::arg("rho"), py::arg("eps"),
      py::arg("weight_decay"), "torch.optim.Adadelta's update of a flat device buffer.");
  m.def(
      "device_adagrad_step",
      [](const std::string& device, int bits, std::int64_t P, Addr param, Addr grad, Addr sum,
         std::int64_t step, double lr, double lr_decay, double weight_decay, double eps) {
        const Device d = parse_device(device);
        const rnncore::AdagradOptions o{lr, lr_decay, weight_decay, eps};
        py::gil_scoped_release release;
        by_bits(bits, [&](auto t) {
          using T = decltype(t);
          rnncore::adagrad_step<T>(d, P, ptr<T>(param), ptr<const T>(grad), ptr<T>(sum), step, o);
        });
      },
      py::arg("device"), py::arg("bits"), py::arg("P"), py::arg("param"), py::arg("grad"),
      py::arg("state_sum"), py::arg("step"), py::arg("lr"), py::arg("lr_decay"),
      py::arg("weight_decay"), py::arg("eps"), "torch.optim.Adagrad's update of a device buffer.");
  m.def(
      "device_sum_of_squares",
      [](const std::string& device, int bits, const Buffers& buffers) {
        const Device d = parse_device(device);
        py::gil_scoped_release release;
        return by_bits(bits, [&](auto t) {
          using T = decltype(t);
          return rnncore::sum_of_squares<T>(d, spans<const T>(buffers));
        });
      },
      py::arg("device"), py::arg("bits"), py::arg("buffers"),
      "Σ x² over device buffers [(address, size), ...], in double.");
  m.def(
      "device_scale",
      [](const std::string& device, int bits, const Buffers& buffers, double factor) {
        const Device d = parse_device(device);
        py::gil_scoped_release release;
        by_bits(bits, [&](auto t) {
          using T = decltype(t);
          rnncore::scale_buffers<T>(d, spans<T>(buffers), factor);
        });
      },
      py::arg("device"), py::arg("bits"), py::arg("buffers"), py::arg("factor"),
      "x *= factor over device buffers.");
  m.def(
      "device_clip_grad_value",
      [](const std::string& device, int bits, const Buffers& buffers, double clip_value) {
        const Device d = parse_device(device);
        py::gil_scoped_release release;
        by_bits(bits, [&](auto t) {
          using T = decltype(t);
          rnncore::clip_grad_value<T>(d, spans<T>(buffers), clip_value);
        });
      },
      py::arg("device"), py::arg("bits"), py::arg("buffers"), py::arg("clip_value"),
      "x = clamp(x, -clip_value, clip_value) over device buffers.");
  m.def("clip_coefficient", &rnncore::clip_coefficient, py::arg("total_norm"), py::arg("max_norm"),
        "The factor clip_grad_norm scales by: max_norm / (total_norm + 1e-6) past max_norm, "
        "else 1.");
  m.def(
      "device_all_finite",
      [](const std::string& device, int bits, const Buffers& buffers) {
        const Device d = parse_device(device);
        py::gil_scoped_release release;
        return by_bits(bits, [&](auto t) {
          using T = decltype(t);
          return rnncore::all_finite<T>(d, spans<const T>(buffers));
        });
      },
      py::arg("device"), py::arg("bits"), py::arg("buffers"),
      "Whether no element of the device buffers is NaN or infinite.");
}
