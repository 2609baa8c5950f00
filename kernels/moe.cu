// A mixture of experts' router and token movement (graph.hpp, MoeSpec and the moe_* ops;
// src/graph/moe.cpp). Expert ids, slots and counts are whole numbers kept as float (the
// backend's statistics storage).
//
//   route forward:  per token, the rule of moe.cuh (in double) -> experts (T, k), weights (T, k)
//                   (storage T); then per expert, its count and, scanning the T k choices in
//                   order, the slots of its copies: offset(e) + rank, experts in order and tokens
//                   in order within an expert (the CPU's stable counting sort, bit for bit).
//   route backward: per token, moe_route_backward_row -> dlogits (T, E).
//   dispatch:       xe[slots[t, j]] = x[t];   backward dx[t] = sum_j dxe[slots[t, j]]
//   combine:        y[t] = sum_j w[t, j] ye[slots[t, j]];   backward dye[slots[t, j]] = w[t, j] dy[t],
//                   dw[t, j] = dy[t] . ye[slots[t, j]]
// Sums in the accumulator type (float; double for f64).
//
// Launch: the route kernels one thread per token (64 a block; the rule's scratch in local
// memory, sized by a bound on E (with_expert_bound), E <= 512, k <= 32, n_group <= 64); the slot scan one thread per expert (a sequential pass over the
// T k choices each: simple and deterministic, not tuned); the rest one thread per element,
// 256 a block, grid-stride.
#include <type_traits>

#include "common.cuh"
#include "moe.cuh"

namespace flopscope::kernels {

namespace {

using namespace detail;

constexpr int kRouteThreads = 64;

int64_t route_blocks(int64_t rows) { return (rows + kRouteThreads - 1) / kRouteThreads; }

// The route kernels' per-thread scratch is sized by a bound on the experts (MaxE, the least of
// 8, 32, 128, 256, 512 that holds E): the driver reserves a kernel's local memory for every
// thread the GPU can hold (2048 x 132 SMs on an H100 SXM). Stack frames (ptxas -v, sm_90, bf16,
// forward / backward): 1104 / 1280 bytes for E <= 8 (Mixtral; 0.35 GB held), 3136 / 3968 for
// E <= 128 (Qwen3, gpt-oss; 1.1 GB), 5312 / 7040 for E <= 256 (DeepSeek-V3; 1.9 GB), 9664 /
// 13184 for E <= 512 (3.6 GB); with 512 for every E it was 13.7 / 17.3 KB (4.7 GB). The
// preflight does not count it (not run on a GPU yet).
template <typename F>
cudaError_t with_expert_bound(int experts, F&& f) {
  if (experts <= 8) return f(std::integral_constant<int, 8>{});
  if (experts <= 32) return f(std::integral_constant<int, 32>{});
  if (experts <= 128) return f(std::integral_constant<int, 128>{});
  if (experts <= 256) return f(std::integral_constant<int, 256>{});
  return f(std::integral_constant<int, kMoeMaxExperts>{});
}

template <typename T, int MaxE>
__global__ void moe_route_fwd_kernel(const T* __restrict__ logits, float* __restrict__ experts, T* __restrict__ weights,
                                     int64_t rows, MoeRule m) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= rows) return;
  double z[MaxE], s[MaxE], w[kMoeMaxTopK];
  unsigned char allowed[MaxE];
  int ex[kMoeMaxTopK];
  for (int e = 0; e < m.experts; ++e) z[e] = static_cast<double>(to_acc(logits[t * m.experts + e]));
  moe_route_row(z, m, s, allowed, ex, w);
  for (int j = 0; j < m.top_k; ++j) {
    experts[t * m.top_k + j] = static_cast<float>(ex[j]);
    weights[t * m.top_k + j] = from_acc<T>(static_cast<Acc<T>>(w[j]));
  }
}

// Thread e: its count, then the slots of its copies in token order.
__global__ void moe_slots_kernel(const float* __restrict__ experts, float* __restrict__ slots,
                                 float* __restrict__ counts, int64_t choices, int n_experts) {
  const int e = static_cast<int>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= n_experts) return;
  int64_t n = 0, off = 0;
  for (int64_t i = 0; i < choices; ++i) {
    const int x = static_cast<int>(experts[i]);
    n += x == e;
    off += x < e;
  }
  counts[e] = static_cast<float>(n);
  for (int64_t i = 0; i < choices; ++i)
    if (static_cast<int>(experts[i]) == e) slots[i] = static_cast<float>(off++);
}

template <typename T, int MaxE>
__global__ void moe_route_bwd_kernel(const T* __restrict__ logits, const float* __restrict__ experts,
                                     const T* __restrict__ weights, const T* __restrict__ dweights,
                                     const float* __restrict__ counts, T* __restrict__ dlogits, int64_t rows,
                                     MoeRule m) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= rows) return;
  double z[MaxE], s[MaxE], dz[MaxE], w[kMoeMaxTopK], dw[kMoeMaxTopK];
  int ex[kMoeMaxTopK];
  for (int e = 0; e < m.experts; ++e) z[e] = static_cast<double>(to_acc(logits[t * m.experts + e]));
  for (int j = 0; j < m.top_k; ++j) {
    ex[j] = static_cast<int>(experts[t * m.top_k + j]);
    w[j] = static_cast<double>(to_acc(weights[t * m.top_k + j]));
    dw[j] = static_cast<double>(to_acc(dweights[t * m.top_k + j]));
  }
  moe_route_backward_row(z, ex, w, dw, counts, rows, m, s, dz);
  for (int e = 0; e < m.experts; ++e) dlogits[t * m.experts + e] = from_acc<T>(static_cast<Acc<T>>(dz[e]));
}

__device__ __forceinline__ int64_t slot_of(const float* slots, int64_t i) { return static_cast<int64_t>(slots[i]); }

template <typename T>
__global__ void moe_dispatch_fwd_kernel(const T* __restrict__ x, const float* __restrict__ slots, T* __restrict__ xe,
                                        int64_t rows, int64_t d, int k) {
  const int64_t n = rows * k * d, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const int64_t c = i % d, tj = i / d, t = tj / k;
    xe[slot_of(slots, tj) * d + c] = x[t * d + c];
  }
}

template <typename T>
__global__ void moe_dispatch_bwd_kernel(const T* __restrict__ dxe, const float* __restrict__ slots, T* __restrict__ dx,
                                        int64_t rows, int64_t d, int k) {
  const int64_t n = rows * d, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const int64_t c = i % d, t = i / d;
    Acc<T> s = 0;
    for (int j = 0; j < k; ++j) s += to_acc(dxe[slot_of(slots, t * k + j) * d + c]);
    dx[i] = from_acc<T>(s);
  }
}

template <typename T>
__global__ void moe_combine_fwd_kernel(const T* __restrict__ ye, const T* __restrict__ w, const float* __restrict__ slots,
                                       T* __restrict__ y, int64_t rows, int64_t d, int k) {
  const int64_t n = rows * d, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const int64_t c = i % d, t = i / d;
    Acc<T> s = 0;
    for (int j = 0; j < k; ++j) s += to_acc(w[t * k + j]) * to_acc(ye[slot_of(slots, t * k + j) * d + c]);
    y[i] = from_acc<T>(s);
  }
}

template <typename T>
__global__ void moe_combine_bwd_rows_kernel(const T* __restrict__ dy, const T* __restrict__ w,
                                            const float* __restrict__ slots, T* __restrict__ dye, int64_t rows, int64_t d,
                                            int k) {
  const int64_t n = rows * k * d, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const int64_t c = i % d, tj = i / d, t = tj / k;
    dye[slot_of(slots, tj) * d + c] = from_acc<T>(to_acc(w[tj]) * to_acc(dy[t * d + c]));
  }
}

// One warp per (token, choice): dw = dy[t] . ye[slot], lanes over d, warp_reduce.
template <typename T>
__global__ void moe_combine_bwd_weights_kernel(const T* __restrict__ dy, const T* __restrict__ ye,
                                               const float* __restrict__ slots, T* __restrict__ dw, int64_t rows,
                                               int64_t d, int k) {
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = static_cast<int>(threadIdx.x % 32);
  if (warp >= rows * k) return;
  const int64_t t = warp / k, slot = slot_of(slots, warp);
  Acc<T> s = 0;
  for (int64_t c = lane; c < d; c += 32) s += to_acc(dy[t * d + c]) * to_acc(ye[slot * d + c]);
  s = warp_reduce(s, AddOp{});
  if (lane == 0) dw[warp] = from_acc<T>(s);
}

// The shared-expert gate (Qwen2-MoE): y = sigmoid(g[t]) s, one thread an element; backward ds the
// same way, dg = sigmoid'(g[t]) dy[t] . s[t] one warp a token (lanes over d, warp_reduce). In the
// accumulation type (double for f64), exp as the reference's.
template <typename T>
__device__ Acc<T> gate_sigmoid(const T* g, int64_t t) {
  return Acc<T>(1) / (Acc<T>(1) + exp(-to_acc(g[t])));
}

template <typename T>
__global__ void moe_gate_scale_kernel(const T* __restrict__ s, const T* __restrict__ g, T* __restrict__ y, int64_t rows,
                                      int64_t d) {  // y = sigmoid(g) s; backward: dy in, ds out
  const int64_t n = rows * d, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    y[i] = from_acc<T>(gate_sigmoid(g, i / d) * to_acc(s[i]));
}

template <typename T>
__global__ void moe_gate_bwd_logit_kernel(const T* __restrict__ dy, const T* __restrict__ s, const T* __restrict__ g,
                                          T* __restrict__ dg, int64_t rows, int64_t d) {
  const int64_t t = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = static_cast<int>(threadIdx.x % 32);
  if (t >= rows) return;
  Acc<T> dot = 0;
  for (int64_t c = lane; c < d; c += 32) dot += to_acc(dy[t * d + c]) * to_acc(s[t * d + c]);
  dot = warp_reduce(dot, AddOp{});
  const Acc<T> sg = gate_sigmoid(g, t);
  if (lane == 0) dg[t] = from_acc<T>(sg * (Acc<T>(1) - sg) * dot);
}

bool bad_rule(const MoeRule& m) {
  return m.experts < 1 || m.experts > kMoeMaxExperts || m.top_k < 1 || m.top_k > kMoeMaxTopK || m.top_k > m.experts ||
         m.n_group < 0 || m.n_group > kMoeMaxGroups;
}

}  // namespace

cudaError_t moe_route_forward(DType t, const void* logits, float* experts, void* weights, float* slots, float* counts,
                              int64_t rows, const detail::MoeRule& m, cudaStream_t stream) {
  if (rows < 0 || bad_rule(m)) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  if (!logits || !experts || !weights || !slots || !counts) return cudaErrorInvalidValue;
  return dispatch(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    cudaError_t e = with_expert_bound(m.experts, [&](auto bound) {
      moe_route_fwd_kernel<T, decltype(bound)::value><<<route_blocks(rows), kRouteThreads, 0, stream>>>(
          static_cast<const T*>(logits), experts, static_cast<T*>(weights), rows, m);
      return cudaGetLastError();
    });
    if (e != cudaSuccess) return e;
    moe_slots_kernel<<<(m.experts + 127) / 128, 128, 0, stream>>>(experts, slots, counts, rows * m.top_k, m.experts);
    return cudaGetLastError();
  });
}

cudaError_t moe_route_backward(DType t, const void* logits, const float* experts, const void* weights,
                               const void* dweights, const float* counts, void* dlogits, int64_t rows,
                               const detail::MoeRule& m, cudaStream_t stream) {
  if (rows < 0 || bad_rule(m)) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  if (!logits || !experts || !weights || !dweights || !counts || !dlogits) return cudaErrorInvalidValue;
  return dispatch(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return with_expert_bound(m.experts, [&](auto bound) {
      moe_route_bwd_kernel<T, decltype(bound)::value><<<route_blocks(rows), kRouteThreads, 0, stream>>>(
          static_cast<const T*>(logits), experts, static_cast<const T*>(weights), static_cast<const T*>(dweights),
          counts, static_cast<T*>(dlogits), rows, m);
      return cudaGetLastError();
    });
  });
}

cudaError_t moe_dispatch_forward(DType t, const void* x, const float* slots, void* xe, int64_t rows, int64_t d, int k,
                                 cudaStream_t stream) {
  if (rows < 0 || d <= 0 || k < 1) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  if (!x || !slots || !xe) return cudaErrorInvalidValue;
  return dispatch(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    moe_dispatch_fwd_kernel<T><<<flat_blocks(rows * k * d), kFlatThreads, 0, stream>>>(
        static_cast<const T*>(x), slots, static_cast<T*>(xe), rows, d, k);
    return cudaGetLastError();
  });
}

cudaError_t moe_dispatch_backward(DType t, const void* dxe, const float* slots, void* dx, int64_t rows, int64_t d, int k,
                                  cudaStream_t stream) {
  if (rows < 0 || d <= 0 || k < 1) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  if (!dxe || !slots || !dx) return cudaErrorInvalidValue;
  return dispatch(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    moe_dispatch_bwd_kernel<T><<<flat_blocks(rows * d), kFlatThreads, 0, stream>>>(
        static_cast<const T*>(dxe), slots, static_cast<T*>(dx), rows, d, k);
    return cudaGetLastError();
  });
}

cudaError_t moe_combine_forward(DType t, const void* ye, const void* w, const float* slots, void* y, int64_t rows,
                                int64_t d, int k, cudaStream_t stream) {
  if (rows < 0 || d <= 0 || k < 1) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  if (!ye || !w || !slots || !y) return cudaErrorInvalidValue;
  return dispatch(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    moe_combine_fwd_kernel<T><<<flat_blocks(rows * d), kFlatThreads, 0, stream>>>(
        static_cast<const T*>(ye), static_cast<const T*>(w), slots, static_cast<T*>(y), rows, d, k);
    return cudaGetLastError();
  });
}

cudaError_t moe_combine_backward(DType t, const void* dy, const void* ye, const void* w, const float* slots, void* dye,
                                 void* dw, int64_t rows, int64_t d, int k, cudaStream_t stream) {
  if (rows < 0 || d <= 0 || k < 1) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  if (!dy || !ye || !w || !slots || !dye || !dw) return cudaErrorInvalidValue;
  return dispatch(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    moe_combine_bwd_rows_kernel<T><<<flat_blocks(rows * k * d), kFlatThreads, 0, stream>>>(
        static_cast<const T*>(dy), static_cast<const T*>(w), slots, static_cast<T*>(dye), rows, d, k);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    const int64_t warps = rows * k, threads = 256;
    moe_combine_bwd_weights_kernel<T><<<(warps * 32 + threads - 1) / threads, threads, 0, stream>>>(
        static_cast<const T*>(dy), static_cast<const T*>(ye), slots, static_cast<T*>(dw), rows, d, k);
    return cudaGetLastError();
  });
}

cudaError_t moe_gate_forward(DType t, const void* s, const void* g, void* y, int64_t rows, int64_t d, cudaStream_t stream) {
  if (rows < 0 || d <= 0) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  if (!s || !g || !y) return cudaErrorInvalidValue;
  return dispatch(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    moe_gate_scale_kernel<T><<<flat_blocks(rows * d), kFlatThreads, 0, stream>>>(
        static_cast<const T*>(s), static_cast<const T*>(g), static_cast<T*>(y), rows, d);
    return cudaGetLastError();
  });
}

cudaError_t moe_gate_backward(DType t, const void* dy, const void* s, const void* g, void* ds, void* dg, int64_t rows,
                              int64_t d, cudaStream_t stream) {
  if (rows < 0 || d <= 0) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  if (!dy || !s || !g || !ds || !dg) return cudaErrorInvalidValue;
  return dispatch(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    moe_gate_scale_kernel<T><<<flat_blocks(rows * d), kFlatThreads, 0, stream>>>(
        static_cast<const T*>(dy), static_cast<const T*>(g), static_cast<T*>(ds), rows, d);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    const int64_t threads = 256;
    moe_gate_bwd_logit_kernel<T><<<(rows * 32 + threads - 1) / threads, threads, 0, stream>>>(
        static_cast<const T*>(dy), static_cast<const T*>(s), static_cast<const T*>(g), static_cast<T*>(dg), rows, d);
    return cudaGetLastError();
  });
}

}  // namespace flopscope::kernels
