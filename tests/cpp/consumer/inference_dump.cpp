// Prints the outputs of a checkpoint's model, one named row of numbers per line, for
// tests/test_cpp_package.py to compare with the same model run in Python.
//
//   inference_dump lm  DIR T B ids[T*B]                  (ids time-major)
//   inference_dump clf DIR T B ids[T*B] lengths[B]
//   inference_dump tag DIR T B ids[T*B] lengths[B] [Lc chars[Lc*N] char_lengths[N]]
//   inference_dump tagtext DIR 0 0 TOKEN... ("|" between sentences; prints one "tags" row each)
//   inference_dump s2s DIR BEAM MAXLEN ids... ("|" between sources; one "ids" row each, then with
//                  BEAM > 1 one "score" row each; BEAM 0: the run's setting)
//   inference_dump s2stext DIR BEAM MAXLEN SENTENCE... (one translation per line)
//   inference_dump tokens LOWER STRIP TEXT...            (normalised tokens of each TEXT, a line
//                  each, tokens joined by U+0001)
//   inference_dump cap DIR BEAM MAXLEN features[B*F]      (one "ids" row per feature vector)
//   inference_dump fc DIR L B x[L*B*I]                  (transformed windows, time-major)
//   inference_dump fcast DIR N B history[B*N] [covariates[B*(I-1)*N]]   (original scale)
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "rnncore/rnncore.h"

namespace {

void row(const char* name, const std::vector<float>& v) {
  std::printf("%s", name);
  for (float x : v) std::printf(" %.9g", x);
  std::printf("\n");
}

void row(const char* name, const std::vector<std::int64_t>& v) {
  std::printf("%s", name);
  for (auto x : v) std::printf(" %lld", (long long)x);
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: inference_dump lm|clf DIR T B ids... [lengths...]\n");
    return 2;
  }
  static_assert(RNNCORE_VERSION_MAJOR >= 0, "version.h is installed");
  const std::string kind = argv[1], dir = argv[2];
  if (kind == "tokens") {  // the translator's text pipeline alone: LOWER STRIP TEXT...
    for (int i = 4; i < argc; ++i) {
      const auto tokens =
          rnncore::translation_tokens(argv[i], std::atoi(argv[2]) != 0, std::atoi(argv[3]) != 0);
      for (std::size_t k = 0; k < tokens.size(); ++k)
        std::printf("%s%s", k ? "\x01" : "", tokens[k].c_str());
      std::printf("\n");
    }
    return 0;
  }
  const long T = std::atol(argv[3]), B = std::atol(argv[4]);
  std::vector<std::int64_t> args;
  if (kind != "tagtext" && kind != "s2s" && kind != "s2stext" && kind != "tokens" && kind != "cap")
    for (int i = 5; i < argc; ++i) args.push_back(std::atoll(argv[i]));
  try {
    if (kind == "lm") {
      rnncore::LanguageModel lm = rnncore::LanguageModel::load(dir);
      const std::int64_t V = lm.config().vocab_size;
      std::vector<float> lp(std::size_t(T * B * V));
      lm.log_probs(T, B, args.data(), lp.data());
      row("log_probs", lp);
      std::vector<std::int64_t> seq0;
      for (long t = 0; t < T; ++t) seq0.push_back(args[std::size_t(t * B)]);
      row("next", lm.next_log_probs(seq0));
      // The same through the stateful step API, one token at a time over the whole batch.
      auto state = lm.initial_state(B);
      std::vector<float> steps, one(std::size_t(B * V));
      for (long t = 0; t < T; ++t) {
        lm.step(args.data() + t * B, state, one.data());
        steps.insert(steps.end(), one.begin(), one.end());
      }
      row("step_log_probs", steps);
      rnncore::SampleOptions o;
      o.max_tokens = 10;
      o.temperature = 0.0;
      row("greedy", lm.sample(seq0, o));
      o.temperature = 0.9;
      o.top_k = 4;
      o.seed = 42;
      row("sample", lm.sample(seq0, o));
    } else if (kind == "clf") {
      rnncore::SequenceClassifier clf = rnncore::SequenceClassifier::load(dir);
      std::vector<float> probs(std::size_t(B * clf.config().num_classes));
      clf.predict_proba(T, B, args.data(), args.data() + T * B, probs.data());
      row("probs", probs);
    } else if (kind == "tag") {
      rnncore::SequenceTagger tagger = rnncore::SequenceTagger::load(dir);
      const std::int64_t* ids = args.data();
      const std::int64_t* lengths = ids + T * B;
      std::int64_t N = 0;
      for (long b = 0; b < B; ++b) N += lengths[b];
      std::int64_t Lc = 0;
      const std::int64_t *chars = nullptr, *char_lengths = nullptr;
      if (std::size_t(T * B + B) < args.size()) {
        Lc = args[std::size_t(T * B + B)];
        chars = lengths + B + 1;
        char_lengths = chars + Lc * N;
      }
      std::vector<float> logits(std::size_t(T * B * tagger.config().num_tags));
      tagger.logits(T, B, ids, lengths, Lc, chars, char_lengths, logits.data());
      row("logits", logits);
      std::vector<std::int64_t> tags(std::size_t(T * B));
      tagger.decode(T, B, logits.data(), lengths, tags.data());
      row("tags", tags);
    } else if (kind == "cap") {
      rnncore::Captioner model = rnncore::Captioner::load(dir);
      const std::int64_t F = model.config().feature_dim;
      std::vector<std::vector<float>> features;
      for (int i = 5; i + F <= argc; i += int(F)) {
        features.emplace_back();
        for (std::int64_t j = 0; j < F; ++j)
          features.back().push_back(float(std::atof(argv[i + j])));
      }
      for (const auto& ids : model.caption_ids(features, T, B)) row("ids", ids);
    } else if (kind == "fc" || kind == "fcast") {
      rnncore::Forecaster fc = rnncore::Forecaster::load(dir);
      const std::int64_t I = fc.config().input_size;
      std::vector<double> values;
      for (int i = 5; i < argc; ++i) values.push_back(std::atof(argv[i]));
      if (kind == "fc") {
        std::vector<float> x(values.begin(), values.end()),
            out(std::size_t(B * fc.config().horizon));
        fc.predict(T, B, x.data(), out.data());
        row("predict", out);
      } else {
        std::vector<std::vector<double>> hist;
        std::vector<std::vector<std::vector<double>>> cov;
        for (long b = 0; b < B; ++b)
          hist.emplace_back(values.begin() + b * T, values.begin() + (b + 1) * T);
        if (values.size() > std::size_t(B * T))
          for (long b = 0; b < B; ++b) {
            cov.emplace_back();
            for (std::int64_t j = 0; j < I - 1; ++j) {
              auto at = values.begin() + B * T + (b * (I - 1) + j) * T;
              cov.back().emplace_back(at, at + T);
            }
          }
        std::vector<float> flat;
        for (const auto& f : fc.forecast(hist, cov)) flat.insert(flat.end(), f.begin(), f.end());
        row("forecast", flat);
      }
    } else if (kind == "s2s" || kind == "s2stext") {
      rnncore::Seq2Seq model = rnncore::Seq2Seq::load(dir);
      if (kind == "s2stext") {
        std::vector<std::string> sentences(argv + 5, argv + argc);
        for (const auto& t : model.translate(sentences, T, B)) std::printf("%s\n", t.c_str());
        return 0;
      }
      std::vector<std::vector<std::int64_t>> sources(1);
      for (int i = 5; i < argc; ++i) {
        if (std::strcmp(argv[i], "|") == 0)
          sources.emplace_back();
        else
          sources.back().push_back(std::atoll(argv[i]));
      }
      for (const auto& ids : model.translate_ids(sources, T, B)) row("ids", ids);
      if (T > 1)
        for (const auto& s : sources)
          row("score", std::vector<float>{float(
                           model.beam_search(s, T, B, model.config().length_penalty).second)});
    } else if (kind == "tagtext") {
      rnncore::SequenceTagger tagger = rnncore::SequenceTagger::load(dir);
      std::vector<std::vector<std::string>> sentences(1);
      for (int i = 5; i < argc; ++i) {
        if (std::strcmp(argv[i], "|") == 0)
          sentences.emplace_back();
        else
          sentences.back().push_back(argv[i]);
      }
      for (const auto& tags : tagger.tag(sentences)) {
        std::printf("tags");
        for (const auto& t : tags) std::printf(" %s", t.c_str());
        std::printf("\n");
      }
    } else {
      std::fprintf(stderr, "inference_dump: unknown kind %s\n", kind.c_str());
      return 2;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "inference_dump: %s\n", e.what());
    return 1;
  }
  return 0;
}
