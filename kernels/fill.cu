// fill: out[i] = offset + scale * uniform_pm1(seed, stream_id, i), i in [0, n).
// One thread per element in a grid-stride loop; the value depends only on (seed, stream, i),
// so host and device fills agree bit for bit before rounding to the storage type.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels.cuh"
#include "util/random_fill.hpp"

namespace flopscope::kernels {

namespace {

template <typename T>
__device__ T from_double(double v);
template <>
__device__ double from_double<double>(double v) { return v; }
template <>
__device__ float from_double<float>(double v) { return static_cast<float>(v); }
template <>
__device__ __half from_double<__half>(double v) { return __double2half(v); }
template <>
__device__ __nv_bfloat16 from_double<__nv_bfloat16>(double v) { return __double2bfloat16(v); }

template <typename T>
__global__ void fill_kernel(T* out, int64_t n, uint64_t seed, uint64_t stream_id, double offset, double scale) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    out[i] = from_double<T>(offset + scale * uniform_pm1(seed, stream_id, static_cast<uint64_t>(i)));
  }
}

template <typename T>
cudaError_t launch(T* out, int64_t n, uint64_t seed, uint64_t stream_id, double offset, double scale, cudaStream_t s) {
  if (n <= 0) return cudaSuccess;
  constexpr int kThreads = 256;
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  const unsigned grid = static_cast<unsigned>(blocks < 65536 ? blocks : 65536);
  fill_kernel<T><<<grid, kThreads, 0, s>>>(out, n, seed, stream_id, offset, scale);
  return cudaGetLastError();
}

}  // namespace

cudaError_t fill_uniform(DType dtype, void* out, int64_t n, uint64_t seed, uint64_t stream_id, double offset,
                         double scale, cudaStream_t stream) {
  switch (dtype) {
    case DType::f64: return launch(static_cast<double*>(out), n, seed, stream_id, offset, scale, stream);
    case DType::f32: return launch(static_cast<float*>(out), n, seed, stream_id, offset, scale, stream);
    case DType::f16: return launch(static_cast<__half*>(out), n, seed, stream_id, offset, scale, stream);
    case DType::bf16: return launch(static_cast<__nv_bfloat16*>(out), n, seed, stream_id, offset, scale, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace flopscope::kernels
