// QK-norm (Qwen3's q_norm/k_norm, Llama 4's L2Norm): an RMSNorm over each Q and K head of a
// qkv-shaped tensor (graph.hpp, QkNormSpec), V copied, forward and backward.
//
// A row of x (rows, kv_heads (group + 2) d_head) holds kv_heads groups of (group query heads, K,
// V); head (g, hd) starts at (g (group + 2) + hd) d_head. For the Q and K heads (hd <= group),
// with eps = 1e-5 (ref::kRmsNormEps) and gamma_q (hd < group) or gamma_k (hd = group), 1 when
// unweighted (both null):
//   forward:  rstd = 1 / sqrt(sum_j x_j^2 / d_head + eps),  y_j = x_j rstd gamma_j
//   backward: xhat = x rstd, u = dy gamma:  dx_j = rstd (u_j - xhat_j mean(u xhat))
//             dgamma_q_j = sum over rows and query heads of dy_j xhat_j (dgamma_k over K heads)
// V (hd = group + 1): y = x, dx = dy. rstd: (rows, kv_heads (group + 1)) of Acc<T>, group by group.
//
// Forward and dx: one block per (row, head) (grid-stride past 2^31 - 1), of 32..256 threads, a
// block reduction per head. dgamma: a second launch, one thread per (gamma, j), 2 d_head threads,
// summing rows then heads in order (bitwise reproducible; slow for long sequences, as
// rmsnorm.cu's column pass is).
// NOT YET RUN ON A GPU: compiled only; tests/test_gpu_kernels.cpp (GpuQkNorm) compares it with
// the fp64 reference where a GPU is visible.
#include "common.cuh"

namespace flopscope::kernels {

namespace {

using namespace detail;

constexpr double kEps = 1e-5;  // ref::kRmsNormEps

struct Layout {
  int64_t kv_heads, group, d_head;
  __host__ __device__ int64_t heads() const { return kv_heads * (group + 2); }  // heads a row, V included
  __host__ __device__ int64_t width() const { return heads() * d_head; }
  __host__ __device__ int64_t normed() const { return kv_heads * (group + 1); }
};

template <typename T>
__global__ void __launch_bounds__(kMaxRowThreads)
    qk_norm_forward_kernel(const T* __restrict__ x, const T* __restrict__ gq, const T* __restrict__ gk,
                           T* __restrict__ y, Acc<T>* __restrict__ rstd, int64_t rows, Layout l) {
  using A = Acc<T>;
  const int64_t units = rows * l.heads();
  for (int64_t u = blockIdx.x; u < units; u += gridDim.x) {
    const int64_t r = u / l.heads(), head = u % l.heads(), grp = head / (l.group + 2), hd = head % (l.group + 2);
    const T* xh = x + r * l.width() + head * l.d_head;
    T* yh = y + r * l.width() + head * l.d_head;
    if (hd == l.group + 1) {  // V: a copy
      for (int64_t j = threadIdx.x; j < l.d_head; j += blockDim.x) yh[j] = xh[j];
      continue;
    }
    const T* g = hd < l.group ? gq : gk;
    A sq = 0;
    for (int64_t j = threadIdx.x; j < l.d_head; j += blockDim.x) {
      const A v = to_acc(xh[j]);
      sq += v * v;
    }
    sq = block_reduce(sq, AddOp{}, A(0));
    const A rs = A(1) / sqrt_acc(sq / static_cast<A>(l.d_head) + static_cast<A>(kEps));
    for (int64_t j = threadIdx.x; j < l.d_head; j += blockDim.x)
      yh[j] = from_acc<T>(to_acc(xh[j]) * rs * (g ? to_acc(g[j]) : A(1)));
    if (threadIdx.x == 0) rstd[r * l.normed() + grp * (l.group + 1) + hd] = rs;
  }
}

template <typename T>
__global__ void __launch_bounds__(kMaxRowThreads)
    qk_norm_backward_dx_kernel(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ gq,
                               const T* __restrict__ gk, const Acc<T>* __restrict__ rstd, T* __restrict__ dx,
                               int64_t rows, Layout l) {
  using A = Acc<T>;
  const int64_t units = rows * l.heads();
  for (int64_t u = blockIdx.x; u < units; u += gridDim.x) {
    const int64_t r = u / l.heads(), head = u % l.heads(), grp = head / (l.group + 2), hd = head % (l.group + 2);
    const int64_t off = r * l.width() + head * l.d_head;
    if (hd == l.group + 1) {
      for (int64_t j = threadIdx.x; j < l.d_head; j += blockDim.x) dx[off + j] = dy[off + j];
      continue;
    }
    const T* g = hd < l.group ? gq : gk;
    const A rs = rstd[r * l.normed() + grp * (l.group + 1) + hd];
    A ux = 0;
    for (int64_t j = threadIdx.x; j < l.d_head; j += blockDim.x)
      ux += to_acc(dy[off + j]) * (g ? to_acc(g[j]) : A(1)) * (to_acc(x[off + j]) * rs);
    ux = block_reduce(ux, AddOp{}, A(0));
    const A m = ux / static_cast<A>(l.d_head);
    for (int64_t j = threadIdx.x; j < l.d_head; j += blockDim.x)
      dx[off + j] = from_acc<T>(rs * (to_acc(dy[off + j]) * (g ? to_acc(g[j]) : A(1)) - to_acc(x[off + j]) * rs * m));
  }
}

// Thread t < d_head: dgamma_q[t]; d_head <= t < 2 d_head: dgamma_k[t - d_head].
template <typename T>
__global__ void qk_norm_backward_dgamma_kernel(const T* __restrict__ dy, const T* __restrict__ x,
                                               const Acc<T>* __restrict__ rstd, T* __restrict__ dgq,
                                               T* __restrict__ dgk, int64_t rows, Layout l) {
  using A = Acc<T>;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < 2 * l.d_head; t += stride) {
    const bool key = t >= l.d_head;
    const int64_t j = key ? t - l.d_head : t;
    A s = 0;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t grp = 0; grp < l.kv_heads; ++grp)
        for (int64_t hd = key ? l.group : 0; hd < (key ? l.group + 1 : l.group); ++hd) {
          const int64_t at = r * l.width() + (grp * (l.group + 2) + hd) * l.d_head + j;
          s += to_acc(dy[at]) * (to_acc(x[at]) * rstd[r * l.normed() + grp * (l.group + 1) + hd]);
        }
    (key ? dgk : dgq)[j] = from_acc<T>(s);
  }
}

template <typename T>
bool all_aligned(std::initializer_list<const void*> ps) {
  for (const void* p : ps)
    if (p && !element_aligned<T>(p)) return false;
  return true;
}

bool bad_layout(int64_t rows, int64_t kv_heads, int64_t group, int64_t d_head) {
  return rows < 0 || kv_heads <= 0 || group <= 0 || d_head <= 0;
}

}  // namespace

cudaError_t qk_norm_forward(DType t, const void* x, const void* gamma_q, const void* gamma_k, void* y, void* rstd,
                            int64_t rows, int64_t kv_heads, int64_t group, int64_t d_head, cudaStream_t stream) {
  if (bad_layout(rows, kv_heads, group, d_head) || (gamma_q == nullptr) != (gamma_k == nullptr)) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  if (!x || !y || !rstd) return cudaErrorInvalidValue;
  const Layout l{kv_heads, group, d_head};
  return dispatch(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (!all_aligned<T>({x, gamma_q, gamma_k, y}) || !element_aligned<Acc<T>>(rstd)) return cudaErrorInvalidValue;
    qk_norm_forward_kernel<T><<<row_blocks(rows * l.heads()), row_threads(d_head), 0, stream>>>(
        static_cast<const T*>(x), static_cast<const T*>(gamma_q), static_cast<const T*>(gamma_k), static_cast<T*>(y),
        static_cast<Acc<T>*>(rstd), rows, l);
    return cudaGetLastError();
  });
}

cudaError_t qk_norm_backward(DType t, const void* dy, const void* x, const void* gamma_q, const void* gamma_k,
                             const void* rstd, void* dx, void* dgamma_q, void* dgamma_k, int64_t rows, int64_t kv_heads,
                             int64_t group, int64_t d_head, cudaStream_t stream) {
  const bool weighted = gamma_q != nullptr;
  if (bad_layout(rows, kv_heads, group, d_head) || (gamma_k != nullptr) != weighted ||
      (dgamma_q != nullptr) != weighted || (dgamma_k != nullptr) != weighted)
    return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  if (!dy || !x || !rstd || !dx) return cudaErrorInvalidValue;
  const Layout l{kv_heads, group, d_head};
  return dispatch(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (!all_aligned<T>({dy, x, gamma_q, gamma_k, dx, dgamma_q, dgamma_k}) || !element_aligned<Acc<T>>(rstd))
      return cudaErrorInvalidValue;
    const auto* rs = static_cast<const Acc<T>*>(rstd);
    qk_norm_backward_dx_kernel<T><<<row_blocks(rows * l.heads()), row_threads(d_head), 0, stream>>>(
        static_cast<const T*>(dy), static_cast<const T*>(x), static_cast<const T*>(gamma_q),
        static_cast<const T*>(gamma_k), rs, static_cast<T*>(dx), rows, l);
    if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess || !weighted) return e;
    qk_norm_backward_dgamma_kernel<T><<<flat_blocks(2 * d_head), kFlatThreads, 0, stream>>>(
        static_cast<const T*>(dy), static_cast<const T*>(x), rs, static_cast<T*>(dgamma_q), static_cast<T*>(dgamma_k),
        rows, l);
    return cudaGetLastError();
  });
}

}  // namespace flopscope::kernels
