// The backend interface: what every device (cpu, cuda) does with the layer graph.
//
// A backend allocates the layer's tensors from the graph's shapes, fills inputs and weights
// with seeded random values (never zeros), executes one op at a time, synchronises, reports
// the memory it allocated, and marks points on its timeline so the caller can time ops.
//
// Mixtures of experts: the routed experts' grouped GEMMs (GemmSpec::grouped) have per-expert row
// counts that only the router's run knows, written to the graph's counts tensor. The cpu backend
// reads the counts before each grouped GEMM and runs one OpenBLAS product per expert. The cuda
// backend (first version, not yet run on a GPU) copies the counts to the host inside the grouped
// op and the experts' bias ops (a stream synchronisation in their timed range) and runs one cuBLASLt GEMM per expert with
// rows, each shape's plan made when first seen with the heuristic's first algorithm (prepare()
// cannot choose: the shapes are not known before the router runs); a captured CUDA graph cannot
// hold the host read, so --cuda-graph is refused on such a layer. Where this is to go: the counts
// kept on the device and one grouped launch reading its problem sizes there (capturable), the
// algorithm chosen for the balanced shape (k T / E rows an expert).
//
// A capacity factor (MoeSpec::capacity): the cpu backend's router drops the rows past each
// expert's capacity (drops_tokens()), so the grouped GEMMs run fewer rows than the graph's k T.
// The cuda backend's routing kernels do not drop yet: measure builds its graph without the
// capacity there and says so (every routed row runs, as with no capacity factor).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "graph/graph.hpp"
#include "util/random_fill.hpp"

namespace flopscope {

// GEMM algorithms a backend that picks them by timing (cuda: cuBLASLt's heuristic candidates)
// tries per GEMM shape, keeping the fastest; 1 = the heuristic's first choice, the same every
// run (`measure --gemm-candidates`).
inline constexpr int kDefaultGemmCandidates = 8;
inline constexpr int kMaxGemmCandidates = 64;

// Points on a backend's timeline: record(i) marks "now" in execution order (a CUDA event on
// the stream; a steady-clock reading on the CPU); after synchronize(), ms(a, b) is the time
// between two recorded points.
class Timeline {
 public:
  virtual ~Timeline() = default;
  virtual void record(int slot) = 0;
  virtual double ms(int from, int to) const = 0;
};

// Device work recorded once and replayed (the CUDA backend: a CUDA graph).
class Recording {
 public:
  virtual ~Recording() = default;
  virtual void replay() = 0;  // asynchronous, like run()
};

// The seed of input set `set`: set 0 uses the run's seed, so one set is what it always was.
inline uint64_t input_set_seed(uint64_t seed, int64_t set) {
  return seed + static_cast<uint64_t>(set) * UINT64_C(0x9E3779B97F4A7C15);
}

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;      // "cpu", "cuda"
  virtual nlohmann::json device_json() const = 0;  // what the device is, for results
  virtual std::string device_line() const = 0;     // one line for tables
  // Bytes this backend could allocate now (memory preflight).
  virtual double available_bytes() const = 0;

  // Allocates every tensor of the graph; the filled ones (is_filled) once per input set
  // (GraphOptions::input_sets).
  virtual void allocate(const LayerGraph& g) = 0;
  // One-time setup after allocate, before fill (the CUDA backend times the cuBLASLt
  // algorithm candidates for every GEMM shape here). Returns what it chose, for results.
  virtual nlohmann::json prepare(const LayerGraph& /*g*/) { return nullptr; }
  // Inputs and weights get seeded random values (set i: input_set_seed(seed, i)); activations
  // and gradients are poisoned (NaN) so an output an op fails to write is caught by verify().
  // Input set 0 is in use afterwards.
  virtual void fill(uint64_t seed) = 0;
  // Points the ops at input set i (the measurement loop rotates between repeats).
  virtual void use_input_set(int64_t i) = 0;
  virtual void run(const Op& op) = 0;
  virtual void synchronize() = 0;
  virtual double allocated_bytes() const = 0;

  virtual std::unique_ptr<Timeline> make_timeline(int slots) = 0;
  // Records the device work body() issues (run() and Timeline::record() calls) without
  // executing it, for replay without launch gaps. Backends that cannot record throw UsageError.
  virtual std::unique_ptr<Recording> capture(const std::function<void()>& body);
  // Called between timed repeats, outside the timed region (the CUDA backend can flush L2).
  virtual void between_repeats() {}
  // Brackets the measured region for profilers started with --profile-from-start off.
  virtual void profiler_start() {}
  virtual void profiler_stop() {}
  // Ceilings measured on this device: the best GEMM throughput on an n x n x n product in
  // precision p, and copy bandwidth (bytes read plus written per second). JSON with the
  // figure in FLOP/s or bytes/s, the time, and the source ("timed: ...").
  virtual nlohmann::json gemm_ceiling(Precision p, int64_t n) = 0;
  virtual nlohmann::json copy_bandwidth(int64_t bytes) = 0;
  // The device's clocks now (the CUDA backend: SM and memory clocks via NVML), or null.
  virtual nlohmann::json clocks() { return nullptr; }

  // Software FLOP counting: the dimensions of every executed call, summed per op since the
  // last reset. Backends that do not count return false from counts_flops().
  virtual bool counts_flops() const { return false; }
  // Whether the router ops apply MoeSpec::capacity (drop the rows past it); those that do not
  // run the layer as if it had none.
  virtual bool drops_tokens() const { return false; }
  virtual double counted_flops(const std::string& /*op*/) const { return 0; }
  virtual void reset_counts() {}

  // Reads `count` elements of a tensor as doubles, from element `offset`, `stride` elements
  // apart (synchronous). Verification reads the slices it checks through this.
  virtual std::vector<double> read(const std::string& tensor, int64_t offset, int64_t count, int64_t stride = 1) = 0;
  // Elements of a tensor that are NaN or infinite (synchronous).
  virtual int64_t count_nonfinite(const std::string& tensor) = 0;

  // FP8 copies (cast_fp8 ops, --precision fp8) hold e4m3(x * scale), one scale per copy;
  // read() returns what they stand for, e4m3 / scale. fp8_scale() is a copy's scale now;
  // fp8_calibrate() sets every copy's scale from the largest |x| its casts have seen since the
  // last calibration (delayed scaling) and starts the next record. Scales start at 1.
  virtual double fp8_scale(const std::string& /*copy*/) const { return 1.0; }
  virtual void fp8_calibrate() {}
};

// How a tensor is filled: scale and offset of uniform_pm1, or integer indices.
FillSpec fill_spec(const TensorSpec& t, int64_t vocab);

// Backend::fill's loop, shared by the backends: every input set's filled tensors with that
// set's seed, then every other tensor (poisoned), ending with set 0 in use.
void fill_input_sets(Backend& b, const LayerGraph& g, uint64_t seed,
                     const std::function<void(const TensorSpec&, uint64_t)>& fill_tensor);

}  // namespace flopscope
