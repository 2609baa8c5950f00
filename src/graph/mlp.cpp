// The MLP block over rows tokens of width d, hidden width f:
//   GeLU / ReLU: h = act(x W_up + b_up)                      (rows, f)
//   SwiGLU:      h = silu(x W_gate + b_gate) * (x W_up + b_up)
//   out = h W_down + b_down                                  (rows, d)
// Backward: dgrad and wgrad of each projection, the activation's backward; the up and gate
// dgrads sum into d_in (gate's with beta = 1).
// Routed experts (MlpBlock::experts > 0): the same ops on the dispatched rows, each projection a
// grouped GEMM (one problem per expert, its rows from MlpBlock::counts), weights (E, ., .), no
// biases.
#include "graph/blocks.hpp"
#include "util/error.hpp"

namespace flopscope::graph_detail {

namespace {

// A projection of the block: a linear GEMM, or for routed experts a grouped one (forward and
// dgrad group C's rows; wgrad, ta, its k).
void project(Builder& B, const MlpBlock& m, const std::string& name, Phase phase, int64_t M, int64_t N, int64_t K,
             bool ta, bool tb, const std::string& a, const std::string& b, const std::string& c, double beta = 0.0) {
  if (m.experts == 0) return B.linear(name, phase, Group::layer, M, N, K, ta, tb, a, b, c, beta);
  B.grouped_linear(name, phase, Group::layer, ta ? Grouped::k_rows : Grouped::m_rows, m.experts, M, N, K, ta, tb, a, b,
                   c, m.counts, beta);
}

std::vector<int64_t> weight_shape(const MlpBlock& m, int64_t r, int64_t c) {
  if (m.experts == 0) return {r, c};
  return {m.experts, r, c};
}

}  // namespace

void mlp_weights(const MlpBlock& m, TensorList& weights) {
  FLOPSCOPE_CHECK(m.experts == 0 || !m.bias, "routed experts' MLP blocks have no biases in the graph");
  if (m.kind == FfnKind::swiglu) {
    weights.push_back({m.w_gate, weight_shape(m, m.d, m.f)});
    if (m.bias) weights.push_back({m.b_gate, {m.f}});
  }
  weights.push_back({m.w_up, weight_shape(m, m.d, m.f)});
  if (m.bias) weights.push_back({m.b_up, {m.f}});
  weights.push_back({m.w_down, weight_shape(m, m.f, m.d)});
  if (m.bias) weights.push_back({m.b_down, {m.d}});
}

void mlp_forward_tensors(Builder& B, const MlpBlock& m) {
  if (m.kind == FfnKind::swiglu) B.tensor(m.gate_out, TensorRole::activation, {m.rows, m.f});
  B.tensor(m.up_out, TensorRole::activation, {m.rows, m.f});
  B.tensor(m.act_out, TensorRole::activation, {m.rows, m.f});
  B.tensor(m.out, TensorRole::activation, {m.rows, m.d});
}

void mlp_backward_tensors(Builder& B, const MlpBlock& m) {
  B.tensor("d." + m.act_out, TensorRole::gradient, {m.rows, m.f});
  if (m.kind == FfnKind::swiglu) B.tensor("d." + m.gate_out, TensorRole::gradient, {m.rows, m.f});
  B.tensor("d." + m.up_out, TensorRole::gradient, {m.rows, m.f});
  B.tensor(m.d_in, TensorRole::gradient, {m.rows, m.d});
}

void mlp_fwd(Builder& B, const MlpBlock& m, const std::string& prefix, Phase phase) {
  const Group L = Group::layer;
  auto n = [&](const std::string& op) { return prefix + "." + op; };
  const double Tf = D(m.rows) * D(m.f), Td = D(m.rows) * D(m.d);
  auto projection = [&](const std::string& op, const std::string& weight, const std::string& bias,
                        const std::string& out) {
    project(B, m, n(op), phase, m.rows, m.f, m.d, false, false, m.in, weight, out);
    if (m.bias)
      B.pointwise(n(op + ".bias"), phase, L, OpKind::elementwise, OpImpl::bias_add, {out, bias}, {out}, 1, m.rows, m.f,
                  fc::kBiasAdd * Tf, 2 * Tf + D(m.f));
  };
  if (m.kind == FfnKind::swiglu) projection(m.gate_op, m.w_gate, m.b_gate, m.gate_out);
  projection(m.up_op, m.w_up, m.b_up, m.up_out);
  switch (m.kind) {
    case FfnKind::gelu:
      B.pointwise(n(m.act_op), phase, L, OpKind::elementwise, OpImpl::gelu_fwd, {m.up_out}, {m.act_out}, 1, m.rows, m.f,
                  fc::kGeluFwd * Tf, 2 * Tf);
      break;
    case FfnKind::relu:
      B.pointwise(n(m.act_op), phase, L, OpKind::elementwise, OpImpl::relu_fwd, {m.up_out}, {m.act_out}, 1, m.rows, m.f,
                  fc::kReluFwd * Tf, 2 * Tf);
      break;
    case FfnKind::swiglu:
      B.pointwise(n(m.act_op), phase, L, OpKind::elementwise, OpImpl::swiglu_fwd, {m.gate_out, m.up_out}, {m.act_out},
                  1, m.rows, m.f, fc::kSwigluFwd * Tf, 3 * Tf);
      break;
  }
  project(B, m, n(m.down_op), phase, m.rows, m.d, m.f, false, false, m.act_out, m.w_down, m.out);
  if (m.bias)
    B.pointwise(n(m.down_op + ".bias"), phase, L, OpKind::elementwise, OpImpl::bias_add, {m.out, m.b_down}, {m.out}, 1,
                m.rows, m.d, fc::kBiasAdd * Td, 2 * Td + D(m.d));
}

void mlp_bwd(Builder& B, const MlpBlock& m) {
  const Group L = Group::layer;
  const Phase BW = Phase::backward;
  auto n = [&](const std::string& op) { return "bwd." + op; };
  const double Tf = D(m.rows) * D(m.f), Td = D(m.rows) * D(m.d);
  const std::string d_act = "d." + m.act_out, d_up = "d." + m.up_out, d_gate = "d." + m.gate_out;
  if (m.bias)
    B.pointwise(n(m.down_op + ".bias"), BW, L, OpKind::reduction, OpImpl::bias_grad, {m.d_out}, {"d." + m.b_down}, 1,
                m.rows, m.d, fc::kBiasGrad * Td, Td + D(m.d));
  project(B, m, n(m.down_op + ".dgrad"), BW, m.rows, m.f, m.d, false, true, m.d_out, m.w_down, d_act);
  project(B, m, n(m.down_op + ".wgrad"), BW, m.f, m.d, m.rows, true, false, m.act_out, m.d_out, "d." + m.w_down);
  switch (m.kind) {
    case FfnKind::gelu:
      B.pointwise(n(m.act_op), BW, L, OpKind::elementwise, OpImpl::gelu_bwd, {m.up_out, d_act}, {d_up}, 1, m.rows, m.f,
                  fc::kGeluBwd * Tf, 3 * Tf);
      break;
    case FfnKind::relu:
      B.pointwise(n(m.act_op), BW, L, OpKind::elementwise, OpImpl::relu_bwd, {m.up_out, d_act}, {d_up}, 1, m.rows, m.f,
                  fc::kReluBwd * Tf, 3 * Tf);
      break;
    case FfnKind::swiglu:
      B.pointwise(n(m.act_op), BW, L, OpKind::elementwise, OpImpl::swiglu_bwd, {m.gate_out, m.up_out, d_act},
                  {d_gate, d_up}, 1, m.rows, m.f, fc::kSwigluBwd * Tf, 5 * Tf);
      break;
  }
  // Up (then gate, whose dgrad adds into d_in: beta = 1).
  auto projection = [&](const std::string& op, const std::string& w, const std::string& bias, const std::string& dout,
                        double beta) {
    if (m.bias)
      B.pointwise(n(op + ".bias"), BW, L, OpKind::reduction, OpImpl::bias_grad, {dout}, {"d." + bias}, 1, m.rows, m.f,
                  fc::kBiasGrad * Tf, Tf + D(m.f));
    project(B, m, n(op + ".dgrad"), BW, m.rows, m.d, m.f, false, true, dout, w, m.d_in, beta);
    project(B, m, n(op + ".wgrad"), BW, m.d, m.f, m.rows, true, false, m.in, dout, "d." + w);
  };
  projection(m.up_op, m.w_up, m.b_up, d_up, 0.0);
  if (m.kind == FfnKind::swiglu) projection(m.gate_op, m.w_gate, m.b_gate, d_gate, 1.0);
}

}  // namespace flopscope::graph_detail
