// The execution layout of a parallel training run (Megatron-LM's, and torchtitan's FSDP):
// tensor parallel tp, pipeline parallel pp with vpp interleaved chunks a stage, context
// parallel cp (the sequence split over cp GPUs, ring attention), data parallel
// dp = gpus / (tp pp cp), optionally sharded FSDP-style over fsdp of the dp ranks,
// micro-batch and global batch in sequences, precision, activation recompute (Korthikanti et
// al. 2022), sequence parallelism, the attention kernel, the distributed optimizer.
//
// One defaulting path: flags (src/cli/predict.cpp), --search (search.hpp) and job files give
// what they know as LayoutChoices; resolve_layout fills the rest with the defaults below and
// says which it filled.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "model/model.hpp"
#include "predict/system.hpp"

namespace flopscope::predict {

enum class Recompute { none, selective, full };
enum class Attention { unfused, flash };
// A mixture of experts' token dispatcher (Megatron Core's --moe-token-dispatcher-type): allgather
// (every GPU of the etp x ep group gathers all its tokens, the experts keep theirs, a
// reduce-scatter brings the outputs back), alltoall (each routed copy of a token to its expert's
// GPU), flex (DeepEP / HybridEP: each token once to each GPU, and once to each node, holding one
// or more of its experts).
enum class Dispatcher { allgather, alltoall, flex };
std::string_view to_string(Recompute r);
std::string_view to_string(Attention a);
std::string_view to_string(Dispatcher d);
Recompute parse_recompute(std::string_view text);   // throws UsageError
Attention parse_attention(std::string_view text);   // throws UsageError
Dispatcher parse_dispatcher(std::string_view text); // throws UsageError

struct Layout {
  int64_t gpus = 8;
  int64_t tp = 1, pp = 1, vpp = 1;
  int64_t cp = 1;             // context parallel: each GPU holds seq / cp of every sequence
  int64_t fsdp = 0;           // FSDP shard group (ZeRO-3: weights, gradients, optimizer): 0 = off, else divides dp
  // A mixture of experts (Megatron Core's MoE layout): the routed experts split over ep GPUs
  // (expert parallel) and each expert's FFN width over etp (expert tensor parallel; 0 = tp, as
  // Megatron Core defaults it), carved out of the tp x cp x dp GPUs of a stage, which leaves
  // edp = tp cp dp / (etp ep) expert-data-parallel replicas. moe_imbalance: the busiest
  // expert's tokens over the mean (1: a balanced router, as the published runs force it).
  int64_t ep = 1, etp = 0;
  double moe_imbalance = 1.0;
  int64_t micro_batch = 1;    // sequences per micro-batch
  int64_t global_batch = 1;   // sequences per step, over all data-parallel ranks
  int64_t seq = 2048;
  std::string precision = "bf16";  // bf16 | fp16 | fp8
  Recompute recompute = Recompute::selective;
  bool sequence_parallel = true;
  Attention attention = Attention::unfused;
  bool distributed_optimizer = false;
  bool dp_overlap = true;  // the gradient reduction overlaps the backward
  // The tensor-parallel collectives overlapped with the GEMMs they feed or follow (Transformer
  // Engine's userbuffers: Megatron-LM's --tp-comm-overlap, NeMo's ub_tp_comm_overlap; it needs
  // sequence parallelism).
  bool tp_comm_overlap = false;
  // A mixture of experts' all-to-alls overlapped with another micro-batch's compute (Megatron
  // Core's --overlap-moe-expert-parallel-comm: in the 1F1B phase one micro-batch's forward and
  // another's backward run merged, layer by layer). Needs ep > 1, no full recompute, and vpp > 1
  // with pp > 1, as Megatron Core asserts; off by default, as there.
  bool ep_comm_overlap = false;
  Dispatcher moe_dispatcher = Dispatcher::alltoall;
  // FSDP layouts are torchtitan's: its transformer blocks under torch.compile (the norms, RoPE
  // and SwiGLU fused; torchtitan's apply_compile takes each block, the final norm and the loss
  // stay eager) or eager (each of them as PyTorch's separate kernels, compute.hpp). It
  // changes nothing without FSDP (Megatron-LM's kernels are fused either way; the notes say
  // so); default off (torchtitan's compile = false) except under fp8 (torchtitan's Float8 runs
  // compiled, its casts fused).
  bool torch_compile = false;
  // Megatron-LM's --account-for-embedding-in-pipeline-split and --account-for-loss-in-pipeline-
  // split: the embedding and the loss (the LM head) each count as a layer when the layers are
  // split over the stages and their vpp chunks, so the first and the last stage hold one layer
  // fewer (Llama 3.1 405B: 126 + 2 over pp 8 x vpp 8 chunks of 2).
  bool embedding_in_split = false, loss_in_split = false;

  int64_t dp() const { return gpus / (tp * pp * cp); }
  int64_t micro_batches() const { return global_batch / (micro_batch * dp()); }  // m, per pipeline
  bool fsdp_on() const { return fsdp > 1; }
  int64_t expert_tp() const { return etp > 0 ? etp : tp; }
  int64_t edp() const { return tp * cp * dp() / (expert_tp() * ep); }
};

// What a user gave, from flags or a job file; every unset field takes resolve_layout's default.
struct LayoutChoices {
  std::optional<int64_t> tp, pp, vpp, cp, fsdp, micro_batch, global_batch, seq, ep, etp;
  std::optional<double> moe_imbalance;
  std::optional<std::string> precision;
  std::optional<Recompute> recompute;
  std::optional<Attention> attention;
  std::optional<Dispatcher> moe_dispatcher;
  std::optional<bool> sequence_parallel, distributed_optimizer, dp_overlap, embedding_in_split, loss_in_split,
      tp_comm_overlap, ep_comm_overlap, torch_compile;
};

// A layout and, for each default it took, one line saying which and why (in the result JSON
// as layout.defaults).
struct ResolvedLayout {
  Layout layout;
  std::vector<std::string> defaults;
};

// The defaults, as people run today:
//   tp, pp, vpp, cp 1; FSDP off; micro-batch 1; seq the model's n_ctx; bf16; selective
//   recompute; sequence parallelism on (it applies with tp > 1); gradient reduction overlapped;
//   on Hopper (SystemProfile::architecture "hopper") flash attention and the distributed
//   optimizer (Megatron-LM / NeMo / torchtitan recipes for H100), elsewhere unfused attention
//   and no distributed optimizer (Megatron-LM 2022, what Korthikanti et al.'s A100 runs did);
//   the global batch from default_global_batch; the embedding and the loss outside the pipeline
//   split, unless neither is given and the layers divide into the pp x vpp chunks only with both
//   counted (Megatron-LM refuses such a layout without them: both on, said in the defaults).
// Validates the result (UsageError).
ResolvedLayout resolve_layout(const LayoutChoices& c, const ModelConfig& m, const SystemProfile& s, int64_t gpus);

// Tokens a step when the model publishes none (ModelConfig::batch_tokens 0): assumed 4M, Llama
// 2's published batch (Touvron et al. 2023) and the Llama 3 paper's first 405B stage.
inline constexpr double kAssumedBatchTokens = 4e6;

// The default global batch in sequences: the model's published tokens per batch (the GPT-3
// paper's Table 2.1: 175B 3.2M; Llama 2 4M; Llama 3 405B 16M), or kAssumedBatchTokens when it
// publishes none, over l.seq, rounded down to a multiple of micro-batch x dp (at least one).
// `why`, when given, gets the line saying so.
int64_t default_global_batch(const ModelConfig& m, const Layout& l, std::string* why = nullptr);

// Throws UsageError, one line, when the layout cannot run this model: tp not dividing the
// heads (or the kv heads, or d_ff), gpus not divisible by tp pp cp, cp not dividing the
// sequence (in 2 cp chunks, for the causal load balance) or with unfused attention, fsdp not
// dividing dp, a global batch not divisible by micro-batch x dp, more stages than layers (or a
// first or last stage left none by the embedding or the loss), vpp with layers (plus the embedding
// and the loss where they count) not dividing pp vpp, or interleaving with a micro-batch count not
// a multiple of pp;
// for a mixture of experts, ep not dividing the experts, etp not dividing the expert width, or
// etp x ep not dividing the tp x cp x dp GPUs of a stage (and ep or etp on a dense model); the
// all-to-all overlap without ep > 1, with full recompute, with pp > 1 and no interleaving, or
// with the allgather dispatcher; the flex dispatcher with etp > 1.
void validate(const Layout& l, const ModelConfig& m);

// How the layers are split over the stages: stage i holds split[i] layers (the first stages
// take one more when pp does not divide the layers). embedding, loss (Layout::embedding_in_split,
// loss_in_split): each counts as a layer of the first (last) stage in the split and is then taken
// off it.
std::vector<int64_t> layer_split(int64_t layers, int64_t pp, bool embedding = false, bool loss = false);

nlohmann::json layout_to_json(const Layout& l);
nlohmann::json layout_to_json(const ResolvedLayout& l);  // with "defaults"

}  // namespace flopscope::predict
