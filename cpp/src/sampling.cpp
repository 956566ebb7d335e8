// Drawing a token from next-token log-probabilities: the one sampler of rnncore, used by the C++
// LanguageModel and (through the bindings) by Python's LanguageModel.sample.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "checkpoint.h"  // require_ptr
#include "rnncore/inference.h"
#include "rnncore/ops.h"

namespace rnncore {

template <typename T>
std::int64_t sample_token(const T* log_probs, std::int64_t V, double temperature,
                          std::int64_t top_k, std::mt19937_64& rng) {
  if (V < 1) throw std::invalid_argument("sample_token: V must be >= 1, got " + std::to_string(V));
  detail::require_ptr(log_probs, "sample_token: log_probs");
  if (!(temperature >= 0.0) || !std::isfinite(temperature))
    throw std::invalid_argument("sample_token: temperature must be >= 0 and finite, got " +
                                std::to_string(temperature));
  if (top_k < 0)
    throw std::invalid_argument("sample_token: top_k must be >= 0, got " + std::to_string(top_k));
  for (std::int64_t v = 0; v < V; ++v)
    if (std::isnan(log_probs[v]))
      throw std::invalid_argument("sample_token: log_probs[" + std::to_string(v) + "] is NaN");
  // Candidates: every id, or the top_k most likely (ties to the lower id), kept in id order so
  // that the draw below does not depend on how the selection was made.
  std::vector<std::int64_t> ids(static_cast<std::size_t>(V));
  std::iota(ids.begin(), ids.end(), std::int64_t(0));
  auto more_likely = [&](std::int64_t a, std::int64_t b) {
    return log_probs[a] > log_probs[b] || (log_probs[a] == log_probs[b] && a < b);
  };
  if (temperature == 0.0) return *std::min_element(ids.begin(), ids.end(), more_likely);
  if (top_k > 0 && top_k < V) {
    std::nth_element(ids.begin(), ids.begin() + top_k, ids.end(), more_likely);
    ids.resize(static_cast<std::size_t>(top_k));
    std::sort(ids.begin(), ids.end());
  }
  double top = -INFINITY;
  for (auto i : ids) top = std::max(top, double(log_probs[i]));
  if (!std::isfinite(top))
    throw std::invalid_argument("sample_token: no candidate has a finite log-probability");
  // p_j = softmax(log_probs[ids] / temperature), by the engine's softmax (in double).
  std::vector<double> p(ids.size());
  for (std::size_t j = 0; j < ids.size(); ++j) p[j] = double(log_probs[ids[j]]) / temperature;
  softmax_rows<double>(1, std::int64_t(p.size()), p.data());
  // 53 random bits -> [0, 1): the same on every platform, unlike std::uniform_real_distribution.
  const double u = double(rng() >> 11) * 0x1.0p-53;
  double acc = 0.0;
  for (std::size_t j = 0; j < ids.size(); ++j) {
    acc += p[j];
    if (u < acc) return ids[j];
  }
  for (std::size_t j = ids.size(); j-- > 0;)  // rounding left u at the very end
    if (p[j] > 0.0) return ids[j];
  return ids.back();
}

template std::int64_t sample_token<float>(const float*, std::int64_t, double, std::int64_t,
                                          std::mt19937_64&);
template std::int64_t sample_token<double>(const double*, std::int64_t, double, std::int64_t,
                                           std::mt19937_64&);

}  // namespace rnncore
