// Seq2Seq of the C++ inference API: rnncore.models.Seq2Seq rebuilt from a checkpoint (encoder,
// bridge, context, Luong attention, decoder), greedy and beam-search decoding as in Python, and
// the translate task's text pipeline (text.h).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>

#include "checkpoint.h"
#include "decoding.h"
#include "rnncore/inference.h"
#include "rnncore/ops.h"
#include "text.h"

namespace rnncore {

using detail::as_int;
using detail::cell_of;
using detail::check_model_type;
using detail::load_rnn;
using detail::Meta;
using detail::parse_vocab_at;
using detail::read_meta;
using detail::require_cell;
using detail::require_same;
using detail::rnn_config;
using detail::rnn_why;
using detail::Weights;
using detail::json::Value;

using detail::DecodeInputs;
using detail::DecoderParts;

struct Seq2Seq::Impl {
  CheckpointInfo info;
  Seq2SeqConfig cfg;
  Vocabulary src_vocab, tgt_vocab;
  Recurrent<float> encoder, decoder;
  std::vector<float> src_emb, tgt_emb;      // [Vs, E], [Vt, E]
  std::vector<float> bridge_w, bridge_b;    // [H, 2H], [H] (bidirectional, linear bridge)
  std::vector<float> bridge_cw, bridge_cb;  // the LSTM's c bridge
  std::vector<float> attn_w;                // [H, H] ("general")
  std::vector<float> comb_w, comb_b;        // [H, 2H], [H] (attention)
  std::vector<float> out_w, out_b;          // [Vt, H], [Vt]
  std::mutex mu;  // the engine's layers keep per-call scratch: one call at a time

  Impl(Recurrent<float> enc, Recurrent<float> dec)
      : encoder(std::move(enc)), decoder(std::move(dec)) {}

  bool lstm() const { return decoder.config().states() == 2; }

  DecodeInputs encode(const std::vector<std::vector<std::int64_t>>& sources) {
    const Seq2SeqConfig& c = cfg;
    const std::int64_t H = c.hidden_size, E = c.embed_dim, L = c.num_layers;
    const std::int64_t D = c.bidirectional ? 2 : 1;
    DecodeInputs e;
    e.B = std::int64_t(sources.size());
    for (std::size_t b = 0; b < sources.size(); ++b) {
      if (sources[b].empty())
        throw std::invalid_argument("Seq2Seq: source " + std::to_string(b) + " is empty");
      for (std::int64_t id : sources[b])
        if (id < 0 || id >= c.src_vocab_size)
          throw std::invalid_argument(
              "Seq2Seq: source " + std::to_string(b) + " holds id " + std::to_string(id) +
              " outside [0, src_vocab_size=" + std::to_string(c.src_vocab_size) + ")");
      e.lengths.push_back(std::int64_t(sources[b].size()));
      e.S = std::max(e.S, e.lengths.back());
    }
    const std::int64_t B = e.B, S = e.S;
    std::vector<std::int64_t> ids(std::size_t(S * B), c.padding_idx);
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t s = 0; s < e.lengths[std::size_t(b)]; ++s) {
        const std::int64_t n = e.lengths[std::size_t(b)];
        ids[std::size_t(s * B + b)] =
            sources[std::size_t(b)][std::size_t(c.reverse_source ? n - 1 - s : s)];
      }
    std::vector<float> x(std::size_t(S * B * E)), y(std::size_t(S * B * D * H));
    std::vector<float> hn(std::size_t(L * D * B * H)), cn(lstm() ? hn.size() : 0);
    embedding_forward<float>(S * B, c.src_vocab_size, E, ids.data(), src_emb.data(), x.data());
    encoder.forward(as_int(S, "S"), as_int(B, "B"), x.data(), e.lengths.data(), nullptr, nullptr,
                    y.data(), hn.data(), lstm() ? cn.data() : nullptr, /*training=*/false);
    if (!c.attention.empty()) {  // memory [B, S, H]: the directions' outputs summed
      e.memory.assign(std::size_t(B * S * H), 0.0f);
      for (std::int64_t s = 0; s < S; ++s)
        for (std::int64_t b = 0; b < B; ++b)
          for (std::int64_t d = 0; d < D; ++d)
            for (std::int64_t j = 0; j < H; ++j)
              e.memory[std::size_t((b * S + s) * H + j)] +=
                  y[std::size_t(((s * B + b) * D + d) * H + j)];
      if (c.attention == "dot") {
        e.keys = e.memory;
      } else {
        e.keys.resize(e.memory.size());
        linear_forward<float>(B * S, H, H, e.memory.data(), attn_w.data(), nullptr, e.keys.data());
      }
    }
    // The bridge: [L*D, B, H] -> [L, B, H].
    e.h0.assign(std::size_t(L * B * H), 0.0f);
    if (lstm()) e.c0.assign(e.h0.size(), 0.0f);
    if (D == 1) {
      e.h0 = hn;
      if (lstm()) e.c0 = cn;
    } else {
      std::vector<float> cat(std::size_t(B * 2 * H));
      auto join = [&](const std::vector<float>& st, std::int64_t l) {  // [B, 2H] fwd | bwd
        for (std::int64_t b = 0; b < B; ++b)
          for (std::int64_t d = 0; d < 2; ++d)
            std::memcpy(cat.data() + (b * 2 + d) * H, st.data() + ((l * 2 + d) * B + b) * H,
                        sizeof(float) * std::size_t(H));
      };
      for (std::int64_t l = 0; l < L; ++l) {
        float* h = e.h0.data() + l * B * H;
        float* cc = lstm() ? e.c0.data() + l * B * H : nullptr;
        if (c.bridge == "sum") {
          for (std::int64_t b = 0; b < B; ++b)
            for (std::int64_t j = 0; j < H; ++j) {
              h[b * H + j] = hn[std::size_t(((l * 2) * B + b) * H + j)] +
                             hn[std::size_t(((l * 2 + 1) * B + b) * H + j)];
              if (cc)
                cc[b * H + j] = cn[std::size_t(((l * 2) * B + b) * H + j)] +
                                cn[std::size_t(((l * 2 + 1) * B + b) * H + j)];
            }
          continue;
        }
        join(hn, l);
        linear_forward<float>(B, 2 * H, H, cat.data(), bridge_w.data(), bridge_b.data(), h);
        for (std::int64_t i = 0; i < B * H; ++i) h[i] = std::tanh(h[i]);
        if (cc) {
          join(cn, l);
          linear_forward<float>(B, 2 * H, H, cat.data(), bridge_cw.data(), bridge_cb.data(), cc);
        }
      }
    }
    if (c.context) {  // the top layer's h0, fed to every decoder step
      e.C = H;
      e.context.assign(e.h0.end() - B * H, e.h0.end());
    }
    return e;
  }

  DecoderParts parts() {
    DecoderParts d;
    d.rnn = &decoder;
    d.embedding = tgt_emb.data();
    d.combine_w = cfg.attention.empty() ? nullptr : comb_w.data();
    d.combine_b = cfg.attention.empty() ? nullptr : comb_b.data();
    d.out_w = out_w.data();
    d.out_b = out_b.empty() ? nullptr : out_b.data();
    d.V = cfg.tgt_vocab_size;
    d.E = cfg.embed_dim;
    d.H = cfg.hidden_size;
    d.L = cfg.num_layers;
    d.bos = cfg.bos_id;
    d.eos = cfg.eos_id;
    return d;
  }
};

std::vector<std::string> translation_tokens(const std::string& text, bool lower,
                                            bool strip_accents) {
  return detail::tokenize(detail::normalize_text(text, lower, strip_accents));
}

Seq2Seq::Seq2Seq(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Seq2Seq::Seq2Seq(Seq2Seq&&) noexcept = default;
Seq2Seq& Seq2Seq::operator=(Seq2Seq&&) noexcept = default;
Seq2Seq::~Seq2Seq() = default;

Seq2Seq Seq2Seq::load(const std::string& directory, const ModelRequirements& req) {
  Meta m = read_meta(directory);
  check_model_type(m, "Seq2Seq");
  if (req.num_classes || req.vocab_size)
    throw std::invalid_argument(
        "ModelRequirements: num_classes and vocab_size do not apply to a Seq2Seq");
  Seq2SeqConfig c;
  c.src_vocab_size = m.integer("src_vocab_size", std::nullopt, 1);
  c.tgt_vocab_size = m.integer("tgt_vocab_size", std::nullopt, 1);
  c.embed_dim = m.integer("embed_dim", 128, 1);
  c.hidden_size = m.integer("hidden_size", 256, 1);
  c.num_layers = m.integer("num_layers", 1, 1);
  const CellInfo& cell = cell_of(m);
  c.cell = cell.name;
  c.bidirectional = m.boolean("bidirectional", false);
  c.attention = m.string("attention", "");
  if (!c.attention.empty() && c.attention != "dot" && c.attention != "general")
    throw CheckpointError(m.key_where("attention") + " " + detail::in_quotes(c.attention) +
                          " is not null, dot or general");
  c.context = m.boolean("context", false);
  c.bridge = m.string("bridge", "linear");
  if (c.bridge != "linear" && c.bridge != "sum")
    throw CheckpointError(m.key_where("bridge") + " " + detail::in_quotes(c.bridge) +
                          " is not linear or sum");
  c.reverse_source = m.boolean("reverse_source", false);
  c.padding_idx = m.integer("padding_idx", 0, 0);
  c.bos_id = m.integer("bos_id", 2, 0);
  c.eos_id = m.integer("eos_id", 3, 0);
  for (auto [name, v] : {std::pair{"padding_idx", c.padding_idx}, std::pair{"bos_id", c.bos_id},
                         std::pair{"eos_id", c.eos_id}})
    if (v >= c.tgt_vocab_size || (std::string(name) == "padding_idx" && v >= c.src_vocab_size))
      throw CheckpointError(m.key_where(name) + " " + std::to_string(v) +
                            " is outside the vocabularies");
  require_cell(m, req, cell);
  require_same(m, "embed_dim", req.embed_dim, c.embed_dim);
  require_same(m, "hidden_size", req.hidden_size, c.hidden_size);
  require_same(m, "num_layers", req.num_layers, c.num_layers);
  require_same(m, "bidirectional", req.bidirectional, c.bidirectional);
  if (const Value* extra = m.root.find("extra"); extra && extra->is_object()) {
    if (const Value* v = extra->find("lower"); v && v->is_bool()) c.lower = v->boolean;
    if (const Value* v = extra->find("strip_accents"); v && v->is_bool())
      c.strip_accents = v->boolean;
    if (const Value* v = extra->find("beam"); v && v->is_integer() && v->as_int64() >= 1)
      c.beam = v->as_int64();
    if (const Value* v = extra->find("max_decode_len"); v && v->is_integer() && v->as_int64() >= 1)
      c.max_decode_len = v->as_int64();
    if (const Value* v = extra->find("length_penalty"); v && v->is_number())
      c.length_penalty = v->number;
  }
  Vocabulary src, tgt;
  if (const Value* vs = m.root.find("vocabs"); vs && vs->is_object()) {
    if (const Value* v = vs->find("src")) src = parse_vocab_at(*v, m.where, "vocabs.src");
    if (const Value* v = vs->find("tgt")) tgt = parse_vocab_at(*v, m.where, "vocabs.tgt");
  }
  for (auto [name, vocab, size] : {std::tuple{"vocabs.src", &src, c.src_vocab_size},
                                   std::tuple{"vocabs.tgt", &tgt, c.tgt_vocab_size}})
    if (!vocab->empty() && vocab->size() != size)
      throw CheckpointError(m.where + ": " + name + " has " + std::to_string(vocab->size()) +
                            " tokens but the model's vocabulary size is " + std::to_string(size));

  const std::int64_t E = c.embed_dim, H = c.hidden_size, L = c.num_layers;
  Weights w(m.info.directory, m.where, m.tied);
  RecurrentConfig ec = rnn_config(m, cell, E, H, L);
  ec.bidirectional = c.bidirectional;
  ec.bias = w.contains("encoder.bias_ih_l0");
  RecurrentConfig dc = rnn_config(m, cell, E + (c.context ? H : 0), H, L);
  dc.bias = w.contains("decoder.bias_ih_l0");
  auto src_emb = w.take("src_embedding.weight", {c.src_vocab_size, E},
                        "a source embedding of src_vocab_size " + std::to_string(c.src_vocab_size));
  auto tgt_emb = w.take("tgt_embedding.weight", {c.tgt_vocab_size, E},
                        "a target embedding of tgt_vocab_size " + std::to_string(c.tgt_vocab_size));
  Recurrent<float> enc =
      load_rnn(w, ec, "the encoder (" + rnn_why(ec, cell.name) + ")", "encoder.");
  Recurrent<float> dec =
      load_rnn(w, dc, "the decoder (" + rnn_why(dc, cell.name) + ")", "decoder.");
  auto impl = std::make_unique<Impl>(std::move(enc), std::move(dec));
  impl->src_emb = std::move(src_emb);
  impl->tgt_emb = std::move(tgt_emb);
  if (c.bidirectional && c.bridge == "linear") {
    const std::string why = "the linear bridge of a bidirectional encoder (2H -> H)";
    impl->bridge_w = w.take("bridge.weight", {H, 2 * H}, why);
    impl->bridge_b = w.take("bridge.bias", {H}, why);
    if (impl->lstm()) {
      impl->bridge_cw = w.take("bridge_c.weight", {H, 2 * H}, why);
      impl->bridge_cb = w.take("bridge_c.bias", {H}, why);
    }
  }
  if (c.attention == "general") impl->attn_w = w.take("attn.weight", {H, H}, "general attention");
  if (!c.attention.empty()) {
    impl->comb_w = w.take("attn_combine.weight", {H, 2 * H}, "attention (W_c)");
    impl->comb_b = w.take("attn_combine.bias", {H}, "attention (W_c)");
  }
  const std::string why = "an output layer from hidden_size to tgt_vocab_size";
  impl->out_w = w.take("output.weight", {c.tgt_vocab_size, H}, why);
  if (w.contains("output.bias")) impl->out_b = w.take("output.bias", {c.tgt_vocab_size}, why);
  w.check_all_used("Seq2Seq");
  impl->info = std::move(m.info);
  impl->cfg = c;
  impl->src_vocab = std::move(src);
  impl->tgt_vocab = std::move(tgt);
  return Seq2Seq(std::move(impl));
}

const Seq2SeqConfig& Seq2Seq::config() const { return impl_->cfg; }
const CheckpointInfo& Seq2Seq::info() const { return impl_->info; }
const Vocabulary& Seq2Seq::src_vocab() const { return impl_->src_vocab; }
const Vocabulary& Seq2Seq::tgt_vocab() const { return impl_->tgt_vocab; }

std::pair<std::vector<std::int64_t>, double> Seq2Seq::beam_search(
    const std::vector<std::int64_t>& source, std::int64_t beam, std::int64_t max_len,
    double length_penalty) {
  if (beam < 1 || max_len < 1)
    throw std::invalid_argument("Seq2Seq::beam_search: beam and max_len must be >= 1, got " +
                                std::to_string(beam) + " and " + std::to_string(max_len));
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lock(m.mu);
  return detail::beam_decode(m.parts(), m.encode({source}), beam, max_len, length_penalty);
}

std::vector<std::vector<std::int64_t>> Seq2Seq::translate_ids(
    const std::vector<std::vector<std::int64_t>>& sources, std::int64_t beam, std::int64_t max_len,
    double length_penalty) {
  Impl& m = *impl_;
  if (beam < 0 || max_len < 0)
    throw std::invalid_argument("Seq2Seq::translate_ids: beam and max_len must be >= 0");
  beam = beam ? beam : m.cfg.beam;
  max_len = max_len ? max_len : m.cfg.max_decode_len;
  if (std::isnan(length_penalty)) length_penalty = m.cfg.length_penalty;
  std::vector<std::vector<std::int64_t>> out;
  if (sources.empty()) return out;
  if (beam > 1) {
    for (const auto& s : sources)
      out.push_back(beam_search(s, beam, max_len, length_penalty).first);
    return out;
  }
  std::lock_guard<std::mutex> lock(m.mu);  // greedy: the whole batch steps together
  return detail::greedy_decode(m.parts(), m.encode(sources), max_len);
}

std::vector<std::string> Seq2Seq::translate(const std::vector<std::string>& sentences,
                                            std::int64_t beam, std::int64_t max_len) {
  const Impl& m = *impl_;
  if (m.src_vocab.empty() || m.tgt_vocab.empty())
    throw std::invalid_argument(
        "Seq2Seq::translate: the checkpoint has no source/target vocabularies (vocabs.src, "
        "vocabs.tgt); use translate_ids");
  std::vector<std::vector<std::int64_t>> sources;
  for (std::size_t i = 0; i < sentences.size(); ++i) {
    const auto tokens =
        detail::tokenize(detail::normalize_text(sentences[i], m.cfg.lower, m.cfg.strip_accents));
    if (tokens.empty())
      throw std::invalid_argument("Seq2Seq::translate: sentence " + std::to_string(i) +
                                  " has no words to translate");
    sources.emplace_back();
    for (const auto& t : tokens) sources.back().push_back(m.src_vocab.id(t));
  }
  std::vector<std::string> out;
  for (const auto& ids : translate_ids(sources, beam, max_len)) {
    std::vector<std::string> words;
    for (std::int64_t id : ids) words.push_back(m.tgt_vocab.token(id));
    out.push_back(detail::detokenize(words));
  }
  return out;
}

}  // namespace rnncore
