// Text and Markdown for a `measure` result, rendered from its JSON alone.
#include <algorithm>

#include <fmt/format.h>

#include "report/render_detail.hpp"

namespace flopscope::detail {

using nlohmann::json;

namespace {

// GFLOP/s on slow devices, TFLOP/s on fast ones; the unit goes into the header.
struct RateUnit {
  double scale;
  const char* name;
};
RateUnit rate_unit(const json& r) {
  return r.at("backend").at("name").get<std::string>() == "cpu" ? RateUnit{1e9, "GFLOP/s"} : RateUnit{1e12, "TFLOP/s"};
}

std::string rate(const json& v, const RateUnit& u) {
  return v.is_null() ? "n/a" : fmt_sig(v.get<double>() / u.scale, 4);
}

}  // namespace

Document measure_document(const json& r) {
  Document d;
  const auto& L = r.at("layer");
  const auto& be = r.at("backend");
  const RateUnit unit = rate_unit(r);
  const std::string counter_status = r.at("counters").at("status").get<std::string>();
  const bool counted = counter_status == "counted";
  const bool measured = counter_status == "measured";
  const char* count_label = counted ? "counted" : measured ? "measured" : "n/a";
  // The per-op FLOPs beside the analytic ones: counted (cpu) or measured by counters (cuda).
  auto executed = [&](const json& o) -> std::string {
    if (o.contains("counted_flops")) return fmt_flops(o.at("counted_flops").get<double>());
    if (o.contains("measured") && o.at("measured").value("flops", json()).is_number())
      return fmt_flops(o.at("measured").at("flops").get<double>());
    return "n/a";
  };
  auto ratio = [&](const json& o) -> std::string {
    for (const char* k : {"counted_over_analytic", "measured_over_analytic"})
      if (o.contains(k)) return fmt_fixed(o.at(k).get<double>(), 4);
    return "n/a";
  };
  d.title = fmt::format("flopscope measure: {} on {}", L.at("name").get<std::string>(), be.at("name").get<std::string>());

  Section run;
  run.heading = "Run";
  run.before.push_back(fmt::format("device: {}", be.at("device_line").get<std::string>()));
  run.before.push_back(fmt::format("backend: {} ({})", be.at("name").get<std::string>(), be.at("reason").get<std::string>()));
  run.before.push_back(model_line(r.at("model")));
  run.before.push_back(fmt::format(
      "layer as run: width {}, d_model {}, {} heads x {}, d_ff {}, batch {}, seq {}, {}{}{}{}",
      L.at("width").get<std::string>(), L.at("d_model").get<int64_t>(), L.at("n_heads").get<int64_t>(),
      L.at("d_head").get<int64_t>(), L.at("d_ff").get<int64_t>(), L.at("batch").get<int64_t>(),
      L.at("seq").get<int64_t>(), L.at("precision").get<std::string>(),
      L.at("recompute").get<bool>() ? ", recompute" : "", L.at("include_head").get<bool>() ? ", LM head" : "",
      [&]() -> std::string {
        const auto block = L.value("causal_block", int64_t{0});  // absent in results before it existed
        if (block <= 0) return "";
        return fmt::format("; attention products in causal row blocks of {} (executed FLOPs below the full square's)",
                           block);
      }()));
  if (r.contains("experts") && r.at("experts").is_object()) {
    const auto& x = r.at("experts");
    std::string spread;
    for (const auto& n : x.at("tokens_per_expert")) spread += (spread.empty() ? "" : " ") + std::to_string(n.get<int64_t>());
    run.before.push_back(fmt::format(
        "experts: {} routed, top-{}, {} shared; tokens per expert (counted, this run's router): [{}]; imbalance of the rows "
        "run, max/mean "
        "{} (analytic FLOPs assume a balanced router; the slowest expert sets the grouped GEMMs' time)",
        x.at("experts").get<int64_t>(), x.at("top_k").get<int64_t>(), x.at("shared_experts").get<int64_t>(), spread,
        fmt_fixed(x.at("imbalance_max_over_mean").get<double>(), 3)));
    if (x.contains("rows_run_per_expert") && x.at("rows_run_per_expert") != x.at("tokens_per_expert")) {
      std::string kept;  // absent in results before the capacity applied; the same with nothing dropped
      for (const auto& n : x.at("rows_run_per_expert")) kept += (kept.empty() ? "" : " ") + std::to_string(n.get<int64_t>());
      run.before.push_back(fmt::format("rows each expert ran (counted, past its capacity dropped): [{}]", kept));
    }
    if (x.contains("capacity") && x.at("capacity").is_object())  // absent in results before it existed
      run.before.push_back("capacity: " + x.at("capacity").at("note").get<std::string>());
  }
  if (r.contains("other_layer_kinds"))  // absent in results before every kind ran
    for (const auto& k : r.at("other_layer_kinds"))
      run.before.push_back(fmt::format("layer kind {} also ran: {} ops, verification {}, {} FLOPs {} ({} analytic), "
                                       "{} ms a run (timed, median)",
                                       k.at("layer_kind").get<std::string>(), k.at("ops").get<int64_t>(),
                                       k.at("verification_passed").get<bool>() ? "passed" : "FAILED",
                                       fmt_flops(k.at("executed_flops").get<double>()),
                                       k.at("executed_flops_source").get<std::string>(),
                                       fmt_flops(k.at("flops").get<double>()),
                                       fmt_sig(k.at("time_ms").at("median").get<double>(), 4)));
  const auto& mem = r.at("memory");
  run.before.push_back(fmt::format("memory: {} needed (analytic), {} allocated (counted), {} available",
                                   fmt_bytes(mem.at("required_bytes").get<double>()),
                                   fmt_bytes(mem.at("allocated_bytes").get<double>()),
                                   fmt_bytes(mem.at("available_bytes").get<double>())));
  const auto& st = r.at("settings");
  const auto& ver = r.at("verification");
  double worst = 0;
  for (const auto& o : ver.at("ops"))
    if (!o.at("max_rel_error").is_null()) worst = std::max(worst, o.at("max_rel_error").get<double>() / o.at("tolerance").get<double>());
  run.before.push_back(fmt::format("runs: 1 verification, {} warm-up, {} timed (seed {}), {:.1f} s wall", st.at("warmup").get<int64_t>(),
                                   st.at("repeats").get<int64_t>(), st.at("seed").get<uint64_t>(),
                                   st.at("wall_seconds").get<double>()));
  run.before.push_back(fmt::format("verification: {}: {} ops against an fp64 host reference (worst error {:.2g} of its "
                                   "tolerance), {} output tensors finite",
                                   ver.at("passed").get<bool>() ? "passed" : "FAILED", ver.at("ops").size(), worst,
                                   ver.at("checked_tensors").get<int64_t>()));
  const auto& ctr = r.at("counters");
  if (counted) {
    run.before.push_back(fmt::format("FLOP counts: counted ({})", ctr.at("detail").get<std::string>()));
  } else {
    run.before.push_back(fmt::format("FLOP counts: hardware counters {}{}", counter_status,
                                     ctr.contains("reason") && !ctr.at("reason").get<std::string>().empty()
                                         ? " (" + ctr.at("reason").get<std::string>() + ")"
                                         : std::string(measured ? " (CUPTI Range Profiler, one range per op)" : "")));
  }
  const auto& pk = r.at("peaks");
  run.before.push_back(fmt::format(
      "{} references: datasheet dense peak {}; measured ceiling {}", pk.at("dtype").get<std::string>(),
      pk.at("datasheet_tflops").is_null() ? std::string("n/a (not in the table for this device)")
                                          : fmt::format("{} TFLOP/s ({})", fmt_sig(pk.at("datasheet_tflops").get<double>(), 5),
                                                        pk.at("datasheet").get<std::string>()),
      pk.at("measured_ceiling").is_null()
          ? std::string("not measured (--no-ceiling)")
          : fmt::format("{} {} ({})", rate(pk.at("measured_ceiling").at("flops_per_s"), unit), unit.name,
                        pk.at("measured_ceiling").at("source").get<std::string>())));
  const auto& clk = r.at("clocks");
  if (clk.at("before").is_object() && !clk.at("before").at("sm_mhz").is_null()) {
    run.before.push_back(fmt::format("SM clock: {} MHz before the timed runs, {} MHz after (max {} MHz; NVML)",
                                     clk.at("before").at("sm_mhz").dump(), clk.at("after").at("sm_mhz").dump(),
                                     clk.at("before").at("sm_max_mhz").dump()));
  }
  d.sections.push_back(std::move(run));

  Section ops;
  ops.heading = "Per op: FLOPs analytic and counted; time timed (median of the repeats)";
  const bool has_algos = r.at("prepared").is_object();
  std::vector<std::string> head = {"<op", "<phase", "<kind", "<shape", "analytic FLOPs",
                                   fmt::format("{} FLOPs", count_label), "ratio", "median ms", "min ms", "max ms",
                                   unit.name, "of ceiling", "of peak", "share"};
  if (has_algos) head.push_back("best algo / op");
  Table t(head);
  auto util = [](const json& o, const char* key) {
    if (!o.contains("utilization") || o.at("utilization").at(key).is_null()) return std::string("n/a");
    return fmt_percent(o.at("utilization").at(key).get<double>());
  };
  for (const auto& o : r.at("ops")) {
    const auto& tm = o.at("time_ms");
    std::vector<std::string> row = {
        o.at("name").get<std::string>(), o.at("phase").get<std::string>(), o.at("kind").get<std::string>(),
        o.at("shape").get<std::string>(), fmt_flops(o.at("flops").get<double>()),
        executed(o), ratio(o),
        fmt_sig(tm.at("median").get<double>(), 4), fmt_sig(tm.at("min").get<double>(), 4),
        fmt_sig(tm.at("max").get<double>(), 4), rate(o.at("achieved_flops_per_s"), unit),
        util(o, "of_measured_ceiling"), util(o, "of_datasheet_peak"), fmt_percent(o.at("time_share").get<double>())};
    if (has_algos)
      row.push_back(o.contains("best_algorithm_over_op_time") ? fmt_fixed(o.at("best_algorithm_over_op_time").get<double>(), 3) : "");
    t.add_row(row);
  }
  ops.table = std::move(t);
  if (pk.at("measured_ceiling").is_object() && pk.at("measured_ceiling").contains("note"))
    ops.after.push_back("note: " + pk.at("measured_ceiling").at("note").get<std::string>());
  d.sections.push_back(std::move(ops));

  Section tot;
  tot.heading = "Layer totals";
  Table tt({"<phase", "analytic FLOPs", "model FLOPs", fmt::format("{} FLOPs", count_label), "median ms", "min ms",
            "max ms", unit.name, fmt::format("model {}", unit.name), "of ceiling", "model, of ceiling", "of peak"});
  for (const char* phase : {"forward", "backward", "recompute", "total"}) {
    if (!r.at("totals").contains(phase)) continue;
    const auto& p = r.at("totals").at(phase);
    const bool timed = p.contains("time_ms");
    tt.add_row({std::string(phase) + (std::string(phase) == "backward" && r.at("totals").contains("recompute")
                                           ? " (incl. recompute)"
                                           : ""),
                fmt_flops(p.at("flops").get<double>()), fmt_flops(p.at("model_flops").get<double>()),
                p.contains("counted_flops")    ? fmt_flops(p.at("counted_flops").get<double>())
                : p.contains("measured_flops") ? fmt_flops(p.at("measured_flops").get<double>())
                                               : "n/a",
                timed ? fmt_sig(p.at("time_ms").at("median").get<double>(), 4) : "",
                timed ? fmt_sig(p.at("time_ms").at("min").get<double>(), 4) : "",
                timed ? fmt_sig(p.at("time_ms").at("max").get<double>(), 4) : "",
                timed ? rate(p.at("achieved_flops_per_s"), unit) : "",
                timed ? rate(p.at("achieved_model_flops_per_s"), unit) : "", timed ? util(p, "of_measured_ceiling") : "",
                timed && !p.at("model_utilization").at("of_measured_ceiling").is_null()
                    ? fmt_percent(p.at("model_utilization").at("of_measured_ceiling").get<double>())
                    : (timed ? "n/a" : ""),
                timed ? util(p, "of_datasheet_peak") : ""});
  }
  tot.table = std::move(tt);
  const auto& ratios = r.at("ratios");
  tot.after.push_back(fmt::format("backward / forward: {:.3f} in FLOPs ({}), {:.3f} in time (timed); the seed assumed 1.0",
                                  ratios.at("backward_over_forward_flops").get<double>(),
                                  ratios.at("flops_source").get<std::string>(),
                                  ratios.at("backward_over_forward_time").get<double>()));
  const auto& settings = r.at("settings");
  if (settings.contains("timing")) tot.after.push_back(fmt::format("timing: {}", settings.at("timing").get<std::string>()));
  if (r.at("totals").at("total").contains("graph_replay_ms")) {
    const auto& g = r.at("totals").at("total").at("graph_replay_ms");
    tot.after.push_back(fmt::format("CUDA graph launch, timed around it: median {} ms (min {}, max {})",
                                    fmt_sig(g.at("median").get<double>(), 4), fmt_sig(g.at("min").get<double>(), 4),
                                    fmt_sig(g.at("max").get<double>(), 4)));
  }
  d.sections.push_back(std::move(tot));

  const auto& e = r.at("extrapolation");
  Section ex;
  ex.heading = "The training run, extrapolated from this layer";
  ex.before.push_back(fmt::format("method: {}", e.at("source").get<std::string>()));
  ex.before.push_back(fmt::format("assumes: {}", e.at("assumption").get<std::string>()));
  ex.before.push_back(fmt::format("LM head: {}", e.at("head_source").get<std::string>()));
  Table et({"<quantity", "value", "<source"});
  const std::string fs = e.at("flops_source").get<std::string>();
  et.add_row({"layer FLOPs per micro-batch at full width", fmt_flops(e.at("layer_flops_full_width").get<double>()),
              fs + ", scaled"});
  et.add_row({"layer time per micro-batch at full width", fmt::format("{} ms", fmt_sig(e.at("layer_ms_full_width").get<double>(), 4)),
              "timed, scaled"});
  et.add_row({"training FLOPs per token", fmt_flops(e.at("flops_per_token").get<double>()), fs + ", scaled"});
  et.add_row({fmt::format("training FLOPs ({} tokens)", fmt_count(e.at("training_tokens").get<double>())),
              fmt_flops(e.at("training_flops").get<double>()), fs + ", scaled"});
  et.add_row({"  / 6nd", fmt_fixed(e.at("ratio_to_6nd").get<double>(), 3), "vs analytic"});
  et.add_row({"  / the seed's estimate", fmt_fixed(e.at("ratio_to_seed").get<double>(), 3), "vs analytic"});
  et.add_row({"PF-days (GPT-3 paper: 3,640)", fmt_sig(e.at("pf_days").get<double>(), 4), fs});
  et.add_row({fmt::format("throughput on this device ({})", unit.name),
              rate(e.at("achieved_flops_per_s"), unit), fs + " / timed"});
  et.add_row({"time on one such device", fmt_duration_days(e.at("days_one_device").get<double>()), "timed, scaled"});
  et.add_row({fmt::format("time on {:.0f} such devices (perfect scaling)", e.at("cluster_devices").get<double>()),
              fmt_duration_days(e.at("days_on_cluster").get<double>()), "timed, scaled"});
  if (e.contains("cluster_prediction")) {  // added by predict; older results have none
    const auto& cp = e.at("cluster_prediction");
    const bool ok = cp.at("status") == "predicted";
    et.add_row({ok ? fmt::format("time on {:.0f} {} (predict, layout {}: {})", e.at("cluster_devices").get<double>(),
                                 cp.at("system").get<std::string>(), cp.at("layout_name").get<std::string>(),
                                 fmt::format("tp {} pp {} dp {}", cp.at("layout").at("tp").get<int64_t>(),
                                             cp.at("layout").at("pp").get<int64_t>(), cp.at("layout").at("dp").get<int64_t>()))
                   : fmt::format("time on {:.0f} such devices (predict)", e.at("cluster_devices").get<double>()),
                ok ? fmt::format("{}, MFU {}", fmt_duration_days(cp.at("days").get<double>()), fmt_percent(cp.at("mfu").get<double>()))
                   : "n/a (" + cp.at("reason").get<std::string>() + ")",
                ok ? "timed, modelled" : ""});
  }
  et.add_row({"utilisation of the datasheet peak",
              e.at("utilization_of_peak").is_null() ? "n/a (no datasheet peak for this device and dtype)"
                                                    : fmt_percent(e.at("utilization_of_peak").get<double>()),
              "timed / datasheet"});
  ex.table = std::move(et);
  ex.after.push_back("reference: Megatron-LM (Narayanan et al. 2021) estimated 34 days for GPT-3 175B on 1024 A100s "
                     "at 140 TFLOP/s each.");
  d.sections.push_back(std::move(ex));

  Section f;
  f.heading = fmt::format("Every analytic formula, with days on {:.0f} of this device at the measured throughput",
                          e.at("cluster_devices").get<double>());
  Table ft({"<formula", "total FLOPs", "x 6nd", "PF-days", "days", "<what it counts"});
  ft.add_row({"this measurement", fmt_flops(e.at("training_flops").get<double>()),
              fmt_fixed(e.at("ratio_to_6nd").get<double>(), 3), fmt_sig(e.at("pf_days").get<double>(), 4),
              fmt_sig(e.at("days_on_cluster").get<double>(), 3), fs + " FLOPs, timed"});
  for (const auto& x : r.at("formulas")) {
    ft.add_row({x.at("id").get<std::string>(), fmt_flops(x.at("total_flops").get<double>()),
                fmt_fixed(x.at("ratio_to_6nd").get<double>(), 3), fmt_sig(x.at("pf_days").get<double>(), 4),
                fmt_sig(x.at("days_on_devices_at_measured_throughput").get<double>(), 3),
                x.at("title").get<std::string>()});
  }
  f.table = std::move(ft);
  d.sections.push_back(std::move(f));
  return d;
}

}  // namespace flopscope::detail
