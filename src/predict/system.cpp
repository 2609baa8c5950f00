#include "predict/system.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "analytic/hardware.hpp"
#include "util/atomic_file.hpp"
#include "util/error.hpp"

namespace flopscope::predict {

using nlohmann::json;

double SystemProfile::peak_tflops(std::string_view precision) const {
  if (precision == "fp16") return peak_fp16_tflops;
  if (precision == "bf16") return peak_bf16_tflops;
  if (precision == "fp8") return peak_fp8_tflops;
  return 0;
}

namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

// fp8 GEMM efficiency of Hopper: fitted ONCE (one value for the H100 profile, the H200 taking
// the same chip's) on the published fp8 runs of ../shared/data/published-runs.json whose layouts
// predict models; the error on those rows is in-sample (docs/predict.md, "Calibration").
// Both Hopper GEMM efficiencies are fitted together, once for the H100 profile, on the 39 dense
// rows of shared/data/published-runs.json (bf16 and fp8; one pair for all of them, to two
// digits), with the data-parallel collectives a model chunk at a time over one NIC a GPU and the
// tensor-parallel collectives overlapped with their GEMMs as those runs had them (predict.cpp,
// comms.cpp, layout.cpp's default): the error on those rows is in-sample.
constexpr double kHopperGemmEfficiency = 0.61;
constexpr double kHopperFp8GemmEfficiency = 0.52;
constexpr const char* kHopperFitSource =
    "fitted once, with fp8_gemm_efficiency, to the 39 dense rows of shared/data/published-runs.json (H100; one pair for "
    "all of them, to two digits: 0.61 / 0.52 gives the smallest mean + largest |error|, 6.5% + 17.9%; 0.60-0.63 x "
    "0.50-0.53 give means of 6.2-7.1% and largest errors of 17.6-21.8%; the error on those rows is in-sample); H200: the "
    "same chip's, assumed";

// The efficiencies every built-in profile shares, with where each comes from (docs/predict.md,
// "Calibration"). gemm_efficiency is the one figure fitted to Korthikanti et al. 2022 Table 5.
void common_efficiencies(SystemProfile& s) {
  s.gemm_tile_m = 128;
  s.gemm_tile_n = 256;
  s.sources["gemm_tile_m"] = s.sources["gemm_tile_n"] =
      "assumed: cuBLAS's largest tensor-core tile for fp16/bf16 (128 x 256 thread-block tile)";
  s.memory_efficiency = 0.8;
  s.sources["memory_efficiency"] = "assumed: a streaming kernel reaches about 80% of the HBM datasheet bandwidth";
  s.network_efficiency = 0.9;
  s.sources["network_efficiency"] = "assumed: a ring over InfiniBand reaches about 90% of the link rate";
  s.nvlink_latency_s = 5e-6;
  s.network_latency_s = 10e-6;
  s.sources["nvlink_latency_s"] = s.sources["network_latency_s"] =
      "assumed: the order of one NCCL ring step (a few microseconds in a node, about 10 between nodes)";
  s.kernel_floor_s = 2e-6;
  s.sources["kernel_floor_s"] = "assumed: a kernel's launch and tail on a busy stream, about 2 us (PyTorch's one-element "
                                "CUDA add times 1.1-1.3 us, pytorch/pytorch issue 161104; a real op ramps up and drains "
                                "its SMs besides)";
  s.memory_reserved_bytes = 2 * kGiB;
  s.sources["memory_reserved_bytes"] = "assumed: CUDA context, NCCL and allocator buffers, fragmentation";
  s.gpus_per_node = 8;
  s.sources["gpus_per_node"] = "DGX / HGX node of 8 GPUs on NVSwitch";
}

void peaks_from_table(SystemProfile& s, std::string_view table_id) {
  const GpuPeaks& g = gpu_by_id(table_id);
  s.peak_fp16_tflops = g.fp16;
  s.peak_bf16_tflops = g.bf16;
  s.peak_fp8_tflops = g.fp8;
  s.sources["peak_fp16_tflops"] = s.sources["peak_bf16_tflops"] = s.sources["peak_fp8_tflops"] = g.source;
}

SystemProfile a100() {
  SystemProfile s;
  s.id = "a100-sxm-80gb";
  s.title = "NVIDIA A100 SXM4 80GB";
  s.architecture = "ampere";
  s.sources["architecture"] = "NVIDIA A100 Tensor Core GPU Architecture whitepaper (GA100, Ampere)";
  peaks_from_table(s, "a100");
  common_efficiencies(s);
  s.sm_count = 108;
  s.sources["sm_count"] = "NVIDIA A100 Tensor Core GPU Architecture whitepaper (108 SMs)";
  s.hbm_bytes_per_s = 2039e9;
  s.sources["hbm_bytes_per_s"] = "NVIDIA A100 datasheet: 2,039 GB/s (80GB SXM)";
  s.hbm_bytes = 80 * kGiB;
  s.sources["hbm_bytes"] = "NVIDIA A100 datasheet: 80GB HBM2e (81920 MiB)";
  s.nvlink_bytes_per_s = 300e9;
  s.sources["nvlink_bytes_per_s"] = "NVIDIA A100 datasheet: NVLink 600 GB/s (both directions), 300 GB/s each way";
  s.network_bytes_per_s = 25e9;
  s.sources["network_bytes_per_s"] = "DGX A100: 8 x HDR InfiniBand 200 Gb/s a node, one per GPU: 25 GB/s each way";
  s.nvlink_efficiency = 0.77;
  s.sources["nvlink_efficiency"] =
      "assumed from published nccl-tests all_reduce_perf on DGX A100: about 230 GB/s bus bandwidth of 300";
  s.gemm_efficiency = 0.77;
  s.sources["gemm_efficiency"] =
      "fitted once to Korthikanti et al. 2022 Table 5 (one value for all eight rows, to two digits: it minimises the largest error; the error on those rows is in-sample)";
  s.fp8_gemm_efficiency = s.gemm_efficiency;
  s.sources["fp8_gemm_efficiency"] = "not used: the A100 has no fp8 tensor cores (peak_fp8_tflops 0); gemm_efficiency's value";
  s.sdpa_efficiency = 0.5;
  s.sources["sdpa_efficiency"] = "Dao 2023 (FlashAttention-2), abstract: 50-73% of the A100's peak; the low end, the "
                                 "backward's (the larger part of training's attention time)";
  return s;
}

SystemProfile hopper(bool h200) {
  SystemProfile s;
  s.id = h200 ? "h200-sxm" : "h100-sxm";
  s.title = h200 ? "NVIDIA H200 SXM" : "NVIDIA H100 SXM5 80GB";
  s.architecture = "hopper";
  s.sources["architecture"] = "NVIDIA H100 Tensor Core GPU Architecture whitepaper (GH100, Hopper; the H200 is the same GH100 with HBM3e)";
  peaks_from_table(s, h200 ? "h200-sxm" : "h100-sxm");
  if (h200)
    s.sources["peak_fp16_tflops"] = s.sources["peak_bf16_tflops"] = s.sources["peak_fp8_tflops"] =
        "NVIDIA H200 datasheet (dense): the H100 SXM's figures, the same GH100 at the same clocks";
  common_efficiencies(s);
  s.sm_count = 132;
  s.sources["sm_count"] = h200 ? "assumed the H100 SXM5's 132 SMs: the H200 is the same GH100 (NVIDIA lists the same "
                                 "compute peaks); not stated in its datasheet"
                               : "NVIDIA H100 Tensor Core GPU Architecture whitepaper (132 SMs, SXM5)";
  s.hbm_bytes_per_s = h200 ? 4.8e12 : 3.35e12;
  s.sources["hbm_bytes_per_s"] = h200 ? "NVIDIA H200 datasheet: 4.8 TB/s" : "NVIDIA H100 datasheet: 3.35 TB/s (SXM)";
  s.hbm_bytes = h200 ? 141e9 : 80 * kGiB;
  s.sources["hbm_bytes"] = h200 ? "NVIDIA H200 datasheet: 141GB HBM3e" : "NVIDIA H100 datasheet: 80GB HBM3";
  s.nvlink_bytes_per_s = 450e9;
  s.sources["nvlink_bytes_per_s"] = "NVIDIA datasheet: NVLink 900 GB/s (both directions), 450 GB/s each way";
  s.network_bytes_per_s = 50e9;
  s.sources["network_bytes_per_s"] = "DGX H100/H200: 8 x NDR InfiniBand 400 Gb/s a node, one per GPU: 50 GB/s each way";
  s.nvlink_efficiency = 0.8;
  s.sources["nvlink_efficiency"] = "assumed: the A100's fraction (no Table 5 for Hopper to check it against)";
  if (h200) {
    // Every efficiency below and above is the H100's: the same chip, so the same share of its
    // peaks is assumed, and memory-bound kernels the same share of the faster HBM3e.
    s.sources["memory_efficiency"] = "assumed: the H100's fraction (" + s.sources["memory_efficiency"] +
                                     "), of the H200's 4.8 TB/s; no published H200 run checks it";
  }
  s.gemm_efficiency = kHopperGemmEfficiency;
  s.sources["gemm_efficiency"] = kHopperFitSource;
  s.fp8_gemm_efficiency = kHopperFp8GemmEfficiency;
  s.sources["fp8_gemm_efficiency"] = kHopperFitSource;
  s.sdpa_efficiency = 0.35;
  s.sources["sdpa_efficiency"] = "Shah et al. 2024 (FlashAttention-3), abstract: FlashAttention-2 reaches 35% of the "
                                 "H100's peak (PyTorch's scaled_dot_product_attention runs FlashAttention-2 kernels)" +
                                 std::string(h200 ? "; H200: the same chip's, assumed" : "");
  return s;
}

std::string lower(std::string_view id) {
  std::string s(id);
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

}  // namespace

std::vector<std::string> system_ids() { return {"a100-sxm-80gb", "h100-sxm", "h200-sxm"}; }

SystemProfile system_by_id(std::string_view id) {
  const std::string s = lower(id);
  if (s == "a100-sxm-80gb" || s == "a100" || s == "a100-sxm") return a100();
  if (s == "h100-sxm" || s == "h100") return hopper(false);
  if (s == "h200-sxm" || s == "h200") return hopper(true);
  std::string ids;
  for (const auto& i : system_ids()) ids += (ids.empty() ? "" : ", ") + i;
  throw UsageError(fmt::format("--gpu: unknown GPU profile '{}'; known: {} (or --system FILE)", id, ids));
}

namespace {

struct Field {
  const char* key;
  double SystemProfile::*real;
  int64_t SystemProfile::*count;
  double max;
  bool fraction;  // in (0, 1]
};

const std::vector<Field>& fields() {
  using S = SystemProfile;
  static const std::vector<Field> f = {
      {"peak_fp16_tflops", &S::peak_fp16_tflops, nullptr, 1e6, false},
      {"peak_bf16_tflops", &S::peak_bf16_tflops, nullptr, 1e6, false},
      {"peak_fp8_tflops", &S::peak_fp8_tflops, nullptr, 1e6, false},
      {"sm_count", nullptr, &S::sm_count, 1e5, false},
      {"hbm_bytes_per_s", &S::hbm_bytes_per_s, nullptr, 1e15, false},
      {"hbm_bytes", &S::hbm_bytes, nullptr, 1e15, false},
      {"gpus_per_node", nullptr, &S::gpus_per_node, 1e5, false},
      {"nvlink_bytes_per_s", &S::nvlink_bytes_per_s, nullptr, 1e15, false},
      {"network_bytes_per_s", &S::network_bytes_per_s, nullptr, 1e15, false},
      {"nvlink_latency_s", &S::nvlink_latency_s, nullptr, 1, false},
      {"network_latency_s", &S::network_latency_s, nullptr, 1, false},
      {"gemm_efficiency", &S::gemm_efficiency, nullptr, 1, true},
      {"fp8_gemm_efficiency", &S::fp8_gemm_efficiency, nullptr, 1, true},
      {"sdpa_efficiency", &S::sdpa_efficiency, nullptr, 1, true},
      {"gemm_tile_m", nullptr, &S::gemm_tile_m, 4096, false},
      {"gemm_tile_n", nullptr, &S::gemm_tile_n, 4096, false},
      {"memory_efficiency", &S::memory_efficiency, nullptr, 1, true},
      {"nvlink_efficiency", &S::nvlink_efficiency, nullptr, 1, true},
      {"network_efficiency", &S::network_efficiency, nullptr, 1, true},
      {"memory_reserved_bytes", &S::memory_reserved_bytes, nullptr, 1e15, false},
      {"kernel_floor_s", &S::kernel_floor_s, nullptr, 1, false},
  };
  return f;
}

}  // namespace

SystemProfile system_from_json(const json& j, const std::string& origin) {
  if (!j.is_object()) throw UsageError(fmt::format("{}: a system profile is a JSON object", origin));
  SystemProfile s;
  const bool has_base = j.contains("base");
  if (has_base) {
    if (!j.at("base").is_string()) throw UsageError(fmt::format("{}: 'base' must be a profile id (string)", origin));
    try {
      s = system_by_id(j.at("base").get<std::string>());
    } catch (const UsageError& e) {
      throw UsageError(fmt::format("{}: base: {}", origin, e.what()));
    }
    s.id = "custom";
  }
  std::set<std::string> known = {"id", "title", "architecture", "base", "sources"};
  for (const auto& f : fields()) known.insert(f.key);
  for (const auto& [key, value] : j.items()) {
    if (!known.count(key)) throw UsageError(fmt::format("{}: unknown key '{}'", origin, key));
  }
  for (const char* key : {"id", "title"}) {
    if (!j.contains(key)) continue;
    if (!j.at(key).is_string() || j.at(key).get<std::string>().empty())
      throw UsageError(fmt::format("{}: '{}' must be a non-empty string", origin, key));
  }
  if (j.contains("id")) s.id = j.at("id").get<std::string>();
  else if (!has_base) s.id = "custom";
  if (j.contains("title")) s.title = j.at("title").get<std::string>();
  else if (!has_base) s.title = s.id;
  if (j.contains("architecture")) {
    const json& a = j.at("architecture");
    if (!a.is_string() || (a.get<std::string>() != "ampere" && a.get<std::string>() != "hopper" && a.get<std::string>() != ""))
      throw UsageError(fmt::format("{}: 'architecture' must be \"ampere\", \"hopper\" or \"\" (unknown)", origin));
    s.architecture = a.get<std::string>();
    s.sources["architecture"] = origin;
  }
  for (const auto& f : fields()) {
    if (!j.contains(f.key)) {
      if (!has_base && (std::string_view(f.key) == "fp8_gemm_efficiency" || std::string_view(f.key) == "sdpa_efficiency"))
        continue;  // gemm_efficiency's, below
      if (!has_base && std::string_view(f.key) == "kernel_floor_s") {
        s.sources["kernel_floor_s"] = origin + " (not given: no floor)";
        continue;
      }
      if (!has_base) throw UsageError(fmt::format("{}: missing '{}' (or give \"base\": a built-in profile)", origin, f.key));
      continue;
    }
    const json& v = j.at(f.key);
    if (!v.is_number()) throw UsageError(fmt::format("{}: '{}' must be a number", origin, f.key));
    const double x = v.get<double>();
    // fp8 may be 0 (not offered); latencies and the reserve may be 0; everything else positive.
    const bool zero_ok = std::string_view(f.key) == "peak_fp8_tflops" || std::string_view(f.key) == "peak_fp16_tflops" ||
                         std::string_view(f.key).ends_with("latency_s") || std::string_view(f.key) == "memory_reserved_bytes" ||
                         std::string_view(f.key) == "kernel_floor_s";
    if (!std::isfinite(x) || x < 0 || (x == 0 && !zero_ok) || x > f.max)
      throw UsageError(fmt::format("{}: '{}' = {} is out of range ({}{}]", origin, f.key, v.dump(), zero_ok ? "[0, " : "(0, ",
                                   f.max));
    if (f.count) {
      if (x != std::floor(x)) throw UsageError(fmt::format("{}: '{}' must be a whole number", origin, f.key));
      s.*(f.count) = static_cast<int64_t>(x);
    } else {
      s.*(f.real) = x;
    }
    s.sources[f.key] = origin;
  }
  if (!has_base && !j.contains("fp8_gemm_efficiency")) {
    s.fp8_gemm_efficiency = s.gemm_efficiency;
    s.sources["fp8_gemm_efficiency"] = origin + " (not given: gemm_efficiency's value)";
  }
  if (!has_base && !j.contains("sdpa_efficiency")) {
    s.sdpa_efficiency = s.gemm_efficiency;
    s.sources["sdpa_efficiency"] = origin + " (not given: gemm_efficiency's value)";
  }
  if (s.peak_bf16_tflops <= 0) throw UsageError(fmt::format("{}: 'peak_bf16_tflops' must be positive", origin));
  if (j.contains("sources")) {
    const json& src = j.at("sources");
    if (!src.is_object()) throw UsageError(fmt::format("{}: 'sources' must be an object of strings", origin));
    for (const auto& [key, value] : src.items()) {
      if (!known.count(key) || !value.is_string())
        throw UsageError(fmt::format("{}: sources: '{}' is not a field or its source is not a string", origin, key));
      s.sources[key] = value.get<std::string>();
    }
  }
  return s;
}

SystemProfile system_from_file(const std::string& path) {
  const std::string text = read_file(path);
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw UsageError(fmt::format("--system {}: not valid JSON ({})", path, e.what()));
  }
  return system_from_json(j, "--system " + path);
}

json system_to_json(const SystemProfile& s) {
  json j = {{"id", s.id}, {"title", s.title}, {"architecture", s.architecture}};
  for (const auto& f : fields()) j[f.key] = f.count ? json(s.*(f.count)) : json(s.*(f.real));
  j["sources"] = s.sources;
  return j;
}

}  // namespace flopscope::predict
