// Result documents. JSON is the one format every other output is rendered from: commands
// build a JSON result, and table, CSV and Markdown are rendered from that JSON alone, so
// `flopscope report FILE.json` reproduces any output without running anything.
//
// Every figure's source is named: `analytic` (a formula or the layer graph), `counted`
// (software counted the dimensions of each executed call), `measured` (hardware counters)
// or `timed` (a clock). JSON carries a `sources` legend for its fields; tables name the
// source in their headers; CSV has a `source` column.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "analytic/formulas.hpp"
#include "analytic/hardware.hpp"
#include "graph/graph.hpp"
#include "model/model.hpp"

namespace flopscope {

inline constexpr const char* kSchema = "flopscope/1";

enum class Format { table, json, csv, markdown, html };
Format parse_format(std::string_view text);  // throws UsageError

// What `estimate` assumes to turn FLOPs into days: a cluster of `gpus` devices of one type
// running at `utilization` of the dtype's datasheet dense peak.
struct ClusterAssumption {
  std::string gpu = "h200-sxm";
  double gpus = 1024;
  double utilization = 0.5;
  std::string dtype = "bf16";
};

nlohmann::json tool_json();  // version, git commit
// One op's analytic fields: name, phase, group, kind, impl, shape, dims, dtype, flops, model_flops, min_bytes.
nlohmann::json op_json(const Op& op);
nlohmann::json layer_json(const LayerGraph& g, const ModelConfig& layer_model, const std::string& width);
nlohmann::json formulas_json(const ModelConfig& m, const ClusterAssumption& c,
                             int64_t megatron_vocab_multiple = kMegatronVocabDivisibleBy);
nlohmann::json cluster_json(const ClusterAssumption& c);
nlohmann::json seed_check_json(const ModelConfig& m);
// N by group (parameter_breakdown), with the total and Kaplan's non-embedding count.
nlohmann::json parameter_breakdown_json(const ModelConfig& m);
// Each kind of layer of the model's schedule: its spec, count, first layer and parameters.
nlohmann::json layer_kinds_json(const ModelConfig& m);

nlohmann::json estimate_result(const ModelConfig& model, const ModelConfig& layer_model, const std::string& width,
                               const LayerGraph& g, const ClusterAssumption& c,
                               int64_t megatron_vocab_multiple = kMegatronVocabDivisibleBy);

// Renders a result (from `estimate`, `measure`, `sweep`, `compare` or `predict`) in a format. Throws UsageError when the
// document is not a flopscope result of this schema or is missing fields.
std::string render(const nlohmann::json& result, Format f);

}  // namespace flopscope
