// The linear-chain CRF of the taggers: negative log-likelihood with its gradients (forward-
// backward in log space) and Viterbi decoding, one sequence per thread.
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "linalg.h"
#include "rnncore/ops.h"

namespace rnncore {

namespace {

using detail::Index;

void check_crf(std::int64_t Tn, std::int64_t B, std::int64_t K, const void* emissions,
               const std::int64_t* lengths) {
  if (Tn < 1 || B < 0 || K < 1)
    throw std::invalid_argument(
        "crf: need T >= 1, B >= 0 and K >= 1 tags, got T=" + std::to_string(Tn) +
        ", B=" + std::to_string(B) + ", K=" + std::to_string(K));
  if (B > 0 && (!emissions || !lengths))
    throw std::invalid_argument("crf: emissions and lengths must not be null");
  for (std::int64_t b = 0; b < B; ++b)
    if (lengths[b] < 1 || lengths[b] > Tn)
      throw std::invalid_argument("crf: lengths[" + std::to_string(b) +
                                  "] = " + std::to_string(lengths[b]) +
                                  " is outside [1, T=" + std::to_string(Tn) + "]");
}

// The scores with the constraints applied: -inf where forbidden.
template <typename T>
struct Scores {
  std::vector<double> trans, start, end;  // [K*K], [K], [K]
  explicit Scores(const CrfParams<T>& c) : trans(c.K * c.K), start(c.K), end(c.K) {
    const double ninf = -std::numeric_limits<double>::infinity();
    for (std::int64_t i = 0; i < c.K * c.K; ++i)
      trans[i] = (c.allowed && !c.allowed[i]) ? ninf : double(c.transitions[i]);
    for (std::int64_t j = 0; j < c.K; ++j) {
      start[j] = (c.allowed_start && !c.allowed_start[j]) ? ninf : double(c.start[j]);
      end[j] = double(c.end[j]);
    }
  }
};

double logsumexp(const double* v, std::int64_t n) {
  double m = -std::numeric_limits<double>::infinity();
  for (std::int64_t i = 0; i < n; ++i) m = std::max(m, v[i]);
  if (!std::isfinite(m)) return m;
  double s = 0;
  for (std::int64_t i = 0; i < n; ++i) s += std::exp(v[i] - m);
  return m + std::log(s);
}

}  // namespace

template <typename T>
double crf_nll(std::int64_t Tn, std::int64_t B, const CrfParams<T>& crf, const T* emissions,
               const std::int64_t* lengths, const std::int64_t* tags, T* d_emissions,
               T* d_transitions, T* d_start, T* d_end) {
  const std::int64_t K = crf.K;
  check_crf(Tn, B, K, emissions, lengths);
  if (B > 0 && !tags) throw std::invalid_argument("crf: tags must not be null");
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t t = 0; t < lengths[b]; ++t) {
      const std::int64_t y = tags[t * B + b];
      if (y < 0 || y >= K)
        throw std::invalid_argument("crf: tags[" + std::to_string(t) + ", " + std::to_string(b) +
                                    "] = " + std::to_string(y) +
                                    " is outside [0, K=" + std::to_string(K) + ")");
    }
  const Scores<T> sc(crf);
  const bool grad = d_emissions != nullptr;
  std::vector<double> nll(B, 0.0);
  // Per-sequence gradients of the shared parameters, summed in sequence order afterwards (the
  // result does not depend on the thread count).
  std::vector<double> dpar(grad ? std::size_t(B * (K * K + 2 * K)) : 0, 0.0);
  std::vector<std::string> error(B);
  detail::parallel_for(B, B > 1 && Tn * K * K * B >= (1 << 14), [&](std::int64_t b) {
    const std::int64_t n = lengths[b];
    auto e = [&](std::int64_t t, std::int64_t j) { return double(emissions[(t * B + b) * K + j]); };
    auto y = [&](std::int64_t t) { return tags[t * B + b]; };
    // The gold path's score.
    double gold = sc.start[y(0)] + e(0, y(0)) + sc.end[y(n - 1)];
    for (std::int64_t t = 1; t < n; ++t) gold += sc.trans[y(t - 1) * K + y(t)] + e(t, y(t));
    if (!std::isfinite(gold)) {
      error[b] = "crf: the gold tags of sequence " + std::to_string(b) +
                 " take a transition (or first tag) the constraints forbid";
      return;
    }
    std::vector<double> alpha(n * K), beta(n * K), tmp(K);
    for (std::int64_t j = 0; j < K; ++j) alpha[j] = sc.start[j] + e(0, j);
    for (std::int64_t t = 1; t < n; ++t)
      for (std::int64_t j = 0; j < K; ++j) {
        for (std::int64_t i = 0; i < K; ++i) tmp[i] = alpha[(t - 1) * K + i] + sc.trans[i * K + j];
        alpha[t * K + j] = logsumexp(tmp.data(), K) + e(t, j);
      }
    for (std::int64_t j = 0; j < K; ++j) tmp[j] = alpha[(n - 1) * K + j] + sc.end[j];
    const double logz = logsumexp(tmp.data(), K);
    nll[b] = logz - gold;
    if (!grad) return;
    for (std::int64_t i = 0; i < K; ++i) beta[(n - 1) * K + i] = sc.end[i];
    for (std::int64_t t = n - 2; t >= 0; --t)
      for (std::int64_t i = 0; i < K; ++i) {
        for (std::int64_t j = 0; j < K; ++j)
          tmp[j] = sc.trans[i * K + j] + e(t + 1, j) + beta[(t + 1) * K + j];
        beta[t * K + i] = logsumexp(tmp.data(), K);
      }
    double* dtr = dpar.data() + b * (K * K + 2 * K);
    double* dst = dtr + K * K;
    double* den = dst + K;
    for (std::int64_t t = 0; t < Tn; ++t) {
      T* de = d_emissions + (t * B + b) * K;
      if (t >= n) {
        std::fill(de, de + K, T(0));
        continue;
      }
      for (std::int64_t j = 0; j < K; ++j) {
        const double p = std::exp(alpha[t * K + j] + beta[t * K + j] - logz);
        de[j] = T(p - (j == y(t) ? 1.0 : 0.0));
        if (t == 0) dst[j] += p;
        if (t == n - 1) den[j] += p;
      }
      if (t > 0)
        for (std::int64_t i = 0; i < K; ++i)
          for (std::int64_t j = 0; j < K; ++j) {
            const double s =
                alpha[(t - 1) * K + i] + sc.trans[i * K + j] + e(t, j) + beta[t * K + j] - logz;
            if (std::isfinite(s)) dtr[i * K + j] += std::exp(s);
          }
    }
    dst[y(0)] -= 1.0;
    den[y(n - 1)] -= 1.0;
    for (std::int64_t t = 1; t < n; ++t) dtr[y(t - 1) * K + y(t)] -= 1.0;
  });
  for (std::int64_t b = 0; b < B; ++b)
    if (!error[b].empty()) throw std::invalid_argument(error[b]);
  double total = 0;
  for (std::int64_t b = 0; b < B; ++b) total += nll[b];
  if (grad) {
    for (std::int64_t b = 0; b < B; ++b) {
      const double* g = dpar.data() + b * (K * K + 2 * K);
      for (std::int64_t i = 0; i < K * K; ++i) d_transitions[i] += T(g[i]);
      for (std::int64_t j = 0; j < K; ++j) {
        d_start[j] += T(g[K * K + j]);
        d_end[j] += T(g[K * K + K + j]);
      }
    }
  }
  return total;
}

template <typename T>
void crf_viterbi(std::int64_t Tn, std::int64_t B, const CrfParams<T>& crf, const T* emissions,
                 const std::int64_t* lengths, std::int64_t* out) {
  const std::int64_t K = crf.K;
  check_crf(Tn, B, K, emissions, lengths);
  if (B > 0 && !out) throw std::invalid_argument("crf: out must not be null");
  const Scores<T> sc(crf);
  detail::parallel_for(B, B > 1 && Tn * K * K * B >= (1 << 14), [&](std::int64_t b) {
    const std::int64_t n = lengths[b];
    auto e = [&](std::int64_t t, std::int64_t j) { return double(emissions[(t * B + b) * K + j]); };
    std::vector<double> score(K), next(K);
    std::vector<std::int64_t> back(n * K, 0);
    for (std::int64_t j = 0; j < K; ++j) score[j] = sc.start[j] + e(0, j);
    for (std::int64_t t = 1; t < n; ++t) {
      for (std::int64_t j = 0; j < K; ++j) {
        std::int64_t best = 0;
        double v = -std::numeric_limits<double>::infinity();
        for (std::int64_t i = 0; i < K; ++i) {
          const double s = score[i] + sc.trans[i * K + j];
          if (s > v) {
            v = s;
            best = i;
          }
        }
        next[j] = v + e(t, j);
        back[t * K + j] = best;
      }
      std::swap(score, next);
    }
    std::int64_t last = 0;
    double v = -std::numeric_limits<double>::infinity();
    for (std::int64_t j = 0; j < K; ++j)
      if (score[j] + sc.end[j] > v) {
        v = score[j] + sc.end[j];
        last = j;
      }
    for (std::int64_t t = Tn - 1; t >= n; --t) out[t * B + b] = -1;
    for (std::int64_t t = n - 1; t >= 0; --t) {
      out[t * B + b] = last;
      last = back[t * K + last];
    }
  });
}

template double crf_nll<float>(std::int64_t, std::int64_t, const CrfParams<float>&, const float*,
                               const std::int64_t*, const std::int64_t*, float*, float*, float*,
                               float*);
template double crf_nll<double>(std::int64_t, std::int64_t, const CrfParams<double>&, const double*,
                                const std::int64_t*, const std::int64_t*, double*, double*, double*,
                                double*);
template void crf_viterbi<float>(std::int64_t, std::int64_t, const CrfParams<float>&, const float*,
                                 const std::int64_t*, std::int64_t*);
template void crf_viterbi<double>(std::int64_t, std::int64_t, const CrfParams<double>&,
                                  const double*, const std::int64_t*, std::int64_t*);

}  // namespace rnncore
