// The binary's sweep, compare, plot and `report --format html` (ctest label `cli`), on the CPU
// backend with a tiny layer (GPT-3 175B at n_ctx 64, one or two heads), and the bad input they
// must turn into exit 2 and one line: another schema version, a truncated or hand-edited
// JSON, an invalid grid point (before anything runs), an output folder that is not writable,
// a bad --shard. A sweep in shards as a job array runs it (--shard, --index-only,
// --count-points), and the node facts (host) every result records.
// Also: docs/cli.md is the --help of every command, verbatim.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli_util.hpp"
#include "xml_util.hpp"

#ifndef FLOPSCOPE_SOURCE_DIR
#error "FLOPSCOPE_SOURCE_DIR (the repository root) is set by tests/CMakeLists.txt"
#endif

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace cli_test;

// The tiny layer every run here uses, fast on two cores.
const std::vector<std::string> kTiny = {"--model", "gpt3-175b", "--seq",    "64",           "--repeats",
                                        "1",       "--warmup",  "0",        "--no-ceiling", "--backend",
                                        "cpu"};

std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::vector<std::string> sweep_args(const std::string& out, const std::string& widths = "1/96,1/48",
                                    const std::string& recompute = "off,on") {
  return with({"sweep", "--widths", widths, "--batches", "1", "--recompute", recompute, "--out-dir", out}, kTiny);
}

json read_json(const std::string& path) { return json::parse(slurp(path)); }

std::set<std::string> files_under(const std::string& dir) {
  std::set<std::string> s;
  if (!fs::exists(dir)) return s;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) s.insert(fs::relative(e.path(), dir).string());
  return s;
}

// A measure result of the tiny layer at `width`, saved to `path`.
void measure_to(const std::string& width, const std::string& path, const std::string& cwd) {
  const Outcome r = run(with({"measure", "--width", width, "--format", "json", "-o", path}, kTiny), cwd);
  ASSERT_EQ(r.rc, 0) << describe(r);
}

// ---- sweep ----------------------------------------------------------------------------------

TEST(CliSweep, ProducesItsFilesAndIndex) {
  TempDir cwd;
  const Outcome r = run(sweep_args("out"), cwd.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  const std::set<std::string> expected = {"index.json", "points/w1-96_b1_fp32.json", "points/w1-48_b1_fp32.json",
                                          "points/w1-96_b1_fp32_recompute.json", "points/w1-48_b1_fp32_recompute.json"};
  EXPECT_EQ(files_under(cwd / "out"), expected) << "missing files, or temporary files left behind";

  const json idx = read_json(cwd / "out/index.json");
  EXPECT_EQ(idx.at("schema"), "flopscope/1");
  EXPECT_EQ(idx.at("command"), "sweep");
  EXPECT_EQ(idx.at("counts").at("points"), 4);
  EXPECT_EQ(idx.at("counts").at("done"), 4);
  EXPECT_EQ(idx.at("counts").at("failed"), 0);
  EXPECT_EQ(idx.at("grid").at("widths"), json({"1/96", "1/48"}));
  EXPECT_EQ(idx.at("model").at("n_ctx"), 64);
  ASSERT_EQ(idx.at("points").size(), 4u);
  for (const json& p : idx.at("points")) {
    const std::string id = p.at("id").get<std::string>();
    SCOPED_TRACE(id);
    EXPECT_EQ(p.at("status"), "done");
    EXPECT_EQ(p.at("reused"), false);
    EXPECT_TRUE(p.at("error").is_null());
    // Each point's file is the measure result of that point.
    const json m = read_json(cwd / ("out/" + p.at("file").get<std::string>()));
    EXPECT_EQ(m.at("schema"), "flopscope/1");
    EXPECT_EQ(m.at("command"), "measure");
    EXPECT_EQ(m.at("layer").at("width"), p.at("width"));
    EXPECT_EQ(m.at("layer").at("recompute"), p.at("recompute"));
    EXPECT_EQ(m.at("layer").at("precision"), "fp32");
    EXPECT_EQ(m.at("layer").at("seq"), 64);
    const json& s = p.at("summary");
    EXPECT_EQ(s.at("d_model"), m.at("layer").at("d_model"));
    EXPECT_EQ(s.at("flops_source"), "counted");
    EXPECT_EQ(s.at("layer_flops"), m.at("totals").at("total").at("counted_flops"));
    EXPECT_GT(s.at("flops_per_s").get<double>(), 0);
    EXPECT_EQ(s.at("training_flops"), m.at("extrapolation").at("training_flops"));
  }
  EXPECT_EQ(idx.at("points").at(1).at("summary").at("d_model"), 256);
  // The summary on stdout, progress on stderr.
  EXPECT_TRUE(contains(r.out, "4 of 4 points done")) << r.out;
  EXPECT_TRUE(contains(r.out, "w1-48_b1_fp32_recompute")) << r.out;
  EXPECT_TRUE(contains(r.err, "sweep: point 4/4 w1-48_b1_fp32_recompute: done")) << r.err;
  // `report` renders the index again, in every format.
  const Outcome again = run({"report", "out/index.json"}, cwd.path());
  ASSERT_EQ(again.rc, 0) << describe(again);
  EXPECT_EQ(again.out, r.out);
  for (const char* format : {"csv", "markdown", "json"}) {
    const Outcome f = run({"report", "out/index.json", "--format", format}, cwd.path());
    EXPECT_EQ(f.rc, 0) << format << describe(f);
  }
}

TEST(CliSweep, ReRunSkipsPointsAlreadyDone) {
  TempDir cwd;
  ASSERT_EQ(run(sweep_args("out", "1/96,1/48", "off"), cwd.path()).rc, 0);
  const std::string kept = slurp(cwd / "out/points/w1-96_b1_fp32.json");
  fs::remove(cwd / "out/points/w1-48_b1_fp32.json");
  // What an interrupted write would have left: a temporary file, removed by the re-run.
  spit(cwd / "out/points/w1-48_b1_fp32.json.tmp.AbC123", "{\"schema\": \"flopscope/1\", \"comm");

  const Outcome r = run(sweep_args("out", "1/96,1/48", "off"), cwd.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  EXPECT_TRUE(contains(r.err, "point 1/2 w1-96_b1_fp32: already done")) << r.err;
  EXPECT_TRUE(contains(r.err, "point 2/2 w1-48_b1_fp32: running")) << r.err;
  EXPECT_EQ(slurp(cwd / "out/points/w1-96_b1_fp32.json"), kept) << "a done point ran again";
  EXPECT_EQ(files_under(cwd / "out"),
            (std::set<std::string>{"index.json", "points/w1-96_b1_fp32.json", "points/w1-48_b1_fp32.json"}));
  const json idx = read_json(cwd / "out/index.json");
  EXPECT_EQ(idx.at("counts").at("done"), 2);
  EXPECT_EQ(idx.at("counts").at("reused"), 1);
  EXPECT_EQ(idx.at("points").at(0).at("reused"), true);
  EXPECT_EQ(idx.at("points").at(1).at("reused"), false);

  // A point file that is not a result of this schema runs again, with a warning.
  spit(cwd / "out/points/w1-96_b1_fp32.json", "{\"schema\": \"flopscope/1\", \"command\": \"meas");
  const Outcome fixed = run(sweep_args("out", "1/96,1/48", "off"), cwd.path());
  ASSERT_EQ(fixed.rc, 0) << describe(fixed);
  EXPECT_TRUE(contains(fixed.err, "cannot be reused")) << fixed.err;
  EXPECT_EQ(read_json(cwd / "out/points/w1-96_b1_fp32.json").at("command"), "measure");

  // A folder holding another sweep's points is refused before anything runs.
  std::vector<std::string> args = sweep_args("out", "1/96", "off");
  args[std::find(args.begin(), args.end(), "--seq") - args.begin() + 1] = "32";
  const Outcome other = run(args, cwd.path());
  EXPECT_EQ(other.rc, 2) << describe(other);
  EXPECT_TRUE(contains(other.err, "another sweep")) << other.err;
}

TEST(CliSweep, InvalidGridIsReportedBeforeAnythingRuns) {
  TempDir cwd;
  const std::vector<BadCase> cases = {
      {"a width that leaves no whole head", sweep_args("out", "1/96,1/7"), "w1-7_b1_fp32"},
      {"the same width twice", sweep_args("out", "1/96,0.5,1/2"), "listed twice"},
      {"a width that is not a fraction", sweep_args("out", "1/96,abc"), "--widths"},
      {"an empty item", sweep_args("out", "1/96,,1/48"), "empty item"},
      {"recompute neither off nor on", sweep_args("out", "1/96", "maybe"), "maybe"},
      {"a precision the cpu does not run", with(sweep_args("out", "1/96"), {"--precisions", "fp32,bf16"}), "w1-96_b1_bf16"},
      {"an unknown precision", with(sweep_args("out", "1/96"), {"--precisions", "fp4"}), "fp4"},
      {"a batch of zero", with(sweep_args("out", "1/96"), {"--batches", "1,0"}), "--batches"},
      {"--cuda-graph on the cpu", with(sweep_args("out", "1/96"), {"--cuda-graph"}), "needs --backend cuda"},
      {"--input-sets 0", with(sweep_args("out", "1/96"), {"--input-sets", "0"}), "--input-sets"},
      {"no widths", {"sweep", "--out-dir", "out"}, "--widths"},
      {"no output folder", {"sweep", "--widths", "1/96"}, "--out-dir"},
      {"an output folder that cannot be created", sweep_args("/proc/flopscope-sweep"), "/proc/flopscope-sweep"},
      {"an output folder that is a file", sweep_args("/dev/null/x"), "/dev/null/x"},
  };
  for (const auto& c : cases) expect_usage_error(c, cwd.path(), cwd.path());
  // Every invalid point is named, in one line.
  const Outcome r = run(sweep_args("out", "1/7,1/96,1/5"), cwd.path());
  EXPECT_TRUE(contains(r.err, "2 of 2 grid points are invalid") || contains(r.err, "4 of 6 grid points are invalid"))
      << r.err;
  EXPECT_TRUE(contains(r.err, "w1-7_b1_fp32") && contains(r.err, "w1-5_b1_fp32")) << r.err;
  EXPECT_FALSE(fs::exists(cwd / "out"));
}

TEST(CliSweep, ReadOnlyOutputFolder) {
  if (::geteuid() == 0) GTEST_SKIP() << "running as root: chmod 555 does not stop root from writing";
  TempDir cwd;
  fs::create_directory(cwd / "ro");
  ASSERT_EQ(::chmod((cwd / "ro").c_str(), 0555), 0);
  expect_usage_error({"read-only output folder", sweep_args(cwd / "ro/sweep"), "ro/sweep"}, cwd.path(), cwd / "ro");
}

TEST(CliSweep, DryRunListsThePointsAndWritesNothing) {
  TempDir cwd;
  const Outcome r = run(with(sweep_args("out"), {"--dry-run"}), cwd.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  EXPECT_TRUE(contains(r.out, "4 points, all valid")) << r.out;
  EXPECT_TRUE(contains(r.out, "w1-48_b1_fp32_recompute")) << r.out;
  EXPECT_TRUE(cwd.names().empty());
}

// ---- a sweep in shards (a Slurm job array), --index-only, --count-points, node facts ---------
// How a job array runs it (scripts/slurm/sweep-array.sbatch; under a real Slurm:
// tests/slurm/test-slurm.sh): shards beside each other in one --out-dir, then the index of the
// points present; the node facts every result records, from the child's environment.

// 2 widths x 2 batches x recompute off, on: 8 points.
std::vector<std::string> shard_grid(const std::string& out) {
  return with({"sweep", "--widths", "1/96,1/48", "--batches", "1,2", "--recompute", "off,on", "--out-dir", out}, kTiny);
}

// How many times each point id appears in `text` as "<id>: running" (the sweep's log line).
std::map<std::string, int> running_lines(const std::string& text) {
  std::map<std::string, int> n;
  size_t at = 0;
  while ((at = text.find(": running", at)) != std::string::npos) {
    const size_t start = text.rfind(' ', at) + 1;
    ++n[text.substr(start, at - start)];
    at += 9;
  }
  return n;
}

// What two runs of one grid must agree on point by point (not times): the points, their
// settings, status and file, and their analytic and counted FLOPs.
json deterministic(const json& index) {
  json out = json::array();
  for (const auto& p : index.at("points")) {
    json q = {{"id", p.at("id")},         {"width", p.at("width")},         {"batch", p.at("batch")},
              {"precision", p.at("precision")}, {"recompute", p.at("recompute")}, {"status", p.at("status")},
              {"file", p.at("file")}};
    if (p.at("summary").is_object())
      for (const char* k : {"d_model", "flops_source", "layer_flops", "layer_model_flops", "training_flops"})
        q[k] = p.at("summary").at(k);
    out.push_back(q);
  }
  return out;
}

const std::vector<std::string> kIds = {"w1-96_b1_fp32",           "w1-48_b1_fp32",          "w1-96_b2_fp32",
                                       "w1-48_b2_fp32",           "w1-96_b1_fp32_recompute", "w1-48_b1_fp32_recompute",
                                       "w1-96_b2_fp32_recompute", "w1-48_b2_fp32_recompute"};

TEST(CliSweepShards, EveryPointRunsExactlyOnceOverShardsRunningAtOnce) {
  TempDir cwd;
  // Three shards of 8 points (3, 3 and 2 points), started together into one folder.
  std::vector<std::future<Outcome>> shards;
  for (int i = 1; i <= 3; ++i)
    shards.push_back(std::async(std::launch::async, [&cwd, i] {
      return run(with(shard_grid("out"), {"--shard", std::to_string(i) + "/3"}), cwd.path());
    }));
  std::map<std::string, int> ran;
  for (int i = 1; i <= 3; ++i) {
    const Outcome r = shards[i - 1].get();
    ASSERT_EQ(r.rc, 0) << "shard " << i << ": " << describe(r);
    const auto mine = running_lines(r.err);
    // Shard i runs the grid's points i, i+3, i+6 (counting from 1, in grid order).
    std::set<std::string> expected;
    for (size_t k = static_cast<size_t>(i - 1); k < kIds.size(); k += 3) expected.insert(kIds[k]);
    std::set<std::string> got;
    for (const auto& [id, n] : mine) {
      got.insert(id);
      ran[id] += n;
    }
    EXPECT_EQ(got, expected) << "shard " << i << "\n" << r.err;
    EXPECT_TRUE(contains(r.err, "sweep shard " + std::to_string(i) + "/3: ")) << r.err;
    // Its own index: only its points, all done.
    const json own = read_json(cwd / ("out/shards/" + std::to_string(i) + "-of-3.json"));
    EXPECT_EQ(own.at("mode"), "shard");
    EXPECT_EQ(own.at("shard").at("index"), i);
    EXPECT_EQ(own.at("shard").at("count"), 3);
    EXPECT_EQ(own.at("counts").at("points"), expected.size());
    EXPECT_EQ(own.at("counts").at("done"), expected.size());
    for (const auto& p : own.at("points")) EXPECT_TRUE(expected.count(p.at("id").get<std::string>())) << p.at("id");
  }
  for (const auto& id : kIds) EXPECT_EQ(ran[id], 1) << id << " ran " << ran[id] << " times over the shards";
  EXPECT_EQ(ran.size(), kIds.size());

  // No shard wrote the index, none left a temporary file; each point file is whole.
  std::set<std::string> expected_files = {"shards/1-of-3.json", "shards/2-of-3.json", "shards/3-of-3.json"};
  for (const auto& id : kIds) expected_files.insert("points/" + id + ".json");
  EXPECT_EQ(files_under(cwd / "out"), expected_files);
  for (const auto& id : kIds) EXPECT_EQ(read_json(cwd / ("out/points/" + id + ".json")).at("command"), "measure");

  // The index of the shards' points equals the plain sweep's, point for point.
  const Outcome idx = run(with(shard_grid("out"), {"--index-only"}), cwd.path());
  ASSERT_EQ(idx.rc, 0) << describe(idx);
  EXPECT_TRUE(contains(idx.out, "8 of 8 points done")) << idx.out;
  const json sharded = read_json(cwd / "out/index.json");
  EXPECT_EQ(sharded.at("mode"), "index-only");
  EXPECT_EQ(sharded.at("counts").at("done"), 8);
  EXPECT_EQ(sharded.at("counts").at("missing"), 0);
  EXPECT_EQ(sharded.at("settings").at("backend_chosen"), "cpu");
  const Outcome plain = run(shard_grid("plain"), cwd.path());
  ASSERT_EQ(plain.rc, 0) << describe(plain);
  EXPECT_EQ(deterministic(sharded), deterministic(read_json(cwd / "plain/index.json")));

  // A shard run again skips its points: their files stay as they were.
  const std::string kept = slurp(cwd / "out/points/w1-48_b1_fp32.json");
  const Outcome again = run(with(shard_grid("out"), {"--shard", "2/3"}), cwd.path());
  ASSERT_EQ(again.rc, 0) << describe(again);
  EXPECT_TRUE(running_lines(again.err).empty()) << again.err;
  EXPECT_TRUE(contains(again.err, "w1-48_b1_fp32: already done")) << again.err;
  EXPECT_EQ(slurp(cwd / "out/points/w1-48_b1_fp32.json"), kept);

  // --dry-run with --shard lists the shard's points only.
  const Outcome dry = run(with(shard_grid("elsewhere"), {"--shard", "3/3", "--dry-run"}), cwd.path());
  ASSERT_EQ(dry.rc, 0) << describe(dry);
  EXPECT_TRUE(contains(dry.out, "8 points, all valid; shard 3/3 runs 2 of them")) << dry.out;
  EXPECT_TRUE(contains(dry.out, "w1-96_b2_fp32 ") && contains(dry.out, "w1-48_b1_fp32_recompute ")) << dry.out;
  EXPECT_FALSE(contains(dry.out, "w1-96_b1_fp32 ")) << dry.out;
  EXPECT_EQ(count_lines(dry.out), 3u) << dry.out;
  EXPECT_FALSE(fs::exists(cwd / "elsewhere"));
}

TEST(CliSweepShards, BadShardsAndModesAreOneLineAndExitTwo) {
  TempDir cwd;
  const std::vector<BadCase> cases = {
      {"shard 0", with(shard_grid("out"), {"--shard", "0/2"}), "--shard 0/2: I counts the shards from 1 to N"},
      {"shard past N", with(shard_grid("out"), {"--shard", "3/2"}), "--shard 3/2"},
      {"no shards", with(shard_grid("out"), {"--shard", "1/0"}), "--shard 1/0: N"},
      {"not I/N", with(shard_grid("out"), {"--shard", "x"}), "'x' is not I/N"},
      {"no N", with(shard_grid("out"), {"--shard", "2/"}), "'2/' is not I/N"},
      {"negative", with(shard_grid("out"), {"--shard", "-1/2"}), "is not I/N"},
      {"a fraction", with(shard_grid("out"), {"--shard", "1.5/2"}), "is not I/N"},
      {"more shards than points", with(shard_grid("out"), {"--shard", "1/9"}), "the grid has 8 points"},
      {"--shard with --index-only", with(shard_grid("out"), {"--shard", "1/2", "--index-only"}), "drop --shard"},
      {"--index-only with --dry-run", with(shard_grid("out"), {"--index-only", "--dry-run"}), "exclude each other"},
      {"--count-points with --shard", with(shard_grid("out"), {"--count-points", "--shard", "1/2"}), "drop --shard"},
      {"--index-only of no folder", with(shard_grid("nothing-here"), {"--index-only"}), "nothing-here"},
      {"--index-only of an invalid grid",
       with({"sweep", "--widths", "1/96,1/7", "--out-dir", ".", "--index-only"}, kTiny), "w1-7_b1_fp32"},
      {"--count-points of a bad grid", {"sweep", "--widths", "1/96,1/96", "--count-points"}, "listed twice"},
  };
  for (const auto& c : cases) expect_usage_error(c, cwd.path(), cwd.path());
}

TEST(CliSweepShards, CountPointsNeedsNoFolderAndNoDevice) {
  TempDir cwd;
  const Outcome r = run({"sweep", "--widths", "1/96,1/48", "--batches", "1,2", "--recompute", "off,on", "--count-points"},
                        cwd.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  EXPECT_EQ(r.out, "8\n");
  // A GPU grid counted on a machine without one (a login node): nothing is probed.
  const Outcome gpu = run({"sweep", "--widths", "1/8,1/4,1/2,1", "--precisions", "bf16,fp8", "--recompute", "off,on",
                           "--backend", "cuda", "--count-points"},
                          cwd.path());
  ASSERT_EQ(gpu.rc, 0) << describe(gpu);
  EXPECT_EQ(gpu.out, "16\n");
  EXPECT_TRUE(cwd.names().empty());
}

TEST(CliSweepShards, IndexOnlyNamesTheMissingPointsAndWhy) {
  TempDir cwd;
  // Shard 1 of 2 runs (points 1, 3, 5, 7); shard 2 is stopped by SIGTERM in its first point,
  // as at a batch job's time limit (many repeats, so the signal lands while it runs).
  ASSERT_EQ(run(with(shard_grid("out"), {"--shard", "1/2"}), cwd.path()).rc, 0);
  std::vector<std::string> slow = with(shard_grid("out"), {"--shard", "2/2"});
  slow[std::find(slow.begin(), slow.end(), "--repeats") - slow.begin() + 1] = "1000000";
  RunOptions term;
  term.signal = SIGTERM;
  term.signal_after_ms = 1500;
  const Outcome stopped = run(slow, cwd.path(), term);
  EXPECT_EQ(stopped.rc, 128 + SIGTERM) << describe(stopped);
  EXPECT_FALSE(fs::exists(cwd / "out/points/w1-48_b1_fp32.json")) << "the interrupted point left a file";
  for (const auto& f : files_under(cwd / "out")) EXPECT_FALSE(contains(f, ".tmp.")) << f;
  // One more point's file is there but is not a result; a file of another grid sits beside.
  spit(cwd / "out/points/w1-96_b2_fp32_recompute.json", "{\"schema\": \"flopscope/1\", \"comm");
  fs::copy_file(cwd / "out/points/w1-96_b1_fp32.json", cwd / "out/points/w1-24_b1_fp32.json");

  const Outcome r = run(with(shard_grid("out"), {"--index-only"}), cwd.path());
  EXPECT_EQ(r.rc, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "sweep --index-only: 5 of 8 points have no result: ")) << r.err;
  EXPECT_TRUE(contains(r.err, "w1-48_b1_fp32 (interrupted)")) << r.err;
  EXPECT_TRUE(contains(r.err, "w1-48_b2_fp32 (missing)")) << r.err;
  EXPECT_TRUE(contains(r.err, "points/w1-24_b1_fp32.json is no point of this grid")) << r.err;
  EXPECT_TRUE(contains(r.out, "3 of 8 points done")) << r.out;
  EXPECT_TRUE(contains(r.out, "1 pending, 4 missing (no result)")) << r.out;

  const json idx = read_json(cwd / "out/index.json");
  std::map<std::string, json> by_id;
  for (const auto& p : idx.at("points")) by_id[p.at("id").get<std::string>()] = p;
  ASSERT_EQ(by_id.size(), 8u);
  EXPECT_EQ(by_id["w1-96_b1_fp32"].at("status"), "done");
  EXPECT_EQ(by_id["w1-96_b1_fp32"].at("reused"), false);
  EXPECT_EQ(by_id["w1-48_b1_fp32"].at("status"), "interrupted");
  EXPECT_TRUE(contains(by_id["w1-48_b1_fp32"].at("error").get<std::string>(), "terminated (SIGTERM)"));
  EXPECT_TRUE(contains(by_id["w1-48_b1_fp32"].at("error").get<std::string>(), "shards/2-of-2.json"));
  EXPECT_EQ(by_id["w1-48_b2_fp32"].at("status"), "missing");
  EXPECT_TRUE(contains(by_id["w1-48_b2_fp32"].at("error").get<std::string>(), "stopped before it got to this point"));
  EXPECT_EQ(by_id["w1-96_b2_fp32_recompute"].at("status"), "missing");
  EXPECT_TRUE(contains(by_id["w1-96_b2_fp32_recompute"].at("error").get<std::string>(), "is not a measure result"));
  EXPECT_EQ(idx.at("counts").at("done"), 3);
  EXPECT_EQ(idx.at("counts").at("missing"), 4);
  EXPECT_EQ(idx.at("counts").at("pending"), 1);  // the interrupted point

  // A point no shard's index names (its task never started) and one a shard was running when
  // it was killed without a word (SIGKILL past a time limit's grace).
  fs::remove(cwd / "out/shards/2-of-2.json");
  json one = read_json(cwd / "out/shards/1-of-2.json");
  for (auto& p : one.at("points"))
    if (p.at("id") == "w1-96_b2_fp32") p["status"] = "running";
  fs::remove(cwd / "out/points/w1-96_b2_fp32.json");
  spit(cwd / "out/shards/1-of-2.json", one.dump());
  const Outcome r2 = run(with(shard_grid("out"), {"--index-only"}), cwd.path());
  EXPECT_EQ(r2.rc, 1) << describe(r2);
  const json idx2 = read_json(cwd / "out/index.json");
  for (const auto& p : idx2.at("points")) {
    if (p.at("id") == "w1-48_b1_fp32") {
      EXPECT_TRUE(contains(p.at("error").get<std::string>(), "no shard's index names it")) << p;
    }
    if (p.at("id") == "w1-96_b2_fp32") {
      EXPECT_TRUE(contains(p.at("error").get<std::string>(), "was running it and then stopped")) << p;
    }
  }
  // The page names them too.
  const Outcome page = run({"report", "out/index.json", "--format", "html"}, cwd.path());
  ASSERT_EQ(page.rc, 0) << describe(page);
  EXPECT_TRUE(contains(page.out, "w1-48_b1_fp32 missing: no point file")) << page.out.substr(0, 400);
  EXPECT_TRUE(contains(page.out, "2 of 8 points done")) << page.out.substr(0, 400);
  EXPECT_TRUE(contains(page.out, "6 missing (no result)")) << page.out.substr(0, 400);

  // The shard run again (the same command) finishes the grid; the index is then whole.
  fs::remove(cwd / "out/points/w1-96_b2_fp32_recompute.json");
  fs::remove(cwd / "out/points/w1-24_b1_fp32.json");
  ASSERT_EQ(run(with(shard_grid("out"), {"--shard", "2/2"}), cwd.path()).rc, 0);
  ASSERT_EQ(run(with(shard_grid("out"), {"--shard", "1/2"}), cwd.path()).rc, 0);
  const Outcome whole = run(with(shard_grid("out"), {"--index-only"}), cwd.path());
  EXPECT_EQ(whole.rc, 0) << describe(whole);
  EXPECT_EQ(read_json(cwd / "out/index.json").at("counts").at("done"), 8);
}

TEST(CliSweepShards, ResultsRecordTheNodeTheSlurmJobAndTheGpu) {
  TempDir cwd;
  RunOptions slurm;
  slurm.env = {{"SLURM_JOB_ID", "4243"},         {"SLURM_ARRAY_JOB_ID", "4240"}, {"SLURM_ARRAY_TASK_ID", "3"},
               {"SLURMD_NODENAME", "gpu-node-17"}, {"SLURM_JOB_NAME", "flopscope-sweep-array"},
               {"SLURM_JOB_PARTITION", "h200"},   {"SLURM_CLUSTER_NAME", "big"},  {"SLURM_JOB_GPUS", "5"},
               {"CUDA_VISIBLE_DEVICES", "5"}};
  const Outcome m = run(with({"measure", "--width", "1/96", "--format", "json", "-o", "m.json"}, kTiny), cwd.path(), slurm);
  ASSERT_EQ(m.rc, 0) << describe(m);
  const json r = read_json(cwd / "m.json");
  const json& h = r.at("host");
  char name[256] = {0};
  ASSERT_EQ(::gethostname(name, sizeof name - 1), 0);
  EXPECT_EQ(h.at("hostname"), std::string(name));
  EXPECT_EQ(h.at("slurm"), json({{"job_id", "4243"},
                                 {"array_job_id", "4240"},
                                 {"array_task_id", "3"},
                                 {"job_name", "flopscope-sweep-array"},
                                 {"node", "gpu-node-17"},
                                 {"partition", "h200"},
                                 {"cluster", "big"},
                                 {"job_gpus", "5"}}));
  EXPECT_TRUE(h.at("gpu").is_null()) << "the cpu backend ran: no GPU";
  EXPECT_EQ(h.at("gpu_note"), "none: the cpu backend");
  EXPECT_TRUE(r.at("sources").contains("host"));

  // Outside Slurm (the variables empty): no job; the facts change nothing in what is counted.
  RunOptions none;
  none.env = {{"SLURM_JOB_ID", ""}, {"SLURM_ARRAY_JOB_ID", ""}, {"SLURM_ARRAY_TASK_ID", ""}, {"SLURMD_NODENAME", ""}};
  const Outcome plain = run(with({"measure", "--width", "1/96", "--format", "json", "-o", "p.json"}, kTiny), cwd.path(), none);
  ASSERT_EQ(plain.rc, 0) << describe(plain);
  const json p = read_json(cwd / "p.json");
  EXPECT_TRUE(p.at("host").at("slurm").is_null()) << p.at("host");
  EXPECT_EQ(p.at("totals").at("total").at("counted_flops"), r.at("totals").at("total").at("counted_flops"));

  // A sweep's index and page show per point the node, GPU and array task ("4240_3").
  const Outcome s = run(with({"sweep", "--widths", "1/96", "--out-dir", "sw"}, kTiny), cwd.path(), slurm);
  ASSERT_EQ(s.rc, 0) << describe(s);
  const json idx = read_json(cwd / "sw/index.json");
  EXPECT_EQ(idx.at("points").at(0).at("summary").at("host"),
            json({{"node", "gpu-node-17"}, {"slurm_job", "4240_3"}, {"gpu_index", nullptr}, {"gpu_uuid", nullptr}}));
  EXPECT_TRUE(contains(s.out, "node, GPU") && contains(s.out, "Slurm job")) << s.out;
  EXPECT_TRUE(contains(s.out, "gpu-node-17, no GPU") && contains(s.out, "4240_3")) << s.out;
  const Outcome csv = run({"report", "sw/index.json", "--format", "csv"}, cwd.path());
  EXPECT_TRUE(contains(csv.out, "point,w1-96_b1_fp32,,slurm_job,4240_3,,recorded")) << csv.out;
  // Without Slurm the page has no job column.
  const Outcome s2 = run(with({"sweep", "--widths", "1/96", "--out-dir", "sw2"}, kTiny), cwd.path(), none);
  ASSERT_EQ(s2.rc, 0) << describe(s2);
  EXPECT_FALSE(contains(s2.out, "Slurm job")) << s2.out;
  EXPECT_TRUE(contains(s2.out, std::string(name) + ", no GPU")) << s2.out;
}

// ---- compare --------------------------------------------------------------------------------

TEST(CliCompare, TwoResultsSideBySideWithRatios) {
  TempDir cwd;
  measure_to("1/96", "narrow.json", cwd.path());
  measure_to("1/48", "wide.json", cwd.path());
  const Outcome t = run({"compare", "narrow.json", "wide.json"}, cwd.path());
  ASSERT_EQ(t.rc, 0) << describe(t);
  EXPECT_TRUE(contains(t.out, "A = narrow, the baseline")) << t.out;
  EXPECT_TRUE(contains(t.out, "B = wide")) << t.out;
  EXPECT_TRUE(contains(t.out, "B/A")) << t.out;
  EXPECT_TRUE(contains(t.out, "4.000x")) << "twice the width is four times a GEMM's FLOPs\n" << t.out;

  const Outcome j = run({"compare", "narrow.json", "wide.json", "--labels", "w96,w48", "--format", "json"}, cwd.path());
  ASSERT_EQ(j.rc, 0) << describe(j);
  const json c = json::parse(j.out);
  EXPECT_EQ(c.at("schema"), "flopscope/1");
  EXPECT_EQ(c.at("command"), "compare");
  EXPECT_EQ(c.at("baseline"), "w96");
  bool qkv = false;
  for (const json& o : c.at("ops")) {
    if (o.at("name") != "fwd.qkv") continue;
    qkv = true;
    EXPECT_DOUBLE_EQ(o.at("ratios").at(0).at("flops").get<double>(), 1.0);
    EXPECT_DOUBLE_EQ(o.at("ratios").at(1).at("flops").get<double>(), 4.0);  // 6 T d^2, d doubled
    const double a = o.at("values").at(0).at("median_ms").get<double>(), b = o.at("values").at(1).at("median_ms").get<double>();
    EXPECT_DOUBLE_EQ(o.at("ratios").at(1).at("median_ms").get<double>(), b / a);
  }
  EXPECT_TRUE(qkv);
  EXPECT_EQ(c.at("totals").size(), 3u);
  // compare's output renders again like any result; CSV is tidy with an input column.
  spit(cwd / "cmp.json", j.out);
  const Outcome again = run({"report", "cmp.json"}, cwd.path());
  ASSERT_EQ(again.rc, 0) << describe(again);
  const Outcome csv = run({"compare", "narrow.json", "wide.json", "--format", "csv"}, cwd.path());
  ASSERT_EQ(csv.rc, 0) << describe(csv);
  EXPECT_EQ(csv.out.substr(0, csv.out.find('\n')), "section,name,phase,input,metric,value,unit,source");
  std::istringstream in(csv.out);
  std::string line;
  std::getline(in, line);
  while (std::getline(in, line)) EXPECT_EQ(csv_fields(line).size(), 8u) << line;

  TempDir empty;
  expect_usage_error({"one file", {"compare", cwd / "narrow.json"}, "two result files"}, empty.path(), empty.path());
}

// ---- report --format html and plot ----------------------------------------------------------

void expect_self_contained_page(const std::string& html, size_t figures) {
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_TRUE(contains(html, "</html>"));
  EXPECT_EQ(html.find("http://"), std::string::npos) << "a network reference";
  EXPECT_EQ(html.find("https://"), std::string::npos) << "a network reference";
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("<link"), std::string::npos);
  EXPECT_EQ(html.find(" src="), std::string::npos);
  EXPECT_TRUE(contains(html, "<style>"));
  EXPECT_TRUE(contains(html, "<table>"));
  const auto svgs = xml_test::inline_svgs(html);
  EXPECT_EQ(svgs.size(), figures);
  for (const auto& s : svgs) EXPECT_NO_THROW(xml_test::parse(s)) << s.substr(0, 300);
}

TEST(CliReport, HtmlIsOneSelfContainedFile) {
  TempDir cwd;
  measure_to("1/96", "m.json", cwd.path());
  const Outcome r = run({"report", "m.json", "--format", "html", "-o", "m.html"}, cwd.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(cwd.names(), (std::set<std::string>{"m.json", "m.html"}));
  const std::string html = slurp(cwd / "m.html");
  expect_self_contained_page(html, 3);
  for (const char* id : {"fig-ops", "fig-roofline", "fig-seed-waterfall"}) EXPECT_TRUE(contains(html, id)) << id;
  // The tables are the text report's.
  EXPECT_TRUE(contains(html, "Layer totals"));
  EXPECT_TRUE(contains(html, "<td class=\"txt\">bwd.ffn.up.wgrad</td>"));

  // A sweep's index, a comparison and an estimate each make a page.
  ASSERT_EQ(run(sweep_args("sw", "1/96,1/48", "off"), cwd.path()).rc, 0);
  const Outcome s = run({"report", "sw/index.json", "--format", "html"}, cwd.path());
  ASSERT_EQ(s.rc, 0) << describe(s);
  expect_self_contained_page(s.out, 2);
  EXPECT_TRUE(contains(s.out, "fig-sweep-throughput"));
  const Outcome c = run({"compare", "sw/points/w1-96_b1_fp32.json", "sw/points/w1-48_b1_fp32.json", "--format", "html"},
                        cwd.path());
  ASSERT_EQ(c.rc, 0) << describe(c);
  expect_self_contained_page(c.out, 1);
  const Outcome e = run({"estimate", "--format", "html"}, cwd.path());
  ASSERT_EQ(e.rc, 0) << describe(e);
  expect_self_contained_page(e.out, 2);
}

TEST(CliPlot, WritesEveryFigureAsAnSvgFile) {
  TempDir cwd;
  measure_to("1/96", "m.json", cwd.path());
  const Outcome r = run({"plot", "m.json", "--out-dir", "figs"}, cwd.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  EXPECT_EQ(files_under(cwd / "figs"), (std::set<std::string>{"m.ops.svg", "m.roofline.svg", "m.seed-waterfall.svg"}));
  EXPECT_EQ(count_lines(r.out), 3u);
  for (const auto& f : files_under(cwd / "figs")) {
    const std::string text = slurp(cwd / ("figs/" + f));
    const xml_test::Node svg = xml_test::parse(text);
    EXPECT_EQ(svg.attr("xmlns"), "http://www.w3.org/2000/svg") << f;
  }
  // A `peak` result's ceilings go into the roofline.
  const json peak = {{"schema", "flopscope/1"},
                     {"command", "peak"},
                     {"gemm", {{{"dtype", "fp32"}, {"n", 1024}, {"ms", 1.0}, {"flops_per_s", 2e10}}}},
                     {"copy", {{"bytes_per_s", 5e9}}}};
  spit(cwd / "peak.json", peak.dump());
  const Outcome p = run({"plot", "m.json", "--peak", "peak.json", "--out-dir", "figs"}, cwd.path());
  ASSERT_EQ(p.rc, 0) << describe(p);
  EXPECT_TRUE(contains(slurp(cwd / "figs/m.roofline.svg"), "memory roof"));
  TempDir empty;
  expect_usage_error({"--peak not a peak result", {"plot", cwd / "m.json", "--peak", cwd / "m.json", "--out-dir", "x"}, "--peak"},
                     empty.path(), empty.path());
}

// ---- bad result files -----------------------------------------------------------------------

TEST(CliErrors, BadResultFilesAreOneLineAndExitTwo) {
  TempDir cwd, inputs;
  measure_to("1/96", inputs / "good.json", cwd.path());
  const std::string good = slurp(inputs / "good.json");
  json other = json::parse(good);
  other["schema"] = "flopscope/2";
  spit(inputs / "v2.json", other.dump());
  spit(inputs / "truncated.json", good.substr(0, good.size() / 2));
  json edited = json::parse(good);
  edited["ops"][1]["flops"] = "lots";  // a number edited into text
  spit(inputs / "edited.json", edited.dump());
  json no_ops = json::parse(good);
  no_ops.erase("ops");
  spit(inputs / "no-ops.json", no_ops.dump());
  spit(inputs / "index.json", "{\"schema\": \"flopscope/1\", \"command\": \"sweep\"}");
  const std::string g = inputs / "good.json";
  const std::vector<BadCase> cases = {
      {"report: another schema version", {"report", inputs / "v2.json", "-o", "x"}, "'flopscope/2' is not the schema this flopscope reads ('flopscope/1')"},
      {"compare: another schema version", {"compare", g, inputs / "v2.json", "-o", "x"}, "'flopscope/2'"},
      {"plot: another schema version", {"plot", inputs / "v2.json", "--out-dir", "x"}, "('flopscope/1')"},
      {"report html: another schema version", {"report", inputs / "v2.json", "--format", "html", "-o", "x"}, "flopscope/2"},
      {"report: truncated", {"report", inputs / "truncated.json", "--format", "html", "-o", "x"}, "truncated.json: not valid JSON"},
      {"compare: truncated", {"compare", g, inputs / "truncated.json", "-o", "x"}, "truncated.json: not valid JSON"},
      {"plot: truncated", {"plot", inputs / "truncated.json", "--out-dir", "x"}, "truncated.json"},
      {"report: hand-edited", {"report", inputs / "edited.json", "--format", "html", "-o", "x"}, "edited.json"},
      {"compare: hand-edited", {"compare", g, inputs / "edited.json", "-o", "x"}, "edited.json: result is malformed"},
      {"plot: a field removed", {"plot", inputs / "no-ops.json", "--out-dir", "x"}, "no-ops.json"},
      {"compare: a sweep index", {"compare", g, inputs / "index.json", "-o", "x"}, "points/*.json"},
      {"html to a folder that refuses files", {"report", g, "--format", "html", "-o", "/proc/x.html"}, "/proc/x.html"},
  };
  for (const auto& c : cases) expect_usage_error(c, cwd.path(), cwd.path());
}

// ---- docs/cli.md ----------------------------------------------------------------------------

// The fenced block under each "## `flopscope ...`" heading of docs/cli.md.
std::map<std::string, std::string> cli_md_blocks(const std::string& md) {
  std::map<std::string, std::string> out;
  std::istringstream in(md);
  std::string line, heading, block;
  bool inside = false;
  while (std::getline(in, line)) {
    if (!inside && line.rfind("## `", 0) == 0) {
      heading = line.substr(4, line.rfind('`') - 4);
    } else if (!inside && line == "```text" && !heading.empty()) {
      inside = true;
      block.clear();
    } else if (inside && line == "```") {
      inside = false;
      out[heading] = block;
      heading.clear();
    } else if (inside) {
      block += line + "\n";
    }
  }
  return out;
}

// The subcommands `flopscope --help` lists.
std::vector<std::string> subcommands(const std::string& help) {
  std::vector<std::string> out;
  std::istringstream in(help);
  std::string line;
  bool listing = false;
  while (std::getline(in, line)) {
    if (line == "Subcommands:" || line == "SUBCOMMANDS:") {
      listing = true;
      continue;
    }
    if (listing && line.rfind("  ", 0) == 0 && line.size() > 2 && line[2] != ' ') {
      out.push_back(line.substr(2, line.find(' ', 2) - 2));
    } else if (listing && !line.empty() && line[0] != ' ') {
      listing = false;
    }
  }
  return out;
}

TEST(CliDocs, CliMdIsTheHelpOfEveryCommand) {
  TempDir cwd;
  const std::string path = std::string(FLOPSCOPE_SOURCE_DIR) + "/docs/cli.md";
  ASSERT_TRUE(fs::exists(path)) << path << " is missing: run scripts/update-cli-docs.sh";
  const std::string md = slurp(path);
  EXPECT_TRUE(contains(md.substr(0, md.find('\n', md.find('\n') + 1)), "scripts/update-cli-docs.sh"))
      << "docs/cli.md must say at the top that it is generated, and how";
  const auto blocks = cli_md_blocks(md);
  const Outcome top = run({"--help"}, cwd.path());
  ASSERT_EQ(top.rc, 0) << describe(top);
  std::vector<std::string> commands = {"flopscope"};
  const auto subs = subcommands(top.out);
  ASSERT_GE(subs.size(), 8u) << top.out;
  for (const auto& s : subs) commands.push_back("flopscope " + s);
  std::set<std::string> seen;
  for (const auto& cmd : commands) {
    SCOPED_TRACE(cmd);
    seen.insert(cmd);
    std::vector<std::string> args;
    if (cmd != "flopscope") args.push_back(cmd.substr(10));
    args.push_back("--help");
    const Outcome h = run(args, cwd.path());
    ASSERT_EQ(h.rc, 0) << describe(h);
    ASSERT_TRUE(blocks.count(cmd)) << "docs/cli.md has no section for `" << cmd << "`: run scripts/update-cli-docs.sh";
    EXPECT_EQ(blocks.at(cmd), h.out) << "docs/cli.md differs from `" << cmd << " --help`: run scripts/update-cli-docs.sh";
  }
  for (const auto& [heading, block] : blocks)
    EXPECT_TRUE(seen.count(heading)) << "docs/cli.md documents `" << heading
                                     << "`, which --help does not list: run scripts/update-cli-docs.sh";
}

}  // namespace
