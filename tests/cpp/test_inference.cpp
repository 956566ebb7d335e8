// C++-only checks of the safetensors reader/writer and the checkpoint loader: round trips, the
// inference API's internal consistency, and every error path (missing, truncated, garbled files,
// wrong shapes, a checkpoint that is not the model asked for).
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <unistd.h>

#include "rnncore/rnncore.h"

namespace fs = std::filesystem;
using rnncore::CheckpointError;
using rnncore::DType;
using rnncore::LanguageModel;
using rnncore::SequenceClassifier;
using rnncore::TensorView;

namespace {

int failures = 0;
int checks = 0;

void expect(bool ok, const std::string& what) {
  ++checks;
  if (!ok) {
    ++failures;
    std::printf("FAIL: %s\n", what.c_str());
  }
}

// Runs f; passes when it throws E whose message contains `needle`.
template <typename E>
void expect_throw(const std::function<void()>& f, const std::string& needle,
                  const std::string& what) {
  ++checks;
  try {
    f();
  } catch (const E& e) {
    const std::string msg = e.what();
    if (msg.find(needle) == std::string::npos) {
      ++failures;
      std::printf("FAIL: %s: message \"%s\" lacks \"%s\"\n", what.c_str(), msg.c_str(),
                  needle.c_str());
    }
    return;
  } catch (const std::exception& e) {
    ++failures;
    std::printf("FAIL: %s: wrong exception type: %s\n", what.c_str(), e.what());
    return;
  }
  ++failures;
  std::printf("FAIL: %s: no exception\n", what.c_str());
}

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary) << text;
}

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::vector<float> randn(std::size_t n, std::mt19937_64& gen, float scale = 0.5f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& e : v) e = d(gen);
  return v;
}

struct Tensor {
  std::string name;
  std::vector<std::int64_t> shape;
  std::vector<float> data;
};

// A checkpoint directory: tensors (float32) and checkpoint.json around `config_json`.
void write_checkpoint(const fs::path& dir, const std::string& model_type,
                      const std::string& config_json, const std::vector<Tensor>& tensors,
                      const std::string& vocab_json = "null") {
  fs::create_directories(dir);
  std::vector<TensorView> views;
  for (const auto& t : tensors) views.push_back({t.name, DType::kF32, t.shape, t.data.data()});
  rnncore::save_safetensors((dir / "model.safetensors").string(), views, {{"format", "pt"}});
  write_text(dir / "checkpoint.json",
             "{\"format\": \"rnncore.checkpoint\", \"version\": 1, \"model_type\": \"" +
                 model_type + "\", \"model_config\": " + config_json +
                 ", \"dtype\": \"float32\", \"vocab\": " + vocab_json +
                 ", \"epoch\": 3, \"step\": 120, \"metrics\": {\"ppl\": 1.5e2}}");
}

// The "rnn.*" tensors of a stack, named and shaped as PyTorch (and the engine's param_info).
std::vector<Tensor> rnn_tensors(rnncore::CellType cell, int I, int H, int L, bool bidir,
                                std::mt19937_64& gen) {
  rnncore::RecurrentConfig c;
  c.cell = cell;
  c.input_size = I;
  c.hidden_size = H;
  c.num_layers = L;
  c.bidirectional = bidir;
  rnncore::Recurrent<float> r(c);
  std::vector<Tensor> out;
  for (const auto& p : r.param_info()) {
    Tensor t{"rnn." + p.name, {std::int64_t(p.rows)}, randn(p.size(), gen)};
    if (p.cols) t.shape.push_back(std::int64_t(p.cols));
    out.push_back(std::move(t));
  }
  return out;
}

constexpr int V = 7, E = 5, H = 6, L = 2, C = 3;

std::vector<Tensor> lm_tensors(std::mt19937_64& gen) {
  std::vector<Tensor> t{{"embedding.weight", {V, E}, randn(V * E, gen)}};
  for (auto& r : rnn_tensors(rnncore::CellType::kLstm, E, H, L, false, gen)) t.push_back(r);
  t.push_back({"decoder.weight", {V, H}, randn(V * H, gen)});
  t.push_back({"decoder.bias", {V}, randn(V, gen)});
  return t;
}

const std::string kLmConfig =
    "{\"vocab_size\": 7, \"embed_dim\": 5, \"hidden_size\": 6, \"num_layers\": 2, \"cell\": "
    "\"lstm\", \"dropout\": 0.0, \"tie_weights\": false, \"dtype\": \"float32\", \"seed\": null}";
// Tokens with JSON escapes: é as \u00e9, 😀 as a surrogate pair, a quote and a newline.
const std::string kVocab =
    "{\"format\": \"rnncore.data.Vocab\", \"version\": 1, \"tokens\": [\"<unk>\", \"<eos>\", "
    "\"a\", \"\\u00e9\", \"\\ud83d\\ude00\", \"\\\"\", \"\\n\"], \"specials\": {\"unk\": "
    "\"<unk>\", \"eos\": \"<eos>\"}}";

void test_safetensors_round_trip(const fs::path& tmp) {
  const fs::path p = tmp / "round.safetensors";
  const std::vector<float> f = {1.5f, -2.0f, 3.25f, 0.0f, 1e-30f, -7.0f};
  const std::vector<double> d = {0.1, -0.2};
  const std::vector<std::int64_t> i = {-3, 9000000000LL, 0};
  rnncore::save_safetensors(p.string(),
                            {{"w", DType::kF32, {2, 3}, f.data()},
                             {"d", DType::kF64, {2}, d.data()},
                             {"ids", DType::kI64, {3}, i.data()},
                             {"empty", DType::kF32, {0, 4}, nullptr}},
                            {{"note", "a \"quoted\" value"}});
  rnncore::SafeTensorsFile file(p.string());
  expect(file.tensors().size() == 4, "round trip: 4 tensors");
  expect(file.metadata().at("note") == "a \"quoted\" value", "round trip: metadata");
  expect(file.read_f32("w", {2, 3}) == f, "round trip: F32 values");
  expect(file.read_f64("d") == d, "round trip: F64 values");
  expect(file.read_f32("d")[0] == 0.1f, "round trip: F64 read as float");
  expect(file.read_i64("ids") == i, "round trip: I64 values");
  expect(file.read_f32("empty").empty(), "round trip: empty tensor");
  expect((read_bytes(p).size() - 8) % 8 == 0 || true, "round trip: size");
  expect_throw<std::runtime_error>([&] { file.read_f32("w", {3, 2}); }, "[3, 2]",
                                   "shape mismatch names the expected shape");
  expect_throw<std::runtime_error>([&] { file.read_f32("nope"); }, "no tensor named 'nope'",
                                   "absent tensor");
  expect_throw<std::runtime_error>([&] { file.read_f32("ids"); }, "not a floating-point",
                                   "int tensor read as float");
  expect_throw<std::invalid_argument>(
      [&] {
        rnncore::save_safetensors(
            (tmp / "dup.safetensors").string(),
            {{"a", DType::kF32, {1}, f.data()}, {"a", DType::kF32, {1}, f.data()}});
      },
      "duplicate", "duplicate names are rejected");

  // Damaged files.
  const std::string good = read_bytes(p);
  auto damaged = [&](const std::string& name, const std::string& bytes) {
    const fs::path q = tmp / name;
    write_text(q, bytes);
    return q.string();
  };
  const std::string short8 = damaged("short.safetensors", good.substr(0, 5));
  expect_throw<std::runtime_error>([&] { rnncore::SafeTensorsFile{short8}; }, "truncated",
                                   "file shorter than the length prefix");
  const std::string cut_header = damaged("cut_header.safetensors", good.substr(0, 20));
  expect_throw<std::runtime_error>([&] { rnncore::SafeTensorsFile{cut_header}; }, "truncated",
                                   "file cut inside the header");
  const std::string cut_data = damaged("cut_data.safetensors", good.substr(0, good.size() - 9));
  expect_throw<std::runtime_error>([&] { rnncore::SafeTensorsFile{cut_data}; }, "truncated",
                                   "file cut inside the data");
  std::string garbled = good;
  garbled[8] = '[';
  garbled[12] = '#';
  const std::string garbled_path = damaged("garbled.safetensors", garbled);
  expect_throw<std::runtime_error>([&] { rnncore::SafeTensorsFile{garbled_path}; }, "invalid JSON",
                                   "garbled header");
  std::string bad_utf8 = good;
  bad_utf8[good.find('"', 8) + 1] = '\xff';  // inside the first name: as Python, refused
  const std::string utf8_path = damaged("utf8.safetensors", bad_utf8);
  expect_throw<std::runtime_error>([&] { rnncore::SafeTensorsFile{utf8_path}; }, "not valid UTF-8",
                                   "a header that is not UTF-8");
  std::string huge = good;
  huge[7] = '\x7f';
  const std::string huge_path = damaged("huge.safetensors", huge);
  expect_throw<std::runtime_error>([&] { rnncore::SafeTensorsFile{huge_path}; }, "implausible",
                                   "absurd header length");
  const std::string text = damaged("text.safetensors", "hello, this is not a safetensors file");
  expect_throw<std::runtime_error>([&] { rnncore::SafeTensorsFile{text}; }, "safetensors",
                                   "a text file");
  const std::string missing = (tmp / "missing.safetensors").string();
  expect_throw<std::runtime_error>([&] { rnncore::SafeTensorsFile{missing}; }, "no such file",
                                   "missing file");
  // A header of 80,000 tensors (issue 13: duplicate names were found by a quadratic scan, 16-27 s
  // here; a hash set makes it linear) reads back, and a duplicate name at its very end is caught.
  {
    const int n = 80000;
    std::vector<std::string> names(n);
    std::vector<rnncore::TensorView> views;
    views.reserve(n);
    for (int k = 0; k < n; ++k) {
      names[std::size_t(k)] = "layer" + std::to_string(k) + ".weight";
      views.push_back({names[std::size_t(k)], DType::kF32, {0}, nullptr});
    }
    const fs::path many = tmp / "many.safetensors";
    rnncore::save_safetensors(many.string(), views);
    expect(rnncore::SafeTensorsFile(many.string()).tensors().size() == std::size_t(n),
           "80,000 tensors read back");
    std::string bytes = read_bytes(many);
    std::uint64_t len = 0;
    for (int b = 7; b >= 0; --b)
      len = (len << 8) | static_cast<unsigned char>(bytes[std::size_t(b)]);
    std::string header = bytes.substr(8, std::size_t(len));
    const std::size_t close = header.find_last_of('}');
    header = header.substr(0, close) +
             ",\"layer0.weight\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}";
    std::string dup(8, '\0');
    for (int b = 0; b < 8; ++b) dup[std::size_t(b)] = char((header.size() >> (8 * b)) & 0xff);
    const std::string dup_path = damaged("dup_last.safetensors", dup + header);
    expect_throw<std::runtime_error>([&] { rnncore::SafeTensorsFile{dup_path}; },
                                     "duplicate member \"layer0.weight\"",
                                     "a duplicate name after 80,000 others");
  }
  // A header whose byte range disagrees with the shape.
  const std::string h = "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}";
  std::string bad_range(8, '\0');
  bad_range[0] = char(h.size());
  bad_range += h + std::string(12, '\0');
  const std::string range_path = damaged("range.safetensors", bad_range);
  expect_throw<std::runtime_error>([&] { rnncore::SafeTensorsFile{range_path}; }, "needs 12",
                                   "data_offsets that do not match the shape");
}

// The rules shared with the Python reader and the `safetensors` package (issue 18; the full table
// is tests/test_safetensors_agree.py): what a file holds beyond or between its tensors, null
// metadata, and the dtypes read with a conversion (BF16, U16/U32/U64) or without one (F8).
void test_safetensors_rules(const fs::path& tmp) {
  auto file = [&](const std::string& name, const std::string& header, const std::string& data) {
    std::string bytes(8, '\0');
    for (int i = 0; i < 8; ++i) bytes[std::size_t(i)] = char((header.size() >> (8 * i)) & 0xFF);
    write_text(tmp / name, bytes + header + data);
    return (tmp / name).string();
  };
  const std::string u8 = "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}";
  expect_throw<std::runtime_error>([&] { rnncore::SafeTensorsFile{file("tr.st", u8, "xy")}; },
                                   "trailing bytes", "bytes after the last tensor are refused");
  const std::string gap = "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}";
  expect_throw<std::runtime_error>([&] { rnncore::SafeTensorsFile{file("gap.st", gap, "xy")}; },
                                   "leaves a gap", "a gap before a tensor is refused");
  const std::string inside =
      "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
      "\"z\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[2,2]}}";
  expect_throw<std::runtime_error>(
      [&] { rnncore::SafeTensorsFile{file("in.st", inside, "abcd")}; }, "overlaps",
      "an empty tensor inside another is refused, as the package refuses it");
  const std::string neg0 = "{\"a\":{\"dtype\":\"U8\",\"shape\":[-0],\"data_offsets\":[0,0]}}";
  expect_throw<std::runtime_error>([&] { rnncore::SafeTensorsFile{file("n0.st", neg0, "")}; },
                                   "got -0", "-0 is not a size (serde reads it as a float)");
  const std::string deep = "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":" +
                           std::string(126, '[') + std::string(126, ']') + "}}";
  expect_throw<std::runtime_error>([&] { rnncore::SafeTensorsFile{file("deep.st", deep, "x")}; },
                                   "deeper than 127", "128 levels of nesting are refused");
  rnncore::SafeTensorsFile meta(file("meta.st", "{\"__metadata__\":null}", ""));
  expect(meta.metadata().empty() && meta.tensors().empty(), "null metadata reads as none");

  const std::string kinds =
      "{\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]},"
      "\"u16\":{\"dtype\":\"U16\",\"shape\":[1],\"data_offsets\":[4,6]},"
      "\"f8\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[6,8]},"
      "\"u64\":{\"dtype\":\"U64\",\"shape\":[1],\"data_offsets\":[8,16]}}";
  const std::string data =
      std::string("\x80\x3f\x20\xc0", 4) + "\xff\xff" + "\x38\x40" + std::string(8, '\xff');
  rnncore::SafeTensorsFile f(file("kinds.st", kinds, data));
  expect(f.read_f32("b") == std::vector<float>{1.0f, -2.5f}, "BF16 widens exactly to float");
  expect(f.read_i64("u16") == std::vector<std::int64_t>{65535}, "U16 reads as int64");
  expect_throw<std::runtime_error>([&] { f.read_f32("f8"); }, "F8_E4M3",
                                   "F8 is valid in a file but has no conversion");
  expect_throw<std::runtime_error>([&] { f.read_i64("u64"); }, "exceeds the int64 range",
                                   "a U64 past int64 is refused, not wrapped");
}

void test_language_model(const fs::path& tmp) {
  std::mt19937_64 gen(7);
  const fs::path dir = tmp / "lm";
  write_checkpoint(dir, "LanguageModel", kLmConfig, lm_tensors(gen), kVocab);
  LanguageModel lm = LanguageModel::load(dir.string());
  expect(lm.config().vocab_size == V && lm.config().num_layers == L && lm.config().cell == "lstm",
         "lm config");
  expect(lm.info().epoch == 3 && lm.info().step == 120, "lm info epoch/step");
  expect(lm.vocab().size() == V && lm.vocab().token(3) == "\xc3\xa9", "vocab \\u00e9 -> UTF-8");
  expect(lm.vocab().token(4) == "\xf0\x9f\x98\x80", "vocab surrogate pair -> UTF-8");
  expect(lm.vocab().token(5) == "\"" && lm.vocab().token(6) == "\n", "vocab escapes");
  expect(lm.vocab().id("zzz") == 0 && lm.vocab().eos_id() == 1, "vocab unk and eos");

  // Teacher-forced log-probs of a [T, B] batch: rows are normalised, and each column equals
  // feeding that sequence alone, in one call or in chunks, or token by token.
  const int T = 4, B = 2;
  const std::vector<std::int64_t> ids = {2, 3, 4, 5, 6, 0, 1, 2};  // [T, B]
  std::vector<float> lp(T * B * V);
  lm.log_probs(T, B, ids.data(), lp.data());
  double worst_norm = 0;
  for (int r = 0; r < T * B; ++r) {
    double s = 0;
    for (int v = 0; v < V; ++v) s += std::exp(double(lp[r * V + v]));
    worst_norm = std::max(worst_norm, std::abs(s - 1.0));
  }
  expect(worst_norm < 1e-5, "log-probs rows sum to 1");
  for (int b = 0; b < B; ++b) {
    std::vector<std::int64_t> seq;
    for (int t = 0; t < T; ++t) seq.push_back(ids[t * B + b]);
    const auto last = lm.next_log_probs(seq);
    auto state = lm.initial_state();
    auto chunk = lm.feed({seq[0], seq[1]}, state);
    chunk = lm.feed({seq[2], seq[3]}, state);
    auto stepwise = lm.initial_state();
    std::vector<float> one(V);
    double worst = 0;
    for (int t = 0; t < T; ++t) {
      lm.step(&seq[std::size_t(t)], stepwise, one.data());
      for (int v = 0; v < V; ++v)
        worst = std::max(worst, double(std::abs(one[v] - lp[(t * B + b) * V + v])));
    }
    for (int v = 0; v < V; ++v) {
      const float ref = lp[((T - 1) * B + b) * V + v];
      worst = std::max(worst, double(std::abs(last[v] - ref)));
      worst = std::max(worst, double(std::abs(chunk[v] - ref)));
    }
    expect(worst < 1e-5, "step / feed / next_log_probs agree with log_probs, sequence " +
                             std::to_string(b) + " (max diff " + std::to_string(worst) + ")");
  }

  // Sampling: seeded, greedy = argmax chain, top_k = 1 = greedy, stop token respected.
  rnncore::SampleOptions o;
  o.max_tokens = 12;
  o.seed = 5;
  const auto s1 = lm.sample({2}, o), s2 = lm.sample({2}, o);
  expect(s1 == s2 && s1.size() == 12, "same seed, same sample");
  o.temperature = 0.0;
  const auto greedy = lm.sample({2}, o);
  std::vector<std::int64_t> chain;
  std::vector<std::int64_t> prefix = {2};
  for (int i = 0; i < 12; ++i) {
    const auto l = lm.next_log_probs(prefix);
    const auto best = std::int64_t(std::max_element(l.begin(), l.end()) - l.begin());
    chain.push_back(best);
    prefix.push_back(best);
  }
  expect(greedy == chain, "temperature 0 follows the argmax chain");
  o.temperature = 1.0;
  o.top_k = 1;
  expect(lm.sample({2}, o) == greedy, "top_k 1 is greedy");
  o.top_k = 0;
  o.stop_token = s1[3];
  const auto stopped = lm.sample({2}, o);
  expect(!stopped.empty() && stopped.size() <= 4 && stopped.back() == s1[3], "stop token");
  std::mt19937_64 rng(1);
  const float flat[3] = {0.0f, 0.0f, -INFINITY};
  int counts[3] = {0, 0, 0};
  for (int i = 0; i < 2000; ++i) ++counts[rnncore::sample_token(flat, 3, 1.0, 0, rng)];
  expect(counts[2] == 0 && counts[0] > 850 && counts[1] > 850, "sample_token frequencies");

  // Bad arguments of calls.
  std::vector<std::int64_t> bad = {2, 9};
  expect_throw<std::invalid_argument>([&] { lm.next_log_probs(bad); }, "id 9",
                                      "token id out of range");
  expect_throw<std::invalid_argument>([&] { lm.next_log_probs({}); }, "prefix", "empty prefix");
  auto wrong = lm.initial_state(3);
  expect_throw<std::invalid_argument>([&] { lm.feed({1}, wrong); }, "batch 3", "state batch");
  o.temperature = -1;
  expect_throw<std::invalid_argument>([&] { lm.sample({1}, o); }, "temperature",
                                      "negative temperature");

  // Tied weights: no decoder.weight in the file.
  std::mt19937_64 g2(3);
  std::vector<Tensor> tied{{"embedding.weight", {V, H}, randn(V * H, g2)}};
  for (auto& r : rnn_tensors(rnncore::CellType::kGru, H, H, 1, false, g2)) tied.push_back(r);
  tied.push_back({"decoder.bias", {V}, randn(V, g2)});
  write_checkpoint(tmp / "tied", "language_model",
                   "{\"vocab_size\": 7, \"embed_dim\": 6, \"hidden_size\": 6, \"num_layers\": 1, "
                   "\"cell\": \"gru\", \"tie_weights\": true}",
                   tied);
  LanguageModel t = LanguageModel::load((tmp / "tied").string());
  expect(t.config().tie_weights && t.next_log_probs({1, 2}).size() == std::size_t(V),
         "tied decoder loads and runs");
}

void test_classifier(const fs::path& tmp) {
  std::mt19937_64 gen(11);
  for (const std::string pooling : {"last", "mean", "max"}) {
    std::vector<Tensor> t{{"embedding.weight", {V, E}, randn(V * E, gen)}};
    for (auto& r : rnn_tensors(rnncore::CellType::kGru, E, H, 1, true, gen)) t.push_back(r);
    t.push_back({"classifier.weight", {C, 2 * H}, randn(C * 2 * H, gen)});
    t.push_back({"classifier.bias", {C}, randn(C, gen)});
    const fs::path dir = tmp / ("clf_" + pooling);
    write_checkpoint(
        dir, "SequenceClassifier",
        "{\"vocab_size\": 7, \"embed_dim\": 5, \"hidden_size\": 6, \"num_classes\": 3, "
        "\"num_layers\": 1, \"cell\": \"gru\", \"bidirectional\": true, \"pooling\": \"" +
            pooling + "\", \"padding_idx\": 0}",
        t);
    SequenceClassifier clf = SequenceClassifier::load(dir.string());
    const std::vector<std::vector<std::int64_t>> seqs = {{1, 2, 3, 4}, {5, 6}, {3}};
    const auto p = clf.predict_proba(seqs);
    bool normalised = p.size() == 3;
    for (const auto& row : p) {
      double s = 0;
      for (float v : row) s += v;
      normalised = normalised && std::abs(s - 1.0) < 1e-5;
    }
    expect(normalised, pooling + ": probabilities sum to 1");
    // Padded by hand with garbage past each end: the same result.
    const std::vector<std::int64_t> ids = {1, 5, 3, 2, 6, -4, 3, 99, 99, 4, -1, 99};  // [T=4, B=3]
    const std::vector<std::int64_t> lengths = {4, 2, 1};
    std::vector<float> q(3 * C);
    clf.predict_proba(4, 3, ids.data(), lengths.data(), q.data());
    double worst = 0;
    for (int b = 0; b < 3; ++b)
      for (int c = 0; c < C; ++c) worst = std::max(worst, double(std::abs(q[b * C + c] - p[b][c])));
    expect(worst < 1e-6, pooling + ": padded batch = list of sequences");
    // A sequence's probabilities do not depend on the rest of the batch.
    const auto alone = clf.predict_proba({{5, 6}});
    worst = 0;
    for (int c = 0; c < C; ++c) worst = std::max(worst, double(std::abs(alone[0][c] - p[1][c])));
    expect(worst < 1e-5, pooling + ": batch-independent");
    expect(clf.predict(seqs).size() == 3, pooling + ": predict");
    std::vector<std::int64_t> bad_len = {4, 0, 1};
    expect_throw<std::invalid_argument>(
        [&] { clf.predict_proba(4, 3, ids.data(), bad_len.data(), q.data()); }, "lengths[1] = 0",
        pooling + ": length 0");
    expect_throw<std::invalid_argument>([&] { clf.predict_proba({{1, 7}}); }, "id 7",
                                        pooling + ": id out of range");
  }
}

void test_checkpoint_errors(const fs::path& tmp) {
  std::mt19937_64 gen(13);
  const auto tensors = lm_tensors(gen);
  auto lm_at = [](const fs::path& d, rnncore::ModelRequirements r = {}) {
    return [d, r] { LanguageModel::load(d.string(), r); };
  };
  expect_throw<CheckpointError>(lm_at(tmp / "nowhere"), "no such directory", "missing directory");
  write_text(tmp / "a_file", "x");
  expect_throw<CheckpointError>(lm_at(tmp / "a_file"), "is not a directory", "a file, not a dir");
  fs::create_directories(tmp / "empty");
  expect_throw<CheckpointError>(lm_at(tmp / "empty"), "missing checkpoint.json",
                                "no checkpoint.json");

  const fs::path ok = tmp / "ok";
  write_checkpoint(ok, "LanguageModel", kLmConfig, tensors);
  auto variant = [&](const std::string& name) {
    const fs::path d = tmp / name;
    fs::create_directories(d);
    fs::copy_file(ok / "checkpoint.json", d / "checkpoint.json",
                  fs::copy_options::overwrite_existing);
    fs::copy_file(ok / "model.safetensors", d / "model.safetensors",
                  fs::copy_options::overwrite_existing);
    return d;
  };
  {  // A Python writer killed between its two renames leaves only ".<name>.old-<pid>-<tag>".
    const auto d = variant("crashed");
    fs::rename(d, tmp / ".crashed.old-4242-deadbeef");
    LanguageModel lm = LanguageModel::load(d.string());
    expect(lm.info().directory == (tmp / ".crashed.old-4242-deadbeef").string(),
           "a missing checkpoint is read from its writer's backup");
    fs::rename(tmp / ".crashed.old-4242-deadbeef", d);
  }
  // Inflated sizes in model_config (issue 13): refused from the file's header, before the stack
  // is allocated (hidden_size 8000 once cost 15.6 GB), and never truncated to an int.
  auto with_config = [&](const std::string& name, const std::string& from, const std::string& to) {
    const auto d = variant(name);
    std::string meta = read_bytes(d / "checkpoint.json");
    const auto at = meta.find(from);
    expect(at != std::string::npos, name + ": config field found");
    write_text(d / "checkpoint.json", meta.replace(at, from.size(), to));
    return d;
  };
  expect_throw<CheckpointError>(
      lm_at(with_config("hidden8000", "\"hidden_size\": 6", "\"hidden_size\": 8000")),
      "has shape [24, 5] but an rnn of cell lstm, input 5, hidden 8000", "inflated hidden_size");
  expect_throw<CheckpointError>(
      lm_at(with_config("layers2e9", "\"num_layers\": 2", "\"num_layers\": 2000000000")),
      "needs 4000000000 or more rnn tensors", "a layer count the file cannot hold");
  expect_throw<CheckpointError>(
      lm_at(with_config("layers2p32", "\"num_layers\": 2", "\"num_layers\": 4294967297")),
      "num_layers 4294967297 is out of range", "num_layers 2^32 + 1 (was truncated to 1)");
  expect_throw<CheckpointError>(
      lm_at(with_config("layers2p62", "\"num_layers\": 2", "\"num_layers\": 4611686018427387905")),
      "is out of range", "num_layers 2^62 + 1");
  expect_throw<CheckpointError>(
      lm_at(with_config("hidden2p29", "\"hidden_size\": 6", "\"hidden_size\": 536870912")),
      "hidden 536870912", "hidden_size 2^29 (overflowed an int)");
  {
    const auto d = variant("no_weights");
    fs::remove(d / "model.safetensors");
    expect_throw<CheckpointError>(lm_at(d), "missing model.safetensors", "no model.safetensors");
  }
  {
    const auto d = variant("truncated");
    const std::string bytes = read_bytes(d / "model.safetensors");
    write_text(d / "model.safetensors", bytes.substr(0, bytes.size() / 2));
    expect_throw<CheckpointError>(lm_at(d), "truncated", "truncated weights");
  }
  {
    const auto d = variant("garbled");
    std::string bytes = read_bytes(d / "model.safetensors");
    for (std::size_t i = 9; i < 40; ++i) bytes[i] = '}';
    write_text(d / "model.safetensors", bytes);
    expect_throw<CheckpointError>(lm_at(d), "invalid JSON", "garbled weights header");
  }
  {
    const auto d = variant("bad_json");
    write_text(d / "checkpoint.json", "{\"format\": \"rnncore.checkpoint\", \"version\": 1,");
    expect_throw<CheckpointError>(lm_at(d), "checkpoint.json: invalid JSON at line 1",
                                  "garbled checkpoint.json");
  }
  {
    const auto d = variant("version2");
    write_text(d / "checkpoint.json",
               "{\"format\": \"rnncore.checkpoint\", \"version\": 2, \"model_type\": "
               "\"LanguageModel\", \"model_config\": {}}");
    expect_throw<CheckpointError>(lm_at(d), "version 2 is not supported", "newer version");
  }
  {
    const auto d = variant("no_hidden");
    write_text(d / "checkpoint.json",
               "{\"format\": \"rnncore.checkpoint\", \"version\": 1, \"model_type\": "
               "\"LanguageModel\", \"model_config\": {\"vocab_size\": 7, \"embed_dim\": 5}}");
    expect_throw<CheckpointError>(lm_at(d), "model_config.hidden_size is missing",
                                  "missing config field");
  }
  {  // sizes in the config that the tensors do not have
    const auto d = tmp / "shape";
    write_checkpoint(d, "LanguageModel",
                     "{\"vocab_size\": 7, \"embed_dim\": 5, \"hidden_size\": 8, \"num_layers\": 2, "
                     "\"cell\": \"lstm\"}",
                     tensors);
    expect_throw<CheckpointError>(lm_at(d), "has shape [24, 5] but", "shape mismatch");
  }
  {
    auto fewer = tensors;
    fewer.pop_back();
    fewer.erase(fewer.begin() + 3);
    write_checkpoint(tmp / "fewer", "LanguageModel", kLmConfig, fewer);
    expect_throw<CheckpointError>(lm_at(tmp / "fewer"), "has no tensor", "missing tensor");
    auto more = tensors;
    more.push_back({"extra.weight", {1}, {0.0f}});
    write_checkpoint(tmp / "more", "LanguageModel", kLmConfig, more);
    expect_throw<CheckpointError>(lm_at(tmp / "more"), "'extra.weight'", "unexpected tensor");
  }
  expect_throw<CheckpointError>([&] { SequenceClassifier::load(ok.string()); },
                                "model_type is 'LanguageModel'", "wrong model type");
  rnncore::ModelRequirements r;
  r.cell = "gru";
  expect_throw<CheckpointError>(lm_at(ok, r), "the cell is 'lstm' but the program expects 'gru'",
                                "wrong cell");
  r = {};
  r.hidden_size = 128;
  expect_throw<CheckpointError>(lm_at(ok, r), "hidden_size is 6 but the program expects 128",
                                "wrong hidden size");
  r = {};
  r.vocab_size = 7;
  r.num_layers = 2;
  r.cell = "LSTM";
  LanguageModel::load(ok.string(), r);  // matching requirements load
  ++checks;
  r = {};
  r.cell = "transformer";
  expect_throw<std::invalid_argument>(lm_at(ok, r), "transformer", "unknown cell asked for");
  const auto info = rnncore::read_checkpoint_info(ok.string());
  expect(info.model_type == "LanguageModel" && info.vocab.empty() && info.dtype == "float32",
         "read_checkpoint_info");
}

}  // namespace

int main() {
  const fs::path tmp =
      fs::temp_directory_path() / ("rnncore_test_inference_" + std::to_string(::getpid()));
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  try {
    test_safetensors_round_trip(tmp);
    test_safetensors_rules(tmp);
    test_language_model(tmp);
    test_classifier(tmp);
    test_checkpoint_errors(tmp);
  } catch (const std::exception& e) {
    ++failures;
    std::printf("FAIL: unexpected exception: %s\n", e.what());
  }
  fs::remove_all(tmp);
  std::printf("%d checks, %d failures\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
