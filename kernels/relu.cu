// ReLU (OPT's MLP), elementwise over n elements.
//
//   forward:  y  = max(x, 0)          (x > 0 ? x : 0; a NaN x gives 0, as ref::relu_forward)
//   backward: dx = x > 0 ? dy : 0
// shapes: x, y, dy, dx (n) of T (rows x d_ff).
//
// Launch: 256 threads, grid-stride over at most 65535 blocks, scalar accesses. Memory-bound:
// 2 (forward) or 3 (backward) x n x sizeof(T) bytes.
#include "common.cuh"

namespace flopscope::kernels {

namespace {

using namespace detail;

template <typename T>
__global__ void relu_forward_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n) {
  using A = Acc<T>;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const A v = to_acc(x[i]);
    y[i] = from_acc<T>(v > A(0) ? v : A(0));
  }
}

template <typename T>
__global__ void relu_backward_kernel(const T* __restrict__ x, const T* __restrict__ dy, T* __restrict__ dx, int64_t n) {
  using A = Acc<T>;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dx[i] = from_acc<T>(to_acc(x[i]) > A(0) ? to_acc(dy[i]) : A(0));
}

}  // namespace

cudaError_t relu_forward(DType t, const void* x, void* y, int64_t n, cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  if (!x || !y) return cudaErrorInvalidValue;
  return dispatch(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (!element_aligned<T>(x) || !element_aligned<T>(y)) return cudaErrorInvalidValue;
    relu_forward_kernel<T><<<flat_blocks(n), kFlatThreads, 0, stream>>>(static_cast<const T*>(x), static_cast<T*>(y), n);
    return cudaGetLastError();
  });
}

cudaError_t relu_backward(DType t, const void* x, const void* dy, void* dx, int64_t n, cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  if (!x || !dy || !dx) return cudaErrorInvalidValue;
  return dispatch(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (!element_aligned<T>(x) || !element_aligned<T>(dy) || !element_aligned<T>(dx)) return cudaErrorInvalidValue;
    relu_backward_kernel<T><<<flat_blocks(n), kFlatThreads, 0, stream>>>(
        static_cast<const T*>(x), static_cast<const T*>(dy), static_cast<T*>(dx), n);
    return cudaGetLastError();
  });
}

}  // namespace flopscope::kernels
