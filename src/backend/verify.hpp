// Verification, once per run and before any timing, the same for every backend: each op runs
// once and its output is checked against a reference computed in fp64 on the host from the
// same inputs. GEMMs: sampled output elements (corners, centre and pseudo-random positions),
// each recomputed as a dot product of the row of op(A) and the column of op(B) it depends on.
// Other ops: the CPU reference (src/backend/cpu/reference_ops.hpp) on a slice of rows (or,
// for column reductions, of columns). Then every output tensor must be finite: outputs are
// poisoned with NaN before the run, so an element an op failed to write is caught.
//
// An op passes when its sampled outputs are finite and their relative error beyond the output
// dtype's absolute floor is within the tolerance for the run's precision. The run passes when every op and every tensor does.
#pragma once

#include <nlohmann/json.hpp>

#include "backend/backend.hpp"
#include "graph/graph.hpp"

namespace flopscope {

// Tolerances on the relative error: max |out - ref| / max |ref| over the checked values of
// each output (GEMMs: the 16 sampled elements; other ops: the checked slice).
double verify_tolerance(Precision p, bool gemm);

// The absolute floor of the check: the spacing of the op's stored output dtype at its
// smallest (subnormal) magnitudes, 2^-24 for fp16 (2^-133 for bf16, 2^-149 for fp32 and tf32
// outputs, 0 for fp64). An output whose values are subnormal in its dtype (fp16 gradients
// through the LM head: dq and dk near 1e-6) has an absolute resolution there and no relative
// one, so the check is |out - ref| <= tol * max |ref| + floor: max_rel_error is the error
// beyond the floor, (max |out - ref| - floor) / max |ref| (at least 0). For every output
// that is a normal number of its dtype the floor is far below tol * max |ref| and changes
// nothing.
double verify_abs_floor(Precision p);

// Runs every op of `g` once on `b` (which must be allocated and filled), checking each;
// returns {method, passed, ops: [{name, max_rel_error, tolerance, abs_floor, max_abs_error,
// scale, samples, passed}],
// nonfinite: [{tensor, count}], failures: [...]}. Never throws for a failed check: callers
// decide (measure refuses to time a layer that failed).
nlohmann::json verification_run(Backend& b, const LayerGraph& g);

}  // namespace flopscope
