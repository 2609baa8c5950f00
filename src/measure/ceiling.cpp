#include "measure/ceiling.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "measure/result.hpp"
#include "util/error.hpp"

namespace flopscope {

using nlohmann::json;

int64_t ceiling_size(const LayerGraph& g, std::string_view backend_kind) {
  if (backend_kind != "cpu") return 8192;
  double largest = 0;
  for (const auto& op : g.ops)
    if (op.impl == OpImpl::gemm)
      largest = std::max(largest, static_cast<double>(op.gemm.m) * static_cast<double>(op.gemm.n) *
                                      static_cast<double>(op.gemm.k));
  const auto n = static_cast<int64_t>(std::llround(std::cbrt(largest) / 128.0)) * 128;
  return std::clamp<int64_t>(n, 256, 2048);
}

namespace {

struct Sustained {
  double seconds_per_call = 0;  // the best long run, per call
  int calls = 0;                // per long run
  double best_call_seconds = 0;  // the best single call
  int single_calls = 0;
};

// The best of check.runs runs of back-to-back run(op) calls, each at least min_run_seconds,
// after one call that sizes them; then the best of single calls (as many as fit in
// min_run_seconds, 5 to 50), timed one by one as the layer times its ops: on a machine other
// work shares, a short call can run faster than any long run, and the op's median in the layer
// was such a call. Timed on the backend's own timeline.
Sustained time_sustained(Backend& b, const Op& op, const CeilingCheck& check) {
  auto tl = b.make_timeline(2);
  auto timed = [&](int calls) {
    tl->record(0);
    for (int i = 0; i < calls; ++i) b.run(op);
    tl->record(1);
    b.synchronize();
    return tl->ms(0, 1) / 1e3;
  };
  const double one = std::max(1e-7, timed(1));
  Sustained s{0, std::max(1, static_cast<int>(std::ceil(check.min_run_seconds / one)))};
  for (int r = 0; r < check.runs; ++r) {
    const double t = timed(s.calls) / s.calls;
    s.seconds_per_call = r == 0 ? t : std::min(s.seconds_per_call, t);
  }
  s.single_calls = std::clamp(static_cast<int>(check.min_run_seconds / one), 5, 50);
  for (int i = 0; i < s.single_calls; ++i) {
    const double t = timed(1);
    s.best_call_seconds = i == 0 ? t : std::min(s.best_call_seconds, t);
  }
  return s;
}

}  // namespace

json hold_ceiling(Backend& b, const LayerGraph& g, const MeasureRun& run, json ceiling, const CeilingCheck& check) {
  if (!ceiling.is_object() || !ceiling.contains("flops_per_s")) return ceiling;
  // Like with like: the ceiling is useful FLOPs per second (its GEMM's 2 n^3, whatever its
  // tiles padded), so each op's rate here is its analytic (useful) FLOPs over its time, as the
  // result's of_measured_ceiling is; a hardware-counted count would add the tiles' padding.
  std::vector<double> rate(g.ops.size(), 0.0);  // useful FLOP/s
  for (size_t i = 0; i < g.ops.size(); ++i) {
    const double med = run.op_ms[i].median();
    if (med > 0) rate[i] = g.ops[i].flops / (med / 1e3);
  }
  const double first = ceiling.at("flops_per_s").get<double>();
  double ceil = first;
  json remeasured = json::array();
  std::vector<bool> tried(g.ops.size(), false);
  for (int k = 0; k < check.max_remeasures; ++k) {
    // The fastest GEMM not yet remeasured, if it beats the ceiling by more than the slack.
    size_t best = g.ops.size();
    for (size_t i = 0; i < g.ops.size(); ++i)
      if (g.ops[i].impl == OpImpl::gemm && !tried[i] && (best == g.ops.size() || rate[i] > rate[best])) best = i;
    if (best == g.ops.size() || rate[best] <= ceil * (1 + kCeilingSlack)) break;
    tried[best] = true;
    const Op& op = g.ops[best];
    // A shared machine's speed shifts over seconds: an op still above the raised ceiling by
    // more than the slack is timed again, up to check.attempts times in all.
    double sustained = 0, best_call = 0;
    Sustained s;
    int attempts = 0;
    while (attempts < check.attempts && (attempts == 0 || rate[best] > ceil * (1 + kCeilingSlack))) {
      s = time_sustained(b, op, check);
      ++attempts;
      sustained = std::max(sustained, g.ops[best].flops / s.seconds_per_call);
      best_call = std::max(best_call, g.ops[best].flops / s.best_call_seconds);
      spdlog::info("ceiling: {} ran at {:.4g} GFLOP/s in the layer, {:.0f}% of the ceiling; timed again at its own "
                   "shape (attempt {}): {:.4g} GFLOP/s sustained (best of {} runs of {} calls), {:.4g} GFLOP/s its "
                   "best single call (of {})",
                   op.name, rate[best] / 1e9, 100 * rate[best] / ceil, attempts, g.ops[best].flops / s.seconds_per_call / 1e9,
                   check.runs, s.calls, g.ops[best].flops / s.best_call_seconds / 1e9, s.single_calls);
      ceil = std::max({ceil, sustained, best_call});
    }
    remeasured.push_back({{"op", op.name},
                          {"in_layer_flops_per_s", rate[best]},
                          {"sustained_flops_per_s", sustained},
                          {"best_call_flops_per_s", best_call},
                          {"attempts", attempts},
                          {"runs", check.runs},
                          {"calls_per_run", s.calls},
                          {"single_calls", s.single_calls},
                          {"source", fmt::format("timed: {} at its own shape through the backend, {} time(s): the best "
                                                 "of {} runs of {} back-to-back calls (at least {} s each), per call, "
                                                 "and the best of {} single calls, over the attempts; the larger rate "
                                                 "counts",
                                                 op.name, attempts, check.runs, s.calls, check.min_run_seconds,
                                                 s.single_calls)}});
  }
  b.reset_counts();
  if (!remeasured.empty()) {
    ceiling["first_flops_per_s"] = first;
    ceiling["remeasured"] = remeasured;
    if (ceil > first) {
      ceiling["flops_per_s"] = ceil;
      ceiling["source"] = fmt::format("{}; raised to the rate of {} timed again at its own shape ({} op(s) beat the "
                                      "first figure, {:.4g} GFLOP/s, by more than {:.0f}%: timed again)",
                                      ceiling.at("source").get<std::string>(),
                                      [&] {
                                        for (const auto& r : remeasured)
                                          if (std::max(r.at("sustained_flops_per_s").get<double>(),
                                                       r.at("best_call_flops_per_s").get<double>()) == ceil)
                                            return r.at("op").get<std::string>();
                                        return std::string("an op");
                                      }(),
                                      remeasured.size(), first / 1e9, 100 * kCeilingSlack);
    }
  }
  // Whatever still reads above 100% is said, with why.
  std::vector<std::string> above;
  for (size_t i = 0; i < g.ops.size(); ++i)
    if (rate[i] > ceil) above.push_back(fmt::format("{} {:.0f}%", g.ops[i].name, 100 * rate[i] / ceil));
  if (!above.empty()) {
    std::string list;
    for (const auto& a : above) list += (list.empty() ? "" : ", ") + a;
    ceiling["note"] = fmt::format(
        "above 100% of the ceiling: {}; the median of an op's timed repeats beat the best sustained rate measured "
        "(of {} op(s) timed again at their own shape{}): timing noise of short ops, or a ceiling the machine's load "
        "held down",
        list, remeasured.size(), remeasured.size() < static_cast<size_t>(check.max_remeasures) ? "" : ", the most it times");
  }
  return ceiling;
}

}  // namespace flopscope
