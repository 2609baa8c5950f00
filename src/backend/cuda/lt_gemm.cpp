#include "backend/cuda/lt_gemm.hpp"

#include <algorithm>
#include <cstdint>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/lt_tiles.hpp"
#include "util/error.hpp"

namespace flopscope::cuda {

LtTypes lt_types(Precision p) {
  switch (p) {
    case Precision::bf16: return {CUDA_R_16BF, CUDA_R_16BF, CUBLAS_COMPUTE_32F, 2, 2};
    case Precision::fp16: return {CUDA_R_16F, CUDA_R_16F, CUBLAS_COMPUTE_32F, 2, 2};
    case Precision::tf32: return {CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32, 4, 4};
    case Precision::fp32: return {CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F, 4, 4};
    case Precision::fp8: return {CUDA_R_8F_E4M3, CUDA_R_16BF, CUBLAS_COMPUTE_32F, 1, 2};
    case Precision::fp64: break;
  }
  throw UsageError(fmt::format("the cuda backend does not run {} GEMMs; use bf16, fp16, tf32, fp32 or fp8", to_string(p)));
}

namespace {

void set_batch(cublasLtMatrixLayout_t l, int64_t batch, int64_t stride, const std::string& ctx) {
  if (batch <= 1) return;
  const int32_t count = static_cast<int32_t>(batch);
  CUBLAS_CALL(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof count), ctx);
  CUBLAS_CALL(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride),
              ctx);
}

// Largest power of two (<= 256) dividing every byte address this operand starts at.
uint32_t alignment(const void* p, int64_t stride_elems, int64_t batch, size_t elem) {
  uint64_t a = reinterpret_cast<uintptr_t>(p);
  if (batch > 1) a |= static_cast<uint64_t>(stride_elems) * elem;
  return offset_alignment(a);
}

}  // namespace

uint32_t offset_alignment(uint64_t bytes) {
  uint32_t al = 256;
  while (al > 1 && (bytes % al) != 0) al /= 2;
  return al;
}

std::string plan_key(const GemmSpec& g, const LtTypes& t) {
  const auto at = [](int64_t offset_elems, size_t elem) {
    return offset_alignment(static_cast<uint64_t>(offset_elems) * elem);
  };
  return fmt::format("{}x{}x{}b{}t{}{}ld{},{},{}s{},{},{}a{}b{}al{},{},{}dt{},{},{}", g.m, g.n, g.k, g.batch, g.trans_a,
                     g.trans_b, g.lda, g.ldb, g.ldc, g.stride_a, g.stride_b, g.stride_c, g.alpha, g.beta,
                     at(g.a_offset, t.ab_bytes), at(g.b_offset, t.ab_bytes), at(g.c_offset, t.c_bytes),
                     static_cast<int>(t.ab), static_cast<int>(t.c), static_cast<int>(t.compute));
}

LtGemm::LtGemm(cublasLtHandle_t handle, const GemmSpec& g, const LtTypes& t, const std::string& label,
               const float* a_descale, const float* b_descale)
    : handle_(handle), g_(g), t_(t), label_(label), alpha_(static_cast<float>(g.alpha)), beta_(static_cast<float>(g.beta)) {
  try {
    init(a_descale, b_descale);
  } catch (...) {
    destroy();  // the destructor does not run for a constructor that throws
    throw;
  }
}

void LtGemm::init(const float* a_descale, const float* b_descale) {
  const GemmSpec& g = g_;
  const LtTypes& t = t_;
  CUBLAS_CALL(cublasLtMatmulDescCreate(&desc_, t.compute, CUDA_R_32F), label_);
  if (t.ab == CUDA_R_8F_E4M3) {
    FLOPSCOPE_CHECK(!g.trans_a && g.trans_b, label_ + ": FP8 GEMMs take both operands K-major (A as stored, B transposed)");
    FLOPSCOPE_CHECK(a_descale && b_descale, label_ + ": FP8 GEMMs need a descale pointer per operand");
    // Ours B is cuBLASLt's A (see the header).
    CUBLAS_CALL(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &b_descale, sizeof b_descale),
                label_);
    CUBLAS_CALL(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &a_descale, sizeof a_descale),
                label_);
  }
  // Ours B is cuBLASLt's A; ours A is its B (see the header).
  const cublasOperation_t op_a = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  CUBLAS_CALL(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof op_a), label_);
  CUBLAS_CALL(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof op_b), label_);
  const auto u = [](int64_t v) { return static_cast<uint64_t>(v); };
  // cuBLASLt A = our B: (n x k) when not transposed, stored column-major with ld = ldb.
  CUBLAS_CALL(cublasLtMatrixLayoutCreate(&la_, t.ab, g.trans_b ? u(g.k) : u(g.n), g.trans_b ? u(g.n) : u(g.k), g.ldb),
              label_);
  // cuBLASLt B = our A: (k x m) when not transposed.
  CUBLAS_CALL(cublasLtMatrixLayoutCreate(&lb_, t.ab, g.trans_a ? u(g.m) : u(g.k), g.trans_a ? u(g.k) : u(g.m), g.lda),
              label_);
  // C and D = our C: (n x m) column-major, ld = ldc.
  CUBLAS_CALL(cublasLtMatrixLayoutCreate(&lc_, t.c, u(g.n), u(g.m), g.ldc), label_);
  set_batch(la_, g.batch, g.stride_b, label_);
  set_batch(lb_, g.batch, g.stride_a, label_);
  set_batch(lc_, g.batch, g.stride_c, label_);
}

LtGemm::~LtGemm() { destroy(); }

void LtGemm::destroy() {
  if (la_) cublasLtMatrixLayoutDestroy(la_);
  if (lb_) cublasLtMatrixLayoutDestroy(lb_);
  if (lc_) cublasLtMatrixLayoutDestroy(lc_);
  if (desc_) cublasLtMatmulDescDestroy(desc_);
  la_ = lb_ = lc_ = nullptr;
  desc_ = nullptr;
}

nlohmann::json LtGemm::select(const void* a, const void* b, void* c, void* ws, size_t ws_bytes, cudaStream_t stream,
                              int candidates) {
  FLOPSCOPE_CHECK(candidates >= 1, label_ + ": at least one cuBLASLt candidate must be requested");
  cublasLtMatmulPreference_t pref = nullptr;
  CUBLAS_CALL(cublasLtMatmulPreferenceCreate(&pref), label_);
  struct PrefGuard {
    cublasLtMatmulPreference_t p;
    ~PrefGuard() { cublasLtMatmulPreferenceDestroy(p); }
  } guard{pref};
  CUBLAS_CALL(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes,
                                                   sizeof ws_bytes),
              label_);
  // Our B is cuBLASLt's A.
  const uint32_t al_a = alignment(b, g_.stride_b, g_.batch, t_.ab_bytes);
  const uint32_t al_b = alignment(a, g_.stride_a, g_.batch, t_.ab_bytes);
  const uint32_t al_c = alignment(c, g_.stride_c, g_.batch, t_.c_bytes);
  CUBLAS_CALL(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a), label_);
  CUBLAS_CALL(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b), label_);
  CUBLAS_CALL(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof al_c), label_);
  CUBLAS_CALL(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, sizeof al_c), label_);

  std::vector<cublasLtMatmulHeuristicResult_t> results(static_cast<size_t>(candidates));
  int returned = 0;
  CUBLAS_CALL(cublasLtMatmulAlgoGetHeuristic(handle_, desc_, la_, lb_, lc_, lc_, pref, candidates, results.data(),
                                             &returned),
              label_);
  if (returned == 0) throw Error(fmt::format("cuBLASLt has no algorithm for {} ({}x{}x{})", label_, g_.m, g_.n, g_.k));

  // One candidate: nothing to choose between, so nothing is timed (memcheck and the counter
  // runs take --gemm-candidates 1; its first real launch reports any failure).
  if (returned == 1 && candidates == 1) {
    algo_ = results[0].algo;
    selected_ = true;
    best_ms_ = 0;
    nlohmann::json r = {{"requested", candidates},
                        {"candidates", returned},
                        {"best_index", 0},
                        {"best_ms", nullptr},
                        {"timed", false},
                        {"source", "the heuristic's first algorithm, not timed (one candidate: nothing to choose)"}};
    r.update(describe(algo_));
    return r;
  }

  cudaEvent_t start = nullptr, stop = nullptr;
  CUDA_CALL(cudaEventCreate(&start), label_);
  CUDA_CALL(cudaEventCreate(&stop), label_);
  constexpr int kWarm = 2, kTimed = 5;
  std::vector<double> medians;
  int best = -1;
  for (int i = 0; i < returned; ++i) {
    const auto& algo = results[static_cast<size_t>(i)].algo;
    auto launch = [&] {
      return cublasLtMatmul(handle_, desc_, &alpha_, b, la_, a, lb_, &beta_, c, lc_, c, lc_, &algo, ws, ws_bytes, stream);
    };
    bool ok = true;
    for (int w = 0; w < kWarm && ok; ++w) ok = launch() == CUBLAS_STATUS_SUCCESS;
    std::vector<double> ms;
    for (int r = 0; r < kTimed && ok; ++r) {
      CUDA_CALL(cudaEventRecord(start, stream), label_);
      ok = launch() == CUBLAS_STATUS_SUCCESS;
      CUDA_CALL(cudaEventRecord(stop, stream), label_);
      CUDA_CALL(cudaEventSynchronize(stop), label_);
      float t = 0;
      CUDA_CALL(cudaEventElapsedTime(&t, start, stop), label_);
      ms.push_back(t);
    }
    if (!ok) {
      medians.push_back(-1);
      continue;
    }
    std::sort(ms.begin(), ms.end());
    medians.push_back(ms[ms.size() / 2]);
    if (best < 0 || medians.back() < medians[static_cast<size_t>(best)]) best = i;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  CUDA_CALL(cudaGetLastError(), label_);
  if (best < 0) throw Error(fmt::format("no cuBLASLt algorithm ran for {}", label_));
  algo_ = results[static_cast<size_t>(best)].algo;
  selected_ = true;
  best_ms_ = medians[static_cast<size_t>(best)];
  const double tflops = g_.flops() / (best_ms_ * 1e-3) / 1e12;
  spdlog::debug("gemm {} {}x{}x{} batch {}: {} candidates, best #{} {:.4f} ms ({:.1f} TFLOP/s), heuristic's first {:.4f} ms",
                label_, g_.m, g_.n, g_.k, g_.batch, returned, best, best_ms_, tflops, medians[0]);
  nlohmann::json r = {{"requested", candidates},      {"candidates", returned},       {"best_index", best},
                      {"best_ms", best_ms_},          {"best_tflops", tflops},        {"timed", true},
                      {"heuristic_first_ms", medians[0]}, {"candidate_ms", medians},
                      {"source", "timed (CUDA events, median of 5 after 2 warm-up runs per candidate)"}};
  r.update(describe(algo_));
  return r;
}

nlohmann::json LtGemm::describe(const cublasLtMatmulAlgo_t& algo) const {
  auto get = [&](cublasLtMatmulAlgoConfigAttributes_t attr, auto zero) {
    decltype(zero) v = zero;
    size_t written = 0;
    const bool ok = cublasLtMatmulAlgoConfigGetAttribute(&algo, attr, &v, sizeof v, &written) == CUBLAS_STATUS_SUCCESS;
    return ok ? nlohmann::json(v) : nlohmann::json(nullptr);
  };
  const nlohmann::json tile_id = get(CUBLASLT_ALGO_CONFIG_TILE_ID, uint32_t{0});
  nlohmann::json r = {{"algo_id", get(CUBLASLT_ALGO_CONFIG_ID, int32_t{0})},
                      {"tile_id", tile_id},
                      {"split_k", get(CUBLASLT_ALGO_CONFIG_SPLITK_NUM, int32_t{0})},
                      {"stages_id", get(CUBLASLT_ALGO_CONFIG_STAGES_ID, uint32_t{0})},
                      {"cluster_shape_id", get(CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, uint16_t{0})}};
  // The tile, and what its padding makes the GEMM execute (tensor counters read this).
  const int id = tile_id.is_number() ? tile_id.get<int>() : 0;
  r["tile"] = lt_tile_name(id);
  if (const auto t = lt_tile(id)) {
    r["padded_flops"] = padded_gemm_flops(g_, *t);
    r["padded_over_useful"] = padded_gemm_flops(g_, *t) / g_.flops();
  } else {
    r["padded_flops"] = nullptr;
    r["padded_over_useful"] = nullptr;
  }
  return r;
}

void LtGemm::run(const void* a, const void* b, void* c, void* ws, size_t ws_bytes, cudaStream_t stream) {
  FLOPSCOPE_CHECK(selected_, label_ + ": GEMM run before its algorithm was selected");
  CUBLAS_CALL(cublasLtMatmul(handle_, desc_, &alpha_, b, la_, a, lb_, &beta_, c, lc_, c, lc_, &algo_, ws, ws_bytes, stream),
              label_);
}

}  // namespace flopscope::cuda
