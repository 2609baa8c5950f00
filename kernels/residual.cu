// Residual add, elementwise over n elements: out_i = a_i + b_i (in float; double for f64).
// shapes: a, b, out (n) of T (the residual stream: rows x d_model). out may alias a or b:
// each element is read and written by the same thread at the same index, so no __restrict__.
//
// Launch: 256 threads, grid-stride over at most 65535 blocks; the flat range is cut into a
// scalar head up to the first 16-byte boundary, 16-byte packs, and a scalar tail (the tensors
// must share a 16-byte phase, checked; else all scalar). Memory-bound: 3 x n x sizeof(T) bytes.
#include "common.cuh"

namespace flopscope::kernels {

namespace {

using namespace detail;

template <typename T>
__global__ void residual_add_kernel(const T* a, const T* b, T* out, int64_t n, bool vec) {
  constexpr int N = kPack<T>;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for_each_split<T>(
      split_range(out, n, vec), tid, stride,
      [&](int64_t i) {
        const Pack<T> x = load_pack(a + i), y = load_pack(b + i);
        Pack<T> o;
#pragma unroll
        for (int k = 0; k < N; ++k) o.v[k] = from_acc<T>(to_acc(x.v[k]) + to_acc(y.v[k]));
        store_pack(out + i, o);
      },
      [&](int64_t i) { out[i] = from_acc<T>(to_acc(a[i]) + to_acc(b[i])); });
}

}  // namespace

cudaError_t residual_add(DType t, const void* a, const void* b, void* out, int64_t n, cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  if (!a || !b || !out) return cudaErrorInvalidValue;
  return dispatch(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (!element_aligned<T>(a) || !element_aligned<T>(b) || !element_aligned<T>(out)) return cudaErrorInvalidValue;
    const bool vec = same_phase(a, out) && same_phase(b, out);
    residual_add_kernel<T><<<flat_blocks(vec ? n / kPack<T> : n), kFlatThreads, 0, stream>>>(
        static_cast<const T*>(a), static_cast<const T*>(b), static_cast<T*>(out), n, vec);
    return cudaGetLastError();
  });
}

}  // namespace flopscope::kernels
