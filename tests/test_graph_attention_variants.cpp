// The attention variants a layer kind carries (issue 18): NoPE layers (Llama 4), QK-norm
// (Qwen3's weighted RMSNorm per head, Llama 4's unweighted one on its RoPE layers), sliding-window
// and chunked attention, attention sinks. For each: the ops and weights the graph has, FLOPs
// counted by hand for a small shape, counted == analytic on the CPU, and fp64 verification.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.hpp"
#include "analytic/formulas.hpp"
#include "backend/verify.hpp"
#include "graph/graph.hpp"
#include "graph_util.hpp"
#include "model/model.hpp"

namespace flopscope {
namespace {

// Llama-style: RMSNorm, RoPE, SwiGLU, no biases; b 2, s 8, d 32, 4 heads of 8 in 2 kv groups.
LayerShape llama_small() {
  LayerShape x;
  x.batch = 2, x.seq = 8, x.d_model = 32, x.n_heads = 4, x.n_kv_heads = 2, x.d_head = 8, x.d_ff = 48, x.vocab = 37;
  x.norm = NormKind::rmsnorm;
  x.ffn = FfnKind::swiglu;
  x.position = PositionKind::rope;
  x.rope_theta = 10000.0;
  x.biases = {false, false, false};
  x.tied_embeddings = false;
  return x;
}

std::set<std::string> op_names(const LayerGraph& g) {
  std::set<std::string> names;
  for (const auto& op : g.ops) names.insert(op.name);
  return names;
}

void expect_counted_equals_analytic_and_verifies(const LayerShape& s, int64_t causal_block = 0) {
  for (GraphOptions o : graph_test::option_sets()) {
    o.causal_block = causal_block;
    const LayerGraph g = build_layer_graph(s, o);
    CpuBackend<float> be;
    be.allocate(g);
    be.fill(3);
    const auto v = verification_run(be, g);
    EXPECT_TRUE(v.at("passed").get<bool>()) << v.at("failures").dump();
    for (const auto& op : g.ops) EXPECT_EQ(be.counted_flops(op.name), op.flops) << op.name;
  }
}

// ---- NoPE -----------------------------------------------------------------------------------

// A NoPE layer of a RoPE model has no rotation, forward, recompute or backward; the rest of the
// layer is the RoPE layer's, FLOP for FLOP, less the rotations.
TEST(GraphAttentionVariants, NopeLayerHasNoRopeOps) {
  GraphOptions o;
  o.recompute = true;
  LayerShape rope = llama_small(), nope = llama_small();
  nope.layer.nope = true;
  const LayerGraph gr = build_layer_graph(rope, o), gn = build_layer_graph(nope, o);
  const std::set<std::string> nr = op_names(gr), nn = op_names(gn);
  for (const char* n : {"fwd.attn.rope", "rec.attn.rope", "bwd.attn.rope"}) {
    EXPECT_EQ(nr.count(n), 1u) << n;
    EXPECT_EQ(nn.count(n), 0u) << n;
  }
  for (const auto& op : gn.ops) EXPECT_NE(op.impl, OpImpl::rope_fwd) << op.name;
  for (const auto& op : gn.ops) EXPECT_NE(op.impl, OpImpl::rope_bwd) << op.name;
  EXPECT_EQ(gr.ops.size(), gn.ops.size() + 3);
  // One rotation: 3 FLOPs per element of the T (h + h_kv) d_head of Q and K.
  const double rotation = flop_convention::kRope * 16 * (4 + 2) * 8;
  EXPECT_EQ(gr.total_flops(Phase::forward) - gn.total_flops(Phase::forward), rotation);
  EXPECT_EQ(gr.total_flops(Phase::backward) - gn.total_flops(Phase::backward), rotation);
  EXPECT_EQ(gr.total_flops(Phase::recompute) - gn.total_flops(Phase::recompute), rotation);
  expect_counted_equals_analytic_and_verifies(nope);
}

// Llama 4 Maverick's schedule: every fourth layer NoPE; its layer shapes say so.
TEST(GraphAttentionVariants, Llama4NopeKindsComeFromTheSchedule) {
  const ModelConfig m = preset("llama4-maverick");
  const std::vector<LayerKind> kinds = m.layer_kinds();
  int nope_kinds = 0;
  for (size_t k = 0; k < kinds.size(); ++k) {
    const LayerShape s = layer_shape(m, 1, 64, k);
    EXPECT_EQ(s.layer.nope, kinds[k].spec.nope);
    const std::set<std::string> names = op_names(build_layer_graph(s, GraphOptions{}));
    EXPECT_EQ(names.count("fwd.attn.rope"), kinds[k].spec.nope ? 0u : 1u) << to_string(kinds[k].spec);
    nope_kinds += kinds[k].spec.nope ? 1 : 0;
  }
  EXPECT_GE(nope_kinds, 1);
}

// ---- QK-norm --------------------------------------------------------------------------------

// Qwen3: a weighted RMSNorm over each Q and K head, after the projection (which now writes
// qkv.raw), before RoPE; its two d_head weights and their gradients; FLOPs 4 and 9 per normed
// element of the T (h + h_kv) d_head of Q and K. Llama 4's l2: no weights, 3 and 6.
TEST(GraphAttentionVariants, QkNormOpsWeightsAndFlops) {
  for (QkNorm kind : {QkNorm::rmsnorm, QkNorm::l2}) {
    SCOPED_TRACE(std::string(to_string(kind)));
    LayerShape s = llama_small();
    s.qk_norm = kind;
    GraphOptions o;
    o.recompute = true;
    const LayerGraph g = build_layer_graph(s, o);
    const double normed = 16.0 * (4 + 2) * 8;
    const bool w = kind == QkNorm::rmsnorm;
    EXPECT_EQ(g.op("fwd.attn.qk_norm").flops, (w ? 4 : 3) * normed);
    EXPECT_EQ(g.op("rec.attn.qk_norm").flops, (w ? 4 : 3) * normed);
    EXPECT_EQ(g.op("bwd.attn.qk_norm").flops, (w ? 9 : 6) * normed);
    EXPECT_EQ(g.op("fwd.qkv").gemm.c, "qkv.raw");
    EXPECT_EQ(g.op("fwd.attn.qk_norm").outputs.at(0), "qkv");
    EXPECT_EQ(g.op("bwd.qkv.dgrad").gemm.a, "d.qkv.raw");
    EXPECT_EQ(g.tensor("qk_norm.rstd").shape, (std::vector<int64_t>{16, 6}));
    // Order: projection, norm, RoPE; backward RoPE, norm, projection.
    std::vector<std::string> order;
    for (const auto& op : g.ops) order.push_back(op.name);
    auto at = [&](const std::string& n) { return std::find(order.begin(), order.end(), n) - order.begin(); };
    EXPECT_LT(at("fwd.qkv"), at("fwd.attn.qk_norm"));
    EXPECT_LT(at("fwd.attn.qk_norm"), at("fwd.attn.rope"));
    EXPECT_LT(at("bwd.attn.rope"), at("bwd.attn.qk_norm"));
    EXPECT_LT(at("bwd.attn.qk_norm"), at("bwd.qkv.dgrad"));
    int64_t norm_weights = 0;
    for (const auto& t : g.tensors)
      if (t.role == TensorRole::weight && (t.name == "q_norm.gamma" || t.name == "k_norm.gamma")) norm_weights += t.numel();
    EXPECT_EQ(norm_weights, w ? 2 * 8 : 0);
    expect_counted_equals_analytic_and_verifies(s);
    expect_counted_equals_analytic_and_verifies(s, 3);
  }
}

// Llama 4's L2 norm runs on its RoPE layers only, not on the NoPE ones.
TEST(GraphAttentionVariants, L2QkNormOnRopeLayersOnly) {
  LayerShape s = llama_small();
  s.qk_norm = QkNorm::l2;
  EXPECT_EQ(op_names(build_layer_graph(s, GraphOptions{})).count("fwd.attn.qk_norm"), 1u);
  s.layer.nope = true;
  EXPECT_EQ(op_names(build_layer_graph(s, GraphOptions{})).count("fwd.attn.qk_norm"), 0u);
}

// The weights the graph adds for QK-norm and sinks are the ones the analytic N counts
// (LayerParameters::attention_extra: 2 d_head for Qwen3's q_norm, k_norm; h for gpt-oss's sinks).
TEST(GraphAttentionVariants, ExtraAttentionWeightsAreTheOnesNCounts) {
  for (const char* name : {"qwen3-30b-a3b", "gpt-oss-20b", "llama4-maverick", "llama3.1-8b"}) {
    SCOPED_TRACE(name);
    const ModelConfig m = preset(name);
    for (size_t k = 0; k < m.layer_kinds().size(); ++k) {
      const LayerShape s = layer_shape(m, 1, 256, k);
      const LayerGraph g = build_layer_graph(s, GraphOptions{});
      double extra = 0;
      for (const auto& t : g.tensors)
        if (t.role == TensorRole::weight && (t.name == "q_norm.gamma" || t.name == "k_norm.gamma" || t.name == "attn.sinks"))
          extra += static_cast<double>(t.numel());
      EXPECT_EQ(extra, layer_parameters(m, s.layer).attention_extra);
    }
  }
}

// ---- sliding window and chunks --------------------------------------------------------------

struct MaskCase {
  int64_t window, chunk, block;
  double product;  // each of the six attention products' executed FLOPs, by hand
  double softmax;  // forward softmax FLOPs: 4 per kept pair
  double model;    // each product's model FLOPs: the mask's area of the 2 s^2 d_head square per (b, head)
};

// s 8, 2 x 4 heads of 8: a full product is 2 x 8 x 8 x 8 x 8 (b h) = 8192 FLOPs.
// Window 3: kept pairs per row 1, 2, 3, 3, ... = 21; area s w - w^2/2 = 19.5. Blocks of 4: rows
// 0-3 keys 0-3 (4 x 4), rows 4-7 keys 2-7 (4 x 6): 2 x 8 x 40 x 8 = 5120 (causal: 4 x 4 + 4 x 8, 6144).
// Chunk 4: pairs 2 x 10 = 20; area 2 x 16/2 = 16; blocks of 4: 4 x 4 twice, 4096.
TEST(GraphAttentionVariants, WindowAndChunkFlopsByHand) {
  for (const MaskCase& c : {MaskCase{3, 0, 0, 8192, 4 * 8 * 21, 8192 * 19.5 / 64},
                            MaskCase{3, 0, 4, 5120, 4 * 8 * 21, 8192 * 19.5 / 64},
                            MaskCase{0, 4, 0, 8192, 4 * 8 * 20, 8192 * 16.0 / 64},
                            MaskCase{0, 4, 4, 4096, 4 * 8 * 20, 8192 * 16.0 / 64},
                            MaskCase{0, 0, 4, 6144, 4 * 8 * 36, 8192 / 2.0}}) {
    SCOPED_TRACE(::testing::Message() << "window " << c.window << " chunk " << c.chunk << " block " << c.block);
    LayerShape s = llama_small();
    s.layer.window = c.window, s.layer.chunk = c.chunk;
    GraphOptions o;
    o.causal_block = c.block;
    const LayerGraph g = build_layer_graph(s, o);
    for (const char* n : {"fwd.attn.scores", "fwd.attn.context", "bwd.attn.context.dprobs", "bwd.attn.context.dv",
                          "bwd.attn.scores.dq", "bwd.attn.scores.dk"}) {
      EXPECT_EQ(g.op(n).flops, c.product) << n;
      EXPECT_EQ(g.op(n).model_flops, c.model) << n;
    }
    EXPECT_EQ(g.op("fwd.attn.softmax").flops, c.softmax);
    EXPECT_EQ(g.op("bwd.attn.softmax").flops, c.softmax);
    expect_counted_equals_analytic_and_verifies(s, c.block);
  }
}

// A window of the whole sequence or more is plain causal attention: the same graph, op for op.
TEST(GraphAttentionVariants, AWindowPastTheSequenceIsCausal) {
  LayerShape s = llama_small();
  const LayerGraph plain = build_layer_graph(s, GraphOptions{});
  s.layer.window = 8;
  const LayerGraph wide = build_layer_graph(s, GraphOptions{});
  ASSERT_EQ(plain.ops.size(), wide.ops.size());
  for (size_t i = 0; i < plain.ops.size(); ++i) {
    EXPECT_EQ(plain.ops[i].flops, wide.ops[i].flops) << plain.ops[i].name;
    EXPECT_EQ(plain.ops[i].model_flops, wide.ops[i].model_flops) << plain.ops[i].name;
  }
}

// The CPU softmax under a window keeps exactly the window: zeros outside it, rows summing to 1.
TEST(GraphAttentionVariants, WindowSoftmaxKeepsTheWindowOnly) {
  LayerShape s = llama_small();
  s.layer.window = 3;
  const LayerGraph g = build_layer_graph(s, GraphOptions{});
  CpuBackend<double> be;
  be.allocate(g);
  be.fill(5);
  for (const auto& op : g.ops) {
    be.run(op);
    if (op.name == "fwd.attn.softmax") break;
  }
  const auto& p = be.data("att.probs");
  for (int64_t i = 0; i < 8; ++i) {
    double sum = 0;
    for (int64_t j = 0; j < 8; ++j) {
      const double v = p[static_cast<size_t>(i * 8 + j)];
      if (j > i || j <= i - 3) {
        EXPECT_EQ(v, 0.0) << i << "," << j;
      } else {
        EXPECT_GT(v, 0.0) << i << "," << j;
      }
      sum += v;
    }
    EXPECT_NEAR(sum, 1.0, 1e-12);
  }
}

// ---- attention sinks ------------------------------------------------------------------------

// gpt-oss: one logit per head (h weights), the rows' sink probabilities saved; FLOPs 3 a row
// forward and 2 backward on top of the softmax's; the rows then sum to 1 - p_sink.
TEST(GraphAttentionVariants, SinksWeightsFlopsAndRows) {
  LayerShape s = llama_small();
  s.attention_sinks = true;
  s.layer.window = 3;
  const LayerGraph g = build_layer_graph(s, GraphOptions{});
  EXPECT_EQ(g.tensor("attn.sinks").shape, (std::vector<int64_t>{4}));
  EXPECT_EQ(g.tensor("att.sink_probs").shape, (std::vector<int64_t>{8, 8}));
  EXPECT_EQ(g.op("fwd.attn.softmax").flops, 4.0 * 8 * 21 + 3.0 * 8 * 8);
  EXPECT_EQ(g.op("bwd.attn.softmax").flops, 4.0 * 8 * 21 + 2.0 * 8 * 8);
  EXPECT_EQ(g.op("bwd.attn.softmax").outputs.at(1), "d.attn.sinks");
  CpuBackend<double> be;
  be.allocate(g);
  be.fill(5);
  for (const auto& op : g.ops) {
    be.run(op);
    if (op.name == "fwd.attn.softmax") break;
  }
  const auto& p = be.data("att.probs");
  const auto& ps = be.data("att.sink_probs");
  for (int64_t r = 0; r < 64; ++r) {
    double sum = 0;
    for (int64_t j = 0; j < 8; ++j) sum += p[static_cast<size_t>(r * 8 + j)];
    EXPECT_GT(ps[static_cast<size_t>(r)], 0.0);
    EXPECT_NEAR(sum + ps[static_cast<size_t>(r)], 1.0, 1e-12);
  }
  expect_counted_equals_analytic_and_verifies(s);
  expect_counted_equals_analytic_and_verifies(s, 4);
}

}  // namespace
}  // namespace flopscope
