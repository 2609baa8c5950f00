#include "analytic/hardware.hpp"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

#include "util/error.hpp"

namespace flopscope {

const std::vector<GpuPeaks>& gpu_table() {
  // NVIDIA datasheets, dense figures (the sparsity figures are twice these).
  static const std::vector<GpuPeaks> table = {
      {"h200-sxm", "NVIDIA H200 SXM", 66.9, 66.9, 494.7, 989.4, 989.4, 1978.9, "NVIDIA H200 datasheet (dense)"},
      {"h100-sxm", "NVIDIA H100 SXM", 66.9, 66.9, 494.7, 989.4, 989.4, 1978.9, "NVIDIA H100 datasheet (dense)"},
      {"a100", "NVIDIA A100 SXM", 19.5, 19.5, 156, 312, 312, 0, "NVIDIA A100 datasheet (dense)"},
      {"v100", "NVIDIA V100 SXM2", 7.8, 15.7, 0, 125, 0, 0, "NVIDIA V100 datasheet"},
  };
  return table;
}

const GpuPeaks& gpu_by_id(std::string_view id) {
  std::string s(id);
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  if (s == "h200") s = "h200-sxm";
  if (s == "h100") s = "h100-sxm";
  if (s == "a100-sxm") s = "a100";
  if (s == "v100-sxm2") s = "v100";
  for (const auto& g : gpu_table())
    if (g.id == s) return g;
  std::string ids;
  for (const auto& g : gpu_table()) ids += (ids.empty() ? "" : ", ") + g.id;
  throw UsageError(fmt::format("--gpu: unknown GPU '{}'; known: {}", id, ids));
}

const GpuPeaks* gpu_by_device_name(std::string_view name) {
  auto has = [&](std::string_view part) { return name.find(part) != std::string_view::npos; };
  // PCIe and NVL parts run at lower clocks and power: their peaks differ, so we do not guess.
  if (has("PCIe") || has("NVL")) return nullptr;
  if (has("H200")) return &gpu_by_id("h200-sxm");
  if (has("H100")) return &gpu_by_id("h100-sxm");
  if (has("A100")) return &gpu_by_id("a100");
  if (has("V100")) return &gpu_by_id("v100");
  return nullptr;
}

std::optional<double> peak_tflops(const GpuPeaks& g, std::string_view dtype) {
  double v = 0;
  if (dtype == "fp64") v = g.fp64;
  else if (dtype == "fp32") v = g.fp32;
  else if (dtype == "tf32") v = g.tf32;
  else if (dtype == "fp16") v = g.fp16;
  else if (dtype == "bf16") v = g.bf16;
  else if (dtype == "fp8") v = g.fp8;
  if (v <= 0) return std::nullopt;
  return v;
}

}  // namespace flopscope
