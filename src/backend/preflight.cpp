#include "backend/preflight.hpp"

#include <fmt/format.h>

#include "report/table.hpp"

namespace flopscope {

namespace {

double layer_bytes(const ModelConfig& full, int64_t heads, int64_t batch, int64_t seq, const GraphOptions& o) {
  ModelConfig m = full;
  m.n_heads = heads;
  m.d_model = heads * full.d_head;
  return build_layer_graph(layer_shape(m, batch, seq), o).tensor_bytes();
}

}  // namespace

Fraction widest_fitting(const ModelConfig& full, int64_t batch, int64_t seq, const GraphOptions& o, double usable,
                        double workspace) {
  // Bytes grow monotonically with heads: binary search for the most heads that fit.
  int64_t lo = 0, hi = full.n_heads;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (layer_bytes(full, mid, batch, seq, o) + workspace <= usable) lo = mid;
    else hi = mid - 1;
  }
  return Fraction{lo, full.n_heads};
}

Preflight preflight(const ModelConfig& full, const Fraction& width, int64_t batch, int64_t seq,
                    const GraphOptions& o, double available, double workspace) {
  Preflight p;
  const int64_t heads = full.n_heads * width.num / width.den;
  p.required_bytes = layer_bytes(full, heads, batch, seq, o) + workspace;
  p.available_bytes = available;
  const double usable = available * p.usable_fraction;
  p.fits = p.required_bytes <= usable;
  if (p.fits) return p;
  std::string what;
  const Fraction w = widest_fitting(full, batch, seq, o, usable, workspace);
  if (w.num > 0) {
    what = fmt::format("--width {}/{} ({} heads, d_model {})", w.num, w.den, w.num, w.num * full.d_head);
  }
  int64_t b = batch - 1;
  while (b >= 1 && layer_bytes(full, heads, b, seq, o) + workspace > usable) --b;
  if (b >= 1) what += fmt::format("{}--batch {} at this width", what.empty() ? "" : " or ", b);
  p.message = fmt::format("the layer needs {} but {} of {} available may be used; {}", fmt_bytes(p.required_bytes),
                          fmt_bytes(usable), fmt_bytes(available),
                          what.empty() ? "not even one head at batch 1 fits; use a shorter --seq"
                                       : "the largest that fits: " + what);
  return p;
}

}  // namespace flopscope
