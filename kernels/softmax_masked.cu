// The causal softmax under a sliding window or chunks, with optional attention sinks, forward
// and backward (graph.hpp, AttentionMask; the reference is ref::softmax_masked_* in
// src/backend/cpu/reference_ops.hpp).
//
// Row i of slice b (row = b n + i) keeps the keys lo_i <= j <= i, lo_i = max(0, i - window + 1
// when window > 0, (i / chunk) chunk when chunk > 0); with sinks, z = sinks[b % heads]:
//   m = max(max_{lo<=k<=i} s_ik, z),  Z = sum_{lo<=k<=i} exp(s_ik - m) + exp(z - m)
//   p_ij = exp(s_ij - m) / Z on the kept keys, 0 (exact) elsewhere;  sink_p_i = exp(z - m) / Z
// (no sink: no z term, no sink_p). Backward:
//   dot_i = sum_{lo<=j<=i} p_ij dp_ij,  ds_ij = p_ij (dp_ij - dot_i) on the kept keys, 0 elsewhere
//   dsinks_h = -sum over the slices b with b % heads = h and their rows of sink_p_i dot_i
// shapes: scores, probs, dprobs, dscores (batch, n, n) of T; sinks, dsinks (heads) of T;
// sink_p (batch, n) of Acc<T> (the graph's statistic tensor: float, double for f64).
//
// Launch: one block per row (grid-stride), 32..256 threads, scalar accesses (no 16-byte packs:
// simpler than softmax.cu, and slower for it), one block reduction of the (max, sum) pair
// forward and of dot backward. dsinks: a second launch, one block per head, recomputing dot for
// every row of its slices in order (bitwise reproducible; it reads probs and dprobs again).
// NOT YET RUN ON A GPU: compiled only; tests/test_gpu_kernels.cpp (GpuSoftmaxMasked) compares it
// with the fp64 reference where a GPU is visible.
#include "common.cuh"

namespace flopscope::kernels {

namespace {

using namespace detail;

__host__ __device__ inline int64_t first_key(int64_t i, int64_t window, int64_t chunk) {
  int64_t lo = 0;
  if (window > 0 && i - window + 1 > lo) lo = i - window + 1;
  if (chunk > 0 && i / chunk * chunk > lo) lo = i / chunk * chunk;
  return lo;
}

template <typename T>
__global__ void __launch_bounds__(kMaxRowThreads)
    softmax_masked_forward_kernel(const T* __restrict__ scores, const T* __restrict__ sinks, T* __restrict__ probs,
                                  Acc<T>* __restrict__ sink_p, int64_t rows, int64_t n, int64_t window, int64_t chunk,
                                  int64_t heads) {
  using A = Acc<T>;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t i = row % n, lo = first_key(i, window, chunk);
    const T* s = scores + row * n;  // (n)
    T* p = probs + row * n;         // (n)
    MaxSum<A> st{neg_inf<A>(), A(0)};
    for (int64_t j = lo + threadIdx.x; j <= i; j += blockDim.x) online_add(st, to_acc(s[j]));
    if (sinks && threadIdx.x == 0) online_add(st, to_acc(sinks[(row / n) % heads]));
    st = block_reduce(st, MaxSumOp{}, MaxSum<A>{neg_inf<A>(), A(0)});
    const A inv = A(1) / st.s;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
      p[j] = from_acc<T>(j >= lo && j <= i ? exp_acc(to_acc(s[j]) - st.m) * inv : A(0));
    if (sinks && threadIdx.x == 0) sink_p[row] = exp_acc(to_acc(sinks[(row / n) % heads]) - st.m) * inv;
  }
}

template <typename T>
__device__ Acc<T> row_dot(const T* p, const T* dp, int64_t lo, int64_t i) {
  using A = Acc<T>;
  A dot = 0;
  for (int64_t j = lo + threadIdx.x; j <= i; j += blockDim.x) dot += to_acc(p[j]) * to_acc(dp[j]);
  return block_reduce(dot, AddOp{}, A(0));
}

template <typename T>
__global__ void __launch_bounds__(kMaxRowThreads)
    softmax_masked_backward_kernel(const T* __restrict__ probs, const T* __restrict__ dprobs, T* __restrict__ dscores,
                                   int64_t rows, int64_t n, int64_t window, int64_t chunk) {
  using A = Acc<T>;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t i = row % n, lo = first_key(i, window, chunk);
    const T* p = probs + row * n;
    const T* dp = dprobs + row * n;
    T* ds = dscores + row * n;
    const A dot = row_dot(p, dp, lo, i);
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
      ds[j] = from_acc<T>(j >= lo && j <= i ? to_acc(p[j]) * (to_acc(dp[j]) - dot) : A(0));
  }
}

template <typename T>
__global__ void __launch_bounds__(kMaxRowThreads)
    softmax_masked_dsinks_kernel(const T* __restrict__ probs, const T* __restrict__ dprobs,
                                 const Acc<T>* __restrict__ sink_p, T* __restrict__ dsinks, int64_t batch, int64_t n,
                                 int64_t window, int64_t chunk, int64_t heads) {
  using A = Acc<T>;
  for (int64_t h = blockIdx.x; h < heads; h += gridDim.x) {
    A dz = 0;
    for (int64_t b = h; b < batch; b += heads)
      for (int64_t i = 0; i < n; ++i) {
        const int64_t row = b * n + i;
        const A dot = row_dot(probs + row * n, dprobs + row * n, first_key(i, window, chunk), i);
        dz -= sink_p[row] * dot;
      }
    if (threadIdx.x == 0) dsinks[h] = from_acc<T>(dz);
  }
}

bool check_sizes(int64_t batch, int64_t n, int64_t window, int64_t chunk, int64_t heads) {
  return batch >= 0 && n >= 0 && window >= 0 && chunk >= 0 && heads >= 1;
}

}  // namespace

cudaError_t softmax_masked_forward(DType t, const void* scores, const void* sinks, void* probs, void* sink_probs,
                                   int64_t batch, int64_t n, int64_t window, int64_t chunk, int64_t heads,
                                   cudaStream_t stream) {
  if (!check_sizes(batch, n, window, chunk, heads) || (sinks == nullptr) != (sink_probs == nullptr))
    return cudaErrorInvalidValue;
  if (batch == 0 || n == 0) return cudaSuccess;
  if (!scores || !probs) return cudaErrorInvalidValue;
  return dispatch(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (!element_aligned<T>(scores) || !element_aligned<T>(probs) || (sinks && !element_aligned<T>(sinks)) ||
        (sink_probs && !element_aligned<Acc<T>>(sink_probs)))
      return cudaErrorInvalidValue;
    const int64_t rows = batch * n;
    softmax_masked_forward_kernel<T><<<row_blocks(rows), row_threads(n), 0, stream>>>(
        static_cast<const T*>(scores), static_cast<const T*>(sinks), static_cast<T*>(probs),
        static_cast<Acc<T>*>(sink_probs), rows, n, window, chunk, heads);
    return cudaGetLastError();
  });
}

cudaError_t softmax_masked_backward(DType t, const void* probs, const void* dprobs, const void* sink_probs,
                                    void* dscores, void* dsinks, int64_t batch, int64_t n, int64_t window,
                                    int64_t chunk, int64_t heads, cudaStream_t stream) {
  if (!check_sizes(batch, n, window, chunk, heads) || (sink_probs == nullptr) != (dsinks == nullptr))
    return cudaErrorInvalidValue;
  if (batch == 0 || n == 0) return cudaSuccess;
  if (!probs || !dprobs || !dscores) return cudaErrorInvalidValue;
  return dispatch(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (!element_aligned<T>(probs) || !element_aligned<T>(dprobs) || !element_aligned<T>(dscores) ||
        (dsinks && !element_aligned<T>(dsinks)) || (sink_probs && !element_aligned<Acc<T>>(sink_probs)))
      return cudaErrorInvalidValue;
    const int64_t rows = batch * n;
    softmax_masked_backward_kernel<T><<<row_blocks(rows), row_threads(n), 0, stream>>>(
        static_cast<const T*>(probs), static_cast<const T*>(dprobs), static_cast<T*>(dscores), rows, n, window, chunk);
    if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess || !dsinks) return e;
    softmax_masked_dsinks_kernel<T><<<row_blocks(heads), row_threads(n), 0, stream>>>(
        static_cast<const T*>(probs), static_cast<const T*>(dprobs), static_cast<const Acc<T>*>(sink_probs),
        static_cast<T*>(dsinks), batch, n, window, chunk, heads);
    return cudaGetLastError();
  });
}

}  // namespace flopscope::kernels
