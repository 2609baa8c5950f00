// Causal attention products in row blocks (GraphOptions::causal_block, the CPU backend's
// default): each row block of C skips what the causal mask makes zero or unused. The graph's
// executed FLOPs are the blocks' (closed form = the sum over GemmSpec::block), model FLOPs still
// halve the full square, the CPU backend counts exactly what it executed, and the layer's
// outputs and gradients are the full square's (GQA, batch 2, a sequence no block size divides).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.hpp"
#include "backend/select.hpp"
#include "backend/verify.hpp"
#include "graph/graph.hpp"
#include "measure/run_point.hpp"
#include "model/model.hpp"
#include "util/error.hpp"

namespace flopscope {
namespace {

const Triangle kTriangles[] = {Triangle::c_lower, Triangle::a_lower, Triangle::a_upper};

GemmSpec square_product(Triangle t, int64_t side, int64_t other, int64_t block) {
  GemmSpec g;
  g.m = side;
  g.n = t == Triangle::c_lower ? side : other;
  g.k = t == Triangle::c_lower ? other : side;
  g.batch = 3;
  g.repeat = 2;
  g.triangle = t;
  g.causal_block = block;
  return g;
}

// The FLOPs of the row blocks, one by one, as the CPU backend runs them.
double sum_of_blocks(const GemmSpec& g) {
  double s = 0;
  for (int64_t r0 = 0; r0 < g.m; r0 += g.causal_block) {
    const int64_t r1 = std::min(r0 + g.causal_block, g.m);
    const GemmSpec::Block b = g.block(r0, r1);
    s += 2.0 * static_cast<double>(r1 - r0) * static_cast<double>(b.n_end - b.n0) * static_cast<double>(b.k1 - b.k0);
  }
  return s * static_cast<double>(g.batch * g.repeat);
}

TEST(CausalBlockFlops, ClosedFormIsTheSumOfTheBlocks) {
  for (Triangle t : kTriangles)
    for (int64_t side : {1, 7, 64, 100, 2048, 2049})
      for (int64_t block : {1, 5, 16, 32, 256, 4096}) {
        SCOPED_TRACE(::testing::Message() << "triangle " << static_cast<int>(t) << ", side " << side << ", block "
                                          << block);
        const GemmSpec g = square_product(t, side, 24, block);
        EXPECT_EQ(g.flops(), sum_of_blocks(g));
        EXPECT_LE(g.flops(), g.full_flops());
        // At least the causal triangle, diagonal included: s (s + 1) / 2 of each square.
        EXPECT_GE(g.flops(), g.full_flops() * static_cast<double>(side + 1) / (2.0 * static_cast<double>(side)) *
                                 (1 - 1e-12));
      }
}

TEST(CausalBlockFlops, KnownFractions) {
  for (Triangle t : kTriangles) {
    const GemmSpec g = square_product(t, 2048, 128, 256);
    EXPECT_EQ(g.flops() / g.full_flops(), 9.0 / 16);  // 8 blocks: (1 + 1/8) / 2
    EXPECT_EQ(square_product(t, 2048, 128, 2048).flops(), square_product(t, 2048, 128, 2048).full_flops());
    EXPECT_EQ(square_product(t, 2048, 128, 0).flops(), square_product(t, 2048, 128, 0).full_flops());
    EXPECT_EQ(square_product(t, 2048, 128, 1).flops() / square_product(t, 2048, 128, 1).full_flops(),
              2049.0 / 4096);  // rows of one: exactly the triangle with its diagonal
  }
  GemmSpec none = square_product(Triangle::c_lower, 64, 8, 16);
  none.triangle = Triangle::none;
  EXPECT_EQ(none.flops(), none.full_flops());
}

LayerShape gqa_layer(int64_t seq) {
  LayerShape s;
  s.batch = 2, s.seq = seq, s.d_model = 64, s.n_heads = 4, s.n_kv_heads = 2, s.d_head = 16, s.d_ff = 96, s.vocab = 31;
  s.norm = NormKind::rmsnorm;
  s.ffn = FfnKind::swiglu;
  s.position = PositionKind::rope;
  s.biases = LinearBiases{false, false, false};
  return s;
}

LayerGraph graph_with(const LayerShape& s, int64_t block, bool recompute = false) {
  GraphOptions o;
  o.causal_block = block;
  o.recompute = recompute;
  o.include_head = true;
  return build_layer_graph(s, o);
}

TEST(CausalBlockGraph, ExecutedFlopsDropModelFlopsStay) {
  const LayerShape s = gqa_layer(2048);
  const LayerGraph full = graph_with(s, 0), blocked = graph_with(s, 256);
  ASSERT_EQ(full.ops.size(), blocked.ops.size());
  int triangular = 0;
  for (size_t i = 0; i < full.ops.size(); ++i) {
    const Op &f = full.ops[i], &b = blocked.ops[i];
    SCOPED_TRACE(f.name);
    EXPECT_EQ(f.model_flops, b.model_flops);
    if (f.impl == OpImpl::gemm && f.gemm.triangle != Triangle::none) {
      ++triangular;
      EXPECT_TRUE(f.causal_square);
      EXPECT_EQ(b.gemm.causal_block, 256);
      EXPECT_EQ(b.flops, f.flops * 9 / 16);
      EXPECT_EQ(b.model_flops, f.flops / 2);
      EXPECT_LT(b.min_bytes, f.min_bytes);
    } else {
      EXPECT_EQ(b.flops, f.flops);
      EXPECT_EQ(b.min_bytes, f.min_bytes);
      EXPECT_EQ(b.gemm.causal_block, 0);  // only the attention products are blocked
    }
  }
  EXPECT_EQ(triangular, 6);  // scores and context forward; dprobs, dv, dq, dk backward
}

// The layer forward and backward on a (full square) and b (blocked), from the same inputs.
template <typename F>
void run_both(CpuBackend<F>& a, CpuBackend<F>& b, const LayerGraph& full, const LayerGraph& blocked, uint64_t seed) {
  a.allocate(full);
  b.allocate(blocked);
  a.fill(seed);
  b.fill(seed);
  for (const auto& op : full.ops) a.run(op);
  for (const auto& op : blocked.ops) b.run(op);
}

// Every tensor the layer writes, blocked against the full square, except the two squares
// whose masked part the blocked products leave 0 (scores, and the gradient of the probs).
void expect_same_layer(CpuBackend<float>& a, CpuBackend<float>& b, const LayerGraph& g) {
  int compared = 0;
  for (const auto& t : g.tensors) {
    if (is_filled(t.role) || t.name == "att.scores" || t.name == "d.att.probs") continue;
    const auto x = a.read(t.name, 0, t.numel()), y = b.read(t.name, 0, t.numel());
    double scale = 0, diff = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      scale = std::max(scale, std::fabs(x[i]));
      diff = std::max(diff, std::fabs(x[i] - y[i]));
    }
    EXPECT_LE(diff, 1e-5 * std::max(scale, 1e-30)) << t.name;
    ++compared;
  }
  EXPECT_GT(compared, 20);
}

TEST(CausalBlockCpu, SameLayerCountedExactlyAndVerified) {
  for (bool recompute : {false, true}) {
    SCOPED_TRACE(recompute ? "recompute" : "no recompute");
    const LayerShape s = gqa_layer(50);  // blocks of 16: three of 16 and one of 2
    const LayerGraph full = graph_with(s, 0, recompute), blocked = graph_with(s, 16, recompute);
    CpuBackend<float> a, b;
    run_both(a, b, full, blocked, 7);
    expect_same_layer(a, b, full);
    double saved = 0;
    for (size_t i = 0; i < blocked.ops.size(); ++i) {
      const Op& op = blocked.ops[i];
      EXPECT_EQ(b.counted_flops(op.name), op.flops) << op.name;  // what ran, exactly
      saved += full.ops[i].flops - op.flops;
    }
    EXPECT_GT(saved, 0);
    // The masked part of the blocked scores reads 0: row 0 of head 0 reaches column 15 only.
    const auto row0 = b.read("att.scores", 0, 50);
    for (int64_t j = 16; j < 50; ++j) EXPECT_EQ(row0[static_cast<size_t>(j)], 0.0) << j;
    EXPECT_NE(row0[0], 0.0);
    CpuBackend<float> v;
    v.allocate(blocked);
    v.fill(3);
    const auto check = verification_run(v, blocked);
    EXPECT_TRUE(check.at("passed").get<bool>()) << check.at("failures").dump();
  }
}

TEST(CausalBlockCpu, Fp64AndOneHeadPerBlockRow) {
  LayerShape s = gqa_layer(33);
  s.n_kv_heads = 4;  // multi-head
  const LayerGraph full = graph_with(s, 0), blocked = graph_with(s, 1);
  CpuBackend<double> a, b;
  run_both(a, b, full, blocked, 5);
  for (const char* t : {"d.w.qkv", "d.w.proj", "ctx", "d.qkv", "d.ln1.out"}) {
    const int64_t n = full.tensor(t).numel();
    const auto x = a.read(t, 0, n), y = b.read(t, 0, n);
    for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(x[i], y[i], 1e-12 * (1 + std::fabs(x[i]))) << t << " " << i;
  }
  for (const auto& op : blocked.ops) EXPECT_EQ(b.counted_flops(op.name), op.flops) << op.name;
}

TEST(CausalBlockSettings, OnlyTheCpuRunsBlocks) {
  PointRequest r;
  r.causal_block = 64;
  EXPECT_THROW(check_backend_settings(r, BackendChoice{"cuda", "test"}), UsageError);
  EXPECT_NO_THROW(check_backend_settings(r, BackendChoice{"cpu", "test"}));
  r.causal_block = 0;
  EXPECT_NO_THROW(check_backend_settings(r, BackendChoice{"cuda", "test"}));
  r.causal_block = -1;  // auto
  EXPECT_NO_THROW(check_backend_settings(r, BackendChoice{"cuda", "test"}));
}

}  // namespace
}  // namespace flopscope
