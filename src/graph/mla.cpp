// The multi-head latent attention block (DeepSeek-V2/V3, transformers' DeepseekV3Attention):
// queries and keys/values come through low-rank latents, and each query/key head is a
// position-free part of qk_nope and a rotary part of qk_rope whose key half is one head shared
// by every query head. For T tokens of width d, h heads, ranks r_q (q_lora_rank, 0: none) and
// r_kv (kv_lora_rank), head parts n (nope), p (rope) and v (v_head_dim):
//   Q:   r_q > 0: q_a = x W_qa (T, r_q), RMSNorm, q = q_a W_qb (T, h (n + p));  else q = x W_q
//   KV:  kv_a = x W_kva (T, r_kv), k_rope = x W_kr (T, p)   (transformers' one kv_a_proj_with_mqa
//        (d, r_kv + p), split in two GEMMs of the same FLOPs so the latent's RMSNorm reads rows)
//        RMSNorm on kv_a, kv_b = kv_a W_kvb (T, h (n + v))   (per head [k_nope, v])
//   RoPE on the rope part of each q head and on k_rope (once, before it is shared)
//   qkv = per head [q_h, k_nope_h, k_rope, v_h] (mla_qkv_fwd, a copy: torch.cat and expand)
//   the attention core with d_qk = n + p and d_v = v (blocks.hpp, AttentionCore, group 1)
//   out = ctx W_o, (T, h v) x (h v, d)
// Backward mirrors it; the shared k_rope's gradient is the sum of its h slots of d.qkv
// (mla_qkv_bwd), and the dgrads of the Q, KV and k_rope GEMMs sum into d_in (beta 1).
// Biases (attention_bias): on q_a, kv_a and k_rope (transformers' q_a_proj and
// kv_a_proj_with_mqa) and on the output projection; never on q_b, q (no q_lora) or kv_b.
#include "graph/blocks.hpp"

namespace flopscope::graph_detail {

namespace {

void bias_fwd(Builder& B, const std::string& name, Phase phase, const std::string& t, const std::string& bias,
              int64_t rows, int64_t cols) {
  const double e = D(rows) * D(cols);
  B.pointwise(name, phase, Group::layer, OpSplit::sequence, OpKind::elementwise, OpImpl::bias_add, {t, bias}, {t}, 1, rows, cols,
              fc::kBiasAdd * e, 2 * e + D(cols));
}

void bias_bwd(Builder& B, const std::string& name, const std::string& dt, const std::string& bias, int64_t rows,
              int64_t cols) {
  const double e = D(rows) * D(cols);
  B.pointwise(name, Phase::backward, Group::layer, OpSplit::sequence, OpKind::reduction, OpImpl::bias_grad, {dt}, {"d." + bias}, 1, rows,
              cols, fc::kBiasGrad * e, e + D(cols));
}

// RoPE in place on the rope part of each q head (heads = h, block n + p, offset n) or on
// k_rope (heads = 1, block p, offset 0).
void rope_part(Builder& B, const MlaBlock& a, const std::string& name, Phase phase, OpImpl impl, const std::string& t,
               int64_t heads, int64_t block, int64_t offset) {
  const double rotated = D(a.rows) * D(heads * a.rope);
  // The shared k_rope (heads = 1) is gathered along the sequence first (Megatron-LM's MLA): every
  // rank rotates all of it; the q heads split over tp.
  B.pointwise(name, phase, Group::layer, heads == 1 ? OpSplit::replicated : OpSplit::features, OpKind::elementwise, impl, {t}, {t}, 1, a.rows, heads * block,
              fc::kRope * rotated, 2 * rotated);
  Op& op = B.last();
  op.rope = {a.core.batch, heads, 1, a.rope, a.rope_theta, 1, block, offset};
}

MlaSpec spec_of(const MlaBlock& a) { return {a.core.heads(), a.nope, a.rope, a.core.d_v}; }

}  // namespace

void mla_weights(const MlaBlock& a, TensorList& weights) {
  const MlaSpec m = spec_of(a);
  // The down projections (q_a, kv_a and k_rope: Megatron-LM's linear_q_down_proj and
  // linear_kv_down_proj) are whole on every tp rank (TELinear, parallel_mode "duplicated"); the
  // up projections column-parallel, the output projection row-parallel.
  const WeightSplit R = WeightSplit::replicated;
  if (a.q_lora > 0) {
    weights.push_back({a.w_q_a, {a.d, a.q_lora}, R});
    if (a.in_bias) weights.push_back({a.b_q_a, {a.q_lora}, R});
    norm_weights(a.q_norm, weights);
    weights.push_back({a.w_q, {a.q_lora, m.q_width()}, WeightSplit::column});  // q_b_proj, columns (h, n + p)
  } else {
    weights.push_back({a.w_q, {a.d, m.q_width()}, WeightSplit::column});
  }
  weights.push_back({a.w_kv_a, {a.d, a.kv_lora}, R});
  if (a.in_bias) weights.push_back({a.b_kv_a, {a.kv_lora}, R});
  weights.push_back({a.w_k_rope, {a.d, a.rope}, R});
  if (a.in_bias) weights.push_back({a.b_k_rope, {a.rope}, R});
  norm_weights(a.kv_norm, weights);
  weights.push_back({a.w_kv_b, {a.kv_lora, m.kv_b_width()}, WeightSplit::column});  // columns (h, n + v)
  weights.push_back({a.w_proj, {a.core.ctx_width(), a.d}, WeightSplit::row});
  if (a.out_bias) weights.push_back({a.b_proj, {a.d}, R});
}

void mla_forward_tensors(Builder& B, const MlaBlock& a) {
  using R = TensorRole;
  const MlaSpec m = spec_of(a);
  if (a.q_lora > 0) {
    B.tensor(a.q_a, R::activation, {a.rows, a.q_lora});
    norm_forward_tensors(B, a.q_norm);
  }
  B.tensor(a.q, R::activation, {a.rows, m.q_width()});
  B.tensor(a.kv_a, R::activation, {a.rows, a.kv_lora});
  B.tensor(a.k_rope, R::activation, {a.rows, a.rope});
  norm_forward_tensors(B, a.kv_norm);
  B.tensor(a.kv_b, R::activation, {a.rows, m.kv_b_width()});
  B.tensor(a.core.qkv, R::activation, {a.rows, m.qkv_width()});  // (s, b, h, [q, k_nope, k_rope, v])
  core_forward_tensors(B, a.core);
  B.tensor(a.out, R::activation, {a.rows, a.d});
}

void mla_backward_tensors(Builder& B, const MlaBlock& a) {
  using R = TensorRole;
  const MlaSpec m = spec_of(a);
  core_backward_tensors(B, a.core);
  B.tensor("d." + a.core.qkv, R::gradient, {a.rows, m.qkv_width()});
  B.tensor("d." + a.q, R::gradient, {a.rows, m.q_width()});
  B.tensor("d." + a.kv_b, R::gradient, {a.rows, m.kv_b_width()});
  B.tensor("d." + a.k_rope, R::gradient, {a.rows, a.rope});
  B.tensor("d." + a.kv_norm.out, R::gradient, {a.rows, a.kv_lora});
  B.tensor("d." + a.kv_a, R::gradient, {a.rows, a.kv_lora});
  if (a.q_lora > 0) {
    B.tensor("d." + a.q_norm.out, R::gradient, {a.rows, a.q_lora});
    B.tensor("d." + a.q_a, R::gradient, {a.rows, a.q_lora});
  }
  B.tensor(a.d_in, R::gradient, {a.rows, a.d});
}

void mla_fwd(Builder& B, const MlaBlock& a, const std::string& prefix, Phase phase) {
  const Group L = Group::layer;
  const MlaSpec m = spec_of(a);
  const int64_t T = a.rows;
  // Q, directly or through its latent.
  if (a.q_lora > 0) {
    B.linear(prefix + ".q_a", phase, L, T, a.q_lora, a.d, false, false, a.in, a.w_q_a, a.q_a);
    if (a.in_bias) bias_fwd(B, prefix + ".q_a.bias", phase, a.q_a, a.b_q_a, T, a.q_lora);
    norm_fwd(B, a.q_norm, prefix + ".q_a.norm", phase, L, a.q_a);
    B.linear(prefix + ".q_b", phase, L, T, m.q_width(), a.q_lora, false, false, a.q_norm.out, a.w_q, a.q);
  } else {
    B.linear(prefix + ".q", phase, L, T, m.q_width(), a.d, false, false, a.in, a.w_q, a.q);
  }
  // K and V through the latent; the rope part of K straight from x.
  B.linear(prefix + ".kv_a", phase, L, T, a.kv_lora, a.d, false, false, a.in, a.w_kv_a, a.kv_a);
  if (a.in_bias) bias_fwd(B, prefix + ".kv_a.bias", phase, a.kv_a, a.b_kv_a, T, a.kv_lora);
  B.linear(prefix + ".k_rope", phase, L, T, a.rope, a.d, false, false, a.in, a.w_k_rope, a.k_rope);
  if (a.in_bias) bias_fwd(B, prefix + ".k_rope.bias", phase, a.k_rope, a.b_k_rope, T, a.rope);
  norm_fwd(B, a.kv_norm, prefix + ".kv_a.norm", phase, L, a.kv_a);
  B.linear(prefix + ".kv_b", phase, L, T, m.kv_b_width(), a.kv_lora, false, false, a.kv_norm.out, a.w_kv_b, a.kv_b);
  if (a.rope_on) {
    rope_part(B, a, prefix + ".attn.rope", phase, OpImpl::rope_fwd, a.q, m.heads, m.qk(), a.nope);
    rope_part(B, a, prefix + ".attn.rope.k", phase, OpImpl::rope_fwd, a.k_rope, 1, a.rope, 0);
  }
  const double moved = D(T) * D(m.q_width() + m.kv_b_width() + a.rope + m.qkv_width());
  B.pointwise(prefix + ".attn.mla_qkv", phase, L, OpSplit::features, OpKind::elementwise, OpImpl::mla_qkv_fwd, {a.q, a.kv_b, a.k_rope},
              {a.core.qkv}, 1, T, m.qkv_width(), 0, moved);
  B.last().mla = m;
  core_fwd(B, a.core, prefix, phase);
  B.linear(prefix + ".proj", phase, L, T, a.d, a.core.ctx_width(), false, false, a.core.ctx, a.w_proj, a.out);
  if (a.out_bias) bias_fwd(B, prefix + ".proj.bias", phase, a.out, a.b_proj, T, a.d);
}

void mla_bwd(Builder& B, const MlaBlock& a) {
  const Group L = Group::layer;
  const Phase BW = Phase::backward;
  const MlaSpec m = spec_of(a);
  const int64_t T = a.rows;
  const std::string dq = "d." + a.q, dkv_b = "d." + a.kv_b, dk_rope = "d." + a.k_rope, dkv_a = "d." + a.kv_a;
  if (a.out_bias) bias_bwd(B, "bwd.proj.bias", a.d_out, a.b_proj, T, a.d);
  B.linear("bwd.proj.dgrad", BW, L, T, a.core.ctx_width(), a.d, false, true, a.d_out, a.w_proj, "d." + a.core.ctx);
  B.linear("bwd.proj.wgrad", BW, L, a.core.ctx_width(), a.d, T, true, false, a.core.ctx, a.d_out, "d." + a.w_proj);
  core_bwd(B, a.core);
  const double moved = D(T) * D(m.q_width() + m.kv_b_width() + a.rope + m.qkv_width());
  B.pointwise("bwd.attn.mla_qkv", BW, L, OpSplit::features, OpKind::elementwise, OpImpl::mla_qkv_bwd, {"d." + a.core.qkv},
              {dq, dkv_b, dk_rope}, 1, T, m.qkv_width(), fc::kMlaRopeSum * D(T) * D(a.rope) * D(m.heads - 1), moved);
  B.last().mla = m;
  if (a.rope_on) {
    rope_part(B, a, "bwd.attn.rope", BW, OpImpl::rope_bwd, dq, m.heads, m.qk(), a.nope);
    rope_part(B, a, "bwd.attn.rope.k", BW, OpImpl::rope_bwd, dk_rope, 1, a.rope, 0);
  }
  // The latent's up projection and norm, then the three projections of x, summing into d_in.
  B.linear("bwd.kv_b.dgrad", BW, L, T, a.kv_lora, m.kv_b_width(), false, true, dkv_b, a.w_kv_b, "d." + a.kv_norm.out);
  B.linear("bwd.kv_b.wgrad", BW, L, a.kv_lora, m.kv_b_width(), T, true, false, a.kv_norm.out, dkv_b, "d." + a.w_kv_b);
  norm_bwd(B, a.kv_norm, "bwd.kv_a.norm", L, "d." + a.kv_norm.out, a.kv_a, dkv_a);
  if (a.in_bias) bias_bwd(B, "bwd.kv_a.bias", dkv_a, a.b_kv_a, T, a.kv_lora);
  B.linear("bwd.kv_a.dgrad", BW, L, T, a.d, a.kv_lora, false, true, dkv_a, a.w_kv_a, a.d_in);
  B.linear("bwd.kv_a.wgrad", BW, L, a.d, a.kv_lora, T, true, false, a.in, dkv_a, "d." + a.w_kv_a);
  if (a.in_bias) bias_bwd(B, "bwd.k_rope.bias", dk_rope, a.b_k_rope, T, a.rope);
  B.linear("bwd.k_rope.dgrad", BW, L, T, a.d, a.rope, false, true, dk_rope, a.w_k_rope, a.d_in, 1.0);
  B.linear("bwd.k_rope.wgrad", BW, L, a.d, a.rope, T, true, false, a.in, dk_rope, "d." + a.w_k_rope);
  if (a.q_lora > 0) {
    const std::string dq_a = "d." + a.q_a, dq_norm = "d." + a.q_norm.out;
    B.linear("bwd.q_b.dgrad", BW, L, T, a.q_lora, m.q_width(), false, true, dq, a.w_q, dq_norm);
    B.linear("bwd.q_b.wgrad", BW, L, a.q_lora, m.q_width(), T, true, false, a.q_norm.out, dq, "d." + a.w_q);
    norm_bwd(B, a.q_norm, "bwd.q_a.norm", L, dq_norm, a.q_a, dq_a);
    if (a.in_bias) bias_bwd(B, "bwd.q_a.bias", dq_a, a.b_q_a, T, a.q_lora);
    B.linear("bwd.q_a.dgrad", BW, L, T, a.d, a.q_lora, false, true, dq_a, a.w_q_a, a.d_in, 1.0);
    B.linear("bwd.q_a.wgrad", BW, L, a.d, a.q_lora, T, true, false, a.in, dq_a, "d." + a.w_q_a);
  } else {
    B.linear("bwd.q.dgrad", BW, L, T, a.d, m.q_width(), false, true, dq, a.w_q, a.d_in, 1.0);
    B.linear("bwd.q.wgrad", BW, L, a.d, m.q_width(), T, true, false, a.in, dq, "d." + a.w_q);
  }
}

}  // namespace flopscope::graph_detail
