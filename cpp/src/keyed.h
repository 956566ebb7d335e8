// Counter-based random draws keyed by position: every random mask of the engine and of the
// Python layers' Dropout is a hash of (stream, an example's index in the global batch, the
// element's position in the example), so masks depend on neither thread count, work order,
// batch size nor how a data-parallel job splits a batch.
#pragma once

#include <cstdint>

// Functions the CUDA backend's kernels call too (cpp/src/gpu): host and device under nvcc.
#if defined(__CUDACC__)
#define RNNCORE_HD __host__ __device__
#else
#define RNNCORE_HD
#endif

namespace rnncore::detail {

// splitmix64's finaliser.
RNNCORE_HD inline std::uint64_t mix64(std::uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// The stream of one example under key, by its index in the whole batch (the call's
// batch_offset + its index in the call).
RNNCORE_HD inline std::uint64_t sequence_key(std::uint64_t key, std::int64_t global_b) {
  return mix64(key ^ mix64(0x7365717565000000ULL + std::uint64_t(global_b)));
}

// Dropout's key for a seed (a stream apart from the recurrent layers').
RNNCORE_HD inline std::uint64_t dropout_key(std::uint64_t seed) {
  return mix64(seed ^ 0x64726f706f757400ULL);
}

}  // namespace rnncore::detail
