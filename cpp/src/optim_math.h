// The optimizers' per-element updates (torch.optim's formulas in torch's association order), one
// definition shared by the CPU engine's loops (ops.cpp) and the GPU kernels (gpu/ops_gpu.h), so
// that an optimizer step computes the same thing on every device.
//
// Each update is a function of the element index over raw arrays, its options as compile-time
// flags (see with_flag): a CPU loop over it has no branch inside and vectorises; a GPU kernel runs
// it once per thread.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "keyed.h"  // RNNCORE_HD
#include "rnncore/ops.h"

namespace rnncore::detail::optim {

using Index = std::int64_t;

RNNCORE_HD inline float root(float x) { return sqrtf(x); }
RNNCORE_HD inline double root(double x) { return sqrt(x); }

// f(std::true_type{}) or f(std::false_type{}): a run-time option as a compile-time one, so that
// an update loop has no branch inside and GCC vectorises it (square roots included: ops.cpp is
// built without errno semantics; see CMakeLists.txt). A loop with the options' branches inside
// stayed scalar: Adam took 4.3 ns per parameter, 0.54 ns vectorised.
template <typename F>
decltype(auto) with_flag(bool on, F&& f) {
  if (on) return f(std::true_type{});
  return f(std::false_type{});
}

// torch's lerp (aten/src/ATen/native/Lerp.h): self + w·(end - self), or from the other end when
// |w| >= 0.5 (kLow: |w| < 0.5, decided once per call), in the buffer's type.
template <bool kLow, typename T>
RNNCORE_HD inline T lerp(T self, T end, T w) {
  if constexpr (kLow) return self + w * (end - self);
  return end - (end - self) * (T(1) - w);
}

// ---- SGD (momentum, dampening, Nesterov, weight decay) --------------------------------------
template <typename T>
struct SgdConstants {
  T lr, wd, mom, damp;
  bool use_wd, use_mom, nesterov, first_step;
};

template <typename T>
SgdConstants<T> sgd_constants(const SgdOptions& o, bool first_step) {
  return {T(o.lr),
          T(o.weight_decay),
          T(o.momentum),
          T(1.0 - o.dampening),
          o.weight_decay != 0.0,
          o.momentum != 0.0,
          o.nesterov,
          first_step};
}

template <typename T>
RNNCORE_HD inline void sgd_element(Index i, T* p, const T* grad, T* buf, const SgdConstants<T>& c) {
  T g = grad[i];
  if (c.use_wd) g = g + c.wd * p[i];
  if (c.use_mom) {
    const T b = c.first_step ? g : buf[i] * c.mom + c.damp * g;
    buf[i] = b;
    g = c.nesterov ? g + c.mom * b : b;
  }
  p[i] = p[i] + (-c.lr) * g;
}

// ---- Adam / AdamW / AMSGrad -----------------------------------------------------------------
template <typename T>
struct AdamConstants {
  T wd, decay, w1, beta2, w2, neg_step_size, bc2_sqrt, eps;
};

// The per-call scalars, computed in double and cast as torch does; `step` counts from 1.
template <typename T>
AdamConstants<T> adam_constants(const AdamOptions& o, std::int64_t step) {
  const double bc1 = 1.0 - std::pow(o.beta1, static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(o.beta2, static_cast<double>(step));
  return {T(o.weight_decay), T(1.0 - o.lr * o.weight_decay),
          T(1.0 - o.beta1),  T(o.beta2),
          T(1.0 - o.beta2),  T(-(o.lr / bc1)),
          T(std::sqrt(bc2)), T(o.eps)};
}

template <bool kCoupledWd, bool kDecoupledWd, bool kAmsgrad, bool kLowLerp, typename T>
RNNCORE_HD inline void adam_element(Index i, T* __restrict__ p, const T* __restrict__ g0,
                                    T* __restrict__ m, T* __restrict__ v, T* __restrict__ vmax,
                                    const AdamConstants<T>& c) {
  T pi = p[i], g = g0[i];
  if constexpr (kCoupledWd) g = g + c.wd * pi;
  if constexpr (kDecoupledWd) pi = pi * c.decay;
  const T mi = lerp<kLowLerp>(m[i], g, c.w1);
  const T vi = v[i] * c.beta2 + c.w2 * g * g;
  m[i] = mi;
  v[i] = vi;
  T vhat = vi;
  if constexpr (kAmsgrad) {
    vhat = vmax[i] < vi ? vi : vmax[i];  // std::max's choice
    vmax[i] = vhat;
  }
  p[i] = pi + c.neg_step_size * (mi / (root(vhat) / c.bc2_sqrt + c.eps));
}

// f(flags...) with Adam's four options as compile-time flags.
template <typename T, typename F>
void with_adam_flags(const AdamOptions& o, bool amsgrad, const AdamConstants<T>& c, F&& f) {
  const bool use_wd = o.weight_decay != 0.0, decoupled = o.decoupled_weight_decay;
  with_flag(use_wd && !decoupled, [&](auto coupled) {
    with_flag(use_wd && decoupled, [&](auto decay_p) {
      with_flag(amsgrad, [&](auto ams) {
        with_flag(c.w1 < T(0.5) && c.w1 > T(-0.5),
                  [&](auto low) { f(coupled, decay_p, ams, low); });
      });
    });
  });
}

// ---- Adadelta -------------------------------------------------------------------------------
template <typename T>
struct AdadeltaConstants {
  T lr, rho, w, eps, wd;
};

template <typename T>
AdadeltaConstants<T> adadelta_constants(const AdadeltaOptions& o) {
  return {T(o.lr), T(o.rho), T(1.0 - o.rho), T(o.eps), T(o.weight_decay)};
}

template <bool kWd, typename T>
RNNCORE_HD inline void adadelta_element(Index i, T* __restrict__ p, const T* __restrict__ g0,
                                        T* __restrict__ sq, T* __restrict__ acc,
                                        const AdadeltaConstants<T>& c) {
  T g = g0[i];
  if constexpr (kWd) g = g + c.wd * p[i];
  const T si = sq[i] * c.rho + c.w * g * g;
  sq[i] = si;
  const T delta = root(acc[i] + c.eps) / root(si + c.eps) * g;
  acc[i] = acc[i] * c.rho + c.w * delta * delta;
  p[i] = p[i] - c.lr * delta;
}

// ---- RMSprop --------------------------------------------------------------------------------
template <typename T>
struct RmspropConstants {
  T wd, alpha, w, eps, mom, lr;
};

template <typename T>
RmspropConstants<T> rmsprop_constants(const RmspropOptions& o) {
  return {T(o.weight_decay), T(o.alpha), T(1.0 - o.alpha), T(o.eps), T(o.momentum), T(o.lr)};
}

template <bool kWd, bool kCentered, bool kMomentum, bool kLowLerp, typename T>
RNNCORE_HD inline void rmsprop_element(Index i, T* __restrict__ p, const T* __restrict__ g0,
                                       T* __restrict__ sq, T* __restrict__ ga, T* __restrict__ buf,
                                       const RmspropConstants<T>& c) {
  T g = g0[i];
  if constexpr (kWd) g = g + c.wd * p[i];
  const T s2 = sq[i] * c.alpha + c.w * g * g;
  sq[i] = s2;
  T avg;
  if constexpr (kCentered) {
    const T gai = lerp<kLowLerp>(ga[i], g, c.w);
    ga[i] = gai;
    avg = root(s2 + T(-1) * gai * gai);
  } else {
    avg = root(s2);
  }
  avg = avg + c.eps;
  if constexpr (kMomentum) {
    const T b = buf[i] * c.mom + g / avg;
    buf[i] = b;
    p[i] = p[i] + (-c.lr) * b;
  } else {
    p[i] = p[i] + (-c.lr) * (g / avg);
  }
}

// f(flags...) with RMSprop's four options as compile-time flags.
template <typename T, typename F>
void with_rmsprop_flags(const RmspropOptions& o, const RmspropConstants<T>& c, F&& f) {
  with_flag(o.weight_decay != 0.0, [&](auto decayed) {
    with_flag(o.centered, [&](auto centred) {
      with_flag(o.momentum > 0.0, [&](auto momentum) {
        with_flag(c.w < T(0.5) && c.w > T(-0.5),
                  [&](auto low) { f(decayed, centred, momentum, low); });
      });
    });
  });
}

// ---- Adagrad --------------------------------------------------------------------------------
template <typename T>
struct AdagradConstants {
  T neg_clr, eps, wd;
};

template <typename T>
AdagradConstants<T> adagrad_constants(const AdagradOptions& o, std::int64_t step) {
  const double clr = o.lr / (1.0 + static_cast<double>(step - 1) * o.lr_decay);
  return {T(-clr), T(o.eps), T(o.weight_decay)};
}

template <bool kWd, typename T>
RNNCORE_HD inline void adagrad_element(Index i, T* __restrict__ p, const T* __restrict__ g0,
                                       T* __restrict__ sum, const AdagradConstants<T>& c) {
  T g = g0[i];
  if constexpr (kWd) g = g + c.wd * p[i];
  const T si = sum[i] + T(1) * g * g;
  sum[i] = si;
  p[i] = p[i] + c.neg_clr * (g / (root(si) + c.eps));
}

// ---- Clipping by value ----------------------------------------------------------------------
template <typename T>
RNNCORE_HD inline T clamp_value(T v, T lo, T hi) {
  return v < lo ? lo : (v > hi ? hi : v);  // NaN compares false both ways: stays NaN
}

}  // namespace rnncore::detail::optim
