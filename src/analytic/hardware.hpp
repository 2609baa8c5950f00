// Datasheet dense peaks per GPU and dtype, and the arithmetic that turns FLOPs into time.
// An unknown GPU or dtype has no peak: callers print n/a, never a guess.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace flopscope {

inline constexpr double kPetaflopDay = 8.64e19;  // 1 PF-day = 1e15 FLOP/s x 86400 s

struct GpuPeaks {
  std::string id;     // h100-sxm, h200-sxm, a100, v100
  std::string title;  // NVIDIA H200 SXM
  // Dense (no sparsity) tensor/FP peaks in TFLOP/s; 0 = not offered.
  double fp64 = 0, fp32 = 0, tf32 = 0, fp16 = 0, bf16 = 0, fp8 = 0;
  std::string source;
};

const std::vector<GpuPeaks>& gpu_table();
// By id (h200-sxm; aliases h200, h100, a100-sxm, ...). Throws UsageError listing the ids.
const GpuPeaks& gpu_by_id(std::string_view id);
// From a device name as CUDA reports it ("NVIDIA H200", "NVIDIA H100 80GB HBM3"); nullptr
// when the name is not one whose peaks the table knows (H100 PCIe, H200 NVL: n/a).
const GpuPeaks* gpu_by_device_name(std::string_view name);
// TFLOP/s for a dtype name (fp64, fp32, tf32, fp16, bf16, fp8); nullopt when not in the table.
std::optional<double> peak_tflops(const GpuPeaks& g, std::string_view dtype);

inline double pf_days(double flops) { return flops / kPetaflopDay; }
// Days to execute `flops` on `gpus` devices each sustaining `flops_per_s` (perfect scaling).
inline double days_on(double flops, double gpus, double flops_per_s) { return flops / (gpus * flops_per_s) / 86400.0; }

}  // namespace flopscope
