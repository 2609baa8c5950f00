#include "report/render_predict.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "report/result.hpp"
#include "report/svg.hpp"
#include "report/table.hpp"
#include "util/error.hpp"

namespace flopscope {

using nlohmann::json;

namespace {

double num(const json& j, const char* key) { return j.at(key).get<double>(); }

// The breakdown's parts, in the order of the step.
struct Part {
  const char* key;
  const char* label;
  const char* color;
};
const std::vector<Part>& parts() {
  static const std::vector<Part> p = {
      {"compute_s", "compute", "#4c72b0"},        {"tp_comm_s", "tensor-parallel comm", "#dd8452"},
      {"ep_comm_s", "expert-parallel all-to-all", "#da8bc3"},
      {"pp_comm_s", "pipeline sends", "#937860"}, {"bubble_s", "pipeline bubble", "#8c8c8c"},
      {"dp_comm_s", "data-parallel comm (exposed)", "#c44e52"}, {"optimizer_s", "optimizer", "#55a868"},
  };
  return p;
}

std::string layout_line(const json& l) {
  // cp and fsdp: absent from results written before they existed.
  const int64_t cp = l.value("cp", INT64_C(1)), fsdp = l.value("fsdp", INT64_C(0));
  std::string s = fmt::format("{} GPUs: tp {} x pp {}{}{} x dp {}{}; micro-batch {}, global batch {} ({} micro-batches a "
                              "pipeline), seq {}, {}, recompute {}, sequence parallel {}, attention {}, distributed "
                              "optimizer {}",
                              l.at("gpus").get<int64_t>(), l.at("tp").get<int64_t>(), l.at("pp").get<int64_t>(),
                              l.at("vpp").get<int64_t>() > 1 ? fmt::format(" (vpp {})", l.at("vpp").get<int64_t>()) : "",
                              cp > 1 ? fmt::format(" x cp {}", cp) : "", l.at("dp").get<int64_t>(),
                              fsdp > 1                   ? fmt::format(" (FSDP over {})", fsdp)
                              : l.value("ep", INT64_C(1)) > 1 ? fmt::format(" (experts: ep {}, etp {}, edp {}; {} dispatcher{})",
                                                                          l.at("ep").get<int64_t>(), l.at("etp").get<int64_t>(),
                                                                          l.at("edp").get<int64_t>(),
                                                                          l.value("moe_dispatcher", std::string("alltoall")),
                                                                          l.value("ep_comm_overlap", false)
                                                                              ? ", overlapped"
                                                                              : "")
                                                              : "",
                              l.at("micro_batch").get<int64_t>(),
                              l.at("global_batch").get<int64_t>(), l.at("micro_batches").get<int64_t>(),
                              l.at("seq").get<int64_t>(), l.at("precision").get<std::string>(),
                              l.at("recompute").get<std::string>(), l.at("sequence_parallel").get<bool>() ? "on" : "off",
                              l.at("attention").get<std::string>(), l.at("distributed_optimizer").get<bool>() ? "on" : "off");
  if (fsdp > 1) s += l.value("torch_compile", false) ? ", torch.compile" : ", eager PyTorch";  // torchtitan's kernels
  return s;
}

std::string short_layout(const json& l) {
  // cp, fsdp, ep: absent from results written before they existed.
  const int64_t cp = l.value("cp", INT64_C(1)), fsdp = l.value("fsdp", INT64_C(0)), ep = l.value("ep", INT64_C(1));
  return fmt::format("tp{} pp{}{}{} dp{}{}{} mb{} {} {}{}", l.at("tp").get<int64_t>(), l.at("pp").get<int64_t>(),
                     l.at("vpp").get<int64_t>() > 1 ? fmt::format(" vpp{}", l.at("vpp").get<int64_t>()) : "",
                     cp > 1 ? fmt::format(" cp{}", cp) : "", l.at("dp").get<int64_t>(),
                     fsdp > 1 ? (l.value("torch_compile", false) ? " fsdp compiled" : " fsdp") : "",
                     ep > 1 ? fmt::format(" ep{} {}{}", ep, l.value("moe_dispatcher", std::string("alltoall")),
                                          l.value("ep_comm_overlap", false) ? " overlapped" : "")
                            : "",
                     l.at("micro_batch").get<int64_t>(), l.at("recompute").get<std::string>(),
                     l.at("attention").get<std::string>(), l.at("distributed_optimizer").get<bool>() ? " distopt" : "");
}

detail::Document validation_document(const json& r) {
  detail::Document d;
  const auto& v = r.at("validation");
  d.title = "flopscope predict --validate: Korthikanti et al. 2022 Table 5";
  detail::Section s;
  s.heading = "Seconds per iteration: predicted (modelled) vs published";
  s.before.push_back(v.at("source").get<std::string>());
  s.before.push_back(fmt::format("system profile {}; gemm_efficiency: {}", v.at("system").get<std::string>(),
                                 v.at("calibration").get<std::string>()));
  Table t({"<model", "<recompute", "predicted s", "published s", "error", "MFU", "HFU"});
  for (const auto& row : v.at("rows"))
    t.add_row({row.at("model").get<std::string>(), row.at("recompute").get<std::string>(),
               fmt_fixed(num(row, "predicted_s"), 2), fmt_fixed(num(row, "published_s"), 2),
               fmt::format("{:+.1f}%", 100 * num(row, "error")), fmt_percent(num(row, "mfu")),
               fmt_percent(num(row, "hfu"))});
  s.table = std::move(t);
  s.after.push_back(fmt::format("mean |error| {:.1f}%, max |error| {:.1f}%", 100 * num(v, "mean_abs_error"),
                                100 * num(v, "max_abs_error")));
  d.sections.push_back(std::move(s));
  if (r.contains("published_runs")) {
    const auto& pr = r.at("published_runs");
    auto figure = [](const std::string& key, double x) {
      return key == "memory_per_gpu_bytes" ? fmt_bytes(x) : key == "step_time_s" ? fmt::format("{:.3f} s", x) : fmt_sig(x, 4);
    };
    detail::Section rows;
    rows.heading = fmt::format("Published runs ({}): predicted (modelled) vs published", pr.at("file").get<std::string>());
    rows.before.push_back(pr.at("note").get<std::string>());
    Table rt({"<run", "<group", "<figure", "predicted", "published", "error"});
    for (const auto& x : pr.at("rows")) {
      const std::string key = x.at("key").get<std::string>();
      const bool ran = x.contains("predicted");
      rt.add_row({x.at("id").get<std::string>(), x.at("group").get<std::string>(), key,
                 ran ? figure(key, num(x, "predicted")) : "failed", figure(key, num(x, "published")),
                 ran ? fmt::format("{:+.1f}%", 100 * num(x, "error")) : x.at("failed").get<std::string>()});
    }
    rows.table = std::move(rt);
    d.sections.push_back(std::move(rows));
    detail::Section groups;
    groups.heading = "Published runs by group";
    Table g({"<group", "rows", "ran", "mean |error|", "max |error|"});
    auto add = [&](const std::string& name, const json& x) {
      const bool any = x.at("ran").get<int64_t>() > 0;
      g.add_row({name, std::to_string(x.at("rows").get<int64_t>()), std::to_string(x.at("ran").get<int64_t>()),
                 any ? fmt::format("{:.1f}%", 100 * num(x, "mean_abs_error")) : "-",
                 any ? fmt::format("{:.1f}%", 100 * num(x, "max_abs_error")) : "-"});
    };
    for (const auto& x : pr.at("groups")) add(x.at("group").get<std::string>(), x);
    add("all", pr.at("all"));
    groups.table = std::move(g);
    d.sections.push_back(std::move(groups));
  }
  return d;
}

detail::Document prediction_document(const json& r) {
  detail::Document d;
  const auto& p = r.at("prediction");
  const auto& sys = r.at("system");
  d.title = fmt::format("flopscope predict: {} on {}", r.at("model").at("name").get<std::string>(),
                        sys.at("title").get<std::string>());
  detail::Section run;
  run.heading = "Run (assumed: your model, system and layout)";
  run.before.push_back(detail::model_line(r.at("model")));
  run.before.push_back(fmt::format("parameters (analytic): {}", fmt_count(r.at("parameters").get<double>())));
  run.before.push_back(layout_line(r.at("layout")));
  if (r.at("layout").contains("defaults"))
    for (const auto& x : r.at("layout").at("defaults")) run.before.push_back("default: " + x.get<std::string>());
  run.before.push_back(fmt::format("per-op compute: {}", p.at("compute_source").get<std::string>()));
  d.sections.push_back(std::move(run));
  if (r.contains("job")) d.sections.push_back(detail::job_section(r.at("job")));

  detail::Section step;
  const double total = num(p, "step_time_s");
  step.heading = "Step (modelled)";
  Table t({"<part", "seconds", "share"});
  const bool fsdp = r.at("layout").value("fsdp", INT64_C(0)) > 1;
  for (const auto& part : parts()) {
    const double v = p.at("breakdown").value(part.key, 0.0);  // ep_comm_s: absent before it existed
    // With FSDP the data-parallel part is its parameter gathers and gradient reduce-scatters.
    const std::string label =
        fsdp && part.key == std::string("dp_comm_s") ? "FSDP gathers and reduce-scatters (exposed)" : part.label;
    t.add_row({label, fmt_sig(v, 4), fmt_percent(v / total)});
  }
  t.add_row({"step", fmt_sig(total, 4), "100.0%"});
  step.table = std::move(t);
  step.after.push_back(fmt::format("tokens/s {}; model {} TFLOP/s per GPU, hardware {} TFLOP/s per GPU", fmt_sig(num(p, "tokens_per_s"), 4),
                                   fmt_sig(num(p, "model_tflops_per_gpu"), 4), fmt_sig(num(p, "hardware_tflops_per_gpu"), 4)));
  step.after.push_back(fmt::format("MFU {}, HFU {} of the {} dense peak {} TFLOP/s (datasheet)", fmt_percent(num(p, "mfu")),
                                   fmt_percent(num(p, "hfu")), r.at("layout").at("precision").get<std::string>(),
                                   fmt_sig(num(p, "peak_tflops"), 5)));
  step.after.push_back(fmt::format("training {} tokens: {}", fmt_count(r.at("model").at("train_tokens").get<double>()),
                                   fmt_duration_days(num(p, "training_days"))));
  for (const auto& n : p.at("notes")) step.after.push_back(n.get<std::string>());
  d.sections.push_back(std::move(step));
  if (r.contains("run_log")) d.sections.push_back(detail::run_log_section(r.at("run_log")));

  const auto& m = p.at("memory");
  detail::Section mem;
  mem.heading = "Memory per GPU (analytic, the most loaded stage)";
  Table mt({"<part", "bytes"});
  const auto& lay = r.at("layout");
  mt.add_row({fmt::format("weights ({} parameters x {})", fmt_count(num(m, "parameters")), fsdp ? "4 / shard, fp32" : "2"),
              fmt_bytes(num(m, "weights_bytes"))});
  mt.add_row({fsdp ? "gradients (x 4 / shard, fp32)" : "gradients (x 2)", fmt_bytes(num(m, "gradients_bytes"))});
  mt.add_row({fsdp ? "optimizer (x 8 / shard)"
              : lay.at("distributed_optimizer").get<bool>() ? "optimizer (x 12 / dp)"
                                                              : "optimizer (x 12)",
              fmt_bytes(num(m, "optimizer_bytes"))});
  if (num(m, "fp8_weight_copies_bytes") > 0)
    mt.add_row({"fp8 weight copies", fmt_bytes(num(m, "fp8_weight_copies_bytes"))});
  if (num(m, "fsdp_unsharded_bytes") > 0)
    mt.add_row({"FSDP's gathered parameters and gradients", fmt_bytes(num(m, "fsdp_unsharded_bytes"))});
  const double once = m.value("activations_once_bytes", 0.0);
  mt.add_row({fmt::format("activations from the {} ({} a layer x {} layer-micro-batches{})",
                          m.value("activations_from", std::string("Table 2")), fmt_bytes(num(m, "activation_per_layer_bytes")),
                          fmt_sig(num(m, "layers_in_flight"), 4),
                          once > 0 ? fmt::format(", + {} for the LM head and loss or a layer being recomputed", fmt_bytes(once)) : ""),
              fmt_bytes(num(m, "activations_bytes"))});
  mt.add_row({"total", fmt_bytes(num(m, "total_bytes"))});
  mem.table = std::move(mt);
  mem.after.push_back(fmt::format("{} the {} available ({} less the reserve)", p.at("fits").get<bool>() ? "fits in" : "does NOT fit in",
                                  fmt_bytes(num(m, "available_bytes")), fmt_bytes(sys.at("hbm_bytes").get<double>())));
  d.sections.push_back(std::move(mem));

  if (r.contains("scaling")) {
    detail::Section sc;
    sc.heading = "Against GPU count (modelled)";
    Table st({"GPUs", "dp", "global batch", "step s", "tokens/s", "MFU", "days", "memory", "<fits"});
    for (const auto& x : r.at("scaling"))
      st.add_row({std::to_string(x.at("gpus").get<int64_t>()), std::to_string(x.at("dp").get<int64_t>()),
                  std::to_string(x.at("global_batch").get<int64_t>()), fmt_sig(num(x, "step_time_s"), 4),
                  fmt_sig(num(x, "tokens_per_s"), 4), fmt_percent(num(x, "mfu")), fmt_sig(num(x, "training_days"), 4),
                  fmt_bytes(num(x, "memory_per_gpu_bytes")), x.at("fits").get<bool>() ? "yes" : "no"});
    sc.table = std::move(st);
    d.sections.push_back(std::move(sc));
  }
  if (r.contains("search")) {
    const auto& s = r.at("search");
    detail::Section se;
    se.heading = fmt::format("Search (modelled): the fastest layouts that fit, of {} tried on {} GPUs ({} fit)",
                             s.at("layouts_tried").get<int64_t>(), s.at("gpus").get<int64_t>(),
                             s.at("layouts_fitting").get<int64_t>());
    Table st({"#", "<layout", "global batch", "step s", "tokens/s", "MFU", "memory"});
    int i = 0;
    for (const auto& x : s.at("best"))
      st.add_row({std::to_string(++i), short_layout(x.at("layout")),
                  std::to_string(x.at("layout").at("global_batch").get<int64_t>()), fmt_sig(num(x, "step_time_s"), 4),
                  fmt_sig(num(x, "tokens_per_s"), 4), fmt_percent(num(x, "mfu")), fmt_bytes(num(x, "memory_per_gpu_bytes"))});
    se.table = std::move(st);
    se.after.push_back("space: " + s.at("space").get<std::string>());
    se.after.push_back("the sections above describe the fastest layout");
    d.sections.push_back(std::move(se));
  }

  detail::Section ops;
  ops.heading = "One layer and the LM head, per op on one GPU, one micro-batch";
  Table ot({"<op", "<phase", "<shape (one GPU)", "FLOPs", "bytes", "time ms", "<bound", "<source"});
  for (const auto& o : p.at("ops"))
    ot.add_row({o.at("name").get<std::string>(), o.at("phase").get<std::string>(), o.at("shape").get<std::string>(),
                fmt_flops(num(o, "flops")), fmt_bytes(num(o, "bytes")), fmt_sig(num(o, "time_s") * 1e3, 4),
                o.at("bound").get<std::string>(), o.at("source").get<std::string>()});
  ops.table = std::move(ot);
  const auto& L = p.at("layer");
  ops.after.push_back(fmt::format("a layer: forward {} ms, backward {} ms, recompute {} ms; LM head {} + {} ms",
                                  fmt_sig(num(L, "forward_s") * 1e3, 4), fmt_sig(num(L, "backward_s") * 1e3, 4),
                                  fmt_sig(num(L, "recompute_s") * 1e3, 4), fmt_sig(num(L, "head_forward_s") * 1e3, 4),
                                  fmt_sig(num(L, "head_backward_s") * 1e3, 4)));
  d.sections.push_back(std::move(ops));

  detail::Section prof;
  prof.heading = fmt::format("System profile {} (every figure with its source)", sys.at("id").get<std::string>());
  Table pt({"<field", "value", "<source"});
  for (const auto& [key, value] : sys.items()) {
    if (key == "id" || key == "title" || key == "sources") continue;
    const auto& src = sys.at("sources");
    pt.add_row({key, value.is_number() ? fmt_sig(value.get<double>(), 5) : value.get<std::string>(),
                src.contains(key) ? src.at(key).get<std::string>() : ""});
  }
  prof.table = std::move(pt);
  d.sections.push_back(std::move(prof));
  return d;
}

detail::Document prediction_compare_document(const json& r) {
  detail::Document d;
  d.title = "flopscope compare: predictions";
  detail::Section s;
  s.heading = "Predictions side by side (modelled), ratios to the first";
  for (const auto& in : r.at("inputs"))
    s.before.push_back(fmt::format("{} = {}: {}", in.at("tag").get<std::string>(), in.at("label").get<std::string>(),
                                   in.at("summary").get<std::string>()));
  std::vector<std::string> head = {"<figure"};
  for (const auto& in : r.at("inputs")) head.push_back(in.at("tag").get<std::string>());
  for (size_t i = 1; i < r.at("inputs").size(); ++i) head.push_back(fmt::format("{} / A", r.at("inputs").at(i).at("tag").get<std::string>()));
  Table t(head);
  for (const auto& row : r.at("rows")) {
    std::vector<std::string> cells = {row.at("name").get<std::string>()};
    for (const auto& v : row.at("values")) cells.push_back(fmt_sig(v.get<double>(), 4));
    for (size_t i = 1; i < row.at("ratios").size(); ++i)
      cells.push_back(row.at("ratios").at(i).is_null() ? "" : fmt_fixed(row.at("ratios").at(i).get<double>(), 3));
    t.add_row(cells);
  }
  s.table = std::move(t);
  d.sections.push_back(std::move(s));
  return d;
}

// The rows a prediction comparison shows, from each prediction.
const std::vector<std::pair<std::string, std::string>>& compared_figures() {
  static const std::vector<std::pair<std::string, std::string>> f = {
      {"step_time_s", "step time, s"},
      {"tokens_per_s", "tokens/s"},
      {"model_tflops_per_gpu", "model TFLOP/s per GPU"},
      {"mfu", "MFU"},
      {"hfu", "HFU"},
      {"training_days", "training days"},
      {"memory_per_gpu_bytes", "memory per GPU, bytes"},
  };
  return f;
}

Figure breakdown_figure(const std::vector<std::string>& labels, const std::vector<const json*>& breakdowns,
                        const std::string& title, const std::string& caption) {
  const double row = 34, top = 90, left = 180, W = 1000;
  const svg::Area a{left, top, W - left - 40, row * static_cast<double>(labels.size())};
  double hi = 0;
  for (const auto* b : breakdowns) {
    double t = 0;
    for (const auto& part : parts()) t += b->value(part.key, 0.0);
    hi = std::max(hi, t);
  }
  const svg::Scale x = svg::linear_scale(0, hi > 0 ? hi : 1, a.left, a.right());
  svg::Canvas c(W, a.bottom() + 60, title, caption);
  c.text(16, 24, title, "start", 15, {{"font-weight", "600"}});
  std::vector<svg::LegendItem> legend;
  for (const auto& part : parts()) legend.push_back({part.label, part.color, svg::Mark::bar});
  c.legend_row(16, 44, legend, W - 32);
  c.x_axis(a, x, "seconds per step (modelled)");
  for (const auto& part : parts()) {
    c.begin_series(part.label, "modelled");
    for (size_t i = 0; i < labels.size(); ++i) {
      double start = 0;
      for (const auto& q : parts()) {
        if (std::string_view(q.key) == part.key) break;
        start += breakdowns[i]->value(q.key, 0.0);
      }
      const double v = breakdowns[i]->value(part.key, 0.0);
      c.bar(x(start), top + row * static_cast<double>(i) + 4, x(start + v) - x(start), row - 8, part.color, labels[i], v,
            fmt::format("{} {}: {} s (modelled)", labels[i], part.label, fmt_sig(v, 4)));
    }
    c.end_series();
  }
  for (size_t i = 0; i < labels.size(); ++i)
    c.text(left - 8, top + row * static_cast<double>(i) + row / 2 + 4, labels[i], "end", 11);
  return {"step-breakdown", title, caption, c.str(false), c.str(true)};
}

Figure mfu_figure(const json& scaling) {
  const double W = 800, H = 420;
  const svg::Area a{80, 70, W - 120, H - 140};
  double lo = 1e300, hi = 0, mfu_hi = 0;
  for (const auto& x : scaling) {
    lo = std::min(lo, num(x, "gpus"));
    hi = std::max(hi, num(x, "gpus"));
    mfu_hi = std::max(mfu_hi, num(x, "mfu"));
  }
  const svg::Scale xs = lo < hi ? svg::log_scale(lo, hi, a.left, a.right()) : svg::linear_scale(0, 2 * hi, a.left, a.right());
  const svg::Scale ys = svg::linear_scale(0, std::max(0.01, mfu_hi * 100), a.bottom(), a.top);
  const std::string title = "MFU against GPU count (modelled)";
  const std::string caption = "model FLOPs (Megatron-LM's convention) per second per GPU over the datasheet dense peak";
  svg::Canvas c(W, H, title, caption);
  c.text(16, 24, title, "start", 15, {{"font-weight", "600"}});
  c.axes(a, xs, ys, "GPUs (log scale)", "MFU, % (modelled)");
  std::vector<std::pair<double, double>> px;
  c.begin_series("mfu", "modelled");
  for (const auto& x : scaling) {
    const double g = num(x, "gpus"), m = 100 * num(x, "mfu");
    px.emplace_back(xs(g), ys(m));
    c.point(xs(g), ys(m), 4, svg::kAnalytic, fmt::format("{} GPUs", g), g, m, fmt::format("{} GPUs: MFU {:.1f}%", g, m));
  }
  c.polyline(px, svg::kAnalytic, 1.5, false, "mfu");
  c.end_series();
  return {"mfu-scaling", title, caption, c.str(false), c.str(true)};
}

std::string input_summary(const json& r) {
  return fmt::format("{} on {}, {}", r.at("model").at("name").get<std::string>(), r.at("system").at("id").get<std::string>(),
                     short_layout(r.at("layout")));
}

}  // namespace

bool is_prediction_compare(const json& r) {
  return r.is_object() && r.value("command", "") == "compare" && r.value("kind", "") == "prediction";
}

json compare_predictions(const std::vector<CompareInput>& in) {
  FLOPSCOPE_CHECK(in.size() >= 2, "compare needs two results or more");
  json inputs = json::array();
  for (size_t i = 0; i < in.size(); ++i) {
    const auto& r = in[i].result;
    inputs.push_back({{"label", in[i].label},
                      {"tag", i < 26 ? std::string(1, static_cast<char>('A' + i)) : fmt::format("I{}", i + 1)},
                      {"file", in[i].file},
                      {"summary", input_summary(r)},
                      {"layout", r.at("layout")},
                      {"breakdown", r.at("prediction").at("breakdown")}});
  }
  json rows = json::array();
  for (const auto& [key, name] : compared_figures()) {
    json values = json::array(), ratios = json::array();
    for (const auto& x : in) values.push_back(x.result.at("prediction").at(key).get<double>());
    const double base = values.at(0).get<double>();
    for (const auto& v : values) ratios.push_back(base != 0 ? json(v.get<double>() / base) : json(nullptr));
    rows.push_back({{"key", key}, {"name", name}, {"values", values}, {"ratios", ratios}});
  }
  return {{"schema", kSchema}, {"command", "compare"}, {"kind", "prediction"}, {"tool", tool_json()},
          {"inputs", inputs},  {"rows", rows}};
}

std::vector<Figure> predict_figures(const json& r) {
  // A result its own report cannot render (a field removed or mistyped) gets no figures either.
  (void)detail::predict_document(r);
  if (is_prediction_compare(r)) {
    std::vector<std::string> labels;
    std::vector<const json*> b;
    for (const auto& in : r.at("inputs")) {
      labels.push_back(in.at("label").get<std::string>());
      b.push_back(&in.at("breakdown"));
    }
    return {breakdown_figure(labels, b, "Step breakdown of each prediction (modelled)",
                             "seconds per step by part: compute, exposed communication, bubble, optimizer")};
  }
  if (r.value("kind", "") != "prediction") return {};
  std::vector<Figure> f = {breakdown_figure({short_layout(r.at("layout"))}, {&r.at("prediction").at("breakdown")},
                                            "Step breakdown (modelled)",
                                            "seconds per step by part: compute, exposed communication, bubble, optimizer")};
  if (r.contains("scaling") && r.at("scaling").size() > 1) f.push_back(mfu_figure(r.at("scaling")));
  return f;
}

namespace detail {

Document predict_document(const json& r) {
  if (is_prediction_compare(r)) return prediction_compare_document(r);
  const auto kind = r.at("kind").get<std::string>();
  if (kind == "validation") return validation_document(r);
  if (kind == "prediction") return prediction_document(r);
  throw UsageError(fmt::format("predict result of unknown kind '{}'", kind));
}

std::string predict_csv(const json& r) {
  std::string out = "section,name,value,unit,source\n";
  auto row = [&](const std::string& sec, const std::string& name, double v, const std::string& unit, const std::string& src) {
    out += fmt::format("{},{},{},{},{}\n", csv_field(sec), csv_field(name), svg::number(v), unit, src);
  };
  if (is_prediction_compare(r)) {
    for (const auto& x : r.at("rows"))
      for (size_t i = 0; i < x.at("values").size(); ++i)
        row(r.at("inputs").at(i).at("label").get<std::string>(), x.at("key").get<std::string>(),
            x.at("values").at(i).get<double>(), "", "modelled");
    return out;
  }
  if (r.at("kind") == "validation") {
    for (const auto& x : r.at("validation").at("rows")) {
      const std::string sec = x.at("model").get<std::string>() + " " + x.at("recompute").get<std::string>();
      row(sec, "predicted", num(x, "predicted_s"), "s", "modelled");
      row(sec, "published", num(x, "published_s"), "s", "published");
      row(sec, "error", num(x, "error"), "fraction", "modelled");
    }
    if (r.contains("published_runs"))
      for (const auto& x : r.at("published_runs").at("rows")) {
        const std::string sec = x.at("id").get<std::string>(), key = x.at("key").get<std::string>();
        row(sec, "published " + key, num(x, "published"), "", "published");
        if (!x.contains("predicted")) continue;
        row(sec, "predicted " + key, num(x, "predicted"), "", "modelled");
        row(sec, "error", num(x, "error"), "fraction", "modelled");
      }
    return out;
  }
  const auto& p = r.at("prediction");
  for (const char* k : {"step_time_s", "tokens_per_s", "model_tflops_per_gpu", "hardware_tflops_per_gpu", "mfu", "hfu",
                        "training_days", "memory_per_gpu_bytes"})
    row("prediction", k, num(p, k), "", k == std::string("memory_per_gpu_bytes") ? "analytic" : "modelled");
  row("prediction", "fits", p.at("fits").get<bool>() ? 1 : 0, "bool", "analytic");
  for (const auto& part : parts()) row("breakdown", part.key, num(p.at("breakdown"), part.key), "s", "modelled");
  for (const auto& o : p.at("ops")) row("ops", o.at("name").get<std::string>(), num(o, "time_s"), "s", o.at("source").get<std::string>());
  if (r.contains("scaling"))
    for (const auto& x : r.at("scaling")) row("scaling", fmt::format("mfu@{}", x.at("gpus").get<int64_t>()), num(x, "mfu"), "", "modelled");
  return out;
}

}  // namespace detail

}  // namespace flopscope
