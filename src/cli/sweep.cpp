// `flopscope sweep`: `measure` over a grid of widths, batch sizes, precisions and recompute
// on/off, in-process through the same code path (measure/run_point.hpp).
//
//   OUT/points/<id>.json     one measure result per point, written atomically when it is done
//   OUT/index.json           every point's parameters, file, status and a summary of its result,
//                            rewritten atomically before and after each point
//   OUT/shards/<I>-of-<N>.json   with --shard I/N: that shard's own index (its points only), so
//                            shards running at once beside each other never write one file
//
// Every point is validated before any runs (a width that leaves no whole head, a precision
// the backend does not run, a layer that does not fit), and the output folder is checked
// writable. A re-run skips points whose file exists and is a measure result of this schema
// for the same model and point; an interrupted point leaves no file and runs again.
//
// Spread over a cluster (scripts/slurm/sweep-array.sbatch): `--shard I/N` runs every N-th
// point of the grid, starting at the I-th; `--index-only` then writes index.json from the point
// files present, naming the points missing (and why, where a shard's index says); and
// `--count-points` prints the grid's size, the N of a one-point-a-task array.
#include <algorithm>
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
  std::string shard;         // "I/N"; "": the whole grid
  bool index_only = false;   // write index.json from the points present; run nothing
  bool count_points = false; // print the grid's size; run nothing
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

// "I/N": shard I (from 1) of N. Point k of the grid (from 0, in grid order) belongs to shard
// k % N + 1: each shard gets every N-th point, so narrow and wide widths (which vary fastest)
// are spread over the shards instead of the widest all landing in the last one.
struct Shard {
  int64_t index = 0;  // 0: no sharding, the whole grid
  int64_t count = 0;
  bool has(size_t k) const { return index == 0 || static_cast<int64_t>(k) % count + 1 == index; }
  std::string name() const { return fmt::format("{}-of-{}", index, count); }
};

Shard parse_shard(const std::string& text, size_t points) {
  Shard sh;
  const size_t slash = text.find('/');
  auto number = [](std::string_view t, int64_t& v) {
    if (t.empty() || t.size() > 9 || t.find_first_not_of("0123456789") != std::string_view::npos) return false;
    v = std::stoll(std::string(t));
    return true;
  };
  if (slash == std::string::npos || !number(std::string_view(text).substr(0, slash), sh.index) ||
      !number(std::string_view(text).substr(slash + 1), sh.count))
    throw UsageError(fmt::format("--shard: '{}' is not I/N (shard I of N, I from 1 to N, e.g. 2/8)", text));
  if (sh.count < 1) throw UsageError(fmt::format("--shard {}: N, the number of shards, must be at least 1", text));
  if (sh.index < 1 || sh.index > sh.count)
    throw UsageError(fmt::format("--shard {}: I counts the shards from 1 to N ({})", text, sh.count));
  if (sh.count > static_cast<int64_t>(points))
    throw UsageError(fmt::format("--shard {}: the grid has {} points, so at most {} shards (each runs at least one "
                                 "point; `flopscope sweep --count-points` prints the grid's size)",
                                 text, points, points));
  return sh;
}

struct Point {
  std::string id;
  Fraction width;
  int64_t batch;
  std::string precision;
  bool recompute;
  std::string file;  // relative to the output folder
  std::string status = "pending";  // pending, running, done, failed, interrupted; --index-only: missing
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
  void parse_grid();
  int64_t grid_size() const;
  void make_points();
  void validate();
  void prepare_folder();
  void find_done_points(bool reused);
  void run_points();
  int index_only();
  void note_missing_points();
  json index() const;
  void write_index() const;
  std::string index_file() const { return shard_.index > 0 ? fmt::format("shards/{}.json", shard_.name()) : "index.json"; }
  std::string path(const std::string& rel) const { return (fs::path(a_.out_dir) / rel).string(); }
  // The points this run owns: the whole grid, or its shard's.
  std::vector<Point*> mine();
  std::vector<const Point*> mine() const;

  const SweepArgs& a_;
  const GlobalOptions& global_;
  ModelConfig model_;
  PointRequest base_;
  BackendChoice choice_;
  std::string backend_kind_;  // choice_.kind; --index-only: the backend the points name (no probe)
  Shard shard_;
  std::string tag_ = "sweep";  // log prefix: "sweep", "sweep shard 2/8", "sweep --index-only"
  std::vector<Fraction> widths_;
  std::vector<int64_t> batches_;
  std::vector<std::string> precision_items_;  // as given; empty: the backend's default
  std::vector<std::string> precisions_;
  std::vector<bool> recompute_;
  std::vector<Point> points_;
};

std::vector<Point*> Sweep::mine() {
  std::vector<Point*> out;
  for (size_t k = 0; k < points_.size(); ++k)
    if (shard_.has(k)) out.push_back(&points_[k]);
  return out;
}

std::vector<const Point*> Sweep::mine() const {
  std::vector<const Point*> out;
  for (size_t k = 0; k < points_.size(); ++k)
    if (shard_.has(k)) out.push_back(&points_[k]);
  return out;
}

// The grid's lists, checked; no backend is probed (--count-points runs on a login node).
void Sweep::parse_grid() {
  parse_format(a_.format);
  const int modes = a_.index_only + a_.count_points + a_.dry_run;
  if (modes > 1) throw UsageError("sweep: --dry-run, --index-only and --count-points exclude each other; give one");
  if (!a_.shard.empty() && (a_.index_only || a_.count_points))
    throw UsageError(fmt::format("--shard: {} covers the whole grid; drop --shard",
                                 a_.index_only ? "--index-only" : "--count-points"));
  if (a_.out_dir.empty() && !a_.count_points) throw UsageError("--out-dir: give the folder for the sweep's files");
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
  if (!a_.precisions.empty()) {
    const auto ps = split_list("--precisions", a_.precisions);
    for (const auto& p : ps) precision_items_.push_back(std::string(to_string(parse_precision(p))));
    no_duplicates("--precisions", precision_items_, ps);
  }
}

int64_t Sweep::grid_size() const {
  const auto n = [](size_t v) { return static_cast<int64_t>(v); };
  return std::max<int64_t>(1, n(precision_items_.size())) * n(recompute_.size()) * n(batches_.size()) * n(widths_.size());
}

// The run's settings, the backend and the list of points (with the shard's share).
void Sweep::make_points() {
  base_.model = model_;
  base_.include_head = a_.include_head;
  apply_run_options(a_.run, base_);
  base_.command_line = global_.command_line;

  if (a_.index_only) {
    // Nothing runs: the default precision follows the backend named, without probing for a
    // GPU (the job that writes the index may run on a node without one).
    backend_kind_ = a_.run.backend == "cpu" || a_.run.backend == "cuda" ? a_.run.backend : choose_backend(a_.run.backend).kind;
    tag_ = "sweep --index-only";
  } else {
    choice_ = choose_backend(a_.run.backend);
    check_backend_settings(base_, choice_);
    backend_kind_ = choice_.kind;
  }
  precisions_ = precision_items_;
  if (precisions_.empty()) precisions_ = {backend_kind_ == "cpu" ? "fp32" : "bf16"};

  // Precision, then recompute, then batch, then width: each configuration's widths in a row.
  for (const auto& p : precisions_)
    for (bool rc : recompute_)
      for (int64_t b : batches_)
        for (const auto& w : widths_) {
          Point pt{point_id(w, b, p, rc), w, b, p, rc, ""};
          pt.file = fmt::format("points/{}.json", pt.id);
          points_.push_back(pt);
        }
  if (!a_.shard.empty()) {
    shard_ = parse_shard(a_.shard, points_.size());
    tag_ = fmt::format("sweep shard {}/{}", shard_.index, shard_.count);
  }
}

// Every point checked before any runs (all of them, shard or not: every shard of an invalid
// grid fails at once); all problems in one line. --index-only checks only the widths.
void Sweep::validate() {
  std::map<std::string, std::string> backend_error;
  std::map<std::string, double> available;
  if (!a_.index_only) {
    CudaOptions cuda;
    cuda.device = static_cast<int>(parse_nonnegative("--gpu", a_.run.gpu, 1024));
    for (const auto& p : precisions_) {
      try {
        available[p] = make_backend(choice_, parse_precision(p), cuda)->available_bytes();
      } catch (const UsageError& e) {
        backend_error[p] = e.what();
      }
    }
  }
  std::vector<std::string> problems;
  for (const auto& pt : points_) {
    std::string why;
    try {
      scale_width(model_, pt.width);
      if (a_.index_only) {
        // nothing runs: no backend, no memory to check
      } else if (backend_error.count(pt.precision)) {
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
  if (shard_.index > 0) {
    fs::create_directories(fs::path(a_.out_dir) / "shards", ec);
    if (ec) throw UsageError(fmt::format("--out-dir: cannot create '{}': {}", path("shards"), ec.message()));
  }
  check_writable(path(index_file()));
  check_writable(path("points/probe.json"));
  // Temporary files of a write that was interrupted (write_file_atomic names them FILE.tmp.XXXXXX).
  // A shard removes only its own (its points' and its index's): the others' may be in flight.
  std::vector<std::string> own;
  if (shard_.index > 0) {
    for (const Point* pt : mine()) own.push_back(fs::path(pt->file).filename().string() + ".tmp.");
    own.push_back(shard_.name() + ".json.tmp.");
  }
  const auto is_own = [&](const std::string& name) {
    if (shard_.index == 0) return name.find(".json.tmp.") != std::string::npos;
    for (const auto& prefix : own)
      if (name.rfind(prefix, 0) == 0) return true;
    return false;
  };
  for (const auto& dir : {fs::path(a_.out_dir), fs::path(a_.out_dir) / "points", fs::path(a_.out_dir) / "shards"}) {
    if (!fs::is_directory(dir)) continue;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      const std::string name = e.path().filename().string();
      if (e.is_regular_file() && is_own(name)) {
        spdlog::info("{}: removing {} (left by an interrupted write)", tag_, e.path().string());
        fs::remove(e.path(), ec);
      }
    }
  }
}

// Points already done: a measure result of this schema, for this model and point.
// `reused`: a run that skips them reuses them; --index-only only reads them.
void Sweep::find_done_points(bool reused) {
  const json model = model_to_json(model_);
  for (Point* pt : mine()) {
    const std::string file = path(pt->file);
    if (!fs::exists(file)) continue;
    json r;
    try {
      r = json::parse(read_file(file));
      check_result(r);
      if (r.at("command") != "measure") throw UsageError("not a measure result");
      point_summary(r);
    } catch (const std::exception& e) {
      if (a_.index_only) {
        spdlog::warn("{}: {} is not a measure result ({}); the point counts as missing", tag_, file, e.what());
        pt->error = fmt::format("{} is not a measure result: {}", pt->file, e.what());
      } else {
        spdlog::warn("{}: {} cannot be reused ({}); running the point again", tag_, file, e.what());
      }
      continue;
    }
    const auto& L = r.at("layer");
    const bool same = r.at("model") == model && L.at("width") == pt->width.str() && L.at("batch") == pt->batch &&
                      L.at("precision") == pt->precision && L.at("recompute") == pt->recompute &&
                      L.at("include_head") == a_.include_head;
    if (!same)
      throw UsageError(fmt::format("sweep: {} is a point of another sweep (model {}, layer width {}, batch {}, {}); use "
                                   "another --out-dir or remove the file",
                                   file, r.at("model").at("name").get<std::string>(), L.at("width").get<std::string>(),
                                   L.at("batch").get<int64_t>(), L.at("precision").get<std::string>()));
    pt->status = "done";
    pt->reused = reused;
    pt->error = nullptr;
    pt->summary = point_summary(r);
  }
}

json Sweep::index() const {
  json points = json::array();
  int64_t done = 0, failed = 0, pending = 0, reused = 0, missing = 0;
  const auto own = mine();
  for (const Point* pt : own) {
    done += pt->status == "done";
    failed += pt->status == "failed";
    pending += pt->status == "pending" || pt->status == "running" || pt->status == "interrupted";
    missing += pt->status == "missing";
    reused += pt->reused;
    points.push_back({{"id", pt->id},
                      {"width", pt->width.str()},
                      {"batch", pt->batch},
                      {"precision", pt->precision},
                      {"recompute", pt->recompute},
                      {"include_head", a_.include_head},
                      {"file", pt->file},
                      {"status", pt->status},
                      {"reused", pt->reused},
                      {"error", pt->error},
                      {"summary", pt->summary}});
  }
  json widths = json::array(), recompute = json::array();
  for (const auto& w : widths_) widths.push_back(w.str());
  for (bool r : recompute_) recompute.push_back(r);
  // The backend the points ran on: --index-only probes none, so it reads it from them.
  json chosen = a_.index_only ? json(nullptr) : json(choice_.kind);
  for (const Point* pt : own)
    if (a_.index_only && chosen.is_null() && pt->summary.is_object()) chosen = pt->summary.at("backend");
  return {{"schema", kSchema},
          {"command", "sweep"},
          {"tool", tool_json()},
          {"command_line", global_.command_line},
          {"sources",
           {{"points.summary.layer_flops", "counted (analytic where the backend cannot count)"},
            {"points.summary.layer_ms", "timed"},
            {"points.summary.flops_per_s", "counted / timed"},
            {"points.summary.training_flops", "counted, scaled to full width"},
            {"points.summary.days_on_cluster", "timed, scaled to full width; perfect scaling"},
            {"points.summary.host", "recorded: the node, Slurm job and GPU each point ran on"}}},
          {"model", model_to_json(model_)},
          {"grid",
           {{"widths", widths},
            {"batches", batches_},
            {"precisions", precisions_},
            {"recompute", recompute},
            {"include_head", a_.include_head}}},
          {"mode", a_.index_only ? "index-only" : shard_.index > 0 ? "shard" : "run"},
          {"shard", shard_.index > 0 ? json{{"index", shard_.index}, {"count", shard_.count}} : json(nullptr)},
          {"settings",
           {{"backend", a_.run.backend},
            {"backend_chosen", chosen},
            {"warmup", base_.settings.warmup},
            {"repeats", base_.settings.repeats},
            {"seed", base_.settings.seed},
            {"devices", base_.cluster.gpus},
            {"ceiling", !base_.no_ceiling},
            {"flush_l2", base_.settings.flush_l2},
            {"input_sets", base_.input_sets},
            {"cuda_graph", base_.settings.cuda_graph},
            {"gemm_candidates", base_.settings.gemm_candidates}}},
          {"counts",
           {{"points", own.size()},
            {"done", done},
            {"reused", reused},
            {"failed", failed},
            {"pending", pending},
            {"missing", missing}}},
          {"points", points}};
}

void Sweep::write_index() const { write_file_atomic(path(index_file()), index().dump(2) + "\n"); }

void Sweep::run_points() {
  const size_t n = points_.size();
  for (size_t i = 0; i < n; ++i) {
    if (!shard_.has(i)) continue;
    Point& pt = points_[i];
    if (pt.status == "done") {
      spdlog::info("{}: point {}/{} {}: already done ({}), skipped", tag_, i + 1, n, pt.id, pt.file);
      continue;
    }
    spdlog::info("{}: point {}/{} {}: running", tag_, i + 1, n, pt.id);
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
      spdlog::info("{}: point {}/{} {}: done in {:.1f} s, {:.4g} GFLOP/s ({}/timed), training run {:.3g} days on {:.0f} "
                   "devices",
                   tag_, i + 1, n, pt.id, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
                   pt.summary.at("flops_per_s").get<double>() / 1e9, pt.summary.at("flops_source").get<std::string>(),
                   pt.summary.at("days_on_cluster").get<double>(), pt.summary.at("cluster_devices").get<double>());
    } catch (const Interrupted& e) {
      // Ctrl-C or SIGTERM (a batch job's time limit): the point left no file and runs again
      // on a re-run; the sweep stops here.
      pt.status = "interrupted";
      pt.error = e.what();
      write_index();
      spdlog::warn("{}: stopped at point {}/{} {}; the points done are kept: run the same command again to go on", tag_,
                   i + 1, n, pt.id);
      throw;
    } catch (const std::exception& e) {
      pt.status = "failed";
      pt.error = e.what();
      spdlog::error("{}: point {}/{} {} failed: {}", tag_, i + 1, n, pt.id, e.what());
    }
    write_index();
  }
}

// A point with no file: why, where a shard's index says (failed with its error; interrupted;
// running when its shard stopped without a word: killed, or still running; pending: its shard
// stopped before it); else missing.
void Sweep::note_missing_points() {
  struct Record {
    std::string status, error, file;
  };
  std::map<std::string, Record> records;
  std::vector<std::pair<fs::file_time_type, fs::path>> files;
  std::error_code ec;
  if (fs::is_directory(path("shards")))
    for (const auto& e : fs::directory_iterator(path("shards"), ec))
      if (e.is_regular_file() && e.path().extension() == ".json") files.emplace_back(e.last_write_time(ec), e.path());
  std::sort(files.begin(), files.end());  // oldest first: a later shard's word on a point wins
  const json model = model_to_json(model_);
  for (const auto& [when, file] : files) {
    const std::string rel = fs::relative(file, a_.out_dir, ec).string();
    try {
      const json s = json::parse(read_file(file.string()));
      check_result(s);
      if (s.at("command") != "sweep" || s.at("model") != model) throw UsageError("not a shard of this sweep");
      for (const auto& p : s.at("points")) {
        const std::string st = p.at("status").get<std::string>();
        if (st == "done") continue;
        records[p.at("id").get<std::string>()] = {st, p.at("error").is_string() ? p.at("error").get<std::string>() : "", rel};
      }
    } catch (const std::exception& e) {
      spdlog::warn("{}: {} ignored ({})", tag_, file.string(), e.what());
    }
  }
  for (Point& pt : points_) {
    if (pt.status == "done") continue;
    const auto r = records.find(pt.id);
    if (!pt.error.is_null()) {
      pt.status = "missing";  // its file is there but is not a result (find_done_points said why)
    } else if (r == records.end()) {
      pt.status = "missing";
      pt.error = "no point file, and no shard's index names it: not run yet, or its task never started";
    } else if (r->second.status == "running") {
      pt.status = "missing";
      pt.error = fmt::format("{} says its shard was running it and then stopped without a word (killed, e.g. past "
                             "its time limit's grace, or still running)",
                             r->second.file);
    } else if (r->second.status == "pending") {
      pt.status = "missing";
      pt.error = fmt::format("{} says its shard stopped before it got to this point", r->second.file);
    } else {
      pt.status = r->second.status;  // failed or interrupted, with the shard's error
      pt.error = fmt::format("{} ({})", r->second.error, r->second.file);
    }
  }
  // Files in points/ that are no point of this grid: another grid, or another default precision.
  std::set<std::string> ours;
  for (const auto& pt : points_) ours.insert(fs::path(pt.file).filename().string());
  if (fs::is_directory(path("points")))
    for (const auto& e : fs::directory_iterator(path("points"), ec)) {
      const std::string name = e.path().filename().string();
      if (e.is_regular_file() && e.path().extension() == ".json" && !ours.count(name))
        spdlog::warn("{}: points/{} is no point of this grid (another grid, precision or --backend?); left out", tag_,
                     name);
    }
}

int Sweep::index_only() {
  if (!fs::is_directory(a_.out_dir))
    throw UsageError(fmt::format("--out-dir: '{}' is not a folder; --index-only reads the points of a sweep there",
                                 a_.out_dir));
  check_writable(path("index.json"));
  find_done_points(false);
  note_missing_points();
  write_index();
  const json idx = index();
  emit(idx, OutputOptions{a_.format, ""});  // the summary, on stdout
  std::vector<std::string> absent;
  for (const auto& pt : points_)
    if (pt.status != "done") absent.push_back(fmt::format("{} ({})", pt.id, pt.status));
  spdlog::info("{}: {} of {} points present; index written to {}", tag_, points_.size() - absent.size(),
               points_.size(), path("index.json"));
  if (absent.empty()) return 0;
  std::string list;
  for (size_t i = 0; i < absent.size() && i < 8; ++i) list.append(i ? ", " : "").append(absent[i]);
  if (absent.size() > 8) list.append(fmt::format(" and {} more", absent.size() - 8));
  throw Error(fmt::format("sweep --index-only: {} of {} points have no result: {}; {} says why for each",
                          absent.size(), points_.size(), list, path("index.json")));
}

int Sweep::run() {
  parse_grid();
  if (a_.count_points) {
    write_output(fmt::format("{}\n", grid_size()), OutputOptions{});
    return 0;
  }
  make_points();
  validate();
  if (a_.index_only) return index_only();
  if (a_.dry_run) {
    const auto own = mine();
    std::string out = fmt::format("flopscope sweep --dry-run: {} points, all valid", points_.size());
    if (shard_.index > 0) out.append(fmt::format("; shard {}/{} runs {} of them", shard_.index, shard_.count, own.size()));
    out.append("; nothing run, nothing written\n");
    for (const Point* pt : own) {
      const ModelConfig layer = scale_width(model_, pt->width);
      out.append(fmt::format("  {:<36} width {:<6} d_model {:<6} batch {:<4} {:<5} recompute {}  -> {}\n", pt->id,
                             pt->width.str(), layer.d_model, pt->batch, pt->precision, pt->recompute ? "on" : "off",
                             path(pt->file)));
    }
    write_output(out, OutputOptions{});
    return 0;
  }
  prepare_folder();
  find_done_points(true);
  spdlog::info("{}: {} of {} points on backend {} ({}) into {}", tag_, mine().size(), points_.size(), choice_.kind,
               choice_.reason, a_.out_dir);
  write_index();
  run_points();
  const json idx = index();
  emit(idx, OutputOptions{a_.format, ""});  // the summary, on stdout
  const int64_t failed = idx.at("counts").at("failed").get<int64_t>();
  if (failed > 0)
    throw Error(fmt::format("{}: {} of {} points failed; see {}", tag_, failed, mine().size(), path(index_file())));
  return 0;
}

}  // namespace

Runner add_sweep(CLI::App& app, const GlobalOptions& global) {
  auto a = std::make_shared<SweepArgs>();
  CLI::App* sub = app.add_subcommand(
      "sweep",
      "Run `measure` over a grid of widths, batch sizes, precisions and recompute on/off: one result JSON per point "
      "and an index in --out-dir. Every point is checked before any runs; a re-run skips the points already done. "
      "Over a cluster: --shard I/N per job (or array task), then --index-only (scripts/slurm/sweep-array.sbatch).");
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
  sub->add_option("--out-dir", a->out_dir,
                  "folder for index.json and points/<id>.json (created if missing); needed by all but --count-points")
      ->type_name("DIR");
  add_run_options(*sub, a->run, ", per point");
  sub->add_flag("--dry-run", a->dry_run, "check the grid and list its points (a shard's with --shard); run nothing, write nothing");
  sub->add_option("--shard", a->shard,
                  "run only shard I of N: the grid's points I, I+N, I+2N, ... (counting from 1, in --dry-run's order), "
                  "into the same --out-dir as the other shards, each shard writing only its points and "
                  "shards/I-of-N.json (its own index); then --index-only writes index.json. N is at most the grid's "
                  "size (--count-points)")
      ->type_name("I/N");
  sub->add_flag("--index-only", a->index_only,
                "run nothing: write index.json (and the summary) from the point files present in --out-dir, each "
                "missing point named with why where a shard's index says (failed, interrupted, killed); exits 1 when "
                "any is missing");
  sub->add_flag("--count-points", a->count_points,
                "print the number of grid points and exit (the N of --shard I/N, and of a Slurm array with one point "
                "a task, --array=0-(N-1)); probes no device, needs no --out-dir");
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
