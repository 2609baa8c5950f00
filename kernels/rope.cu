// Rotary position embedding (RoPE, "rotate half" as in Hugging Face's Llama) on the query and
// key heads of the fused QKV tensor, in place, forward and backward.
//
// qkv: (rows, cols) of T, rows t = si * batch + bi (sequence-first), cols = kv_heads x
// (group + 2) x d_head: per kv group, `group` query heads, then K, then V (graph.hpp). The
// first group + 1 heads of each kv group rotate; V does not. In a rotated head, pair
// (a, b) = (x_j, x_{j + d_head/2}), j < d_head/2, at position si turns by
//   angle = si * theta^(-2j / d_head)
//   forward:  (a, b) -> (a cos - b sin, b cos + a sin)
//   backward: (a, b) -> (a cos + b sin, b cos - a sin)     (the transpose: the gradient rotated back)
// The angle, its sine and cosine are computed in double (positions up to ~1e5 radians: a float
// angle would be off by ~1e-2 rad there); the rotation itself in float (double for f64), as
// ref::rope.
//
// The index map and the rotation are in rope.cuh (__host__ __device__), which the CPU
// emulation test runs for every pair against ref::rope.
//
// rope_layout: the same rotation on the layout RopeSpec names (blocks of `block` elements, `rotated`
// heads of d_head from `offset` in each): MLA's rope part of each q head and its shared k_rope.
//
// Launch: one thread per pair, rows x kv_heads x (group + 1) x d_head/2 of them, 256 threads,
// grid-stride over at most 65535 blocks; each reads and writes its two elements. Memory-bound:
// 2 x rows x (q_dim + kv_dim) x sizeof(T) bytes.
#include "common.cuh"
#include "rope.cuh"

namespace flopscope::kernels {

namespace {

using namespace detail;

template <typename T>
__global__ void rope_kernel(T* __restrict__ x, int64_t rows, int64_t batch, int64_t blocks, int64_t rotated,
                            int64_t block, int64_t offset, int64_t cols, int64_t d_head, double theta, bool backward) {
  using A = Acc<T>;
  const int64_t pairs = rows * blocks * rotated * (d_head / 2);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < pairs; i += stride) {
    const RopePair p = rope_pair(i, batch, blocks, rotated, block, offset, cols, d_head, theta, backward);
    A a = to_acc(x[p.first]), b = to_acc(x[p.second]);
    rope_rotate(a, b, static_cast<A>(p.cos), static_cast<A>(p.sin));
    x[p.first] = from_acc<T>(a);
    x[p.second] = from_acc<T>(b);
  }
}

cudaError_t rope_launch(DType t, void* x, int64_t rows, int64_t batch, int64_t blocks, int64_t rotated, int64_t block,
                        int64_t offset, int64_t d_head, double theta, bool backward, cudaStream_t stream) {
  if (rows < 0 || batch <= 0 || blocks <= 0 || rotated <= 0 || d_head <= 0 || d_head % 2 != 0 || !(theta > 0) ||
      offset < 0 || offset + rotated * d_head > block)
    return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  if (!x) return cudaErrorInvalidValue;
  const int64_t cols = blocks * block;
  return dispatch(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (!element_aligned<T>(x)) return cudaErrorInvalidValue;
    rope_kernel<T><<<flat_blocks(rows * blocks * rotated * (d_head / 2)), kFlatThreads, 0, stream>>>(
        static_cast<T*>(x), rows, batch, blocks, rotated, block, offset, cols, d_head, theta, backward);
    return cudaGetLastError();
  });
}

cudaError_t qkv_launch(DType t, void* qkv, int64_t rows, int64_t batch, int64_t kv_heads, int64_t group,
                       int64_t d_head, double theta, bool backward, cudaStream_t stream) {
  if (group <= 0) return cudaErrorInvalidValue;
  return rope_launch(t, qkv, rows, batch, kv_heads, group + 1, (group + 2) * d_head, 0, d_head, theta, backward,
                     stream);
}

}  // namespace

cudaError_t rope_forward(DType t, void* qkv, int64_t rows, int64_t batch, int64_t kv_heads, int64_t group,
                         int64_t d_head, double theta, cudaStream_t stream) {
  return qkv_launch(t, qkv, rows, batch, kv_heads, group, d_head, theta, false, stream);
}

cudaError_t rope_backward(DType t, void* dqkv, int64_t rows, int64_t batch, int64_t kv_heads, int64_t group,
                          int64_t d_head, double theta, cudaStream_t stream) {
  return qkv_launch(t, dqkv, rows, batch, kv_heads, group, d_head, theta, true, stream);
}

cudaError_t rope_layout(DType t, void* x, int64_t rows, int64_t batch, int64_t blocks, int64_t rotated, int64_t block,
                        int64_t offset, int64_t d_head, double theta, bool backward, cudaStream_t stream) {
  return rope_launch(t, x, rows, batch, blocks, rotated, block, offset, d_head, theta, backward, stream);
}

}  // namespace flopscope::kernels
