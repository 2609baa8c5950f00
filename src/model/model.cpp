#include "model/model.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <tuple>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "model/fields.hpp"
#include "util/error.hpp"

namespace flopscope {

namespace {

// GPT-3 paper Table 2.1: n_params, n_layers, d_model, n_heads, d_head, batch size (tokens).
// Two rows of the table are inconsistent and are corrected here (docs/method.md): 13B's d_model
// is printed as 5140, but 40 heads of 128 make 5120, which we use; XL's heads are printed as
// 24 of 128 with d_model 2048, and we keep d_model 2048 (it gives Table 2.1's 1.3B parameters)
// and d_head 128, so 16 heads.
struct PresetRow {
  const char* name;
  int64_t n_layers, d_model, n_heads, d_head;
  double batch_tokens;
};
constexpr PresetRow kPresets[] = {
    {"gpt3-small", 12, 768, 12, 64, 0.5e6},   {"gpt3-medium", 24, 1024, 16, 64, 0.5e6},
    {"gpt3-large", 24, 1536, 16, 96, 0.5e6},  {"gpt3-xl", 24, 2048, 16, 128, 1e6},
    {"gpt3-2.7b", 32, 2560, 32, 80, 1e6},     {"gpt3-6.7b", 32, 4096, 32, 128, 2e6},
    {"gpt3-13b", 40, 5120, 40, 128, 2e6},     {"gpt3-175b", 96, 12288, 96, 128, 3.2e6},
};

// The models people train today, each from its paper and its released config.json
// (docs/method.md, "Model families", gives the source of every number). All are Llama-style:
// RMSNorm, SwiGLU, RoPE, no linear biases, untied embeddings.
struct ModernRow {
  const char* name;
  int64_t n_layers, d_model, n_heads, n_kv_heads, d_ff, vocab, n_ctx;
  double rope_theta, train_tokens, batch_tokens;  // batch_tokens 0 = not published
  int64_t sliding_window;
};
constexpr ModernRow kModern[] = {
    // Llama 2 (Touvron et al. 2023): 2.0T tokens, context 4096, global batch 4M tokens.
    {"llama2-7b", 32, 4096, 32, 32, 11008, 32000, 4096, 1e4, 2e12, 4e6, 0},
    {"llama2-70b", 80, 8192, 64, 8, 28672, 32000, 4096, 1e4, 2e12, 4e6, 0},
    // Llama 3 herd (Dubey et al. 2024): pre-training at sequence length 8192; 8B and 70B
    // "over 15T tokens", 405B 15.6T tokens with a final batch of 16M tokens.
    {"llama3.1-8b", 32, 4096, 32, 8, 14336, 128256, 8192, 5e5, 15e12, 0, 0},
    {"llama3.1-70b", 80, 8192, 64, 8, 28672, 128256, 8192, 5e5, 15e12, 0, 0},
    {"llama3.1-405b", 126, 16384, 128, 8, 53248, 128256, 8192, 5e5, 15.6e12, 16e6, 0},
    // Mistral 7B (Jiang et al. 2023, Table 1): context_len 8192, window 4096. Its training
    // tokens are not published: GPT-3's 300e9 is kept (set --tokens).
    {"mistral-7b", 32, 4096, 32, 8, 14336, 32000, 8192, 1e4, 300e9, 0, 4096},
};

// Mixtures of experts, each from its released config.json (../shared/data/hf, SOURCES.md) and
// its paper or model card; docs/method.md ("Mixtures of experts") gives every source, the
// published total and active parameters and the training tokens where published (else
// GPT-3's 300e9 is kept: set --tokens). n_ctx is the pre-training sequence length where
// published, else stated there.
ModelConfig llama_style(const char* name, int64_t layers, int64_t d, int64_t heads, int64_t kv, int64_t d_head,
                        int64_t vocab, int64_t ctx, double theta) {
  ModelConfig m;
  m.name = name;
  m.n_layers = layers;
  m.d_model = d;
  m.n_heads = heads;
  m.n_kv_heads = kv;
  m.d_head = d_head;
  m.vocab = vocab;
  m.n_ctx = ctx;
  m.norm = NormKind::rmsnorm;
  m.ffn = FfnKind::swiglu;
  m.position = PositionKind::rope;
  m.rope_theta = theta;
  m.biases = LinearBiases{false, false, false};
  m.tied_embeddings = false;
  m.count_final_norm = true;
  return m;
}

std::vector<ModelConfig> moe_presets() {
  std::vector<ModelConfig> v;
  // Mixtral (Jiang et al. 2024): 8 experts, top-2, softmax then top-2 renormalised; context 32k.
  for (auto [name, L, d, h, f, ctx, aux] : {std::tuple{"mixtral-8x7b", 32, 4096, 32, 14336, 32768, 0.02},
                                            std::tuple{"mixtral-8x22b", 56, 6144, 48, 16384, 65536, 0.001}}) {
    ModelConfig m = llama_style(name, L, d, h, 8, 128, 32000, ctx, 1e6);
    m.d_ff_explicit = f;
    m.n_experts = 8, m.top_k = 2, m.d_ff_expert = f;
    m.router_norm_topk = true;
    m.aux_loss_coef = aux;
    v.push_back(m);
  }
  // Qwen3 MoE (Qwen3 Technical Report, Yang et al. 2025): 128 experts, top-8, QK-norm, no
  // shared experts; 36T tokens, the first (and longest) stage at sequence length 4096.
  for (auto [name, L, d, h, f, fe] : {std::tuple{"qwen3-30b-a3b", 48, 2048, 32, 6144, 768},
                                      std::tuple{"qwen3-235b-a22b", 94, 4096, 64, 12288, 1536}}) {
    ModelConfig m = llama_style(name, L, d, h, 4, 128, 151936, 4096, 1e6);
    m.d_ff_explicit = f;
    m.n_experts = 128, m.top_k = 8, m.d_ff_expert = fe;
    m.router_norm_topk = true;
    m.aux_loss_coef = 0.001;
    m.qk_norm = QkNorm::rmsnorm;
    m.train_tokens = 36e12;
    v.push_back(m);
  }
  {
    // DeepSeek-V3 (DeepSeek-AI 2024): MLA, 3 dense layers then 58 MoE layers of 256 routed
    // experts (top-8 of 4 of 8 groups, sigmoid scores, renormalised) and 1 shared; 14.8T
    // tokens at sequence length 4K. Its multi-token-prediction module is not counted (transformers
    // does not build it). The load balancing is auxiliary-loss-free (a bias per expert) with a
    // sequence-wise loss of weight 1e-4.
    ModelConfig m = llama_style("deepseek-v3", 61, 7168, 128, 128, 192, 129280, 4096, 1e4);  // d_head: nope + rope
    m.d_ff_explicit = 18432;
    m.n_experts = 256, m.top_k = 8, m.d_ff_expert = 2048, m.n_shared_experts = 1, m.d_ff_shared = 2048;
    m.router_score = RouterScore::sigmoid;
    m.router_norm_topk = true;
    m.n_group = 8, m.topk_group = 4, m.first_dense = 3;
    m.aux_loss_coef = 1e-4;
    m.routed_scaling_factor = 2.5;
    m.q_lora_rank = 1536, m.kv_lora_rank = 512, m.qk_nope_head_dim = 128, m.qk_rope_head_dim = 64, m.v_head_dim = 128;
    m.train_tokens = 14.8e12;
    v.push_back(m);
  }
  // Llama 4 (Meta's model card): 16 or 128 routed experts, top-1 (top-k, then sigmoid) and one
  // shared expert; Maverick alternates dense and MoE layers; every 4th layer NoPE, the others
  // chunked attention (8192) with an unweighted QK-norm (Scout). Text model only. Scout ~40T
  // tokens, Maverick ~22T; the pre-training sequence length is not published (8192 assumed:
  // the chunk, and Scout's rope_scaling original_max_position_embeddings).
  for (auto [name, E, step, qk, tokens] : {std::tuple{"llama4-scout", 16, 1, true, 40e12},
                                           std::tuple{"llama4-maverick", 128, 2, false, 22e12}}) {
    ModelConfig m = llama_style(name, 48, 5120, 40, 8, 128, 202048, 8192, 5e5);
    m.d_ff_explicit = 16384;
    m.n_experts = E, m.top_k = 1, m.d_ff_expert = 8192, m.n_shared_experts = 1, m.d_ff_shared = 8192;
    m.router_score = RouterScore::sigmoid;
    m.router_topk_first = true;
    m.moe_layer_step = step;
    m.aux_loss_coef = 0.001;
    m.qk_norm = qk ? QkNorm::l2 : QkNorm::none;
    m.attention_chunk = 8192;
    m.nope_layer_step = 4;
    m.train_tokens = tokens;
    v.push_back(m);
  }
  // gpt-oss (OpenAI's model card): 32 or 128 experts with biases, top-4 (top-k, then softmax),
  // a router with a bias, attention biases and sinks, sliding window 128 on every other layer;
  // context 4096 in pre-training (initial_context_length). Training tokens not published.
  for (auto [name, L, E] : {std::tuple{"gpt-oss-20b", 24, 32}, std::tuple{"gpt-oss-120b", 36, 128}}) {
    ModelConfig m = llama_style(name, L, 2880, 64, 8, 64, 201088, 4096, 150000);
    m.biases = LinearBiases{true, true, false};
    m.d_ff_explicit = 2880;
    m.n_experts = E, m.top_k = 4, m.d_ff_expert = 2880;
    m.router_topk_first = true;
    m.router_bias = true, m.expert_bias = true;
    m.aux_loss_coef = 0.9;
    m.attention_sinks = true;
    m.sliding_window = 128, m.sliding_window_step = 2;
    v.push_back(m);
  }
  return v;
}

constexpr int64_t kMaxDim = INT64_C(1) << 24;  // 16.7M: far beyond any real width
constexpr int64_t kMaxWidth = INT64_C(1) << 26;  // derived widths (heads x d_head, d_ff)

}  // namespace

std::string_view to_string(NormKind k) { return k == NormKind::layernorm ? "layernorm" : "rmsnorm"; }
std::string_view to_string(FfnKind k) {
  switch (k) {
    case FfnKind::gelu: return "gelu";
    case FfnKind::relu: return "relu";
    case FfnKind::swiglu: return "swiglu";
  }
  return "?";
}
std::string_view to_string(PositionKind k) { return k == PositionKind::learned ? "learned" : "rope"; }
std::string_view to_string(RouterScore k) { return k == RouterScore::softmax ? "softmax" : "sigmoid"; }
std::string_view to_string(QkNorm k) {
  switch (k) {
    case QkNorm::none: return "none";
    case QkNorm::rmsnorm: return "rmsnorm";
    case QkNorm::l2: return "l2";
  }
  return "?";
}

namespace {
template <typename Kind>
Kind parse_kind(std::string_view what, std::string_view text, std::initializer_list<Kind> kinds) {
  std::string list;
  for (Kind k : kinds) {
    if (text == to_string(k)) return k;
    list += (list.empty() ? "" : ", ") + std::string(to_string(k));
  }
  throw UsageError(fmt::format("{}: unknown value '{}'; choose {}", what, text, list));
}
}  // namespace

NormKind parse_norm(std::string_view what, std::string_view text) {
  return parse_kind(what, text, {NormKind::layernorm, NormKind::rmsnorm});
}
FfnKind parse_ffn(std::string_view what, std::string_view text) {
  return parse_kind(what, text, {FfnKind::gelu, FfnKind::relu, FfnKind::swiglu});
}
PositionKind parse_position(std::string_view what, std::string_view text) {
  return parse_kind(what, text, {PositionKind::learned, PositionKind::rope});
}
RouterScore parse_router_score(std::string_view what, std::string_view text) {
  return parse_kind(what, text, {RouterScore::softmax, RouterScore::sigmoid});
}
QkNorm parse_qk_norm(std::string_view what, std::string_view text) {
  return parse_kind(what, text, {QkNorm::none, QkNorm::rmsnorm, QkNorm::l2});
}

std::string to_string(const LinearBiases& b) {
  if (b.qkv && b.attn_out && b.ffn) return "all";
  if (!b.qkv && !b.attn_out && !b.ffn) return "none";
  std::string out;
  for (auto [on, name] : {std::pair{b.qkv, "qkv"}, std::pair{b.attn_out, "attn_out"}, std::pair{b.ffn, "ffn"}})
    if (on) out += (out.empty() ? "" : "+") + std::string(name);
  return out;
}

LinearBiases parse_biases(std::string_view what, std::string_view text) {
  if (text == "all") return {};
  LinearBiases b{false, false, false};
  if (text == "none") return b;
  const auto bad = [&] {
    return UsageError(fmt::format("{}: unknown value '{}'; choose all, none, or groups joined by '+' from qkv, "
                                  "attn_out, ffn (e.g. qkv)", what, text));
  };
  if (text.empty()) throw bad();
  size_t start = 0;
  while (start <= text.size()) {
    const size_t end = std::min(text.find('+', start), text.size());
    const std::string_view group = text.substr(start, end - start);
    bool* field = group == "qkv" ? &b.qkv : group == "attn_out" ? &b.attn_out : group == "ffn" ? &b.ffn : nullptr;
    if (!field || *field) throw bad();  // unknown or repeated
    *field = true;
    start = end + 1;
  }
  return b;
}

std::string to_string(const LayerSpec& l) {
  std::string s = l.moe ? "moe" : "dense";
  if (l.window > 0) s += fmt::format(", window {}", l.window);
  if (l.chunk > 0) s += fmt::format(", chunk {}", l.chunk);
  if (l.nope) s += ", NoPE";
  return s;
}

std::vector<LayerSpec> ModelConfig::schedule() const {
  std::vector<LayerSpec> layers;
  for (int64_t i = 0; i < n_layers; ++i) {
    LayerSpec l;
    // transformers: Qwen2/3-MoE (i + 1) % decoder_sparse_step == 0, Llama 4's moe_layers
    // range(step - 1, L, step), DeepSeek i >= first_k_dense_replace.
    l.moe = moe() && i >= first_dense && (i + 1) % moe_layer_step == 0;
    l.nope = position == PositionKind::rope && nope_layer_step > 0 && (i + 1) % nope_layer_step == 0;
    l.window = sliding_window > 0 && i % sliding_window_step == 0 ? sliding_window : 0;
    l.chunk = attention_chunk > 0 && !l.nope ? attention_chunk : 0;  // Llama 4: chunked on the RoPE layers
    layers.push_back(l);
  }
  return layers;
}

std::vector<LayerKind> ModelConfig::layer_kinds() const {
  std::vector<LayerKind> kinds;
  const std::vector<LayerSpec> layers = schedule();
  for (size_t i = 0; i < layers.size(); ++i) {
    auto k = std::find_if(kinds.begin(), kinds.end(), [&](const LayerKind& x) { return x.spec == layers[i]; });
    if (k == kinds.end()) kinds.push_back({layers[i], 1, static_cast<int64_t>(i)});
    else ++k->count;
  }
  return kinds;
}

void ModelConfig::validate() const {
  auto positive = [](const char* what, int64_t v, int64_t max = kMaxDim) {
    if (v <= 0) throw UsageError(fmt::format("{} must be at least 1 (got {})", what, v));
    if (v > max) throw UsageError(fmt::format("{} is too large (got {}, at most {})", what, v, max));
  };
  positive("layers", n_layers);
  positive("d_model", d_model);
  positive("heads", n_heads);
  positive("d_head", d_head);
  positive("seq (n_ctx)", n_ctx);
  positive("vocab", vocab);
  positive("ffn-mult", ffn_mult);
  if (n_kv_heads < 0) throw UsageError(fmt::format("kv heads must be at least 1 (got {})", n_kv_heads));
  if (n_heads % kv_heads() != 0)
    throw UsageError(fmt::format("kv heads ({}) must divide heads ({})", kv_heads(), n_heads));
  if (d_ff_explicit < 0) throw UsageError(fmt::format("d_ff must be at least 1 (got {})", d_ff_explicit));
  // Widths derived from the sizes above, and the products the graph forms from them: each must
  // fit (checked_mul throws naming the product), so no shape wraps around.
  positive("q width (heads x d_head)", checked_mul(n_heads, d_head, "heads x d_head"), kMaxWidth);
  positive("d_ff", d_ff_explicit > 0 ? d_ff_explicit : checked_mul(ffn_mult, d_model, "ffn-mult x d_model"),
           kMaxWidth);
  checked_mul(checked_mul(n_heads, n_ctx, "heads x seq"), n_ctx, "the attention scores of one sequence (heads x seq x seq)");
  // RoPE rotates pairs (j, j + d_head/2) of each head, so a head needs an even width.
  if (position == PositionKind::rope && d_head % 2 != 0)
    throw UsageError(fmt::format("RoPE needs an even d_head (got {}); choose an even d_head or --position learned",
                                 d_head));
  if (!(rope_theta > 0) || rope_theta > 1e12)
    throw UsageError(fmt::format("rope theta must be in (0, 1e12] (got {:g})", rope_theta));
  if (sliding_window < 0 || sliding_window > kMaxDim)
    throw UsageError(fmt::format("sliding window must be in [0, {}] (got {})", kMaxDim, sliding_window));
  if (n_positions < 0 || n_positions > kMaxDim + 2)
    throw UsageError(fmt::format("position rows must be in [0, {}] (got {})", kMaxDim + 2, n_positions));
  if (position == PositionKind::learned && position_rows() < n_ctx)
    throw UsageError(fmt::format("seq (n_ctx) {} exceeds the learned position table's {} rows", n_ctx, position_rows()));
  // Mixtures of experts.
  auto count = [](const char* what, int64_t v, int64_t max = kMaxDim) {
    if (v < 0 || v > max) throw UsageError(fmt::format("{} must be in [0, {}] (got {})", what, max, v));
  };
  count("experts", n_experts, INT64_C(1) << 16);
  count("top-k", top_k, INT64_C(1) << 16);
  count("expert d_ff", d_ff_expert, kMaxWidth);
  count("shared experts", n_shared_experts, 1024);
  count("shared expert d_ff", d_ff_shared, kMaxWidth);
  count("expert groups", n_group, INT64_C(1) << 16);
  count("top-k groups", topk_group, INT64_C(1) << 16);
  count("dense first layers", first_dense, n_layers);
  if (moe_layer_step < 1 || moe_layer_step > n_layers)
    throw UsageError(fmt::format("MoE layer step must be in [1, layers {}] (got {})", n_layers, moe_layer_step));
  if (moe()) {
    if (top_k < 1) throw UsageError(fmt::format("top-k must be at least 1 with {} experts", n_experts));
    if (top_k > n_experts) throw UsageError(fmt::format("top-k ({}) is larger than the experts ({})", top_k, n_experts));
    if (d_ff_expert < 1) throw UsageError("an MoE model needs the experts' d_ff (d_ff_expert)");
    if (n_group > 0) {
      if (n_experts % n_group != 0)
        throw UsageError(fmt::format("expert groups ({}) must divide the experts ({})", n_group, n_experts));
      if (topk_group < 1 || topk_group > n_group)
        throw UsageError(fmt::format("top-k groups must be in [1, groups {}] (got {})", n_group, topk_group));
      if (top_k > topk_group * (n_experts / n_group))
        throw UsageError(fmt::format("top-k ({}) is larger than the experts of {} groups of {}", top_k, topk_group,
                                     n_experts / n_group));
    }
  } else if (top_k > 0 || d_ff_expert > 0 || n_shared_experts > 0 || n_group > 0) {
    throw UsageError("top-k, expert d_ff, shared experts and expert groups need routed experts (n_experts)");
  }
  if (n_shared_experts > 0 && d_ff_shared < 1)
    throw UsageError(fmt::format("{} shared experts need their d_ff (d_ff_shared)", n_shared_experts));
  if (!(capacity_factor >= 0) || capacity_factor > 1024)
    throw UsageError(fmt::format("capacity factor must be in [0, 1024] (got {:g}; 0 = no limit)", capacity_factor));
  if (!(aux_loss_coef >= 0) || aux_loss_coef > 1e3)
    throw UsageError(fmt::format("aux loss coefficient must be in [0, 1000] (got {:g})", aux_loss_coef));
  if (!(routed_scaling_factor > 0) || routed_scaling_factor > 1e3)
    throw UsageError(fmt::format("routed scaling factor must be in (0, 1000] (got {:g}; 1 = none)", routed_scaling_factor));
  // Multi-head latent attention.
  count("q LoRA rank", q_lora_rank);
  count("kv LoRA rank", kv_lora_rank);
  count("qk nope head dim", qk_nope_head_dim);
  count("qk rope head dim", qk_rope_head_dim);
  count("v head dim", v_head_dim);
  if (mla()) {
    if (qk_nope_head_dim + qk_rope_head_dim < 1 || v_head_dim < 1)
      throw UsageError("multi-head latent attention needs qk_nope_head_dim + qk_rope_head_dim and v_head_dim");
    if (position == PositionKind::rope && qk_rope_head_dim % 2 != 0)
      throw UsageError(fmt::format("RoPE needs an even qk_rope_head_dim (got {})", qk_rope_head_dim));
    if (qk_norm != QkNorm::none) throw UsageError("QK-norm with multi-head latent attention is not modelled");
  } else if (q_lora_rank > 0 || qk_nope_head_dim > 0 || qk_rope_head_dim > 0 || v_head_dim > 0) {
    throw UsageError("q_lora_rank and the MLA head dims need kv_lora_rank (multi-head latent attention)");
  }
  if (sliding_window_step < 1 || sliding_window_step > kMaxDim)
    throw UsageError(fmt::format("sliding window step must be at least 1 (got {})", sliding_window_step));
  count("attention chunk", attention_chunk);
  count("NoPE layer step", nope_layer_step);
  if (!(train_tokens > 0) || train_tokens > 1e21)
    throw UsageError(fmt::format("tokens must be in (0, 1e21] (got {:g})", train_tokens));
  if (!(batch_tokens >= 0) || batch_tokens > 1e15)
    throw UsageError(fmt::format("batch tokens must be in [0, 1e15] (got {:g})", batch_tokens));
}

const std::vector<std::string>& preset_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& p : kPresets) v.emplace_back(p.name);
    for (const auto& p : kModern) v.emplace_back(p.name);
    for (const auto& m : moe_presets()) v.push_back(m.name);
    return v;
  }();
  return names;
}

ModelConfig preset(const std::string& name) {
  for (const auto& p : kPresets) {
    if (name == p.name) {
      ModelConfig m;
      m.name = p.name;
      m.n_layers = p.n_layers;
      m.d_model = p.d_model;
      m.n_heads = p.n_heads;
      m.d_head = p.d_head;
      m.batch_tokens = p.batch_tokens;
      return m;
    }
  }
  for (const auto& p : kModern) {
    if (name == p.name) {
      ModelConfig m;
      m.name = p.name;
      m.n_layers = p.n_layers;
      m.d_model = p.d_model;
      m.n_heads = p.n_heads;
      m.d_head = p.d_model / p.n_heads;  // 128 for every one of them
      m.n_kv_heads = p.n_kv_heads;
      m.d_ff_explicit = p.d_ff;
      m.vocab = p.vocab;
      m.n_ctx = p.n_ctx;
      m.norm = NormKind::rmsnorm;
      m.ffn = FfnKind::swiglu;
      m.position = PositionKind::rope;
      m.rope_theta = p.rope_theta;
      m.biases = LinearBiases{false, false, false};
      m.tied_embeddings = false;
      m.sliding_window = p.sliding_window;
      m.count_final_norm = true;
      m.train_tokens = p.train_tokens;
      m.batch_tokens = p.batch_tokens;
      return m;
    }
  }
  for (const auto& m : moe_presets())
    if (m.name == name) return m;
  // What the name may have meant: the presets it is a shortening of (llama3-8b: llama3.1-8b;
  // mixtral: both Mixtrals), where there are one to four; else the closest within two edits.
  auto edits = [](const std::string& a, const std::string& b) {
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
      size_t diag = row[0];
      row[0] = i;
      for (size_t j = 1; j <= b.size(); ++j) {
        const size_t up = row[j];
        row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
        diag = up;
      }
    }
    return row[b.size()];
  };
  // A shortening: each of the name's dash-separated parts begins the preset's part in its place.
  auto parts = [](const std::string& x) {
    std::vector<std::string> out(1);
    for (char c : x) {
      if (c == '-')
        out.emplace_back();
      else
        out.back().push_back(c);
    }
    return out;
  };
  auto shortening = [&](const std::string& a, const std::string& b) {
    const std::vector<std::string> pa = parts(a), pb = parts(b);
    if (a.empty() || pa.size() > pb.size()) return false;
    for (size_t i = 0; i < pa.size(); ++i)
      if (pa[i].empty() || pb[i].rfind(pa[i], 0) != 0) return false;
    return true;
  };
  std::string list, closest;
  std::vector<std::string> longer;
  size_t best = 3;
  for (const auto& n : preset_names()) {
    list += (list.empty() ? "" : ", ") + n;
    if (shortening(name, n)) longer.push_back(n);
    if (const size_t e = edits(name, n); e < best) best = e, closest = n;
  }
  if (!longer.empty() && longer.size() <= 4) {
    closest = longer.back();
    for (size_t i = longer.size() - 1; i-- > 0;) closest = longer[i] + (i + 2 == longer.size() ? " or " : ", ") + closest;
  }
  throw UsageError(fmt::format("unknown model '{}'; {}presets: {}", name,
                               closest.empty() ? "" : fmt::format("did you mean {}? ", closest), list));
}

ModelConfig apply_overrides(ModelConfig m, const ModelOverrides& o) {
  bool custom = false;
  for (const auto& f : model_fields()) custom |= field_apply(f, o, m);
  if (!o.d_head && (o.d_model || o.n_heads)) {
    if (m.n_heads <= 0) throw UsageError(fmt::format("heads must be at least 1 (got {})", m.n_heads));
    if (m.d_model % m.n_heads != 0)
      throw UsageError(fmt::format("heads ({}) must divide d_model ({})", m.n_heads, m.d_model));
    m.d_head = m.d_model / m.n_heads;
  }
  if (o.name) {
    m.name = *o.name;
  } else if (custom && m.name.find("(custom)") == std::string::npos) {
    m.name = m.name.empty() ? "custom" : m.name + " (custom)";
  }
  m.validate();
  return m;
}

ModelConfig model_from_json(const nlohmann::json& j, const std::string& origin) {
  if (!j.is_object()) throw UsageError(fmt::format("{}: a model config must be a JSON object", origin));
  for (const auto& [key, value] : j.items()) {
    if (key == "name" || key == "base") continue;
    bool known = false;
    for (const auto& f : model_fields()) known |= f.key == key;
    if (!known) throw UsageError(fmt::format("{}: unknown key '{}'", origin, key));
  }
  ModelConfig base;
  bool has_base = j.contains("base");
  if (has_base) {
    if (!j.at("base").is_string()) throw UsageError(fmt::format("{}: 'base' must be a preset name", origin));
    try {
      base = preset(j.at("base").get<std::string>());
    } catch (const UsageError& e) {
      throw UsageError(fmt::format("{}: {}", origin, e.what()));
    }
  } else {
    for (const char* key : {"n_layers", "d_model", "n_heads"}) {
      if (!j.contains(key))
        throw UsageError(fmt::format("{}: missing '{}' (or give \"base\": a preset to start from)", origin, key));
    }
    base.name = "custom";
  }
  ModelOverrides o;
  for (const auto& f : model_fields())
    if (j.contains(f.key)) field_from_json(f, j.at(f.key), origin, o);
  if (j.contains("name")) {
    if (!j.at("name").is_string()) throw UsageError(fmt::format("{}: 'name' must be a string", origin));
    o.name = j.at("name").get<std::string>();
  }
  if (!has_base && !o.d_model) throw UsageError(fmt::format("{}: missing 'd_model'", origin));
  try {
    return apply_overrides(base, o);
  } catch (const UsageError& e) {
    throw UsageError(fmt::format("{}: {}", origin, e.what()));
  }
}

ModelConfig model_from_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw UsageError(fmt::format("cannot read config file '{}'", path));
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw UsageError(fmt::format("{}: not valid JSON ({})", path, e.what()));
  }
  return model_from_json(j, path);
}

nlohmann::json model_to_json(const ModelConfig& m) {
  nlohmann::json j = {{"name", m.name}};
  for (const auto& f : model_fields()) j[std::string(f.key)] = field_to_json(f, m);
  return j;
}

ModelConfig scale_width(const ModelConfig& m, const Fraction& width) {
  if (width.num <= 0 || width.num > width.den)
    throw UsageError(fmt::format("width {} must be in (0, 1]", width.str()));
  // heads * num / den must be a whole, positive number of heads.
  if ((m.n_heads * width.num) % width.den != 0)
    throw UsageError(fmt::format("width {} leaves no whole number of heads ({} heads x {} = {:.3f}); choose a width "
                                 "that divides the {} heads",
                                 width.str(), m.n_heads, width.str(), m.n_heads * width.value(), m.n_heads));
  // The kv heads scale by the same factor, so the query heads per kv head stay the model's.
  if ((m.kv_heads() * width.num) % width.den != 0)
    throw UsageError(fmt::format("width {} leaves a fraction of a kv head ({} kv heads x {} = {:.3f}); choose a width "
                                 "that divides the {} kv heads",
                                 width.str(), m.kv_heads(), width.str(), m.kv_heads() * width.value(), m.kv_heads()));
  ModelConfig s = m;
  s.n_heads = m.n_heads * width.num / width.den;
  if (s.n_heads < 1) throw UsageError(fmt::format("width {} leaves no whole head", width.str()));
  if (m.n_kv_heads > 0) s.n_kv_heads = m.n_kv_heads * width.num / width.den;
  auto scaled = [&](const char* what, int64_t v) {
    if ((v * width.num) % width.den != 0)
      throw UsageError(fmt::format("width {} leaves a fractional {} ({} x {} = {:.3f})", width.str(), what, v,
                                   width.str(), v * width.value()));
    return v * width.num / width.den;
  };
  s.d_model = m.d_model == m.n_heads * m.d_head ? s.n_heads * m.d_head : scaled("d_model", m.d_model);
  if (m.d_ff_explicit > 0) s.d_ff_explicit = scaled("d_ff", m.d_ff_explicit);
  // Mixtures of experts: the experts (and their groups) divided like the heads, their widths
  // and MLA's latent ranks scaled like d_ff and d_model, so every op keeps the model's share.
  if (m.moe()) {
    s.n_experts = scaled("number of experts", m.n_experts);
    if (s.n_experts < m.top_k)
      throw UsageError(fmt::format("width {} leaves {} experts, fewer than top-k {}; choose a wider width", width.str(),
                                   s.n_experts, m.top_k));
    if (m.n_group > 0) {
      // The groups a token may use scale with them (DeepSeek-V3: 4 of 8 groups; at 1/2, 2 of 4).
      s.n_group = scaled("number of expert groups", m.n_group);
      s.topk_group = scaled("number of top-k expert groups", m.topk_group);
      if (s.top_k > s.topk_group * (s.n_experts / s.n_group))
        throw UsageError(fmt::format("width {} leaves {} groups of {} experts for top-k {}; choose a wider width",
                                     width.str(), s.topk_group, s.n_experts / s.n_group, s.top_k));
    }
    s.d_ff_expert = scaled("expert d_ff", m.d_ff_expert);
    if (m.d_ff_shared > 0) s.d_ff_shared = scaled("shared expert d_ff", m.d_ff_shared);
  }
  if (m.q_lora_rank > 0) s.q_lora_rank = scaled("q LoRA rank", m.q_lora_rank);
  if (m.kv_lora_rank > 0) s.kv_lora_rank = scaled("kv LoRA rank", m.kv_lora_rank);
  if (width.num != width.den) s.name = fmt::format("{} @ width {}", m.name, width.str());
  s.validate();
  return s;
}

}  // namespace flopscope
