// Activation functions and their derivatives from saved outputs, shared by CPU (and CUDA) code.
#pragma once

#include <cmath>

namespace rnncore {

template <typename T>
inline T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}
// Derivatives expressed through the activation's output y, which is what the workspace keeps.
template <typename T>
inline T d_sigmoid(T y) {
  return y * (T(1) - y);
}
template <typename T>
inline T d_tanh(T y) {
  return T(1) - y * y;
}
template <typename T>
inline T d_relu(T y) {
  return y > T(0) ? T(1) : T(0);
}

}  // namespace rnncore
