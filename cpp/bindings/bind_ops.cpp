// pybind11 bindings of the training operations (rnncore/ops.h) into rnncore._core.
//
// Every function checks its numpy arguments (dtype, shape, C order, writability) and names the
// argument in the error, picks float32 or float64 from one leading array, then releases the GIL
// around the engine call. Nothing is copied: outputs are fresh arrays, in-place updates go straight
// into the caller's buffers.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "checks.h"
#include "rnncore/checkpoint_format.h"
#include "rnncore/inference.h"
#include "rnncore/ops.h"

namespace py = pybind11;
using rnncore::bindings::as_array;
using rnncore::bindings::checked;
using rnncore::bindings::shape_str;

namespace {

std::string num(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

// 64 for float64, 32 for float32; anything else is a TypeError naming the argument.
int float_bits(py::handle obj, const std::string& name) {
  auto a = as_array(obj, name);
  if (a.dtype().is(py::dtype::of<double>())) return 64;
  if (a.dtype().is(py::dtype::of<float>())) return 32;
  throw py::type_error(name + ": expected dtype float32 or float64, got " +
                       std::string(py::str(a.dtype())));
}

std::string dims(std::initializer_list<std::pair<const char*, py::ssize_t>> d) {
  std::string s = "[";
  bool first = true;
  for (const auto& [label, n] : d) {
    s += (first ? "" : ", ") + std::string(label) + (n >= 0 ? "=" + std::to_string(n) : "");
    first = false;
  }
  return s + "]";
}

rnncore::Reduction parse_reduction(const std::string& r) {
  if (r == "mean") return rnncore::Reduction::kMean;
  if (r == "sum") return rnncore::Reduction::kSum;
  throw py::value_error("reduction: must be 'mean' or 'sum', got '" + r + "'");
}

// ---- Embedding --------------------------------------------------------------------------------

template <typename T>
py::tuple keyed_dropout(py::handle x_obj, double p, std::uint64_t seed, std::int64_t batch_offset) {
  auto x = checked<T>(x_obj, "x", "[outer, B, inner]", {-1, -1, -1});
  const py::ssize_t O = x.shape(0), B = x.shape(1), I = x.shape(2);
  py::array_t<T> y({O, B, I}), scale({O, B, I});
  const T* xp = x.data();
  T* yp = y.mutable_data();
  T* sp = scale.mutable_data();
  {
    py::gil_scoped_release release;
    rnncore::keyed_dropout<T>(O, B, I, xp, p, seed, batch_offset, yp, sp);
  }
  return py::make_tuple(y, scale);
}

template <typename T>
py::array_t<T> embedding_forward(py::handle ids_obj, py::handle weight_obj) {
  auto weight = checked<T>(weight_obj, "weight", "[V, E]", {-1, -1});
  const py::ssize_t V = weight.shape(0), E = weight.shape(1);
  auto ids = checked<std::int64_t>(ids_obj, "ids", "[N] int64", {-1});
  const py::ssize_t N = ids.shape(0);
  py::array_t<T> out({N, E});
  const std::int64_t* ip = ids.data();
  const T* wp = weight.data();
  T* op = out.mutable_data();
  {
    py::gil_scoped_release release;
    rnncore::embedding_forward<T>(N, V, E, ip, wp, op);
  }
  return out;
}

template <typename T>
void embedding_backward(py::handle ids_obj, py::handle dout_obj, py::handle dweight_obj,
                        std::optional<std::int64_t> padding_idx) {
  auto dweight = checked<T>(dweight_obj, "dweight", "[V, E]", {-1, -1}, true);
  const py::ssize_t V = dweight.shape(0), E = dweight.shape(1);
  auto ids = checked<std::int64_t>(ids_obj, "ids", "[N] int64", {-1});
  const py::ssize_t N = ids.shape(0);
  auto dout = checked<T>(dout_obj, "dout", dims({{"N", N}, {"E", E}}), {N, E});
  if (padding_idx && (*padding_idx < 0 || *padding_idx >= V))
    throw py::value_error("padding_idx: must be in [0, " + std::to_string(V) + ") or None, got " +
                          std::to_string(*padding_idx));
  const std::int64_t* ip = ids.data();
  const T* dp = dout.data();
  T* wp = dweight.mutable_data();
  const std::int64_t pad = padding_idx.value_or(-1);
  py::gil_scoped_release release;
  rnncore::embedding_backward<T>(N, V, E, ip, dp, wp, pad);
}

// ---- Softmax and sampling ---------------------------------------------------------------------

// (log-)softmax over the last axis of x [..., V] into a fresh array of the same shape and dtype.
template <typename T>
py::array_t<T> softmax_last_axis(py::handle x_obj, bool log) {
  auto x = as_array(x_obj, "x");
  if (x.ndim() < 1)
    throw py::value_error("x: expected at least 1 dimension [..., V], got a scalar");
  auto xc = checked<T>(x_obj, "x", "[..., V]", std::vector<py::ssize_t>(x.ndim(), -1));
  const py::ssize_t V = xc.shape(x.ndim() - 1);
  if (V < 1) throw py::value_error("x: the last axis (V) must not be empty");
  std::vector<py::ssize_t> shape(xc.shape(), xc.shape() + xc.ndim());
  py::array_t<T> out(shape);
  const py::ssize_t N = xc.size() / V;
  std::copy(xc.data(), xc.data() + xc.size(), out.mutable_data());
  T* op = out.mutable_data();
  {
    py::gil_scoped_release release;
    if (log)
      rnncore::log_softmax_rows<T>(N, V, op);
    else
      rnncore::softmax_rows<T>(N, V, op);
  }
  return out;
}

// The generator of a sequence of draws (std::mt19937_64, as the C++ LanguageModel uses).
struct Sampler {
  std::mt19937_64 rng;
  explicit Sampler(std::uint64_t seed) : rng(seed) {}

  template <typename T>
  std::int64_t draw(py::handle lp_obj, double temperature, std::int64_t top_k) {
    auto lp = checked<T>(lp_obj, "log_probs", "[V]", {-1});
    const T* p = lp.data();
    const py::ssize_t V = lp.shape(0);
    py::gil_scoped_release release;
    return rnncore::sample_token<T>(p, V, temperature, top_k, rng);
  }
};

// ---- Linear -----------------------------------------------------------------------------------

template <typename T>
py::array_t<T> linear_forward(py::handle x_obj, py::handle weight_obj, py::handle bias_obj) {
  auto weight = checked<T>(weight_obj, "weight", "[O, I]", {-1, -1});
  const py::ssize_t O = weight.shape(0), I = weight.shape(1);
  auto x = checked<T>(x_obj, "x", dims({{"N", -1}, {"I", I}}), {-1, I});
  const py::ssize_t N = x.shape(0);
  py::array_t<T> bias;
  if (!bias_obj.is_none()) bias = checked<T>(bias_obj, "bias", dims({{"O", O}}), {O});
  py::array_t<T> y({N, O});
  const T* xp = x.data();
  const T* wp = weight.data();
  const T* bp = bias_obj.is_none() ? nullptr : bias.data();
  T* yp = y.mutable_data();
  {
    py::gil_scoped_release release;
    rnncore::linear_forward<T>(N, I, O, xp, wp, bp, yp);
  }
  return y;
}

template <typename T>
py::object linear_backward(py::handle dy_obj, py::handle x_obj, py::handle weight_obj,
                           py::handle dweight_obj, py::handle dbias_obj, bool need_dx) {
  auto weight = checked<T>(weight_obj, "weight", "[O, I]", {-1, -1});
  const py::ssize_t O = weight.shape(0), I = weight.shape(1);
  auto x = checked<T>(x_obj, "x", dims({{"N", -1}, {"I", I}}), {-1, I});
  const py::ssize_t N = x.shape(0);
  auto dy = checked<T>(dy_obj, "dy", dims({{"N", N}, {"O", O}}), {N, O});
  auto dweight = checked<T>(dweight_obj, "dweight", dims({{"O", O}, {"I", I}}), {O, I}, true);
  py::array_t<T> dbias;
  if (!dbias_obj.is_none()) dbias = checked<T>(dbias_obj, "dbias", dims({{"O", O}}), {O}, true);
  py::array_t<T> dx;
  if (need_dx) dx = py::array_t<T>({N, I});
  const T* dyp = dy.data();
  const T* xp = x.data();
  const T* wp = weight.data();
  T* dwp = dweight.mutable_data();
  T* dbp = dbias_obj.is_none() ? nullptr : dbias.mutable_data();
  T* dxp = need_dx ? dx.mutable_data() : nullptr;
  {
    py::gil_scoped_release release;
    rnncore::linear_backward<T>(N, I, O, dyp, xp, wp, dxp, dwp, dbp);
  }
  if (!need_dx) return py::none();
  return std::move(dx);
}

// ---- Conv1d -----------------------------------------------------------------------------------

template <typename T>
py::array_t<T> conv1d_forward(py::handle x_obj, py::handle weight_obj, py::handle bias_obj,
                              std::int64_t padding) {
  auto weight = checked<T>(weight_obj, "weight", "[O, C, K]", {-1, -1, -1});
  const py::ssize_t O = weight.shape(0), C = weight.shape(1), K = weight.shape(2);
  auto x = checked<T>(x_obj, "x", dims({{"N", -1}, {"L", -1}, {"C", C}}), {-1, -1, C});
  const py::ssize_t N = x.shape(0), L = x.shape(1);
  if (padding < 0) throw py::value_error("padding: must be >= 0, got " + std::to_string(padding));
  const std::int64_t Lo = rnncore::conv1d_out_length(L, K, padding);
  if (Lo < 1)
    throw py::value_error("x: length L=" + std::to_string(L) + " with padding " +
                          std::to_string(padding) + " is shorter than kernel_size " +
                          std::to_string(K));
  py::array_t<T> bias;
  if (!bias_obj.is_none()) bias = checked<T>(bias_obj, "bias", dims({{"O", O}}), {O});
  py::array_t<T> y({N, py::ssize_t(Lo), O});
  const T* xp = x.data();
  const T* wp = weight.data();
  const T* bp = bias_obj.is_none() ? nullptr : bias.data();
  T* yp = y.mutable_data();
  {
    py::gil_scoped_release release;
    rnncore::conv1d_forward<T>(N, L, C, O, K, padding, xp, wp, bp, yp);
  }
  return y;
}

template <typename T>
py::object conv1d_backward(py::handle dy_obj, py::handle x_obj, py::handle weight_obj,
                           py::handle dweight_obj, py::handle dbias_obj, std::int64_t padding,
                           bool need_dx) {
  auto weight = checked<T>(weight_obj, "weight", "[O, C, K]", {-1, -1, -1});
  const py::ssize_t O = weight.shape(0), C = weight.shape(1), K = weight.shape(2);
  auto x = checked<T>(x_obj, "x", dims({{"N", -1}, {"L", -1}, {"C", C}}), {-1, -1, C});
  const py::ssize_t N = x.shape(0), L = x.shape(1);
  if (padding < 0) throw py::value_error("padding: must be >= 0, got " + std::to_string(padding));
  const py::ssize_t Lo = py::ssize_t(rnncore::conv1d_out_length(L, K, padding));
  if (Lo < 1) throw py::value_error("x: shorter than kernel_size with this padding");
  auto dy = checked<T>(dy_obj, "dy", dims({{"N", N}, {"Lo", Lo}, {"O", O}}), {N, Lo, O});
  auto dweight =
      checked<T>(dweight_obj, "dweight", dims({{"O", O}, {"C", C}, {"K", K}}), {O, C, K}, true);
  py::array_t<T> dbias;
  if (!dbias_obj.is_none()) dbias = checked<T>(dbias_obj, "dbias", dims({{"O", O}}), {O}, true);
  py::array_t<T> dx;
  if (need_dx) dx = py::array_t<T>({N, L, C});
  const T* dyp = dy.data();
  const T* xp = x.data();
  const T* wp = weight.data();
  T* dwp = dweight.mutable_data();
  T* dbp = dbias_obj.is_none() ? nullptr : dbias.mutable_data();
  T* dxp = need_dx ? dx.mutable_data() : nullptr;
  {
    py::gil_scoped_release release;
    rnncore::conv1d_backward<T>(N, L, C, O, K, padding, dyp, xp, wp, dxp, dwp, dbp);
  }
  if (!need_dx) return py::none();
  return std::move(dx);
}

// ---- Linear-chain CRF ---------------------------------------------------------------------------

// The CRF's parameters and constraints from numpy arrays (kept alive by the caller's handles).
template <typename T>
rnncore::CrfParams<T> crf_params(py::handle trans_obj, py::handle start_obj, py::handle end_obj,
                                 py::handle allowed_obj, py::handle allowed_start_obj,
                                 std::vector<py::object>& keep) {
  auto trans = checked<T>(trans_obj, "transitions", "[K, K]", {-1, -1});
  const py::ssize_t K = trans.shape(0);
  if (trans.shape(1) != K || K < 1)
    throw py::value_error("transitions: expected a square [K, K] with K >= 1, got " +
                          shape_str(trans));
  auto start = checked<T>(start_obj, "start_transitions", dims({{"K", K}}), {K});
  auto end = checked<T>(end_obj, "end_transitions", dims({{"K", K}}), {K});
  rnncore::CrfParams<T> c;
  c.K = K;
  c.transitions = trans.data();
  c.start = start.data();
  c.end = end.data();
  keep.insert(keep.end(), {trans, start, end});
  if (!allowed_obj.is_none()) {
    auto a = checked<bool>(allowed_obj, "allowed", dims({{"K", K}, {"K", K}}) + " bool", {K, K});
    c.allowed = reinterpret_cast<const unsigned char*>(a.data());
    keep.push_back(a);
  }
  if (!allowed_start_obj.is_none()) {
    auto a = checked<bool>(allowed_start_obj, "allowed_start", dims({{"K", K}}) + " bool", {K});
    c.allowed_start = reinterpret_cast<const unsigned char*>(a.data());
    keep.push_back(a);
  }
  return c;
}

template <typename T>
py::tuple crf_nll(py::handle em_obj, py::handle len_obj, py::handle tags_obj, py::handle trans,
                  py::handle start, py::handle end, py::handle allowed, py::handle allowed_start,
                  py::handle dtrans_obj, py::handle dstart_obj, py::handle dend_obj) {
  std::vector<py::object> keep;
  const auto c = crf_params<T>(trans, start, end, allowed, allowed_start, keep);
  const py::ssize_t K = c.K;
  auto em = checked<T>(em_obj, "emissions", dims({{"T", -1}, {"B", -1}, {"K", K}}), {-1, -1, K});
  const py::ssize_t Tn = em.shape(0), B = em.shape(1);
  auto lens = checked<std::int64_t>(len_obj, "lengths", dims({{"B", B}}) + " int64", {B});
  auto tags =
      checked<std::int64_t>(tags_obj, "tags", dims({{"T", Tn}, {"B", B}}) + " int64", {Tn, B});
  const bool grad = !dtrans_obj.is_none();
  py::array_t<T> dem, dtr, dst, den;
  if (grad) {
    dtr = checked<T>(dtrans_obj, "d_transitions", dims({{"K", K}, {"K", K}}), {K, K}, true);
    dst = checked<T>(dstart_obj, "d_start", dims({{"K", K}}), {K}, true);
    den = checked<T>(dend_obj, "d_end", dims({{"K", K}}), {K}, true);
    dem = py::array_t<T>({Tn, B, K});
  }
  const T* ep = em.data();
  const std::int64_t* lp = lens.data();
  const std::int64_t* tp = tags.data();
  T* demp = grad ? dem.mutable_data() : nullptr;
  T* dtrp = grad ? dtr.mutable_data() : nullptr;
  T* dstp = grad ? dst.mutable_data() : nullptr;
  T* denp = grad ? den.mutable_data() : nullptr;
  double nll;
  {
    py::gil_scoped_release release;
    nll = rnncore::crf_nll<T>(Tn, B, c, ep, lp, tp, demp, dtrp, dstp, denp);
  }
  return py::make_tuple(nll, grad ? py::object(dem) : py::none());
}

template <typename T>
py::array_t<std::int64_t> crf_viterbi(py::handle em_obj, py::handle len_obj, py::handle trans,
                                      py::handle start, py::handle end, py::handle allowed,
                                      py::handle allowed_start) {
  std::vector<py::object> keep;
  const auto c = crf_params<T>(trans, start, end, allowed, allowed_start, keep);
  const py::ssize_t K = c.K;
  auto em = checked<T>(em_obj, "emissions", dims({{"T", -1}, {"B", -1}, {"K", K}}), {-1, -1, K});
  const py::ssize_t Tn = em.shape(0), B = em.shape(1);
  auto lens = checked<std::int64_t>(len_obj, "lengths", dims({{"B", B}}) + " int64", {B});
  py::array_t<std::int64_t> out({Tn, B});
  const T* ep = em.data();
  const std::int64_t* lp = lens.data();
  std::int64_t* op = out.mutable_data();
  {
    py::gil_scoped_release release;
    rnncore::crf_viterbi<T>(Tn, B, c, ep, lp, op);
  }
  return out;
}

// ---- Losses -----------------------------------------------------------------------------------

template <typename T>
py::tuple cross_entropy(py::handle logits_obj, py::handle targets_obj, std::int64_t ignore_index,
                        const std::string& reduction, double label_smoothing, bool grad,
                        double grad_scale) {
  auto logits = checked<T>(logits_obj, "logits", "[N, C]", {-1, -1});
  const py::ssize_t N = logits.shape(0), C = logits.shape(1);
  if (C < 1) throw py::value_error("logits: need at least one class (C >= 1)");
  auto targets = checked<std::int64_t>(targets_obj, "targets", dims({{"N", N}}) + " int64", {N});
  rnncore::CrossEntropyOptions o;
  o.ignore_index = ignore_index;
  o.reduction = parse_reduction(reduction);
  o.label_smoothing = label_smoothing;
  o.grad_scale = grad_scale;
  py::array_t<T> dlogits;
  if (grad) dlogits = py::array_t<T>({N, C});
  const T* lp = logits.data();
  const std::int64_t* tp = targets.data();
  T* dp = grad ? dlogits.mutable_data() : nullptr;
  rnncore::LossResult r;
  {
    py::gil_scoped_release release;
    r = rnncore::cross_entropy<T>(N, C, lp, tp, o, dp);
  }
  return py::make_tuple(r.loss, grad ? py::object(dlogits) : py::object(py::none()), r.count);
}

template <typename T>
py::tuple mse_loss(py::handle pred_obj, py::handle target_obj, const std::string& reduction,
                   bool grad, double grad_scale) {
  auto pred = checked<T>(pred_obj, "pred", "[N]", {-1});
  const py::ssize_t N = pred.shape(0);
  auto target = checked<T>(target_obj, "target", dims({{"N", N}}), {N});
  const auto red = parse_reduction(reduction);
  py::array_t<T> dpred;
  if (grad) dpred = py::array_t<T>({N});
  const T* pp = pred.data();
  const T* tp = target.data();
  T* dp = grad ? dpred.mutable_data() : nullptr;
  double loss;
  {
    py::gil_scoped_release release;
    loss = rnncore::mse_loss<T>(N, pp, tp, red, grad_scale, dp);
  }
  return py::make_tuple(loss, grad ? py::object(dpred) : py::object(py::none()));
}

// ---- Pooling over time --------------------------------------------------------------------------

template <typename T>
py::object time_pool(py::handle y_obj, py::handle len_obj, bool max) {
  auto y = checked<T>(y_obj, "y", "[T, B, F]", {-1, -1, -1});
  const py::ssize_t Tn = y.shape(0), B = y.shape(1), F = y.shape(2);
  auto lens = checked<std::int64_t>(len_obj, "lengths", dims({{"B", B}}) + " int64", {B});
  py::array_t<T> pooled({B, F});
  py::array_t<std::int64_t> argmax;
  if (max) argmax = py::array_t<std::int64_t>({B, F});
  const T* yp = y.data();
  const std::int64_t* lp = lens.data();
  T* pp = pooled.mutable_data();
  std::int64_t* ap = max ? argmax.mutable_data() : nullptr;
  {
    py::gil_scoped_release release;
    if (max)
      rnncore::max_pool_forward<T>(Tn, B, F, yp, lp, pp, ap);
    else
      rnncore::mean_pool_forward<T>(Tn, B, F, yp, lp, pp);
  }
  if (max) return py::make_tuple(pooled, argmax);
  return std::move(pooled);
}

template <typename T>
py::array_t<T> time_pool_backward(py::handle dp_obj, py::handle idx_obj, py::ssize_t Tn, bool max) {
  auto dp = checked<T>(dp_obj, "dpooled", "[B, F]", {-1, -1});
  const py::ssize_t B = dp.shape(0), F = dp.shape(1);
  auto idx = checked<std::int64_t>(
      idx_obj, max ? "argmax" : "lengths",
      max ? dims({{"B", B}, {"F", F}}) + " int64" : dims({{"B", B}}) + " int64",
      max ? std::vector<py::ssize_t>{B, F} : std::vector<py::ssize_t>{B});
  if (Tn < 1) throw py::value_error("T (steps) must be >= 1, got " + std::to_string(Tn));
  py::array_t<T> dy({Tn, B, F});
  const T* dpp = dp.data();
  const std::int64_t* ip = idx.data();
  T* dyp = dy.mutable_data();
  {
    py::gil_scoped_release release;
    if (max)
      rnncore::max_pool_backward<T>(Tn, B, F, dpp, ip, dyp);
    else
      rnncore::mean_pool_backward<T>(Tn, B, F, dpp, ip, dyp);
  }
  return dy;
}

// ---- Optimizers -------------------------------------------------------------------------------

// A flat state buffer [P] of the parameter's dtype, writable; None allowed when `optional`.
template <typename T>
T* state_buffer(py::handle obj, const char* name, py::ssize_t P, bool optional) {
  if (obj.is_none()) {
    if (optional) return nullptr;
    throw py::value_error(std::string(name) + ": a state buffer [P] is required, got None");
  }
  auto a = checked<T>(obj, name, dims({{"P", P}}) + " like param", {P}, true);
  return a.mutable_data();
}

template <typename T>
void sgd_step(py::handle param_obj, py::handle grad_obj, py::handle buf_obj, double lr,
              double momentum, double dampening, double weight_decay, bool nesterov,
              bool first_step) {
  auto param = checked<T>(param_obj, "param", "[P]", {-1}, true);
  const py::ssize_t P = param.shape(0);
  auto grad = checked<T>(grad_obj, "grad", dims({{"P", P}}) + " like param", {P});
  T* buf = state_buffer<T>(buf_obj, "momentum_buf", P, momentum == 0.0);
  rnncore::SgdOptions o{lr, momentum, dampening, weight_decay, nesterov};
  T* pp = param.mutable_data();
  const T* gp = grad.data();
  py::gil_scoped_release release;
  rnncore::sgd_step<T>(P, pp, gp, buf, first_step, o);
}

template <typename T>
void adam_step(py::handle param_obj, py::handle grad_obj, py::handle m_obj, py::handle v_obj,
               py::handle vmax_obj, std::int64_t step, double lr, double beta1, double beta2,
               double eps, double weight_decay, bool decoupled) {
  auto param = checked<T>(param_obj, "param", "[P]", {-1}, true);
  const py::ssize_t P = param.shape(0);
  auto grad = checked<T>(grad_obj, "grad", dims({{"P", P}}) + " like param", {P});
  T* m = state_buffer<T>(m_obj, "exp_avg", P, false);
  T* v = state_buffer<T>(v_obj, "exp_avg_sq", P, false);
  T* vmax = state_buffer<T>(vmax_obj, "max_exp_avg_sq", P, true);
  rnncore::AdamOptions o{lr, beta1, beta2, eps, weight_decay, decoupled};
  T* pp = param.mutable_data();
  const T* gp = grad.data();
  py::gil_scoped_release release;
  rnncore::adam_step<T>(P, pp, gp, m, v, vmax, step, o);
}

template <typename T>
void rmsprop_step(py::handle param_obj, py::handle grad_obj, py::handle sq_obj, py::handle gavg_obj,
                  py::handle buf_obj, double lr, double alpha, double eps, double weight_decay,
                  double momentum, bool centered) {
  auto param = checked<T>(param_obj, "param", "[P]", {-1}, true);
  const py::ssize_t P = param.shape(0);
  auto grad = checked<T>(grad_obj, "grad", dims({{"P", P}}) + " like param", {P});
  T* sq = state_buffer<T>(sq_obj, "square_avg", P, false);
  T* gavg = state_buffer<T>(gavg_obj, "grad_avg", P, !centered);
  T* buf = state_buffer<T>(buf_obj, "momentum_buf", P, !(momentum > 0.0));
  rnncore::RmspropOptions o{lr, alpha, eps, weight_decay, momentum, centered};
  T* pp = param.mutable_data();
  const T* gp = grad.data();
  py::gil_scoped_release release;
  rnncore::rmsprop_step<T>(P, pp, gp, sq, gavg, buf, o);
}

template <typename T>
void adadelta_step(py::handle param_obj, py::handle grad_obj, py::handle sq_obj, py::handle acc_obj,
                   double lr, double rho, double eps, double weight_decay) {
  auto param = checked<T>(param_obj, "param", "[P]", {-1}, true);
  const py::ssize_t P = param.shape(0);
  auto grad = checked<T>(grad_obj, "grad", dims({{"P", P}}) + " like param", {P});
  T* sq = state_buffer<T>(sq_obj, "square_avg", P, false);
  T* acc = state_buffer<T>(acc_obj, "acc_delta", P, false);
  rnncore::AdadeltaOptions o{lr, rho, eps, weight_decay};
  T* pp = param.mutable_data();
  const T* gp = grad.data();
  py::gil_scoped_release release;
  rnncore::adadelta_step<T>(P, pp, gp, sq, acc, o);
}

template <typename T>
void adagrad_step(py::handle param_obj, py::handle grad_obj, py::handle sum_obj, std::int64_t step,
                  double lr, double lr_decay, double weight_decay, double eps) {
  auto param = checked<T>(param_obj, "param", "[P]", {-1}, true);
  const py::ssize_t P = param.shape(0);
  auto grad = checked<T>(grad_obj, "grad", dims({{"P", P}}) + " like param", {P});
  T* sum = state_buffer<T>(sum_obj, "state_sum", P, false);
  rnncore::AdagradOptions o{lr, lr_decay, weight_decay, eps};
  T* pp = param.mutable_data();
  const T* gp = grad.data();
  py::gil_scoped_release release;
  rnncore::adagrad_step<T>(P, pp, gp, sum, step, o);
}

// ---- Lists of buffers (clipping, checks): float32 and float64 arrays may be mixed ------------

struct BufferLists {
  std::vector<rnncore::Span<float>> f32;
  std::vector<rnncore::Span<double>> f64;
  std::vector<py::array> keep;  // holds the arrays while the GIL is released

  template <typename T>
  std::vector<rnncore::Span<const T>> as_const(const std::vector<rnncore::Span<T>>& v) const {
    std::vector<rnncore::Span<const T>> out;
    out.reserve(v.size());
    for (const auto& s : v) out.push_back({s.data, s.size});
    return out;
  }
};

BufferLists buffer_lists(py::handle seq, const char* name, bool writable) {
  if (!py::isinstance<py::sequence>(seq) || py::isinstance<py::array>(seq) ||
      py::isinstance<py::str>(seq))
    throw py::type_error(std::string(name) + ": expected a list of numpy arrays, got " +
                         std::string(py::str(py::type::of(seq).attr("__name__"))));
  BufferLists out;
  auto items = py::reinterpret_borrow<py::sequence>(seq);
  for (std::size_t i = 0; i < items.size(); ++i) {
    const std::string label = std::string(name) + "[" + std::to_string(i) + "]";
    py::object item = items[i];
    const int bits = float_bits(item, label);
    auto a = as_array(item, label);
    if (!(a.flags() & py::array::c_style))
      throw py::value_error(label + ": must be C-contiguous (use numpy.ascontiguousarray)");
    if (writable && !a.writeable()) throw py::value_error(label + ": must be writable");
    const auto n = static_cast<std::int64_t>(a.size());
    // mutable_data() would refuse read-only arrays; only writers above are required writable.
    void* p = const_cast<void*>(a.data());
    if (bits == 32)
      out.f32.push_back({static_cast<float*>(p), n});
    else
      out.f64.push_back({static_cast<double*>(p), n});
    out.keep.push_back(a);
  }
  return out;
}

double global_sum_of_squares(const BufferLists& b) {
  return rnncore::sum_of_squares<float>(b.as_const(b.f32)) +
         rnncore::sum_of_squares<double>(b.as_const(b.f64));
}

}  // namespace

void bind_ops(py::module_& m) {
  // Dispatch on the dtype of one leading argument; the others must match it (checked<T>).
  for (const bool log : {true, false})
    m.def(
        log ? "log_softmax" : "softmax",
        [log](py::handle x) -> py::object {
          if (float_bits(x, "x") == 64) return softmax_last_axis<double>(x, log);
          return softmax_last_axis<float>(x, log);
        },
        py::arg("x"),
        log ? "log_softmax over the last axis: x [..., V] -> a new array, the engine's kernel."
            : "softmax over the last axis: x [..., V] -> a new array, the engine's kernel.");
  py::class_<Sampler>(m, "Sampler",
                      "Draws token ids with rnncore::sample_token from a seeded std::mt19937_64: "
                      "the same seed gives the same ids as the C++ LanguageModel::sample.")
      .def(py::init<std::uint64_t>(), py::arg("seed"))
      .def(
          "draw",
          [](Sampler& s, py::handle lp, double temperature, std::int64_t top_k) {
            if (float_bits(lp, "log_probs") == 64) return s.draw<double>(lp, temperature, top_k);
            return s.draw<float>(lp, temperature, top_k);
          },
          py::arg("log_probs"), py::arg("temperature") = 1.0, py::arg("top_k") = 0,
          "One id from log_probs [V] (float32/64): p ∝ exp(log_probs / temperature) over the "
          "top_k most likely ids (0: all); temperature 0 is the most likely id (lowest on ties).");
  m.def(
      "checkpoint_format",
      [] {
        namespace cf = rnncore::checkpoint_format;
        py::dict d;
        d["format"] = cf::kFormat;
        d["version"] = cf::kVersion;
        d["meta_file"] = cf::kMetaFile;
        d["model_file"] = cf::kModelFile;
        d["optimizer_file"] = cf::kOptimizerFile;
        d["tensors_format"] = cf::kTensorsFormat;
        return d;
      },
      "The checkpoint directory layout (rnncore/checkpoint_format.h): file names and format tags.");
  m.def(
      "embedding_forward",
      [](py::handle ids, py::handle weight) -> py::object {
        if (float_bits(weight, "weight") == 64) return embedding_forward<double>(ids, weight);
        return embedding_forward<float>(ids, weight);
      },
      py::arg("ids"), py::arg("weight"),
      "ids int64 [N] in [0, V), weight [V, E] -> out [N, E] (gather).");
  m.def(
      "embedding_backward",
      [](py::handle ids, py::handle dout, py::handle dweight, std::optional<std::int64_t> pad) {
        if (float_bits(dweight, "dweight") == 64)
          embedding_backward<double>(ids, dout, dweight, pad);
        else
          embedding_backward<float>(ids, dout, dweight, pad);
      },
      py::arg("ids"), py::arg("dout"), py::arg("dweight"), py::arg("padding_idx") = py::none(),
      "ids int64 [N], dout [N, E]: dweight[ids[n]] += dout[n] (in place) except for padding_idx.");
  m.def(
      "crf_nll",
      [](py::handle em, py::handle lengths, py::handle tags, py::handle trans, py::handle start,
         py::handle end, py::handle allowed, py::handle allowed_start, py::handle dtrans,
         py::handle dstart, py::handle dend) -> py::tuple {
        if (float_bits(em, "emissions") == 64)
          return crf_nll<double>(em, lengths, tags, trans, start, end, allowed, allowed_start,
                                 dtrans, dstart, dend);
        return crf_nll<float>(em, lengths, tags, trans, start, end, allowed, allowed_start, dtrans,
                              dstart, dend);
      },
      py::arg("emissions"), py::arg("lengths"), py::arg("tags"), py::arg("transitions"),
      py::arg("start_transitions"), py::arg("end_transitions"), py::arg("allowed") = py::none(),
      py::arg("allowed_start") = py::none(), py::arg("d_transitions") = py::none(),
      py::arg("d_start") = py::none(), py::arg("d_end") = py::none(),
      "Linear-chain CRF: (Σ_b -log p(tags_b | emissions_b), d_emissions [T, B, K] or None); "
      "with d_transitions/d_start/d_end the parameter gradients are added into them.");
  m.def(
      "crf_viterbi",
      [](py::handle em, py::handle lengths, py::handle trans, py::handle start, py::handle end,
         py::handle allowed, py::handle allowed_start) -> py::object {
        if (float_bits(em, "emissions") == 64)
          return crf_viterbi<double>(em, lengths, trans, start, end, allowed, allowed_start);
        return crf_viterbi<float>(em, lengths, trans, start, end, allowed, allowed_start);
      },
      py::arg("emissions"), py::arg("lengths"), py::arg("transitions"),
      py::arg("start_transitions"), py::arg("end_transitions"), py::arg("allowed") = py::none(),
      py::arg("allowed_start") = py::none(),
      "Linear-chain CRF: the best tag path of each sequence, int64 [T, B], -1 past its length.");
  m.def(
      "conv1d_forward",
      [](py::handle x, py::handle weight, py::handle bias, std::int64_t padding) -> py::object {
        if (float_bits(weight, "weight") == 64)
          return conv1d_forward<double>(x, weight, bias, padding);
        return conv1d_forward<float>(x, weight, bias, padding);
      },
      py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(), py::arg("padding") = 0,
      "x [N, L, C] (channels last), weight [O, C, K] (PyTorch's), bias [O] or None -> y [N, Lo, "
      "O], Lo = L + 2 padding - K + 1 (stride 1, zero padding).");
  m.def(
      "conv1d_backward",
      [](py::handle dy, py::handle x, py::handle weight, py::handle dweight, py::handle dbias,
         std::int64_t padding, bool need_dx) -> py::object {
        if (float_bits(weight, "weight") == 64)
          return conv1d_backward<double>(dy, x, weight, dweight, dbias, padding, need_dx);
        return conv1d_backward<float>(dy, x, weight, dweight, dbias, padding, need_dx);
      },
      py::arg("dy"), py::arg("x"), py::arg("weight"), py::arg("dweight"),
      py::arg("dbias") = py::none(), py::arg("padding") = 0, py::arg("need_dx") = true,
      "dweight += and dbias += (in place) of conv1d_forward; returns dx [N, L, C] (or None).");
  m.def(
      "linear_forward",
      [](py::handle x, py::handle weight, py::handle bias) -> py::object {
        if (float_bits(weight, "weight") == 64) return linear_forward<double>(x, weight, bias);
        return linear_forward<float>(x, weight, bias);
      },
      py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(),
      "x [N, I], weight [O, I], bias [O] or None -> y = x·weightᵀ + bias [N, O].");
  m.def(
      "linear_backward",
      [](py::handle dy, py::handle x, py::handle weight, py::handle dweight, py::handle dbias,
         bool need_dx) {
        if (float_bits(weight, "weight") == 64)
          return linear_backward<double>(dy, x, weight, dweight, dbias, need_dx);
        return linear_backward<float>(dy, x, weight, dweight, dbias, need_dx);
      },
      py::arg("dy"), py::arg("x"), py::arg("weight"), py::arg("dweight"),
      py::arg("dbias") = py::none(), py::arg("need_dx") = true,
      "dy [N, O], x [N, I], weight [O, I]: dweight += dyᵀ·x, dbias += Σ dy (in place); returns "
      "dx = dy·weight [N, I], or None when need_dx is False.");
  m.def(
      "cross_entropy",
      [](py::handle logits, py::handle targets, std::int64_t ignore_index,
         const std::string& reduction, double label_smoothing, bool grad, double grad_scale) {
        if (float_bits(logits, "logits") == 64)
          return cross_entropy<double>(logits, targets, ignore_index, reduction, label_smoothing,
                                       grad, grad_scale);
        return cross_entropy<float>(logits, targets, ignore_index, reduction, label_smoothing, grad,
                                    grad_scale);
      },
      py::arg("logits"), py::arg("targets"), py::arg("ignore_index") = -100,
      py::arg("reduction") = "mean", py::arg("label_smoothing") = 0.0, py::arg("grad") = true,
      py::arg("grad_scale") = 1.0,
      "logits [N, C], targets int64 [N] -> (loss, dlogits [N, C] or None, count of non-ignored "
      "rows). Fused log-softmax + NLL with PyTorch's ignore_index and label smoothing.");
  m.def(
      "time_pool",
      [](py::handle y, py::handle lengths, bool max) {
        if (float_bits(y, "y") == 64) return time_pool<double>(y, lengths, max);
        return time_pool<float>(y, lengths, max);
      },
      py::arg("y"), py::arg("lengths"), py::arg("max") = false,
      "y [T, B, F], lengths int64 [B] in [1, T] -> the mean over each sequence's steps [B, F], or "
      "with max=True (the maximum [B, F], its step int64 [B, F]).");
  m.def(
      "time_pool_backward",
      [](py::handle dpooled, py::handle lengths_or_argmax, py::ssize_t T, bool max) {
        if (float_bits(dpooled, "dpooled") == 64)
          return py::object(time_pool_backward<double>(dpooled, lengths_or_argmax, T, max));
        return py::object(time_pool_backward<float>(dpooled, lengths_or_argmax, T, max));
      },
      py::arg("dpooled"), py::arg("lengths_or_argmax"), py::arg("T"), py::arg("max") = false,
      "dpooled [B, F] -> dy [T, B, F] of time_pool: lengths int64 [B] (mean) or argmax int64 "
      "[B, F] (max).");
  m.def(
      "mse_loss",
      [](py::handle pred, py::handle target, const std::string& reduction, bool grad,
         double grad_scale) {
        if (float_bits(pred, "pred") == 64)
          return mse_loss<double>(pred, target, reduction, grad, grad_scale);
        return mse_loss<float>(pred, target, reduction, grad, grad_scale);
      },
      py::arg("pred"), py::arg("target"), py::arg("reduction") = "mean", py::arg("grad") = true,
      py::arg("grad_scale") = 1.0, "pred [N], target [N] -> (loss, dpred [N] or None).");

  m.def(
      "sgd_step",
      [](py::handle p, py::handle g, py::handle buf, double lr, double momentum, double dampening,
         double weight_decay, bool nesterov, bool first_step) {
        if (float_bits(p, "param") == 64)
          sgd_step<double>(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, first_step);
        else
          sgd_step<float>(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, first_step);
      },
      py::arg("param"), py::arg("grad"), py::arg("momentum_buf"), py::kw_only(), py::arg("lr"),
      py::arg("momentum") = 0.0, py::arg("dampening") = 0.0, py::arg("weight_decay") = 0.0,
      py::arg("nesterov") = false, py::arg("first_step") = false,
      "torch.optim.SGD update of a flat buffer: param [P] in place, grad [P], momentum_buf [P] "
      "or None when momentum == 0.");
  m.def(
      "keyed_uniform",
      [](std::int64_t outer, std::int64_t B, std::int64_t inner, std::uint64_t seed,
         std::int64_t batch_offset) {
        if (outer < 0 || B < 0 || inner < 0)
          throw py::value_error("keyed_uniform: outer, B and inner must be >= 0");
        py::array_t<double> out({py::ssize_t(outer), py::ssize_t(B), py::ssize_t(inner)});
        double* op = out.mutable_data();
        py::gil_scoped_release release;
        rnncore::keyed_uniform(outer, B, inner, seed, batch_offset, op);
        return out;
      },
      py::arg("outer"), py::arg("B"), py::arg("inner"), py::arg("seed"), py::kw_only(),
      py::arg("batch_offset") = 0,
      "Uniform draws in [0, 1), float64 [outer, B, inner]: element (o, b, i) keyed by (seed, "
      "example batch_offset + b, position o * inner + i).");
  m.def(
      "keyed_dropout",
      [](py::handle x, double p, std::uint64_t seed, std::int64_t batch_offset) {
        if (float_bits(x, "x") == 64) return keyed_dropout<double>(x, p, seed, batch_offset);
        return keyed_dropout<float>(x, p, seed, batch_offset);
      },
      py::arg("x"), py::arg("p"), py::arg("seed"), py::kw_only(), py::arg("batch_offset") = 0,
      "Inverted dropout of x [outer, B, inner] with keyed_uniform's draws: (y, scale), scale = "
      "1/(1-p) where the draw is >= p, else 0; y = x * scale. p in [0, 1).");
  m.def(
      "adam_step",
      [](py::handle p, py::handle g, py::handle m1, py::handle m2, py::handle vmax,
         std::int64_t step, double lr, double beta1, double beta2, double eps, double weight_decay,
         bool decoupled) {
        if (float_bits(p, "param") == 64)
          adam_step<double>(p, g, m1, m2, vmax, step, lr, beta1, beta2, eps, weight_decay,
                            decoupled);
        else
          adam_step<float>(p, g, m1, m2, vmax, step, lr, beta1, beta2, eps, weight_decay,
                           decoupled);
      },
      py::arg("param"), py::arg("grad"), py::arg("exp_avg"), py::arg("exp_avg_sq"),
      py::arg("max_exp_avg_sq"), py::kw_only(), py::arg("step"), py::arg("lr"),
      py::arg("beta1") = 0.9, py::arg("beta2") = 0.999, py::arg("eps") = 1e-8,
      py::arg("weight_decay") = 0.0, py::arg("decoupled_weight_decay") = false,
      "torch.optim.Adam/AdamW update of a flat buffer [P]; step counts from 1; max_exp_avg_sq "
      "[P] selects AMSGrad, None does not.");
  m.def(
      "rmsprop_step",
      [](py::handle p, py::handle g, py::handle sq, py::handle gavg, py::handle buf, double lr,
         double alpha, double eps, double weight_decay, double momentum, bool centered) {
        if (float_bits(p, "param") == 64)
          rmsprop_step<double>(p, g, sq, gavg, buf, lr, alpha, eps, weight_decay, momentum,
                               centered);
        else
          rmsprop_step<float>(p, g, sq, gavg, buf, lr, alpha, eps, weight_decay, momentum,
                              centered);
      },
      py::arg("param"), py::arg("grad"), py::arg("square_avg"), py::arg("grad_avg"),
      py::arg("momentum_buf"), py::kw_only(), py::arg("lr"), py::arg("alpha") = 0.99,
      py::arg("eps") = 1e-8, py::arg("weight_decay") = 0.0, py::arg("momentum") = 0.0,
      py::arg("centered") = false,
      "torch.optim.RMSprop update of a flat buffer [P]; grad_avg [P] when centered, "
      "momentum_buf [P] when momentum > 0, else None.");
  m.def(
      "adadelta_step",
      [](py::handle p, py::handle g, py::handle sq, py::handle acc, double lr, double rho,
         double eps, double weight_decay) {
        if (float_bits(p, "param") == 64)
          adadelta_step<double>(p, g, sq, acc, lr, rho, eps, weight_decay);
        else
          adadelta_step<float>(p, g, sq, acc, lr, rho, eps, weight_decay);
      },
      py::arg("param"), py::arg("grad"), py::arg("square_avg"), py::arg("acc_delta"), py::kw_only(),
      py::arg("lr") = 1.0, py::arg("rho") = 0.9, py::arg("eps") = 1e-6,
      py::arg("weight_decay") = 0.0, "torch.optim.Adadelta update of a flat buffer [P].");
  m.def(
      "adagrad_step",
      [](py::handle p, py::handle g, py::handle sum, std::int64_t step, double lr, double lr_decay,
         double weight_decay, double eps) {
        if (float_bits(p, "param") == 64)
          adagrad_step<double>(p, g, sum, step, lr, lr_decay, weight_decay, eps);
        else
          adagrad_step<float>(p, g, sum, step, lr, lr_decay, weight_decay, eps);
      },
      py::arg("param"), py::arg("grad"), py::arg("state_sum"), py::kw_only(), py::arg("step"),
      py::arg("lr"), py::arg("lr_decay") = 0.0, py::arg("weight_decay") = 0.0,
      py::arg("eps") = 1e-10,
      "torch.optim.Adagrad update of a flat buffer [P]; step counts from 1.");

  m.def(
      "grad_norm",
      [](py::handle buffers) {
        auto b = buffer_lists(buffers, "buffers", false);
        py::gil_scoped_release release;
        return std::sqrt(global_sum_of_squares(b));
      },
      py::arg("buffers"), "Global L2 norm over a list of float32/float64 arrays (no change).");
  m.def(
      "clip_grad_norm",
      [](py::handle buffers, double max_norm) {
        if (!(max_norm > 0.0)) throw py::value_error("max_norm: must be > 0, got " + num(max_norm));
        auto b = buffer_lists(buffers, "buffers", true);
        py::gil_scoped_release release;
        const double norm = std::sqrt(global_sum_of_squares(b));
        const double coef = rnncore::clip_coefficient(norm, max_norm);
        if (coef != 1.0) {
          rnncore::scale_buffers<float>(b.f32, coef);
          rnncore::scale_buffers<double>(b.f64, coef);
        }
        return norm;
      },
      py::arg("buffers"), py::arg("max_norm"),
      "Scale all arrays in place by max_norm/(norm+1e-6) when their global L2 norm exceeds "
      "max_norm; returns the norm before clipping.");
  m.def(
      "clip_grad_value",
      [](py::handle buffers, double clip_value) {
        if (!(clip_value > 0.0))
          throw py::value_error("clip_value: must be > 0, got " + num(clip_value));
        auto b = buffer_lists(buffers, "buffers", true);
        py::gil_scoped_release release;
        rnncore::clip_grad_value<float>(b.f32, clip_value);
        rnncore::clip_grad_value<double>(b.f64, clip_value);
      },
      py::arg("buffers"), py::arg("clip_value"),
      "Clamp every element of the arrays to [-clip_value, clip_value] in place.");
  m.def(
      "all_finite",
      [](py::handle buffers) {
        auto b = buffer_lists(buffers, "buffers", false);
        py::gil_scoped_release release;
        return rnncore::all_finite<float>(b.as_const(b.f32)) &&
               rnncore::all_finite<double>(b.as_const(b.f64));
      },
      py::arg("buffers"), "True when no element of any array is NaN or infinite.");
}
