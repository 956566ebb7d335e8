// Autoregressive decoding shared by the C++ Seq2Seq and Captioner: one decoder step (embedding
// [+ a context vector] -> rnn -> [Luong attention] -> output -> log-softmax), greedy decoding of
// a batch and beam search, each exactly Python's (rnncore.models.seq2seq.beam_search).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "rnncore/recurrent.h"

namespace rnncore::detail {

// What decoding needs of a batch of sources (sentences, images); row n of a step reads source
// sent[n] (beam search: every hypothesis reads source 0).
struct DecodeInputs {
  std::int64_t B = 0, S = 0;
  std::vector<std::int64_t> lengths;  // [B] valid memory steps (attention)
  std::vector<float> memory, keys;    // [B, S, H] (attention only)
  std::int64_t C = 0;                 // width of the context fed to every step (0: none)
  std::vector<float> context;         // [B, C]
  std::vector<float> h0, c0;          // [L, B, H] the decoder's initial state (c0: with a c)
};

// The decoder's layers (views of the model's weights).
struct DecoderParts {
  Recurrent<float>* rnn = nullptr;
  const float* embedding = nullptr;  // [V, E]
  const float* combine_w = nullptr;  // [H, 2H] W_c of the attention, or null: no attention
  const float* combine_b = nullptr;  // [H]
  const float* out_w = nullptr;      // [V, H]
  const float* out_b = nullptr;      // [V] or null
  std::int64_t V = 0, E = 0, H = 0, L = 0, bos = 0, eos = 0;
};

// One step for N rows: tokens [N]; h, c [L, N, H] updated; logp [N, V] (double) out, or, with
// logits_only, the output layer's logits [N, V] there instead (greedy decoding's argmax).
void decoder_step(const DecoderParts& d, const DecodeInputs& in,
                  const std::vector<std::int64_t>& tokens, const std::vector<std::int64_t>& sent,
                  std::vector<float>& h, std::vector<float>& c, std::vector<double>& logp,
                  std::vector<float>* logits_only = nullptr);

// The most likely token at every step for every source, until all produced <eos> or max_len
// steps; each row without <bos>/<eos> (tokens after its <eos> dropped).
std::vector<std::vector<std::int64_t>> greedy_decode(const DecoderParts& d, const DecodeInputs& in,
                                                     std::int64_t max_len);

// Beam search for source 0 of `in`: (ids without specials, log P / len^length_penalty).
std::pair<std::vector<std::int64_t>, double> beam_decode(const DecoderParts& d,
                                                         const DecodeInputs& in, std::int64_t beam,
                                                         std::int64_t max_len,
                                                         double length_penalty);

}  // namespace rnncore::detail
