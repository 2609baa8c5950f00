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
    case OpImpl::mla_qkv_fwd: return "mla_qkv_fwd";
    case OpImpl::mla_qkv_bwd: return "mla_qkv_bwd";
    case OpImpl::moe_gate_fwd: return "moe_gate_fwd";
    case OpImpl::moe_gate_bwd: return "moe_gate_bwd";
    case OpImpl::moe_route_fwd: return "moe_route_fwd";
    case OpImpl::moe_route_bwd: return "moe_route_bwd";
    case OpImpl::moe_dispatch_fwd: return "moe_dispatch_fwd";
    case OpImpl::moe_dispatch_bwd: return "moe_dispatch_bwd";
    case OpImpl::moe_combine_fwd: return "moe_combine_fwd";
    case OpImpl::moe_combine_bwd: return "moe_combine_bwd";
    case OpImpl::qk_norm_fwd: return "qk_norm_fwd";
    case OpImpl::qk_norm_bwd: return "qk_norm_bwd";
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

std::string_view to_string(WeightSplit s) {
  switch (s) {
    case WeightSplit::replicated: return "replicated";
    case WeightSplit::column: return "column";
    case WeightSplit::row: return "row";
  }
  return "?";
}

std::string_view to_string(OpSplit s) {
  switch (s) {
    case OpSplit::features: return "features";
    case OpSplit::sequence: return "sequence";
    case OpSplit::replicated: return "replicated";
  }
  return "?";
}

int64_t TensorSpec::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n = checked_mul(n, d, fmt::format("tensor {}", name));
  return n;
}

int64_t AttentionMask::first_key(int64_t i) const {
  int64_t lo = 0;
  if (window > 0) lo = std::max(lo, i - window + 1);
  if (chunk > 0) lo = std::max(lo, i / chunk * chunk);
  return lo;
}

int64_t AttentionMask::end_query(int64_t j, int64_t n) const {
  int64_t hi = n;
  if (window > 0) hi = std::min(hi, j + window);
  if (chunk > 0) hi = std::min(hi, (j / chunk + 1) * chunk);
  return hi;
}

double AttentionMask::attended(int64_t n) const {
  double pairs = 0;
  for (int64_t i = 0; i < n; ++i) pairs += static_cast<double>(i + 1 - first_key(i));
  return pairs;
}

double AttentionMask::model_area(int64_t n) const {
  // The causal triangle of side L, cut to a band of width w: L^2 / 2, or L w - w^2 / 2 when w < L.
  auto band = [&](double L) {
    const double w = static_cast<double>(window);
    return window == 0 || w >= L ? L * L / 2 : L * w - w * w / 2;
  };
  if (chunk == 0 || chunk >= n) return band(static_cast<double>(n));
  const int64_t q = n / chunk, r = n - q * chunk;
  return static_cast<double>(q) * band(static_cast<double>(chunk)) + band(static_cast<double>(r));
}

GemmSpec::Block GemmSpec::block(int64_t r0, int64_t r1) const {
  if (!blocked()) return {n, 0, k};
  // The mask's first key is nondecreasing in the query and its last query in the key, so a
  // block's rows [r0, r1) need keys from first_key(r0) (queries up to end_query(r1 - 1)).
  switch (triangle) {
    case Triangle::c_lower: return {std::min(r1, n), 0, k, std::min(mask.first_key(r0), n)};
    case Triangle::a_lower: return {n, std::min(mask.first_key(r0), k), std::min(r1, k)};
    case Triangle::a_upper: return {n, std::min(r0, k), mask.any() ? mask.end_query(r1 - 1, k) : k};
    case Triangle::none: break;
  }
  return {n, 0, k};
}

double GemmSpec::full_flops() const {
  // Grouped: the grouped dimension already holds the total over the problems.
  if (grouped != Grouped::none)
    return 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k) * static_cast<double>(repeat);
  return 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k) * static_cast<double>(batch) *
         static_cast<double>(repeat);
}

double GemmSpec::flops() const {
  if (!blocked()) return full_flops();
  if (mask.any()) {  // a window or chunks: the row blocks' products, summed
    double per_member = 0;
    for (int64_t r0 = 0; r0 < m; r0 += causal_block) {
      const int64_t r1 = std::min(r0 + causal_block, m);
      const Block bl = block(r0, r1);
      per_member += 2.0 * static_cast<double>(r1 - r0) * static_cast<double>(bl.n_end - bl.n0) *
                    static_cast<double>(bl.k1 - bl.k0);
    }
    return per_member * static_cast<double>(batch) * static_cast<double>(repeat);
  }
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

GemmSpec::Part GemmSpec::group_part(int64_t e, int64_t first) const {
  if (grouped == Grouped::m_rows) return {trans_a ? first : first * lda, e * stride_b, first * ldc};
  return {trans_a ? first * lda : first, trans_b ? first : first * ldb, e * stride_c};
}

GemmSpec::Groups GemmSpec::groups(const std::vector<double>& counts, const std::string& op) const {
  return expert_groups(counts, batch, grouped == Grouped::m_rows ? m : k, drops, op);
}

void check_unique_names(const LayerGraph& g) {
  std::set<std::string> seen;
  for (const auto& t : g.tensors)
    FLOPSCOPE_CHECK(seen.insert(t.name).second, "the layer graph declares the tensor " + t.name + " twice");
  seen.clear();
  for (const auto& op : g.ops)
    FLOPSCOPE_CHECK(seen.insert(op.name).second, "the layer graph has two ops named " + op.name);
}

GemmSpec::Groups expert_groups(const std::vector<double>& counts, int64_t experts, int64_t total, bool drops,
                               const std::string& op) {
  if (static_cast<int64_t>(counts.size()) != experts)
    throw Error(fmt::format("{}: {} row counts for {} experts", op, counts.size(), experts));
  GemmSpec::Groups gr;
  int64_t sum = 0;
  for (size_t e = 0; e < counts.size(); ++e) {
    const double v = counts[e];
    if (!(v >= 0 && v <= static_cast<double>(total) && v == std::floor(v)))
      throw Error(fmt::format("{}: expert {}'s row count {} is not a whole number of the {} rows (has the route run?)",
                              op, e, v, total));
    gr.first.push_back(sum);
    gr.rows.push_back(static_cast<int64_t>(v));
    sum += gr.rows.back();
  }
  if (drops ? sum > total : sum != total)
    throw Error(fmt::format("{}: the experts' rows sum to {}, {} the {} the graph routes", op, sum,
                            drops ? "more than" : "not", total));
  return gr;
}

bool expert_bias_op(const Op& op) {
  return (op.impl == OpImpl::bias_add && op.inputs.size() == 3) || (op.impl == OpImpl::bias_grad && op.inputs.size() == 2);
}

GemmSpec GemmSpec::problem(int64_t e, const Groups& gr) const {
  const auto i = static_cast<size_t>(e);
  GemmSpec one = *this;
  one.batch = 1;
  one.grouped = Grouped::none;
  one.stride_a = one.stride_b = one.stride_c = 0;
  const Part at = group_part(e, gr.first.at(i));
  one.a_offset += at.a, one.b_offset += at.b, one.c_offset += at.c;
  (grouped == Grouped::m_rows ? one.m : one.k) = gr.rows.at(i);
  return one;
}

std::string Op::shape_str() const {
  if (impl == OpImpl::gemm) {
    auto mnk = fmt::format("{}x{}x{}", gemm.m, gemm.n, gemm.k);
    if (gemm.grouped != Grouped::none) return fmt::format("grouped({}):{}", gemm.batch, mnk);
    if (gemm.repeat > 1) return fmt::format("{}x{}x[{}]", gemm.repeat, gemm.batch, mnk);
    return gemm.batch > 1 ? fmt::format("{}x[{}]", gemm.batch, mnk) : mnk;
  }
  auto rc = fmt::format("{}x{}", rows, cols);
  return batch > 1 ? fmt::format("{}x[{}]", batch, rc) : rc;
}

int64_t expert_capacity(const MoeSpec& m, int64_t tokens) {
  const int64_t routed = tokens * m.top_k;
  if (m.capacity <= 0) return routed;
  const double cap = std::ceil(static_cast<double>(routed) / static_cast<double>(m.experts) * m.capacity);
  return std::min(routed, static_cast<int64_t>(cap));
}

namespace flop_convention {

double moe_route_fwd(const MoeSpec& m, int64_t rows) {
  const double E = static_cast<double>(m.experts), k = static_cast<double>(m.top_k);
  const double score = m.sigmoid ? 3 : 4;
  double per = m.topk_first ? score * k : score * E + static_cast<double>(m.n_group);
  if (m.norm_topk && !(m.topk_first && !m.sigmoid)) per += 2 * k;  // a softmax over the k sums to 1 already
  if (m.aux_coef > 0) per += (m.topk_first || m.sigmoid ? 4 * E : 0) + E;
  if (m.scale != 1) per += k;  // the k weights scaled
  return per * static_cast<double>(rows);
}

double moe_route_bwd(const MoeSpec& m, int64_t rows) {
  const double E = static_cast<double>(m.experts), k = static_cast<double>(m.top_k);
  double per = 0;
  if (m.norm_topk && !(m.topk_first && !m.sigmoid)) per += 4 * k;
  if (m.sigmoid)
    per += 3 * k;
  else
    per += m.topk_first ? 4 * k : 2 * E + 2 * k;
  if (m.aux_coef > 0) per += 4 * E;
  if (m.scale != 1) per += k;  // the k weights' gradient scaled
  return per * static_cast<double>(rows);
}

}  // namespace flop_convention

// The kind a model's layer is run and shown as when one is: its first MoE kind (the one the
// experts' costs are in), else its first.
size_t main_layer_kind(const ModelConfig& m) {
  const std::vector<LayerKind> kinds = m.layer_kinds();
  for (size_t k = 0; k < kinds.size(); ++k)
    if (kinds[k].spec.moe) return k;
  return 0;
}

LayerShape layer_shape(const ModelConfig& m, int64_t batch, int64_t seq, size_t kind) {
  const std::vector<LayerKind> kinds = m.layer_kinds();
  FLOPSCOPE_CHECK(kind < kinds.size(), fmt::format("the model has {} kinds of layer, not {}", kinds.size(), kind + 1));
  LayerShape s;
  s.layer = kinds[kind].spec;
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
  s.qk_norm = m.qk_norm;
  s.attention_sinks = m.attention_sinks;
  if (m.mla()) {
    s.n_kv_heads = m.n_heads;  // K and V per head, from the latent
    s.d_head = m.qk_head_dim();
    s.q_lora_rank = m.q_lora_rank;
    s.kv_lora_rank = m.kv_lora_rank;
    s.qk_nope = m.qk_nope_head_dim;
    s.qk_rope = m.qk_rope_head_dim;
    s.v_head = m.v_head_dim;
  }
  if (s.layer.moe && m.moe()) {
    s.n_experts = m.n_experts;
    s.top_k = m.top_k;
    s.d_ff_expert = m.d_ff_expert;
    s.n_shared = m.n_shared_experts;
    s.d_ff_shared = m.d_ff_shared;
    s.expert_bias = m.expert_bias;
    s.shared_gate = m.shared_expert_gate;
    s.router_bias = m.router_bias;
    s.router.experts = m.n_experts;
    s.router.top_k = m.top_k;
    s.router.n_group = m.n_group;
    s.router.topk_group = m.topk_group;
    s.router.sigmoid = m.router_score == RouterScore::sigmoid;
    s.router.topk_first = m.router_topk_first;
    s.router.norm_topk = m.router_norm_topk;
    s.router.aux_coef = m.aux_loss_coef;
    s.router.capacity = m.capacity_factor;
    s.router.scale = m.routed_scaling_factor;
  }
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

const TensorSpec& LayerGraph::gemm_weight(const GemmSpec& gs) const {
  const TensorSpec* b = &tensor(gs.b);
  if (b->role == TensorRole::fp8_copy) b = &tensor(b->source);
  if (b->role == TensorRole::weight) return *b;
  const TensorSpec& c = tensor(gs.c);
  if (c.role == TensorRole::weight_grad) return c;
  throw Error(fmt::format("GEMM {} x {} -> {} has no weight operand", gs.a, gs.b, gs.c));
}

bool LayerGraph::weight_fp8_copy(const TensorSpec& t) const {
  return t.role == TensorRole::fp8_copy && tensor(t.source).role == TensorRole::weight;
}

LayerGraph::Dim LayerGraph::split_dim(const GemmSpec& gs) const {
  const TensorSpec& w = gemm_weight(gs);
  if (w.split == WeightSplit::replicated) return Dim::none;
  const bool row = w.split == WeightSplit::row;  // the weight's dim 0 (its input features), else dim 1
  if (w.role == TensorRole::weight_grad) return row ? Dim::m : Dim::n;  // C (m, n) as the weight is stored
  // B is the weight stored (k, n), or (n, k) when trans_b (grouped: each expert's so); an fp8
  // copy stored as the weight's transpose reverses that.
  const TensorSpec& b = tensor(gs.b);
  const bool weight_trans = gs.trans_b != (b.role == TensorRole::fp8_copy && b.transposed);
  return row == weight_trans ? Dim::n : Dim::k;
}

LayerGraph::Dim LayerGraph::token_dim(const GemmSpec& gs) const {
  return gemm_weight(gs).role == TensorRole::weight_grad ? Dim::k : Dim::m;
}

}  // namespace flopscope
