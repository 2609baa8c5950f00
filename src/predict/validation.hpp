// The published runs predict is checked against: Korthikanti et al. 2022 ("Reducing
// Activation Recomputation in Large Transformer Models"), Table 5. A100 80GB, fp16, seq
// 2048, vocab 51200, data parallel 1; seconds per iteration with full recompute and with
// selective recompute plus sequence parallelism. Megatron-LM of the time: unfused attention
// with its fused softmax, no overlap of tensor-parallel communication, blocking pipeline sends.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "predict/predict.hpp"

namespace flopscope::predict {

struct PublishedRun {
  std::string model;  // 22B, 175B, 530B, 1T
  int64_t layers, d_model, heads;
  int64_t tp, pp, vpp, gpus, global_batch, micro_batch;
  double full_s, selective_sp_s;  // published seconds per iteration
};
const std::vector<PublishedRun>& table5();

ModelConfig table5_model(const PublishedRun& r);
Layout table5_layout(const PublishedRun& r, bool selective_sp);

struct ValidationRow {
  std::string model, recompute;
  double predicted_s = 0, published_s = 0, error = 0;  // error: predicted / published - 1
  double mfu = 0, hfu = 0;
};
// Every row of Table 5 predicted on `system` (the A100 profile).
std::vector<ValidationRow> validate_table5(const SystemProfile& system);
nlohmann::json validation_json(const std::vector<ValidationRow>& rows, const SystemProfile& system);

}  // namespace flopscope::predict
