#include "backend/cuda/nvml.hpp"

#include <dlfcn.h>

namespace flopscope::cuda {

namespace {

// The few NVML entry points we use, with their C signatures (nvml.h), resolved by dlsym.
using nvmlReturn = int;
using nvmlDevice = void*;
constexpr int kNvmlClockSm = 1, kNvmlClockMem = 2;  // NVML_CLOCK_SM, NVML_CLOCK_MEM

struct Nvml {
  void* lib = nullptr;
  nvmlReturn (*init)() = nullptr;
  nvmlReturn (*driver_version)(char*, unsigned) = nullptr;
  nvmlReturn (*by_pci)(const char*, nvmlDevice*) = nullptr;
  nvmlReturn (*clock)(nvmlDevice, int, unsigned*) = nullptr;
  nvmlReturn (*max_clock)(nvmlDevice, int, unsigned*) = nullptr;
  bool ok = false;

  Nvml() {
    lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) return;
    init = reinterpret_cast<decltype(init)>(dlsym(lib, "nvmlInit_v2"));
    driver_version = reinterpret_cast<decltype(driver_version)>(dlsym(lib, "nvmlSystemGetDriverVersion"));
    by_pci = reinterpret_cast<decltype(by_pci)>(dlsym(lib, "nvmlDeviceGetHandleByPciBusId_v2"));
    clock = reinterpret_cast<decltype(clock)>(dlsym(lib, "nvmlDeviceGetClockInfo"));
    max_clock = reinterpret_cast<decltype(max_clock)>(dlsym(lib, "nvmlDeviceGetMaxClockInfo"));
    ok = init && driver_version && by_pci && clock && max_clock && init() == 0;
  }
};

Nvml& nvml() {
  static Nvml n;
  return n;
}

}  // namespace

std::optional<std::string> nvml_driver_version() {
  auto& n = nvml();
  if (!n.ok) return std::nullopt;
  char buf[96] = {0};
  if (n.driver_version(buf, sizeof buf) != 0) return std::nullopt;
  return std::string(buf);
}

NvmlClocks nvml_clocks(const std::string& pci_bus_id) {
  NvmlClocks c;
  auto& n = nvml();
  if (!n.ok) return c;
  nvmlDevice dev = nullptr;
  if (n.by_pci(pci_bus_id.c_str(), &dev) != 0) return c;
  unsigned v = 0;
  if (n.clock(dev, kNvmlClockSm, &v) == 0) c.sm_mhz = v;
  if (n.clock(dev, kNvmlClockMem, &v) == 0) c.mem_mhz = v;
  if (n.max_clock(dev, kNvmlClockSm, &v) == 0) c.sm_max_mhz = v;
  return c;
}

nlohmann::json clocks_json(const NvmlClocks& c) {
  auto opt = [](const std::optional<unsigned>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); };
  return {{"sm_mhz", opt(c.sm_mhz)}, {"mem_mhz", opt(c.mem_mhz)}, {"sm_max_mhz", opt(c.sm_max_mhz)},
          {"source", c.sm_mhz ? "NVML" : "unavailable (NVML not loaded)"}};
}

}  // namespace flopscope::cuda
