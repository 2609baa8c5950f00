// The execution layout of a parallel training run (Megatron-LM's): tensor parallel tp,
// pipeline parallel pp with vpp interleaved chunks a stage, data parallel dp = gpus / (tp pp),
// micro-batch and global batch in sequences, precision, activation recompute (Korthikanti et
// al. 2022), sequence parallelism, the attention kernel, the distributed optimizer.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "model/model.hpp"

namespace flopscope::predict {

enum class Recompute { none, selective, full };
enum class Attention { unfused, flash };
std::string_view to_string(Recompute r);
std::string_view to_string(Attention a);
Recompute parse_recompute(std::string_view text);   // throws UsageError
Attention parse_attention(std::string_view text);   // throws UsageError

struct Layout {
  int64_t gpus = 8;
  int64_t tp = 1, pp = 1, vpp = 1;
  int64_t micro_batch = 1;    // sequences per micro-batch
  int64_t global_batch = 1;   // sequences per step, over all data-parallel ranks
  int64_t seq = 2048;
  std::string precision = "bf16";  // bf16 | fp16 | fp8
  Recompute recompute = Recompute::selective;
  bool sequence_parallel = true;
  Attention attention = Attention::unfused;
  bool distributed_optimizer = false;
  bool dp_overlap = true;  // the gradient reduction overlaps the last micro-batch's backward

  int64_t dp() const { return gpus / (tp * pp); }
  int64_t micro_batches() const { return global_batch / (micro_batch * dp()); }  // m, per pipeline
};

// Throws UsageError, one line, when the layout cannot run this model on `gpus_per_node`-GPU
// nodes: tp not dividing the heads (or the kv heads), gpus not divisible by tp pp, a global
// batch not divisible by micro-batch x dp, more stages than layers, vpp with layers not
// dividing pp vpp, or interleaving with a micro-batch count not a multiple of pp.
void validate(const Layout& l, const ModelConfig& m);

// How the layers are split over the stages: stage i holds split[i] layers (the first stages
// take one more when pp does not divide the layers).
std::vector<int64_t> layer_split(int64_t layers, int64_t pp);

nlohmann::json layout_to_json(const Layout& l);

}  // namespace flopscope::predict
