// End-to-end speed of the C++ inference API (rnncore/inference.h) on checkpoint-sized models:
// token-by-token generation latency, teacher-forced scoring throughput, and classification.
// The models are random (written to a temporary checkpoint directory first), as only the time
// matters: the work is the same as for trained weights.
//
//   rnncore_bench_inference [--threads 1,2] [--quick] [--reps N]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "rnncore/rnncore.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct Model {
  std::string name, type, cell;
  int V, E, H, L, C;  // C: classes (classifier only)
  bool bidirectional;
};

// A checkpoint with random weights in the layout the Python models save.
void write_checkpoint(const fs::path& dir, const Model& m) {
  fs::create_directories(dir);
  std::mt19937_64 gen(0);
  std::uniform_real_distribution<float> uni(-0.1f, 0.1f);
  std::vector<std::vector<float>> store;
  std::vector<rnncore::TensorView> views;
  auto add = [&](const std::string& name, std::vector<std::int64_t> shape) {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    store.emplace_back(std::size_t(n));
    for (auto& v : store.back()) v = uni(gen);
    views.push_back({name, rnncore::DType::kF32, shape, nullptr});
  };
  add("embedding.weight", {m.V, m.E});
  rnncore::RecurrentConfig rc;
  rc.cell = rnncore::find_cell(m.cell)->id;  // "lstm" or "gru"
  rc.input_size = m.E;
  rc.hidden_size = m.H;
  rc.num_layers = m.L;
  rc.bidirectional = m.bidirectional;
  rnncore::Recurrent<float> shape_only(rc);
  for (const auto& p : shape_only.param_info()) {
    std::vector<std::int64_t> s{std::int64_t(p.rows)};
    if (p.cols) s.push_back(std::int64_t(p.cols));
    add("rnn." + p.name, s);
  }
  const int DH = (m.bidirectional ? 2 : 1) * m.H;
  const std::string head = m.type == "language_model" ? "decoder" : "classifier";
  const int out = m.type == "language_model" ? m.V : m.C;
  add(head + ".weight", {out, DH});
  add(head + ".bias", {out});
  for (std::size_t i = 0; i < views.size(); ++i) views[i].data = store[i].data();  // stable now
  rnncore::save_safetensors((dir / "model.safetensors").string(), views);
  std::ostringstream cfg;
  cfg << "{\"vocab_size\": " << m.V << ", \"embed_dim\": " << m.E << ", \"hidden_size\": " << m.H
      << ", \"num_layers\": " << m.L << ", \"cell\": \"" << m.cell << "\"";
  if (m.type != "language_model")
    cfg << ", \"num_classes\": " << m.C
        << ", \"bidirectional\": " << (m.bidirectional ? "true" : "false")
        << ", \"pooling\": \"last\"";
  cfg << "}";
  std::ofstream(dir / "checkpoint.json")
      << "{\"format\": \"rnncore.checkpoint\", \"version\": 1, \"model_type\": \"" << m.type
      << "\", \"model_config\": " << cfg.str() << ", \"dtype\": \"float32\", \"vocab\": null}";
}

template <typename F>
double median_seconds(F&& run, int reps) {
  run();  // warm-up: workspaces, thread pool
  std::vector<double> ts;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = Clock::now();
    run();
    ts.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  std::sort(ts.begin(), ts.end());
  return ts[ts.size() / 2];
}

void row(int threads, const std::string& model, const std::string& task, double ms, double per_s,
         const char* unit) {
  std::printf("%-3d  %-22s  %-28s  %10.3f  %12.4g %s\n", threads, model.c_str(), task.c_str(), ms,
              per_s, unit);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> threads = {1, 2};
  bool quick = false;
  int reps = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") {
      quick = true;
    } else if (a == "--threads" && i + 1 < argc) {
      threads.clear();
      std::stringstream ss(argv[++i]);
      for (std::string t; std::getline(ss, t, ',');) threads.push_back(std::max(1, std::stoi(t)));
    } else if (a == "--reps" && i + 1 < argc) {
      reps = std::max(1, std::stoi(argv[++i]));
    } else {
      std::printf("usage: rnncore_bench_inference [--threads 1,2] [--quick] [--reps N]\n");
      return a == "-h" || a == "--help" ? 0 : 2;
    }
  }
  if (reps == 0) reps = quick ? 3 : 11;
  // Character LM (the charlm configuration), a PTB-sized word LM, a sentiment classifier.
  std::vector<Model> models = {
      {"char LM lstm 2x512", "language_model", "lstm", 65, 64, 512, 2, 0, false},
      {"word LM lstm 2x650", "language_model", "lstm", 10000, 650, 650, 2, 0, false},
      {"classifier bilstm 256", "sequence_classifier", "lstm", 20000, 100, 256, 1, 2, true},
  };
  if (quick)
    for (auto& m : models) {
      m.V = std::min(m.V, 500);
      m.E = std::min(m.E, 32);
      m.H = std::min(m.H, 32);
    }
  const int gen_tokens = quick ? 20 : 200, T = quick ? 10 : 100, B = quick ? 4 : 64;
  const fs::path tmp =
      fs::temp_directory_path() / ("rnncore_bench_inference_" + std::to_string(getpid()));
  std::printf("rnncore_bench_inference: rnncore %s, gemm %s; median of %d runs\n", RNNCORE_VERSION,
              rnncore::gemm_backend().c_str(), reps);
  std::printf("%-3s  %-22s  %-28s  %10s  %12s\n", "thr", "model", "task", "ms", "rate");
  try {
    for (const auto& m : models) write_checkpoint(tmp / m.name, m);
    for (int n : threads) {
      rnncore::set_num_threads(n);
      for (const auto& m : models) {
        const std::string dir = (tmp / m.name).string();
        std::mt19937_64 gen(1);
        std::uniform_int_distribution<std::int64_t> tok(0, m.V - 1);
        std::vector<std::int64_t> ids(std::size_t(T) * B);
        for (auto& v : ids) v = tok(gen);
        if (m.type == "language_model") {
          auto lm = rnncore::LanguageModel::load(dir);
          rnncore::SampleOptions o;
          o.max_tokens = gen_tokens;
          o.top_k = 40;
          const double s = median_seconds([&] { lm.sample({1, 2, 3}, o); }, reps);
          row(n, m.name, "generate B=1 (per token)", s * 1e3 / gen_tokens, gen_tokens / s, "tok/s");
          std::vector<float> lp(std::size_t(T) * B * m.V);
          const double s2 =
              median_seconds([&] { lm.log_probs(T, B, ids.data(), lp.data()); }, reps);
          row(n, m.name, "score T=" + std::to_string(T) + " B=" + std::to_string(B), s2 * 1e3,
              T * B / s2, "tok/s");
        } else {
          auto clf = rnncore::SequenceClassifier::load(dir);
          std::vector<std::int64_t> lengths(static_cast<std::size_t>(B));
          std::uniform_int_distribution<std::int64_t> len(std::max(1, T / 10), T);
          for (auto& l : lengths) l = len(gen);
          std::vector<float> probs(std::size_t(B) * m.C);
          const double s = median_seconds(
              [&] { clf.predict_proba(T, B, ids.data(), lengths.data(), probs.data()); }, reps);
          row(n, m.name, "classify T<=" + std::to_string(T) + " B=" + std::to_string(B), s * 1e3,
              B / s, "seq/s");
        }
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rnncore_bench_inference: %s\n", e.what());
    fs::remove_all(tmp);
    return 1;
  }
  fs::remove_all(tmp);
  return 0;
}
