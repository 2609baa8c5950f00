// Seeded fills, the device side of src/util/random_fill.hpp:
//   fill_uniform: out_i = offset + scale * uniform_pm1(seed, stream_id, i),  i in [0, n)
//   fill_indices: out_i = min(floor(((uniform_pm1(seed, stream_id, i) + 1) / 2) * count), count - 1)
// shapes: out (n) of the dtype (fill_uniform) or int32 (fill_indices).
//
// Each value depends only on (seed, stream, i), so host and device fills agree bit for bit in
// double before rounding to the storage type: uniform_pm1 is integer hashing and exact scaling,
// and offset + scale * u is evaluated as __dadd_rn(offset, __dmul_rn(scale, u)), two roundings
// like the host's, never contracted into one fused multiply-add. The double is then rounded once
// to the storage type (round to nearest even), as static_cast<float>, __double2half and
// __double2bfloat16 do on the host. The index formula is the CPU backend's (cpu_backend.cpp):
// (u + 1) / 2 is exact, then one rounded product, truncated.
//
// Launch: one thread per element, 256 threads, grid-stride over at most 65535 blocks. The
// hash is ~20 integer operations per element, cheap next to the store; fills are not timed.
#include "common.cuh"
#include "util/random_fill.hpp"

namespace flopscope::kernels {

namespace {

using namespace detail;

template <typename T>
__device__ __forceinline__ T from_double(double v);
template <>
__device__ __forceinline__ double from_double<double>(double v) {
  return v;
}
template <>
__device__ __forceinline__ float from_double<float>(double v) {
  return __double2float_rn(v);
}
template <>
__device__ __forceinline__ __half from_double<__half>(double v) {
  return __double2half(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_double<__nv_bfloat16>(double v) {
  return __double2bfloat16(v);
}

template <typename T>
__global__ void fill_uniform_kernel(T* __restrict__ out, int64_t n, uint64_t seed, uint64_t stream_id, double offset,
                                    double scale) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const double u = uniform_pm1(seed, stream_id, static_cast<uint64_t>(i));
    out[i] = from_double<T>(__dadd_rn(offset, __dmul_rn(scale, u)));
  }
}

__global__ void fill_indices_kernel(int32_t* __restrict__ out, int64_t n, uint64_t seed, uint64_t stream_id,
                                    int64_t count) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const double u = (uniform_pm1(seed, stream_id, static_cast<uint64_t>(i)) + 1) / 2;  // [0, 1), exact
    const auto k = static_cast<int64_t>(__dmul_rn(u, static_cast<double>(count)));
    out[i] = static_cast<int32_t>(k < count - 1 ? k : count - 1);
  }
}

}  // namespace

cudaError_t fill_uniform(DType t, void* out, int64_t n, uint64_t seed, uint64_t stream_id, double offset,
                         double scale, cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  if (!out) return cudaErrorInvalidValue;
  return dispatch(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (!element_aligned<T>(out)) return cudaErrorInvalidValue;
    fill_uniform_kernel<T><<<flat_blocks(n), kFlatThreads, 0, stream>>>(static_cast<T*>(out), n, seed, stream_id,
                                                                        offset, scale);
    return cudaGetLastError();
  });
}

cudaError_t fill_indices(int32_t* out, int64_t n, uint64_t seed, uint64_t stream_id, int64_t count,
                         cudaStream_t stream) {
  // Indices must fit int32 and the range must be non-empty.
  if (n < 0 || count <= 0 || count > (int64_t{1} << 31)) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  if (!out || !element_aligned<int32_t>(out)) return cudaErrorInvalidValue;
  fill_indices_kernel<<<flat_blocks(n), kFlatThreads, 0, stream>>>(out, n, seed, stream_id, count);
  return cudaGetLastError();
}

}  // namespace flopscope::kernels
