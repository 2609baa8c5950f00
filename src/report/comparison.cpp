// `flopscope compare`: saved results side by side, per op and in total, with ratios to the
// first (the baseline): H100 vs H200, bf16 vs fp8, width 1/8 vs full.
#include <algorithm>
#include <map>
#include <tuple>

#include <fmt/format.h>

#include "report/collections.hpp"
#include "report/result.hpp"
#include "util/error.hpp"

namespace flopscope {

using nlohmann::json;

namespace {

json maybe(const json& j, const char* key) { return j.contains(key) ? j.at(key) : json(nullptr); }

// One op's (or one phase total's) figures in one input.
json values_of(const json& o, bool measured) {
  json v = {{"flops", o.at("flops")}, {"model_flops", maybe(o, "model_flops")}};
  if (o.contains("counted_flops")) {
    v["executed_flops"] = o.at("counted_flops");
    v["flops_source"] = "counted";
  } else {
    v["executed_flops"] = o.at("flops");
    v["flops_source"] = "analytic";
  }
  v["median_ms"] = measured && o.contains("time_ms") ? o.at("time_ms").at("median") : json(nullptr);
  v["flops_per_s"] = measured ? maybe(o, "achieved_flops_per_s") : json(nullptr);
  return v;
}

double ratio_of(const json& a, const json& b) {
  if (!a.is_number() || !b.is_number()) return 0;
  const double x = a.get<double>(), y = b.get<double>();
  return x != 0 ? y / x : 0;
}

// Ratios of every value to the baseline's (null where either is missing).
json ratios_of(const json& values) {
  json out = json::array();
  const json& base = values.at(0);
  for (const auto& v : values) {
    if (!base.is_object() || !v.is_object()) {
      out.push_back(nullptr);
      continue;
    }
    json r;
    for (const char* key : {"flops", "executed_flops", "median_ms", "flops_per_s"}) {
      const double q = ratio_of(base.at(key), v.at(key));
      r[key] = q > 0 ? json(q) : json(nullptr);
    }
    out.push_back(r);
  }
  return out;
}

std::string input_summary(const json& r) {
  const auto& L = r.at("layer");
  std::string s = fmt::format("{} {}, width {} (d_model {}), batch {}, seq {}, {}", r.at("command").get<std::string>(),
                              r.at("model").at("name").get<std::string>(), L.at("width").get<std::string>(),
                              L.at("d_model").get<int64_t>(), L.at("batch").get<int64_t>(), L.at("seq").get<int64_t>(),
                              L.at("precision").get<std::string>());
  if (L.at("recompute").get<bool>()) s.append(", recompute");
  if (L.at("include_head").get<bool>()) s.append(", LM head");
  if (r.contains("backend")) {
    s.append(" on ");
    s.append(r.at("backend").at("device_line").get<std::string>());
  }
  return s;
}

}  // namespace

json compare_result(const std::vector<CompareInput>& in) {
  FLOPSCOPE_CHECK(in.size() >= 2, "compare needs two results or more");
  json inputs = json::array();
  for (const auto& x : in) {
    const auto& r = x.result;
    const bool measured = r.at("command").get<std::string>() == "measure";
    const size_t i = inputs.size();
    inputs.push_back({{"label", x.label},
                      {"tag", i < 26 ? std::string(1, static_cast<char>('A' + i)) : fmt::format("I{}", i + 1)},
                      {"file", x.file},
                      {"command", r.at("command")},
                      {"summary", input_summary(r)},
                      {"model", r.at("model").at("name")},
                      {"layer", r.at("layer")},
                      {"backend", measured ? r.at("backend").at("name") : json(nullptr)},
                      {"device", measured ? r.at("backend").at("device_line") : json(nullptr)},
                      {"tool", r.at("tool")}});
  }

  // Ops in the baseline's order, then any only the others have (recompute, the LM head).
  std::vector<std::string> names;
  std::map<std::string, std::vector<const json*>> by_name;
  for (size_t i = 0; i < in.size(); ++i) {
    for (const auto& o : in[i].result.at("ops")) {
      const auto name = o.at("name").get<std::string>();
      auto& slot = by_name[name];
      if (slot.empty()) {
        names.push_back(name);
        slot.assign(in.size(), nullptr);
      }
      slot[i] = &o;
    }
  }
  json ops = json::array();
  for (const auto& name : names) {
    const auto& slot = by_name.at(name);
    const json* first = *std::find_if(slot.begin(), slot.end(), [](const json* p) { return p != nullptr; });
    json values = json::array();
    for (size_t i = 0; i < in.size(); ++i)
      values.push_back(slot[i] ? values_of(*slot[i], in[i].result.at("command") == "measure") : json(nullptr));
    ops.push_back({{"name", name}, {"phase", first->at("phase")}, {"kind", first->at("kind")}, {"values", values},
                   {"ratios", ratios_of(values)}});
  }

  // Phase totals: measure results carry them; an estimate's are summed from its ops.
  json totals = json::array();
  for (const char* phase : {"forward", "backward", "total"}) {
    json values = json::array();
    for (const auto& x : in) {
      const auto& r = x.result;
      if (r.at("command") == "measure") {
        values.push_back(values_of(r.at("totals").at(phase), true));
        continue;
      }
      double f = 0, mf = 0;
      for (const auto& o : r.at("ops")) {
        const auto p = o.at("phase").get<std::string>();
        if (std::string(phase) == "total" || p == phase || (std::string(phase) == "backward" && p == "recompute")) {
          f += o.at("flops").get<double>();
          mf += o.contains("model_flops") ? o.at("model_flops").get<double>() : o.at("flops").get<double>();
        }
      }
      values.push_back({{"flops", f}, {"model_flops", mf}, {"executed_flops", f}, {"flops_source", "analytic"},
                        {"median_ms", nullptr}, {"flops_per_s", nullptr}});
    }
    totals.push_back({{"phase", phase}, {"values", values}, {"ratios", ratios_of(values)}});
  }

  // The training run: a measurement's extrapolation; an estimate's graph formula.
  struct Metric {
    const char* id;
    const char* title;
    const char* unit;
  };
  const std::vector<Metric> metrics = {
      {"training_flops", "training FLOPs", "FLOP"},
      {"flops_per_token", "training FLOPs per token", "FLOP"},
      {"achieved_flops_per_s", "throughput at full width (extrapolated)", "FLOP/s"},
      {"utilization_of_ceiling", "layer throughput, of the GEMM ceiling", "fraction"},
      {"days_one_device", "days on one device", "days"},
      {"days_on_cluster", "days on the cluster (perfect scaling)", "days"},
  };
  json run = json::array();
  for (const auto& m : metrics) {
    json values = json::array();
    json sources = json::array();
    for (const auto& x : in) {
      const auto& r = x.result;
      const std::string id = m.id;
      if (r.at("command") == "measure") {
        const auto& e = r.at("extrapolation");
        if (id == "utilization_of_ceiling") {
          values.push_back(r.at("totals").at("total").at("utilization").at("of_measured_ceiling"));
          sources.push_back(e.at("flops_source").get<std::string>() + " / timed");
        } else {
          values.push_back(maybe(e, m.id));
          const bool time = id.rfind("days", 0) == 0 || id == "achieved_flops_per_s";
          sources.push_back(time ? "timed, scaled" : e.at("flops_source").get<std::string>() + ", scaled");
        }
      } else {
        json v = nullptr;
        for (const auto& f : r.at("formulas"))
          if (f.at("id") == "graph") {
            if (id == "training_flops") v = f.at("total_flops");
            if (id == "flops_per_token") v = f.at("flops_per_token");
          }
        values.push_back(v);
        sources.push_back(v.is_null() ? "" : "analytic (graph formula)");
      }
    }
    json ratios = json::array();
    for (const auto& v : values) {
      const double q = ratio_of(values.at(0), v);
      ratios.push_back(q > 0 ? json(q) : json(nullptr));
    }
    run.push_back({{"metric", m.id}, {"title", m.title}, {"unit", m.unit}, {"values", values}, {"sources", sources},
                   {"ratios", ratios}});
  }

  return {{"schema", kSchema},
          {"command", "compare"},
          {"tool", tool_json()},
          {"sources",
           {{"ops.values.flops", "analytic"},
            {"ops.values.executed_flops", "counted where the input counted, else analytic (flops_source)"},
            {"ops.values.median_ms", "timed"},
            {"ops.values.flops_per_s", "counted / timed"},
            {"ratios", "each input's value over the baseline's (the first input)"},
            {"run", "each input's extrapolation (sources per value)"}}},
          {"baseline", in.front().label},
          {"inputs", inputs},
          {"ops", ops},
          {"totals", totals},
          {"run", run}};
}

namespace detail {

namespace {

struct Unit {
  double scale;
  std::string name;
};
Unit rate_unit_of(const json& cmp) {
  for (const auto& i : cmp.at("inputs"))
    if (i.at("backend").is_string() && i.at("backend").get<std::string>() != "cpu") return {1e12, "TFLOP/s"};
  return {1e9, "GFLOP/s"};
}

std::string ratio_cell(const json& r, const char* key) {
  if (!r.is_object() || !r.at(key).is_number()) return "";
  return fmt::format("{:.3f}x", r.at(key).get<double>());
}

// Columns of one metric: each input's value, then each other input's ratio to the baseline.
// Inputs are named by their tags (A, B, ...) in column headers; the Inputs section says which is which.
void metric_headers(std::vector<std::string>& h, const json& inputs, const std::string& what) {
  for (const auto& i : inputs) h.push_back(fmt::format("{} {}", what, i.at("tag").get<std::string>()));
  for (size_t k = 1; k < inputs.size(); ++k)
    h.push_back(fmt::format("{}/{}", inputs.at(k).at("tag").get<std::string>(), inputs.at(0).at("tag").get<std::string>()));
}

template <typename F>
void metric_cells(std::vector<std::string>& row, const json& values, const json& ratios, const char* key, F&& show) {
  for (const auto& v : values) row.push_back(v.is_object() && v.at(key).is_number() ? show(v.at(key).get<double>()) : "");
  for (size_t k = 1; k < values.size(); ++k) row.push_back(ratio_cell(ratios.at(k), key));
}

bool any_timed(const json& cmp) {
  for (const auto& i : cmp.at("inputs"))
    if (i.at("command") == "measure") return true;
  return false;
}

}  // namespace

Document compare_document(const json& cmp) {
  Document d;
  const auto& inputs = cmp.at("inputs");
  std::string labels;
  for (const auto& i : inputs) {
    if (!labels.empty()) labels.append(" vs ");
    labels.append(i.at("label").get<std::string>());
  }
  d.title = fmt::format("flopscope compare: {}", labels);
  const Unit unit = rate_unit_of(cmp);
  const bool timed = any_timed(cmp);

  Section in;
  in.heading = "Inputs";
  for (size_t k = 0; k < inputs.size(); ++k) {
    const auto& i = inputs.at(k);
    in.before.push_back(fmt::format("{} = {}{}: {} ({})", i.at("tag").get<std::string>(), i.at("label").get<std::string>(),
                                    k == 0 ? ", the baseline" : "", i.at("summary").get<std::string>(),
                                    i.at("file").get<std::string>()));
  }
  in.before.push_back("ratios are each input's value over the baseline's: above 1 in time means slower, in throughput faster.");
  d.sections.push_back(std::move(in));

  auto section = [&](const std::string& heading, const json& rows, bool ops) {
    Section s;
    s.heading = heading;
    std::vector<std::string> h = {ops ? "<op" : "<phase"};
    if (ops) h.push_back("<phase");
    metric_headers(h, inputs, "FLOPs");
    if (timed) {
      metric_headers(h, inputs, "ms");
      metric_headers(h, inputs, unit.name);
    }
    Table t(h);
    for (const auto& r : rows) {
      std::vector<std::string> row = {r.at(ops ? "name" : "phase").get<std::string>()};
      if (ops) row.push_back(r.at("phase").get<std::string>());
      metric_cells(row, r.at("values"), r.at("ratios"), "executed_flops", [](double v) { return fmt_flops(v); });
      if (timed) {
        metric_cells(row, r.at("values"), r.at("ratios"), "median_ms", [](double v) { return fmt_sig(v, 4); });
        metric_cells(row, r.at("values"), r.at("ratios"), "flops_per_s", [&](double v) { return fmt_sig(v / unit.scale, 4); });
      }
      t.add_row(row);
    }
    s.table = std::move(t);
    return s;
  };
  Section ops = section(timed ? "Per op: FLOPs executed (counted, else analytic), median time (timed), throughput "
                                "(counted / timed)"
                              : "Per op: FLOPs (analytic)",
                        cmp.at("ops"), true);
  ops.after.push_back("an empty cell: the op did not run in that input (recompute, LM head) or has no time.");
  d.sections.push_back(std::move(ops));
  d.sections.push_back(section("Layer totals (backward includes recompute)", cmp.at("totals"), false));

  Section run;
  run.heading = "The training run, extrapolated from each input";
  std::vector<std::string> h = {"<quantity"};
  for (const auto& i : inputs) h.push_back(i.at("tag").get<std::string>());
  for (size_t k = 1; k < inputs.size(); ++k)
    h.push_back(fmt::format("{}/{}", inputs.at(k).at("tag").get<std::string>(), inputs.at(0).at("tag").get<std::string>()));
  h.push_back("<source");
  Table t(h);
  for (const auto& m : cmp.at("run")) {
    const std::string u = m.at("unit").get<std::string>();
    std::vector<std::string> row = {m.at("title").get<std::string>()};
    for (const auto& v : m.at("values")) {
      if (!v.is_number()) {
        row.push_back("n/a");
        continue;
      }
      const double x = v.get<double>();
      row.push_back(u == "FLOP" ? fmt_flops(x)
                    : u == "FLOP/s" ? fmt::format("{} {}", fmt_sig(x / unit.scale, 4), unit.name)
                    : u == "fraction" ? fmt_percent(x)
                                      : fmt_duration_days(x));
    }
    for (size_t k = 1; k < m.at("ratios").size(); ++k)
      row.push_back(m.at("ratios").at(k).is_number() ? fmt::format("{:.3f}x", m.at("ratios").at(k).get<double>()) : "");
    std::string src;
    for (const auto& s : m.at("sources")) {
      const std::string x = s.get<std::string>();
      if (x.empty() || src.find(x) != std::string::npos) continue;
      if (!src.empty()) src.append("; ");
      src.append(x);
    }
    row.push_back(src);
    t.add_row(row);
  }
  run.table = std::move(t);
  d.sections.push_back(std::move(run));
  return d;
}

std::string compare_csv(const json& cmp) {
  std::string out = "section,name,phase,input,metric,value,unit,source\n";
  const auto& inputs = cmp.at("inputs");
  auto value_text = [](const json& v) {
    if (v.is_null()) return std::string();
    if (v.is_number_integer()) return fmt::format("{}", v.get<int64_t>());
    return fmt::format("{:.17g}", v.get<double>());
  };
  auto rows = [&](const char* section, const json& list, const char* name_key) {
    for (const auto& r : list) {
      const std::string name = r.at(name_key).get<std::string>();
      const std::string phase = r.contains("phase") && std::string(name_key) != "phase" ? r.at("phase").get<std::string>() : "";
      for (size_t i = 0; i < inputs.size(); ++i) {
        const auto& v = r.at("values").at(i);
        if (!v.is_object()) continue;
        const std::string label = inputs.at(i).at("label").get<std::string>();
        const std::string fs = v.at("flops_source").get<std::string>();
        const std::vector<std::tuple<const char*, const char*, std::string>> metrics = {
            {"flops", "FLOP", "analytic"},
            {"executed_flops", "FLOP", fs},
            {"median_ms", "ms", "timed"},
            {"flops_per_s", "FLOP/s", fs + " / timed"}};
        for (const auto& [key, unit, source] : metrics) {
          if (!v.at(key).is_number()) continue;
          out.append(fmt::format("{},{},{},{},{},{},{},{}\n", section, csv_field(name), phase, csv_field(label), key,
                                 value_text(v.at(key)), unit, csv_field(source)));
          const auto& q = r.at("ratios").at(i);
          if (i > 0 && q.is_object() && q.at(key).is_number())
            out.append(fmt::format("{},{},{},{},{}_ratio,{},ratio,{}\n", section, csv_field(name), phase, csv_field(label),
                                   key, value_text(q.at(key)), csv_field("over " + inputs.at(0).at("label").get<std::string>())));
        }
      }
    }
  };
  rows("op", cmp.at("ops"), "name");
  rows("total", cmp.at("totals"), "phase");
  for (const auto& m : cmp.at("run")) {
    for (size_t i = 0; i < inputs.size(); ++i) {
      const auto& v = m.at("values").at(i);
      if (!v.is_number()) continue;
      out.append(fmt::format("run,{},,{},{},{},{},{}\n", m.at("metric").get<std::string>(),
                             csv_field(inputs.at(i).at("label").get<std::string>()), m.at("metric").get<std::string>(),
                             value_text(v), m.at("unit").get<std::string>(), csv_field(m.at("sources").at(i).get<std::string>())));
    }
  }
  return out;
}

}  // namespace detail

}  // namespace flopscope
