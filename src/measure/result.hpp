// The `measure` result: the run's per-op table (analytic beside counted or measured FLOPs,
// timed milliseconds), totals, and the extrapolation from this one layer to the training run.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/backend.hpp"
#include "backend/preflight.hpp"
#include "backend/select.hpp"
#include "measure/measure.hpp"
#include "model/model.hpp"
#include "report/result.hpp"

namespace flopscope {

struct MeasureContext {
  const ModelConfig& model;        // full width
  const ModelConfig& layer_model;  // as run
  std::string width;
  const LayerGraph& graph;
  const BackendChoice& choice;
  Backend& backend;
  const Preflight& preflight;
  const MeasureSettings& settings;
  const MeasureRun& run;
  const ClusterAssumption& cluster;
  nlohmann::json ceiling;  // backend.gemm_ceiling(), or null when skipped
  std::string command_line;
  bool nsight = false;
};

nlohmann::json measure_result(const MeasureContext& c);

// The FLOPs each op executed, with where each figure came from: counted by the backend in
// software (cpu), measured by hardware counters where they ran (cuda), else analytic.
struct ExecutedFlops {
  std::vector<double> flops;
  std::vector<std::string> source;
  std::string overall;  // counted | measured | analytic | "measured, analytic where counters gave none"
};
ExecutedFlops executed_flops(const LayerGraph& g, const MeasureRun& run);

// The extrapolation alone: this layer's counted FLOPs and times, each op scaled to full width
// by the graph's analytic ratio, x layers + LM head, x training tokens.
nlohmann::json extrapolate(const ModelConfig& model, const LayerGraph& run_graph, const MeasureRun& run,
                           const ClusterAssumption& cluster, const nlohmann::json& device);

}  // namespace flopscope
