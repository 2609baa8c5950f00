// The attention block: QKV projection (rows, d) x (d, w) -> qkv (rows, w), QK-norm and RoPE on
// Q and K, the attention core, output projection (rows, h d_v) x (h d_v, d). The core (blocks.hpp,
// AttentionCore) is shared by every attention variant: its per-head products are strided
// batched GEMMs over one interleaved qkv tensor, K and V never copied.
//   forward:  S = Q K^T / sqrt(d_qk)    (b h, s, s)   causal: only j <= i used
//             P = softmax(S)            (b h, s, s)
//             O = P V                   (b h, s, d_v)
//   backward: dP = dO V^T, dV = P^T dO, dS = softmax'(P, dP), dQ = dS K / sqrt(d_qk),
//             dK = dS^T Q / sqrt(d_qk); a group's query heads sum into its one dK and dV.
// A window or chunks (AttentionCore::mask) keep fewer pairs than j <= i: the softmax masks the
// rest, and in row blocks (GraphOptions::causal_block) the products skip it too; executed FLOPs
// are what runs (the blocks, or the whole square), model FLOPs the mask's area
// (AttentionMask::model_area). Sinks: row i of head h is softmax over (S_i, sink_h), the sink's
// probability dropped (O = P V uses the keys' only); dsink_h = -sum_i p_sink,i (sum_j P_ij dP_ij).
#include <cmath>

#include "graph/blocks.hpp"

namespace flopscope::graph_detail {

namespace {

// The strided-batch part of an attention operand: (tensor, offset, ld, stride over i, stride over r).
struct Operand {
  std::string t;
  int64_t offset, ld, stride, repeat;
};

// Q, K, V of qkv-shaped tensors, scores-shaped (b h, s, s) tensors and ctx-shaped (s, b, h, d_v) ones.
Operand q_of(const AttentionCore& c, const std::string& t) {
  return {t, 0, c.batch * c.qkv_width(), c.group_width(), c.d_qk};
}
Operand k_of(const AttentionCore& c, const std::string& t) {
  return {t, c.group * c.d_qk, c.batch * c.qkv_width(), c.group_width(), 0};
}
Operand v_of(const AttentionCore& c, const std::string& t) {
  return {t, (c.group + 1) * c.d_qk, c.batch * c.qkv_width(), c.group_width(), 0};
}
Operand square_of(const AttentionCore& c, const std::string& t) {
  return {t, 0, c.seq, c.group * c.seq * c.seq, c.seq * c.seq};
}
Operand ctx_of(const AttentionCore& c, const std::string& t) {
  return {t, 0, c.batch * c.ctx_width(), c.group * c.d_v, c.d_v};
}

GemmSpec attention_gemm(const AttentionCore& c, int64_t m, int64_t n, int64_t k, bool ta, bool tb, const Operand& a,
                        const Operand& b, const Operand& out, double alpha, bool sum_over_group, Triangle tri) {
  GemmSpec gs;
  gs.triangle = tri;
  gs.m = m, gs.n = n, gs.k = k, gs.batch = c.batch * c.kv_groups;
  gs.trans_a = ta, gs.trans_b = tb;
  gs.a = a.t, gs.a_offset = a.offset, gs.lda = a.ld, gs.stride_a = a.stride;
  gs.b = b.t, gs.b_offset = b.offset, gs.ldb = b.ld, gs.stride_b = b.stride;
  gs.c = out.t, gs.c_offset = out.offset, gs.ldc = out.ld, gs.stride_c = out.stride;
  gs.alpha = alpha;
  if (tri != Triangle::none) gs.mask = c.mask;
  if (c.group > 1) {
    gs.repeat = c.group;
    gs.repeat_a = a.repeat, gs.repeat_b = b.repeat, gs.repeat_c = out.repeat;
    gs.repeat_beta = sum_over_group ? 1.0 : gs.beta;  // dK, dV: the group's query heads sum into one C
  }
  return gs;
}

// Elements of the causal triangle (j <= i) and of the whole square, over b h.
double causal_elements(const AttentionCore& c) {
  return D(c.batch * c.heads()) * D(c.seq) * D(c.seq + 1) / 2;
}
double square_elements(const AttentionCore& c) { return D(c.batch * c.heads()) * D(c.seq) * D(c.seq); }
// The pairs the softmax keeps: the causal triangle, or less under a window or chunks.
double attended_elements(const AttentionCore& c) {
  return c.mask.any() ? D(c.batch * c.heads()) * c.mask.attended(c.seq) : causal_elements(c);
}

// QK-norm over the Q and K heads of qkv-shaped tensors (QkNormSpec), forward or backward.
QkNormSpec qk_norm_spec(const AttentionBlock& a) {
  return {a.core.kv_groups, a.core.group, a.core.d_qk, a.qk_norm == QkNorm::rmsnorm};
}

// RoPE on the Q and K heads of qkv (in place): rows of width w, positions si = t / b.
void rope(Builder& B, const AttentionBlock& a, const std::string& name, Phase phase, OpImpl impl,
          const std::string& t) {
  const AttentionCore& c = a.core;
  const double rotated = D(a.rows) * D(c.heads() * c.d_qk + c.kv_groups * c.d_qk);
  B.pointwise(name, phase, Group::layer, OpSplit::features, OpKind::elementwise, impl, {t}, {t}, 1, a.rows, c.qkv_width(),
              fc::kRope * rotated, 2 * rotated);
  Op& op = B.last();
  op.rope = {c.batch, c.kv_groups, c.group, c.d_qk, a.rope_theta};
}

}  // namespace

void core_weights(const AttentionCore& c, TensorList& weights) {
  if (c.sinks) weights.push_back({c.sink_logits, {c.heads()}, WeightSplit::column});  // by head
}

void core_forward_tensors(Builder& B, const AttentionCore& c) {
  const int64_t bh = c.batch * c.heads(), T = c.batch * c.seq;
  B.tensor(c.scores, TensorRole::activation, {bh, c.seq, c.seq});  // scaled Q K^T
  B.tensor(c.probs, TensorRole::activation, {bh, c.seq, c.seq});   // causal softmax
  if (c.sinks) B.tensor(c.sink_probs, TensorRole::statistic, {bh, c.seq});  // each row's sink probability
  B.tensor(c.ctx, TensorRole::activation, {T, c.ctx_width()});     // (s, b, h, d_v)
}

void core_backward_tensors(Builder& B, const AttentionCore& c) {
  const int64_t bh = c.batch * c.heads(), T = c.batch * c.seq;
  B.tensor("d." + c.ctx, TensorRole::gradient, {T, c.ctx_width()});
  B.tensor("d." + c.probs, TensorRole::gradient, {bh, c.seq, c.seq});
  B.tensor("d." + c.scores, TensorRole::gradient, {bh, c.seq, c.seq});
}

void core_fwd(Builder& B, const AttentionCore& c, const std::string& prefix, Phase phase) {
  const Group L = Group::layer;
  const int64_t S = c.seq, bh = c.batch * c.heads();
  const double scale = 1.0 / std::sqrt(D(c.d_qk));
  const size_t first = B.op_count();
  B.add_gemm(prefix + ".attn.scores", phase, L, OpKind::batched_gemm,
             attention_gemm(c, S, S, c.d_qk, false, true, q_of(c, c.qkv), k_of(c, c.qkv), square_of(c, c.scores), scale,
                            false, Triangle::c_lower),
             true);
  if (c.mask.any() || c.sinks) {
    std::vector<std::string> in = {c.scores}, out = {c.probs};
    if (c.sinks) in.push_back(c.sink_logits), out.push_back(c.sink_probs);
    const double sink_rows = c.sinks ? D(bh) * D(S) : 0;
    B.pointwise(prefix + ".attn.softmax", phase, L, OpSplit::features, OpKind::softmax, OpImpl::softmax_causal_fwd, in, out, bh, S, S,
                fc::kSoftmaxFwd * attended_elements(c) + fc::kSinkFwd * sink_rows,
                2 * square_elements(c) + sink_rows + (c.sinks ? D(c.heads()) : 0));
    B.last().mask = c.mask;
    B.last().sink_heads = c.sinks ? c.heads() : 0;
  } else {
    B.pointwise(prefix + ".attn.softmax", phase, L, OpSplit::features, OpKind::softmax, OpImpl::softmax_causal_fwd, {c.scores}, {c.probs},
                bh, S, S, fc::kSoftmaxFwd * causal_elements(c), 2 * square_elements(c));
  }
  B.add_gemm(prefix + ".attn.context", phase, L, OpKind::batched_gemm,
             attention_gemm(c, S, c.d_v, S, false, false, square_of(c, c.probs), v_of(c, c.qkv), ctx_of(c, c.ctx), 1.0,
                            false, Triangle::a_lower),
             true);
  B.mark_attention_core(first);
}

void core_bwd(Builder& B, const AttentionCore& c) {
  const Group L = Group::layer;
  const Phase BW = Phase::backward;
  const int64_t S = c.seq, bh = c.batch * c.heads();
  const std::string dqkv = "d." + c.qkv, dctx = "d." + c.ctx, dprobs = "d." + c.probs, dscores = "d." + c.scores;
  // dP = dO V^T; dV = sum over the group of P^T dO, into d.qkv's V slots.
  const size_t first = B.op_count();
  B.add_gemm("bwd.attn.context.dprobs", BW, L, OpKind::batched_gemm,
             attention_gemm(c, S, S, c.d_v, false, true, ctx_of(c, dctx), v_of(c, c.qkv), square_of(c, dprobs), 1.0,
                            false, Triangle::c_lower),
             true);
  B.add_gemm("bwd.attn.context.dv", BW, L, OpKind::batched_gemm,
             attention_gemm(c, S, c.d_v, S, true, false, square_of(c, c.probs), ctx_of(c, dctx), v_of(c, dqkv), 1.0,
                            true, Triangle::a_upper),
             true);
  if (c.mask.any() || c.sinks) {
    std::vector<std::string> in = {c.probs, dprobs}, out = {dscores};
    if (c.sinks) in.push_back(c.sink_probs), out.push_back("d." + c.sink_logits);
    const double sink_rows = c.sinks ? D(bh) * D(S) : 0;
    B.pointwise("bwd.attn.softmax", BW, L, OpSplit::features, OpKind::softmax, OpImpl::softmax_causal_bwd, in, out, bh, S, S,
                fc::kSoftmaxBwd * attended_elements(c) + fc::kSinkBwd * sink_rows,
                3 * square_elements(c) + sink_rows + (c.sinks ? D(c.heads()) : 0));
    B.last().mask = c.mask;
    B.last().sink_heads = c.sinks ? c.heads() : 0;
  } else {
    B.pointwise("bwd.attn.softmax", BW, L, OpSplit::features, OpKind::softmax, OpImpl::softmax_causal_bwd, {c.probs, dprobs}, {dscores},
                bh, S, S, fc::kSoftmaxBwd * causal_elements(c), 3 * square_elements(c));
  }
  // dQ = alpha dS K per query head; dK = alpha sum over the group of dS^T Q.
  const double alpha = 1.0 / std::sqrt(D(c.d_qk));
  B.add_gemm("bwd.attn.scores.dq", BW, L, OpKind::batched_gemm,
             attention_gemm(c, S, c.d_qk, S, false, false, square_of(c, dscores), k_of(c, c.qkv), q_of(c, dqkv), alpha,
                            false, Triangle::a_lower),
             true);
  B.add_gemm("bwd.attn.scores.dk", BW, L, OpKind::batched_gemm,
             attention_gemm(c, S, c.d_qk, S, true, false, square_of(c, dscores), q_of(c, c.qkv), k_of(c, dqkv), alpha,
                            true, Triangle::a_upper),
             true);
  B.mark_attention_core(first);
}

void attention_weights(const AttentionBlock& a, TensorList& weights) {
  const int64_t w = a.core.qkv_width();
  weights.push_back({a.w_qkv, {a.d, w}, WeightSplit::column});  // (d, w), columns interleaved per kv group (h_kv, g + 2, dh)
  if (a.qkv_bias) weights.push_back({a.b_qkv, {w}, WeightSplit::column});
  weights.push_back({a.w_proj, {a.core.ctx_width(), a.d}, WeightSplit::row});
  if (a.out_bias) weights.push_back({a.b_proj, {a.d}, WeightSplit::replicated});
  if (a.qk_norm == QkNorm::rmsnorm) {  // Qwen3's q_norm, k_norm: RMSNorm(d_head) each
    weights.push_back({a.w_q_norm, {a.core.d_qk}, WeightSplit::replicated});  // one d_head vector every head shares
    weights.push_back({a.w_k_norm, {a.core.d_qk}, WeightSplit::replicated});
  }
  core_weights(a.core, weights);
}

void attention_forward_tensors(Builder& B, const AttentionBlock& a) {
  if (a.qk_norm != QkNorm::none) B.tensor(a.qkv_raw, TensorRole::activation, {a.rows, a.core.qkv_width()});  // before QK-norm
  B.tensor(a.core.qkv, TensorRole::activation, {a.rows, a.core.qkv_width()});  // (s, b, h_kv, g + 2, dh)
  if (a.qk_norm != QkNorm::none) B.tensor(a.qk_rstd, TensorRole::statistic, {a.rows, qk_norm_spec(a).normed_heads()});
  core_forward_tensors(B, a.core);
  B.tensor(a.out, TensorRole::activation, {a.rows, a.d});
}

void attention_backward_tensors(Builder& B, const AttentionBlock& a) {
  core_backward_tensors(B, a.core);
  B.tensor("d." + a.core.qkv, TensorRole::gradient, {a.rows, a.core.qkv_width()});
  if (a.qk_norm != QkNorm::none) B.tensor("d." + a.qkv_raw, TensorRole::gradient, {a.rows, a.core.qkv_width()});
  B.tensor(a.d_in, TensorRole::gradient, {a.rows, a.d});
}

void attention_fwd(Builder& B, const AttentionBlock& a, const std::string& prefix, Phase phase) {
  const AttentionCore& c = a.core;
  const Group L = Group::layer;
  const int64_t w = c.qkv_width();
  const double Tw = D(a.rows) * D(w), Td = D(a.rows) * D(a.d);
  const std::string& qkv = a.projected();
  B.linear(prefix + ".qkv", phase, L, a.rows, w, a.d, false, false, a.in, a.w_qkv, qkv);
  if (a.qkv_bias)
    B.pointwise(prefix + ".qkv.bias", phase, L, OpSplit::features, OpKind::elementwise, OpImpl::bias_add, {qkv, a.b_qkv}, {qkv}, 1,
                a.rows, w, fc::kBiasAdd * Tw, 2 * Tw + D(w));
  if (a.qk_norm != QkNorm::none) {
    // Before RoPE (Qwen3). Llama 4 applies its L2Norm after RoPE; an unweighted scale per head
    // commutes with the rotation within the head, so the result is the same.
    const QkNormSpec q = qk_norm_spec(a);
    const double normed = D(a.rows) * D(q.normed_heads() * q.d_head);
    std::vector<std::string> in = {qkv};
    if (q.weighted) in.push_back(a.w_q_norm), in.push_back(a.w_k_norm);
    B.pointwise(prefix + ".attn.qk_norm", phase, L, OpSplit::features, OpKind::norm, OpImpl::qk_norm_fwd, in, {c.qkv, a.qk_rstd}, 1,
                a.rows, w, (q.weighted ? fc::kQkNormFwd : fc::kQkL2NormFwd) * normed,
                2 * Tw + D(a.rows * q.normed_heads()) + (q.weighted ? 2 * D(q.d_head) : 0));
    B.last().qk_norm = q;
  }
  if (a.rope) rope(B, a, prefix + ".attn.rope", phase, OpImpl::rope_fwd, c.qkv);
  core_fwd(B, c, prefix, phase);
  B.linear(prefix + ".proj", phase, L, a.rows, a.d, c.ctx_width(), false, false, c.ctx, a.w_proj, a.out);
  if (a.out_bias)
    B.pointwise(prefix + ".proj.bias", phase, L, OpSplit::sequence, OpKind::elementwise, OpImpl::bias_add, {a.out, a.b_proj}, {a.out}, 1,
                a.rows, a.d, fc::kBiasAdd * Td, 2 * Td + D(a.d));
}

void attention_bwd(Builder& B, const AttentionBlock& a) {
  const AttentionCore& c = a.core;
  const Group L = Group::layer;
  const Phase BW = Phase::backward;
  const int64_t w = c.qkv_width();
  const double Td = D(a.rows) * D(a.d), Tw = D(a.rows) * D(w);
  const std::string dqkv = "d." + c.qkv, dctx = "d." + c.ctx;
  if (a.out_bias)
    B.pointwise("bwd.proj.bias", BW, L, OpSplit::sequence, OpKind::reduction, OpImpl::bias_grad, {a.d_out}, {"d." + a.b_proj}, 1, a.rows,
                a.d, fc::kBiasGrad * Td, Td + D(a.d));
  B.linear("bwd.proj.dgrad", BW, L, a.rows, c.ctx_width(), a.d, false, true, a.d_out, a.w_proj, dctx);
  B.linear("bwd.proj.wgrad", BW, L, c.ctx_width(), a.d, a.rows, true, false, c.ctx, a.d_out, "d." + a.w_proj);
  core_bwd(B, c);
  // RoPE is a rotation: its backward rotates the gradients of Q and K back (the transpose).
  if (a.rope) rope(B, a, "bwd.attn.rope", BW, OpImpl::rope_bwd, dqkv);
  const std::string dproj = "d." + a.projected();
  if (a.qk_norm != QkNorm::none) {
    const QkNormSpec q = qk_norm_spec(a);
    const double normed = D(a.rows) * D(q.normed_heads() * q.d_head);
    std::vector<std::string> in = {dqkv, a.qkv_raw}, out = {dproj};
    if (q.weighted) in.push_back(a.w_q_norm), in.push_back(a.w_k_norm);
    in.push_back(a.qk_rstd);
    if (q.weighted) out.push_back("d." + a.w_q_norm), out.push_back("d." + a.w_k_norm);
    B.pointwise("bwd.attn.qk_norm", BW, L, OpSplit::features, OpKind::norm, OpImpl::qk_norm_bwd, in, out, 1, a.rows, w,
                (q.weighted ? fc::kQkNormBwd : fc::kQkL2NormBwd) * normed,
                3 * Tw + D(a.rows * q.normed_heads()) + (q.weighted ? 4 * D(q.d_head) : 0));
    B.last().qk_norm = q;
  }
  if (a.qkv_bias)
    B.pointwise("bwd.qkv.bias", BW, L, OpSplit::features, OpKind::reduction, OpImpl::bias_grad, {dproj}, {"d." + a.b_qkv}, 1, a.rows, w,
                fc::kBiasGrad * Tw, Tw + D(w));
  B.linear("bwd.qkv.dgrad", BW, L, a.rows, a.d, w, false, true, dproj, a.w_qkv, a.d_in);
  B.linear("bwd.qkv.wgrad", BW, L, a.d, w, a.rows, true, false, a.in, dproj, "d." + a.w_qkv);
}

}  // namespace flopscope::graph_detail
