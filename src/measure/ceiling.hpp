// The GEMM ceiling a measure run's "of ceiling" figures are measured against, and the check
// that keeps it a ceiling.
//
// The backend times the ceiling itself (gemm_ceiling: the best of several runs, each long
// enough to be stable) at ceiling_size(): on the CPU a square near the layer's largest GEMM
// (the cube root of its m * n * k), on a GPU 8192^3. After the timed repeats, hold_ceiling()
// looks for ops whose timed rate beats the ceiling by more than kCeilingSlack: that means the
// ceiling was wrong (a busy machine, a clock still ramping, a shape the square does not
// represent). It then times the fastest such GEMM at its own shape through the backend, the
// best of several runs of back-to-back calls and the best of single calls (on a machine other
// work shares, a short call can beat any long run, and an op's median in the layer is one),
// and raises the ceiling to the larger rate (timing it once more, up to `attempts` in all, while it
// still beats the raised ceiling by more than the slack: a shared machine's speed shifts over
// seconds); again for the next, at most max_remeasures ops. An op that still reads above 100% is named
// in the ceiling's "note" (its one median beat the best sustained rate), which the measure
// table prints under the per-op table: no utilisation above 100% goes out unexplained.
#pragma once

#include <cstdint>
#include <string_view>

#include <nlohmann/json.hpp>

#include "backend/backend.hpp"
#include "graph/graph.hpp"
#include "measure/measure.hpp"

namespace flopscope {

inline constexpr double kCeilingSlack = 0.05;  // an op may beat the ceiling by 5% (timing noise)

// n of the n^3 ceiling GEMM: cuda 8192; cpu the cube root of the largest GEMM's m * n * k
// (per batch member), rounded to a multiple of 128 and clamped to [256, 2048].
int64_t ceiling_size(const LayerGraph& g, std::string_view backend_kind);

struct CeilingCheck {
  int runs = 3;                  // timed runs per remeasured op; the best counts
  double min_run_seconds = 0.5;  // each run repeats the op for at least this long
  int max_remeasures = 3;        // ops remeasured at most
  int attempts = 3;              // timings of one op at most, while it still beats the raised ceiling
};

// The ceiling JSON (backend.gemm_ceiling()), raised where an op beat it (see above), with
// "remeasured" (per op: its in-layer and sustained rates) and "note"; unchanged when no op beat
// it or when it is null (--no-ceiling). Runs ops on `b` (after the timed repeats, so no
// timing is disturbed); resets its FLOP counts afterwards.
nlohmann::json hold_ceiling(Backend& b, const LayerGraph& g, const MeasureRun& run, nlohmann::json ceiling,
                            const CeilingCheck& check = {});

}  // namespace flopscope
