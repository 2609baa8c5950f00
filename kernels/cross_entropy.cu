// Softmax cross-entropy over the vocabulary, per row (token), forward and backward.
//
//   m_r = max_j z_rj,   Z_r = sum_j exp(z_rj - m_r),   t = target_r
//   forward:  loss_r  = log(Z_r) + m_r - z_rt                         (= logsumexp(z_r) - z_rt)
//   backward: dz_rj   = (exp(z_rj - m_r) / Z_r - [j == t]) / rows     (gradient of the mean loss)
// shapes: logits, dlogits (rows, vocab) of T; targets (rows) of int32; loss (rows) of T.
// A target outside [0, vocab) gives NaN (loss_r, or the whole row of dz) so verification
// catches it instead of reading out of bounds. exp and log are expf/logf (accurate, <= 2 ulp).
//
// Launch: one block per row (rows up to 2048 * 8; grid-stride past 2^31 - 1) of 32..256
// threads. Forward: one pass, an online max-and-sum (one exp per element), one block reduction
// of the (max, sum) pair; thread 0 writes the loss. Backward: the same pass, then one pass
// writing dz (re-reading the row from L2: 50257 bf16 logits are 98 KiB).
//
// Vector width: vocab = 50257 is odd, so rows start at every 2-byte phase. Each row is cut into
// a scalar head up to its first 16-byte boundary, 16-byte packs, and a scalar tail; logits and
// dlogits must share a 16-byte phase for the packs to line up (checked; else all scalar).
#include "common.cuh"

namespace flopscope::kernels {

namespace {

using namespace detail;

// (max, sum of exp) of one row; every thread of the block gets it.
template <typename T>
__device__ __forceinline__ MaxSum<Acc<T>> row_max_sum(const T* z, int64_t vocab, bool vec) {
  using A = Acc<T>;
  constexpr int N = kPack<T>;
  MaxSum<A> st{neg_inf<A>(), A(0)};
  for_each_split<T>(
      split_range(z, vocab, vec), threadIdx.x, blockDim.x,
      [&](int64_t j) {
        const Pack<T> v = load_pack(z + j);
#pragma unroll
        for (int k = 0; k < N; ++k) online_add(st, to_acc(v.v[k]));
      },
      [&](int64_t j) { online_add(st, to_acc(z[j])); });
  return block_reduce(st, MaxSumOp{}, MaxSum<A>{neg_inf<A>(), A(0)});
}

template <typename T>
__global__ void __launch_bounds__(kMaxRowThreads)
    cross_entropy_forward_kernel(const T* __restrict__ logits, const int32_t* __restrict__ targets,
                                 T* __restrict__ loss, int64_t rows, int64_t vocab, bool vec) {
  using A = Acc<T>;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* z = logits + r * vocab;  // (vocab)
    const MaxSum<A> st = row_max_sum(z, vocab, vec);
    if (threadIdx.x == 0) {
      const int64_t t = targets[r];
      loss[r] = from_acc<T>(t >= 0 && t < vocab ? log_acc(st.s) + st.m - to_acc(z[t]) : quiet_nan<A>());
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kMaxRowThreads)
    cross_entropy_backward_kernel(const T* __restrict__ logits, const int32_t* __restrict__ targets,
                                  T* __restrict__ dlogits, int64_t rows, int64_t vocab, bool vec) {
  using A = Acc<T>;
  constexpr int N = kPack<T>;
  const A inv_rows = A(1) / static_cast<A>(rows);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* z = logits + r * vocab;  // (vocab)
    T* dz = dlogits + r * vocab;      // (vocab)
    const MaxSum<A> st = row_max_sum(z, vocab, vec);
    const int64_t t = targets[r];
    const bool valid = t >= 0 && t < vocab;
    const A inv = A(1) / st.s;
    auto grad = [&](int64_t j, T zv) {
      if (!valid) return from_acc<T>(quiet_nan<A>());
      return from_acc<T>((exp_acc(to_acc(zv) - st.m) * inv - (j == t ? A(1) : A(0))) * inv_rows);
    };
    for_each_split<T>(
        split_range(dz, vocab, vec), threadIdx.x, blockDim.x,
        [&](int64_t j) {
          const Pack<T> v = load_pack(z + j);
          Pack<T> o;
#pragma unroll
          for (int k = 0; k < N; ++k) o.v[k] = grad(j + k, v.v[k]);
          store_pack(dz + j, o);
        },
        [&](int64_t j) { dz[j] = grad(j, z[j]); });
  }
}

cudaError_t check(const void* logits, const int32_t* targets, const void* out, int64_t rows, int64_t vocab) {
  if (rows < 0 || vocab < 0 || (rows > 0 && vocab == 0)) return cudaErrorInvalidValue;  // softmax of nothing
  if (rows > 0 && (!logits || !targets || !out)) return cudaErrorInvalidValue;
  return cudaSuccess;
}

}  // namespace

cudaError_t cross_entropy_forward(DType t, const void* logits, const int32_t* targets, void* loss, int64_t rows,
                                  int64_t vocab, cudaStream_t stream) {
  if (const cudaError_t e = check(logits, targets, loss, rows, vocab); e != cudaSuccess) return e;
  if (rows == 0) return cudaSuccess;
  return dispatch(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (!element_aligned<T>(logits) || !element_aligned<T>(loss) || !element_aligned<int32_t>(targets))
      return cudaErrorInvalidValue;
    const bool vec = true;  // one tensor read in packs: its own phase
    cross_entropy_forward_kernel<T><<<row_blocks(rows), row_threads(vocab / kPack<T>), 0, stream>>>(
        static_cast<const T*>(logits), targets, static_cast<T*>(loss), rows, vocab, vec);
    return cudaGetLastError();
  });
}

cudaError_t cross_entropy_backward(DType t, const void* logits, const int32_t* targets, void* dlogits, int64_t rows,
                                   int64_t vocab, cudaStream_t stream) {
  if (const cudaError_t e = check(logits, targets, dlogits, rows, vocab); e != cudaSuccess) return e;
  if (rows == 0) return cudaSuccess;
  return dispatch(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (!element_aligned<T>(logits) || !element_aligned<T>(dlogits) || !element_aligned<int32_t>(targets))
      return cudaErrorInvalidValue;
    const bool vec = same_phase(logits, dlogits);
    cross_entropy_backward_kernel<T><<<row_blocks(rows), row_threads(vec ? vocab / kPack<T> : vocab), 0, stream>>>(
        static_cast<const T*>(logits), targets, static_cast<T*>(dlogits), rows, vocab, vec);
    return cudaGetLastError();
  });
}

}  // namespace flopscope::kernels
