// Timing modes of the measurement loop, on the CPU: input sets (copies of the inputs and
// weights rotated between repeats) and recorded replays (what --cuda-graph does with a CUDA
// graph), the latter through a test backend that records ops and timeline points instead of
// running them, the way stream capture does.
#include <gtest/gtest.h>

#include <functional>
#include <vector>

#include "backend/cpu/cpu_backend.hpp"
#include "backend/verify.hpp"
#include "graph/graph.hpp"
#include "measure/measure.hpp"
#include "model/model.hpp"
#include "util/error.hpp"
#include "wrapped_backend.hpp"

namespace flopscope {
namespace {

LayerGraph graph_with_sets(int64_t sets, bool head = false) {
  ModelConfig m = scale_width(preset("gpt3-175b"), Fraction{1, 96});
  GraphOptions o;
  o.input_sets = sets;
  o.include_head = head;
  LayerShape s = layer_shape(m, 1, 32);
  s.vocab = 100;
  return build_layer_graph(s, o);
}

double filled_bytes(const LayerGraph& g) {
  double b = 0;
  for (const auto& t : g.tensors)
    if (is_filled(t.role)) b += static_cast<double>(t.numel()) * 4;
  return b;
}

TEST(InputSets, MemoryCountsOneCopyOfTheFilledTensorsPerSet) {
  const LayerGraph one = graph_with_sets(1, true), three = graph_with_sets(3, true);
  EXPECT_DOUBLE_EQ(three.tensor_bytes() - one.tensor_bytes(), 2 * filled_bytes(one));
  CpuBackend<float> a, b;
  a.allocate(one);
  b.allocate(three);
  EXPECT_DOUBLE_EQ(b.allocated_bytes() - a.allocated_bytes(), 2 * filled_bytes(one));
  EXPECT_DOUBLE_EQ(b.allocated_bytes(), three.tensor_bytes());
  GraphOptions bad;
  bad.input_sets = 0;
  EXPECT_THROW(build_layer_graph(one.shape, bad), Error);
}

TEST(InputSets, EachSetHasItsOwnSeedAndSetZeroIsTheSingleSetRun) {
  const LayerGraph one = graph_with_sets(1, true), three = graph_with_sets(3, true);
  CpuBackend<float> single, rotating, seeded;
  single.allocate(one);
  rotating.allocate(three);
  seeded.allocate(one);
  single.fill(7);
  rotating.fill(7);
  seeded.fill(input_set_seed(7, 2));
  for (const auto& t : one.tensors) {
    if (!is_filled(t.role)) continue;
    EXPECT_EQ(rotating.data(t.name), single.data(t.name)) << t.name << ": set 0 is the run's seed";
  }
  rotating.use_input_set(2);
  for (const auto& t : one.tensors) {
    if (!is_filled(t.role)) continue;
    EXPECT_EQ(rotating.data(t.name), seeded.data(t.name)) << t.name << ": set 2 is input_set_seed(seed, 2)";
    if (t.role != TensorRole::index) {
      EXPECT_NE(rotating.data(t.name), single.data(t.name)) << t.name;
    }
  }
  // Outputs are shared by every set: switching sets leaves them alone.
  rotating.data("y")[0] = 42;
  rotating.use_input_set(1);
  EXPECT_EQ(rotating.data("y")[0], 42);
  rotating.use_input_set(0);
  EXPECT_EQ(rotating.data("x"), single.data("x"));
  EXPECT_THROW(rotating.use_input_set(3), Error);
  EXPECT_THROW(rotating.use_input_set(-1), Error);
}

TEST(InputSets, EverySetComputesItsOwnLayerAndVerifies) {
  const LayerGraph g = graph_with_sets(2);
  CpuBackend<float> be;
  be.allocate(g);
  be.fill(3);
  std::vector<std::vector<float>> y;
  for (int64_t set : {0, 1}) {
    be.use_input_set(set);
    const auto v = verification_run(be, g);
    EXPECT_TRUE(v.at("passed").get<bool>()) << "set " << set << ": " << v.at("failures").dump();
    y.push_back(be.data("y"));
  }
  EXPECT_NE(y[0], y[1]) << "the two sets' inputs give different outputs";
}

// Records run() and timeline points while capturing, as stream capture does, and replays
// them; logs which input set every run and replay used.
class RecordingBackend final : public testing_util::WrappedCpuBackend {
 public:
  struct Log {
    int captures = 0, replays = 0, eager_ops = 0;
    std::vector<int64_t> set_at_replay;
    std::vector<int64_t> set_at_eager_layer;  // the input set of each eager fwd.ln1
  };

  std::string_view name() const override { return "recording"; }
  void use_input_set(int64_t i) override {
    set_ = i;
    inner.use_input_set(i);
  }
  void run(const Op& op) override {
    if (capturing_) {
      recording_->push_back([this, &op] { inner.run(op); });
      return;
    }
    ++log.eager_ops;
    if (op.name == "fwd.ln1") log.set_at_eager_layer.push_back(set_);
    inner.run(op);
  }
  std::unique_ptr<Timeline> make_timeline(int slots) override {
    return std::make_unique<DeferredTimeline>(*this, inner.make_timeline(slots));
  }
  std::unique_ptr<Recording> capture(const std::function<void()>& body) override {
    auto rec = std::make_unique<Replay>(*this);
    recording_ = &rec->actions;
    capturing_ = true;
    body();
    capturing_ = false;
    ++log.captures;
    return rec;
  }
  Log log;

 private:
  struct Replay final : Recording {
    explicit Replay(RecordingBackend& b) : be(b) {}
    void replay() override {
      ++be.log.replays;
      be.log.set_at_replay.push_back(be.set_);
      for (auto& a : actions) a();
    }
    RecordingBackend& be;
    std::vector<std::function<void()>> actions;
  };
  struct DeferredTimeline final : Timeline {
    DeferredTimeline(RecordingBackend& b, std::unique_ptr<Timeline> t) : be(b), clock(std::move(t)) {}
    void record(int slot) override {
      if (be.capturing_) be.recording_->push_back([this, slot] { clock->record(slot); });
      else clock->record(slot);
    }
    double ms(int from, int to) const override { return clock->ms(from, to); }
    RecordingBackend& be;
    std::unique_ptr<Timeline> clock;
  };

  bool capturing_ = false;
  std::vector<std::function<void()>>* recording_ = nullptr;
  int64_t set_ = 0;
};

TEST(RecordedReplays, OneRecordingPerInputSetAndEveryRunIsAReplay) {
  const LayerGraph g = graph_with_sets(3);
  RecordingBackend be;
  MeasureSettings s;
  s.warmup = 2;
  s.repeats = 4;
  s.cuda_graph = true;
  const MeasureRun r = run_measure(be, g, s);
  EXPECT_EQ(be.log.captures, 3);
  EXPECT_EQ(be.log.replays, 6);
  // Only the verification run launches ops one by one.
  EXPECT_EQ(be.log.eager_ops, static_cast<int>(g.ops.size()));
  // Warm-up runs 0, 1 then timed runs 2..5, each on set run % 3.
  EXPECT_EQ(be.log.set_at_replay, (std::vector<int64_t>{0, 1, 2, 0, 1, 2}));
  ASSERT_EQ(r.op_ms.size(), g.ops.size());
  for (const auto& op : r.op_ms) EXPECT_EQ(op.ms.size(), 4u);
  ASSERT_EQ(r.replay_ms.ms.size(), 4u);
  ASSERT_EQ(r.total_ms.ms.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_GE(r.total_ms.ms[i], 0);
    // The replay is timed around the same work the points inside it bracket.
    EXPECT_GE(r.replay_ms.ms[i] + 1e-6, r.total_ms.ms[i]);
  }
}

TEST(RecordedReplays, EagerRunsRotateInputSetsToo) {
  const LayerGraph g = graph_with_sets(2);
  RecordingBackend be;
  MeasureSettings s;
  s.warmup = 1;
  s.repeats = 3;
  const MeasureRun r = run_measure(be, g, s);
  EXPECT_EQ(be.log.captures, 0);
  EXPECT_EQ(be.log.eager_ops, static_cast<int>(g.ops.size()) * 5);  // verification + 1 warm-up + 3 timed
  // Verification on set 0; warm-up run 0, timed runs 1..3, each on set run % 2.
  EXPECT_EQ(be.log.set_at_eager_layer, (std::vector<int64_t>{0, 0, 1, 0, 1}));
  EXPECT_TRUE(r.replay_ms.ms.empty());
  EXPECT_EQ(r.total_ms.ms.size(), 3u);
}

TEST(RecordedReplays, TheCpuBackendCannotRecordAndSaysSo) {
  const LayerGraph g = graph_with_sets(1);
  CpuBackend<float> be;
  MeasureSettings s;
  s.cuda_graph = true;
  try {
    run_measure(be, g, s);
    ADD_FAILURE() << "the cpu backend must refuse to record";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("CUDA graphs need --backend cuda"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace flopscope
