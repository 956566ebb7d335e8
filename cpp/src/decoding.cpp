// Autoregressive decoding shared by the C++ Seq2Seq and Captioner: see decoding.h.
#include "decoding.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>

#include "rnncore/ops.h"

namespace rnncore::detail {

void decoder_step(const DecoderParts& d, const DecodeInputs& in,
                  const std::vector<std::int64_t>& tokens, const std::vector<std::int64_t>& sent,
                  std::vector<float>& h, std::vector<float>& c, std::vector<double>& logp,
                  std::vector<float>* logits_only) {
  const std::int64_t N = std::int64_t(tokens.size()), H = d.H, E = d.E, V = d.V;
  const std::int64_t C = in.C, In = E + C;
  const bool has_c = d.rnn->config().states() == 2;
  std::vector<float> emb(std::size_t(N * E)), x(std::size_t(N * In));
  embedding_forward<float>(N, V, E, tokens.data(), d.embedding, emb.data());
  for (std::int64_t n = 0; n < N; ++n) {
    std::memcpy(x.data() + n * In, emb.data() + n * E, sizeof(float) * std::size_t(E));
    if (C)
      std::memcpy(x.data() + n * In + E, in.context.data() + sent[std::size_t(n)] * C,
                  sizeof(float) * std::size_t(C));
  }
  std::vector<float> y(std::size_t(N * H)), hn(h.size()), cn(c.size());
  d.rnn->forward(1, int(N), x.data(), nullptr, h.data(), has_c ? c.data() : nullptr, y.data(),
                 hn.data(), has_c ? cn.data() : nullptr, /*training=*/false);
  h.swap(hn);
  if (has_c) c.swap(cn);
  std::vector<float> top = y;
  if (d.combine_w) {  // h~ = tanh(W_c [context; h]), context over the source's valid steps
    std::vector<float> cat(std::size_t(N * 2 * H));
    std::vector<double> w;
    for (std::int64_t n = 0; n < N; ++n) {
      const std::int64_t b = sent[std::size_t(n)], len = in.lengths[std::size_t(b)];
      const float* q = y.data() + n * H;
      w.assign(std::size_t(len), 0.0);
      double mx = -std::numeric_limits<double>::infinity();
      for (std::int64_t s = 0; s < len; ++s) {
        const float* kk = in.keys.data() + (b * in.S + s) * H;
        double dot = 0;
        for (std::int64_t j = 0; j < H; ++j) dot += double(q[j]) * kk[j];
        w[std::size_t(s)] = dot;
        mx = std::max(mx, dot);
      }
      double sum = 0;
      for (auto& v : w) sum += (v = std::exp(v - mx));
      float* ctx = cat.data() + n * 2 * H;
      for (std::int64_t j = 0; j < H; ++j) {
        double acc = 0;
        for (std::int64_t s = 0; s < len; ++s)
          acc += w[std::size_t(s)] / sum * in.memory[std::size_t((b * in.S + s) * H + j)];
        ctx[j] = float(acc);
      }
      std::memcpy(ctx + H, q, sizeof(float) * std::size_t(H));
    }
    linear_forward<float>(N, 2 * H, H, cat.data(), d.combine_w, d.combine_b, top.data());
    for (auto& v : top) v = std::tanh(v);
  }
  std::vector<float> own;
  std::vector<float>& logits = logits_only ? *logits_only : own;
  logits.resize(std::size_t(N * V));
  linear_forward<float>(N, H, V, top.data(), d.out_w, d.out_b, logits.data());
  if (logits_only) return;
  logp.resize(logits.size());
  for (std::int64_t n = 0; n < N; ++n) {  // log-softmax in double, as Python's decoding
    const float* r = logits.data() + n * V;
    double mx = r[0];
    for (std::int64_t v = 1; v < V; ++v) mx = std::max(mx, double(r[v]));
    double sum = 0;
    for (std::int64_t v = 0; v < V; ++v) sum += std::exp(double(r[v]) - mx);
    const double lse = std::log(sum);
    for (std::int64_t v = 0; v < V; ++v) logp[std::size_t(n * V + v)] = double(r[v]) - mx - lse;
  }
}

std::vector<std::vector<std::int64_t>> greedy_decode(const DecoderParts& d, const DecodeInputs& in,
                                                     std::int64_t max_len) {
  const std::int64_t B = in.B, V = d.V;
  std::vector<std::int64_t> tokens(static_cast<std::size_t>(B), d.bos);
  std::vector<std::int64_t> sent(static_cast<std::size_t>(B));
  std::iota(sent.begin(), sent.end(), std::int64_t(0));
  std::vector<float> h = in.h0, c = in.c0, logits;
  std::vector<double> unused;
  std::vector<char> done(static_cast<std::size_t>(B), 0);
  std::vector<std::vector<std::int64_t>> out(static_cast<std::size_t>(B));
  for (std::int64_t t = 0; t < max_len; ++t) {
    // The argmax of the logits is the log-probabilities' (the double log-softmax subtracts one
    // constant per row, exactly enough to keep float values apart): no softmax needed.
    decoder_step(d, in, tokens, sent, h, c, unused, &logits);
    bool all = true;
    for (std::int64_t b = 0; b < B; ++b) {
      const float* row = logits.data() + b * V;
      tokens[std::size_t(b)] = std::max_element(row, row + V) - row;  // the first maximum
      if (tokens[std::size_t(b)] == d.eos) done[std::size_t(b)] = 1;
      if (!done[std::size_t(b)]) out[std::size_t(b)].push_back(tokens[std::size_t(b)]);
      all = all && done[std::size_t(b)];
    }
    if (all) break;
  }
  return out;
}

std::pair<std::vector<std::int64_t>, double> beam_decode(const DecoderParts& d,
                                                         const DecodeInputs& in, std::int64_t beam,
                                                         std::int64_t max_len,
                                                         double length_penalty) {
  if (beam < 1) throw std::invalid_argument("beam must be >= 1, got " + std::to_string(beam));
  if (max_len < 1)
    throw std::invalid_argument("max_len must be >= 1, got " + std::to_string(max_len));
  const std::int64_t k = beam, V = d.V, eos = d.eos;
  auto norm = [&](double score, std::int64_t length) {
    return length_penalty != 0.0 ? score / std::pow(double(length), length_penalty) : score;
  };
  std::vector<std::vector<std::int64_t>> hyps(1);
  std::vector<double> scores(1, 0.0);
  std::vector<float> h = in.h0, c = in.c0;
  std::vector<std::pair<double, std::vector<std::int64_t>>> finished;
  std::vector<double> logp;
  bool stopped = false;
  for (std::int64_t t = 0; t < max_len; ++t) {
    const std::size_t n = hyps.size();
    std::vector<std::int64_t> last(n), sent(n, 0);
    for (std::size_t i = 0; i < n; ++i) last[i] = hyps[i].empty() ? d.bos : hyps[i].back();
    decoder_step(d, in, last, sent, h, c, logp);
    // The best 2k candidates, by score, ties to the lower flat index (numpy's stable argsort).
    const std::size_t total = n * std::size_t(V), top = std::min(total, std::size_t(2 * k));
    std::vector<std::size_t> order(total);
    std::iota(order.begin(), order.end(), std::size_t(0));
    auto cand = [&](std::size_t idx) { return scores[idx / std::size_t(V)] + logp[idx]; };
    std::partial_sort(order.begin(), order.begin() + std::ptrdiff_t(top), order.end(),
                      [&](std::size_t a, std::size_t b) {
                        const double ca = cand(a), cb = cand(b);
                        return ca > cb || (ca == cb && a < b);
                      });
    std::vector<std::size_t> keep_beam;
    std::vector<std::int64_t> keep_tok;
    std::vector<double> keep_score;
    for (std::size_t rank = 0; rank < top; ++rank) {
      const std::size_t idx = order[rank], b = idx / std::size_t(V);
      const auto tok = std::int64_t(idx % std::size_t(V));
      if (tok == eos) {
        if (rank < std::size_t(k)) finished.emplace_back(norm(cand(idx), t + 1), hyps[b]);
      } else if (std::int64_t(keep_beam.size()) < k) {
        keep_beam.push_back(b);
        keep_tok.push_back(tok);
        keep_score.push_back(cand(idx));
      }
    }
    if (std::int64_t(finished.size()) >= k || keep_beam.empty()) {
      stopped = true;
      break;
    }
    std::vector<std::vector<std::int64_t>> next;
    const std::int64_t L = d.L, H = d.H, N = std::int64_t(n);
    const auto nk = std::int64_t(keep_beam.size());
    std::vector<float> h2(std::size_t(L * nk * H)), c2(c.empty() ? 0 : h2.size());
    for (std::int64_t i = 0; i < nk; ++i) {
      const auto b = std::int64_t(keep_beam[std::size_t(i)]);
      next.push_back(hyps[std::size_t(b)]);
      next.back().push_back(keep_tok[std::size_t(i)]);
      for (std::int64_t l = 0; l < L; ++l) {
        std::memcpy(h2.data() + (l * nk + i) * H, h.data() + (l * N + b) * H,
                    sizeof(float) * std::size_t(H));
        if (!c.empty())
          std::memcpy(c2.data() + (l * nk + i) * H, c.data() + (l * N + b) * H,
                      sizeof(float) * std::size_t(H));
      }
    }
    hyps.swap(next);
    scores = keep_score;
    h.swap(h2);
    c.swap(c2);
  }
  if (!stopped)  // max_len reached: the live hypotheses finish too (no <eos> counted)
    for (std::size_t i = 0; i < hyps.size(); ++i)
      finished.emplace_back(norm(scores[i], std::int64_t(hyps[i].size())), hyps[i]);
  std::size_t best = 0;  // the highest score, the earliest on ties
  for (std::size_t i = 1; i < finished.size(); ++i)
    if (finished[i].first > finished[best].first) best = i;
  return {finished[best].second, finished[best].first};
}

}  // namespace rnncore::detail
