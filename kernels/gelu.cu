// GeLU, the tanh approximation (GPT-2/3), elementwise over n elements, forward and backward.
//
//   u        = c * (x + a * x^3),   c = sqrt(2 / pi) = 0.7978845608028654,  a = 0.044715
//   forward:  y  = 0.5 * x * (1 + tanh(u))
//   backward: dx = dy * (0.5 * (1 + tanh(u)) + 0.5 * x * (1 - tanh(u)^2) * c * (1 + 3 * a * x^2))
// shapes: x, y, dy, dx (n) of T (the FFN activation: rows x d_ff, up to 16384 x 49152 = 8e8).
// Maths in float (double for f64) with tanhf (accurate, <= 2 ulp; not tanh.approx), the same
// expression order as ref::gelu_forward / ref::gelu_backward.
//
// Launch: 256 threads, grid-stride over at most 65535 blocks. The flat range is cut into a
// scalar head up to the first 16-byte boundary, 16-byte packs, and a scalar tail, so any n and
// any offset use 128-bit accesses for the body; the tensors must share a 16-byte phase (checked;
// else all scalar). Memory-bound: 2 (forward) or 3 (backward) x n x sizeof(T) bytes.
#include "common.cuh"

namespace flopscope::kernels {

namespace {

using namespace detail;

constexpr double kGeluC = 0.7978845608028654;  // sqrt(2 / pi), = ref::kGeluC
constexpr double kGeluA = 0.044715;            // = ref::kGeluA

template <typename A>
__device__ __forceinline__ A gelu(A x) {
  const A c = static_cast<A>(kGeluC), a = static_cast<A>(kGeluA);
  return A(0.5) * x * (A(1) + tanh_acc(c * (x + a * x * x * x)));
}

template <typename A>
__device__ __forceinline__ A gelu_grad(A x) {
  const A c = static_cast<A>(kGeluC), a = static_cast<A>(kGeluA);
  const A t = tanh_acc(c * (x + a * x * x * x));
  return A(0.5) * (A(1) + t) + A(0.5) * x * (A(1) - t * t) * c * (A(1) + A(3) * a * x * x);
}

template <typename T>
__global__ void gelu_forward_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n, bool vec) {
  constexpr int N = kPack<T>;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for_each_split<T>(
      split_range(y, n, vec), tid, stride,
      [&](int64_t i) {
        const Pack<T> v = load_pack(x + i);
        Pack<T> o;
#pragma unroll
        for (int k = 0; k < N; ++k) o.v[k] = from_acc<T>(gelu(to_acc(v.v[k])));
        store_pack(y + i, o);
      },
      [&](int64_t i) { y[i] = from_acc<T>(gelu(to_acc(x[i]))); });
}

template <typename T>
__global__ void gelu_backward_kernel(const T* __restrict__ x, const T* __restrict__ dy, T* __restrict__ dx, int64_t n,
                                     bool vec) {
  constexpr int N = kPack<T>;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for_each_split<T>(
      split_range(dx, n, vec), tid, stride,
      [&](int64_t i) {
        const Pack<T> v = load_pack(x + i), d = load_pack(dy + i);
        Pack<T> o;
#pragma unroll
        for (int k = 0; k < N; ++k) o.v[k] = from_acc<T>(to_acc(d.v[k]) * gelu_grad(to_acc(v.v[k])));
        store_pack(dx + i, o);
      },
      [&](int64_t i) { dx[i] = from_acc<T>(to_acc(dy[i]) * gelu_grad(to_acc(x[i]))); });
}

}  // namespace

cudaError_t gelu_forward(DType t, const void* x, void* y, int64_t n, cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  if (!x || !y) return cudaErrorInvalidValue;
  return dispatch(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (!element_aligned<T>(x) || !element_aligned<T>(y)) return cudaErrorInvalidValue;
    const bool vec = same_phase(x, y);
    gelu_forward_kernel<T><<<flat_blocks(vec ? n / kPack<T> : n), kFlatThreads, 0, stream>>>(
        static_cast<const T*>(x), static_cast<T*>(y), n, vec);
    return cudaGetLastError();
  });
}

cudaError_t gelu_backward(DType t, const void* x, const void* dy, void* dx, int64_t n, cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  if (!x || !dy || !dx) return cudaErrorInvalidValue;
  return dispatch(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (!element_aligned<T>(x) || !element_aligned<T>(dy) || !element_aligned<T>(dx)) return cudaErrorInvalidValue;
    const bool vec = same_phase(x, dx) && same_phase(dy, dx);
    gelu_backward_kernel<T><<<flat_blocks(vec ? n / kPack<T> : n), kFlatThreads, 0, stream>>>(
        static_cast<const T*>(x), static_cast<const T*>(dy), static_cast<T*>(dx), n, vec);
    return cudaGetLastError();
  });
}

}  // namespace flopscope::kernels
