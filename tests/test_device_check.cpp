// The GPU machine's limits, checked without a GPU (ctest label cli): scripts/device-check.sh on a
// machine where nvidia-smi fails finishes promptly, records every GPU step as failed or
// skipped and leaves at most 8 files in $OUT, summary.txt and device-check.tgz among them;
// each part's --plan totals at most 540 s (one call may run 600 s); the bundle made from this
// build (scripts/device-bundle.sh) is at most 60 MiB and carries no glibc or CUDA library;
// scripts/find-flopscope.sh resolves a library ldd reports missing for flopscope's processes
// only; `flopscope devices` says what is true of the counters.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_util.hpp"

#ifndef FLOPSCOPE_SOURCE_DIR
#error "FLOPSCOPE_SOURCE_DIR (the repository root) is set by tests/CMakeLists.txt"
#endif

namespace {

using namespace cli_test;

constexpr const char* kBash = "/bin/bash";
constexpr int kMaxOutFiles = 8;           // what the device tool brings back from $OUT
constexpr int kMaxPlanSeconds = 540;      // step limits of one call (600 s), with room to pack up
constexpr double kMaxBundleBytes = 60.0 * 1024 * 1024;

std::string script(const std::string& name) { return std::string(FLOPSCOPE_SOURCE_DIR) + "/scripts/" + name; }

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> v;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) v.push_back(l);
  return v;
}

std::vector<std::string> words_of(const std::string& line) {
  std::vector<std::string> v;
  std::istringstream in(line);
  for (std::string w; in >> w;) v.push_back(w);
  return v;
}

// The steps of a part, from --plan: name -> limit (s), in plan order; and the printed total.
struct Plan {
  std::vector<std::pair<std::string, int>> steps;
  int total = -1;
};

Plan plan_of(const std::string& part) {
  TempDir cwd;
  const Outcome r = run_program(kBash, {script("device-check.sh"), "--part", part, "--plan"}, cwd.path());
  EXPECT_EQ(r.rc, 0) << describe(r);
  Plan p;
  for (const auto& l : lines_of(r.out)) {
    const auto w = words_of(l);
    if (w.size() == 3 && w[0] == "total:" && w[2] == "s") {
      p.total = std::stoi(w[1]);
    } else if (w.size() >= 3 && w[2] == "s") {
      p.steps.emplace_back(w[0], std::stoi(w[1]));
    } else {
      ADD_FAILURE() << "unexpected --plan line: " << l;
    }
  }
  const auto lines = lines_of(r.out);
  EXPECT_TRUE(!lines.empty() && lines.back().rfind("total: ", 0) == 0) << "the last line gives the total\n" << r.out;
  return p;
}

// A folder holding an nvidia-smi that fails, as on a machine without a GPU or driver.
void fake_failing_nvidia_smi(const TempDir& dir) {
  spit(dir / "nvidia-smi", "#!/bin/sh\necho 'NVIDIA-SMI has failed: no driver (fake, tests/test_device_check.cpp)' >&2\nexit 9\n");
  fs::permissions(dir / "nvidia-smi", fs::perms::owner_all);
}

std::string path_with(const TempDir& first) { return first.path() + ":" + (std::getenv("PATH") ? std::getenv("PATH") : ""); }

// summary.txt: step -> status.
std::map<std::string, std::string> statuses(const std::string& summary, const Plan& plan) {
  std::map<std::string, std::string> s;
  for (const auto& l : lines_of(summary)) {
    const auto w = words_of(l);
    if (w.size() < 2) continue;
    for (const auto& [name, limit] : plan.steps)
      if (w[0] == name) s[name] = w[1];
  }
  return s;
}

// This build's tree: FLOPSCOPE_BIN is <build>/src/flopscope.
std::string build_dir() { return fs::path(FLOPSCOPE_BIN).parent_path().parent_path().string(); }

// The test binary itself: the device check runs its Gpu* suites.
std::string this_test_binary() { return fs::read_symlink("/proc/self/exe").string(); }

TEST(CliDeviceCheck, EachPartsPlanFitsOneCall) {
  for (const std::string part : {"1", "2"}) {
    SCOPED_TRACE("part " + part);
    const Plan p = plan_of(part);
    ASSERT_GE(p.steps.size(), 4u);
    int sum = 0;
    for (const auto& [name, limit] : p.steps) {
      EXPECT_GT(limit, 0) << name;
      sum += limit;
    }
    EXPECT_EQ(p.total, sum) << "the total line adds up the step limits";
    EXPECT_LE(p.total, kMaxPlanSeconds);
    // Both parts begin by checking the machine loads and sees the GPU.
    EXPECT_EQ(p.steps.at(0).first, "nvidia-smi");
    EXPECT_EQ(p.steps.at(1).first, "libraries");
    EXPECT_EQ(p.steps.at(2).first, "devices");
  }
  // The order the issue plans: kernels before cuBLASLt, counters after both.
  const Plan one = plan_of("1");
  auto at = [&](const std::string& n) {
    for (size_t i = 0; i < one.steps.size(); ++i)
      if (one.steps[i].first == n) return static_cast<int>(i);
    ADD_FAILURE() << "no step " << n;
    return -1;
  };
  EXPECT_LT(at("kernel-tests"), at("memcheck"));
  EXPECT_LT(at("memcheck"), at("gemm-tests"));
  EXPECT_LT(at("gemm-tests"), at("counter-tests"));
}

TEST(CliDeviceCheck, BadArgumentsExitTwoWithOneLine) {
  TempDir cwd;
  for (const std::vector<std::string>& args : {std::vector<std::string>{"--part", "3"}, {"--bogus"}, {"--out"}}) {
    std::vector<std::string> a = {script("device-check.sh")};
    a.insert(a.end(), args.begin(), args.end());
    const Outcome r = run_program(kBash, a, cwd.path());
    EXPECT_EQ(r.rc, 2) << describe(r);
    EXPECT_TRUE(contains(r.err, "device-check: ")) << describe(r);
    EXPECT_TRUE(cwd.names().empty());
  }
}

// Without a GPU: prompt, every GPU step failed or skipped, at most 8 files in $OUT.
TEST(CliDeviceCheck, WithoutAGpuFinishesPromptlyAndRecordsEveryGpuStepFailedOrSkipped) {
  TempDir fake;
  fake_failing_nvidia_smi(fake);
  for (const std::string part : {"1", "2"}) {
    SCOPED_TRACE("part " + part);
    const Plan plan = plan_of(part);
    TempDir out, cwd;
    RunOptions o;
    o.env = {{"PATH", path_with(fake)},
             {"OUT", out.path()},
             {"FLOPSCOPE_BIN", FLOPSCOPE_BIN},
             {"FLOPSCOPE_TESTS", this_test_binary()}};
    const auto t0 = std::chrono::steady_clock::now();
    const Outcome r = run_program(kBash, {script("device-check.sh"), "--part", part}, cwd.path(), o);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_LT(seconds, 60.0) << describe(r);
    EXPECT_EQ(r.rc, 1) << describe(r);

    const auto names = out.names();
    EXPECT_LE(names.size(), static_cast<size_t>(kMaxOutFiles));
    EXPECT_TRUE(names.count("summary.txt")) << describe(r);
    EXPECT_TRUE(names.count("device-check.tgz")) << describe(r);
    EXPECT_TRUE(cwd.names().empty()) << "the work folder is outside $OUT and the current folder";

    const std::string summary = slurp(out / "summary.txt");
    const auto st = statuses(summary, plan);
    ASSERT_EQ(st.size(), plan.steps.size()) << summary;
    EXPECT_EQ(st.at("nvidia-smi"), "failed") << summary;
    EXPECT_EQ(st.at("devices"), "failed") << summary;  // flopscope sees no GPU
    EXPECT_EQ(st.at("libraries"), "ok") << summary;     // this build's libraries resolve here
    for (const auto& [name, s] : st) {
      if (name == "libraries") continue;
      EXPECT_TRUE(s == "failed" || s == "skipped") << name << ": " << s << "\n" << summary;
    }
    EXPECT_TRUE(contains(summary, "nvidia-smi failed")) << summary;

    // The tarball holds the logs of the steps that ran and the summary.
    const Outcome t = run_program(kBash, {"-c", "tar -tzf \"$0\"", out / "device-check.tgz"}, cwd.path());
    EXPECT_EQ(t.rc, 0) << describe(t);
    for (const char* f : {"/nvidia-smi.log", "/libraries.log", "/devices.log", "/summary.txt", "/environment.txt"})
      EXPECT_TRUE(contains(t.out, f)) << f << "\n" << t.out;
  }
}

// The bundle made from this build: at most 60 MiB; the binaries, the scripts and only the
// libraries a bare GPU machine may lack; its own device check finds its own binaries.
TEST(CliDeviceBundle, FromThisBuildFitsTheCarryLimit) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "a sanitized build (its runtime libraries, instrumented code) is not what travels: the bundle is "
                  "made from the ci or release build, where this test runs";
#endif
  TempDir tmp, fake;
  const std::string bundle = tmp / "device-bundle";
  const Outcome r =
      run_program(kBash, {script("device-bundle.sh"), "--build-dir", build_dir(), "--out", bundle}, tmp.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  EXPECT_TRUE(contains(r.err, "MiB (limit 60 MiB)")) << describe(r);  // the size is printed
  double bytes = 0;
  std::vector<std::string> libs;
  for (const auto& e : fs::recursive_directory_iterator(bundle)) {
    if (!e.is_regular_file()) continue;
    bytes += static_cast<double>(e.file_size());
    if (e.path().parent_path().filename() == "lib") libs.push_back(e.path().filename().string());
  }
  EXPECT_LE(bytes, kMaxBundleBytes) << bytes / (1024 * 1024) << " MiB";
  for (const char* f : {"flopscope", "flopscope_tests", "scripts/device-check.sh", "scripts/find-flopscope.sh",
                        "scripts/ncu-crosscheck.sh", "MANIFEST.txt"})
    EXPECT_TRUE(fs::exists(fs::path(bundle) / f)) << f;
  for (const auto& l : libs) {
    for (const char* never : {"libc.so", "libm.so", "ld-linux", "libpthread", "libstdc++", "libgcc_s", "libcuda.",
                              "libcudart", "libcublas", "libcupti", "libnvidia"}) {
      EXPECT_EQ(l.find(never), std::string::npos) << l << " must not travel";
    }
  }
  bool openblas = false;
  for (const auto& l : libs) openblas = openblas || l.rfind("libopenblas", 0) == 0;
  EXPECT_TRUE(openblas) << "OpenBLAS is what a bare GPU machine lacks first";

  // The bundle's own check, as on the GPU machine: no FLOPSCOPE_BIN, binaries from the bundle.
  fake_failing_nvidia_smi(fake);
  TempDir out;
  RunOptions o;
  o.env = {{"PATH", path_with(fake)}, {"OUT", out.path()}, {"FLOPSCOPE_BIN", ""}, {"FLOPSCOPE_TESTS", ""}};
  const Outcome c = run_program(kBash, {bundle + "/scripts/device-check.sh"}, tmp.path(), o);
  EXPECT_EQ(c.rc, 1) << describe(c);
  const std::string summary = slurp(out / "summary.txt");
  EXPECT_TRUE(contains(summary, "flopscope: " + bundle + "/flopscope")) << summary;
  EXPECT_TRUE(contains(summary, "libraries        ok")) << summary;
}

// A library ldd reports missing is found in the bundle's lib/ and given to flopscope's own
// process alone: the sourcing shell's LD_LIBRARY_PATH stays as it was. Found nowhere, sourcing
// fails with one line naming it.
TEST(CliFindFlopscope, ResolvesAMissingLibraryForFlopscopeOnly) {
  TempDir tmp;
  if (std::system("command -v cc >/dev/null 2>&1") != 0) GTEST_SKIP() << "no C compiler to build the probe library";
  spit(tmp / "probe.c", "int fs_probe(void) { return 42; }\n");
  spit(tmp / "main.c", "#include <stdio.h>\nint fs_probe(void);\nint main(void) { printf(\"probe %d\\n\", fs_probe()); return 0; }\n");
  fs::create_directories(tmp / "bundle/lib");
  const std::string build = "cd '" + tmp.path() +
                            "' && cc -shared -fPIC -Wl,-soname,libfsprobe.so.1 -o bundle/lib/libfsprobe.so.1 probe.c "
                            "&& ln -s libfsprobe.so.1 bundle/lib/libfsprobe.so && cc -o bundle/flopscope main.c "
                            "-Lbundle/lib -lfsprobe && rm bundle/lib/libfsprobe.so";
  ASSERT_EQ(std::system(build.c_str()), 0) << build;

  const std::string probe = tmp / "bundle/flopscope";
  const std::string snippet = "source '" + script("find-flopscope.sh") +
                              "' || exit 1; echo \"path=$FLOPSCOPE_LD_PATH\"; echo \"exported=${LD_LIBRARY_PATH:-}\"; "
                              "\"${flopscope_cmd[@]}\"; flopscope_env \"$FLOPSCOPE_BIN\"";
  RunOptions o;
  o.env = {{"FLOPSCOPE_BIN", probe}, {"LD_LIBRARY_PATH", ""}};
  const Outcome r = run_program(kBash, {"-c", snippet}, tmp.path(), o);
  ASSERT_EQ(r.rc, 0) << describe(r);
  EXPECT_TRUE(contains(r.out, "path=" + tmp.path() + "/bundle/lib\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "exported=\n")) << r.out;
  EXPECT_EQ(count_lines(r.out), 4u) << r.out;
  EXPECT_TRUE(contains(r.out, "probe 42\nprobe 42\n")) << r.out;

  fs::remove(tmp / "bundle/lib/libfsprobe.so.1");
  const Outcome m = run_program(kBash, {"-c", snippet}, tmp.path(), o);
  EXPECT_EQ(m.rc, 1) << describe(m);
  EXPECT_EQ(count_lines(m.err), 1u) << describe(m);
  EXPECT_TRUE(contains(m.err, "shared libraries not found")) << describe(m);
  EXPECT_TRUE(contains(m.err, "libfsprobe.so.1")) << describe(m);
}

// devices says what is true of the counters: how they are read, what they need.
TEST(CliDevices, SaysHowHardwareCountersAreRead) {
  TempDir cwd;
  const Outcome j = run({"devices", "--format", "json"}, cwd.path());
  ASSERT_EQ(j.rc, 0) << describe(j);
  const auto doc = nlohmann::json::parse(j.out);
  EXPECT_EQ(doc.at("hardware_counters").at("api"), "CUPTI Range Profiler");
  EXPECT_TRUE(contains(doc.at("hardware_counters").at("read_by").get<std::string>(), "--counters"));
  const Outcome t = run({"devices"}, cwd.path());
  ASSERT_EQ(t.rc, 0) << describe(t);
  EXPECT_FALSE(contains(t.out, "not implemented")) << t.out;
  EXPECT_TRUE(contains(t.out, "hardware FLOP counters: CUPTI Range Profiler")) << t.out;
}

// --gemm-candidates: 1..64; on the cpu accepted and without effect (its GEMMs are OpenBLAS
// calls, no algorithm to choose), recorded as null there; bad values one line, exit 2, for
// measure and for sweep (which forwards measure's run options to every point).
const std::vector<std::string> kTinyCpu = {"--model", "gpt3-175b", "--width", "1/96", "--seq", "64", "--repeats", "1",
                                           "--warmup", "0", "--no-ceiling", "--backend", "cpu", "--format", "json"};

std::vector<std::string> plus(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TEST(CliGemmCandidates, AcceptedWithoutEffectOnTheCpu) {
  TempDir cwd;
  const Outcome one = run(plus(plus({"measure", "-q"}, kTinyCpu), {"--gemm-candidates", "1", "-o", "one.json"}), cwd.path());
  ASSERT_EQ(one.rc, 0) << describe(one);
  const Outcome dflt = run(plus(plus({"measure", "-q"}, kTinyCpu), {"-o", "default.json"}), cwd.path());
  ASSERT_EQ(dflt.rc, 0) << describe(dflt);
  const auto a = nlohmann::json::parse(slurp(cwd / "one.json")), b = nlohmann::json::parse(slurp(cwd / "default.json"));
  EXPECT_TRUE(a.at("settings").at("gemm_candidates").is_null()) << a.at("settings").dump();
  EXPECT_TRUE(b.at("settings").at("gemm_candidates").is_null());
  ASSERT_EQ(a.at("ops").size(), b.at("ops").size());
  for (size_t i = 0; i < a.at("ops").size(); ++i)
    EXPECT_EQ(a.at("ops")[i].at("counted_flops"), b.at("ops")[i].at("counted_flops")) << i;
  EXPECT_TRUE(a.at("prepared").is_null() || !a.at("prepared").contains("gemm_algorithms"));
}

TEST(CliGemmCandidates, BadValuesAreOneLineAndExitTwo) {
  TempDir cwd;
  std::vector<BadCase> cases;
  for (const char* bad : {"0", "-1", "65", "x", "1.5", ""})
    cases.push_back({std::string("measure --gemm-candidates '") + bad + "'",
                     plus(plus({"measure"}, kTinyCpu), {"--gemm-candidates", bad}), "--gemm-candidates"});
  cases.push_back({"sweep --gemm-candidates 0",
                   {"sweep", "--widths", "1/96", "--batches", "1", "--out-dir", "out", "--backend", "cpu",
                    "--gemm-candidates", "0"},
                   "--gemm-candidates"});
  for (const auto& c : cases) expect_usage_error(c, cwd.path(), cwd.path());
}

}  // namespace
