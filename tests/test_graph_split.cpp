// How the layer graph says a parallel layout splits its work (TensorSpec::split, Op::split,
// Op::attention_core, Op::routed, LayerGraph::split_dim): the data predict reads in place of
// guessing from op and tensor names. Checked weight by weight against Megatron-LM's layers
// (ColumnParallelLinear, RowParallelLinear, MLA's duplicated down projections, the router), op
// by op for the kinds of non-GEMM op, and through the fp8 lowering, whose copies and casts must
// keep what their sources say.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "graph/graph.hpp"
#include "util/error.hpp"

namespace flopscope {
namespace {

using Dim = LayerGraph::Dim;

LayerShape tiny_llama() {
  LayerShape x;
  x.batch = 2, x.seq = 16, x.d_model = 64, x.n_heads = 4, x.n_kv_heads = 2, x.d_head = 16, x.d_ff = 96, x.vocab = 48;
  x.norm = NormKind::rmsnorm;
  x.ffn = FfnKind::swiglu;
  x.position = PositionKind::rope;
  x.biases = {true, false, false};  // a QKV bias (Qwen2)
  x.tied_embeddings = false;
  return x;
}

LayerShape tiny_mla() {
  LayerShape x = tiny_llama();
  x.n_kv_heads = 4, x.d_head = 12;
  x.q_lora_rank = 32, x.kv_lora_rank = 16, x.qk_nope = 8, x.qk_rope = 4, x.v_head = 8;
  x.biases = {false, false, false};
  return x;
}

LayerShape tiny_moe() {
  LayerShape x = tiny_llama();
  x.biases = {false, false, false};
  x.layer.moe = true;
  x.n_experts = 8, x.top_k = 2, x.d_ff_expert = 16, x.n_shared = 1, x.d_ff_shared = 32;
  x.router.experts = 8, x.router.top_k = 2;
  return x;
}

LayerGraph build(const LayerShape& s, Precision p = Precision::bf16) {
  GraphOptions o;
  o.include_head = true;
  o.recompute = true;
  o.precision = p;
  return build_layer_graph(s, o);
}

TEST(GraphSplit, EveryWeightSaysHowTensorParallelismSplitsItAndItsGradientAgrees) {
  const LayerGraph g = build(tiny_llama());
  const std::map<std::string, WeightSplit> want = {
      {"ln1.gamma", WeightSplit::replicated}, {"ln2.gamma", WeightSplit::replicated},
      {"w.qkv", WeightSplit::column},         {"b.qkv", WeightSplit::column},
      {"w.proj", WeightSplit::row},           {"w.gate", WeightSplit::column},
      {"w.up", WeightSplit::column},          {"w.down", WeightSplit::row},
      {"head.gamma", WeightSplit::replicated}, {"w.vocab", WeightSplit::column}};
  int weights = 0;
  for (const auto& t : g.tensors) {
    if (t.role != TensorRole::weight) continue;
    ++weights;
    ASSERT_TRUE(want.count(t.name)) << t.name << " is a weight this test does not know";
    EXPECT_EQ(t.split, want.at(t.name)) << t.name << ": " << to_string(t.split);
    EXPECT_FALSE(t.expert) << t.name;
    const TensorSpec& d = g.tensor("d." + t.name);
    EXPECT_EQ(d.split, t.split) << d.name;
  }
  EXPECT_EQ(weights, static_cast<int>(want.size()));
}

TEST(GraphSplit, SplitDimensionsOfTheColumnAndRowParallelGemms) {
  // Column-parallel QKV: forward x W (n the output features), dgrad dY W^T (k), wgrad x^T dY (n);
  // row-parallel proj: forward (k the input features), dgrad (n), wgrad (m). Tokens: m, or the
  // wgrad's k. Under fp8 the GEMMs read transposed copies and the answers must not change.
  for (Precision p : {Precision::bf16, Precision::fp8}) {
    const LayerGraph g = build(tiny_llama(), p);
    const std::map<std::string, std::pair<Dim, Dim>> want = {
        {"fwd.qkv", {Dim::n, Dim::m}},           {"bwd.qkv.dgrad", {Dim::k, Dim::m}},
        {"bwd.qkv.wgrad", {Dim::n, Dim::k}},     {"fwd.proj", {Dim::k, Dim::m}},
        {"bwd.proj.dgrad", {Dim::n, Dim::m}},    {"bwd.proj.wgrad", {Dim::m, Dim::k}},
        {"fwd.ffn.down", {Dim::k, Dim::m}},      {"bwd.ffn.up.dgrad", {Dim::k, Dim::m}},
        {"fwd.head.logits", {Dim::n, Dim::m}},   {"bwd.head.logits.wgrad", {Dim::n, Dim::k}}};
    for (const auto& [name, dims] : want) {
      const Op& op = g.op(name);
      EXPECT_EQ(g.split_dim(op.gemm), dims.first) << name << " (" << to_string(p) << ")";
      EXPECT_EQ(g.token_dim(op.gemm), dims.second) << name;
    }
    // Attention products have no weight.
    EXPECT_THROW(g.split_dim(g.op("fwd.attn.scores").gemm), Error);
  }
}

TEST(GraphSplit, NonGemmOpsSayWhetherTheyRunOverSplitFeaturesOrTheSequence) {
  const LayerGraph g = build(tiny_llama());
  for (const char* name : {"fwd.ln1", "fwd.ln2", "fwd.residual1", "fwd.residual2", "bwd.ln1", "bwd.residual1",
                           "fwd.head.ln", "rec.ln1"})
    EXPECT_EQ(g.op(name).split, OpSplit::sequence) << name;
  for (const char* name : {"fwd.ffn.swiglu", "bwd.ffn.swiglu", "fwd.attn.softmax", "fwd.attn.rope", "fwd.qkv.bias",
                           "bwd.qkv.bias", "fwd.head.loss", "bwd.head.loss"})
    EXPECT_EQ(g.op(name).split, OpSplit::features) << name;
  // The attention core is the products around the softmax, in every phase; RoPE is not in it.
  int core = 0;
  for (const auto& op : g.ops) {
    const bool want = op.name.find(".attn.scores") != std::string::npos ||
                      op.name.find(".attn.softmax") != std::string::npos ||
                      op.name.find(".attn.context") != std::string::npos;
    EXPECT_EQ(op.attention_core, want) << op.name;
    core += op.attention_core;
    EXPECT_FALSE(op.routed) << op.name;
  }
  EXPECT_EQ(core, 3 + 3 + 5);  // forward, recompute, backward
}

TEST(GraphSplit, Fp8CastsSplitAsTheirOperandsAndCopiesAsTheirSources) {
  const LayerGraph g = build(tiny_llama(), Precision::fp8);
  int casts = 0;
  for (const auto& op : g.ops) {
    if (op.impl != OpImpl::cast_fp8) continue;
    ++casts;
    const TensorSpec& src = g.tensor(op.inputs.at(0));
    const TensorSpec& copy = g.tensor(op.outputs.at(0));
    EXPECT_EQ(copy.source, src.name);
    EXPECT_EQ(copy.split, src.split) << copy.name;
    EXPECT_EQ(copy.transposed, op.transpose) << copy.name;
    if (src.role == TensorRole::weight) {
      EXPECT_EQ(op.split, OpSplit::features) << op.name;  // no replicated weight here
    }
  }
  EXPECT_GT(casts, 0);
  // The column-parallel QKV reads the whole width d (sequence); the row-parallel output projection
  // reads the split context (features); the down projection's dgrad the whole dY over d.
  EXPECT_EQ(g.op("fwd.qkv.cast_a").split, OpSplit::sequence);
  EXPECT_EQ(g.op("fwd.proj.cast_a").split, OpSplit::features);
  EXPECT_EQ(g.op("fwd.ffn.down.cast_a").split, OpSplit::features);
  EXPECT_EQ(g.op("bwd.ffn.down.dgrad.cast_a").split, OpSplit::sequence);
  EXPECT_EQ(g.op("bwd.ffn.up.dgrad.cast_a").split, OpSplit::features);
}

TEST(GraphSplit, MlaDownProjectionsAreReplicatedAsMegatronDuplicatesThem) {
  const LayerGraph g = build(tiny_mla());
  for (const char* w : {"w.q_a", "w.kv_a", "w.k_rope", "q_a_norm.gamma", "kv_a_norm.gamma"})
    EXPECT_EQ(g.tensor(w).split, WeightSplit::replicated) << w;
  for (const char* w : {"w.q_b", "w.kv_b"}) EXPECT_EQ(g.tensor(w).split, WeightSplit::column) << w;
  EXPECT_EQ(g.tensor("w.proj").split, WeightSplit::row);
  EXPECT_EQ(g.split_dim(g.op("fwd.q_a").gemm), Dim::none);
  EXPECT_EQ(g.token_dim(g.op("bwd.kv_a.wgrad").gemm), Dim::k);
  EXPECT_EQ(g.split_dim(g.op("fwd.kv_b").gemm), Dim::n);
  // The latents' norms run over the sequence; the shared k_rope's RoPE is whole on every rank.
  EXPECT_EQ(g.op("fwd.q_a.norm").split, OpSplit::sequence);
  EXPECT_EQ(g.op("fwd.kv_a.norm").split, OpSplit::sequence);
  EXPECT_EQ(g.op("fwd.attn.rope.k").split, OpSplit::replicated);
  EXPECT_EQ(g.op("fwd.attn.rope").split, OpSplit::features);
  EXPECT_FALSE(g.op("fwd.attn.mla_qkv").attention_core);
}

TEST(GraphSplit, RoutedExpertsSplitOverExpertsTheRouterIsWholeAndTheirRowsAreMarked) {
  for (Precision p : {Precision::bf16, Precision::fp8}) {
    const LayerGraph g = build(tiny_moe(), p);
    for (const char* w : {"w.experts.gate", "w.experts.up", "w.experts.down"}) {
      EXPECT_TRUE(g.tensor(w).expert) << w;
      EXPECT_TRUE(g.tensor(std::string("d.") + w).expert) << w;
    }
    EXPECT_EQ(g.tensor("w.experts.up").split, WeightSplit::column);
    EXPECT_EQ(g.tensor("w.experts.down").split, WeightSplit::row);
    EXPECT_FALSE(g.tensor("w.shared.up").expert);
    EXPECT_EQ(g.tensor("w.router").split, WeightSplit::replicated);
    // Expert tensor parallelism splits each expert's width: n of up, k of down, m of down's wgrad.
    EXPECT_EQ(g.split_dim(g.op("fwd.experts.up").gemm), Dim::n);
    EXPECT_EQ(g.split_dim(g.op("fwd.experts.down").gemm), Dim::k);
    EXPECT_EQ(g.split_dim(g.op("bwd.experts.down.wgrad").gemm), Dim::m);
    int routed = 0;
    for (const auto& op : g.ops) {
      const bool expert_op = op.name.find(".experts.") != std::string::npos;
      const bool weight_cast = op.impl == OpImpl::cast_fp8 && g.tensor(op.inputs.at(0)).role == TensorRole::weight;
      EXPECT_EQ(op.routed, expert_op && !weight_cast) << op.name;
      routed += op.routed;
    }
    EXPECT_GT(routed, 0);
    EXPECT_EQ(g.op("fwd.moe.route").split, OpSplit::sequence);
    EXPECT_EQ(g.op("fwd.experts.swiglu").split, OpSplit::features);
  }
}

}  // namespace
}  // namespace flopscope
