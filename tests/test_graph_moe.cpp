// Mixtures of experts in the layer graph (src/graph/moe.cpp): the MoE layer's FLOPs counted by
// hand, op by op; the graph's FFN equal to the active parameters' 2 N per token; the CPU
// backend running the real router (each expert the tokens it is routed), verified against
// fp64, counting exactly; the route's choice checked independently of the reference; the aux
// loss's gradient against finite differences; bad shapes refused.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "analytic/formulas.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "backend/cpu/reference_ops.hpp"
#include "backend/verify.hpp"
#include "graph/graph.hpp"
#include "model/hf_config.hpp"
#include "model/model.hpp"
#include "util/error.hpp"
#include "wrapped_backend.hpp"

#ifndef FLOPSCOPE_SOURCE_DIR
#error "FLOPSCOPE_SOURCE_DIR (the repository root) is set by tests/CMakeLists.txt"
#endif

namespace flopscope {
namespace {

std::string path(const std::string& name) { return std::string(FLOPSCOPE_SOURCE_DIR) + "/tests/data/hf/" + name; }

// b 2, s 8 (T 16), d 32, 4 heads of 8 (2 kv heads), 8 experts of 12, top-2, one shared of 20.
LayerShape tiny_moe(bool shared = true) {
  LayerShape x;
  x.batch = 2, x.seq = 8, x.d_model = 32, x.n_heads = 4, x.n_kv_heads = 2, x.d_head = 8, x.d_ff = 48, x.vocab = 37;
  x.norm = NormKind::rmsnorm;
  x.ffn = FfnKind::swiglu;
  x.position = PositionKind::rope;
  x.biases = {false, false, false};
  x.tied_embeddings = false;
  x.layer.moe = true;
  x.n_experts = 8, x.top_k = 2, x.d_ff_expert = 12, x.n_shared = shared ? 1 : 0, x.d_ff_shared = shared ? 20 : 0;
  x.router.experts = 8, x.router.top_k = 2, x.router.norm_topk = true;
  return x;
}

TEST(MoeGraph, HandCountedFlops) {
  const LayerGraph g = build_layer_graph(tiny_moe(), GraphOptions{});
  const double T = 16, kT = 32, d = 32, E = 8, fe = 12, fs = 20;
  EXPECT_EQ(g.op("fwd.moe.router").flops, 2 * T * d * E);
  // Grouped: the k T dispatched rows in all, whatever their spread.
  for (const char* op : {"fwd.experts.gate", "fwd.experts.up", "fwd.experts.down", "bwd.experts.down.dgrad",
                         "bwd.experts.down.wgrad", "bwd.experts.up.dgrad", "bwd.experts.up.wgrad",
                         "bwd.experts.gate.dgrad", "bwd.experts.gate.wgrad"}) {
    EXPECT_EQ(g.op(op).flops, 2 * kT * d * fe) << op;
    EXPECT_EQ(g.op(op).model_flops, g.op(op).flops) << op;
    EXPECT_EQ(g.op(op).gemm.batch, 8) << op;
    EXPECT_EQ(g.op(op).gemm.group_counts, "moe.counts") << op;
  }
  EXPECT_EQ(g.op("fwd.experts.gate").gemm.grouped, Grouped::m_rows);
  EXPECT_EQ(g.op("bwd.experts.up.wgrad").gemm.grouped, Grouped::k_rows);
  EXPECT_EQ(g.op("fwd.experts.gate").shape_str(), "grouped(8):32x12x32");
  EXPECT_EQ(g.op("fwd.shared.up").flops, 2 * T * d * fs);
  EXPECT_EQ(g.op("fwd.experts.swiglu").flops, 5 * kT * fe);
  EXPECT_EQ(g.op("fwd.moe.dispatch").flops, 0);
  EXPECT_EQ(g.op("fwd.moe.combine").flops, 2 * kT * d);
  EXPECT_EQ(g.op("bwd.moe.combine").flops, 3 * kT * d);
  EXPECT_EQ(g.op("bwd.moe.dispatch").flops, T * d);  // k - 1 = 1 add an element
  EXPECT_EQ(g.op("fwd.moe.shared_add").flops, T * d);
  // Softmax scores over 8 (4 each), renormalised over 2 (2 each); backward 2 E + 2 k + 4 k.
  EXPECT_EQ(g.op("fwd.moe.route").flops, T * (4 * E + 2 * 2));
  EXPECT_EQ(g.op("bwd.moe.route").flops, T * (2 * E + 2 * 2 + 4 * 2));
  EXPECT_EQ(g.op("bwd.moe.router.dgrad").gemm.beta, 1.0);  // added to dispatch's gradient
  EXPECT_EQ(g.tensor("w.experts.up").shape, (std::vector<int64_t>{8, 32, 12}));
  EXPECT_EQ(g.tensor("moe.in").shape, (std::vector<int64_t>{32, 32}));
  // Without shared experts the combine writes the block's output and dispatch's gradient d_in.
  const LayerGraph plain = build_layer_graph(tiny_moe(false), GraphOptions{});
  EXPECT_EQ(plain.op("fwd.moe.combine").outputs.at(0), "down.out");
  EXPECT_EQ(plain.op("bwd.moe.dispatch").outputs.at(0), "d.ln2.out");
  EXPECT_THROW(plain.op("fwd.shared.up"), Error);
}

// The MoE layer's forward linear GEMMs are 2 x its active weights per token (Megatron-LM's
// convention): attention, the router, the top-k routed and the shared experts.
TEST(MoeGraph, ForwardGemmsAreTwiceTheActiveWeights) {
  for (const char* name : {"mixtral-8x7b", "qwen3-30b-a3b", "deepseek-v3", "llama4-maverick", "gpt-oss-20b"}) {
    const ModelConfig m = preset(name);
    const size_t kind = main_layer_kind(m);
    ASSERT_TRUE(m.layer_kinds()[kind].spec.moe) << name;
    const LayerGraph g = build_layer_graph(layer_shape(m, 1, 128, kind), GraphOptions{});
    double ffn = 0;
    for (const auto& op : g.ops)
      if (op.phase == Phase::forward && op.impl == OpImpl::gemm && op.gemm.linear &&
          (op.name.rfind("fwd.moe.", 0) == 0 || op.name.rfind("fwd.experts.", 0) == 0 ||
           op.name.rfind("fwd.shared.", 0) == 0))
        ffn += op.flops;
    const double d = static_cast<double>(m.d_model), E = static_cast<double>(m.n_experts);
    const double active = 3 * d * (static_cast<double>(m.top_k * m.d_ff_expert) +
                                   static_cast<double>(m.n_shared_experts * m.d_ff_shared)) + E * d;
    EXPECT_DOUBLE_EQ(ffn, 2 * 128 * active) << name;
  }
}

TEST(MoeGraph, EstimateCountsEveryKindOfLayer) {
  // DeepSeek-V3: 3 dense layers, then 58 MoE; the graph's training FLOPs sum over both kinds.
  const ModelConfig m = preset("deepseek-v3");
  const auto kinds = m.layer_kinds();
  ASSERT_EQ(kinds.size(), 2u);
  EXPECT_EQ(main_layer_kind(m), 1u);
  const Formula graph = formula_graph(m, false), six = formula_6nd(m);
  EXPECT_GT(graph.total_flops, six.total_flops);  // attention's squares and the head on top of 6 N_active D
  EXPECT_LT(graph.total_flops, 2 * six.total_flops);
  GraphOptions o;
  const LayerGraph dense = build_layer_graph(layer_shape(m, 1, m.n_ctx, 0), o);
  const LayerGraph moe = build_layer_graph(layer_shape(m, 1, m.n_ctx, 1), o);
  EXPECT_FALSE(dense.shape.moe());
  EXPECT_TRUE(moe.shape.moe());
  EXPECT_THROW(dense.op("fwd.moe.router"), Error);
}

TEST(MoeGraph, BadShapesAreRefused) {
  LayerShape s = tiny_moe();
  s.top_k = s.router.top_k = 9;  // more than the 8 experts
  EXPECT_THROW(build_layer_graph(s, GraphOptions{}), Error);  // an internal check: ModelConfig::validate says it to users
  s = tiny_moe();
  s.router.n_group = 3;  // does not divide 8
  s.router.topk_group = 1;
  EXPECT_THROW(build_layer_graph(s, GraphOptions{}), Error);  // an internal check: ModelConfig::validate says it to users
  s = tiny_moe();
  GraphOptions fp8;
  fp8.precision = Precision::fp8;
  EXPECT_THROW(build_layer_graph(s, fp8), UsageError);  // expert width 12: FP8 GEMMs need multiples of 16
}

// Runs the graph's ops once through verification on the CPU backend.
template <typename F>
nlohmann::json verify_on_cpu(CpuBackend<F>& be, const LayerGraph& g) {
  be.allocate(g);
  be.fill(3);
  return verification_run(be, g);
}

TEST(MoeCpu, TinyMixtralVerifiesCountsExactlyAndRoutesToTheTopLogits) {
  const ModelConfig m = model_from_hf_file(path("tiny-mixtral.json"));
  const LayerGraph g = build_layer_graph(layer_shape(m, 1, m.n_ctx, main_layer_kind(m)), GraphOptions{});
  ASSERT_TRUE(g.shape.moe());
  CpuBackend<float> be;
  const auto v = verify_on_cpu(be, g);
  EXPECT_TRUE(v.at("passed").get<bool>()) << v.at("failures").dump();
  for (const auto& op : g.ops) EXPECT_EQ(be.counted_flops(op.name), op.flops) << op.name;
  const int64_t T = g.shape.tokens(), E = m.n_experts, k = m.top_k;
  const auto& counts = be.data("moe.counts");
  EXPECT_EQ(std::accumulate(counts.begin(), counts.end(), 0.0), static_cast<double>(k * T));
  // Independently of the reference: Mixtral's softmax is monotonic, so each token's experts are
  // its k largest logits, best first, and the weights are their softmax renormalised over the k.
  const auto& z = be.data("router.logits");
  const auto& ex = be.data("moe.experts");
  const auto& w = be.data("moe.weights");
  const auto& slots = be.data("moe.slots");
  std::vector<int> seen(static_cast<size_t>(k * T), 0);
  for (int64_t t = 0; t < T; ++t) {
    std::vector<int64_t> order(static_cast<size_t>(E));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return z[t * E + a] > z[t * E + b]; });
    double denom = 0;
    for (int64_t j = 0; j < k; ++j) denom += std::exp(static_cast<double>(z[t * E + order[j]]));
    for (int64_t j = 0; j < k; ++j) {
      EXPECT_EQ(static_cast<int64_t>(ex[t * k + j]), order[j]) << "token " << t;
      EXPECT_NEAR(w[t * k + j], std::exp(static_cast<double>(z[t * E + order[j]])) / denom, 1e-6);
      ++seen[static_cast<size_t>(slots[t * k + j])];
    }
  }
  // Every dispatched row is some token's, once.
  EXPECT_TRUE(std::all_of(seen.begin(), seen.end(), [](int s) { return s == 1; }));
}

// --precision fp8 as Transformer Engine runs an MoE layer: the experts' grouped GEMMs (and the
// other linear layers) on FP8 copies, each expert's weights cast to its own K-major copy; the
// router in bf16. The CPU emulation verifies it and counts it exactly.
TEST(MoeCpu, Fp8GroupedGemmsVerifyOnTheirCopies) {
  const ModelConfig m = model_from_hf_file(path("tiny-mixtral.json"));
  GraphOptions o;
  o.precision = Precision::fp8;
  const LayerGraph g = build_layer_graph(layer_shape(m, 1, m.n_ctx, main_layer_kind(m)), o);
  EXPECT_EQ(g.op("fwd.moe.router").precision, Precision::bf16);
  EXPECT_EQ(g.op("bwd.moe.router.wgrad").precision, Precision::bf16);
  for (const char* op : {"fwd.experts.up", "bwd.experts.down.dgrad", "bwd.experts.gate.wgrad"}) {
    EXPECT_EQ(g.op(op).precision, Precision::fp8) << op;
    EXPECT_TRUE(g.op(op).gemm.trans_b && !g.op(op).gemm.trans_a) << op;  // both K-major
  }
  // The experts' up weights (4, 64, 96), each transposed on its own: one cast of 4 members.
  const Op& cast = g.op("fwd.experts.up.cast_b");
  EXPECT_EQ(cast.batch, 4);
  EXPECT_TRUE(cast.transpose);
  EXPECT_EQ(g.tensor("w.experts.up.e4m3t").shape, (std::vector<int64_t>{4 * 96, 64}));
  std::unique_ptr<Backend> be = make_cpu_backend(Precision::fp8);
  be->allocate(g);
  be->fill(3);
  const auto v = verification_run(*be, g);
  EXPECT_TRUE(v.at("passed").get<bool>()) << v.at("failures").dump();
  for (const auto& op : g.ops) EXPECT_EQ(be->counted_flops(op.name), op.flops) << op.name;
}

// MLA, a shared expert, a dense first layer, sigmoid scores and grouped top-k: the MoE kind runs.
TEST(MoeCpu, TinyDeepseekV3MoeLayerVerifiesAndCountsExactly) {
  const ModelConfig m = model_from_hf_file(path("tiny-deepseek-v3.json"));
  ASSERT_EQ(m.layer_kinds().size(), 2u);
  const size_t kind = main_layer_kind(m);
  const LayerGraph g = build_layer_graph(layer_shape(m, 1, m.n_ctx, kind), GraphOptions{});
  ASSERT_TRUE(g.shape.moe() && g.shape.mla() && g.shape.n_shared == 1);
  EXPECT_TRUE(g.op("fwd.moe.route").moe.sigmoid);
  EXPECT_EQ(g.op("fwd.moe.route").moe.n_group, 4);
  CpuBackend<float> be;
  const auto v = verify_on_cpu(be, g);
  EXPECT_TRUE(v.at("passed").get<bool>()) << v.at("failures").dump();
  for (const auto& op : g.ops) EXPECT_EQ(be.counted_flops(op.name), op.flops) << op.name;
  // Grouped top-k: each token's 2 experts lie within topk_group = 2 of the 4 groups of 2.
  const auto& ex = be.data("moe.experts");
  for (int64_t t = 0; t < g.shape.tokens(); ++t) {
    const int64_t a = static_cast<int64_t>(ex[t * 2]) / 2, b = static_cast<int64_t>(ex[t * 2 + 1]) / 2;
    EXPECT_TRUE(a >= 0 && a < 4 && b >= 0 && b < 4);
  }
}

// Verification catches a token sent to the wrong expert, an expert's rows run against another
// expert's weights, and a combine that drops a token's second expert: each a backend that
// computes something else than the op says.
class MisroutingBackend : public testing_util::WrappedCpuBackendOf<double> {
 public:
  std::string broken;
  bool dropless = false;  // a router that ignores the capacity factor
  void run(const Op& op) override {
    if (dropless && op.impl == OpImpl::moe_route_fwd) {
      Op all = op;
      all.moe.capacity = 0;
      return inner.run(all);
    }
    inner.run(op);
    if (op.name != broken) return;
    if (op.impl == OpImpl::moe_route_fwd) {  // token 5's first expert swapped for the next one
      auto& ex = inner.data("moe.experts");
      ex[10] = static_cast<double>((static_cast<int64_t>(ex[10]) + 1) % 8);
    } else if (op.impl == OpImpl::gemm) {  // expert 1's rows recomputed with expert 0's weights
      Op wrong = op;
      wrong.gemm.stride_b = 0;
      inner.run(wrong);
    } else if (op.impl == OpImpl::moe_combine_fwd) {  // only the first of each token's k rows
      Op first = op;
      first.moe.top_k = 1;
      auto& w = inner.data("moe.weights");
      std::vector<double> saved = w, firsts(w.size() / 2);
      for (size_t t = 0; t < firsts.size(); ++t) firsts[t] = w[2 * t];
      (void)saved;
      auto& y = inner.data(op.outputs.at(0));
      const auto& slots = inner.data("moe.slots");
      const auto& ye = inner.data("moe.ye");
      const int64_t d = op.cols;
      for (int64_t t = 0; t < op.rows; ++t)
        for (int64_t c = 0; c < d; ++c) y[t * d + c] = w[2 * t] * ye[static_cast<int64_t>(slots[2 * t]) * d + c];
    }
  }
};

// The same backend breaking nothing passes verification and counts every op as analytic.
template <typename Broken>
void expect_clean(const LayerGraph& g) {
  Broken clean;
  clean.allocate(g);
  clean.fill(3);
  EXPECT_TRUE(verification_run(clean, g).at("passed").template get<bool>());
  for (const auto& op : g.ops) EXPECT_EQ(clean.inner.counted_flops(op.name), op.flops) << op.name;
}

// A backend that breaks `op` (its `broken`) fails verification, and the failure names the op.
template <typename Broken>
void expect_caught(const LayerGraph& g, const std::string& op) {
  Broken be;
  be.broken = op;
  be.allocate(g);
  be.fill(3);
  const nlohmann::json v = verification_run(be, g);
  EXPECT_FALSE(v.at("passed").get<bool>()) << op;
  bool named = false;
  for (const auto& f : v.at("failures")) named = named || f.value("name", "") == op;
  EXPECT_TRUE(named) << op << ": " << v.at("failures").dump();
}

TEST(MoeCpu, VerificationCatchesMisroutingAWrongExpertGemmAndADroppedExpert) {
  const LayerGraph g = build_layer_graph(tiny_moe(), GraphOptions{});
  {
    MisroutingBackend clean;
    clean.allocate(g);
    clean.fill(3);
    ASSERT_TRUE(verification_run(clean, g).at("passed").get<bool>());
  }
  for (const char* op : {"fwd.moe.route", "fwd.experts.up", "fwd.moe.combine"}) expect_caught<MisroutingBackend>(g, op);
}

// Expert biases (gpt-oss): each projection's bias is (E, width), one row an expert, and the bias
// ops take the router's counts so each expert's rows add (and sum into) its own row. A backend
// that adds expert 0's bias to every row, or sums every row into expert 0's, fails verification
// naming the op; the clean one passes and counts exactly.
class OneBiasBackend : public testing_util::WrappedCpuBackendOf<double> {
 public:
  std::string broken;
  void run(const Op& op) override {
    if (op.name != broken) return inner.run(op);
    Op plain = op;  // the dense bias op over all the rows: expert 0's bias row
    plain.inputs.pop_back();
    inner.run(plain);
  }
};

TEST(MoeCpu, ExpertBiasesAreOneRowAnExpertAndVerificationCatchesOneBiasForAll) {
  LayerShape s = tiny_moe();
  s.expert_bias = true;
  const LayerGraph g = build_layer_graph(s, GraphOptions{});
  const TensorSpec& b_up = g.tensor("b.experts.up");
  EXPECT_EQ(b_up.shape, (std::vector<int64_t>{s.n_experts, s.d_ff_expert}));
  EXPECT_TRUE(b_up.expert);
  EXPECT_EQ(g.tensor("b.experts.down").shape, (std::vector<int64_t>{s.n_experts, s.d_model}));
  EXPECT_TRUE(expert_bias_op(g.op("fwd.experts.up.bias")));
  EXPECT_TRUE(expert_bias_op(g.op("bwd.experts.down.bias")));
  expect_clean<OneBiasBackend>(g);
  for (const char* op : {"fwd.experts.up.bias", "bwd.experts.down.bias"}) expect_caught<OneBiasBackend>(g, op);
}

// Qwen2-MoE's shared-expert gate: sigmoid(x W_g) x the shared experts' output, W_g (d, 1). A
// backend whose gate passes the output through ungated, or whose backward leaves the gate
// logit's gradient 0, fails verification naming the op; the clean one passes and counts exactly.
class UngatedBackend : public testing_util::WrappedCpuBackendOf<double> {
 public:
  std::string broken;
  void run(const Op& op) override {
    inner.run(op);
    if (op.name != broken) return;
    if (op.impl == OpImpl::moe_gate_fwd) {
      inner.data(op.outputs.at(0)) = inner.data(op.inputs.at(0));
    } else {
      auto& dg = inner.data(op.outputs.at(1));
      std::fill(dg.begin(), dg.end(), 0.0);
    }
  }
};

TEST(MoeCpu, SharedExpertGateVerifiesAndVerificationCatchesAMissingGate) {
  LayerShape s = tiny_moe();
  s.shared_gate = true;
  const LayerGraph g = build_layer_graph(s, GraphOptions{});
  EXPECT_EQ(g.tensor("w.shared_gate").shape, (std::vector<int64_t>{s.d_model, 1}));
  EXPECT_EQ(g.op("fwd.moe.shared_gate").gemm.n, 1);
  EXPECT_EQ(g.op("fwd.moe.shared_add").inputs.at(1), "shared.gated");
  expect_clean<UngatedBackend>(g);
  for (const char* op : {"fwd.moe.shared_gate.mul", "bwd.moe.shared_gate.mul"}) expect_caught<UngatedBackend>(g, op);
}

// The routed scaling factor (MoeSpec::scale): the k weights x scale after the renormalisation,
// their gradient x scale before it; k multiplies a token each way, counted. Worked by hand for
// DeepSeek-V3's rule (sigmoid, 4 groups, renormalised) at E = 8, k = 2: forward 3 E + n_group +
// 2 k = 32 a token, backward 4 k + 3 k = 14; with a scale 34 and 16.
TEST(MoeRoute, RoutedScalingFactorScalesTheWeightsAndCountsItsMultiplies) {
  MoeSpec m;
  m.experts = 8, m.top_k = 2, m.sigmoid = true, m.norm_topk = true, m.n_group = 4, m.topk_group = 2;
  EXPECT_DOUBLE_EQ(flop_convention::moe_route_fwd(m, 10), 320);
  EXPECT_DOUBLE_EQ(flop_convention::moe_route_bwd(m, 10), 140);
  const double z[8] = {0.3, -1.2, 0.8, 0.1, -0.4, 1.1, 0.2, -0.7};
  int64_t ex[2], ex_scaled[2];
  double w[2], w_scaled[2];
  ref::moe_route_row(z, m, ex, w);
  MoeSpec s = m;
  s.scale = 2.5;
  EXPECT_DOUBLE_EQ(flop_convention::moe_route_fwd(s, 10), 340);
  EXPECT_DOUBLE_EQ(flop_convention::moe_route_bwd(s, 10), 160);
  ref::moe_route_row(z, s, ex_scaled, w_scaled);
  for (int j = 0; j < 2; ++j) {
    EXPECT_EQ(ex_scaled[j], ex[j]);  // the scale does not change the choice
    EXPECT_NEAR(w_scaled[j], 2.5 * w[j], 1e-15);
  }
  EXPECT_NEAR(w_scaled[0] + w_scaled[1], 2.5, 1e-15);  // renormalised to 1, then scaled
  // The logits' gradient of the scaled weights under dw is the unscaled one's under 2.5 dw.
  const double counts[8] = {0, 0, 0, 0, 0, 0, 0, 0}, dw[2] = {0.7, -0.2}, dw_x[2] = {2.5 * 0.7, 2.5 * -0.2};
  double dz[8], want[8];
  ref::moe_route_backward_row(z, ex_scaled, w_scaled, dw, counts, 1, s, dz);
  ref::moe_route_backward_row(z, ex, w, dw_x, counts, 1, m, want);
  for (int e = 0; e < 8; ++e) EXPECT_NEAR(dz[e], want[e], 1e-14) << e;
}

// A capacity factor (MoeSpec::capacity): each expert keeps its ceil(factor k T / E) rows of
// highest weight, ties to the earlier token, in token order; the others' slots are -1 and the
// counts are the kept rows (Megatron-LM's drop policy "probs"). Worked by hand.
TEST(MoeRoute, CapacityDropsTheLowestWeightsPastEachExpertsCapacity) {
  MoeSpec m;
  m.experts = 3, m.top_k = 2;
  EXPECT_EQ(expert_capacity(m, 4), 8);  // no capacity: every routed row
  m.capacity = 1.0;
  EXPECT_EQ(expert_capacity(m, 4), 3);  // ceil(8 / 3)
  m.capacity = 0.5;
  EXPECT_EQ(expert_capacity(m, 4), 2);  // ceil(1.33)
  m.capacity = 100;
  EXPECT_EQ(expert_capacity(m, 4), 8);  // never more than the routed rows
  m.capacity = 0.5;
  // 4 tokens, top-2: expert 0 chosen by all four (weights .6 .5 .5 .7), expert 1 by three
  // (.4 .2 .3), expert 2 by one (.5). Capacity 2: expert 0 keeps tokens 3 (.7) and 0 (.6), the
  // tie at .5 between tokens 1 and 2 drops both; expert 1 keeps tokens 0 (.4) and 3 (.3).
  const std::vector<int64_t> ex = {0, 1, 0, 1, 2, 0, 0, 1};
  const std::vector<double> w = {.6, .4, .5, .2, .5, .5, .7, .3};
  std::vector<double> slots(8), counts(3);
  ref::moe_slots(ex.data(), w.data(), 4, m, slots.data(), counts.data());
  EXPECT_EQ(counts, (std::vector<double>{2, 2, 1}));
  EXPECT_EQ(slots, (std::vector<double>{0, 2, -1, -1, 4, -1, 1, 3}));
  EXPECT_EQ(ref::moe_rows_used(slots.data(), 4, m), 5);
  EXPECT_EQ(ref::moe_chosen(ex.data(), 4, m), (std::vector<double>{4, 3, 1}));  // the aux loss's counts
  // Capacity 3 (factor 1): only expert 0 overflows, and drops its lowest, the later of the tie.
  m.capacity = 1.0;
  ref::moe_slots(ex.data(), w.data(), 4, m, slots.data(), counts.data());
  EXPECT_EQ(counts, (std::vector<double>{3, 3, 1}));
  EXPECT_EQ(slots, (std::vector<double>{0, 3, 1, 4, 6, -1, 2, 5}));
}

// The layer with a capacity: the cpu backend drops the rows past it, verifies against the fp64
// reference (which drops by the same rule), and counts each grouped GEMM's and the combine's
// FLOPs over the kept rows only, the rest as without the capacity; the stacked rows no expert
// took are zero. A router that ignores the capacity fails verification.
TEST(MoeCpu, CapacityDropsRowsVerifiesAndCountsOnlyTheKept) {
  LayerShape s = tiny_moe();
  s.router.capacity = 1.0;  // 4 rows an expert of the 32
  const LayerGraph g = build_layer_graph(s, GraphOptions{});
  CpuBackend<float> be;
  const auto v = verify_on_cpu(be, g);
  EXPECT_TRUE(v.at("passed").get<bool>()) << v.at("failures").dump();
  const auto& counts = be.data("moe.counts");
  const double kept = std::accumulate(counts.begin(), counts.end(), 0.0), routed = 2.0 * 16;
  for (double c : counts) EXPECT_LE(c, 4.0);
  ASSERT_LT(kept, routed) << "the seeded router overfills no expert: nothing dropped";
  for (const auto& op : g.ops) {
    const double counted = be.counted_flops(op.name);
    if (op.impl == OpImpl::gemm && op.gemm.grouped != Grouped::none) {
      EXPECT_TRUE(op.gemm.drops) << op.name;
      EXPECT_DOUBLE_EQ(counted, op.flops * kept / routed) << op.name;
    } else if (op.impl == OpImpl::moe_combine_fwd || op.impl == OpImpl::moe_combine_bwd) {
      EXPECT_DOUBLE_EQ(counted, op.flops * kept / routed) << op.name;
    } else if (!op.routed && op.impl != OpImpl::moe_dispatch_bwd) {
      EXPECT_EQ(counted, op.flops) << op.name;
    }
  }
  for (const char* t : {"moe.in", "moe.ye", "d.moe.ye", "d.moe.in"}) {
    const auto& rows = be.data(t);
    for (size_t i = static_cast<size_t>(kept) * 32; i < rows.size(); ++i) ASSERT_EQ(rows[i], 0.0f) << t << " " << i;
  }
  MisroutingBackend dropless;
  dropless.dropless = true;
  dropless.allocate(g);
  dropless.fill(3);
  const auto bad = verification_run(dropless, g);
  EXPECT_FALSE(bad.at("passed").get<bool>());
  EXPECT_NE(bad.at("failures").dump().find("fwd.moe.route"), std::string::npos) << bad.at("failures").dump();
}

// The aux loss's gradient (moe_route_bwd with the weights' gradient 0) against central
// differences of L = coef E sum_e (counts_e / T) mean_t softmax(z_t)_e, counts held fixed.
TEST(MoeRoute, AuxLossGradientMatchesFiniteDifferences) {
  MoeSpec m;
  m.experts = 5, m.top_k = 2, m.norm_topk = true, m.aux_coef = 0.3;
  const int64_t T = 3;
  std::vector<double> z = {0.3, -1.2, 0.8, 0.1, -0.4, 1.1, 0.2, -0.7, 0.5, 0.9, -0.3, 0.6, 0.4, -1.0, 0.0};
  const std::vector<double> counts = {2, 1, 1, 1, 1};  // sum k T = 6
  auto aux = [&](const std::vector<double>& zz) {
    double L = 0;
    for (int64_t e = 0; e < 5; ++e) {
      double P = 0;
      for (int64_t t = 0; t < T; ++t) {
        double mx = -1e300, s = 0;
        for (int64_t f = 0; f < 5; ++f) mx = std::max(mx, zz[t * 5 + f]);
        for (int64_t f = 0; f < 5; ++f) s += std::exp(zz[t * 5 + f] - mx);
        P += std::exp(zz[t * 5 + e] - mx) / s / static_cast<double>(T);
      }
      L += m.aux_coef * 5 * counts[e] / static_cast<double>(T) * P;
    }
    return L;
  };
  for (int64_t t = 0; t < T; ++t) {
    int64_t ex[2];
    double w[2];
    ref::moe_route_row(z.data() + t * 5, m, ex, w);
    const double dw[2] = {0, 0};
    double dz[5];
    ref::moe_route_backward_row(z.data() + t * 5, ex, w, dw, counts.data(), T, m, dz);
    for (int64_t e = 0; e < 5; ++e) {
      std::vector<double> p = z, q = z;
      p[t * 5 + e] += 1e-6;
      q[t * 5 + e] -= 1e-6;
      EXPECT_NEAR(dz[e], (aux(p) - aux(q)) / 2e-6, 1e-8) << "token " << t << " expert " << e;
    }
  }
}

// The one reader of a grouped GEMM's router counts every backend and the verifier share
// (GemmSpec::groups, GemmSpec::problem): rows and starts from the counts, each problem a plain
// GEMM at its offsets, and counts the route could not have written refused with the op's name.
TEST(MoeGraph, GroupedProblemsFromTheRoutersCounts) {
  GraphOptions o;
  const LayerGraph g = build_layer_graph(tiny_moe(false), o);
  const GemmSpec& up = g.op("fwd.experts.up").gemm;      // m_rows: k T = 32 rows of d = 32
  const GemmSpec& wg = g.op("bwd.experts.up.wgrad").gemm;  // k_rows
  const std::vector<double> counts = {5, 0, 3, 4, 6, 2, 7, 5};
  const GemmSpec::Groups gr = up.groups(counts, "fwd.experts.up");
  EXPECT_EQ(gr.rows, (std::vector<int64_t>{5, 0, 3, 4, 6, 2, 7, 5}));
  EXPECT_EQ(gr.first, (std::vector<int64_t>{0, 5, 5, 8, 12, 18, 20, 27}));
  const GemmSpec p3 = up.problem(3, gr);  // rows 8..11 of A and C, expert 3's B
  EXPECT_EQ(p3.batch, 1);
  EXPECT_EQ(p3.grouped, Grouped::none);
  EXPECT_EQ(p3.m, 4);
  EXPECT_EQ(p3.n, up.n);
  EXPECT_EQ(p3.a_offset, up.a_offset + 8 * up.lda);
  EXPECT_EQ(p3.b_offset, up.b_offset + 3 * up.k * up.n);
  EXPECT_EQ(p3.c_offset, up.c_offset + 8 * up.ldc);
  const GemmSpec w6 = wg.problem(6, wg.groups(counts, "wgrad"));  // k the rows, expert 6's C
  EXPECT_EQ(w6.k, 7);
  EXPECT_EQ(w6.m, wg.m);
  EXPECT_EQ(w6.c_offset, wg.c_offset + 6 * wg.m * wg.n);
  auto refused = [&](std::vector<double> c, const std::string& says) {
    try {
      up.groups(c, "fwd.experts.up");
      ADD_FAILURE() << "accepted counts that " << says;
    } catch (const Error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("fwd.experts.up"), std::string::npos) << what;
      EXPECT_NE(what.find(says), std::string::npos) << what;
    }
  };
  refused({5, 0, 3, 4, 6, 2, 7, 4}, "sum to 31");
  refused({5, 0, 3, 4, 6, 2, 7, 6}, "sum to 33");
  refused({5, 0, 3, 4, 6, 2, 7.5, 4.5}, "not a whole number");
  refused({5, 0, 3, 4, 6, 2, -7, 19}, "not a whole number");
  refused({32, 0, 0}, "3 row counts for 8 experts");
  // A router that drops rows past a capacity (GemmSpec::drops): fewer rows than the graph's,
  // never more.
  GemmSpec dropping = up;
  dropping.drops = true;
  const GemmSpec::Groups fewer = dropping.groups({4, 0, 3, 4, 4, 2, 4, 4}, "fwd.experts.up");
  EXPECT_EQ(fewer.first.back() + fewer.rows.back(), 25);
  try {
    dropping.groups({5, 0, 3, 4, 6, 2, 7, 6}, "fwd.experts.up");
    ADD_FAILURE() << "accepted 33 rows of 32";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("sum to 33, more than the 32"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace flopscope
