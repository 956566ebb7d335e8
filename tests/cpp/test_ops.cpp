// C++-only checks of the training operations: finite-difference gradients, optimizer updates
// against hand-written formulas, clipping semantics, bad-input errors, and the same operations on
// a GPU device (device_ops.h, on cuda-sim) against the CPU's.
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "rnncore/backend.h"
#include "rnncore/device_ops.h"
#include "rnncore/ops.h"

namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
  if (!ok) {
    ++failures;
    std::printf("FAIL: %s\n", what.c_str());
  }
}

template <typename F>
void expect_throw(F&& f, const std::string& what, const std::string& needle = "") {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    if (!needle.empty() && std::string(e.what()).find(needle) == std::string::npos)
      expect(false, what + ": message '" + e.what() + "' lacks '" + needle + "'");
    return;
  } catch (const std::exception& e) {
    expect(false, what + ": threw the wrong exception type: " + e.what());
    return;
  }
  expect(false, what + ": did not throw");
}

bool close(double a, double b, double tol) { return std::abs(a - b) <= tol * (1 + std::abs(b)); }

std::vector<double> randn(std::size_t n, std::mt19937_64& gen, double sd = 1.0) {
  std::normal_distribution<double> normal(0.0, sd);
  std::vector<double> v(n);
  for (auto& e : v) e = normal(gen);
  return v;
}

// Central differences of loss() with respect to every element of v, against analytic grad.
void fd_check(std::vector<double>& v, const std::vector<double>& grad,
              const std::function<double()>& loss, const std::string& label) {
  const double h = 1e-6;
  double worst = 0;
  for (std::size_t i = 0; i < v.size(); ++i) {
    const double keep = v[i];
    v[i] = keep + h;
    const double up = loss();
    v[i] = keep - h;
    const double down = loss();
    v[i] = keep;
    const double num = (up - down) / (2 * h);
    worst = std::max(worst, std::abs(num - grad[i]) / (1 + std::abs(num)));
  }
  expect(worst < 1e-7, label + ": max relative error " + std::to_string(worst));
}

void test_embedding() {
  const std::int64_t V = 5, E = 3, N = 6;
  std::mt19937_64 gen(1);
  auto W = randn(V * E, gen);
  std::vector<std::int64_t> ids = {4, 0, 2, 4, 1, 2};
  std::vector<double> out(N * E);
  rnncore::embedding_forward<double>(N, V, E, ids.data(), W.data(), out.data());
  bool ok = true;
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t e = 0; e < E; ++e) ok = ok && out[n * E + e] == W[ids[n] * E + e];
  expect(ok, "embedding forward gathers rows");
  auto dout = randn(N * E, gen);
  std::vector<double> dW(V * E, 1.0);  // accumulates onto existing values
  rnncore::embedding_backward<double>(N, V, E, ids.data(), dout.data(), dW.data(), 2);
  for (std::int64_t e = 0; e < E; ++e) {
    expect(dW[4 * E + e] == 1.0 + dout[0 * E + e] + dout[3 * E + e], "embedding scatter-add");
    expect(dW[2 * E + e] == 1.0, "padding row gets no gradient");
    expect(dW[3 * E + e] == 1.0, "unused row unchanged");
  }
  std::vector<std::int64_t> bad = {0, 5};
  expect_throw(
      [&] { rnncore::embedding_forward<double>(2, V, E, bad.data(), W.data(), out.data()); },
      "embedding id out of range", "id 5 at position 1");
  bad = {-1, 0};
  expect_throw([&] { rnncore::check_ids(2, V, bad.data(), "input"); }, "negative id",
               "input: id -1 at position 0");
}

void test_linear() {
  const std::int64_t N = 4, I = 3, O = 2;
  std::mt19937_64 gen(2);
  auto x = randn(N * I, gen), W = randn(O * I, gen), b = randn(O, gen), R = randn(N * O, gen);
  std::vector<double> y(N * O);
  auto loss = [&] {
    rnncore::linear_forward<double>(N, I, O, x.data(), W.data(), b.data(), y.data());
    double s = 0;
    for (std::size_t i = 0; i < y.size(); ++i) s += y[i] * R[i];
    return s;
  };
  loss();
  std::vector<double> dx(N * I), dW(O * I, 0.0), db(O, 0.0);
  rnncore::linear_backward<double>(N, I, O, R.data(), x.data(), W.data(), dx.data(), dW.data(),
                                   db.data());
  fd_check(x, dx, loss, "linear dx");
  fd_check(W, dW, loss, "linear dW");
  fd_check(b, db, loss, "linear db");
  // Accumulation: a second backward doubles the parameter gradients.
  const auto dW1 = dW, db1 = db;
  rnncore::linear_backward<double>(N, I, O, R.data(), x.data(), W.data(), nullptr, dW.data(),
                                   nullptr);
  expect(close(dW[0], 2 * dW1[0], 1e-14), "linear dW accumulates");
  expect(db == db1, "linear db untouched when null");
}

void test_cross_entropy() {
  const std::int64_t N = 5, C = 4;
  std::mt19937_64 gen(3);
  auto z = randn(N * C, gen, 2.0);
  std::vector<std::int64_t> t = {1, -100, 3, 0, 2};
  for (double eps : {0.0, 0.2}) {
    for (auto red : {rnncore::Reduction::kMean, rnncore::Reduction::kSum}) {
      rnncore::CrossEntropyOptions o;
      o.label_smoothing = eps;
      o.reduction = red;
      auto loss = [&] {
        return rnncore::cross_entropy<double>(N, C, z.data(), t.data(), o, nullptr).loss;
      };
      std::vector<double> dz(N * C);
      auto r = rnncore::cross_entropy<double>(N, C, z.data(), t.data(), o, dz.data());
      expect(r.count == 4, "cross_entropy counts non-ignored rows");
      expect(dz[1 * C] == 0 && dz[1 * C + 3] == 0, "ignored row has zero gradient");
      fd_check(z, dz, loss, "cross_entropy eps=" + std::to_string(eps));
    }
  }
  // Reference value of one row by hand: -log softmax(z)[t].
  {
    std::vector<double> z1 = {1.0, 2.0, 3.0};
    std::vector<std::int64_t> t1 = {0};
    auto r = rnncore::cross_entropy<double>(1, 3, z1.data(), t1.data(), {}, nullptr);
    const double expected = -1.0 + std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0));
    expect(close(r.loss, expected, 1e-15), "cross_entropy value");
  }
  // Huge logits stay finite (float).
  {
    std::vector<float> zf = {1e4f, -1e4f, 0.0f, 1e4f, 1e4f, -1e4f};
    std::vector<std::int64_t> tf = {1, 0};
    std::vector<float> d(6);
    auto r = rnncore::cross_entropy<float>(2, 3, zf.data(), tf.data(), {}, d.data());
    expect(std::isfinite(r.loss) && close(r.loss, (2e4 + (std::log(2.0))) / 2, 1e-6),
           "cross_entropy with logits 1e4 is finite and right: " + std::to_string(r.loss));
    bool fin = true;
    for (float v : d) fin = fin && std::isfinite(v);
    expect(fin, "cross_entropy gradient with logits 1e4 is finite");
  }
  // All rows ignored: loss 0, zero gradient.
  {
    std::vector<std::int64_t> ti(N, -100);
    std::vector<double> dz(N * C, 7.0);
    auto r = rnncore::cross_entropy<double>(N, C, z.data(), ti.data(), {}, dz.data());
    bool zero = true;
    for (double v : dz) zero = zero && v == 0.0;
    expect(r.loss == 0.0 && r.count == 0 && zero, "all-ignored batch: loss 0, gradient 0");
  }
  std::vector<std::int64_t> bad = {1, 4, 0, 0, 0};
  expect_throw([&] { rnncore::cross_entropy<double>(N, C, z.data(), bad.data(), {}, nullptr); },
               "target out of range", "targets: class 4 at position 1");
  rnncore::CrossEntropyOptions o;
  o.label_smoothing = 1.5;
  expect_throw([&] { rnncore::cross_entropy<double>(N, C, z.data(), t.data(), o, nullptr); },
               "label_smoothing > 1", "label_smoothing");
}

void test_mse() {
  const std::int64_t N = 7;
  std::mt19937_64 gen(4);
  auto p = randn(N, gen), y = randn(N, gen);
  for (auto red : {rnncore::Reduction::kMean, rnncore::Reduction::kSum}) {
    std::vector<double> dp(N);
    rnncore::mse_loss<double>(N, p.data(), y.data(), red, 1.0, dp.data());
    auto loss = [&] { return rnncore::mse_loss<double>(N, p.data(), y.data(), red, 1.0, nullptr); };
    fd_check(p, dp, loss, "mse");
  }
}

void test_optimizers() {
  const std::int64_t P = 3;
  std::vector<double> g = {0.5, -1.0, 2.0};
  {  // SGD with momentum, dampening, weight decay, two steps, against the formulas.
    std::vector<double> p = {1.0, 2.0, -3.0}, buf(P), ref = p, rbuf(P);
    rnncore::SgdOptions o{0.1, 0.9, 0.1, 0.01, false};
    for (int s = 0; s < 2; ++s) {
      rnncore::sgd_step<double>(P, p.data(), g.data(), buf.data(), s == 0, o);
      for (int i = 0; i < P; ++i) {
        const double d = g[i] + 0.01 * ref[i];
        rbuf[i] = s == 0 ? d : 0.9 * rbuf[i] + 0.9 * d;
        ref[i] -= 0.1 * rbuf[i];
      }
    }
    for (int i = 0; i < P; ++i) expect(close(p[i], ref[i], 1e-15), "sgd momentum update");
  }
  {  // Adam, three steps.
    std::vector<double> p = {1.0, 2.0, -3.0}, m(P), v(P), ref = p, rm(P), rv(P);
    rnncore::AdamOptions o;
    o.lr = 0.01;
    for (int s = 1; s <= 3; ++s) {
      rnncore::adam_step<double>(P, p.data(), g.data(), m.data(), v.data(), nullptr, s, o);
      for (int i = 0; i < P; ++i) {
        rm[i] = 0.9 * rm[i] + 0.1 * g[i];
        rv[i] = 0.999 * rv[i] + 0.001 * g[i] * g[i];
        const double mh = rm[i] / (1 - std::pow(0.9, s)), vh = rv[i] / (1 - std::pow(0.999, s));
        ref[i] -= 0.01 * mh / (std::sqrt(vh) + 1e-8);
      }
    }
    for (int i = 0; i < P; ++i) expect(close(p[i], ref[i], 1e-13), "adam update");
  }
  std::vector<double> p = {1.0, 2.0, 3.0}, buf(P);
  expect_throw([&] { rnncore::sgd_step<double>(P, p.data(), g.data(), buf.data(), true, {-1.0}); },
               "negative lr", "lr");
  expect_throw([&] { rnncore::sgd_step<double>(P, p.data(), g.data(), nullptr, true, {0.1, 0.9}); },
               "momentum without buffer", "momentum_buf");
  rnncore::AdamOptions bad;
  bad.beta1 = 1.0;
  std::vector<double> m(P), v(P);
  auto adam_bad = [&] {
    rnncore::adam_step<double>(P, p.data(), g.data(), m.data(), v.data(), nullptr, 1, bad);
  };
  expect_throw(adam_bad, "beta1 = 1", "beta1");
}

void test_clipping() {
  std::vector<double> a = {3.0, 0.0}, b = {4.0};  // global norm 5
  std::vector<rnncore::Span<double>> bufs = {{a.data(), 2}, {b.data(), 1}};
  double n = rnncore::clip_grad_norm<double>(bufs, 10.0);
  expect(n == 5.0 && a[0] == 3.0 && b[0] == 4.0, "clip_grad_norm below max_norm leaves grads");
  n = rnncore::clip_grad_norm<double>(bufs, 5.0);
  expect(n == 5.0 && a[0] == 3.0, "clip_grad_norm at max_norm leaves grads");
  n = rnncore::clip_grad_norm<double>(bufs, 1.0);
  const double c = 1.0 / (5.0 + 1e-6);
  expect(n == 5.0 && close(a[0], 3.0 * c, 1e-15) && close(b[0], 4.0 * c, 1e-15),
         "clip_grad_norm scales by max_norm/(norm+1e-6)");
  std::vector<float> big(100000, 1.0f);  // the parallel, chunked path
  std::vector<rnncore::Span<const float>> fb = {{big.data(), std::int64_t(big.size())}};
  expect(rnncore::sum_of_squares<float>(fb) == 100000.0, "sum_of_squares over chunks");
  expect(rnncore::all_finite<float>(fb), "all_finite on finite values");
  big[77777] = std::numeric_limits<float>::quiet_NaN();
  expect(!rnncore::all_finite<float>(fb), "all_finite finds a NaN");
  big[77777] = -std::numeric_limits<float>::infinity();
  expect(!rnncore::all_finite<float>(fb), "all_finite finds -inf");
  std::vector<double> v = {-3.0, 0.5, 2.0};
  rnncore::clip_grad_value<double>({{v.data(), 3}}, 1.0);
  expect(v[0] == -1.0 && v[1] == 0.5 && v[2] == 1.0, "clip_grad_value clamps");
  expect_throw([&] { rnncore::clip_grad_norm<double>(bufs, 0.0); }, "max_norm 0", "max_norm");
  expect_throw([&] { rnncore::clip_grad_value<double>({{v.data(), 3}}, -1.0); }, "clip_value < 0",
               "clip_value");
}

// One training step of a tiny model (embedding -> linear -> cross-entropy -> clip -> Adam) through
// device_ops.h on cuda-sim's device memory, against the same step on the CPU: what a C++ program
// training on a GPU calls.
void test_device_step() {
  using rnncore::Device;
  const Device sim = Device::kCudaSim;
  const std::int64_t V = 7, E = 4, C = 5, N = 6;
  std::mt19937_64 gen(3);
  std::vector<double> emb = randn(V * E, gen), w = randn(C * E, gen), b = randn(C, gen);
  const std::vector<std::int64_t> ids = {1, 6, 0, 1, 3, 1}, targets = {0, 4, 2, -100, 1, 3};
  // Device copies (device_alloc's memory; any CUDA allocation would do on a GPU).
  auto upload = [&](const void* src, std::size_t bytes) {
    auto p = rnncore::device_alloc(sim, bytes);
    rnncore::device_copy(sim, p.get(), src, bytes, rnncore::CopyKind::kHostToDevice);
    return p;
  };
  auto download = [&](const std::shared_ptr<void>& p, std::size_t n) {
    std::vector<double> out(n);
    rnncore::device_copy(sim, out.data(), p.get(), n * sizeof(double),
                         rnncore::CopyKind::kDeviceToHost);
    return out;
  };
  std::vector<double> zeros_w(C * E), zeros_b(C), zeros_e(V * E);
  auto d_emb = upload(emb.data(), emb.size() * 8), d_w = upload(w.data(), w.size() * 8);
  auto d_ids = upload(ids.data(), ids.size() * 8), d_t = upload(targets.data(), N * 8);
  auto d_gw = upload(zeros_w.data(), C * E * 8), d_ge = upload(zeros_e.data(), V * E * 8);
  auto d_m = upload(zeros_w.data(), C * E * 8), d_v = upload(zeros_w.data(), C * E * 8);
  auto d_x = rnncore::device_alloc(sim, N * E * 8), d_z = rnncore::device_alloc(sim, N * C * 8);
  auto d_dz = rnncore::device_alloc(sim, N * C * 8), d_dx = rnncore::device_alloc(sim, N * E * 8);
  auto P = [](const std::shared_ptr<void>& p) { return static_cast<double*>(p.get()); };
  auto I = [](const std::shared_ptr<void>& p) { return static_cast<const std::int64_t*>(p.get()); };
  rnncore::CrossEntropyOptions ce;
  rnncore::AdamOptions adam;
  adam.lr = 0.01;
  // GPU device
  rnncore::embedding_forward<double>(sim, N, V, E, I(d_ids), P(d_emb), P(d_x));
  rnncore::linear_forward<double>(sim, N, E, C, P(d_x), P(d_w), nullptr, P(d_z));
  const auto loss = rnncore::cross_entropy<double>(sim, N, C, P(d_z), I(d_t), ce, P(d_dz));
  rnncore::linear_backward<double>(sim, N, E, C, P(d_dz), P(d_x), P(d_w), P(d_dx), P(d_gw),
                                   nullptr);
  rnncore::embedding_backward<double>(sim, N, V, E, I(d_ids), P(d_dx), P(d_ge));
  const double norm =
      rnncore::clip_grad_norm<double>(sim, {{P(d_gw), C * E}, {P(d_ge), V * E}}, 0.5);
  rnncore::adam_step<double>(sim, C * E, P(d_w), P(d_gw), P(d_m), P(d_v), nullptr, 1, adam);
  // CPU
  std::vector<double> x(N * E), z(N * C), dz(N * C), dx(N * E), gw(C * E), ge(V * E), m(C * E),
      v(C * E);
  rnncore::embedding_forward<double>(N, V, E, ids.data(), emb.data(), x.data());
  rnncore::linear_forward<double>(N, E, C, x.data(), w.data(), nullptr, z.data());
  const auto ref = rnncore::cross_entropy<double>(N, C, z.data(), targets.data(), ce, dz.data());
  rnncore::linear_backward<double>(N, E, C, dz.data(), x.data(), w.data(), dx.data(), gw.data(),
                                   nullptr);
  rnncore::embedding_backward<double>(N, V, E, ids.data(), dx.data(), ge.data());
  const double ref_norm =
      rnncore::clip_grad_norm<double>({{gw.data(), C * E}, {ge.data(), V * E}}, 0.5);
  rnncore::adam_step<double>(C * E, w.data(), gw.data(), m.data(), v.data(), nullptr, 1, adam);
  expect(loss.count == 5 && ref.count == 5 && close(loss.loss, ref.loss, 1e-12),
         "device cross_entropy");
  expect(close(norm, ref_norm, 1e-12), "device clip_grad_norm");
  const auto w_after = download(d_w, C * E), ge_after = download(d_ge, V * E);
  bool same = true;
  for (std::int64_t i = 0; i < C * E; ++i) same = same && close(w_after[i], w[i], 1e-12);
  for (std::int64_t i = 0; i < V * E; ++i) same = same && close(ge_after[i], ge[i], 1e-12);
  expect(same, "device step: weights and embedding gradient as the CPU's");
  // Checks run before any device work; ids are checked on the device and named.
  const std::vector<std::int64_t> bad = {0, 9};
  auto d_bad = upload(bad.data(), 16);
  expect_throw(
      [&] { rnncore::embedding_forward<double>(sim, 2, V, E, I(d_bad), P(d_emb), P(d_x)); },
      "device ids out of range", "id 9 at position 1");
  expect_throw([&] { rnncore::cross_entropy<double>(sim, 2, C, P(d_z), I(d_bad), ce, nullptr); },
               "device targets out of range", "class 9 at position 1");
  rnncore::AdamOptions bad_adam;
  bad_adam.beta2 = 1.5;
  expect_throw(
      [&] {
        rnncore::adam_step<double>(sim, C * E, P(d_w), P(d_gw), P(d_m), P(d_v), nullptr, 1,
                                   bad_adam);
      },
      "device adam beta2", "beta2");
}

}  // namespace

void test_conv1d() {
  const std::int64_t N = 2, L = 5, C = 3, O = 2, K = 3, pad = 2;
  const std::int64_t Lo = rnncore::conv1d_out_length(L, K, pad);
  std::mt19937_64 gen(5);
  auto x = randn(N * L * C, gen), W = randn(O * C * K, gen), b = randn(O, gen);
  auto R = randn(N * Lo * O, gen);
  std::vector<double> y(N * Lo * O);
  auto loss = [&] {
    rnncore::conv1d_forward<double>(N, L, C, O, K, pad, x.data(), W.data(), b.data(), y.data());
    double s = 0;
    for (std::size_t i = 0; i < y.size(); ++i) s += y[i] * R[i];
    return s;
  };
  loss();
  // The definition, written out: y[n, t, o] = b[o] + Σ W[o, c, k] x[n, t + k - pad, c].
  double worst = 0;
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t t = 0; t < Lo; ++t)
      for (std::int64_t o = 0; o < O; ++o) {
        double v = b[o];
        for (std::int64_t c = 0; c < C; ++c)
          for (std::int64_t k = 0; k < K; ++k) {
            const std::int64_t s = t + k - pad;
            if (s >= 0 && s < L) v += W[(o * C + c) * K + k] * x[(n * L + s) * C + c];
          }
        worst = std::max(worst, std::abs(v - y[(n * Lo + t) * O + o]));
      }
  expect(worst < 1e-12, "conv1d forward is the definition");
  std::vector<double> dx(N * L * C), dW(O * C * K, 0.0), db(O, 0.0);
  rnncore::conv1d_backward<double>(N, L, C, O, K, pad, R.data(), x.data(), W.data(), dx.data(),
                                   dW.data(), db.data());
  fd_check(x, dx, loss, "conv1d dx");
  fd_check(W, dW, loss, "conv1d dW");
  fd_check(b, db, loss, "conv1d db");
  expect_throw(
      [&] {
        rnncore::conv1d_forward<double>(N, 1, C, O, K, 0, x.data(), W.data(), nullptr, y.data());
      },
      "conv1d input shorter than the kernel", "shorter than kernel_size 3");
}

void test_crf() {
  const std::int64_t Tn = 3, B = 2, K = 3;
  std::mt19937_64 gen(6);
  auto e = randn(Tn * B * K, gen), tr = randn(K * K, gen), st = randn(K, gen), en = randn(K, gen);
  const std::vector<std::int64_t> lengths = {3, 2}, tags = {0, 2, 1, 1, 2, -100};
  rnncore::CrfParams<double> c;
  c.K = K;
  c.transitions = tr.data();
  c.start = st.data();
  c.end = en.data();
  // Brute force: every path of each sequence.
  double want = 0;
  std::vector<std::vector<std::int64_t>> best(B);
  for (std::int64_t b = 0; b < B; ++b) {
    const std::int64_t n = lengths[b];
    std::int64_t paths = 1;
    for (std::int64_t t = 0; t < n; ++t) paths *= K;
    double top = -1e300, sum = 0, gold = 0;
    for (std::int64_t code = 0; code < paths; ++code) {
      std::vector<std::int64_t> y(n);
      for (std::int64_t t = 0, c2 = code; t < n; ++t, c2 /= K) y[t] = c2 % K;
      double s = st[y[0]] + en[y[n - 1]];
      for (std::int64_t t = 0; t < n; ++t) s += e[(t * B + b) * K + y[t]];
      for (std::int64_t t = 1; t < n; ++t) s += tr[y[t - 1] * K + y[t]];
      sum += std::exp(s);
      bool is_gold = true;
      for (std::int64_t t = 0; t < n; ++t) is_gold = is_gold && y[t] == tags[t * B + b];
      if (is_gold) gold = s;
      if (s > top) {
        top = s;
        best[b] = y;
      }
    }
    want += std::log(sum) - gold;
  }
  const double got = rnncore::crf_nll<double>(Tn, B, c, e.data(), lengths.data(), tags.data(),
                                              nullptr, nullptr, nullptr, nullptr);
  expect(close(got, want, 1e-12), "crf nll equals brute force");
  std::vector<std::int64_t> out(Tn * B);
  rnncore::crf_viterbi<double>(Tn, B, c, e.data(), lengths.data(), out.data());
  bool same = true;
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t t = 0; t < lengths[b]; ++t) same = same && out[t * B + b] == best[b][t];
  expect(same && out[2 * B + 1] == -1, "crf viterbi equals brute force, -1 past the length");
  std::vector<std::int64_t> bad_len = {4, 1};
  expect_throw(
      [&] { rnncore::crf_viterbi<double>(Tn, B, c, e.data(), bad_len.data(), out.data()); },
      "crf length beyond T", "lengths[0] = 4");
}

int main() {
  test_embedding();
  test_linear();
  test_conv1d();
  test_crf();
  test_cross_entropy();
  test_mse();
  test_optimizers();
  test_clipping();
  test_device_step();
  if (failures) {
    std::printf("%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("all ops checks passed\n");
  return 0;
}
