// Sentences per second of trained task models in C++: a tagger (SequenceTagger::tag on
// tokenised sentences) and a translator (Seq2Seq::translate on text), at several batch sizes.
// bench/bench_cpp_models.py runs it next to the same models in Python.
//
//   rnncore_bench_models [--tagger DIR --tokens FILE] [--seq2seq DIR --text FILE]
//                        [--batches 1,32] [--reps 3] [--threads N] [--beam K] [--blas LIB]
// FILE: one sentence per line (for --tokens, tokens separated by spaces). Prints one JSON line
// per (model, batch): {"model", "batch", "sentences", "seconds", "sentences_per_s"} (the best of
// the repetitions).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "rnncore/rnncore.h"

namespace {

using Clock = std::chrono::steady_clock;

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(line);
  if (out.empty()) throw std::runtime_error(path + " has no sentences");
  return out;
}

// The best time over `reps` passes of run(begin, end) over every chunk of `batch` items.
double best_seconds(std::size_t n, std::size_t batch, int reps,
                    const std::function<void(std::size_t, std::size_t)>& run) {
  double best = 1e300;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    for (std::size_t i = 0; i < n; i += batch) run(i, std::min(n, i + batch));
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return best;
}

void report(const char* model, std::size_t batch, std::size_t n, double s) {
  std::printf(
      "{\"model\": \"%s\", \"batch\": %zu, \"sentences\": %zu, \"seconds\": %.6f, "
      "\"sentences_per_s\": %.3f}\n",
      model, batch, n, s, double(n) / s);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  std::string tagger_dir, tokens_file, s2s_dir, text_file;
  std::vector<std::size_t> batches = {1, 32};
  int reps = 3;
  long beam = 0;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
        return argv[++i];
      };
      if (a == "--tagger")
        tagger_dir = value();
      else if (a == "--tokens")
        tokens_file = value();
      else if (a == "--seq2seq")
        s2s_dir = value();
      else if (a == "--text")
        text_file = value();
      else if (a == "--reps")
        reps = std::stoi(value());
      else if (a == "--threads")
        rnncore::set_num_threads(std::stoi(value()));
      else if (a == "--beam")
        beam = std::stol(value());
      else if (a == "--blas")
        rnncore::load_blas(value());
      else if (a == "--batches") {
        batches.clear();
        std::stringstream ss(value());
        for (std::string b; std::getline(ss, b, ',');) batches.push_back(std::stoul(b));
      } else {
        throw std::runtime_error("unknown argument " + a);
      }
    }
    if (!tagger_dir.empty()) {
      auto tagger = rnncore::SequenceTagger::load(tagger_dir);
      std::vector<std::vector<std::string>> sentences;
      for (const auto& line : read_lines(tokens_file)) {
        std::stringstream ss(line);
        sentences.emplace_back();
        for (std::string t; ss >> t;) sentences.back().push_back(t);
      }
      tagger.tag({sentences[0]});  // warm-up
      for (std::size_t b : batches)
        report("tagger", b, sentences.size(),
               best_seconds(sentences.size(), b, reps, [&](std::size_t lo, std::size_t hi) {
                 tagger.tag({sentences.begin() + long(lo), sentences.begin() + long(hi)});
               }));
    }
    if (!s2s_dir.empty()) {
      auto model = rnncore::Seq2Seq::load(s2s_dir);
      const auto texts = read_lines(text_file);
      model.translate({texts[0]}, beam);
      for (std::size_t b : batches)
        report("translator", b, texts.size(),
               best_seconds(texts.size(), b, reps, [&](std::size_t lo, std::size_t hi) {
                 model.translate({texts.begin() + long(lo), texts.begin() + long(hi)}, beam);
               }));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rnncore_bench_models: %s\n", e.what());
    return 1;
  }
  return 0;
}
