#include "predict/search.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "util/error.hpp"

namespace flopscope::predict {

namespace {

// One dimension of the space after the ones before it: each layout so far times the values the
// dimension takes there (the given one, or options(c), which may depend on the choices already
// made: cp on tp, vpp on pp, ...), less those keep(c, v) refuses. Expanding the dimensions in
// turn gives the layouts in the order of the nested loops it stands for.
template <typename T, typename Options, typename Keep>
void expand(std::vector<LayoutChoices>& layouts, std::optional<T> LayoutChoices::*dim, Options options, Keep keep) {
  std::vector<LayoutChoices> next;
  for (const LayoutChoices& c : layouts) {
    const std::vector<T> vs = c.*dim ? std::vector<T>{*(c.*dim)} : std::vector<T>(options(c));
    for (const T& v : vs) {
      if (!keep(c, v)) continue;
      LayoutChoices x = c;
      x.*dim = v;
      next.push_back(std::move(x));
    }
  }
  layouts = std::move(next);
}
template <typename T, typename Options>
void expand(std::vector<LayoutChoices>& layouts, std::optional<T> LayoutChoices::*dim, Options options) {
  expand(layouts, dim, options, [](const LayoutChoices&, const T&) { return true; });
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
  using C = LayoutChoices;
  auto fixed = [](auto options) { return [options](const C&) { return options; }; };
  auto dp = [gpus](const C& c) { return gpus / (*c.tp * *c.cp * *c.pp); };
  std::vector<C> space = {given};
  expand(space, &C::tp, fixed(tps));
  expand(space, &C::cp, fixed(cps), [&](const C& c, int64_t cp) { return gpus % (*c.tp * cp) == 0; });
  expand(space, &C::pp, fixed(pps), [&](const C& c, int64_t pp) { return (gpus / (*c.tp * *c.cp)) % pp == 0; });
  expand(space, &C::vpp, fixed(std::vector<int64_t>{1, 2, 3, 4}),
         [&](const C& c, int64_t vpp) { return vpp == 1 || (*c.pp > 1 && m.n_layers % (*c.pp * vpp) == 0); });
  // FSDP off, or over every data-parallel rank (torchtitan's default), without interleaving.
  expand(space, &C::fsdp, [&](const C& c) {
    return dp(c) > 1 && *c.vpp == 1 && !m.moe() ? std::vector<int64_t>{0, dp(c)} : std::vector<int64_t>{0};
  });
  expand(space, &C::micro_batch, fixed(std::vector<int64_t>{1, 2, 4, 8}));
  expand(space, &C::recompute, fixed(std::vector<Recompute>{Recompute::none, Recompute::selective, Recompute::full}));
  expand(space, &C::attention, fixed(std::vector<Attention>{Attention::flash, Attention::unfused}),
         [](const C& c, Attention at) { return !(at == Attention::unfused && *c.cp > 1); });
  expand(space, &C::distributed_optimizer,
         [](const C& c) { return *c.fsdp > 1 ? std::vector<bool>{true} : std::vector<bool>{true, false}; });
  expand(space, &C::ep, fixed(eps));
  // With ep > 1, the dispatcher and the all-to-all overlap (validate refuses it where Megatron
  // Core does: full recompute, pp without interleaving).
  expand(space, &C::moe_dispatcher, [](const C& c) {
    return *c.ep > 1 ? std::vector<Dispatcher>{Dispatcher::alltoall, Dispatcher::flex, Dispatcher::allgather}
                     : std::vector<Dispatcher>{Dispatcher::alltoall};
  });
  expand(space, &C::ep_comm_overlap,
         [](const C& c) { return *c.ep > 1 ? std::vector<bool>{false, true} : std::vector<bool>{false}; });
  // torchtitan's blocks compiled or eager, under FSDP (torchtitan's).
  expand(space, &C::torch_compile,
         [](const C& c) { return *c.fsdp > 1 ? std::vector<bool>{false, true} : std::vector<bool>{false}; });
  std::vector<Layout> out;
  for (C& c : space) {
    if (!given.sequence_parallel) c.sequence_parallel = *c.tp > 1;
    try {
      out.push_back(resolve_layout(c, m, s, gpus).layout);
    } catch (const UsageError&) {
      // Not a layout this model can run (validate says why); not part of the space.
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
