// The CUDA backend: GEMMs through cuBLASLt (algorithm chosen per shape by timing the
// heuristic's top candidates), every other op through kernels/, time from CUDA events on one
// stream, NVTX ranges from the measurement loop. FLOPs are not counted in software here: the
// hardware counters (CUPTI) will measure them; until then results carry analytic FLOPs.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "backend/backend.hpp"

namespace flopscope {

struct CudaOptions {
  int device = 0;
  bool flush_l2 = false;  // overwrite a buffer twice the L2's size between timed repeats
  size_t gemm_workspace_bytes = size_t{32} << 20;  // cuBLASLt workspace (32 MiB, NVIDIA's advice for Hopper)
  int gemm_candidates = kDefaultGemmCandidates;  // cuBLASLt algorithms timed per GEMM shape (1: the heuristic's first)
};

// Throws UsageError when the precision is one the CUDA backend does not run.
std::unique_ptr<Backend> make_cuda_backend(Precision p, const CudaOptions& o);

// Every visible GPU: name, memory, compute capability, SMs, datasheet peaks. Empty array
// when none is visible.
nlohmann::json cuda_devices_json();

}  // namespace flopscope
