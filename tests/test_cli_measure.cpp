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
      {"--causal-block not a number", with(kTiny, {"--causal-block", "half", "-o", file}), "--causal-block"},
      {"negative --causal-block", with(kTiny, {"--causal-block", "-16", "-o", file}), "--causal-block"},
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

// The causal attention products in row blocks (the cpu's default) against the whole square
// (--causal-block 0): the executed FLOPs drop by the closed form, the model FLOPs and every
// other op stay, counted = analytic in both, and the layer and the table say which ran.
TEST(CliMeasure, CausalBlocksCutTheExecutedFlopsOnly) {
  TempDir cwd;
  const std::vector<std::string> layer = {"measure", "-q", "--backend", "cpu", "--width", "1/96", "--seq", "128",
                                          "--repeats", "1", "--warmup", "0", "--no-ceiling", "--format", "json"};
  const Outcome blocked = run(with(layer, {"--causal-block", "32", "-o", "b.json"}), cwd.path());
  const Outcome full = run(with(layer, {"--causal-block", "0", "-o", "f.json"}), cwd.path());
  const Outcome automatic = run(with(layer, {"-o", "a.json"}), cwd.path());
  ASSERT_EQ(blocked.rc, 0) << describe(blocked);
  ASSERT_EQ(full.rc, 0) << describe(full);
  ASSERT_EQ(automatic.rc, 0) << describe(automatic);
  const json b = json::parse(slurp(cwd / "b.json")), f = json::parse(slurp(cwd / "f.json")),
             a = json::parse(slurp(cwd / "a.json"));
  EXPECT_EQ(b.at("layer").at("causal_block"), 32);
  EXPECT_EQ(f.at("layer").at("causal_block"), 0);
  EXPECT_EQ(a.at("layer").at("causal_block"), 256);  // the cpu's default
  ASSERT_EQ(b.at("ops").size(), f.at("ops").size());
  int blocked_ops = 0;
  for (size_t i = 0; i < b.at("ops").size(); ++i) {
    const json &x = b.at("ops")[i], &y = f.at("ops")[i];
    SCOPED_TRACE(x.at("name").get<std::string>());
    EXPECT_EQ(x.at("counted_flops"), x.at("flops"));
    EXPECT_EQ(y.at("counted_flops"), y.at("flops"));
    EXPECT_EQ(x.value("model_flops", x.at("flops").get<double>()), y.value("model_flops", y.at("flops").get<double>()));
    if (x.contains("full_square_flops")) {
      ++blocked_ops;
      // seq 128 in blocks of 32: q = 4, 32^2 x 4 x 5 / 2 = 10240 of 16384 elements: 5/8.
      EXPECT_EQ(x.at("flops").get<double>(), y.at("flops").get<double>() * 5 / 8);
      EXPECT_EQ(x.at("full_square_flops"), y.at("flops"));
      EXPECT_EQ(x.at("dims").at("causal_block"), 32);
    } else {
      EXPECT_EQ(x.at("flops"), y.at("flops"));
    }
  }
  EXPECT_EQ(blocked_ops, 6);
  EXPECT_FALSE(f.at("ops")[2].contains("full_square_flops"));
  EXPECT_LT(b.at("totals").at("total").at("flops").get<double>(), f.at("totals").at("total").at("flops").get<double>());
  const Outcome table = run({"report", "b.json"}, cwd.path());
  ASSERT_EQ(table.rc, 0) << describe(table);
  EXPECT_TRUE(contains(table.out, "causal row blocks of 32")) << table.out.substr(0, 2000);
  const Outcome plain = run({"report", "f.json"}, cwd.path());
  EXPECT_FALSE(contains(plain.out, "causal row blocks")) << plain.out.substr(0, 2000);
}

}  // namespace
