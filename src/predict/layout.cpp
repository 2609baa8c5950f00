#include "predict/layout.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "util/error.hpp"

namespace flopscope::predict {

std::string_view to_string(Recompute r) {
  switch (r) {
    case Recompute::none: return "none";
    case Recompute::selective: return "selective";
    case Recompute::full: return "full";
  }
  return "?";
}

std::string_view to_string(Attention a) { return a == Attention::flash ? "flash" : "unfused"; }

std::string_view to_string(Dispatcher d) {
  switch (d) {
    case Dispatcher::allgather: return "allgather";
    case Dispatcher::alltoall: return "alltoall";
    case Dispatcher::flex: return "flex";
  }
  return "?";
}

Dispatcher parse_dispatcher(std::string_view t) {
  if (t == "allgather") return Dispatcher::allgather;
  if (t == "alltoall") return Dispatcher::alltoall;
  if (t == "flex") return Dispatcher::flex;
  throw UsageError(fmt::format("--moe-dispatcher: unknown '{}'; choose allgather, alltoall or flex", t));
}

Recompute parse_recompute(std::string_view t) {
  if (t == "none") return Recompute::none;
  if (t == "selective") return Recompute::selective;
  if (t == "full") return Recompute::full;
  throw UsageError(fmt::format("--recompute: unknown '{}'; choose none, selective or full", t));
}

Attention parse_attention(std::string_view t) {
  if (t == "unfused") return Attention::unfused;
  if (t == "flash") return Attention::flash;
  throw UsageError(fmt::format("--attention: unknown '{}'; choose unfused or flash", t));
}

int64_t default_global_batch(const ModelConfig& m, const Layout& l, std::string* why) {
  const bool published = m.batch_tokens > 0;
  const double tokens = published ? m.batch_tokens : kAssumedBatchTokens;
  const int64_t tpc = l.tp * l.pp * l.cp;
  // A layout whose dp is not whole gets one micro-batch: validate() names the real problem.
  const int64_t unit = l.micro_batch * (tpc > 0 && l.gpus % tpc == 0 ? std::max<int64_t>(1, l.dp()) : 1);
  const auto seqs = static_cast<int64_t>(tokens / static_cast<double>(l.seq));
  const int64_t batch = std::max(unit, seqs / unit * unit);
  if (why)
    *why = fmt::format("global batch {} sequences: {} {:g}M tokens a batch{} / seq {}, rounded down to a multiple of "
                       "micro-batch x dp = {}",
                       batch, published ? m.name + "'s published" : "assumed", tokens / 1e6,
                       published ? "" : " (the model publishes none; Llama 2's 4M)", l.seq, unit);
  return batch;
}

ResolvedLayout resolve_layout(const LayoutChoices& c, const ModelConfig& m, const SystemProfile& s, int64_t gpus) {
  ResolvedLayout r;
  Layout& l = r.layout;
  const bool hopper = s.architecture == "hopper";
  l.gpus = gpus;
  l.tp = c.tp.value_or(1);
  l.pp = c.pp.value_or(1);
  l.vpp = c.vpp.value_or(1);
  l.cp = c.cp.value_or(1);
  l.fsdp = c.fsdp.value_or(0);
  l.ep = c.ep.value_or(1);
  l.etp = c.etp.value_or(0);
  l.moe_imbalance = c.moe_imbalance.value_or(1.0);
  l.micro_batch = c.micro_batch.value_or(1);
  l.seq = c.seq.value_or(m.n_ctx);
  l.precision = c.precision.value_or("bf16");
  l.recompute = c.recompute.value_or(Recompute::selective);
  l.sequence_parallel = c.sequence_parallel.value_or(true);
  l.dp_overlap = c.dp_overlap.value_or(true);
  const std::string why_arch = hopper ? fmt::format("{} is Hopper: what Megatron-LM, NeMo and torchtitan run there", s.id)
                                      : fmt::format("{} is not Hopper: Megatron-LM 2022's practice", s.id);
  if (c.attention) {
    l.attention = *c.attention;
  } else {
    l.attention = hopper ? Attention::flash : Attention::unfused;
    r.defaults.push_back(fmt::format("attention {} ({})", to_string(l.attention), why_arch));
  }
  if (c.distributed_optimizer) {
    l.distributed_optimizer = *c.distributed_optimizer;
  } else {
    l.distributed_optimizer = hopper;
    r.defaults.push_back(fmt::format("distributed optimizer {} ({})", hopper ? "on" : "off", why_arch));
  }
  if (c.tp_comm_overlap) {
    l.tp_comm_overlap = *c.tp_comm_overlap;
  } else if (l.tp > 1) {
    // NeMo's and Megatron-Bridge's H100 recipes and MLPerf's GPT-3 turn userbuffers on with tp > 1
    // and sequence parallelism; torchtitan (FSDP here) leaves its async TP off by default.
    l.tp_comm_overlap = hopper && l.sequence_parallel && !l.fsdp_on();
    r.defaults.push_back(fmt::format(
        "tensor-parallel comm overlap {} ({})", l.tp_comm_overlap ? "on" : "off",
        !hopper                ? why_arch
        : !l.sequence_parallel ? "it needs sequence parallelism"
        : l.fsdp_on() ? "FSDP is torchtitan's: its async tensor parallelism is off by default"
                     : s.id + " is Hopper: NeMo's and Megatron-Bridge's recipes and MLPerf's GPT-3 overlap the TP "
                              "collectives with the GEMMs there (Transformer Engine's userbuffers)"));
  }
  l.ep_comm_overlap = c.ep_comm_overlap.value_or(false);
  l.moe_dispatcher = c.moe_dispatcher.value_or(Dispatcher::alltoall);
  if (c.torch_compile) {
    l.torch_compile = *c.torch_compile;
  } else if (l.fsdp_on()) {
    l.torch_compile = l.precision == "fp8";
    r.defaults.push_back(l.torch_compile
                             ? "torch.compile on (FSDP is torchtitan's; its Float8 training runs compiled, as its "
                               "benchmarks do: the casts fused)"
                             : "torch.compile off (FSDP is torchtitan's: compile = false by default, its model eager)");
  }
  if (!c.moe_dispatcher && m.moe() && l.ep > 1)
    r.defaults.push_back("token dispatcher alltoall (Megatron-Bridge's MoE recipes set it; Megatron Core's own default "
                         "is allgather)");
  if (!c.ep_comm_overlap && m.moe() && l.ep > 1)
    r.defaults.push_back("expert-parallel all-to-all overlap off (Megatron Core's default: "
                         "--overlap-moe-expert-parallel-comm not given)");
  if (!c.seq) r.defaults.push_back(fmt::format("seq {}: the model's n_ctx", l.seq));
  l.embedding_in_split = c.embedding_in_split.value_or(false);
  l.loss_in_split = c.loss_in_split.value_or(false);
  const int64_t chunks = l.pp * l.vpp;
  if (!c.embedding_in_split && !c.loss_in_split && l.vpp > 1 && m.n_layers % chunks != 0 &&
      (m.n_layers + 2) % chunks == 0) {
    l.embedding_in_split = l.loss_in_split = true;
    r.defaults.push_back(fmt::format(
        "account for the embedding and the loss in the pipeline split: the {} layers divide into pp x vpp = {} chunks "
        "only with both counted ({} + 2 = {} x {}), which is how Megatron-LM runs such a layout "
        "(--account-for-embedding-in-pipeline-split, --account-for-loss-in-pipeline-split); the first and last stages "
        "hold one layer fewer",
        m.n_layers, chunks, m.n_layers, chunks, (m.n_layers + 2) / chunks));
  }
  if (c.global_batch) {
    l.global_batch = *c.global_batch;
  } else {
    std::string why;
    l.global_batch = default_global_batch(m, l, &why);
    r.defaults.push_back(why);
  }
  validate(l, m);
  return r;
}

void validate(const Layout& l, const ModelConfig& m) {
  if (l.precision != "bf16" && l.precision != "fp16" && l.precision != "fp8")
    throw UsageError(fmt::format("--precision: '{}' is not a training precision predict models; choose bf16, fp16 or fp8",
                                 l.precision));
  if (m.n_heads % l.tp != 0)
    throw UsageError(fmt::format("layout: --tp {} does not divide the {} attention heads", l.tp, m.n_heads));
  if (m.kv_heads() % l.tp != 0)
    throw UsageError(fmt::format("layout: --tp {} does not divide the {} key/value heads", l.tp, m.kv_heads()));
  if (m.d_ff() % l.tp != 0) throw UsageError(fmt::format("layout: --tp {} does not divide d_ff {}", l.tp, m.d_ff()));
  if (l.gpus % (l.tp * l.pp * l.cp) != 0)
    throw UsageError(fmt::format("layout: {} GPUs are not divisible by tp x pp x cp = {} x {} x {} = {}", l.gpus, l.tp,
                                 l.pp, l.cp, l.tp * l.pp * l.cp));
  if (l.pp > m.n_layers)
    throw UsageError(fmt::format("layout: --pp {} is more stages than the model's {} layers", l.pp, m.n_layers));
  if (l.embedding_in_split || l.loss_in_split) {
    const std::vector<int64_t> split = layer_split(m.n_layers, l.pp, l.embedding_in_split, l.loss_in_split);
    if (l.pp < 2 || split.front() < 1 || split.back() < 1)
      throw UsageError(fmt::format("layout: accounting for the embedding or the loss in the pipeline split needs pp >= 2 "
                                   "and leaves the first and last of the {} stages at least a layer each ({} layers)",
                                   l.pp, m.n_layers));
  }
  if (l.cp > 1) {
    // Megatron-LM splits each sequence into 2 cp chunks and gives rank i chunks i and
    // 2 cp - 1 - i, so every rank has the same share of the causal square.
    if (l.seq % (2 * l.cp) != 0)
      throw UsageError(fmt::format("layout: --cp {} needs the sequence {} to split into 2 x cp = {} equal chunks (the "
                                   "causal load balance)", l.cp, l.seq, 2 * l.cp));
    if (l.attention != Attention::flash)
      throw UsageError(fmt::format("layout: --cp {} needs --attention flash (ring attention is a fused attention kernel "
                                   "over K and V chunks; an unfused s x s square does not split)", l.cp));
  }
  if (l.tp_comm_overlap && l.tp > 1 && !l.sequence_parallel)
    throw UsageError("layout: --tp-comm-overlap on needs --sequence-parallel on (Transformer Engine overlaps the "
                     "sequence-parallel all-gathers and reduce-scatters; Megatron-LM refuses it without)");
  const int64_t dp = l.dp();
  if (!m.moe() && l.ep_comm_overlap)
    throw UsageError(fmt::format("layout: --ep-comm-overlap on: {} is not a mixture of experts (it has no all-to-all)",
                                 m.name));
  if (!m.moe() && l.moe_dispatcher != Dispatcher::alltoall)
    throw UsageError(fmt::format("layout: --moe-dispatcher {}: {} is not a mixture of experts (it has no tokens to "
                                 "dispatch)", to_string(l.moe_dispatcher), m.name));
  if (!m.moe() && (l.ep != 1 || (l.etp != 0 && l.etp != l.tp)))
    throw UsageError(fmt::format("layout: --ep {} / --etp {}: {} is not a mixture of experts (it has no experts to split)",
                                 l.ep, l.expert_tp(), m.name));
  if (m.moe()) {
    const int64_t etp = l.expert_tp();
    if (l.ep < 1 || m.n_experts % l.ep != 0)
      throw UsageError(fmt::format("layout: --ep {} does not divide the {} experts", l.ep, m.n_experts));
    if (etp < 1 || m.d_ff_expert % etp != 0)
      throw UsageError(fmt::format("layout: --etp {} does not divide the expert width {}", etp, m.d_ff_expert));
    if ((l.tp * l.cp * dp) % (etp * l.ep) != 0)
      throw UsageError(fmt::format("layout: etp x ep = {} x {} = {} does not divide the tp x cp x dp = {} x {} x {} = {} "
                                   "GPUs of a pipeline stage, which the experts are split over",
                                   etp, l.ep, etp * l.ep, l.tp, l.cp, dp, l.tp * l.cp * dp));
    if (l.ep_comm_overlap && l.ep < 2)
      throw UsageError("layout: --ep-comm-overlap on needs expert parallelism (--ep 2 or more): there is no all-to-all "
                       "to overlap");
    if (l.ep_comm_overlap && l.recompute == Recompute::full)
      throw UsageError("layout: --ep-comm-overlap on cannot run with --recompute full (Megatron Core refuses full "
                       "recomputation with --overlap-moe-expert-parallel-comm)");
    if (l.ep_comm_overlap && l.moe_dispatcher == Dispatcher::allgather)
      throw UsageError("layout: --ep-comm-overlap on needs --moe-dispatcher alltoall or flex (Megatron Core overlaps "
                       "no allgather dispatcher)");
    if (l.moe_dispatcher == Dispatcher::flex && etp > 1)
      throw UsageError(fmt::format("layout: --moe-dispatcher flex with --etp {}: the flex dispatcher (DeepEP, HybridEP) "
                                   "is modelled with expert tensor parallelism 1 only", etp));
    if (l.ep_comm_overlap && l.pp > 1 && l.vpp < 2)
      throw UsageError(fmt::format("layout: --ep-comm-overlap on with --pp {} needs the interleaved schedule (--vpp 2 or "
                                   "more), as Megatron Core asserts", l.pp));
    if (!(l.moe_imbalance >= 1.0) || !std::isfinite(l.moe_imbalance))
      throw UsageError(fmt::format("layout: --moe-imbalance {} must be at least 1 (the busiest expert's tokens over the "
                                   "mean)", l.moe_imbalance));
  }
  if (l.fsdp < 0 || l.fsdp == 1 || (l.fsdp > 1 && dp % l.fsdp != 0))
    throw UsageError(fmt::format("layout: --fsdp {} must be 0 (off) or a divisor of data parallel {} above 1 (the GPUs "
                                 "each shard is split over)", l.fsdp, dp));
  if (l.global_batch % (l.micro_batch * dp) != 0)
    throw UsageError(fmt::format("layout: global batch {} is not divisible by micro-batch x data parallel = {} x {} = {}",
                                 l.global_batch, l.micro_batch, dp, l.micro_batch * dp));
  if (l.vpp > 1) {
    if (l.pp < 2) throw UsageError(fmt::format("layout: --vpp {} needs pipeline parallelism (--pp 2 or more)", l.vpp));
    const int64_t counted = m.n_layers + (l.embedding_in_split ? 1 : 0) + (l.loss_in_split ? 1 : 0);
    if (counted % (l.pp * l.vpp) != 0)
      throw UsageError(fmt::format(
          "layout: --vpp {}: the {} layers{} do not divide into pp x vpp = {} chunks{}", l.vpp, m.n_layers,
          counted != m.n_layers ? fmt::format(" with the embedding and loss counted ({})", counted) : "", l.pp * l.vpp,
          counted == m.n_layers && (m.n_layers + 2) % (l.pp * l.vpp) == 0
              ? " (with --account-for-embedding-in-pipeline-split on and --account-for-loss-in-pipeline-split on they would)"
              : ""));
    if (l.micro_batches() % l.pp != 0)
      throw UsageError(fmt::format("layout: --vpp {}: the interleaved schedule needs the {} micro-batches a step to be a "
                                   "multiple of pp = {}", l.vpp, l.micro_batches(), l.pp));
  }
  if (l.seq != m.n_ctx)
    throw UsageError(fmt::format("layout: sequence {} differs from the model's n_ctx {}", l.seq, m.n_ctx));
}

std::vector<int64_t> layer_split(int64_t layers, int64_t pp, bool embedding, bool loss) {
  const int64_t counted = layers + (embedding ? 1 : 0) + (loss ? 1 : 0);
  std::vector<int64_t> s(static_cast<size_t>(pp), counted / pp);
  for (int64_t i = 0; i < counted % pp; ++i) ++s[static_cast<size_t>(i)];
  if (embedding) --s.front();
  if (loss) --s.back();
  return s;
}

nlohmann::json layout_to_json(const Layout& l) {
  return {{"gpus", l.gpus},
          {"tp", l.tp},
          {"pp", l.pp},
          {"vpp", l.vpp},
          {"cp", l.cp},
          {"dp", l.dp()},
          {"fsdp", l.fsdp},
          {"ep", l.ep},
          {"etp", l.expert_tp()},
          {"edp", l.edp()},
          {"moe_imbalance", l.moe_imbalance},
          {"micro_batch", l.micro_batch},
          {"global_batch", l.global_batch},
          {"micro_batches", l.micro_batches()},
          {"seq", l.seq},
          {"precision", l.precision},
          {"recompute", to_string(l.recompute)},
          {"sequence_parallel", l.sequence_parallel},
          {"attention", to_string(l.attention)},
          {"distributed_optimizer", l.distributed_optimizer},
          {"dp_overlap", l.dp_overlap},
          {"tp_comm_overlap", l.tp_comm_overlap},
          {"ep_comm_overlap", l.ep_comm_overlap},
          {"moe_dispatcher", to_string(l.moe_dispatcher)},
          {"torch_compile", l.torch_compile},
          {"account_for_embedding_in_pipeline_split", l.embedding_in_split},
          {"account_for_loss_in_pipeline_split", l.loss_in_split}};
}

nlohmann::json layout_to_json(const ResolvedLayout& r) {
  nlohmann::json j = layout_to_json(r.layout);
  j["defaults"] = r.defaults;
  return j;
}

}  // namespace flopscope::predict
