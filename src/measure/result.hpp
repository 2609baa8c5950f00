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

// Another kind of the model's layer (ModelConfig::layer_kinds), measured after the main one:
// every distinct kind runs, verified and timed, and the extrapolation sums their measured times.
struct KindRun {
  size_t kind = 0;
  LayerGraph graph;
  MeasureRun run;
  nlohmann::json experts = nullptr;  // experts_json of its run
};

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
  const std::vector<KindRun>* other_kinds = nullptr;  // the model's other kinds of layer, as they ran
  nlohmann::json experts = nullptr;                   // experts_json of the main run (before the others ran)
  double allocated_bytes = -1;                        // the main run's (before the others ran); < 0: ask the backend
};

// A mixture of experts' layer: the tokens the router chose for each expert in the backend's last
// run of `g` (its experts tensor), the rows each ran (its counts tensor) and the imbalance
// max/mean; null for a dense layer. capacity_factor (ModelConfig::capacity_factor; 0: none):
// where `g` carries it (MoeSpec::capacity, a backend that drops tokens) the JSON says it was
// applied and how many rows the router dropped past Megatron-LM's capacity, ceil(factor x k T /
// E) an expert; where not (the cuda backend), that it was not, and the rows a run with it would
// have dropped.
nlohmann::json experts_json(const LayerGraph& g, Backend& b, double capacity_factor = 0);

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
// `others`: the model's other kinds of layer that ran too (their measured times replace the
// analytic estimate at the main layer's throughput).
nlohmann::json extrapolate(const ModelConfig& model, const LayerGraph& run_graph, const MeasureRun& run,
                           const ClusterAssumption& cluster, const nlohmann::json& device,
                           const std::vector<KindRun>& others = {});

}  // namespace flopscope
