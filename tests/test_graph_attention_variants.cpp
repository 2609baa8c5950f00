// The attention variants a layer kind carries (issue 18): NoPE layers (Llama 4), QK-norm
// (Qwen3's weighted RMSNorm per head, Llama 4's unweighted one on its RoPE layers), sliding-window
// and chunked attention, attention sinks. For each: the ops and weights the graph has, FLOPs
// counted by hand for a small shape, counted == analytic on the CPU, and fp64 verification.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.hpp"
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

}  // namespace
}  // namespace flopscope
