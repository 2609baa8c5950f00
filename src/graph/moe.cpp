// The mixture-of-experts block (blocks.hpp, MoeBlock): the router GEMM, the route op (scores,
// top-k, weights, slots, tokens per expert), dispatch, the routed experts as grouped GEMMs (an
// MlpBlock of E problems), combine, and the shared experts as a plain MlpBlock beside them.
// Dispatch, combine and the route are memory-bound ops at the bytes they move; the grouped
// GEMMs' analytic FLOPs are those of k T rows in all, which is what runs when no token is dropped.
#include "graph/blocks.hpp"

namespace flopscope::graph_detail {

void moe_weights(const MoeBlock& m, TensorList& weights) {
  weights.push_back({m.w_router, {m.d, m.spec.experts}, WeightSplit::replicated});  // Megatron-LM's TopKRouter: whole on each rank
  if (m.router_bias) weights.push_back({m.b_router, {m.spec.experts}, WeightSplit::replicated});
  mlp_weights(m.experts, weights);
  if (m.has_shared) mlp_weights(m.shared, weights);
  if (m.shared_gate) weights.push_back({m.w_gate, {m.d, 1}, WeightSplit::replicated});  // as the router's
}

void moe_forward_tensors(Builder& B, const MoeBlock& m) {
  using R = TensorRole;
  const int64_t T = m.rows, E = m.spec.experts, k = m.spec.top_k;
  B.tensor(m.logits, R::activation, {T, E});
  // Expert ids, slots and counts are whole numbers the backends keep in their index precision.
  B.tensor(m.experts_of, R::statistic, {T, k});
  B.tensor(m.weights, R::activation, {T, k});
  B.tensor(m.slots, R::statistic, {T, k});
  B.tensor(m.counts, R::statistic, {E});
  B.tensor(m.experts.in, R::activation, {m.experts.rows, m.d});
  mlp_forward_tensors(B, m.experts);  // ..., the experts' rows out (k T, d)
  if (m.has_shared) {
    B.tensor(m.routed_out, R::activation, {T, m.d});
    mlp_forward_tensors(B, m.shared);
    if (m.shared_gate) {
      B.tensor(m.gate_logit, R::activation, {T, 1});
      B.tensor(m.gated, R::activation, {T, m.d});
    }
  }
  B.tensor(m.out, R::activation, {T, m.d});
}

void moe_backward_tensors(Builder& B, const MoeBlock& m) {
  using R = TensorRole;
  const int64_t T = m.rows, E = m.spec.experts, k = m.spec.top_k;
  if (m.shared_gate) {
    B.tensor(m.shared.d_out, R::gradient, {T, m.d});
    B.tensor("d." + m.gate_logit, R::gradient, {T, 1});
  }
  if (m.has_shared) mlp_backward_tensors(B, m.shared);  // ..., d.shared.in
  B.tensor(m.experts.d_out, R::gradient, {m.experts.rows, m.d});
  B.tensor("d." + m.weights, R::gradient, {T, k});
  mlp_backward_tensors(B, m.experts);  // ..., the dispatched rows' gradient (k T, d)
  B.tensor("d." + m.logits, R::gradient, {T, E});
  if (m.has_shared) B.tensor(m.routed_d_in, R::gradient, {T, m.d});
  B.tensor(m.d_in, R::gradient, {T, m.d});
}

namespace {

void moe_op(Builder& B, const MoeBlock& m, const std::string& name, Phase phase, OpKind kind, OpImpl impl,
            std::vector<std::string> in, std::vector<std::string> out, int64_t cols, double flops, double bytes_elems) {
  B.pointwise(name, phase, Group::layer, OpSplit::sequence, kind, impl, std::move(in), std::move(out), 1, m.rows, cols, flops,
              bytes_elems);
  B.last().moe = m.spec;
}

void add(Builder& B, const std::string& name, Phase phase, const std::string& a, const std::string& b,
         const std::string& out, int64_t rows, int64_t width) {
  const double elems = D(rows) * D(width);
  B.pointwise(name, phase, Group::layer, OpSplit::sequence, OpKind::elementwise, OpImpl::residual_add, {a, b}, {out}, 1, rows, width,
              fc::kResidualAdd * elems, 3 * elems);
}

}  // namespace

void moe_fwd(Builder& B, const MoeBlock& m, const std::string& prefix, Phase phase) {
  const int64_t T = m.rows, E = m.spec.experts, k = m.spec.top_k;
  const double Td = D(T) * D(m.d), kTd = D(k) * Td, Tk = D(T) * D(k), TE = D(T) * D(E);
  auto n = [&](const std::string& op) { return prefix + "." + op; };
  B.linear(n("moe.router"), phase, Group::layer, T, E, m.d, false, false, m.in, m.w_router, m.logits);
  B.last().gemm.keep_precision = true;  // the router stays out of fp8 (Transformer Engine's)
  if (m.router_bias)
    B.pointwise(n("moe.router.bias"), phase, Group::layer, OpSplit::sequence, OpKind::elementwise, OpImpl::bias_add, {m.logits, m.b_router},
                {m.logits}, 1, T, E, fc::kBiasAdd * TE, 2 * TE + D(E));
  moe_op(B, m, n("moe.route"), phase, OpKind::reduction, OpImpl::moe_route_fwd, {m.logits},
         {m.experts_of, m.weights, m.slots, m.counts}, E, fc::moe_route_fwd(m.spec, T), TE + 3 * Tk + D(E));
  moe_op(B, m, n("moe.dispatch"), phase, OpKind::elementwise, OpImpl::moe_dispatch_fwd, {m.in, m.slots},
         {m.experts.in}, m.d, 0, Td + kTd + Tk);
  mlp_fwd(B, m.experts, prefix, phase);
  const std::string routed = m.has_shared ? m.routed_out : m.out;
  moe_op(B, m, n("moe.combine"), phase, OpKind::elementwise, OpImpl::moe_combine_fwd,
         {m.experts.out, m.weights, m.slots}, {routed}, m.d, fc::kMoeCombineFwd * kTd, kTd + Td + 2 * Tk);
  if (m.has_shared) {
    mlp_fwd(B, m.shared, prefix, phase);
    if (m.shared_gate) {
      B.linear(n("moe.shared_gate"), phase, Group::layer, T, 1, m.d, false, false, m.in, m.w_gate, m.gate_logit);
      B.last().gemm.keep_precision = true;  // a (d, 1) weight: as the router, out of fp8
      moe_op(B, m, n("moe.shared_gate.mul"), phase, OpKind::elementwise, OpImpl::moe_gate_fwd, {m.shared.out, m.gate_logit},
             {m.gated}, m.d, fc::kMoeGateFwdToken * D(T) + fc::kMoeGateFwd * Td, 2 * Td + D(T));
    }
    add(B, n("moe.shared_add"), phase, m.routed_out, m.shared_gate ? m.gated : m.shared.out, m.out, T, m.d);
  }
}

void moe_bwd(Builder& B, const MoeBlock& m) {
  const Phase BW = Phase::backward;
  const int64_t T = m.rows, E = m.spec.experts, k = m.spec.top_k;
  const double Td = D(T) * D(m.d), kTd = D(k) * Td, Tk = D(T) * D(k), TE = D(T) * D(E);
  if (m.shared_gate)  // d_out -> the shared experts' output's gradient and the gate logit's
    moe_op(B, m, "bwd.moe.shared_gate.mul", BW, OpKind::elementwise, OpImpl::moe_gate_bwd,
           {m.d_out, m.shared.out, m.gate_logit}, {m.shared.d_out, "d." + m.gate_logit}, m.d,
           fc::kMoeGateBwdToken * D(T) + fc::kMoeGateBwd * Td, 3 * Td + 2 * D(T));
  if (m.has_shared) mlp_bwd(B, m.shared);  // -> d.shared.in
  if (m.shared_gate) {
    B.linear("bwd.moe.shared_gate.dgrad", BW, Group::layer, T, m.d, 1, false, true, "d." + m.gate_logit, m.w_gate,
             m.shared.d_in, 1.0);
    B.last().gemm.keep_precision = true;
    B.linear("bwd.moe.shared_gate.wgrad", BW, Group::layer, m.d, 1, T, true, false, m.in, "d." + m.gate_logit,
             "d." + m.w_gate);
    B.last().gemm.keep_precision = true;
  }
  moe_op(B, m, "bwd.moe.combine", BW, OpKind::elementwise, OpImpl::moe_combine_bwd,
         {m.d_out, m.experts.out, m.weights, m.slots}, {m.experts.d_out, "d." + m.weights}, m.d,
         fc::kMoeCombineBwd * kTd, Td + 2 * kTd + 3 * Tk);
  mlp_bwd(B, m.experts);  // -> the dispatched rows' gradient
  const std::string routed_d_in = m.has_shared ? m.routed_d_in : m.d_in;
  moe_op(B, m, "bwd.moe.dispatch", BW, OpKind::reduction, OpImpl::moe_dispatch_bwd, {m.experts.d_in, m.slots},
         {routed_d_in}, m.d, fc::kMoeDispatchBwd * D(k - 1) * Td, kTd + Td + Tk);
  moe_op(B, m, "bwd.moe.route", BW, OpKind::reduction, OpImpl::moe_route_bwd,
         {m.logits, m.experts_of, m.weights, "d." + m.weights, m.counts}, {"d." + m.logits}, E,
         fc::moe_route_bwd(m.spec, T), 2 * TE + 3 * Tk + D(E));
  if (m.router_bias)
    B.pointwise("bwd.moe.router.bias", BW, Group::layer, OpSplit::sequence, OpKind::reduction, OpImpl::bias_grad, {"d." + m.logits},
                {"d." + m.b_router}, 1, T, E, fc::kBiasGrad * TE, TE + D(E));
  B.linear("bwd.moe.router.dgrad", BW, Group::layer, T, m.d, E, false, true, "d." + m.logits, m.w_router, routed_d_in,
           1.0);
  B.last().gemm.keep_precision = true;
  B.linear("bwd.moe.router.wgrad", BW, Group::layer, m.d, E, T, true, false, m.in, "d." + m.logits, "d." + m.w_router);
  B.last().gemm.keep_precision = true;
  if (m.has_shared) add(B, "bwd.moe.shared_add", BW, m.routed_d_in, m.shared.d_in, m.d_in, T, m.d);
}

}  // namespace flopscope::graph_detail
