// The attention block: QKV projection (rows, d) x (d, w) -> qkv (rows, w), RoPE on Q and K,
// the attention core, output projection (rows, h d_v) x (h d_v, d). The core (blocks.hpp,
// AttentionCore) is shared by every attention variant: its per-head products are strided
// batched GEMMs over one interleaved qkv tensor, K and V never copied.
//   forward:  S = Q K^T / sqrt(d_qk)    (b h, s, s)   causal: only j <= i used
//             P = softmax(S)            (b h, s, s)
//             O = P V                   (b h, s, d_v)
//   backward: dP = dO V^T, dV = P^T dO, dS = softmax'(P, dP), dQ = dS K / sqrt(d_qk),
//             dK = dS^T Q / sqrt(d_qk); a group's query heads sum into its one dK and dV.
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

// RoPE on the Q and K heads of qkv (in place): rows of width w, positions si = t / b.
void rope(Builder& B, const AttentionBlock& a, const std::string& name, Phase phase, OpImpl impl,
          const std::string& t) {
  const AttentionCore& c = a.core;
  const double rotated = D(a.rows) * D(c.heads() * c.d_qk + c.kv_groups * c.d_qk);
  B.pointwise(name, phase, Group::layer, OpKind::elementwise, impl, {t}, {t}, 1, a.rows, c.qkv_width(),
              fc::kRope * rotated, 2 * rotated);
  Op& op = B.last();
  op.rope = {c.batch, c.kv_groups, c.group, c.d_qk, a.rope_theta};
}

}  // namespace

void core_forward_tensors(Builder& B, const AttentionCore& c) {
  const int64_t bh = c.batch * c.heads(), T = c.batch * c.seq;
  B.tensor(c.scores, TensorRole::activation, {bh, c.seq, c.seq});  // scaled Q K^T
  B.tensor(c.probs, TensorRole::activation, {bh, c.seq, c.seq});   // causal softmax
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
  B.add_gemm(prefix + ".attn.scores", phase, L, OpKind::batched_gemm,
             attention_gemm(c, S, S, c.d_qk, false, true, q_of(c, c.qkv), k_of(c, c.qkv), square_of(c, c.scores), scale,
                            false, Triangle::c_lower),
             true);
  B.pointwise(prefix + ".attn.softmax", phase, L, OpKind::softmax, OpImpl::softmax_causal_fwd, {c.scores}, {c.probs},
              bh, S, S, fc::kSoftmaxFwd * causal_elements(c), 2 * square_elements(c));
  B.add_gemm(prefix + ".attn.context", phase, L, OpKind::batched_gemm,
             attention_gemm(c, S, c.d_v, S, false, false, square_of(c, c.probs), v_of(c, c.qkv), ctx_of(c, c.ctx), 1.0,
                            false, Triangle::a_lower),
             true);
}

void core_bwd(Builder& B, const AttentionCore& c) {
  const Group L = Group::layer;
  const Phase BW = Phase::backward;
  const int64_t S = c.seq, bh = c.batch * c.heads();
  const std::string dqkv = "d." + c.qkv, dctx = "d." + c.ctx, dprobs = "d." + c.probs, dscores = "d." + c.scores;
  // dP = dO V^T; dV = sum over the group of P^T dO, into d.qkv's V slots.
  B.add_gemm("bwd.attn.context.dprobs", BW, L, OpKind::batched_gemm,
             attention_gemm(c, S, S, c.d_v, false, true, ctx_of(c, dctx), v_of(c, c.qkv), square_of(c, dprobs), 1.0,
                            false, Triangle::c_lower),
             true);
  B.add_gemm("bwd.attn.context.dv", BW, L, OpKind::batched_gemm,
             attention_gemm(c, S, c.d_v, S, true, false, square_of(c, c.probs), ctx_of(c, dctx), v_of(c, dqkv), 1.0,
                            true, Triangle::a_upper),
             true);
  B.pointwise("bwd.attn.softmax", BW, L, OpKind::softmax, OpImpl::softmax_causal_bwd, {c.probs, dprobs}, {dscores}, bh,
              S, S, fc::kSoftmaxBwd * causal_elements(c), 3 * square_elements(c));
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
}

void attention_weights(const AttentionBlock& a, TensorList& weights) {
  const int64_t w = a.core.qkv_width();
  weights.push_back({a.w_qkv, {a.d, w}});  // (d, w), columns interleaved per kv group (h_kv, g + 2, dh)
  if (a.qkv_bias) weights.push_back({a.b_qkv, {w}});
  weights.push_back({a.w_proj, {a.core.ctx_width(), a.d}});
  if (a.out_bias) weights.push_back({a.b_proj, {a.d}});
}

void attention_forward_tensors(Builder& B, const AttentionBlock& a) {
  B.tensor(a.core.qkv, TensorRole::activation, {a.rows, a.core.qkv_width()});  // (s, b, h_kv, g + 2, dh)
  core_forward_tensors(B, a.core);
  B.tensor(a.out, TensorRole::activation, {a.rows, a.d});
}

void attention_backward_tensors(Builder& B, const AttentionBlock& a) {
  core_backward_tensors(B, a.core);
  B.tensor("d." + a.core.qkv, TensorRole::gradient, {a.rows, a.core.qkv_width()});
  B.tensor(a.d_in, TensorRole::gradient, {a.rows, a.d});
}

void attention_fwd(Builder& B, const AttentionBlock& a, const std::string& prefix, Phase phase) {
  const AttentionCore& c = a.core;
  const Group L = Group::layer;
  const int64_t w = c.qkv_width();
  const double Tw = D(a.rows) * D(w), Td = D(a.rows) * D(a.d);
  B.linear(prefix + ".qkv", phase, L, a.rows, w, a.d, false, false, a.in, a.w_qkv, c.qkv);
  if (a.qkv_bias)
    B.pointwise(prefix + ".qkv.bias", phase, L, OpKind::elementwise, OpImpl::bias_add, {c.qkv, a.b_qkv}, {c.qkv}, 1,
                a.rows, w, fc::kBiasAdd * Tw, 2 * Tw + D(w));
  if (a.rope) rope(B, a, prefix + ".attn.rope", phase, OpImpl::rope_fwd, c.qkv);
  core_fwd(B, c, prefix, phase);
  B.linear(prefix + ".proj", phase, L, a.rows, a.d, c.ctx_width(), false, false, c.ctx, a.w_proj, a.out);
  if (a.out_bias)
    B.pointwise(prefix + ".proj.bias", phase, L, OpKind::elementwise, OpImpl::bias_add, {a.out, a.b_proj}, {a.out}, 1,
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
    B.pointwise("bwd.proj.bias", BW, L, OpKind::reduction, OpImpl::bias_grad, {a.d_out}, {"d." + a.b_proj}, 1, a.rows,
                a.d, fc::kBiasGrad * Td, Td + D(a.d));
  B.linear("bwd.proj.dgrad", BW, L, a.rows, c.ctx_width(), a.d, false, true, a.d_out, a.w_proj, dctx);
  B.linear("bwd.proj.wgrad", BW, L, c.ctx_width(), a.d, a.rows, true, false, c.ctx, a.d_out, "d." + a.w_proj);
  core_bwd(B, c);
  // RoPE is a rotation: its backward rotates the gradients of Q and K back (the transpose).
  if (a.rope) rope(B, a, "bwd.attn.rope", BW, OpImpl::rope_bwd, dqkv);
  if (a.qkv_bias)
    B.pointwise("bwd.qkv.bias", BW, L, OpKind::reduction, OpImpl::bias_grad, {dqkv}, {"d." + a.b_qkv}, 1, a.rows, w,
                fc::kBiasGrad * Tw, Tw + D(w));
  B.linear("bwd.qkv.dgrad", BW, L, a.rows, a.d, w, false, true, dqkv, a.w_qkv, a.d_in);
  B.linear("bwd.qkv.wgrad", BW, L, a.d, w, a.rows, true, false, a.in, dqkv, "d." + a.w_qkv);
}

}  // namespace flopscope::graph_detail
