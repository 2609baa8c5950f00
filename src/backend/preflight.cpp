#include "backend/preflight.hpp"

#include <fmt/format.h>

#include "report/table.hpp"
#include "util/error.hpp"

namespace flopscope {

namespace {

// The layer at `groups` of the model's kv groups (query heads that share one kv head; one head
// for multi-head attention), scaled as --width scales it, or nullopt-like false when that width
// leaves a fractional size (scale_width says which).
bool scaled_at(const ModelConfig& full, int64_t groups, ModelConfig& out) {
  const int64_t group = full.n_heads / full.kv_heads();
  try {
    out = scale_width(full, Fraction{groups * group, full.n_heads});
    return true;
  } catch (const UsageError&) {
    return false;
  }
}

double layer_bytes(const ModelConfig& m, int64_t batch, int64_t seq, const GraphOptions& o) {
  return build_layer_graph(layer_shape(m, batch, seq, main_layer_kind(m)), o).tensor_bytes();
}

}  // namespace

Fraction widest_fitting(const ModelConfig& full, int64_t batch, int64_t seq, const GraphOptions& o, double usable,
                        double workspace) {
  // Bytes grow monotonically with the number of kv groups: binary search for the most that
  // fit. A width that leaves a fractional size (d_ff not divisible) counts as not fitting.
  const int64_t group = full.n_heads / full.kv_heads();
  int64_t lo = 0, hi = full.kv_heads();
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    ModelConfig m;
    if (scaled_at(full, mid, m) && layer_bytes(m, batch, seq, o) + workspace <= usable) lo = mid;
    else hi = mid - 1;
  }
  return Fraction{lo * group, full.n_heads};
}

Preflight preflight(const ModelConfig& full, const Fraction& width, int64_t batch, int64_t seq,
                    const GraphOptions& o, double available, double workspace) {
  Preflight p;
  const ModelConfig layer = scale_width(full, width);
  p.required_bytes = layer_bytes(layer, batch, seq, o) + workspace;
  p.available_bytes = available;
  const double usable = available * p.usable_fraction;
  p.fits = p.required_bytes <= usable;
  if (p.fits) return p;
  std::string what;
  const Fraction w = widest_fitting(full, batch, seq, o, usable, workspace);
  if (w.num > 0) {
    const ModelConfig widest = scale_width(full, w);
    what = fmt::format("--width {}/{} ({} heads, d_model {})", w.num, w.den, widest.n_heads, widest.d_model);
  }
  int64_t b = batch - 1;
  while (b >= 1 && layer_bytes(layer, b, seq, o) + workspace > usable) --b;
  if (b >= 1) what += fmt::format("{}--batch {} at this width", what.empty() ? "" : " or ", b);
  p.message = fmt::format("the layer needs {} but {} of {} available may be used; {}", fmt_bytes(p.required_bytes),
                          fmt_bytes(usable), fmt_bytes(available),
                          what.empty() ? "not even one head at batch 1 fits; use a shorter --seq"
                                       : "the largest that fits: " + what);
  return p;
}

}  // namespace flopscope
