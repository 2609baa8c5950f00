// The `measure` result: the run's per-op table (analytic beside counted or measured FLOPs,
// timed milliseconds), totals, and the extrapolation from this one layer to the training run.
#pragma once

#include <string>

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

// The extrapolation alone: this layer's counted FLOPs and times, each op scaled to full width
// by the graph's analytic ratio, x layers + LM head, x training tokens.
nlohmann::json extrapolate(const ModelConfig& model, const LayerGraph& run_graph, const MeasureRun& run,
                           const ClusterAssumption& cluster, const nlohmann::json& device);

}  // namespace flopscope
