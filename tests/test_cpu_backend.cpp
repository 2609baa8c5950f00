// The CPU backend counts what it executed: counted GEMM FLOPs equal the graph's executed
// analytic FLOPs exactly, op by op and per phase; verification catches unwritten outputs;
// a failed verification stops the measurement before any throughput exists.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "backend/cpu/cpu_backend.hpp"
#include "backend/cpu/reference_ops.hpp"
#include "backend/verify.hpp"
#include "graph/graph.hpp"
#include "measure/measure.hpp"
#include "model/model.hpp"
#include "util/error.hpp"
#include "wrapped_backend.hpp"

namespace flopscope {
namespace {

LayerGraph small_graph(bool head, bool recompute, Precision p = Precision::fp32, int64_t batch = 2) {
  ModelConfig m = scale_width(preset("gpt3-175b"), Fraction{1, 96});  // one head of 128
  GraphOptions o;
  o.include_head = head;
  o.recompute = recompute;
  o.precision = p;
  LayerShape s = layer_shape(m, batch, 64);
  s.vocab = 300;
  return build_layer_graph(s, o);
}

class CountedFlops : public ::testing::TestWithParam<std::tuple<bool, bool>> {};

TEST_P(CountedFlops, EqualAnalyticExactly) {
  const auto [head, recompute] = GetParam();
  const LayerGraph g = small_graph(head, recompute);
  CpuBackend<float> be;
  be.allocate(g);
  be.fill(1);
  for (const auto& op : g.ops) be.run(op);
  double counted_gemm[3] = {0, 0, 0};
  for (const auto& op : g.ops) {
    EXPECT_EQ(be.counted_flops(op.name), op.flops) << op.name;  // exact: same products of integers
    if (op.impl == OpImpl::gemm && op.group == Group::layer) counted_gemm[static_cast<int>(op.phase)] += be.counted_flops(op.name);
  }
  EXPECT_EQ(counted_gemm[static_cast<int>(Phase::forward)], g.gemm_flops(Phase::forward));
  EXPECT_EQ(counted_gemm[static_cast<int>(Phase::backward)], g.gemm_flops(Phase::backward));
  EXPECT_EQ(counted_gemm[static_cast<int>(Phase::backward)], 2 * counted_gemm[static_cast<int>(Phase::forward)]);
  if (recompute) {
    EXPECT_EQ(counted_gemm[static_cast<int>(Phase::recompute)], counted_gemm[static_cast<int>(Phase::forward)]);
  }
  // Running again accumulates; reset clears.
  for (const auto& op : g.ops) be.run(op);
  EXPECT_EQ(be.counted_flops("fwd.qkv"), 2 * g.op("fwd.qkv").flops);
  be.reset_counts();
  EXPECT_EQ(be.counted_flops("fwd.qkv"), 0);
}

INSTANTIATE_TEST_SUITE_P(Variants, CountedFlops,
                         ::testing::Combine(::testing::Bool(), ::testing::Bool()));

TEST(CpuBackend, FillIsSeededAndNeverZero) {
  const LayerGraph g = small_graph(false, false);
  CpuBackend<float> a, b, c;
  for (auto* be : {&a, &b, &c}) be->allocate(g);
  a.fill(5);
  b.fill(5);
  c.fill(6);
  EXPECT_EQ(a.data("w.qkv"), b.data("w.qkv"));
  EXPECT_NE(a.data("w.qkv"), c.data("w.qkv"));
  for (float v : a.data("x")) ASSERT_NE(v, 0.0f);
  for (float v : a.data("ln1.gamma")) ASSERT_GT(v, 0.5f);
  EXPECT_TRUE(std::isnan(a.data("y")[0])) << "outputs are poisoned before the first run";
}

// Wraps the CPU backend and breaks one op on purpose: skips it, or scales its output.
class FaultyBackend final : public testing_util::WrappedCpuBackend {
 public:
  FaultyBackend(std::string op, double scale) : op_(std::move(op)), scale_(scale) {}
  std::string_view name() const override { return "faulty"; }
  void run(const Op& op) override {
    if (op.name != op_) return inner.run(op);
    if (scale_ == 0) return;  // skip: its output stays poisoned
    inner.run(op);
    for (const auto& out : op.impl == OpImpl::gemm ? std::vector<std::string>{op.gemm.c} : op.outputs)
      for (float& v : inner.data(out)) v = static_cast<float>(v * scale_);
  }

 private:
  std::string op_;
  double scale_;
};

nlohmann::json op_check(const nlohmann::json& v, const std::string& name) {
  for (const auto& o : v.at("ops"))
    if (o.at("name") == name) return o;
  return nullptr;
}

TEST(Verification, PassesOnTheCpuBackend) {
  const LayerGraph g = small_graph(true, true);
  CpuBackend<float> be;
  be.allocate(g);
  be.fill(3);
  const auto v = verification_run(be, g);
  EXPECT_TRUE(v.at("passed").get<bool>()) << v.dump(1);
  EXPECT_EQ(v.at("ops").size(), g.ops.size());
  for (const auto& o : v.at("ops")) {
    EXPECT_GT(o.at("samples").get<int64_t>(), 0) << o.dump();
    EXPECT_LT(o.at("max_rel_error").get<double>(), 1e-4) << o.dump();
  }
}

TEST(Verification, CatchesAnUnwrittenOutput) {
  const LayerGraph g = small_graph(false, false);
  FaultyBackend be("fwd.gelu", 0);
  be.allocate(g);
  be.fill(1);
  const auto v = verification_run(be, g);
  EXPECT_FALSE(v.at("passed").get<bool>());
  EXPECT_FALSE(op_check(v, "fwd.gelu").at("passed").get<bool>());
  bool named = false;
  for (const auto& f : v.at("nonfinite")) named |= f.at("tensor") == "gelu.out";
  EXPECT_TRUE(named) << v.dump();
}

// A result wrong by one percent is caught, for GEMMs and for each kind of other op.
class VerificationCatchesWrongOutput : public ::testing::TestWithParam<const char*> {};

TEST_P(VerificationCatchesWrongOutput, ScaledByOnePercent) {
  const LayerGraph g = small_graph(true, false);
  FaultyBackend be(GetParam(), 1.01);
  be.allocate(g);
  be.fill(1);
  const auto v = verification_run(be, g);
  EXPECT_FALSE(v.at("passed").get<bool>());
  const auto o = op_check(v, GetParam());
  ASSERT_FALSE(o.is_null());
  EXPECT_FALSE(o.at("passed").get<bool>()) << o.dump();
  EXPECT_GT(o.at("max_rel_error").get<double>(), 5e-3) << o.dump();
}

INSTANTIATE_TEST_SUITE_P(Ops, VerificationCatchesWrongOutput,
                         ::testing::Values("fwd.qkv", "fwd.attn.scores", "bwd.attn.scores.dk", "bwd.ffn.up.wgrad",
                                           "fwd.ln1", "bwd.ln2", "fwd.attn.softmax", "bwd.attn.softmax", "fwd.gelu",
                                           "bwd.gelu", "fwd.qkv.bias", "bwd.qkv.bias", "fwd.residual1",
                                           "fwd.head.loss", "bwd.head.loss"));

TEST(Measure, RefusesToTimeALayerThatFailsVerification) {
  const LayerGraph g = small_graph(false, false);
  FaultyBackend be("bwd.attn.softmax", 0);
  MeasureSettings s;
  s.warmup = 0;
  s.repeats = 1;
  EXPECT_THROW(run_measure(be, g, s), Error);
}

TEST(Measure, TimesEveryOpAndPhase) {
  const LayerGraph g = small_graph(true, true);
  CpuBackend<float> be;
  MeasureSettings s;
  s.warmup = 1;
  s.repeats = 3;
  const MeasureRun r = run_measure(be, g, s);
  ASSERT_EQ(r.op_ms.size(), g.ops.size());
  ASSERT_EQ(r.counted_flops.size(), g.ops.size());
  double sum = 0;
  for (const auto& o : r.op_ms) {
    ASSERT_EQ(o.ms.size(), 3u);
    EXPECT_GE(o.min(), 0);
    EXPECT_LE(o.min(), o.median());
    EXPECT_LE(o.median(), o.max());
    sum += o.ms[0];
  }
  // Phases partition the layer: forward + backward = total, and ops sum to the total.
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_NEAR(r.forward_ms.ms[i] + r.backward_ms.ms[i], r.total_ms.ms[i], 1e-9);
  }
  EXPECT_NEAR(sum, r.total_ms.ms[0], 1e-6);
  EXPECT_TRUE(r.verification.at("passed").get<bool>());
}

TEST(CpuBackend, CeilingsAreTimedAndPositive) {
  CpuBackend<float> be;
  const auto g = be.gemm_ceiling(Precision::fp32, 256);
  EXPECT_GT(g.at("flops_per_s").get<double>(), 1e8);  // any CPU of this century does 0.1 GFLOP/s
  EXPECT_NEAR(g.at("flops_per_s").get<double>() * g.at("ms").get<double>() * 1e-3, 2.0 * 256 * 256 * 256, 1.0);
  const auto c = be.copy_bandwidth(1 << 20);
  EXPECT_GT(c.at("bytes_per_s").get<double>(), 1e8);
}

TEST(CpuBackend, RejectsPrecisionsItCannotRun) {
  EXPECT_THROW(make_cpu_backend(Precision::bf16), UsageError);
  EXPECT_THROW(make_cpu_backend(Precision::tf32), UsageError);
  EXPECT_NO_THROW(make_cpu_backend(Precision::fp64));
}

// Reference ops, each against a property its maths implies.
TEST(ReferenceOps, SoftmaxRowsSumToOneAndMaskTheFuture) {
  const int64_t n = 7, batch = 2;
  std::vector<double> s(batch * n * n), p(s.size());
  for (size_t i = 0; i < s.size(); ++i) s[i] = std::sin(0.7 * static_cast<double>(i)) * 3;
  ref::softmax_causal_forward(s.data(), p.data(), batch, n);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t i = 0; i < n; ++i) {
      double sum = 0;
      for (int64_t j = 0; j < n; ++j) {
        const double v = p[(b * n + i) * n + j];
        if (j > i) {
          EXPECT_EQ(v, 0.0);
        }
        sum += v;
      }
      EXPECT_NEAR(sum, 1.0, 1e-12);
    }
  }
  EXPECT_EQ(p[0], 1.0);  // row 0 sees only itself
}

TEST(ReferenceOps, GeluMatchesKnownValuesAndItsDerivative) {
  // gelu_tanh(1) = 0.5 (1 + tanh(sqrt(2/pi) * 1.044715)) = 0.841191990...
  std::vector<double> x = {-3, -1, 0, 0.5, 1, 2.5}, y(x.size()), dy(x.size(), 1.0), dx(x.size());
  ref::gelu_forward(x.data(), y.data(), 6);
  EXPECT_NEAR(y[4], 0.8411919906082768, 1e-12);
  EXPECT_EQ(y[2], 0.0);
  ref::gelu_backward(x.data(), dy.data(), dx.data(), 6);
  for (size_t i = 0; i < x.size(); ++i) {
    const double h = 1e-6;
    double yp, ym;
    const double xp = x[i] + h, xm = x[i] - h;
    ref::gelu_forward(&xp, &yp, 1);
    ref::gelu_forward(&xm, &ym, 1);
    EXPECT_NEAR(dx[i], (yp - ym) / (2 * h), 1e-8) << "x = " << x[i];
  }
}

TEST(ReferenceOps, LayerNormNormalises) {
  const int64_t rows = 3, cols = 16;
  std::vector<double> x(rows * cols), gamma(cols, 1.0), beta(cols, 0.0), y(x.size()), mean(rows), rstd(rows);
  for (size_t i = 0; i < x.size(); ++i) x[i] = 5 + std::cos(1.3 * static_cast<double>(i)) * 2;
  ref::layernorm_forward(x.data(), gamma.data(), beta.data(), y.data(), mean.data(), rstd.data(), rows, cols);
  for (int64_t r = 0; r < rows; ++r) {
    double m = 0, v = 0;
    for (int64_t j = 0; j < cols; ++j) m += y[r * cols + j];
    m /= cols;
    for (int64_t j = 0; j < cols; ++j) v += (y[r * cols + j] - m) * (y[r * cols + j] - m);
    v /= cols;
    EXPECT_NEAR(m, 0.0, 1e-12);
    EXPECT_NEAR(v, 1.0, 1e-4);  // eps = 1e-5 in the denominator
  }
}

// fp8 on the CPU is an emulation (E4M3 rounding of the linear GEMMs' operands, fp32
// arithmetic): what the tests of the fp8 graph, its casts and their scales run on.
TEST(Fp8Emulation, CalibrationMakesPowerOfTwoScalesThatFillTheRange) {
  const LayerGraph g = small_graph(false, false, Precision::fp8, 1);
  auto be = make_cpu_backend(Precision::fp8);
  be->allocate(g);
  be->fill(2);
  for (const auto& op : g.ops) be->run(op);
  be->fp8_calibrate();
  int copies = 0;
  for (const auto& op : g.ops) {
    if (op.impl != OpImpl::cast_fp8) continue;
    ++copies;
    const double scale = be->fp8_scale(op.outputs[0]);
    EXPECT_EQ(scale, std::exp2(std::round(std::log2(scale)))) << op.name << ": a power of two";
    // The source's largest |x| times the scale lands in (224, 448].
    double amax = 0;
    for (double v : be->read(op.inputs[0], 0, op.rows * op.cols)) amax = std::max(amax, std::fabs(v));
    EXPECT_GT(amax * scale, 224) << op.name;
    EXPECT_LE(amax * scale, 448) << op.name;
  }
  EXPECT_EQ(copies, 24);
}

TEST(Fp8Emulation, TheLayerStaysCloseToFp32AndVerifies) {
  const LayerGraph g32 = small_graph(false, false, Precision::fp32, 1);
  const LayerGraph g8 = small_graph(false, false, Precision::fp8, 1);
  CpuBackend<float> ref;
  ref.allocate(g32);
  ref.fill(4);
  for (const auto& op : g32.ops) ref.run(op);
  MeasureSettings s;
  s.seed = 4;
  s.warmup = 0;
  s.repeats = 1;
  auto be = make_cpu_backend(Precision::fp8);
  const MeasureRun r = run_measure(*be, g8, s);  // calibrates, verifies (casts exact), times
  EXPECT_TRUE(r.verification.at("passed").get<bool>());
  for (const auto& o : r.verification.at("ops"))
    if (o.at("name").get<std::string>().find(".cast_") != std::string::npos) {
      EXPECT_EQ(o.at("max_rel_error").get<double>(), 0.0) << o.dump();
    }
  // Relative (Frobenius) distance of the outputs and gradients from the fp32 layer: E4M3's
  // 3-bit mantissa rounds each operand by up to 2^-4; errors average out over the sums.
  for (const char* t : {"y", "d.x", "d.w.qkv", "d.w.down"}) {
    const auto a = be->read(t, 0, g8.tensor(t).numel());
    const auto b = ref.read(t, 0, g32.tensor(t).numel());
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      num += (a[i] - b[i]) * (a[i] - b[i]);
      den += b[i] * b[i];
    }
    const double rel = std::sqrt(num / den);
    EXPECT_LT(rel, 0.1) << t;
    EXPECT_GT(rel, 1e-4) << t << ": fp8 rounding must show";
  }
}

}  // namespace
}  // namespace flopscope
