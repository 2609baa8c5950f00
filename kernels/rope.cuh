// RoPE's index map and rotation, shared by the kernel (kernels/rope.cu) and the host emulation
// test (tests/test_kernel_emulation.cpp), which runs this code for every pair on the CPU and
// compares the result with ref::rope. __host__ __device__, no device-only calls.
#pragma once

#include <cmath>
#include <cstdint>

#include <cuda_runtime.h>

namespace flopscope::kernels::detail {

// Pair i of rows x kv_heads x (group + 1) x d_head/2 (pair index fastest, then the rotated
// head of the group, then the group, then the row): where its two elements are in the
// (rows, kv_heads (group + 2) d_head) tensor, and the cosine and sine it turns by
// (negated sine for the backward). The angle is formed and its sine and cosine taken in double.
struct RopePair {
  int64_t first, second;  // element offsets of x_j and x_{j + d_head/2}
  double cos, sin;
};

// The general layout (graph.hpp, RopeSpec): pair i of rows x blocks x rotated x d_head/2 in a
// tensor of `cols` per row, rotated head hd of block grp at grp * block + offset + hd * d_head
// (MLA's rope parts of q and k_rope).
__host__ __device__ inline RopePair rope_pair(int64_t i, int64_t batch, int64_t blocks, int64_t rotated, int64_t block,
                                              int64_t offset, int64_t cols, int64_t d_head, double theta,
                                              bool backward) {
  const int64_t half = d_head / 2;
  const int64_t j = i % half;
  int64_t q = i / half;
  const int64_t hd = q % rotated;
  q /= rotated;
  const int64_t grp = q % blocks;
  const int64_t t = q / blocks;
  const double ang = static_cast<double>(t / batch) * pow(theta, -2.0 * static_cast<double>(j) / static_cast<double>(d_head));
  double s = 0, c = 0;
  sincos(ang, &s, &c);
  const int64_t head = t * cols + grp * block + offset + hd * d_head;
  return {head + j, head + j + half, c, backward ? -s : s};
}

// The fused QKV layout: kv_heads blocks of (group + 2) heads, the first group + 1 rotated.
__host__ __device__ inline RopePair rope_pair(int64_t i, int64_t batch, int64_t kv_heads, int64_t group, int64_t d_head,
                                              double theta, bool backward) {
  const int64_t block = (group + 2) * d_head;
  return rope_pair(i, batch, kv_heads, group + 1, block, 0, kv_heads * block, d_head, theta, backward);
}

// (a, b) -> (a cos - b sin, b cos + a sin) in the accumulator type A.
template <typename A>
__host__ __device__ inline void rope_rotate(A& a, A& b, A c, A s) {
  const A a0 = a, b0 = b;
  a = a0 * c - b0 * s;
  b = b0 * c + a0 * s;
}

}  // namespace flopscope::kernels::detail
