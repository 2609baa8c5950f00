#include "model/fields.hpp"

#include <cmath>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "util/error.hpp"
#include "util/parse.hpp"

namespace flopscope {

namespace {

using nlohmann::json;

constexpr int64_t kMaxCount = INT64_C(1) << 24;  // as model.cpp's kMaxDim: far beyond any real width

template <typename T>
AnyFieldSlot slot(T ModelConfig::*c, std::optional<T> ModelOverrides::*o, int64_t (ModelConfig::*w)() const = nullptr) {
  return FieldSlot<T>{c, o, w};
}

// One row; the flag's parts are empty for a field without a flag.
ModelField row(std::string_view key, AnyFieldSlot slot, bool zero_allowed, std::string_view flag = {},
               std::string_view type_name = {}, std::string_view help = {}, double flag_max = 0) {
  return ModelField{key, std::move(slot), zero_allowed, flag, type_name, help, flag_max};
}

std::vector<ModelField> make_fields() {
  using M = ModelConfig;
  using O = ModelOverrides;
  const double kCount = static_cast<double>(kMaxCount);
  return {
      row("n_layers", slot(&M::n_layers, &O::n_layers), false, "--layers", "N", "number of layers (default: the model's)",
       kCount),
      row("d_model", slot(&M::d_model, &O::d_model), false, "--d-model", "N",
       "model width d_model; d_head = d_model / heads unless --d-head (default: the model's)", kCount),
      row("n_heads", slot(&M::n_heads, &O::n_heads), false, "--heads", "N",
       "attention (query) heads; must divide d_model unless --d-head (default: the model's)", kCount),
      row("n_kv_heads", slot(&M::n_kv_heads, &O::n_kv_heads, &M::kv_heads), false, "--kv-heads", "N",
       "key/value heads: = heads (multi-head), a divisor of heads (grouped-query), 1 (multi-query) "
       "(HF num_key_value_heads, Megatron --num-query-groups; default: the model's)",
       kCount),
      row("d_head", slot(&M::d_head, &O::d_head), false, "--d-head", "N",
       "head size, may differ from d_model / heads (HF head_dim, Megatron --kv-channels; default: the model's)", kCount),
      row("n_ctx", slot(&M::n_ctx, &O::n_ctx), false, "--seq", "N",
       "sequence length n_ctx (default: the model's, 2048 for GPT-3)", kCount),
      row("vocab", slot(&M::vocab, &O::vocab), false, "--vocab", "N",
       "vocabulary size (default: the model's, 50257 for GPT-3)", kCount),
      row("ffn_mult", slot(&M::ffn_mult, &O::ffn_mult), false, "--ffn-mult", "N", "d_ff = ffn-mult x d_model (default: 4)",
       1024),
      row("d_ff", slot(&M::d_ff_explicit, &O::d_ff, &M::d_ff), false, "--d-ff", "N",
       "FFN width d_ff, replacing ffn-mult x d_model (HF intermediate_size, Megatron --ffn-hidden-size)", kCount),
      row("norm", slot(&M::norm, &O::norm), false, "--norm", "KIND",
       "norm: layernorm (with bias; GPT, OPT) or rmsnorm (weight only; Llama)"),
      row("ffn", slot(&M::ffn, &O::ffn), false, "--ffn", "KIND", "FFN: gelu (GPT), relu (OPT) or swiglu (gate, up, down; Llama)"),
      row("position", slot(&M::position, &O::position), false, "--position", "KIND",
       "positions: learned (a table, no FLOPs; GPT, OPT) or rope (rotary on Q and K; Llama)"),
      row("rope_theta", slot(&M::rope_theta, &O::rope_theta), false, "--rope-theta", "X",
       "RoPE base theta (default: the model's; 10000, Llama 3.1: 500000)", 1e12),
      row("biases", slot(&M::biases, &O::biases), false, "--bias", "GROUPS",
       "biases of the linear layers: all (GPT, OPT), none (Llama), qkv (Qwen2), or groups joined by '+' from qkv, "
       "attn_out, ffn"),
      row("tied_embeddings", slot(&M::tied_embeddings, &O::tied_embeddings), false, "--tie-embeddings", "on|off",
       "on: the LM head is the token embedding (counted once in N); off: untied"),
      row("sliding_window", slot(&M::sliding_window, &O::sliding_window), true),
      row("n_positions", slot(&M::n_positions, &O::n_positions), true),
      row("count_final_norm", slot(&M::count_final_norm, &O::count_final_norm), false),
      row("train_tokens", slot(&M::train_tokens, &O::train_tokens), false, "--tokens", "X",
       "training tokens, e.g. 300e9 (default: the model's, 300e9 for GPT-3)", 1e21),
      row("batch_tokens", slot(&M::batch_tokens, &O::batch_tokens), false),
      // Mixtures of experts (docs/method.md, "Mixtures of experts").
      row("n_experts", slot(&M::n_experts, &O::n_experts), true, "--experts", "N",
          "routed experts of the MoE layers; 0: a dense model (HF num_local_experts, n_routed_experts)", 65536),
      row("top_k", slot(&M::top_k, &O::top_k), true, "--top-k", "N",
          "routed experts per token (HF num_experts_per_tok, Megatron --moe-router-topk)", 65536),
      row("d_ff_expert", slot(&M::d_ff_expert, &O::d_ff_expert), true, "--d-ff-expert", "N",
          "each routed expert's FFN width (HF moe_intermediate_size, Megatron --moe-ffn-hidden-size)", kCount),
      row("n_shared_experts", slot(&M::n_shared_experts, &O::n_shared_experts), true, "--shared-experts", "N",
          "shared experts, every token through each (DeepSeek, Qwen2-MoE, Llama 4)", 1024),
      row("d_ff_shared", slot(&M::d_ff_shared, &O::d_ff_shared), true, "--d-ff-shared", "N",
          "each shared expert's FFN width", kCount),
      row("shared_expert_gate", slot(&M::shared_expert_gate, &O::shared_expert_gate), false),
      row("router_score", slot(&M::router_score, &O::router_score), false),
      row("router_topk_first", slot(&M::router_topk_first, &O::router_topk_first), false),
      row("router_norm_topk", slot(&M::router_norm_topk, &O::router_norm_topk), false),
      row("router_bias", slot(&M::router_bias, &O::router_bias), false),
      row("expert_bias", slot(&M::expert_bias, &O::expert_bias), false),
      row("n_group", slot(&M::n_group, &O::n_group), true),
      row("topk_group", slot(&M::topk_group, &O::topk_group), true),
      row("first_dense", slot(&M::first_dense, &O::first_dense), true, "--first-dense", "N",
          "the first N layers keep the dense FFN (HF first_k_dense_replace)", kCount),
      row("moe_layer_step", slot(&M::moe_layer_step, &O::moe_layer_step), false, "--moe-step", "N",
          "layers i with (i + 1) % N == 0 are MoE, the others dense (HF interleave_moe_layer_step, "
          "decoder_sparse_step; default 1: every layer)",
          kCount),
      row("capacity_factor", slot(&M::capacity_factor, &O::capacity_factor), false, "--capacity-factor", "X",
          "rows an expert keeps, x top-k x tokens / experts, the rest dropped, lowest weight first (Megatron "
          "--moe-expert-capacity-factor, drop policy probs); default: no limit, no token dropped",
          1024),
      row("aux_loss_coef", slot(&M::aux_loss_coef, &O::aux_loss_coef), false),
      row("routed_scaling_factor", slot(&M::routed_scaling_factor, &O::routed_scaling_factor), false),
      // Attention variants.
      row("q_lora_rank", slot(&M::q_lora_rank, &O::q_lora_rank), true),
      row("kv_lora_rank", slot(&M::kv_lora_rank, &O::kv_lora_rank), true),
      row("qk_nope_head_dim", slot(&M::qk_nope_head_dim, &O::qk_nope_head_dim), true),
      row("qk_rope_head_dim", slot(&M::qk_rope_head_dim, &O::qk_rope_head_dim), true),
      row("v_head_dim", slot(&M::v_head_dim, &O::v_head_dim), true),
      row("qk_norm", slot(&M::qk_norm, &O::qk_norm), false),
      row("sliding_window_step", slot(&M::sliding_window_step, &O::sliding_window_step), false),
      row("attention_sinks", slot(&M::attention_sinks, &O::attention_sinks), false),
      row("attention_chunk", slot(&M::attention_chunk, &O::attention_chunk), true),
      row("nope_layer_step", slot(&M::nope_layer_step, &O::nope_layer_step), true),
  };
}

// The enum-like kinds: their names, and their parsers (each throws UsageError naming `what`).
std::string kind_name(NormKind k) { return std::string(to_string(k)); }
std::string kind_name(FfnKind k) { return std::string(to_string(k)); }
std::string kind_name(PositionKind k) { return std::string(to_string(k)); }
std::string kind_name(const LinearBiases& b) { return to_string(b); }
std::string kind_name(RouterScore k) { return std::string(to_string(k)); }
std::string kind_name(QkNorm k) { return std::string(to_string(k)); }
void parse_kind(std::string_view what, std::string_view text, NormKind& out) { out = parse_norm(what, text); }
void parse_kind(std::string_view what, std::string_view text, FfnKind& out) { out = parse_ffn(what, text); }
void parse_kind(std::string_view what, std::string_view text, PositionKind& out) { out = parse_position(what, text); }
void parse_kind(std::string_view what, std::string_view text, LinearBiases& out) { out = parse_biases(what, text); }
void parse_kind(std::string_view what, std::string_view text, RouterScore& out) { out = parse_router_score(what, text); }
void parse_kind(std::string_view what, std::string_view text, QkNorm& out) { out = parse_qk_norm(what, text); }

}  // namespace

const std::vector<ModelField>& model_fields() {
  static const std::vector<ModelField> fields = make_fields();
  return fields;
}

const ModelField& model_field(std::string_view key) {
  for (const auto& f : model_fields())
    if (f.key == key) return f;
  throw Error(fmt::format("no model field '{}'", key));
}

json field_to_json(const ModelField& f, const ModelConfig& m) {
  return std::visit(
      [&](const auto& s) -> json {
        using T = std::remove_cvref_t<decltype(m.*(s.config))>;
        if constexpr (std::is_same_v<T, int64_t>) {
          return s.written ? (m.*(s.written))() : m.*(s.config);
        } else if constexpr (std::is_same_v<T, double> || std::is_same_v<T, bool>) {
          return m.*(s.config);
        } else {
          return kind_name(m.*(s.config));
        }
      },
      f.slot);
}

void field_from_json(const ModelField& f, const json& v, const std::string& origin, ModelOverrides& o) {
  const std::string key(f.key);
  std::visit(
      [&](const auto& s) {
        using T = typename std::remove_cvref_t<decltype(o.*(s.override))>::value_type;
        if constexpr (std::is_same_v<T, int64_t>) {
          if (!v.is_number()) throw UsageError(fmt::format("{}: '{}' must be a number", origin, key));
          // Range and wholeness on the double, before any conversion (casting 1e30 is undefined).
          const double d = v.get<double>();
          if (f.zero_allowed && d == 0) {
            o.*(s.override) = 0;
            return;
          }
          if (!(d >= 1 && d <= static_cast<double>(kMaxCount)))
            throw UsageError(fmt::format("{}: '{}' must be in [1, {}]", origin, key, kMaxCount));
          if (d != std::floor(d)) throw UsageError(fmt::format("{}: '{}' must be a whole number", origin, key));
          o.*(s.override) = static_cast<int64_t>(d);
        } else if constexpr (std::is_same_v<T, double>) {
          if (!v.is_number()) throw UsageError(fmt::format("{}: '{}' must be a number", origin, key));
          o.*(s.override) = v.get<double>();
        } else if constexpr (std::is_same_v<T, bool>) {
          if (!v.is_boolean()) throw UsageError(fmt::format("{}: '{}' must be true or false", origin, key));
          o.*(s.override) = v.get<bool>();
        } else {
          if (!v.is_string()) throw UsageError(fmt::format("{}: '{}' must be a string", origin, key));
          T value{};
          parse_kind(fmt::format("{}: '{}'", origin, key), v.get<std::string>(), value);
          o.*(s.override) = value;
        }
      },
      f.slot);
}

void field_from_flag(const ModelField& f, const std::string& text, ModelOverrides& o) {
  const std::string flag(f.flag);
  std::visit(
      [&](const auto& s) {
        using T = typename std::remove_cvref_t<decltype(o.*(s.override))>::value_type;
        if constexpr (std::is_same_v<T, int64_t>) {
          const auto max = static_cast<int64_t>(f.flag_max);
          o.*(s.override) = f.zero_allowed ? parse_nonnegative(flag, text, max) : parse_count(flag, text, max);
        } else if constexpr (std::is_same_v<T, double>) {
          o.*(s.override) = parse_positive_real(flag, text, f.flag_max);
        } else if constexpr (std::is_same_v<T, bool>) {
          if (text != "on" && text != "off")
            throw UsageError(fmt::format("{}: unknown value '{}'; choose on or off", flag, text));
          o.*(s.override) = text == "on";
        } else {
          T value{};
          parse_kind(flag, text, value);
          o.*(s.override) = value;
        }
      },
      f.slot);
}

bool field_apply(const ModelField& f, const ModelOverrides& o, ModelConfig& m) {
  return std::visit(
      [&](const auto& s) {
        if (!(o.*(s.override))) return false;
        m.*(s.config) = *(o.*(s.override));
        return true;
      },
      f.slot);
}

}  // namespace flopscope
