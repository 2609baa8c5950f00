#include "report/plots.hpp"
#include "report/render_predict.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include <fmt/format.h>

#include "report/result.hpp"
#include "report/svg.hpp"
#include "report/table.hpp"
#include "util/error.hpp"

namespace flopscope {

using nlohmann::json;
using svg::Area;
using svg::Canvas;
using svg::LegendItem;
using svg::Mark;
using svg::Scale;

namespace {

constexpr double kTitleY = 24, kSubtitleY = 44, kLegendY = 54;

// GFLOP/s on CPUs, TFLOP/s on GPUs, as the tables print them.
struct RateUnit {
  double scale;
  std::string name;
};
RateUnit rate_unit(bool cpu) { return cpu ? RateUnit{1e9, "GFLOP/s"} : RateUnit{1e12, "TFLOP/s"}; }

std::string color_of(const std::string& source) {
  if (source == "analytic") return svg::kAnalytic;
  if (source == "counted") return svg::kCounted;
  if (source == "measured") return svg::kMeasured;
  if (source == "timed") return svg::kTimed;
  return svg::kAssumed;
}

double num(const json& j, const char* key) { return j.at(key).get<double>(); }
bool has_number(const json& j, const char* key) { return j.contains(key) && j.at(key).is_number(); }

void heading(Canvas& c, const std::string& title, const std::string& subtitle) {
  c.text(16, kTitleY, title, "start", 15, {{"class", "figure-title"}, {"font-weight", "bold"}, {"fill", "#111111"}});
  c.text(16, kSubtitleY, subtitle, "start", 12, {{"class", "figure-subtitle"}, {"fill", "#444444"}});
}

Figure finish(const Canvas& c, std::string id, std::string title, std::string caption) {
  return {std::move(id), std::move(title), std::move(caption), c.str(false), c.str(true)};
}

// "gpt3-175b layer at width 1/96 (d_model 128, 1 head), batch 1, seq 64, fp32"
std::string layer_line(const json& r) {
  const auto& L = r.at("layer");
  std::string s = fmt::format("{} layer at width {} (d_model {}, {} heads x {}), batch {}, seq {}, {}",
                              r.at("model").at("name").get<std::string>(), L.at("width").get<std::string>(),
                              L.at("d_model").get<int64_t>(), L.at("n_heads").get<int64_t>(),
                              L.at("d_head").get<int64_t>(), L.at("batch").get<int64_t>(), L.at("seq").get<int64_t>(),
                              L.at("precision").get<std::string>());
  if (L.at("recompute").get<bool>()) s.append(", recompute");
  if (L.at("include_head").get<bool>()) s.append(", LM head");
  if (r.contains("backend")) {
    s.append("; ");
    s.append(r.at("backend").at("device_line").get<std::string>());
  }
  return s;
}

// The second FLOP series of a measure result: hardware counters when present, else software counts.
struct CountSeries {
  std::string key;     // field of each op, "" when the run has none
  std::string source;  // measured | counted
};
CountSeries count_series(const json& r) {
  if (r.at("command").get<std::string>() != "measure") return {};
  for (const auto& o : r.at("ops")) {
    if (has_number(o, "measured_flops")) return {"measured_flops", "measured"};
  }
  for (const auto& o : r.at("ops")) {
    if (has_number(o, "counted_flops")) return {"counted_flops", "counted"};
  }
  return {};
}

// A log scale over positive values, padded by a factor each side.
Scale padded_log(const std::vector<double>& values, double from, double to, double pad = 1.0) {
  double lo = 0, hi = 0;
  for (double v : values) {
    if (!(v > 0) || !std::isfinite(v)) continue;
    lo = lo == 0 ? v : std::min(lo, v);
    hi = std::max(hi, v);
  }
  if (lo == 0) lo = hi = 1;
  return svg::log_scale(lo / pad, hi * pad, from, to);
}

}  // namespace

// ---- per op: FLOPs and time share --------------------------------------------------------------

Figure ops_figure(const json& r) {
  const bool measured = r.at("command").get<std::string>() == "measure";
  const auto& ops = r.at("ops");
  const CountSeries cs = count_series(r);
  const bool model_series = !measured;  // estimate: analytic FLOPs beside model FLOPs
  const size_t n = ops.size();

  double label_w = 0, total_flops = 0;
  std::vector<double> values;
  for (const auto& o : ops) {
    label_w = std::max(label_w, svg::text_width(o.at("name").get<std::string>(), 11));
    values.push_back(num(o, "flops"));
    total_flops += num(o, "flops");
    if (!cs.key.empty() && has_number(o, cs.key.c_str())) values.push_back(num(o, cs.key.c_str()));
    if (model_series && has_number(o, "model_flops")) values.push_back(num(o, "model_flops"));
  }
  const double row = 16, top = 96, W = 1100;
  const double left = 16 + label_w + 12;
  const double panel_gap = 50;
  const double avail = W - left - 24 - panel_gap;
  const Area a1{left, top, avail * 0.64, row * static_cast<double>(n)};
  const Area a2{a1.right() + panel_gap, top, avail * 0.36, a1.height};
  const double H = a1.bottom() + 56;

  const std::string second_label =
      cs.key.empty() ? (model_series ? "model FLOPs (analytic: causal square halved)" : "")
                     : fmt::format("{} FLOPs", cs.source);
  const std::string share_source = measured ? "timed" : "analytic";
  const std::string title = measured ? fmt::format("Per op: analytic vs {} FLOPs, and time share (timed)",
                                                   cs.key.empty() ? std::string("executed") : cs.source)
                                     : "Per op: FLOPs (analytic) and FLOP share (analytic)";
  Canvas c(W, H, title, layer_line(r));
  heading(c, title, layer_line(r));
  std::vector<LegendItem> legend = {{"analytic FLOPs", svg::kAnalytic, Mark::bar}};
  if (!second_label.empty()) legend.push_back({second_label, cs.key.empty() ? svg::kModel : color_of(cs.source), Mark::bar});
  legend.push_back({measured ? "share of the layer's median time (timed)" : "share of the layer's FLOPs (analytic)",
                    color_of(share_source), Mark::bar});
  c.legend_row(16, kLegendY, legend, W - 32);

  const Scale x1 = padded_log(values, a1.left, a1.right());
  double max_share = 0;
  for (const auto& o : ops)
    max_share = std::max(max_share, measured ? num(o, "time_share") : num(o, "flops") / total_flops);
  const Scale x2 = svg::linear_scale(0, 100 * max_share, a2.left, a2.right());

  c.text(a1.left, top - 8, "FLOPs per op, log scale", "start", 12, {{"class", "panel-title"}, {"fill", "#222222"}});
  c.text(a2.left, top - 8, measured ? "share of the layer's time, %" : "share of the layer's FLOPs, %", "start", 12,
         {{"class", "panel-title"}, {"fill", "#222222"}});
  c.x_axis(a1, x1,
           cs.key.empty() ? (model_series ? "FLOPs (analytic; model FLOPs analytic too), log scale" : "FLOPs (analytic), log scale")
                          : fmt::format("FLOPs (analytic vs {}), log scale", cs.source));
  c.x_axis(a2, x2, measured ? "share of the layer's median time, % (timed)" : "share of the layer's FLOPs, % (analytic)");
  c.line(a1.left, a1.top, a1.left, a1.bottom(), "#555555");
  c.line(a2.left, a2.top, a2.left, a2.bottom(), "#555555");

  // Op names, and a rule where the phase changes.
  c.open("g", {{"class", "op-labels"}});
  std::string phase;
  for (size_t i = 0; i < n; ++i) {
    const auto& o = ops[i];
    const double y = top + row * static_cast<double>(i);
    const std::string p = o.at("phase").get<std::string>();
    if (i > 0 && p != phase) c.line(16, y, a2.right(), y, "#999999", 1, {{"stroke-dasharray", "2 3"}});
    phase = p;
    c.text(left - 8, y + row / 2 + 4, o.at("name").get<std::string>(), "end", 11,
           {{"class", "op-label"}, {"font-family", "Menlo, Consolas, monospace"}, {"fill", "#222222"}});
  }
  c.close("g");

  const bool two = !second_label.empty();
  const double bh = two ? (row - 4) / 2 : row - 4;
  auto flop_bars = [&](const std::string& label, const std::string& source, const std::string& color, const char* key,
                       double offset) {
    c.begin_series(label, source);
    for (size_t i = 0; i < n; ++i) {
      const auto& o = ops[i];
      if (!has_number(o, key) || !(num(o, key) > 0)) continue;
      const double v = num(o, key);
      const double y = top + row * static_cast<double>(i) + 2 + offset;
      const std::string name = o.at("name").get<std::string>();
      c.bar(a1.left, y, x1(v) - a1.left, bh, color, name, v, fmt::format("{}: {} {} FLOPs", name, fmt_flops(v), source));
    }
    c.end_series();
  };
  flop_bars("analytic FLOPs", "analytic", svg::kAnalytic, "flops", 0);
  if (!cs.key.empty()) flop_bars(second_label, cs.source, color_of(cs.source), cs.key.c_str(), bh);
  else if (model_series) flop_bars(second_label, "analytic", svg::kModel, "model_flops", bh);

  c.begin_series(measured ? "time share" : "FLOP share", share_source);
  for (size_t i = 0; i < n; ++i) {
    const auto& o = ops[i];
    const double share = 100 * (measured ? num(o, "time_share") : num(o, "flops") / total_flops);
    const double y = top + row * static_cast<double>(i) + 2;
    const std::string name = o.at("name").get<std::string>();
    std::string tip = fmt::format("{}: {:.3g}% of the layer's {}", name, share, measured ? "median time" : "FLOPs");
    if (measured) tip.append(fmt::format(" ({} ms median)", fmt_sig(num(o.at("time_ms"), "median"), 4)));
    c.bar(a2.left, y, x2(share) - a2.left, row - 4, color_of(share_source), name, share, tip);
  }
  c.end_series();

  return finish(c, "ops", title,
                measured ? fmt::format("Each op's FLOPs from the layer graph (analytic) beside what the backend {} "
                                       "(log scale), and its share of the layer's median time (timed).",
                                       cs.source.empty() ? "ran" : cs.source)
                         : "Each op's FLOPs from the layer graph (analytic; model FLOPs halve the causal attention "
                           "square), and its share of the layer's FLOPs.");
}

// ---- roofline ----------------------------------------------------------------------------------

Figure roofline_figure(const json& r, const json& peak) {
  if (r.at("command").get<std::string>() != "measure")
    throw UsageError("the roofline needs a measure result (estimate runs nothing)");
  const bool cpu = r.at("backend").at("name").get<std::string>() == "cpu";
  const RateUnit unit = rate_unit(cpu);
  const std::string dtype = r.at("layer").at("precision").get<std::string>();
  const CountSeries cs = count_series(r);
  const std::string fsrc = cs.source.empty() ? "analytic" : cs.source;

  struct Pt {
    std::string name, kind;
    double ai, rate;
  };
  std::vector<Pt> pts;
  std::vector<std::string> kinds;
  for (const auto& o : r.at("ops")) {
    if (!has_number(o, "achieved_flops_per_s") || !(num(o, "min_bytes") > 0)) continue;
    const double rate = num(o, "achieved_flops_per_s") / unit.scale;
    if (!(rate > 0)) continue;
    const std::string kind = o.at("kind").get<std::string>();
    if (std::find(kinds.begin(), kinds.end(), kind) == kinds.end()) kinds.push_back(kind);
    pts.push_back({o.at("name").get<std::string>(), kind, num(o, "flops") / num(o, "min_bytes"), rate});
  }

  struct Ceiling {
    std::string label, source, color;
    double rate;  // in unit
  };
  std::vector<Ceiling> ceilings;
  const auto& pk = r.at("peaks");
  if (pk.at("measured_ceiling").is_object()) {
    const auto& m = pk.at("measured_ceiling");
    ceilings.push_back({fmt::format("GEMM ceiling, this run: {} {} (timed, {}^3 {})", fmt_sig(num(m, "flops_per_s") / unit.scale, 3),
                                    unit.name, m.at("n").get<int64_t>(), m.at("dtype").get<std::string>()),
                        "timed", svg::kTimed, num(m, "flops_per_s") / unit.scale});
  }
  if (pk.at("datasheet_tflops").is_number()) {
    ceilings.push_back({fmt::format("datasheet dense peak, {}: {} TFLOP/s", dtype, fmt_sig(num(pk, "datasheet_tflops"), 5)),
                        "datasheet", "#333333", num(pk, "datasheet_tflops") * 1e12 / unit.scale});
  }
  double bandwidth = 0;  // bytes/s, from a `peak` result
  if (peak.is_object()) {
    for (const auto& g : peak.at("gemm")) {
      if (g.at("dtype").get<std::string>() != dtype) continue;
      ceilings.push_back({fmt::format("GEMM ceiling, `peak`: {} {} (timed, {}^3 {})",
                                      fmt_sig(num(g, "flops_per_s") / unit.scale, 3), unit.name,
                                      g.at("n").get<int64_t>(), dtype),
                          "timed", "#2d6a3e", num(g, "flops_per_s") / unit.scale});
    }
    if (peak.contains("copy") && has_number(peak.at("copy"), "bytes_per_s")) bandwidth = num(peak.at("copy"), "bytes_per_s");
  }

  std::vector<double> xs, ys;
  for (const auto& p : pts) {
    xs.push_back(p.ai);
    ys.push_back(p.rate);
  }
  for (const auto& c : ceilings) ys.push_back(c.rate);
  const double W = 1080, H = 600;
  const Area a{90, 84, 640, H - 84 - 64};
  const Scale x = padded_log(xs, a.left, a.right(), 1.5);
  Scale y = padded_log(ys, a.bottom(), a.top, 1.5);

  const std::string title = "Roofline: each op's achieved throughput at its arithmetic intensity";
  Canvas c(W, H, title, layer_line(r));
  heading(c, title, layer_line(r));
  c.axes(a, x, y, "arithmetic intensity, FLOP per byte (analytic: FLOPs / minimum bytes), log scale",
         fmt::format("achieved {} ({} FLOPs / timed median), log scale", unit.name, fsrc));

  std::vector<LegendItem> legend;
  // Ceilings: flat lines; the copy bandwidth as the slanted memory roof.
  double top_ceiling = 0;
  for (size_t i = 0; i < ceilings.size(); ++i) {
    const auto& ce = ceilings[i];
    top_ceiling = std::max(top_ceiling, ce.rate);
    c.begin_series(ce.label, ce.source);
    c.polyline({{a.left, y(ce.rate)}, {a.right(), y(ce.rate)}}, ce.color, 1.6, true, ce.label);
    c.end_series();
    legend.push_back({ce.label, ce.color, Mark::dashed});
  }
  if (bandwidth > 0) {
    const double bw = bandwidth / unit.scale;  // unit per (FLOP/byte)
    const double x0 = std::max(x.lo, y.lo / bw);
    const double x1 = std::min(x.hi, (top_ceiling > 0 ? top_ceiling : y.hi) / bw);
    const std::string label = fmt::format("memory roof: copy {:.3g} GB/s (timed, `peak`)", bandwidth / 1e9);
    if (x1 > x0) {
      c.begin_series(label, "timed");
      c.polyline({{x(x0), y(x0 * bw)}, {x(x1), y(x1 * bw)}}, "#6b4c9a", 1.6, true, label);
      c.end_series();
      legend.push_back({label, "#6b4c9a", Mark::dashed});
    }
  }
  for (size_t k = 0; k < kinds.size(); ++k) {
    // Kinds take the palette after the four source colours, so orange still means counted.
    const std::string color = svg::series_colors()[(k + 4) % svg::series_colors().size()];
    c.begin_series(kinds[k], fsrc + " / timed");
    for (const auto& p : pts) {
      if (p.kind != kinds[k]) continue;
      c.point(x(p.ai), y(p.rate), p.kind == "gemm" || p.kind == "batched_gemm" ? 5.5 : 4.2, color, p.name, p.ai, p.rate,
              fmt::format("{} ({}): {:.3g} FLOP/byte, {} {}", p.name, p.kind, p.ai, fmt_sig(p.rate, 4), unit.name));
    }
    c.end_series();
    legend.push_back({fmt::format("{} ops ({} / timed)", kinds[k], fsrc), color, Mark::point});
  }
  // The op with the most FLOPs of each GEMM kind gets its name beside it.
  std::map<std::string, const Pt*> best;
  for (const auto& p : pts)
    if ((p.kind == "gemm" || p.kind == "batched_gemm") && (!best[p.kind] || p.rate > best[p.kind]->rate)) best[p.kind] = &p;
  for (const auto& [k, p] : best)
    if (p)
      c.text(x(p->ai) + 8, y(p->rate) - 7, p->name, "start", 10,
             {{"class", "point-label"}, {"fill", "#333333"}, {"stroke", "#ffffff"}, {"stroke-width", "3"},
              {"paint-order", "stroke"}});

  c.legend(a.right() + 14, a.top, legend);
  return finish(c, "roofline", title,
                fmt::format("Each op (a point) at its arithmetic intensity (analytic) and achieved {} ({} FLOPs over "
                            "the timed median), under the ceilings: the GEMM ceiling timed in the same run{}{}.",
                            unit.name, fsrc, pk.at("datasheet_tflops").is_number() ? ", the datasheet dense peak" : "",
                            peak.is_object() ? ", and the ceilings of a `flopscope peak` result" : ""));
}

// ---- the seed check as a waterfall -------------------------------------------------------------

namespace {

// The seed check a result carries (estimate), or the same analytic check computed from the
// result's model (measure results carry the model, not the check).
json seed_check_of(const json& r) {
  if (r.contains("seed_check")) return r.at("seed_check");
  json m = r.at("model");
  if (m.contains("batch_tokens") && !(m.at("batch_tokens").get<double>() > 0)) m.erase("batch_tokens");
  return seed_check_json(model_from_json(m, "the result's model"));
}

std::string factor_name(const std::string& id) {
  if (id == "mac_as_one_flop") return "multiply-add|= 2 FLOPs";
  if (id == "attention_projections") return "attention|projections";
  if (id == "ffn") return "FFN|16 d^2";
  if (id == "attention_scores") return "attention|scores 4 s d";
  if (id == "backward_2x") return "backward|= 2x forward";
  return id + "|";
}

}  // namespace

Figure seed_waterfall_figure(const json& r) {
  const json seed = seed_check_of(r);
  if (!seed.value("applies", true)) throw UsageError(seed.at("note").get<std::string>());
  const bool measured = r.at("command").get<std::string>() == "measure";
  const auto& model = r.at("model");

  struct Step {
    std::string label;  // "line 1|line 2"
    std::string series, source, color;
    double from, to;    // running totals before and after (a total starts at 0)
    std::string note;   // above the bar
  };
  std::vector<Step> steps;
  const double seed_total = num(seed, "seed_total");
  steps.push_back({"the seed's|estimate", "totals (analytic)", "analytic", svg::kAssumed, 0, seed_total, fmt_flops(seed_total)});
  double run = seed_total;
  for (const auto& f : seed.at("factors")) {
    const double next = num(f, "running_total");
    steps.push_back({factor_name(f.at("id").get<std::string>()), "correction factors (analytic, from the layer graph)",
                     "analytic", svg::kModel, run, next, fmt::format("x{:.3f}", num(f, "factor"))});
    run = next;
  }
  const double corrected = num(seed, "corrected_total");
  const double graph = num(seed, "graph_total");
  steps.push_back({"GEMMs,|corrected", "totals (analytic)", "analytic", svg::kAnalytic, 0, corrected, fmt_flops(corrected)});
  steps.push_back({"+ other ops|+ LM head", "correction factors (analytic, from the layer graph)", "analytic", svg::kModel,
                   corrected, graph, fmt::format("x{:.3f}", graph / corrected)});
  steps.push_back({"graph|total", "totals (analytic)", "analytic", svg::kAnalytic, 0, graph, fmt_flops(graph)});
  std::string measured_source;
  if (measured) {
    const auto& e = r.at("extrapolation");
    measured_source = e.at("flops_source").get<std::string>();
    const double t = num(e, "training_flops");
    steps.push_back({"this|measurement", fmt::format("this measurement ({} FLOPs, extrapolated)", measured_source),
                     measured_source, color_of(measured_source), 0, t, fmt_flops(t)});
  }
  const double six_nd = num(seed, "six_nd_total");

  double hi = six_nd;
  for (const auto& s : steps) hi = std::max({hi, s.from, s.to});
  const double W = 1000, H = 560;
  const Area a{96, 96, W - 96 - 24, H - 96 - 96};
  const Scale y = svg::linear_scale(0, hi * 1.08, a.bottom(), a.top);
  const std::string title = fmt::format("The seed check: from the seed's {} to {} training FLOPs", fmt_flops(seed_total),
                                        fmt_flops(measured ? steps.back().to : graph));
  const std::string subtitle = fmt::format(
      "{}: {} layers, d_model {}, n_ctx {}, {} training tokens; factors from the layer graph at full width (b = 1, s = n_ctx)",
      model.at("name").get<std::string>(), model.at("n_layers").get<int64_t>(), model.at("d_model").get<int64_t>(),
      model.at("n_ctx").get<int64_t>(), fmt_count(num(model, "train_tokens")));
  Canvas c(W, H, title, subtitle);
  heading(c, title, subtitle);
  std::vector<LegendItem> legend = {{"the seed's estimate (analytic)", svg::kAssumed, Mark::bar},
                                    {"correction factors (analytic, from the layer graph)", svg::kModel, Mark::bar},
                                    {"corrected totals (analytic)", svg::kAnalytic, Mark::bar}};
  if (measured)
    legend.push_back({fmt::format("this measurement ({} FLOPs, extrapolated)", measured_source), color_of(measured_source),
                      Mark::bar});
  legend.push_back({"6ND (analytic)", "#333333", Mark::dashed});
  c.legend_row(16, kLegendY, legend, W - 32);
  c.y_axis(a, y, fmt::format("training FLOPs, {} tokens (analytic; last bar {})", fmt_count(num(model, "train_tokens")),
                             measured ? measured_source + ", extrapolated" : "analytic"));
  c.line(a.left, a.bottom(), a.right(), a.bottom(), "#555555");

  const double slot = a.width / static_cast<double>(steps.size());
  const double bw = slot * 0.62;
  // Group bars by series, in the order of first appearance.
  std::vector<std::string> order;
  for (const auto& s : steps)
    if (std::find(order.begin(), order.end(), s.series) == order.end()) order.push_back(s.series);
  for (const auto& series : order) {
    std::string source;
    for (const auto& s : steps)
      if (s.series == series) source = s.source;
    c.begin_series(series, source);
    for (size_t i = 0; i < steps.size(); ++i) {
      const auto& s = steps[i];
      if (s.series != series) continue;
      const double x0 = a.left + slot * static_cast<double>(i) + (slot - bw) / 2;
      const double top = y(std::max(s.from, s.to)), bottom = y(std::min(s.from, s.to));
      std::string label = s.label;
      std::replace(label.begin(), label.end(), '|', ' ');
      c.bar(x0, top, bw, std::max(bottom - top, 1.0), s.color, label, s.to,
            fmt::format("{}: {} -> {} FLOPs ({})", label, fmt_flops(s.from), fmt_flops(s.to), s.note));
    }
    c.end_series();
  }
  // Connectors, values above the bars, and two-line labels below.
  for (size_t i = 0; i < steps.size(); ++i) {
    const auto& s = steps[i];
    const double x0 = a.left + slot * static_cast<double>(i) + (slot - bw) / 2;
    if (i + 1 < steps.size())
      c.line(x0 + bw, y(s.to), x0 + slot, y(s.to), "#777777", 1, {{"stroke-dasharray", "2 2"}});
    c.text(x0 + bw / 2, y(std::max(s.from, s.to)) - 6, s.note, "middle", 11, {{"class", "bar-note"}, {"fill", "#222222"}});
    const auto bar = s.label.find('|');
    c.text(x0 + bw / 2, a.bottom() + 16, s.label.substr(0, bar), "middle", 11, {{"class", "category"}, {"fill", "#333333"}});
    if (bar != std::string::npos)
      c.text(x0 + bw / 2, a.bottom() + 30, s.label.substr(bar + 1), "middle", 11, {{"class", "category"}, {"fill", "#333333"}});
  }
  c.text(a.left + a.width / 2, a.bottom() + 56,
         "the seed's estimate, corrected step by step (each factor from the layer graph, analytic)", "middle", 12,
         {{"class", "axis-label"}, {"data-axis", "x"}, {"fill", "#222222"}});
  c.begin_series("6ND (analytic)", "analytic");
  c.polyline({{a.left, y(six_nd)}, {a.right(), y(six_nd)}}, "#333333", 1.4, true, "6ND");
  c.end_series();
  c.text(a.left + 6, y(six_nd) - 5, fmt::format("6ND = {}", fmt_flops(six_nd)), "start", 11, {{"fill", "#333333"}});

  return finish(c, "seed-waterfall", title,
                fmt::format("The seed's {} (10 d^2 per layer per token, backward = forward) times each correction, "
                            "computed from the layer graph (analytic), to the graph's total{}; 6ND for reference.",
                            fmt_flops(seed_total),
                            measured ? fmt::format(" and this measurement's extrapolated total ({})", measured_source)
                                     : std::string()));
}

// ---- sweeps ------------------------------------------------------------------------------------

namespace {

struct SweepPoint {
  const json* point;
  const json* summary;
};

std::vector<SweepPoint> done_points(const json& sweep) {
  std::vector<SweepPoint> out;
  for (const auto& p : sweep.at("points"))
    if (p.at("status").get<std::string>() == "done" && p.at("summary").is_object()) out.push_back({&p, &p.at("summary")});
  return out;
}

std::string config_label(const json& p) {
  std::string s = fmt::format("{}, batch {}", p.at("precision").get<std::string>(), p.at("batch").get<int64_t>());
  if (p.at("recompute").get<bool>()) s.append(", recompute");
  return s;
}

bool sweep_on_cpu(const std::vector<SweepPoint>& pts) {
  for (const auto& p : pts)
    if (p.summary->at("backend").get<std::string>() != "cpu") return false;
  return true;
}

}  // namespace

Figure sweep_throughput_figure(const json& sweep) {
  const auto pts = done_points(sweep);
  const RateUnit unit = rate_unit(sweep_on_cpu(pts));
  const auto& model = sweep.at("model");
  const double full = num(model, "d_model");
  std::string fsrc = "counted";
  for (const auto& p : pts) fsrc = p.summary->at("flops_source").get<std::string>();

  std::vector<std::string> configs;
  std::set<double> dmodels = {full};
  double ymax = 0;
  for (const auto& p : pts) {
    const std::string k = config_label(*p.point);
    if (std::find(configs.begin(), configs.end(), k) == configs.end()) configs.push_back(k);
    dmodels.insert(num(*p.summary, "d_model"));
    ymax = std::max(ymax, num(*p.summary, "flops_per_s") / unit.scale);
  }
  // One ceiling per dtype: the median of the GEMM ceilings timed with its points.
  std::map<std::string, std::vector<double>> ceil_by_dtype;
  std::map<std::string, double> datasheet;
  for (const auto& p : pts) {
    const auto& s = *p.summary;
    const std::string dt = p.point->at("precision").get<std::string>();
    if (has_number(s, "ceiling_flops_per_s")) ceil_by_dtype[dt].push_back(num(s, "ceiling_flops_per_s") / unit.scale);
    if (has_number(s, "datasheet_tflops")) datasheet[dt] = num(s, "datasheet_tflops") * 1e12 / unit.scale;
  }
  std::map<std::string, double> ceilings;
  for (auto& [dt, v] : ceil_by_dtype) {
    std::sort(v.begin(), v.end());
    ceilings[dt] = v[v.size() / 2];
    ymax = std::max(ymax, ceilings[dt]);
  }
  for (const auto& [dt, v] : datasheet) ymax = std::max(ymax, v);

  const double W = 1080, H = 560;
  const Area a{90, 96, 640, H - 96 - 64};
  Scale x;
  x.log = true;
  x.lo = *dmodels.begin() / 1.3;
  x.hi = *dmodels.rbegin() * 1.3;
  x.from = a.left;
  x.to = a.right();
  x.fixed_ticks.assign(dmodels.begin(), dmodels.end());
  const Scale y = svg::linear_scale(0, ymax > 0 ? ymax * 1.1 : 1, a.bottom(), a.top);

  const std::string title = "Throughput vs width: how efficiency grows toward the full width";
  const std::string subtitle =
      fmt::format("{}: one layer at GPT-3 ratios (d_head {}, n_ctx {}), d_model = heads x d_head; {} of {} points done",
                  model.at("name").get<std::string>(), model.at("d_head").get<int64_t>(), model.at("n_ctx").get<int64_t>(),
                  pts.size(), sweep.at("points").size());
  Canvas c(W, H, title, subtitle);
  heading(c, title, subtitle);
  c.axes(a, x, y, "d_model of the layer as run (analytic: heads x d_head), log scale",
         fmt::format("layer throughput, {} ({} FLOPs / timed median)", unit.name, fsrc));

  std::vector<LegendItem> legend;
  size_t color_index = 0;
  for (const auto& [dt, v] : ceilings) {
    const std::string color = svg::series_colors()[(color_index++ + 5) % svg::series_colors().size()];
    const std::string label = fmt::format("{} GEMM ceiling {} {} (timed)", dt, fmt_sig(v, 3), unit.name);
    c.begin_series(label, "timed");
    c.polyline({{a.left, y(v)}, {a.right(), y(v)}}, color, 1.4, true, label);
    c.end_series();
    legend.push_back({label, color, Mark::dashed});
  }
  for (const auto& [dt, v] : datasheet) {
    if (!(v <= y.hi)) continue;
    const std::string label = fmt::format("{} datasheet dense peak {} {}", dt, fmt_sig(v, 4), unit.name);
    c.begin_series(label, "datasheet");
    c.polyline({{a.left, y(v)}, {a.right(), y(v)}}, "#333333", 1.4, true, label);
    c.end_series();
    legend.push_back({label, "#333333", Mark::dashed});
  }
  // The full width, where the extrapolation lands.
  c.line(x(full), a.top, x(full), a.bottom(), "#999999", 1.2, {{"stroke-dasharray", "4 3"}});
  c.text(x(full) - 4, a.top + 12, fmt::format("full width (d_model {})", static_cast<int64_t>(full)), "end", 11,
         {{"fill", "#555555"}});

  for (size_t k = 0; k < configs.size(); ++k) {
    const std::string color = svg::series_colors()[k % svg::series_colors().size()];
    std::vector<std::pair<double, const SweepPoint*>> series;
    for (const auto& p : pts)
      if (config_label(*p.point) == configs[k]) series.push_back({num(*p.summary, "d_model"), &p});
    std::sort(series.begin(), series.end(), [](const auto& l, const auto& r) { return l.first < r.first; });
    c.begin_series(configs[k], fsrc + " / timed");
    std::vector<std::pair<double, double>> line;
    for (const auto& [d, p] : series) line.push_back({x(d), y(num(*p->summary, "flops_per_s") / unit.scale)});
    if (line.size() > 1) c.polyline(line, color, 2, false, configs[k]);
    for (const auto& [d, p] : series) {
      const double v = num(*p->summary, "flops_per_s") / unit.scale;
      const std::string id = p->point->at("id").get<std::string>();
      c.point(x(d), y(v), 4.5, color, id, d, v,
              fmt::format("{}: d_model {}, {} {} ({} ms per layer)", id, static_cast<int64_t>(d), fmt_sig(v, 4), unit.name,
                          fmt_sig(num(*p->summary, "layer_ms"), 4)));
    }
    c.end_series();
    legend.push_back({fmt::format("{} ({} / timed)", configs[k], fsrc), color, Mark::point});
  }
  c.legend(a.right() + 14, a.top, legend);
  return finish(c, "sweep-throughput", title,
                fmt::format("Each point is one layer run at a width of the sweep: its FLOPs ({}) over its timed median, "
                            "one line per configuration; dashed: the GEMM ceiling timed in the same runs.",
                            fsrc));
}

Figure sweep_time_figure(const json& sweep) {
  const auto pts = done_points(sweep);
  double label_w = 0, devices = 1;
  std::vector<double> values = {34};
  for (const auto& p : pts) {
    label_w = std::max(label_w, svg::text_width(p.point->at("id").get<std::string>(), 11));
    values.push_back(num(*p.summary, "days_on_cluster"));
    devices = num(*p.summary, "cluster_devices");
  }
  const double row = 22, top = 96, W = 1000;
  const double left = 16 + label_w + 12;
  const Area a{left, top, W - left - 40, row * static_cast<double>(std::max<size_t>(pts.size(), 1))};
  const double H = a.bottom() + 60;
  const Scale x = padded_log(values, a.left, a.right());
  const auto& model = sweep.at("model");
  const std::string title = fmt::format("Extrapolated training time of {} per configuration", model.at("name").get<std::string>());
  const std::string subtitle = fmt::format(
      "days on {:.0f} such devices at each point's throughput (timed, scaled to full width; perfect scaling), {} tokens",
      devices, fmt_count(num(model, "train_tokens")));
  Canvas c(W, H, title, subtitle);
  heading(c, title, subtitle);
  c.legend_row(16, kLegendY,
               {{"extrapolated from the point (timed, scaled)", svg::kTimed, Mark::bar},
                {"Megatron-LM's estimate: 34 days on 1024 A100s (analytic)", "#333333", Mark::dashed}},
               W - 32);
  c.x_axis(a, x, fmt::format("days on {:.0f} devices (timed, scaled to full width), log scale", devices));
  c.line(a.left, a.top, a.left, a.bottom(), "#555555");
  c.begin_series("training time", "timed");
  for (size_t i = 0; i < pts.size(); ++i) {
    const auto& p = pts[i];
    const double y0 = top + row * static_cast<double>(i);
    const std::string id = p.point->at("id").get<std::string>();
    const double days = num(*p.summary, "days_on_cluster");
    c.text(left - 8, y0 + row / 2 + 4, id, "end", 11,
           {{"class", "op-label"}, {"font-family", "Menlo, Consolas, monospace"}, {"fill", "#222222"}});
    c.bar(a.left, y0 + 3, x(days) - a.left, row - 6, svg::kTimed, id, days,
          fmt::format("{}: {} on {:.0f} devices", id, fmt_duration_days(days), devices));
    c.text(x(days) + 4, y0 + row / 2 + 4, fmt_duration_days(days), "start", 10, {{"fill", "#333333"}});
  }
  c.end_series();
  c.begin_series("Megatron-LM 34 days (analytic)", "analytic");
  c.polyline({{x(34), a.top}, {x(34), a.bottom()}}, "#333333", 1.4, true, "Megatron-LM 34 days");
  c.end_series();
  return finish(c, "sweep-time", title,
                fmt::format("Each configuration's training time on {:.0f} devices, extrapolated from its measured layer "
                            "(timed, scaled to full width; perfect scaling assumed), beside Megatron-LM's 34 days.",
                            devices));
}

// ---- comparisons -------------------------------------------------------------------------------

Figure compare_time_figure(const json& cmp) {
  const auto& inputs = cmp.at("inputs");
  const size_t k = inputs.size();
  std::vector<const json*> rows;
  std::vector<double> values;
  double label_w = 0;
  for (const auto& o : cmp.at("ops")) {
    bool any = false;
    for (const auto& v : o.at("values"))
      if (v.is_object() && has_number(v, "median_ms") && num(v, "median_ms") > 0) {
        any = true;
        values.push_back(num(v, "median_ms"));
      }
    if (!any) continue;
    rows.push_back(&o);
    label_w = std::max(label_w, svg::text_width(o.at("name").get<std::string>(), 11));
  }
  const double row = std::max(14.0, 6.0 * static_cast<double>(k) + 6), top = 96, W = 1000;
  const double left = 16 + label_w + 12;
  const Area a{left, top, W - left - 30, row * static_cast<double>(std::max<size_t>(rows.size(), 1))};
  const double H = a.bottom() + 60;
  const Scale x = padded_log(values, a.left, a.right());
  const std::string title = "Per op: median time of each input (timed)";
  std::string subtitle = fmt::format("baseline {}", inputs.at(0).at("label").get<std::string>());
  for (size_t i = 0; i < k; ++i) {
    subtitle.append(i ? "; " : ". ");
    subtitle.append(inputs.at(i).at("tag").get<std::string>());
    subtitle.append(": ");
    subtitle.append(inputs.at(i).at("summary").get<std::string>());
  }
  Canvas c(W, H, title, subtitle);
  std::string shown = subtitle;
  if (shown.size() > 170) {
    shown.resize(167);
    shown.append("...");
  }
  heading(c, title, shown);
  std::vector<LegendItem> legend;
  for (size_t i = 0; i < k; ++i)
    legend.push_back({fmt::format("{} = {} (timed)", inputs.at(i).at("tag").get<std::string>(),
                                  inputs.at(i).at("label").get<std::string>()),
                      svg::series_colors()[i % 10], Mark::bar});
  c.legend_row(16, kLegendY, legend, W - 32);
  c.x_axis(a, x, "median time per op, ms (timed), log scale");
  c.line(a.left, a.top, a.left, a.bottom(), "#555555");
  c.open("g", {{"class", "op-labels"}});
  for (size_t r = 0; r < rows.size(); ++r)
    c.text(left - 8, top + row * static_cast<double>(r) + row / 2 + 4, rows[r]->at("name").get<std::string>(), "end", 11,
           {{"class", "op-label"}, {"font-family", "Menlo, Consolas, monospace"}, {"fill", "#222222"}});
  c.close("g");
  const double bh = (row - 4) / static_cast<double>(k);
  for (size_t i = 0; i < k; ++i) {
    const std::string label = inputs.at(i).at("label").get<std::string>();
    c.begin_series(label, "timed");
    for (size_t r = 0; r < rows.size(); ++r) {
      const auto& v = rows[r]->at("values").at(i);
      if (!v.is_object() || !has_number(v, "median_ms") || !(num(v, "median_ms") > 0)) continue;
      const double ms = num(v, "median_ms");
      const std::string name = rows[r]->at("name").get<std::string>();
      c.bar(a.left, top + row * static_cast<double>(r) + 2 + bh * static_cast<double>(i), x(ms) - a.left, bh,
            svg::series_colors()[i % 10], name, ms, fmt::format("{} on {}: {} ms (timed)", name, label, fmt_sig(ms, 4)));
    }
    c.end_series();
  }
  return finish(c, "compare-time", title, "Each op's median time (timed) in each compared result, log scale.");
}

// ---- every figure of a result ------------------------------------------------------------------

std::vector<Figure> figures_for(const json& r, const json& peak) {
  const std::string cmd = r.at("command").get<std::string>();
  // The seed check is GPT-3's: no waterfall for a model it does not apply to.
  const bool seed = (cmd == "estimate" || cmd == "measure") && seed_check_of(r).value("applies", true);
  if (cmd == "estimate") return seed ? std::vector<Figure>{ops_figure(r), seed_waterfall_figure(r)}
                                     : std::vector<Figure>{ops_figure(r)};
  if (cmd == "measure") return seed ? std::vector<Figure>{ops_figure(r), roofline_figure(r, peak), seed_waterfall_figure(r)}
                                    : std::vector<Figure>{ops_figure(r), roofline_figure(r, peak)};
  if (cmd == "sweep") {
    if (done_points(r).empty()) return {};
    return {sweep_throughput_figure(r), sweep_time_figure(r)};
  }
  if (cmd == "predict" || is_prediction_compare(r)) return predict_figures(r);
  if (cmd == "compare") return {compare_time_figure(r)};
  throw UsageError(fmt::format("no figures for a result of command '{}'", cmd));
}

}  // namespace flopscope
