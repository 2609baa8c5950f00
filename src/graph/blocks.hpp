// The blocks a layer graph is built from, one file each: norm.cpp (LayerNorm | RMSNorm),
// attention.cpp (the QKV and output projections, RoPE, and the attention core every variant
// shares), mla.cpp (multi-head latent attention), mlp.cpp (GeLU | ReLU | SwiGLU), head.cpp (final norm, logits, cross-entropy),
// fp8.cpp (the FP8 lowering of the linear GEMMs). layer.cpp assembles a decoder layer from them.
//
// Each block is a value naming its tensors and giving its sizes, so one block serves every
// place it appears: the MLP block the dense FFN (and, next, shared experts and each expert),
// the attention core multi-head, grouped-query and (next) latent attention. A block declares
// its weights (the layer declares them, then their gradients "d." + name), the tensors it
// writes forward, and the gradients it writes backward; the gradient of a tensor t is "d." + t
// except a block's output gradient, which its caller names (d_out).
#pragma once

#include <cstdint>
#include <string>

#include "graph/builder.hpp"

namespace flopscope::graph_detail {

// ---- norm (norm.cpp) ---------------------------------------------------------------------------
// LayerNorm (gamma, beta; saves mean and rstd) or RMSNorm (gamma; saves rstd) over rows x width.
// The op keeps its slot's name (fwd.ln1, fwd.ln2, fwd.head.ln) whichever kind it is.
struct NormBlock {
  NormKind kind = NormKind::layernorm;
  int64_t rows = 0, width = 0;
  std::string gamma, beta, out, mean, rstd;  // beta and mean empty for RMSNorm
};
// The norm whose weights are `slot`.gamma (.beta) and whose output and statistics are
// `stats`.out, `stats`.mean, `stats`.rstd.
NormBlock norm_block(NormKind kind, int64_t rows, int64_t width, const std::string& slot, const std::string& stats);
void norm_weights(const NormBlock& n, TensorList& weights);
void norm_forward_tensors(Builder& B, const NormBlock& n);  // out, (mean), rstd
void norm_fwd(Builder& B, const NormBlock& n, const std::string& name, Phase phase, Group group, const std::string& x);
// dx (through the norm only) and the weight gradients d.<gamma> (and d.<beta>).
void norm_bwd(Builder& B, const NormBlock& n, const std::string& name, Group group, const std::string& dy,
              const std::string& x, const std::string& dx);

// ---- attention core (attention.cpp) ------------------------------------------------------------
// S = scale Q K^T per query head, P = causal softmax(S), O = P V, and their gradients, on one
// tensor `qkv` whose token rows hold kv_groups groups of (group query heads of d_qk, one K head
// of d_qk, one V head of d_v), and a context `ctx` of (s, b, heads, d_v). For i = bi * h_kv + j
// (batch bi, group j) query head r of the group sits at qkv + i w_g + r d_qk (w_g the group's
// width), K at + group d_qk, V at + (group + 1) d_qk, rows b w apart: one stride w_g over i.
// The scores of query head j g + r are batch member i g + r of `scores`: stride g s^2 over i
// and offset r s^2 per repeat. So each product is one strided batch over i, repeated g times
// (GemmSpec::repeat), and K and V are never copied. MHA: group 1.
// mask: a sliding window or chunks beyond causal (the products' row blocks skip what it masks,
// the softmax masks it); sinks: a learned logit per head (`sinks`, (heads)) joined to each
// softmax row, its probability saved in `sink_probs` (b h, s).
struct AttentionCore {
  int64_t batch = 1, seq = 0, kv_groups = 0, group = 1, d_qk = 0, d_v = 0;
  std::string qkv, scores, probs, ctx;  // gradients "d." + each
  AttentionMask mask;
  bool sinks = false;
  std::string sink_logits, sink_probs;  // gradient "d." + sink_logits
  int64_t heads() const { return kv_groups * group; }
  int64_t group_width() const { return group * d_qk + d_qk + d_v; }
  int64_t qkv_width() const { return kv_groups * group_width(); }  // one token's row of qkv
  int64_t ctx_width() const { return heads() * d_v; }
};
void core_forward_tensors(Builder& B, const AttentionCore& c);   // scores, probs, ctx
void core_backward_tensors(Builder& B, const AttentionCore& c);  // d.ctx, d.probs, d.scores
void core_weights(const AttentionCore& c, TensorList& weights);  // the sinks' logits, when sinks
void core_fwd(Builder& B, const AttentionCore& c, const std::string& prefix, Phase phase);
// From d.ctx to the Q, K and V slots of d.qkv (every slot written).
void core_bwd(Builder& B, const AttentionCore& c);

// ---- attention (attention.cpp) -----------------------------------------------------------------
// in (rows, d) -> QKV projection (+ bias) -> QK-norm -> RoPE on Q and K -> core -> output
// projection (+ bias) -> out (rows, d). The gradient of `out` is d_out, of `in` d_in. With
// QK-norm the projection writes qkv_raw and the norm (qk_norm_fwd) writes the core's qkv and
// the per-head rstd qk_rstd; rmsnorm: weighted by w_q_norm, w_k_norm (d_head each); l2: unweighted.
struct AttentionBlock {
  AttentionCore core;
  int64_t rows = 0, d = 0;
  bool qkv_bias = false, out_bias = false, rope = false;
  double rope_theta = 10000.0;
  QkNorm qk_norm = QkNorm::none;
  std::string in, out, d_in, d_out, w_qkv, b_qkv, w_proj, b_proj;
  std::string qkv_raw, qk_rstd, w_q_norm, w_k_norm;
  const std::string& projected() const { return qk_norm == QkNorm::none ? core.qkv : qkv_raw; }  // the QKV GEMM's output
};
void attention_weights(const AttentionBlock& a, TensorList& weights);
void attention_forward_tensors(Builder& B, const AttentionBlock& a);   // qkv, the core's, out
void attention_backward_tensors(Builder& B, const AttentionBlock& a);  // the core's, d.qkv, d_in
void attention_fwd(Builder& B, const AttentionBlock& a, const std::string& prefix, Phase phase);
void attention_bwd(Builder& B, const AttentionBlock& a);

// ---- multi-head latent attention (mla.cpp) -----------------------------------------------------
// in (rows, d) -> Q (directly, or down to q_lora, RMSNorm, up), the KV latent (down to kv_lora,
// RMSNorm, up to h (nope + v)) and the shared k_rope (d -> rope), RoPE on the rope parts, the
// parts assembled into the core's qkv (mla_qkv_fwd), the core (group 1, d_qk = nope + rope,
// d_v = v), output projection -> out (rows, d). The gradient of `out` is d_out, of `in` d_in.
struct MlaBlock {
  AttentionCore core;  // kv_groups = heads, group 1
  int64_t rows = 0, d = 0, q_lora = 0, kv_lora = 0, nope = 0, rope = 0;
  bool in_bias = false, out_bias = false, rope_on = true;  // in_bias: q_a, kv_a and k_rope
  double rope_theta = 10000.0;
  NormBlock q_norm, kv_norm;  // RMSNorm (rows, q_lora) and (rows, kv_lora); q_norm unused without q_lora
  std::string in, out, d_in, d_out;
  std::string q_a, q, kv_a, k_rope, kv_b;  // activations: (rows, q_lora), (rows, h (nope + rope)), ...
  std::string w_q_a, b_q_a, w_q, w_kv_a, b_kv_a, w_k_rope, b_k_rope, w_kv_b, w_proj, b_proj;  // w_q: q_b with q_lora
};
void mla_weights(const MlaBlock& a, TensorList& weights);
void mla_forward_tensors(Builder& B, const MlaBlock& a);   // the parts, qkv, the core's, out
void mla_backward_tensors(Builder& B, const MlaBlock& a);  // the core's, d.qkv, the parts' gradients, d_in
void mla_fwd(Builder& B, const MlaBlock& a, const std::string& prefix, Phase phase);
void mla_bwd(Builder& B, const MlaBlock& a);

// ---- MLP (mlp.cpp) -----------------------------------------------------------------------------
// in (rows, d) -> up (and gate with SwiGLU) (+ biases) -> activation -> down (+ bias) -> out.
// Op names are the prefix ("fwd", "rec", "bwd") and these; the gradient of `out` is d_out, of
// `in` d_in.
struct MlpBlock {
  FfnKind kind = FfnKind::gelu;
  bool bias = false;
  int64_t rows = 0, d = 0, f = 0;
  std::string gate_op, up_op, act_op, down_op;  // "ffn.gate", "ffn.up", "gelu", "ffn.down"
  std::string in, out, d_in, d_out;
  std::string w_gate, w_up, w_down, b_gate, b_up, b_down;
  std::string gate_out, up_out, act_out;  // (rows, f)
  // Routed experts: `experts` problems over the dispatched rows (rows = k T), each GEMM grouped
  // by `counts` (GemmSpec::grouped); 0: a plain MLP.
  int64_t experts = 0;
  std::string counts;
};
void mlp_weights(const MlpBlock& m, TensorList& weights);
void mlp_forward_tensors(Builder& B, const MlpBlock& m);   // gate_out, up_out, act_out, out
void mlp_backward_tensors(Builder& B, const MlpBlock& m);  // d.act_out, d.gate_out, d.up_out, d_in
void mlp_fwd(Builder& B, const MlpBlock& m, const std::string& prefix, Phase phase);
void mlp_bwd(Builder& B, const MlpBlock& m);

// ---- mixture of experts (moe.cpp) --------------------------------------------------------------
// in (T, d) -> router logits (T, E) = in W_router (+ bias) -> route (scores, top-k, weights; the
// slots of each token's k copies in the dispatched rows, experts in order; tokens per expert)
// -> dispatch (k T, d) -> the routed experts (an MlpBlock of `experts` grouped GEMMs) -> combine
// (T, d), the weighted sum of each token's k rows; + the shared experts (a plain MlpBlock on in)
// -> out. Backward: combine (rows' and weights' gradients), the experts, dispatch (each token's
// k rows summed), route (through the weights and the aux loss to the logits), the router's
// dgrad (added) and wgrad, then the shared experts' input gradient added. shared_gate (Qwen2-MoE):
// the shared experts' output x sigmoid(in W_g), W_g (d, 1), before it is added; backward the
// gate's op, then its dgrad added into the shared experts' input gradient. Analytic FLOPs assume
// what the grouped GEMMs compute with no token dropped: k T rows in all, however they spread.
struct MoeBlock {
  MoeSpec spec;
  int64_t rows = 0, d = 0;  // T tokens
  bool router_bias = false;
  MlpBlock experts;  // rows k T, experts E, counts
  MlpBlock shared;   // rows T; used when has_shared
  bool has_shared = false;
  bool shared_gate = false;
  std::string w_gate, gate_logit, gated;  // shared_gate: W_g (d, 1), in W_g (T, 1), the gated output (T, d)
  std::string in, out, d_in, d_out;
  std::string w_router, b_router, logits, experts_of, weights, slots, counts;
  std::string routed_out, routed_d_in;  // combine's output and dispatch's gradient (out and d_in without shared experts)
};
void moe_weights(const MoeBlock& m, TensorList& weights);
void moe_forward_tensors(Builder& B, const MoeBlock& m);
void moe_backward_tensors(Builder& B, const MoeBlock& m);
void moe_fwd(Builder& B, const MoeBlock& m, const std::string& prefix, Phase phase);
void moe_bwd(Builder& B, const MoeBlock& m);

// ---- LM head (head.cpp) ------------------------------------------------------------------------
// in (rows, d) -> final norm -> logits = (rows, d) x w_vocab (d, V) -> softmax cross-entropy
// against `targets`; backward to d_in. Every op in Group::head.
struct HeadBlock {
  NormBlock norm;
  int64_t rows = 0, d = 0, vocab = 0;
  std::string in, d_in, w_vocab, logits, targets, loss;
};
void head_tensors(Builder& B, const HeadBlock& h);  // its weights, their gradients, the rest
void head_fwd(Builder& B, const HeadBlock& h);
void head_bwd(Builder& B, const HeadBlock& h);

// ---- FP8 lowering (fp8.cpp) --------------------------------------------------------------------
// --precision fp8: every linear GEMM of the layer group gets FP8 E4M3 operands, both K-major,
// made by cast_fp8 ops just before it; every other op runs in bf16.
void lower_linear_gemms_to_fp8(LayerGraph& g);

}  // namespace flopscope::graph_detail
