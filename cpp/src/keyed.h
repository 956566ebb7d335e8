// Counter-based random draws keyed by position: every random mask of the engine and of the
// Python layers' Dropout is a hash of (stream, an example's index in the global batch, the
// element's position in the example), so masks depend on neither thread count, work order,
// batch size nor how a data-parallel job splits a batch.
#pragma once

#include <cstdint>

namespace rnncore::detail {

// splitmix64's finaliser.
inline std::uint64_t mix64(std::uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// The stream of one example under key, by its index in the whole batch (the call's
// batch_offset + its index in the call).
inline std::uint64_t sequence_key(std::uint64_t key, std::int64_t global_b) {
  return mix64(key ^ mix64(0x7365717565000000ULL + std::uint64_t(global_b)));
}

// Dropout's key for a seed (a stream apart from the recurrent layers').
inline std::uint64_t dropout_key(std::uint64_t seed) { return mix64(seed ^ 0x64726f706f757400ULL); }

}  // namespace rnncore::detail
