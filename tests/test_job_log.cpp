// A run's own log beside its prediction (src/job/log.*): each framework's step lines (small
// excerpts written after the frameworks' own format strings, cited in log.hpp), the steady state
// and the comparison.
#include <gtest/gtest.h>

#include <cmath>

#include "cli_util.hpp"
#include "job/log.hpp"
#include "util/error.hpp"

namespace {

using namespace flopscope;
using namespace flopscope::job;
using nlohmann::json;

std::string data(const std::string& name) { return std::string(FLOPSCOPE_SOURCE_DIR) + "/tests/data/jobs/" + name; }

TEST(JobLog, MegatronLinesWithTheirStepTimeTflopsAndBatch) {
  const RunLog l = read_log(data("megatron-train.log"));
  EXPECT_EQ(l.format, "Megatron-LM");
  ASSERT_EQ(l.entries.size(), 10u);
  EXPECT_EQ(l.entries[0].step, 1);
  EXPECT_DOUBLE_EQ(*l.entries[0].step_time_s, 0.0988);
  EXPECT_DOUBLE_EQ(*l.entries[0].tflops_per_gpu, 78.1);
  EXPECT_EQ(*l.entries[0].global_batch, 64);
  EXPECT_EQ(l.entries[0].line, 7);
  EXPECT_EQ(l.entries[9].step, 10);
}

TEST(JobLog, NemoBothProgressFormats) {
  const RunLog two = read_log(data("nemo2-train.log"));
  EXPECT_EQ(two.format, "NeMo");
  ASSERT_EQ(two.entries.size(), 6u);
  EXPECT_EQ(two.entries[1].step, 1);
  EXPECT_DOUBLE_EQ(*two.entries[1].step_time_s, 3.412);
  const RunLog one = read_log(data("nemo1-train.log"));
  ASSERT_EQ(one.entries.size(), 4u);
  EXPECT_EQ(one.entries[3].step, 3);
  EXPECT_DOUBLE_EQ(*one.entries[3].step_time_s, 3.39);
}

TEST(JobLog, TorchtitanRankZeroAndColourCodesStripped) {
  const RunLog l = read_log(data("torchtitan-train.log"));
  EXPECT_EQ(l.format, "torchtitan");
  ASSERT_EQ(l.entries.size(), 6u);  // rank 1's lines left out
  EXPECT_EQ(l.entries[1].step, 10);
  EXPECT_DOUBLE_EQ(*l.entries[1].tokens_per_s_per_gpu, 6250);
  EXPECT_DOUBLE_EQ(*l.entries[1].tflops_per_gpu, 130.41);
  EXPECT_DOUBLE_EQ(*l.entries[1].mfu, 0.418);
  EXPECT_FALSE(l.entries[1].step_time_s);
}

TEST(JobLog, MlperfTrackedStatsAndStepTiming) {
  const RunLog l = read_log(data("mllog-train.log"));
  EXPECT_EQ(l.format, "MLPerf MLLOG");
  ASSERT_EQ(l.entries.size(), 4u);
  EXPECT_EQ(l.entries[1].step, 256);
  EXPECT_DOUBLE_EQ(*l.entries[1].step_time_s, 3.40);
  EXPECT_DOUBLE_EQ(*l.entries[1].samples_per_s, 37.6);
  EXPECT_DOUBLE_EQ(*l.entries[3].step_time_s, 3.39);
}

TEST(JobLog, NoStepLineIsOneClearLine) {
  try {
    read_log(data("no-steps.log"));
    ADD_FAILURE();
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("no step line"), std::string::npos) << e.what();
  }
}

// A prediction result with just what the comparison reads.
json result(double step_s) {  // step_s: the predicted step, seconds
  return {{"layout", {{"gpus", 8}, {"global_batch", 64}, {"seq", 2048}}},
          {"prediction",
           {{"step_time_s", step_s},
            {"tokens_per_s", 64.0 * 2048 / step_s},
            {"mfu", 0.5},
            {"model_flops_per_step", 4e13},
            {"peak_tflops", 989.4},
            {"breakdown",
             {{"compute_s", 0.03}, {"tp_comm_s", 0.0075}, {"pp_comm_s", 0.0}, {"bubble_s", 0.0025},
              {"dp_comm_s", 0.00125}, {"optimizer_s", 0.00025}}}}}};
}

TEST(JobLog, SteadyStateBesideThePrediction) {
  const RunLog l = read_log(data("megatron-train.log"));
  const json m = log_vs_prediction(l, result(0.0415));
  EXPECT_EQ(m.at("warmup_skipped"), 1);  // the first 10% of 10 entries
  EXPECT_DOUBLE_EQ(m.at("step_time_s").at("median").get<double>(), 0.0501);
  EXPECT_DOUBLE_EQ(m.at("step_time_s").at("max").get<double>(), 0.0521);
  EXPECT_EQ(m.at("step_time_s").at("entries"), 9);
  const json& v = m.at("vs_prediction");
  EXPECT_NEAR(v.at("difference").get<double>(), 0.0501 / 0.0415 - 1, 1e-12);
  EXPECT_NEAR(m.at("tokens_per_s").get<double>(), 64.0 * 2048 / 0.0501, 1e-6);
  EXPECT_NEAR(m.at("mfu").get<double>(), 4e13 / (0.0501 * 8 * 989.4e12), 1e-12);
  // Each part alone: compute x (0.03 + 0.0086) / 0.03; the largest part first.
  EXPECT_EQ(v.at("parts")[0].at("part"), "compute");
  EXPECT_NEAR(v.at("parts")[0].at("factor_alone").get<double>(), (0.03 + 0.0086) / 0.03, 1e-9);
  EXPECT_EQ(v.at("parts").size(), 5u);  // pp_comm 0 left out
  // Faster than predicted: a part smaller than the difference cannot explain it alone.
  const json fast = log_vs_prediction(l, result(0.055)).at("vs_prediction");
  EXPECT_LT(fast.at("difference").get<double>(), 0);
  EXPECT_NEAR(fast.at("parts")[1].at("factor_alone").get<double>(), (0.0075 - 0.0049) / 0.0075, 1e-9);  // tp comm
  EXPECT_TRUE(fast.at("parts")[2].at("factor_alone").is_null());  // the bubble's 2.5 ms < the 4.9 ms difference
}

TEST(JobLog, ThroughputOnlyLogsDeriveTheStep) {
  const json m = log_vs_prediction(read_log(data("torchtitan-train.log")), result(0.05));
  // 64 x 2048 tokens / (6250 a GPU x 8 GPUs)
  EXPECT_NEAR(m.at("step_time_s").at("median").get<double>(), 64.0 * 2048 / (6250.0 * 8), 1e-12);
  EXPECT_NEAR(m.at("printed_mfu").at("median").get<double>(), 0.418, 1e-12);
  EXPECT_NE(m.at("source").get<std::string>().find("derived"), std::string::npos);
  // --log-warmup 0 keeps the first entry.
  EXPECT_EQ(log_vs_prediction(read_log(data("torchtitan-train.log")), result(0.05), 0).at("warmup_skipped"), 0);
}

TEST(CliJobLog, PredictWithTheRunsLog) {
  cli_test::TempDir cwd;
  const cli_test::Outcome r = cli_test::run({"predict", "--job", data("megatron-gqa-fp8.sh"), "--gpu", "h100-sxm", "--log",
                                             data("megatron-train.log"), "--format", "json"},
                                            cwd.path());
  ASSERT_EQ(r.rc, 0) << cli_test::describe(r);
  const json j = json::parse(r.out);
  EXPECT_DOUBLE_EQ(j.at("run_log").at("step_time_s").at("median").get<double>(), 0.0501);
  EXPECT_NEAR(j.at("run_log").at("vs_prediction").at("predicted_step_time_s").get<double>(),
              j.at("prediction").at("step_time_s").get<double>(), 1e-12);
  const cli_test::Outcome t = cli_test::run({"predict", "--job", data("megatron-gqa-fp8.sh"), "--gpu", "h100-sxm", "--log",
                                             data("megatron-train.log")},
                                            cwd.path());
  ASSERT_EQ(t.rc, 0) << cli_test::describe(t);
  for (const char* part : {"Your run's log beside the prediction", "step time s (median)", "could come from"})
    EXPECT_TRUE(cli_test::contains(t.out, part)) << part << "\n" << t.out.substr(0, 3000);
  cli_test::TempDir out;
  cli_test::expect_usage_error({"a log with no step line",
                                {"predict", "--job", data("megatron-gqa-fp8.sh"), "--gpu", "h100-sxm", "--log",
                                 data("no-steps.log"), "-o", out / "p.json"},
                                "no step line"},
                               cwd.path(), out.path());
}

}  // namespace
