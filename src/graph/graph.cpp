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
    case OpImpl::rmsnorm_fwd: return "rmsnorm_fwd";
    case OpImpl::rmsnorm_bwd: return "rmsnorm_bwd";
    case OpImpl::rope_fwd: return "rope_fwd";
    case OpImpl::rope_bwd: return "rope_bwd";
    case OpImpl::swiglu_fwd: return "swiglu_fwd";
    case OpImpl::swiglu_bwd: return "swiglu_bwd";
    case OpImpl::relu_fwd: return "relu_fwd";
    case OpImpl::relu_bwd: return "relu_bwd";
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

GemmSpec::Block GemmSpec::block(int64_t r0, int64_t r1) const {
  if (!blocked()) return {n, 0, k};
  switch (triangle) {
    case Triangle::c_lower: return {std::min(r1, n), 0, k};
    case Triangle::a_lower: return {n, 0, std::min(r1, k)};
    case Triangle::a_upper: return {n, std::min(r0, k), k};
    case Triangle::none: break;
  }
  return {n, 0, k};
}

double GemmSpec::full_flops() const {
  return 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k) * static_cast<double>(batch) *
         static_cast<double>(repeat);
}

double GemmSpec::flops() const {
  if (!blocked()) return full_flops();
  // q whole blocks of B rows and a last one of r rows, m = q B + r. Each triangle executes
  // B^2 q (q + 1) / 2 + r m elements of its square (c_lower: row block j reaches column
  // (j + 1) B; a_upper: it starts at j B, the same sum), times 2 x the other dimension.
  const double B = static_cast<double>(causal_block);
  const int64_t q = m / causal_block;
  const double r = static_cast<double>(m - q * causal_block), qd = static_cast<double>(q);
  const double square = B * B * qd * (qd + 1) / 2 + r * static_cast<double>(m);
  const double other = static_cast<double>(triangle == Triangle::c_lower ? k : n);
  return 2.0 * square * other * static_cast<double>(batch) * static_cast<double>(repeat);
}

std::string Op::shape_str() const {
  if (impl == OpImpl::gemm) {
    auto mnk = fmt::format("{}x{}x{}", gemm.m, gemm.n, gemm.k);
    if (gemm.repeat > 1) return fmt::format("{}x{}x[{}]", gemm.repeat, gemm.batch, mnk);
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
    const int64_t qkv_width = checked_mul(checked_mul(s.kv_heads(), s.n_heads / s.kv_heads() + 2, "QKV width"),
                                          s.d_head, "QKV width");
    checked_mul(t, std::max({s.d_ff, 3 * s.d_model, s.vocab, qkv_width}), "tokens x width");
    checked_mul(checked_mul(s.batch * s.n_heads, s.seq, "attention scores"), s.seq, "attention scores");
    checked_mul(s.d_model, std::max({s.d_ff, s.vocab, qkv_width}), "weight size");
  }

  void tensor(std::string name, TensorRole role, std::vector<int64_t> shape) {
    g_.tensors.push_back({std::move(name), role, std::move(shape)});
  }

  // A linear layer's GEMM (or its dgrad/wgrad): plain row-major, contiguous operands.
  void linear(std::string name, Phase phase, Group group, int64_t m, int64_t n, int64_t k, bool ta, bool tb,
              std::string a, std::string b, std::string c, double beta = 0.0) {
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
    if (op.gemm.triangle != Triangle::none) {
      FLOPSCOPE_CHECK(op.gemm.m == (op.gemm.triangle == Triangle::c_lower ? op.gemm.n : op.gemm.k) &&
                          op.gemm.beta == 0 && (op.gemm.triangle != Triangle::c_lower || op.gemm.repeat_beta == 0),
                      op.name + ": a triangular product needs its square side m and beta 0 (c_lower: for every repeat)");
      op.gemm.causal_block = g_.options.causal_block;
    }
    op.flops = op.gemm.flops();
    op.model_flops = causal_square ? op.gemm.full_flops() / 2 : op.flops;
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
    op.min_bytes = batch *
                   (m * k * distinct(op.gemm.repeat_a) * a_part + k * n * distinct(op.gemm.repeat_b) +
                    m * n * distinct(op.gemm.repeat_c) * (op.gemm.beta != 0 ? 2 : 1) * c_part) *
                   eb_;
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
  Op& last() { return g_.ops.back(); }
  const LayerShape& s() const { return s_; }

 private:
  LayerShape s_;
  double eb_;
  LayerGraph g_;
};

namespace fc = flop_convention;

// The sizes every block works with. Grouped-query attention: h query heads in h_kv groups
// of g = h / h_kv; each group shares one K and one V head.
struct Dims {
  int64_t b, T, d, f, h, hk, g, dh, S, dq, dkv, w, bh, V;
  double Td, Tf, causal, square;
  explicit Dims(const LayerShape& s)
      : b(s.batch), T(s.tokens()), d(s.d_model), f(s.d_ff), h(s.n_heads), hk(s.kv_heads()), g(s.n_heads / s.kv_heads()),
        dh(s.d_head), S(s.seq), dq(s.n_heads * s.d_head), dkv(s.kv_heads() * s.d_head),
        w((s.n_heads / s.kv_heads() + 2) * s.kv_heads() * s.d_head), bh(s.batch * s.n_heads), V(s.vocab) {
    Td = static_cast<double>(T) * static_cast<double>(d);
    Tf = static_cast<double>(T) * static_cast<double>(f);
    causal = static_cast<double>(bh) * static_cast<double>(S) * static_cast<double>(S + 1) / 2;
    square = static_cast<double>(bh) * static_cast<double>(S) * static_cast<double>(S);
  }
};

// ---- norm block: LayerNorm (gamma, beta; saves mean and rstd) or RMSNorm (gamma; saves rstd).
// The op keeps its slot's name (fwd.ln1, fwd.ln2, fwd.head.ln) whichever kind it is; the impl
// says which.

// Tensors of the norm named `slot` ("ln1", "ln2", "head") whose output is `out`.
struct NormTensors {
  std::string gamma, beta, out, mean, rstd;  // beta and mean empty for RMSNorm
};
NormTensors norm_tensors(const LayerShape& s, const std::string& slot, const std::string& stats) {
  const bool ln = s.norm == NormKind::layernorm;
  return {slot + ".gamma", ln ? slot + ".beta" : "", stats + ".out", ln ? stats + ".mean" : "", stats + ".rstd"};
}

void norm_fwd(Builder& B, const std::string& name, Phase phase, Group group, const std::string& x, const NormTensors& n) {
  const Dims D(B.s());
  if (B.s().norm == NormKind::layernorm) {
    B.pointwise(name, phase, group, OpKind::norm, OpImpl::layernorm_fwd, {x, n.gamma, n.beta}, {n.out, n.mean, n.rstd},
                1, D.T, D.d, fc::kLayerNormFwd * D.Td, 2 * D.Td + 2.0 * D.d);
  } else {
    B.pointwise(name, phase, group, OpKind::norm, OpImpl::rmsnorm_fwd, {x, n.gamma}, {n.out, n.rstd}, 1, D.T, D.d,
                fc::kRmsNormFwd * D.Td, 2 * D.Td + static_cast<double>(D.d));
  }
}

// dx (through the norm only) and the weight gradients d.<gamma> (and d.<beta>).
void norm_bwd(Builder& B, const std::string& name, Group group, const std::string& dy, const std::string& x,
              const NormTensors& n, const std::string& dx) {
  const Dims D(B.s());
  if (B.s().norm == NormKind::layernorm) {
    B.pointwise(name, Phase::backward, group, OpKind::norm, OpImpl::layernorm_bwd, {dy, x, n.gamma, n.mean, n.rstd},
                {dx, "d." + n.gamma, "d." + n.beta}, 1, D.T, D.d, fc::kLayerNormBwd * D.Td, 3 * D.Td + 3.0 * D.d);
  } else {
    B.pointwise(name, Phase::backward, group, OpKind::norm, OpImpl::rmsnorm_bwd, {dy, x, n.gamma, n.rstd},
                {dx, "d." + n.gamma}, 1, D.T, D.d, fc::kRmsNormBwd * D.Td, 3 * D.Td + 2.0 * D.d);
  }
}

// ---- attention block ------------------------------------------------------------------------
// qkv (T, w), w = (g + 2) h_kv d_head, interleaved per kv group as (s, b, h_kv, g + 2, d_head):
// the group's g query heads, then its K, then its V. For i = bi * h_kv + j (batch bi, group j)
// query head r of the group sits at qkv + i (g+2) d_head + r d_head, K at + g d_head, V at
// + (g+1) d_head, rows b w apart: one stride (g+2) d_head over i. The scores of query head
// hi = j g + r are batch member bi h + hi = i g + r of att.scores: stride g s^2 over i and
// offset r s^2 per repeat. So each product is one strided batch over i, repeated g times
// (GemmSpec::repeat), and K and V are never copied. MHA (g = 1) is (s, b, h, 3, d_head).
// ctx (T, dq) is (s, b, h, d_head).

// The strided-batch part of an attention operand: (tensor, offset, ld, stride over i, stride over r).
struct Operand {
  std::string t;
  int64_t offset, ld, stride, repeat;
};

GemmSpec attention_gemm(const Dims& D, int64_t m, int64_t n, int64_t k, bool ta, bool tb, const Operand& a,
                        const Operand& b, const Operand& c, double alpha, bool sum_over_group, Triangle tri) {
  GemmSpec gs;
  gs.triangle = tri;
  gs.m = m, gs.n = n, gs.k = k, gs.batch = D.b * D.hk;
  gs.trans_a = ta, gs.trans_b = tb;
  gs.a = a.t, gs.a_offset = a.offset, gs.lda = a.ld, gs.stride_a = a.stride;
  gs.b = b.t, gs.b_offset = b.offset, gs.ldb = b.ld, gs.stride_b = b.stride;
  gs.c = c.t, gs.c_offset = c.offset, gs.ldc = c.ld, gs.stride_c = c.stride;
  gs.alpha = alpha;
  if (D.g > 1) {
    gs.repeat = D.g;
    gs.repeat_a = a.repeat, gs.repeat_b = b.repeat, gs.repeat_c = c.repeat;
    gs.repeat_beta = sum_over_group ? 1.0 : gs.beta;  // dK, dV: the group's query heads sum into one C
  }
  return gs;
}

// The operands, for tensors `qkv` (or its gradient) and scores/probs-like (b h, s, s) tensors.
Operand q_of(const Dims& D, const std::string& t) { return {t, 0, D.b * D.w, (D.g + 2) * D.dh, D.dh}; }
Operand k_of(const Dims& D, const std::string& t) { return {t, D.g * D.dh, D.b * D.w, (D.g + 2) * D.dh, 0}; }
Operand v_of(const Dims& D, const std::string& t) { return {t, (D.g + 1) * D.dh, D.b * D.w, (D.g + 2) * D.dh, 0}; }
Operand square_of(const Dims& D, const std::string& t) { return {t, 0, D.S, D.g * D.S * D.S, D.S * D.S}; }
Operand ctx_of(const Dims& D, const std::string& t) { return {t, 0, D.b * D.dq, D.g * D.dh, D.dh}; }

// RoPE on the Q and K heads of qkv (in place): rows T of width w, positions si = t / b.
void rope(Builder& B, const std::string& name, Phase phase, OpImpl impl, const std::string& t) {
  const Dims D(B.s());
  const double rotated = static_cast<double>(D.T) * static_cast<double>(D.dq + D.dkv);
  B.pointwise(name, phase, Group::layer, OpKind::elementwise, impl, {t}, {t}, 1, D.T, D.w, fc::kRope * rotated,
              2 * rotated);
  Op& op = B.last();
  op.rope = {D.b, D.hk, D.g, D.dh, B.s().rope_theta};
}

void attention_fwd(Builder& B, const std::string& prefix, Phase phase) {
  const LayerShape& s = B.s();
  const Dims D(s);
  const Group L = Group::layer;
  auto n = [&](const char* suffix) { return prefix + "." + suffix; };
  const double Tw = static_cast<double>(D.T) * static_cast<double>(D.w);
  B.linear(n("qkv"), phase, L, D.T, D.w, D.d, false, false, "ln1.out", "w.qkv", "qkv");
  if (s.biases.qkv)
    B.pointwise(n("qkv.bias"), phase, L, OpKind::elementwise, OpImpl::bias_add, {"qkv", "b.qkv"}, {"qkv"}, 1, D.T, D.w,
                fc::kBiasAdd * Tw, 2 * Tw + static_cast<double>(D.w));
  if (s.position == PositionKind::rope) rope(B, n("attn.rope"), phase, OpImpl::rope_fwd, "qkv");
  // S = (1/sqrt(dh)) Q K^T per query head; P = causal softmax(S); O = P V.
  const double scale = 1.0 / std::sqrt(static_cast<double>(D.dh));
  B.add_gemm(n("attn.scores"), phase, L, OpKind::batched_gemm,
             attention_gemm(D, D.S, D.S, D.dh, false, true, q_of(D, "qkv"), k_of(D, "qkv"), square_of(D, "att.scores"),
                            scale, false, Triangle::c_lower),
             true);
  B.pointwise(n("attn.softmax"), phase, L, OpKind::softmax, OpImpl::softmax_causal_fwd, {"att.scores"}, {"att.probs"},
              D.bh, D.S, D.S, fc::kSoftmaxFwd * D.causal, 2 * D.square);
  B.add_gemm(n("attn.context"), phase, L, OpKind::batched_gemm,
             attention_gemm(D, D.S, D.dh, D.S, false, false, square_of(D, "att.probs"), v_of(D, "qkv"),
                            ctx_of(D, "ctx"), 1.0, false, Triangle::a_lower),
             true);
  const double Td = D.Td;
  B.linear(n("proj"), phase, L, D.T, D.d, D.dq, false, false, "ctx", "w.proj", "proj.out");
  if (s.biases.attn_out)
    B.pointwise(n("proj.bias"), phase, L, OpKind::elementwise, OpImpl::bias_add, {"proj.out", "b.proj"}, {"proj.out"},
                1, D.T, D.d, fc::kBiasAdd * Td, 2 * Td + static_cast<double>(D.d));
}

// From d.x1 (the gradient of the attention block's output) to d.ln1.out.
void attention_bwd(Builder& B) {
  const LayerShape& s = B.s();
  const Dims D(s);
  const Group L = Group::layer;
  const Phase BW = Phase::backward;
  const double Td = D.Td, Tw = static_cast<double>(D.T) * static_cast<double>(D.w);
  if (s.biases.attn_out)
    B.pointwise("bwd.proj.bias", BW, L, OpKind::reduction, OpImpl::bias_grad, {"d.x1"}, {"d.b.proj"}, 1, D.T, D.d,
                fc::kBiasGrad * Td, Td + static_cast<double>(D.d));
  B.linear("bwd.proj.dgrad", BW, L, D.T, D.dq, D.d, false, true, "d.x1", "w.proj", "d.ctx");
  B.linear("bwd.proj.wgrad", BW, L, D.dq, D.d, D.T, true, false, "ctx", "d.x1", "d.w.proj");
  // dP = dO V^T; dV = sum over the group of P^T dO, into d.qkv's V slots.
  B.add_gemm("bwd.attn.context.dprobs", BW, L, OpKind::batched_gemm,
             attention_gemm(D, D.S, D.S, D.dh, false, true, ctx_of(D, "d.ctx"), v_of(D, "qkv"),
                            square_of(D, "d.att.probs"), 1.0, false, Triangle::c_lower),
             true);
  B.add_gemm("bwd.attn.context.dv", BW, L, OpKind::batched_gemm,
             attention_gemm(D, D.S, D.dh, D.S, true, false, square_of(D, "att.probs"), ctx_of(D, "d.ctx"),
                            v_of(D, "d.qkv"), 1.0, true, Triangle::a_upper),
             true);
  B.pointwise("bwd.attn.softmax", BW, L, OpKind::softmax, OpImpl::softmax_causal_bwd, {"att.probs", "d.att.probs"},
              {"d.att.scores"}, D.bh, D.S, D.S, fc::kSoftmaxBwd * D.causal, 3 * D.square);
  // dQ = alpha dS K per query head; dK = alpha sum over the group of dS^T Q.
  const double alpha = 1.0 / std::sqrt(static_cast<double>(D.dh));
  B.add_gemm("bwd.attn.scores.dq", BW, L, OpKind::batched_gemm,
             attention_gemm(D, D.S, D.dh, D.S, false, false, square_of(D, "d.att.scores"), k_of(D, "qkv"),
                            q_of(D, "d.qkv"), alpha, false, Triangle::a_lower),
             true);
  B.add_gemm("bwd.attn.scores.dk", BW, L, OpKind::batched_gemm,
             attention_gemm(D, D.S, D.dh, D.S, true, false, square_of(D, "d.att.scores"), q_of(D, "qkv"),
                            k_of(D, "d.qkv"), alpha, true, Triangle::a_upper),
             true);
  // RoPE is a rotation: its backward rotates the gradients of Q and K back (the transpose).
  if (s.position == PositionKind::rope) rope(B, "bwd.attn.rope", BW, OpImpl::rope_bwd, "d.qkv");
  if (s.biases.qkv)
    B.pointwise("bwd.qkv.bias", BW, L, OpKind::reduction, OpImpl::bias_grad, {"d.qkv"}, {"d.b.qkv"}, 1, D.T, D.w,
                fc::kBiasGrad * Tw, Tw + static_cast<double>(D.w));
  B.linear("bwd.qkv.dgrad", BW, L, D.T, D.d, D.w, false, true, "d.qkv", "w.qkv", "d.ln1.out");
  B.linear("bwd.qkv.wgrad", BW, L, D.d, D.w, D.T, true, false, "ln1.out", "d.qkv", "d.w.qkv");
}

// ---- MLP block: GeLU or ReLU (up, activation, down) or SwiGLU (gate, up, silu(gate) * up, down).

// The activation's output tensor: gelu.out, relu.out, swiglu.out.
std::string activation_out(const LayerShape& s) {
  switch (s.ffn) {
    case FfnKind::gelu: return "gelu.out";
    case FfnKind::relu: return "relu.out";
    case FfnKind::swiglu: return "swiglu.out";
  }
  return "?";
}

void mlp_fwd(Builder& B, const std::string& prefix, Phase phase) {
  const LayerShape& s = B.s();
  const Dims D(s);
  const Group L = Group::layer;
  auto n = [&](const char* suffix) { return prefix + "." + suffix; };
  const double Tf = D.Tf, Td = D.Td;
  auto projection = [&](const char* op, const char* weight, const char* bias, const char* out) {
    B.linear(n(op), phase, L, D.T, D.f, D.d, false, false, "ln2.out", weight, out);
    if (s.biases.ffn)
      B.pointwise(n((std::string(op) + ".bias").c_str()), phase, L, OpKind::elementwise, OpImpl::bias_add,
                  {out, bias}, {out}, 1, D.T, D.f, fc::kBiasAdd * Tf, 2 * Tf + static_cast<double>(D.f));
  };
  if (s.ffn == FfnKind::swiglu) projection("ffn.gate", "w.gate", "b.gate", "gate.out");
  projection("ffn.up", "w.up", "b.up", "up.out");
  switch (s.ffn) {
    case FfnKind::gelu:
      B.pointwise(n("gelu"), phase, L, OpKind::elementwise, OpImpl::gelu_fwd, {"up.out"}, {"gelu.out"}, 1, D.T, D.f,
                  fc::kGeluFwd * Tf, 2 * Tf);
      break;
    case FfnKind::relu:
      B.pointwise(n("relu"), phase, L, OpKind::elementwise, OpImpl::relu_fwd, {"up.out"}, {"relu.out"}, 1, D.T, D.f,
                  fc::kReluFwd * Tf, 2 * Tf);
      break;
    case FfnKind::swiglu:
      B.pointwise(n("ffn.swiglu"), phase, L, OpKind::elementwise, OpImpl::swiglu_fwd, {"gate.out", "up.out"},
                  {"swiglu.out"}, 1, D.T, D.f, fc::kSwigluFwd * Tf, 3 * Tf);
      break;
  }
  B.linear(n("ffn.down"), phase, L, D.T, D.d, D.f, false, false, activation_out(s), "w.down", "down.out");
  if (s.biases.ffn)
    B.pointwise(n("ffn.down.bias"), phase, L, OpKind::elementwise, OpImpl::bias_add, {"down.out", "b.down"},
                {"down.out"}, 1, D.T, D.d, fc::kBiasAdd * Td, 2 * Td + static_cast<double>(D.d));
}

// From d.y (the gradient of the MLP block's output) to d.ln2.out.
void mlp_bwd(Builder& B) {
  const LayerShape& s = B.s();
  const Dims D(s);
  const Group L = Group::layer;
  const Phase BW = Phase::backward;
  const double Tf = D.Tf, Td = D.Td;
  const std::string act = activation_out(s);
  if (s.biases.ffn)
    B.pointwise("bwd.ffn.down.bias", BW, L, OpKind::reduction, OpImpl::bias_grad, {"d.y"}, {"d.b.down"}, 1, D.T, D.d,
                fc::kBiasGrad * Td, Td + static_cast<double>(D.d));
  B.linear("bwd.ffn.down.dgrad", BW, L, D.T, D.f, D.d, false, true, "d.y", "w.down", "d." + act);
  B.linear("bwd.ffn.down.wgrad", BW, L, D.f, D.d, D.T, true, false, act, "d.y", "d.w.down");
  switch (s.ffn) {
    case FfnKind::gelu:
      B.pointwise("bwd.gelu", BW, L, OpKind::elementwise, OpImpl::gelu_bwd, {"up.out", "d.gelu.out"}, {"d.up.out"}, 1,
                  D.T, D.f, fc::kGeluBwd * Tf, 3 * Tf);
      break;
    case FfnKind::relu:
      B.pointwise("bwd.relu", BW, L, OpKind::elementwise, OpImpl::relu_bwd, {"up.out", "d.relu.out"}, {"d.up.out"}, 1,
                  D.T, D.f, fc::kReluBwd * Tf, 3 * Tf);
      break;
    case FfnKind::swiglu:
      B.pointwise("bwd.ffn.swiglu", BW, L, OpKind::elementwise, OpImpl::swiglu_bwd,
                  {"gate.out", "up.out", "d.swiglu.out"}, {"d.gate.out", "d.up.out"}, 1, D.T, D.f,
                  fc::kSwigluBwd * Tf, 5 * Tf);
      break;
  }
  // Up (then gate, whose dgrad adds into d.ln2.out: beta = 1).
  auto projection = [&](const std::string& op, const std::string& w, const std::string& bias, const std::string& dout,
                        double beta) {
    if (s.biases.ffn)
      B.pointwise("bwd." + op + ".bias", BW, L, OpKind::reduction, OpImpl::bias_grad, {dout}, {"d." + bias}, 1, D.T,
                  D.f, fc::kBiasGrad * Tf, Tf + static_cast<double>(D.f));
    B.linear("bwd." + op + ".dgrad", BW, L, D.T, D.d, D.f, false, true, dout, w, "d.ln2.out", beta);
    B.linear("bwd." + op + ".wgrad", BW, L, D.d, D.f, D.T, true, false, "ln2.out", dout, "d." + w);
  };
  projection("ffn.up", "w.up", "b.up", "d.up.out", 0.0);
  if (s.ffn == FfnKind::swiglu) projection("ffn.gate", "w.gate", "b.gate", "d.gate.out", 1.0);
}

// The layer's forward ops. `prefix` is "fwd" or "rec" (recompute inside backward).
void forward_ops(Builder& B, const std::string& prefix, Phase phase) {
  const LayerShape& s = B.s();
  const Dims D(s);
  const Group L = Group::layer;
  auto n = [&](const char* suffix) { return prefix + "." + suffix; };
  norm_fwd(B, n("ln1"), phase, L, "x", norm_tensors(s, "ln1", "ln1"));
  attention_fwd(B, prefix, phase);
  B.pointwise(n("residual1"), phase, L, OpKind::elementwise, OpImpl::residual_add, {"x", "proj.out"}, {"x1"}, 1, D.T,
              D.d, fc::kResidualAdd * D.Td, 3 * D.Td);
  norm_fwd(B, n("ln2"), phase, L, "x1", norm_tensors(s, "ln2", "ln2"));
  mlp_fwd(B, prefix, phase);
  B.pointwise(n("residual2"), phase, L, OpKind::elementwise, OpImpl::residual_add, {"x1", "down.out"}, {"y"}, 1, D.T,
              D.d, fc::kResidualAdd * D.Td, 3 * D.Td);
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
  const int64_t dq = s.n_heads * s.d_head, dkv = s.kv_heads() * s.d_head;
  if (dq % 16 != 0 || dkv % 16 != 0)
    throw UsageError(fmt::format("--precision fp8: cuBLASLt's FP8 GEMMs need the query width (heads x d_head) and the "
                                 "key/value width (kv heads x d_head) to be multiples of 16; this layer has {} and {}",
                                 dq, dkv));
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
      FLOPSCOPE_CHECK(gs.batch == 1 && gs.repeat == 1 && gs.a_offset == 0 && gs.b_offset == 0, op.name + ": linear GEMMs are plain");
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
  FLOPSCOPE_CHECK(s.n_kv_heads >= 0 && s.n_heads % s.kv_heads() == 0,
                  fmt::format("{} key/value heads do not divide {} query heads", s.kv_heads(), s.n_heads));
  // RoPE rotates pairs (j, j + d_head/2) of each head (the "rotate half" of Hugging Face's Llama).
  FLOPSCOPE_CHECK(s.position != PositionKind::rope || s.d_head % 2 == 0,
                  fmt::format("RoPE needs an even d_head, not {}", s.d_head));
  FLOPSCOPE_CHECK(s.position != PositionKind::rope || s.rope_theta > 0, "RoPE needs theta > 0");
  FLOPSCOPE_CHECK(o.input_sets >= 1, "input sets must be at least 1");
  FLOPSCOPE_CHECK(o.causal_block >= 0, "the causal block must be 0 (the full square) or a row count");
  Builder B(s, o);
  const Dims D(s);
  const int64_t T = D.T, d = D.d, f = D.f, S = D.S, bh = D.bh, V = D.V;
  const bool ln = s.norm == NormKind::layernorm, swiglu = s.ffn == FfnKind::swiglu;
  using R = TensorRole;

  // ---- tensors ------------------------------------------------------------------------
  B.tensor("x", R::input, {T, d});  // layer input, (s, b, d) flattened to (T, d)
  std::vector<std::pair<std::string, std::vector<int64_t>>> weights;
  for (const char* slot : {"ln1", "ln2"}) {
    weights.push_back({std::string(slot) + ".gamma", {d}});
    if (ln) weights.push_back({std::string(slot) + ".beta", {d}});
  }
  weights.push_back({"w.qkv", {d, D.w}});  // (d, w), columns interleaved per kv group (h_kv, g + 2, dh)
  if (s.biases.qkv) weights.push_back({"b.qkv", {D.w}});
  weights.push_back({"w.proj", {D.dq, d}});
  if (s.biases.attn_out) weights.push_back({"b.proj", {d}});
  if (swiglu) {
    weights.push_back({"w.gate", {d, f}});
    if (s.biases.ffn) weights.push_back({"b.gate", {f}});
  }
  weights.push_back({"w.up", {d, f}});
  if (s.biases.ffn) weights.push_back({"b.up", {f}});
  weights.push_back({"w.down", {f, d}});
  if (s.biases.ffn) weights.push_back({"b.down", {d}});
  for (const auto& [name, shape] : weights) B.tensor(name, R::weight, shape);
  for (const auto& [name, shape] : weights) B.tensor("d." + name, R::weight_grad, shape);
  const std::string act = activation_out(s);
  auto norm_stats = [&](const std::string& stats) {
    if (ln) B.tensor(stats + ".mean", R::statistic, {T});
    B.tensor(stats + ".rstd", R::statistic, {T});
  };
  B.tensor("ln1.out", R::activation, {T, d});
  norm_stats("ln1");
  B.tensor("qkv", R::activation, {T, D.w});            // (s, b, h_kv, g + 2, dh)
  B.tensor("att.scores", R::activation, {bh, S, S});   // scaled Q K^T
  B.tensor("att.probs", R::activation, {bh, S, S});    // causal softmax
  B.tensor("ctx", R::activation, {T, D.dq});           // (s, b, h, dh)
  B.tensor("proj.out", R::activation, {T, d});
  B.tensor("x1", R::activation, {T, d});
  B.tensor("ln2.out", R::activation, {T, d});
  norm_stats("ln2");
  if (swiglu) B.tensor("gate.out", R::activation, {T, f});
  B.tensor("up.out", R::activation, {T, f});
  B.tensor(act, R::activation, {T, f});
  B.tensor("down.out", R::activation, {T, d});
  B.tensor("y", R::activation, {T, d});
  // Gradients. Without the head, d.y is the incoming gradient (an input filled at random).
  B.tensor("d.y", o.include_head ? R::gradient : R::input, {T, d});
  B.tensor("d." + act, R::gradient, {T, f});
  if (swiglu) B.tensor("d.gate.out", R::gradient, {T, f});
  B.tensor("d.up.out", R::gradient, {T, f});
  B.tensor("d.ln2.out", R::gradient, {T, d});
  B.tensor("d.x1.ln", R::gradient, {T, d});  // through ln2 only
  B.tensor("d.x1", R::gradient, {T, d});     // ln2 path + residual
  B.tensor("d.ctx", R::gradient, {T, D.dq});
  B.tensor("d.att.probs", R::gradient, {bh, S, S});
  B.tensor("d.att.scores", R::gradient, {bh, S, S});
  B.tensor("d.qkv", R::gradient, {T, D.w});
  B.tensor("d.ln1.out", R::gradient, {T, d});
  B.tensor("d.x.ln", R::gradient, {T, d});  // through ln1 only
  B.tensor("d.x", R::gradient, {T, d});     // ln1 path + residual: the layer's input gradient
  const NormTensors head_norm = norm_tensors(s, "head", "head.ln");
  if (o.include_head) {
    B.tensor("head.gamma", R::weight, {d});
    if (ln) B.tensor("head.beta", R::weight, {d});
    // The output embedding, (d, V): its own weight when untied; when tied it is the token
    // embedding's, whose other use (the lookup) is not part of the layer. The ops are the same.
    B.tensor("w.vocab", R::weight, {d, V});
    B.tensor("d.head.gamma", R::weight_grad, {d});
    if (ln) B.tensor("d.head.beta", R::weight_grad, {d});
    B.tensor("d.w.vocab", R::weight_grad, {d, V});
    B.tensor("head.ln.out", R::activation, {T, d});
    norm_stats("head.ln");
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
    norm_fwd(B, "fwd.head.ln", F, H, "y", head_norm);
    B.linear("fwd.head.logits", F, H, T, V, d, false, false, "head.ln.out", "w.vocab", "logits");
    B.pointwise("fwd.head.loss", F, H, OpKind::softmax, OpImpl::cross_entropy_fwd, {"logits", "targets"}, {"loss"}, 1,
                T, V, fc::kCrossEntropyFwd * TV, TV + 2.0 * static_cast<double>(T));
    B.pointwise("bwd.head.loss", BW, H, OpKind::softmax, OpImpl::cross_entropy_bwd, {"logits", "targets"},
                {"d.logits"}, 1, T, V, fc::kCrossEntropyBwd * TV, 2 * TV + static_cast<double>(T));
    B.linear("bwd.head.logits.dgrad", BW, H, T, d, V, false, true, "d.logits", "w.vocab", "d.head.ln.out");
    B.linear("bwd.head.logits.wgrad", BW, H, d, V, T, true, false, "head.ln.out", "d.logits", "d.w.vocab");
    norm_bwd(B, "bwd.head.ln", H, "d.head.ln.out", "y", head_norm, "d.y");
  }

  // ---- backward -------------------------------------------------------------------------
  if (o.recompute) forward_ops(B, "rec", Phase::recompute);

  mlp_bwd(B);
  norm_bwd(B, "bwd.ln2", L, "d.ln2.out", "x1", norm_tensors(s, "ln2", "ln2"), "d.x1.ln");
  B.pointwise("bwd.residual2", BW, L, OpKind::elementwise, OpImpl::residual_add, {"d.y", "d.x1.ln"}, {"d.x1"}, 1, T, d,
              fc::kResidualAdd * D.Td, 3 * D.Td);
  attention_bwd(B);
  norm_bwd(B, "bwd.ln1", L, "d.ln1.out", "x", norm_tensors(s, "ln1", "ln1"), "d.x.ln");
  B.pointwise("bwd.residual1", BW, L, OpKind::elementwise, OpImpl::residual_add, {"d.x1", "d.x.ln"}, {"d.x"}, 1, T, d,
              fc::kResidualAdd * D.Td, 3 * D.Td);

  LayerGraph g = B.take();
  if (o.precision == Precision::fp8) lower_linear_gemms_to_fp8(g);
  return g;
}

}  // namespace flopscope
