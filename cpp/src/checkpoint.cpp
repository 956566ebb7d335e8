// Checkpoint directories: the vocabulary, checkpoint.json (Meta) and the model's tensors
// (Weights), checked field by field before anything is built from them.
#include "checkpoint.h"

#include <algorithm>
#include <cctype>
#include <climits>
#include <fstream>
#include <stdexcept>

namespace rnncore {

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

CheckpointInfo read_checkpoint_info(const std::string& directory) {
  return detail::read_meta(directory).info;
}

namespace detail {

std::string in_quotes(const std::string& s) { return "'" + s + "'"; }

std::string normalized(const std::string& s) {
  std::string out;
  for (char c : s)
    if (c != '_' && c != '-' && c != ' ') out += char(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

namespace {

std::string read_text(const fs::path& p, const std::string& where) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw CheckpointError(where + ": cannot open " + in_quotes(p.string()));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw CheckpointError(where + ": read error on " + in_quotes(p.string()));
  return ss.str();
}

}  // namespace

namespace {

// The newest backup ".<name>.old-<pid>-<tag>" of a checkpoint directory that holds a
// checkpoint.json: what a Python writer that died between its two renames leaves (see
// rnncore.train.checkpoint._commit), or an empty path.
fs::path backup_of(const fs::path& dir) {
  const std::string prefix = "." + dir.filename().string() + ".old-";
  fs::path best;
  fs::file_time_type best_time{};
  std::error_code ec;
  const fs::path parent = dir.has_parent_path() ? dir.parent_path() : fs::path(".");
  for (fs::directory_iterator it(parent, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path p = it->path();
    if (p.filename().string().rfind(prefix, 0) != 0 ||
        !fs::exists(p / checkpoint_format::kMetaFile))
      continue;
    const auto t = fs::last_write_time(p, ec);
    if (!ec && (best.empty() || t > best_time)) {
      best = p;
      best_time = t;
    }
  }
  return best;
}

}  // namespace

Vocabulary parse_vocab_at(const Value& v, const std::string& where, const std::string& field) {
  if (v.is_null()) return {};
  if (!v.is_object())
    throw CheckpointError(where + ": checkpoint.json " + field + " must be an object or null");
  const Value* tokens = v.find("tokens");
  if (!tokens || !tokens->is_array())
    throw CheckpointError(where + ": checkpoint.json " + field +
                          ".tokens must be a list of strings");
  std::vector<std::string> list;
  list.reserve(tokens->array.size());
  for (const auto& t : tokens->array) {
    if (!t.is_string())
      throw CheckpointError(where + ": checkpoint.json " + field +
                            ".tokens must be a list of strings");
    list.push_back(t.text);
  }
  std::string roles[4];
  const char* names[4] = {"pad", "unk", "bos", "eos"};
  if (const Value* sp = v.find("specials"); sp && !sp->is_null()) {
    if (!sp->is_object())
      throw CheckpointError(where + ": checkpoint.json " + field + ".specials must be an object");
    for (const auto& [role, tok] : sp->object) {
      const auto* it = std::find(names, names + 4, role);
      if (it == names + 4)
        throw CheckpointError(where + ": checkpoint.json " + field +
                              ".specials has an unknown role " + in_quotes(role));
      if (!tok.is_null()) {
        if (!tok.is_string())
          throw CheckpointError(where + ": checkpoint.json " + field + ".specials." + role +
                                " must be a string");
        roles[it - names] = tok.text;
      }
    }
  }
  try {
    return Vocabulary(std::move(list), roles[0], roles[1], roles[2], roles[3]);
  } catch (const std::invalid_argument& e) {
    throw CheckpointError(where + ": checkpoint.json " + field + ": " + e.what());
  }
}

Meta read_meta(const std::string& directory) {
  Meta m;
  m.where = "checkpoint " + in_quotes(directory);
  fs::path dir(directory);
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    const fs::path backup = backup_of(dir);
    if (backup.empty()) throw CheckpointError(m.where + ": no such directory");
    dir = backup;  // a writer died between its two renames: its previous checkpoint is here
    m.where = "checkpoint " + in_quotes(backup.string());
  }
  if (!fs::is_directory(dir, ec))
    throw CheckpointError(m.where +
                          ": is not a directory (a checkpoint is a directory holding "
                          "model.safetensors and checkpoint.json)");
  const fs::path meta_path = dir / checkpoint_format::kMetaFile;
  if (!fs::exists(meta_path, ec))
    throw CheckpointError(m.where + ": missing checkpoint.json (not a checkpoint directory?)");
  m.info.directory = dir.string();
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
  if (!format || !format->is_string() || format->text != checkpoint_format::kFormat)
    throw CheckpointError(m.where + ": checkpoint.json format must be \"" +
                          checkpoint_format::kFormat + "\", got " +
                          (format && format->is_string() ? in_quotes(format->text) : "none"));
  const Value* version = r.find("version");
  if (!version || !version->is_integer())
    throw CheckpointError(m.where + ": checkpoint.json version must be an integer");
  if (version->as_int64() != checkpoint_format::kVersion)
    throw CheckpointError(m.where + ": checkpoint.json version " + version->text +
                          " is not supported (this reader knows version " +
                          std::to_string(checkpoint_format::kVersion) + ")");
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
  if (const Value* v = r.find("vocab")) m.info.vocab = parse_vocab_at(*v, m.where, "vocab");
  auto opt_int = [&](const char* key) -> std::optional<std::int64_t> {
    const Value* v = r.find(key);
    if (v && v->is_integer()) return v->as_int64();
    return std::nullopt;
  };
  m.info.epoch = opt_int("epoch");
  m.info.step = opt_int("step");
  return m;
}

const CellInfo* parse_cell(const std::string& name) {
  std::string n = normalized(name);
  if (n == "rnntanh" || n == "tanh") n = "rnn";
  if (n == "relu") n = "rnnrelu";
  for (const auto& c : registered_cells())
    if (normalized(c.name) == n) return &c;
  return nullptr;
}

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

Recurrent<float> load_rnn(Weights& w, const RecurrentConfig& cfg, const std::string& why,
                          const std::string& prefix) {
  // Each lane stores at least its two weights: a layer count the file cannot hold is refused
  // before the layout (one entry per tensor) is even listed.
  const std::int64_t lanes = std::int64_t(cfg.num_layers) * cfg.directions();
  if (lanes < 1 || std::size_t(2 * lanes) > w.count())
    throw CheckpointError(why + " needs " + std::to_string(2 * lanes) +
                          " or more rnn tensors; model.safetensors holds " +
                          std::to_string(w.count()) + " tensors in all");
  const std::vector<ParamInfo> layout = Recurrent<float>::param_layout(cfg);
  auto shape_of = [](const ParamInfo& p) {
    std::vector<std::int64_t> shape{std::int64_t(p.rows)};
    if (p.cols != 0) shape.push_back(std::int64_t(p.cols));
    return shape;
  };
  for (const ParamInfo& p : layout) w.expect(prefix + p.name, shape_of(p), why);
  Recurrent<float> rnn(cfg);  // sizes now bounded by what the file holds
  for (const ParamInfo& p : layout) {
    const auto data = w.take(prefix + p.name, shape_of(p), why);
    std::copy(data.begin(), data.end(), rnn.params() + p.offset);
  }
  return rnn;
}

RecurrentConfig rnn_config(const Meta& m, const CellInfo& cell, std::int64_t embed_dim,
                           std::int64_t hidden_size, std::int64_t num_layers) {
  RecurrentConfig rc;
  rc.cell = cell.id;
  rc.input_size = config_int(m, "embed_dim", embed_dim);
  rc.hidden_size = config_int(m, "hidden_size", hidden_size);
  rc.num_layers = config_int(m, "num_layers", num_layers);
  // Zoneout changes inference (the expectation of the kept and the fresh state); recurrent
  // dropout does not, so the loader needs only the first.
  rc.zoneout = m.probability("zoneout", 0.0);
  rc.layer_norm = m.boolean("layer_norm", false);
  if (rc.layer_norm && !cell.layer_norm)
    throw CheckpointError(m.key_where("layer_norm") + " is true, but cell " + cell.name +
                          " has no layer-normalised form");
  return rc;
}

void check_vocab_size(const Meta& m, std::int64_t vocab_size) {
  if (!m.info.vocab.empty() && m.info.vocab.size() != vocab_size)
    throw CheckpointError(m.where + ": the vocab has " + std::to_string(m.info.vocab.size()) +
                          " tokens but model_config.vocab_size is " + std::to_string(vocab_size));
}

int config_int(const Meta& m, const std::string& key, std::int64_t value) {
  if (value < 0 || value > INT_MAX)
    throw CheckpointError(m.key_where(key) + " " + std::to_string(value) + " is out of range [0, " +
                          std::to_string(INT_MAX) + "]");
  return int(value);
}

std::string rnn_why(const RecurrentConfig& c, const char* cell) {
  return std::string("an rnn of cell ") + cell + ", input " + std::to_string(c.input_size) +
         ", hidden " + std::to_string(c.hidden_size) +
         (c.proj_size ? ", proj_size " + std::to_string(c.proj_size) : std::string()) + ", " +
         std::to_string(c.num_layers) + " layer(s)" + (c.bidirectional ? ", bidirectional" : "") +
         (c.layer_norm ? ", layer norm" : "");
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

}  // namespace detail
}  // namespace rnncore
