// Forecaster of the C++ inference API: rnncore.models.Forecaster rebuilt from a checkpoint, with
// the forecast task's series transform (log, differencing, scaling) applied and undone.
#include <cmath>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>

#include "checkpoint.h"
#include "rnncore/inference.h"
#include "rnncore/ops.h"

namespace rnncore {

using detail::as_int;
using detail::cell_of;
using detail::check_model_type;
using detail::load_rnn;
using detail::Meta;
using detail::read_meta;
using detail::require_cell;
using detail::require_ptr;
using detail::require_same;
using detail::rnn_config;
using detail::rnn_why;
using detail::Weights;
using detail::json::Value;

namespace {

// extra.<path> as a finite number; CheckpointError naming it otherwise.
double extra_number(const Meta& m, const Value& v, const std::string& path) {
  if (!v.is_number() || !std::isfinite(v.number))
    throw CheckpointError(m.where + ": checkpoint.json extra." + path + " must be a number");
  return v.number;
}

// A Scaler.to_dict() object: (offset, scale), scale > 0.
void read_scaler(const Meta& m, const Value* v, const std::string& path, double& offset,
                 double& scale) {
  if (!v || !v->is_object())
    throw CheckpointError(m.where + ": checkpoint.json extra." + path + " must be an object");
  const Value* o = v->find("offset");
  const Value* s = v->find("scale");
  if (!o || !s)
    throw CheckpointError(m.where + ": checkpoint.json extra." + path + " needs offset and scale");
  offset = extra_number(m, *o, path + ".offset");
  scale = extra_number(m, *s, path + ".scale");
  if (!(scale > 0))
    throw CheckpointError(m.where + ": checkpoint.json extra." + path + ".scale must be > 0");
}

}  // namespace

struct Forecaster::Impl {
  CheckpointInfo info;
  ForecasterConfig cfg;
  Recurrent<float> rnn;
  std::vector<float> head_w, head_b;  // [h, H], [h] or empty
  std::mutex mu;                      // the engine keeps per-call scratch: one call at a time

  Impl(CheckpointInfo i, ForecasterConfig c, Recurrent<float> r)
      : info(std::move(i)), cfg(std::move(c)), rnn(std::move(r)) {}
};

Forecaster::Forecaster(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Forecaster::Forecaster(Forecaster&&) noexcept = default;
Forecaster& Forecaster::operator=(Forecaster&&) noexcept = default;
Forecaster::~Forecaster() = default;

Forecaster Forecaster::load(const std::string& directory, const ModelRequirements& req) {
  Meta m = read_meta(directory);
  check_model_type(m, "Forecaster");
  if (req.num_classes || req.vocab_size || req.embed_dim || req.bidirectional)
    throw std::invalid_argument(
        "ModelRequirements: only cell, hidden_size and num_layers apply to a Forecaster");
  ForecasterConfig c;
  c.input_size = m.integer("input_size", 1, 1);
  c.hidden_size = m.integer("hidden_size", 32, 1);
  c.horizon = m.integer("horizon", 1, 1);
  c.num_layers = m.integer("num_layers", 1, 1);
  const CellInfo& cell = cell_of(m);
  c.cell = cell.name;
  c.mode = m.string("mode", "many_to_one");
  if (c.mode != "many_to_one" && c.mode != "many_to_many")
    throw CheckpointError(m.key_where("mode") + " " + detail::in_quotes(c.mode) +
                          " is not many_to_one or many_to_many");
  require_cell(m, req, cell);
  require_same(m, "hidden_size", req.hidden_size, c.hidden_size);
  require_same(m, "num_layers", req.num_layers, c.num_layers);

  // The run's transform (absent for a model saved by hand: predict() still works).
  if (const Value* extra = m.root.find("extra"); extra && extra->is_object()) {
    if (const Value* L = extra->find("input_len"); L && L->is_integer() && L->as_int64() >= 1)
      c.input_len = L->as_int64();
    if (const Value* t = extra->find("transform"); t && t->is_object()) {
      const Value* log = t->find("log");
      const Value* diff = t->find("difference");
      if (!log || !log->is_bool() || !diff || !diff->is_integer() || diff->as_int64() < 0)
        throw CheckpointError(m.where +
                              ": checkpoint.json extra.transform needs log (true/false) and "
                              "difference (an integer >= 0)");
      c.log = log->boolean;
      c.difference = diff->as_int64();
      read_scaler(m, t->find("scaler"), "transform.scaler", c.offset, c.scale);
    }
    if (const Value* cs = extra->find("covariate_scalers"); cs && cs->is_array()) {
      for (std::size_t j = 0; j < cs->array.size(); ++j) {
        double o = 0, s = 1;
        read_scaler(m, &cs->array[j], "covariate_scalers[" + std::to_string(j) + "]", o, s);
        c.cov_offset.push_back(o);
        c.cov_scale.push_back(s);
      }
    }
  }
  if (!c.cov_offset.empty() && std::int64_t(c.cov_offset.size()) != c.input_size - 1)
    throw CheckpointError(m.where + ": checkpoint.json extra.covariate_scalers has " +
                          std::to_string(c.cov_offset.size()) + " scalers but input_size " +
                          std::to_string(c.input_size) + " means " +
                          std::to_string(c.input_size - 1) + " covariates");

  RecurrentConfig rc = rnn_config(m, cell, c.input_size, c.hidden_size, c.num_layers);
  Weights w(m.info.directory, m.where, m.tied);
  rc.bias = w.contains("rnn.bias_ih_l0") || w.contains("rnn.bias_hh_l0");
  Recurrent<float> rnn = load_rnn(w, rc, rnn_why(rc, cell.name));
  auto impl = std::make_unique<Impl>(std::move(m.info), c, std::move(rnn));
  const std::string why = "a head from hidden_size " + std::to_string(c.hidden_size) +
                          " to horizon " + std::to_string(c.horizon);
  impl->head_w = w.take("head.weight", {c.horizon, c.hidden_size}, why);
  if (w.contains("head.bias")) impl->head_b = w.take("head.bias", {c.horizon}, why);
  w.check_all_used("Forecaster");
  return Forecaster(std::move(impl));
}

const ForecasterConfig& Forecaster::config() const { return impl_->cfg; }
const CheckpointInfo& Forecaster::info() const { return impl_->info; }

void Forecaster::predict(std::int64_t steps, std::int64_t batch, const float* x, float* out) {
  Impl& m = *impl_;
  const ForecasterConfig& c = m.cfg;
  const int L = as_int(steps, "steps"), B = as_int(batch, "batch");
  require_ptr(x, "x");
  require_ptr(out, "out");
  for (std::int64_t i = 0; i < std::int64_t(L) * B * c.input_size; ++i)
    if (!std::isfinite(x[i]))
      throw std::invalid_argument("Forecaster::predict: x holds a non-finite value at index " +
                                  std::to_string(i));
  const std::int64_t H = c.hidden_size, NL = c.num_layers;
  std::vector<float> y(std::size_t(L * B * H)), hn(std::size_t(NL * B * H));
  std::vector<float> cn(m.rnn.config().states() == 2 ? hn.size() : 0);
  {
    std::lock_guard<std::mutex> lock(m.mu);
    m.rnn.forward(L, B, x, nullptr, nullptr, nullptr, y.data(), hn.data(),
                  cn.empty() ? nullptr : cn.data(), /*training=*/false);
  }
  // Both modes forecast from the top layer's last state (many_to_many: its last step's output).
  linear_forward<float>(B, H, c.horizon, hn.data() + (NL - 1) * B * H, m.head_w.data(),
                        m.head_b.empty() ? nullptr : m.head_b.data(), out);
}

std::vector<std::vector<double>> Forecaster::forecast(
    const std::vector<std::vector<double>>& histories,
    const std::vector<std::vector<std::vector<double>>>& covariates) {
  const ForecasterConfig& c = impl_->cfg;
  if (histories.empty()) return {};
  if (c.input_len < 1)
    throw std::logic_error(
        "Forecaster::forecast: the checkpoint records no input_len (extra.input_len, written by "
        "`rnncore train forecast`): build windows yourself and call predict()");
  const std::int64_t L = c.input_len, lag = c.difference, I = c.input_size;
  const auto B = std::int64_t(histories.size());
  const bool with_cov = I > 1;
  if (with_cov && covariates.size() != histories.size())
    throw std::invalid_argument("Forecaster::forecast: the model takes " + std::to_string(I - 1) +
                                " covariate(s): covariates must have one entry per history");
  if (!with_cov && !covariates.empty())
    throw std::invalid_argument("Forecaster::forecast: covariates given, but the model has none");
  std::vector<float> x(std::size_t(L * B * I));
  std::vector<std::vector<double>> pre(histories.size());  // log'd values (differencing base)
  for (std::int64_t b = 0; b < B; ++b) {
    const auto& h = histories[std::size_t(b)];
    const std::string which = "history " + std::to_string(b);
    if (std::int64_t(h.size()) < L + lag)
      throw std::invalid_argument("Forecaster::forecast: " + which + " has " +
                                  std::to_string(h.size()) + " values; input_len " +
                                  std::to_string(L) + " + difference " + std::to_string(lag) +
                                  " are needed");
    const std::size_t first = h.size() - std::size_t(L + lag);
    auto& p = pre[std::size_t(b)];
    for (std::size_t i = first; i < h.size(); ++i) {
      double v = h[i];
      if (!std::isfinite(v) || (c.log && v <= 0))
        throw std::invalid_argument("Forecaster::forecast: " + which + " value " +
                                    std::to_string(i) + " is " + std::to_string(v) +
                                    (c.log ? " (log needs values > 0)" : " (not finite)"));
      p.push_back(c.log ? std::log(v) : v);
    }
    for (std::int64_t t = 0; t < L; ++t) {
      const double d = lag ? p[std::size_t(t + lag)] - p[std::size_t(t)] : p[std::size_t(t)];
      x[std::size_t((t * B + b) * I)] = float((d - c.offset) / c.scale);
    }
    if (!with_cov) continue;
    const auto& cov = covariates[std::size_t(b)];
    if (std::int64_t(cov.size()) != I - 1)
      throw std::invalid_argument("Forecaster::forecast: " + which + " needs " +
                                  std::to_string(I - 1) + " covariate series, got " +
                                  std::to_string(cov.size()));
    for (std::int64_t j = 0; j < I - 1; ++j) {
      const auto& s = cov[std::size_t(j)];
      if (s.size() != h.size())
        throw std::invalid_argument("Forecaster::forecast: covariate " + std::to_string(j) +
                                    " of " + which + " has " + std::to_string(s.size()) +
                                    " values, the history " + std::to_string(h.size()));
      const double o = c.cov_offset.empty() ? 0.0 : c.cov_offset[std::size_t(j)];
      const double sc = c.cov_scale.empty() ? 1.0 : c.cov_scale[std::size_t(j)];
      for (std::int64_t t = 0; t < L; ++t) {
        const double v = s[s.size() - std::size_t(L) + std::size_t(t)];
        if (!std::isfinite(v))
          throw std::invalid_argument("Forecaster::forecast: covariate " + std::to_string(j) +
                                      " of " + which + " is not finite");
        x[std::size_t((t * B + b) * I + 1 + j)] = float((v - o) / sc);
      }
    }
  }
  std::vector<float> z(std::size_t(B * c.horizon));
  predict(L, B, x.data(), z.data());
  std::vector<std::vector<double>> out(histories.size());
  for (std::int64_t b = 0; b < B; ++b) {
    // Undo scaling, then differencing from the last `lag` (log'd) values, then the log.
    std::vector<double> full(pre[std::size_t(b)].end() - lag, pre[std::size_t(b)].end());
    for (std::int64_t k = 0; k < c.horizon; ++k) {
      const double y = double(z[std::size_t(b * c.horizon + k)]) * c.scale + c.offset;
      full.push_back(lag ? full[std::size_t(k)] + y : y);
    }
    for (auto it = full.begin() + lag; it != full.end(); ++it)
      out[std::size_t(b)].push_back(c.log ? std::exp(*it) : *it);
  }
  return out;
}

}  // namespace rnncore
