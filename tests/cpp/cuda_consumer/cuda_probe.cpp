// Prints what a CUDA build of rnncore says about CUDA here, and runs an LSTM on device
// "cuda-sim" and on "cuda" when a GPU is visible (tests/test_cuda_build.py reads the output).
#include <cmath>
#include <cstdio>
#include <exception>
#include <vector>

#include "rnncore/rnncore.h"

static double run(rnncore::Device device) {
  rnncore::RecurrentConfig c;
  c.cell = rnncore::CellType::kLstm;
  c.input_size = 3;
  c.hidden_size = 4;
  c.num_layers = 2;
  c.bidirectional = true;
  c.device = device;
  rnncore::Recurrent<float> layer(c);
  for (std::size_t i = 0; i < layer.num_params(); ++i)
    layer.params()[i] = float(std::sin(double(i))) * 0.3f;
  std::vector<float> x(5 * 2 * 3), y(5 * 2 * 8), hn(4 * 2 * 4), cn(4 * 2 * 4);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = float(std::cos(double(i)));
  layer.forward(5, 2, x.data(), nullptr, nullptr, nullptr, y.data(), hn.data(), cn.data(), false);
  double s = 0.0;
  for (float v : y) s += v;
  return s;
}

int main() {
  std::printf("has_cuda %d\ndevices %d\n", int(rnncore::has_cuda()), rnncore::cuda_device_count());
  std::printf("cpu %.6f\nsim %.6f\n", run(rnncore::Device::kCpu), run(rnncore::Device::kCudaSim));
  try {
    std::printf("cuda %.6f\n", run(rnncore::Device::kCuda));
  } catch (const std::exception& e) {
    std::printf("cuda error: %s\n", e.what());
  }
  return 0;
}
