// A sweep spread over separate processes (ctest label `cli`), as a Slurm job array runs it:
// `sweep --shard I/N` runs its share of the grid beside the other shards in one --out-dir,
// `sweep --index-only` writes the index from the points present and names the missing ones,
// `sweep --count-points` prints the grid's size; bad shards are one line and exit 2. Also the
// node facts every result records (host: hostname, the SLURM_* variables, the GPU), set here
// in the child's environment, and shown per point in a sweep's index and page.
// The same scripts under a real Slurm: tests/slurm/test-slurm.sh.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <future>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli_util.hpp"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace cli_test;

// The tiny layer every run here uses (GPT-3 175B at n_ctx 64, one or two heads), fast on two cores.
const std::vector<std::string> kTiny = {"--model", "gpt3-175b", "--seq",    "64",           "--repeats",
                                        "1",       "--warmup",  "0",        "--no-ceiling", "--backend",
                                        "cpu"};

std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// 2 widths x 2 batches x recompute off, on: 8 points.
std::vector<std::string> grid(const std::string& out) {
  return with({"sweep", "--widths", "1/96,1/48", "--batches", "1,2", "--recompute", "off,on", "--out-dir", out}, kTiny);
}

json read_json(const std::string& path) { return json::parse(slurp(path)); }

std::set<std::string> files_under(const std::string& dir) {
  std::set<std::string> s;
  if (!fs::exists(dir)) return s;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) s.insert(fs::relative(e.path(), dir).string());
  return s;
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
      return run(with(grid("out"), {"--shard", std::to_string(i) + "/3"}), cwd.path());
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
  const Outcome idx = run(with(grid("out"), {"--index-only"}), cwd.path());
  ASSERT_EQ(idx.rc, 0) << describe(idx);
  EXPECT_TRUE(contains(idx.out, "8 of 8 points done")) << idx.out;
  const json sharded = read_json(cwd / "out/index.json");
  EXPECT_EQ(sharded.at("mode"), "index-only");
  EXPECT_EQ(sharded.at("counts").at("done"), 8);
  EXPECT_EQ(sharded.at("counts").at("missing"), 0);
  EXPECT_EQ(sharded.at("settings").at("backend_chosen"), "cpu");
  const Outcome plain = run(grid("plain"), cwd.path());
  ASSERT_EQ(plain.rc, 0) << describe(plain);
  EXPECT_EQ(deterministic(sharded), deterministic(read_json(cwd / "plain/index.json")));

  // A shard run again skips its points: their files stay as they were.
  const std::string kept = slurp(cwd / "out/points/w1-48_b1_fp32.json");
  const Outcome again = run(with(grid("out"), {"--shard", "2/3"}), cwd.path());
  ASSERT_EQ(again.rc, 0) << describe(again);
  EXPECT_TRUE(running_lines(again.err).empty()) << again.err;
  EXPECT_TRUE(contains(again.err, "w1-48_b1_fp32: already done")) << again.err;
  EXPECT_EQ(slurp(cwd / "out/points/w1-48_b1_fp32.json"), kept);

  // --dry-run with --shard lists the shard's points only.
  const Outcome dry = run(with(grid("elsewhere"), {"--shard", "3/3", "--dry-run"}), cwd.path());
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
      {"shard 0", with(grid("out"), {"--shard", "0/2"}), "--shard 0/2: I counts the shards from 1 to N"},
      {"shard past N", with(grid("out"), {"--shard", "3/2"}), "--shard 3/2"},
      {"no shards", with(grid("out"), {"--shard", "1/0"}), "--shard 1/0: N"},
      {"not I/N", with(grid("out"), {"--shard", "x"}), "'x' is not I/N"},
      {"no N", with(grid("out"), {"--shard", "2/"}), "'2/' is not I/N"},
      {"negative", with(grid("out"), {"--shard", "-1/2"}), "is not I/N"},
      {"a fraction", with(grid("out"), {"--shard", "1.5/2"}), "is not I/N"},
      {"more shards than points", with(grid("out"), {"--shard", "1/9"}), "the grid has 8 points"},
      {"--shard with --index-only", with(grid("out"), {"--shard", "1/2", "--index-only"}), "drop --shard"},
      {"--index-only with --dry-run", with(grid("out"), {"--index-only", "--dry-run"}), "exclude each other"},
      {"--count-points with --shard", with(grid("out"), {"--count-points", "--shard", "1/2"}), "drop --shard"},
      {"--index-only of no folder", with(grid("nothing-here"), {"--index-only"}), "nothing-here"},
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
  ASSERT_EQ(run(with(grid("out"), {"--shard", "1/2"}), cwd.path()).rc, 0);
  std::vector<std::string> slow = with(grid("out"), {"--shard", "2/2"});
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

  const Outcome r = run(with(grid("out"), {"--index-only"}), cwd.path());
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
  const Outcome r2 = run(with(grid("out"), {"--index-only"}), cwd.path());
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
  ASSERT_EQ(run(with(grid("out"), {"--shard", "2/2"}), cwd.path()).rc, 0);
  ASSERT_EQ(run(with(grid("out"), {"--shard", "1/2"}), cwd.path()).rc, 0);
  const Outcome whole = run(with(grid("out"), {"--index-only"}), cwd.path());
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

}  // namespace
