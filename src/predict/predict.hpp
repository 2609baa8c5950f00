// `flopscope predict`: one training step of a parallel run, assembled from the layer's
// per-op cost (compute.hpp), the layout's communication (comms.hpp) and the 1F1B schedule:
//
//   t_stage  = the slowest stage's forward + backward (+ recompute) of one micro-batch:
//              its layers' compute and tensor-parallel collectives, the embedding (first
//              stage) and the LM head (last stage), plus its point-to-point sends
//   step     = m t_stage                       (m micro-batches per pipeline)
//            + (pp - 1) / vpp x t_stage        (the 1F1B bubble, interleaved when vpp > 1)
//            + exposed data-parallel reduction (after what the last backward hides)
//            + the optimizer step              (memory bound over this GPU's parameters)
//
// Model FLOPs are Megatron-LM's (Narayanan et al. 2021): the graph's GEMMs with the
// attention square in full, forward and backward, no recompute: for GPT this is
// 72 B s L h^2 (1 + s / (6 h) + V / (12 h L)). Hardware FLOPs add the recomputed GEMMs.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "model/model.hpp"
#include "predict/comms.hpp"
#include "predict/compute.hpp"
#include "predict/layout.hpp"
#include "predict/memory.hpp"
#include "predict/system.hpp"

namespace flopscope::predict {

inline constexpr double kOptimizerBytesPerParameter = 32;  // Adam: 14 read + 14 written, grad norm 2, zeroing 2

struct Breakdown {
  double compute_s = 0;         // m x the slowest stage's compute
  double tp_comm_s = 0;         // exposed tensor-parallel collectives (none overlap)
  double pp_comm_s = 0;         // point-to-point sends between stages (blocking)
  double bubble_s = 0;          // pipeline fill and drain
  double dp_comm_s = 0;         // exposed data-parallel gradient reduction
  double dp_comm_total_s = 0;   // before overlap
  double optimizer_s = 0;
  // A mixture of experts' all-to-all (dispatch and combine, forward and backward): m x the
  // slowest stage's exposed part, and its total before overlap (equal without --ep-comm-overlap).
  double ep_comm_s = 0, ep_comm_total_s = 0;
  // Parts of the above, listed apart (not added again): the context-parallel ring's exposed
  // time (in tp_comm_s) and its total before overlap; the fp8 weight casts, once a step (in compute_s).
  double cp_comm_s = 0, cp_comm_total_s = 0;
  double fp8_weight_cast_s = 0;
};

struct Prediction {
  ModelConfig model;
  SystemProfile system;
  Layout layout;
  std::vector<int64_t> split;   // layers per stage
  LayerCost cost;
  Breakdown breakdown;
  MemoryBreakdown memory;       // the most loaded GPU (first or last stage)
  double stage_time_s = 0;      // t_stage
  double step_time_s = 0;
  double tokens_per_s = 0;
  double model_flops = 0, hardware_flops = 0;  // per step, all GPUs
  double model_tflops_per_gpu = 0, hardware_tflops_per_gpu = 0;
  double peak_tflops = 0;
  double mfu = 0, hfu = 0;
  double training_days = 0;
  std::string compute_source;   // modelled | measured (file) | partly measured
  std::vector<std::string> notes;
};

struct PredictInput {
  ModelConfig model;
  SystemProfile system;
  Layout layout;
  const MeasuredOps* measured = nullptr;
  std::vector<BusBandwidthCurve> nccl;
};

// Data-parallel communication overlapped a model chunk at a time (Megatron-LM's
// --overlap-grad-reduce and --overlap-param-gather; NeMo's distributed Adam the same way): what
// of `comm_s` (a stage's collective, 1 / vpp of it each chunk's, one stream) is not hidden by the
// compute it overlaps, `per_micro_batch_s` being the stage's backward (for the gradients'
// reduction) or forward (for the next step's parameter all-gather) of one micro-batch.
// Backward ends with the last pp micro-batches going through the chunks, vpp - 1 down to 0 (one
// micro-batch with vpp 1), each chunk's share per_micro_batch_s / vpp a micro-batch; chunk j's
// reduction starts as its last backward does (its buckets go as their gradients are ready) and
// has j pp + 1 of those shares left to hide behind, behind the chunks before it in the stream:
//   exposed = max(0, max_j ((j + 1) comm_s - (j pp + 1) per_micro_batch_s) / vpp), j = 0 .. vpp - 1
// (linear in j: j = 0 or vpp - 1). The all-gather is the mirror image in the next step's forward.
// vpp 1: max(0, comm_s - per_micro_batch_s).
double exposed_past_chunks(double comm_s, double per_micro_batch_s, int64_t vpp, int64_t pp);

// Validates the layout (UsageError) and predicts.
Prediction predict(const PredictInput& in);

// Model FLOPs of one step (Megatron-LM's convention, from the graph).
double model_flops_per_step(const ModelConfig& m, const Layout& l);

nlohmann::json prediction_json(const Prediction& p);

}  // namespace flopscope::predict
