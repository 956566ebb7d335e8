// Reading checkpoint directories (checkpoint.json, model.safetensors, the vocabulary): what every
// C++ model loader shares. The layout's names are declared once, in rnncore/checkpoint_format.h.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "json.h"
#include "rnncore/checkpoint_format.h"
#include "rnncore/inference.h"
#include "rnncore/recurrent.h"
#include "rnncore/safetensors.h"

namespace rnncore::detail {

namespace fs = std::filesystem;
using json::Value;

std::string in_quotes(const std::string& s);
// "LanguageModel", "language_model" and "languagemodel" name the same model type.
std::string normalized(const std::string& s);

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
  // A number in [lo, hi) (a probability, say), or `fallback` when absent or null.
  double probability(const std::string& key, double fallback) const {
    const Value* v = field(key);
    if (!v || v->is_null()) return fallback;
    if (!v->is_number() || !(v->number >= 0.0 && v->number < 1.0))
      throw CheckpointError(key_where(key) + " must be a number in [0, 1), got " +
                            (v->is_number() ? v->text : detail::json::kind_name(v->kind)));
    return v->number;
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

/// The checkpoint.json of `directory`, checked (format, version, model_type, model_config, dtype,
/// tied, vocab). Throws CheckpointError naming the directory and the field. A missing directory
/// whose writer died between its two renames is read from its backup (info.directory says so).
Meta read_meta(const std::string& directory);

// The registered cell a config names: the registry's name in any case, '_' optional, or one of
// the aliases "rnn_tanh"/"tanh" (rnn) and "relu" (rnn_relu); null when none matches.
const CellInfo* parse_cell(const std::string& name);
// "rnn, rnn_relu, lstm, ..." for error messages.
std::string cell_names();
// The cell of model_config.cell (default "lstm"); CheckpointError for an unknown one.
const CellInfo& cell_of(const Meta& m);
void check_model_type(const Meta& m, const char* expected);
void require_cell(const Meta& m, const ModelRequirements& req, const CellInfo& cell);

// Compares a ModelRequirements field with the checkpoint's value.
template <typename V>
void require_same(const Meta& m, const char* field, const std::optional<V>& wanted, const V& got) {
  if (!wanted || *wanted == got) return;
  std::ostringstream os;
  os << std::boolalpha << m.where << ": model_config." << field << " is " << got
     << " but the program expects " << *wanted;
  throw CheckpointError(os.str());
}

// The weights of one checkpoint: tensors are taken by name and shape; leftovers are an error.
class Weights {
 public:
  Weights(const std::string& directory, const std::string& where,
          std::map<std::string, std::string> tied)
      : where_(where), tied_(std::move(tied)) {
    const fs::path p = fs::path(directory) / checkpoint_format::kModelFile;
    std::error_code ec;
    if (!fs::exists(p, ec))
      throw CheckpointError(where + ": missing " + std::string(checkpoint_format::kModelFile));
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

  // Throws CheckpointError unless tensor `wanted` is in the file with `shape` (read from the
  // header only: the model is checked against the file before anything is allocated for it).
  void expect(const std::string& wanted, const std::vector<std::int64_t>& shape,
              const std::string& why) const {
    const std::string name = stored(wanted);
    if (!file_->contains(name))
      throw CheckpointError(where_ + ": model.safetensors has no tensor " + in_quotes(wanted) +
                            " (needed by " + why + ")");
    const TensorInfo& t = file_->info(name);
    if (t.shape != shape)
      throw CheckpointError(where_ + ": tensor " + in_quotes(name) + " has shape " +
                            shape_string(t.shape) + " but " + why + " needs " +
                            shape_string(shape));
  }

  // The tensor as float32, which must have `shape`; `why` says which config field sets it.
  std::vector<float> take(const std::string& wanted, const std::vector<std::int64_t>& shape,
                          const std::string& why) {
    expect(wanted, shape, why);
    const std::string name = stored(wanted);
    used_.insert(name);
    try {
      return file_->read_f32(name);
    } catch (const std::runtime_error& e) {
      throw CheckpointError(where_ + ": " + e.what());
    }
  }

  // Tensors stored in the file (aliases of tied ones not counted).
  std::size_t count() const { return file_->tensors().size(); }

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

// The recurrent stack with its weights loaded from "rnn.*" (PyTorch names and order). Every
// tensor's shape is checked against the file's header before the stack is allocated, so a
// config with inflated sizes fails on what the file holds, not on memory.
Recurrent<float> load_rnn(Weights& w, const RecurrentConfig& cfg, const std::string& why,
                          const std::string& prefix = "rnn.");
// A vocabulary object of checkpoint.json (Vocab.to_dict) at `field` ("vocab", "vocabs.chars"),
// null giving an empty one. CheckpointError naming the field when malformed.
Vocabulary parse_vocab_at(const Value& v, const std::string& where, const std::string& field);
// model_config.<key> (already read as `value`) as an int for a RecurrentConfig field:
// CheckpointError naming the key when it does not fit.
int config_int(const Meta& m, const std::string& key, std::int64_t value);
// The recurrent stack of a model_config: its cell, embed_dim (the input), hidden_size and
// num_layers, each through config_int.
RecurrentConfig rnn_config(const Meta& m, const CellInfo& cell, std::int64_t embed_dim,
                           std::int64_t hidden_size, std::int64_t num_layers);
// CheckpointError when the checkpoint's vocab (if any) does not have vocab_size tokens.
void check_vocab_size(const Meta& m, std::int64_t vocab_size);
// "an rnn of cell lstm, input 8, hidden 6, 2 layer(s)": what the rnn.* tensors are checked for.
std::string rnn_why(const RecurrentConfig& c, const char* cell);
// v as an int in [1, INT_MAX], else std::invalid_argument naming it.
int as_int(std::int64_t v, const char* name);
void require_ptr(const void* p, const char* name);

}  // namespace rnncore::detail
