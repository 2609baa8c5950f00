// The MLP block over rows tokens of width d, hidden width f:
//   GeLU / ReLU: h = act(x W_up + b_up)                      (rows, f)
//   SwiGLU:      h = silu(x W_gate + b_gate) * (x W_up + b_up)
//   out = h W_down + b_down                                  (rows, d)
// Backward: dgrad and wgrad of each projection, the activation's backward; the up and gate
// dgrads sum into d_in (gate's with beta = 1).
// Routed experts (MlpBlock::experts > 0): the same ops on the dispatched rows, each projection a
// grouped GEMM (one problem per expert, its rows from MlpBlock::counts), weights (E, ., .), biases
// (E, .) (gpt-oss), each expert's rows adding its own (expert_bias_op: the counts an input).
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
  B.last().routed = true;
}

// A non-GEMM op of the block (Op::routed for the routed experts').
void pointwise(Builder& B, const MlpBlock& m, std::string name, Phase phase, OpSplit split, OpKind kind, OpImpl impl,
               std::vector<std::string> in, std::vector<std::string> out, double flops, double bytes_elems,
               int64_t cols) {
  B.pointwise(std::move(name), phase, Group::layer, split, kind, impl, std::move(in), std::move(out), 1, m.rows, cols,
              flops, bytes_elems);
  B.last().routed = m.experts > 0;
  B.last().moe.experts = m.experts;  // the routed experts' bias ops read E counts (expert_bias_op)
}

// A bias op's inputs; the routed experts' take the router's counts too (expert_bias_op).
std::vector<std::string> with_counts(const MlpBlock& m, std::vector<std::string> in) {
  if (m.experts > 0) in.push_back(m.counts);
  return in;
}

std::vector<int64_t> weight_shape(const MlpBlock& m, int64_t r, int64_t c) {
  if (m.experts == 0) return {r, c};
  return {m.experts, r, c};
}

}  // namespace

void mlp_weights(const MlpBlock& m, TensorList& weights) {
  auto bias_shape = [&](int64_t c) { return m.experts == 0 ? std::vector<int64_t>{c} : std::vector<int64_t>{m.experts, c}; };
  if (m.kind == FfnKind::swiglu) {
    weights.push_back({m.w_gate, weight_shape(m, m.d, m.f), WeightSplit::column, m.experts > 0});
    if (m.bias) weights.push_back({m.b_gate, bias_shape(m.f), WeightSplit::column, m.experts > 0});
  }
  weights.push_back({m.w_up, weight_shape(m, m.d, m.f), WeightSplit::column, m.experts > 0});
  if (m.bias) weights.push_back({m.b_up, bias_shape(m.f), WeightSplit::column, m.experts > 0});
  weights.push_back({m.w_down, weight_shape(m, m.f, m.d), WeightSplit::row, m.experts > 0});
  if (m.bias) weights.push_back({m.b_down, bias_shape(m.d), WeightSplit::replicated, m.experts > 0});
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
  auto n = [&](const std::string& op) { return prefix + "." + op; };
  const double Tf = D(m.rows) * D(m.f), Td = D(m.rows) * D(m.d);
  auto projection = [&](const std::string& op, const std::string& weight, const std::string& bias,
                        const std::string& out) {
    project(B, m, n(op), phase, m.rows, m.f, m.d, false, false, m.in, weight, out);
    if (m.bias)
      pointwise(B, m, n(op + ".bias"), phase, OpSplit::features, OpKind::elementwise, OpImpl::bias_add,
                with_counts(m, {out, bias}), {out}, fc::kBiasAdd * Tf, 2 * Tf + D(m.f), m.f);
  };
  if (m.kind == FfnKind::swiglu) projection(m.gate_op, m.w_gate, m.b_gate, m.gate_out);
  projection(m.up_op, m.w_up, m.b_up, m.up_out);
  switch (m.kind) {
    case FfnKind::gelu:
      pointwise(B, m, n(m.act_op), phase, OpSplit::features, OpKind::elementwise, OpImpl::gelu_fwd, {m.up_out},
                {m.act_out}, fc::kGeluFwd * Tf, 2 * Tf, m.f);
      break;
    case FfnKind::relu:
      pointwise(B, m, n(m.act_op), phase, OpSplit::features, OpKind::elementwise, OpImpl::relu_fwd, {m.up_out},
                {m.act_out}, fc::kReluFwd * Tf, 2 * Tf, m.f);
      break;
    case FfnKind::swiglu:
      pointwise(B, m, n(m.act_op), phase, OpSplit::features, OpKind::elementwise, OpImpl::swiglu_fwd,
                {m.gate_out, m.up_out}, {m.act_out}, fc::kSwigluFwd * Tf, 3 * Tf, m.f);
      break;
  }
  project(B, m, n(m.down_op), phase, m.rows, m.d, m.f, false, false, m.act_out, m.w_down, m.out);
  if (m.bias)
    pointwise(B, m, n(m.down_op + ".bias"), phase, OpSplit::sequence, OpKind::elementwise, OpImpl::bias_add,
              with_counts(m, {m.out, m.b_down}), {m.out}, fc::kBiasAdd * Td, 2 * Td + D(m.d), m.d);
}

void mlp_bwd(Builder& B, const MlpBlock& m) {
  const Phase BW = Phase::backward;
  auto n = [&](const std::string& op) { return "bwd." + op; };
  const double Tf = D(m.rows) * D(m.f), Td = D(m.rows) * D(m.d);
  const std::string d_act = "d." + m.act_out, d_up = "d." + m.up_out, d_gate = "d." + m.gate_out;
  if (m.bias)
    pointwise(B, m, n(m.down_op + ".bias"), BW, OpSplit::sequence, OpKind::reduction, OpImpl::bias_grad,
              with_counts(m, {m.d_out}), {"d." + m.b_down}, fc::kBiasGrad * Td, Td + D(m.d), m.d);
  project(B, m, n(m.down_op + ".dgrad"), BW, m.rows, m.f, m.d, false, true, m.d_out, m.w_down, d_act);
  project(B, m, n(m.down_op + ".wgrad"), BW, m.f, m.d, m.rows, true, false, m.act_out, m.d_out, "d." + m.w_down);
  switch (m.kind) {
    case FfnKind::gelu:
      pointwise(B, m, n(m.act_op), BW, OpSplit::features, OpKind::elementwise, OpImpl::gelu_bwd, {m.up_out, d_act},
                {d_up}, fc::kGeluBwd * Tf, 3 * Tf, m.f);
      break;
    case FfnKind::relu:
      pointwise(B, m, n(m.act_op), BW, OpSplit::features, OpKind::elementwise, OpImpl::relu_bwd, {m.up_out, d_act},
                {d_up}, fc::kReluBwd * Tf, 3 * Tf, m.f);
      break;
    case FfnKind::swiglu:
      pointwise(B, m, n(m.act_op), BW, OpSplit::features, OpKind::elementwise, OpImpl::swiglu_bwd,
                {m.gate_out, m.up_out, d_act}, {d_gate, d_up}, fc::kSwigluBwd * Tf, 5 * Tf, m.f);
      break;
  }
  // Up (then gate, whose dgrad adds into d_in: beta = 1).
  auto projection = [&](const std::string& op, const std::string& w, const std::string& bias, const std::string& dout,
                        double beta) {
    if (m.bias)
      pointwise(B, m, n(op + ".bias"), BW, OpSplit::features, OpKind::reduction, OpImpl::bias_grad,
                with_counts(m, {dout}), {"d." + bias}, fc::kBiasGrad * Tf, Tf + D(m.f), m.f);
    project(B, m, n(op + ".dgrad"), BW, m.rows, m.d, m.f, false, true, dout, w, m.d_in, beta);
    project(B, m, n(op + ".wgrad"), BW, m.d, m.f, m.rows, true, false, m.in, dout, "d." + w);
  };
  projection(m.up_op, m.w_up, m.b_up, d_up, 0.0);
  if (m.kind == FfnKind::swiglu) projection(m.gate_op, m.w_gate, m.b_gate, d_gate, 1.0);
}

}  // namespace flopscope::graph_detail
