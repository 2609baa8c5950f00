// The graph's backward pass is right: on a tiny layer in fp64, the gradients the backward ops
// compute for the input and for every weight and bias match central finite differences of
// the forward pass's loss. This checks every dgrad/wgrad shape, transpose, offset and order,
// for GPT-3 layers and for Llama-style ones (RMSNorm, RoPE, SwiGLU, grouped- and multi-query
// attention, no biases), OPT's ReLU and Qwen2's QKV bias, with and without recompute and the head;
// and the attention variants: QK-norm, sliding window, chunks, sinks.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.hpp"
#include "backend/verify.hpp"
#include "graph/graph.hpp"

namespace flopscope {
namespace {

struct Case {
  const char* label;
  LayerShape shape;
  bool include_head;
  bool recompute;
  // Central-difference step. 1e-5 where the layer has kinks (ReLU: a larger step crosses
  // them); 1e-4 for the smooth Llama-style layers with the head, whose small mean-loss
  // gradients leave 1e-5 dominated by rounding (the error there scales as 1 / step).
  double step = 1e-5;
};

// Llama-style: RMSNorm, RoPE, SwiGLU, no biases; n_kv_heads kv heads of h query heads.
LayerShape llama(int64_t b, int64_t s, int64_t h, int64_t hk, int64_t dh, int64_t d, int64_t f, int64_t vocab) {
  LayerShape x;
  x.batch = b, x.seq = s, x.n_heads = h, x.n_kv_heads = hk, x.d_head = dh, x.d_model = d, x.d_ff = f, x.vocab = vocab;
  x.norm = NormKind::rmsnorm;
  x.ffn = FfnKind::swiglu;
  x.position = PositionKind::rope;
  x.rope_theta = 100.0;  // a small base turns the tiny head's pairs by visibly different angles
  x.biases = {false, false, false};
  x.tied_embeddings = false;
  return x;
}

LayerShape opt_relu() {
  LayerShape x = layer_shape(2, 4, 2, 3, 11);
  x.ffn = FfnKind::relu;
  return x;
}

LayerShape qwen2_qkv_bias() {
  LayerShape x = llama(2, 4, 4, 2, 2, 6, 5, 7);  // q_dim 8 != d_model 6
  x.biases = {true, false, false};
  return x;
}

// The (parameter, gradient) pairs: the layer input and every weight and bias.
std::vector<std::pair<std::string, std::string>> parameters(const LayerGraph& g) {
  std::vector<std::pair<std::string, std::string>> params = {{"x", "d.x"}};
  for (const auto& t : g.tensors)
    if (t.role == TensorRole::weight) params.emplace_back(t.name, "d." + t.name);
  return params;
}


class GradCheck : public ::testing::TestWithParam<Case> {};

// The scalar the backward pass differentiates: with the head, the mean cross-entropy; without,
// sum(y * dy) for the fixed random incoming gradient dy.
double loss(CpuBackend<double>& be, const LayerGraph& g) {
  double l = 0;
  if (g.options.include_head) {
    for (double v : be.data("loss")) l += v;
    return l / static_cast<double>(g.shape.tokens());
  }
  const auto& y = be.data("y");
  const auto& dy = be.data("d.y");
  for (size_t i = 0; i < y.size(); ++i) l += y[i] * dy[i];
  return l;
}

double forward_loss(CpuBackend<double>& be, const LayerGraph& g) {
  for (const auto& op : g.ops)
    if (op.phase == Phase::forward) be.run(op);
  return loss(be, g);
}

// Runs every op once (verified against fp64), then returns, per parameter, the largest
// |numeric - analytic| over its elements divided by the largest |numeric| (central
// differences of the loss with the given step).
std::vector<std::pair<std::string, double>> gradient_errors(const LayerGraph& g, double step = 1e-5) {
  CpuBackend<double> be;
  be.allocate(g);
  be.fill(7);
  const auto verified = verification_run(be, g);  // runs every op once, checked against fp64
  EXPECT_TRUE(verified.at("passed").get<bool>()) << verified.dump();
  std::vector<std::pair<std::string, double>> errors;
  const double h = step;
  for (const auto& [p, dp] : parameters(g)) {
    const std::vector<double> analytic = be.data(dp);  // copy: forward re-runs do not touch it
    auto& v = be.data(p);
    double max_diff = 0, max_ref = 0;
    for (size_t i = 0; i < v.size(); ++i) {
      const double saved = v[i];
      v[i] = saved + h;
      const double lp = forward_loss(be, g);
      v[i] = saved - h;
      const double lm = forward_loss(be, g);
      v[i] = saved;
      const double numeric = (lp - lm) / (2 * h);
      max_diff = std::max(max_diff, std::fabs(numeric - analytic[i]));
      max_ref = std::max(max_ref, std::fabs(numeric));
    }
    EXPECT_GT(max_ref, 0) << p << ": a gradient that is zero everywhere checks nothing";
    errors.emplace_back(p, max_diff / std::max(max_ref, 1e-300));
  }
  return errors;
}

GraphOptions fp64_options(const Case& c) {
  GraphOptions o;
  o.precision = Precision::fp64;
  o.include_head = c.include_head;
  o.recompute = c.recompute;
  return o;
}

TEST_P(GradCheck, BackwardMatchesCentralDifferences) {
  const Case c = GetParam();
  const LayerGraph g = build_layer_graph(c.shape, fp64_options(c));
  // GPT: x, 2 x (gamma, beta), 4 weights, 4 biases (+ head gamma, beta, vocab); fewer without biases.
  const size_t norm_params = c.shape.norm == NormKind::layernorm ? 2 : 1;
  const size_t expected = 1 + 2 * norm_params + (c.shape.ffn == FfnKind::swiglu ? 5 : 4) +
                          (c.shape.biases.qkv ? 1 : 0) + (c.shape.biases.attn_out ? 1 : 0) +
                          (c.shape.biases.ffn ? (c.shape.ffn == FfnKind::swiglu ? 3 : 2) : 0) +
                          (c.include_head ? norm_params + 1 : 0);
  ASSERT_EQ(parameters(g).size(), expected);
  if (c.shape.ffn == FfnKind::gelu && c.shape.norm == NormKind::layernorm) {
    ASSERT_EQ(expected, c.include_head ? 16u : 13u);
  }
  for (const auto& [p, err] : gradient_errors(g, c.step))
    EXPECT_LT(err, 1e-6) << c.label << ": gradient of " << p;
}

INSTANTIATE_TEST_SUITE_P(
    TinyLayers, GradCheck,
    ::testing::Values(Case{"b1_s6_h2", layer_shape(1, 6, 2, 4, 11), false, false},
                      Case{"b2_s5_h3", layer_shape(2, 5, 3, 2, 11), false, false},
                      Case{"b2_s4_h2_head", layer_shape(2, 4, 2, 3, 13), true, false},
                      Case{"b2_s4_h2_recompute_head", layer_shape(2, 4, 2, 3, 7), true, true},
                      Case{"llama_gqa_b2_s5_h4_kv2", llama(2, 5, 4, 2, 4, 16, 12, 11), false, false},
                      Case{"llama_gqa_recompute_head", llama(2, 4, 4, 2, 2, 8, 6, 7), true, true, 1e-4},
                      Case{"llama_gqa_head", llama(1, 5, 6, 2, 2, 12, 7, 9), true, false, 1e-4},
                      Case{"llama_mqa_b2_s4_h3_kv1", llama(2, 4, 3, 1, 4, 12, 10, 11), false, false},
                      Case{"llama_mqa_recompute", llama(1, 6, 2, 1, 4, 8, 6, 7), false, true},
                      Case{"opt_relu", opt_relu(), false, false},
                      Case{"opt_relu_recompute", opt_relu(), false, true},
                      Case{"qwen2_qkv_bias", qwen2_qkv_bias(), false, false},
                      Case{"qwen2_qkv_bias_recompute", qwen2_qkv_bias(), false, true}),
    [](const ::testing::TestParamInfo<Case>& param) { return std::string(param.param.label); });

// Multi-head latent attention (src/graph/mla.cpp): every projection of the latents, their
// RMSNorms, the decoupled RoPE and the shared k_rope (its gradient summed over the heads), with
// and without q_lora and biases, with recompute and the head.
LayerShape mla(int64_t q_lora, bool biases) {
  LayerShape x = llama(2, 4, 2, 2, 4, 8, 6, 7);
  x.q_lora_rank = q_lora, x.kv_lora_rank = 4, x.qk_nope = 2, x.qk_rope = 2, x.v_head = 3;
  x.biases = {biases, biases, false};
  return x;
}

TEST(GradCheckMla, BackwardMatchesCentralDifferences) {
  for (const Case& c : {Case{"mla_q_lora", mla(4, false), false, false},
                        Case{"mla_no_q_lora", mla(0, false), false, false},
                        Case{"mla_biases_recompute", mla(4, true), false, true},
                        Case{"mla_head", mla(4, false), true, false, 1e-4}}) {
    const LayerGraph g = build_layer_graph(c.shape, fp64_options(c));
    // x, 2 norm gammas, the MLA weights (q_a, q_a_norm, q_b | q; kv_a, k_rope, kv_a_norm, kv_b, proj),
    // biases (q_a, kv_a, k_rope, proj), SwiGLU's 3, the head's gamma and vocab.
    const size_t mla_weights = (c.shape.q_lora_rank > 0 ? 3 : 1) + 5;
    const size_t biases = c.shape.biases.qkv ? (c.shape.q_lora_rank > 0 ? 4 : 3) : 0;
    ASSERT_EQ(parameters(g).size(), 1 + 2 + mla_weights + biases + 3 + (c.include_head ? 2 : 0)) << c.label;
    // 1e-4, not 1e-6: the latents' RMSNorms (over 4 elements of products of two small random
    // matrices, mean squares not far above eps) curve sharply, and the central differences reach
    // 1e-5 there at every step tried (1e-6 rounding-bound, 1e-4 truncation-bound). A wrong
    // gradient is far off: k_rope's gradient from one head only gives 0.7 to 1.4 on w.k_rope (tried by hand).
    for (const auto& [p, err] : gradient_errors(g, c.step)) EXPECT_LT(err, 1e-4) << c.label << ": gradient of " << p;
  }
}

// The attention variants (issue 18): QK-norm (Qwen3's weighted RMSNorm per head, Llama 4's
// unweighted one), a sliding window, chunks and attention sinks, alone and together, run as the
// whole square (causal block 0) and in row blocks that skip what the mask masks (block 2).
struct VariantCase {
  const char* label;
  QkNorm qk_norm;
  int64_t window, chunk, block;
  bool sinks, recompute;
};

TEST(GradCheckAttentionVariants, BackwardMatchesCentralDifferences) {
  for (const VariantCase& v : {VariantCase{"qk_rmsnorm", QkNorm::rmsnorm, 0, 0, 0, false, false},
                               VariantCase{"qk_rmsnorm_recompute", QkNorm::rmsnorm, 0, 0, 0, false, true},
                               VariantCase{"qk_l2", QkNorm::l2, 0, 0, 0, false, false},
                               VariantCase{"window2", QkNorm::none, 2, 0, 0, false, false},
                               VariantCase{"window3_blocked", QkNorm::none, 3, 0, 2, false, false},
                               VariantCase{"chunk2_blocked", QkNorm::none, 0, 2, 2, false, false},
                               VariantCase{"chunk3", QkNorm::none, 0, 3, 0, false, false},
                               VariantCase{"sinks", QkNorm::none, 0, 0, 0, true, false},
                               VariantCase{"sinks_window2_blocked_qk_rmsnorm_recompute", QkNorm::rmsnorm, 2, 0, 2, true, true}}) {
    LayerShape shape = llama(2, 5, 4, 2, 4, 16, 12, 11);
    shape.qk_norm = v.qk_norm;
    shape.layer.window = v.window, shape.layer.chunk = v.chunk;
    shape.attention_sinks = v.sinks;
    GraphOptions o = fp64_options(Case{v.label, shape, false, v.recompute});
    o.causal_block = v.block;
    const LayerGraph g = build_layer_graph(shape, o);
    const size_t extra = (v.qk_norm == QkNorm::rmsnorm ? 2 : 0) + (v.sinks ? 1 : 0);
    ASSERT_EQ(parameters(g).size(), 1 + 2 + 5 + extra) << v.label;  // x, 2 gammas, qkv, proj, gate, up, down
    // Seen: at most 1.3e-7 (the combined case's x), 2e-8 on the sink logits, 3.5e-8 on the QK-norm gammas.
    for (const auto& [p, err] : gradient_errors(g)) EXPECT_LT(err, 1e-6) << v.label << ": gradient of " << p;
  }
}

// Mixtures of experts (src/graph/moe.cpp): the router GEMM, the route's weights (softmax or
// sigmoid scores, top-k before or after them, renormalised or not, grouped top-k), dispatch,
// the grouped expert GEMMs, combine and the shared experts. The routing itself is piecewise
// constant, so a step of 1e-5 never moves a token to another expert on these seeds (each
// case's choice is stable: the check would fail loudly if it did). The aux loss is not part of
// the loss differentiated here (its gradient has a test of its own, MoeRoute), so its weight is 0.
struct MoeCase {
  const char* label;
  bool sigmoid, topk_first, norm_topk;
  int64_t top_k, n_group, topk_group, shared;
  bool router_bias, recompute;
  double scale = 1;  // the routed scaling factor (DeepSeek)
  bool expert_bias = false;  // biases on the experts' projections (gpt-oss)
  bool shared_gate = false;  // the shared experts' sigmoid gate (Qwen2-MoE)
};

LayerShape moe_shape(const MoeCase& c) {
  LayerShape x = llama(2, 4, 2, 1, 4, 8, 6, 7);
  x.layer.moe = true;
  x.n_experts = 4, x.top_k = c.top_k, x.d_ff_expert = 5, x.n_shared = c.shared > 0 ? 1 : 0, x.d_ff_shared = c.shared;
  x.router_bias = c.router_bias;
  x.router.experts = 4, x.router.top_k = c.top_k, x.router.sigmoid = c.sigmoid, x.router.topk_first = c.topk_first;
  x.router.norm_topk = c.norm_topk, x.router.n_group = c.n_group, x.router.topk_group = c.topk_group;
  x.router.scale = c.scale;
  x.expert_bias = c.expert_bias;
  x.shared_gate = c.shared_gate;
  return x;
}

TEST(GradCheckMoe, BackwardMatchesCentralDifferences) {
  for (const MoeCase& c : {MoeCase{"mixtral", false, false, true, 2, 0, 0, 0, false, false},
                           MoeCase{"qwen2_moe_unnormalised_shared", false, false, false, 2, 0, 0, 3, false, false},
                           MoeCase{"deepseek_v3_sigmoid_grouped_shared", true, false, true, 2, 2, 1, 3, false, false},
                           MoeCase{"gpt_oss_topk_first_router_bias", false, true, false, 2, 0, 0, 0, true, false},
                           MoeCase{"llama4_top1_sigmoid_shared_recompute", true, true, false, 1, 0, 0, 4, false, true},
                           MoeCase{"top3_recompute", false, false, true, 3, 0, 0, 0, false, true},
                           MoeCase{"deepseek_v3_scaled_2.5", true, false, true, 2, 2, 1, 3, false, false, 2.5},
                           MoeCase{"deepseek_v2_softmax_unnormalised_scaled_16", false, false, false, 2, 0, 0, 3, false, false, 16},
                           MoeCase{"topk_first_softmax_scaled_recompute", false, true, true, 2, 0, 0, 0, true, true, 0.4},
                           MoeCase{"gpt_oss_expert_biases", false, true, false, 2, 0, 0, 0, true, false, 1, true},
                           MoeCase{"expert_biases_shared_recompute", false, false, true, 2, 0, 0, 3, false, true, 1, true},
                           MoeCase{"qwen2_moe_shared_gate", false, false, false, 2, 0, 0, 3, false, false, 1, false, true},
                           MoeCase{"shared_gate_recompute", false, false, true, 2, 0, 0, 4, false, true, 1, false, true}}) {
    Case base{c.label, moe_shape(c), false, c.recompute};
    const LayerGraph g = build_layer_graph(base.shape, fp64_options(base));
    size_t expert_params = 0;
    for (const auto& [p, dp] : parameters(g)) expert_params += p.rfind("w.experts.", 0) == 0 || p == "w.router" ? 1 : 0;
    ASSERT_EQ(expert_params, 4u) << c.label;  // the router, gate, up, down
    size_t expert_biases = 0;
    for (const auto& [p, dp] : parameters(g)) expert_biases += p.rfind("b.experts.", 0) == 0 ? 1 : 0;
    ASSERT_EQ(expert_biases, c.expert_bias ? 3u : 0u) << c.label;  // gate, up, down: (E, width) each
    for (const auto& [p, err] : gradient_errors(g)) EXPECT_LT(err, 1e-6) << c.label << ": gradient of " << p;
  }
}

// A backward that forgets the renormalisation's gradient (the route's backward run as if the k
// weights were not renormalised) passes the per-op verification of a graph that says so, but
// not this check.
TEST(GradCheckMoe, AMissingRenormalisationGradientIsCaught) {
  const MoeCase c{"mixtral", false, false, true, 2, 0, 0, 0, false, false};
  Case base{c.label, moe_shape(c), false, false};
  LayerGraph g = build_layer_graph(base.shape, fp64_options(base));
  for (auto& op : g.ops)
    if (op.name == "bwd.moe.route") op.moe.norm_topk = false;
  double worst = 0;
  for (const auto& [p, err] : gradient_errors(g)) worst = std::max(worst, err);
  EXPECT_GT(worst, 1e-2);
}

}  // namespace
}  // namespace flopscope

namespace flopscope {
namespace {

// The check can fail: a backward with one sign wrong (RoPE's gradient rotated forward instead
// of back, or the MQA key gradient summed over only the first query head) passes the per-op
// fp64 verification, which checks each op against its own definition, but not this check.
TEST(GradCheckMutation, WrongRopeBackwardSignOrUnsummedKeyGradientIsCaught) {
  GraphOptions o;
  o.precision = Precision::fp64;
  const LayerGraph good = build_layer_graph(llama(1, 5, 2, 1, 4, 8, 6, 7), o);
  LayerGraph wrong_sign = good;
  LayerGraph unsummed = good;
  for (auto& op : wrong_sign.ops)
    if (op.name == "bwd.attn.rope") op.impl = OpImpl::rope_fwd;
  for (auto& op : unsummed.ops)
    if (op.name == "bwd.attn.scores.dk") op.gemm.repeat_beta = 0.0;  // the last query head overwrites
  for (const LayerGraph* g : {&wrong_sign, &unsummed}) {
    double worst = 0;
    for (const auto& [p, err] : gradient_errors(*g)) worst = std::max(worst, err);
    EXPECT_GT(worst, 1e-4);  // seen: 2e-2 and 3e-3 (attention's share of a tiny layer's gradient is small)
  }
  double worst = 0;
  for (const auto& [p, err] : gradient_errors(good)) worst = std::max(worst, err);
  EXPECT_LT(worst, 1e-6);
}

}  // namespace
}  // namespace flopscope
