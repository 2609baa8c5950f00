// The norm block: LayerNorm or RMSNorm over each of `rows` rows of `width` elements.
//   LayerNorm: y = (x - mean) rstd gamma + beta, saving mean and rstd (rows,)
//   RMSNorm:   y = x rstd gamma, rstd = 1 / sqrt(mean(x^2) + eps), saving rstd (rows,)
// FLOPs per element: flop_convention::kLayerNormFwd/Bwd, kRmsNormFwd/Bwd (graph.hpp).
#include "graph/blocks.hpp"

namespace flopscope::graph_detail {

NormBlock norm_block(NormKind kind, int64_t rows, int64_t width, const std::string& slot, const std::string& stats) {
  const bool ln = kind == NormKind::layernorm;
  return {kind, rows, width, slot + ".gamma", ln ? slot + ".beta" : "", stats + ".out", ln ? stats + ".mean" : "",
          stats + ".rstd"};
}

void norm_weights(const NormBlock& n, TensorList& weights) {
  weights.push_back({n.gamma, {n.width}, WeightSplit::replicated});
  if (n.kind == NormKind::layernorm) weights.push_back({n.beta, {n.width}, WeightSplit::replicated});
}

void norm_forward_tensors(Builder& B, const NormBlock& n) {
  B.tensor(n.out, TensorRole::activation, {n.rows, n.width});
  if (n.kind == NormKind::layernorm) B.tensor(n.mean, TensorRole::statistic, {n.rows});
  B.tensor(n.rstd, TensorRole::statistic, {n.rows});
}

void norm_fwd(Builder& B, const NormBlock& n, const std::string& name, Phase phase, Group group, const std::string& x) {
  const double elems = D(n.rows) * D(n.width);
  if (n.kind == NormKind::layernorm) {
    B.pointwise(name, phase, group, OpSplit::sequence, OpKind::norm, OpImpl::layernorm_fwd, {x, n.gamma, n.beta}, {n.out, n.mean, n.rstd},
                1, n.rows, n.width, fc::kLayerNormFwd * elems, 2 * elems + 2.0 * D(n.width));
  } else {
    B.pointwise(name, phase, group, OpSplit::sequence, OpKind::norm, OpImpl::rmsnorm_fwd, {x, n.gamma}, {n.out, n.rstd}, 1, n.rows,
                n.width, fc::kRmsNormFwd * elems, 2 * elems + D(n.width));
  }
}

void norm_bwd(Builder& B, const NormBlock& n, const std::string& name, Group group, const std::string& dy,
              const std::string& x, const std::string& dx) {
  const double elems = D(n.rows) * D(n.width);
  if (n.kind == NormKind::layernorm) {
    B.pointwise(name, Phase::backward, group, OpSplit::sequence, OpKind::norm, OpImpl::layernorm_bwd, {dy, x, n.gamma, n.mean, n.rstd},
                {dx, "d." + n.gamma, "d." + n.beta}, 1, n.rows, n.width, fc::kLayerNormBwd * elems,
                3 * elems + 3.0 * D(n.width));
  } else {
    B.pointwise(name, Phase::backward, group, OpSplit::sequence, OpKind::norm, OpImpl::rmsnorm_bwd, {dy, x, n.gamma, n.rstd},
                {dx, "d." + n.gamma}, 1, n.rows, n.width, fc::kRmsNormBwd * elems, 3 * elems + 2.0 * D(n.width));
  }
}

}  // namespace flopscope::graph_detail
