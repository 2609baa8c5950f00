// Seeded random fill on the device: element i of a tensor gets
// offset + scale * uniform_pm1(seed, stream, i), the same value the CPU backend computes.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

namespace flopscope::kernels {

enum class DType { f64, f32, f16, bf16 };

// out: n elements of `dtype`; asynchronous on `stream`.
cudaError_t launch_fill(void* out, DType dtype, int64_t n, uint64_t seed, uint64_t stream_id, double offset,
                        double scale, cudaStream_t stream);

}  // namespace flopscope::kernels
