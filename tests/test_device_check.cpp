// The GPU machine's limits, checked without a GPU (ctest label cli): scripts/device-check.sh is
// one call whose --plan totals at most 540 s with the headline first; on a machine where
// nvidia-smi fails it finishes promptly, records every GPU step as failed or skipped and leaves
// at most 8 files in $OUT, summary.txt and device-check.tgz among them; on a GPU machine played
// by fakes it keeps its deadline, skips what has no time, finds the tools outside PATH and
// reports their refusals; its suite list names real suites; the bundle made from this build
// (scripts/device-bundle.sh) is at most 60 MiB, carries no glibc or CUDA library and runs with
// its modes stripped; scripts/find-flopscope.sh resolves a library ldd reports missing (and
// CUPTI's libnvperf) for flopscope's processes only, added when it starts, after a tool in front
// has set its own path; `flopscope devices` says what is true of the counters.
#include <gtest/gtest.h>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <map>
#include <set>
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

// The steps, from --plan: name -> limit (s), in plan order; and the printed total.
struct Plan {
  std::vector<std::pair<std::string, int>> steps;
  int total = -1;
  int index(const std::string& n) const {
    for (size_t i = 0; i < steps.size(); ++i)
      if (steps[i].first == n) return static_cast<int>(i);
    ADD_FAILURE() << "no step " << n;
    return -1;
  }
};

Plan plan_of(const std::vector<std::pair<std::string, std::string>>& env = {}) {
  TempDir cwd;
  RunOptions o;
  o.env = env;
  const Outcome r = run_program(kBash, {script("device-check.sh"), "--plan"}, cwd.path(), o);
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

std::string path_with(const std::string& first) { return first + ":" + (std::getenv("PATH") ? std::getenv("PATH") : ""); }

// An executable script at dir/name.
void tool(const std::string& dir, const std::string& name, const std::string& body) {
  spit(dir + "/" + name, "#!/bin/bash\n" + body);
  fs::permissions(dir + "/" + name, fs::perms::owner_all);
}

// A folder holding an nvidia-smi that fails, as on a machine without a GPU or driver.
void fake_failing_nvidia_smi(const TempDir& dir) {
  tool(dir.path(), "nvidia-smi", "echo 'NVIDIA-SMI has failed: no driver (fake, tests/test_device_check.cpp)' >&2\nexit 9\n");
}

// summary.txt: step -> status, and step -> its whole line.
std::map<std::string, std::string> statuses(const std::string& summary, const Plan& plan,
                                            std::map<std::string, std::string>* rows = nullptr) {
  std::map<std::string, std::string> s;
  for (const auto& l : lines_of(summary)) {
    const auto w = words_of(l);
    if (w.size() < 2) continue;
    for (const auto& [name, limit] : plan.steps)
      if (w[0] == name) {
        s[name] = w[1];
        if (rows) (*rows)[name] = l;
      }
  }
  return s;
}

// This build's tree: FLOPSCOPE_BIN is <build>/src/flopscope.
std::string build_dir() { return fs::path(FLOPSCOPE_BIN).parent_path().parent_path().string(); }

// The test binary itself: the device check runs its Gpu* suites.
std::string this_test_binary() { return fs::read_symlink("/proc/self/exe").string(); }

// One step of the check alone, as the check runs it (its internal --step call), in `work`
// (which gets state/ and the step's log, result and refusals).
Outcome run_step(const std::string& step, const TempDir& work, std::vector<std::pair<std::string, std::string>> env) {
  fs::create_directories(work / "state");
  env.emplace_back("FSDC_WORK", work.path());
  env.emplace_back("FSDC_END", std::to_string(std::time(nullptr) + 60));
  RunOptions o;
  o.env = std::move(env);
  return run_program(kBash, {"-c", "\"$0\" --step " + step + " >\"$FSDC_WORK/" + step + ".log\" 2>&1", script("device-check.sh")},
                     work.path(), o);
}

// One call holds the headline first: the gate, then the full-width layer with counters, the
// counters' own check and the ncu cross-check, all within 540 s of limits (one call may run 600 s).
TEST(CliDeviceCheck, ThePlanIsOneCallWithTheHeadlineFirst) {
  const Plan p = plan_of();
  ASSERT_GE(p.steps.size(), 8u);
  int sum = 0;
  for (const auto& [name, limit] : p.steps) {
    EXPECT_GT(limit, 0) << name;
    sum += limit;
  }
  EXPECT_EQ(p.total, sum) << "the total line adds up the step limits";
  EXPECT_LE(p.total, kMaxPlanSeconds);
  EXPECT_EQ(p.steps.at(0).first, "nvidia-smi");
  EXPECT_EQ(p.steps.at(1).first, "libraries");
  EXPECT_EQ(p.steps.at(2).first, "devices");
  EXPECT_EQ(p.steps.at(3).first, "measure-175b");
  const std::vector<std::string> order = {"measure-175b", "counters",   "ncu-crosscheck", "measure-1_8-fp8",
                                          "measure-moe",  "gpu-suites", "graph-replay",   "memcheck"};
  for (size_t i = 1; i < order.size(); ++i) EXPECT_LT(p.index(order[i - 1]), p.index(order[i])) << order[i];
  // The time scale (for tests) scales every limit.
  const Plan tenth = plan_of({{"FLOPSCOPE_CHECK_TIME_SCALE", "0.1"}});
  ASSERT_EQ(tenth.steps.size(), p.steps.size());
  EXPECT_LE(tenth.total, p.total / 10 + static_cast<int>(p.steps.size()));
}

TEST(CliDeviceCheck, BadArgumentsExitTwoWithOneLine) {
  TempDir cwd;
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--part", "1"}, {"--bogus"}, {"--out"}, {"--deadline", "0"}, {"--deadline", "x"},
        {"--deadline"}}) {
    std::vector<std::string> a = {script("device-check.sh")};
    a.insert(a.end(), args.begin(), args.end());
    const Outcome r = run_program(kBash, a, cwd.path());
    EXPECT_EQ(r.rc, 2) << describe(r);
    EXPECT_EQ(count_lines(r.err), 1u) << describe(r);
    EXPECT_TRUE(contains(r.err, "device-check: ")) << describe(r);
    EXPECT_TRUE(cwd.names().empty());
  }
}

// Without a GPU: prompt, every GPU step failed or skipped, at most 8 files in $OUT.
TEST(CliDeviceCheck, WithoutAGpuFinishesPromptlyAndRecordsEveryGpuStepFailedOrSkipped) {
  TempDir fake;
  fake_failing_nvidia_smi(fake);
  const Plan plan = plan_of();
  TempDir out, cwd;
  RunOptions o;
  o.env = {{"PATH", path_with(fake.path())},
           {"OUT", out.path()},
           {"FLOPSCOPE_BIN", FLOPSCOPE_BIN},
           {"FLOPSCOPE_TESTS", this_test_binary()}};
  const auto t0 = std::chrono::steady_clock::now();
  const Outcome r = run_program(kBash, {script("device-check.sh")}, cwd.path(), o);
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
  EXPECT_TRUE(contains(summary, "NVIDIA-SMI has failed")) << "nvidia-smi's own words\n" << summary;
  EXPECT_TRUE(contains(summary, "runtime: ")) << summary;
  EXPECT_TRUE(contains(summary, "/proc/version: ")) << summary;

  // The tarball holds the logs of the steps that ran and the summary.
  const Outcome t = run_program(kBash, {"-c", "tar -tzf \"$0\"", out / "device-check.tgz"}, cwd.path());
  EXPECT_EQ(t.rc, 0) << describe(t);
  for (const char* f : {"/nvidia-smi.log", "/libraries.log", "/devices.log", "/summary.txt", "/environment.txt"})
    EXPECT_TRUE(contains(t.out, f)) << f << "\n" << t.out;
}

// A GPU machine played by fakes, its limits scaled to a tenth and a deadline of 20 s: an
// nvidia-smi that hangs 5 s (killed at its limit; the check goes on, and calls it once), a
// flopscope and a test binary that take 40% of each step's limit, an ncu and a
// compute-sanitizer outside PATH (found in $CUDA_HOME/bin) that refuse as under gVisor. The
// call ends inside its deadline; a step whose limit is more than the time left reads "skipped:
// no time"; the tarball holds every step that ran; the refusals are in the summary in the tools'
// own words; dropped metrics are a warning.
TEST(CliDeviceCheck, OnAFakeGpuMachineOneCallKeepsItsDeadline) {
  TempDir fake, cuda, out, cwd, state;
  const std::string share = "sleep $(awk -v l=\"${FSDC_LIMIT:-5}\" 'BEGIN {print 0.4 * l}')\n";
  tool(fake.path(), "nvidia-smi", "echo call >>'" + state / "smi-calls" + "'\nsleep 5\necho 'Product Name : Fake H200'\n");
  // flopscope: --version, devices, measure (a JSON with counters measured, bf16 read dense).
  tool(state.path(), "flopscope", R"SH(out=""
prev=""
for a in "$@"; do [[ $prev == -o ]] && out=$a; prev=$a; done
case $1 in
  --version) echo "flopscope fake"; exit 0 ;;
  devices)
    [[ -n $out ]] && echo '{"cpu": {"name": "Fake Xeon"}, "gpus": [{"name": "Fake H200", "compute_capability": "9.0"}], "gpu_probe": null}' >"$out"
    echo "device 0: Fake H200"; exit 0 ;;
  measure)
    )SH" + share + R"SH(
    [[ -n $out ]] && cat >"$out" <<'J'
{"verification": {"passed": true}, "totals": {"total": {"time_ms": {"median": 40.0}}},
 "counters": {"status": "measured", "chip": "GH100", "arch": "sm_90", "passes": 12,
   "dropped_metrics": [{"name": "sm__ops_path_tensor_src_fp8.sum", "why": "fake"}]},
 "ops": [{"name": "fwd.qkv", "kind": "gemm", "measured_over_analytic": 1.02,
   "measured": {"raw": {"sm__ops_path_tensor_src_bf16_dst_fp32_sparsity_off.sum": 1},
     "complete": true, "tensor_flops_by_dtype": {"bf16": 1.0},
     "formula": {"tensor_basis": {"bf16": "dense"}}, "not_counted_dtypes": []}}]}
J
    exit 0 ;;
esac
exit 0
)SH");
  // The test binary: a suite list led by gtest_main's own line; each suite sleeps its share,
  // skips a test and names it twice, as gtest does.
  tool(state.path(), "flopscope_tests", R"SH(if [[ " $* " == *" --gtest_list_tests "* ]]; then
  printf 'Running main() from gtest_main.cc\nGpuFake.\n  one\nGpuShapes/GpuGemm.\n  a  # GetParam() = x\nGpuCounters.\n  c\nGpuMeasure.\n  e\n'
  exit 0
fi
sleep 0.3
echo "[  SKIPPED ] GpuFake.one (0 ms)"
echo "[  SKIPPED ] GpuFake.one"
exit 0
)SH");
  fs::create_directories(cuda / "bin");
  tool(cuda / "bin", "ncu", "echo '==ERROR== LibraryNotLoaded: the profiler library could not be loaded (fake)' >&2\nexit 1\n");
  tool(cuda / "bin", "compute-sanitizer",
       "echo '========= Error: Device not supported. (fake)' >&2\nexit 1\n");

  const Plan plan = plan_of({{"FLOPSCOPE_CHECK_TIME_SCALE", "0.1"}});
  RunOptions o;
  o.env = {{"PATH", path_with(fake.path())},     {"OUT", out.path()},
           {"FLOPSCOPE_BIN", state / "flopscope"}, {"FLOPSCOPE_TESTS", state / "flopscope_tests"},
           {"CUDA_HOME", cuda.path()},           {"FLOPSCOPE_CHECK_TIME_SCALE", "0.1"},
           {"NCU", ""},                          {"COMPUTE_SANITIZER", ""}};
  const int deadline = 20;
  const auto t0 = std::chrono::steady_clock::now();
  const Outcome r =
      run_program(kBash, {script("device-check.sh"), "--deadline", std::to_string(deadline)}, cwd.path(), o);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(seconds, deadline + 8.0) << describe(r);
  EXPECT_EQ(r.rc, 1) << describe(r);  // ncu and memcheck refused, late steps had no time

  const std::string summary = slurp(out / "summary.txt");
  std::printf("%s", summary.c_str());
  std::map<std::string, std::string> rows;
  const auto st = statuses(summary, plan, &rows);
  ASSERT_EQ(st.size(), plan.steps.size()) << summary;
  EXPECT_EQ(st.at("nvidia-smi"), "timeout") << summary;
  EXPECT_EQ(slurp(state / "smi-calls"), "call\n") << "nvidia-smi runs once";
  for (const char* ok : {"libraries", "devices", "measure-175b", "counters"}) EXPECT_EQ(st.at(ok), "ok") << ok << "\n" << summary;
  EXPECT_TRUE(contains(rows.at("devices"), "1 GPU(s): Fake H200, compute capability 9.0")) << rows.at("devices");
  EXPECT_TRUE(contains(summary, "gpu: Fake-H200")) << "named by the runtime where nvidia-smi named none\n" << summary;
  EXPECT_TRUE(contains(rows.at("counters"), "warning: 1 metric(s) dropped")) << rows.at("counters");
  EXPECT_TRUE(contains(rows.at("counters"), "bf16 read as dense")) << rows.at("counters");
  // ncu's 10 s fit the time left with about a second to spare; on a loaded machine the fake steps
  // before it (sleeps and process starts) can take that second, and then it is the deadline at
  // work (checked below with the other no-time skips), not a refusal.
  if (!contains(rows.at("ncu-crosscheck"), "skipped: no time")) {
    EXPECT_EQ(st.at("ncu-crosscheck"), "failed") << summary;
    EXPECT_TRUE(contains(summary, "ncu: ==ERROR== LibraryNotLoaded")) << "ncu's own words\n" << summary;
  }
  // A step runs only when its limit fits the time left at its turn; some step here did not fit
  // (gpu-suites could not, even were every other step instant: 3 + 4.4 + 0.4 + 4 + 1.6 + 1.6 s of
  // sleeps and timeouts leave 5 s of 20 against its 7).
  int no_time = 0;
  for (const auto& [name, limit] : plan.steps) {
    const std::string& row = rows.at(name);
    const size_t at = row.find("skipped: no time (");
    if (at == std::string::npos) continue;
    ++no_time;
    const int left = std::stoi(row.substr(at + 18));
    EXPECT_GT(limit, left) << row;
  }
  EXPECT_GE(no_time, 1) << summary;
  EXPECT_TRUE(contains(rows.at("gpu-suites"), "skipped: no time")) << summary;

  // The tarball: every step that ran left its log; ncu was found outside PATH.
  const Outcome t = run_program(kBash, {"-c", "tar -tzf \"$0\"", out / "device-check.tgz"}, cwd.path());
  ASSERT_EQ(t.rc, 0) << describe(t);
  for (size_t i = 0; i < plan.steps.size(); ++i) {
    const std::string& name = plan.steps[i].first;
    EXPECT_EQ(contains(t.out, "/" + name + ".log"), !contains(rows.at(name), "skipped: no time")) << name << "\n" << t.out;
  }
  TempDir x;
  ASSERT_EQ(std::system(("tar -xzf '" + out / "device-check.tgz" + "' -C '" + x.path() + "'").c_str()), 0);
  if (!contains(rows.at("ncu-crosscheck"), "skipped: no time")) {  // it ran (a loaded machine may skip it, above)
    EXPECT_TRUE(contains(slurp(x / "device-check/ncu-crosscheck.log"), "ncu: " + cuda / "bin/ncu"))
        << slurp(x / "device-check/ncu-crosscheck.log");
  }
}

// The gpu-suites step alone (the check's own internal --step call), on a test binary whose
// list is led by gtest_main's "Running main() from ..." line and which names its skipped test
// twice, as gtest does (as it runs, "(N ms)", and in its closing list): three suites run, none
// of them "Running", and the skipped test is counted once.
TEST(CliDeviceCheck, TheSuitesStepRunsRealSuitesAndCountsASkipOnce) {
  TempDir state, work;
  fs::create_directories(work / "state");
  tool(state.path(), "flopscope_tests", R"SH(if [[ " $* " == *" --gtest_list_tests "* ]]; then
  printf 'Running main() from gtest_main.cc\nGpuFake.\n  one\nGpuShapes/GpuGemm.\n  a  # GetParam() = x\nGpuCounters.\n  c\nGpuMeasure.\n  e\n'
  exit 0
fi
echo "ran $*" >>"$FSDC_WORK/ran"
echo "[  SKIPPED ] GpuFake.one (0 ms)"
echo "[  SKIPPED ] GpuFake.one"
exit 0
)SH");
  RunOptions o;
  o.env = {{"FSDC_WORK", work.path()},
           {"FSDC_TESTS", state / "flopscope_tests"},
           {"FLOPSCOPE_BIN", FLOPSCOPE_BIN}};
  const Outcome r = run_step("gpu-suites", work, o.env);
  EXPECT_EQ(r.rc, 0) << describe(r) << slurp(work / "gpu-suites.log");
  EXPECT_EQ(slurp(work / "gpu-suites.result"), "3/3 suites passed; 1 tests skipped\n") << slurp(work / "gpu-suites.log");
  const std::string ran = slurp(work / "ran");
  EXPECT_EQ(count_lines(ran), 3u) << ran;
  for (const char* suite : {"GpuFake.*", "GpuShapes/GpuGemm.*", "GpuMeasure.*"}) EXPECT_TRUE(contains(ran, suite)) << ran;
  EXPECT_FALSE(contains(ran, "Running")) << ran;
  EXPECT_FALSE(contains(ran, "GpuCounters")) << "the counters step's suite" << ran;
}

// The headline's counters run fails (as CUPTI may in a VM: here the fake flopscope errs with
// --counters auto): the layer is measured again without counters, so timing and verification
// come back; the step is not ok, and the summary's refusals say why, in flopscope's words.
TEST(CliDeviceCheck, TheHeadlineIsMeasuredAgainWithoutCountersWhenTheCounterRunFails) {
  TempDir state, work;
  tool(state.path(), "flopscope", R"SH(out=""
prev=""
for a in "$@"; do [[ $prev == -o ]] && out=$a; prev=$a; done
if [[ " $* " == *" --counters auto "* ]]; then
  echo "flopscope: error: cuptiRangeProfilerPushRange: CUDA_ERROR_UNKNOWN (fake)" >&2; exit 1
fi
echo '{"verification": {"passed": true}, "totals": {"total": {"time_ms": {"median": 40.0}}}, "counters": {"status": "off"}}' >"$out"
)SH");
  const Outcome r = run_step("measure-175b", work, {{"FLOPSCOPE_BIN", state / "flopscope"}, {"FSDC_TESTS", ""}});
  EXPECT_EQ(r.rc, 1) << describe(r) << slurp(work / "measure-175b.log");
  const std::string result = slurp(work / "measure-175b.result");
  EXPECT_TRUE(contains(result, "with counters: no result JSON (rc=1: flopscope: error: cuptiRangeProfilerPushRange")) << result;
  EXPECT_TRUE(contains(result, "again without counters: verification passed; layer 40 ms")) << result;
  EXPECT_TRUE(contains(slurp(work / "measure-175b.refused"), "CUPTI Range Profiler (measure --counters auto)"))
      << slurp(work / "measure-175b.refused");
  EXPECT_TRUE(fs::exists(work / "measure-175b.json"));
}

// The counters step fails when the headline's GEMMs lost their bf16 terms, and when a GEMM
// reads outside 0.999-1.5 of its analytic FLOPs; dropped metrics alone only warn.
TEST(CliDeviceCheck, TheCountersStepJudgesTheHeadlinesGemms) {
  TempDir state;
  tool(state.path(), "flopscope_tests", R"SH(if [[ " $* " == *" --gtest_list_tests "* ]]; then printf 'GpuCounters.\n  a\n'; fi
exit 0
)SH");
  auto with = [&](const std::string& op) {
    TempDir work;
    spit(work / "measure-175b.json",
         R"({"counters": {"status": "measured", "chip": "GH100", "arch": "sm_90", "passes": 9,
             "dropped_metrics": [{"name": "x.sum", "why": "fake"}]}, "ops": [)" + op + "]}");
    const Outcome r = run_step("counters", work, {{"FLOPSCOPE_BIN", FLOPSCOPE_BIN}, {"FSDC_TESTS", state / "flopscope_tests"}});
    return std::make_pair(r.rc, slurp(work / "counters.result"));
  };
  const std::string good_measured = R"("measured": {"complete": true, "tensor_flops_by_dtype": {"bf16": 1.0},
      "formula": {"tensor_basis": {"bf16": "dense"}}, "not_counted_dtypes": []})";
  const auto ok = with(R"({"name": "fwd.qkv", "kind": "gemm", "measured_over_analytic": 1.016, )" + good_measured + "}");
  EXPECT_EQ(ok.first, 0) << ok.second;
  EXPECT_TRUE(contains(ok.second, "bf16 read as dense")) << ok.second;
  EXPECT_TRUE(contains(ok.second, "warning: 1 metric(s) dropped")) << ok.second;
  const auto refused = with(R"({"name": "fwd.qkv", "kind": "gemm", "measured": {"complete": false,
      "tensor_flops_by_dtype": {"bf16": null}, "not_counted_dtypes": [{"dtype": "bf16", "why": "refused"}]}})");
  EXPECT_NE(refused.first, 0) << refused.second;
  EXPECT_TRUE(contains(refused.second, "fwd.qkv: every bf16 term refused")) << refused.second;
  const auto zero = with(R"({"name": "fwd.qkv", "kind": "gemm", "measured_over_analytic": 0.0, )" + good_measured + "}");
  EXPECT_NE(zero.first, 0) << zero.second;
  EXPECT_TRUE(contains(zero.second, "outside 0.999-1.5")) << zero.second;
  const auto unmeasured = with(R"({"name": "fwd.qkv", "kind": "gemm"})");
  EXPECT_NE(unmeasured.first, 0) << unmeasured.second;
  EXPECT_TRUE(contains(unmeasured.second, "fwd.qkv: not measured")) << unmeasured.second;
}

// memcheck finds compute-sanitizer outside PATH ($CUDA_HOME/bin) and, when it refuses the
// device (as under gVisor), says so in its words among the refusals.
TEST(CliDeviceCheck, MemcheckFindsComputeSanitizerAndReportsItsRefusal) {
  TempDir cuda, work;
  fs::create_directories(cuda / "bin");
  tool(cuda / "bin", "compute-sanitizer", "echo '========= Error: Device not supported. (fake)' >&2\nexit 1\n");
  fs::create_directories(work / "state");
  spit(work / "state/cc", "90\n");
  const Outcome r = run_step("memcheck", work,
                             {{"FLOPSCOPE_BIN", FLOPSCOPE_BIN}, {"FSDC_TESTS", ""}, {"CUDA_HOME", cuda.path()},
                              {"COMPUTE_SANITIZER", ""}});
  EXPECT_EQ(r.rc, 1) << describe(r);
  const std::string log = slurp(work / "memcheck.log");
  EXPECT_TRUE(contains(log, "compute-sanitizer: " + cuda / "bin/compute-sanitizer")) << log;
  EXPECT_TRUE(contains(slurp(work / "memcheck.refused"), "compute-sanitizer: ========= Error: Device not supported"))
      << slurp(work / "memcheck.refused");
}

// The suites the check runs are real suites of the real test binary: none is gtest_main's own
// "Running main() from ..." line, the GEMM/layer/fp8/end-to-end suites are there, and
// GpuCounters is the counters step's alone.
TEST(CliDeviceCheck, ItsSuiteListNamesRealSuites) {
  TempDir cwd;
  const Outcome list = run_program(this_test_binary(), {"--gtest_list_tests"}, cwd.path());
  ASSERT_EQ(list.rc, 0) << describe(list);
  std::set<std::string> real;
  for (const auto& l : lines_of(list.out))
    if (!l.empty() && l[0] != ' ' && l.back() == '.') real.insert(l.substr(0, l.size() - 1));
    else if (!l.empty() && l[0] != ' ' && l.find(". ") != std::string::npos) real.insert(l.substr(0, l.find(". ")));
  const Outcome r =
      run_program(kBash, {script("device-check.sh"), "--list-suites", "--tests", this_test_binary()}, cwd.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  std::map<std::string, std::vector<std::string>> by_step;
  for (const auto& l : lines_of(r.out)) {
    const auto w = words_of(l);
    ASSERT_EQ(w.size(), 2u) << l;
    EXPECT_TRUE(real.count(w[1])) << w[1] << " is not a suite of the test binary";
    by_step[w[0]].push_back(w[1]);
  }
  EXPECT_FALSE(contains(r.out, "Running")) << r.out;
  auto has = [&](const std::string& step, const std::string& suite) {
    for (const auto& s : by_step[step])
      if (s == suite || (s.size() > suite.size() && s.compare(s.size() - suite.size() - 1, std::string::npos, "/" + suite) == 0))
        return true;
    return false;
  };
  for (const char* s : {"GpuGemm", "GpuLayer", "GpuFp8", "GpuMeasure", "GpuGraph"}) EXPECT_TRUE(has("gpu-suites", s)) << s;
  EXPECT_TRUE(has("counters", "GpuCounters"));
  EXPECT_FALSE(has("gpu-suites", "GpuCounters"));
  EXPECT_GT(by_step["gpu-suites"].size(), 5u) << "the kernel suites come first";
}

// The bundle made from this build: at most 60 MiB; the binaries, the scripts and only the
// libraries a bare GPU machine may lack; with every file's mode stripped (as carrying may do),
// the command device-bundle.sh prints runs its own check, which finds its own binaries.
TEST(CliDeviceBundle, FromThisBuildFitsTheCarryLimitAndRunsWithItsModesStripped) {
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
                        "scripts/flopscope-launch.sh", "scripts/ncu-crosscheck.sh", "MANIFEST.txt"})
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

  // The printed command, run as the device tool runs it, on a bundle whose every mode is gone.
  const std::string marker = "command=\"";
  const size_t at = r.err.find(marker);
  ASSERT_NE(at, std::string::npos) << r.err;
  const std::string command = r.err.substr(at + marker.size(), r.err.find('"', at + marker.size()) - at - marker.size());
  EXPECT_EQ(command, "bash " + bundle + "/scripts/device-check.sh");
  for (const auto& e : fs::recursive_directory_iterator(bundle))
    if (e.is_regular_file()) fs::permissions(e.path(), fs::perms::owner_read | fs::perms::owner_write);
  fake_failing_nvidia_smi(fake);
  TempDir out;
  RunOptions o;
  o.env = {{"PATH", path_with(fake.path())}, {"OUT", out.path()}, {"FLOPSCOPE_BIN", ""}, {"FLOPSCOPE_TESTS", ""}};
  const Outcome c = run_program(kBash, {"-c", command}, tmp.path(), o);
  EXPECT_EQ(c.rc, 1) << describe(c);
  const std::string summary = slurp(out / "summary.txt");
  EXPECT_TRUE(contains(summary, "flopscope: " + bundle + "/flopscope")) << summary;
  EXPECT_TRUE(contains(summary, "libraries        ok")) << summary;
  EXPECT_TRUE(contains(summary, "devices          failed")) << summary;  // it ran, and saw no GPU
}

// tmp/bundle/flopscope built from `main_c`, linked to tmp/bundle/lib/libfsprobe.so.1 (whose
// fs_probe() returns 42) with no RPATH: ldd reports the library missing until its folder is on
// the path.
bool build_probe(const TempDir& tmp, const std::string& main_c) {
  spit(tmp / "probe.c", "int fs_probe(void) { return 42; }\n");
  spit(tmp / "main.c", main_c);
  fs::create_directories(tmp / "bundle/lib");
  const std::string build = "cd '" + tmp.path() +
                            "' && cc -shared -fPIC -Wl,-soname,libfsprobe.so.1 -o bundle/lib/libfsprobe.so.1 probe.c "
                            "&& ln -s libfsprobe.so.1 bundle/lib/libfsprobe.so && cc -o bundle/flopscope main.c "
                            "-Lbundle/lib -lfsprobe && rm bundle/lib/libfsprobe.so";
  const bool ok = std::system(build.c_str()) == 0;
  EXPECT_TRUE(ok) << build;
  return ok;
}

// A library ldd reports missing is found in the bundle's lib/ and given to flopscope's own
// process alone: the sourcing shell's LD_LIBRARY_PATH stays as it was. Found nowhere, sourcing
// fails with one line naming it.
TEST(CliFindFlopscope, ResolvesAMissingLibraryForFlopscopeOnly) {
  TempDir tmp;
  if (std::system("command -v cc >/dev/null 2>&1") != 0) GTEST_SKIP() << "no C compiler to build the probe library";
  ASSERT_TRUE(build_probe(tmp, "#include <stdio.h>\nint fs_probe(void);\nint main(void) { printf(\"probe %d\\n\", fs_probe()); return 0; }\n"));

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

// A tool in front of flopscope (ncu, compute-sanitizer) sets its own LD_LIBRARY_PATH before it
// starts the binary: flopscope_cmd adds the bundle's folder when the binary starts (the
// launcher), so the binary sees both, the tool's kept.
TEST(CliFindFlopscope, TheLibraryPathIsAddedWhenTheBinaryStartsUnderATool) {
  TempDir tmp;
  if (std::system("command -v cc >/dev/null 2>&1") != 0) GTEST_SKIP() << "no C compiler to build the probe library";
  ASSERT_TRUE(build_probe(tmp, "#include <stdio.h>\n#include <stdlib.h>\nint fs_probe(void);\nint main(void) { "
                              "printf(\"probe %d %s\\n\", fs_probe(), getenv(\"LD_LIBRARY_PATH\")); return 0; }\n"));
  tool(tmp.path(), "fake-tool", "export LD_LIBRARY_PATH=/fake/tool/lib\nexec \"$@\"\n");
  const std::string snippet = "source '" + script("find-flopscope.sh") + "' || exit 1; '" + tmp / "fake-tool" +
                              "' \"${flopscope_cmd[@]}\"";
  RunOptions o;
  o.env = {{"FLOPSCOPE_BIN", tmp / "bundle/flopscope"}, {"LD_LIBRARY_PATH", ""}};
  const Outcome r = run_program(kBash, {"-c", snippet}, tmp.path(), o);
  ASSERT_EQ(r.rc, 0) << describe(r);
  EXPECT_EQ(r.out, "probe 42 " + tmp.path() + "/bundle/lib:/fake/tool/lib\n") << describe(r);
}

// CUPTI's libnvperf_host and libnvperf_target, which it opens at run time (ldd lists neither):
// found beside the libcupti the binary resolves; else found in the library folders, whose
// folder joins flopscope's path; else named, with a failure.
TEST(CliFindFlopscope, FindsCuptisNvperfLibraries) {
  TempDir tmp;
  if (std::system("command -v cc >/dev/null 2>&1") != 0) GTEST_SKIP() << "no C compiler to build the probe library";
  spit(tmp / "cupti.c", "int fs_cupti(void) { return 1; }\n");
  spit(tmp / "main.c", "int fs_cupti(void);\nint main(void) { return fs_cupti() - 1; }\n");
  fs::create_directories(tmp / "cuda/lib");
  fs::create_directories(tmp / "bundle/lib");
  const std::string build = "cd '" + tmp.path() +
                            "' && cc -shared -fPIC -Wl,-soname,libcupti.so.13 -o cuda/lib/libcupti.so.13 cupti.c "
                            "&& ln -s libcupti.so.13 cuda/lib/libcupti.so && cc -o bundle/flopscope main.c -Lcuda/lib "
                            "-lcupti -Wl,-rpath,'" + tmp.path() + "/cuda/lib' && rm cuda/lib/libcupti.so";
  ASSERT_EQ(std::system(build.c_str()), 0) << build;
  const std::string snippet = "source '" + script("find-flopscope.sh") +
                              "' || exit 1; flopscope_resolve_nvperf \"$FLOPSCOPE_BIN\"; rc=$?; "
                              "echo \"rc=$rc path=$FLOPSCOPE_LD_PATH note=$FLOPSCOPE_NVPERF_NOTE\"";
  RunOptions o;
  o.env = {{"FLOPSCOPE_BIN", tmp / "bundle/flopscope"}, {"LD_LIBRARY_PATH", ""}};
  auto run_it = [&] { return run_program(kBash, {"-c", snippet}, tmp.path(), o); };

  // The binary's own lib/ is searched first.
  spit(tmp / "bundle/lib/libnvperf_host.so", "");
  spit(tmp / "bundle/lib/libnvperf_target.so", "");
  const Outcome apart = run_it();
  EXPECT_TRUE(contains(apart.out, "rc=0 path=" + tmp.path() + "/bundle/lib note=libnvperf found apart")) << describe(apart);

  spit(tmp / "cuda/lib/libnvperf_host.so", "");
  spit(tmp / "cuda/lib/libnvperf_target.so", "");
  const Outcome beside = run_it();
  EXPECT_TRUE(contains(beside.out, "rc=0 path= note=libnvperf_host and libnvperf_target beside")) << describe(beside);

  // Neither ours: found in a folder of this machine's (its CUDA toolkit), or named as missing.
  for (const char* f : {"bundle/lib/libnvperf_host.so", "bundle/lib/libnvperf_target.so", "cuda/lib/libnvperf_host.so",
                        "cuda/lib/libnvperf_target.so"})
    fs::remove(tmp / f);
  const Outcome none = run_it();
  const bool named = contains(none.out, "rc=1 ") && contains(none.out, "libnvperf_host libnvperf_target not found");
  const bool elsewhere = contains(none.out, "rc=0 path=/") && !contains(none.out, "path=" + tmp.path());
  EXPECT_TRUE(named || elsewhere) << describe(none);
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
