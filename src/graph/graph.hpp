// The layer graph: the single source of truth for what one pre-norm decoder layer does
// (GPT-3's by default; Llama-, Mistral-, Qwen2- and OPT-style by the architecture fields).
//
// For micro-batch b, sequence s, width d, h query heads and h_kv key/value heads of d_head,
// d_ff and T = b * s tokens, it lists every tensor (weights, activations, gradients) with its
// shape, and every op of the forward pass, the backward pass (dgrad + wgrad per GEMM, bias
// gradients where biases exist), an optional recompute of the forward inside backward, and an
// optional LM head. It is built from blocks (norm: LayerNorm | RMSNorm; attention with
// positions none | RoPE; MLP: GeLU | ReLU | SwiGLU), so a variant is a choice of blocks
// (graph/blocks.hpp, one file a block; graph/layer.cpp assembles them). A kind of layer's
// attention variant (LayerSpec, LayerShape) adds ops or masks to the attention block: NoPE (no
// RoPE ops), QK-norm (qk_norm_fwd/bwd), a sliding window or chunks (AttentionMask on the softmax
// and the causal products), attention sinks (a logit per head in the softmax).
// Each op has a stable name (fwd.qkv, fwd.attn.rope, bwd.ffn.gate.wgrad, ...) shared by
// backends, NVTX and CUPTI ranges, JSON and tests, its dimensions, and its analytic cost:
// FLOPs at 2 per multiply-add (executed, and model FLOPs for causal attention) and the
// minimum bytes it moves.
//
// Layout: activations are sequence-first, token t = si * b + bi (Megatron-LM's [s, b, h]),
// and the fused QKV output is interleaved per kv group as [s, b, h_kv, g + 2, d_head] with
// g = h / h_kv: the group's g query heads, then its K, then its V (MHA, g = 1: [s, b, h, 3,
// d_head]). With that layout Q, K and V of (batch bi, kv group j) are strided batches of one
// stride ((g + 2) d_head) over i = bi*h_kv + j, so each attention product is one strided
// batched GEMM over i, repeated over the g query heads of a group (GemmSpec::repeat); K and V
// are never copied. All matrices are row-major. docs/method.md has every shape and formula.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "graph/precision.hpp"
#include "model/model.hpp"

namespace flopscope {

enum class Phase { forward, backward, recompute };
enum class OpKind { gemm, batched_gemm, norm, softmax, elementwise, reduction };
enum class Group { layer, head };

// What an op computes; backends dispatch on this, never on the name.
enum class OpImpl {
  gemm,                // C = alpha op(A) op(B) + beta C (strided batched when batch > 1)
  layernorm_fwd,       // in {x, gamma, beta} out {y, mean, rstd}
  layernorm_bwd,       // in {dy, x, gamma, mean, rstd} out {dx, dgamma, dbeta}
  softmax_causal_fwd,  // in {scores[, sinks]} out {probs[, sink_probs]}; batch x [rows x cols], j > i masked (and op.mask)
  softmax_causal_bwd,  // in {probs, dprobs[, sink_probs]} out {dscores[, dsinks]}
  gelu_fwd,            // in {x} out {y}
  gelu_bwd,            // in {x, dy} out {dx}
  bias_add,            // in {x, bias} out {x} (in place); routed experts: {x, bias (E, cols), counts} (expert_bias_op)
  bias_grad,           // in {dy} out {dbias}: column sums over rows; routed experts: {dy, counts} -> (E, cols)
  residual_add,        // in {a, b} out {out}
  cross_entropy_fwd,   // in {logits, targets} out {loss}: per-row -log softmax[target]
  cross_entropy_bwd,   // in {logits, targets} out {dlogits} = (softmax - onehot) / rows
  cast_fp8,            // in {x} out {copy}: FP8 E4M3 copy of (rows, cols) x, scaled; transposed when op.transpose
  rmsnorm_fwd,         // in {x, gamma} out {y, rstd}
  rmsnorm_bwd,         // in {dy, x, gamma, rstd} out {dx, dgamma}
  rope_fwd,            // in {qkv} out {qkv} (in place): rotates the Q and K heads of each row (op.rope)
  rope_bwd,            // in {dqkv} out {dqkv} (in place): the inverse rotation of their gradients
  swiglu_fwd,          // in {gate, up} out {h}: h = silu(gate) * up
  swiglu_bwd,          // in {gate, up, dh} out {dgate, dup}
  relu_fwd,            // in {x} out {y}
  relu_bwd,            // in {x, dy} out {dx}
  // multi-head latent attention
  mla_qkv_fwd,  // in {q, kv_b, k_rope} out {qkv}: per head [q_h, k_nope_h, k_rope, v_h] (op.mla); copies only
  mla_qkv_bwd,  // in {dqkv} out {dq, dkv_b, dk_rope}: the slices back, dk_rope summed over the heads
  // mixture of experts (op.moe; rows = tokens T, cols = d except where said)
  moe_route_fwd,     // in {logits (T, E)} out {experts (T, k), weights (T, k), slots (T, k), counts (E)}
  moe_route_bwd,     // in {logits, experts, weights, dweights, counts} out {dlogits (T, E)} (aux loss included)
  moe_dispatch_fwd,  // in {x (T, d), slots} out {xe (k T, d)}: xe[slots[t, j]] = x[t]
  moe_dispatch_bwd,  // in {dxe (k T, d), slots} out {dx (T, d)}: dx[t] = sum_j dxe[slots[t, j]]
  moe_combine_fwd,   // in {ye (k T, d), weights, slots} out {y (T, d)}: y[t] = sum_j w[t, j] ye[slots[t, j]]
  moe_combine_bwd,   // in {dy (T, d), ye, weights, slots} out {dye (k T, d), dweights (T, k)}
  moe_gate_fwd,      // in {s (T, d), g (T, 1)} out {y (T, d)}: y[t] = sigmoid(g[t]) s[t] (Qwen2-MoE's shared-expert gate)
  moe_gate_bwd,      // in {dy, s, g} out {ds (T, d), dg (T, 1)}: ds = sigmoid(g) dy, dg = sigmoid'(g) dy . s
  // QK-norm (op.qk_norm; rows x cols is the whole qkv tensor): an RMSNorm over each Q and K head
  qk_norm_fwd,  // in {x[, gamma_q, gamma_k]} out {y, rstd (rows, normed heads)}: V copied
  qk_norm_bwd,  // in {dy, x[, gamma_q, gamma_k], rstd} out {dx[, dgamma_q, dgamma_k]}: V's dy copied
};

std::string_view to_string(Phase p);
std::string_view to_string(OpKind k);
std::string_view to_string(Group g);
std::string_view to_string(OpImpl i);

// fp8_copy: an FP8 E4M3 copy of another tensor (1 byte an element), written by a cast_fp8 op.
enum class TensorRole { input, weight, activation, statistic, gradient, weight_grad, index, fp8_copy };
std::string_view to_string(TensorRole r);
// Inputs, weights and indices: filled with seeded random values and only read by the layer
// (every other tensor is written by an op). These are the tensors an input set copies.
inline bool is_filled(TensorRole r) { return r == TensorRole::input || r == TensorRole::weight || r == TensorRole::index; }

// How tensor parallelism (Megatron-LM) splits a weight: data the blocks give each weight, for
// predict (the backends run the whole layer on one device and ignore it). Weights are stored
// (in, out), a routed expert's (E, in, out):
//   column      the output features split (dim 1; a 1-D weight along its one dim): QKV, up and
//               gate, the LM head by vocabulary, column-parallel biases, the sinks by head
//   row         the input features split (dim 0): the attention output and the FFN's down
//               projections
//   replicated  whole on every rank: norms' weights, row-parallel biases, the router, and MLA's
//               down projections (Megatron-LM's "duplicated" TELinear), whose GEMMs split their
//               tokens under sequence parallelism and are repeated on every rank without
// A routed expert's weight (TensorSpec::expert) splits its experts (dim 0) over expert
// parallelism and, as column or row says, each expert over expert tensor parallelism, never
// over tp. A weight's gradient and its fp8 copies are split as it is.
enum class WeightSplit { replicated, column, row };
std::string_view to_string(WeightSplit s);

struct TensorSpec {
  std::string name;
  TensorRole role;
  std::vector<int64_t> shape;  // row-major
  WeightSplit split = WeightSplit::replicated;  // weights, their gradients and fp8 copies
  bool expert = false;                          // a routed expert's weight, gradient or fp8 copy
  std::string source = {};                      // an fp8 copy: the tensor it copies
  bool transposed = false;                      // ... stored as its transpose
  int64_t numel() const;
};

// Row-major GEMM: C[m, n] = alpha * op(A)[m, k] * op(B)[k, n] + beta * C, repeated over
// `batch` with element strides between batch members. A is stored m x k (k x m when trans_a)
// with leading dimension lda; likewise B (k x n, or n x k when trans_b) and C (m x n).
// Which operand of a causal attention product is triangular, so a backend may skip the masked
// blocks (GemmSpec::causal_block): c_lower (S = Q K^T, dP = dO V^T: only C's lower triangle
// is used), a_lower (O = P V, dQ = dS K: op(A) is zero above the diagonal), a_upper
// (dV = P^T dO, dK = dS^T Q: op(A) is zero below it). Each has m = the square's side.
enum class Triangle { none, c_lower, a_lower, a_upper };

// Which (query i, key j) pairs of a causal square attend, beyond j <= i: window > 0, the last
// `window` keys (i - window < j, Mistral's and gpt-oss's sliding window); chunk > 0, the keys of
// i's own chunk of `chunk` positions (j / chunk == i / chunk, Llama 4's chunked attention).
// Both 0: the whole causal triangle.
struct AttentionMask {
  int64_t window = 0, chunk = 0;
  bool any() const { return window > 0 || chunk > 0; }
  // The first key row i sees, and one past the last query that sees key j (of n rows).
  int64_t first_key(int64_t i) const;
  int64_t end_query(int64_t j, int64_t n) const;
  // Pairs attended over an n x n square: sum over i of (i + 1 - first_key(i)).
  double attended(int64_t n) const;
  // Model FLOPs' area of the mask (docs/method.md): n^2 / 2 for the causal triangle (Megatron-LM's
  // halved square), n w - w^2 / 2 for a window w < n, n c / 2 for chunks of c < n (a last
  // partial chunk r: (n - r) c / 2 + r^2 / 2).
  double model_area(int64_t n) const;
};

// A grouped GEMM (a mixture of experts' routed experts): `batch` problems, one per expert, whose
// row counts are known only when the layer runs (GemmSpec::group_counts, a tensor of batch
// values written by the router). m_rows: problem e has counts[e] rows of A and C, rows of all
// problems stacked in expert order (A and C row offsets are the counts' prefix sums), B the
// expert's own (stride_b apart): the forward and dgrad GEMMs. k_rows: problem e sums over
// counts[e] rows of A and B (stacked likewise), C the expert's own (stride_c apart): the wgrad
// GEMMs. The grouped dimension (m or k) holds the total over the problems (k T), so the
// analytic FLOPs 2 m n k are those of a balanced router, and equal what runs when no token is
// dropped whatever the spread.
enum class Grouped { none, m_rows, k_rows };

struct GemmSpec {
  int64_t m = 0, n = 0, k = 0, batch = 1;
  bool trans_a = false, trans_b = false;
  std::string a, b, c;                       // tensor names
  int64_t a_offset = 0, b_offset = 0, c_offset = 0;  // elements from each tensor's start
  int64_t lda = 0, ldb = 0, ldc = 0;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;  // elements between batch members
  double alpha = 1.0, beta = 0.0;
  bool linear = false;  // a linear layer (weights) rather than an attention product
  // An outer repeat of the whole strided batch (grouped-query attention: once per query head
  // of a kv group): repeat r in [0, repeat) adds r * repeat_a/b/c elements to the offsets and
  // uses beta for r = 0 and repeat_beta for r > 0 (1 where the repeats sum into one C: the
  // gradients of the shared K and V). repeat = 1: one strided batch, as above.
  int64_t repeat = 1;
  int64_t repeat_a = 0, repeat_b = 0, repeat_c = 0;
  double repeat_beta = 0.0;
  Triangle triangle = Triangle::none;
  // > 0 (with a triangle): the product runs in row blocks of C of this many rows, each skipping
  // the part its triangle makes zero or unused (GraphOptions::causal_block); c_lower writes 0
  // to the part of C it skips. 0: the whole m x n x k product.
  int64_t causal_block = 0;
  AttentionMask mask = {};  // a triangle's window or chunks: the blocks skip what it masks too
  Grouped grouped = Grouped::none;
  std::string group_counts = {};  // grouped: the tensor of per-problem row counts
  // grouped: the router may drop rows (MoeSpec::capacity), so the counts sum to at most the
  // grouped rows, the rest of the stacked rows unused; otherwise they sum to exactly them.
  bool drops = false;
  // Where problem e, whose rows start at row `first` of the stacked operands, begins in A, B
  // and C (element offsets from a_offset, b_offset, c_offset), for either transpose of each.
  struct Part {
    int64_t a, b, c;
  };
  Part group_part(int64_t e, int64_t first) const;
  // The problems once the router has run, as every backend and the verifier read them: each
  // expert's rows from `counts` (the counts tensor's values, as a backend read them) and the row
  // each starts at. Throws Error naming `op` when a count is not a whole number of the grouped
  // rows or the counts do not sum to them (more than them where the router drops: `drops`),
  // as when the route has not run, or wrote something else.
  struct Groups {
    std::vector<int64_t> rows, first;
  };
  Groups groups(const std::vector<double>& counts, const std::string& op) const;
  // Problem e of `gr` as one plain GEMM: batch 1, its rows (m or k), its offsets added.
  GemmSpec problem(int64_t e, const Groups& gr) const;
  // Under --precision fp8, stays in the layer's other precision (a mixture of experts' router,
  // which Transformer Engine leaves out of fp8).
  bool keep_precision = false;
  // The part of the product that row block [r0, r1) of C executes: columns [0, n_end) of C
  // and the k range [k0, k1).
  struct Block {
    int64_t n_end, k0, k1, n0 = 0;  // c_lower with a mask: columns [n0, n_end)
  };
  Block block(int64_t r0, int64_t r1) const;
  bool blocked() const { return causal_block > 0 && triangle != Triangle::none; }
  double flops() const;       // as executed: the row blocks' products when blocked()
  double full_flops() const;  // the whole m x n x k product of every member and repeat
};

// RoPE on one qkv-shaped tensor of rows t = si * batch + bi: each row holds kv_heads groups
// of (group + 2) heads of d_head (group query heads, K, V); the first group + 1 of each are
// rotated. Pair (j, j + d_head/2) of a head at position si turns by the angle
// si * theta^(-2j / d_head), j < d_head/2 (Hugging Face Llama's "rotate half").
// Other layouts (MLA's decoupled RoPE parts): `rotated` heads of d_head per block (0: group + 1,
// the group's queries and its K), blocks `block` elements apart (0: (group + 2) d_head), the
// first rotated element `offset` into its block. MLA's q (rows of h heads of nope + rope):
// kv_heads h, rotated 1, block nope + rope, offset nope, d_head rope; its k_rope (rows of rope):
// kv_heads 1, rotated 1, block rope.
struct RopeSpec {
  int64_t batch = 1, kv_heads = 0, group = 1, d_head = 0;
  double theta = 10000.0;
  int64_t rotated = 0, block = 0, offset = 0;
  int64_t rotated_heads() const { return rotated > 0 ? rotated : group + 1; }
  int64_t block_width() const { return block > 0 ? block : (group + 2) * d_head; }
  // Element offset of rotated head hd of block grp in a row.
  int64_t head_at(int64_t grp, int64_t hd) const { return grp * block_width() + offset + hd * d_head; }
};

// MLA's assembly of the attention core's qkv from its parts (mla_qkv_fwd, mla_qkv_bwd): rows of
// q (heads x (nope + rope)), kv_b (heads x (nope + v)) and k_rope (rope, shared by the heads)
// into rows of qkv (heads x [q (nope + rope), k_nope, k_rope, v]).
struct MlaSpec {
  int64_t heads = 0, nope = 0, rope = 0, v = 0;
  int64_t qk() const { return nope + rope; }
  int64_t q_width() const { return heads * qk(); }
  int64_t kv_b_width() const { return heads * (nope + v); }
  int64_t qkv_width() const { return heads * (2 * qk() + v); }
};

// QK-norm on one qkv-shaped tensor (graph.hpp's layout): each row holds kv_heads groups of
// (group + 2) heads of d_head; the first group + 1 of each (queries, K) are normalised,
// y = x rstd (gamma), rstd = 1 / sqrt(mean over the head of x^2 + eps); V is copied. weighted:
// gamma_q (d_head) for every query head, gamma_k (d_head) for every K head (Qwen3's q_norm,
// k_norm); unweighted: Llama 4's L2Norm (the same with gamma 1). rstd: (rows, kv_heads (group + 1)).
struct QkNormSpec {
  int64_t kv_heads = 0, group = 1, d_head = 0;
  bool weighted = true;
  int64_t normed_heads() const { return kv_heads * (group + 1); }
  int64_t width() const { return kv_heads * (group + 2) * d_head; }
};

// A mixture of experts' router and token movement (the moe_* ops): E experts, top-k per token.
// Scores: softmax over the E logits, or sigmoid of each; topk_first: the top k of the logits
// first, then the scores of those k (softmax over the k; gpt-oss, Llama 4), else the scores of
// all E, then their top k. norm_topk: the k weights renormalised to sum to 1. Grouped top-k
// (n_group > 0): the E experts in n_group groups, each group scored by the sum of its two best
// scores, the best topk_group groups kept, the top k among their experts (DeepSeek-V3's rule).
// aux_coef > 0: the load-balancing loss coef E sum_e (count_e / T) mean_t p_te, p = softmax of
// the logits (Hugging Face's load_balancing_loss_func), its gradient added in moe_route_bwd;
// count_e is what the router chose, before any dropping (Megatron-LM's tokens_per_expert).
// capacity > 0: each expert takes at most expert_capacity() of the routed rows and drops the
// rest, the assignments of lowest weight first (ties: the later token), as Megatron-LM's
// --moe-expert-capacity-factor with its default drop policy "probs" (without padding to the
// capacity); a dropped assignment's slot is -1, it is neither dispatched nor combined, and the
// counts are the rows each expert kept. 0: no limit, no token dropped.
// scale: the k weights x scale after any renormalisation (DeepSeek's routed_scaling_factor,
// Megatron-LM's --moe-router-topk-scaling-factor); 1: none.
struct MoeSpec {
  int64_t experts = 0, top_k = 0, n_group = 0, topk_group = 0;
  bool sigmoid = false, topk_first = false, norm_topk = false;
  double aux_coef = 0;
  double capacity = 0;
  double scale = 1;
};
// The rows an expert keeps under the capacity factor, of `tokens` tokens: Megatron-LM's
// get_capacity, ceil(k tokens / E x capacity); k tokens (all of them) with no capacity.
int64_t expert_capacity(const MoeSpec& m, int64_t tokens);

// The routed experts' rows from the router's counts (E): each expert's rows and the row it starts
// at, of `total` stacked rows; GemmSpec::groups's rule (the counts whole numbers summing to total,
// at most total with `drops`), which the routed experts' bias ops share. Throws Error naming op.
GemmSpec::Groups expert_groups(const std::vector<double>& counts, int64_t experts, int64_t total, bool drops,
                               const std::string& op);

// How a tensor-parallel group splits an op's work, for predict: data the blocks give each op.
// A linear GEMM splits as its weight does (TensorSpec::split); every other op:
//   features    split over tp: the op works per head (the attention squares, RoPE, QK-norm) or
//               along a width tp splits (d_ff, the QKV width, the vocabulary)
//   sequence    along the model width d or a replicated weight's output, which tp does not
//               split: every rank repeats it, or under sequence parallelism does its s / tp tokens
//   replicated  every rank does all of it, sequence parallel or not (MLA's shared k_rope, which
//               Megatron-LM gathers along the sequence before its RoPE)
enum class OpSplit { features, sequence, replicated };
std::string_view to_string(OpSplit s);

struct Op {
  std::string name;
  Phase phase = Phase::forward;
  Group group = Group::layer;
  OpKind kind = OpKind::elementwise;
  OpImpl impl = OpImpl::gemm;
  Precision precision = Precision::fp32;
  GemmSpec gemm;                     // impl == gemm
  std::vector<std::string> inputs;   // other impls: see OpImpl
  std::vector<std::string> outputs;
  int64_t batch = 1, rows = 0, cols = 0;  // shape the non-GEMM op works on
  bool transpose = false;                 // cast_fp8: the copy is (cols, rows)
  RopeSpec rope;                          // rope_fwd, rope_bwd: rows x cols is the whole qkv tensor
  MlaSpec mla;                            // mla_qkv_fwd, mla_qkv_bwd: rows x cols is qkv
  MoeSpec moe;                            // moe_*: rows tokens
  QkNormSpec qk_norm;                     // qk_norm_fwd, qk_norm_bwd
  AttentionMask mask;                     // softmax_causal_*: the window or chunks beyond j <= i
  int64_t sink_heads = 0;                 // softmax_causal_* with sinks: heads (member b of batch has sink b % heads)
  OpSplit split = OpSplit::features;  // see OpSplit; linear GEMMs split as their weight
  // The attention core (the products with the scores and the probabilities, the softmax between
  // them): what a fused attention kernel runs in one, and what selective recompute re-runs.
  bool attention_core = false;
  // On a mixture of experts' dispatched rows (the routed experts' GEMMs and activations, their
  // fp8 casts): its time waits for the busiest expert (predict's --moe-imbalance).
  bool routed = false;
  double flops = 0;        // analytic FLOPs as executed (causal attention: the full square, or its row blocks)
  double model_flops = 0;  // Megatron-LM convention: causal attention GEMMs halved
  double min_bytes = 0;    // every operand read once and every result written once
  bool causal_square = false;  // an attention product whose model FLOPs halve the square
  std::string shape_str() const;  // "2048x4608x1536", "96x[2048x2048x128]", repeated "4x16x[2048x2048x128]"
};

// A routed experts' bias op (bias_add {x, bias (E, cols), counts}, bias_grad {dy, counts} ->
// dbias (E, cols); E = op.moe.experts): each expert's rows take (or give) its own row of the
// bias; rows past the counts' sum (dropped under a capacity) are left as they are.
bool expert_bias_op(const Op& op);

struct LayerShape {
  int64_t batch = 1;     // micro-batch b
  int64_t seq = 2048;    // s
  int64_t d_model = 0;   // d
  int64_t n_heads = 0;   // h
  int64_t d_head = 0;
  int64_t d_ff = 0;
  int64_t vocab = 50257;
  // Architecture (model/model.hpp); the defaults are GPT-3's.
  int64_t n_kv_heads = 0;  // 0 = n_heads
  NormKind norm = NormKind::layernorm;
  FfnKind ffn = FfnKind::gelu;
  PositionKind position = PositionKind::learned;
  double rope_theta = 10000.0;
  LinearBiases biases;
  bool tied_embeddings = true;
  LayerSpec layer;  // which of the model's kinds of layer this is (model/model.hpp)
  QkNorm qk_norm = QkNorm::none;  // Qwen3's rmsnorm (every layer), Llama 4's l2 (its RoPE layers only)
  bool attention_sinks = false;   // a learned logit per head joined to each softmax row (gpt-oss)
  // Multi-head latent attention (DeepSeek-V2/V3) when kv_lora_rank > 0: n_kv_heads = n_heads,
  // d_head = qk_nope + qk_rope; q_lora_rank 0: Q straight from d.
  int64_t q_lora_rank = 0, kv_lora_rank = 0, qk_nope = 0, qk_rope = 0, v_head = 0;
  bool mla() const { return kv_lora_rank > 0; }
  // A mixture of experts' layer (LayerSpec::moe): the routed experts (SwiGLU, or GeLU/ReLU as
  // ffn says, of d_ff_expert each), top-k per token, the shared experts as one MLP of
  // n_shared x d_ff_shared, the router's settings (MoeSpec). d_ff stays the dense layers' width.
  int64_t n_experts = 0, top_k = 0, d_ff_expert = 0, n_shared = 0, d_ff_shared = 0;
  bool expert_bias = false, router_bias = false;
  bool shared_gate = false;  // sigmoid(x W_g) x the shared experts' output, W_g (d, 1) (Qwen2-MoE)
  MoeSpec router;
  bool moe() const { return layer.moe && n_experts > 0; }
  int64_t tokens() const { return batch * seq; }
  int64_t kv_heads() const { return n_kv_heads > 0 ? n_kv_heads : n_heads; }
};
// The shape of the model's kind of layer `kind` (an index into m.layer_kinds(); 0: the kind of
// its first layer, the only one of a dense model).
LayerShape layer_shape(const ModelConfig& m, int64_t batch, int64_t seq, size_t kind = 0);
// The kind measure runs and estimate shows: the model's first MoE kind, else its first (0).
size_t main_layer_kind(const ModelConfig& m);
// A shape from its parts: d_model = heads * d_head, d_ff = ffn_mult * d_model.
LayerShape layer_shape(int64_t batch, int64_t seq, int64_t heads, int64_t d_head, int64_t vocab, int64_t ffn_mult = 4);

struct GraphOptions {
  bool recompute = false;     // re-run the forward inside backward (full activation recompute)
  bool include_head = false;  // final LN, logits GEMM, softmax cross-entropy and backward
  // fp8: the layer's linear-layer GEMMs (forward, dgrad, wgrad) take FP8 E4M3 copies of their
  // operands, both stored K-major (what Hopper's FP8 tensor cores need), made by cast_fp8 ops
  // just before them; everything else (attention products, kernels, the LM head) runs in bf16.
  Precision precision = Precision::fp32;
  // Copies of the filled tensors (is_filled) a backend keeps, to rotate between timed repeats
  // so no repeat reads inputs the previous one left in cache. Memory only: the ops are the same.
  int64_t input_sets = 1;
  // The causal attention products (GemmSpec::triangle) in row blocks of this many rows that
  // skip the masked blocks: executed FLOPs about (1 + block/s)/2 of the full square (the CPU
  // backend's default). 0: the whole s x s square, as cuBLASLt's strided batches run it.
  int64_t causal_block = 0;
};

struct LayerGraph {
  LayerShape shape;
  GraphOptions options;
  std::vector<TensorSpec> tensors;
  std::vector<Op> ops;

  const TensorSpec& tensor(const std::string& name) const;  // throws Error if unknown
  const Op& op(const std::string& name) const;              // throws Error if unknown
  // Sums over ops matching the filter.
  double total_flops(Phase p) const;
  double total_model_flops(Phase p) const;
  double gemm_flops(Phase p, Group g = Group::layer) const;
  // Bytes of every tensor, as the backends allocate them (filled tensors once per input set).
  double tensor_bytes() const;
  // A linear GEMM's weight: its B (forward, dgrad; or B's fp8 copy's source) or, in a wgrad, its
  // C (the weight's gradient). Throws Error when neither operand is a weight or its gradient.
  const TensorSpec& gemm_weight(const GemmSpec& gs) const;
  // Whether `t` is the fp8 copy of a weight (TensorSpec::source a weight), which Transformer
  // Engine makes once a step and keeps, unlike an activation's.
  bool weight_fp8_copy(const TensorSpec& t) const;
  // The dimension of a linear GEMM that its weight's split divides (over tp; a routed expert's
  // over expert tensor parallelism), and the one that runs over the tokens (m when the weight
  // is B, k when it is C), which sequence parallelism divides. none: a replicated weight.
  enum class Dim { none, m, n, k };
  Dim split_dim(const GemmSpec& gs) const;
  Dim token_dim(const GemmSpec& gs) const;
};

// Builds the graph. Throws UsageError on shapes that overflow.
LayerGraph build_layer_graph(const LayerShape& shape, const GraphOptions& options);

// Tensors and ops are found by name (backends, verification, results): two blocks giving one
// name would share a buffer or an op's row without any error. Throws if a tensor or an op name
// is given twice; build_layer_graph calls it on every graph it returns.
void check_unique_names(const LayerGraph& g);

// Analytic FLOP conventions for the non-GEMM ops, per element processed (documented in
// docs/method.md). exp, tanh, rsqrt and log count as one FLOP each.
namespace flop_convention {
inline constexpr double kLayerNormFwd = 8;    // mean 1; variance 3; normalise 2; affine 2
inline constexpr double kLayerNormBwd = 13;   // xhat 2; dxhat 1; dgamma 2; dbeta 1; two row sums 3; dx 4
inline constexpr double kSoftmaxFwd = 4;      // per unmasked element: sub max, exp, add, scale
inline constexpr double kSoftmaxBwd = 4;      // per unmasked element: dot 2; sub, mul 2
inline constexpr double kGeluFwd = 9;         // x^3 2; fma-like 2; scale 1; tanh 1; +1, *x, *0.5 3
inline constexpr double kGeluBwd = 16;        // recompute tanh argument and tanh 5; derivative 10; *dy 1
inline constexpr double kBiasAdd = 1;
inline constexpr double kBiasGrad = 1;
inline constexpr double kResidualAdd = 1;
inline constexpr double kCrossEntropyFwd = 4;  // per logit: max, sub, exp, add
inline constexpr double kCrossEntropyBwd = 4;  // per logit: sub, exp, mul, scale
inline constexpr double kCastFp8 = 1;          // per element: the scale multiply (the conversion and amax are not FLOPs)
inline constexpr double kRmsNormFwd = 4;   // sum of squares 2; normalise 1; scale by gamma 1
inline constexpr double kRmsNormBwd = 9;   // xhat 1; g = dy gamma 1; dgamma 2; row sum of g xhat 2; dx 3
// Per rotated element of Q and K: a pair (a, b) -> (a c - b s, b c + a s) is 4 mul + 2 add.
// The angles' sin and cos depend on position and pair only (frameworks cache them as a table);
// they are not counted.
inline constexpr double kRope = 3;
inline constexpr double kSwigluFwd = 5;    // sigmoid 3 (exp, add, reciprocal); * gate 1; * up 1
inline constexpr double kSwigluBwd = 11;   // sigmoid 3; silu 1; dup 1; silu' = s (1 + g (1 - s)) 4; dgate 2
inline constexpr double kReluFwd = 1;      // max(x, 0)
inline constexpr double kReluBwd = 1;      // dy where x > 0
// MLA: the gradient of the shared k_rope is the sum over the heads of their k_rope slots,
// heads - 1 adds per element of k_rope (the assembly itself copies: no FLOPs).
inline constexpr double kMlaRopeSum = 1;
// Mixture of experts (docs/method.md, "Mixtures of experts"): the router's scores, per element
// scored: softmax 4 (sub max, exp, add, scale), sigmoid 3 (exp, add, reciprocal); the k weights
// renormalised 2 each (add, divide); grouped top-k 1 per group (its two best added); the aux
// loss's softmax over all E (4 each, unless the scores are that softmax already) and mean 1 per
// logit. Choosing the top k compares and is not counted. Backward: softmax 2 per logit plus 2 per
// chosen expert (the dot over the k, then s (ds - dot)); sigmoid 3 per chosen expert; the
// renormalisation 4 per chosen expert; the softmax over the k chosen 4 each; the aux loss 4 per
// logit. These two functions are the whole convention, per layer of `rows` tokens.
double moe_route_fwd(const MoeSpec& m, int64_t rows);
double moe_route_bwd(const MoeSpec& m, int64_t rows);
// dispatch: copies (no FLOPs); its backward k - 1 adds per element of a token's row; combine:
// a multiply and an add per element of each of the k rows; its backward a multiply (the rows'
// gradients) and a multiply-add (the weights' gradients, a dot) per element of each.
inline constexpr double kMoeDispatchBwd = 1;  // x (k - 1) T d
inline constexpr double kMoeCombineFwd = 2;   // x k T d
inline constexpr double kMoeCombineBwd = 3;   // x k T d
// The shared-expert gate (Qwen2-MoE): sigmoid(g) once a token (exp, add, reciprocal: 3) and a
// multiply an element; backward sigmoid and its derivative s (1 - s) once a token (5), and per
// element the multiply of dy and the multiply-add of the dot dy . s.
inline constexpr double kMoeGateFwdToken = 3, kMoeGateFwd = 1;  // + x T d
inline constexpr double kMoeGateBwdToken = 5, kMoeGateBwd = 3;  // + x T d
// QK-norm, per normalised element of Q and K: the RMSNorm's (kRmsNormFwd/Bwd) weighted; unweighted
// (Llama 4's L2Norm) without the gamma multiply (forward) or g = dy gamma and dgamma (backward).
inline constexpr double kQkNormFwd = kRmsNormFwd;  // 4
inline constexpr double kQkNormBwd = kRmsNormBwd;  // 9
inline constexpr double kQkL2NormFwd = 3;          // sum of squares 2; normalise 1
inline constexpr double kQkL2NormBwd = 6;          // xhat 1; row sum of dy xhat 2; dx 3
// Attention sinks, per softmax row: exp of the sink 1, added to the sum 1, its probability 1
// (the max over the row and sink compares: not counted); backward: its logit's gradient
// -p_sink * (sum_j p_j dp_j), the dot the row's softmax backward has, a multiply and an add.
inline constexpr double kSinkFwd = 3;
inline constexpr double kSinkBwd = 2;
}  // namespace flop_convention

}  // namespace flopscope
