// collect_counters(): the layer's ops under the CUPTI Range Profiler (cupti_range_profiler.h
// with cupti_profiler_host.h; CUDA 13 deprecates the older cuptiProfiler* session API).
//
// The call order follows NVIDIA's CUPTI sample range_profiling:
//   1. CUDA context of the backend's device (runtime: cudaSetDevice + cudaFree(0); the driver's
//      cuCtxGetCurrent through cudaGetDriverEntryPointByVersion, so libcuda is never linked)
//   2. cuptiProfilerInitialize; cuptiProfilerDeviceSupported (vGPU, SLI, CMP, WSL, ... say why not)
//   3. chip name (cuptiDeviceGetChipName) and counter availability image (before Enable: the
//      query fails while a session is active on the context)
//   4. host object for the chip + availability; metrics added to a config image (metrics the
//      chip does not offer are dropped one by one, and said so); number of passes
//   5. cuptiRangeProfilerEnable on the context; counter data image for one range per op;
//      SetConfig(user range, user replay, one nesting level)
//   6. Start / {PushRange(op.name), run op, synchronise, PopRange} for every op / Stop, again
//      until Stop reports every pass submitted
//   7. DecodeData; per range: its name and EvaluateToGpuValues; ranges mapped to ops
//   8. Disable, host deinitialise, profiler deinitialise (RAII, also on every error path)
//
// Each op synchronises its stream inside its own range, so its kernels all complete between
// the range's push and pop whichever way CUPTI orders ranges against a non-blocking stream.
// Counter runs are separate from timing runs; gpu__time_duration here includes that
// serialisation and the replay and is not a timing.
#include <cuda.h>  // CUcontext, CUdevice, CUresult: types only, libcuda is not linked
#include <cudaTypedefs.h>
#include <cuda_runtime_api.h>
#include <cupti_profiler_host.h>
#include <cupti_profiler_target.h>
#include <cupti_range_profiler.h>
#include <cupti_target.h>

#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "counters/counters.hpp"
#include "counters/cupti_check.hpp"
#include "counters/detail.hpp"
#include "util/error.hpp"

namespace flopscope {

namespace {

using counters::cupti_result_name;
using counters::CuptiError;
using nlohmann::json;

// A reason not to read counters that is not a CUPTI result: no GPU, a CUDA error, a chip
// without any of the metrics, CUPTI answering something unexpected.
class Unavailable : public Error {
 public:
  using Error::Error;
};

// CUPTI parameter structs: zeroed, with their size set (the API's versioning).
template <class P>
P params(size_t struct_size) {
  P p{};
  p.structSize = struct_size;
  return p;
}

std::string cuda_error(const char* call, cudaError_t e) {
  return fmt::format("{}: {} ({})", call, cudaGetErrorString(e), cudaGetErrorName(e));
}

// A driver entry point at a fixed ABI version, through the runtime (which loads libcuda).
template <class Fn>
Fn driver_entry(const char* symbol, unsigned abi_version) {
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
  const cudaError_t e = cudaGetDriverEntryPointByVersion(symbol, &fn, abi_version, cudaEnableDefault, &found);
  if (e != cudaSuccess)
    throw Unavailable(
        fmt::format("the CUDA driver's {}: {}", symbol, cuda_error("cudaGetDriverEntryPointByVersion", e)));
  if (found != cudaDriverEntryPointSuccess || fn == nullptr)
    throw Unavailable(
        fmt::format("the CUDA driver has no {} of ABI {} (cudaGetDriverEntryPointByVersion: query result {})", symbol,
                    abi_version, static_cast<int>(found)));
  return reinterpret_cast<Fn>(fn);
}

struct Device {
  int ordinal = 0;
  int major = 0, minor = 0;
  CUdevice device = 0;
  CUcontext context = nullptr;
  int cc() const { return major * 10 + minor; }
  std::string arch() const { return fmt::format("sm_{}{}", major, minor); }
};

// The backend's device and its primary context, current on this thread.
Device open_device(Backend& backend) {
  int count = 0;
  if (const cudaError_t e = cudaGetDeviceCount(&count); e != cudaSuccess)
    throw Unavailable(fmt::format("no GPU is visible ({})", cuda_error("cudaGetDeviceCount", e)));
  if (count == 0) throw Unavailable("no GPU is visible (cudaGetDeviceCount: 0 devices)");
  Device d;
  const json info = backend.device_json();
  if (info.contains("index") && info.at("index").is_number_integer()) {
    d.ordinal = info.at("index").get<int>();
  } else if (const cudaError_t e = cudaGetDevice(&d.ordinal); e != cudaSuccess) {
    throw Unavailable(cuda_error("cudaGetDevice", e));
  }
  auto check = [](const char* call, cudaError_t e) {
    if (e != cudaSuccess) throw Unavailable(cuda_error(call, e));
  };
  check("cudaSetDevice", cudaSetDevice(d.ordinal));
  check("cudaFree(0) (creates the primary context)", cudaFree(nullptr));
  check("cudaDeviceGetAttribute(major)",
        cudaDeviceGetAttribute(&d.major, cudaDevAttrComputeCapabilityMajor, d.ordinal));
  check("cudaDeviceGetAttribute(minor)",
        cudaDeviceGetAttribute(&d.minor, cudaDevAttrComputeCapabilityMinor, d.ordinal));
  const auto ctx_get_current = driver_entry<PFN_cuCtxGetCurrent_v4000>("cuCtxGetCurrent", 4000);
  const auto device_get = driver_entry<PFN_cuDeviceGet_v2000>("cuDeviceGet", 2000);
  if (const CUresult r = ctx_get_current(&d.context); r != CUDA_SUCCESS || d.context == nullptr)
    throw Unavailable(fmt::format("cuCtxGetCurrent returned CUresult {} and no context", static_cast<int>(r)));
  if (const CUresult r = device_get(&d.device, d.ordinal); r != CUDA_SUCCESS)
    throw Unavailable(fmt::format("cuDeviceGet({}) returned CUresult {}", d.ordinal, static_cast<int>(r)));
  return d;
}

// cuptiProfilerInitialize ... cuptiProfilerDeInitialize.
class ProfilerInit {
 public:
  ProfilerInit() {
    auto p = params<CUpti_Profiler_Initialize_Params>(CUpti_Profiler_Initialize_Params_STRUCT_SIZE);
    CUPTI_CALL(cuptiProfilerInitialize(&p), "cuptiProfilerInitialize");
  }
  ~ProfilerInit() {
    auto p = params<CUpti_Profiler_DeInitialize_Params>(CUpti_Profiler_DeInitialize_Params_STRUCT_SIZE);
    cuptiProfilerDeInitialize(&p);
  }
  ProfilerInit(const ProfilerInit&) = delete;
  ProfilerInit& operator=(const ProfilerInit&) = delete;
};

const char* level_name(CUpti_Profiler_Support_Level l) {
  switch (l) {
    case CUPTI_PROFILER_CONFIGURATION_UNKNOWN: return "unknown";
    case CUPTI_PROFILER_CONFIGURATION_UNSUPPORTED: return "unsupported";
    case CUPTI_PROFILER_CONFIGURATION_DISABLED: return "disabled";
    case CUPTI_PROFILER_CONFIGURATION_SUPPORTED: return "supported";
  }
  return "?";
}

// Throws Unavailable naming every reason CUPTI gives for not profiling this device (a flag that
// is unsupported or disabled); an answer with only unknown flags is a warning, not a refusal.
void check_device_supported(const Device& d) {
  auto p = params<CUpti_Profiler_DeviceSupported_Params>(CUpti_Profiler_DeviceSupported_Params_STRUCT_SIZE);
  p.cuDevice = d.device;
  p.api = CUPTI_PROFILER_RANGE_PROFILING;
  CUPTI_CALL(cuptiProfilerDeviceSupported(&p), "cuptiProfilerDeviceSupported");
  if (p.isSupported == CUPTI_PROFILER_CONFIGURATION_SUPPORTED) return;
  // The flags that say no (unsupported or disabled) first; the unknown ones only when none does.
  std::vector<std::string> no, unknown;
  auto flag = [&](CUpti_Profiler_Support_Level l, std::string what) {
    if (l == CUPTI_PROFILER_CONFIGURATION_UNSUPPORTED || l == CUPTI_PROFILER_CONFIGURATION_DISABLED)
      no.push_back(std::move(what));
    else if (l == CUPTI_PROFILER_CONFIGURATION_UNKNOWN)
      unknown.push_back(std::move(what));
  };
  flag(p.architecture, fmt::format("architecture {} (compute capability {}.{}; the Range Profiler needs 7.5 or newer)",
                                   level_name(p.architecture), d.major, d.minor));
  flag(p.sli, fmt::format("SLI: {} (profiling needs SLI off)", level_name(p.sli)));
  flag(p.vGpu, p.vGpu == CUPTI_PROFILER_CONFIGURATION_DISABLED
                   ? std::string("a virtual GPU whose profiling is disabled: the hypervisor administrator must enable "
                                 "profiling for this vGPU")
                   : fmt::format("virtual GPU: profiling {}", level_name(p.vGpu)));
  flag(p.confidentialCompute,
       fmt::format("confidential computing: {} (profiling needs it off)", level_name(p.confidentialCompute)));
  flag(p.cmp, fmt::format("Crypto Mining Processor: {}", level_name(p.cmp)));
  flag(p.wsl, fmt::format("WSL: {}", level_name(p.wsl)));
  if (no.empty()) {
    // Nothing says no: let cuptiRangeProfilerEnable decide, which names its own reason.
    spdlog::warn("counters: cuptiProfilerDeviceSupported answers {} without a flag that says no ({}); trying anyway",
                 level_name(p.isSupported),
                 unknown.empty() ? std::string("no flag unknown") : fmt::format("{}", fmt::join(unknown, "; ")));
    return;
  }
  throw Unavailable(fmt::format("cuptiProfilerDeviceSupported: this GPU cannot be profiled: {}", fmt::join(no, "; ")));
}

std::string chip_name(int ordinal) {
  auto p = params<CUpti_Device_GetChipName_Params>(CUpti_Device_GetChipName_Params_STRUCT_SIZE);
  p.deviceIndex = static_cast<size_t>(ordinal);
  CUPTI_CALL(cuptiDeviceGetChipName(&p), "cuptiDeviceGetChipName");
  if (p.pChipName == nullptr) throw Unavailable("cuptiDeviceGetChipName returned no name");
  return p.pChipName;
}

std::vector<uint8_t> counter_availability(CUcontext ctx) {
  auto p =
      params<CUpti_Profiler_GetCounterAvailability_Params>(CUpti_Profiler_GetCounterAvailability_Params_STRUCT_SIZE);
  p.ctx = ctx;
  CUPTI_CALL(cuptiProfilerGetCounterAvailability(&p), "cuptiProfilerGetCounterAvailability (size)");
  std::vector<uint8_t> image(p.counterAvailabilityImageSize);
  p.pCounterAvailabilityImage = image.data();
  CUPTI_CALL(cuptiProfilerGetCounterAvailability(&p), "cuptiProfilerGetCounterAvailability (image)");
  image.resize(p.counterAvailabilityImageSize);
  return image;
}

std::vector<const char*> c_names(const std::vector<std::string>& v) {
  std::vector<const char*> out;
  out.reserve(v.size());
  for (const auto& s : v) out.push_back(s.c_str());
  return out;
}

// A host object: configuration (metrics -> config image) and evaluation for one chip.
class HostObject {
 public:
  HostObject(const std::string& chip, const std::vector<uint8_t>& availability) {
    auto p = params<CUpti_Profiler_Host_Initialize_Params>(CUpti_Profiler_Host_Initialize_Params_STRUCT_SIZE);
    p.profilerType = CUPTI_PROFILER_TYPE_RANGE_PROFILER;
    p.pChipName = chip.c_str();
    p.pCounterAvailabilityImage = availability.data();
    CUPTI_CALL(cuptiProfilerHostInitialize(&p), "cuptiProfilerHostInitialize (chip " + chip + ")");
    host_ = p.pHostObject;
  }
  ~HostObject() {
    auto p = params<CUpti_Profiler_Host_Deinitialize_Params>(CUpti_Profiler_Host_Deinitialize_Params_STRUCT_SIZE);
    p.pHostObject = host_;
    if (host_) cuptiProfilerHostDeinitialize(&p);
  }
  HostObject(const HostObject&) = delete;
  HostObject& operator=(const HostObject&) = delete;

  CUpti_Profiler_Host_Object* get() const { return host_; }

  // The result, not thrown: a metric the chip lacks is an answer here, not a failure.
  CUptiResult add_metrics(std::vector<const char*> names) {
    auto p =
        params<CUpti_Profiler_Host_ConfigAddMetrics_Params>(CUpti_Profiler_Host_ConfigAddMetrics_Params_STRUCT_SIZE);
    p.pHostObject = host_;
    p.ppMetricNames = names.data();
    p.numMetrics = names.size();
    return cuptiProfilerHostConfigAddMetrics(&p);
  }

  std::vector<uint8_t> config_image() const {
    auto s = params<CUpti_Profiler_Host_GetConfigImageSize_Params>(
        CUpti_Profiler_Host_GetConfigImageSize_Params_STRUCT_SIZE);
    s.pHostObject = host_;
    CUPTI_CALL(cuptiProfilerHostGetConfigImageSize(&s), "cuptiProfilerHostGetConfigImageSize");
    std::vector<uint8_t> image(s.configImageSize);
    auto g = params<CUpti_Profiler_Host_GetConfigImage_Params>(CUpti_Profiler_Host_GetConfigImage_Params_STRUCT_SIZE);
    g.pHostObject = host_;
    g.configImageSize = image.size();
    g.pConfigImage = image.data();
    CUPTI_CALL(cuptiProfilerHostGetConfigImage(&g), "cuptiProfilerHostGetConfigImage");
    return image;
  }

 private:
  CUpti_Profiler_Host_Object* host_ = nullptr;
};

size_t config_passes(std::vector<uint8_t>& config) {
  auto p = params<CUpti_Profiler_Host_GetNumOfPasses_Params>(CUpti_Profiler_Host_GetNumOfPasses_Params_STRUCT_SIZE);
  p.configImageSize = config.size();
  p.pConfigImage = config.data();
  CUPTI_CALL(cuptiProfilerHostGetNumOfPasses(&p), "cuptiProfilerHostGetNumOfPasses");
  return p.numOfPasses;
}

// The metrics to collect: all of `wanted` when the chip takes them together; otherwise each
// one tried alone on a fresh host object (a failed add may leave an object unusable), the
// ones it refuses dropped with the reason. Returns the host object configured with the kept
// metrics; it also evaluates the results, so it must be the one the config image came from.
std::unique_ptr<HostObject> configure(const std::string& chip, const std::vector<uint8_t>& availability,
                                      const std::vector<std::string>& wanted, std::vector<std::string>& kept,
                                      json& dropped) {
  auto host = std::make_unique<HostObject>(chip, availability);
  const CUptiResult all = host->add_metrics(c_names(wanted));
  if (all == CUPTI_SUCCESS) {
    kept = wanted;
    return host;
  }
  kept.clear();
  for (const auto& m : wanted) {
    HostObject probe(chip, availability);
    const CUptiResult r = probe.add_metrics({m.c_str()});
    if (r == CUPTI_SUCCESS) {
      kept.push_back(m);
    } else {
      dropped.push_back({{"name", m},
                         {"why", fmt::format("cuptiProfilerHostConfigAddMetrics: {}: not offered by chip {} with this "
                                             "counter availability",
                                             cupti_result_name(r), chip)}});
    }
  }
  if (kept.empty())
    throw CuptiError(all, "cuptiProfilerHostConfigAddMetrics (no requested metric was accepted)", __FILE__, __LINE__);
  host = std::make_unique<HostObject>(chip, availability);
  CUPTI_CALL(host->add_metrics(c_names(kept)), "cuptiProfilerHostConfigAddMetrics");
  return host;
}

// cuptiRangeProfilerEnable ... cuptiRangeProfilerDisable, and the calls on the object.
class RangeProfiler {
 public:
  explicit RangeProfiler(CUcontext ctx) {
    auto p = params<CUpti_RangeProfiler_Enable_Params>(CUpti_RangeProfiler_Enable_Params_STRUCT_SIZE);
    p.ctx = ctx;
    CUPTI_CALL(cuptiRangeProfilerEnable(&p), "cuptiRangeProfilerEnable");
    object_ = p.pRangeProfilerObject;
  }
  ~RangeProfiler() {
    auto p = params<CUpti_RangeProfiler_Disable_Params>(CUpti_RangeProfiler_Disable_Params_STRUCT_SIZE);
    p.pRangeProfilerObject = object_;
    if (object_) cuptiRangeProfilerDisable(&p);
  }
  RangeProfiler(const RangeProfiler&) = delete;
  RangeProfiler& operator=(const RangeProfiler&) = delete;

  CUpti_RangeProfiler_Object* get() const { return object_; }

  void start() {
    auto p = params<CUpti_RangeProfiler_Start_Params>(CUpti_RangeProfiler_Start_Params_STRUCT_SIZE);
    p.pRangeProfilerObject = object_;
    CUPTI_CALL(cuptiRangeProfilerStart(&p), "cuptiRangeProfilerStart");
  }
  // True when every pass has been submitted.
  bool stop() {
    auto p = params<CUpti_RangeProfiler_Stop_Params>(CUpti_RangeProfiler_Stop_Params_STRUCT_SIZE);
    p.pRangeProfilerObject = object_;
    CUPTI_CALL(cuptiRangeProfilerStop(&p), "cuptiRangeProfilerStop");
    return p.isAllPassSubmitted != 0;
  }
  void push(const std::string& name) {
    auto p = params<CUpti_RangeProfiler_PushRange_Params>(CUpti_RangeProfiler_PushRange_Params_STRUCT_SIZE);
    p.pRangeProfilerObject = object_;
    p.pRangeName = name.c_str();
    CUPTI_CALL(cuptiRangeProfilerPushRange(&p), "cuptiRangeProfilerPushRange(" + name + ")");
  }
  void pop() {
    auto p = params<CUpti_RangeProfiler_PopRange_Params>(CUpti_RangeProfiler_PopRange_Params_STRUCT_SIZE);
    p.pRangeProfilerObject = object_;
    CUPTI_CALL(cuptiRangeProfilerPopRange(&p), "cuptiRangeProfilerPopRange");
  }

 private:
  CUpti_RangeProfiler_Object* object_ = nullptr;
};

// The whole device idle, as NVIDIA's range-profiling sample has it before each push and pop
// (cudaDeviceSynchronize, not one stream's): no work queued before a range (another stream, a
// library's own stream) is counted in it, and none of the range's work falls outside it. A
// failure here is the replayed op's own error (a failing kernel), thrown as it is.
void synchronize_device(const char* where) {
  if (const cudaError_t e = cudaDeviceSynchronize(); e != cudaSuccess) throw Error(cuda_error(where, e));
}

json profile(Backend& backend, const LayerGraph& g) {
  const Device d = open_device(backend);
  const std::vector<std::string> wanted = metrics_for(d.cc());
  if (wanted.empty())
    throw Unavailable(fmt::format("compute capability {}.{}: the CUPTI Range Profiler needs 7.5 (Turing) or newer",
                                  d.major, d.minor));

  const ProfilerInit init;
  check_device_supported(d);
  const std::string chip = chip_name(d.ordinal);
  const std::vector<uint8_t> availability = counter_availability(d.context);

  std::vector<std::string> kept;
  json dropped = json::array();
  const std::unique_ptr<HostObject> host = configure(chip, availability, wanted, kept, dropped);
  for (const auto& x : dropped)
    spdlog::warn("counters: dropped {}: {}", x.at("name").get<std::string>(), x.at("why").get<std::string>());
  std::vector<uint8_t> config = host->config_image();
  const size_t n_passes = config_passes(config);
  const std::vector<const char*> names = c_names(kept);
  const size_t n_ops = g.ops.size();

  // Declared before the profiler: CUPTI uses both images until Disable.
  std::vector<uint8_t> counter_data;
  RangeProfiler rp(d.context);
  {
    auto p = params<CUpti_RangeProfiler_GetCounterDataSize_Params>(
        CUpti_RangeProfiler_GetCounterDataSize_Params_STRUCT_SIZE);
    p.pRangeProfilerObject = rp.get();
    p.pMetricNames = const_cast<const char**>(names.data());
    p.numMetrics = names.size();
    p.maxNumOfRanges = n_ops;
    p.maxNumRangeTreeNodes = static_cast<uint32_t>(n_ops);
    CUPTI_CALL(cuptiRangeProfilerGetCounterDataSize(&p), "cuptiRangeProfilerGetCounterDataSize");
    counter_data.resize(p.counterDataSize);
    auto init_image = params<CUpti_RangeProfiler_CounterDataImage_Initialize_Params>(
        CUpti_RangeProfiler_CounterDataImage_Initialize_Params_STRUCT_SIZE);
    init_image.pRangeProfilerObject = rp.get();
    init_image.counterDataSize = counter_data.size();
    init_image.pCounterData = counter_data.data();
    CUPTI_CALL(cuptiRangeProfilerCounterDataImageInitialize(&init_image),
               "cuptiRangeProfilerCounterDataImageInitialize");
  }
  {
    auto p = params<CUpti_RangeProfiler_SetConfig_Params>(CUpti_RangeProfiler_SetConfig_Params_STRUCT_SIZE);
    p.pRangeProfilerObject = rp.get();
    p.configSize = config.size();
    p.pConfig = config.data();
    p.counterDataImageSize = counter_data.size();
    p.pCounterDataImage = counter_data.data();
    p.range = CUPTI_UserRange;
    p.replayMode = CUPTI_UserReplay;
    p.maxRangesPerPass = n_ops;
    p.numNestingLevels = 1;  // one range per op, no enclosing layer/phase range
    p.minNestingLevel = 1;
    p.passIndex = 0;
    p.targetNestingLevel = 1;
    CUPTI_CALL(cuptiRangeProfilerSetConfig(&p), "cuptiRangeProfilerSetConfig");
  }
  spdlog::info("counters: {} metrics on {} (sm_{}{}), {} pass(es) of the whole layer (user replay)", kept.size(), chip,
               d.major, d.minor, n_passes);

  // User replay: the whole op list once per pass, until CUPTI has every pass it needs.
  backend.synchronize();
  size_t passes = 0;
  for (bool all_submitted = false; !all_submitted; ++passes) {
    if (passes > n_passes)
      throw Unavailable(fmt::format("CUPTI asked for more passes than the {} its config image needs", n_passes));
    rp.start();
    for (const Op& op : g.ops) {
      synchronize_device("cudaDeviceSynchronize (before cuptiRangeProfilerPushRange)");
      rp.push(op.name);
      backend.run(op);
      backend.synchronize();  // every kernel of the op completes inside its range
      synchronize_device("cudaDeviceSynchronize (before cuptiRangeProfilerPopRange)");
      rp.pop();
    }
    all_submitted = rp.stop();
  }

  {
    auto p = params<CUpti_RangeProfiler_DecodeData_Params>(CUpti_RangeProfiler_DecodeData_Params_STRUCT_SIZE);
    p.pRangeProfilerObject = rp.get();
    CUPTI_CALL(cuptiRangeProfilerDecodeData(&p), "cuptiRangeProfilerDecodeData");
    if (p.numOfRangeDropped > 0)
      throw Unavailable(fmt::format("CUPTI dropped {} of {} ranges", p.numOfRangeDropped, n_ops));
  }
  auto info =
      params<CUpti_RangeProfiler_GetCounterDataInfo_Params>(CUpti_RangeProfiler_GetCounterDataInfo_Params_STRUCT_SIZE);
  info.pCounterDataImage = counter_data.data();
  info.counterDataImageSize = counter_data.size();
  CUPTI_CALL(cuptiRangeProfilerGetCounterDataInfo(&info), "cuptiRangeProfilerGetCounterDataInfo");

  std::vector<std::string> range_names;
  std::vector<std::map<std::string, double>> values;
  for (size_t r = 0; r < info.numTotalRanges; ++r) {
    auto ri = params<CUpti_RangeProfiler_CounterData_GetRangeInfo_Params>(
        CUpti_RangeProfiler_CounterData_GetRangeInfo_Params_STRUCT_SIZE);
    ri.pCounterDataImage = counter_data.data();
    ri.counterDataImageSize = counter_data.size();
    ri.rangeIndex = r;
    ri.rangeDelimiter = "/";
    CUPTI_CALL(cuptiRangeProfilerCounterDataGetRangeInfo(&ri), "cuptiRangeProfilerCounterDataGetRangeInfo");
    // The name string stays CUPTI's (NVIDIA's sample does not free it either).
    range_names.emplace_back(ri.rangeName ? ri.rangeName : "");

    std::vector<double> v(kept.size(), 0.0);
    auto ev = params<CUpti_Profiler_Host_EvaluateToGpuValues_Params>(
        CUpti_Profiler_Host_EvaluateToGpuValues_Params_STRUCT_SIZE);
    ev.pHostObject = host->get();
    ev.pCounterDataImage = counter_data.data();
    ev.counterDataImageSize = counter_data.size();
    ev.rangeIndex = r;
    ev.ppMetricNames = const_cast<const char**>(names.data());
    ev.numMetrics = names.size();
    ev.pMetricValues = v.data();
    CUPTI_CALL(cuptiProfilerHostEvaluateToGpuValues(&ev),
               "cuptiProfilerHostEvaluateToGpuValues (range " + range_names.back() + ")");
    std::map<std::string, double> raw;
    for (size_t i = 0; i < kept.size(); ++i) raw[kept[i]] = v[i];
    values.push_back(std::move(raw));
  }

  std::vector<size_t> op_of_range;
  try {
    op_of_range = counters::ranges_to_ops(range_names, g);
  } catch (const Error& e) {
    throw Unavailable(fmt::format("the profiled ranges do not match the graph's ops: {}", e.what()));
  }

  json result = counters::status_json("measured", "");
  if (!dropped.empty())
    result["reason"] = fmt::format(
        "{} metric(s) this chip does not offer were dropped (dropped_metrics); the work they count is left out of "
        "every op's figures (each op's not_counted names them)",
        dropped.size());
  result["source"] = "measured: hardware counters (CUPTI Range Profiler, one user range per op, user replay)";
  result["chip"] = chip;
  result["arch"] = d.arch();
  result["compute_capability"] = fmt::format("{}.{}", d.major, d.minor);
  result["passes"] = passes;
  result["config_passes"] = n_passes;
  result["ranges"] = info.numTotalRanges;
  result["metrics"] = kept;
  result["dropped_metrics"] = dropped;
  json ops = json::object();
  const std::vector<std::string> in_use = tensor_dtypes_in_use(g);
  for (size_t r = 0; r < op_of_range.size(); ++r)
    ops[g.ops[op_of_range[r]].name] = flops_from_metrics(values[r], d.arch(), kept, in_use);
  result["ops"] = ops;
  return result;
}

}  // namespace

json collect_counters(Backend& backend, const LayerGraph& g, CounterMode mode) {
  if (mode == CounterMode::off) return counters::status_json("off", "--counters off: no hardware counters were read");
  auto unavailable = [&](const std::string& reason) -> json {
    if (mode == CounterMode::required)
      throw UsageError(fmt::format("--counters required: hardware counters are unavailable: {}", reason));
    return counters::status_json("unavailable", reason);  // the caller says so where it matters (cuda runs)
  };
  if (backend.name() != "cuda")
    return unavailable("counters need the cuda backend; the cpu backend counts in software");
  if (g.ops.empty()) return unavailable("the graph has no ops to measure");
  try {
    return profile(backend, g);
  } catch (const CuptiError& e) {
    return unavailable(
        counters::cupti_failure_reason(static_cast<int>(e.result()), e.call(), cupti_result_name(e.result())));
  } catch (const Unavailable& e) {
    return unavailable(e.what());
  }
}

}  // namespace flopscope
