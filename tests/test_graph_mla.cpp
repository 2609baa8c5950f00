// Multi-head latent attention (DeepSeek-V2/V3) in the layer graph (src/graph/mla.cpp): the
// FLOPs of a tiny MLA layer counted by hand, op by op; its weights summing to the model's N per
// layer as transformers counts it; the CPU backend verifying it against fp64 and counting exactly.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "analytic/formulas.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "backend/cpu/reference_ops.hpp"
#include "backend/verify.hpp"
#include "graph/graph.hpp"
#include "graph_util.hpp"
#include "model/hf_config.hpp"
#include "model/model.hpp"
#include "util/error.hpp"

#ifndef FLOPSCOPE_SOURCE_DIR
#error "FLOPSCOPE_SOURCE_DIR (the repository root) is set by tests/CMakeLists.txt"
#endif

namespace flopscope {
namespace {

// b 2, s 8 (T 16), d 64, 4 heads of nope 8 + rope 4 (qk 12), v 8, q_lora 24 (0: none), kv_lora 16.
LayerShape tiny_mla(int64_t q_lora, bool biases = false) {
  LayerShape x;
  x.batch = 2, x.seq = 8, x.d_model = 64, x.n_heads = 4, x.n_kv_heads = 4, x.d_head = 12, x.d_ff = 96, x.vocab = 37;
  x.norm = NormKind::rmsnorm;
  x.ffn = FfnKind::swiglu;
  x.position = PositionKind::rope;
  x.biases = {biases, biases, false};
  x.tied_embeddings = false;
  x.q_lora_rank = q_lora, x.kv_lora_rank = 16, x.qk_nope = 8, x.qk_rope = 4, x.v_head = 8;
  return x;
}

std::string path(const std::string& name) { return std::string(FLOPSCOPE_SOURCE_DIR) + "/tests/data/hf/" + name; }

// Every projection 2 m n k with m = T = 16; the core's products over b h = 8 full 8 x 8 squares.
TEST(MlaGraph, HandCountedFlops) {
  const LayerGraph g = build_layer_graph(tiny_mla(24), GraphOptions{});
  const double T = 16;
  EXPECT_EQ(g.op("fwd.q_a").flops, 2 * T * 64 * 24);
  EXPECT_EQ(g.op("fwd.q_b").flops, 2 * T * 24 * 48);   // 4 heads x 12
  EXPECT_EQ(g.op("fwd.kv_a").flops, 2 * T * 64 * 16);
  EXPECT_EQ(g.op("fwd.k_rope").flops, 2 * T * 64 * 4);
  EXPECT_EQ(g.op("fwd.kv_b").flops, 2 * T * 16 * 64);  // 4 heads x (8 + 8)
  EXPECT_EQ(g.op("fwd.proj").flops, 2 * T * 32 * 64);
  EXPECT_EQ(g.op("fwd.attn.scores").flops, 2.0 * 8 * 8 * 8 * 12);   // d_qk = 12
  EXPECT_EQ(g.op("fwd.attn.context").flops, 2.0 * 8 * 8 * 8 * 8);   // d_v = 8
  EXPECT_EQ(g.op("fwd.attn.scores").model_flops, 2.0 * 8 * 8 * 8 * 12 / 2);
  EXPECT_EQ(g.op("fwd.q_a.norm").flops, 4 * T * 24);
  EXPECT_EQ(g.op("fwd.kv_a.norm").flops, 4 * T * 16);
  EXPECT_EQ(g.op("fwd.attn.rope").flops, 3 * T * 4 * 4);  // the rope part of 4 q heads
  EXPECT_EQ(g.op("fwd.attn.rope.k").flops, 3 * T * 4);    // k_rope once, before it is shared
  EXPECT_EQ(g.op("fwd.attn.mla_qkv").flops, 0);
  EXPECT_EQ(g.op("bwd.attn.mla_qkv").flops, T * 4 * 3);  // k_rope's gradient: 3 adds over 4 heads
  EXPECT_EQ(g.tensor("qkv").shape, (std::vector<int64_t>{16, 4 * (12 + 12 + 8)}));
  // Forward GEMMs: projections 2 T (64 24 + 24 48 + 64 16 + 64 4 + 16 64 + 32 64) = 2 T 7040,
  // core 12288 + 8192, SwiGLU 2 T 3 64 96. Backward: twice each.
  const double proj = 2 * T * 7040, core = 12288 + 8192, ffn = 2 * T * 3 * 64 * 96;
  EXPECT_EQ(g.gemm_flops(Phase::forward), proj + core + ffn);
  EXPECT_EQ(g.gemm_flops(Phase::backward), 2 * (proj + core + ffn));
  for (const char* n : {"bwd.q_b.dgrad", "bwd.q_a.wgrad", "bwd.kv_b.wgrad", "bwd.k_rope.dgrad", "bwd.kv_a.norm",
                        "bwd.q_a.norm", "bwd.attn.rope.k"})
    EXPECT_NO_THROW(g.op(n)) << n;
  // The three dgrads of x sum into d.ln1.out: the first writes, the others add.
  EXPECT_EQ(g.op("bwd.kv_a.dgrad").gemm.beta, 0.0);
  EXPECT_EQ(g.op("bwd.k_rope.dgrad").gemm.beta, 1.0);
  EXPECT_EQ(g.op("bwd.q_a.dgrad").gemm.beta, 1.0);

  // Without q_lora: one projection d -> h qk.
  const LayerGraph v2 = build_layer_graph(tiny_mla(0), GraphOptions{});
  EXPECT_EQ(v2.op("fwd.q").flops, 2 * T * 64 * 48);
  EXPECT_THROW(v2.op("fwd.q_a"), Error);
  EXPECT_EQ(v2.gemm_flops(Phase::forward), 2 * T * (64 * 48 + 64 * 16 + 64 * 4 + 16 * 64 + 32 * 64) + core + ffn);
}

double weight_numel(const LayerGraph& g) {
  double n = 0;
  for (const auto& t : g.tensors)
    if (t.role == TensorRole::weight) n += static_cast<double>(t.numel());
  return n;
}

// The graph's weights are the parameters transformers counts for the layer, 25,640 by hand
// (tests/data/hf/README.md): attention 7,080, SwiGLU 18,432, two norms 128.
TEST(MlaGraph, WeightsAreTheModelsParametersPerLayer) {
  const ModelConfig m = model_from_hf_file(path("tiny-deepseek-v3-dense.json"));
  ASSERT_TRUE(m.mla());
  ASSERT_EQ(m.layer_kinds().size(), 1u);
  const LayerSpec spec = m.layer_kinds()[0].spec;
  EXPECT_FALSE(spec.moe);
  const LayerGraph g = build_layer_graph(layer_shape(m, 1, 8), GraphOptions{});
  const LayerParameters p = layer_parameters(m, spec);
  EXPECT_EQ(p.attention + p.attention_biases + p.attention_extra, 7080);
  EXPECT_EQ(p.total(), 25640);
  EXPECT_EQ(weight_numel(g), p.total());
  EXPECT_EQ(parameter_count(m), 64144);
  // With attention_bias: q_a (24), kv_a_proj_with_mqa (16 + 4) and o_proj (64).
  ModelConfig b = m;
  b.biases = {true, true, false};
  const LayerGraph gb = build_layer_graph(layer_shape(b, 1, 8), GraphOptions{});
  EXPECT_EQ(weight_numel(gb), 25640 + 24 + 20 + 64);
  EXPECT_EQ(weight_numel(gb), layer_parameters(b, spec).total());
  // Without q_lora: q_proj 64 x 48 in place of q_a, its norm and q_b.
  ModelConfig v2 = m;
  v2.q_lora_rank = 0;
  EXPECT_EQ(weight_numel(build_layer_graph(layer_shape(v2, 1, 8), GraphOptions{})), 25640 - 1536 - 24 - 1152 + 3072);
  EXPECT_EQ(layer_parameters(v2, spec).total(), 25640 - 1536 - 24 - 1152 + 3072);
}

// The CPU backend runs every MLA op (forward, backward, recompute, head), verifies each against
// fp64 and counts exactly the graph's analytic FLOPs.
TEST(MlaGraph, CpuCountsExactlyAndVerifies) {
  for (const LayerShape& s : {tiny_mla(24), tiny_mla(0), tiny_mla(24, true)}) {
    for (const GraphOptions& opt : graph_test::option_sets()) {
      const LayerGraph g = build_layer_graph(s, opt);
      CpuBackend<float> be;
      be.allocate(g);
      be.fill(5);
      const auto v = verification_run(be, g);
      EXPECT_TRUE(v.at("passed").get<bool>()) << v.at("failures").dump();
      for (const auto& op : g.ops) EXPECT_EQ(be.counted_flops(op.name), op.flops) << op.name;
    }
  }
}

// The assembly is a copy; its backward the transpose: <assemble(q, kv_b, k), g> = <(q, kv_b, k), back(g)>.
TEST(MlaGraph, AssemblyBackwardIsItsTranspose) {
  const MlaSpec m{3, 2, 2, 3};
  std::vector<double> q(static_cast<size_t>(m.q_width())), kv(static_cast<size_t>(m.kv_b_width())), k(2),
      g(static_cast<size_t>(m.qkv_width())), out(g.size()), dq(q.size()), dkv(kv.size()), dk(k.size());
  for (size_t i = 0; i < q.size(); ++i) q[i] = 0.5 + static_cast<double>(i);
  for (size_t i = 0; i < kv.size(); ++i) kv[i] = -1.0 - 0.25 * static_cast<double>(i);
  k = {3.0, -7.0};
  for (size_t i = 0; i < g.size(); ++i) g[i] = std::sin(static_cast<double>(i) + 1);
  ref::mla_qkv_forward_row(q.data(), kv.data(), k.data(), out.data(), m);
  ref::mla_qkv_backward_row(g.data(), dq.data(), dkv.data(), dk.data(), m);
  EXPECT_EQ(out[4], kv[0]);   // head 0: q (4), then k_nope
  EXPECT_EQ(out[6], 3.0);     // then the shared k_rope
  EXPECT_EQ(out[11 + 6], 3.0);  // and in head 1 (width 2 x 4 + 3 = 11)
  double lhs = 0, rhs = 0;
  for (size_t i = 0; i < g.size(); ++i) lhs += out[i] * g[i];
  for (size_t i = 0; i < q.size(); ++i) rhs += q[i] * dq[i];
  for (size_t i = 0; i < kv.size(); ++i) rhs += kv[i] * dkv[i];
  for (size_t i = 0; i < k.size(); ++i) rhs += k[i] * dk[i];
  EXPECT_NEAR(lhs, rhs, 1e-12 * std::fabs(lhs));
  EXPECT_EQ(dk[0], g[6] + g[17] + g[28]);
}

}  // namespace
}  // namespace flopscope
