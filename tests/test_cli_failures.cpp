// Failure modes, each with a test that fails if the behaviour regresses: no GPU visible, a
// file-size limit hit while writing, an interrupted run, logging on stderr only, and results
// that record how to reproduce them.
#include <gtest/gtest.h>

#include <cstdio>

#include <csignal>

#include <nlohmann/json.hpp>

#include "backend/select.hpp"
#include "cli_util.hpp"

namespace {

using namespace cli_test;
using nlohmann::json;

// A small, quick measure run on the CPU.
const std::vector<std::string> kTiny = {"--model", "gpt3-175b", "--width", "1/96", "--seq", "64",
                                        "--repeats", "1", "--warmup", "0", "--no-ceiling"};

std::vector<std::string> with(std::vector<std::string> head, const std::vector<std::string>& tail) {
  head.insert(head.end(), tail.begin(), tail.end());
  return head;
}

TEST(CliNoGpu, AutoFallsBackToTheCpuAndSaysWhy) {
  if (flopscope::probe_gpus().count > 0) GTEST_SKIP() << "a GPU is visible: this test is about machines without one";
  TempDir cwd;
  const Outcome r = run(with({"measure", "--format", "json"}, kTiny), cwd.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  const json j = json::parse(r.out);  // stdout is the result alone, logs are on stderr
  EXPECT_EQ(j.at("backend").at("name"), "cpu");
  EXPECT_TRUE(contains(j.at("backend").at("reason").get<std::string>(), "no GPU visible")) << j.at("backend");
  EXPECT_TRUE(contains(r.err, "backend: cpu (auto: no GPU visible")) << r.err;
}

TEST(CliNoGpu, BackendCudaIsOneClearLine) {
  if (flopscope::probe_gpus().count > 0) GTEST_SKIP() << "a GPU is visible: this test is about machines without one";
  TempDir cwd;
  expect_usage_error({"--backend cuda without a GPU", with({"measure", "--backend", "cuda", "-o", "x.json"}, kTiny),
                      "no GPU is visible"},
                     cwd.path(), cwd.path());
  expect_usage_error({"peak --backend cuda without a GPU", {"peak", "--backend", "cuda"}, "no GPU is visible"},
                     cwd.path(), cwd.path());
}

TEST(CliDisk, AFileSizeLimitIsACleanErrorAndLeavesNoFile) {
  TempDir cwd;
  RunOptions limited;
  limited.file_size_limit = 4096;  // the estimate JSON is ~40 KB
  const Outcome r = run({"estimate", "--format", "json", "-o", "out.json"}, cwd.path(), limited);
  EXPECT_EQ(r.rc, 2) << describe(r);
  EXPECT_EQ(count_lines(r.err), 1u) << describe(r);
  EXPECT_TRUE(contains(r.err, "cannot write 'out.json'")) << describe(r);
  EXPECT_TRUE(cwd.names().empty()) << "left behind: " << *cwd.names().begin();
  // Without the limit, the same command works.
  const Outcome again = run({"estimate", "--format", "json", "-o", "out.json"}, cwd.path());
  EXPECT_EQ(again.rc, 0) << describe(again);
  EXPECT_EQ(cwd.names(), std::set<std::string>{"out.json"});
}

class CliInterrupt : public ::testing::TestWithParam<int> {};

TEST_P(CliInterrupt, StopsWithItsExitCodeLeavesNoFileAndASecondRunWorks) {
  TempDir cwd;
  RunOptions o;
  o.signal = GetParam();
  o.signal_after_ms = 1500;  // well into a run of many repeats
  const Outcome r = run({"measure", "--model", "gpt3-175b", "--width", "1/96", "--seq", "512", "--repeats", "100000",
                         "--no-ceiling", "--format", "json", "-o", "out.json"},
                        cwd.path(), o);
  EXPECT_EQ(r.rc, 128 + GetParam()) << describe(r);
  EXPECT_TRUE(contains(r.err, GetParam() == SIGINT ? "interrupted (SIGINT)" : "terminated (SIGTERM)")) << describe(r);
  EXPECT_TRUE(cwd.names().empty()) << "left behind: " << *cwd.names().begin();
  const Outcome again = run(with({"measure", "-q", "--format", "json", "-o", "out.json"}, kTiny), cwd.path());
  EXPECT_EQ(again.rc, 0) << describe(again);
  EXPECT_EQ(cwd.names(), std::set<std::string>{"out.json"});
}

INSTANTIATE_TEST_SUITE_P(CliSignals, CliInterrupt, ::testing::Values(SIGINT, SIGTERM),
                         [](const auto& param_info) { return param_info.param == SIGINT ? "SIGINT" : "SIGTERM"; });

TEST(CliLogging, LevelFromFlagOrEnvironmentAndOnStderrOnly) {
  TempDir cwd;
  // info (the default) logs progress lines on stderr; stdout stays pure JSON.
  const Outcome info = run(with({"measure", "--format", "json"}, kTiny), cwd.path());
  ASSERT_EQ(info.rc, 0) << describe(info);
  EXPECT_TRUE(json::accept(info.out)) << info.out.substr(0, 200);
  EXPECT_TRUE(contains(info.err, "[info]")) << info.err;
  // FLOPSCOPE_LOG_LEVEL=warn silences them; --log-level wins over the environment.
  RunOptions warn;
  warn.env = {{"FLOPSCOPE_LOG_LEVEL", "warn"}};
  const Outcome quiet = run(with({"measure", "--format", "json"}, kTiny), cwd.path(), warn);
  EXPECT_EQ(quiet.rc, 0) << describe(quiet);
  EXPECT_FALSE(contains(quiet.err, "[info]")) << quiet.err;
  const Outcome flag = run(with({"measure", "--log-level", "info", "--format", "json"}, kTiny), cwd.path(), warn);
  EXPECT_TRUE(contains(flag.err, "[info]")) << flag.err;
  // A bad level, from either source, is one clear line.
  RunOptions bogus;
  bogus.env = {{"FLOPSCOPE_LOG_LEVEL", "loud"}};
  const Outcome bad = run({"estimate"}, cwd.path(), bogus);
  EXPECT_EQ(bad.rc, 2) << describe(bad);
  EXPECT_TRUE(contains(bad.err, "FLOPSCOPE_LOG_LEVEL")) << describe(bad);
  EXPECT_EQ(count_lines(bad.err), 1u) << describe(bad);
}

TEST(CliReproducible, ResultsRecordVersionCommitCommandLineAndSeed) {
  TempDir cwd;
  const Outcome v = run({"--version"}, cwd.path());
  ASSERT_EQ(v.rc, 0) << describe(v);
  const Outcome r = run(with({"measure", "-q", "--seed", "7", "--format", "json"}, kTiny), cwd.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  const json j = json::parse(r.out);
  const std::string version = j.at("tool").at("version"), commit = j.at("tool").at("git_commit");
  EXPECT_FALSE(version.empty());
  EXPECT_FALSE(commit.empty());
  EXPECT_TRUE(contains(v.out, version) && contains(v.out, commit)) << v.out << " vs " << j.at("tool");
  EXPECT_EQ(j.at("settings").at("seed"), 7);
  EXPECT_TRUE(contains(j.at("command_line").get<std::string>(), "--seed 7")) << j.at("command_line");
  // The commit is the one the binary was built from (written at build time, not when the tree
  // was configured): the source checkout's HEAD, when there is one.
  if (FILE* git = popen("git -C '" FLOPSCOPE_SOURCE_DIR "' rev-parse --short=12 HEAD 2>/dev/null", "r")) {
    char buf[64] = {};
    const bool got = fgets(buf, sizeof buf, git) != nullptr;
    if (pclose(git) == 0 && got) {
      std::string head(buf);
      while (!head.empty() && (head.back() == '\n' || head.back() == '\r')) head.pop_back();
      EXPECT_EQ(commit.substr(0, head.size()), head) << "built from " << commit << ", the checkout is at " << head;
    }
  }
  const Outcome e = run({"estimate", "--format", "json"}, cwd.path());
  EXPECT_TRUE(json::parse(e.out).contains("command_line"));
}

}  // namespace
