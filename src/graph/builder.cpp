#include "graph/builder.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "util/error.hpp"
#include "util/parse.hpp"

namespace flopscope::graph_detail {

Builder::Builder(const LayerShape& s, const GraphOptions& o)
    : s_(s), eb_(static_cast<double>(element_bytes(o.precision))) {
  g_.shape = s;
  g_.options = o;
  int64_t t = checked_mul(s.batch, s.seq, "batch x seq");
  const int64_t fused_width =
      checked_mul(checked_mul(s.kv_heads(), s.n_heads / s.kv_heads() + 2, "QKV width"), s.d_head, "QKV width");
  // MLA's assembled qkv: h (2 (nope + rope) + v).
  const int64_t qkv_width =
      s.mla() ? std::max(fused_width, checked_mul(s.n_heads, 2 * s.d_head + s.v_head, "MLA QKV width")) : fused_width;
  checked_mul(t, std::max({s.d_ff, 3 * s.d_model, s.vocab, qkv_width}), "tokens x width");
  checked_mul(checked_mul(s.batch * s.n_heads, s.seq, "attention scores"), s.seq, "attention scores");
  checked_mul(s.d_model, std::max({s.d_ff, s.vocab, qkv_width}), "weight size");
  if (s.moe()) {
    const int64_t routed = checked_mul(t, s.top_k, "tokens x top-k");
    checked_mul(routed, std::max({s.d_model, s.d_ff_expert}), "routed rows x width");
    checked_mul(t, std::max(s.n_experts, checked_mul(s.n_shared, s.d_ff_shared, "shared experts' width")), "tokens x experts");
    checked_mul(checked_mul(s.n_experts, s.d_model, "experts' weights"), s.d_ff_expert, "experts' weights");
  }
}

void Builder::tensor(std::string name, TensorRole role, std::vector<int64_t> shape) {
  g_.tensors.push_back({std::move(name), role, std::move(shape)});
}

void Builder::weight(const WeightDecl& w) {
  g_.tensors.push_back({w.name, TensorRole::weight, w.shape, w.split, w.expert});
}

void Builder::weight_grad(const WeightDecl& w) {
  g_.tensors.push_back({"d." + w.name, TensorRole::weight_grad, w.shape, w.split, w.expert});
}

namespace {

// A linear layer's product as stored: row-major, contiguous operands, leading dimensions the
// plain ones.
GemmSpec linear_spec(int64_t m, int64_t n, int64_t k, bool ta, bool tb, std::string a, std::string b, std::string c,
                     double beta) {
  GemmSpec gs;
  gs.m = m;
  gs.n = n;
  gs.k = k;
  gs.trans_a = ta;
  gs.trans_b = tb;
  gs.a = std::move(a);
  gs.b = std::move(b);
  gs.c = std::move(c);
  gs.lda = ta ? m : k;
  gs.ldb = tb ? k : n;
  gs.ldc = n;
  gs.beta = beta;
  gs.linear = true;
  return gs;
}

}  // namespace

void Builder::linear(std::string name, Phase phase, Group group, int64_t m, int64_t n, int64_t k, bool ta, bool tb,
                     std::string a, std::string b, std::string c, double beta) {
  add_gemm(std::move(name), phase, group, OpKind::gemm,
           linear_spec(m, n, k, ta, tb, std::move(a), std::move(b), std::move(c), beta), false);
}

void Builder::grouped_linear(std::string name, Phase phase, Group group, Grouped grouped, int64_t experts, int64_t m,
                             int64_t n, int64_t k, bool ta, bool tb, std::string a, std::string b, std::string c,
                             std::string counts, double beta) {
  // Stacked operands hold the grouped rows; each expert's own (B for m_rows, C for k_rows) is
  // one (k, n) or (m, n) matrix, so the leading dimensions are the plain ones.
  GemmSpec gs = linear_spec(m, n, k, ta, tb, std::move(a), std::move(b), std::move(c), beta);
  gs.batch = experts;
  if (grouped == Grouped::m_rows)
    gs.stride_b = k * n;
  else
    gs.stride_c = m * n;
  gs.grouped = grouped;
  gs.group_counts = std::move(counts);
  gs.drops = s_.router.capacity > 0;
  add_gemm(std::move(name), phase, group, OpKind::gemm, gs, false);
}

void Builder::add_gemm(std::string name, Phase phase, Group group, OpKind kind, GemmSpec gs, bool causal_square) {
  Op op;
  op.name = std::move(name);
  op.phase = phase;
  op.group = group;
  op.kind = kind;
  op.impl = OpImpl::gemm;
  op.precision = g_.options.precision;
  op.gemm = std::move(gs);
  if (op.gemm.triangle != Triangle::none) {
    FLOPSCOPE_CHECK(op.gemm.m == (op.gemm.triangle == Triangle::c_lower ? op.gemm.n : op.gemm.k) &&
                        op.gemm.beta == 0 && (op.gemm.triangle != Triangle::c_lower || op.gemm.repeat_beta == 0),
                    op.name + ": a triangular product needs its square side m and beta 0 (c_lower: for every repeat)");
    op.gemm.causal_block = g_.options.causal_block;
  }
  op.flops = op.gemm.flops();
  // Model FLOPs of an attention product: the mask's area of its square (docs/method.md): half
  // the square when causal (Megatron-LM), the band or the chunks' triangles under a mask.
  const double side = static_cast<double>(op.gemm.m);
  op.model_flops = !causal_square         ? op.flops
                   : op.gemm.mask.any()   ? op.gemm.full_flops() * (op.gemm.mask.model_area(op.gemm.m) / (side * side))
                                          : op.gemm.full_flops() / 2;
  op.causal_square = causal_square;
  // Blocked: the square operand (C for c_lower, A otherwise) is touched in the blocks only.
  const double touched = op.flops / op.gemm.full_flops();
  const double a_part = op.gemm.blocked() && op.gemm.triangle != Triangle::c_lower ? touched : 1.0;
  const double c_part = op.gemm.blocked() && op.gemm.triangle == Triangle::c_lower ? touched : 1.0;
  const double batch = static_cast<double>(op.gemm.batch);
  const double m = static_cast<double>(op.gemm.m), n = static_cast<double>(op.gemm.n), k = static_cast<double>(op.gemm.k);
  // Repeats: an operand that moves between repeats is read (or written) once per repeat;
  // one that stays (K, V, or a C the repeats sum into) once.
  const auto distinct = [&](int64_t repeat_stride) {
    return repeat_stride != 0 ? static_cast<double>(op.gemm.repeat) : 1.0;
  };
  if (op.gemm.grouped == Grouped::m_rows)  // the stacked A and C once, every expert's B
    op.min_bytes = (m * k + batch * k * n + m * n * (op.gemm.beta != 0 ? 2 : 1)) * eb_;
  else if (op.gemm.grouped == Grouped::k_rows)  // the stacked A and B once, every expert's C
    op.min_bytes = (m * k + k * n + batch * m * n * (op.gemm.beta != 0 ? 2 : 1)) * eb_;
  else
    op.min_bytes = batch *
                   (m * k * distinct(op.gemm.repeat_a) * a_part + k * n * distinct(op.gemm.repeat_b) +
                    m * n * distinct(op.gemm.repeat_c) * (op.gemm.beta != 0 ? 2 : 1) * c_part) *
                   eb_;
  g_.ops.push_back(std::move(op));
}

void Builder::pointwise(std::string name, Phase phase, Group group, OpSplit split, OpKind kind, OpImpl impl,
                        std::vector<std::string> in, std::vector<std::string> out, int64_t batch, int64_t rows,
                        int64_t cols, double flops, double bytes_elems) {
  Op op;
  op.name = std::move(name);
  op.phase = phase;
  op.group = group;
  op.split = split;
  op.kind = kind;
  op.impl = impl;
  op.precision = g_.options.precision;
  op.inputs = std::move(in);
  op.outputs = std::move(out);
  op.batch = batch;
  op.rows = rows;
  op.cols = cols;
  op.flops = flops;
  op.model_flops = flops;
  op.min_bytes = bytes_elems * eb_;
  g_.ops.push_back(std::move(op));
}

}  // namespace flopscope::graph_detail
