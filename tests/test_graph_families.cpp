// Layers beyond GPT-3 (issue 12): Llama-style (grouped-query attention, RoPE, RMSNorm, SwiGLU,
// no biases), multi-query attention, OPT-style (ReLU), Qwen2-style (QKV bias only), and a
// d_head that differs from d_model / n_heads. For each: the GEMM FLOPs are the closed form,
// every GEMM stays inside its tensors, the CPU backend counts exactly the graph's analytic
// FLOPs op by op and verifies against fp64, and measure runs end to end on the CPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.hpp"
#include "backend/cpu/reference_ops.hpp"
#include "backend/verify.hpp"
#include "graph/graph.hpp"
#include "graph_util.hpp"
#include "measure/measure.hpp"
#include "measure/run_point.hpp"
#include "model/model.hpp"

namespace flopscope {
namespace {

struct Family {
  std::string label;
  LayerShape shape;
};

LayerShape base(int64_t b, int64_t s, int64_t d, int64_t h, int64_t hk, int64_t dh, int64_t f) {
  LayerShape x;
  x.batch = b, x.seq = s, x.d_model = d, x.n_heads = h, x.n_kv_heads = hk, x.d_head = dh, x.d_ff = f, x.vocab = 37;
  return x;
}

LayerShape llama(LayerShape x) {
  x.norm = NormKind::rmsnorm;
  x.ffn = FfnKind::swiglu;
  x.position = PositionKind::rope;
  x.rope_theta = 500000.0;
  x.biases = {false, false, false};
  x.tied_embeddings = false;
  return x;
}

std::vector<Family> families() {
  LayerShape opt = base(2, 6, 32, 4, 0, 8, 128);
  opt.ffn = FfnKind::relu;
  LayerShape qwen = llama(base(2, 5, 32, 4, 2, 8, 40));
  qwen.biases = {true, false, false};
  qwen.rope_theta = 1e6;
  LayerShape gpt_rope = base(1, 7, 32, 4, 0, 8, 128);  // MHA with RoPE: g = 1 through the rope op
  gpt_rope.position = PositionKind::rope;
  return {
      {"gpt", layer_shape(2, 6, 4, 8, 37)},
      {"llama_gqa", llama(base(2, 6, 32, 4, 2, 8, 48))},
      {"mqa", llama(base(1, 8, 32, 4, 1, 8, 48))},
      {"llama_dhead_wider", llama(base(2, 4, 24, 4, 2, 8, 40))},  // q_dim 32 != d_model 24
      {"opt_relu", opt},
      {"qwen2_qkv_bias", qwen},
      {"mha_rope", gpt_rope},
  };
}

using graph_test::option_sets;

class Families : public ::testing::TestWithParam<Family> {};

// T (2 (d dq + 2 d dkv + dq d) + 2 c d d_ff) + 4 b s^2 dq, c = 3 for SwiGLU else 2; backward twice.
TEST_P(Families, GemmFlopsAreTheClosedForm) {
  const LayerShape& s = GetParam().shape;
  const LayerGraph g = build_layer_graph(s, GraphOptions{});
  const int64_t T = s.tokens(), d = s.d_model, dq = s.n_heads * s.d_head, dkv = s.kv_heads() * s.d_head,
                c = s.ffn == FfnKind::swiglu ? 3 : 2;
  const int64_t expected = T * (2 * (d * dq + 2 * d * dkv + dq * d) + 2 * c * d * s.d_ff) + 4 * s.batch * s.seq * s.seq * dq;
  EXPECT_EQ(g.gemm_flops(Phase::forward), static_cast<double>(expected));
  EXPECT_EQ(g.gemm_flops(Phase::backward), 2.0 * static_cast<double>(expected));
  // Model FLOPs halve the causal square only.
  double model = 0;
  for (const auto& op : g.ops)
    if (op.phase == Phase::forward && op.impl == OpImpl::gemm) model += op.model_flops;
  EXPECT_EQ(model, static_cast<double>(expected - 2 * s.batch * s.seq * s.seq * dq));
}

// The blocks a variant chose, by name and impl; no bias op where the layer has no bias.
TEST_P(Families, OpsAreTheVariantsBlocks) {
  const LayerShape& s = GetParam().shape;
  GraphOptions o;
  o.include_head = true;
  o.recompute = true;
  const LayerGraph g = build_layer_graph(s, o);
  std::set<std::string> names;
  for (const auto& op : g.ops) EXPECT_TRUE(names.insert(op.name).second) << "duplicate " << op.name;
  const bool rope = s.position == PositionKind::rope, swiglu = s.ffn == FfnKind::swiglu;
  for (const char* p : {"fwd", "rec"}) {
    const std::string pre = p;
    EXPECT_EQ(names.count(pre + ".attn.rope"), rope ? 1u : 0u);
    EXPECT_EQ(names.count(pre + ".ffn.gate"), swiglu ? 1u : 0u);
    EXPECT_EQ(names.count(pre + ".ffn.swiglu"), swiglu ? 1u : 0u);
    EXPECT_EQ(names.count(pre + ".gelu"), s.ffn == FfnKind::gelu ? 1u : 0u);
    EXPECT_EQ(names.count(pre + ".relu"), s.ffn == FfnKind::relu ? 1u : 0u);
    EXPECT_EQ(names.count(pre + ".qkv.bias"), s.biases.qkv ? 1u : 0u);
    EXPECT_EQ(names.count(pre + ".proj.bias"), s.biases.attn_out ? 1u : 0u);
    EXPECT_EQ(names.count(pre + ".ffn.up.bias"), s.biases.ffn ? 1u : 0u);
    EXPECT_EQ(names.count(pre + ".ffn.down.bias"), s.biases.ffn ? 1u : 0u);
  }
  EXPECT_EQ(names.count("bwd.attn.rope"), rope ? 1u : 0u);
  EXPECT_EQ(names.count("bwd.ffn.gate.wgrad"), swiglu ? 1u : 0u);
  EXPECT_EQ(names.count("bwd.ffn.gate.dgrad"), swiglu ? 1u : 0u);
  EXPECT_EQ(names.count("bwd.qkv.bias"), s.biases.qkv ? 1u : 0u);
  const OpImpl norm = s.norm == NormKind::rmsnorm ? OpImpl::rmsnorm_fwd : OpImpl::layernorm_fwd;
  for (const char* n : {"fwd.ln1", "fwd.ln2", "rec.ln1", "fwd.head.ln"}) EXPECT_EQ(g.op(n).impl, norm) << n;
  if (s.norm == NormKind::rmsnorm) {
    for (const auto& t : g.tensors) EXPECT_EQ(t.name.find(".beta"), std::string::npos) << t.name;
    EXPECT_EQ(g.op("bwd.ln1").impl, OpImpl::rmsnorm_bwd);
  }
  // Grouped-query attention: one strided batch over b x kv heads, repeated per query head of a group.
  const Op& scores = g.op("fwd.attn.scores");
  EXPECT_EQ(scores.gemm.batch, s.batch * s.kv_heads());
  EXPECT_EQ(scores.gemm.repeat, s.n_heads / s.kv_heads());
  EXPECT_EQ(g.tensor("qkv").shape.at(1), (s.n_heads + 2 * s.kv_heads()) * s.d_head);
  EXPECT_EQ(g.tensor("w.proj").shape, (std::vector<int64_t>{s.n_heads * s.d_head, s.d_model}));
  if (rope) {
    EXPECT_EQ(g.op("fwd.attn.rope").flops,
              flop_convention::kRope * static_cast<double>(s.tokens() * (s.n_heads + s.kv_heads()) * s.d_head));
  }
}

// Every element a GEMM touches (over batch and repeats) is inside its tensor, and the C
// elements of distinct (repeat, batch) members either coincide (the repeats sum into one C:
// repeat_c = 0 and repeat_beta = 1) or are disjoint.
TEST_P(Families, GemmsStayInsideTheirTensors) {
  for (const GraphOptions& o : option_sets()) {
    const LayerGraph g = build_layer_graph(GetParam().shape, o);
    for (const auto& op : g.ops) {
      if (op.impl != OpImpl::gemm) continue;
      SCOPED_TRACE(op.name);
      const GemmSpec& s = op.gemm;
      EXPECT_EQ(op.flops, s.flops());
      auto last = [&](int64_t rows, int64_t cols, int64_t ld, int64_t off, int64_t stride, int64_t rep) {
        EXPECT_LE(cols, ld);
        return off + (s.repeat - 1) * rep + (s.batch - 1) * stride + (rows - 1) * ld + cols - 1;
      };
      EXPECT_LT(last(s.trans_a ? s.k : s.m, s.trans_a ? s.m : s.k, s.lda, s.a_offset, s.stride_a, s.repeat_a),
                g.tensor(s.a).numel());
      EXPECT_LT(last(s.trans_b ? s.n : s.k, s.trans_b ? s.k : s.n, s.ldb, s.b_offset, s.stride_b, s.repeat_b),
                g.tensor(s.b).numel());
      EXPECT_LT(last(s.m, s.n, s.ldc, s.c_offset, s.stride_c, s.repeat_c), g.tensor(s.c).numel());
      if (s.repeat > 1 && s.repeat_c == 0) {
        EXPECT_EQ(s.repeat_beta, 1.0);
      }
      // Disjointness of C over (repeat, batch), checked by marking every element once.
      if (s.repeat_c != 0 || s.repeat == 1) {
        std::vector<char> seen(static_cast<size_t>(g.tensor(s.c).numel()), 0);
        bool overlap = false;
        for (int64_t r = 0; r < s.repeat; ++r)
          for (int64_t bb = 0; bb < s.batch; ++bb)
            for (int64_t i = 0; i < s.m; ++i)
              for (int64_t j = 0; j < s.n; ++j) {
                auto& e = seen[static_cast<size_t>(s.c_offset + r * s.repeat_c + bb * s.stride_c + i * s.ldc + j)];
                overlap |= e != 0;
                e = 1;
              }
        EXPECT_FALSE(overlap);
      }
    }
  }
}

// Software counts equal the analytic FLOPs exactly, op by op, and the layer verifies against fp64.
TEST_P(Families, CountedEqualsAnalyticAndVerifies) {
  for (const GraphOptions& opt : option_sets()) {
    const LayerGraph g = build_layer_graph(GetParam().shape, opt);
    CpuBackend<float> be;
    be.allocate(g);
    be.fill(3);
    const auto v = verification_run(be, g);
    EXPECT_TRUE(v.at("passed").get<bool>()) << v.at("failures").dump();
    for (const auto& op : g.ops) EXPECT_EQ(be.counted_flops(op.name), op.flops) << op.name;
  }
}

INSTANTIATE_TEST_SUITE_P(Layers, Families, ::testing::ValuesIn(families()),
                         [](const ::testing::TestParamInfo<Family>& p) { return p.param.label; });

// fp8 lowers every linear layer of a SwiGLU layer, the gate included, and the CPU emulation verifies.
TEST(FamiliesFp8, SwigluLayerCastsGateUpAndDownAndVerifies) {
  GraphOptions o;
  o.precision = Precision::fp8;
  o.include_head = true;
  const LayerShape s = llama(base(1, 32, 64, 4, 2, 16, 96));
  const LayerGraph g = build_layer_graph(s, o);
  int linear = 0;
  for (const auto& op : g.ops)
    if (op.impl == OpImpl::gemm && op.gemm.linear && op.group == Group::layer) {
      ++linear;
      EXPECT_EQ(op.precision, Precision::fp8) << op.name;
    }
  EXPECT_EQ(linear, 15);  // qkv, proj, gate, up, down: forward, dgrad, wgrad
  for (const char* n : {"fwd.ffn.gate.cast_a", "fwd.ffn.gate.cast_b", "bwd.ffn.gate.dgrad.cast_a",
                        "bwd.ffn.gate.wgrad.cast_b", "bwd.ffn.down.wgrad.cast_a"})
    EXPECT_NO_THROW(g.op(n)) << n;
  EXPECT_EQ(g.op("fwd.attn.scores").precision, Precision::bf16);
  MeasureSettings ms;
  ms.warmup = 0;
  ms.repeats = 1;
  auto be = make_cpu_backend(Precision::fp8);
  const MeasureRun r = run_measure(*be, g, ms);
  EXPECT_TRUE(r.verification.at("passed").get<bool>()) << r.verification.at("failures").dump();
}

// measure end to end through the library on a tiny Llama-style model: 2 heads of 64, one kv
// head, SwiGLU, RMSNorm, RoPE, untied; verification passes and counted equals analytic.
TEST(FamiliesMeasure, TinyLlamaRunsVerifiesAndCountsExactly) {
  ModelConfig m;
  m.name = "tiny-llama";
  m.n_layers = 2;
  m.d_model = 128;
  m.n_heads = 2;
  m.d_head = 64;
  m.n_kv_heads = 1;
  m.n_ctx = 32;
  m.vocab = 97;
  m.d_ff_explicit = 344;
  m.norm = NormKind::rmsnorm;
  m.ffn = FfnKind::swiglu;
  m.position = PositionKind::rope;
  m.biases = {false, false, false};
  m.tied_embeddings = false;
  PointRequest r;
  r.model = m;
  r.width = Fraction{1, 1};
  r.batch = 2;
  r.backend = "cpu";
  r.include_head = true;
  r.no_ceiling = true;
  r.settings.warmup = 0;
  r.settings.repeats = 2;
  const nlohmann::json j = run_point(r);
  ASSERT_TRUE(j.at("verification").at("passed").get<bool>()) << j.at("verification").dump();
  const LayerGraph g = build_layer_graph(layer_shape(m, 2, 32), GraphOptions{false, true});
  int rows = 0;
  for (const auto& op : j.at("ops")) {
    const std::string name = op.at("name").get<std::string>();
    EXPECT_EQ(op.at("counted_flops").get<double>(), g.op(name).flops) << name;
    ++rows;
  }
  EXPECT_EQ(rows, static_cast<int>(g.ops.size()));
  EXPECT_NO_THROW(g.op("fwd.attn.rope"));
  EXPECT_EQ(g.op("fwd.attn.scores").gemm.repeat, 2);
}

// Reference ops against properties their maths implies.
TEST(ReferenceOpsFamilies, RopeIsARotationAndItsBackwardTheInverse) {
  RopeSpec r{2, 2, 3, 8, 10000.0};  // 2 kv groups of 3 query heads
  const int64_t rows = 6, cols = r.kv_heads * (r.group + 2) * r.d_head;
  std::vector<double> x(static_cast<size_t>(rows * cols));
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37 * static_cast<double>(i) + 1.0);
  std::vector<double> y = x;
  EXPECT_EQ(ref::rope(y.data(), rows, cols, r, false), 3.0 * rows * r.kv_heads * (r.group + 1) * r.d_head);
  for (int64_t t = 0; t < rows; ++t)
    for (int64_t hd = 0; hd < r.kv_heads * (r.group + 2); ++hd) {
      const bool is_v = hd % (r.group + 2) == r.group + 1;
      double nx = 0, ny = 0, diff = 0;
      for (int64_t j = 0; j < r.d_head; ++j) {
        const auto i = static_cast<size_t>(t * cols + hd * r.d_head + j);
        nx += x[i] * x[i];
        ny += y[i] * y[i];
        diff += std::fabs(x[i] - y[i]);
      }
      EXPECT_NEAR(nx, ny, 1e-12);  // a rotation keeps the norm
      if (is_v || t / r.batch == 0) {
        EXPECT_EQ(diff, 0.0);  // V and position 0 unchanged
      } else {
        EXPECT_GT(diff, 1e-3);
      }
    }
  ref::rope(y.data(), rows, cols, r, true);
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(y[i], x[i], 1e-14);
}

TEST(ReferenceOpsFamilies, SwigluAndRmsNormBackwardsMatchCentralDifferences) {
  const double h = 1e-6;
  for (double g : {-3.0, -0.5, 0.0, 0.7, 2.5}) {
    const double u = 1.3, dh = 0.9;
    double dg = 0, du = 0, p = 0, m = 0;
    ref::swiglu_backward(&g, &u, &dh, &dg, &du, 1);
    const double gp = g + h, gm = g - h, up = u + h, um = u - h;
    ref::swiglu_forward(&gp, &u, &p, 1);
    ref::swiglu_forward(&gm, &u, &m, 1);
    EXPECT_NEAR(dg, dh * (p - m) / (2 * h), 1e-7);
    ref::swiglu_forward(&g, &up, &p, 1);
    ref::swiglu_forward(&g, &um, &m, 1);
    EXPECT_NEAR(du, dh * (p - m) / (2 * h), 1e-7);
  }
  const int64_t n = 5;
  std::vector<double> x = {0.3, -1.2, 2.0, 0.1, -0.4}, gamma = {1.0, 0.5, -0.7, 1.3, 0.9}, dy = {0.2, -0.1, 0.4, 1.0, -0.3};
  std::vector<double> y(n), dx(n), dgamma(n);
  double rstd = 0;
  ref::rmsnorm_forward(x.data(), gamma.data(), y.data(), &rstd, 1, n);
  double ms = 0;
  for (double v : x) ms += v * v / n;
  EXPECT_NEAR(rstd, 1 / std::sqrt(ms + ref::kRmsNormEps), 1e-15);
  ref::rmsnorm_backward(dy.data(), x.data(), gamma.data(), &rstd, dx.data(), dgamma.data(), 1, n);
  auto loss = [&](const std::vector<double>& xs, const std::vector<double>& gs) {
    std::vector<double> ys(n);
    double r = 0, l = 0;
    ref::rmsnorm_forward(xs.data(), gs.data(), ys.data(), &r, 1, n);
    for (int64_t j = 0; j < n; ++j) l += ys[static_cast<size_t>(j)] * dy[static_cast<size_t>(j)];
    return l;
  };
  for (int64_t j = 0; j < n; ++j) {
    auto xp = x, xm = x, gp = gamma, gm = gamma;
    xp[static_cast<size_t>(j)] += h, xm[static_cast<size_t>(j)] -= h;
    gp[static_cast<size_t>(j)] += h, gm[static_cast<size_t>(j)] -= h;
    EXPECT_NEAR(dx[static_cast<size_t>(j)], (loss(xp, gamma) - loss(xm, gamma)) / (2 * h), 1e-7);
    EXPECT_NEAR(dgamma[static_cast<size_t>(j)], (loss(x, gp) - loss(x, gm)) / (2 * h), 1e-7);
  }
}

}  // namespace
}  // namespace flopscope
