// The CUDA backend on a GPU: every GEMM kind and dtype on tile-aligned and unaligned shapes,
// the whole layer's gradients against the CPU backend on a small layer (bf16 tolerances), the
// verification run, and `measure` end to end. Every test skips with the reason when no GPU
// is visible, so CI (no GPU) compiles and lists them.
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.hpp"
#include "backend/cuda/cuda_backend.hpp"
#include "backend/cuda/lt_gemm.hpp"
#include "backend/select.hpp"
#include "backend/verify.hpp"
#include "graph/graph.hpp"
#include "measure/measure.hpp"
#include "model/model.hpp"
#include "util/error.hpp"
#include "cli_util.hpp"

namespace flopscope {
namespace {

#define REQUIRE_GPU()                                                 \
  do {                                                                \
    const GpuProbe probe = probe_gpus();                              \
    if (probe.count == 0) GTEST_SKIP() << "no GPU visible: " << probe.error; \
  } while (0)

// FP8 tensor cores: compute capability 8.9 (Ada) or newer.
#define REQUIRE_FP8_GPU()                                                                              \
  do {                                                                                                 \
    REQUIRE_GPU();                                                                                     \
    cudaDeviceProp prop{};                                                                             \
    ASSERT_EQ(cudaGetDeviceProperties(&prop, 0), cudaSuccess);                                         \
    if (prop.major * 10 + prop.minor < 89)                                                             \
      GTEST_SKIP() << prop.name << " is sm_" << prop.major << prop.minor << ": no FP8 tensor cores"; \
  } while (0)


struct GemmCase {
  const char* label;
  int64_t m, n, k, batch;
  bool ta, tb;
};

class GpuGemm : public ::testing::TestWithParam<std::tuple<GemmCase, Precision>> {};

// One GEMM op alone, verified by the shared verifier (sampled outputs against fp64).
TEST_P(GpuGemm, MatchesFp64Samples) {
  REQUIRE_GPU();
  const auto [c, p] = GetParam();
  LayerGraph g;
  g.options.precision = p;
  const int64_t a_rows = c.ta ? c.k : c.m, a_cols = c.ta ? c.m : c.k;
  const int64_t b_rows = c.tb ? c.n : c.k, b_cols = c.tb ? c.k : c.n;
  g.tensors = {{"a", TensorRole::input, {c.batch, a_rows, a_cols}},
               {"b", TensorRole::input, {c.batch, b_rows, b_cols}},
               {"c", TensorRole::activation, {c.batch, c.m, c.n}}};
  Op op;
  op.name = std::string("gemm.") + c.label;
  op.kind = c.batch > 1 ? OpKind::batched_gemm : OpKind::gemm;
  op.precision = p;
  op.gemm = {c.m, c.n, c.k, c.batch, c.ta, c.tb, "a", "b", "c", 0, 0, 0, a_cols, b_cols, c.n,
             a_rows * a_cols, b_rows * b_cols, c.m * c.n, 0.5, 0.0, false};
  op.flops = op.gemm.flops();
  g.ops = {op};
  auto be = make_cuda_backend(p, CudaOptions{});
  be->allocate(g);
  be->prepare(g);
  be->fill(11);
  const auto v = verification_run(*be, g);
  EXPECT_TRUE(v.at("passed").get<bool>()) << v.dump(1);
}

INSTANTIATE_TEST_SUITE_P(
    GpuShapes, GpuGemm,
    ::testing::Combine(::testing::Values(GemmCase{"aligned_nn", 256, 512, 128, 1, false, false},
                                         GemmCase{"aligned_nt", 256, 512, 128, 1, false, true},
                                         GemmCase{"aligned_tn", 256, 512, 128, 1, true, false},
                                         GemmCase{"vocab_unaligned", 64, 50257, 96, 1, false, false},
                                         GemmCase{"odd", 33, 65, 17, 1, false, true},
                                         GemmCase{"batched", 128, 128, 64, 6, false, true},
                                         GemmCase{"batched_tn", 128, 64, 128, 6, true, false}),
                       ::testing::Values(Precision::bf16, Precision::fp16, Precision::tf32, Precision::fp32)),
    [](const auto& param_info) {
      return std::string(std::get<0>(param_info.param).label) + "_" + std::string(to_string(std::get<1>(param_info.param)));
    });

// Allocates, fills with `seed` and runs every op of the graph once (the fp64 references).
void run_layer(Backend& b, const LayerGraph& g, uint64_t seed) {
  b.allocate(g);
  b.fill(seed);
  for (const auto& op : g.ops) b.run(op);
}

class GpuLayer : public ::testing::TestWithParam<Precision> {};

// The whole layer, forward and backward, verified op by op; then its gradients against the
// CPU backend (fp64) from the same seeded inputs: relative error per gradient tensor.
TEST_P(GpuLayer, GradientsMatchTheCpuBackend) {
  REQUIRE_GPU();
  const Precision p = GetParam();
  GraphOptions o;
  o.precision = p;
  o.include_head = true;
  o.recompute = true;
  const LayerShape s = layer_shape(2, 64, 2, 64, 1000);
  const LayerGraph g = build_layer_graph(s, o);
  auto gpu = make_cuda_backend(p, CudaOptions{});
  gpu->allocate(g);
  gpu->prepare(g);
  gpu->fill(5);
  const auto v = verification_run(*gpu, g);
  ASSERT_TRUE(v.at("passed").get<bool>()) << v.dump(1);

  GraphOptions o64 = o;
  o64.precision = Precision::fp64;
  const LayerGraph g64 = build_layer_graph(s, o64);
  CpuBackend<double> cpu;
  run_layer(cpu, g64, 5);
  // bf16/fp16 storage of every activation compounds through the layer: 5e-2 of the gradient's
  // norm; tf32 5e-3; fp32 1e-4. The comparison is on norms (relative Frobenius distance), not
  // element by element: with the LM head the loss gradient is divided by tokens and spread over
  // the vocabulary, and dq, dk come out near 1e-6, inside fp16's subnormal range (below 2^-14),
  // where a stored value has an absolute resolution of 2^-24 and no relative one. So in fp16
  // the bound adds that resolution per element, sqrt(N) 2^-24 in norm: it covers the
  // quantisation of subnormal values, and is below 1e-3 of the norm for any tensor whose typical
  // element is a normal fp16 number, so it hides no error there. bf16, tf32 and fp32 keep
  // fp32's exponent range and need no floor.
  const double tol = p == Precision::fp32 ? 1e-4 : p == Precision::tf32 ? 5e-3 : 5e-2;
  const double floor_per_element = p == Precision::fp16 ? std::ldexp(1.0, -24) : 0.0;
  for (const auto& t : g.tensors) {
    if (t.role != TensorRole::weight_grad && t.name != "d.x") continue;
    const auto got = gpu->read(t.name, 0, t.numel(), 1);
    const auto& want = cpu.data(t.name);
    double diff2 = 0, norm2 = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_TRUE(std::isfinite(got[i])) << t.name << "[" << i << "]";
      diff2 += (got[i] - want[i]) * (got[i] - want[i]);
      norm2 += want[i] * want[i];
    }
    const double bound = tol * std::sqrt(norm2) + floor_per_element * std::sqrt(static_cast<double>(got.size()));
    EXPECT_LT(std::sqrt(diff2), bound) << t.name << " in " << to_string(p) << ": |got - want| " << std::sqrt(diff2)
                                       << ", |want| " << std::sqrt(norm2);
  }
}

INSTANTIATE_TEST_SUITE_P(GpuDtypes, GpuLayer,
                         ::testing::Values(Precision::bf16, Precision::fp16, Precision::tf32, Precision::fp32),
                         [](const auto& param_info) { return std::string(to_string(param_info.param)); });

TEST(GpuMeasure, TimesEveryOpAndReportsCeilings) {
  REQUIRE_GPU();
  GraphOptions o;
  o.precision = Precision::bf16;
  const LayerGraph g = build_layer_graph(layer_shape(1, 256, 4, 128, 50257), o);
  auto be = make_cuda_backend(Precision::bf16, CudaOptions{});
  MeasureSettings s;
  s.repeats = 3;
  const MeasureRun r = run_measure(*be, g, s);
  EXPECT_TRUE(r.verification.at("passed").get<bool>());
  ASSERT_EQ(r.op_ms.size(), g.ops.size());
  for (const auto& op : r.op_ms) EXPECT_GT(op.median(), 0);
  EXPECT_TRUE(r.prepared.at("gemm_algorithms").contains("fwd.qkv"));
  const auto ceiling = be->gemm_ceiling(Precision::bf16, 2048);
  EXPECT_GT(ceiling.at("flops_per_s").get<double>(), 1e12);  // any tensor-core GPU
  const auto bw = be->copy_bandwidth(int64_t{256} << 20);
  EXPECT_GT(bw.at("bytes_per_s").get<double>(), 1e11);
}

TEST(GpuMeasure, CliEndToEnd) {
  REQUIRE_GPU();
  const std::string out = ::testing::TempDir() + "gpu_measure.json";
  const std::string cmd = cli_test::flopscope_bin() +
                          " measure -q --backend cuda --model gpt3-175b --width 1/96 --repeats 2 --format json -o " + out;
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::FILE* f = std::fopen(out.c_str(), "r");
  ASSERT_NE(f, nullptr);
  std::fclose(f);
}

// Relative Frobenius distance between a GPU tensor and a reference.
double rel_distance(const std::vector<double>& got, const std::vector<double>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  return std::sqrt(num / den);
}

// fp8: the graph's casts and E4M3 GEMMs verified op by op after calibration (casts bit-exact
// against the host model), and the layer's gradients close to the fp64 CPU layer.
TEST(GpuFp8, LayerVerifiesAndStaysCloseToFp64) {
  REQUIRE_FP8_GPU();
  GraphOptions o;
  o.precision = Precision::fp8;
  o.recompute = true;
  const LayerShape s = layer_shape(2, 64, 2, 64, 1000);
  const LayerGraph g = build_layer_graph(s, o);
  auto gpu = make_cuda_backend(Precision::fp8, CudaOptions{});
  gpu->allocate(g);
  const auto prepared = gpu->prepare(g);
  EXPECT_TRUE(prepared.contains("fp8")) << prepared.dump();
  gpu->fill(5);
  for (const auto& op : g.ops) gpu->run(op);  // the calibration pass run_measure makes
  gpu->synchronize();
  gpu->fp8_calibrate();
  gpu->fill(5);
  const auto v = verification_run(*gpu, g);
  ASSERT_TRUE(v.at("passed").get<bool>()) << v.dump(1);
  for (const auto& op : v.at("ops"))
    if (op.at("name").get<std::string>().find(".cast_") != std::string::npos) {
      EXPECT_EQ(op.at("max_rel_error").get<double>(), 0.0) << op.dump();
    }
  for (const auto& t : g.tensors)
    if (t.role == TensorRole::fp8_copy) {
      const double scale = gpu->fp8_scale(t.name);
      EXPECT_EQ(scale, std::exp2(std::round(std::log2(scale)))) << t.name;
      EXPECT_NE(scale, 1.0) << t.name << ": calibration should move every scale off 1 at these magnitudes";
    }
  GraphOptions o64 = o;
  o64.precision = Precision::fp64;
  const LayerGraph g64 = build_layer_graph(s, o64);
  CpuBackend<double> cpu;
  run_layer(cpu, g64, 5);
  for (const char* t : {"y", "d.x", "d.w.qkv", "d.w.proj", "d.w.up", "d.w.down"}) {
    const auto got = gpu->read(t, 0, g.tensor(t).numel(), 1);
    EXPECT_LT(rel_distance(got, cpu.data(t)), 0.1) << t;
  }
}

TEST(GpuFp8, CeilingRunsAndMeasureEndToEnd) {
  REQUIRE_FP8_GPU();
  auto be = make_cuda_backend(Precision::fp8, CudaOptions{});
  const auto ceiling = be->gemm_ceiling(Precision::fp8, 4096);
  EXPECT_GT(ceiling.at("flops_per_s").get<double>(), 1e13) << ceiling.dump();
  GraphOptions o;
  o.precision = Precision::fp8;
  const LayerGraph g = build_layer_graph(layer_shape(1, 256, 4, 128, 50257), o);
  MeasureSettings s;
  s.repeats = 2;
  const MeasureRun r = run_measure(*be, g, s);
  EXPECT_TRUE(r.verification.at("passed").get<bool>());
  for (const auto& op : r.op_ms) EXPECT_GT(op.median(), 0);
}

TEST(GpuFp8, RefusedWithTheReasonWithoutFp8TensorCores) {
  REQUIRE_GPU();
  cudaDeviceProp prop{};
  ASSERT_EQ(cudaGetDeviceProperties(&prop, 0), cudaSuccess);
  if (prop.major * 10 + prop.minor >= 89) GTEST_SKIP() << prop.name << " has FP8 tensor cores";
  EXPECT_THROW(make_cuda_backend(Precision::fp8, CudaOptions{}), UsageError);
}

// --cuda-graph and --input-sets: one graph per set, every run a replay, per-op times from the
// event nodes inside the graph.
TEST(GpuGraph, ReplaysTimeEveryOpAndRotateInputSets) {
  REQUIRE_GPU();
  GraphOptions o;
  o.precision = Precision::bf16;
  o.input_sets = 2;
  const LayerGraph g = build_layer_graph(layer_shape(1, 256, 4, 128, 50257), o);
  auto be = make_cuda_backend(Precision::bf16, CudaOptions{});
  MeasureSettings s;
  s.repeats = 4;
  s.warmup = 1;
  s.cuda_graph = true;
  const MeasureRun r = run_measure(*be, g, s);
  EXPECT_TRUE(r.verification.at("passed").get<bool>());
  ASSERT_EQ(r.op_ms.size(), g.ops.size());
  for (const auto& op : r.op_ms) {
    ASSERT_EQ(op.ms.size(), 4u);
    EXPECT_GT(op.median(), 0);
  }
  ASSERT_EQ(r.replay_ms.ms.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_GE(r.replay_ms.ms[i] * 1.001 + 1e-3, r.total_ms.ms[i]);
  // The sets hold different inputs, and set 0 is what a single-set run fills.
  be->use_input_set(1);
  const auto x1 = be->read("x", 0, 64, 1);
  be->use_input_set(0);
  const auto x0 = be->read("x", 0, 64, 1);
  EXPECT_NE(x0, x1);
  GraphOptions single = o;
  single.input_sets = 1;
  const LayerGraph g1 = build_layer_graph(g.shape, single);
  auto be1 = make_cuda_backend(Precision::bf16, CudaOptions{});
  be1->allocate(g1);
  be1->fill(s.seed);
  EXPECT_EQ(be1->read("x", 0, 64, 1), x0);
}

TEST(GpuGraph, CliEndToEndWithFp8WhereItRuns) {
  REQUIRE_GPU();
  cudaDeviceProp prop{};
  ASSERT_EQ(cudaGetDeviceProperties(&prop, 0), cudaSuccess);
  const std::string precision = prop.major * 10 + prop.minor >= 89 ? "fp8" : "bf16";
  const std::string out = ::testing::TempDir() + "gpu_graph.json";
  const std::string cmd = cli_test::flopscope_bin() + " measure -q --backend cuda --model gpt3-175b --width 1/96 "
                          "--repeats 2 --cuda-graph --input-sets 2 --precision " + precision + " --format json -o " + out;
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::FILE* f = std::fopen(out.c_str(), "r");
  ASSERT_NE(f, nullptr);
  std::fclose(f);
}

// No GPU needed: which GEMM ops share one cuBLASLt algorithm choice. An operand at an offset
// that lowers its alignment (one bf16 element: 2 bytes) needs its own choice, since the chosen
// algorithm may require the alignment it was selected with; an offset keeping the alignment
// (128 bf16 elements: 256 bytes) shares it, as do identical ops.
TEST(GemmPlanKey, OperandOffsetsThatChangeAlignmentGetTheirOwnChoice) {
  EXPECT_EQ(cuda::offset_alignment(0), 256u);
  EXPECT_EQ(cuda::offset_alignment(2), 2u);
  EXPECT_EQ(cuda::offset_alignment(192), 64u);
  EXPECT_EQ(cuda::offset_alignment(4096), 256u);
  const cuda::LtTypes bf16 = cuda::lt_types(Precision::bf16);
  GemmSpec g{256, 768, 64, 4, false, true, "qkv", "qkv", "s", 0, 0, 0, 2304, 2304, 768, 64, 64, 768 * 256, 0.125, 0.0,
             false};
  const std::string base = cuda::plan_key(g, bf16);
  EXPECT_EQ(cuda::plan_key(g, bf16), base);
  for (int64_t GemmSpec::*offset : {&GemmSpec::a_offset, &GemmSpec::b_offset, &GemmSpec::c_offset}) {
    GemmSpec h = g;
    h.*offset = 1;  // 2 bytes past the start
    EXPECT_NE(cuda::plan_key(h, bf16), base);
    h.*offset = 128;  // 256 bytes: the same alignment as 0
    EXPECT_EQ(cuda::plan_key(h, bf16), base);
    h.*offset = 768;  // 1536 bytes: 512-aligned at least, capped at 256
    EXPECT_EQ(cuda::plan_key(h, bf16), base);
    h.*offset = 96;  // 192 bytes: 64-byte alignment
    EXPECT_NE(cuda::plan_key(h, bf16), base);
  }
  EXPECT_NE(cuda::plan_key(g, cuda::lt_types(Precision::fp16)), base);  // another data type
  GemmSpec other_shape = g;
  other_shape.n = 512;
  EXPECT_NE(cuda::plan_key(other_shape, bf16), base);
}

}  // namespace
}  // namespace flopscope
