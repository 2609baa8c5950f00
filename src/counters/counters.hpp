// Hardware FLOP counting: the layer's ops run under the CUPTI Range Profiler, one user range
// per op named exactly as the graph names it (fwd.qkv, bwd.ffn.up.wgrad, ...), with user
// replay: the whole op list is re-run once per pass, after (and apart from) the timing runs,
// because replay perturbs time. Each range's raw metric values become FLOPs by
// flops_from_metrics(), which is pure and unit-tested on hand-built inputs.
//
// Conventions (docs/counters.md has the evidence and what is still to be confirmed on a GPU):
//   tensor cores   sm__ops_path_tensor_src_<dtype>..._sparsity_off.sum, already in FLOPs
//                  (one FMA = 2); a total is never added to its sparsity children
//   CUDA cores     fadd + fmul + 2 ffma (fp32), dadd + dmul + 2 dfma (fp64),
//                  2 hadd + 2 hmul + 4 hfma (fp16: every half instruction taken as packed half2)
//   memory, time   dram__bytes_read.sum, dram__bytes_write.sum (bytes), gpu__time_duration.sum (ns)
//
// The binary never links the driver library: the CUDA context comes from the runtime
// (cudaFree(0)) and cuCtxGetCurrent through cudaGetDriverEntryPointByVersion; libcupti.so.13
// loads the driver itself, so a machine without a driver still starts and gets "unavailable".
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/backend.hpp"
#include "graph/graph.hpp"

namespace flopscope {

// --counters off|auto|required.
//   off       no CUPTI call at all; status "off"
//   auto      counters when they can be read, else status "unavailable" with a reason that says
//             what to do (no GPU, insufficient privileges, a virtualised or unsupported device,
//             another profiler attached, ...)
//   required  like auto, but a reason to be unavailable is thrown as UsageError
enum class CounterMode { off, auto_, required };

// Throws UsageError naming the choices.
CounterMode parse_counter_mode(std::string_view text);
std::string_view to_string(CounterMode m);  // "off", "auto", "required"

inline constexpr const char* kCounterApi = "CUPTI Range Profiler";

// Runs g's ops on `backend` (already allocated, prepared and filled) under the CUPTI Range
// Profiler and returns
//   {"status": "measured" | "unavailable" | "off", "reason": "...", "api": "CUPTI Range Profiler",
//    "chip": "GH100" | null, "arch": "sm_90" | null, "passes": N, "metrics": [collected],
//    "dropped_metrics": [{"name", "why"}], "replay": "...", "source": "...",
//    "ops": {"fwd.qkv": <flops_from_metrics() of that op's range>, ...}}
// A backend whose name() is not "cuda" is unavailable. Errors of the backend itself while
// replaying (a failing kernel) are thrown as they are, in every mode.
nlohmann::json collect_counters(Backend& backend, const LayerGraph& g, CounterMode mode);

// Pure: the raw metric values of one range -> FLOP figures, for an architecture "sm_XY".
//   {"raw": {...}, "arch", "tensor_flops", "tensor_flops_by_dtype": {bf16, fp16, tf32, fp8},
//    "cuda_core_flops", "cuda_core_flops_by_precision": {fp32, fp64, fp16}, "flops",
//    "dram_bytes_read", "dram_bytes_write", "gpu_time_ns",
//    "formula": {"tensor_flops": {metric: weight}, "cuda_core_flops": {metric: weight}},
//    "checks": {...cross-checks...}, "missing": [collected metrics this range lacks],
//    "not_counted": [metrics of this arch the chip refused], "not_counted_dtypes": [{dtype, why}],
//    "complete": bool, "source": "measured: ..."}
// `collected`: the metrics the chip accepted (the profiler's kept list); the two-argument form
// takes every metric of metrics_for(arch). A metric outside `collected` is no term of any
// figure (it is named in not_counted: the work it would count is not in the figures); a
// collected one that is absent (or NaN) makes its figure null, never 0; tensor_flops,
// cuda_core_flops and flops are null unless every dtype / precision with a collected term has
// its figure (the by_dtype / by_precision parts stay), and complete is flops != null. Throws
// Error for an arch that is not "sm_" followed by digits.
nlohmann::json flops_from_metrics(const std::map<std::string, double>& raw, const std::string& arch);
nlohmann::json flops_from_metrics(const std::map<std::string, double>& raw, const std::string& arch,
                                  const std::vector<std::string>& collected);
// Tensor dtypes: each is read the first way whose metrics were collected: its dense aggregate,
// on Hopper the HGMMA + HMMA split of the same work, then its dense + sparse total
// (formula.tensor_basis says which). A dtype the chip refused every metric of is not counted
// (not_counted_dtypes): its figure and tensor_flops are null and complete is false, never 0,
// unless `tensor_dtypes_in_use` is given and lacks it (the run executes no such tensor work:
// then it is only named). Without the argument every dtype is taken as possibly in use.
nlohmann::json flops_from_metrics(const std::map<std::string, double>& raw, const std::string& arch,
                                  const std::vector<std::string>& collected,
                                  const std::optional<std::vector<std::string>>& tensor_dtypes_in_use);

// The tensor dtypes a graph's GEMMs execute ("bf16", "fp16", "tf32", "fp8"; an fp8 layer's
// attention and head run in bf16); fp32 and fp64 GEMMs run on CUDA cores.
std::vector<std::string> tensor_dtypes_in_use(const LayerGraph& g);

// The metric names (with their .sum roll-up) to request on a GPU of compute capability
// major*10 + minor; empty below 75 (the Range Profiler needs Turing or newer).
std::vector<std::string> metrics_for(int compute_capability);

}  // namespace flopscope
