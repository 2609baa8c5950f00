// Text and Markdown for a `measure` result, rendered from its JSON alone.
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
  const bool counted = r.at("counters").at("status").get<std::string>() == "counted";
  const char* count_label = counted ? "counted" : "n/a";
  d.title = fmt::format("flopscope measure: {} on {}", L.at("name").get<std::string>(), be.at("name").get<std::string>());

  Section run;
  run.heading = "Run";
  run.before.push_back(fmt::format("device: {}", be.at("device_line").get<std::string>()));
  run.before.push_back(fmt::format("backend: {} ({})", be.at("name").get<std::string>(), be.at("reason").get<std::string>()));
  run.before.push_back(model_line(r.at("model")));
  run.before.push_back(fmt::format(
      "layer as run: width {}, d_model {}, {} heads x {}, d_ff {}, batch {}, seq {}, {}{}{}",
      L.at("width").get<std::string>(), L.at("d_model").get<int64_t>(), L.at("n_heads").get<int64_t>(),
      L.at("d_head").get<int64_t>(), L.at("d_ff").get<int64_t>(), L.at("batch").get<int64_t>(),
      L.at("seq").get<int64_t>(), L.at("precision").get<std::string>(),
      L.at("recompute").get<bool>() ? ", recompute" : "", L.at("include_head").get<bool>() ? ", LM head" : ""));
  const auto& mem = r.at("memory");
  run.before.push_back(fmt::format("memory: {} needed (analytic), {} allocated (counted), {} available",
                                   fmt_bytes(mem.at("required_bytes").get<double>()),
                                   fmt_bytes(mem.at("allocated_bytes").get<double>()),
                                   fmt_bytes(mem.at("available_bytes").get<double>())));
  const auto& st = r.at("settings");
  const auto& ver = r.at("verification");
  run.before.push_back(fmt::format("runs: 1 verification, {} warm-up, {} timed (seed {}), {:.1f} s wall; verification: {} "
                                   "({} output tensors; {})",
                                   st.at("warmup").get<int64_t>(), st.at("repeats").get<int64_t>(),
                                   st.at("seed").get<uint64_t>(), st.at("wall_seconds").get<double>(),
                                   ver.at("passed").get<bool>() ? "passed" : "FAILED",
                                   ver.at("checked_tensors").get<int64_t>(), ver.at("method").get<std::string>()));
  run.before.push_back(fmt::format("FLOP counts: {} ({})", r.at("counters").at("status").get<std::string>(),
                                   r.at("counters").at("detail").get<std::string>()));
  d.sections.push_back(std::move(run));

  Section ops;
  ops.heading = "Per op: FLOPs analytic and counted; time timed (median of the repeats)";
  Table t({"<op", "<phase", "<kind", "<shape", "analytic FLOPs", fmt::format("{} FLOPs", count_label), "ratio",
           "median ms", "min ms", "max ms", unit.name, "share"});
  for (const auto& o : r.at("ops")) {
    const auto& tm = o.at("time_ms");
    t.add_row({o.at("name").get<std::string>(), o.at("phase").get<std::string>(), o.at("kind").get<std::string>(),
               o.at("shape").get<std::string>(), fmt_flops(o.at("flops").get<double>()),
               o.contains("counted_flops") ? fmt_flops(o.at("counted_flops").get<double>()) : "n/a",
               o.contains("counted_over_analytic") ? fmt_fixed(o.at("counted_over_analytic").get<double>(), 4) : "n/a",
               fmt_sig(tm.at("median").get<double>(), 4), fmt_sig(tm.at("min").get<double>(), 4),
               fmt_sig(tm.at("max").get<double>(), 4), rate(o.at("achieved_flops_per_s"), unit),
               fmt_percent(o.at("time_share").get<double>())});
  }
  ops.table = std::move(t);
  d.sections.push_back(std::move(ops));

  Section tot;
  tot.heading = "Layer totals";
  Table tt({"<phase", "analytic FLOPs", "model FLOPs", fmt::format("{} FLOPs", count_label), "median ms", "min ms",
            "max ms", unit.name});
  for (const char* phase : {"forward", "backward", "recompute", "total"}) {
    if (!r.at("totals").contains(phase)) continue;
    const auto& p = r.at("totals").at(phase);
    const bool timed = p.contains("time_ms");
    tt.add_row({std::string(phase) + (std::string(phase) == "backward" && r.at("totals").contains("recompute")
                                           ? " (incl. recompute)"
                                           : ""),
                fmt_flops(p.at("flops").get<double>()), fmt_flops(p.at("model_flops").get<double>()),
                p.contains("counted_flops") ? fmt_flops(p.at("counted_flops").get<double>()) : "n/a",
                timed ? fmt_sig(p.at("time_ms").at("median").get<double>(), 4) : "",
                timed ? fmt_sig(p.at("time_ms").at("min").get<double>(), 4) : "",
                timed ? fmt_sig(p.at("time_ms").at("max").get<double>(), 4) : "",
                timed ? rate(p.at("achieved_flops_per_s"), unit) : ""});
  }
  tot.table = std::move(tt);
  const auto& ratios = r.at("ratios");
  tot.after.push_back(fmt::format("backward / forward: {:.3f} in FLOPs ({}), {:.3f} in time (timed); the seed assumed 1.0",
                                  ratios.at("backward_over_forward_flops").get<double>(),
                                  ratios.at("flops_source").get<std::string>(),
                                  ratios.at("backward_over_forward_time").get<double>()));
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
