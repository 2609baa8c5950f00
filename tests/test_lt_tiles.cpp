// cuBLASLt's tiles (src/backend/cuda/lt_tiles.hpp): the table generated from the toolkit's
// cublasLt.h names the tiles cuBLAS 13's Hopper kernels use, and the padded count is what a
// tile overhanging the matrix executes (the tensor counters read it on a GPU).
#include <gtest/gtest.h>

#include "backend/cuda/lt_tiles.hpp"

namespace flopscope::cuda {
namespace {

GemmSpec gemm(int64_t m, int64_t n, int64_t k, int64_t batch = 1) {
  GemmSpec g;
  g.m = m;
  g.n = n;
  g.k = k;
  g.batch = batch;
  return g;
}

TEST(LtTiles, TheGeneratedTableNamesTheToolkitsTiles) {
  // Values of cublasLtMatmulTile_t in CUDA 13.0's cublasLt.h.
  EXPECT_EQ(lt_tile_name(0), "undefined");
  EXPECT_EQ(lt_tile_name(1), "8x8");
  EXPECT_EQ(lt_tile_name(23), "128x256");
  EXPECT_EQ(lt_tile_name(470), "192x208");
  EXPECT_EQ(lt_tile_name(1 << 20), "unknown id 1048576");
  const auto t = lt_tile(470);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->rows, 192);
  EXPECT_EQ(t->cols, 208);
  EXPECT_FALSE(lt_tile(0).has_value());
}

TEST(LtTiles, PaddingIsWhatOverhangingTilesExecute) {
  // cuBLASLt's M is our n (lt_gemm.hpp): a 192x208 tile pads our n to 192s and our m to 208s.
  const LtTile t{470, 192, 208};
  // 1536 = 8 x 192 exactly; m = 1536 pads to 8 x 208 = 1664: 1664 / 1536 = 1.0833.
  EXPECT_DOUBLE_EQ(padded_gemm_flops(gemm(1536, 1536, 1536), t) / gemm(1536, 1536, 1536).flops(), 1664.0 / 1536.0);
  // Aligned both ways: no padding.
  EXPECT_DOUBLE_EQ(padded_gemm_flops(gemm(208 * 3, 192 * 5, 64), t), gemm(208 * 3, 192 * 5, 64).flops());
  // Batches pad each member alike; k is not padded.
  EXPECT_DOUBLE_EQ(padded_gemm_flops(gemm(100, 100, 7, 3), t), 2.0 * 192 * 208 * 7 * 3);
}

}  // namespace
}  // namespace flopscope::cuda
