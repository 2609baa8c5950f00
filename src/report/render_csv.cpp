// CSV: one tidy table, a value a row, each with its unit and source, so any tool can load
// and pivot it: section,name,phase,metric,value,unit,source.
#include <fmt/format.h>

#include "report/render_detail.hpp"

namespace flopscope::detail {

using nlohmann::json;

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += (c == '"') ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

namespace {

class Csv {
 public:
  Csv() { out_ = "section,name,phase,metric,value,unit,source\n"; }
  void row(const std::string& section, const std::string& name, const std::string& phase, const std::string& metric,
           const json& value, const std::string& unit, const std::string& source) {
    std::string v;
    if (value.is_null()) v = "";
    else if (value.is_number_integer()) v = fmt::format("{}", value.get<int64_t>());
    else if (value.is_number()) v = fmt::format("{:.17g}", value.get<double>());
    else if (value.is_boolean()) v = value.get<bool>() ? "true" : "false";
    else if (value.is_string()) v = value.get<std::string>();
    else v = value.dump();  // an array or object, as compact JSON in one field
    out_ += fmt::format("{},{},{},{},{},{},{}\n", csv_field(section), csv_field(name), csv_field(phase),
                        csv_field(metric), csv_field(v), csv_field(unit), csv_field(source));
  }
  // Every listed key of `obj` that is present, as rows.
  void keys(const std::string& section, const std::string& name, const std::string& phase, const json& obj,
            std::initializer_list<std::pair<const char*, const char*>> metrics, const std::string& source) {
    for (const auto& [key, unit] : metrics)
      if (obj.contains(key)) row(section, name, phase, key, obj.at(key), unit, source);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

}  // namespace

std::string render_csv(const json& r) {
  Csv c;
  const auto& m = r.at("model");
  for (const auto& [key, value] : m.items()) c.row("model", m.at("name").get<std::string>(), "", key, value, "", "config");
  const auto& L = r.at("layer");
  for (const auto& [key, value] : L.items()) {
    if (key == "name") continue;
    c.row("layer", L.at("name").get<std::string>(), "", key, value, key == "tensor_bytes" ? "bytes" : "",
          key == "tensor_bytes" ? "analytic" : "config");
  }
  if (r.contains("parameters")) c.row("model", m.at("name").get<std::string>(), "", "parameters", r.at("parameters"), "", "analytic");
  if (r.contains("parameter_breakdown")) {
    for (const auto& [key, value] : r.at("parameter_breakdown").items())
      c.row("parameters", key, "", "parameters", value, "", "analytic");
  }
  for (const auto& f : r.at("formulas")) {
    const auto id = f.at("id").get<std::string>();
    c.keys("formula", id, "", f,
           {{"flops_per_token", "FLOP"}, {"total_flops", "FLOP"}, {"ratio_to_6nd", ""}, {"pf_days", "PF-day"}},
           "analytic");
    c.keys("formula", id, "", f, {{"days_on_cluster", "day"}}, "analytic+assumed");
  }
  if (r.contains("seed_check") && r.at("seed_check").value("applies", true)) {
    const auto& s = r.at("seed_check");
    c.row("seed_check", "seed", "", "total_flops", s.at("seed_total"), "FLOP", "analytic");
    for (const auto& f : s.at("factors")) {
      c.keys("seed_check", f.at("id").get<std::string>(), "", f,
             {{"seed_value", ""}, {"graph_value", ""}, {"factor", ""}, {"running_total", "FLOP"}}, "analytic");
    }
    c.row("seed_check", "corrected", "", "total_flops", s.at("corrected_total"), "FLOP", "analytic");
  }
  for (const auto& o : r.at("ops")) {
    const auto name = o.at("name").get<std::string>();
    const auto phase = o.at("phase").get<std::string>();
    c.row("op", name, phase, "kind", o.at("kind"), "", "graph");
    c.row("op", name, phase, "shape", o.at("shape"), "", "graph");
    c.keys("op", name, phase, o,
           {{"flops", "FLOP"}, {"model_flops", "FLOP"}, {"full_square_flops", "FLOP"}, {"min_bytes", "byte"}}, "analytic");
    c.keys("op", name, phase, o, {{"counted_flops", "FLOP"}}, "counted");
    if (o.contains("measured")) {
      for (const auto& [key, value] : o.at("measured").items())
        if (value.is_number()) c.row("op", name, phase, key, value, "", "measured");
    }
    if (o.contains("time_ms")) {
      for (const char* key : {"median", "min", "max"})  // the raw samples stay in the JSON
        c.row("op", name, phase, std::string("time_ms_") + key, o.at("time_ms").at(key), "ms", "timed");
    }
    c.keys("op", name, phase, o, {{"achieved_flops_per_s", "FLOP/s"}, {"time_share", ""}}, "timed");
  }
  if (r.contains("totals")) {
    for (const auto& [group, t] : r.at("totals").items()) {
      c.keys("total", group, "", t, {{"flops", "FLOP"}, {"model_flops", "FLOP"}}, "analytic");
      c.keys("total", group, "", t, {{"counted_flops", "FLOP"}}, "counted");
      c.keys("total", group, "", t, {{"measured_flops", "FLOP"}}, "measured");
      if (t.contains("time_ms"))
        for (const char* key : {"median", "min", "max"})
          c.row("total", group, "", std::string("time_ms_") + key, t.at("time_ms").at(key), "ms", "timed");
      if (t.contains("graph_replay_ms"))
        for (const char* key : {"median", "min", "max"})
          c.row("total", group, "", std::string("graph_replay_ms_") + key, t.at("graph_replay_ms").at(key), "ms",
                "timed");
      c.keys("total", group, "", t, {{"achieved_flops_per_s", "FLOP/s"}}, "timed");
    }
  }
  if (r.contains("extrapolation")) {
    const auto& e = r.at("extrapolation");
    for (const auto& [key, value] : e.items()) {
      if (value.is_number()) c.row("extrapolation", "training_run", "", key, value, "", e.value("source", "counted+timed"));
    }
  }
  return c.take();
}

}  // namespace flopscope::detail
