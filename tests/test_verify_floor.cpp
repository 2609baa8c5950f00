// The verifier's absolute floor (backend/verify.hpp, verify_abs_floor): shown on the CPU with
// the layer that failed fp16 verification with the LM head, computed in fp64 and rounded to
// fp16 in software as an fp16 device stores it (every activation and gradient rounded to the
// nearest fp16, subnormals included; statistics kept as floats, as the CUDA backend keeps
// them). dq and dk come out near 1e-6, fp16 subnormals, where rounding alone reads about 2e-2
// of max |ref| against the 5e-3 GEMM tolerance: with the floor the layer passes, and an error
// of 3% in an op with normal-range outputs is still caught.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "backend/verify.hpp"
#include "graph/graph.hpp"
#include "wrapped_backend.hpp"

namespace flopscope {
namespace {

// x rounded to the nearest fp16 (ties to even), subnormals included; overflow to infinity.
double round_to_fp16(double x) {
  if (!std::isfinite(x) || x == 0) return x;
  const double a = std::fabs(x);
  if (a >= 65520.0) return std::copysign(INFINITY, x);
  int e = 0;
  std::frexp(a, &e);                                        // a = f 2^e, f in [0.5, 1)
  const double spacing = std::ldexp(1.0, std::max(e - 1, -14) - 10);  // 10 fraction bits; 2^-24 below 2^-14
  return std::copysign(std::nearbyint(a / spacing) * spacing, x);
}

// The fp64 CPU backend with fp16 storage: inputs, weights and every op's outputs rounded.
class Fp16Storage : public testing_util::WrappedCpuBackendOf<double> {
 public:
  explicit Fp16Storage(std::string wrong_op = "") : wrong_op_(std::move(wrong_op)) {}
  void allocate(const LayerGraph& g) override {
    graph_ = &g;
    inner.allocate(g);
  }
  void fill(uint64_t seed) override {
    inner.fill(seed);
    for (const auto& t : graph_->tensors) round(t.name, 1.0);
  }
  void run(const Op& op) override {
    inner.run(op);
    const double factor = op.name == wrong_op_ ? 1.03 : 1.0;
    if (op.impl == OpImpl::gemm) {
      round(op.gemm.c, factor);
    } else {
      for (const auto& t : op.outputs) round(t, factor);
    }
  }

 private:
  void round(const std::string& name, double factor) {
    const TensorSpec& t = graph_->tensor(name);
    if (t.role == TensorRole::statistic || t.role == TensorRole::index) return;
    for (double& v : inner.data(name)) v = round_to_fp16(v * factor);
  }
  const LayerGraph* graph_ = nullptr;
  std::string wrong_op_;
};

// The GPU test's layer (tests/test_gpu_backend.cpp, GpuLayer): batch 2, seq 64, 2 heads of
// 64, vocabulary 1000, with the LM head and recompute.
LayerGraph fp16_layer() {
  GraphOptions o;
  o.precision = Precision::fp16;
  o.include_head = true;
  o.recompute = true;
  return build_layer_graph(layer_shape(2, 64, 2, 64, 1000), o);
}

TEST(VerificationFloor, RoundingHelperIsFp16) {
  EXPECT_EQ(round_to_fp16(1.0), 1.0);
  EXPECT_EQ(round_to_fp16(1.0 + std::ldexp(1.0, -11)), 1.0);  // a tie, to even
  EXPECT_EQ(round_to_fp16(1.0 + 3 * std::ldexp(1.0, -11)), 1.0 + std::ldexp(1.0, -9));
  EXPECT_EQ(round_to_fp16(std::ldexp(1.0, -24)), std::ldexp(1.0, -24));  // the smallest subnormal
  EXPECT_EQ(round_to_fp16(std::ldexp(1.0, -26)), 0.0);
  EXPECT_EQ(round_to_fp16(3e-7), 5 * std::ldexp(1.0, -24));  // 5.03 spacings
  EXPECT_EQ(round_to_fp16(-65504.0), -65504.0);
  EXPECT_TRUE(std::isinf(round_to_fp16(70000.0)));
}

TEST(VerificationFloor, FloorsFollowTheOutputDtype) {
  EXPECT_EQ(verify_abs_floor(Precision::fp16), std::ldexp(1.0, -24));
  EXPECT_EQ(verify_abs_floor(Precision::bf16), std::ldexp(1.0, -133));
  EXPECT_EQ(verify_abs_floor(Precision::fp8), std::ldexp(1.0, -133));  // fp8 GEMMs write bf16
  EXPECT_EQ(verify_abs_floor(Precision::fp32), std::ldexp(1.0, -149));
  EXPECT_EQ(verify_abs_floor(Precision::fp64), 0.0);
}

TEST(VerificationFloor, TheFp64LayerRoundedToFp16PassesWithTheLmHead) {
  const LayerGraph g = fp16_layer();
  Fp16Storage be;
  be.allocate(g);
  be.fill(5);
  const auto v = verification_run(be, g);
  EXPECT_TRUE(v.at("passed").get<bool>()) << v.at("failures").dump(1);
  // The floor is what lets it pass: some GEMM's outputs are fp16 subnormals (max |ref| below
  // 2^-14) whose rounding alone is beyond the relative tolerance.
  int beyond_relative = 0;
  std::string which;
  for (const auto& o : v.at("ops")) {
    const double scale = o.at("scale").get<double>(), err = o.at("max_abs_error").get<double>();
    if (scale > 0 && scale < std::ldexp(1.0, -14) && err > o.at("tolerance").get<double>() * scale) {
      ++beyond_relative;
      which += o.at("name").get<std::string>() + " ";
      EXPECT_LE(err, o.at("tolerance").get<double>() * scale + o.at("abs_floor").get<double>()) << o.dump();
    }
  }
  EXPECT_GT(beyond_relative, 0) << "no op's outputs were fp16 subnormals beyond the relative tolerance; the test no "
                                   "longer shows the floor";
  std::printf("VerificationFloor: ops passing by the fp16 floor alone: %s\n", which.c_str());
}

// 3%: past every fp16 tolerance (5e-3 for GEMMs, 1e-2 for other ops) by more than fp16's
// rounding of the wrong values (2^-11 relative), so whichever way they round it is caught.
TEST(VerificationFloor, AnErrorOfThreePercentIsStillCaughtInFp16) {
  const LayerGraph g = fp16_layer();
  for (const char* op : {"fwd.qkv", "fwd.attn.scores", "bwd.ffn.up.wgrad", "fwd.ln1"}) {
    SCOPED_TRACE(op);
    Fp16Storage be(op);
    be.allocate(g);
    be.fill(5);
    const auto v = verification_run(be, g);
    EXPECT_FALSE(v.at("passed").get<bool>());
    bool failed = false;
    for (const auto& f : v.at("failures")) failed = failed || f.value("name", "") == op;
    EXPECT_TRUE(failed) << v.at("failures").dump(1);
  }
}

}  // namespace
}  // namespace flopscope
