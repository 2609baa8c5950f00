// SwiGLU's activation (Llama's MLP: down(silu(gate(x)) * up(x))), elementwise over n elements.
//
//   sigmoid(g) = 1 / (1 + exp(-g)),  silu(g) = g * sigmoid(g)
//   forward:  h  = silu(g) * u
//   backward: du = dh * silu(g)
//             dg = dh * u * sigmoid(g) * (1 + g * (1 - sigmoid(g)))
// shapes: gate, up, h, dh, dgate, dup (n) of T (the FFN width: rows x d_ff, e.g. 8192 x 14336).
// Maths in float (double for f64) with expf (accurate, not __expf), the expression order of
// ref::swiglu_forward / ref::swiglu_backward.
//
// Launch: 256 threads, grid-stride over at most 65535 blocks, scalar accesses. Memory-bound:
// 3 (forward) or 5 (backward) x n x sizeof(T) bytes.
#include "common.cuh"

namespace flopscope::kernels {

namespace {

using namespace detail;

template <typename T>
__global__ void swiglu_forward_kernel(const T* __restrict__ gate, const T* __restrict__ up, T* __restrict__ h, int64_t n) {
  using A = Acc<T>;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const A g = to_acc(gate[i]);
    h[i] = from_acc<T>(g / (A(1) + exp_acc(-g)) * to_acc(up[i]));
  }
}

template <typename T>
__global__ void swiglu_backward_kernel(const T* __restrict__ gate, const T* __restrict__ up, const T* __restrict__ dh,
                                       T* __restrict__ dgate, T* __restrict__ dup, int64_t n) {
  using A = Acc<T>;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const A g = to_acc(gate[i]), u = to_acc(up[i]), d = to_acc(dh[i]);
    const A sig = A(1) / (A(1) + exp_acc(-g));
    dup[i] = from_acc<T>(d * g * sig);
    dgate[i] = from_acc<T>(d * u * sig * (A(1) + g * (A(1) - sig)));
  }
}

}  // namespace

cudaError_t swiglu_forward(DType t, const void* gate, const void* up, void* h, int64_t n, cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  if (!gate || !up || !h) return cudaErrorInvalidValue;
  return dispatch(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (!element_aligned<T>(gate) || !element_aligned<T>(up) || !element_aligned<T>(h)) return cudaErrorInvalidValue;
    swiglu_forward_kernel<T><<<flat_blocks(n), kFlatThreads, 0, stream>>>(
        static_cast<const T*>(gate), static_cast<const T*>(up), static_cast<T*>(h), n);
    return cudaGetLastError();
  });
}

cudaError_t swiglu_backward(DType t, const void* gate, const void* up, const void* dh, void* dgate, void* dup,
                            int64_t n, cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  if (!gate || !up || !dh || !dgate || !dup) return cudaErrorInvalidValue;
  return dispatch(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    for (const void* p : {gate, up, dh, static_cast<const void*>(dgate), static_cast<const void*>(dup)})
      if (!element_aligned<T>(p)) return cudaErrorInvalidValue;
    swiglu_backward_kernel<T><<<flat_blocks(n), kFlatThreads, 0, stream>>>(
        static_cast<const T*>(gate), static_cast<const T*>(up), static_cast<const T*>(dh), static_cast<T*>(dgate),
        static_cast<T*>(dup), n);
    return cudaGetLastError();
  });
}

}  // namespace flopscope::kernels
