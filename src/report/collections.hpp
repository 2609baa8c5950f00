// Results made of other results: a sweep's index (one `measure` result per grid point) and a
// comparison of saved results. Both are flopscope/1 documents, rendered like any other result
// (table, JSON, CSV, Markdown, HTML) from their JSON alone.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "report/render_detail.hpp"

namespace flopscope {

// Throws UsageError unless `r` is a flopscope result of this schema from one of the commands
// (estimate, measure, sweep, compare); a different schema names both versions.
void check_result(const nlohmann::json& r);

// The figures of one `measure` result that a sweep index keeps per point, so the index alone
// renders the sweep's tables and plots: the layer as run, its FLOPs, time, throughput and
// utilisation, and the extrapolated training run.
nlohmann::json point_summary(const nlohmann::json& measure_result);

struct CompareInput {
  std::string label;   // a short name (the file's stem unless given)
  std::string file;    // where it was read from
  nlohmann::json result;  // an estimate or measure result, schema-checked
};
// Side by side: each op and each total in every input, and ratios to the first (the baseline).
nlohmann::json compare_result(const std::vector<CompareInput>& inputs);

namespace detail {
Document sweep_document(const nlohmann::json& sweep);
Document compare_document(const nlohmann::json& compare);
std::string sweep_csv(const nlohmann::json& sweep);
std::string compare_csv(const nlohmann::json& compare);
}  // namespace detail

// The self-contained HTML page of any result: inline CSS, the tables, the figures as inline
// SVG; no script, no network reference.
std::string render_html(const nlohmann::json& result);

}  // namespace flopscope
