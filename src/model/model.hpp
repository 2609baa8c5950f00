// Model configurations: the GPT-3 family (GPT-3 paper, Brown et al. 2020, Table 2.1), the
// models people train today (Llama 2, Llama 3.1, Mistral), custom models from flags, a JSON
// file or a Hugging Face config.json (model/hf_config.hpp), and a layer scaled down at the
// model's ratios.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "util/parse.hpp"

namespace flopscope {

// The architecture of a dense decoder layer (GPT-3's presets keep the defaults below).
enum class NormKind { layernorm, rmsnorm };      // LayerNorm with bias (GPT, OPT); RMSNorm, weight only (Llama)
enum class FfnKind { gelu, relu, swiglu };       // GeLU (tanh) MLP; ReLU MLP (OPT); SwiGLU (gate, up, down)
enum class PositionKind { learned, rope };       // learned absolute table (no FLOPs); rotary on Q and K
// A mixture of experts' router: the scores of the experts (softmax over them: Mixtral, Qwen,
// DeepSeek-V2, gpt-oss; sigmoid: DeepSeek-V3, Llama 4).
enum class RouterScore { softmax, sigmoid };
// QK-norm: none; rmsnorm (a weighted RMSNorm over each head of Q and of K, Qwen3); l2 (an
// unweighted one, on the RoPE layers only, Llama 4's use_qk_norm).
enum class QkNorm { none, rmsnorm, l2 };
std::string_view to_string(NormKind k);
std::string_view to_string(FfnKind k);
std::string_view to_string(PositionKind k);
std::string_view to_string(RouterScore k);
std::string_view to_string(QkNorm k);
// Parse the names above; throw UsageError naming `what` (a flag or a file's key) and the choices.
NormKind parse_norm(std::string_view what, std::string_view text);
FfnKind parse_ffn(std::string_view what, std::string_view text);
PositionKind parse_position(std::string_view what, std::string_view text);
RouterScore parse_router_score(std::string_view what, std::string_view text);
QkNorm parse_qk_norm(std::string_view what, std::string_view text);

// Biases of the linear layers, per group (norm biases follow NormKind).
struct LinearBiases {
  bool qkv = true;       // Q, K and V projections (Qwen2: true; Llama: false)
  bool attn_out = true;  // attention output projection
  bool ffn = true;       // FFN up (and gate) and down projections
  bool operator==(const LinearBiases&) const = default;
};
// "all", "none", "qkv" or the groups joined by '+' ("qkv+attn_out"); parse throws UsageError.
std::string to_string(const LinearBiases& b);
LinearBiases parse_biases(std::string_view what, std::string_view text);

// What makes one layer of a model differ from another: a model is a schedule of layers, one
// LayerSpec each (ModelConfig::schedule), and each distinct kind is built once and weighted
// by its count (ModelConfig::layer_kinds). A dense GPT or Llama has one kind.
struct LayerSpec {
  bool moe = false;    // routed experts in place of the dense FFN
  int64_t window = 0;  // sliding-window attention over this many tokens; 0 = full causal
  int64_t chunk = 0;   // chunked attention (Llama 4): within chunks of this many tokens; 0 = none
  bool nope = false;   // a layer without RoPE in a RoPE model (Llama 4's NoPE layers)
  bool operator==(const LayerSpec&) const = default;
};
// "dense", "moe", then ", window W", ", chunk C", ", NoPE" where the layer has them.
std::string to_string(const LayerSpec& l);

struct LayerKind {
  LayerSpec spec;
  int64_t count = 0;  // layers of this kind
  int64_t first = 0;  // index of its first layer
};

struct ModelConfig {
  std::string name;
  int64_t n_layers = 0;
  int64_t d_model = 0;
  int64_t n_heads = 0;
  int64_t d_head = 0;     // GPT: d_model / n_heads; may differ (Hugging Face "head_dim")
  int64_t n_kv_heads = 0; // key/value heads: n_heads (multi-head), a divisor (grouped-query), 1 (multi-query); 0 = n_heads
  int64_t n_ctx = 2048;   // sequence length
  int64_t vocab = 50257;  // GPT-2/3 BPE vocabulary
  int64_t ffn_mult = 4;   // d_ff = ffn_mult * d_model, unless d_ff_explicit is set
  int64_t d_ff_explicit = 0;  // d_ff given explicitly (Llama's intermediate_size, e.g. 14336); 0 = ffn_mult * d_model
  NormKind norm = NormKind::layernorm;
  FfnKind ffn = FfnKind::gelu;
  PositionKind position = PositionKind::learned;
  double rope_theta = 10000.0;  // RoPE base (position == rope)
  LinearBiases biases;          // GPT: all true
  bool tied_embeddings = true;  // LM head weight is the token embedding (counted once in N)
  int64_t sliding_window = 0;   // Mistral's sliding-window attention; 0 = full causal (the count assumes full causal)
  int64_t n_positions = 0;      // rows of the learned position table (OPT: max_position_embeddings + 2); 0 = n_ctx
  // Whether N counts the norm after the last layer, as the frameworks do (Hugging Face's
  // sum(p.numel())). GPT-3's presets keep the count this project has always used for them
  // (GPT-3 paper / Kaplan et al. style: 12 L d^2 + 13 L d + V d + s d, no final norm), so their
  // figures do not change; every other preset and every Hugging Face config counts it.
  bool count_final_norm = false;
  double batch_tokens = 0;        // training batch size in tokens (Table 2.1)
  double train_tokens = 300e9;    // training tokens (GPT-3: 300B)

  // ---- mixture of experts (the MoE layers' FFN; docs/method.md, "Mixtures of experts") ----
  int64_t n_experts = 0;         // routed experts; 0 = a dense model
  int64_t top_k = 0;             // routed experts per token
  int64_t d_ff_expert = 0;       // each routed expert's FFN width (SwiGLU)
  int64_t n_shared_experts = 0;  // shared experts, every token through each (DeepSeek, Qwen2-MoE, Llama 4)
  int64_t d_ff_shared = 0;       // each shared expert's FFN width
  bool shared_expert_gate = false;  // a sigmoid gate on the shared expert's output, Linear(d, 1) (Qwen2-MoE)
  RouterScore router_score = RouterScore::softmax;
  bool router_topk_first = false;   // top-k of the logits, then their scores (gpt-oss, Llama 4); else scores, then top-k
  bool router_norm_topk = false;    // the k weights renormalised to sum to 1
  bool router_bias = false;         // the router's Linear has a bias (gpt-oss)
  bool expert_bias = false;         // the experts' projections have biases (gpt-oss)
  int64_t n_group = 0, topk_group = 0;  // grouped top-k (DeepSeek-V3): experts in n_group groups, top-k within topk_group of them; 0 = none
  int64_t first_dense = 0;        // the first layers keep the dense FFN (DeepSeek's first_k_dense_replace)
  int64_t moe_layer_step = 1;     // layers i with (i + 1) % step == 0 are MoE (Llama 4 interleave_moe_layer_step, Qwen decoder_sparse_step)
  double capacity_factor = 0;     // tokens an expert takes, x k T / E; 0 = no limit (no token dropped)
  double aux_loss_coef = 0;       // the load-balancing loss's weight (router_aux_loss_coef); 0 = none
  double routed_scaling_factor = 1;  // the k weights x this, after any renormalisation (DeepSeek; Megatron --moe-router-topk-scaling-factor)

  // ---- attention variants -------------------------------------------------------------------
  // Multi-head latent attention (DeepSeek-V2/V3) when kv_lora_rank > 0: Q from d (or through a
  // q_lora_rank bottleneck), K and V from a kv_lora_rank latent; heads of qk_nope + qk_rope
  // (query and key) and v_head_dim (value).
  int64_t q_lora_rank = 0, kv_lora_rank = 0, qk_nope_head_dim = 0, qk_rope_head_dim = 0, v_head_dim = 0;
  QkNorm qk_norm = QkNorm::none;
  int64_t sliding_window_step = 1;  // layers i with i % step == 0 have the sliding window (gpt-oss: 2); 1 = every layer
  bool attention_sinks = false;     // a learned sink logit per head (gpt-oss)
  int64_t attention_chunk = 0;      // chunked attention on the RoPE layers (Llama 4); 0 = none
  int64_t nope_layer_step = 0;      // layers i with (i + 1) % step == 0 have no RoPE (Llama 4: 4); 0 = none

  int64_t d_ff() const { return d_ff_explicit > 0 ? d_ff_explicit : ffn_mult * d_model; }
  int64_t kv_heads() const { return n_kv_heads > 0 ? n_kv_heads : n_heads; }
  int64_t q_dim() const { return n_heads * d_head; }      // width of Q (and of the attention output)
  int64_t kv_dim() const { return kv_heads() * d_head; }  // width of K and of V
  int64_t position_rows() const { return n_positions > 0 ? n_positions : n_ctx; }
  bool moe() const { return n_experts > 0; }
  bool mla() const { return kv_lora_rank > 0; }
  // Per head: the width of a query/key head and of a value head (MLA: nope + rope and v_head_dim).
  int64_t qk_head_dim() const { return mla() ? qk_nope_head_dim + qk_rope_head_dim : d_head; }
  int64_t v_dim() const { return mla() ? v_head_dim : d_head; }
  // The layer at each index 0 .. n_layers - 1.
  std::vector<LayerSpec> schedule() const;
  // The distinct kinds of layer, in the order of their first layer; counts sum to n_layers.
  std::vector<LayerKind> layer_kinds() const;
  // Throws UsageError when the numbers do not describe a transformer.
  void validate() const;
};

// Preset names: GPT-3's in Table 2.1 order, then Llama 2, Llama 3.1 and Mistral.
const std::vector<std::string>& preset_names();
// Throws UsageError naming the presets when `name` is unknown.
ModelConfig preset(const std::string& name);

// Overrides given on the command line (or read from a JSON file); unset fields keep the base.
// Each member is the override of one row of the field table (model/fields.hpp).
struct ModelOverrides {
  std::optional<int64_t> n_layers, d_model, n_heads, n_ctx, vocab, ffn_mult;
  std::optional<int64_t> n_kv_heads, d_head, d_ff, sliding_window, n_positions;
  std::optional<NormKind> norm;
  std::optional<FfnKind> ffn;
  std::optional<PositionKind> position;
  std::optional<double> rope_theta;
  std::optional<LinearBiases> biases;
  std::optional<bool> tied_embeddings, count_final_norm;
  std::optional<double> train_tokens, batch_tokens;
  std::optional<std::string> name;
  std::optional<int64_t> n_experts, top_k, d_ff_expert, n_shared_experts, d_ff_shared, n_group, topk_group,
      first_dense, moe_layer_step;
  std::optional<bool> shared_expert_gate, router_topk_first, router_norm_topk, router_bias, expert_bias;
  std::optional<RouterScore> router_score;
  std::optional<double> capacity_factor, aux_loss_coef, routed_scaling_factor;
  std::optional<int64_t> q_lora_rank, kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim,
      sliding_window_step, attention_chunk, nope_layer_step;
  std::optional<QkNorm> qk_norm;
  std::optional<bool> attention_sinks;
};

// Applies overrides. A new d_model or n_heads (without a new d_head) re-derives
// d_head = d_model / n_heads and throws when heads do not divide d_model; a new d_head keeps
// d_model as it is (Hugging Face's head_dim may differ from d_model / n_heads). A new d_ff
// sets d_ff explicitly (ffn_mult then no longer applies).
ModelConfig apply_overrides(ModelConfig base, const ModelOverrides& o);

// Reads a model config JSON: either a full model or {"base": "<preset>", ...overrides}.
// Keys: name, base and every key of the field table (model/fields.hpp: n_layers, d_model,
// n_heads, n_kv_heads, d_head, n_ctx, vocab, ffn_mult, d_ff, norm, ffn, position, ...);
// model_to_json writes them all, so a result's model reads back. Unknown keys, wrong types
// and missing fields are UsageErrors.
ModelConfig model_from_json(const nlohmann::json& j, const std::string& origin);
ModelConfig model_from_file(const std::string& path);
nlohmann::json model_to_json(const ModelConfig& m);

// The layer at the model's ratios scaled by `width`: n_heads * width heads and
// n_kv_heads * width kv heads of the same d_head, d_model = heads * d_head (or d_model *
// width when d_model != heads * d_head), d_ff = ffn_mult * d_model or d_ff_explicit * width,
// same n_ctx; a mixture of experts also has its experts (and expert groups) x width, its
// expert and shared-expert widths and MLA's latent ranks x width, the MLA head dims kept.
// Throws UsageError when the width leaves no whole head, a fraction of a kv head, a
// fractional d_model, d_ff, expert count or width, or fewer experts than top-k.
ModelConfig scale_width(const ModelConfig& m, const Fraction& width);

}  // namespace flopscope
