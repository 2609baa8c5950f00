// Memory preflight: before allocating, the bytes the layer needs (from the graph) against
// what the device has; when it will not fit, the largest width or batch that would.
#pragma once

#include <string>

#include "graph/graph.hpp"
#include "model/model.hpp"
#include "util/parse.hpp"

namespace flopscope {

struct Preflight {
  double required_bytes = 0;
  double available_bytes = 0;
  double usable_fraction = 0.9;  // leave room for the runtime, workspace and fragmentation
  bool fits = false;
  std::string message;  // when it does not fit: what would
};

// `full` is the full-width model; the layer runs at `width` with `batch` and `seq`.
Preflight preflight(const ModelConfig& full, const Fraction& width, int64_t batch, int64_t seq,
                    const GraphOptions& options, double available_bytes, double workspace_bytes = 0);

// The widest layer that fits, in whole kv groups (the query heads sharing one kv head; one
// head for multi-head attention), as a width fraction of `full` that scale_width accepts;
// Fraction{0, 1} when not even one head fits.
Fraction widest_fitting(const ModelConfig& full, int64_t batch, int64_t seq, const GraphOptions& options,
                        double usable_bytes, double workspace_bytes = 0);

}  // namespace flopscope
