// Choosing a backend: --backend auto|cpu|cuda. auto picks CUDA when a GPU is visible and the
// CPU otherwise, and says which it picked and why.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "backend/backend.hpp"
#include "backend/cuda/cuda_backend.hpp"

namespace flopscope {

struct GpuProbe {
  int count = 0;
  std::string error;  // why none is visible (the CUDA runtime's words), when count == 0
};
// Asks the CUDA runtime how many GPUs are visible. Any CUDA error (no driver, an
// insufficient driver, no device) means none.
GpuProbe probe_gpus();

struct BackendChoice {
  std::string kind;    // "cpu" or "cuda"
  std::string reason;  // one line: why
};
// Throws UsageError for an unknown name, or for "cuda" when no GPU is visible.
BackendChoice choose_backend(std::string_view requested);

std::unique_ptr<Backend> make_backend(const BackendChoice& choice, Precision p, const CudaOptions& cuda = {});

}  // namespace flopscope
