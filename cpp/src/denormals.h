// Flush-to-zero / denormals-are-zero while the engine computes: see DenormalScope.
#pragma once

#include <atomic>

#if defined(__SSE__) || defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#define RNNCORE_HAS_MXCSR 1
#endif

namespace rnncore::detail {

// The engine-wide switch (rnncore::set_flush_denormals), on by default.
inline std::atomic<bool>& flush_denormals_flag() {
  static std::atomic<bool> on{true};
  return on;
}

// While alive, this thread's SSE/AVX arithmetic treats denormal inputs as zero (DAZ) and flushes
// denormal results to zero (FTZ); the thread's previous mode comes back at the end, so callers
// (Python's thread, a shared OpenMP pool) keep IEEE behaviour outside the engine. Why: a gradient
// flowing back through many steps decays into denormal floats (every many-to-one loss), and x86
// computes on those ~100x slower: measured, a T=784 LSTM backward with the loss at the last step
// took 3.6x the time of one with a loss at every step. Values below 1.2e-38 (float) or 2.2e-308
// (double) are lost, which no training signal needs. Each team thread opens its own scope (the
// mode register is per thread).
class DenormalScope {
 public:
  DenormalScope() {
#ifdef RNNCORE_HAS_MXCSR
    active_ = flush_denormals_flag().load(std::memory_order_relaxed);
    if (active_) {
      saved_ = _mm_getcsr();
      _mm_setcsr(saved_ | kFtzDaz);
    }
#endif
  }
  ~DenormalScope() {
#ifdef RNNCORE_HAS_MXCSR
    if (active_) _mm_setcsr(saved_);
#endif
  }
  DenormalScope(const DenormalScope&) = delete;
  DenormalScope& operator=(const DenormalScope&) = delete;

 private:
#ifdef RNNCORE_HAS_MXCSR
  static constexpr unsigned kFtzDaz = 0x8040;  // FTZ (bit 15) | DAZ (bit 6)
  unsigned saved_ = 0;
  bool active_ = false;
#endif
};

}  // namespace rnncore::detail
