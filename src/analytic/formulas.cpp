#include "analytic/formulas.hpp"

#include <fmt/format.h>

namespace flopscope {

namespace {

double D(int64_t v) { return static_cast<double>(v); }

Formula make(std::string id, std::string title, double per_token, const ModelConfig& m, std::string source) {
  return {std::move(id), std::move(title), per_token, per_token * m.train_tokens, std::move(source)};
}

// The full-width graph, as `formula_graph` and `seed_check` use it.
LayerGraph full_graph(const ModelConfig& m) {
  GraphOptions o;
  o.include_head = true;
  return build_layer_graph(layer_shape(m, 1, m.n_ctx), o);
}

}  // namespace

namespace {
// Weight matrices of the FFN: up and down, plus the gate with SwiGLU.
double ffn_matrices(const ModelConfig& m) { return m.ffn == FfnKind::swiglu ? 3 : 2; }
// Weights of one layer's attention projections: Q (d x dq), K and V (d x dkv), output (dq x d).
// MLA: Q through its q_lora_rank bottleneck (or d x h dqk), the joint K/V down projection
// d x (kv_lora_rank + qk_rope), its up projection kv_lora_rank x h (qk_nope + v), output h v x d.
double attention_weights(const ModelConfig& m) {
  const double d = D(m.d_model);
  if (m.mla()) {
    const double h = D(m.n_heads), ql = D(m.q_lora_rank), kl = D(m.kv_lora_rank), qk = D(m.qk_head_dim());
    const double q = m.q_lora_rank > 0 ? d * ql + ql * h * qk : d * h * qk;
    return q + d * (kl + D(m.qk_rope_head_dim)) + kl * h * D(m.qk_nope_head_dim + m.v_head_dim) +
           h * D(m.v_head_dim) * d;
  }
  const double dq = D(m.q_dim()), dkv = D(m.kv_dim());
  return d * dq + 2 * d * dkv + dq * d;
}
// One routed expert's parameters (c d f_e weights, and gpt-oss's biases).
double expert_parameters(const ModelConfig& m) {
  const double d = D(m.d_model), fe = D(m.d_ff_expert);
  return ffn_matrices(m) * d * fe + (m.expert_bias ? (ffn_matrices(m) - 1) * fe + d : 0);
}
// The weight matrices one token runs through in the FFN of a layer of kind l: the dense FFN, or
// top-k routed experts, the shared experts and the router (biases and gates left out).
double ffn_active_weights(const ModelConfig& m, const LayerSpec& l) {
  const double d = D(m.d_model), c = ffn_matrices(m);
  if (!l.moe) return c * d * D(m.d_ff());
  return c * d * (D(m.top_k) * D(m.d_ff_expert) + D(m.n_shared_experts) * D(m.d_ff_shared)) + D(m.n_experts) * d;
}
}  // namespace

LayerParameters layer_parameters(const ModelConfig& m, const LayerSpec& l) {
  const double d = D(m.d_model), ff = D(m.d_ff());
  LayerParameters p;
  p.attention = attention_weights(m);
  if (m.mla()) {
    // q_a_proj and kv_a_proj_with_mqa carry attention_bias, o_proj too (q_b, kv_b never).
    p.attention_biases = (m.biases.qkv ? D(m.q_lora_rank) + D(m.kv_lora_rank + m.qk_rope_head_dim) : 0) +
                         (m.biases.attn_out ? d : 0);
    p.attention_extra = D(m.q_lora_rank) + D(m.kv_lora_rank);  // q_a_layernorm (when q_lora) and kv_a_layernorm
  } else {
    p.attention_biases = (m.biases.qkv ? D(m.q_dim() + 2 * m.kv_dim()) : 0) + (m.biases.attn_out ? d : 0);
    if (m.qk_norm == QkNorm::rmsnorm) p.attention_extra = 2 * D(m.d_head);  // q_norm, k_norm: RMSNorm(head_dim)
  }
  if (m.attention_sinks) p.attention_extra += D(m.n_heads);
  if (l.moe) {
    p.routed_experts = D(m.n_experts) * expert_parameters(m);
    p.active_experts = D(m.top_k) * expert_parameters(m);
    p.shared_experts = ffn_matrices(m) * d * D(m.n_shared_experts) * D(m.d_ff_shared) + (m.shared_expert_gate ? d : 0);
    p.router = D(m.n_experts) * d + (m.router_bias ? D(m.n_experts) : 0);
  } else {
    p.ffn = ffn_matrices(m) * d * ff;
    p.ffn_biases = m.biases.ffn ? (ffn_matrices(m) - 1) * ff + d : 0;
  }
  p.norms = 2 * (m.norm == NormKind::layernorm ? 2 * d : d);
  return p;
}

double ParameterBreakdown::layers() const {
  double s = 0;
  for (const auto& [kind, p] : kinds) s += D(kind.count) * p.total();
  return s;
}

double ParameterBreakdown::active_layers() const {
  double s = 0;
  for (const auto& [kind, p] : kinds) s += D(kind.count) * p.active();
  return s;
}

ParameterBreakdown parameter_breakdown(const ModelConfig& m) {
  const double d = D(m.d_model), V = D(m.vocab);
  const double norm = m.norm == NormKind::layernorm ? 2 * d : d;  // gain and bias, or gain only
  ParameterBreakdown p;
  p.n_layers = D(m.n_layers);
  p.embeddings = V * d;
  p.positions = m.position == PositionKind::learned ? D(m.position_rows()) * d : 0;
  for (const auto& k : m.layer_kinds()) p.kinds.emplace_back(k, layer_parameters(m, k.spec));
  if (!p.kinds.empty()) {
    const LayerParameters& first = p.kinds.front().second;
    p.attention = first.attention;
    p.attention_biases = first.attention_biases;
    p.ffn = first.ffn;
    p.ffn_biases = first.ffn_biases;
    p.norms = first.norms;
  }
  p.final_norm = m.count_final_norm ? norm : 0;
  p.lm_head = m.tied_embeddings ? 0 : V * d;
  return p;
}

double parameter_count(const ModelConfig& m) { return parameter_breakdown(m).total(); }
double active_parameter_count(const ModelConfig& m) { return parameter_breakdown(m).active(); }

double non_embedding_parameters(const ModelConfig& m) {
  double s = 0;
  for (const auto& k : m.layer_kinds()) s += D(k.count) * (attention_weights(m) + ffn_active_weights(m, k.spec));
  return s;
}

bool gpt3_shaped(const ModelConfig& m) {
  return !m.moe() && !m.mla() && m.norm == NormKind::layernorm && m.ffn == FfnKind::gelu && m.position == PositionKind::learned &&
         m.kv_heads() == m.n_heads && m.q_dim() == m.d_model && m.d_ff() == 4 * m.d_model &&
         m.biases == LinearBiases{};
}

bool chinchilla_applies(const ModelConfig& m) {
  return m.kv_heads() == m.n_heads && m.ffn != FfnKind::swiglu && !m.moe() && !m.mla();
}

Formula formula_seed(const ModelConfig& m) {
  // The back-of-envelope estimate flopscope was started from: forward per layer per token
  // 2 d^2 (self-attention) + 8 d^2 (FFN) = 10 d^2; backward = forward; x layers x tokens.
  const double d = D(m.d_model);
  return make("seed", "seed: 10 d^2 per layer per token, backward = forward", 2 * 10 * d * d * D(m.n_layers), m,
              "the estimate this project started from (quick back-of-envelope)");
}

Formula formula_6nd(const ModelConfig& m) {
  if (m.moe())
    return make("6nd", "6 N_active D, N_active from the architecture (top-k routed + shared experts, router, embeddings)",
                6 * active_parameter_count(m), m,
                "Brown et al. 2020 (GPT-3), Table D.1; Kaplan et al. 2020, sec. 2.1; N the active parameters per token");
  return make("6nd", "6 N D, N from the architecture", 6 * parameter_count(m), m,
              "Brown et al. 2020 (GPT-3), Table D.1; Kaplan et al. 2020, sec. 2.1");
}

namespace {
// Kaplan's d_attn, the width of Q K^T and of P V per layer: heads x d_head (= d_model for
// GPT-3); MLA: heads x the mean of the query/key and value head sizes.
double attention_width(const ModelConfig& m) {
  return m.mla() ? D(m.n_heads) * D(m.qk_head_dim() + m.v_dim()) / 2 : D(m.q_dim());
}
}  // namespace

Formula formula_kaplan(const ModelConfig& m) {
  // d_attn = heads x d_head (= d_model for GPT-3).
  return make("kaplan", "6 N + 6 L s d_attn (N non-embedding, attention included)",
              6 * non_embedding_parameters(m) + 6 * D(m.n_layers) * D(m.n_ctx) * attention_width(m), m,
              "Kaplan et al. 2020, Scaling Laws for Neural Language Models, Table 1");
}

Formula formula_palm(const ModelConfig& m) {
  // 12 L H Q T with H heads, Q head size, T sequence length; H Q = d. N counts all parameters.
  // MoE: N active; MLA: Q the mean of the query/key and value head sizes.
  const double q = m.mla() ? D(m.qk_head_dim() + m.v_dim()) / 2 : D(m.d_head);
  return make("palm", "6 N + 12 L H Q T",
              6 * (m.moe() ? active_parameter_count(m) : parameter_count(m)) +
                  12 * D(m.n_layers) * D(m.n_heads) * q * D(m.n_ctx),
              m,
              "Chowdhery et al. 2022, PaLM, appendix B");
}

namespace {
// Forward GEMM FLOPs of one layer of kind l per token, the full s x s square (Narayanan et
// al.'s count): projections 2 (d dq + 2 d dkv + dq d), FFN 2 c d d_ff (MoE: the top-k and
// shared experts and the router), scores and context 4 s dq (MLA: 2 s h (dqk + dv)).
// GPT-3: 24 d^2 + 4 s d.
double layer_gemm_forward(const ModelConfig& m, const LayerSpec& l) {
  if (!l.moe && !m.mla())
    return 2 * attention_weights(m) + 2 * ffn_matrices(m) * D(m.d_model) * D(m.d_ff()) +
           4 * D(m.n_ctx) * D(m.q_dim());
  return 2 * attention_weights(m) + 2 * ffn_active_weights(m, l) +
         2 * D(m.n_ctx) * D(m.n_heads) * D(m.qk_head_dim() + m.v_dim());
}
// Sum over the schedule of `per_layer` x `factor` x count, each kind's factor x count first so
// a dense model's (factor x L) x per-layer is the one-kind formula's arithmetic exactly.
template <typename F>
double over_layers(const ModelConfig& m, double factor, F per_layer) {
  double s = 0;
  for (const auto& k : m.layer_kinds()) s += factor * D(k.count) * per_layer(k.spec);
  return s;
}
}  // namespace

Formula formula_megatron(const ModelConfig& m) {
  // Per iteration of B sequences: 72 B s l h^2 (1 + s/6h + V/12lh); per token divide by B s:
  // 3 x (24 h^2 + 4 s h) per layer + 6 V h, generalised as layer_gemm_forward.
  return make("megatron", "72 B s l h^2 (1 + s/6h + V/12lh) per iteration, generalised (kv heads, d_ff, SwiGLU)",
              over_layers(m, 3, [&](const LayerSpec& l) { return layer_gemm_forward(m, l); }) +
                  6 * D(m.vocab) * D(m.d_model),
              m,
              "Narayanan et al. 2021, Efficient Large-Scale Language Model Training on GPU Clusters, sec. 5.1");
}

Formula formula_megatron_recompute(const ModelConfig& m) {
  // 96 B s l h^2 (1 + s/6h + V/16lh): the layers' forward runs twice (4 x), the logits 3 x.
  return make("megatron_recompute",
              "96 B s l h^2 (1 + s/6h + V/16lh) per iteration, with recompute, generalised",
              over_layers(m, 4, [&](const LayerSpec& l) { return layer_gemm_forward(m, l); }) +
                  6 * D(m.vocab) * D(m.d_model),
              m,
              "Narayanan et al. 2021, sec. 5.1, eq. 3 (activation recomputation)");
}

int64_t megatron_padded_vocab(int64_t vocab, int64_t multiple) {
  if (multiple <= 1) return vocab;
  return (vocab + multiple - 1) / multiple * multiple;
}

Formula formula_megatron_lm(const ModelConfig& m, int64_t vocab_multiple) {
  // Per token: 3 (fwd, wgrad, dgrad) x 2 (multiply-add) x [d (dq + 2 dkv) + dq s/2 x 2 + dq d
  // + d d_ff c] per layer + 3 x 2 x d V' for the logits, V' the padded vocabulary.
  // MoE layers: the top-k and shared experts' FFN and the router GEMM (Megatron-LM's MoE terms);
  // MLA: its projections, and the causal square halved of dqk + dv per head.
  const double d = D(m.d_model), dq = D(m.q_dim()), dkv = D(m.kv_dim()), s = D(m.n_ctx);
  auto layer = [&](const LayerSpec& l) {
    if (!l.moe && !m.mla()) return d * (dq + 2 * dkv) + dq * s + dq * d + d * D(m.d_ff()) * ffn_matrices(m);
    return attention_weights(m) + D(m.n_heads) * D(m.qk_head_dim() + m.v_dim()) * s / 2 + ffn_active_weights(m, l);
  };
  const int64_t padded = megatron_padded_vocab(m.vocab, vocab_multiple);
  const std::string vocab = padded == m.vocab ? fmt::format("vocabulary {}", padded)
                                              : fmt::format("vocabulary padded {} -> {}", m.vocab, padded);
  return make("megatron_lm",
              fmt::format("Megatron-LM's num_floating_point_operations: query groups, SwiGLU, causal square halved, {} "
                          "(a multiple of {})",
                          vocab, vocab_multiple),
              over_layers(m, 6, layer) + 6 * d * D(padded), m,
              "NVIDIA/Megatron-LM, megatron/training/training.py, num_floating_point_operations (dense transformer, "
              "MoE); the padded vocabulary of megatron/training/tokenizer/tokenizer.py, _vocab_size_with_padding");
}

Formula formula_chinchilla(const ModelConfig& m) {
  // Appendix F, per sequence of s tokens, forward: embeddings 2 s V d; per layer: QKV
  // 2 * 3 s d (key_size * heads), logits 2 s s (key_size * heads), softmax 3 heads s s,
  // softmax @ value 2 s s (key_size * heads), final linear 2 s (key_size * heads) d,
  // dense 2 s (d ffw + ffw d); final logits 2 s d V. Backward = 2 x forward.
  const double s = D(m.n_ctx), d = D(m.d_model), V = D(m.vocab), kh = D(m.d_head * m.n_heads),
               H = D(m.n_heads), ff = D(m.d_ff());
  const double attention = 2 * 3 * s * d * kh + 2 * s * s * kh + 3 * H * s * s + 2 * s * s * kh + 2 * s * kh * d;
  const double dense = 2 * s * (d * ff + ff * d);
  const double forward = 2 * s * V * d + D(m.n_layers) * (attention + dense) + 2 * s * d * V;
  return make("chinchilla", "per-op forward count, backward = 2 x forward", 3 * forward / s, m,
              "Hoffmann et al. 2022, Training Compute-Optimal Large Language Models, appendix F");
}

Formula formula_graph(const ModelConfig& m, bool model_flops) {
  // Each kind of layer in the model's schedule built once at full width and weighted by its
  // count; the head once (it is the same in every kind's graph: the first kind's is used).
  const std::vector<LayerKind> kinds = m.layer_kinds();
  double layers = 0, head = 0, tokens = 0;
  for (size_t k = 0; k < kinds.size(); ++k) {
    GraphOptions o;
    o.include_head = k == 0;
    const LayerGraph g = build_layer_graph(layer_shape(m, 1, m.n_ctx, k), o);
    double layer = 0;
    for (const auto& op : g.ops) {
      const double f = model_flops ? op.model_flops : op.flops;
      (op.group == Group::layer ? layer : head) += f;
    }
    layers += D(kinds[k].count) * layer;
    tokens = D(g.shape.tokens());
  }
  const double per_token = (layers + head) / tokens;
  return make(model_flops ? "graph_model" : "graph",
              model_flops ? "layer graph x layers + LM head, model FLOPs (causal square halved; a window or chunk: "
                            "its area)"
                          : "layer graph x layers + LM head, executed FLOPs",
              per_token, m, "flopscope's layer graph (src/graph): every op of each kind of layer, forward + backward");
}

std::vector<Formula> all_formulas(const ModelConfig& m, int64_t megatron_vocab_multiple) {
  std::vector<Formula> v = {formula_seed(m),     formula_6nd(m),
                            formula_kaplan(m),   formula_palm(m),
                            formula_megatron(m), formula_megatron_recompute(m),
                            formula_megatron_lm(m, megatron_vocab_multiple)};
  if (chinchilla_applies(m)) v.push_back(formula_chinchilla(m));
  v.push_back(formula_graph(m, false));
  v.push_back(formula_graph(m, true));
  return v;
}

SeedCheck seed_check(const ModelConfig& m) {
  if (!gpt3_shaped(m)) {
    SeedCheck c;
    c.applies = false;
    c.note = fmt::format("the seed check is GPT-3's (10 d^2 per layer per token against a GPT-3-shaped layer); n/a for "
                         "{} ({} heads / {} kv heads, {} FFN, d_ff {}, {}, {} positions)",
                         m.name, m.n_heads, m.kv_heads(), to_string(m.ffn), m.d_ff(), to_string(m.norm),
                         to_string(m.position));
    return c;
  }
  const LayerGraph g = full_graph(m);
  const double T = D(g.shape.tokens()), d = D(m.d_model), d2 = d * d;
  auto fwd = [&](std::initializer_list<const char*> names) {
    double s = 0;
    for (const char* n : names) s += g.op(n).flops;
    return s / T;  // per token
  };
  // Per layer per token, from the graph's forward GEMMs.
  const double attn_proj = fwd({"fwd.qkv", "fwd.proj"});               // 8 d^2
  const double ffn = fwd({"fwd.ffn.up", "fwd.ffn.down"});              // 16 d^2
  const double scores = fwd({"fwd.attn.scores", "fwd.attn.context"});  // 4 s d executed
  const double fwd_gemm = g.gemm_flops(Phase::forward), bwd_gemm = g.gemm_flops(Phase::backward);

  // The seed's assumptions, as it stated them.
  const double seed_attn = 2 * d2, seed_ffn = 8 * d2, seed_bwd_ratio = 1.0;
  SeedCheck c;
  c.seed_total = formula_seed(m).total_flops;
  double running = c.seed_total;
  auto step = [&](std::string id, std::string desc, double seed_v, double graph_v, double factor) {
    running *= factor;
    c.factors.push_back({std::move(id), std::move(desc), seed_v, graph_v, factor, running});
  };
  // 1. The seed counted a multiply-add as one FLOP; the graph's GEMMs count 2 per m n k.
  const auto& up = g.op("fwd.ffn.up").gemm;
  const double mac = up.flops() / (D(up.m) * D(up.n) * D(up.k) * D(up.batch));
  step("mac_as_one_flop", "FLOPs per multiply-add (seed: 1)", 1, mac, mac);
  // 2. Attention projections Q, K, V and output: the seed's 2 d^2 per token vs the graph's.
  const double fwd_seed = mac * (seed_attn + seed_ffn);
  const double fwd_attn = attn_proj + mac * seed_ffn;
  step("attention_projections", "attention projections Q, K, V, output: FLOPs per layer per token (seed: 2 d^2)",
       seed_attn, attn_proj, fwd_attn / fwd_seed);
  // 3. The FFN: the seed's 8 d^2 vs the graph's (16 d^2 at d_ff = 4 d, already covered by step 1).
  const double fwd_after = attn_proj + ffn;
  step("ffn", "FFN up and down: FLOPs per layer per token (seed: 8 d^2)", seed_ffn, ffn, fwd_after / fwd_attn);
  // 3. The attention scores and context, 4 s d per token (executed), left out by the seed.
  step("attention_scores", "attention scores Q K^T and context P V, 4 s d per token (seed: left out)", 0, scores,
       (fwd_after + scores) / fwd_after);
  // 4. Backward is twice forward (dgrad + wgrad per GEMM), not once: (1 + 2) / (1 + 1).
  const double ratio = bwd_gemm / fwd_gemm;
  step("backward_2x", "backward / forward FLOPs (seed: 1.0)", seed_bwd_ratio, ratio,
       (1 + ratio) / (1 + seed_bwd_ratio));
  c.corrected_total = running;
  c.product = running / c.seed_total;
  c.six_nd_total = formula_6nd(m).total_flops;
  c.graph_total = formula_graph(m, false).total_flops;
  return c;
}

}  // namespace flopscope
