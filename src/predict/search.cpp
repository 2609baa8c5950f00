#include "predict/search.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "util/error.hpp"

namespace flopscope::predict {

namespace {

// The values a dimension takes: the given one, or the candidates.
template <typename T>
std::vector<T> values(const std::optional<T>& given, std::vector<T> candidates) {
  if (given) return {*given};
  return candidates;
}

}  // namespace

std::vector<Layout> search_space(const LayoutChoices& given, const ModelConfig& m, const SystemProfile& s, int64_t gpus) {
  std::vector<int64_t> tps, pps;
  for (int64_t t = 1; t <= std::min<int64_t>(s.gpus_per_node, gpus); ++t)
    if (m.n_heads % t == 0 && m.kv_heads() % t == 0 && m.d_ff() % t == 0 && gpus % t == 0) tps.push_back(t);
  for (int64_t p = 1; p <= std::min<int64_t>(m.n_layers, gpus); ++p)
    if (gpus % p == 0) pps.push_back(p);
  // Context parallel where each GPU keeps at least 2048 tokens of a sequence (what it is for: long
  // sequences); expert parallel, for a mixture of experts, over powers of two dividing the experts.
  const int64_t seq = given.seq.value_or(m.n_ctx);
  std::vector<int64_t> cps;
  for (int64_t c : {1, 2, 4, 8})
    if (c == 1 || seq / c >= 2048) cps.push_back(c);
  std::vector<int64_t> eps = {1};
  if (m.moe())
    for (int64_t e = 2; e <= std::min<int64_t>(m.n_experts, gpus); e *= 2)
      if (m.n_experts % e == 0) eps.push_back(e);
  std::vector<Layout> out;
  for (int64_t tp : values(given.tp, tps)) {
    for (int64_t cp : values(given.cp, cps)) {
      if (gpus % (tp * cp) != 0) continue;
      for (int64_t pp : values(given.pp, pps)) {
        if ((gpus / (tp * cp)) % pp != 0) continue;
        for (int64_t vpp : values(given.vpp, {1, 2, 3, 4})) {
          if (vpp > 1 && (pp == 1 || m.n_layers % (pp * vpp) != 0)) continue;
          // FSDP off, or over every data-parallel rank (torchtitan's default), without interleaving.
          const int64_t dp = gpus / (tp * cp * pp);
          std::vector<int64_t> fsdps = {0};
          if (dp > 1 && vpp == 1 && !m.moe()) fsdps.push_back(dp);
          for (int64_t fsdp : values(given.fsdp, fsdps)) {
            for (int64_t mb : values(given.micro_batch, {1, 2, 4, 8})) {
              for (Recompute rc : values(given.recompute, {Recompute::none, Recompute::selective, Recompute::full})) {
                for (Attention at : values(given.attention, {Attention::flash, Attention::unfused})) {
                  if (at == Attention::unfused && cp > 1) continue;
                  const std::vector<bool> dist = fsdp > 1 ? std::vector<bool>{true} : std::vector<bool>{true, false};
                  for (bool dopt : values(given.distributed_optimizer, dist)) {
                    for (int64_t ep : values(given.ep, eps)) {
                      // The all-to-all overlap where there is an all-to-all (validate refuses it where
                      // Megatron Core does: full recompute, pp without interleaving).
                      const std::vector<bool> overlaps = ep > 1 ? std::vector<bool>{false, true} : std::vector<bool>{false};
                      const std::vector<Dispatcher> dispatchers =
                          ep > 1 ? std::vector<Dispatcher>{Dispatcher::alltoall, Dispatcher::flex, Dispatcher::allgather}
                                 : std::vector<Dispatcher>{Dispatcher::alltoall};
                      for (Dispatcher disp : values(given.moe_dispatcher, dispatchers))
                      for (bool epo : values(given.ep_comm_overlap, overlaps)) {
                        // torchtitan's blocks compiled or eager, under FSDP (torchtitan's).
                        const std::vector<bool> compiles = fsdp > 1 ? std::vector<bool>{false, true} : std::vector<bool>{false};
                        for (bool compiled : values(given.torch_compile, compiles)) {
                          LayoutChoices c = given;
                          c.tp = tp, c.cp = cp, c.pp = pp, c.vpp = vpp, c.fsdp = fsdp, c.micro_batch = mb, c.recompute = rc;
                          c.attention = at, c.distributed_optimizer = dopt, c.ep = ep, c.ep_comm_overlap = epo;
                          c.torch_compile = compiled, c.moe_dispatcher = disp;
                          if (!given.sequence_parallel) c.sequence_parallel = tp > 1;
                          try {
                            out.push_back(resolve_layout(c, m, s, gpus).layout);
                          } catch (const UsageError&) {
                            // Not a layout this model can run (validate says why); not part of the space.
                          }
                        }
                      }
                    }
                  }
                }
              }
            }
          }
        }
      }
    }
  }
  return out;
}

SearchResult search_layouts(const PredictInput& base, const LayoutChoices& given, int64_t gpus, int64_t top) {
  SearchResult r;
  std::vector<Prediction> fitting;
  const auto space = search_space(given, base.model, base.system, gpus);
  for (const Layout& l : space) {
    PredictInput in = base;
    in.layout = l;
    Prediction p = predict(in);
    ++r.tried;
    if (p.memory.fits) fitting.push_back(std::move(p));
  }
  r.fitting = static_cast<int64_t>(fitting.size());
  if (fitting.empty())
    throw UsageError(fmt::format("--search: none of the {} layouts for {} GPUs fits in {}'s memory", space.size(), gpus,
                                 base.system.title));
  // Fastest by tokens a second: without --global-batch each layout takes the default rule's
  // global batch, rounded to its micro-batch x dp, so step times of different layouts are steps
  // of different sizes.
  std::sort(fitting.begin(), fitting.end(), [](const Prediction& x, const Prediction& y) {
    return x.tokens_per_s != y.tokens_per_s ? x.tokens_per_s > y.tokens_per_s : x.step_time_s < y.step_time_s;
  });
  if (static_cast<int64_t>(fitting.size()) > top) fitting.resize(static_cast<size_t>(top));
  r.best = std::move(fitting);
  std::string fixed;
  auto name = [&](const char* flag, bool given_dim) {
    if (given_dim) fixed += (fixed.empty() ? "" : ", ") + std::string(flag);
  };
  name("--tp", given.tp.has_value());
  name("--pp", given.pp.has_value());
  name("--vpp", given.vpp.has_value());
  name("--cp", given.cp.has_value());
  name("--fsdp", given.fsdp.has_value());
  name("--micro-batch", given.micro_batch.has_value());
  name("--recompute", given.recompute.has_value());
  name("--attention", given.attention.has_value());
  name("--distributed-optimizer", given.distributed_optimizer.has_value());
  name("--ep", given.ep.has_value());
  name("--ep-comm-overlap", given.ep_comm_overlap.has_value());
  name("--torch-compile", given.torch_compile.has_value());
  name("--moe-dispatcher", given.moe_dispatcher.has_value());
  r.space = "tp dividing the heads, kv heads and d_ff up to the node size; cp 1, 2, 4, 8 where each GPU keeps at least "
            "2048 tokens of a sequence (flash only); pp dividing the GPUs / (tp cp); vpp 1-4 where the layers divide; "
            "FSDP off or over all dp ranks (without vpp; dense models), with FSDP torchtitan's blocks compiled or "
            "eager; micro-batch 1, 2, 4, 8; recompute none, "
            "selective, full; attention flash or unfused; distributed optimizer on or off (sharded anyway with FSDP); "
            "for a mixture of experts ep over the powers of two dividing the experts, and with ep > 1 the "
            "dispatcher (alltoall, flex with etp 1, allgather) and the all-to-all overlapped or not (not with full "
            "recompute, nor pp without vpp, nor allgather); sequence parallel with tp > 1; "
            "the global batch as given or by the default rule (rounded to each layout's micro-batch x dp); ranked by "
            "tokens/s";
  if (!fixed.empty()) r.space += "; held as given: " + fixed;
  return r;
}

}  // namespace flopscope::predict
