// Which OpenBLAS kernels run (src/backend/cpu/blas_core.*): the re-exec decision, and the
// binary started directly (as installed, as Slurm and sweep start it) with OPENBLAS_CORETYPE
// unset, with a simulated fallback, and with the user's own variable.
#include <gtest/gtest.h>

#include <set>

#include <nlohmann/json.hpp>

#include "backend/cpu/blas_core.hpp"
#include "cli_util.hpp"

namespace {

using namespace flopscope::cpu;
using namespace cli_test;
using nlohmann::json;

BlasCoreInputs fallback_on_avx512() {
  BlasCoreInputs in;
  in.isa = {true, true};
  in.openblas_core = "Prescott";
  return in;
}

TEST(BlasCore, CoreForIsa) {
  EXPECT_EQ(core_for_isa({true, true}), "SkylakeX");
  EXPECT_EQ(core_for_isa({true, false}), "Haswell");
  EXPECT_EQ(core_for_isa({false, false}), "");
}

TEST(BlasCore, ReexecsOnlyFromTheFallbackWithNoVariableAndNoGuard) {
  EXPECT_EQ(decide_blas_core(fallback_on_avx512()), "SkylakeX");
  BlasCoreInputs avx2 = fallback_on_avx512();
  avx2.isa = {true, false};
  EXPECT_EQ(decide_blas_core(avx2), "Haswell");

  BlasCoreInputs in = fallback_on_avx512();
  in.guard_env = "SkylakeX";  // already re-executed once: never again
  EXPECT_EQ(decide_blas_core(in), std::nullopt);
  in = fallback_on_avx512();
  in.coretype_env = "Prescott";  // the user's own choice, even a slow one
  EXPECT_EQ(decide_blas_core(in), std::nullopt);
  in = fallback_on_avx512();
  in.dynamic_arch = false;  // one core compiled in: the variable would change nothing
  EXPECT_EQ(decide_blas_core(in), std::nullopt);
  in = fallback_on_avx512();
  in.isa = {false, false};  // Prescott is right for a pre-AVX2 CPU
  EXPECT_EQ(decide_blas_core(in), std::nullopt);
  for (const char* own : {"SkylakeX", "Cooperlake", "Haswell", "Zen", "Sandybridge"}) {
    in = fallback_on_avx512();
    in.openblas_core = own;  // OpenBLAS recognised the CPU: its choice stays
    EXPECT_EQ(decide_blas_core(in), std::nullopt) << own;
  }
}

// What runs the device JSON of `devices` with `env` (and our own OpenBLAS variables removed).
json cpu_json(const std::vector<std::pair<std::string, std::string>>& env, const std::string& cwd,
              const std::vector<std::string>& extra_args = {}) {
  RunOptions o;
  o.unset = {"OPENBLAS_CORETYPE", kBlasCoreGuard, kBlasCoreAssume, "OPENBLAS_VERBOSE"};
  o.env = env;
  std::vector<std::string> args = {"devices", "--format", "json"};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  const Outcome r = run(args, cwd, o);
  EXPECT_EQ(r.rc, 0) << describe(r);
  if (r.rc != 0) return json::object();
  return json::parse(extra_args.empty() ? r.out : slurp(cwd + "/" + extra_args.back())).at("cpu");
}

// OpenBLAS 0.3.21's x86_64 cores with AVX2 kernels or better (driver/others/dynamic.c's
// corename table). Zen is in the AVX-512 set too: 0.3.21 runs Zen 4 on its AVX2 Zen kernels.
const std::set<std::string> kAvx2Cores = {"Haswell", "Zen", "Excavator", "SkylakeX", "Cooperlake", "SapphireRapids"};
const std::set<std::string> kAvx512Cores = {"SkylakeX", "Cooperlake", "SapphireRapids", "Zen"};

TEST(CliBlasCore, DirectRunGetsTheCpusOwnKernels) {
  const CpuVectorIsa isa = detect_cpu_isa();
  if (core_for_isa(isa).empty()) GTEST_SKIP() << "this CPU has neither AVX2 nor AVX-512: Prescott is its core";
  TempDir cwd;
  const json cpu = cpu_json({}, cwd.path());
  ASSERT_FALSE(cpu.empty());
  const std::string core = cpu.at("blas_core");
  EXPECT_TRUE((isa.avx512 ? kAvx512Cores : kAvx2Cores).count(core)) << cpu.dump(2);
  const std::string by = cpu.at("blas_core_set_by");
  if (by == "flopscope") {  // OpenBLAS fell back on this CPU and flopscope re-executed itself
    EXPECT_EQ(core, core_for_isa(isa)) << cpu.dump(2);
    EXPECT_EQ(cpu.at("blas_coretype_env"), core) << cpu.dump(2);
  } else {
    EXPECT_EQ(by, "OpenBLAS") << cpu.dump(2);
    EXPECT_TRUE(cpu.at("blas_coretype_env").is_null()) << cpu.dump(2);
  }
}

TEST(CliBlasCore, FallbackReexecutesOnceWithTheSameArguments) {
  // As if OpenBLAS had taken its Prescott fallback: the process re-executes itself with
  // OPENBLAS_CORETYPE set. The assumption is still in the second process's environment, so
  // only the guard stops a third start (a loop would hang the test).
  const CpuVectorIsa isa = detect_cpu_isa();
  if (core_for_isa(isa).empty()) GTEST_SKIP() << "this CPU has neither AVX2 nor AVX-512";
  TempDir cwd;
  // The output file proves the arguments came through the re-exec.
  const json cpu = cpu_json({{kBlasCoreAssume, "Prescott"}}, cwd.path(), {"-o", "devices.json"});
  ASSERT_FALSE(cpu.empty());
  EXPECT_EQ(cpu.at("blas_core"), core_for_isa(isa)) << cpu.dump(2);
  EXPECT_EQ(cpu.at("blas_coretype_env"), core_for_isa(isa)) << cpu.dump(2);
  EXPECT_EQ(cpu.at("blas_core_set_by"), "flopscope") << cpu.dump(2);
  EXPECT_TRUE(contains(cpu.at("blas_core_note"), "re-executed")) << cpu.dump(2);
}

TEST(CliBlasCore, UsersOwnCoretypeIsRespected) {
  const CpuVectorIsa isa = detect_cpu_isa();
  if (core_for_isa(isa).empty()) GTEST_SKIP() << "this CPU has neither AVX2 nor AVX-512";
  TempDir cwd;
  // Haswell runs on any AVX2 CPU; even with the fallback assumed, the user's variable stays.
  json cpu = cpu_json({{"OPENBLAS_CORETYPE", "Haswell"}, {kBlasCoreAssume, "Prescott"}}, cwd.path());
  ASSERT_FALSE(cpu.empty());
  EXPECT_EQ(cpu.at("blas_core"), "Haswell") << cpu.dump(2);
  EXPECT_EQ(cpu.at("blas_core_set_by"), "you") << cpu.dump(2);
  // A slow choice too, with the hint.
  cpu = cpu_json({{"OPENBLAS_CORETYPE", "Prescott"}}, cwd.path());
  ASSERT_FALSE(cpu.empty());
  EXPECT_EQ(cpu.at("blas_core"), "Prescott") << cpu.dump(2);
  EXPECT_EQ(cpu.at("blas_core_set_by"), "you") << cpu.dump(2);
  EXPECT_TRUE(contains(cpu.at("blas_core_note"), "unset it")) << cpu.dump(2);
}

TEST(CliBlasCore, MeasuresDeviceLineSaysWhichKernelsRanAndWhoChose) {
  const CpuVectorIsa isa = detect_cpu_isa();
  if (core_for_isa(isa).empty()) GTEST_SKIP() << "this CPU has neither AVX2 nor AVX-512";
  TempDir cwd;
  RunOptions o;
  o.unset = {"OPENBLAS_CORETYPE", kBlasCoreGuard};
  o.env = {{kBlasCoreAssume, "Prescott"}};
  const Outcome r = run({"measure", "-q", "--backend", "cpu", "--width", "1/96", "--seq", "64", "--repeats", "1",
                         "--warmup", "0", "--no-ceiling", "--format", "json"},
                        cwd.path(), o);
  ASSERT_EQ(r.rc, 0) << describe(r);
  const json j = json::parse(r.out);
  const std::string line = j.at("backend").at("device_line");
  EXPECT_TRUE(contains(line, "OpenBLAS core " + std::string(core_for_isa(isa)) + " (flopscope set OPENBLAS_CORETYPE="))
      << line;
  EXPECT_EQ(j.at("device").at("blas_core_set_by"), "flopscope") << j.at("device").dump(2);
}

}  // namespace
