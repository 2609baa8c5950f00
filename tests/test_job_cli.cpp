// `predict --job` and `estimate --job` as a user runs them: the job's values in the layout and
// the output's job section, flags beside the job winning, a job file never run, bad jobs one
// line and exit 2.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cli_util.hpp"

namespace {

using namespace cli_test;
using nlohmann::json;

std::string data(const std::string& name) { return std::string(FLOPSCOPE_SOURCE_DIR) + "/tests/data/jobs/" + name; }

const json& value(const json& job, const std::string& name) {
  for (const auto& v : job.at("values"))
    if (v.at("name") == name) return v;
  throw std::runtime_error("no value " + name);
}

TEST(CliJob, PredictReadsTheLaunchScriptAndSaysWhereEachValueCameFrom) {
  TempDir cwd;
  const Outcome r = run({"predict", "--job", data("megatron-gqa-fp8.sh"), "--gpu", "h100-sxm", "--format", "json"},
                        cwd.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  const json j = json::parse(r.out);
  const json& l = j.at("layout");
  EXPECT_EQ(l.at("gpus"), 8);
  EXPECT_EQ(l.at("tp"), 2);
  EXPECT_EQ(l.at("pp"), 2);
  EXPECT_EQ(l.at("micro_batch"), 2);
  EXPECT_EQ(l.at("global_batch"), 64);
  EXPECT_EQ(l.at("precision"), "fp8");
  EXPECT_EQ(l.at("recompute"), "selective");
  EXPECT_EQ(j.at("model").at("n_kv_heads"), 4);
  EXPECT_EQ(j.at("model").at("vocab"), 32256);
  const json& job = j.at("job");
  EXPECT_EQ(value(job, "layers").at("where"), "line 17: --num-layers 8 (value set at line 9)");
  EXPECT_EQ(value(job, "layers").at("from"), "file");
  EXPECT_EQ(value(job, "attention").at("from"), "framework default");
  EXPECT_TRUE(contains(j.at("sources").at("layout").get<std::string>(), "job"));
  // The table shows the same.
  const Outcome t = run({"predict", "--job", data("megatron-gqa-fp8.sh"), "--gpu", "h100-sxm"}, cwd.path());
  ASSERT_EQ(t.rc, 0) << describe(t);
  for (const char* part : {"Your job:", "megatron-gqa-fp8.sh (Megatron-LM launch script)", "line 17: --num-layers 8",
                           "ignored, as not changing the cost", "--lr (line 44: learning rate)"})
    EXPECT_TRUE(contains(t.out, part)) << part << "\n" << t.out.substr(0, 4000);
}

TEST(CliJob, FlagsBesideTheJobOverrideIt) {
  TempDir cwd;
  const Outcome r = run({"predict", "--job", data("megatron-gqa-fp8.sh"), "--tp", "1", "--layers", "4", "--precision",
                         "bf16", "--gpu", "h100-sxm", "--format", "json"},
                        cwd.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  const json j = json::parse(r.out);
  EXPECT_EQ(j.at("layout").at("tp"), 1);
  EXPECT_EQ(j.at("layout").at("precision"), "bf16");
  EXPECT_EQ(j.at("model").at("n_layers"), 4);
  EXPECT_EQ(j.at("model").at("vocab"), 32128);  // 32001 padded to 128 x the flag's tp 1
  EXPECT_EQ(value(j.at("job"), "tp").at("from"), "flag");
  EXPECT_EQ(value(j.at("job"), "tp").at("where"), "--tp 1");
  EXPECT_EQ(value(j.at("job"), "layers").at("from"), "flag");
}

TEST(CliJob, EachFormatPredicts) {
  TempDir cwd;
  for (const char* f : {"nemo-interp.yaml", "bridge-tiny.yaml", "titan-tiny.toml"}) {
    SCOPED_TRACE(f);
    const Outcome r = run({"predict", "--job", data(f), "--gpu", "h100-sxm", "--format", "json"}, cwd.path());
    ASSERT_EQ(r.rc, 0) << describe(r);
    const json j = json::parse(r.out);
    EXPECT_GT(j.at("prediction").at("step_time_s").get<double>(), 0);
    EXPECT_FALSE(j.at("job").at("values").empty());
  }
  const Outcome legacy = run({"predict", "--job", data("titan-legacy.toml"), "--vocab", "32000", "--format", "json"},
                             cwd.path());
  ASSERT_EQ(legacy.rc, 0) << describe(legacy);
  EXPECT_EQ(json::parse(legacy.out).at("layout").at("tp"), 8);
}

TEST(CliJob, EstimateTakesTheJobsModelGpusAndPaddedVocabulary) {
  TempDir cwd;
  const Outcome r = run({"estimate", "--job", data("megatron-gqa-fp8.sh"), "--format", "json"}, cwd.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  const json j = json::parse(r.out);
  EXPECT_EQ(j.at("model").at("n_layers"), 8);
  EXPECT_EQ(j.at("cluster").at("gpus"), 8);
  bool megatron_lm = false;
  for (const auto& f : j.at("formulas"))
    if (f.at("id") == "megatron_lm")
      megatron_lm = contains(f.at("title").get<std::string>(), "vocabulary 32256 (a multiple of 256)");
  EXPECT_TRUE(megatron_lm) << j.at("formulas").dump(1);
  // A layout problem does not stop an estimate: context parallelism is not in the formulas.
  const Outcome cp = run({"estimate", "--job", data("nemo-cp.yaml"), "--format", "json"}, cwd.path());
  EXPECT_EQ(cp.rc, 0) << describe(cp);
}

TEST(CliJob, AJobFileIsNeverRun) {
  // The script's command substitutions, backticks, `source`, eval and plain commands would
  // create files in the folder it runs in (and next to it): none may appear.
  TempDir cwd, copy;
  const std::string script = copy / "job.sh";
  spit(script, slurp(data("megatron-cmdsubst.sh")));
  spit(copy / "evil-settings.sh", "touch CREATED_BY_SOURCE\n");
  const Outcome r = run({"predict", "--job", script, "--layers", "4", "--format", "json"}, cwd.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  EXPECT_TRUE(cwd.names().empty()) << *cwd.names().begin();
  EXPECT_EQ(copy.names(), (std::set<std::string>{"evil-settings.sh", "job.sh"}));
  const json j = json::parse(r.out);
  std::string notes;
  for (const auto& n : j.at("job").at("not_given")) notes += n.at("what").get<std::string>() + "\n";
  EXPECT_TRUE(contains(notes, "touch CREATED_BY_COMMAND_SUBSTITUTION")) << notes;
  EXPECT_TRUE(contains(notes, "source ./evil-settings.sh")) << notes;
  // Without --layers the value that needed $(cat layers.txt) is the one line.
  expect_usage_error({"a value only a command gives", {"predict", "--job", script}, "pass --layers N"}, cwd.path(),
                     cwd.path());
  EXPECT_TRUE(copy.names().size() == 2);
}

TEST(CliJob, TheEnvironmentIsReadOnlyThroughJobEnv) {
  TempDir cwd;
  // GPUS_PER_NODE=${GPUS_PER_NODE:-4}: the process's own variable is not read...
  RunOptions o;
  o.env = {{"GPUS_PER_NODE", "2"}, {"NNODES", "1"}};
  const Outcome r = run({"predict", "--job", data("megatron-gqa-fp8.sh"), "--gpu", "h100-sxm", "--format", "json"},
                        cwd.path(), o);
  ASSERT_EQ(r.rc, 0) << describe(r);
  EXPECT_EQ(json::parse(r.out).at("layout").at("gpus"), 8);
  // ... --job-env is.
  const Outcome e = run({"predict", "--job", data("megatron-gqa-fp8.sh"), "--job-env", "GPUS_PER_NODE=8", "--gpu",
                         "h100-sxm", "--format", "json"},
                        cwd.path());
  ASSERT_EQ(e.rc, 0) << describe(e);
  EXPECT_EQ(json::parse(e.out).at("layout").at("gpus"), 16);
  EXPECT_EQ(json::parse(e.out).at("job").at("env").at("GPUS_PER_NODE"), "8");
}

TEST(CliJob, AJobWithContextParallelismPredicts) {
  // nemo-cp.yaml: 2 nodes x 8 GPUs, tp 2, cp 2 (line 6), seq 8192, flash attention: the job's cp
  // reaches predict (dp = 16 / (2 x 2) = 4) and the ring's sends are in the breakdown.
  TempDir cwd;
  const Outcome r = run({"predict", "--job", data("nemo-cp.yaml"), "--format", "json"}, cwd.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  const json j = json::parse(r.out);
  EXPECT_EQ(j.at("layout").at("cp"), 2);
  EXPECT_EQ(j.at("layout").at("dp"), 4);
  EXPECT_EQ(value(j.at("job"), "cp").at("where"), "line 6: model.context_parallel_size: 2");
  EXPECT_GT(j.at("prediction").at("breakdown").at("cp_comm_total_s").get<double>(), 0);
  EXPECT_GT(j.at("prediction").at("step_time_s").get<double>(), 0);
}

TEST(CliJob, ATorchtitanJobWithFsdpPredicts) {
  // titan-fsdp.toml: data_parallel_shard_degree -1 over run_train.sh's 8 GPUs: FSDP 8 reaches
  // predict, its gathers and reduce-scatters in the breakdown and its shards in the memory.
  TempDir cwd;
  const Outcome r = run({"predict", "--job", data("titan-fsdp.toml"), "--gpu", "h100", "--format", "json"}, cwd.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  const json j = json::parse(r.out);
  EXPECT_EQ(j.at("layout").at("fsdp"), 8);
  EXPECT_EQ(j.at("layout").at("global_batch"), 16);  // local 2 x dp 8
  const json& p = j.at("prediction");
  EXPECT_GT(p.at("breakdown").at("dp_comm_total_s").get<double>(), p.at("breakdown").at("dp_comm_s").get<double>());
  EXPECT_GT(p.at("memory").at("fsdp_unsharded_bytes").get<double>(), 0);
  bool noted = false;
  for (const auto& n : p.at("notes")) noted = noted || contains(n.get<std::string>(), "FSDP (torchtitan / FSDP2)");
  EXPECT_TRUE(noted);
}

// A mixture of experts' job predicts with the file's expert parallelism.
TEST(CliJob, AMixtureOfExpertsJobPredictsWithItsEp) {
  TempDir cwd;
  const Outcome r = run({"predict", "--job", data("megatron-moe.sh"), "--format", "json"}, cwd.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  const json j = json::parse(r.out);
  EXPECT_EQ(j.at("layout").at("ep"), 8);
  EXPECT_EQ(j.at("layout").at("edp"), 1);
  EXPECT_GT(j.at("prediction").at("breakdown").at("ep_comm_s").get<double>(), 0);
}

TEST(CliJob, BadJobsAreOneLineAndExitTwo) {
  TempDir cwd, out;
  const std::string file = out / "p.json";
  const std::vector<BadCase> cases = {
      {"more model parallelism than GPUs", {"predict", "--job", data("megatron-contradiction.sh"), "-o", file},
       "tp x pp x cp = 8 x 4 x 1 = 32"},
      {"an unknown cost-relevant key", {"predict", "--job", data("nemo-unknown-key.yaml"), "-o", file}, "--job-ignore"},
      {"a YAML tag", {"predict", "--job", data("nemo-tag.yaml"), "-o", file}, "constructs nothing from tags"},
      {"an unknown flavor", {"predict", "--job", data("titan-bad-flavor.toml"), "-o", file}, "flavor \"3B\""},
      {"broken TOML", {"predict", "--job", data("titan-broken.toml"), "-o", file}, "not valid TOML"},
      {"no such file", {"predict", "--job", out / "none.sh", "-o", file}, "none.sh"},
      {"--job and --model", {"predict", "--job", data("titan-tiny.toml"), "--model", "gpt3-xl", "-o", file},
       "--job gives the model"},
      {"--job-env without =", {"predict", "--job", data("titan-tiny.toml"), "--job-env", "NOPE", "-o", file},
       "not VAR=VALUE"},
      {"--job-env without --job", {"estimate", "--job-env", "A=1", "-o", file}, "need --job"},
      {"no training command", {"estimate", "--job", data("../hf/gpt2.json"), "-o", file}, "no Megatron-LM training command"},
  };
  for (const auto& c : cases) expect_usage_error(c, cwd.path(), out.path());
}

}  // namespace
