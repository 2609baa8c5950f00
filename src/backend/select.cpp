#include "backend/select.hpp"

#include <cuda_runtime_api.h>

#include <fmt/format.h>

#include "backend/cpu/cpu_backend.hpp"
#include "backend/cuda/cuda_backend.hpp"
#include "util/error.hpp"

namespace flopscope {

GpuProbe probe_gpus() {
  GpuProbe p;
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    p.error = fmt::format("cudaGetDeviceCount: {} ({})", cudaGetErrorString(err), cudaGetErrorName(err));
    return p;
  }
  p.count = count;
  if (count == 0) p.error = "cudaGetDeviceCount: 0 devices";
  return p;
}

BackendChoice choose_backend(std::string_view requested) {
  if (requested == "cpu") return {"cpu", "--backend cpu"};
  if (requested != "auto" && requested != "cuda")
    throw UsageError(fmt::format("--backend: unknown backend '{}'; choose auto, cpu or cuda", requested));
  const GpuProbe probe = probe_gpus();
  if (requested == "cuda") {
    if (probe.count == 0)
      throw UsageError(fmt::format("--backend cuda: no GPU is visible ({}); run on a GPU node or use --backend cpu",
                                   probe.error));
    return {"cuda", "--backend cuda"};
  }
  if (probe.count > 0) return {"cuda", fmt::format("auto: {} GPU(s) visible", probe.count)};
  return {"cpu", fmt::format("auto: no GPU visible ({})", probe.error)};
}

std::unique_ptr<Backend> make_backend(const BackendChoice& choice, Precision p, const CudaOptions& cuda) {
  if (choice.kind == "cpu") return make_cpu_backend(p);
  return make_cuda_backend(p, cuda);
}

}  // namespace flopscope
