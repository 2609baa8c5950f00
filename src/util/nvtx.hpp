// NVTX ranges in the `flopscope` domain, for Nsight Systems and Nsight Compute (--nvtx).
// One range per op, named exactly as the graph names it, nested under phase and layer ranges.
// Without a tool attached, NVTX calls are no-ops costing a few nanoseconds.
#pragma once

#include <nvtx3/nvToolsExt.h>

#include <string>

namespace flopscope {

inline nvtxDomainHandle_t nvtx_domain() {
  static nvtxDomainHandle_t domain = nvtxDomainCreateA("flopscope");
  return domain;
}

inline void nvtx_push(const std::string& name) {
  nvtxEventAttributes_t a{};
  a.version = NVTX_VERSION;
  a.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
  a.messageType = NVTX_MESSAGE_TYPE_ASCII;
  a.message.ascii = name.c_str();
  nvtxDomainRangePushEx(nvtx_domain(), &a);
}
inline void nvtx_pop() { nvtxDomainRangePop(nvtx_domain()); }

// RAII: pushes a named range on construction, pops it on destruction.
class NvtxRange {
 public:
  explicit NvtxRange(const std::string& name) { nvtx_push(name); }
  ~NvtxRange() { nvtx_pop(); }
  NvtxRange(const NvtxRange&) = delete;
  NvtxRange& operator=(const NvtxRange&) = delete;
};

}  // namespace flopscope
