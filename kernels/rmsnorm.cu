// RMSNorm over the last dimension (Llama, Mistral, Qwen: weight only, no mean), forward and backward.
//
// forward, per row r of x, with eps = 1e-5 (ref::kRmsNormEps):
//   rstd_r = 1 / sqrt(sum_j x_rj^2 / cols + eps)
//   y_rj   = x_rj * rstd_r * gamma_j
// backward, with xhat_rj = x_rj * rstd_r and g_rj = dy_rj * gamma_j:
//   dx_rj    = rstd_r * (g_rj - xhat_rj * mean_j(g_r * xhat_r))
//   dgamma_j = sum_r dy_rj * xhat_rj                                 (overwritten)
// shapes: x, y, dy, dx (rows, cols) of T; gamma, dgamma (cols) of T; rstd (rows) of Acc<T>
//         (float; double for f64).
//
// Forward and dx: one block per row (grid-stride past 2^31 - 1 rows) of 32..256 threads, one
// block reduction per row (sum of squares; sum of g * xhat), the row re-read from L1/L2 for the
// write. dgamma: a second launch, one thread per column summing its column over the rows in
// order (adjacent threads read adjacent columns: coalesced; bitwise reproducible). Scalar
// accesses throughout: simpler than layernorm.cu's 16-byte packs and its one-launch column
// reduction, and slower for it.
#include "common.cuh"

namespace flopscope::kernels {

namespace {

using namespace detail;

constexpr double kEps = 1e-5;  // ref::kRmsNormEps

template <typename T>
__global__ void __launch_bounds__(kMaxRowThreads)
    rmsnorm_forward_kernel(const T* __restrict__ x, const T* __restrict__ gamma, T* __restrict__ y,
                           Acc<T>* __restrict__ rstd, int64_t rows, int64_t cols) {
  using A = Acc<T>;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    A sq = 0;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      const A v = to_acc(xr[j]);
      sq += v * v;
    }
    sq = block_reduce(sq, AddOp{}, A(0));
    const A rs = A(1) / sqrt_acc(sq / static_cast<A>(cols) + static_cast<A>(kEps));
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) y[r * cols + j] = from_acc<T>(to_acc(xr[j]) * rs * to_acc(gamma[j]));
    if (threadIdx.x == 0) rstd[r] = rs;
  }
}

template <typename T>
__global__ void __launch_bounds__(kMaxRowThreads)
    rmsnorm_backward_dx_kernel(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ gamma,
                               const Acc<T>* __restrict__ rstd, T* __restrict__ dx, int64_t rows, int64_t cols) {
  using A = Acc<T>;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    const T* dyr = dy + r * cols;
    const A rs = rstd[r];
    A gx = 0;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) gx += to_acc(dyr[j]) * to_acc(gamma[j]) * (to_acc(xr[j]) * rs);
    gx = block_reduce(gx, AddOp{}, A(0));
    const A m = gx / static_cast<A>(cols);
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
      dx[r * cols + j] = from_acc<T>(rs * (to_acc(dyr[j]) * to_acc(gamma[j]) - to_acc(xr[j]) * rs * m));
  }
}

template <typename T>
__global__ void rmsnorm_backward_dgamma_kernel(const T* __restrict__ dy, const T* __restrict__ x,
                                               const Acc<T>* __restrict__ rstd, T* __restrict__ dgamma, int64_t rows,
                                               int64_t cols) {
  using A = Acc<T>;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < cols; j += stride) {
    A s = 0;
    for (int64_t r = 0; r < rows; ++r) s += to_acc(dy[r * cols + j]) * (to_acc(x[r * cols + j]) * rstd[r]);
    dgamma[j] = from_acc<T>(s);
  }
}

template <typename T>
bool all_aligned(std::initializer_list<const void*> ps) {
  for (const void* p : ps)
    if (!element_aligned<T>(p)) return false;
  return true;
}

}  // namespace

cudaError_t rmsnorm_forward(DType t, const void* x, const void* gamma, void* y, void* rstd, int64_t rows, int64_t cols,
                            cudaStream_t stream) {
  if (rows < 0 || cols < 0) return cudaErrorInvalidValue;
  if (rows == 0 || cols == 0) return cudaSuccess;
  if (!x || !gamma || !y || !rstd) return cudaErrorInvalidValue;
  return dispatch(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (!all_aligned<T>({x, gamma, y}) || !element_aligned<Acc<T>>(rstd)) return cudaErrorInvalidValue;
    rmsnorm_forward_kernel<T><<<row_blocks(rows), row_threads(cols), 0, stream>>>(
        static_cast<const T*>(x), static_cast<const T*>(gamma), static_cast<T*>(y), static_cast<Acc<T>*>(rstd), rows,
        cols);
    return cudaGetLastError();
  });
}

cudaError_t rmsnorm_backward(DType t, const void* dy, const void* x, const void* gamma, const void* rstd, void* dx,
                             void* dgamma, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows < 0 || cols < 0) return cudaErrorInvalidValue;
  if (rows == 0 || cols == 0) return cudaSuccess;
  if (!dy || !x || !gamma || !rstd || !dx || !dgamma) return cudaErrorInvalidValue;
  return dispatch(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (!all_aligned<T>({dy, x, gamma, dx, dgamma}) || !element_aligned<Acc<T>>(rstd)) return cudaErrorInvalidValue;
    const auto* rs = static_cast<const Acc<T>*>(rstd);
    rmsnorm_backward_dx_kernel<T><<<row_blocks(rows), row_threads(cols), 0, stream>>>(
        static_cast<const T*>(dy), static_cast<const T*>(x), static_cast<const T*>(gamma), rs, static_cast<T*>(dx), rows,
        cols);
    if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
    rmsnorm_backward_dgamma_kernel<T><<<flat_blocks(cols), kFlatThreads, 0, stream>>>(
        static_cast<const T*>(dy), static_cast<const T*>(x), rs, static_cast<T*>(dgamma), rows, cols);
    return cudaGetLastError();
  });
}

}  // namespace flopscope::kernels
