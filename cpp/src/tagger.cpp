// SequenceTagger of the C++ inference API: rnncore.models.SequenceTagger rebuilt from a checkpoint
// (word + character features, BiRNN, per-token classifier, CRF or BIO-repaired argmax decoding).
#include <algorithm>
#include <cstring>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>

#include "checkpoint.h"
#include "rnncore/inference.h"
#include "rnncore/ops.h"
#include "text.h"

namespace rnncore {

using detail::as_int;
using detail::cell_of;
using detail::check_model_type;
using detail::config_int;
using detail::load_rnn;
using detail::Meta;
using detail::parse_vocab_at;
using detail::read_meta;
using detail::require_cell;
using detail::require_ptr;
using detail::require_same;
using detail::rnn_config;
using detail::rnn_why;
using detail::Weights;
using detail::json::Value;

namespace {

bool is_bio_tag(const std::string& t) {
  return t.size() > 2 && (t.compare(0, 2, "B-") == 0 || t.compare(0, 2, "I-") == 0);
}

}  // namespace

bool TaggerConfig::bio() const {
  bool any = false;
  for (const auto& t : tag_names) {
    if (t != "O" && !is_bio_tag(t)) return false;
    any = any || t != "O";
  }
  return any;
}

struct SequenceTagger::Impl {
  CheckpointInfo info;
  TaggerConfig cfg;
  Vocabulary char_vocab;
  bool lowercase = true;
  Recurrent<float> rnn;
  std::optional<Recurrent<float>> char_rnn;
  std::vector<float> embedding, char_embedding;       // [V, E], [Vc, Ec]
  std::vector<float> cls_w, cls_b;                    // [C, D*H], [C] or empty
  std::vector<float> transitions, start, end;         // the CRF: [C, C], [C], [C]
  std::vector<unsigned char> allowed, allowed_start;  // BIO constraints [C, C], [C] (CRF only)
  // BIO repair (argmax decoding): each tag's chunk type (0: none), whether it is an I- tag whose
  // B- exists, and that B- tag's id.
  std::vector<std::int64_t> type, begin_of;
  std::vector<unsigned char> inside;
  std::mutex mu;  // the engine's layers keep per-call scratch: one call at a time

  Impl(CheckpointInfo i, TaggerConfig c, Recurrent<float> r)
      : info(std::move(i)), cfg(std::move(c)), rnn(std::move(r)) {}

  void bio_tables() {
    const auto& names = cfg.tag_names;
    const std::size_t K = names.size();
    type.assign(K, 0);
    begin_of.resize(K);
    inside.assign(K, 0);
    std::vector<std::string> kinds;
    for (const auto& t : names)
      if (is_bio_tag(t)) kinds.push_back(t.substr(2));
    std::sort(kinds.begin(), kinds.end());
    kinds.erase(std::unique(kinds.begin(), kinds.end()), kinds.end());
    for (std::size_t i = 0; i < K; ++i) {
      begin_of[i] = std::int64_t(i);
      if (!is_bio_tag(names[i])) continue;
      const std::string kind = names[i].substr(2);
      type[i] =
          std::int64_t(std::lower_bound(kinds.begin(), kinds.end(), kind) - kinds.begin()) + 1;
      if (names[i][0] == 'I') {
        const auto b = std::find(names.begin(), names.end(), "B-" + kind);
        if (b != names.end()) {
          inside[i] = 1;
          begin_of[i] = b - names.begin();
        }
      }
    }
    if (!cfg.crf) return;
    // rnncore.nn.bio_constraints: I-X only after B-X or I-X, never first.
    allowed.assign(K * K, 1);
    allowed_start.assign(K, 1);
    for (std::size_t j = 0; j < K; ++j) {
      if (names[j].compare(0, 2, "I-") != 0) continue;
      const std::string kind = names[j].substr(2);
      allowed_start[j] = 0;
      for (std::size_t i = 0; i < K; ++i)
        allowed[i * K + j] = names[i] == "B-" + kind || names[i] == "I-" + kind;
    }
  }
};

SequenceTagger::SequenceTagger(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SequenceTagger::SequenceTagger(SequenceTagger&&) noexcept = default;
SequenceTagger& SequenceTagger::operator=(SequenceTagger&&) noexcept = default;
SequenceTagger::~SequenceTagger() = default;

SequenceTagger SequenceTagger::load(const std::string& directory, const ModelRequirements& req) {
  Meta m = read_meta(directory);
  check_model_type(m, "SequenceTagger");
  if (req.num_classes)
    throw std::invalid_argument("ModelRequirements: num_classes does not apply to a tagger");
  TaggerConfig c;
  c.vocab_size = m.integer("vocab_size", std::nullopt, 1);
  c.embed_dim = m.integer("embed_dim", std::nullopt, 1);
  c.hidden_size = m.integer("hidden_size", std::nullopt, 1);
  c.num_tags = m.integer("num_tags", std::nullopt, 1);
  c.num_layers = m.integer("num_layers", 1, 1);
  const CellInfo& cell = cell_of(m);
  c.cell = cell.name;
  c.bidirectional = m.boolean("bidirectional", true);
  c.crf = m.boolean("crf", false);
  if (const Value* t = m.field("tag_names"); t && !t->is_null()) {
    if (!t->is_array())
      throw CheckpointError(m.key_where("tag_names") + " must be a list of strings or null");
    for (const Value& v : t->array) {
      if (!v.is_string())
        throw CheckpointError(m.key_where("tag_names") + " must be a list of strings or null");
      c.tag_names.push_back(v.text);
    }
    if (std::int64_t(c.tag_names.size()) != c.num_tags)
      throw CheckpointError(m.key_where("tag_names") + " has " +
                            std::to_string(c.tag_names.size()) + " tags but num_tags is " +
                            std::to_string(c.num_tags));
  }
  if (const Value* v = m.field("char_vocab_size"); v && !v->is_null()) {
    c.char_vocab_size = m.integer("char_vocab_size", std::nullopt, 1);
    c.char_embed_dim = m.integer("char_embed_dim", 25, 1);
    c.char_hidden_size = m.integer("char_hidden_size", 25, 1);
  }
  require_cell(m, req, cell);
  require_same(m, "vocab_size", req.vocab_size, c.vocab_size);
  require_same(m, "embed_dim", req.embed_dim, c.embed_dim);
  require_same(m, "hidden_size", req.hidden_size, c.hidden_size);
  require_same(m, "num_layers", req.num_layers, c.num_layers);
  require_same(m, "bidirectional", req.bidirectional, c.bidirectional);
  detail::check_vocab_size(m, c.vocab_size);

  Vocabulary chars;
  if (const Value* vs = m.root.find("vocabs"); vs && vs->is_object())
    if (const Value* v = vs->find("chars")) chars = parse_vocab_at(*v, m.where, "vocabs.chars");
  if (!chars.empty() && chars.size() != c.char_vocab_size)
    throw CheckpointError(m.where + ": vocabs.chars has " + std::to_string(chars.size()) +
                          " characters but model_config.char_vocab_size is " +
                          std::to_string(c.char_vocab_size));
  bool lowercase = true;
  if (const Value* extra = m.root.find("extra"); extra && extra->is_object())
    if (const Value* lc = extra->find("lowercase"); lc && lc->is_bool()) lowercase = lc->boolean;

  const std::int64_t C = c.num_tags, Hc = c.char_hidden_size;
  const std::int64_t features = c.embed_dim + (c.char_vocab_size ? 2 * Hc : 0);
  RecurrentConfig rc = rnn_config(m, cell, features, c.hidden_size, c.num_layers);
  rc.bidirectional = c.bidirectional;
  Weights w(m.info.directory, m.where, m.tied);
  rc.bias = w.contains("rnn.bias_ih_l0") || w.contains("rnn.bias_hh_l0");
  auto emb = w.take("embedding.weight", {c.vocab_size, c.embed_dim},
                    "an embedding of vocab_size " + std::to_string(c.vocab_size) + ", embed_dim " +
                        std::to_string(c.embed_dim));
  std::vector<float> char_emb;
  std::optional<Recurrent<float>> char_rnn;
  if (c.char_vocab_size) {
    char_emb =
        w.take("char_embedding.weight", {c.char_vocab_size, c.char_embed_dim},
               "a character embedding of char_vocab_size " + std::to_string(c.char_vocab_size) +
                   ", char_embed_dim " + std::to_string(c.char_embed_dim));
    RecurrentConfig cc;
    cc.cell = CellType::kLstm;
    cc.input_size = config_int(m, "char_embed_dim", c.char_embed_dim);
    cc.hidden_size = config_int(m, "char_hidden_size", Hc);
    cc.bidirectional = true;
    cc.bias = w.contains("char_rnn.bias_ih_l0");
    char_rnn.emplace(
        load_rnn(w, cc, "the character BiLSTM (" + rnn_why(cc, "lstm") + ")", "char_rnn."));
  }
  Recurrent<float> rnn = load_rnn(w, rc, rnn_why(rc, cell.name));
  auto impl = std::make_unique<Impl>(std::move(m.info), c, std::move(rnn));
  impl->embedding = std::move(emb);
  impl->char_embedding = std::move(char_emb);
  impl->char_rnn = std::move(char_rnn);
  impl->char_vocab = std::move(chars);
  impl->lowercase = lowercase;
  const std::int64_t DH = (c.bidirectional ? 2 : 1) * c.hidden_size;
  const std::string why = "a classifier from " + std::to_string(DH) + " features (D*H) to " +
                          std::to_string(C) + " tags";
  impl->cls_w = w.take("classifier.weight", {C, DH}, why);
  if (w.contains("classifier.bias")) impl->cls_b = w.take("classifier.bias", {C}, why);
  if (c.crf) {
    const std::string crf_why = "a CRF over num_tags " + std::to_string(C);
    impl->transitions = w.take("crf.transitions", {C, C}, crf_why);
    impl->start = w.take("crf.start_transitions", {C}, crf_why);
    impl->end = w.take("crf.end_transitions", {C}, crf_why);
  }
  w.check_all_used("SequenceTagger");
  if (!c.tag_names.empty() && impl->cfg.bio()) impl->bio_tables();
  return SequenceTagger(std::move(impl));
}

const TaggerConfig& SequenceTagger::config() const { return impl_->cfg; }

void SequenceTagger::set_int8_inference(bool on) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->rnn.set_int8_inference(on);
  if (impl_->char_rnn) impl_->char_rnn->set_int8_inference(on);
}
const CheckpointInfo& SequenceTagger::info() const { return impl_->info; }
const Vocabulary& SequenceTagger::char_vocab() const { return impl_->char_vocab; }
bool SequenceTagger::lowercase() const { return impl_->lowercase; }

void SequenceTagger::logits(std::int64_t steps, std::int64_t batch, const std::int64_t* ids,
                            const std::int64_t* lengths, std::int64_t char_steps,
                            const std::int64_t* chars, const std::int64_t* char_lengths,
                            float* out) {
  Impl& m = *impl_;
  const TaggerConfig& c = m.cfg;
  const int T = as_int(steps, "steps"), B = as_int(batch, "batch");
  require_ptr(ids, "ids");
  require_ptr(out, "logits");
  const std::int64_t V = c.vocab_size, E = c.embed_dim, H = c.hidden_size;
  const std::int64_t D = c.bidirectional ? 2 : 1, DH = D * H, C = c.num_tags;
  const std::int64_t Hc = c.char_hidden_size, F = E + (c.char_vocab_size ? 2 * Hc : 0);
  std::vector<std::int64_t> len(std::size_t(B), T);
  std::int64_t N = 0;
  for (std::int64_t b = 0; b < B; ++b) {
    if (lengths) len[std::size_t(b)] = lengths[b];
    if (len[std::size_t(b)] < 1 || len[std::size_t(b)] > T)
      throw std::invalid_argument("lengths[" + std::to_string(b) +
                                  "] = " + std::to_string(len[std::size_t(b)]) +
                                  " is outside [1, T=" + std::to_string(T) + "]");
    N += len[std::size_t(b)];
  }
  // Steps past a sequence's end are never read by the engine: id 0 stands in for them.
  std::vector<std::int64_t> word_ids(std::size_t(T) * std::size_t(B), 0);
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t b = 0; b < B; ++b)
      if (t < len[std::size_t(b)]) word_ids[std::size_t(t * B + b)] = ids[t * B + b];
  std::vector<float> emb(std::size_t(T * B * E));
  embedding_forward<float>(std::int64_t(T) * B, V, E, word_ids.data(), m.embedding.data(),
                           emb.data());
  std::vector<float> x(std::size_t(T * B * F), 0.0f);
  for (std::int64_t r = 0; r < std::int64_t(T) * B; ++r)
    std::memcpy(x.data() + r * F, emb.data() + r * E, sizeof(float) * std::size_t(E));

  std::lock_guard<std::mutex> lock(m.mu);
  if (c.char_vocab_size) {
    if (!chars || !char_lengths || char_steps < 1)
      throw std::invalid_argument(
          "SequenceTagger::logits: this tagger has character features: pass chars [Lc, N] and "
          "char_lengths [N]");
    const int Lc = as_int(char_steps, "char_steps"), Nn = as_int(N, "words");
    for (std::int64_t n = 0; n < N; ++n)
      if (char_lengths[n] < 1 || char_lengths[n] > Lc)
        throw std::invalid_argument("char_lengths[" + std::to_string(n) +
                                    "] = " + std::to_string(char_lengths[n]) +
                                    " is outside [1, Lc=" + std::to_string(Lc) + "]");
    std::vector<std::int64_t> cids(std::size_t(Lc) * std::size_t(N), 0);
    for (std::int64_t t = 0; t < Lc; ++t)
      for (std::int64_t n = 0; n < N; ++n)
        if (t < char_lengths[n]) cids[std::size_t(t * N + n)] = chars[t * N + n];
    std::vector<float> cx(std::size_t(Lc * N * c.char_embed_dim)), cy(std::size_t(Lc * N * 2 * Hc));
    std::vector<float> hc(std::size_t(2 * N * Hc)), cc(std::size_t(2 * N * Hc));
    embedding_forward<float>(std::int64_t(Lc) * N, c.char_vocab_size, c.char_embed_dim, cids.data(),
                             m.char_embedding.data(), cx.data());
    m.char_rnn->forward(Lc, Nn, cx.data(), char_lengths, nullptr, nullptr, cy.data(), hc.data(),
                        cc.data(), /*training=*/false);
    // Word n (sentence by sentence) gets [forward final state | backward final state].
    std::int64_t n = 0;
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t t = 0; t < len[std::size_t(b)]; ++t, ++n)
        for (std::int64_t d = 0; d < 2; ++d)
          std::memcpy(x.data() + (t * B + b) * F + E + d * Hc, hc.data() + (d * N + n) * Hc,
                      sizeof(float) * std::size_t(Hc));
  }
  std::vector<float> y(std::size_t(T * B * DH)), hn(std::size_t(c.num_layers * D * B * H));
  std::vector<float> cn(m.rnn.config().states() == 2 ? hn.size() : 0);
  m.rnn.forward(T, B, x.data(), lengths ? len.data() : nullptr, nullptr, nullptr, y.data(),
                hn.data(), cn.empty() ? nullptr : cn.data(), /*training=*/false);
  linear_forward<float>(std::int64_t(T) * B, DH, C, y.data(), m.cls_w.data(),
                        m.cls_b.empty() ? nullptr : m.cls_b.data(), out);
}

void SequenceTagger::decode(std::int64_t steps, std::int64_t batch, const float* logits,
                            const std::int64_t* lengths, std::int64_t* tags) const {
  const Impl& m = *impl_;
  const std::int64_t T = as_int(steps, "steps"), B = as_int(batch, "batch"), C = m.cfg.num_tags;
  require_ptr(logits, "logits");
  require_ptr(tags, "tags");
  auto len = [&](std::int64_t b) { return lengths ? lengths[b] : T; };
  for (std::int64_t b = 0; b < B; ++b)
    if (len(b) < 1 || len(b) > T)
      throw std::invalid_argument("lengths[" + std::to_string(b) + "] = " + std::to_string(len(b)) +
                                  " is outside [1, T=" + std::to_string(T) + "]");
  if (m.cfg.crf) {
    std::vector<std::int64_t> full(static_cast<std::size_t>(B));
    for (std::int64_t b = 0; b < B; ++b) full[std::size_t(b)] = len(b);
    CrfParams<float> p;
    p.K = C;
    p.transitions = m.transitions.data();
    p.start = m.start.data();
    p.end = m.end.data();
    p.allowed = m.allowed.empty() ? nullptr : m.allowed.data();
    p.allowed_start = m.allowed_start.empty() ? nullptr : m.allowed_start.data();
    crf_viterbi<float>(T, B, p, logits, full.data(), tags);
    for (std::int64_t i = 0; i < T * B; ++i)
      if (tags[i] < 0) tags[i] = kIgnore;
    return;
  }
  for (std::int64_t i = 0; i < T * B; ++i) {
    const float* row = logits + i * C;
    tags[i] = std::max_element(row, row + C) - row;  // the first maximum, as numpy's argmax
  }
  if (!m.type.empty())  // BIO repair, from each step's unrepaired predecessor (types agree)
    for (std::int64_t t = T - 1; t >= 0; --t)
      for (std::int64_t b = 0; b < B; ++b) {
        const std::int64_t tag = tags[t * B + b];
        const std::int64_t prev = t > 0 ? m.type[std::size_t(tags[(t - 1) * B + b])] : 0;
        if (m.inside[std::size_t(tag)] && prev != m.type[std::size_t(tag)])
          tags[t * B + b] = m.begin_of[std::size_t(tag)];
      }
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t b = 0; b < B; ++b)
      if (t >= len(b)) tags[t * B + b] = kIgnore;
}

std::vector<std::vector<std::int64_t>> SequenceTagger::predict(
    const std::vector<std::vector<std::int64_t>>& sentences,
    const std::vector<std::vector<std::vector<std::int64_t>>>& char_ids) {
  if (sentences.empty()) return {};
  const TaggerConfig& c = impl_->cfg;
  const auto B = std::int64_t(sentences.size());
  const bool with_chars = c.char_vocab_size > 0;
  if (with_chars && char_ids.size() != sentences.size())
    throw std::invalid_argument(
        "SequenceTagger::predict: this tagger has character features: char_ids must hold the "
        "characters of every word of every sentence");
  if (!with_chars && !char_ids.empty())
    throw std::invalid_argument(
        "SequenceTagger::predict: char_ids given, but this tagger has no character features");
  std::int64_t T = 0, Lc = 0, N = 0;
  std::vector<std::int64_t> lengths(sentences.size());
  for (std::size_t b = 0; b < sentences.size(); ++b) {
    if (sentences[b].empty())
      throw std::invalid_argument("SequenceTagger::predict: sentence " + std::to_string(b) +
                                  " is empty");
    lengths[b] = std::int64_t(sentences[b].size());
    T = std::max(T, lengths[b]);
    N += lengths[b];
    if (with_chars) {
      if (char_ids[b].size() != sentences[b].size())
        throw std::invalid_argument("SequenceTagger::predict: sentence " + std::to_string(b) +
                                    " has " + std::to_string(sentences[b].size()) +
                                    " words but char_ids has " +
                                    std::to_string(char_ids[b].size()));
      for (std::size_t k = 0; k < char_ids[b].size(); ++k) {
        if (char_ids[b][k].empty())
          throw std::invalid_argument("SequenceTagger::predict: word " + std::to_string(k) +
                                      " of sentence " + std::to_string(b) + " has no characters");
        Lc = std::max(Lc, std::int64_t(char_ids[b][k].size()));
      }
    }
  }
  std::vector<std::int64_t> ids(std::size_t(T * B), 0);
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t t = 0; t < lengths[std::size_t(b)]; ++t) {
      const std::int64_t id = sentences[std::size_t(b)][std::size_t(t)];
      if (id < 0 || id >= c.vocab_size)
        throw std::invalid_argument(
            "SequenceTagger::predict: word id " + std::to_string(id) + " (sentence " +
            std::to_string(b) + ", word " + std::to_string(t) +
            ") is outside [0, vocab_size=" + std::to_string(c.vocab_size) + ")");
      ids[std::size_t(t * B + b)] = id;
    }
  std::vector<std::int64_t> chars, char_lengths;
  if (with_chars) {
    chars.assign(std::size_t(Lc * N), 0);
    char_lengths.reserve(std::size_t(N));
    std::int64_t n = 0;
    for (const auto& sentence : char_ids)
      for (const auto& word : sentence) {
        for (std::size_t t = 0; t < word.size(); ++t) {
          if (word[t] < 0 || word[t] >= c.char_vocab_size)
            throw std::invalid_argument("SequenceTagger::predict: character id " +
                                        std::to_string(word[t]) + " is outside [0, " +
                                        std::to_string(c.char_vocab_size) + ")");
          chars[t * std::size_t(N) + std::size_t(n)] = word[t];
        }
        char_lengths.push_back(std::int64_t(word.size()));
        ++n;
      }
  }
  std::vector<float> scores(std::size_t(T * B * c.num_tags));
  logits(T, B, ids.data(), lengths.data(), Lc, with_chars ? chars.data() : nullptr,
         with_chars ? char_lengths.data() : nullptr, scores.data());
  std::vector<std::int64_t> tags(std::size_t(T * B));
  decode(T, B, scores.data(), lengths.data(), tags.data());
  std::vector<std::vector<std::int64_t>> out(sentences.size());
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t t = 0; t < lengths[std::size_t(b)]; ++t)
      out[std::size_t(b)].push_back(tags[std::size_t(t * B + b)]);
  return out;
}

std::vector<std::vector<std::string>> SequenceTagger::tag(
    const std::vector<std::vector<std::string>>& sentences) {
  const Impl& m = *impl_;
  if (m.cfg.tag_names.empty())
    throw std::invalid_argument("SequenceTagger::tag: the checkpoint has no tag_names");
  if (vocab().empty())
    throw std::invalid_argument("SequenceTagger::tag: the checkpoint has no vocab");
  if (m.cfg.char_vocab_size && m.char_vocab.empty())
    throw std::invalid_argument(
        "SequenceTagger::tag: the checkpoint has no vocabs.chars for its character features");
  std::vector<std::vector<std::int64_t>> words(sentences.size());
  std::vector<std::vector<std::vector<std::int64_t>>> chars;
  if (m.cfg.char_vocab_size) chars.resize(sentences.size());
  for (std::size_t b = 0; b < sentences.size(); ++b)
    for (std::size_t k = 0; k < sentences[b].size(); ++k) {
      const std::string& token = sentences[b][k];
      if (token.empty())
        throw std::invalid_argument("SequenceTagger::tag: token " + std::to_string(k) +
                                    " of sentence " + std::to_string(b) + " is empty");
      words[b].push_back(vocab().id(m.lowercase ? detail::lower_text(token) : token));
      if (m.cfg.char_vocab_size) {
        std::vector<std::int64_t> ids;
        for (const auto& ch : detail::code_points(token)) ids.push_back(m.char_vocab.id(ch));
        chars[b].push_back(std::move(ids));
      }
    }
  std::vector<std::vector<std::string>> out;
  for (const auto& seq : predict(words, chars)) {
    out.emplace_back();
    for (std::int64_t id : seq) out.back().push_back(m.cfg.tag_names[std::size_t(id)]);
  }
  return out;
}

}  // namespace rnncore
