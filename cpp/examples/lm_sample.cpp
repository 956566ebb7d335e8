// Example: load a language model trained in Python and continue a prompt (next-token
// probabilities, then sampling with temperature and top-k), in C++ alone.
//
//   rnncore_lm_sample CHECKPOINT_DIR [--prompt TEXT | --ids 3,17,5] [--tokens 200]
//                     [--temperature 0.8] [--top-k 20] [--seed 1] [--top 5] [--threads 2]
//                     [--cell lstm]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <numeric>
#include <string>
#include <vector>

#include "rnncore/rnncore.h"
#include "text.h"

namespace {

void usage() {
  std::fprintf(stderr,
               "usage: rnncore_lm_sample CHECKPOINT_DIR [options]\n"
               "  --prompt TEXT       text to continue (tokenised with the checkpoint's vocab)\n"
               "  --ids 1,2,3         token ids to continue instead of a text\n"
               "  --tokens N          tokens to generate (default 100)\n"
               "  --temperature T     > 0 scales the logits; 0 = greedy (default 1.0)\n"
               "  --top-k K           draw among the K most likely tokens; 0 = all (default 0)\n"
               "  --seed S            seed of the draws (default 0)\n"
               "  --top N             print the N most likely next tokens (default 5)\n"
               "  --threads N         engine threads (default: all)\n"
               "  --cell NAME         refuse a checkpoint of another cell (rnn, lstm, gru, ...)\n"
               "Without --prompt or --ids, starts from the vocabulary's bos (or eos) token.\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "--help")) {
    usage();
    return argc < 2 ? 2 : 0;
  }
  const std::string dir = argv[1];
  std::string prompt, ids_arg;
  rnncore::SampleOptions opt;
  rnncore::ModelRequirements req;
  int top = 5;
  try {
    for (int i = 2; i < argc; ++i) {
      const std::string a = argv[i];
      if (i + 1 >= argc) throw std::invalid_argument("option " + a + " needs a value");
      const std::string v = argv[++i];
      if (a == "--prompt")
        prompt = v;
      else if (a == "--ids")
        ids_arg = v;
      else if (a == "--tokens")
        opt.max_tokens = std::stoll(v);
      else if (a == "--temperature")
        opt.temperature = std::stod(v);
      else if (a == "--top-k")
        opt.top_k = std::stoll(v);
      else if (a == "--seed")
        opt.seed = std::stoull(v);
      else if (a == "--top")
        top = std::stoi(v);
      else if (a == "--threads")
        rnncore::set_num_threads(std::stoi(v));
      else if (a == "--cell")
        req.cell = v;
      else
        throw std::invalid_argument("unknown option " + a);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rnncore_lm_sample: %s\n", e.what());
    usage();
    return 2;
  }

  try {
    rnncore::LanguageModel lm = rnncore::LanguageModel::load(dir, req);
    const auto& cfg = lm.config();
    const rnncore::Vocabulary& vocab = lm.vocab();
    std::printf(
        "# %s: %s, %lld layer(s), hidden %lld, vocab %lld, %s vocabulary; %d thread(s), "
        "gemm %s\n",
        dir.c_str(), cfg.cell.c_str(), (long long)cfg.num_layers, (long long)cfg.hidden_size,
        (long long)cfg.vocab_size,
        vocab.empty() ? "no" : (example::char_level(vocab) ? "character" : "word"),
        rnncore::get_num_threads(), rnncore::gemm_backend().c_str());

    std::vector<std::int64_t> prefix;
    if (!ids_arg.empty()) {
      prefix = example::parse_ids(ids_arg);
    } else if (!prompt.empty()) {
      if (vocab.empty()) throw std::invalid_argument("the checkpoint has no vocab: use --ids");
      prefix = example::encode(vocab, prompt);
    } else if (vocab.bos_id() >= 0 || vocab.eos_id() >= 0) {
      prefix = {vocab.bos_id() >= 0 ? vocab.bos_id() : vocab.eos_id()};
    } else {
      prefix = {0};
    }
    if (prefix.empty()) throw std::invalid_argument("the prompt has no tokens");
    auto name = [&](std::int64_t id) {  // control characters escaped for the listing
      if (vocab.empty()) return std::to_string(id);
      std::string out;
      for (char c : vocab.token(id))
        out += c == '\n' ? "\\n" : c == '\t' ? "\\t" : std::string(1, c);
      return out;
    };

    // The most likely next tokens after the prompt.
    const std::vector<float> lp = lm.next_log_probs(prefix);
    std::vector<std::int64_t> order(lp.size());
    std::iota(order.begin(), order.end(), 0);
    const auto k = std::min<std::size_t>(std::size_t(std::max(top, 0)), order.size());
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](std::int64_t a, std::int64_t b) { return lp[a] > lp[b]; });
    for (std::size_t i = 0; i < k; ++i)
      std::printf("# next %zu: p=%.4f  id %lld  '%s'\n", i + 1, std::exp(double(lp[order[i]])),
                  (long long)order[i], name(order[i]).c_str());

    const std::vector<std::int64_t> drawn = lm.sample(prefix, opt);
    if (vocab.empty()) {
      for (auto id : prefix) std::printf("%lld ", (long long)id);
      std::printf("|");
      for (auto id : drawn) std::printf(" %lld", (long long)id);
      std::printf("\n");
    } else {
      std::printf("%s", example::decode(vocab, prefix).c_str());
      std::printf("%s%s\n", example::char_level(vocab) ? "" : " ",
                  example::decode(vocab, drawn).c_str());
    }
  } catch (const rnncore::CheckpointError& e) {
    std::fprintf(stderr, "rnncore_lm_sample: cannot use the checkpoint: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rnncore_lm_sample: %s\n", e.what());
    return 1;
  }
  return 0;
}
