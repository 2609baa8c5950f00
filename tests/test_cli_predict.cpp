// `flopscope predict` as a process: its JSON keys, report / compare / plot on a prediction,
// --search, --validate, --from-measure, --nccl-tests, and bad layouts and files (exit 2).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli_util.hpp"

#ifndef FLOPSCOPE_SOURCE_DIR
#error "FLOPSCOPE_SOURCE_DIR (the repository root) is set by tests/CMakeLists.txt"
#endif

namespace {

using nlohmann::json;
using namespace cli_test;

const std::vector<std::string> k175b = {"predict", "--model", "gpt3-175b", "--gpus", "64", "--tp", "8",
                                        "--pp", "8", "--vpp", "3", "--global-batch", "64"};

std::vector<std::string> with(std::vector<std::string> base, const std::vector<std::string>& more) {
  base.insert(base.end(), more.begin(), more.end());
  return base;
}

TEST(CliPredict, JsonHasThePredictionKeys) {
  TempDir d;
  const Outcome r = run(with(k175b, {"--format", "json"}), d.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  const json j = json::parse(r.out);
  EXPECT_EQ(j.at("command"), "predict");
  EXPECT_EQ(j.at("kind"), "prediction");
  const json& p = j.at("prediction");
  for (const char* k : {"step_time_s", "tokens_per_s", "model_tflops_per_gpu", "hardware_tflops_per_gpu", "mfu", "hfu",
                        "training_days", "memory_per_gpu_bytes"}) {
    ASSERT_TRUE(p.contains(k) && p.at(k).is_number()) << k;
    EXPECT_GT(p.at(k).get<double>(), 0) << k;
  }
  EXPECT_TRUE(p.at("fits").is_boolean());
  double parts = 0;
  for (const char* k : {"compute_s", "tp_comm_s", "pp_comm_s", "bubble_s", "dp_comm_s", "optimizer_s"})
    parts += p.at("breakdown").at(k).get<double>();
  EXPECT_NEAR(parts / p.at("step_time_s").get<double>(), 1.0, 1e-9);
  EXPECT_LT(p.at("mfu").get<double>(), p.at("hfu").get<double>() + 1e-12);
  EXPECT_EQ(j.at("layout").at("dp"), 1);
  EXPECT_EQ(j.at("layout").at("cp"), 1);
  EXPECT_EQ(j.at("layout").at("fsdp"), 0);
  // The A100 defaults (unfused attention, no distributed optimizer, no TP comm overlap) are named;
  // the batch was given.
  EXPECT_EQ(j.at("layout").at("defaults").size(), 4u);
  EXPECT_FALSE(j.at("layout").at("tp_comm_overlap").get<bool>());
  for (const auto& o : p.at("ops")) EXPECT_EQ(o.at("source").get<std::string>().rfind("modelled", 0), 0u);
}

TEST(CliPredict, ReportComparePlotOnPredictions) {
  TempDir d;
  ASSERT_EQ(run(with(k175b, {"--format", "json", "-o", "a.json"}), d.path()).rc, 0);
  ASSERT_EQ(run(with(k175b, {"--recompute", "full", "--sequence-parallel", "off", "--format", "json", "-o", "b.json"}),
                d.path()).rc, 0);
  for (const char* f : {"table", "markdown", "csv", "html"}) {
    const Outcome r = run({"report", "a.json", "--format", f}, d.path());
    ASSERT_EQ(r.rc, 0) << f << describe(r);
    EXPECT_TRUE(contains(r.out, "step")) << f;
  }
  EXPECT_TRUE(contains(run({"report", "a.json", "--format", "html"}, d.path()).out, "data-series=\"compute\""));
  const Outcome c = run({"compare", "a.json", "b.json", "--format", "json"}, d.path());
  ASSERT_EQ(c.rc, 0) << describe(c);
  const json cj = json::parse(c.out);
  EXPECT_EQ(cj.at("kind"), "prediction");
  // Full recompute is slower than selective: the ratio of step times is above 1.
  EXPECT_GT(cj.at("rows").at(0).at("ratios").at(1).get<double>(), 1.0);
  ASSERT_EQ(run({"compare", "a.json", "b.json", "-o", "cmp.json", "--format", "json"}, d.path()).rc, 0);
  EXPECT_EQ(run({"report", "cmp.json"}, d.path()).rc, 0);
  const Outcome p = run({"plot", "a.json", "--out-dir", "figs"}, d.path());
  ASSERT_EQ(p.rc, 0) << describe(p);
  EXPECT_TRUE(contains(slurp(d / "figs/a.step-breakdown.svg"), "<svg"));
  // A prediction and an estimate are not compared.
  ASSERT_EQ(run({"estimate", "--format", "json", "-o", "e.json"}, d.path()).rc, 0);
  const Outcome mix = run({"compare", "a.json", "e.json"}, d.path());
  EXPECT_EQ(mix.rc, 2);
  EXPECT_TRUE(contains(mix.err, "mix"));
}

TEST(CliPredict, HopperDefaultsAndTheGlobalBatchRule) {
  TempDir d;
  const Outcome r = run({"predict", "--model", "llama3.1-405b", "--gpu", "h100", "--gpus", "512", "--tp", "8", "--pp", "8",
                         "--format", "json"}, d.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  const json l = json::parse(r.out).at("layout");
  EXPECT_EQ(l.at("attention"), "flash");
  EXPECT_TRUE(l.at("distributed_optimizer").get<bool>());
  EXPECT_EQ(l.at("global_batch"), 1952);  // 16M tokens / 8192, a multiple of dp 8
  bool said = false;
  for (const auto& x : l.at("defaults")) said |= contains(x.get<std::string>(), "published 16M");
  EXPECT_TRUE(said) << l.dump();
}

TEST(CliPredict, GpuListGivesMfuAgainstGpuCount) {
  TempDir d;
  const Outcome r = run({"predict", "--model", "gpt3-175b", "--gpus", "64,128,256", "--tp", "8", "--pp", "8",
                         "--global-batch", "512", "--format", "json", "-o", "s.json"}, d.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  const json j = json::parse(slurp(d / "s.json"));
  ASSERT_EQ(j.at("scaling").size(), 3u);
  EXPECT_EQ(j.at("scaling").at(2).at("dp"), 4);
  ASSERT_EQ(run({"plot", "s.json", "--out-dir", "."}, d.path()).rc, 0);
  EXPECT_TRUE(contains(slurp(d / "s.mfu-scaling.svg"), "data-series=\"mfu\""));
}

TEST(CliPredict, SearchListsValidFittingLayoutsByStepTime) {
  TempDir d;
  const Outcome r = run({"predict", "--model", "gpt3-13b", "--gpus", "16", "--global-batch", "64", "--search", "--top",
                         "8", "--format", "json"}, d.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  const json j = json::parse(r.out);
  const json& best = j.at("search").at("best");
  ASSERT_GE(best.size(), 2u);
  double last = 0;
  for (const auto& b : best) {
    const json& l = b.at("layout");
    EXPECT_TRUE(b.at("fits").get<bool>());
    EXPECT_EQ(40 % l.at("tp").get<int64_t>(), 0);  // gpt3-13b: 40 heads
    EXPECT_LE(l.at("tp").get<int64_t>(), 8);
    EXPECT_EQ(l.at("tp").get<int64_t>() * l.at("pp").get<int64_t>() * l.at("dp").get<int64_t>(), 16);
    EXPECT_EQ(64 % (l.at("micro_batch").get<int64_t>() * l.at("dp").get<int64_t>()), 0);
    EXPECT_GE(b.at("step_time_s").get<double>(), last);
    last = b.at("step_time_s").get<double>();
  }
  EXPECT_DOUBLE_EQ(j.at("prediction").at("step_time_s").get<double>(), best.at(0).at("step_time_s").get<double>());
}

TEST(CliPredict, ValidatePrintsEveryRow) {
  TempDir d;
  const Outcome r = run({"predict", "--validate"}, d.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  for (const char* m : {"22B", "175B", "530B", "1T", "selective + SP", "18.13", "71.49", "mean |error|"})
    EXPECT_TRUE(contains(r.out, m)) << m;
}

TEST(CliPredict, NcclTestsAndFromMeasure) {
  TempDir d;
  const std::string nccl = std::string(FLOPSCOPE_SOURCE_DIR) + "/tests/data/nccl/";
  const Outcome a = run(with(k175b, {"--format", "json"}), d.path());
  const Outcome b = run(with(k175b, {"--nccl-tests", nccl + "all_reduce_perf_8gpu.txt", nccl + "sendrecv_perf_2nodes.txt",
                                     "--sequence-parallel", "off", "--format", "json"}), d.path());
  ASSERT_EQ(a.rc, 0) << describe(a);
  ASSERT_EQ(b.rc, 0) << describe(b);
  bool named = false;
  const json bj = json::parse(b.out);
  for (const auto& n : bj.at("prediction").at("notes")) named |= contains(n.get<std::string>(), "nccl-tests");
  // The measured bus bandwidth (230 GB/s) is below the profile's (0.77 x 300): tensor-parallel time grows.
  EXPECT_GT(bj.at("prediction").at("breakdown").at("tp_comm_s").get<double>(),
            json::parse(run(with(k175b, {"--sequence-parallel", "off", "--format", "json"}), d.path()).out)
                .at("prediction").at("breakdown").at("tp_comm_s").get<double>());
  EXPECT_TRUE(named);
  // A measure result of a small layer on the CPU: its ops are scaled and say "measured".
  const Outcome m = run({"measure", "--backend", "cpu", "--model", "gpt3-small", "--width", "1/12", "--seq", "128",
                         "--repeats", "1", "--warmup", "0", "--no-ceiling", "--format", "json", "-o", "m.json"}, d.path());
  ASSERT_EQ(m.rc, 0) << describe(m);
  const Outcome p = run({"predict", "--model", "gpt3-small", "--seq", "128", "--from-measure", "m.json", "--format", "json"},
                        d.path());
  ASSERT_EQ(p.rc, 0) << describe(p);
  const json pj = json::parse(p.out);
  int measured = 0;
  for (const auto& o : pj.at("prediction").at("ops")) measured += o.at("source") == "measured";
  EXPECT_GT(measured, 20);
  EXPECT_TRUE(contains(pj.at("prediction").at("compute_source").get<std::string>(), "m.json"));
}

TEST(CliPredict, BadInputIsOneLineExitTwo) {
  TempDir d, empty;
  spit(d / "bad.json", "{not json");
  spit(d / "wrong.json", R"({"base": "a100", "gemm_efficiency": 2})");
  spit(d / "unknown.json", R"({"base": "a100", "colour": "green"})");
  spit(d / "noise.txt", "hello\n");
  const std::string o = empty / "out.json";
  const std::vector<BadCase> cases = {
      {"tp not dividing the heads", {"predict", "--tp", "7", "-o", o}, "does not divide the 96 attention heads"},
      {"gpus not divisible by tp pp", {"predict", "--gpus", "12", "--tp", "8", "-o", o}, "not divisible by tp x pp"},
      {"global batch not divisible", {"predict", "--gpus", "16", "--tp", "8", "--global-batch", "3", "-o", o},
       "not divisible by micro-batch x data parallel"},
      {"more stages than layers", {"predict", "--gpus", "128", "--pp", "128", "-o", o}, "more stages"},
      {"vpp not dividing", {"predict", "--gpus", "64", "--tp", "8", "--pp", "8", "--vpp", "5", "--global-batch", "64", "-o", o},
       "--vpp 5"},
      {"unknown recompute", {"predict", "--recompute", "some", "-o", o}, "--recompute"},
      {"unknown attention", {"predict", "--attention", "sparse", "-o", o}, "--attention"},
      {"on or off", {"predict", "--sequence-parallel", "yes", "-o", o}, "--sequence-parallel"},
      {"all-to-all overlap on or off", {"predict", "--ep-comm-overlap", "yes", "-o", o}, "--ep-comm-overlap"},
      {"unknown dispatcher", {"predict", "--model", "mixtral-8x7b", "--ep", "8", "--moe-dispatcher", "deepep", "-o", o},
       "--moe-dispatcher: unknown 'deepep'"},
      {"all-to-all overlap without experts", {"predict", "--ep-comm-overlap", "on", "-o", o}, "not a mixture of experts"},
      {"unknown gpu", {"predict", "--gpu", "tpu", "-o", o}, "unknown GPU profile"},
      {"fp8 on an A100", {"predict", "--precision", "fp8", "-o", o}, "no datasheet peak for it; pass --gpu h100-sxm or h200-sxm"},
      {"bad precision", {"predict", "--precision", "fp32", "-o", o}, "--precision"},
      {"system not JSON", {"predict", "--system", d / "bad.json", "-o", o}, "not valid JSON"},
      {"system out of range", {"predict", "--system", d / "wrong.json", "-o", o}, "gemm_efficiency"},
      {"system unknown key", {"predict", "--system", d / "unknown.json", "-o", o}, "colour"},
      {"system missing", {"predict", "--system", d / "missing.json", "-o", o}, "missing.json"},
      {"nccl-tests without rows", {"predict", "--nccl-tests", d / "noise.txt", "-o", o}, "noise.txt"},
      {"from-measure not a measure", {"predict", "--from-measure", d / "unknown.json", "-o", o}, "not a `flopscope measure"},
      {"search with a list", {"predict", "--gpus", "8,16", "--search", "-o", o}, "--search"},
      {"bad gpu list", {"predict", "--gpus", "8,,16", "-o", o}, "--gpus"},
      {"cp with unfused attention",
       {"predict", "--model", "llama3.1-8b", "--gpu", "h100", "--gpus", "16", "--cp", "2", "--attention", "unfused", "-o", o},
       "needs --attention flash"},
      {"cp not dividing the sequence", {"predict", "--model", "llama3.1-8b", "--gpu", "h100", "--gpus", "24", "--cp", "3", "-o", o},
       "--cp 3"},
      {"fsdp not dividing dp", {"predict", "--model", "llama3.1-8b", "--gpu", "h100", "--gpus", "16", "--fsdp", "3", "-o", o},
       "--fsdp 3"},
      {"bad fsdp", {"predict", "--fsdp", "many", "-o", o}, "--fsdp"},
  };
  for (const auto& c : cases) expect_usage_error(c, d.path(), empty.path());

  // A saved prediction with a field removed or of the wrong type: report, compare and plot refuse it.
  ASSERT_EQ(run(with(k175b, {"--format", "json", "-o", d / "p.json"}), d.path()).rc, 0);
  json j = json::parse(slurp(d / "p.json"));
  j["prediction"].erase("breakdown");
  spit(d / "cut.json", j.dump());
  j = json::parse(slurp(d / "p.json"));
  j["prediction"]["step_time_s"] = "slow";
  spit(d / "typed.json", j.dump());
  for (const char* f : {"cut.json", "typed.json"}) {
    expect_usage_error({std::string("report ") + f, {"report", d / f, "-o", o}, f}, d.path(), empty.path());
    expect_usage_error({std::string("compare ") + f, {"compare", d / "p.json", d / f, "-o", o}, f}, d.path(), empty.path());
    expect_usage_error({std::string("plot ") + f, {"plot", d / f, "--out-dir", empty.path()}, f}, d.path(), empty.path());
  }
}

// The FSDP rows of ../shared/data/published-runs.json (torchtitan's Llama 3.1 benchmarks; rows
// that "need" fsdp), each run through `flopscope predict` with its own args, unchanged. Every
// row must run; the errors are printed, per row and per group (step time; memory), not asserted:
// they are modelled, nothing is fitted on them, and docs/predict.md gives them and why they are
// off. Skipped when ../shared/data is absent.
// --validate --published-runs: each row of a file of published runs predicted with its args
// (@DATA@ the file's folder), the error per row and per group; a row that cannot run says why and
// the rest go on; a file that is not one is one line and exit 2.
TEST(CliPredict, ValidatePublishedRunsFromAFile) {
  TempDir d;
  {
    std::ofstream sys(d.path() + "/slow.json");
    sys << R"({"base": "h100-sxm", "gemm_efficiency": 0.5})";
    std::ofstream f(d.path() + "/runs.json");
    f << R"({"about": "two rows for the test", "rows": [
      {"id": "a", "kind": "dense", "key": "step_time_s", "published": 80.0,
       "args": ["--model", "gpt3-175b", "--gpus", "256", "--tp", "8", "--pp", "4", "--global-batch", "64"]},
      {"id": "b", "kind": "dense", "needs": "context-parallel", "key": "step_time_s", "published": 2.0,
       "args": ["--model", "llama3.1-8b", "--system", "@DATA@/slow.json", "--gpus", "8", "--tp", "2", "--cp", "2",
                "--global-batch", "8", "--seq", "8192"]},
      {"id": "c", "kind": "memory", "key": "memory_per_gpu_bytes", "published": 5e10,
       "args": ["--model", "gpt3-175b", "--gpus", "7", "--tp", "8"]}
    ]})";
  }
  const Outcome r = run({"predict", "--validate", "--published-runs", d.path() + "/runs.json", "--format", "json"}, d.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  const json v = json::parse(r.out).at("published_runs");
  ASSERT_EQ(v.at("rows").size(), 3u);
  // Row a against the same prediction run directly.
  const Outcome direct = run({"predict", "--model", "gpt3-175b", "--gpus", "256", "--tp", "8", "--pp", "4",
                              "--global-batch", "64", "--format", "json"}, d.path());
  ASSERT_EQ(direct.rc, 0) << describe(direct);
  const double step = json::parse(direct.out).at("prediction").at("step_time_s").get<double>();
  const json& a = v.at("rows").at(0);
  EXPECT_EQ(a.at("group"), "dense");
  EXPECT_DOUBLE_EQ(a.at("predicted").get<double>(), step);
  EXPECT_DOUBLE_EQ(a.at("error").get<double>(), step / 80.0 - 1);
  // Row b found its system file through @DATA@; row c's layout cannot run and says why.
  EXPECT_EQ(v.at("rows").at(1).at("group"), "context-parallel");
  EXPECT_TRUE(v.at("rows").at(1).contains("predicted")) << v.at("rows").at(1).dump();
  EXPECT_EQ(v.at("rows").at(2).at("group"), "memory");
  EXPECT_NE(v.at("rows").at(2).at("failed").get<std::string>().find("not divisible"), std::string::npos);
  // Groups: sorted by name, with the rows that ran.
  const json& g = v.at("groups");
  ASSERT_EQ(g.size(), 3u);
  EXPECT_EQ(g.at(1).at("group"), "dense");
  EXPECT_DOUBLE_EQ(g.at(1).at("mean_abs_error").get<double>(), std::abs(step / 80.0 - 1));
  EXPECT_EQ(g.at(2).at("ran"), 0);
  EXPECT_EQ(v.at("all").at("rows"), 3);
  EXPECT_EQ(v.at("all").at("ran"), 2);
  // The table and the CSV carry them too.
  const Outcome t = run({"predict", "--validate", "--published-runs", d.path() + "/runs.json"}, d.path());
  EXPECT_NE(t.out.find("Published runs by group"), std::string::npos) << t.out;
  const Outcome c = run({"predict", "--validate", "--published-runs", d.path() + "/runs.json", "--format", "csv"}, d.path());
  EXPECT_NE(c.out.find("a,predicted step_time_s"), std::string::npos) << c.out;
  // Bad input: one line, exit 2.
  {
    std::ofstream bad(d.path() + "/bad.json");
    bad << "{not json";
    std::ofstream empty(d.path() + "/empty.json");
    empty << R"({"rows": []})";
  }
  for (const char* file : {"/bad.json", "/empty.json", "/missing.json"}) {
    const Outcome b = run({"predict", "--validate", "--published-runs", d.path() + file}, d.path());
    EXPECT_EQ(b.rc, 2) << file << ": " << describe(b);
    EXPECT_EQ(std::count(b.err.begin(), b.err.end(), '\n'), 1) << b.err;
  }
  const Outcome alone = run({"predict", "--published-runs", d.path() + "/runs.json"}, d.path());
  EXPECT_EQ(alone.rc, 2) << describe(alone);
}

// Every published run of ../shared/data/published-runs.json runs (skipped when it is absent);
// the per-group errors are printed (modelled; which rows a fitted parameter used is in
// docs/predict.md).
TEST(CliPredict, EveryPublishedRunRuns) {
  const std::string file = std::string(FLOPSCOPE_SOURCE_DIR) + "/../shared/data/published-runs.json";
  if (!std::ifstream(file)) GTEST_SKIP() << file << " is absent";
  TempDir d;
  const Outcome r = run({"predict", "--validate", "--published-runs", file, "--format", "json"}, d.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  const json v = json::parse(r.out).at("published_runs");
  for (const auto& row : v.at("rows")) EXPECT_TRUE(row.contains("predicted")) << row.dump();
  EXPECT_EQ(v.at("all").at("ran"), v.at("all").at("rows"));
  for (const auto& g : v.at("groups"))
    std::printf("  %-18s %3d rows, mean |error| %5.1f%%, max %5.1f%% (modelled)\n", g.at("group").get<std::string>().c_str(),
                g.at("rows").get<int>(), 100 * g.at("mean_abs_error").get<double>(),
                100 * g.at("max_abs_error").get<double>());
}

TEST(CliPredict, PublishedFsdpRowsRun) {
  const std::string data = std::string(FLOPSCOPE_SOURCE_DIR) + "/../shared/data";
  std::ifstream f(data + "/published-runs.json");
  if (!f) GTEST_SKIP() << data << " is absent";
  const json runs = json::parse(f);
  TempDir d;
  int rows = 0;
  double sum[2] = {0, 0}, worst[2] = {0, 0};
  int count[2] = {0, 0};
  for (const auto& r : runs.at("rows")) {
    if (r.value("needs", "") != "fsdp") continue;
    ++rows;
    std::vector<std::string> args = {"predict"};
    for (const auto& a : r.at("args")) args.push_back(a.get<std::string>());
    args.insert(args.end(), {"--format", "json"});
    const Outcome o = run(args, d.path());
    ASSERT_EQ(o.rc, 0) << r.at("id") << ": " << describe(o);
    const json p = json::parse(o.out).at("prediction");
    const std::string key = r.at("key");
    const double predicted = p.at(key).get<double>(), published = r.at("published").get<double>();
    ASSERT_TRUE(std::isfinite(predicted) && predicted > 0) << r.at("id");
    const double err = predicted / published - 1;
    const int g = key == "memory_per_gpu_bytes" ? 1 : 0;
    sum[g] += std::abs(err), worst[g] = std::max(worst[g], std::abs(err)), ++count[g];
    std::printf("  %-50s %-20s predicted %10.4g published %10.4g error %+6.1f%% (modelled)\n",
                r.at("id").get<std::string>().c_str(), key.c_str(), predicted, published, 100 * err);
  }
  EXPECT_EQ(rows, 10);
  for (int g = 0; g < 2; ++g)
    if (count[g] > 0)
      std::printf("  %s rows: %d, mean |error| %.1f%%, max %.1f%% (modelled, nothing fitted on them)\n",
                  g == 0 ? "step-time" : "memory", count[g], 100 * sum[g] / count[g], 100 * worst[g]);
}

}  // namespace
