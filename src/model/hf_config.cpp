#include "model/hf_config.hpp"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <variant>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "model/fields.hpp"
#include "util/error.hpp"

namespace flopscope {

namespace {

using nlohmann::json;

constexpr int64_t kMaxSize = INT64_C(1) << 24;  // as model.cpp: far beyond any real width

// Typed access to one config.json: each bad or missing value is one UsageError naming the key
// and the file. A key whose value is null counts as absent (transformers writes null for
// "use the default", e.g. GPT-2's n_inner, Mistral's sliding_window).
class Reader {
 public:
  Reader(const json& j, const std::string& origin, const std::string& type) : j_(j), origin_(origin), type_(type) {}

  bool has(const char* key) const { return j_.contains(key) && !j_.at(key).is_null(); }
  // In the file at all, null included (null and absent can mean different defaults).
  bool present(const char* key) const { return j_.contains(key); }

  [[noreturn]] void fail(const char* key, const std::string& why) const {
    throw UsageError(fmt::format("{}: '{}' {}", origin_, key, why));
  }

  // A size the cost depends on, with no default: required.
  int64_t size(const char* key) const {
    if (!has(key)) throw UsageError(fmt::format("{}: missing '{}' (model_type {}: it sets the cost)", origin_, key, type_));
    return whole(key);
  }
  int64_t size_or(const char* key, int64_t fallback) const { return has(key) ? whole(key) : fallback; }
  // Like size_or, but 0 is a value (a count of layers or experts that may be none).
  int64_t count_or(const char* key, int64_t fallback) const {
    if (has(key) && j_.at(key).is_number() && j_.at(key).get<double>() == 0) return 0;
    return size_or(key, fallback);
  }

  double real_or(const char* key, double fallback) const {
    if (!has(key)) return fallback;
    const auto& v = j_.at(key);
    if (!v.is_number()) fail(key, fmt::format("must be a number (got {})", v.dump()));
    return v.get<double>();
  }
  bool flag_or(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    const auto& v = j_.at(key);
    if (!v.is_boolean()) fail(key, fmt::format("must be true or false (got {})", v.dump()));
    return v.get<bool>();
  }
  // Reads each key present (or required) as its field's type (fields.hpp) into that field;
  // an optional key that is absent leaves the field as it is.
  struct Key {
    const char* hf;     // the config.json key
    const char* field;  // the field's JSON key in the table
    bool required;      // a size the cost depends on, with no default in transformers
  };
  void read(ModelConfig& m, std::initializer_list<Key> keys) const {
    for (const Key& k : keys) {
      if (!k.required && !has(k.hf)) continue;
      std::visit(
          [&](const auto& slot) {
            using T = std::remove_cvref_t<decltype(m.*(slot.config))>;
            if constexpr (std::is_same_v<T, int64_t>) {
              m.*(slot.config) = size(k.hf);
            } else if constexpr (std::is_same_v<T, double>) {
              m.*(slot.config) = real_or(k.hf, 0.0);
            } else if constexpr (std::is_same_v<T, bool>) {
              m.*(slot.config) = flag_or(k.hf, false);
            } else {
              throw Error(fmt::format("{}: field '{}' is not read from a config.json", k.hf, k.field));
            }
          },
          model_field(k.field).slot);
    }
  }

  // A list of whole numbers (or of strings); absent: nullopt.
  std::optional<std::vector<int64_t>> ints(const char* key) const {
    if (!has(key)) return std::nullopt;
    const auto& v = j_.at(key);
    if (!v.is_array()) fail(key, fmt::format("must be a list (got {})", v.dump()));
    std::vector<int64_t> out;
    for (const auto& e : v) {
      if (!e.is_number_integer()) fail(key, fmt::format("must be a list of whole numbers (got {})", e.dump()));
      out.push_back(e.get<int64_t>());
    }
    return out;
  }
  std::optional<std::vector<std::string>> texts(const char* key) const {
    if (!has(key)) return std::nullopt;
    const auto& v = j_.at(key);
    if (!v.is_array()) fail(key, fmt::format("must be a list (got {})", v.dump()));
    std::vector<std::string> out;
    for (const auto& e : v) {
      if (!e.is_string()) fail(key, fmt::format("must be a list of strings (got {})", e.dump()));
      out.push_back(e.get<std::string>());
    }
    return out;
  }
  const std::string& type() const { return type_; }
  const std::string& origin() const { return origin_; }

  std::string text_or(const char* key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    const auto& v = j_.at(key);
    if (!v.is_string()) fail(key, fmt::format("must be a string (got {})", v.dump()));
    return v.get<std::string>();
  }

 private:
  int64_t whole(const char* key) const {
    const auto& v = j_.at(key);
    if (!v.is_number()) fail(key, fmt::format("must be a number (got {})", v.dump()));
    // Range and wholeness on the double, before any conversion (casting 1e30 is undefined).
    const double d = v.get<double>();
    if (!(d >= 1 && d <= static_cast<double>(kMaxSize)))
      fail(key, fmt::format("must be a whole number in [1, {}] (got {})", kMaxSize, v.dump()));
    if (d != std::floor(d)) fail(key, fmt::format("must be a whole number (got {})", v.dump()));
    return static_cast<int64_t>(d);
  }

  const json& j_;
  const std::string& origin_;
  const std::string& type_;
};

// d_head = d_model / heads where the family has no head_dim key: heads must divide d_model.
int64_t head_size(const Reader& r, const char* d_key, int64_t d, const char* h_key, int64_t h) {
  if (d % h != 0) r.fail(h_key, fmt::format("({}) must divide '{}' ({})", h, d_key, d));
  return d / h;
}

// The keys every Llama-like family shares: RMSNorm, SwiGLU (silu), RoPE, grouped-query
// attention, untied embeddings unless tie_word_embeddings. transformers' defaults:
// num_key_value_heads None = multi-head (absent: MistralConfig's 8, every other class's None);
// head_dim = hidden / heads; rope_theta 10000 (or the family's `theta`). `ffn_key` is the dense
// FFN's width ("" = none: every layer is MoE).
void read_llama_core(const Reader& r, ModelConfig& m, const char* ffn_key, double theta = 10000.0) {
  r.read(m, {{"num_hidden_layers", "n_layers", true},
             {"hidden_size", "d_model", true},
             {"num_attention_heads", "n_heads", true},
             {"vocab_size", "vocab", true},
             {"max_position_embeddings", "n_ctx", true}});
  if (*ffn_key != 0) m.d_ff_explicit = r.size(ffn_key);
  m.n_kv_heads = m.n_heads;
  m.d_head = r.has("head_dim") ? 0 : head_size(r, "hidden_size", m.d_model, "num_attention_heads", m.n_heads);
  m.rope_theta = theta;
  m.tied_embeddings = false;
  r.read(m, {{"num_key_value_heads", "n_kv_heads", false},
             {"head_dim", "d_head", false},
             {"rope_theta", "rope_theta", false},
             {"tie_word_embeddings", "tied_embeddings", false}});
  if (r.type() == "mistral" && !r.present("num_key_value_heads")) m.n_kv_heads = 8;
  if (m.n_heads % m.n_kv_heads != 0)
    r.fail("num_key_value_heads", fmt::format("({}) must divide 'num_attention_heads' ({})", m.n_kv_heads, m.n_heads));
  const std::string act = r.text_or("hidden_act", "silu");
  if (act != "silu")
    r.fail("hidden_act", fmt::format("is '{}': model_type {} is read as SwiGLU, which needs silu", act, r.type()));
  m.norm = NormKind::rmsnorm;
  m.ffn = FfnKind::swiglu;
  m.position = PositionKind::rope;
  m.biases = LinearBiases{false, false, false};
}

// Llama, Mistral, Qwen2 and Qwen3 (dense).
void read_llama_style(const Reader& r, const std::string& type, ModelConfig& m) {
  read_llama_core(r, m, "intermediate_size");
  if (type == "llama") {
    const bool attn = r.flag_or("attention_bias", false);  // q, k, v and o projections
    m.biases = LinearBiases{attn, attn, r.flag_or("mlp_bias", false)};
  } else if (type == "qwen2") {
    m.biases = LinearBiases{true, false, false};  // Qwen2Attention: bias on q, k, v only
    if (r.flag_or("use_sliding_window", false)) m.sliding_window = r.size_or("sliding_window", 0);
  } else if (type == "qwen3") {
    const bool attn = r.flag_or("attention_bias", false);  // Qwen3Attention: q, k, v and o
    m.biases = LinearBiases{attn, attn, false};
    m.qk_norm = QkNorm::rmsnorm;  // q_norm, k_norm: RMSNorm(head_dim)
    if (r.flag_or("use_sliding_window", false))
      r.fail("use_sliding_window", "is true: Qwen3's sliding window above max_window_layers is not modelled");
  } else {  // mistral
    // transformers' MistralConfig: sliding_window defaults to 4096 when the key is absent;
    // null (None, as Mistral v0.2 and later write it) is full causal attention.
    m.sliding_window = r.has("sliding_window") ? r.size("sliding_window") : r.present("sliding_window") ? 0 : 4096;
  }
}

// The routed experts' keys shared by the MoE families; `experts_key` names their count.
void read_experts(const Reader& r, ModelConfig& m, const char* experts_key, const char* width_key) {
  m.n_experts = r.size(experts_key);
  m.top_k = r.size("num_experts_per_tok");
  m.d_ff_expert = r.size(width_key);
  if (m.top_k > m.n_experts)
    r.fail("num_experts_per_tok", fmt::format("({}) is larger than '{}' ({})", m.top_k, experts_key, m.n_experts));
}

// Mixtral: every layer MoE, softmax over the experts, top-k renormalised (MixtralSparseMoeBlock).
void read_mixtral(const Reader& r, ModelConfig& m) {
  read_llama_core(r, m, "intermediate_size", 1e6);
  read_experts(r, m, "num_local_experts", "intermediate_size");
  m.router_norm_topk = true;
  m.aux_loss_coef = r.real_or("router_aux_loss_coef", 0.001);
  m.sliding_window = r.size_or("sliding_window", 0);
}

// Qwen2-MoE and Qwen3-MoE: layers i with (i + 1) % decoder_sparse_step == 0 are MoE (none in
// mlp_only_layers), softmax then top-k, renormalised when norm_topk_prob; Qwen2-MoE has one
// shared expert with a sigmoid gate and q, k, v biases; Qwen3-MoE QK-norm and no shared expert.
void read_qwen_moe(const Reader& r, const std::string& type, ModelConfig& m) {
  read_llama_core(r, m, "intermediate_size", type == "qwen3_moe" ? 1e6 : 10000.0);
  read_experts(r, m, "num_experts", "moe_intermediate_size");
  m.moe_layer_step = r.size_or("decoder_sparse_step", 1);
  if (const auto only = r.ints("mlp_only_layers"); only && !only->empty())
    r.fail("mlp_only_layers", "is not empty: dense layers chosen by list are not modelled (decoder_sparse_step is)");
  m.router_norm_topk = r.flag_or("norm_topk_prob", false);
  m.aux_loss_coef = r.real_or("router_aux_loss_coef", 0.001);
  if (r.flag_or("use_sliding_window", false))
    r.fail("use_sliding_window", fmt::format("is true: {}'s sliding window above max_window_layers is not modelled", type));
  if (type == "qwen2_moe") {
    m.biases = LinearBiases{r.flag_or("qkv_bias", true), false, false};
    m.n_shared_experts = 1;
    m.d_ff_shared = r.size("shared_expert_intermediate_size");
    m.shared_expert_gate = true;
  } else {
    const bool attn = r.flag_or("attention_bias", false);
    m.biases = LinearBiases{attn, attn, false};
    m.qk_norm = QkNorm::rmsnorm;
  }
}

// DeepSeek-V2 and V3: multi-head latent attention; the first first_k_dense_replace layers
// dense, the rest MoE with n_shared_experts fused into one MLP of n_shared x
// moe_intermediate_size. V3 (DeepseekV3TopkRouter): sigmoid scores, top-k of topk_group of
// n_group groups, renormalised when norm_topk_prob. V2 (DeepseekV2Moe): softmax, top-k
// ("greedy") or of groups ("group_limited_greedy"), never renormalised. Both: the k weights x
// routed_scaling_factor (DeepseekV3Config's default 2.5, V2's 1.0). transformers ignores
// moe_layer_freq (as here) and builds no multi-token-prediction layer.
void read_deepseek(const Reader& r, const std::string& type, ModelConfig& m) {
  const bool v3 = type == "deepseek_v3";
  read_llama_core(r, m, "intermediate_size");
  m.n_kv_heads = m.n_heads;  // MLA: K and V per head from the latent
  read_experts(r, m, "n_routed_experts", "moe_intermediate_size");
  m.kv_lora_rank = r.size("kv_lora_rank");
  m.q_lora_rank = r.size_or("q_lora_rank", 0);  // null: Q straight from d (V2-Lite)
  m.qk_nope_head_dim = r.size("qk_nope_head_dim");
  m.qk_rope_head_dim = r.size("qk_rope_head_dim");
  m.v_head_dim = r.size("v_head_dim");
  m.d_head = m.qk_nope_head_dim + m.qk_rope_head_dim;
  m.n_shared_experts = r.count_or("n_shared_experts", v3 ? 1 : 0);
  if (m.n_shared_experts > 0) m.d_ff_shared = m.d_ff_expert;
  m.first_dense = r.count_or("first_k_dense_replace", v3 ? 3 : 0);
  const bool attn = r.flag_or("attention_bias", false);  // q_a, kv_a and o projections
  m.biases = LinearBiases{attn, attn, false};
  m.routed_scaling_factor = r.real_or("routed_scaling_factor", v3 ? 2.5 : 1.0);
  if (v3) {
    m.router_score = RouterScore::sigmoid;
    m.router_norm_topk = r.flag_or("norm_topk_prob", true);
    m.n_group = r.size_or("n_group", 8);
    m.topk_group = r.size_or("topk_group", 4);
  } else {
    const std::string method = r.text_or("topk_method", "greedy");
    if (method == "group_limited_greedy") {
      m.n_group = r.size("n_group");
      m.topk_group = r.size("topk_group");
    } else if (method != "greedy") {
      r.fail("topk_method", fmt::format("is '{}': only greedy and group_limited_greedy are modelled", method));
    }
    m.aux_loss_coef = r.real_or("aux_loss_alpha", 0.001);
  }
}

// Llama 4's text model (Llama4TextConfig, the text_config of a llama4 config): MoE layers
// range(step - 1, L, step) with one shared expert of intermediate_size, dense layers of
// intermediate_size_mlp; top-k of the logits, then sigmoid; every no_rope_layer_interval-th
// layer NoPE, the others chunked attention with an unweighted QK-norm when use_qk_norm.
void read_llama4_text(const Reader& r, ModelConfig& m) {
  read_llama_core(r, m, "", 500000.0);
  read_experts(r, m, "num_local_experts", "intermediate_size");
  m.n_shared_experts = 1;
  m.d_ff_shared = m.d_ff_expert;
  m.router_score = RouterScore::sigmoid;
  m.router_topk_first = true;
  m.moe_layer_step = r.size_or("interleave_moe_layer_step", 1);
  m.d_ff_explicit = m.moe_layer_step > 1 ? r.size("intermediate_size_mlp") : r.size_or("intermediate_size_mlp", 16384);
  const bool attn = r.flag_or("attention_bias", false);
  m.biases = LinearBiases{attn, attn, false};
  m.aux_loss_coef = r.real_or("router_aux_loss_coef", 0.001);
  m.nope_layer_step = r.size_or("no_rope_layer_interval", 4);
  m.attention_chunk = r.size_or("attention_chunk_size", 8192);
  m.qk_norm = r.flag_or("use_qk_norm", true) ? QkNorm::l2 : QkNorm::none;
  // The lists transformers derives from those keys, when a config spells them out, must be
  // the derived ones: other layer patterns are not modelled.
  const std::vector<LayerSpec> layers = m.schedule();
  if (const auto moe = r.ints("moe_layers")) {
    std::vector<int64_t> want;
    for (size_t i = 0; i < layers.size(); ++i)
      if (layers[i].moe) want.push_back(static_cast<int64_t>(i));
    if (*moe != want) r.fail("moe_layers", "is not range(step - 1, layers, step): other MoE layer patterns are not modelled");
  }
  if (const auto rope = r.ints("no_rope_layers"); rope && !rope->empty()) {
    bool same = rope->size() == layers.size();
    for (size_t i = 0; same && i < layers.size(); ++i) same = (*rope)[i] == (layers[i].nope ? 0 : 1);
    if (!same) r.fail("no_rope_layers", "is not every no_rope_layer_interval-th layer: other NoPE patterns are not modelled");
  }
  if (const auto types = r.texts("layer_types")) {
    bool same = types->size() == layers.size();
    for (size_t i = 0; same && i < layers.size(); ++i)
      same = (*types)[i] == (layers[i].nope ? "full_attention" : "chunked_attention");
    if (!same) r.fail("layer_types", "is not chunked attention on the RoPE layers, full on the NoPE ones: not modelled");
  }
}

// gpt-oss: every layer MoE (experts and router with biases), top-k of the logits then
// softmax; attention biases and sinks; sliding window on the even layers (layer_types).
void read_gpt_oss(const Reader& r, ModelConfig& m) {
  read_llama_core(r, m, "intermediate_size", 150000.0);
  if (!r.has("head_dim")) m.d_head = 64;  // GptOssConfig's default
  read_experts(r, m, "num_local_experts", "intermediate_size");
  m.router_topk_first = true;
  m.router_bias = true;
  m.expert_bias = true;
  const bool attn = r.flag_or("attention_bias", true);
  m.biases = LinearBiases{attn, attn, false};
  m.attention_sinks = true;
  m.aux_loss_coef = r.real_or("router_aux_loss_coef", 0.9);
  m.sliding_window = r.size_or("sliding_window", 128);
  m.sliding_window_step = 2;
  if (const auto types = r.texts("layer_types")) {
    bool same = static_cast<int64_t>(types->size()) == m.n_layers;
    for (size_t i = 0; same && i < types->size(); ++i)
      same = (*types)[i] == (i % 2 == 0 ? "sliding_attention" : "full_attention");
    if (!same)
      r.fail("layer_types", "is not sliding and full attention alternating from layer 0: not modelled");
  }
}

void read_gpt2(const Reader& r, ModelConfig& m) {
  r.read(m, {{"n_layer", "n_layers", true},
             {"n_embd", "d_model", true},
             {"n_head", "n_heads", true},
             {"n_positions", "n_positions", true},
             {"vocab_size", "vocab", true},
             {"n_inner", "d_ff", false}});  // null = 4 x n_embd
  m.d_head = head_size(r, "n_embd", m.d_model, "n_head", m.n_heads);
  m.n_ctx = m.n_positions;
  const std::string act = r.text_or("activation_function", "gelu_new");
  if (act == "relu") {
    m.ffn = FfnKind::relu;
  } else if (act == "gelu_new" || act == "gelu" || act == "gelu_fast" || act == "gelu_pytorch_tanh") {
    m.ffn = FfnKind::gelu;
  } else {
    r.fail("activation_function", fmt::format("is '{}': only gelu_new, gelu, gelu_fast, gelu_pytorch_tanh or relu "
                                              "are modelled", act));
  }
  if (r.flag_or("add_cross_attention", false))
    r.fail("add_cross_attention", "is true: cross-attention layers are not modelled");
  m.tied_embeddings = r.flag_or("tie_word_embeddings", true);
}

void read_opt(const Reader& r, ModelConfig& m) {
  r.read(m, {{"num_hidden_layers", "n_layers", true},
             {"hidden_size", "d_model", true},
             {"num_attention_heads", "n_heads", true},
             {"ffn_dim", "d_ff", true},
             {"vocab_size", "vocab", true},
             {"max_position_embeddings", "n_ctx", true}});
  m.d_head = head_size(r, "hidden_size", m.d_model, "num_attention_heads", m.n_heads);
  m.n_positions = m.n_ctx + 2;  // OPTLearnedPositionalEmbedding: an offset of 2 rows
  const std::string act = r.text_or("activation_function", "relu");
  if (act == "relu") {
    m.ffn = FfnKind::relu;
  } else if (act == "gelu" || act == "gelu_new") {
    m.ffn = FfnKind::gelu;
  } else {
    r.fail("activation_function", fmt::format("is '{}': only relu, gelu or gelu_new are modelled", act));
  }
  const int64_t proj = r.size_or("word_embed_proj_dim", m.d_model);
  if (proj != m.d_model)
    r.fail("word_embed_proj_dim", fmt::format("({}) differs from 'hidden_size' ({}): OPT's project_in/project_out "
                                              "layers are not modelled", proj, m.d_model));
  if (!r.flag_or("do_layer_norm_before", true))
    r.fail("do_layer_norm_before", "is false: post-layernorm OPT (opt-350m) is not modelled");
  if (!r.flag_or("layer_norm_elementwise_affine", true))
    r.fail("layer_norm_elementwise_affine", "is false: layernorms without weights are not modelled");
  m.count_final_norm = !r.flag_or("_remove_final_layer_norm", false);
  if (!r.flag_or("enable_bias", true)) m.biases = LinearBiases{false, false, false};
  m.tied_embeddings = r.flag_or("tie_word_embeddings", true);
}

}  // namespace

const std::vector<std::string>& hf_model_types() {
  static const std::vector<std::string> types = {"llama",     "mistral",     "qwen2",       "qwen3",     "gpt2",
                                                 "opt",       "mixtral",     "qwen2_moe",   "qwen3_moe", "deepseek_v2",
                                                 "deepseek_v3", "llama4",    "llama4_text", "gpt_oss"};
  return types;
}

ModelConfig model_from_hf_config(const json& j, const std::string& origin, const std::string& fallback_name) {
  if (!j.is_object()) throw UsageError(fmt::format("{}: a Hugging Face config must be a JSON object", origin));
  if (!j.contains("model_type")) throw UsageError(fmt::format("{}: missing 'model_type'", origin));
  if (!j.at("model_type").is_string())
    throw UsageError(fmt::format("{}: 'model_type' must be a string (got {})", origin, j.at("model_type").dump()));
  const std::string type = j.at("model_type").get<std::string>();
  const Reader r(j, origin, type);

  ModelConfig m;  // GPT-3's defaults: learned positions, layernorm, GeLU, every bias, tied
  m.count_final_norm = true;  // every family here has a norm after the last layer
  if (type == "llama4") {
    // Llama4Config: the text model is its text_config (Llama4ForCausalLM); the vision tower
    // and the multimodal projector are out of scope, not counted.
    if (!r.has("text_config") || !j.at("text_config").is_object())
      throw UsageError(fmt::format("{}: a llama4 config needs its 'text_config' object (the text model; the vision "
                                   "tower is not modelled)",
                                   origin));
    const json& text = j.at("text_config");
    if (text.contains("model_type") && text.at("model_type") != "llama4_text")
      throw UsageError(fmt::format("{}: 'text_config' has model_type {}, not llama4_text", origin,
                                   text.at("model_type").dump()));
    const std::string sub = origin + " text_config", sub_type = "llama4_text";
    const Reader tr(text, sub, sub_type);
    read_llama4_text(tr, m);
    // The tie can sit at the top level of Llama4Config too (absent from both: untied).
    m.tied_embeddings = r.flag_or("tie_word_embeddings", tr.flag_or("tie_word_embeddings", false));
  } else if (type == "llama4_text") {
    read_llama4_text(r, m);
  } else if (type == "llama" || type == "mistral" || type == "qwen2" || type == "qwen3") {
    read_llama_style(r, type, m);
  } else if (type == "mixtral") {
    read_mixtral(r, m);
  } else if (type == "qwen2_moe" || type == "qwen3_moe") {
    read_qwen_moe(r, type, m);
  } else if (type == "deepseek_v2" || type == "deepseek_v3") {
    read_deepseek(r, type, m);
  } else if (type == "gpt_oss") {
    read_gpt_oss(r, m);
  } else if (type == "gpt2") {
    read_gpt2(r, m);
  } else if (type == "opt") {
    read_opt(r, m);
  } else {
    std::string list;
    for (const auto& t : hf_model_types()) list += (list.empty() ? "" : ", ") + t;
    throw UsageError(fmt::format("{}: model_type '{}' is not supported (supported: {})", origin, type, list));
  }
  const std::string path_name = r.text_or("_name_or_path", "");
  m.name = path_name.empty() ? fallback_name : path_name;
  try {
    m.validate();
  } catch (const UsageError& e) {
    throw UsageError(fmt::format("{}: {}", origin, e.what()));
  }
  return m;
}

ModelConfig model_from_hf_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw UsageError(fmt::format("cannot read Hugging Face config '{}'", path));
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    throw UsageError(fmt::format("{}: not valid JSON ({})", path, e.what()));
  }
  const std::filesystem::path p(path);
  std::string name = p.stem().string();
  if (name == "config" && p.has_parent_path() && !p.parent_path().filename().empty())
    name = p.parent_path().filename().string();
  return model_from_hf_config(j, path, name);
}

}  // namespace flopscope
