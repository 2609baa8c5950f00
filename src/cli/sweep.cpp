// `flopscope sweep`: `measure` over a grid of widths, batch sizes, precisions and recompute
// on/off, in-process through the same code path (measure/run_point.hpp).
//
//   OUT/points/<id>.json   one measure result per point, written atomically when it is done
//   OUT/index.json         every point's parameters, file, status and a summary of its result,
//                          rewritten atomically before and after each point
//
// Every point is validated before any runs (a width that leaves no whole head, a precision
// the backend does not run, a layer that does not fit), and the output folder is checked
// writable. A re-run skips points whose file exists and is a measure result of this schema
// for the same model and point; an interrupted point leaves no file and runs again.
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <set>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "backend/preflight.hpp"
#include "backend/select.hpp"
#include "cli/commands.hpp"
#include "measure/run_point.hpp"
#include "report/collections.hpp"
#include "util/atomic_file.hpp"
#include "util/error.hpp"
#include "util/parse.hpp"
#include "version.hpp"

namespace flopscope::cli {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct SweepArgs {
  ModelOptions model;
  std::string widths;
  std::string batches = "1";
  std::string precisions;  // "": the backend's default
  std::string recompute = "off";
  bool include_head = false;
  std::string out_dir;
  RunOptions run;
  bool dry_run = false;
  std::string format = "table";
};

// "a, b,c" -> {"a", "b", "c"}; an empty item is an error naming the option.
std::vector<std::string> split_list(const std::string& option, const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    const size_t a = item.find_first_not_of(" \t"), b = item.find_last_not_of(" \t");
    item = a == std::string::npos ? "" : item.substr(a, b - a + 1);
    if (item.empty()) throw UsageError(fmt::format("{}: empty item in '{}'; give a comma-separated list", option, text));
    out.push_back(item);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

template <typename T>
void no_duplicates(const std::string& option, const std::vector<T>& values, const std::vector<std::string>& shown) {
  for (size_t i = 0; i < values.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (values[i] == values[j]) throw UsageError(fmt::format("{}: {} is listed twice", option, shown[i]));
}

struct Point {
  std::string id;
  Fraction width;
  int64_t batch;
  std::string precision;
  bool recompute;
  std::string file;  // relative to the output folder
  std::string status = "pending";  // pending, running, done, failed, interrupted
  bool reused = false;
  json error = nullptr;
  json summary = nullptr;
};

std::string point_id(const Fraction& w, int64_t batch, const std::string& precision, bool recompute) {
  std::string id = fmt::format("w{}_b{}_{}", w.str(), batch, precision);
  for (char& c : id)
    if (c == '/') c = '-';
  if (recompute) id.append("_recompute");
  return id;
}

class Sweep {
 public:
  Sweep(const SweepArgs& a, const GlobalOptions& g) : a_(a), global_(g) {}
  int run();

 private:
  void parse();
  void validate();
  void prepare_folder();
  void find_done_points();
  void run_points();
  json index() const;
  void write_index() const;
  std::string path(const std::string& rel) const { return (fs::path(a_.out_dir) / rel).string(); }

  const SweepArgs& a_;
  const GlobalOptions& global_;
  ModelConfig model_;
  PointRequest base_;
  BackendChoice choice_;
  std::vector<Fraction> widths_;
  std::vector<int64_t> batches_;
  std::vector<std::string> precisions_;
  std::vector<bool> recompute_;
  std::vector<Point> points_;
};

void Sweep::parse() {
  parse_format(a_.format);
  if (a_.out_dir.empty()) throw UsageError("--out-dir: give the folder for the sweep's files");
  model_ = resolve_model(a_.model);
  const auto widths = split_list("--widths", a_.widths);
  std::vector<std::string> shown;
  for (const auto& w : widths) {
    widths_.push_back(parse_fraction("--widths", w));
    shown.push_back(w);
  }
  std::vector<std::string> ws;
  for (const auto& w : widths_) ws.push_back(w.str());
  no_duplicates("--widths", ws, shown);
  const auto batches = split_list("--batches", a_.batches);
  for (const auto& b : batches) batches_.push_back(parse_count("--batches", b, INT64_C(1) << 20));
  no_duplicates("--batches", batches_, batches);
  for (const auto& r : split_list("--recompute", a_.recompute)) {
    if (r != "off" && r != "on") throw UsageError(fmt::format("--recompute: '{}' is not off or on", r));
    recompute_.push_back(r == "on");
  }
  no_duplicates("--recompute", recompute_, split_list("--recompute", a_.recompute));

  base_.model = model_;
  base_.include_head = a_.include_head;
  apply_run_options(a_.run, base_);
  base_.command_line = global_.command_line;

  choice_ = choose_backend(a_.run.backend);
  check_backend_settings(base_, choice_);
  const std::string precisions = a_.precisions.empty() ? (choice_.kind == "cpu" ? "fp32" : "bf16") : a_.precisions;
  const auto ps = split_list("--precisions", precisions);
  for (const auto& p : ps) precisions_.push_back(std::string(to_string(parse_precision(p))));
  no_duplicates("--precisions", precisions_, ps);

  // Precision, then recompute, then batch, then width: each configuration's widths in a row.
  for (const auto& p : precisions_)
    for (bool rc : recompute_)
      for (int64_t b : batches_)
        for (const auto& w : widths_) {
          Point pt{point_id(w, b, p, rc), w, b, p, rc, ""};
          pt.file = fmt::format("points/{}.json", pt.id);
          points_.push_back(pt);
        }
}

// Every point checked before any runs; all problems in one line.
void Sweep::validate() {
  std::map<std::string, std::string> backend_error;
  std::map<std::string, double> available;
  CudaOptions cuda;
  cuda.device = static_cast<int>(parse_nonnegative("--gpu", a_.run.gpu, 1024));
  for (const auto& p : precisions_) {
    try {
      available[p] = make_backend(choice_, parse_precision(p), cuda)->available_bytes();
    } catch (const UsageError& e) {
      backend_error[p] = e.what();
    }
  }
  std::vector<std::string> problems;
  for (const auto& pt : points_) {
    std::string why;
    try {
      scale_width(model_, pt.width);
      if (backend_error.count(pt.precision)) {
        why = backend_error.at(pt.precision);
      } else {
        GraphOptions go;
        go.precision = parse_precision(pt.precision);
        go.recompute = pt.recompute;
        go.include_head = a_.include_head;
        go.input_sets = base_.input_sets;
        const Preflight pf = preflight(model_, pt.width, pt.batch, model_.n_ctx, go, available.at(pt.precision));
        if (!pf.fits) why = pf.message;
      }
    } catch (const UsageError& e) {
      why = e.what();
    }
    if (!why.empty()) problems.push_back(fmt::format("{}: {}", pt.id, why));
  }
  if (problems.empty()) return;
  std::string all;
  for (const auto& p : problems) {
    if (!all.empty()) all.append("; ");
    all.append(p);
  }
  throw UsageError(fmt::format("sweep: {} of {} grid points are invalid, nothing was run: {}", problems.size(),
                               points_.size(), all));
}

void Sweep::prepare_folder() {
  std::error_code ec;
  fs::create_directories(fs::path(a_.out_dir) / "points", ec);
  if (ec) throw UsageError(fmt::format("--out-dir: cannot create '{}': {}", path("points"), ec.message()));
  check_writable(path("index.json"));
  check_writable(path("points/probe.json"));
  // Temporary files of a write that was interrupted (write_file_atomic names them FILE.tmp.XXXXXX).
  for (const auto& dir : {fs::path(a_.out_dir), fs::path(a_.out_dir) / "points"}) {
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      const std::string name = e.path().filename().string();
      if (e.is_regular_file() && name.find(".json.tmp.") != std::string::npos) {
        spdlog::info("sweep: removing {} (left by an interrupted write)", e.path().string());
        fs::remove(e.path(), ec);
      }
    }
  }
}

// Points already done: a measure result of this schema, for this model and point.
void Sweep::find_done_points() {
  const json model = model_to_json(model_);
  for (auto& pt : points_) {
    const std::string file = path(pt.file);
    if (!fs::exists(file)) continue;
    json r;
    try {
      r = json::parse(read_file(file));
      check_result(r);
      if (r.at("command") != "measure") throw UsageError("not a measure result");
      point_summary(r);
    } catch (const std::exception& e) {
      spdlog::warn("sweep: {} cannot be reused ({}); running the point again", file, e.what());
      continue;
    }
    const auto& L = r.at("layer");
    const bool same = r.at("model") == model && L.at("width") == pt.width.str() && L.at("batch") == pt.batch &&
                      L.at("precision") == pt.precision && L.at("recompute") == pt.recompute &&
                      L.at("include_head") == a_.include_head;
    if (!same)
      throw UsageError(fmt::format("sweep: {} is a point of another sweep (model {}, layer width {}, batch {}, {}); use "
                                   "another --out-dir or remove the file",
                                   file, r.at("model").at("name").get<std::string>(), L.at("width").get<std::string>(),
                                   L.at("batch").get<int64_t>(), L.at("precision").get<std::string>()));
    pt.status = "done";
    pt.reused = true;
    pt.summary = point_summary(r);
  }
}

json Sweep::index() const {
  json points = json::array();
  int64_t done = 0, failed = 0, pending = 0, reused = 0;
  for (const auto& pt : points_) {
    done += pt.status == "done";
    failed += pt.status == "failed";
    pending += pt.status == "pending" || pt.status == "running" || pt.status == "interrupted";
    reused += pt.reused;
    points.push_back({{"id", pt.id},
                      {"width", pt.width.str()},
                      {"batch", pt.batch},
                      {"precision", pt.precision},
                      {"recompute", pt.recompute},
                      {"include_head", a_.include_head},
                      {"file", pt.file},
                      {"status", pt.status},
                      {"reused", pt.reused},
                      {"error", pt.error},
                      {"summary", pt.summary}});
  }
  json widths = json::array(), recompute = json::array();
  for (const auto& w : widths_) widths.push_back(w.str());
  for (bool r : recompute_) recompute.push_back(r);
  return {{"schema", kSchema},
          {"command", "sweep"},
          {"tool", tool_json()},
          {"command_line", global_.command_line},
          {"sources",
           {{"points.summary.layer_flops", "counted (analytic where the backend cannot count)"},
            {"points.summary.layer_ms", "timed"},
            {"points.summary.flops_per_s", "counted / timed"},
            {"points.summary.training_flops", "counted, scaled to full width"},
            {"points.summary.days_on_cluster", "timed, scaled to full width; perfect scaling"}}},
          {"model", model_to_json(model_)},
          {"grid",
           {{"widths", widths},
            {"batches", batches_},
            {"precisions", precisions_},
            {"recompute", recompute},
            {"include_head", a_.include_head}}},
          {"settings",
           {{"backend", a_.run.backend},
            {"backend_chosen", choice_.kind},
            {"warmup", base_.settings.warmup},
            {"repeats", base_.settings.repeats},
            {"seed", base_.settings.seed},
            {"devices", base_.cluster.gpus},
            {"ceiling", !base_.no_ceiling},
            {"flush_l2", base_.settings.flush_l2},
            {"input_sets", base_.input_sets},
            {"cuda_graph", base_.settings.cuda_graph},
            {"gemm_candidates", base_.settings.gemm_candidates}}},
          {"counts", {{"points", points_.size()}, {"done", done}, {"reused", reused}, {"failed", failed}, {"pending", pending}}},
          {"points", points}};
}

void Sweep::write_index() const { write_file_atomic(path("index.json"), index().dump(2) + "\n"); }

void Sweep::run_points() {
  const size_t n = points_.size();
  for (size_t i = 0; i < n; ++i) {
    Point& pt = points_[i];
    if (pt.status == "done") {
      spdlog::info("sweep: point {}/{} {}: already done ({}), skipped", i + 1, n, pt.id, pt.file);
      continue;
    }
    spdlog::info("sweep: point {}/{} {}: running", i + 1, n, pt.id);
    pt.status = "running";
    write_index();
    PointRequest r = base_;
    r.width = pt.width;
    r.batch = pt.batch;
    r.precision = pt.precision;
    r.recompute = pt.recompute;
    const auto start = std::chrono::steady_clock::now();
    try {
      const json result = run_point(r);
      write_file_atomic(path(pt.file), result.dump(2) + "\n");
      pt.summary = point_summary(result);
      pt.status = "done";
      spdlog::info("sweep: point {}/{} {}: done in {:.1f} s, {:.4g} GFLOP/s ({}/timed), training run {:.3g} days on {:.0f} "
                   "devices",
                   i + 1, n, pt.id, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
                   pt.summary.at("flops_per_s").get<double>() / 1e9, pt.summary.at("flops_source").get<std::string>(),
                   pt.summary.at("days_on_cluster").get<double>(), pt.summary.at("cluster_devices").get<double>());
    } catch (const Interrupted& e) {
      // Ctrl-C or SIGTERM (a batch job's time limit): the point left no file and runs again
      // on a re-run; the sweep stops here.
      pt.status = "interrupted";
      pt.error = e.what();
      write_index();
      spdlog::warn("sweep: stopped at point {}/{} {}; the points done are kept: run the same command again to go on",
                   i + 1, n, pt.id);
      throw;
    } catch (const std::exception& e) {
      pt.status = "failed";
      pt.error = e.what();
      spdlog::error("sweep: point {}/{} {} failed: {}", i + 1, n, pt.id, e.what());
    }
    write_index();
  }
}

int Sweep::run() {
  parse();
  validate();
  if (a_.dry_run) {
    std::string out = fmt::format("flopscope sweep --dry-run: {} points, all valid; nothing run, nothing written\n",
                                  points_.size());
    for (const auto& pt : points_) {
      const ModelConfig layer = scale_width(model_, pt.width);
      out.append(fmt::format("  {:<36} width {:<6} d_model {:<6} batch {:<4} {:<5} recompute {}  -> {}\n", pt.id,
                             pt.width.str(), layer.d_model, pt.batch, pt.precision, pt.recompute ? "on" : "off",
                             path(pt.file)));
    }
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fflush(stdout);
    return 0;
  }
  prepare_folder();
  find_done_points();
  spdlog::info("sweep: {} points on backend {} ({}) into {}", points_.size(), choice_.kind, choice_.reason, a_.out_dir);
  write_index();
  run_points();
  const json idx = index();
  const std::string text = render(idx, parse_format(a_.format));
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
  const int64_t failed = idx.at("counts").at("failed").get<int64_t>();
  if (failed > 0)
    throw Error(fmt::format("sweep: {} of {} points failed; see {}", failed, points_.size(), path("index.json")));
  return 0;
}

}  // namespace

Runner add_sweep(CLI::App& app, const GlobalOptions& global) {
  auto a = std::make_shared<SweepArgs>();
  CLI::App* sub = app.add_subcommand(
      "sweep",
      "Run `measure` over a grid of widths, batch sizes, precisions and recompute on/off: one result JSON per point "
      "and an index in --out-dir. Every point is checked before any runs; a re-run skips the points already done.");
  add_model_options(*sub, a->model);
  sub->add_option("--widths", a->widths, "comma-separated width factors, e.g. 1/96,1/48,1/32 (see measure --width)")
      ->type_name("LIST")
      ->required();
  sub->add_option("--batches", a->batches, "comma-separated micro-batch sizes")->type_name("LIST")->capture_default_str();
  sub->add_option("--precisions", a->precisions, "comma-separated data types (default: fp32 on the cpu, bf16 on a GPU)")
      ->type_name("LIST");
  sub->add_option("--recompute", a->recompute, "off, on or off,on: without and with full activation recompute")
      ->type_name("LIST")
      ->capture_default_str();
  sub->add_flag("--include-head", a->include_head, "add the LM head to every point");
  sub->add_option("--out-dir", a->out_dir, "folder for index.json and points/<id>.json (created if missing)")
      ->type_name("DIR")
      ->required();
  add_run_options(*sub, a->run, ", per point");
  sub->add_flag("--dry-run", a->dry_run, "check the grid and list its points; run nothing, write nothing");
  sub->add_option("--format", a->format,
                  "format of the summary on standard output: table, json, csv, markdown or html (the index itself is "
                  "always JSON)")
      ->type_name("FORMAT")
      ->capture_default_str();
  const GlobalOptions* g = &global;
  return [a, g] {
    Sweep s(*a, *g);
    return s.run();
  };
}

}  // namespace flopscope::cli
