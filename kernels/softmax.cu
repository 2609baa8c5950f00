// Causal softmax over the rows of each (n, n) attention-score slice, forward and backward.
//
// forward, row i of each slice (row = b * n + i) sees columns j <= i:
//   m_i  = max_{k<=i} s_ik,   z_i = sum_{k<=i} exp(s_ik - m_i)
//   p_ij = exp(s_ij - m_i) * (1 / z_i)  for j <= i;   p_ij = 0 (exact) for j > i
// backward:
//   dot_i = sum_{j<=i} p_ij * dp_ij
//   ds_ij = p_ij * (dp_ij - dot_i)      for j <= i;   ds_ij = 0 (exact) for j > i
// shapes: scores, probs, dprobs, dscores (batch, n, n) of T; the 1/sqrt(d_head) scale is
// already in the scores. Sums in float (double for f64).
//
// exp is expf (accurate: at most 2 ulp over the full range; not the fast __expf, whose error
// grows with |x| and whose gain would be hidden by memory traffic in a memory-bound kernel).
//
// Launch: one block per row, batch * n blocks (up to 96 * 8 * 8192 = 6.3e6; grid-stride past
// 2^31 - 1), 32..256 threads, about one 16-byte pack per thread for short rows. Forward makes
// two passes over a row: an online max-and-sum over the i + 1 visible scores (one exp per
// element, one block reduction of the (max, sum) pair), then a pass writing every column,
// re-reading only the visible scores (from L1/L2) and storing zeros past the diagonal without
// reading. Backward: one pass for dot (one block reduction), one writing ds. Both read only
// the lower triangle: ~half the bytes of the full square.
//
// Vector width: a row is cut into a scalar head (up to the first 16-byte boundary), 16-byte
// packs, and a scalar tail, so any n (7, 1001, ...) and any row offset work; this needs the
// tensors of one kernel at one 16-byte phase (true for cudaMalloc'd tensors; checked, else all
// scalar).
#include "common.cuh"

namespace flopscope::kernels {

namespace {

using namespace detail;

template <typename T>
__global__ void __launch_bounds__(kMaxRowThreads)
    softmax_forward_kernel(const T* __restrict__ scores, T* __restrict__ probs, int64_t rows, int64_t n, bool vec) {
  using A = Acc<T>;
  constexpr int N = kPack<T>;
  const int64_t tid = threadIdx.x, nt = blockDim.x;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t visible = row % n + 1;  // columns j <= i
    const T* s = scores + row * n;        // (n)
    T* p = probs + row * n;               // (n)

    MaxSum<A> st{neg_inf<A>(), A(0)};
    for_each_split<T>(
        split_range(s, visible, vec), tid, nt,
        [&](int64_t j) {
          const Pack<T> v = load_pack(s + j);
#pragma unroll
          for (int k = 0; k < N; ++k) online_add(st, to_acc(v.v[k]));
        },
        [&](int64_t j) { online_add(st, to_acc(s[j])); });
    st = block_reduce(st, MaxSumOp{}, MaxSum<A>{neg_inf<A>(), A(0)});
    const A inv = A(1) / st.s;

    // Same phase for s and p, so the split of [0, n) is the same for both: packs aligned in both.
    for_each_split<T>(
        split_range(p, n, vec), tid, nt,
        [&](int64_t j) {
          Pack<T> o;
          if (j >= visible) {
#pragma unroll
            for (int k = 0; k < N; ++k) o.v[k] = from_acc<T>(A(0));
          } else {
            const Pack<T> v = load_pack(s + j);
#pragma unroll
            for (int k = 0; k < N; ++k)
              o.v[k] = from_acc<T>(j + k < visible ? exp_acc(to_acc(v.v[k]) - st.m) * inv : A(0));
          }
          store_pack(p + j, o);
        },
        [&](int64_t j) { p[j] = from_acc<T>(j < visible ? exp_acc(to_acc(s[j]) - st.m) * inv : A(0)); });
  }
}

template <typename T>
__global__ void __launch_bounds__(kMaxRowThreads)
    softmax_backward_kernel(const T* __restrict__ probs, const T* __restrict__ dprobs, T* __restrict__ dscores,
                            int64_t rows, int64_t n, bool vec) {
  using A = Acc<T>;
  constexpr int N = kPack<T>;
  const int64_t tid = threadIdx.x, nt = blockDim.x;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t visible = row % n + 1;
    const T* p = probs + row * n;    // (n)
    const T* dp = dprobs + row * n;  // (n)
    T* ds = dscores + row * n;       // (n)

    A dot = 0;
    for_each_split<T>(
        split_range(p, visible, vec), tid, nt,
        [&](int64_t j) {
          const Pack<T> a = load_pack(p + j), b = load_pack(dp + j);
#pragma unroll
          for (int k = 0; k < N; ++k) dot += to_acc(a.v[k]) * to_acc(b.v[k]);
        },
        [&](int64_t j) { dot += to_acc(p[j]) * to_acc(dp[j]); });
    dot = block_reduce(dot, AddOp{}, A(0));

    for_each_split<T>(
        split_range(ds, n, vec), tid, nt,
        [&](int64_t j) {
          Pack<T> o;
          if (j >= visible) {
#pragma unroll
            for (int k = 0; k < N; ++k) o.v[k] = from_acc<T>(A(0));
          } else {
            const Pack<T> a = load_pack(p + j), b = load_pack(dp + j);
#pragma unroll
            for (int k = 0; k < N; ++k)
              o.v[k] = from_acc<T>(j + k < visible ? to_acc(a.v[k]) * (to_acc(b.v[k]) - dot) : A(0));
          }
          store_pack(ds + j, o);
        },
        [&](int64_t j) { ds[j] = from_acc<T>(j < visible ? to_acc(p[j]) * (to_acc(dp[j]) - dot) : A(0)); });
  }
}

bool check_sizes(int64_t batch, int64_t n) { return batch >= 0 && n >= 0; }

}  // namespace

cudaError_t softmax_causal_forward(DType t, const void* scores, void* probs, int64_t batch, int64_t n,
                                   cudaStream_t stream) {
  if (!check_sizes(batch, n)) return cudaErrorInvalidValue;
  if (batch == 0 || n == 0) return cudaSuccess;
  if (!scores || !probs) return cudaErrorInvalidValue;
  return dispatch(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (!element_aligned<T>(scores) || !element_aligned<T>(probs)) return cudaErrorInvalidValue;
    const bool vec = same_phase(scores, probs);
    const int64_t rows = batch * n;
    softmax_forward_kernel<T><<<row_blocks(rows), row_threads(vec ? n / kPack<T> : n), 0, stream>>>(
        static_cast<const T*>(scores), static_cast<T*>(probs), rows, n, vec);
    return cudaGetLastError();
  });
}

cudaError_t softmax_causal_backward(DType t, const void* probs, const void* dprobs, void* dscores, int64_t batch,
                                    int64_t n, cudaStream_t stream) {
  if (!check_sizes(batch, n)) return cudaErrorInvalidValue;
  if (batch == 0 || n == 0) return cudaSuccess;
  if (!probs || !dprobs || !dscores) return cudaErrorInvalidValue;
  return dispatch(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (!element_aligned<T>(probs) || !element_aligned<T>(dprobs) || !element_aligned<T>(dscores))
      return cudaErrorInvalidValue;
    const bool vec = same_phase(probs, dprobs) && same_phase(probs, dscores);
    const int64_t rows = batch * n;
    softmax_backward_kernel<T><<<row_blocks(rows), row_threads(vec ? n / kPack<T> : n), 0, stream>>>(
        static_cast<const T*>(probs), static_cast<const T*>(dprobs), static_cast<T*>(dscores), rows, n, vec);
    return cudaGetLastError();
  });
}

}  // namespace flopscope::kernels
