// The graph builder's internals, shared by the block files (norm.cpp, attention.cpp, mlp.cpp,
// head.cpp, fp8.cpp) and the layer's assembly (layer.cpp); nothing outside src/graph includes
// it. The Builder appends tensors and ops and keeps their bookkeeping (minimum bytes, model
// FLOPs, causal blocks) in one place, so a block only says what it computes.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "graph/graph.hpp"

namespace flopscope::graph_detail {

namespace fc = flop_convention;

// Weights a block owns, in declaration order: name, shape and how a parallel layout splits it
// (WeightSplit, always given). The layer declares them, then their gradients "d." + name
// (split as the weight), so every weight comes before every weight gradient.
struct WeightDecl {
  std::string name;
  std::vector<int64_t> shape;
  WeightSplit split;
  bool expert = false;  // a routed expert's (TensorSpec::expert)
};
using TensorList = std::vector<WeightDecl>;

inline double D(int64_t v) { return static_cast<double>(v); }

class Builder {
 public:
  // Guards every product the backends will form from the shape (T d_ff, b h s^2, T vocab, ...).
  Builder(const LayerShape& s, const GraphOptions& o);

  void tensor(std::string name, TensorRole role, std::vector<int64_t> shape);
  // A block's weight and its gradient "d." + name.
  void weight(const WeightDecl& w);
  void weight_grad(const WeightDecl& w);

  // A linear layer's GEMM (or its dgrad/wgrad): plain row-major, contiguous operands.
  void linear(std::string name, Phase phase, Group group, int64_t m, int64_t n, int64_t k, bool ta, bool tb,
              std::string a, std::string b, std::string c, double beta = 0.0);

  // A grouped GEMM over `experts` problems (GemmSpec::grouped): m_rows (forward, dgrad: m the
  // stacked rows of all experts, B per expert) or k_rows (wgrad: k the stacked rows, C per
  // expert); `counts` the tensor of each expert's rows.
  void grouped_linear(std::string name, Phase phase, Group group, Grouped grouped, int64_t experts, int64_t m, int64_t n,
                      int64_t k, bool ta, bool tb, std::string a, std::string b, std::string c, std::string counts, double beta = 0.0);

  void add_gemm(std::string name, Phase phase, Group group, OpKind kind, GemmSpec gs, bool causal_square);

  // A non-GEMM op, split over tp as `split` says (Op::split). `elements` is what the FLOP
  // convention multiplies; `bytes_elems` the elements read plus written.
  void pointwise(std::string name, Phase phase, Group group, OpSplit split, OpKind kind, OpImpl impl, std::vector<std::string> in,
                 std::vector<std::string> out, int64_t batch, int64_t rows, int64_t cols, double flops,
                 double bytes_elems);

  LayerGraph take() { return std::move(g_); }
  Op& last() { return g_.ops.back(); }
  size_t op_count() const { return g_.ops.size(); }
  // Op::attention_core on every op appended since op_count() was `first`.
  void mark_attention_core(size_t first) {
    for (size_t i = first; i < g_.ops.size(); ++i) g_.ops[i].attention_core = true;
  }
  const LayerShape& s() const { return s_; }

 private:
  LayerShape s_;
  double eb_;
  LayerGraph g_;
};

// The sizes of the layer's shape. Grouped-query attention: h query heads in h_kv groups of
// g = h / h_kv; each group shares one K and one V head. The layer's assembly reads its blocks'
// sizes from here; the blocks themselves take theirs as parameters.
struct Dims {
  int64_t b, T, d, f, h, hk, g, dh, S, dq, dkv, w, bh, V;
  double Td, Tf;
  explicit Dims(const LayerShape& s)
      : b(s.batch), T(s.tokens()), d(s.d_model), f(s.d_ff), h(s.n_heads), hk(s.kv_heads()), g(s.n_heads / s.kv_heads()),
        dh(s.d_head), S(s.seq), dq(s.n_heads * s.d_head), dkv(s.kv_heads() * s.d_head),
        w((s.n_heads / s.kv_heads() + 2) * s.kv_heads() * s.d_head), bh(s.batch * s.n_heads), V(s.vocab) {
    Td = D(T) * D(d);
    Tf = D(T) * D(f);
  }
};

}  // namespace flopscope::graph_detail
