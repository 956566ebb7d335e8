// Inference from checkpoints saved in Python, in C++: every task model (LanguageModel,
// SequenceClassifier, SequenceTagger, Forecaster, Seq2Seq, Captioner).
//
// A checkpoint is a directory (rnncore.train.save_checkpoint; names in checkpoint_format.h)
//   model.safetensors  the model's state_dict: embedding.weight, rnn.weight_ih_l0, ...,
//                      decoder.* (LanguageModel) or classifier.* (SequenceClassifier)
//   checkpoint.json    {"format": "rnncore.checkpoint", "version": 1, "model_type", "model_config"
//                      (the constructor's keyword arguments), "dtype", "vocab", ...}
// The loader rebuilds the model from model_config, checks every tensor's name and shape against
// it, and runs it with the engine (rnncore::Recurrent<float>) in float32 (float64 checkpoints are
// converted on load). Shapes follow the engine's legend (recurrent.h): time-major, row-major;
// T steps, B batch, V vocabulary, E embedding, H hidden, L layers, D directions, C classes.
//
// Errors. CheckpointError (a std::runtime_error) when the checkpoint cannot be used: a missing
// directory or file, a truncated or garbled file, a missing tensor or one of the wrong shape, or a
// model other than the program asks for (model type, or a field of ModelRequirements such as the
// cell or a size). std::invalid_argument for bad arguments of a call (token ids out of range,
// lengths outside [1, T], a negative temperature). Messages name the checkpoint and the field.
//
// Threads: one model object may be shared by many threads; its calls take turns (a lock, since
// they reuse the engine's workspaces), each using the engine's OpenMP threads
// (rnncore::set_num_threads). For calls that run at the same time, use one object per thread.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "rnncore/checkpoint_format.h"

namespace rnncore {

/// A checkpoint that cannot be loaded or is not the model the program asks for.
class CheckpointError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The tokens of a checkpoint's "vocab" (rnncore.data.Vocab.to_dict): a token's id is its
/// position. Special roles (pad, unk, bos, eos) name tokens of the list.
class Vocabulary {
 public:
  Vocabulary() = default;
  /// Throws std::invalid_argument on a duplicate token or a special that is not in `tokens`.
  explicit Vocabulary(std::vector<std::string> tokens, const std::string& pad = "",
                      const std::string& unk = "", const std::string& bos = "",
                      const std::string& eos = "");

  bool empty() const { return tokens_.empty(); }
  std::int64_t size() const { return std::int64_t(tokens_.size()); }
  const std::vector<std::string>& tokens() const { return tokens_; }
  /// Throws std::invalid_argument when id is outside [0, size()).
  const std::string& token(std::int64_t id) const;
  bool contains(const std::string& token) const { return index_.count(token) > 0; }
  /// The id of `token`; an unknown token gives unk_id() when the vocabulary has unk, otherwise
  /// throws std::invalid_argument.
  std::int64_t id(const std::string& token) const;
  /// Ids of the special tokens, -1 when the vocabulary has none.
  std::int64_t pad_id() const { return pad_; }
  std::int64_t unk_id() const { return unk_; }
  std::int64_t bos_id() const { return bos_; }
  std::int64_t eos_id() const { return eos_; }

 private:
  std::vector<std::string> tokens_;
  std::unordered_map<std::string, std::int64_t> index_;
  std::int64_t pad_ = -1, unk_ = -1, bos_ = -1, eos_ = -1;
};

/// What checkpoint.json says (read_checkpoint_info reads it without loading any weights).
struct CheckpointInfo {
  std::string directory;
  std::string model_type;  // e.g. "LanguageModel", "SequenceClassifier"
  std::string dtype;       // "float32" or "float64" (the weights; inference runs in float32)
  Vocabulary vocab;        // empty when "vocab" is null or absent
  std::vector<std::string> labels;  // class names from "extra"."labels" when the task saved them
  std::optional<std::int64_t> epoch;
  std::optional<std::int64_t> step;
  std::string json;  // the whole checkpoint.json, for fields not parsed here ("extra", "metrics")
};

/// Reads and checks DIR/checkpoint.json (format, version, model type, dtype, vocab).
/// Throws CheckpointError.
CheckpointInfo read_checkpoint_info(const std::string& directory);

/// What the program requires of a checkpoint. Unset fields accept anything; a checkpoint whose
/// model_config differs in a set field is rejected (CheckpointError naming the field). Cells are
/// named as in model configs: "rnn" (tanh), "rnn_relu", "lstm", "gru" (PyTorch's GRU, reset
/// after), "gru_v1" (reset before).
struct ModelRequirements {
  std::optional<std::string> cell;
  std::optional<std::int64_t> vocab_size;
  std::optional<std::int64_t> embed_dim;
  std::optional<std::int64_t> hidden_size;
  std::optional<std::int64_t> num_layers;
  std::optional<std::int64_t> num_classes;  // SequenceClassifier only
  std::optional<bool> bidirectional;        // SequenceClassifier only
};

/// Options of LanguageModel::sample.
struct SampleOptions {
  std::int64_t max_tokens = 100;  // tokens drawn after the prefix (>= 0)
  double temperature = 1.0;       // > 0 scales the logits; 0 picks the most likely token
  std::int64_t top_k = 0;         // > 0: draw among the k most likely tokens only
  std::uint64_t seed = 0;         // the same seed gives the same tokens
  std::int64_t stop_token = -1;   // >= 0: stop after drawing this id (e.g. vocab().eos_id())
};

/// Draws one id from log-probabilities (or logits) [V]: p ∝ exp(log_probs / temperature) over the
/// top_k most likely ids (all when top_k is 0 or >= V); temperature 0 returns the most likely id
/// (the lowest on ties). Deterministic for a given rng state on every platform.
/// Throws std::invalid_argument on V < 1, a negative or non-finite temperature, top_k < 0 or NaN
/// log-probabilities. The one sampler of rnncore: Python's LanguageModel.sample draws through it
/// too (rnncore._core.Sampler), so a seed gives the same tokens in both. T: float or double.
template <typename T>
std::int64_t sample_token(const T* log_probs, std::int64_t V, double temperature,
                          std::int64_t top_k, std::mt19937_64& rng);
extern template std::int64_t sample_token<float>(const float*, std::int64_t, double, std::int64_t,
                                                 std::mt19937_64&);
extern template std::int64_t sample_token<double>(const double*, std::int64_t, double, std::int64_t,
                                                  std::mt19937_64&);

/// Model configuration of a LanguageModel checkpoint (rnncore.models.LanguageModel).
struct LanguageModelConfig {
  std::int64_t vocab_size = 0;
  std::int64_t embed_dim = 0;
  std::int64_t hidden_size = 0;
  std::int64_t num_layers = 2;
  std::string cell = "lstm";
  bool tie_weights = false;    // the decoder reuses embedding.weight (embed_dim == R)
  std::int64_t proj_size = 0;  // LSTM projections (LSTMP): h has P values, c stays H; 0: none
  /// R: the size of h and of the decoder's input (proj_size if set, else hidden_size).
  std::int64_t state_size() const { return proj_size > 0 ? proj_size : hidden_size; }
};

/// embedding -> rnn (L layers, one direction) -> decoder (Linear R -> V): next-token
/// log-probabilities, step by step or for whole sequences, and sampling.
class LanguageModel {
 public:
  /// The recurrent state of B sequences between calls.
  struct State {
    std::int64_t batch = 0;
    std::vector<float> h;  // [L, B, R] (R = config().state_size())
    std::vector<float> c;  // [L, B, H] for LSTM, empty otherwise
  };

  /// Loads DIR (model_type "LanguageModel"). Throws CheckpointError.
  static LanguageModel load(const std::string& directory, const ModelRequirements& required = {});

  LanguageModel(LanguageModel&&) noexcept;
  LanguageModel& operator=(LanguageModel&&) noexcept;
  ~LanguageModel();

  const LanguageModelConfig& config() const;
  const CheckpointInfo& info() const;
  const Vocabulary& vocab() const { return info().vocab; }

  /// The zero state for `batch` sequences (the state a sequence starts from).
  State initial_state(std::int64_t batch = 1) const;

  /// Log-probabilities of the next token at every position (teacher forcing).
  ///   ids       [T, B] in [0, V)
  ///   log_probs [T, B, V] out: log p(next | ids[0..t, b])
  ///   state     nullptr: start from zeros; otherwise the start state of batch B, updated to the
  ///             state after step T-1 (so long texts can be fed in chunks)
  void log_probs(std::int64_t steps, std::int64_t batch, const std::int64_t* ids, float* log_probs,
                 State* state = nullptr);

  /// log p(next | prefix) [V] for one sequence from the zero state; prefix is non-empty.
  std::vector<float> next_log_probs(const std::vector<std::int64_t>& prefix);

  /// Feeds `tokens` (one sequence, non-empty) from `state` (batch 1, updated); returns the
  /// log-probabilities [V] of the token that follows.
  std::vector<float> feed(const std::vector<std::int64_t>& tokens, State& state);

  /// One step for a batch: tokens [B] with B = state.batch, state updated, log_probs [B, V] out.
  void step(const std::int64_t* tokens, State& state, float* log_probs);

  /// Feeds `prefix` (non-empty), then draws up to options.max_tokens ids one at a time, each fed
  /// back in; returns the drawn ids (the prefix not included).
  std::vector<std::int64_t> sample(const std::vector<std::int64_t>& prefix,
                                   const SampleOptions& options = {});

 private:
  struct Impl;
  explicit LanguageModel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// Model configuration of a SequenceClassifier checkpoint (rnncore.models.SequenceClassifier).
struct ClassifierConfig {
  std::int64_t vocab_size = 0;
  std::int64_t embed_dim = 0;
  std::int64_t hidden_size = 0;
  std::int64_t num_classes = 0;
  std::int64_t num_layers = 1;
  std::string cell = "lstm";
  bool bidirectional = true;
  std::string pooling = "last";  // "last", "mean" or "max"
  std::int64_t padding_idx = 0;  // -1: none
};

/// embedding -> rnn -> pooling -> classifier (Linear D*H -> C): class probabilities of
/// sequences. Pooling "last": the top layer's final states, forward then reverse direction
/// ([B, D*H]); "mean" / "max": over each sequence's own steps of the top layer's output.
class SequenceClassifier {
 public:
  /// Loads DIR (model_type "SequenceClassifier"). Throws CheckpointError.
  static SequenceClassifier load(const std::string& directory,
                                 const ModelRequirements& required = {});

  SequenceClassifier(SequenceClassifier&&) noexcept;
  SequenceClassifier& operator=(SequenceClassifier&&) noexcept;
  ~SequenceClassifier();

  const ClassifierConfig& config() const;
  const CheckpointInfo& info() const;
  const Vocabulary& vocab() const { return info().vocab; }

  /// Class probabilities of a padded batch.
  ///   ids     [T, B]: ids[t, b] in [0, V) for t < lengths[b]; entries past a sequence's end
  ///           are ignored (any value)
  ///   lengths [B] in [1, T], or nullptr: every sequence has T steps
  ///   probs   [B, C] out
  void predict_proba(std::int64_t steps, std::int64_t batch, const std::int64_t* ids,
                     const std::int64_t* lengths, float* probs);

  /// Class probabilities [B][C] of sequences of any lengths (each non-empty).
  std::vector<std::vector<float>> predict_proba(
      const std::vector<std::vector<std::int64_t>>& sequences);

  /// The most probable class of each sequence (the lowest id on ties).
  std::vector<std::int64_t> predict(const std::vector<std::vector<std::int64_t>>& sequences);

  /// Int8 inference (Recurrent::set_int8_inference): the recurrent layers' W_ih and W_hh
  /// products in int8, 3-4x faster at batch 1, outputs within the quantization error (the
  /// predictions of bench/results/int8_quality.md did not change). std::invalid_argument for a
  /// layer-normalised model.
  void set_int8_inference(bool on);

 private:
  struct Impl;
  explicit SequenceClassifier(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// Model configuration of a SequenceTagger checkpoint (rnncore.models.SequenceTagger).
struct TaggerConfig {
  std::int64_t vocab_size = 0;
  std::int64_t embed_dim = 0;
  std::int64_t hidden_size = 0;
  std::int64_t num_tags = 0;
  std::int64_t num_layers = 1;
  std::string cell = "lstm";
  bool bidirectional = true;
  std::vector<std::string> tag_names;  // the tag of each id; empty when the model has none
  std::int64_t char_vocab_size = 0;    // 0: no character features
  std::int64_t char_embed_dim = 25;
  std::int64_t char_hidden_size = 25;
  bool crf = false;  // a linear-chain CRF decodes (Viterbi), BIO-constrained for BIO tag sets
  /// True when every tag is "O" or B-X / I-X (then decoding keeps the output valid IOB2).
  bool bio() const;
};

/// word embedding (+ a character BiLSTM's final states per word) -> rnn -> classifier per
/// token: tags of sentences (NER, POS). Decoding is the CRF's Viterbi path, or the most likely
/// tag per token followed, for BIO tag sets, by the repair I-X after O / another type -> B-X
/// (as rnncore.models.SequenceTagger). Tag ids past a sequence's end are -100.
class SequenceTagger {
 public:
  static constexpr std::int64_t kIgnore = -100;

  /// Loads DIR (model_type "SequenceTagger"). Throws CheckpointError.
  static SequenceTagger load(const std::string& directory, const ModelRequirements& required = {});

  SequenceTagger(SequenceTagger&&) noexcept;
  SequenceTagger& operator=(SequenceTagger&&) noexcept;
  ~SequenceTagger();

  const TaggerConfig& config() const;
  const CheckpointInfo& info() const;
  const Vocabulary& vocab() const { return info().vocab; }
  /// The character vocabulary (empty without character features).
  const Vocabulary& char_vocab() const;
  /// Whether words are looked up lower-cased (the training run's --lowercase).
  bool lowercase() const;

  /// Tag scores of a padded batch.
  ///   ids          [T, B] word ids (entries past a sequence's end are ignored)
  ///   lengths      [B] in [1, T], or nullptr: every sequence has T steps
  ///   chars        [Lc, N] character ids of the N = Σ lengths words, sentence by sentence,
  ///                time-major and padded; char_lengths [N] in [1, Lc]. Required exactly when
  ///                config().char_vocab_size > 0 (else nullptr, Lc 0).
  ///   logits       [T, B, C] out (past a sequence's end: the classifier's bias)
  void logits(std::int64_t steps, std::int64_t batch, const std::int64_t* ids,
              const std::int64_t* lengths, std::int64_t char_steps, const std::int64_t* chars,
              const std::int64_t* char_lengths, float* logits);

  /// Decoded tag ids [T, B] of logits [T, B, C] (kIgnore past each length).
  void decode(std::int64_t steps, std::int64_t batch, const float* logits,
              const std::int64_t* lengths, std::int64_t* tags) const;

  /// Tag ids of word-id sentences (each non-empty), one ragged batch; `char_ids` gives each
  /// word's character ids (sentence by sentence, word by word) for a model with character
  /// features, else empty.
  std::vector<std::vector<std::int64_t>> predict(
      const std::vector<std::vector<std::int64_t>>& sentences,
      const std::vector<std::vector<std::vector<std::int64_t>>>& char_ids = {});

  /// Tag names of tokenised sentences (each a non-empty list of tokens), run as one ragged batch:
  /// words looked up as the training run did (lower-cased as str.lower when lowercase(): exact
  /// for Latin, Greek and Cyrillic), characters (UTF-8 code points) of the tokens as given. Unknown
  /// words and characters map to the vocabularies' unk.
  std::vector<std::vector<std::string>> tag(const std::vector<std::vector<std::string>>& sentences);

  /// Int8 inference (Recurrent::set_int8_inference): the recurrent layers' W_ih and W_hh
  /// products in int8, 3-4x faster at batch 1, outputs within the quantization error (the
  /// predictions of bench/results/int8_quality.md did not change). std::invalid_argument for a
  /// layer-normalised model.
  void set_int8_inference(bool on);

 private:
  struct Impl;
  explicit SequenceTagger(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// Model configuration of a Forecaster checkpoint (rnncore.models.Forecaster) and the series
/// transform of the run that trained it (checkpoint.json extra: input_len, transform,
/// covariate_scalers, as `rnncore train forecast` writes them).
struct ForecasterConfig {
  std::int64_t input_size = 1;  // I: the target series, then I - 1 covariates
  std::int64_t hidden_size = 0;
  std::int64_t horizon = 1;  // h values forecast at once
  std::int64_t num_layers = 1;
  std::string cell = "lstm";
  std::string mode = "many_to_one";  // or "many_to_many" (the forecast is the last step's)
  std::int64_t input_len = 0;        // L, the window; 0 when the run did not record it
  bool log = false;                  // the transform: log -> lag differencing -> scaling
  std::int64_t difference = 0;
  double offset = 0.0, scale = 1.0;           // z = (x' - offset) / scale
  std::vector<double> cov_offset, cov_scale;  // each covariate's scaling [I - 1]
};

/// A recurrent forecaster: window [L, B, I] in the transformed space -> the next h values; and
/// forecast() on the original scale from a series' history, transforming it as the training run
/// did (log, differencing at its lag, scaling; covariates scaled) and undoing that on the output.
class Forecaster {
 public:
  /// Loads DIR (model_type "Forecaster"). Throws CheckpointError.
  static Forecaster load(const std::string& directory, const ModelRequirements& required = {});

  Forecaster(Forecaster&&) noexcept;
  Forecaster& operator=(Forecaster&&) noexcept;
  ~Forecaster();

  const ForecasterConfig& config() const;
  const CheckpointInfo& info() const;

  /// Transformed-space forecasts: x [L, B, I] (time-major) -> out [B, h].
  void predict(std::int64_t steps, std::int64_t batch, const float* x, float* out);

  /// The next h values after each history (original scale), as one batch.
  ///   histories[b]      the target series' values up to now; at least input_len + difference
  ///                     of them (the last ones are used), > 0 with log
  ///   covariates[b][j]  covariate j's values at the same times (as many as histories[b]);
  ///                     required exactly when the model has covariates (input_size > 1)
  /// Throws std::invalid_argument naming the history and what is wrong; std::logic_error when
  /// the checkpoint does not record input_len.
  std::vector<std::vector<double>> forecast(
      const std::vector<std::vector<double>>& histories,
      const std::vector<std::vector<std::vector<double>>>& covariates = {});

 private:
  struct Impl;
  explicit Forecaster(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// Model configuration of a Seq2Seq checkpoint (rnncore.models.Seq2Seq) and the decoding
/// settings of the `rnncore train seq2seq` run that wrote it (checkpoint.json extra).
struct Seq2SeqConfig {
  std::int64_t src_vocab_size = 0;
  std::int64_t tgt_vocab_size = 0;
  std::int64_t embed_dim = 0;
  std::int64_t hidden_size = 0;
  std::int64_t num_layers = 1;
  std::string cell = "lstm";
  bool bidirectional = false;  // the encoder's
  std::string attention;       // "", "dot" or "general" (Luong et al. 2015)
  bool context = false;        // the encoder's summary fed to every decoder step
  std::string bridge = "linear";
  bool reverse_source = false;
  std::int64_t padding_idx = 0, bos_id = 2, eos_id = 3;
  // From the run (the defaults of `rnncore translate` when absent).
  bool lower = true, strip_accents = false;
  std::int64_t beam = 1, max_decode_len = 30;
  double length_penalty = 1.0;
};

/// The source tokens `rnncore translate` makes of a sentence (UTF-8): Unicode-normalised (NFC;
/// accents stripped and lower-cased when asked, as the training run's --strip-accents / --lower)
/// and split as rnncore.data.tokenize (words with inner apostrophes, single symbols). Exact for
/// Latin, Greek and Cyrillic text; other scripts are tokenised but not case-folded.
std::vector<std::string> translation_tokens(const std::string& text, bool lower,
                                            bool strip_accents);

/// Encoder-decoder translation: greedy decoding of a batch, beam search per sentence (the
/// Python model's algorithm: same candidates, ties, length penalty and results), and text in
/// and out normalised, tokenised and detokenised as `rnncore translate` does.
class Seq2Seq {
 public:
  /// Loads DIR (model_type "Seq2Seq"). Throws CheckpointError.
  static Seq2Seq load(const std::string& directory, const ModelRequirements& required = {});

  Seq2Seq(Seq2Seq&&) noexcept;
  Seq2Seq& operator=(Seq2Seq&&) noexcept;
  ~Seq2Seq();

  const Seq2SeqConfig& config() const;
  const CheckpointInfo& info() const;
  /// The run's source and target vocabularies ("vocabs" of checkpoint.json; empty if absent).
  const Vocabulary& src_vocab() const;
  const Vocabulary& tgt_vocab() const;

  /// Target ids (no <bos>/<eos>) of source id sequences (each non-empty, no specials): greedy
  /// as one ragged batch when beam == 1, else beam search per sentence. beam, max_len 0 and a
  /// NaN length_penalty take the run's settings.
  std::vector<std::vector<std::int64_t>> translate_ids(
      const std::vector<std::vector<std::int64_t>>& sources, std::int64_t beam = 0,
      std::int64_t max_len = 0, double length_penalty = std::nan(""));

  /// Beam search for one source: (ids, log P / len^length_penalty).
  std::pair<std::vector<std::int64_t>, double> beam_search(const std::vector<std::int64_t>& source,
                                                           std::int64_t beam, std::int64_t max_len,
                                                           double length_penalty);

  /// Translations of sentences (UTF-8 text), as `rnncore translate DIR TEXT`: normalised like
  /// the training data (lower-cased, accents stripped when the run did so), tokenised, unknown
  /// words as <unk>, decoded and detokenised. std::invalid_argument for a sentence without
  /// words.
  std::vector<std::string> translate(const std::vector<std::string>& sentences,
                                     std::int64_t beam = 0, std::int64_t max_len = 0);

 private:
  struct Impl;
  explicit Seq2Seq(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// Model configuration of a Captioner checkpoint (rnncore.models.Captioner) and the decoding
/// settings of the `rnncore train caption` run (checkpoint.json extra).
struct CaptionerConfig {
  std::int64_t feature_dim = 0;  // F of a feature vector (an image's CNN features)
  std::int64_t vocab_size = 0;
  std::int64_t embed_dim = 64;
  std::int64_t hidden_size = 128;
  std::int64_t num_layers = 1;
  std::string cell = "lstm";
  bool feed_features = false;  // the features are fed to every decoder step too
  std::int64_t padding_idx = 0, bos_id = 2, eos_id = 3;
  std::int64_t beam = 1, max_decode_len = 30;  // from the run
};

/// One-to-many: a feature vector -> the decoder's initial state (h0 = tanh(W_h f + b), an LSTM's
/// c0 = W_c f + b) -> a caption, greedy for a batch or by beam search (as Python's).
class Captioner {
 public:
  /// Loads DIR (model_type "Captioner"). Throws CheckpointError.
  static Captioner load(const std::string& directory, const ModelRequirements& required = {});

  Captioner(Captioner&&) noexcept;
  Captioner& operator=(Captioner&&) noexcept;
  ~Captioner();

  const CaptionerConfig& config() const;
  const CheckpointInfo& info() const;
  const Vocabulary& vocab() const { return info().vocab; }

  /// Caption ids (no <bos>/<eos>) of feature vectors (each [F]): greedy as one batch when
  /// beam == 1, else beam search per vector; beam and max_len 0 take the run's settings.
  std::vector<std::vector<std::int64_t>> caption_ids(
      const std::vector<std::vector<float>>& features, std::int64_t beam = 0,
      std::int64_t max_len = 0);

  /// The captions as text (the vocabulary's tokens joined by spaces).
  std::vector<std::string> caption(const std::vector<std::vector<float>>& features,
                                   std::int64_t beam = 0, std::int64_t max_len = 0);

 private:
  struct Impl;
  explicit Captioner(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace rnncore
