#include "backend/cuda/lt_tiles.hpp"

#include <fmt/format.h>

namespace flopscope::cuda {

namespace {

struct Row {
  int id, rows, cols;
};
constexpr Row kTiles[] = {
#include "cublaslt_tiles.inc"
};

int64_t round_up(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

}  // namespace

std::optional<LtTile> lt_tile(int id) {
  for (const Row& r : kTiles)
    if (r.id == id) return LtTile{r.id, r.rows, r.cols};
  return std::nullopt;
}

std::string lt_tile_name(int id) {
  if (const auto t = lt_tile(id)) return fmt::format("{}x{}", t->rows, t->cols);
  return id == 0 ? "undefined" : fmt::format("unknown id {}", id);
}

double padded_gemm_flops(const GemmSpec& g, const LtTile& t) {
  return 2.0 * static_cast<double>(round_up(g.n, t.rows)) * static_cast<double>(round_up(g.m, t.cols)) *
         static_cast<double>(g.k) * static_cast<double>(g.batch) * static_cast<double>(g.repeat);
}

}  // namespace flopscope::cuda
