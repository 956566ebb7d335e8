// Captioner of the C++ inference API: rnncore.models.Captioner rebuilt from a checkpoint; its
// decoding (greedy, beam search) is the Seq2Seq decoder's (decoding.h).
#include <cmath>
#include <mutex>
#include <stdexcept>
#include <string>

#include "checkpoint.h"
#include "decoding.h"
#include "rnncore/inference.h"
#include "rnncore/ops.h"

namespace rnncore {

using detail::cell_of;
using detail::check_model_type;
using detail::load_rnn;
using detail::Meta;
using detail::read_meta;
using detail::require_cell;
using detail::require_same;
using detail::rnn_config;
using detail::rnn_why;
using detail::Weights;
using detail::json::Value;

struct Captioner::Impl {
  CheckpointInfo info;
  CaptionerConfig cfg;
  Recurrent<float> rnn;
  std::vector<float> init_hw, init_hb, init_cw, init_cb;  // [L*H, F], [L*H] (c: LSTM)
  std::vector<float> embedding, out_w, out_b;             // [V, E], [V, H], [V]
  std::mutex mu;  // the engine keeps per-call scratch: one call at a time

  Impl(CheckpointInfo i, CaptionerConfig c, Recurrent<float> r)
      : info(std::move(i)), cfg(std::move(c)), rnn(std::move(r)) {}

  detail::DecoderParts parts() {
    detail::DecoderParts d;
    d.rnn = &rnn;
    d.embedding = embedding.data();
    d.out_w = out_w.data();
    d.out_b = out_b.empty() ? nullptr : out_b.data();
    d.V = cfg.vocab_size;
    d.E = cfg.embed_dim;
    d.H = cfg.hidden_size;
    d.L = cfg.num_layers;
    d.bos = cfg.bos_id;
    d.eos = cfg.eos_id;
    return d;
  }

  // features [B][F] -> the decoder's inputs: initial state [L, B, H] (and the fed features).
  detail::DecodeInputs inputs(const std::vector<std::vector<float>>& features) const {
    const std::int64_t F = cfg.feature_dim, H = cfg.hidden_size, L = cfg.num_layers;
    const auto B = std::int64_t(features.size());
    std::vector<float> f;
    for (std::size_t b = 0; b < features.size(); ++b) {
      if (std::int64_t(features[b].size()) != F)
        throw std::invalid_argument("Captioner: feature vector " + std::to_string(b) + " has " +
                                    std::to_string(features[b].size()) +
                                    " values, expected F=" + std::to_string(F));
      for (float v : features[b])
        if (!std::isfinite(v))
          throw std::invalid_argument("Captioner: feature vector " + std::to_string(b) +
                                      " holds a non-finite value");
      f.insert(f.end(), features[b].begin(), features[b].end());
    }
    detail::DecodeInputs in;
    in.B = B;
    std::vector<float> flat(std::size_t(B * L * H));
    auto layers = [&](std::vector<float>& out) {  // [B, L*H] -> [L, B, H]
      out.resize(flat.size());
      for (std::int64_t b = 0; b < B; ++b)
        for (std::int64_t l = 0; l < L; ++l)
          for (std::int64_t j = 0; j < H; ++j)
            out[std::size_t((l * B + b) * H + j)] = flat[std::size_t((b * L + l) * H + j)];
    };
    linear_forward<float>(B, F, L * H, f.data(), init_hw.data(), init_hb.data(), flat.data());
    for (auto& v : flat) v = std::tanh(v);
    layers(in.h0);
    if (!init_cw.empty()) {
      linear_forward<float>(B, F, L * H, f.data(), init_cw.data(), init_cb.data(), flat.data());
      layers(in.c0);
    }
    if (cfg.feed_features) {
      in.C = F;
      in.context = std::move(f);
    }
    return in;
  }
};

Captioner::Captioner(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Captioner::Captioner(Captioner&&) noexcept = default;
Captioner& Captioner::operator=(Captioner&&) noexcept = default;
Captioner::~Captioner() = default;

Captioner Captioner::load(const std::string& directory, const ModelRequirements& req) {
  Meta m = read_meta(directory);
  check_model_type(m, "Captioner");
  if (req.num_classes || req.bidirectional)
    throw std::invalid_argument(
        "ModelRequirements: num_classes and bidirectional do not apply to a Captioner");
  CaptionerConfig c;
  c.feature_dim = m.integer("feature_dim", std::nullopt, 1);
  c.vocab_size = m.integer("vocab_size", std::nullopt, 1);
  c.embed_dim = m.integer("embed_dim", 64, 1);
  c.hidden_size = m.integer("hidden_size", 128, 1);
  c.num_layers = m.integer("num_layers", 1, 1);
  const CellInfo& cell = cell_of(m);
  c.cell = cell.name;
  c.feed_features = m.boolean("feed_features", false);
  c.padding_idx = m.integer("padding_idx", 0, 0);
  c.bos_id = m.integer("bos_id", 2, 0);
  c.eos_id = m.integer("eos_id", 3, 0);
  for (auto [name, v] : {std::pair{"padding_idx", c.padding_idx}, std::pair{"bos_id", c.bos_id},
                         std::pair{"eos_id", c.eos_id}})
    if (v >= c.vocab_size)
      throw CheckpointError(m.key_where(name) + " " + std::to_string(v) +
                            " is outside the vocabulary");
  require_cell(m, req, cell);
  require_same(m, "vocab_size", req.vocab_size, c.vocab_size);
  require_same(m, "embed_dim", req.embed_dim, c.embed_dim);
  require_same(m, "hidden_size", req.hidden_size, c.hidden_size);
  require_same(m, "num_layers", req.num_layers, c.num_layers);
  detail::check_vocab_size(m, c.vocab_size);
  if (const Value* extra = m.root.find("extra"); extra && extra->is_object()) {
    if (const Value* v = extra->find("beam"); v && v->is_integer() && v->as_int64() >= 1)
      c.beam = v->as_int64();
    if (const Value* v = extra->find("max_decode_len"); v && v->is_integer() && v->as_int64() >= 1)
      c.max_decode_len = v->as_int64();
  }
  const std::int64_t F = c.feature_dim, E = c.embed_dim, H = c.hidden_size, L = c.num_layers;
  Weights w(m.info.directory, m.where, m.tied);
  RecurrentConfig rc = rnn_config(m, cell, E + (c.feed_features ? F : 0), H, L);
  rc.bias = w.contains("rnn.bias_ih_l0");
  const std::string why = "the initial state from feature_dim " + std::to_string(F) + " to " +
                          std::to_string(L) + " x hidden_size " + std::to_string(H);
  auto hw = w.take("init_h.weight", {L * H, F}, why);
  auto hb = w.take("init_h.bias", {L * H}, why);
  std::vector<float> cw, cb;
  if (cell.states == 2) {
    cw = w.take("init_c.weight", {L * H, F}, why);
    cb = w.take("init_c.bias", {L * H}, why);
  }
  auto emb = w.take("embedding.weight", {c.vocab_size, E},
                    "an embedding of vocab_size " + std::to_string(c.vocab_size));
  Recurrent<float> rnn = load_rnn(w, rc, rnn_why(rc, cell.name));
  auto impl = std::make_unique<Impl>(std::move(m.info), c, std::move(rnn));
  impl->init_hw = std::move(hw);
  impl->init_hb = std::move(hb);
  impl->init_cw = std::move(cw);
  impl->init_cb = std::move(cb);
  impl->embedding = std::move(emb);
  const std::string owhy = "an output layer from hidden_size to vocab_size";
  impl->out_w = w.take("output.weight", {c.vocab_size, H}, owhy);
  if (w.contains("output.bias")) impl->out_b = w.take("output.bias", {c.vocab_size}, owhy);
  w.check_all_used("Captioner");
  return Captioner(std::move(impl));
}

const CaptionerConfig& Captioner::config() const { return impl_->cfg; }
const CheckpointInfo& Captioner::info() const { return impl_->info; }

std::vector<std::vector<std::int64_t>> Captioner::caption_ids(
    const std::vector<std::vector<float>>& features, std::int64_t beam, std::int64_t max_len) {
  Impl& m = *impl_;
  if (beam < 0 || max_len < 0)
    throw std::invalid_argument("Captioner::caption_ids: beam and max_len must be >= 0");
  beam = beam ? beam : m.cfg.beam;
  max_len = max_len ? max_len : m.cfg.max_decode_len;
  if (features.empty()) return {};
  std::lock_guard<std::mutex> lock(m.mu);
  if (beam == 1) return detail::greedy_decode(m.parts(), m.inputs(features), max_len);
  std::vector<std::vector<std::int64_t>> out;
  for (const auto& f : features)
    out.push_back(detail::beam_decode(m.parts(), m.inputs({f}), beam, max_len, 1.0).first);
  return out;
}

std::vector<std::string> Captioner::caption(const std::vector<std::vector<float>>& features,
                                            std::int64_t beam, std::int64_t max_len) {
  if (vocab().empty())
    throw std::invalid_argument("Captioner::caption: the checkpoint has no vocab");
  std::vector<std::string> out;
  for (const auto& ids : caption_ids(features, beam, max_len)) {
    std::string text;
    for (std::int64_t id : ids) text += (text.empty() ? "" : " ") + vocab().token(id);
    out.push_back(text);
  }
  return out;
}

}  // namespace rnncore
