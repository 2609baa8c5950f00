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

double non_embedding_parameters(const ModelConfig& m) {
  const double d = D(m.d_model), f = D(m.ffn_mult);
  return D(m.n_layers) * (4 + 2 * f) * d * d;
}

double parameter_count(const ModelConfig& m) {
  const double d = D(m.d_model), f = D(m.ffn_mult);
  return non_embedding_parameters(m) + D(m.n_layers) * (9 + f) * d + D(m.vocab) * d + D(m.n_ctx) * d;
}

Formula formula_seed(const ModelConfig& m) {
  // The back-of-envelope estimate flopscope was started from: forward per layer per token
  // 2 d^2 (self-attention) + 8 d^2 (FFN) = 10 d^2; backward = forward; x layers x tokens.
  const double d = D(m.d_model);
  return make("seed", "seed: 10 d^2 per layer per token, backward = forward", 2 * 10 * d * d * D(m.n_layers), m,
              "the estimate this project started from (quick back-of-envelope)");
}

Formula formula_6nd(const ModelConfig& m) {
  return make("6nd", "6 N D, N from the architecture", 6 * parameter_count(m), m,
              "Brown et al. 2020 (GPT-3), Table D.1; Kaplan et al. 2020, sec. 2.1");
}

Formula formula_kaplan(const ModelConfig& m) {
  return make("kaplan", "6 N + 6 L s d (N non-embedding, attention included)",
              6 * non_embedding_parameters(m) + 6 * D(m.n_layers) * D(m.n_ctx) * D(m.d_model), m,
              "Kaplan et al. 2020, Scaling Laws for Neural Language Models, Table 1");
}

Formula formula_palm(const ModelConfig& m) {
  // 12 L H Q T with H heads, Q head size, T sequence length; H Q = d. N counts all parameters.
  return make("palm", "6 N + 12 L H Q T",
              6 * parameter_count(m) + 12 * D(m.n_layers) * D(m.n_heads) * D(m.d_head) * D(m.n_ctx), m,
              "Chowdhery et al. 2022, PaLM, appendix B");
}

Formula formula_megatron(const ModelConfig& m) {
  // Per iteration of B sequences: 72 B s l h^2 (1 + s/6h + V/12lh); per token divide by B s.
  const double l = D(m.n_layers), h = D(m.d_model), s = D(m.n_ctx), V = D(m.vocab);
  return make("megatron", "72 B s l h^2 (1 + s/6h + V/12lh) per iteration",
              72 * l * h * h * (1 + s / (6 * h) + V / (12 * l * h)), m,
              "Narayanan et al. 2021, Efficient Large-Scale Language Model Training on GPU Clusters, sec. 5.1");
}

Formula formula_megatron_recompute(const ModelConfig& m) {
  const double l = D(m.n_layers), h = D(m.d_model), s = D(m.n_ctx), V = D(m.vocab);
  return make("megatron_recompute", "96 B s l h^2 (1 + s/6h + V/16lh) per iteration, with recompute",
              96 * l * h * h * (1 + s / (6 * h) + V / (16 * l * h)), m,
              "Narayanan et al. 2021, sec. 5.1, eq. 3 (activation recomputation)");
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
  const LayerGraph g = full_graph(m);
  double layer = 0, head = 0;
  for (const auto& op : g.ops) {
    const double f = model_flops ? op.model_flops : op.flops;
    (op.group == Group::layer ? layer : head) += f;
  }
  const double per_token = (D(m.n_layers) * layer + head) / D(g.shape.tokens());
  return make(model_flops ? "graph_model" : "graph",
              model_flops ? "layer graph x layers + LM head, model FLOPs (causal square halved)"
                          : "layer graph x layers + LM head, executed FLOPs",
              per_token, m, "flopscope's layer graph (src/graph/graph.cpp): every op, forward + backward");
}

std::vector<Formula> all_formulas(const ModelConfig& m) {
  return {formula_seed(m),      formula_6nd(m),        formula_kaplan(m),        formula_palm(m),
          formula_megatron(m),  formula_megatron_recompute(m), formula_chinchilla(m), formula_graph(m, false),
          formula_graph(m, true)};
}

SeedCheck seed_check(const ModelConfig& m) {
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
