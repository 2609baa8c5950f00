#include "predict/layout.hpp"

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

void validate(const Layout& l, const ModelConfig& m) {
  if (l.precision != "bf16" && l.precision != "fp16" && l.precision != "fp8")
    throw UsageError(fmt::format("--precision: '{}' is not a training precision predict models; choose bf16, fp16 or fp8",
                                 l.precision));
  if (m.n_heads % l.tp != 0)
    throw UsageError(fmt::format("layout: --tp {} does not divide the {} attention heads", l.tp, m.n_heads));
  if (m.kv_heads() % l.tp != 0)
    throw UsageError(fmt::format("layout: --tp {} does not divide the {} key/value heads", l.tp, m.kv_heads()));
  if (m.d_ff() % l.tp != 0) throw UsageError(fmt::format("layout: --tp {} does not divide d_ff {}", l.tp, m.d_ff()));
  if (l.gpus % (l.tp * l.pp) != 0)
    throw UsageError(fmt::format("layout: {} GPUs are not divisible by tp x pp = {} x {} = {}", l.gpus, l.tp, l.pp,
                                 l.tp * l.pp));
  if (l.pp > m.n_layers)
    throw UsageError(fmt::format("layout: --pp {} is more stages than the model's {} layers", l.pp, m.n_layers));
  const int64_t dp = l.dp();
  if (l.global_batch % (l.micro_batch * dp) != 0)
    throw UsageError(fmt::format("layout: global batch {} is not divisible by micro-batch x data parallel = {} x {} = {}",
                                 l.global_batch, l.micro_batch, dp, l.micro_batch * dp));
  if (l.vpp > 1) {
    if (l.pp < 2) throw UsageError(fmt::format("layout: --vpp {} needs pipeline parallelism (--pp 2 or more)", l.vpp));
    if (m.n_layers % (l.pp * l.vpp) != 0)
      throw UsageError(fmt::format("layout: --vpp {}: the {} layers do not divide into pp x vpp = {} chunks", l.vpp,
                                   m.n_layers, l.pp * l.vpp));
    if (l.micro_batches() % l.pp != 0)
      throw UsageError(fmt::format("layout: --vpp {}: the interleaved schedule needs the {} micro-batches a step to be a "
                                   "multiple of pp = {}", l.vpp, l.micro_batches(), l.pp));
  }
  if (l.seq != m.n_ctx)
    throw UsageError(fmt::format("layout: sequence {} differs from the model's n_ctx {}", l.seq, m.n_ctx));
}

std::vector<int64_t> layer_split(int64_t layers, int64_t pp) {
  std::vector<int64_t> s(static_cast<size_t>(pp), layers / pp);
  for (int64_t i = 0; i < layers % pp; ++i) ++s[static_cast<size_t>(i)];
  return s;
}

nlohmann::json layout_to_json(const Layout& l) {
  return {{"gpus", l.gpus},
          {"tp", l.tp},
          {"pp", l.pp},
          {"vpp", l.vpp},
          {"dp", l.dp()},
          {"micro_batch", l.micro_batch},
          {"global_batch", l.global_batch},
          {"micro_batches", l.micro_batches()},
          {"seq", l.seq},
          {"precision", l.precision},
          {"recompute", to_string(l.recompute)},
          {"sequence_parallel", l.sequence_parallel},
          {"attention", to_string(l.attention)},
          {"distributed_optimizer", l.distributed_optimizer},
          {"dp_overlap", l.dp_overlap}};
}

}  // namespace flopscope::predict
