#include "graph/graph.hpp"

#include <algorithm>
#include <cmath>
#include <set>

#include <fmt/format.h>

#include "util/error.hpp"
#include "util/parse.hpp"

namespace flopscope {

std::string_view to_string(Precision p) {
  switch (p) {
    case Precision::fp64: return "fp64";
    case Precision::fp32: return "fp32";
    case Precision::tf32: return "tf32";
    case Precision::fp16: return "fp16";
    case Precision::bf16: return "bf16";
    case Precision::fp8: return "fp8";
  }
  return "?";
}

Precision parse_precision(std::string_view text) {
  for (Precision p : {Precision::fp64, Precision::fp32, Precision::tf32, Precision::fp16, Precision::bf16, Precision::fp8})
    if (text == to_string(p)) return p;
  throw UsageError(fmt::format("--precision: unknown precision '{}'; choose fp64, fp32, tf32, fp16, bf16 or fp8", text));
}

int64_t element_bytes(Precision p) {
  switch (p) {
    case Precision::fp64: return 8;
    case Precision::fp32:
    case Precision::tf32: return 4;
    case Precision::fp16:
    case Precision::bf16:
    case Precision::fp8: return 2;
  }
  return 4;
}

std::string_view to_string(Phase p) {
  switch (p) {
    case Phase::forward: return "forward";
    case Phase::backward: return "backward";
    case Phase::recompute: return "recompute";
  }
  return "?";
}

std::string_view to_string(OpKind k) {
  switch (k) {
    case OpKind::gemm: return "gemm";
    case OpKind::batched_gemm: return "batched_gemm";
    case OpKind::norm: return "norm";
    case OpKind::softmax: return "softmax";
    case OpKind::elementwise: return "elementwise";
    case OpKind::reduction: return "reduction";
  }
  return "?";
}

std::string_view to_string(Group g) { return g == Group::layer ? "layer" : "head"; }

std::string_view to_string(OpImpl i) {
  switch (i) {
    case OpImpl::gemm: return "gemm";
    case OpImpl::layernorm_fwd: return "layernorm_fwd";
    case OpImpl::layernorm_bwd: return "layernorm_bwd";
    case OpImpl::softmax_causal_fwd: return "softmax_causal_fwd";
    case OpImpl::softmax_causal_bwd: return "softmax_causal_bwd";
    case OpImpl::gelu_fwd: return "gelu_fwd";
    case OpImpl::gelu_bwd: return "gelu_bwd";
    case OpImpl::bias_add: return "bias_add";
    case OpImpl::bias_grad: return "bias_grad";
    case OpImpl::residual_add: return "residual_add";
    case OpImpl::cross_entropy_fwd: return "cross_entropy_fwd";
    case OpImpl::cross_entropy_bwd: return "cross_entropy_bwd";
    case OpImpl::cast_fp8: return "cast_fp8";
  }
  return "?";
}

std::string_view to_string(TensorRole r) {
  switch (r) {
    case TensorRole::input: return "input";
    case TensorRole::weight: return "weight";
    case TensorRole::activation: return "activation";
    case TensorRole::statistic: return "statistic";
    case TensorRole::gradient: return "gradient";
    case TensorRole::weight_grad: return "weight_grad";
    case TensorRole::index: return "index";
    case TensorRole::fp8_copy: return "fp8_copy";
  }
  return "?";
}

int64_t TensorSpec::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n = checked_mul(n, d, fmt::format("tensor {}", name));
  return n;
}

std::string Op::shape_str() const {
  if (impl == OpImpl::gemm) {
    auto mnk = fmt::format("{}x{}x{}", gemm.m, gemm.n, gemm.k);
    return gemm.batch > 1 ? fmt::format("{}x[{}]", gemm.batch, mnk) : mnk;
  }
  auto rc = fmt::format("{}x{}", rows, cols);
  return batch > 1 ? fmt::format("{}x[{}]", batch, rc) : rc;
}

LayerShape layer_shape(const ModelConfig& m, int64_t batch, int64_t seq) {
  LayerShape s;
  s.batch = batch;
  s.seq = seq;
  s.d_model = m.d_model;
  s.n_heads = m.n_heads;
  s.d_head = m.d_head;
  s.d_ff = m.d_ff();
  s.vocab = m.vocab;
  s.n_kv_heads = m.n_kv_heads;
  s.norm = m.norm;
  s.ffn = m.ffn;
  s.position = m.position;
  s.rope_theta = m.rope_theta;
  s.biases = m.biases;
  s.tied_embeddings = m.tied_embeddings;
  return s;
}

LayerShape layer_shape(int64_t batch, int64_t seq, int64_t heads, int64_t d_head, int64_t vocab, int64_t ffn_mult) {
  LayerShape s;
  s.batch = batch;
  s.seq = seq;
  s.n_heads = heads;
  s.d_head = d_head;
  s.d_model = heads * d_head;
  s.d_ff = ffn_mult * s.d_model;
  s.vocab = vocab;
  return s;
}

const TensorSpec& LayerGraph::tensor(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.name == name) return t;
  throw Error(fmt::format("graph has no tensor '{}'", name));
}

const Op& LayerGraph::op(const std::string& name) const {
  for (const auto& o : ops)
    if (o.name == name) return o;
  throw Error(fmt::format("graph has no op '{}'", name));
}

double LayerGraph::total_flops(Phase p) const {
  double s = 0;
  for (const auto& o : ops)
    if (o.phase == p) s += o.flops;
  return s;
}

double LayerGraph::total_model_flops(Phase p) const {
  double s = 0;
  for (const auto& o : ops)
    if (o.phase == p) s += o.model_flops;
  return s;
}

double LayerGraph::gemm_flops(Phase p, Group g) const {
  double s = 0;
  for (const auto& o : ops)
    if (o.phase == p && o.group == g && o.impl == OpImpl::gemm) s += o.flops;
  return s;
}

double LayerGraph::tensor_bytes() const {
  double bytes = 0;
  int64_t eb = element_bytes(options.precision);
  for (const auto& t : tensors) {
    // Statistics (layernorm mean, rstd) and indices are kept in 4 bytes (8 in fp64 runs).
    int64_t b = (t.role == TensorRole::statistic || t.role == TensorRole::index) ? std::max<int64_t>(4, eb)
                : t.role == TensorRole::fp8_copy                                  ? 1
                                                                                  : eb;
    const double copies = is_filled(t.role) ? static_cast<double>(options.input_sets) : 1.0;
    bytes += static_cast<double>(t.numel()) * static_cast<double>(b) * copies;
  }
  return bytes;
}

namespace {

// Builds ops and tensors; keeps the bookkeeping (bytes, model FLOPs) in one place.
class Builder {
 public:
  Builder(const LayerShape& s, const GraphOptions& o) : s_(s), eb_(static_cast<double>(element_bytes(o.precision))) {
    g_.shape = s;
    g_.options = o;
    // Guard every product the backends will form: T * d_ff, b * h * s * s, T * vocab.
    int64_t t = checked_mul(s.batch, s.seq, "batch x seq");
    checked_mul(t, std::max({s.d_ff, 3 * s.d_model, s.vocab}), "tokens x width");
    checked_mul(checked_mul(s.batch * s.n_heads, s.seq, "attention scores"), s.seq, "attention scores");
    checked_mul(s.d_model, std::max(s.d_ff, s.vocab), "weight size");
  }

  void tensor(std::string name, TensorRole role, std::vector<int64_t> shape) {
    g_.tensors.push_back({std::move(name), role, std::move(shape)});
  }

  // A linear layer's GEMM (or its dgrad/wgrad): plain row-major, contiguous operands.
  void linear(std::string name, Phase phase, Group group, int64_t m, int64_t n, int64_t k, bool ta, bool tb,
              std::string a, std::string b, std::string c) {
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
    gs.linear = true;
    add_gemm(std::move(name), phase, group, OpKind::gemm, gs, false);
  }

  void add_gemm(std::string name, Phase phase, Group group, OpKind kind, GemmSpec gs, bool causal_square) {
    Op op;
    op.name = std::move(name);
    op.phase = phase;
    op.group = group;
    op.kind = kind;
    op.impl = OpImpl::gemm;
    op.precision = g_.options.precision;
    op.gemm = std::move(gs);
    op.flops = op.gemm.flops();
    op.model_flops = causal_square ? op.flops / 2 : op.flops;
    op.causal_square = causal_square;
    const double batch = static_cast<double>(op.gemm.batch);
    const double m = static_cast<double>(op.gemm.m), n = static_cast<double>(op.gemm.n), k = static_cast<double>(op.gemm.k);
    op.min_bytes = batch * (m * k + k * n + m * n * (op.gemm.beta != 0 ? 2 : 1)) * eb_;
    g_.ops.push_back(std::move(op));
  }

  // A non-GEMM op. `elements` is what the FLOP convention multiplies; `bytes_elems` the
  // elements read plus written.
  void pointwise(std::string name, Phase phase, Group group, OpKind kind, OpImpl impl, std::vector<std::string> in,
                 std::vector<std::string> out, int64_t batch, int64_t rows, int64_t cols, double flops, double bytes_elems) {
    Op op;
    op.name = std::move(name);
    op.phase = phase;
    op.group = group;
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

  LayerGraph take() { return std::move(g_); }
  const LayerShape& s() const { return s_; }

 private:
  LayerShape s_;
  double eb_;
  LayerGraph g_;
};

namespace fc = flop_convention;

// The layer's forward ops. `prefix` is "fwd" or "rec" (recompute inside backward).
void forward_ops(Builder& B, const std::string& prefix, Phase phase) {
  const auto& s = B.s();
  const int64_t T = s.tokens(), d = s.d_model, f = s.d_ff, h = s.n_heads, dh = s.d_head, S = s.seq,
                bh = s.batch * s.n_heads;
  const double Td = static_cast<double>(T) * static_cast<double>(d);
  const double Tf = static_cast<double>(T) * static_cast<double>(f);
  const double causal = static_cast<double>(bh) * static_cast<double>(S) * static_cast<double>(S + 1) / 2;
  const double square = static_cast<double>(bh) * static_cast<double>(S) * static_cast<double>(S);
  const Group L = Group::layer;
  auto n = [&](const char* suffix) { return prefix + "." + suffix; };

  B.pointwise(n("ln1"), phase, L, OpKind::norm, OpImpl::layernorm_fwd, {"x", "ln1.gamma", "ln1.beta"},
              {"ln1.out", "ln1.mean", "ln1.rstd"}, 1, T, d, fc::kLayerNormFwd * Td, 2 * Td + 2.0 * d);
  B.linear(n("qkv"), phase, L, T, 3 * d, d, false, false, "ln1.out", "w.qkv", "qkv");
  B.pointwise(n("qkv.bias"), phase, L, OpKind::elementwise, OpImpl::bias_add, {"qkv", "b.qkv"}, {"qkv"}, 1, T, 3 * d,
              fc::kBiasAdd * 3 * Td, 6 * Td + 3.0 * d);
  {
    // S_i = (1/sqrt(dh)) Q_i K_i^T for i = bi*h + hi: Q_i is (s, dh) at qkv + i*3dh, rows b*3d apart.
    GemmSpec g;
    g.m = S, g.n = S, g.k = dh, g.batch = bh;
    g.trans_b = true;
    g.a = "qkv", g.a_offset = 0, g.lda = s.batch * 3 * d, g.stride_a = 3 * dh;
    g.b = "qkv", g.b_offset = dh, g.ldb = s.batch * 3 * d, g.stride_b = 3 * dh;
    g.c = "att.scores", g.ldc = S, g.stride_c = S * S;
    g.alpha = 1.0 / std::sqrt(static_cast<double>(dh));
    B.add_gemm(n("attn.scores"), phase, L, OpKind::batched_gemm, g, true);
  }
  B.pointwise(n("attn.softmax"), phase, L, OpKind::softmax, OpImpl::softmax_causal_fwd, {"att.scores"},
              {"att.probs"}, bh, S, S, fc::kSoftmaxFwd * causal, 2 * square);
  {
    // O_i = P_i V_i: P_i (s, s); V_i (s, dh) at qkv + 2dh + i*3dh; O_i at ctx + i*dh, rows b*d apart.
    GemmSpec g;
    g.m = S, g.n = dh, g.k = S, g.batch = bh;
    g.a = "att.probs", g.lda = S, g.stride_a = S * S;
    g.b = "qkv", g.b_offset = 2 * dh, g.ldb = s.batch * 3 * d, g.stride_b = 3 * dh;
    g.c = "ctx", g.ldc = s.batch * d, g.stride_c = dh;
    B.add_gemm(n("attn.context"), phase, L, OpKind::batched_gemm, g, true);
  }
  B.linear(n("proj"), phase, L, T, d, d, false, false, "ctx", "w.proj", "proj.out");
  B.pointwise(n("proj.bias"), phase, L, OpKind::elementwise, OpImpl::bias_add, {"proj.out", "b.proj"}, {"proj.out"},
              1, T, d, fc::kBiasAdd * Td, 2 * Td + static_cast<double>(d));
  B.pointwise(n("residual1"), phase, L, OpKind::elementwise, OpImpl::residual_add, {"x", "proj.out"}, {"x1"}, 1, T, d,
              fc::kResidualAdd * Td, 3 * Td);
  B.pointwise(n("ln2"), phase, L, OpKind::norm, OpImpl::layernorm_fwd, {"x1", "ln2.gamma", "ln2.beta"},
              {"ln2.out", "ln2.mean", "ln2.rstd"}, 1, T, d, fc::kLayerNormFwd * Td, 2 * Td + 2.0 * d);
  B.linear(n("ffn.up"), phase, L, T, f, d, false, false, "ln2.out", "w.up", "up.out");
  B.pointwise(n("ffn.up.bias"), phase, L, OpKind::elementwise, OpImpl::bias_add, {"up.out", "b.up"}, {"up.out"}, 1, T,
              f, fc::kBiasAdd * Tf, 2 * Tf + static_cast<double>(f));
  B.pointwise(n("gelu"), phase, L, OpKind::elementwise, OpImpl::gelu_fwd, {"up.out"}, {"gelu.out"}, 1, T, f,
              fc::kGeluFwd * Tf, 2 * Tf);
  B.linear(n("ffn.down"), phase, L, T, d, f, false, false, "gelu.out", "w.down", "down.out");
  B.pointwise(n("ffn.down.bias"), phase, L, OpKind::elementwise, OpImpl::bias_add, {"down.out", "b.down"},
              {"down.out"}, 1, T, d, fc::kBiasAdd * Td, 2 * Td + static_cast<double>(d));
  B.pointwise(n("residual2"), phase, L, OpKind::elementwise, OpImpl::residual_add, {"x1", "down.out"}, {"y"}, 1, T, d,
              fc::kResidualAdd * Td, 3 * Td);
  (void)h;
}

// --precision fp8: gives every linear-layer GEMM of the layer FP8 E4M3 operands. cuBLASLt's
// FP8 GEMMs on Hopper take both operands K-major ("TN"): in our row-major terms A stored
// (m, k) and B stored (n, k). Each operand gets a copy in that layout -- cast as is, or cast
// and transposed -- made by a cast_fp8 op just before the GEMM, unless the same copy was made
// earlier and its source has not been written since. Other ops run in bf16.
void lower_linear_gemms_to_fp8(LayerGraph& g) {
  const LayerShape& s = g.shape;
  const int64_t T = s.tokens();
  if (T % 16 != 0 || s.d_model % 16 != 0 || s.d_ff % 16 != 0)
    throw UsageError(fmt::format("--precision fp8: cuBLASLt's FP8 GEMMs need tokens (batch x seq), d_model and d_ff to "
                                 "be multiples of 16; this layer has {}, {} and {}",
                                 T, s.d_model, s.d_ff));
  const double eb = static_cast<double>(element_bytes(Precision::bf16));
  std::vector<Op> out;
  std::set<std::string> valid;  // copies whose source has not been written since they were made
  auto written = [&](const std::string& t) {
    valid.erase(t + ".e4m3");
    valid.erase(t + ".e4m3t");
  };
  for (Op op : g.ops) {
    if (op.impl == OpImpl::gemm && op.gemm.linear && op.group == Group::layer) {
      GemmSpec& gs = op.gemm;
      FLOPSCOPE_CHECK(gs.batch == 1 && gs.a_offset == 0 && gs.b_offset == 0, op.name + ": linear GEMMs are plain");
      // Operand `src` stored (rows, cols); K-major when its columns are k.
      auto copy = [&](const std::string& src, int64_t rows, int64_t cols, bool transpose, const char* which) {
        const std::string name = src + (transpose ? ".e4m3t" : ".e4m3");
        if (!valid.count(name)) {
          bool exists = false;
          for (const auto& t : g.tensors) exists |= t.name == name;
          if (!exists)
            g.tensors.push_back({name, TensorRole::fp8_copy, transpose ? std::vector<int64_t>{cols, rows}
                                                                         : std::vector<int64_t>{rows, cols}});
          Op c;
          c.name = op.name + "." + which;
          c.phase = op.phase;
          c.group = op.group;
          c.kind = OpKind::elementwise;
          c.impl = OpImpl::cast_fp8;
          c.precision = Precision::fp8;
          c.inputs = {src};
          c.outputs = {name};
          c.rows = rows;
          c.cols = cols;
          c.transpose = transpose;
          const double n = static_cast<double>(rows) * static_cast<double>(cols);
          c.flops = c.model_flops = flop_convention::kCastFp8 * n;
          c.min_bytes = n * (eb + 1);
          out.push_back(std::move(c));
          valid.insert(name);
        }
        return name;
      };
      // A: (m, k) as stored unless trans_a (stored (k, m)); B: (n, k) when trans_b, else stored (k, n).
      gs.a = gs.trans_a ? copy(gs.a, gs.k, gs.m, true, "cast_a") : copy(gs.a, gs.m, gs.k, false, "cast_a");
      gs.b = gs.trans_b ? copy(gs.b, gs.n, gs.k, false, "cast_b") : copy(gs.b, gs.k, gs.n, true, "cast_b");
      gs.trans_a = false;
      gs.trans_b = true;
      gs.lda = gs.k;
      gs.ldb = gs.k;
      op.precision = Precision::fp8;
      const double m = static_cast<double>(gs.m), n = static_cast<double>(gs.n), k = static_cast<double>(gs.k);
      op.min_bytes = (m * k + n * k) * 1 + m * n * eb * (gs.beta != 0 ? 2 : 1);
    } else {
      op.precision = Precision::bf16;
    }
    if (op.impl == OpImpl::gemm) written(op.gemm.c);
    for (const auto& t : op.outputs) written(t);
    out.push_back(std::move(op));
  }
  g.ops = std::move(out);
}

}  // namespace

LayerGraph build_layer_graph(const LayerShape& s, const GraphOptions& o) {
  FLOPSCOPE_CHECK(s.batch > 0 && s.seq > 0 && s.d_model > 0 && s.n_heads > 0 && s.d_head > 0 && s.d_ff > 0,
                  "layer shape has a zero dimension");
  FLOPSCOPE_CHECK(s.n_heads * s.d_head == s.d_model, "heads x d_head must equal d_model");
  FLOPSCOPE_CHECK(o.input_sets >= 1, "input sets must be at least 1");
  Builder B(s, o);
  const int64_t T = s.tokens(), d = s.d_model, f = s.d_ff, dh = s.d_head, S = s.seq, bh = s.batch * s.n_heads,
                V = s.vocab;
  const double Td = static_cast<double>(T) * static_cast<double>(d);
  const double Tf = static_cast<double>(T) * static_cast<double>(f);
  const double causal = static_cast<double>(bh) * static_cast<double>(S) * static_cast<double>(S + 1) / 2;
  const double square = static_cast<double>(bh) * static_cast<double>(S) * static_cast<double>(S);
  using R = TensorRole;

  // ---- tensors ------------------------------------------------------------------------
  B.tensor("x", R::input, {T, d});  // layer input, (s, b, d) flattened to (T, d)
  for (const char* ln : {"ln1", "ln2"}) {
    B.tensor(std::string(ln) + ".gamma", R::weight, {d});
    B.tensor(std::string(ln) + ".beta", R::weight, {d});
  }
  B.tensor("w.qkv", R::weight, {d, 3 * d});  // (d, 3d), columns interleaved per head (h, 3, dh)
  B.tensor("b.qkv", R::weight, {3 * d});
  B.tensor("w.proj", R::weight, {d, d});
  B.tensor("b.proj", R::weight, {d});
  B.tensor("w.up", R::weight, {d, f});
  B.tensor("b.up", R::weight, {f});
  B.tensor("w.down", R::weight, {f, d});
  B.tensor("b.down", R::weight, {d});
  for (const char* w : {"ln1.gamma", "ln1.beta", "ln2.gamma", "ln2.beta", "w.qkv", "b.qkv", "w.proj", "b.proj",
                        "w.up", "b.up", "w.down", "b.down"}) {
    B.tensor(std::string("d.") + w, R::weight_grad, {});  // shape filled below
  }
  B.tensor("ln1.out", R::activation, {T, d});
  B.tensor("ln1.mean", R::statistic, {T});
  B.tensor("ln1.rstd", R::statistic, {T});
  B.tensor("qkv", R::activation, {T, 3 * d});          // (s, b, h, 3, dh)
  B.tensor("att.scores", R::activation, {bh, S, S});   // scaled Q K^T
  B.tensor("att.probs", R::activation, {bh, S, S});    // causal softmax
  B.tensor("ctx", R::activation, {T, d});              // (s, b, h, dh)
  B.tensor("proj.out", R::activation, {T, d});
  B.tensor("x1", R::activation, {T, d});
  B.tensor("ln2.out", R::activation, {T, d});
  B.tensor("ln2.mean", R::statistic, {T});
  B.tensor("ln2.rstd", R::statistic, {T});
  B.tensor("up.out", R::activation, {T, f});
  B.tensor("gelu.out", R::activation, {T, f});
  B.tensor("down.out", R::activation, {T, d});
  B.tensor("y", R::activation, {T, d});
  // Gradients. Without the head, d.y is the incoming gradient (an input filled at random).
  B.tensor("d.y", o.include_head ? R::gradient : R::input, {T, d});
  B.tensor("d.gelu.out", R::gradient, {T, f});
  B.tensor("d.up.out", R::gradient, {T, f});
  B.tensor("d.ln2.out", R::gradient, {T, d});
  B.tensor("d.x1.ln", R::gradient, {T, d});  // through ln2 only
  B.tensor("d.x1", R::gradient, {T, d});     // ln2 path + residual
  B.tensor("d.ctx", R::gradient, {T, d});
  B.tensor("d.att.probs", R::gradient, {bh, S, S});
  B.tensor("d.att.scores", R::gradient, {bh, S, S});
  B.tensor("d.qkv", R::gradient, {T, 3 * d});
  B.tensor("d.ln1.out", R::gradient, {T, d});
  B.tensor("d.x.ln", R::gradient, {T, d});  // through ln1 only
  B.tensor("d.x", R::gradient, {T, d});     // ln1 path + residual: the layer's input gradient
  if (o.include_head) {
    B.tensor("head.gamma", R::weight, {d});
    B.tensor("head.beta", R::weight, {d});
    B.tensor("w.vocab", R::weight, {d, V});  // untied output embedding, (d, V)
    B.tensor("d.head.gamma", R::weight_grad, {d});
    B.tensor("d.head.beta", R::weight_grad, {d});
    B.tensor("d.w.vocab", R::weight_grad, {d, V});
    B.tensor("head.ln.out", R::activation, {T, d});
    B.tensor("head.ln.mean", R::statistic, {T});
    B.tensor("head.ln.rstd", R::statistic, {T});
    B.tensor("logits", R::activation, {T, V});
    B.tensor("targets", R::index, {T});
    B.tensor("loss", R::activation, {T});
    B.tensor("d.logits", R::gradient, {T, V});
    B.tensor("d.head.ln.out", R::gradient, {T, d});
  }

  // ---- forward --------------------------------------------------------------------------
  forward_ops(B, "fwd", Phase::forward);

  const Group L = Group::layer, H = Group::head;
  const Phase F = Phase::forward, BW = Phase::backward;
  if (o.include_head) {
    const double TV = static_cast<double>(T) * static_cast<double>(V);
    B.pointwise("fwd.head.ln", F, H, OpKind::norm, OpImpl::layernorm_fwd, {"y", "head.gamma", "head.beta"},
                {"head.ln.out", "head.ln.mean", "head.ln.rstd"}, 1, T, d, fc::kLayerNormFwd * Td, 2 * Td + 2.0 * d);
    B.linear("fwd.head.logits", F, H, T, V, d, false, false, "head.ln.out", "w.vocab", "logits");
    B.pointwise("fwd.head.loss", F, H, OpKind::softmax, OpImpl::cross_entropy_fwd, {"logits", "targets"}, {"loss"}, 1,
                T, V, fc::kCrossEntropyFwd * TV, TV + 2.0 * static_cast<double>(T));
    B.pointwise("bwd.head.loss", BW, H, OpKind::softmax, OpImpl::cross_entropy_bwd, {"logits", "targets"},
                {"d.logits"}, 1, T, V, fc::kCrossEntropyBwd * TV, 2 * TV + static_cast<double>(T));
    B.linear("bwd.head.logits.dgrad", BW, H, T, d, V, false, true, "d.logits", "w.vocab", "d.head.ln.out");
    B.linear("bwd.head.logits.wgrad", BW, H, d, V, T, true, false, "head.ln.out", "d.logits", "d.w.vocab");
    B.pointwise("bwd.head.ln", BW, H, OpKind::norm, OpImpl::layernorm_bwd,
                {"d.head.ln.out", "y", "head.gamma", "head.ln.mean", "head.ln.rstd"},
                {"d.y", "d.head.gamma", "d.head.beta"}, 1, T, d, fc::kLayerNormBwd * Td, 3 * Td + 3.0 * d);
  }

  // ---- backward -------------------------------------------------------------------------
  if (o.recompute) forward_ops(B, "rec", Phase::recompute);

  // FFN down: y = x1 + down.out, down.out = gelu.out W_down + b_down.
  B.pointwise("bwd.ffn.down.bias", BW, L, OpKind::reduction, OpImpl::bias_grad, {"d.y"}, {"d.b.down"}, 1, T, d,
              fc::kBiasGrad * Td, Td + static_cast<double>(d));
  B.linear("bwd.ffn.down.dgrad", BW, L, T, f, d, false, true, "d.y", "w.down", "d.gelu.out");
  B.linear("bwd.ffn.down.wgrad", BW, L, f, d, T, true, false, "gelu.out", "d.y", "d.w.down");
  B.pointwise("bwd.gelu", BW, L, OpKind::elementwise, OpImpl::gelu_bwd, {"up.out", "d.gelu.out"}, {"d.up.out"}, 1, T,
              f, fc::kGeluBwd * Tf, 3 * Tf);
  B.pointwise("bwd.ffn.up.bias", BW, L, OpKind::reduction, OpImpl::bias_grad, {"d.up.out"}, {"d.b.up"}, 1, T, f,
              fc::kBiasGrad * Tf, Tf + static_cast<double>(f));
  B.linear("bwd.ffn.up.dgrad", BW, L, T, d, f, false, true, "d.up.out", "w.up", "d.ln2.out");
  B.linear("bwd.ffn.up.wgrad", BW, L, d, f, T, true, false, "ln2.out", "d.up.out", "d.w.up");
  B.pointwise("bwd.ln2", BW, L, OpKind::norm, OpImpl::layernorm_bwd, {"d.ln2.out", "x1", "ln2.gamma", "ln2.mean", "ln2.rstd"},
              {"d.x1.ln", "d.ln2.gamma", "d.ln2.beta"}, 1, T, d, fc::kLayerNormBwd * Td, 3 * Td + 3.0 * d);
  B.pointwise("bwd.residual2", BW, L, OpKind::elementwise, OpImpl::residual_add, {"d.y", "d.x1.ln"}, {"d.x1"}, 1, T, d,
              fc::kResidualAdd * Td, 3 * Td);
  // Attention output projection: x1 = x + proj.out, proj.out = ctx W_proj + b_proj.
  B.pointwise("bwd.proj.bias", BW, L, OpKind::reduction, OpImpl::bias_grad, {"d.x1"}, {"d.b.proj"}, 1, T, d,
              fc::kBiasGrad * Td, Td + static_cast<double>(d));
  B.linear("bwd.proj.dgrad", BW, L, T, d, d, false, true, "d.x1", "w.proj", "d.ctx");
  B.linear("bwd.proj.wgrad", BW, L, d, d, T, true, false, "ctx", "d.x1", "d.w.proj");
  {
    // dP_i = dO_i V_i^T: dO_i (s, dh) at d.ctx + i*dh; V_i (s, dh) at qkv + 2dh + i*3dh.
    GemmSpec g;
    g.m = S, g.n = S, g.k = dh, g.batch = bh;
    g.trans_b = true;
    g.a = "d.ctx", g.lda = s.batch * d, g.stride_a = dh;
    g.b = "qkv", g.b_offset = 2 * dh, g.ldb = s.batch * 3 * d, g.stride_b = 3 * dh;
    g.c = "d.att.probs", g.ldc = S, g.stride_c = S * S;
    B.add_gemm("bwd.attn.context.dprobs", BW, L, OpKind::batched_gemm, g, true);
  }
  {
    // dV_i = P_i^T dO_i, written into d.qkv's V slots.
    GemmSpec g;
    g.m = S, g.n = dh, g.k = S, g.batch = bh;
    g.trans_a = true;
    g.a = "att.probs", g.lda = S, g.stride_a = S * S;
    g.b = "d.ctx", g.ldb = s.batch * d, g.stride_b = dh;
    g.c = "d.qkv", g.c_offset = 2 * dh, g.ldc = s.batch * 3 * d, g.stride_c = 3 * dh;
    B.add_gemm("bwd.attn.context.dv", BW, L, OpKind::batched_gemm, g, true);
  }
  B.pointwise("bwd.attn.softmax", BW, L, OpKind::softmax, OpImpl::softmax_causal_bwd, {"att.probs", "d.att.probs"},
              {"d.att.scores"}, bh, S, S, fc::kSoftmaxBwd * causal, 3 * square);
  {
    // dQ_i = alpha dS_i K_i and dK_i = alpha dS_i^T Q_i, into d.qkv's Q and K slots.
    const double alpha = 1.0 / std::sqrt(static_cast<double>(dh));
    GemmSpec g;
    g.m = S, g.n = dh, g.k = S, g.batch = bh, g.alpha = alpha;
    g.a = "d.att.scores", g.lda = S, g.stride_a = S * S;
    g.b = "qkv", g.b_offset = dh, g.ldb = s.batch * 3 * d, g.stride_b = 3 * dh;
    g.c = "d.qkv", g.c_offset = 0, g.ldc = s.batch * 3 * d, g.stride_c = 3 * dh;
    B.add_gemm("bwd.attn.scores.dq", BW, L, OpKind::batched_gemm, g, true);
    g.trans_a = true;
    g.b_offset = 0;
    g.c_offset = dh;
    B.add_gemm("bwd.attn.scores.dk", BW, L, OpKind::batched_gemm, g, true);
  }
  B.pointwise("bwd.qkv.bias", BW, L, OpKind::reduction, OpImpl::bias_grad, {"d.qkv"}, {"d.b.qkv"}, 1, T, 3 * d,
              fc::kBiasGrad * 3 * Td, 3 * Td + 3.0 * d);
  B.linear("bwd.qkv.dgrad", BW, L, T, d, 3 * d, false, true, "d.qkv", "w.qkv", "d.ln1.out");
  B.linear("bwd.qkv.wgrad", BW, L, d, 3 * d, T, true, false, "ln1.out", "d.qkv", "d.w.qkv");
  B.pointwise("bwd.ln1", BW, L, OpKind::norm, OpImpl::layernorm_bwd, {"d.ln1.out", "x", "ln1.gamma", "ln1.mean", "ln1.rstd"},
              {"d.x.ln", "d.ln1.gamma", "d.ln1.beta"}, 1, T, d, fc::kLayerNormBwd * Td, 3 * Td + 3.0 * d);
  B.pointwise("bwd.residual1", BW, L, OpKind::elementwise, OpImpl::residual_add, {"d.x1", "d.x.ln"}, {"d.x"}, 1, T, d,
              fc::kResidualAdd * Td, 3 * Td);

  LayerGraph g = B.take();
  // Weight-gradient shapes mirror their weights.
  for (auto& t : g.tensors) {
    if (t.role == TensorRole::weight_grad && t.shape.empty()) t.shape = g.tensor(t.name.substr(2)).shape;
  }
  if (o.precision == Precision::fp8) lower_linear_gemms_to_fp8(g);
  (void)Tf;
  return g;
}

}  // namespace flopscope
