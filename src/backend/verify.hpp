// Verification, once per run and before any timing, the same for every backend: each op runs
// once and its output is checked against a reference computed in fp64 on the host from the
// same inputs. GEMMs: sampled output elements (corners, centre and pseudo-random positions),
// each recomputed as a dot product of the row of op(A) and the column of op(B) it depends on.
// Other ops: the CPU reference (src/backend/cpu/reference_ops.hpp) on a slice of rows (or,
// for column reductions, of columns). Then every output tensor must be finite: outputs are
// poisoned with NaN before the run, so an element an op failed to write is caught.
//
// An op passes when its sampled outputs are finite and their relative error is within the
// tolerance for the run's precision. The run passes when every op and every tensor does.
#pragma once

#include <nlohmann/json.hpp>

#include "backend/backend.hpp"
#include "graph/graph.hpp"

namespace flopscope {

// Tolerances on the relative error: max |out - ref| / max |ref| over the checked values of
// each output (GEMMs: the 16 sampled elements; other ops: the checked slice).
double verify_tolerance(Precision p, bool gemm);

// Runs every op of `g` once on `b` (which must be allocated and filled), checking each;
// returns {method, passed, ops: [{name, max_rel_error, tolerance, samples, passed}],
// nonfinite: [{tensor, count}], failures: [...]}. Never throws for a failed check: callers
// decide (measure refuses to time a layer that failed).
nlohmann::json verification_run(Backend& b, const LayerGraph& g);

}  // namespace flopscope
