// The models of the C++ inference API: LanguageModel and SequenceClassifier, rebuilt from a
// checkpoint's model_config and run with the engine in float32.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>

#include "checkpoint.h"
#include "rnncore/inference.h"
#include "rnncore/ops.h"

namespace rnncore {

using detail::as_int;
using detail::cell_of;
using detail::check_model_type;
using detail::config_int;
using detail::in_quotes;
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

// ---- LanguageModel ------------------------------------------------------------------------------

struct LanguageModel::Impl {
  CheckpointInfo info;
  LanguageModelConfig cfg;
  Recurrent<float> rnn;
  std::vector<float> embedding;     // [V, E]
  std::vector<float> dec_w;         // [V, R]; empty when tied (embedding is used)
  std::vector<float> dec_b;         // [V] or empty
  std::vector<float> x, y, hn, cn;  // workspaces: [T*B, E], [T*B, R], [L, B, R], [L, B, H]
  std::recursive_mutex mu;          // the workspaces serve one call at a time

  Impl(CheckpointInfo i, LanguageModelConfig c, Recurrent<float> r)
      : info(std::move(i)), cfg(std::move(c)), rnn(std::move(r)) {}

  const float* decoder_weight() const { return cfg.tie_weights ? embedding.data() : dec_w.data(); }
  bool lstm() const { return rnn.config().states() == 2; }  // carries a cell state c

  void check_state(const State& s, std::int64_t batch, const char* where) const {
    const auto n = std::size_t(cfg.num_layers * batch * cfg.state_size());
    const auto nc = std::size_t(cfg.num_layers * batch * cfg.hidden_size);
    if (s.batch != batch || s.h.size() != n || (lstm() ? s.c.size() != nc : !s.c.empty()))
      throw std::invalid_argument(std::string(where) + ": state is for batch " +
                                  std::to_string(s.batch) + " (h of " + std::to_string(s.h.size()) +
                                  " values), expected batch " + std::to_string(batch) +
                                  " with h [L, B, R] = " + std::to_string(n) + " values" +
                                  (lstm() ? " and c [L, B, H] = " + std::to_string(nc) : ""));
  }

  // Runs the embedding and the recurrent stack over ids [T, B]; outputs in y [T*B, H], the final
  // state in state (when given; it is also the start state).
  void run(std::int64_t T, std::int64_t B, const std::int64_t* ids, State* state,
           const char* where) {
    const int t = as_int(T, "steps"), b = as_int(B, "batch");
    require_ptr(ids, "ids");
    if (state) check_state(*state, B, where);
    const std::int64_t V = cfg.vocab_size, E = cfg.embed_dim, R = cfg.state_size();
    x.resize(std::size_t(T * B * E));
    y.resize(std::size_t(T * B * R));
    hn.resize(std::size_t(cfg.num_layers * B * R));
    cn.resize(lstm() ? std::size_t(cfg.num_layers * B * cfg.hidden_size) : 0);
    embedding_forward<float>(T * B, V, E, ids, embedding.data(), x.data());
    const float* h0 = state ? state->h.data() : nullptr;
    const float* c0 = state && lstm() ? state->c.data() : nullptr;
    rnn.forward(t, b, x.data(), nullptr, h0, c0, y.data(), hn.data(), lstm() ? cn.data() : nullptr,
                /*training=*/false);
    if (state) {
      state->h.assign(hn.begin(), hn.end());
      if (lstm()) state->c.assign(cn.begin(), cn.end());
    }
  }

  // out [N, V] = log_softmax(decoder(rows [N, R]))
  void decode(std::int64_t N, const float* rows, float* out) const {
    linear_forward<float>(N, cfg.state_size(), cfg.vocab_size, rows, decoder_weight(),
                          dec_b.empty() ? nullptr : dec_b.data(), out);
    log_softmax_rows(N, cfg.vocab_size, out);
  }
};

LanguageModel::LanguageModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LanguageModel::LanguageModel(LanguageModel&&) noexcept = default;
LanguageModel& LanguageModel::operator=(LanguageModel&&) noexcept = default;
LanguageModel::~LanguageModel() = default;

LanguageModel LanguageModel::load(const std::string& directory, const ModelRequirements& req) {
  Meta m = read_meta(directory);
  check_model_type(m, "LanguageModel");
  if (req.num_classes || req.bidirectional)
    throw std::invalid_argument(
        "ModelRequirements: num_classes and bidirectional do not apply to a LanguageModel");
  LanguageModelConfig c;
  c.vocab_size = m.integer("vocab_size", std::nullopt, 1);
  c.embed_dim = m.integer("embed_dim", std::nullopt, 1);
  c.hidden_size = m.integer("hidden_size", std::nullopt, 1);
  c.num_layers = m.integer("num_layers", 2, 1);
  const CellInfo& cell = cell_of(m);
  c.cell = cell.name;
  c.tie_weights = m.boolean("tie_weights", false);
  c.proj_size = m.integer("proj_size", 0, 0);
  if (c.proj_size > 0 && (cell.id != CellType::kLstm || c.proj_size >= c.hidden_size))
    throw CheckpointError(m.key_where("proj_size") + " " + std::to_string(c.proj_size) +
                          " needs the lstm cell and proj_size < hidden_size (" +
                          std::to_string(c.hidden_size) + ")");
  require_cell(m, req, cell);
  require_same(m, "vocab_size", req.vocab_size, c.vocab_size);
  require_same(m, "embed_dim", req.embed_dim, c.embed_dim);
  require_same(m, "hidden_size", req.hidden_size, c.hidden_size);
  require_same(m, "num_layers", req.num_layers, c.num_layers);
  if (c.tie_weights && c.embed_dim != c.state_size())
    throw CheckpointError(m.where + ": model_config.tie_weights needs embed_dim == " +
                          (c.proj_size ? "proj_size" : "hidden_size") + ", got " +
                          std::to_string(c.embed_dim) + " and " + std::to_string(c.state_size()));
  check_vocab_size(m, c.vocab_size);

  RecurrentConfig rc = rnn_config(m, cell, c.embed_dim, c.hidden_size, c.num_layers);
  rc.proj_size = config_int(m, "proj_size", c.proj_size);
  Weights w(m.info.directory, m.where, m.tied);
  rc.bias = w.contains("rnn.bias_ih_l0") || w.contains("rnn.bias_hh_l0");
  const std::string V = std::to_string(c.vocab_size);
  auto emb =
      w.take("embedding.weight", {c.vocab_size, c.embed_dim},
             "an embedding of vocab_size " + V + ", embed_dim " + std::to_string(c.embed_dim));
  Recurrent<float> rnn = load_rnn(w, rc, rnn_why(rc, cell.name));
  auto impl = std::make_unique<Impl>(std::move(m.info), c, std::move(rnn));
  impl->embedding = std::move(emb);
  const std::string dec_why =
      "a decoder from " + std::to_string(c.state_size()) + " features to vocab_size " + V;
  if (c.tie_weights) {
    w.skip("decoder.weight");  // tied: the embedding is the decoder weight
  } else {
    impl->dec_w = w.take("decoder.weight", {c.vocab_size, c.state_size()}, dec_why);
  }
  if (w.contains("decoder.bias")) impl->dec_b = w.take("decoder.bias", {c.vocab_size}, dec_why);
  w.check_all_used("LanguageModel");
  return LanguageModel(std::move(impl));
}

const LanguageModelConfig& LanguageModel::config() const { return impl_->cfg; }
const CheckpointInfo& LanguageModel::info() const { return impl_->info; }

LanguageModel::State LanguageModel::initial_state(std::int64_t batch) const {
  as_int(batch, "initial_state: batch");
  State s;
  s.batch = batch;
  const auto& c = impl_->cfg;
  s.h.assign(std::size_t(c.num_layers * batch * c.state_size()), 0.0f);
  if (impl_->lstm()) s.c.assign(std::size_t(c.num_layers * batch * c.hidden_size), 0.0f);
  return s;
}

void LanguageModel::log_probs(std::int64_t steps, std::int64_t batch, const std::int64_t* ids,
                              float* log_probs, State* state) {
  std::lock_guard<std::recursive_mutex> lock(impl_->mu);
  require_ptr(log_probs, "log_probs");
  impl_->run(steps, batch, ids, state, "LanguageModel::log_probs");
  impl_->decode(steps * batch, impl_->y.data(), log_probs);
}

std::vector<float> LanguageModel::feed(const std::vector<std::int64_t>& tokens, State& state) {
  std::lock_guard<std::recursive_mutex> lock(impl_->mu);
  if (tokens.empty()) throw std::invalid_argument("LanguageModel::feed: tokens must not be empty");
  const auto T = std::int64_t(tokens.size());
  impl_->run(T, 1, tokens.data(), &state, "LanguageModel::feed");
  std::vector<float> out(std::size_t(impl_->cfg.vocab_size));
  impl_->decode(1, impl_->y.data() + (T - 1) * impl_->cfg.state_size(), out.data());
  return out;
}

std::vector<float> LanguageModel::next_log_probs(const std::vector<std::int64_t>& prefix) {
  std::lock_guard<std::recursive_mutex> lock(impl_->mu);
  if (prefix.empty())
    throw std::invalid_argument("LanguageModel::next_log_probs: prefix must not be empty");
  State s = initial_state(1);
  return feed(prefix, s);
}

void LanguageModel::step(const std::int64_t* tokens, State& state, float* log_probs) {
  std::lock_guard<std::recursive_mutex> lock(impl_->mu);
  require_ptr(log_probs, "log_probs");
  impl_->run(1, state.batch, tokens, &state, "LanguageModel::step");
  impl_->decode(state.batch, impl_->y.data(), log_probs);
}

std::vector<std::int64_t> LanguageModel::sample(const std::vector<std::int64_t>& prefix,
                                                const SampleOptions& o) {
  std::lock_guard<std::recursive_mutex> lock(impl_->mu);
  if (prefix.empty())
    throw std::invalid_argument(
        "LanguageModel::sample: prefix must not be empty (start with "
        "e.g. the bos id)");
  if (o.max_tokens < 0)
    throw std::invalid_argument("LanguageModel::sample: max_tokens must be >= 0, got " +
                                std::to_string(o.max_tokens));
  if (!(o.temperature >= 0.0) || !std::isfinite(o.temperature))
    throw std::invalid_argument("LanguageModel::sample: temperature must be >= 0 and finite");
  if (o.top_k < 0) throw std::invalid_argument("LanguageModel::sample: top_k must be >= 0");
  std::vector<std::int64_t> out;
  if (o.max_tokens == 0) return out;
  State state = initial_state(1);
  std::vector<float> lp = feed(prefix, state);
  std::mt19937_64 rng(o.seed);
  const std::int64_t V = impl_->cfg.vocab_size;
  for (std::int64_t i = 0; i < o.max_tokens; ++i) {
    const std::int64_t tok = sample_token(lp.data(), V, o.temperature, o.top_k, rng);
    out.push_back(tok);
    if (tok == o.stop_token || i + 1 == o.max_tokens) break;
    step(&tok, state, lp.data());
  }
  return out;
}

// ---- SequenceClassifier -------------------------------------------------------------------------

struct SequenceClassifier::Impl {
  CheckpointInfo info;
  ClassifierConfig cfg;
  Recurrent<float> rnn;
  std::vector<float> embedding;       // [V, E]
  std::vector<float> cls_w;           // [C, D*H]
  std::vector<float> cls_b;           // [C] or empty
  std::vector<std::int64_t> ids;      // workspaces: [T*B], and below
  std::vector<float> x, y, hn, feat;  // [T*B, E], [T*B, D*H], [L*D, B, H], [B, D*H]
  std::recursive_mutex mu;            // the workspaces serve one call at a time

  Impl(CheckpointInfo i, ClassifierConfig c, Recurrent<float> r)
      : info(std::move(i)), cfg(std::move(c)), rnn(std::move(r)) {}
};

SequenceClassifier::SequenceClassifier(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SequenceClassifier::SequenceClassifier(SequenceClassifier&&) noexcept = default;
SequenceClassifier& SequenceClassifier::operator=(SequenceClassifier&&) noexcept = default;
SequenceClassifier::~SequenceClassifier() = default;

SequenceClassifier SequenceClassifier::load(const std::string& directory,
                                            const ModelRequirements& req) {
  Meta m = read_meta(directory);
  check_model_type(m, "SequenceClassifier");
  ClassifierConfig c;
  c.vocab_size = m.integer("vocab_size", std::nullopt, 1);
  c.embed_dim = m.integer("embed_dim", std::nullopt, 1);
  c.hidden_size = m.integer("hidden_size", std::nullopt, 1);
  c.num_classes = m.integer("num_classes", std::nullopt, 1);
  c.num_layers = m.integer("num_layers", 1, 1);
  const CellInfo& cell = cell_of(m);
  c.cell = cell.name;
  c.bidirectional = m.boolean("bidirectional", true);
  c.pooling = m.string("pooling", "last");
  if (c.pooling != "last" && c.pooling != "mean" && c.pooling != "max")
    throw CheckpointError(m.key_where("pooling") + " " + in_quotes(c.pooling) +
                          " is not one of last, mean, max");
  // Python's padding_idx: None, or an id in [-V, V) (negative counts from the end).
  c.padding_idx = -1;
  if (const Value* p = m.field("padding_idx"); p && !p->is_null()) {
    const std::int64_t idx = m.integer("padding_idx", std::nullopt, -c.vocab_size);
    if (idx >= c.vocab_size)
      throw CheckpointError(m.key_where("padding_idx") + " must be in [-vocab_size, vocab_size)");
    c.padding_idx = idx < 0 ? idx + c.vocab_size : idx;
  }
  require_cell(m, req, cell);
  require_same(m, "vocab_size", req.vocab_size, c.vocab_size);
  require_same(m, "embed_dim", req.embed_dim, c.embed_dim);
  require_same(m, "hidden_size", req.hidden_size, c.hidden_size);
  require_same(m, "num_layers", req.num_layers, c.num_layers);
  require_same(m, "num_classes", req.num_classes, c.num_classes);
  require_same(m, "bidirectional", req.bidirectional, c.bidirectional);
  check_vocab_size(m, c.vocab_size);

  RecurrentConfig rc = rnn_config(m, cell, c.embed_dim, c.hidden_size, c.num_layers);
  rc.bidirectional = c.bidirectional;
  Weights w(m.info.directory, m.where, m.tied);
  rc.bias = w.contains("rnn.bias_ih_l0") || w.contains("rnn.bias_hh_l0");
  auto emb = w.take("embedding.weight", {c.vocab_size, c.embed_dim},
                    "an embedding of vocab_size " + std::to_string(c.vocab_size) + ", embed_dim " +
                        std::to_string(c.embed_dim));
  Recurrent<float> rnn = load_rnn(w, rc, rnn_why(rc, cell.name));
  auto impl = std::make_unique<Impl>(std::move(m.info), c, std::move(rnn));
  impl->embedding = std::move(emb);
  const std::int64_t DH = (c.bidirectional ? 2 : 1) * c.hidden_size;
  const std::string why = "a classifier from " + std::to_string(DH) + " features (D*H) to " +
                          std::to_string(c.num_classes) + " classes";
  impl->cls_w = w.take("classifier.weight", {c.num_classes, DH}, why);
  if (w.contains("classifier.bias")) impl->cls_b = w.take("classifier.bias", {c.num_classes}, why);
  w.check_all_used("SequenceClassifier");
  return SequenceClassifier(std::move(impl));
}

const ClassifierConfig& SequenceClassifier::config() const { return impl_->cfg; }

void SequenceClassifier::set_int8_inference(bool on) {
  std::lock_guard<std::recursive_mutex> lock(impl_->mu);
  impl_->rnn.set_int8_inference(on);
}
const CheckpointInfo& SequenceClassifier::info() const { return impl_->info; }

void SequenceClassifier::predict_proba(std::int64_t steps, std::int64_t batch,
                                       const std::int64_t* ids, const std::int64_t* lengths,
                                       float* probs) {
  std::lock_guard<std::recursive_mutex> lock(impl_->mu);
  Impl& m = *impl_;
  const ClassifierConfig& c = m.cfg;
  const int T = as_int(steps, "steps"), B = as_int(batch, "batch");
  require_ptr(ids, "ids");
  require_ptr(probs, "probs");
  const std::int64_t E = c.embed_dim, H = c.hidden_size, D = c.bidirectional ? 2 : 1, DH = D * H;
  const std::int64_t L = c.num_layers, C = c.num_classes;
  auto len = [&](std::int64_t b) { return lengths ? lengths[b] : std::int64_t(T); };
  for (std::int64_t b = 0; b < B; ++b)
    if (len(b) < 1 || len(b) > T)
      throw std::invalid_argument("lengths[" + std::to_string(b) + "] = " + std::to_string(len(b)) +
                                  " is outside [1, T=" + std::to_string(T) + "]");
  // Steps past a sequence's end are never read by the engine; any id stands in for them.
  m.ids.assign(ids, ids + std::int64_t(T) * B);
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t b = 0; b < B; ++b)
      if (t >= len(b)) m.ids[std::size_t(t * B + b)] = 0;
  m.x.resize(std::size_t(T * B * E));
  m.y.resize(std::size_t(T * B * DH));
  m.hn.resize(std::size_t(L * D * B * H));
  m.feat.assign(std::size_t(B * DH), 0.0f);
  embedding_forward<float>(std::int64_t(T) * B, c.vocab_size, E, m.ids.data(), m.embedding.data(),
                           m.x.data());
  m.rnn.forward(T, B, m.x.data(), lengths, nullptr, nullptr, m.y.data(), m.hn.data(), nullptr,
                /*training=*/false);
  for (std::int64_t b = 0; b < B; ++b) {
    float* f = m.feat.data() + b * DH;
    if (c.pooling == "last") {  // hn[-D] (forward), then hn[-1] (reverse)
      for (std::int64_t d = 0; d < D; ++d)
        std::memcpy(f + d * H, m.hn.data() + (((L - 1) * D + d) * B + b) * H, sizeof(float) * H);
    } else if (c.pooling == "mean") {
      for (std::int64_t t = 0; t < len(b); ++t)
        for (std::int64_t j = 0; j < DH; ++j) f[j] += m.y[std::size_t((t * B + b) * DH + j)];
      for (std::int64_t j = 0; j < DH; ++j) f[j] /= float(len(b));
    } else {  // max
      std::copy_n(m.y.data() + b * DH, DH, f);
      for (std::int64_t t = 1; t < len(b); ++t)
        for (std::int64_t j = 0; j < DH; ++j)
          f[j] = std::max(f[j], m.y[std::size_t((t * B + b) * DH + j)]);
    }
  }
  linear_forward<float>(B, DH, C, m.feat.data(), m.cls_w.data(),
                        m.cls_b.empty() ? nullptr : m.cls_b.data(), probs);
  softmax_rows(B, C, probs);
}

std::vector<std::vector<float>> SequenceClassifier::predict_proba(
    const std::vector<std::vector<std::int64_t>>& sequences) {
  if (sequences.empty()) return {};
  const auto B = std::int64_t(sequences.size());
  std::int64_t T = 0;
  std::vector<std::int64_t> lengths(sequences.size());
  for (std::size_t b = 0; b < sequences.size(); ++b) {
    if (sequences[b].empty())
      throw std::invalid_argument("SequenceClassifier::predict_proba: sequence " +
                                  std::to_string(b) + " is empty");
    lengths[b] = std::int64_t(sequences[b].size());
    T = std::max(T, lengths[b]);
  }
  std::vector<std::int64_t> ids(std::size_t(T * B), 0);  // [T, B], time-major
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t t = 0; t < lengths[std::size_t(b)]; ++t)
      ids[std::size_t(t * B + b)] = sequences[std::size_t(b)][std::size_t(t)];
  const std::int64_t C = impl_->cfg.num_classes;
  std::vector<float> flat(std::size_t(B * C));
  predict_proba(T, B, ids.data(), lengths.data(), flat.data());
  std::vector<std::vector<float>> out(static_cast<std::size_t>(B));
  for (std::int64_t b = 0; b < B; ++b)
    out[std::size_t(b)].assign(flat.begin() + b * C, flat.begin() + (b + 1) * C);
  return out;
}

std::vector<std::int64_t> SequenceClassifier::predict(
    const std::vector<std::vector<std::int64_t>>& sequences) {
  std::vector<std::int64_t> out;
  for (const auto& p : predict_proba(sequences))
    out.push_back(std::max_element(p.begin(), p.end()) - p.begin());
  return out;
}

}  // namespace rnncore
