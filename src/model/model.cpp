#include "model/model.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

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
  return s;
}

std::vector<LayerSpec> ModelConfig::schedule() const {
  LayerSpec every;
  every.window = sliding_window;
  return std::vector<LayerSpec>(static_cast<size_t>(std::max<int64_t>(n_layers, 0)), every);
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
  std::string list;
  for (const auto& n : preset_names()) list += (list.empty() ? "" : ", ") + n;
  throw UsageError(fmt::format("unknown model '{}'; presets: {}", name, list));
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
  if (width.num != width.den) s.name = fmt::format("{} @ width {}", m.name, width.str());
  s.validate();
  return s;
}

}  // namespace flopscope
