// Loading checkpoints saved in Python and running a LanguageModel or SequenceClassifier on them.
#include "rnncore/inference.h"

#include <algorithm>
#include <cctype>
#include <climits>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <set>
#include <sstream>

#include "json.h"
#include "linalg.h"
#include "rnncore/ops.h"
#include "rnncore/recurrent.h"
#include "rnncore/safetensors.h"

namespace rnncore {

namespace fs = std::filesystem;
using detail::json::Value;

// ---- Vocabulary ---------------------------------------------------------------------------------

Vocabulary::Vocabulary(std::vector<std::string> tokens, const std::string& pad,
                       const std::string& unk, const std::string& bos, const std::string& eos)
    : tokens_(std::move(tokens)) {
  index_.reserve(tokens_.size());
  for (std::size_t i = 0; i < tokens_.size(); ++i)
    if (!index_.emplace(tokens_[i], std::int64_t(i)).second)
      throw std::invalid_argument("Vocabulary: duplicate token '" + tokens_[i] + "' at ids " +
                                  std::to_string(index_[tokens_[i]]) + " and " + std::to_string(i));
  auto role = [&](const std::string& tok, const char* name) -> std::int64_t {
    if (tok.empty()) return -1;
    const auto it = index_.find(tok);
    if (it == index_.end())
      throw std::invalid_argument(std::string("Vocabulary: the ") + name + " token '" + tok +
                                  "' is not in the token list");
    return it->second;
  };
  pad_ = role(pad, "pad");
  unk_ = role(unk, "unk");
  bos_ = role(bos, "bos");
  eos_ = role(eos, "eos");
}

const std::string& Vocabulary::token(std::int64_t id) const {
  if (id < 0 || id >= size())
    throw std::invalid_argument("Vocabulary: id " + std::to_string(id) + " is outside [0, " +
                                std::to_string(size()) + ")");
  return tokens_[std::size_t(id)];
}

std::int64_t Vocabulary::id(const std::string& token) const {
  const auto it = index_.find(token);
  if (it != index_.end()) return it->second;
  if (unk_ >= 0) return unk_;
  throw std::invalid_argument("Vocabulary: unknown token '" + token +
                              "' (and the vocabulary has no unk token)");
}

// ---- checkpoint.json ----------------------------------------------------------------------------

namespace {

std::string in_quotes(const std::string& s) { return "'" + s + "'"; }

// "LanguageModel", "language_model" and "languagemodel" name the same model type.
std::string normalized(const std::string& s) {
  std::string out;
  for (char c : s)
    if (c != '_' && c != '-' && c != ' ') out += char(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string read_text(const fs::path& p, const std::string& where) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw CheckpointError(where + ": cannot open " + in_quotes(p.string()));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw CheckpointError(where + ": read error on " + in_quotes(p.string()));
  return ss.str();
}

// The parsed checkpoint.json of one directory, with field readers that name what is wrong.
struct Meta {
  CheckpointInfo info;
  Value root;
  const Value* config = nullptr;            // model_config
  std::map<std::string, std::string> tied;  // alias -> stored tensor name
  std::string where;                        // "checkpoint 'DIR'"

  std::string key_where(const std::string& key) const {
    return where + ": checkpoint.json model_config." + key;
  }
  const Value* field(const std::string& key) const { return config->find(key); }

  std::int64_t integer(const std::string& key, std::optional<std::int64_t> fallback,
                       std::int64_t min_value) const {
    const Value* v = field(key);
    if (!v || v->is_null()) {
      if (fallback) return *fallback;
      throw CheckpointError(key_where(key) + " is missing");
    }
    if (!v->is_integer())
      throw CheckpointError(key_where(key) + " must be an integer, got " +
                            (v->is_number() ? v->text : detail::json::kind_name(v->kind)));
    const std::int64_t n = v->as_int64();
    if (n < min_value)
      throw CheckpointError(key_where(key) + " must be >= " + std::to_string(min_value) + ", got " +
                            std::to_string(n));
    return n;
  }
  std::string string(const std::string& key, const std::string& fallback) const {
    const Value* v = field(key);
    if (!v || v->is_null()) return fallback;
    if (!v->is_string())
      throw CheckpointError(key_where(key) + " must be a string, got a " +
                            detail::json::kind_name(v->kind));
    return v->text;
  }
  bool boolean(const std::string& key, bool fallback) const {
    const Value* v = field(key);
    if (!v || v->is_null()) return fallback;
    if (!v->is_bool())
      throw CheckpointError(key_where(key) + " must be true or false, got a " +
                            detail::json::kind_name(v->kind));
    return v->boolean;
  }
};

Vocabulary parse_vocab(const Value& v, const std::string& where) {
  if (v.is_null()) return {};
  if (!v.is_object())
    throw CheckpointError(where + ": checkpoint.json vocab must be an object or null");
  const Value* tokens = v.find("tokens");
  if (!tokens || !tokens->is_array())
    throw CheckpointError(where + ": checkpoint.json vocab.tokens must be a list of strings");
  std::vector<std::string> list;
  list.reserve(tokens->array.size());
  for (const auto& t : tokens->array) {
    if (!t.is_string())
      throw CheckpointError(where + ": checkpoint.json vocab.tokens must be a list of strings");
    list.push_back(t.text);
  }
  std::string roles[4];
  const char* names[4] = {"pad", "unk", "bos", "eos"};
  if (const Value* sp = v.find("specials"); sp && !sp->is_null()) {
    if (!sp->is_object())
      throw CheckpointError(where + ": checkpoint.json vocab.specials must be an object");
    for (const auto& [role, tok] : sp->object) {
      const auto* it = std::find(names, names + 4, role);
      if (it == names + 4)
        throw CheckpointError(where + ": checkpoint.json vocab.specials has an unknown role " +
                              in_quotes(role));
      if (!tok.is_null()) {
        if (!tok.is_string())
          throw CheckpointError(where + ": checkpoint.json vocab.specials." + role +
                                " must be a string");
        roles[it - names] = tok.text;
      }
    }
  }
  try {
    return Vocabulary(std::move(list), roles[0], roles[1], roles[2], roles[3]);
  } catch (const std::invalid_argument& e) {
    throw CheckpointError(where + ": checkpoint.json vocab: " + e.what());
  }
}

Meta read_meta(const std::string& directory) {
  Meta m;
  m.where = "checkpoint " + in_quotes(directory);
  const fs::path dir(directory);
  std::error_code ec;
  if (!fs::exists(dir, ec)) throw CheckpointError(m.where + ": no such directory");
  if (!fs::is_directory(dir, ec))
    throw CheckpointError(m.where +
                          ": is not a directory (a checkpoint is a directory holding "
                          "model.safetensors and checkpoint.json)");
  const fs::path meta_path = dir / "checkpoint.json";
  if (!fs::exists(meta_path, ec))
    throw CheckpointError(m.where + ": missing checkpoint.json (not a checkpoint directory?)");
  m.info.directory = directory;
  m.info.json = read_text(meta_path, m.where);
  try {
    m.root = detail::json::parse(m.info.json, m.where + ": checkpoint.json");
  } catch (const CheckpointError&) {
    throw;
  } catch (const std::runtime_error& e) {
    throw CheckpointError(e.what());
  }
  const Value& r = m.root;
  if (!r.is_object()) throw CheckpointError(m.where + ": checkpoint.json must be a JSON object");
  const Value* format = r.find("format");
  if (!format || !format->is_string() || format->text != "rnncore.checkpoint")
    throw CheckpointError(m.where +
                          ": checkpoint.json format must be \"rnncore.checkpoint\", got " +
                          (format && format->is_string() ? in_quotes(format->text) : "none"));
  const Value* version = r.find("version");
  if (!version || !version->is_integer())
    throw CheckpointError(m.where + ": checkpoint.json version must be an integer");
  if (version->as_int64() != 1)
    throw CheckpointError(m.where + ": checkpoint.json version " + version->text +
                          " is not supported (this reader knows version 1)");
  const Value* type = r.find("model_type");
  if (!type || !type->is_string())
    throw CheckpointError(m.where + ": checkpoint.json model_type must be a string");
  m.info.model_type = type->text;
  m.config = r.find("model_config");
  if (!m.config || !m.config->is_object())
    throw CheckpointError(m.where + ": checkpoint.json model_config must be an object");
  // "dtype": one name, or the sorted list of names when the tensors differ.
  m.info.dtype = "float32";
  if (const Value* d = r.find("dtype"); d && !d->is_null()) {
    std::vector<const Value*> names;
    if (d->is_array()) {
      for (const auto& e : d->array) names.push_back(&e);
    } else {
      names.push_back(d);
    }
    m.info.dtype.clear();
    for (const Value* e : names) {
      if (!e->is_string() || (e->text != "float32" && e->text != "float64"))
        throw CheckpointError(m.where +
                              ": checkpoint.json dtype must be \"float32\" or \"float64\"");
      m.info.dtype += (m.info.dtype.empty() ? "" : ",") + e->text;
    }
  }
  // "tied": {alias: stored name} for parameters stored once under another name.
  if (const Value* t = r.find("tied"); t && !t->is_null()) {
    if (!t->is_object())
      throw CheckpointError(m.where + ": checkpoint.json tied must be an object");
    for (const auto& [alias, target] : t->object) {
      if (!target.is_string())
        throw CheckpointError(m.where + ": checkpoint.json tied." + alias + " must be a string");
      m.tied[alias] = target.text;
    }
  }
  if (const Value* extra = r.find("extra"); extra && extra->is_object())
    if (const Value* labels = extra->find("labels"); labels && labels->is_array()) {
      for (const auto& l : labels->array)
        if (l.is_string()) m.info.labels.push_back(l.text);
      if (m.info.labels.size() != labels->array.size()) m.info.labels.clear();
    }
  if (const Value* v = r.find("vocab")) m.info.vocab = parse_vocab(*v, m.where);
  auto opt_int = [&](const char* key) -> std::optional<std::int64_t> {
    const Value* v = r.find(key);
    if (v && v->is_integer()) return v->as_int64();
    return std::nullopt;
  };
  m.info.epoch = opt_int("epoch");
  m.info.step = opt_int("step");
  return m;
}

// The registered cell a config names: the registry's name in any case, '_' optional, or one of
// the aliases "rnn_tanh"/"tanh" (rnn) and "relu" (rnn_relu); null when none matches.
const CellInfo* parse_cell(const std::string& name) {
  std::string n = normalized(name);
  if (n == "rnntanh" || n == "tanh") n = "rnn";
  if (n == "relu") n = "rnnrelu";
  for (const auto& c : registered_cells())
    if (normalized(c.name) == n) return &c;
  return nullptr;
}

// "rnn, rnn_relu, lstm, ..." for error messages.
std::string cell_names() {
  std::string out;
  for (const auto& c : registered_cells()) out += (out.empty() ? "" : ", ") + std::string(c.name);
  return out;
}

const CellInfo& cell_of(const Meta& m) {
  const std::string name = m.string("cell", "lstm");
  const CellInfo* cell = parse_cell(name);
  if (!cell)
    throw CheckpointError(m.key_where("cell") + " " + in_quotes(name) + " is not one of " +
                          cell_names());
  return *cell;
}

void check_model_type(const Meta& m, const char* expected) {
  if (normalized(m.info.model_type) != normalized(expected))
    throw CheckpointError(m.where + ": model_type is " + in_quotes(m.info.model_type) +
                          " but the " + "program loads a " + expected);
}

// Compares a ModelRequirements field with the checkpoint's value.
template <typename V>
void require_same(const Meta& m, const char* field, const std::optional<V>& wanted, const V& got) {
  if (!wanted || *wanted == got) return;
  std::ostringstream os;
  os << std::boolalpha << m.where << ": model_config." << field << " is " << got
     << " but the program expects " << *wanted;
  throw CheckpointError(os.str());
}

void require_cell(const Meta& m, const ModelRequirements& req, const CellInfo& cell) {
  if (!req.cell) return;
  const CellInfo* want = parse_cell(*req.cell);
  if (!want)
    throw std::invalid_argument("ModelRequirements.cell " + in_quotes(*req.cell) +
                                " is not one of " + cell_names());
  if (want->id != cell.id)
    throw CheckpointError(m.where + ": the cell is " + in_quotes(cell.name) +
                          " but the program expects " + in_quotes(want->name));
}

// The weights of one checkpoint: tensors are taken by name and shape; leftovers are an error.
class Weights {
 public:
  Weights(const std::string& directory, const std::string& where,
          std::map<std::string, std::string> tied)
      : where_(where), tied_(std::move(tied)) {
    const fs::path p = fs::path(directory) / "model.safetensors";
    std::error_code ec;
    if (!fs::exists(p, ec)) throw CheckpointError(where + ": missing model.safetensors");
    try {
      file_.emplace(p.string());
    } catch (const std::runtime_error& e) {
      throw CheckpointError(where + ": " + e.what());
    }
  }

  // The name a tensor is stored under (itself, or the parameter it is tied to).
  std::string stored(const std::string& name) const {
    if (file_->contains(name)) return name;
    const auto it = tied_.find(name);
    return it != tied_.end() ? it->second : name;
  }
  bool contains(const std::string& name) const { return file_->contains(stored(name)); }

  // The tensor as float32, which must have `shape`; `why` says which config field sets it.
  std::vector<float> take(const std::string& wanted, const std::vector<std::int64_t>& shape,
                          const std::string& why) {
    const std::string name = stored(wanted);
    if (!file_->contains(name))
      throw CheckpointError(where_ + ": model.safetensors has no tensor " + in_quotes(wanted) +
                            " (needed by " + why + ")");
    const TensorInfo& t = file_->info(name);
    if (t.shape != shape)
      throw CheckpointError(where_ + ": tensor " + in_quotes(name) + " has shape " +
                            shape_string(t.shape) + " but " + why + " needs " +
                            shape_string(shape));
    used_.insert(name);
    try {
      return file_->read_f32(name);
    } catch (const std::runtime_error& e) {
      throw CheckpointError(where_ + ": " + e.what());
    }
  }

  // Marks a tensor as accounted for without reading it (e.g. a tied decoder.weight).
  void skip(const std::string& name) { used_.insert(name); }

  void check_all_used(const char* model) const {
    std::string extra;
    for (const auto& t : file_->tensors())
      if (!used_.count(t.name)) extra += (extra.empty() ? "" : ", ") + in_quotes(t.name);
    if (!extra.empty())
      throw CheckpointError(where_ + ": model.safetensors has tensors a " + model +
                            " with this model_config does not use: " + extra);
  }

 private:
  std::string where_;
  std::map<std::string, std::string> tied_;
  std::optional<SafeTensorsFile> file_;
  std::set<std::string> used_;
};

// The recurrent stack with its weights loaded from "rnn.*" (PyTorch names and order).
Recurrent<float> load_rnn(Weights& w, const RecurrentConfig& cfg, const std::string& why) {
  Recurrent<float> rnn(cfg);
  for (const ParamInfo& p : rnn.param_info()) {
    std::vector<std::int64_t> shape{std::int64_t(p.rows)};
    if (p.cols != 0) shape.push_back(std::int64_t(p.cols));
    const auto data = w.take("rnn." + p.name, shape, why);
    std::copy(data.begin(), data.end(), rnn.params() + p.offset);
  }
  return rnn;
}

std::string rnn_why(const RecurrentConfig& c, const char* cell) {
  return std::string("an rnn of cell ") + cell + ", input " + std::to_string(c.input_size) +
         ", hidden " + std::to_string(c.hidden_size) +
         (c.proj_size ? ", proj_size " + std::to_string(c.proj_size) : std::string()) + ", " +
         std::to_string(c.num_layers) + " layer(s)" + (c.bidirectional ? ", bidirectional" : "");
}

int as_int(std::int64_t v, const char* name) {
  if (v < 1 || v > INT_MAX)
    throw std::invalid_argument(std::string(name) + " must be in [1, " + std::to_string(INT_MAX) +
                                "], got " + std::to_string(v));
  return int(v);
}

void require_ptr(const void* p, const char* name) {
  if (!p) throw std::invalid_argument(std::string(name) + " must not be null");
}

// rows[n, :] -= logsumexp(rows[n, :]) for n in [0, N).   rows [N, V]
void log_softmax_rows(std::int64_t N, std::int64_t V, float* rows) {
  // One token's row while sampling runs without an OpenMP region (see detail::team).
  detail::parallel_for(N, N * V >= (std::int64_t(1) << 16), [&](std::int64_t n) {
    float* r = rows + n * V;
    const float m = *std::max_element(r, r + V);
    double s = 0.0;
    for (std::int64_t v = 0; v < V; ++v) s += std::exp(double(r[v]) - double(m));
    const float lse = float(double(m) + std::log(s));
    for (std::int64_t v = 0; v < V; ++v) r[v] -= lse;
  });
}

void softmax_rows(std::int64_t N, std::int64_t V, float* rows) {
  for (std::int64_t n = 0; n < N; ++n) {
    float* r = rows + n * V;
    const float m = *std::max_element(r, r + V);
    double s = 0.0;
    for (std::int64_t v = 0; v < V; ++v) s += std::exp(double(r[v]) - double(m));
    for (std::int64_t v = 0; v < V; ++v) r[v] = float(std::exp(double(r[v]) - double(m)) / s);
  }
}

}  // namespace

CheckpointInfo read_checkpoint_info(const std::string& directory) {
  return read_meta(directory).info;
}

// ---- sampling -----------------------------------------------------------------------------------

std::int64_t sample_token(const float* log_probs, std::int64_t V, double temperature,
                          std::int64_t top_k, std::mt19937_64& rng) {
  if (V < 1) throw std::invalid_argument("sample_token: V must be >= 1, got " + std::to_string(V));
  require_ptr(log_probs, "sample_token: log_probs");
  if (!(temperature >= 0.0) || !std::isfinite(temperature))
    throw std::invalid_argument("sample_token: temperature must be >= 0 and finite, got " +
                                std::to_string(temperature));
  if (top_k < 0)
    throw std::invalid_argument("sample_token: top_k must be >= 0, got " + std::to_string(top_k));
  for (std::int64_t v = 0; v < V; ++v)
    if (std::isnan(log_probs[v]))
      throw std::invalid_argument("sample_token: log_probs[" + std::to_string(v) + "] is NaN");
  // Candidates: every id, or the top_k most likely (ties to the lower id), kept in id order so
  // that the draw below does not depend on how the selection was made.
  std::vector<std::int64_t> ids(static_cast<std::size_t>(V));
  std::iota(ids.begin(), ids.end(), std::int64_t(0));
  auto more_likely = [&](std::int64_t a, std::int64_t b) {
    return log_probs[a] > log_probs[b] || (log_probs[a] == log_probs[b] && a < b);
  };
  if (temperature == 0.0) return *std::min_element(ids.begin(), ids.end(), more_likely);
  if (top_k > 0 && top_k < V) {
    std::nth_element(ids.begin(), ids.begin() + top_k, ids.end(), more_likely);
    ids.resize(static_cast<std::size_t>(top_k));
    std::sort(ids.begin(), ids.end());
  }
  double top = -INFINITY;
  for (auto i : ids) top = std::max(top, double(log_probs[i]));
  if (!std::isfinite(top))
    throw std::invalid_argument("sample_token: no candidate has a finite log-probability");
  std::vector<double> w(ids.size());
  double total = 0.0;
  for (std::size_t j = 0; j < ids.size(); ++j) {
    w[j] = std::exp((double(log_probs[ids[j]]) - top) / temperature);
    total += w[j];
  }
  // 53 random bits -> [0, 1): the same on every platform, unlike std::uniform_real_distribution.
  const double u = double(rng() >> 11) * 0x1.0p-53 * total;
  double acc = 0.0;
  for (std::size_t j = 0; j < ids.size(); ++j) {
    acc += w[j];
    if (u < acc) return ids[j];
  }
  for (std::size_t j = ids.size(); j-- > 0;)  // rounding left u at the very end
    if (w[j] > 0.0) return ids[j];
  return ids.back();
}

// ---- LanguageModel ------------------------------------------------------------------------------

struct LanguageModel::Impl {
  CheckpointInfo info;
  LanguageModelConfig cfg;
  Recurrent<float> rnn;
  std::vector<float> embedding;     // [V, E]
  std::vector<float> dec_w;         // [V, R]; empty when tied (embedding is used)
  std::vector<float> dec_b;         // [V] or empty
  std::vector<float> x, y, hn, cn;  // workspaces: [T*B, E], [T*B, R], [L, B, R], [L, B, H]

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
  if (!m.info.vocab.empty() && m.info.vocab.size() != c.vocab_size)
    throw CheckpointError(m.where + ": the vocab has " + std::to_string(m.info.vocab.size()) +
                          " tokens but model_config.vocab_size is " + std::to_string(c.vocab_size));

  RecurrentConfig rc;
  rc.cell = cell.id;
  rc.input_size = int(c.embed_dim);
  rc.hidden_size = int(c.hidden_size);
  rc.num_layers = int(c.num_layers);
  rc.proj_size = int(c.proj_size);
  Weights w(directory, m.where, m.tied);
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
  require_ptr(log_probs, "log_probs");
  impl_->run(steps, batch, ids, state, "LanguageModel::log_probs");
  impl_->decode(steps * batch, impl_->y.data(), log_probs);
}

std::vector<float> LanguageModel::feed(const std::vector<std::int64_t>& tokens, State& state) {
  if (tokens.empty()) throw std::invalid_argument("LanguageModel::feed: tokens must not be empty");
  const auto T = std::int64_t(tokens.size());
  impl_->run(T, 1, tokens.data(), &state, "LanguageModel::feed");
  std::vector<float> out(std::size_t(impl_->cfg.vocab_size));
  impl_->decode(1, impl_->y.data() + (T - 1) * impl_->cfg.state_size(), out.data());
  return out;
}

std::vector<float> LanguageModel::next_log_probs(const std::vector<std::int64_t>& prefix) {
  if (prefix.empty())
    throw std::invalid_argument("LanguageModel::next_log_probs: prefix must not be empty");
  State s = initial_state(1);
  return feed(prefix, s);
}

void LanguageModel::step(const std::int64_t* tokens, State& state, float* log_probs) {
  require_ptr(log_probs, "log_probs");
  impl_->run(1, state.batch, tokens, &state, "LanguageModel::step");
  impl_->decode(state.batch, impl_->y.data(), log_probs);
}

std::vector<std::int64_t> LanguageModel::sample(const std::vector<std::int64_t>& prefix,
                                                const SampleOptions& o) {
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
  if (!m.info.vocab.empty() && m.info.vocab.size() != c.vocab_size)
    throw CheckpointError(m.where + ": the vocab has " + std::to_string(m.info.vocab.size()) +
                          " tokens but model_config.vocab_size is " + std::to_string(c.vocab_size));

  RecurrentConfig rc;
  rc.cell = cell.id;
  rc.input_size = int(c.embed_dim);
  rc.hidden_size = int(c.hidden_size);
  rc.num_layers = int(c.num_layers);
  rc.bidirectional = c.bidirectional;
  Weights w(directory, m.where, m.tied);
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
const CheckpointInfo& SequenceClassifier::info() const { return impl_->info; }

void SequenceClassifier::predict_proba(std::int64_t steps, std::int64_t batch,
                                       const std::int64_t* ids, const std::int64_t* lengths,
                                       float* probs) {
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
