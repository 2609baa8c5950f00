// Seeded random values shared by host and device, so the CPU and CUDA backends fill the same
// tensors with the same numbers (element i of tensor `stream` under `seed`), whatever order
// or thread count fills them. Never zeros: zero inputs hide unwritten outputs.
#pragma once

#include <cstdint>
#include <string_view>

#if defined(__CUDACC__)
#define FLOPSCOPE_HD __host__ __device__
#else
#define FLOPSCOPE_HD
#endif

namespace flopscope {

FLOPSCOPE_HD inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Uniform in [-1, 1), 53 random bits.
FLOPSCOPE_HD inline double uniform_pm1(uint64_t seed, uint64_t stream, uint64_t i) {
  const uint64_t h = splitmix64(splitmix64(seed ^ (stream * 0xD1B54A32D192ED03ull)) + i);
  return static_cast<double>(h >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0;
}

// FNV-1a of a tensor's name: its stream id.
inline uint64_t stream_id(std::string_view name) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (char c : name) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001B3ull;
  }
  return h;
}

// value = offset + scale * uniform_pm1; indices: floor(count * (u + 1) / 2).
struct FillSpec {
  double offset = 0;
  double scale = 1;
  int64_t index_count = 0;  // > 0: integer indices in [0, index_count)
};

}  // namespace flopscope
