// C++-only checks of the engine: finite-difference gradients of every cell, and bad-input errors.
#include <cmath>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "rnncore/recurrent.h"

using rnncore::CellType;
using rnncore::Recurrent;
using rnncore::RecurrentConfig;

namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
  if (!ok) {
    ++failures;
    std::printf("FAIL: %s\n", what.c_str());
  }
}

// loss = Σ y ⊙ Ry + Σ hn ⊙ Rh (+ Σ cn ⊙ Rc); checks d loss / d (params, x, h0, c0) by central
// differences in double precision.
void gradcheck(CellType cell, bool reset_after, const std::string& label) {
  RecurrentConfig c;
  c.cell = cell;
  c.input_size = 3;
  c.hidden_size = 4;
  c.num_layers = 2;
  c.bidirectional = true;
  c.gru_reset_after = reset_after;
  const int T = 5, B = 3, L = 2, D = 2, H = 4, I = 3;
  const bool lstm = cell == CellType::kLstm;
  Recurrent<double> net(c);
  std::mt19937_64 gen(42);
  std::normal_distribution<double> normal(0.0, 0.5);
  auto fill = [&](std::vector<double>& v) {
    for (auto& e : v) e = normal(gen);
  };
  for (std::size_t i = 0; i < net.num_params(); ++i) net.params()[i] = normal(gen);
  std::vector<double> x(T * B * I), h0(L * D * B * H), c0(L * D * B * H);
  std::vector<double> Ry(T * B * D * H), Rh(L * D * B * H), Rc(L * D * B * H);
  for (auto* v : {&x, &h0, &c0, &Ry, &Rh, &Rc}) fill(*v);
  const std::vector<std::int64_t> lengths = {5, 2, 4};
  std::vector<double> y(Ry.size()), hn(Rh.size()), cn(Rc.size());
  auto loss = [&]() {
    net.forward(T, B, x.data(), lengths.data(), h0.data(), lstm ? c0.data() : nullptr, y.data(),
                hn.data(), lstm ? cn.data() : nullptr, true);
    double s = 0;
    for (std::size_t i = 0; i < y.size(); ++i) s += y[i] * Ry[i];
    for (std::size_t i = 0; i < hn.size(); ++i) s += hn[i] * Rh[i];
    if (lstm)
      for (std::size_t i = 0; i < cn.size(); ++i) s += cn[i] * Rc[i];
    return s;
  };
  net.zero_grad();
  loss();
  std::vector<double> dx(x.size()), dh0(h0.size()), dc0(c0.size());
  net.backward(Ry.data(), Rh.data(), lstm ? Rc.data() : nullptr, dx.data(), dh0.data(),
               lstm ? dc0.data() : nullptr);
  const std::vector<double> grads(net.grads(), net.grads() + net.num_params());
  const double eps = 1e-6;
  auto check = [&](double* v, std::size_t n, const std::vector<double>& analytic,
                   const std::string& name) {
    double worst = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const double keep = v[i];
      v[i] = keep + eps;
      const double a = loss();
      v[i] = keep - eps;
      const double b = loss();
      v[i] = keep;
      worst = std::max(worst, std::abs((a - b) / (2 * eps) - analytic[i]));
    }
    expect(worst < 1e-6, label + " d" + name + " max error " + std::to_string(worst));
  };
  check(net.params(), net.num_params(), grads, "params");
  check(x.data(), x.size(), dx, "x");
  check(h0.data(), h0.size(), dh0, "h0");
  if (lstm) check(c0.data(), c0.size(), dc0, "c0");
}

template <typename F>
void expect_throw(F&& f, const std::string& what) {
  try {
    f();
  } catch (const std::exception&) {
    return;
  }
  expect(false, what + " did not throw");
}

}  // namespace

int main() {
  gradcheck(CellType::kRnnTanh, true, "RNN_TANH");
  gradcheck(CellType::kRnnRelu, true, "RNN_RELU");
  gradcheck(CellType::kLstm, true, "LSTM");
  gradcheck(CellType::kGru, true, "GRU reset-after");
  gradcheck(CellType::kGru, false, "GRU reset-before");

  RecurrentConfig bad;
  bad.input_size = 0;
  bad.hidden_size = 4;
  expect_throw([&] { Recurrent<float> r(bad); }, "input_size 0");
  RecurrentConfig ok;
  ok.input_size = 2;
  ok.hidden_size = 3;
  Recurrent<float> r(ok);
  std::vector<float> x(4 * 2 * 2), y(4 * 2 * 3), hn(2 * 3), dx(x.size());
  const std::vector<std::int64_t> too_long = {5, 1};
  expect_throw([&] { r.forward(4, 2, x.data(), too_long.data(), nullptr, nullptr, y.data(),
                               hn.data(), nullptr, true); },
               "length 5 > T=4");
  expect_throw([&] { r.backward(nullptr, nullptr, nullptr, dx.data(), nullptr, nullptr); },
               "backward before forward");
  r.forward(4, 2, x.data(), nullptr, nullptr, nullptr, y.data(), hn.data(), nullptr, false);
  expect_throw([&] { r.backward(nullptr, nullptr, nullptr, dx.data(), nullptr, nullptr); },
               "backward after an inference forward");

  std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "OK", failures);
  return failures ? 1 : 0;
}
