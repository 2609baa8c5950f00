// The measurement loop, shared by every backend: one verification run (counted FLOPs and a
// check that every output was written), warm-up runs, then timed repeats of the whole layer
// with a timeline point between consecutive ops, so every op, every phase and the whole
// layer get median, min and max times.
#pragma once

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/backend.hpp"
#include "graph/graph.hpp"

namespace flopscope {

struct MeasureSettings {
  int64_t warmup = 1;
  int64_t repeats = 3;
  uint64_t seed = 1;
  // Record the layer once per input set (a CUDA graph) and time its replays: no launch gaps
  // between ops. Otherwise every op is launched from the host in each repeat.
  bool cuda_graph = false;
  bool flush_l2 = false;  // recorded in results; the backend does the flushing
  int gemm_candidates = kDefaultGemmCandidates;  // recorded in results; the cuda backend does the choosing
};

struct Samples {
  std::vector<double> ms;
  double median() const;
  double min() const;
  double max() const;
  nlohmann::json json() const;  // {median, min, max, samples}
};

struct MeasureRun {
  std::vector<Samples> op_ms;         // per graph op, in graph order
  std::vector<double> counted_flops;  // per graph op, from the verification run; empty if not counted
  Samples forward_ms, backward_ms, total_ms;  // backward includes the LM head's backward and recompute
  Samples replay_ms;  // cuda_graph: each whole graph launch, timed around it on the stream (else empty)
  nlohmann::json verification;
  nlohmann::json prepared;  // what the backend chose in prepare() (GEMM algorithms), or null
  nlohmann::json clocks_before, clocks_after;  // device clocks around the timed runs, or null
  nlohmann::json hardware_counters;  // collect_counters() after the timed runs (src/counters), or null
  double wall_seconds = 0;
};

// Allocates, fills, verifies, warms up and times. Throws Error when verification fails: a
// layer that computes garbage never produces a throughput figure.
MeasureRun run_measure(Backend& backend, const LayerGraph& g, const MeasureSettings& s);

}  // namespace flopscope
