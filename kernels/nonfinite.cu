// count_nonfinite: *count += #{i in [0, n) : x_i is NaN or +-infinity}; and dtype_bytes.
// shapes: x (n) of the dtype; count: one unsigned long long on the device, added to (so one
// counter can total several tensors; zero it first for a fresh count).
// f16/bf16 are widened to float, which keeps NaN and infinity (and every finite value finite).
// e4m3 (bytes) has no infinities: a code is non-finite when it is NaN, (v & 0x7F) == 0x7F.
//
// Launch: 256 threads, grid-stride over at most 65535 blocks; 16-byte loads for the body (scalar
// head up to the first 16-byte boundary, and tail). Each block reduces its count (warp
// shuffles, then shared memory) and adds it with one atomicAdd, only when non-zero.
#include "common.cuh"

namespace flopscope::kernels {

namespace {

using namespace detail;

template <typename T>
__device__ __forceinline__ unsigned long long nonfinite(T v) {
  return isfinite(to_acc(v)) ? 0ull : 1ull;
}

__device__ __forceinline__ unsigned long long nonfinite(uint8_t e4m3) { return (e4m3 & 0x7Fu) == 0x7Fu ? 1ull : 0ull; }

template <typename T>
__global__ void count_nonfinite_kernel(const T* __restrict__ x, int64_t n, unsigned long long* count) {
  constexpr int N = kPack<T>;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  unsigned long long c = 0;
  for_each_split<T>(
      split_range(x, n, true), tid, stride,
      [&](int64_t i) {
        const Pack<T> v = load_pack(x + i);
#pragma unroll
        for (int k = 0; k < N; ++k) c += nonfinite(v.v[k]);
      },
      [&](int64_t i) { c += nonfinite(x[i]); });
  c = block_reduce(c, AddOp{}, 0ull);
  if (threadIdx.x == 0 && c != 0) atomicAdd(count, c);
}

}  // namespace

cudaError_t count_nonfinite(DType t, const void* x, int64_t n, unsigned long long* count, cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  if (!x || !count) return cudaErrorInvalidValue;
  auto launch = [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (!element_aligned<T>(x) || !element_aligned<unsigned long long>(count)) return cudaErrorInvalidValue;
    count_nonfinite_kernel<T><<<flat_blocks(n / kPack<T> + 1), kFlatThreads, 0, stream>>>(static_cast<const T*>(x),
                                                                                           n, count);
    return cudaGetLastError();
  };
  if (t == DType::e4m3) return launch(Tag<uint8_t>{});
  return dispatch(t, launch);
}

size_t dtype_bytes(DType t) {
  switch (t) {
    case DType::f64: return sizeof(double);
    case DType::f32: return sizeof(float);
    case DType::f16: return sizeof(__half);
    case DType::bf16: return sizeof(__nv_bfloat16);
    case DType::e4m3: return 1;
  }
  return 0;
}

}  // namespace flopscope::kernels
