// Example: load a sequence classifier trained in Python (e.g. `rnncore train sentiment`) and
// classify texts given as arguments or read line by line from stdin, in C++ alone.
//
//   rnncore_classify CHECKPOINT_DIR [--threads 2] [--ids] [TEXT ...]
//   echo "a gripping , funny film" | rnncore_classify runs/sst/best
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include "rnncore/rnncore.h"
#include "text.h"

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "--help")) {
    std::fprintf(stderr,
                 "usage: rnncore_classify CHECKPOINT_DIR [--threads N] [--ids] [TEXT ...]\n"
                 "  Prints the class probabilities of each TEXT (or of each line of stdin),\n"
                 "  tokenised as rnncore.data.tokenize does (lower-cased words and symbols).\n"
                 "  --ids: the texts are token ids (\"3 17 5\") instead of words.\n");
    return argc < 2 ? 2 : 0;
  }
  const std::string dir = argv[1];
  bool ids_mode = false;
  std::vector<std::string> texts;
  try {
    for (int i = 2; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--ids") {
        ids_mode = true;
      } else if (a == "--threads" && i + 1 < argc) {
        rnncore::set_num_threads(std::stoi(argv[++i]));
      } else {
        texts.push_back(a);
      }
    }
    if (texts.empty())
      for (std::string line; std::getline(std::cin, line);)
        if (line.find_first_not_of(" \t\r") != std::string::npos) texts.push_back(line);

    rnncore::SequenceClassifier clf = rnncore::SequenceClassifier::load(dir);
    const rnncore::Vocabulary& vocab = clf.vocab();
    if (vocab.empty()) ids_mode = true;  // nothing to map words with
    std::vector<std::vector<std::int64_t>> seqs;
    for (const auto& t : texts) {
      if (ids_mode) {
        seqs.push_back(example::parse_ids(t));
      } else {
        seqs.emplace_back();
        for (const auto& tok : example::tokenize(t)) seqs.back().push_back(vocab.id(tok));
      }
      if (seqs.back().empty()) throw std::invalid_argument("no tokens in \"" + t + "\"");
    }
    const auto& labels = clf.info().labels;
    std::printf("# %s: %s %s, pooling %s, %lld classes\n", dir.c_str(),
                clf.config().bidirectional ? "bidirectional" : "unidirectional",
                clf.config().cell.c_str(), clf.config().pooling.c_str(),
                (long long)clf.config().num_classes);
    const auto probs = clf.predict_proba(seqs);  // one batch, one call into the engine
    for (std::size_t i = 0; i < texts.size(); ++i) {
      const auto& p = probs[i];
      const auto best = std::size_t(std::max_element(p.begin(), p.end()) - p.begin());
      const std::string name = best < labels.size() ? labels[best] : std::to_string(best);
      std::printf("%-10s", name.c_str());
      for (float v : p) std::printf(" %.4f", v);
      std::printf("  %s\n", texts[i].c_str());
    }
  } catch (const rnncore::CheckpointError& e) {
    std::fprintf(stderr, "rnncore_classify: cannot use the checkpoint: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rnncore_classify: %s\n", e.what());
    return 1;
  }
  return 0;
}
