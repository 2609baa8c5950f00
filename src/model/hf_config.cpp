#include "model/hf_config.hpp"

#include <cmath>
#include <filesystem>
#include <fstream>

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
  r.read(m, {{"num_hidden_layers", "n_layers", true},
             {"hidden_size", "d_model", true},
             {"num_attention_heads", "n_heads", true},
             {"intermediate_size", "d_ff", true},
             {"vocab_size", "vocab", true},
             {"max_position_embeddings", "n_ctx", true}});
  // transformers' defaults: num_key_value_heads None = multi-head; head_dim = hidden / heads;
  // rope_theta 10000; every one of the three classes unties the embeddings.
  m.n_kv_heads = m.n_heads;
  m.d_head = r.has("head_dim") ? 0 : head_size(r, "hidden_size", m.d_model, "num_attention_heads", m.n_heads);
  m.rope_theta = 10000.0;
  m.tied_embeddings = false;
  r.read(m, {{"num_key_value_heads", "n_kv_heads", false},
             {"head_dim", "d_head", false},
             {"rope_theta", "rope_theta", false},
             {"tie_word_embeddings", "tied_embeddings", false}});
  if (m.n_heads % m.n_kv_heads != 0)
    r.fail("num_key_value_heads", fmt::format("({}) must divide 'num_attention_heads' ({})", m.n_kv_heads, m.n_heads));
  const std::string act = r.text_or("hidden_act", "silu");
  if (act != "silu")
    r.fail("hidden_act", fmt::format("is '{}': model_type {} is read as SwiGLU, which needs silu", act, type));
  m.norm = NormKind::rmsnorm;
  m.ffn = FfnKind::swiglu;
  m.position = PositionKind::rope;
  if (type == "llama") {
    const bool attn = r.flag_or("attention_bias", false);  // q, k, v and o projections
    m.biases = LinearBiases{attn, attn, r.flag_or("mlp_bias", false)};
  } else if (type == "qwen2") {
    m.biases = LinearBiases{true, false, false};  // Qwen2Attention: bias on q, k, v only
    if (r.flag_or("use_sliding_window", false)) m.sliding_window = r.size_or("sliding_window", 0);
  } else {  // mistral
    m.biases = LinearBiases{false, false, false};
    m.sliding_window = r.size_or("sliding_window", 0);
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
