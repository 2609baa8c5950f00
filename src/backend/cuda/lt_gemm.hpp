// One GEMM shape through cuBLASLt, row-major as the layer graph states it.
//
// cuBLASLt is column-major. A row-major C (m x n) = op(A) op(B) is, read column-major, the
// same memory as C^T (n x m) = op(B)^T op(A)^T, so we hand cuBLASLt our B as its A and our A as
// its B, with M = n, N = m and the leading dimensions unchanged. Strided batches (the
// attention products over batch x heads) set BATCH_COUNT and STRIDED_BATCH_OFFSET on each
// layout. Alpha and beta are float (host pointers); accumulation is fp32 for every dtype
// (CUBLAS_COMPUTE_32F, or 32F_FAST_TF32 for tf32).
//
// FP8 (E4M3 A and B, bf16 C and D; Hopper): cuBLASLt takes both operands K-major only ("TN":
// our A not transposed, our B transposed, which the graph's fp8 lowering guarantees), and a
// device float per operand that multiplies it back (1 / the scale its cast used).
//
// Algorithm choice: the heuristic's top candidates for this shape are each timed on the real
// buffers (CUDA events, median of several runs) and the fastest is kept for the run.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "graph/graph.hpp"

namespace flopscope::cuda {

struct LtTypes {
  cudaDataType_t ab;        // A and B
  cudaDataType_t c;         // C and D
  cublasComputeType_t compute;
  size_t ab_bytes, c_bytes;
};
LtTypes lt_types(Precision p);  // throws UsageError for precisions this path does not run

// Largest power of two, at most 256 (cudaMalloc's alignment), dividing `bytes` (0: 256): the
// alignment an operand keeps at that byte offset from the start of its allocation.
uint32_t offset_alignment(uint64_t bytes);

// The key under which one algorithm choice serves several GEMM ops: everything the choice
// depends on. Shape, transposes, leading dimensions, batch strides, alpha and beta, the data
// types, and each operand's alignment at its offset (a_offset, b_offset, c_offset): the chosen
// algorithm is valid only for the alignments it was selected with
// (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*_BYTES), so an op whose operand starts at a less
// aligned offset (Q, K, V inside one buffer) gets its own choice; offsets with the same
// alignment share one.
std::string plan_key(const GemmSpec& g, const LtTypes& t);

class LtGemm {
 public:
  // a_descale, b_descale: FP8 only, device floats (1 / each operand copy's scale).
  LtGemm(cublasLtHandle_t handle, const GemmSpec& g, const LtTypes& t, const std::string& label,
         const float* a_descale = nullptr, const float* b_descale = nullptr);
  ~LtGemm();
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;

  // Times up to `candidates` heuristic algorithms on these buffers (which it overwrites) and
  // keeps the fastest; with one candidate it takes the heuristic's first untimed (best_ms
  // null, timed false). Returns {candidates, best_index, best_ms, timed, heuristic_first_ms,
  // ..., algo_id, tile_id, tile ("192x208"), split_k, stages_id, cluster_shape_id,
  // padded_flops, padded_over_useful} (lt_tiles.hpp: what the tile's padding executes).
  nlohmann::json select(const void* a, const void* b, void* c, void* workspace, size_t workspace_bytes,
                        cudaStream_t stream, int candidates = 8);
  // C = alpha op(A) op(B) + beta C with the selected algorithm (asynchronous).
  void run(const void* a, const void* b, void* c, void* workspace, size_t workspace_bytes, cudaStream_t stream);
  double best_ms() const { return best_ms_; }

 private:
  void init(const float* a_descale, const float* b_descale);
  nlohmann::json describe(const cublasLtMatmulAlgo_t& algo) const;
  void destroy();

  cublasLtHandle_t handle_;
  GemmSpec g_;
  LtTypes t_;
  std::string label_;
  cublasLtMatmulDesc_t desc_ = nullptr;
  cublasLtMatrixLayout_t la_ = nullptr, lb_ = nullptr, lc_ = nullptr;
  cublasLtMatmulAlgo_t algo_{};
  bool selected_ = false;
  double best_ms_ = 0;
  float alpha_, beta_;
};

}  // namespace flopscope::cuda
