// Internals of the counters module that need no GPU, exposed for tests/test_counters.cpp:
// the range-name-to-op mapping, the reasons given when counters cannot be read, and the
// status object every outcome shares. No CUPTI header is included here.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "graph/graph.hpp"

namespace flopscope::counters {

// "sm_90" -> 90. Throws Error for anything else.
int compute_capability_of(std::string_view arch);

// For each range CUPTI returned (by name, in its order), the index of the graph op it
// measured. Each op must own exactly one range: CUPTI merges ranges of one name, so two ops
// with one name, a range that names no op, a second range for one op, or an op without a
// range all throw Error (a mismatch means the counts cannot be attributed). A name with the
// nesting delimiter "/" is matched by its last component (one nesting level is profiled, so
// CUPTI returns plain op names; the tolerance costs nothing).
std::vector<size_t> ranges_to_ops(const std::vector<std::string>& range_names, const LayerGraph& g);

// One line saying why counters could not be read and what to do, for a CUptiResult `code`
// (its numeric value; `result_name` as cuptiGetResultString gives it) returned by `call`.
std::string cupti_failure_reason(int code, std::string_view call, std::string_view result_name);

// The object every outcome returns, with every key present: status, reason, api, chip (null),
// arch (null), passes (0), config_passes (0), metrics ([]), dropped_metrics ([]), replay,
// source, ops ({}).
nlohmann::json status_json(std::string_view status, std::string_view reason);

}  // namespace flopscope::counters
