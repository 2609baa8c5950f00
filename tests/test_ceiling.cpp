// The GEMM ceiling holds: an op that beats it by more than 5% is timed again at its own shape
// and the ceiling raised to that sustained rate; an op still above 100% is named in a note; a
// ceiling no op beats is left alone. A recording backend (wrapped_backend.hpp) reports a
// ceiling of our choosing and counts the op runs the check makes.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <string>
#include <thread>

#include "graph/graph.hpp"
#include "measure/ceiling.hpp"
#include "measure/measure.hpp"
#include "model/model.hpp"
#include "wrapped_backend.hpp"

namespace flopscope {
namespace {

LayerGraph graph_at(Fraction width, int64_t seq) {
  ModelConfig m = scale_width(preset("gpt3-175b"), width);
  return build_layer_graph(layer_shape(m, 1, seq), GraphOptions{});
}

class RecordingBackend : public testing_util::WrappedCpuBackend {
 public:
  explicit RecordingBackend(double ceiling_flops) : ceiling_(ceiling_flops) {}
  nlohmann::json gemm_ceiling(Precision, int64_t n) override {
    return {{"dtype", "fp32"}, {"n", n}, {"flops_per_s", ceiling_}, {"source", "test: a fixed figure"}};
  }
  void run(const Op& op) override {
    if (recording) ++runs[op.name];
    if (slow) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    inner.run(op);
  }
  bool recording = false, slow = false;
  std::map<std::string, int> runs;

 private:
  double ceiling_;
};

MeasureRun measure(Backend& b, const LayerGraph& g) {
  MeasureSettings s;
  s.warmup = 0;
  s.repeats = 3;
  return run_measure(b, g, s);
}

CeilingCheck quick() {
  CeilingCheck c;
  c.min_run_seconds = 0.01;
  return c;
}

// The fastest GEMM of the run, by its timed median.
std::string fastest_gemm(const LayerGraph& g, const MeasureRun& r) {
  std::string best;
  double rate = 0;
  for (size_t i = 0; i < g.ops.size(); ++i)
    if (g.ops[i].impl == OpImpl::gemm && g.ops[i].flops / r.op_ms[i].median() > rate) {
      rate = g.ops[i].flops / r.op_ms[i].median();
      best = g.ops[i].name;
    }
  return best;
}

TEST(Ceiling, AnOpThatBeatsItIsTimedAgainAtItsOwnShapeAndRaisesIt) {
  const LayerGraph g = graph_at(Fraction{1, 96}, 64);
  RecordingBackend be(1e3);  // 1 kFLOP/s: every GEMM beats it
  const MeasureRun r = measure(be, g);
  const auto ceiling = be.gemm_ceiling(Precision::fp32, 256);
  be.recording = true;
  const auto held = hold_ceiling(be, g, r, ceiling, quick());
  ASSERT_TRUE(held.contains("remeasured"));
  const auto& re = held.at("remeasured");
  // Every GEMM beats 1 kFLOP/s; after the first is timed again fewer may, and at most 3 are.
  ASSERT_GE(re.size(), 1u);
  ASSERT_LE(re.size(), 3u);
  // The first op timed again is the fastest, and only the ops it names ran, each many times.
  EXPECT_EQ(re[0].at("op").get<std::string>(), fastest_gemm(g, r));
  EXPECT_EQ(be.runs.size(), re.size());
  for (const auto& x : re) EXPECT_GE(be.runs.at(x.at("op").get<std::string>()), 1 + 3 + 5);  // sizing, 3 runs, 5 single calls
  EXPECT_DOUBLE_EQ(held.at("first_flops_per_s").get<double>(), 1e3);
  double best = 0;
  for (const auto& x : re)
    best = std::max({best, x.at("sustained_flops_per_s").get<double>(), x.at("best_call_flops_per_s").get<double>()});
  EXPECT_DOUBLE_EQ(held.at("flops_per_s").get<double>(), best);
  EXPECT_NE(held.at("source").get<std::string>().find("raised to the rate of"), std::string::npos);
}

TEST(Ceiling, WhatStillReadsAbove100PercentIsNamedInANote) {
  const LayerGraph g = graph_at(Fraction{1, 96}, 64);
  RecordingBackend be(1e3);
  const MeasureRun r = measure(be, g);
  be.slow = true;  // the ops run slower when timed again than they did in the layer
  be.recording = true;
  const auto held = hold_ceiling(be, g, r, be.gemm_ceiling(Precision::fp32, 256), quick());
  // Still above after each timing, the fastest op was timed `attempts` (3) times.
  ASSERT_TRUE(held.contains("remeasured"));
  const auto& first = held.at("remeasured").at(0);
  EXPECT_EQ(first.at("attempts").get<int>(), CeilingCheck{}.attempts);
  EXPECT_GE(be.runs.at(first.at("op").get<std::string>()), CeilingCheck{}.attempts * (1 + 3 + 5));
  ASSERT_TRUE(held.contains("note"));
  const std::string note = held.at("note").get<std::string>();
  EXPECT_NE(note.find(fastest_gemm(g, r)), std::string::npos) << note;
  EXPECT_NE(note.find("above 100% of the ceiling"), std::string::npos);
}

TEST(Ceiling, ACeilingNoOpBeatsIsLeftAlone) {
  const LayerGraph g = graph_at(Fraction{1, 96}, 64);
  RecordingBackend be(1e30);
  const MeasureRun r = measure(be, g);
  const auto ceiling = be.gemm_ceiling(Precision::fp32, 256);
  be.recording = true;
  EXPECT_EQ(hold_ceiling(be, g, r, ceiling, quick()), ceiling);
  EXPECT_TRUE(be.runs.empty());
  EXPECT_TRUE(hold_ceiling(be, g, r, nullptr, quick()).is_null());  // --no-ceiling
}

// Like with like: the ceiling is useful FLOPs per second, so an op whose hardware counters
// read its tiles' padding (here 1.5x its analytic FLOPs) is compared by its useful rate. At a
// ceiling 1% above the fastest GEMM's useful rate nothing is timed again; comparing the padded
// count would have read 148% and timed it.
TEST(Ceiling, PaddedHardwareCountsAreNotComparedWithAUsefulCeiling) {
  const LayerGraph g = graph_at(Fraction{1, 96}, 64);
  RecordingBackend probe(1e30);
  MeasureRun r = measure(probe, g);
  double fastest = 0;
  for (size_t i = 0; i < g.ops.size(); ++i)
    if (g.ops[i].impl == OpImpl::gemm) fastest = std::max(fastest, g.ops[i].flops / (r.op_ms[i].median() / 1e3));
  // As a counter run records it: no software counts, the hardware's (padded) per op.
  r.counted_flops.clear();
  nlohmann::json ops = nlohmann::json::object();
  for (const Op& op : g.ops) ops[op.name] = {{"flops", 1.5 * op.flops}};
  r.hardware_counters = {{"status", "measured"}, {"ops", ops}};
  RecordingBackend be(1.01 * fastest);
  const auto ceiling = be.gemm_ceiling(Precision::fp32, 256);
  be.recording = true;
  const auto held = hold_ceiling(be, g, r, ceiling, quick());
  EXPECT_EQ(held, ceiling) << held.dump(1);
  EXPECT_TRUE(be.runs.empty());
}

TEST(Ceiling, SizeIsNearTheLayersLargestGemmOnTheCpu) {
  // 3/96 of gpt3-175b at seq 2048: FFN up is 2048 x 1536 x 384, cube root 1065 -> 1024.
  EXPECT_EQ(ceiling_size(graph_at(Fraction{3, 96}, 2048), "cpu"), 1024);
  EXPECT_EQ(ceiling_size(graph_at(Fraction{1, 96}, 64), "cpu"), 256);      // clamped up
  EXPECT_EQ(ceiling_size(graph_at(Fraction{96, 96}, 2048), "cpu"), 2048);  // clamped down
  EXPECT_EQ(ceiling_size(graph_at(Fraction{1, 96}, 64), "cuda"), 8192);
}

}  // namespace
}  // namespace flopscope
