// The parts of collecting counters that need no GPU: which op each CUPTI range measured, what
// to tell the user when counters cannot be read, and the status object.
#include <map>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "counters/counters.hpp"
#include "counters/detail.hpp"
#include "util/error.hpp"

namespace flopscope::counters {

std::vector<size_t> ranges_to_ops(const std::vector<std::string>& range_names, const LayerGraph& g) {
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < g.ops.size(); ++i) {
    if (!index.emplace(g.ops[i].name, i).second)
      throw Error(fmt::format("two ops are named '{}': CUPTI would merge their ranges into one", g.ops[i].name));
  }
  std::vector<size_t> out;
  std::vector<bool> seen(g.ops.size(), false);
  for (const std::string& full : range_names) {
    const size_t slash = full.rfind('/');
    const std::string name = slash == std::string::npos ? full : full.substr(slash + 1);
    const auto it = index.find(name);
    if (it == index.end()) throw Error(fmt::format("CUPTI returned a range '{}' that names no op of the graph", full));
    if (seen[it->second]) throw Error(fmt::format("CUPTI returned two ranges for op '{}'", name));
    seen[it->second] = true;
    out.push_back(it->second);
  }
  std::vector<std::string> without;
  for (size_t i = 0; i < g.ops.size(); ++i)
    if (!seen[i]) without.push_back(g.ops[i].name);
  if (!without.empty())
    throw Error(fmt::format("CUPTI returned no range for {} op(s): {}", without.size(), fmt::join(without, ", ")));
  return out;
}

std::string cupti_failure_reason(int code, std::string_view call, std::string_view result_name) {
  std::string advice;
  switch (code) {
    case 35:  // CUPTI_ERROR_INSUFFICIENT_PRIVILEGES
      advice =
          "the NVIDIA driver lets only administrators read the GPU's performance counters (the cause of Nsight "
          "Compute's ERR_NVGPUCTRPERM). Run as root or with CAP_SYS_ADMIN, or load the nvidia kernel module with "
          "NVreg_RestrictProfilingToAdminUsers=0 (a line 'options nvidia NVreg_RestrictProfilingToAdminUsers=0' in "
          "/etc/modprobe.d/, then reload the driver or reboot; in a container the host's setting applies). "
          "`grep RmProfilingAdminOnly /proc/driver/nvidia/params` shows the setting (1: administrators only). "
          "https://developer.nvidia.com/ERR_NVGPUCTRPERM";
      break;
    case 40:  // CUPTI_ERROR_VIRTUALIZED_DEVICE_INSUFFICIENT_PRIVILEGES
      advice =
          "this virtual GPU's hypervisor does not allow profiling: the administrator must enable profiling for the "
          "vGPU (NVIDIA vGPU software documentation, 'Enabling NVIDIA CUDA Toolkit Profilers for NVIDIA vGPU'), "
          "or run on a GPU passed through whole";
      break;
    case 33:  // CUPTI_ERROR_VIRTUALIZED_DEVICE_NOT_SUPPORTED
      advice =
          "this is a virtualised GPU on which CUPTI cannot read counters; run on bare metal or a GPU passed through "
          "whole";
      break;
    case 39:  // CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED
      advice =
          "another profiler is attached to this process (Nsight Compute, Nsight Systems, cuda-gdb or another CUPTI "
          "client): run without it, or use --counters off under a profiler (scripts/ncu-crosscheck.sh runs ncu and "
          "flopscope's own counters separately)";
      break;
    case 26:  // CUPTI_ERROR_HARDWARE_BUSY
      advice =
          "the GPU's counters are in use by another profiling session (another profiler, or DCGM profiling metrics "
          "such as dcgm-exporter's DCP fields): stop or pause it (dcgmi profile --pause) and run again";
      break;
    case 41:  // CUPTI_ERROR_CONFIDENTIAL_COMPUTING_NOT_SUPPORTED
      advice = "confidential computing mode is on, which forbids profiling";
      break;
    case 42:  // CUPTI_ERROR_CMP_DEVICE_NOT_SUPPORTED
      advice = "CUPTI does not profile NVIDIA Crypto Mining Processors (CMP)";
      break;
    case 43:  // CUPTI_ERROR_MIG_DEVICE_NOT_SUPPORTED
      advice = "profiling is not supported on this Multi-Instance GPU (MIG) configuration: run on a whole GPU";
      break;
    case 44:  // CUPTI_ERROR_SLI_DEVICE_NOT_SUPPORTED
      advice = "profiling is not supported with SLI enabled";
      break;
    case 45:  // CUPTI_ERROR_WSL_DEVICE_NOT_SUPPORTED
      advice = "profiling is not supported on this WSL setup";
      break;
    case 46:  // CUPTI_ERROR_INVALID_CHIP_NAME
      advice = "this CUPTI does not know the GPU's chip: build with a newer CUDA toolkit";
      break;
    case 27:  // CUPTI_ERROR_NOT_SUPPORTED
      advice =
          "the device or driver does not support the CUPTI Range Profiler (it needs compute capability 7.5 or "
          "newer and a driver of the toolkit's generation)";
      break;
    case 14:  // CUPTI_ERROR_NOT_COMPATIBLE
      advice = "the NVIDIA driver is older than this CUPTI needs: update the driver to one for CUDA 13";
      break;
    case 15:  // CUPTI_ERROR_NOT_INITIALIZED
      advice =
          "CUPTI could not initialise its profiler (no usable CUDA driver, or libnvperf_host.so / "
          "libnvperf_target.so missing beside libcupti.so)";
      break;
    case 36:  // CUPTI_ERROR_OLD_PROFILER_API_INITIALIZED
      advice = "the legacy CUPTI event/metric API is already in use in this process";
      break;
    case 17:  // CUPTI_ERROR_INVALID_METRIC_NAME
      advice = "a requested metric is not offered by this GPU";
      break;
    default: advice = "see the CUPTI documentation of this result"; break;
  }
  return fmt::format("{} failed with {}: {}", call, result_name, advice);
}

nlohmann::json status_json(std::string_view status, std::string_view reason) {
  return {{"status", status},
          {"reason", reason},
          {"api", kCounterApi},
          {"chip", nullptr},
          {"arch", nullptr},
          {"passes", 0},
          {"config_passes", 0},
          {"metrics", nlohmann::json::array()},
          {"dropped_metrics", nlohmann::json::array()},
          {"replay",
           "user replay: the whole op list re-run once per pass, after the timing runs, each op synchronised "
           "inside its own range"},
          {"source", status == "measured" ? "measured: hardware counters" : "none: no hardware counters were read"},
          {"ops", nlohmann::json::object()}};
}

}  // namespace flopscope::counters
