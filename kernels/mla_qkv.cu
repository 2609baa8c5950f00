// Multi-head latent attention's assembly of the attention core's qkv from its parts, and the
// backward (graph.hpp, MlaSpec; src/graph/mla.cpp).
//
// Per token row t and head h, qk = nope + rope, w = 2 qk + v:
//   forward:  qkv[t, h w + j] = q[t, h qk + j]                  j < qk
//                             = kv_b[t, h (nope + v) + j - qk]    qk <= j < qk + nope   (k_nope)
//                             = k_rope[t, j - qk - nope]          qk + nope <= j < 2 qk (shared by the heads)
//                             = kv_b[t, h (nope + v) + nope + j - 2 qk]   2 qk <= j < w  (v)
//   backward: the same slots of dqkv back into dq and dkv_b; dk_rope[t, j] = sum over h of
//             dqkv[t, h w + qk + nope + j] (heads - 1 adds, in float; double for f64).
// Copies (and one sum): memory-bound, rows x (heads (qk + nope + v + w) + rope) x sizeof(T) bytes.
//
// Launch: one thread per element of qkv (forward) or of dq, dkv_b and dk_rope (backward: a
// flat index over the three), 256 threads, grid-stride over at most 65535 blocks.
#include "common.cuh"

namespace flopscope::kernels {

namespace {

using namespace detail;

template <typename T>
__global__ void mla_qkv_fwd_kernel(const T* __restrict__ q, const T* __restrict__ kv_b, const T* __restrict__ k_rope,
                                   T* __restrict__ qkv, int64_t rows, int64_t heads, int64_t nope, int64_t rope,
                                   int64_t v) {
  const int64_t qk = nope + rope, w = 2 * qk + v, width = heads * w, n = rows * width;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const int64_t t = i / width, c = i % width, h = c / w, j = c % w;
    const T* kv = kv_b + t * heads * (nope + v) + h * (nope + v);
    T x;
    if (j < qk)
      x = q[t * heads * qk + h * qk + j];
    else if (j < qk + nope)
      x = kv[j - qk];
    else if (j < 2 * qk)
      x = k_rope[t * rope + j - qk - nope];
    else
      x = kv[nope + j - 2 * qk];
    qkv[i] = x;
  }
}

template <typename T>
__global__ void mla_qkv_bwd_kernel(const T* __restrict__ dqkv, T* __restrict__ dq, T* __restrict__ dkv_b,
                                   T* __restrict__ dk_rope, int64_t rows, int64_t heads, int64_t nope, int64_t rope,
                                   int64_t v) {
  using A = Acc<T>;
  const int64_t qk = nope + rope, w = 2 * qk + v, qw = heads * qk, kw = heads * (nope + v);
  const int64_t per_row = qw + kw + rope, n = rows * per_row;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const int64_t t = i / per_row, c = i % per_row;
    const T* g = dqkv + t * heads * w;
    if (c < qw) {
      dq[t * qw + c] = g[(c / qk) * w + c % qk];
    } else if (c < qw + kw) {
      const int64_t e = c - qw, h = e / (nope + v), j = e % (nope + v);
      dkv_b[t * kw + e] = g[h * w + (j < nope ? qk + j : 2 * qk + j - nope)];
    } else {
      const int64_t j = c - qw - kw;
      A s = to_acc(g[qk + nope + j]);
      for (int64_t h = 1; h < heads; ++h) s += to_acc(g[h * w + qk + nope + j]);
      dk_rope[t * rope + j] = from_acc<T>(s);
    }
  }
}

bool bad_dims(int64_t rows, int64_t heads, int64_t nope, int64_t rope, int64_t v) {
  return rows < 0 || heads <= 0 || nope < 0 || rope <= 0 || v <= 0;
}

}  // namespace

cudaError_t mla_qkv_forward(DType t, const void* q, const void* kv_b, const void* k_rope, void* qkv, int64_t rows,
                            int64_t heads, int64_t nope, int64_t rope, int64_t v, cudaStream_t stream) {
  if (bad_dims(rows, heads, nope, rope, v)) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  if (!q || !kv_b || !k_rope || !qkv) return cudaErrorInvalidValue;
  return dispatch(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t n = rows * heads * (2 * (nope + rope) + v);
    mla_qkv_fwd_kernel<T><<<flat_blocks(n), kFlatThreads, 0, stream>>>(
        static_cast<const T*>(q), static_cast<const T*>(kv_b), static_cast<const T*>(k_rope), static_cast<T*>(qkv),
        rows, heads, nope, rope, v);
    return cudaGetLastError();
  });
}

cudaError_t mla_qkv_backward(DType t, const void* dqkv, void* dq, void* dkv_b, void* dk_rope, int64_t rows,
                             int64_t heads, int64_t nope, int64_t rope, int64_t v, cudaStream_t stream) {
  if (bad_dims(rows, heads, nope, rope, v)) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  if (!dqkv || !dq || !dkv_b || !dk_rope) return cudaErrorInvalidValue;
  return dispatch(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t n = rows * (heads * (nope + rope) + heads * (nope + v) + rope);
    mla_qkv_bwd_kernel<T><<<flat_blocks(n), kFlatThreads, 0, stream>>>(
        static_cast<const T*>(dqkv), static_cast<T*>(dq), static_cast<T*>(dkv_b), static_cast<T*>(dk_rope), rows,
        heads, nope, rope, v);
    return cudaGetLastError();
  });
}

}  // namespace flopscope::kernels
