// Activation derivatives from saved outputs, for scalars and Eigen arrays alike; shared by the
// cells' CPU kernels (and, later, their CUDA ones).
#pragma once

#include <type_traits>

namespace rnncore {

namespace detail {
template <typename Y, typename = void>
struct ScalarOf {
  using type = Y;
};
template <typename Y>
struct ScalarOf<Y, std::void_t<typename Y::Scalar>> {
  using type = typename Y::Scalar;
};
}  // namespace detail

// The workspace keeps activated values y, so each derivative is written in terms of y.
template <typename Y>
inline auto d_sigmoid(const Y& y) {
  using T = typename detail::ScalarOf<Y>::type;
  return y * (T(1) - y);
}
template <typename Y>
inline auto d_tanh(const Y& y) {
  using T = typename detail::ScalarOf<Y>::type;
  return T(1) - y * y;
}

}  // namespace rnncore
