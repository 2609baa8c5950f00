// `predict --search`: every layout of a space for one GPU count, predicted; those that fit in
// memory sorted by step time.
//
// The space: tp dividing the heads, the kv heads and d_ff, up to the node size; cp 1, 2, 4, 8
// (flash attention only, the sequence in 2 cp chunks); pp dividing gpus / (tp cp), at most the
// layers; vpp 1-4 where the layers divide into pp vpp chunks; FSDP off or over all dp ranks;
// micro-batch 1, 2, 4, 8; recompute none, selective, full; attention flash or unfused; the
// distributed optimizer on or off (with FSDP the optimizer is sharded anyway: not varied);
// sequence parallelism on with tp > 1. A dimension the user gave (LayoutChoices) is held at
// that value; the global batch is the given one or default_global_batch of each layout.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "predict/predict.hpp"

namespace flopscope::predict {

struct SearchResult {
  std::vector<Prediction> best;  // the fastest that fit (most tokens/s first), at most `top`
  int64_t tried = 0;             // layouts that passed validate() and were predicted
  int64_t fitting = 0;
  std::string space;             // the space, in words (the given dimensions named)
};

// The layouts of the space for `gpus` (validated, global batch set).
std::vector<Layout> search_space(const LayoutChoices& given, const ModelConfig& m, const SystemProfile& s, int64_t gpus);

// Predicts each layout of the space with `base`'s model, system, measured ops and nccl-tests
// curves. Throws UsageError when none fits.
SearchResult search_layouts(const PredictInput& base, const LayoutChoices& given, int64_t gpus, int64_t top);

}  // namespace flopscope::predict
