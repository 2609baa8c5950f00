// cuBLASLt's tiles, and the FLOPs a GEMM executes once its tiles are padded. Pure code (no
// CUDA header), so the CPU tests check it.
//
// A cuBLASLt kernel computes C in whole tiles of rows x cols outputs (its M x N, column-major:
// with our operand swap, lt_gemm.hpp, its M is our n and its N our m). A tile that overhangs
// the matrix still executes its whole MMA work, so the tensor counters read
//   2 * ceil(n / rows) * rows * ceil(m / cols) * cols * k * batch
// where the useful (analytic) work is 2 m n k batch: e.g. 1.083x at n = 1536 with 208-wide
// tiles (ceil(1536 / 208) * 208 = 1664). Split-K and stream-K divide k between blocks without
// adding MMA work. K itself is padded only to the MMA's k-step (16 for bf16), which the shapes
// flopscope runs are multiples of.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "graph/graph.hpp"

namespace flopscope::cuda {

struct LtTile {
  int id = 0;    // CUBLASLT_MATMUL_TILE_<rows>x<cols>
  int rows = 0;  // cuBLASLt's M extent: our n
  int cols = 0;  // cuBLASLt's N extent: our m
};

// The tile of a CUBLASLT_ALGO_CONFIG_TILE_ID value, from the toolkit's own enumeration
// (generated at configure time: cmake/cublaslt_tiles.cmake); nullopt for UNDEFINED (0) and
// for ids this toolkit does not name.
std::optional<LtTile> lt_tile(int id);
// "192x208", or "undefined" (id 0), or "unknown id N".
std::string lt_tile_name(int id);

// 2 * padded n * padded m * k * batch * repeat: what the tiles execute for this GEMM.
double padded_gemm_flops(const GemmSpec& g, const LtTile& t);

}  // namespace flopscope::cuda
