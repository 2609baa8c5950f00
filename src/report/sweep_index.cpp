// A sweep's index (written by `flopscope sweep`, by each of its shards, or by `sweep
// --index-only`): each grid point's parameters, file and status, with a summary of its measure
// result and where it ran, rendered as a table, CSV and Markdown.
#include <fmt/format.h>

#include "report/collections.hpp"
#include "report/result.hpp"
#include "util/error.hpp"

namespace flopscope {

using nlohmann::json;

void check_result(const json& r) {
  if (!r.is_object() || !r.contains("schema")) throw UsageError("not a flopscope result: no 'schema' field");
  if (!r.at("schema").is_string()) throw UsageError("not a flopscope result: 'schema' is not a string");
  const auto schema = r.at("schema").get<std::string>();
  if (schema != kSchema)
    throw UsageError(fmt::format("result schema '{}' is not the schema this flopscope reads ('{}')", schema, kSchema));
  if (!r.contains("command") || !r.at("command").is_string()) throw UsageError("not a flopscope result: no 'command' field");
  const auto cmd = r.at("command").get<std::string>();
  if (cmd != "estimate" && cmd != "measure" && cmd != "sweep" && cmd != "compare" &&
      cmd != "predict")
    throw UsageError(fmt::format("result of unknown command '{}'", cmd));
}

namespace {

// Where a point ran, from its result's "host" (src/measure/host.hpp), for the index: the node
// (Slurm's name for it, else the hostname), the Slurm job ("1234_5": task 5 of array job 1234)
// and the GPU (its index and UUID; "none" on the cpu backend). Null for results without "host".
json host_summary(const json& r) {
  if (!r.contains("host") || !r.at("host").is_object()) return nullptr;
  const json& h = r.at("host");
  const json slurm = h.value("slurm", json(nullptr));
  json node = h.value("hostname", json(nullptr)), job = nullptr;
  if (slurm.is_object()) {
    if (slurm.value("node", json(nullptr)).is_string()) node = slurm.at("node");
    const json array_job = slurm.value("array_job_id", json(nullptr)), task = slurm.value("array_task_id", json(nullptr));
    job = array_job.is_string() && task.is_string()
              ? json(array_job.get<std::string>() + "_" + task.get<std::string>())
              : slurm.value("job_id", json(nullptr));
  }
  const json gpu = h.value("gpu", json(nullptr));
  return {{"node", node},
          {"slurm_job", job},
          {"gpu_index", gpu.is_object() ? gpu.value("index", json(nullptr)) : json(nullptr)},
          {"gpu_uuid", gpu.is_object() ? gpu.value("uuid", json(nullptr)) : json(nullptr)}};
}

}  // namespace

json point_summary(const json& r) {
  const auto& L = r.at("layer");
  const auto& total = r.at("totals").at("total");
  const auto& e = r.at("extrapolation");
  const auto& pk = r.at("peaks");
  const bool counted = total.contains("counted_flops");
  auto nullable = [](const json& j, const char* key) { return j.contains(key) ? j.at(key) : json(nullptr); };
  return {{"d_model", L.at("d_model")},
          {"n_heads", L.at("n_heads")},
          {"seq", L.at("seq")},
          {"tokens", L.at("tokens")},
          {"backend", r.at("backend").at("name")},
          {"device", r.at("backend").at("device_line")},
          {"flops_source", counted ? "counted" : "analytic"},
          {"layer_flops", counted ? total.at("counted_flops") : total.at("flops")},
          {"layer_model_flops", total.at("model_flops")},
          {"layer_ms", total.at("time_ms").at("median")},
          {"flops_per_s", total.at("achieved_flops_per_s")},
          {"model_flops_per_s", total.at("achieved_model_flops_per_s")},
          {"of_ceiling", total.at("utilization").at("of_measured_ceiling")},
          {"of_peak", total.at("utilization").at("of_datasheet_peak")},
          {"ceiling_flops_per_s", pk.at("measured_ceiling").is_object() ? pk.at("measured_ceiling").at("flops_per_s")
                                                                         : json(nullptr)},
          {"datasheet_tflops", pk.at("datasheet_tflops")},
          {"training_flops", e.at("training_flops")},
          {"flops_per_token", e.at("flops_per_token")},
          {"days_one_device", e.at("days_one_device")},
          {"days_on_cluster", e.at("days_on_cluster")},
          {"cluster_devices", e.at("cluster_devices")},
          {"wall_seconds", nullable(r.at("settings"), "wall_seconds")},
          {"host", host_summary(r)}};
}

namespace detail {

namespace {

bool all_cpu(const json& sweep) {
  for (const auto& p : sweep.at("points"))
    if (p.at("summary").is_object() && p.at("summary").at("backend").get<std::string>() != "cpu") return false;
  return true;
}

// "gpu17, GPU 0 GPU-1a2b3c4d" (the UUID's first group: enough to tell a node's GPUs apart);
// "host, no GPU" on the cpu.
std::string node_and_gpu(const json& host) {
  std::string s = host.at("node").is_string() ? host.at("node").get<std::string>() : "?";
  const json& index = host.at("gpu_index");
  if (index.is_null()) return s + ", no GPU";
  s += ", GPU " + index.dump();
  if (host.at("gpu_uuid").is_string()) s += " " + host.at("gpu_uuid").get<std::string>().substr(0, 12);
  return s;
}

std::string join(const json& list) {
  std::string s;
  for (const auto& v : list) {
    if (!s.empty()) s.append(", ");
    s.append(v.is_string() ? v.get<std::string>() : v.is_boolean() ? (v.get<bool>() ? "on" : "off") : v.dump());
  }
  return s;
}

}  // namespace

Document sweep_document(const json& s) {
  Document d;
  const auto& c = s.at("counts");
  d.title = fmt::format("flopscope sweep: {} ({} of {} points done)", s.at("model").at("name").get<std::string>(),
                        c.at("done").get<int64_t>(), c.at("points").get<int64_t>());
  const bool cpu = all_cpu(s);
  const double unit = cpu ? 1e9 : 1e12;
  const char* unit_name = cpu ? "GFLOP/s" : "TFLOP/s";

  Section grid;
  grid.heading = "Grid";
  grid.before.push_back(model_line(s.at("model")));
  const auto& g = s.at("grid");
  grid.before.push_back(fmt::format("widths {}; batches {}; precisions {}; recompute {}{}", join(g.at("widths")),
                                    join(g.at("batches")), join(g.at("precisions")), join(g.at("recompute")),
                                    g.at("include_head").get<bool>() ? "; LM head included" : ""));
  const auto& st = s.at("settings");
  grid.before.push_back(fmt::format("each point: backend {}, 1 verification, {} warm-up, {} timed runs (seed {}); GEMM "
                                    "ceiling {}; cluster of {:.0f} devices",
                                    st.at("backend").get<std::string>(), st.at("warmup").get<int64_t>(),
                                    st.at("repeats").get<int64_t>(), st.at("seed").get<uint64_t>(),
                                    st.at("ceiling").get<bool>() ? "timed per point" : "not measured",
                                    st.at("devices").get<double>()));
  const int64_t missing = c.value("missing", int64_t{0});
  grid.before.push_back(fmt::format("points: {} done ({} reused from an earlier run), {} failed, {} pending{}",
                                    c.at("done").get<int64_t>(), c.at("reused").get<int64_t>(),
                                    c.at("failed").get<int64_t>(), c.at("pending").get<int64_t>(),
                                    missing > 0 ? fmt::format(", {} missing (no result)", missing) : ""));
  const std::string mode = s.value("mode", "run");
  if (mode == "index-only")
    grid.before.push_back("index written by `sweep --index-only` from the point files present (shards run apart)");
  if (mode == "shard" && s.at("shard").is_object()) {
    const int64_t i = s.at("shard").at("index").get<int64_t>(), n = s.at("shard").at("count").get<int64_t>();
    grid.before.push_back(fmt::format("shard {} of {}: its points only (grid points {}, {}, ... of the whole grid's "
                                      "order)",
                                      i, n, i, i + n));
  }
  d.sections.push_back(std::move(grid));

  Section pts;
  pts.heading = "Points: the layer (counted FLOPs, timed) and the training run extrapolated from it";
  double devices = 0;
  for (const auto& p : s.at("points"))
    if (p.at("summary").is_object()) devices = p.at("summary").at("cluster_devices").get<double>();
  // Where each point ran (recorded): a column for the node and GPU, and one for the Slurm job
  // when any point ran in one, so a slow node or GPU shows beside its times.
  bool any_host = false, any_job = false;
  for (const auto& p : s.at("points")) {
    const auto& sm = p.at("summary");
    if (!sm.is_object() || !sm.contains("host") || !sm.at("host").is_object()) continue;
    any_host = true;
    any_job = any_job || sm.at("host").at("slurm_job").is_string();
  }
  std::vector<std::string> columns = {"<point", "<width", "d_model", "batch", "<dtype", "<recompute", "<status",
                                      "layer FLOPs", "median ms", unit_name, "of ceiling", "training FLOPs",
                                      devices > 0 ? fmt::format("days on {:.0f}", devices) : "days"};
  if (any_host) columns.push_back("<node, GPU");
  if (any_job) columns.push_back("<Slurm job");
  columns.push_back("<file");
  Table t(columns);
  for (const auto& p : s.at("points")) {
    const auto& sm = p.at("summary");
    const bool has = sm.is_object();
    const json host = has && sm.contains("host") ? sm.at("host") : json(nullptr);
    auto val = [&](const char* key, auto&& f) { return has && !sm.at(key).is_null() ? f(sm.at(key).get<double>()) : std::string(); };
    std::string status = p.at("status").get<std::string>();
    if (p.value("reused", false)) status.append(" (reused)");
    std::vector<std::string> row = {p.at("id").get<std::string>(), p.at("width").get<std::string>(),
                                    has ? std::to_string(sm.at("d_model").get<int64_t>()) : "",
                                    std::to_string(p.at("batch").get<int64_t>()), p.at("precision").get<std::string>(),
                                    p.at("recompute").get<bool>() ? "on" : "off", status,
                                    val("layer_flops", [](double v) { return fmt_flops(v); }),
                                    val("layer_ms", [](double v) { return fmt_sig(v, 4); }),
                                    val("flops_per_s", [&](double v) { return fmt_sig(v / unit, 4); }),
                                    val("of_ceiling", [](double v) { return fmt_percent(v); }),
                                    val("training_flops", [](double v) { return fmt_flops(v); }),
                                    val("days_on_cluster", [](double v) { return fmt_sig(v, 3); })};
    if (any_host) row.push_back(host.is_object() ? node_and_gpu(host) : "");
    if (any_job) row.push_back(host.is_object() && host.at("slurm_job").is_string() ? host.at("slurm_job").get<std::string>() : "");
    row.push_back(p.at("file").get<std::string>());
    t.add_row(row);
  }
  pts.table = std::move(t);
  pts.after.push_back("layer FLOPs: counted by the backend (analytic where it cannot count); times: timed medians; "
                      "training FLOPs and days: extrapolated to full width (see `flopscope report POINT.json`).");
  if (any_host)
    pts.after.push_back(fmt::format("node, GPU{}: recorded where each point ran (hostname or Slurm's node name, the "
                                    "CUDA device index and the start of its UUID; no GPU on the cpu{}).",
                                    any_job ? ", Slurm job" : "",
                                    any_job ? "; the job as array job_task, or the job id" : ""));
  for (const auto& p : s.at("points"))
    if (p.at("error").is_string())
      pts.after.push_back(fmt::format("{} {}: {}", p.at("id").get<std::string>(), p.at("status").get<std::string>(),
                                      p.at("error").get<std::string>()));
  d.sections.push_back(std::move(pts));
  return d;
}

std::string sweep_csv(const json& s) {
  std::string out = "section,name,phase,metric,value,unit,source\n";
  auto row = [&](const std::string& name, const std::string& metric, const json& v, const std::string& unit,
                 const std::string& source) {
    std::string value;
    if (v.is_null()) value = "";
    else if (v.is_number_integer()) value = fmt::format("{}", v.get<int64_t>());
    else if (v.is_number()) value = fmt::format("{:.17g}", v.get<double>());
    else if (v.is_boolean()) value = v.get<bool>() ? "true" : "false";
    else value = v.get<std::string>();
    out.append(fmt::format("point,{},,{},{},{},{}\n", csv_field(name), csv_field(metric), csv_field(value),
                           csv_field(unit), csv_field(source)));
  };
  for (const auto& p : s.at("points")) {
    const std::string id = p.at("id").get<std::string>();
    row(id, "width", p.at("width"), "", "config");
    row(id, "batch", p.at("batch"), "", "config");
    row(id, "precision", p.at("precision"), "", "config");
    row(id, "recompute", p.at("recompute"), "", "config");
    row(id, "status", p.at("status"), "", "sweep");
    row(id, "file", p.at("file"), "", "sweep");
    const auto& sm = p.at("summary");
    if (!sm.is_object()) continue;
    const std::string fs = sm.at("flops_source").get<std::string>();
    row(id, "d_model", sm.at("d_model"), "", "analytic");
    row(id, "layer_flops", sm.at("layer_flops"), "FLOP", fs);
    row(id, "layer_ms", sm.at("layer_ms"), "ms", "timed");
    row(id, "flops_per_s", sm.at("flops_per_s"), "FLOP/s", fs + " / timed");
    row(id, "of_ceiling", sm.at("of_ceiling"), "fraction", fs + " / timed");
    row(id, "training_flops", sm.at("training_flops"), "FLOP", fs + ", scaled");
    row(id, "days_on_cluster", sm.at("days_on_cluster"), "days", "timed, scaled");
    if (!sm.contains("host") || !sm.at("host").is_object()) continue;
    const auto& h = sm.at("host");
    row(id, "node", h.at("node"), "", "recorded");
    row(id, "slurm_job", h.at("slurm_job"), "", "recorded");
    row(id, "gpu_index", h.at("gpu_index"), "", "recorded");
    row(id, "gpu_uuid", h.at("gpu_uuid"), "", "recorded");
  }
  return out;
}

}  // namespace detail

}  // namespace flopscope
