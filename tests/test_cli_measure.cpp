// `flopscope measure` as a user runs it: the per-op table, totals and extrapolation on the CPU;
// its JSON round-trips through `report` unchanged; its own bad input is one line and exit 2.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cli_util.hpp"

namespace {

using namespace cli_test;
using nlohmann::json;

const std::vector<std::string> kTiny = {"measure", "-q",  "--model",   "gpt3-175b", "--width",     "1/96", "--seq",
                                        "64",      "--repeats", "2", "--warmup", "0", "--no-ceiling"};

std::vector<std::string> with(std::vector<std::string> head, const std::vector<std::string>& tail) {
  head.insert(head.end(), tail.begin(), tail.end());
  return head;
}

TEST(CliMeasure, TableHasEveryOpTotalsAndTheExtrapolation) {
  TempDir cwd;
  const Outcome r = run(kTiny, cwd.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  for (const char* part : {"Per op", "fwd.qkv", "bwd.qkv.wgrad", "bwd.attn.softmax", "Layer totals",
                           "backward / forward: 1.99", "training FLOPs (300B tokens)", "counted FLOPs",
                           "verification: passed"})
    EXPECT_TRUE(contains(r.out, part)) << "missing '" << part << "'\n" << r.out.substr(0, 3000);
}

TEST(CliMeasure, JsonRoundTripsThroughReportUnchanged) {
  TempDir cwd;
  const Outcome m = run(with(kTiny, {"--include-head", "--recompute", "--format", "json", "-o", "m.json"}), cwd.path());
  ASSERT_EQ(m.rc, 0) << describe(m);
  const std::string saved = slurp(cwd / "m.json");
  const json j = json::parse(saved);
  EXPECT_EQ(j.at("command"), "measure");
  EXPECT_EQ(j.at("counters").at("status"), "counted");
  for (const auto& o : j.at("ops")) {
    ASSERT_TRUE(o.contains("counted_flops")) << o.at("name");
    ASSERT_TRUE(o.contains("time_ms")) << o.at("name");
    if (o.at("kind") == "gemm" || o.at("kind") == "batched_gemm") {
      EXPECT_EQ(o.at("counted_flops"), o.at("flops")) << o.at("name");
    }
  }
  const Outcome back = run({"report", "m.json", "--format", "json"}, cwd.path());
  ASSERT_EQ(back.rc, 0) << describe(back);
  EXPECT_EQ(back.out, saved);
  // Every other format renders from the saved file alone.
  for (const char* f : {"table", "csv", "markdown"}) {
    const Outcome rendered = run({"report", "m.json", "--format", f}, cwd.path());
    EXPECT_EQ(rendered.rc, 0) << f << "\n" << describe(rendered);
    EXPECT_TRUE(contains(rendered.out, "bwd.head.logits.wgrad")) << f;
  }
}

TEST(CliMeasure, BadInputIsOneLineAndExitTwo) {
  TempDir cwd, out;
  const std::string file = out / "m.json";
  const std::vector<BadCase> cases = {
      {"--repeats 0", with(kTiny, {"--repeats", "0", "-o", file}), "--repeats"},
      {"negative --warmup", with(kTiny, {"--warmup", "-1", "-o", file}), "--warmup"},
      {"unknown backend", with(kTiny, {"--backend", "tpu", "-o", file}), "--backend"},
      {"bf16 on the cpu", with(kTiny, {"--backend", "cpu", "--precision", "bf16", "-o", file}), "fp32, fp64 or fp8 (emulated)"},
      {"unknown counters mode", with(kTiny, {"--counters", "maybe", "-o", file}), "--counters"},
      {"--input-sets 0", with(kTiny, {"--input-sets", "0", "-o", file}), "--input-sets"},
      {"--input-sets 65", with(kTiny, {"--input-sets", "65", "-o", file}), "--input-sets"},
      {"--cuda-graph on the cpu", with(kTiny, {"--backend", "cpu", "--cuda-graph", "-o", file}), "needs --backend cuda"},
      {"fp8 with a width that is not a multiple of 16",
       {"measure", "-q", "--backend", "cpu", "--precision", "fp8", "--d-model", "120", "--heads", "1", "--seq", "64",
        "-o", file},
       "multiples of 16"},
      {"a layer that does not fit", {"measure", "-q", "--backend", "cpu", "--width", "1", "--batch", "64", "-o", file},
       "the largest that fits"},
  };
  for (const auto& c : cases) expect_usage_error(c, cwd.path(), out.path());
}

TEST(CliMeasure, InputSetsAreRecordedAndTheTimingSaysHowItWasDone) {
  TempDir cwd;
  const Outcome m = run(with(kTiny, {"--backend", "cpu", "--input-sets", "3", "--format", "json", "-o", "m.json"}), cwd.path());
  ASSERT_EQ(m.rc, 0) << describe(m);
  const json j = json::parse(slurp(cwd / "m.json"));
  const auto& s = j.at("settings");
  EXPECT_EQ(s.at("input_sets"), 3);
  EXPECT_EQ(s.at("cuda_graph"), false);
  EXPECT_EQ(s.at("flush_l2"), false);
  EXPECT_TRUE(contains(s.at("timing").get<std::string>(), "rotating through 3 input sets")) << s.dump();
  EXPECT_TRUE(contains(s.at("timing").get<std::string>(), "steady clock")) << s.dump();
  // Three copies of the inputs and weights: the memory the run needed says so.
  const Outcome one = run(with(kTiny, {"--backend", "cpu", "--format", "json", "-o", "one.json"}), cwd.path());
  ASSERT_EQ(one.rc, 0) << describe(one);
  const json k = json::parse(slurp(cwd / "one.json"));
  EXPECT_GT(j.at("memory").at("required_bytes").get<double>(), k.at("memory").at("required_bytes").get<double>());
  const Outcome table = run({"report", "m.json"}, cwd.path());
  ASSERT_EQ(table.rc, 0) << describe(table);
  EXPECT_TRUE(contains(table.out, "timing: each op run in turn")) << table.out;
}

TEST(CliMeasure, Fp8IsEmulatedOnTheCpuWithCastOpsBeforeEveryLinearGemm) {
  TempDir cwd;
  const Outcome m = run(with(kTiny, {"--backend", "cpu", "--precision", "fp8", "--format", "json", "-o", "m.json"}),
                        cwd.path());
  ASSERT_EQ(m.rc, 0) << describe(m);
  const json j = json::parse(slurp(cwd / "m.json"));
  EXPECT_TRUE(contains(j.at("device").at("fp8").get<std::string>(), "emulated")) << j.at("device").dump();
  EXPECT_EQ(j.at("layer").at("precision"), "fp8");
  EXPECT_TRUE(j.at("verification").at("passed").get<bool>());
  int casts = 0, fp8_gemms = 0;
  for (const auto& o : j.at("ops")) {
    const std::string name = o.at("name");
    if (contains(name, ".cast_")) {
      ++casts;
      EXPECT_EQ(o.at("counted_flops"), o.at("flops")) << name;
    }
    if (name == "fwd.qkv" || name == "bwd.ffn.up.wgrad") ++fp8_gemms;
  }
  EXPECT_EQ(casts, 24);  // 4 linear layers: 2 casts forward, 4 backward
  EXPECT_EQ(fp8_gemms, 2);
}

}  // namespace
