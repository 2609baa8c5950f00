// The LM head, after the last layer: y -> final norm -> logits = (T, d) x w_vocab (d, V) ->
// per-row softmax cross-entropy against the targets (T,). Backward: dlogits = (softmax -
// onehot) / T, the logits' dgrad and wgrad, the norm's backward into the layer's output
// gradient. The output embedding is its own weight when untied; when tied it is the token
// embedding's, whose other use (the lookup) is not part of the layer: the ops are the same.
#include "graph/blocks.hpp"

namespace flopscope::graph_detail {

void head_tensors(Builder& B, const HeadBlock& h) {
  using R = TensorRole;
  TensorList weights;
  norm_weights(h.norm, weights);
  weights.push_back({h.w_vocab, {h.d, h.vocab}, WeightSplit::column});  // by vocabulary
  for (const auto& w : weights) B.weight(w);
  for (const auto& w : weights) B.weight_grad(w);
  norm_forward_tensors(B, h.norm);
  B.tensor(h.logits, R::activation, {h.rows, h.vocab});
  B.tensor(h.targets, R::index, {h.rows});
  B.tensor(h.loss, R::activation, {h.rows});
  B.tensor("d." + h.logits, R::gradient, {h.rows, h.vocab});
  B.tensor("d." + h.norm.out, R::gradient, {h.rows, h.d});
}

void head_fwd(Builder& B, const HeadBlock& h) {
  const Group H = Group::head;
  const Phase F = Phase::forward;
  const double TV = D(h.rows) * D(h.vocab);
  norm_fwd(B, h.norm, "fwd.head.ln", F, H, h.in);
  B.linear("fwd.head.logits", F, H, h.rows, h.vocab, h.d, false, false, h.norm.out, h.w_vocab, h.logits);
  B.pointwise("fwd.head.loss", F, H, OpSplit::features, OpKind::softmax, OpImpl::cross_entropy_fwd, {h.logits, h.targets}, {h.loss}, 1,
              h.rows, h.vocab, fc::kCrossEntropyFwd * TV, TV + 2.0 * D(h.rows));
}

void head_bwd(Builder& B, const HeadBlock& h) {
  const Group H = Group::head;
  const Phase BW = Phase::backward;
  const double TV = D(h.rows) * D(h.vocab);
  const std::string d_logits = "d." + h.logits, d_norm = "d." + h.norm.out;
  B.pointwise("bwd.head.loss", BW, H, OpSplit::features, OpKind::softmax, OpImpl::cross_entropy_bwd, {h.logits, h.targets}, {d_logits}, 1,
              h.rows, h.vocab, fc::kCrossEntropyBwd * TV, 2 * TV + D(h.rows));
  B.linear("bwd.head.logits.dgrad", BW, H, h.rows, h.d, h.vocab, false, true, d_logits, h.w_vocab, d_norm);
  B.linear("bwd.head.logits.wgrad", BW, H, h.d, h.vocab, h.rows, true, false, h.norm.out, d_logits, "d." + h.w_vocab);
  norm_bwd(B, h.norm, "bwd.head.ln", H, d_norm, h.in, h.d_in);
}

}  // namespace flopscope::graph_detail
