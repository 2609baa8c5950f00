#include "model/hf_config.hpp"

#include <cmath>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

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

// Llama, Mistral and Qwen2: RMSNorm, SwiGLU, RoPE, grouped-query attention.
void read_llama_style(const Reader& r, const std::string& type, ModelConfig& m) {
  m.n_layers = r.size("num_hidden_layers");
  m.d_model = r.size("hidden_size");
  m.n_heads = r.size("num_attention_heads");
  // Absent: the class's default (MistralConfig 8, LlamaConfig None); null (None): multi-head.
  m.n_kv_heads = r.has("num_key_value_heads") ? r.size("num_key_value_heads")
                 : type == "mistral" && !r.present("num_key_value_heads") ? 8
                                                                           : m.n_heads;
  if (m.n_heads % m.n_kv_heads != 0)
    r.fail("num_key_value_heads", fmt::format("({}) must divide 'num_attention_heads' ({})", m.n_kv_heads, m.n_heads));
  m.d_head = r.has("head_dim") ? r.size("head_dim")
                               : head_size(r, "hidden_size", m.d_model, "num_attention_heads", m.n_heads);
  m.d_ff_explicit = r.size("intermediate_size");
  m.vocab = r.size("vocab_size");
  m.n_ctx = r.size("max_position_embeddings");
  const std::string act = r.text_or("hidden_act", "silu");
  if (act != "silu")
    r.fail("hidden_act", fmt::format("is '{}': model_type {} is read as SwiGLU, which needs silu", act, type));
  m.norm = NormKind::rmsnorm;
  m.ffn = FfnKind::swiglu;
  m.position = PositionKind::rope;
  m.rope_theta = r.real_or("rope_theta", 10000.0);
  // Every one of the three classes defaults to untied embeddings.
  m.tied_embeddings = r.flag_or("tie_word_embeddings", false);
  if (type == "llama") {
    const bool attn = r.flag_or("attention_bias", false);  // q, k, v and o projections
    m.biases = LinearBiases{attn, attn, r.flag_or("mlp_bias", false)};
  } else if (type == "qwen2") {
    m.biases = LinearBiases{true, false, false};  // Qwen2Attention: bias on q, k, v only
    if (r.flag_or("use_sliding_window", false)) m.sliding_window = r.size_or("sliding_window", 0);
  } else {  // mistral
    m.biases = LinearBiases{false, false, false};
    // transformers' MistralConfig: sliding_window defaults to 4096 when the key is absent;
    // null (None, as Mistral v0.2 and later write it) is full causal attention.
    m.sliding_window = r.has("sliding_window") ? r.size("sliding_window") : r.present("sliding_window") ? 0 : 4096;
  }
}

void read_gpt2(const Reader& r, ModelConfig& m) {
  m.n_layers = r.size("n_layer");
  m.d_model = r.size("n_embd");
  m.n_heads = r.size("n_head");
  m.d_head = head_size(r, "n_embd", m.d_model, "n_head", m.n_heads);
  m.n_positions = r.size("n_positions");
  m.n_ctx = m.n_positions;
  m.vocab = r.size("vocab_size");
  if (r.has("n_inner")) m.d_ff_explicit = r.size("n_inner");  // null = 4 x n_embd
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
  m.n_layers = r.size("num_hidden_layers");
  m.d_model = r.size("hidden_size");
  m.n_heads = r.size("num_attention_heads");
  m.d_head = head_size(r, "hidden_size", m.d_model, "num_attention_heads", m.n_heads);
  m.d_ff_explicit = r.size("ffn_dim");
  m.vocab = r.size("vocab_size");
  m.n_ctx = r.size("max_position_embeddings");
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
  static const std::vector<std::string> types = {"llama", "mistral", "qwen2", "gpt2", "opt"};
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
  if (type == "llama" || type == "mistral" || type == "qwen2") {
    read_llama_style(r, type, m);
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
