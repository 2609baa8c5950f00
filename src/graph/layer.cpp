// One pre-norm decoder layer assembled from its blocks (blocks.hpp):
//   x -> norm ln1 -> attention -> + x = x1 -> norm ln2 -> MLP -> + x1 = y
// and, with GraphOptions::include_head, the LM head on y. The tensors are declared block by
// block (weights, then their gradients, then what the forward writes, then what the backward
// writes), the ops in execution order: forward, head, the recompute of the forward, backward.
#include <fmt/format.h>

#include "graph/blocks.hpp"
#include "util/error.hpp"

namespace flopscope {

namespace {

using namespace graph_detail;

// The layer's blocks and the tensors between them, named as the backends and tests know them.
struct Layer {
  NormBlock ln1, ln2;
  AttentionBlock attention;
  MlaBlock mla;  // in place of `attention` when the shape is MLA (LayerShape::mla)
  bool use_mla = false;
  MlpBlock mlp;
  MoeBlock moe;  // in place of `mlp` in a mixture of experts' layer (LayerShape::moe)
  bool use_moe = false;
  HeadBlock head;
};

// The activation's output tensor and op: gelu.out / gelu, relu.out / relu, swiglu.out / ffn.swiglu.
std::string activation_out(FfnKind k) {
  switch (k) {
    case FfnKind::gelu: return "gelu.out";
    case FfnKind::relu: return "relu.out";
    case FfnKind::swiglu: return "swiglu.out";
  }
  return "?";
}
std::string activation_op(FfnKind k) { return k == FfnKind::swiglu ? "ffn.swiglu" : std::string(to_string(k)); }

Layer dense_layer(const LayerShape& s) {
  const Dims D(s);
  Layer l;
  l.ln1 = norm_block(s.norm, D.T, D.d, "ln1", "ln1");
  l.ln2 = norm_block(s.norm, D.T, D.d, "ln2", "ln2");

  AttentionBlock& a = l.attention;
  a.core = {D.b, D.S, D.hk, D.g, D.dh, D.dh, "qkv", "att.scores", "att.probs", "ctx", {}, false, "attn.sinks",
            "att.sink_probs"};
  a.rows = D.T;
  a.d = D.d;
  a.qkv_bias = s.biases.qkv;
  a.out_bias = s.biases.attn_out;
  a.rope = s.position == PositionKind::rope && !s.layer.nope;  // Llama 4's NoPE layers: no rotation
  a.rope_theta = s.rope_theta;
  a.in = "ln1.out", a.out = "proj.out", a.d_in = "d.ln1.out", a.d_out = "d.x1";
  a.w_qkv = "w.qkv", a.b_qkv = "b.qkv", a.w_proj = "w.proj", a.b_proj = "b.proj";
  // QK-norm: Qwen3's weighted RMSNorm on every layer; Llama 4's unweighted one on its RoPE layers only.
  a.qk_norm = s.qk_norm == QkNorm::l2 && !a.rope ? QkNorm::none : s.qk_norm;
  a.qkv_raw = "qkv.raw", a.qk_rstd = "qk_norm.rstd", a.w_q_norm = "q_norm.gamma", a.w_k_norm = "k_norm.gamma";
  // A window or chunk of the whole sequence or more masks nothing beyond causal.
  AttentionMask mask;
  mask.window = s.layer.window > 0 && s.layer.window < D.S ? s.layer.window : 0;
  mask.chunk = s.layer.chunk > 0 && s.layer.chunk < D.S ? s.layer.chunk : 0;
  a.core.mask = mask;
  a.core.sinks = s.attention_sinks;

  if (s.mla()) {
    l.use_mla = true;
    MlaBlock& q = l.mla;
    q.core = {D.b, D.S, D.h, 1, s.qk_nope + s.qk_rope, s.v_head, "qkv", "att.scores", "att.probs", "ctx", {}, false,
              "", ""};
    q.core.mask = mask;
    q.rows = D.T, q.d = D.d, q.q_lora = s.q_lora_rank, q.kv_lora = s.kv_lora_rank, q.nope = s.qk_nope, q.rope = s.qk_rope;
    q.in_bias = s.biases.qkv;
    q.out_bias = s.biases.attn_out;
    q.rope_on = s.position == PositionKind::rope && !s.layer.nope;
    q.rope_theta = s.rope_theta;
    // DeepseekV3RMSNorm on both latents, whatever the layer's norm.
    q.q_norm = norm_block(NormKind::rmsnorm, D.T, s.q_lora_rank, "q_a_norm", "q_a.ln");
    q.kv_norm = norm_block(NormKind::rmsnorm, D.T, s.kv_lora_rank, "kv_a_norm", "kv_a.ln");
    q.in = "ln1.out", q.out = "proj.out", q.d_in = "d.ln1.out", q.d_out = "d.x1";
    q.q_a = "q_a.out", q.q = "q", q.kv_a = "kv_a.out", q.k_rope = "k_rope", q.kv_b = "kv_b.out";
    q.w_q_a = "w.q_a", q.b_q_a = "b.q_a", q.w_q = s.q_lora_rank > 0 ? "w.q_b" : "w.q", q.w_kv_a = "w.kv_a";
    q.b_kv_a = "b.kv_a", q.w_k_rope = "w.k_rope", q.b_k_rope = "b.k_rope", q.w_kv_b = "w.kv_b", q.w_proj = "w.proj";
    q.b_proj = "b.proj";
  }

  MlpBlock& m = l.mlp;
  m.kind = s.ffn;
  m.bias = s.biases.ffn;
  m.rows = D.T, m.d = D.d, m.f = D.f;
  m.gate_op = "ffn.gate", m.up_op = "ffn.up", m.act_op = activation_op(s.ffn), m.down_op = "ffn.down";
  m.in = "ln2.out", m.out = "down.out", m.d_in = "d.ln2.out", m.d_out = "d.y";
  m.w_gate = "w.gate", m.w_up = "w.up", m.w_down = "w.down", m.b_gate = "b.gate", m.b_up = "b.up", m.b_down = "b.down";
  m.gate_out = "gate.out", m.up_out = "up.out", m.act_out = activation_out(s.ffn);

  if (s.moe()) {
    l.use_moe = true;
    MoeBlock& e = l.moe;
    e.spec = s.router;
    e.rows = D.T, e.d = D.d, e.router_bias = s.router_bias;
    e.in = "ln2.out", e.out = "down.out", e.d_in = "d.ln2.out", e.d_out = "d.y";
    e.w_router = "w.router", e.b_router = "b.router", e.logits = "router.logits", e.experts_of = "moe.experts";
    e.weights = "moe.weights", e.slots = "moe.slots", e.counts = "moe.counts";
    e.routed_out = "moe.out", e.routed_d_in = "d.moe.x";
    // The same MLP block, once for the routed experts (grouped) and once for the shared ones.
    auto ffn = [&](const std::string& tag, int64_t rows, int64_t f) {
      MlpBlock b;
      b.kind = s.ffn;
      b.rows = rows, b.d = D.d, b.f = f;
      b.gate_op = tag + ".gate", b.up_op = tag + ".up", b.down_op = tag + ".down";
      b.act_op = tag + "." + std::string(s.ffn == FfnKind::swiglu ? "swiglu" : to_string(s.ffn));
      b.w_gate = "w." + tag + ".gate", b.w_up = "w." + tag + ".up", b.w_down = "w." + tag + ".down";
      b.gate_out = tag + ".gate.out", b.up_out = tag + ".up.out", b.act_out = tag + ".act.out";
      return b;
    };
    e.experts = ffn("experts", D.T * s.top_k, s.d_ff_expert);
    e.experts.experts = s.n_experts, e.experts.counts = e.counts, e.experts.bias = s.expert_bias;
    e.experts.b_gate = "b.experts.gate", e.experts.b_up = "b.experts.up", e.experts.b_down = "b.experts.down";
    e.experts.in = "moe.in", e.experts.out = "moe.ye", e.experts.d_in = "d.moe.in", e.experts.d_out = "d.moe.ye";
    e.has_shared = s.n_shared > 0 && s.d_ff_shared > 0;
    if (e.has_shared) {
      e.shared = ffn("shared", D.T, s.n_shared * s.d_ff_shared);
      e.shared.in = e.in, e.shared.out = "shared.out", e.shared.d_in = "d.shared.in", e.shared.d_out = e.d_out;
      e.shared_gate = s.shared_gate;
      if (e.shared_gate) {
        e.w_gate = "w.shared_gate", e.gate_logit = "shared_gate.logit", e.gated = "shared.gated";  // not w.shared.gate: the SwiGLU gate
        e.shared.d_out = "d.shared.out";
      }
    }
  }

  HeadBlock& h = l.head;
  h.norm = norm_block(s.norm, D.T, D.d, "head", "head.ln");
  h.rows = D.T, h.d = D.d, h.vocab = D.V;
  h.in = "y", h.d_in = "d.y", h.w_vocab = "w.vocab", h.logits = "logits", h.targets = "targets", h.loss = "loss";
  return l;
}

void residual(Builder& B, const std::string& name, Phase phase, const std::string& a, const std::string& b,
              const std::string& out, int64_t rows, int64_t width) {
  const double elems = D(rows) * D(width);
  B.pointwise(name, phase, Group::layer, OpSplit::sequence, OpKind::elementwise, OpImpl::residual_add, {a, b}, {out}, 1, rows, width,
              fc::kResidualAdd * elems, 3 * elems);
}

// The layer's forward ops. `prefix` is "fwd" or "rec" (recompute inside backward).
void forward_ops(Builder& B, const Layer& l, const std::string& prefix, Phase phase) {
  const int64_t T = l.mlp.rows, d = l.mlp.d;
  norm_fwd(B, l.ln1, prefix + ".ln1", phase, Group::layer, "x");
  if (l.use_mla)
    mla_fwd(B, l.mla, prefix, phase);
  else
    attention_fwd(B, l.attention, prefix, phase);
  residual(B, prefix + ".residual1", phase, "x", l.attention.out, "x1", T, d);
  norm_fwd(B, l.ln2, prefix + ".ln2", phase, Group::layer, "x1");
  if (l.use_moe)
    moe_fwd(B, l.moe, prefix, phase);
  else
    mlp_fwd(B, l.mlp, prefix, phase);
  residual(B, prefix + ".residual2", phase, "x1", l.mlp.out, "y", T, d);
}

}  // namespace

LayerGraph build_layer_graph(const LayerShape& s, const GraphOptions& o) {
  FLOPSCOPE_CHECK(s.batch > 0 && s.seq > 0 && s.d_model > 0 && s.n_heads > 0 && s.d_head > 0 && s.d_ff > 0,
                  "layer shape has a zero dimension");
  FLOPSCOPE_CHECK(s.n_kv_heads >= 0 && s.n_heads % s.kv_heads() == 0,
                  fmt::format("{} key/value heads do not divide {} query heads", s.kv_heads(), s.n_heads));
  // RoPE rotates pairs (j, j + d_head/2) of each head (the "rotate half" of Hugging Face's Llama).
  // MLA rotates only the qk_rope part of each head.
  const int64_t rotated = s.mla() ? s.qk_rope : s.d_head;
  FLOPSCOPE_CHECK(s.position != PositionKind::rope || rotated % 2 == 0,
                  fmt::format("RoPE needs an even {}, not {}", s.mla() ? "qk_rope" : "d_head", rotated));
  FLOPSCOPE_CHECK(!s.mla() || (s.n_heads == s.kv_heads() && s.d_head == s.qk_nope + s.qk_rope && s.qk_rope > 0 &&
                               s.v_head > 0 && s.q_lora_rank >= 0),
                  "multi-head latent attention needs n_kv_heads = n_heads, d_head = qk_nope + qk_rope, qk_rope > 0 "
                  "and v_head > 0");
  FLOPSCOPE_CHECK(s.position != PositionKind::rope || s.rope_theta > 0, "RoPE needs theta > 0");
  FLOPSCOPE_CHECK(!s.moe() || (s.top_k >= 1 && s.top_k <= s.n_experts && s.d_ff_expert > 0 && s.n_shared >= 0 &&
                               (s.router.n_group == 0 || (s.n_experts % s.router.n_group == 0 &&
                                                          s.router.topk_group >= 1 && s.router.topk_group <= s.router.n_group &&
                                                          s.top_k <= s.router.topk_group * (s.n_experts / s.router.n_group)))),
                  fmt::format("a mixture of experts' layer needs 1 <= top-k ({}) <= experts ({}), an expert width > 0 "
                              "({}) and expert groups that divide the experts and hold top-k experts (n_group {}, "
                              "topk_group {})",
                              s.top_k, s.n_experts, s.d_ff_expert, s.router.n_group, s.router.topk_group));
  FLOPSCOPE_CHECK(!s.mla() || (s.qk_norm == QkNorm::none && !s.attention_sinks),
                  "QK-norm and attention sinks are not modelled with multi-head latent attention");
  FLOPSCOPE_CHECK(s.layer.window >= 0 && s.layer.chunk >= 0, "a window or chunk must be 0 (none) or a token count");
  FLOPSCOPE_CHECK(o.input_sets >= 1, "input sets must be at least 1");
  FLOPSCOPE_CHECK(o.causal_block >= 0, "the causal block must be 0 (the full square) or a row count");
  Builder B(s, o);
  const Dims D(s);
  const int64_t T = D.T, d = D.d;
  const Layer l = dense_layer(s);
  using R = TensorRole;

  // ---- tensors ------------------------------------------------------------------------
  B.tensor("x", R::input, {T, d});  // layer input, (s, b, d) flattened to (T, d)
  TensorList weights;
  norm_weights(l.ln1, weights);
  norm_weights(l.ln2, weights);
  if (l.use_mla)
    mla_weights(l.mla, weights);
  else
    attention_weights(l.attention, weights);
  if (l.use_moe)
    moe_weights(l.moe, weights);
  else
    mlp_weights(l.mlp, weights);
  for (const auto& w : weights) B.weight(w);
  for (const auto& w : weights) B.weight_grad(w);
  norm_forward_tensors(B, l.ln1);
  if (l.use_mla)
    mla_forward_tensors(B, l.mla);
  else
    attention_forward_tensors(B, l.attention);
  B.tensor("x1", R::activation, {T, d});
  norm_forward_tensors(B, l.ln2);
  if (l.use_moe)
    moe_forward_tensors(B, l.moe);
  else
    mlp_forward_tensors(B, l.mlp);
  B.tensor("y", R::activation, {T, d});
  // Gradients. Without the head, d.y is the incoming gradient (an input filled at random).
  B.tensor("d.y", o.include_head ? R::gradient : R::input, {T, d});
  if (l.use_moe)
    moe_backward_tensors(B, l.moe);
  else
    mlp_backward_tensors(B, l.mlp);
  B.tensor("d.x1.ln", R::gradient, {T, d});  // through ln2 only
  B.tensor("d.x1", R::gradient, {T, d});     // ln2 path + residual
  if (l.use_mla)
    mla_backward_tensors(B, l.mla);
  else
    attention_backward_tensors(B, l.attention);
  B.tensor("d.x.ln", R::gradient, {T, d});  // through ln1 only
  B.tensor("d.x", R::gradient, {T, d});     // ln1 path + residual: the layer's input gradient
  if (o.include_head) head_tensors(B, l.head);

  // ---- forward, then the head's forward and backward -------------------------------------
  forward_ops(B, l, "fwd", Phase::forward);
  if (o.include_head) {
    head_fwd(B, l.head);
    head_bwd(B, l.head);
  }

  // ---- backward -------------------------------------------------------------------------
  if (o.recompute) forward_ops(B, l, "rec", Phase::recompute);
  const Phase BW = Phase::backward;
  if (l.use_moe)
    moe_bwd(B, l.moe);
  else
    mlp_bwd(B, l.mlp);
  norm_bwd(B, l.ln2, "bwd.ln2", Group::layer, l.mlp.d_in, "x1", "d.x1.ln");
  residual(B, "bwd.residual2", BW, "d.y", "d.x1.ln", "d.x1", T, d);
  if (l.use_mla)
    mla_bwd(B, l.mla);
  else
    attention_bwd(B, l.attention);
  norm_bwd(B, l.ln1, "bwd.ln1", Group::layer, l.attention.d_in, "x", "d.x.ln");
  residual(B, "bwd.residual1", BW, "d.x1", "d.x.ln", "d.x", T, d);

  LayerGraph g = B.take();
  if (o.precision == Precision::fp8) lower_linear_gemms_to_fp8(g);
  check_unique_names(g);
  return g;
}

}  // namespace flopscope
