// rnncore_serve DIR: a model trained in Python answering JSON-lines requests on stdin, one JSON
// line on stdout per request, so that the C++ inference path is usable as a process.
//
// The model kind comes from the checkpoint (DIR is a `rnncore train` output directory or a
// checkpoint directory). Every request is one JSON object on one line; "id" (any JSON value) is
// echoed back; each request carries a batch, run as one ragged batch:
//   tagger      {"tokens": [["John", "lives", "in", "Paris"], ...]}  -> {"tags": [[...], ...]}
//   seq2seq     {"text": ["I am cold.", ...], "beam": 3?, "max_len": 30?}
//                                                                    -> {"translations": [...]}
//               {"ids": [[4, 17, 9], ...], "beam"?, "max_len"?}       -> {"ids": [[...], ...]}
//   classifier  {"text": ["a great film", ...]} or {"ids": [[...]]}  -> {"probs": [[...]],
//                                                                        "labels": [...]}
//   forecaster  {"history": [[...], ...], "covariates": [[[...]]]?}   -> {"forecast": [[...]]}
//   captioner   {"features": [[...], ...], "beam"?, "max_len"?}       -> {"captions": [...],
//                                                                        "ids": [[...]]}
//   language model {"prefix": [ids], "max_tokens": 20?, "temperature": 1?, "top_k": 0?,
//                   "seed": 0?}                                       -> {"ids": [...]}
// A bad request gets {"error": "...", "id": ...} and the server goes on; end of input ends it.
//
// Where the build made them (the pip package does), rnncore_serve_avx2 and rnncore_serve_avx512
// lie beside this program, each linking the engine compiled for that instruction set, as the
// Python module's variants do: the portable program hands itself over (exec) to the widest one
// this CPU runs. RNNCORE_ISA=baseline|avx2|avx512 forces a choice, as for Python.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include <unistd.h>

#include "json.h"
#include "rnncore/rnncore.h"

namespace {

using rnncore::detail::json::Value;

// ---- JSON out
// ------------------------------------------------------------------------------------
std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += char(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += char(c);
    }
  }
  return out + "\"";
}

std::string number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

template <typename T, typename F>
std::string list(const std::vector<T>& items, F&& each) {
  std::string out = "[";
  for (std::size_t i = 0; i < items.size(); ++i) out += (i ? "," : "") + each(items[i]);
  return out + "]";
}

// The request's JSON text of a value, for echoing "id" back.
std::string dump(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kNull:
      return "null";
    case Value::Kind::kBool:
      return v.boolean ? "true" : "false";
    case Value::Kind::kNumber:
      return v.text;
    case Value::Kind::kString:
      return quoted(v.text);
    case Value::Kind::kArray:
      return list(v.array, [](const Value& e) { return dump(e); });
    case Value::Kind::kObject: {
      std::string out = "{";
      for (std::size_t i = 0; i < v.object.size(); ++i)
        out += (i ? "," : "") + quoted(v.object[i].first) + ":" + dump(v.object[i].second);
      return out + "}";
    }
  }
  return "null";
}

// ---- JSON in
// -------------------------------------------------------------------------------------
const Value& field(const Value& req, const char* key) {
  const Value* v = req.find(key);
  if (!v) throw std::invalid_argument(std::string("the request needs \"") + key + "\"");
  return *v;
}

const std::vector<Value>& array_of(const Value& v, const std::string& what) {
  if (!v.is_array()) throw std::invalid_argument(what + " must be a list");
  return v.array;
}

std::int64_t integer(const Value& v, const std::string& what) {
  if (!v.is_integer()) throw std::invalid_argument(what + " must be an integer");
  return v.as_int64();
}

double real(const Value& v, const std::string& what) {
  if (!v.is_number()) throw std::invalid_argument(what + " must be a number");
  return v.number;
}

std::int64_t option_int(const Value& req, const char* key, std::int64_t fallback) {
  const Value* v = req.find(key);
  return v && !v->is_null() ? integer(*v, key) : fallback;
}

// A request's lengths and beam widths are bounded: one request asking for 10^12 tokens or a
// beam of 10^8 would hold the server (which answers in order) for good.
constexpr std::int64_t kMaxServedTokens = 4096, kMaxServedBeam = 64;
std::int64_t bounded_int(const Value& req, const char* key, std::int64_t fallback,
                         std::int64_t most) {
  const std::int64_t v = option_int(req, key, fallback);
  if (v < 0 || v > most)
    throw std::invalid_argument(std::string(key) + " must be in [0, " + std::to_string(most) +
                                "] (the server's limit per request), got " + std::to_string(v));
  return v;
}

std::vector<std::string> strings(const Value& v, const std::string& what) {
  std::vector<std::string> out;
  for (const Value& e : array_of(v, what)) {
    if (!e.is_string()) throw std::invalid_argument(what + " must hold strings");
    out.push_back(e.text);
  }
  return out;
}

std::vector<std::int64_t> ints(const Value& v, const std::string& what) {
  std::vector<std::int64_t> out;
  for (const Value& e : array_of(v, what)) out.push_back(integer(e, what + " entries"));
  return out;
}

std::vector<double> reals(const Value& v, const std::string& what) {
  std::vector<double> out;
  for (const Value& e : array_of(v, what)) out.push_back(real(e, what + " entries"));
  return out;
}

template <typename T, typename F>
std::vector<T> each(const Value& v, const std::string& what, F&& f) {
  std::vector<T> out;
  for (const Value& e : array_of(v, what)) out.push_back(f(e, what + " entries"));
  return out;
}

// ---- the models
// -----------------------------------------------------------------------------------
using Model = std::variant<rnncore::SequenceTagger, rnncore::Seq2Seq, rnncore::SequenceClassifier,
                           rnncore::Forecaster, rnncore::LanguageModel, rnncore::Captioner>;

// DIR: a run directory (its checkpoint/best, else checkpoint/last) or a checkpoint itself.
std::string checkpoint_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  for (const char* sub : {"checkpoint/best", "checkpoint/last", "checkpoint"})
    if (fs::exists(fs::path(dir) / sub / "checkpoint.json")) return (fs::path(dir) / sub).string();
  return dir;
}

Model load(const std::string& dir) {
  const std::string type = rnncore::read_checkpoint_info(dir).model_type;
  std::string key;
  for (char c : type)
    if (c != '_') key += char(std::tolower(static_cast<unsigned char>(c)));
  if (key == "sequencetagger") return rnncore::SequenceTagger::load(dir);
  if (key == "seq2seq") return rnncore::Seq2Seq::load(dir);
  if (key == "sequenceclassifier") return rnncore::SequenceClassifier::load(dir);
  if (key == "forecaster") return rnncore::Forecaster::load(dir);
  if (key == "languagemodel") return rnncore::LanguageModel::load(dir);
  if (key == "captioner") return rnncore::Captioner::load(dir);
  throw rnncore::CheckpointError(dir + ": model type '" + type + "' has no C++ server");
}

std::string answer(rnncore::SequenceTagger& m, const Value& req) {
  const auto sentences = each<std::vector<std::string>>(field(req, "tokens"), "tokens", strings);
  const auto tags = m.tag(sentences);
  return "\"tags\":" + list(tags, [](const auto& s) { return list(s, quoted); });
}

std::string answer(rnncore::Seq2Seq& m, const Value& req) {
  const std::int64_t beam = bounded_int(req, "beam", 0, kMaxServedBeam);
  const std::int64_t max_len = bounded_int(req, "max_len", 0, kMaxServedTokens);
  if (req.find("text")) {
    const auto out = m.translate(strings(field(req, "text"), "text"), beam, max_len);
    return "\"translations\":" + list(out, quoted);
  }
  if (!req.find("ids")) throw std::invalid_argument("the request needs \"text\" or \"ids\"");
  const auto sources = each<std::vector<std::int64_t>>(field(req, "ids"), "ids", ints);
  const auto out = m.translate_ids(sources, beam, max_len);
  return "\"ids\":" + list(out, [](const auto& s) {
           return list(s, [](std::int64_t v) { return std::to_string(v); });
         });
}

std::string answer(rnncore::SequenceClassifier& m, const Value& req) {
  std::vector<std::vector<std::int64_t>> sequences;
  if (req.find("text")) {
    if (m.vocab().empty()) throw std::invalid_argument("the checkpoint has no vocab: send ids");
    for (const auto& text : strings(field(req, "text"), "text")) {
      sequences.emplace_back();
      for (const auto& t : rnncore::translation_tokens(text, true, false))
        sequences.back().push_back(m.vocab().id(t));
      if (sequences.back().empty()) throw std::invalid_argument("a text has no words");
    }
  } else {
    if (!req.find("ids")) throw std::invalid_argument("the request needs \"text\" or \"ids\"");
    sequences = each<std::vector<std::int64_t>>(field(req, "ids"), "ids", ints);
  }
  const auto probs = m.predict_proba(sequences);
  std::string out = "\"probs\":" + list(probs, [](const auto& p) { return list(p, number); });
  if (!m.info().labels.empty()) {
    std::vector<std::string> labels;
    for (const auto& p : probs)
      labels.push_back(
          m.info().labels[std::size_t(std::max_element(p.begin(), p.end()) - p.begin())]);
    out += ",\"labels\":" + list(labels, quoted);
  }
  return out;
}

std::string answer(rnncore::Forecaster& m, const Value& req) {
  const auto histories = each<std::vector<double>>(field(req, "history"), "history", reals);
  std::vector<std::vector<std::vector<double>>> covariates;
  if (const Value* c = req.find("covariates"); c && !c->is_null())
    covariates = each<std::vector<std::vector<double>>>(
        *c, "covariates",
        [](const Value& v, auto w) { return each<std::vector<double>>(v, w, reals); });
  const auto out = m.forecast(histories, covariates);
  return "\"forecast\":" + list(out, [](const auto& f) { return list(f, number); });
}

std::string answer(rnncore::LanguageModel& m, const Value& req) {
  rnncore::SampleOptions o;
  o.max_tokens = bounded_int(req, "max_tokens", 20, kMaxServedTokens);
  o.top_k = option_int(req, "top_k", 0);
  o.seed = std::uint64_t(option_int(req, "seed", 0));
  if (const Value* t = req.find("temperature"); t && !t->is_null())
    o.temperature = real(*t, "temperature");
  const auto ids = m.sample(ints(field(req, "prefix"), "prefix"), o);
  return "\"ids\":" + list(ids, [](std::int64_t v) { return std::to_string(v); });
}

std::string answer(rnncore::Captioner& m, const Value& req) {
  const std::int64_t beam = bounded_int(req, "beam", 0, kMaxServedBeam);
  const std::int64_t max_len = bounded_int(req, "max_len", 0, kMaxServedTokens);
  std::vector<std::vector<float>> features;
  for (const auto& f : each<std::vector<double>>(field(req, "features"), "features", reals))
    features.emplace_back(f.begin(), f.end());
  const auto ids = m.caption_ids(features, beam, max_len);
  std::string out = "\"ids\":" + list(ids, [](const auto& s) {
                      return list(s, [](std::int64_t v) { return std::to_string(v); });
                    });
  if (!m.vocab().empty()) {
    std::vector<std::string> text;
    for (const auto& s : ids) {
      text.emplace_back();
      for (std::int64_t id : s)
        text.back() += (text.back().empty() ? "" : " ") + m.vocab().token(id);
    }
    out += ",\"captions\":" + list(text, quoted);
  }
  return out;
}

}  // namespace

#ifndef RNNCORE_SERVE_ISA
#define RNNCORE_SERVE_ISA "baseline"
#endif

namespace {

// Exec the widest sibling variant this CPU runs (see the top of the file); returns when there is
// none, when this program is a variant itself, or when the exec fails.
void exec_best_variant(char** argv) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(RNNCORE_SERVE_VARIANT)
  const char* forced = std::getenv("RNNCORE_ISA");
  std::string want = forced ? forced : "";
  for (auto& ch : want) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  if (want == "baseline") return;
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                      __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  std::vector<std::string> order;
  if (!want.empty()) {
    if ((want == "avx2" && avx2) || (want == "avx512" && avx512)) {
      order = {want};
    } else {
      std::fprintf(stderr,
                   "rnncore_serve: RNNCORE_ISA=%s is not an engine this CPU runs "
                   "(baseline, avx2 or avx512 with the CPU's support); using the portable one\n",
                   want.c_str());
      return;
    }
  } else if (avx512)
    order = {"avx512", "avx2"};
  else if (avx2)
    order = {"avx2"};
  std::error_code ec;
  const auto dir = std::filesystem::read_symlink("/proc/self/exe", ec).parent_path();
  if (ec) return;
  for (const auto& isa : order) {
    const auto exe = (dir / ("rnncore_serve_" + isa)).string();
    if (::access(exe.c_str(), X_OK) == 0) ::execv(exe.c_str(), argv);
  }
#else
  (void)argv;
#endif
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "--help")) {
    std::fprintf(
        stderr,
        "usage: rnncore_serve DIR [--threads N] [--blas LIBRARY] [--int8]\n"
        "  Answers JSON-lines requests on stdin with the model in DIR (a `rnncore train`\n"
        "  output directory or a checkpoint), one JSON line per request on stdout.\n"
        "  tagger {\"tokens\": [[...]]}; seq2seq {\"text\": [...]} or {\"ids\": [[...]]};\n"
        "  classifier {\"text\": [...]} or {\"ids\": [[...]]}; forecaster {\"history\":\n"
        "  [[...]]}; captioner {\"features\": [[...]]}; language model {\"prefix\":\n"
        "  [...], \"max_tokens\": N}. --blas: a CBLAS (OpenBLAS) for the matrix products\n"
        "  (rnncore serve passes the one Python's rnncore uses). --int8: classifier and\n"
        "  tagger models run their recurrent products in int8 (faster, within the\n"
        "  quantization error).\n");
    return argc < 2 ? 2 : 0;
  }
  exec_best_variant(argv);
  std::optional<Model> model;
  try {
    bool int8 = false;
    for (int i = 2; i < argc; ++i) {
      if (!std::strcmp(argv[i], "--threads") && i + 1 < argc)
        rnncore::set_num_threads(std::stoi(argv[++i]));
      else if (!std::strcmp(argv[i], "--blas") && i + 1 < argc)
        rnncore::load_blas(argv[++i]);
      else if (!std::strcmp(argv[i], "--int8"))
        int8 = true;
      else
        throw std::invalid_argument(std::string("unknown argument ") + argv[i]);
    }
    model.emplace(load(checkpoint_dir(argv[1])));
    if (int8)
      std::visit(
          [](auto& m) {
            using M = std::decay_t<decltype(m)>;
            if constexpr (std::is_same_v<M, rnncore::SequenceClassifier> ||
                          std::is_same_v<M, rnncore::SequenceTagger>)
              m.set_int8_inference(true);
            else
              throw std::invalid_argument("--int8 is for classifier and tagger models");
          },
          *model);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rnncore_serve: %s\n", e.what());
    return 1;
  }
  std::fprintf(stderr, "rnncore_serve: ready (engine built for %s)\n", RNNCORE_SERVE_ISA);
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::string id = "null", body;
    try {
      const Value req = rnncore::detail::json::parse(line, "request");
      if (!req.is_object()) throw std::invalid_argument("a request must be a JSON object");
      if (const Value* v = req.find("id")) id = dump(*v);
      body = std::visit([&](auto& m) { return answer(m, req); }, *model);
      std::printf("{\"id\":%s,%s}\n", id.c_str(), body.c_str());
    } catch (const std::exception& e) {
      std::printf("{\"id\":%s,\"error\":%s}\n", id.c_str(), quoted(e.what()).c_str());
    }
    std::fflush(stdout);
  }
  return 0;
}
