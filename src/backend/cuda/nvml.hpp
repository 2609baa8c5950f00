// NVML, loaded at run time (dlopen of libnvidia-ml.so.1, which ships with the driver), so the
// binary starts on machines without a driver. Everything here returns "unknown" values
// rather than failing: clocks are information, not a requirement.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace flopscope::cuda {

struct NvmlClocks {
  std::optional<unsigned> sm_mhz, mem_mhz, sm_max_mhz;
};

// Driver version string (e.g. "570.86.15"), if NVML can be loaded.
std::optional<std::string> nvml_driver_version();
// Clocks of the GPU with this PCI bus id ("0000:3B:00.0"), as cudaDeviceGetPCIBusId gives it.
NvmlClocks nvml_clocks(const std::string& pci_bus_id);
nlohmann::json clocks_json(const NvmlClocks& c);

}  // namespace flopscope::cuda
