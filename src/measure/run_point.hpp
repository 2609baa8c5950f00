// One `measure` run, from parsed settings to its result JSON: the code path of `flopscope
// measure`, shared with `flopscope sweep` (one call per grid point), so a sweep's point is
// exactly what `measure` with the same options would have written.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "backend/select.hpp"
#include "counters/counters.hpp"
#include "measure/measure.hpp"
#include "model/model.hpp"
#include "report/result.hpp"
#include "util/parse.hpp"

namespace flopscope {

// The CPU's default causal block (GraphOptions::causal_block): at seq 2048 the attention
// products execute 9/16 of the full square.
inline constexpr int64_t kCpuCausalBlock = 256;

struct PointRequest {
  ModelConfig model;              // full width
  Fraction width{0, 1};           // {0, 1}: auto (cpu: GPT-3 ratios at d_model <= 384; cuda: the widest that fits)
  int64_t batch = 1;
  std::string precision;          // "": the backend's default (fp32 on the cpu, bf16 on a GPU)
  bool recompute = false;
  bool include_head = false;
  MeasureSettings settings;
  ClusterAssumption cluster;      // only gpus is used: the cluster line of the extrapolation
  std::string backend = "auto";   // auto, cpu or cuda
  std::string gpu = "0";          // CUDA device index, as typed (parsed after the backend is chosen)
  int64_t input_sets = 1;         // GraphOptions::input_sets
  int64_t causal_block = -1;      // GraphOptions::causal_block; -1: auto (cpu: kCpuCausalBlock, cuda: 0)
  bool no_ceiling = false;        // skip timing the GEMM ceiling
  bool nsight = false;              // also turns hardware counters off
  CounterMode counters = CounterMode::auto_;
  std::string command_line;       // recorded in the result
};

// Settings the chosen backend cannot honour: --cuda-graph off CUDA is a UsageError; --flush-l2
// off CUDA a warning. run_point checks each point; sweep checks once before any runs.
void check_backend_settings(const PointRequest& r, const BackendChoice& choice);

// Chooses and creates the backend, checks the layer fits, times the GEMM ceiling, verifies,
// warms up and times the layer, and returns the `measure` result. Throws UsageError for bad
// input (a width that leaves no whole head, a precision the backend does not run, a layer
// that does not fit) and Error for failures while running.
nlohmann::json run_point(const PointRequest& r);

}  // namespace flopscope
