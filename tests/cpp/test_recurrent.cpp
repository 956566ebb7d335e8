// C++-only checks of the engine: finite-difference gradients of every cell, and bad-input errors.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "rnncore/backend.h"
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
void gradcheck(CellType cell, const std::string& label, int proj_size = 0,
               bool layer_norm = false) {
  RecurrentConfig c;
  c.cell = cell;
  c.layer_norm = layer_norm;
  c.input_size = 3;
  c.hidden_size = 4;
  c.num_layers = 2;
  c.bidirectional = true;
  c.proj_size = proj_size;
  const int T = 5, B = 3, L = 2, D = 2, H = 4, I = 3, R = c.state_size();
  const bool lstm = c.states() == 2;
  Recurrent<double> net(c);
  std::mt19937_64 gen(42);
  std::normal_distribution<double> normal(0.0, 0.5);
  auto fill = [&](std::vector<double>& v) {
    for (auto& e : v) e = normal(gen);
  };
  for (std::size_t i = 0; i < net.num_params(); ++i) net.params()[i] = normal(gen);
  std::vector<double> x(T * B * I), h0(L * D * B * R), c0(L * D * B * H);
  std::vector<double> Ry(T * B * D * R), Rh(L * D * B * R), Rc(L * D * B * H);
  for (auto* v : {&x, &h0, &c0, &Ry, &Rh, &Rc}) fill(*v);
  const std::vector<std::int64_t> lengths = {5, 2, 4};
  std::vector<double> y(Ry.size()), hn(Rh.size()), cn(Rc.size());
  // Only the first call keeps a context for backward; the probes after it are inference calls.
  auto loss = [&](bool training = false) {
    net.forward(T, B, x.data(), lengths.data(), h0.data(), lstm ? c0.data() : nullptr, y.data(),
                hn.data(), lstm ? cn.data() : nullptr, training);
    double s = 0;
    for (std::size_t i = 0; i < y.size(); ++i) s += y[i] * Ry[i];
    for (std::size_t i = 0; i < hn.size(); ++i) s += hn[i] * Rh[i];
    if (lstm)
      for (std::size_t i = 0; i < cn.size(); ++i) s += cn[i] * Rc[i];
    return s;
  };
  net.zero_grad();
  loss(true);
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

// Two training forwards, then two backwards (newest first): the gradients are those of two
// forward/backward pairs, for a ragged call under an in-place (no lengths) one.
void stacked_forwards(CellType cell, const std::string& label) {
  RecurrentConfig c;
  c.cell = cell;
  c.input_size = 3;
  c.hidden_size = 4;
  c.num_layers = 2;
  c.bidirectional = true;
  const int T = 4, B = 2, I = 3, DH = 8, LD = 4, H = 4;
  const bool has_c = c.states() == 2;
  Recurrent<double> net(c);
  std::mt19937_64 gen(7);
  std::normal_distribution<double> normal(0.0, 0.5);
  for (std::size_t i = 0; i < net.num_params(); ++i) net.params()[i] = normal(gen);
  std::vector<double> x1(T * B * I), x2(T * B * I), dy1(T * B * DH), dy2(T * B * DH);
  for (auto* v : {&x1, &x2, &dy1, &dy2})
    for (auto& e : *v) e = normal(gen);
  const std::vector<std::int64_t> lengths = {4, 2};
  std::vector<double> y1(T * B * DH), y2(T * B * DH), hn(LD * B * H), cn(LD * B * H);
  std::vector<double> dx1(x1.size()), dx2(x2.size()), dx1_ref(x1.size()), dx2_ref(x2.size());
  double* cnp = has_c ? cn.data() : nullptr;
  auto fwd = [&](std::vector<double>& x, const std::int64_t* lens, std::vector<double>& y) {
    net.forward(T, B, x.data(), lens, nullptr, nullptr, y.data(), hn.data(), cnp, true);
  };
  auto bwd = [&](std::vector<double>& dy, std::vector<double>& dx) {
    net.backward(dy.data(), nullptr, nullptr, dx.data(), nullptr, nullptr);
  };
  net.zero_grad();
  fwd(x1, lengths.data(), y1);
  bwd(dy1, dx1_ref);
  fwd(x2, nullptr, y2);
  bwd(dy2, dx2_ref);
  const std::vector<double> ref(net.grads(), net.grads() + net.num_params());
  net.zero_grad();
  fwd(x1, lengths.data(), y1);
  fwd(x2, nullptr, y2);
  expect(net.saved_forwards() == 2, label + ": two saved forwards");
  // Each holds at least its gates (T*B rows of G*H values per layer and direction).
  const std::size_t held = net.saved_bytes();
  expect(held >= 2 * sizeof(double) * std::size_t(T * B),
         label + ": saved_bytes counts both (" + std::to_string(held) + ")");
  bwd(dy2, dx2);
  expect(net.saved_bytes() > 0 && net.saved_bytes() < held, label + ": one forward left");
  bwd(dy1, dx1);
  expect(net.saved_bytes() == 0, label + ": saved_bytes after both backwards");
  double worst = 0;
  for (std::size_t i = 0; i < net.num_params(); ++i)
    worst = std::max(worst, std::abs(net.grads()[i] - ref[i]));
  for (std::size_t i = 0; i < x1.size(); ++i)
    worst = std::max({worst, std::abs(dx1[i] - dx1_ref[i]), std::abs(dx2[i] - dx2_ref[i])});
  expect(worst < 1e-12,
         label + ": stacked forwards' gradients (worst " + std::to_string(worst) + ")");
  expect(!net.has_saved_forward(), label + ": every forward consumed");

  // Taken out of the layer, the same two forwards backpropagate oldest first (as an autograd
  // system may order them), and a third, dropped unconsumed, frees itself.
  net.zero_grad();
  fwd(x1, lengths.data(), y1);
  rnncore::SavedForward first = net.take_saved();
  fwd(x2, nullptr, y2);
  rnncore::SavedForward second = net.take_saved();
  {
    std::vector<double> x3 = x1, y3(y1.size());
    fwd(x3, lengths.data(), y3);
    rnncore::SavedForward dropped = net.take_saved();
  }
  expect(!net.has_saved_forward() && first.shape().steps == T, label + ": taken out");
  net.restore_saved(std::move(first));
  bwd(dy1, dx1);
  net.restore_saved(std::move(second));
  bwd(dy2, dx2);
  worst = 0;
  for (std::size_t i = 0; i < net.num_params(); ++i)
    worst = std::max(worst, std::abs(net.grads()[i] - ref[i]));
  for (std::size_t i = 0; i < x1.size(); ++i)
    worst = std::max({worst, std::abs(dx1[i] - dx1_ref[i]), std::abs(dx2[i] - dx2_ref[i])});
  expect(worst < 1e-12,
         label + ": taken forwards' gradients (worst " + std::to_string(worst) + ")");
  expect(first.empty(), label + ": a restored handle is empty");
  expect_throw([&] { net.restore_saved(std::move(first)); }, label + ": restoring an empty handle");
  Recurrent<double> other(c);
  other.forward(T, B, x1.data(), nullptr, nullptr, nullptr, y1.data(), hn.data(), cnp, true);
  rnncore::SavedForward foreign = other.take_saved();
  expect_throw([&] { net.restore_saved(std::move(foreign)); }, label + ": a foreign handle");
  expect_throw([&] { net.take_saved(); }, label + ": take_saved with nothing saved");

  fwd(x1, nullptr, y1);
  net.discard_saved();
  expect_throw([&] { bwd(dy1, dx1); }, label + ": backward after discard_saved");
}

}  // namespace

// The device memory calls C++ users share with Python's DeviceArray (backend.h), on cuda-sim.
void device_memory() {
  using rnncore::CopyKind;
  using rnncore::Device;
  const Device sim = Device::kCudaSim;
  std::vector<float> host(2 * 3 * 4), back(host.size()), swapped(host.size());
  for (std::size_t i = 0; i < host.size(); ++i) host[i] = float(i);
  const std::size_t bytes = sizeof(float) * host.size();
  auto a = rnncore::device_alloc(sim, bytes), b = rnncore::device_alloc(sim, bytes);
  rnncore::device_copy(sim, a.get(), host.data(), bytes, CopyKind::kHostToDevice);
  rnncore::device_swap01(sim, b.get(), a.get(), 2, 3, 4, 4);
  rnncore::device_copy(sim, swapped.data(), b.get(), bytes, CopyKind::kDeviceToHost);
  rnncore::device_copy(sim, a.get(), b.get(), bytes, CopyKind::kDeviceToDevice);
  rnncore::device_swap01(sim, b.get(), a.get(), 3, 2, 4, 4);  // and back
  rnncore::device_copy(sim, back.data(), b.get(), bytes, CopyKind::kDeviceToHost);
  bool ok = back == host;
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 4; ++k)
        ok = ok && swapped[(j * 2 + i) * 4 + k] == host[(i * 3 + j) * 4 + k];
  expect(ok, "device_swap01 on cuda-sim");
  rnncore::device_synchronize(sim);
  expect(rnncore::device_alloc(sim, 0) == nullptr, "device_alloc of 0 bytes");
  expect_throw([&] { rnncore::device_alloc(Device::kCpu, 4); }, "device_alloc on the CPU");
  expect_throw([&] { rnncore::device_swap01(sim, b.get(), a.get(), 1, 1, 1, 2); },
               "device_swap01 of 2-byte elements");
}

int main() {
  device_memory();
  // Every registered cell, so that a new cell is checked by adding it to the registry.
  expect(rnncore::registered_cells().size() >= 5, "the registry lists the five built-in cells");
  for (const auto& cell : rnncore::registered_cells()) {
    expect(rnncore::find_cell(cell.name) == &cell, std::string("find_cell(") + cell.name + ")");
    expect(rnncore::num_gates(cell.id) == cell.gates, std::string("gates of ") + cell.name);
    gradcheck(cell.id, cell.name);
    stacked_forwards(cell.id, cell.name);
    if (cell.layer_norm) gradcheck(cell.id, std::string(cell.name) + " layer_norm", 0, true);
  }
  gradcheck(CellType::kLstm, "lstm layer_norm proj_size=3", 3, true);
  {
    RecurrentConfig ln;
    ln.input_size = 2;
    ln.hidden_size = 4;
    ln.layer_norm = true;
    ln.cell = CellType::kGruV1;
    expect_throw([&] { Recurrent<float> r(ln); }, "layer_norm on a gru_v1");
    ln.cell = CellType::kLstm;
    Recurrent<float> r(ln);
    for (const auto& p : r.param_info())
      if (p.name.rfind("ln_weight", 0) == 0)
        expect(r.params()[p.offset] == 1.0f, p.name + " starts at 1");
  }
  gradcheck(CellType::kLstm, "lstm proj_size=3", 3);
  {
    RecurrentConfig bad_proj;
    bad_proj.input_size = 2;
    bad_proj.hidden_size = 4;
    bad_proj.proj_size = 4;
    expect_throw([&] { Recurrent<float> r(bad_proj); }, "proj_size == hidden_size");
    bad_proj.proj_size = 2;
    bad_proj.cell = CellType::kGru;
    expect_throw([&] { Recurrent<float> r(bad_proj); }, "proj_size on a gru");
  }
  expect(rnncore::find_cell("no such cell") == nullptr, "find_cell of an unknown name");
  expect(rnncore::cell_info(CellType::kGruV1).gates == 3, "gru_v1 has 3 gates");

  // A build without CUDA refuses the device by name.
  RecurrentConfig on_gpu;
  on_gpu.input_size = 2;
  on_gpu.hidden_size = 3;
  on_gpu.device = rnncore::Device::kCuda;
  if (!rnncore::has_cuda()) {
    try {
      Recurrent<float> r(on_gpu);
      expect(false, "device cuda did not throw in a build without CUDA");
    } catch (const std::runtime_error& e) {
      expect(std::string(e.what()).find("CUDA") != std::string::npos,
             std::string("the cuda error names CUDA: ") + e.what());
    }
  }
  expect(rnncore::parse_device("cpu") == rnncore::Device::kCpu, "parse_device(cpu)");
  expect_throw([] { rnncore::parse_device("tpu"); }, "parse_device(tpu)");

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
  expect_throw(
      [&] {
        r.forward(4, 2, x.data(), too_long.data(), nullptr, nullptr, y.data(), hn.data(), nullptr,
                  true);
      },
      "length 5 > T=4");
  expect_throw([&] { r.backward(nullptr, nullptr, nullptr, dx.data(), nullptr, nullptr); },
               "backward before forward");
  r.forward(4, 2, x.data(), nullptr, nullptr, nullptr, y.data(), hn.data(), nullptr, false);
  expect_throw([&] { r.backward(nullptr, nullptr, nullptr, dx.data(), nullptr, nullptr); },
               "backward after an inference forward");

  std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "OK", failures);
  return failures ? 1 : 0;
}
