#include "measure/measure.hpp"

#include <algorithm>
#include <chrono>
#include <optional>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "backend/verify.hpp"
#include "util/error.hpp"
#include "util/nvtx.hpp"
#include "util/signals.hpp"

namespace flopscope {

double Samples::median() const {
  FLOPSCOPE_CHECK(!ms.empty(), "no samples");
  std::vector<double> v = ms;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}
double Samples::min() const { return *std::min_element(ms.begin(), ms.end()); }
double Samples::max() const { return *std::max_element(ms.begin(), ms.end()); }
nlohmann::json Samples::json() const {
  return {{"median", median()}, {"min", min()}, {"max", max()}, {"samples", ms}};
}

namespace {

// Logs progress on stderr once a run has taken longer than a second.
class Progress {
 public:
  explicit Progress(int64_t total) : total_(total), start_(std::chrono::steady_clock::now()) {}
  double elapsed() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }
  void step(const char* what, int64_t i, int64_t n) {
    ++done_;
    const double t = elapsed();
    if (t < 1.0) return;
    const double left = t / static_cast<double>(done_) * static_cast<double>(total_ - done_);
    spdlog::info("measure: {} {}/{} done ({:.1f} s elapsed, about {:.1f} s left)", what, i, n, t, left);
  }

 private:
  int64_t total_, done_ = 0;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace

MeasureRun run_measure(Backend& b, const LayerGraph& g, const MeasureSettings& s) {
  FLOPSCOPE_CHECK(s.repeats >= 1, "repeats must be at least 1");
  FLOPSCOPE_CHECK(s.warmup >= 0, "warm-up runs must not be negative");
  MeasureRun r;
  const auto n_ops = static_cast<int>(g.ops.size());
  Progress progress(1 + s.warmup + s.repeats);

  b.allocate(g);
  r.prepared = b.prepare(g);
  b.fill(s.seed);
  if (g.options.precision == Precision::fp8) {
    // Delayed scaling: untimed passes over every input set record the largest |x| each FP8
    // copy is cast from, which sets that copy's scale for the rest of the run. Twice: the
    // second pass sees activations computed with calibrated scales. Then the outputs are
    // poisoned again.
    for (int pass = 0; pass < 2; ++pass) {
      for (int64_t set = 0; set < g.options.input_sets; ++set) {
        b.use_input_set(set);
        for (const auto& op : g.ops) b.run(op);
      }
      b.synchronize();
      b.fp8_calibrate();
    }
    b.fill(s.seed);
  }

  // Verification run: every op once, checked against an fp64 reference, counted.
  b.reset_counts();
  r.verification = verification_run(b, g);
  if (!r.verification.at("passed").get<bool>()) {
    throw Error(fmt::format("verification failed on {}: {}; no throughput is reported for a layer that computes garbage",
                            b.name(), r.verification.at("failures").dump()));
  }
  if (b.counts_flops()) {
    for (const auto& op : g.ops) r.counted_flops.push_back(b.counted_flops(op.name));
  }
  progress.step("verification run", 1, 1);

  // Slot i is recorded just before op i; slot n_ops after the last op.
  int first_backward = n_ops;
  for (int i = 0; i < n_ops; ++i) {
    if (g.ops[static_cast<size_t>(i)].phase != Phase::forward) {
      first_backward = i;
      break;
    }
  }
  auto timeline = b.make_timeline(n_ops + 1);
  // One pass over the layer's ops, a timeline point before each. NVTX: layer > phase > op,
  // each op named as the graph names it (not while recording a graph: host ranges would
  // mark the capture, not the replays).
  auto pass = [&](bool nvtx) {
    std::optional<NvtxRange> layer;
    if (nvtx) layer.emplace("layer");
    Phase phase = g.ops.front().phase;
    if (nvtx) nvtx_push(std::string(to_string(phase)));
    for (int i = 0; i < n_ops; ++i) {
      const Op& op = g.ops[static_cast<size_t>(i)];
      if (nvtx && op.phase != phase) {
        nvtx_pop();
        phase = op.phase;
        nvtx_push(std::string(to_string(phase)));
      }
      timeline->record(i);
      std::optional<NvtxRange> range;
      if (nvtx) range.emplace(op.name);
      b.run(op);
      check_interrupted();
    }
    timeline->record(n_ops);
    if (nvtx) nvtx_pop();
  };
  const int64_t sets = g.options.input_sets;
  std::vector<std::unique_ptr<Recording>> graphs;
  if (s.cuda_graph) {
    for (int64_t set = 0; set < sets; ++set) {
      b.use_input_set(set);
      graphs.push_back(b.capture([&] { pass(false); }));
    }
    spdlog::info("measure: recorded the layer as {} CUDA graph{} ({} ops each)", sets, sets > 1 ? "s" : "", n_ops);
  }
  auto replay_timeline = s.cuda_graph ? b.make_timeline(2) : nullptr;
  // Repeat `rep` (warm-up or timed) runs on input set rep % sets.
  auto layer = [&](int64_t rep) {
    const int64_t set = rep % sets;
    b.use_input_set(set);
    if (!s.cuda_graph) return pass(true);
    NvtxRange range("layer (CUDA graph)");
    replay_timeline->record(0);
    graphs[static_cast<size_t>(set)]->replay();
    replay_timeline->record(1);
    check_interrupted();
  };

  for (int64_t i = 0; i < s.warmup; ++i) {
    layer(i);
    b.synchronize();
    progress.step("warm-up", i + 1, s.warmup);
  }

  r.op_ms.resize(static_cast<size_t>(n_ops));
  r.clocks_before = b.clocks();
  b.profiler_start();
  for (int64_t rep = 0; rep < s.repeats; ++rep) {
    b.between_repeats();
    layer(s.warmup + rep);
    b.synchronize();
    for (int i = 0; i < n_ops; ++i) r.op_ms[static_cast<size_t>(i)].ms.push_back(timeline->ms(i, i + 1));
    r.forward_ms.ms.push_back(timeline->ms(0, first_backward));
    r.backward_ms.ms.push_back(timeline->ms(first_backward, n_ops));
    r.total_ms.ms.push_back(timeline->ms(0, n_ops));
    if (replay_timeline) r.replay_ms.ms.push_back(replay_timeline->ms(0, 1));
    progress.step("timed repeat", rep + 1, s.repeats);
  }
  b.profiler_stop();
  r.clocks_after = b.clocks();
  r.wall_seconds = progress.elapsed();
  return r;
}

}  // namespace flopscope
