// One idiom for every CUDA runtime and cuBLASLt call: check it, and on failure throw a
// flopscope::Error naming the call, the file and line, and the op it served.
//
//   CUDA_CALL(cudaMalloc(&p, bytes), "allocate " + name);
//   CUBLAS_CALL(cublasLtMatmul(...), op.name);
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <string>

#include <fmt/format.h>

#include "util/error.hpp"

namespace flopscope::cuda {

[[noreturn]] inline void throw_cuda(cudaError_t e, const char* call, const char* file, int line,
                                    const std::string& context) {
  throw Error(fmt::format("{} failed: {} ({}) at {}:{}{}", call, cudaGetErrorString(e), cudaGetErrorName(e), file, line,
                          context.empty() ? "" : " [" + context + "]"));
}

[[noreturn]] inline void throw_cublas(cublasStatus_t s, const char* call, const char* file, int line,
                                      const std::string& context) {
  throw Error(fmt::format("{} failed: {} ({}) at {}:{}{}", call, cublasLtGetStatusString(s), cublasLtGetStatusName(s),
                          file, line, context.empty() ? "" : " [" + context + "]"));
}

}  // namespace flopscope::cuda

#define CUDA_CALL(expr, context)                                                                 \
  do {                                                                                           \
    const cudaError_t flopscope_err_ = (expr);                                                   \
    if (flopscope_err_ != cudaSuccess)                                                           \
      ::flopscope::cuda::throw_cuda(flopscope_err_, #expr, __FILE__, __LINE__, (context));       \
  } while (0)

#define CUBLAS_CALL(expr, context)                                                               \
  do {                                                                                           \
    const cublasStatus_t flopscope_st_ = (expr);                                                 \
    if (flopscope_st_ != CUBLAS_STATUS_SUCCESS)                                                  \
      ::flopscope::cuda::throw_cublas(flopscope_st_, #expr, __FILE__, __LINE__, (context));      \
  } while (0)
