// The model families beyond GPT-3: presets (Llama 2, Llama 3.1, Mistral) and Hugging Face
// config.json files (tests/data/hf), each parameter count N against the count the model's
// framework gives (transformers' sum(p.numel()), tied weights once, as the model cards print
// it); bad configs; the architecture flags' overrides; --width with kv heads; and the
// generalised formulas against their published expressions, written out here.
#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "analytic/formulas.hpp"
#include "model/hf_config.hpp"
#include "model/model.hpp"
#include "util/error.hpp"

#ifndef FLOPSCOPE_SOURCE_DIR
#error "FLOPSCOPE_SOURCE_DIR (the repository root) is set by tests/CMakeLists.txt"
#endif

namespace flopscope {
namespace {

using nlohmann::json;

std::string data(const std::string& name) { return std::string(FLOPSCOPE_SOURCE_DIR) + "/tests/data/hf/" + name; }

::testing::AssertionResult within(double actual, double expected, double tol) {
  const double rel = std::fabs(actual / expected - 1);
  if (rel <= tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << actual << " is " << rel * 100 << "% from " << expected;
}

// The counts the model cards and transformers give (docs/method.md, "Model families").
struct Card {
  const char* name;
  double params;
};
const Card kPresetCards[] = {
    {"llama2-7b", 6738415616.0},    {"llama2-70b", 68976648192.0},    {"llama3.1-8b", 8030261248.0},
    {"llama3.1-70b", 70553706496.0}, {"llama3.1-405b", 405853388800.0}, {"mistral-7b", 7241732096.0},
};

TEST(ModelPresets, ParameterCountIsTheModelCards) {
  for (const auto& c : kPresetCards) {
    SCOPED_TRACE(c.name);
    const ModelConfig m = preset(c.name);
    EXPECT_NO_THROW(m.validate());
    EXPECT_EQ(parameter_count(m), c.params);  // exact: N decides 6ND
  }
}

// The Llama formula written out: embed V d + L (d dq + 2 d dkv + dq d + 3 d d_ff + 2 d) + d + V d.
TEST(ModelPresets, LlamaCountIsTheFormula) {
  for (const auto& c : kPresetCards) {
    SCOPED_TRACE(c.name);
    const ModelConfig m = preset(c.name);
    const double V = static_cast<double>(m.vocab), d = static_cast<double>(m.d_model),
                 L = static_cast<double>(m.n_layers), dq = static_cast<double>(m.n_heads * m.d_head),
                 dkv = static_cast<double>(m.n_kv_heads * m.d_head), ff = static_cast<double>(m.d_ff());
    EXPECT_EQ(parameter_count(m), V * d + L * (d * dq + 2 * d * dkv + dq * d + 3 * d * ff + 2 * d) + d + V * d);
    const ParameterBreakdown p = parameter_breakdown(m);
    EXPECT_EQ(p.positions, 0);  // RoPE: no table
    EXPECT_EQ(p.attention_biases + p.ffn_biases, 0);
    EXPECT_EQ(p.lm_head, V * d);  // untied
    EXPECT_EQ(p.final_norm, d);
  }
}

TEST(ModelPresets, ArchitectureAndTraining) {
  const ModelConfig m = preset("llama3.1-405b");
  EXPECT_EQ(m.n_layers, 126);
  EXPECT_EQ(m.d_model, 16384);
  EXPECT_EQ(m.n_heads, 128);
  EXPECT_EQ(m.d_head, 128);
  EXPECT_EQ(m.kv_heads(), 8);
  EXPECT_EQ(m.d_ff(), 53248);
  EXPECT_EQ(m.vocab, 128256);
  EXPECT_EQ(m.n_ctx, 8192);
  EXPECT_DOUBLE_EQ(m.rope_theta, 5e5);
  EXPECT_DOUBLE_EQ(m.train_tokens, 15.6e12);
  EXPECT_FALSE(m.tied_embeddings);
  EXPECT_EQ(m.norm, NormKind::rmsnorm);
  EXPECT_EQ(m.ffn, FfnKind::swiglu);
  EXPECT_EQ(m.position, PositionKind::rope);
  EXPECT_EQ(preset("llama2-7b").n_ctx, 4096);
  EXPECT_DOUBLE_EQ(preset("llama2-70b").train_tokens, 2e12);
  EXPECT_DOUBLE_EQ(preset("llama3.1-70b").train_tokens, 15e12);
  EXPECT_EQ(preset("mistral-7b").sliding_window, 4096);
  EXPECT_EQ(preset("mistral-7b").kv_heads(), 8);
}

TEST(ModelPresets, UnknownNameListsEveryPreset) {
  try {
    preset("llama4");
    FAIL() << "accepted";
  } catch (const UsageError& e) {
    for (const auto& c : kPresetCards) EXPECT_NE(std::string(e.what()).find(c.name), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("gpt3-175b"), std::string::npos) << e.what();
  }
  EXPECT_EQ(preset_names().size(), 14u);
}

// The Llama 3 paper (Dubey et al. 2024, sec. 3.2.1): 3.8e25 FLOPs, 6 N D with N = 405B, D = 15.6T.
TEST(Formula6nd, Llama31405BIsThePapersFigure) {
  const ModelConfig m = preset("llama3.1-405b");
  const Formula f = formula_6nd(m);
  EXPECT_TRUE(within(f.total_flops, 3.8e25, 0.02));
  EXPECT_EQ(f.flops_per_token, 6 * 405853388800.0);  // total N, embeddings and LM head included
}

struct HfCase {
  const char* file;
  const char* name;
  double params;
};
const HfCase kHfCases[] = {
    {"llama-2-7b.json", "meta-llama/Llama-2-7b-hf", 6738415616.0},
    {"llama-3.1-8b.json", "meta-llama/Llama-3.1-8B", 8030261248.0},
    {"mistral-7b-v0.1.json", "mistralai/Mistral-7B-v0.1", 7241732096.0},
    {"qwen2-0.5b.json", "Qwen/Qwen2-0.5B", 494032768.0},
    {"gpt2.json", "gpt2", 124439808.0},
    {"opt-125m.json", "facebook/opt-125m", 125239296.0},
    // Not a released model: V d + 2 (3 x 256^2 + 256 x 128 + 3 x 256 x 688 + 512) + 256 + V d.
    {"tiny-llama.json", "tiny-llama", 1963264.0},
};

TEST(HfConfig, ParameterCountIsTheFrameworks) {
  for (const auto& c : kHfCases) {
    SCOPED_TRACE(c.file);
    const ModelConfig m = model_from_hf_file(data(c.file));
    EXPECT_EQ(m.name, c.name);  // "_name_or_path", else the file's stem (gpt2.json has none)
    EXPECT_EQ(parameter_count(m), c.params);
  }
}

TEST(HfConfig, FamilyConventions) {
  const ModelConfig gpt2 = model_from_hf_file(data("gpt2.json"));
  EXPECT_EQ(gpt2.d_ff(), 4 * 768);  // n_inner absent = 4 d
  EXPECT_EQ(gpt2.ffn, FfnKind::gelu);
  EXPECT_TRUE(gpt2.tied_embeddings);
  EXPECT_EQ(gpt2.position, PositionKind::learned);
  EXPECT_EQ(gpt2.n_ctx, 1024);
  EXPECT_EQ(parameter_breakdown(gpt2).positions, 1024.0 * 768);

  const ModelConfig opt = model_from_hf_file(data("opt-125m.json"));
  EXPECT_EQ(opt.ffn, FfnKind::relu);
  EXPECT_EQ(opt.n_ctx, 2048);
  EXPECT_EQ(parameter_breakdown(opt).positions, 2050.0 * 768);  // the offset of 2 rows
  EXPECT_TRUE(opt.tied_embeddings);

  const ModelConfig qwen = model_from_hf_file(data("qwen2-0.5b.json"));
  EXPECT_EQ(qwen.biases, (LinearBiases{true, false, false}));
  EXPECT_EQ(parameter_breakdown(qwen).attention_biases, 896.0 + 2 * 128);
  EXPECT_EQ(qwen.kv_heads(), 2);
  EXPECT_EQ(qwen.d_head, 64);
  EXPECT_TRUE(qwen.tied_embeddings);
  EXPECT_EQ(qwen.sliding_window, 0);  // use_sliding_window false

  const ModelConfig mistral = model_from_hf_file(data("mistral-7b-v0.1.json"));
  EXPECT_EQ(mistral.sliding_window, 4096);
  EXPECT_EQ(mistral.n_ctx, 32768);  // max_position_embeddings: --seq overrides

  const ModelConfig llama3 = model_from_hf_file(data("llama-3.1-8b.json"));
  EXPECT_DOUBLE_EQ(llama3.rope_theta, 5e5);
  EXPECT_FALSE(llama3.tied_embeddings);
}

// Minimal configs of each type, each with one change.
json llama_config() {
  return json{{"model_type", "llama"},      {"hidden_size", 256},     {"num_hidden_layers", 2},
              {"num_attention_heads", 4},   {"num_key_value_heads", 2}, {"intermediate_size", 688},
              {"vocab_size", 1000},         {"max_position_embeddings", 128}};
}

// transformers' MistralConfig (src/transformers/models/mistral/configuration_mistral.py):
// sliding_window=4096 and num_key_value_heads=8 when the keys are absent; None (null in the
// file) is full attention and multi-head. LlamaConfig's num_key_value_heads defaults to None.
TEST(HfConfig, MistralsAbsentKeysTakeTransformersDefaults) {
  json j = llama_config();
  j["model_type"] = "mistral";
  j["num_attention_heads"] = 16;
  j.erase("num_key_value_heads");
  ModelConfig m = model_from_hf_config(j, "c.json", "c");
  EXPECT_EQ(m.sliding_window, 4096);
  EXPECT_EQ(m.kv_heads(), 8);
  j["sliding_window"] = nullptr;
  j["num_key_value_heads"] = nullptr;
  m = model_from_hf_config(j, "c.json", "c");
  EXPECT_EQ(m.sliding_window, 0);
  EXPECT_EQ(m.kv_heads(), 16);
  j["sliding_window"] = 1024;
  j["num_key_value_heads"] = 4;
  m = model_from_hf_config(j, "c.json", "c");
  EXPECT_EQ(m.sliding_window, 1024);
  EXPECT_EQ(m.kv_heads(), 4);
  // Llama has no window, and its absent kv heads are multi-head.
  json l = llama_config();
  l["num_attention_heads"] = 16;
  l.erase("num_key_value_heads");
  m = model_from_hf_config(l, "c.json", "c");
  EXPECT_EQ(m.sliding_window, 0);
  EXPECT_EQ(m.kv_heads(), 16);
}

TEST(HfConfig, DefaultsAreTransformers) {
  json j = llama_config();
  j.erase("num_key_value_heads");
  const ModelConfig m = model_from_hf_config(j, "c.json", "c");
  EXPECT_EQ(m.kv_heads(), 4);  // absent = multi-head
  EXPECT_FALSE(m.tied_embeddings);
  EXPECT_EQ(m.biases, (LinearBiases{false, false, false}));
  EXPECT_EQ(m.name, "c");
  j["head_dim"] = 128;  // may differ from hidden_size / heads
  j["attention_bias"] = true;
  j["mlp_bias"] = true;
  j["tie_word_embeddings"] = true;
  const ModelConfig h = model_from_hf_config(j, "c.json", "c");
  EXPECT_EQ(h.d_head, 128);
  EXPECT_EQ(h.q_dim(), 512);
  EXPECT_EQ(h.biases, LinearBiases{});
  EXPECT_TRUE(h.tied_embeddings);
  // Attention weights 256 x 512 (Q) + 2 x 256 x 512 (K, V) + 512 x 256 (O) and their biases.
  EXPECT_EQ(parameter_breakdown(h).attention, 4.0 * 256 * 512);
  EXPECT_EQ(parameter_breakdown(h).attention_biases, 3.0 * 512 + 256);
  EXPECT_EQ(parameter_breakdown(h).ffn_biases, 2.0 * 688 + 256);
}

TEST(HfConfig, BadConfigsNameTheKeyAndTheFile) {
  auto with = [](const char* key, json v) {
    json j = llama_config();
    if (v.is_discarded()) j.erase(key); else j[key] = v;
    return j;
  };
  const json removed = json(json::value_t::discarded);
  const std::vector<std::tuple<const char*, json, const char*>> bad = {
      {"not an object", json::array({1}), "object"},
      {"no model_type", [] { json j = llama_config(); j.erase("model_type"); return j; }(), "model_type"},
      {"unknown model_type", with("model_type", "bert"), "bert"},
      {"model_type not a string", with("model_type", 3), "model_type"},
      {"heads not divisible by kv heads", with("num_key_value_heads", 3), "num_key_value_heads"},
      {"missing hidden_size", with("hidden_size", removed), "hidden_size"},
      {"missing intermediate_size", with("intermediate_size", removed), "intermediate_size"},
      {"a string where a number belongs", with("hidden_size", "4096"), "hidden_size"},
      {"fractional", with("num_hidden_layers", 2.5), "num_hidden_layers"},
      {"negative", with("vocab_size", -1), "vocab_size"},
      {"huge", with("vocab_size", 1e30), "vocab_size"},
      {"a bool where a number belongs", with("rope_theta", true), "rope_theta"},
      {"a number where a bool belongs", with("tie_word_embeddings", 1), "tie_word_embeddings"},
      {"not SwiGLU", with("hidden_act", "gelu"), "hidden_act"},
      {"odd head_dim under RoPE", with("head_dim", 73), "d_head"},
      {"heads do not divide hidden_size", with("num_attention_heads", 3), "num_attention_heads"},
      // 2^24 heads x 2^24 x 2^24 positions: the attention scores overflow 64 bits.
      {"sizes whose product overflows",
       [] {
         json j = llama_config();
         j["hidden_size"] = 16777216;
         j["num_attention_heads"] = 16777216;
         j["num_key_value_heads"] = 1;
         j["max_position_embeddings"] = 16777216;
         return j;
       }(),
       "overflows"},
      {"opt projection", json{{"model_type", "opt"}, {"hidden_size", 1024}, {"num_hidden_layers", 24},
                              {"num_attention_heads", 16}, {"ffn_dim", 4096}, {"vocab_size", 50272},
                              {"max_position_embeddings", 2048}, {"word_embed_proj_dim", 512}},
       "word_embed_proj_dim"},
      {"gpt2 missing n_embd", json{{"model_type", "gpt2"}, {"n_layer", 12}, {"n_head", 12}, {"n_positions", 1024},
                                   {"vocab_size", 50257}},
       "n_embd"},
  };
  for (const auto& [why, j, key] : bad) {
    SCOPED_TRACE(why);
    try {
      model_from_hf_config(j, "bad-config.json", "bad");
      ADD_FAILURE() << "accepted: " << j.dump();
    } catch (const UsageError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("bad-config.json"), std::string::npos) << what;
      EXPECT_NE(what.find(key), std::string::npos) << what;
      EXPECT_EQ(what.find('\n'), std::string::npos) << what;
    }
  }
}

TEST(HfConfig, BadFiles) {
  EXPECT_THROW(model_from_hf_file("/nonexistent-dir/config.json"), UsageError);
  EXPECT_THROW(model_from_hf_file(data("README.md")), UsageError);  // not JSON
}

TEST(ModelOverridesArchitecture, FlagsOverrideTheConfig) {
  const ModelConfig base = model_from_hf_file(data("llama-3.1-8b.json"));
  ModelOverrides o;
  o.n_kv_heads = 32;
  o.d_ff = 11008;
  o.n_ctx = 4096;
  o.biases = parse_biases("--bias", "qkv");
  o.tied_embeddings = true;
  const ModelConfig m = apply_overrides(base, o);
  EXPECT_EQ(m.kv_heads(), 32);
  EXPECT_EQ(m.d_ff(), 11008);
  EXPECT_EQ(m.n_ctx, 4096);
  EXPECT_EQ(m.biases, (LinearBiases{true, false, false}));
  EXPECT_TRUE(m.tied_embeddings);
  EXPECT_NE(m.name.find("(custom)"), std::string::npos) << m.name;
  ModelOverrides d;
  d.d_head = 64;  // keeps d_model
  EXPECT_EQ(apply_overrides(base, d).q_dim(), 32 * 64);
  EXPECT_EQ(apply_overrides(base, d).d_model, 4096);
  ModelOverrides bad;
  bad.n_kv_heads = 5;
  EXPECT_THROW(apply_overrides(base, bad), UsageError);
}

TEST(ModelToJsonArchitecture, RoundTrips) {
  for (const char* name : {"gpt3-175b", "llama3.1-405b", "mistral-7b"}) {
    SCOPED_TRACE(name);
    const ModelConfig m = preset(name);
    const ModelConfig back = model_from_json(model_to_json(m), "result");
    EXPECT_EQ(model_to_json(back), model_to_json(m));
    EXPECT_EQ(parameter_count(back), parameter_count(m));
  }
  const ModelConfig qwen = model_from_hf_file(data("qwen2-0.5b.json"));
  EXPECT_EQ(parameter_count(model_from_json(model_to_json(qwen), "result")), 494032768.0);
  EXPECT_EQ(model_to_json(qwen).at("biases"), "qkv");
  EXPECT_THROW(model_from_json(json{{"base", "llama2-7b"}, {"norm", "batchnorm"}}, "x.json"), UsageError);
  EXPECT_THROW(model_from_json(json{{"base", "llama2-7b"}, {"biases", "qkv+qkv"}}, "x.json"), UsageError);
  EXPECT_THROW(model_from_json(json{{"base", "llama2-7b"}, {"tied_embeddings", "yes"}}, "x.json"), UsageError);
}

TEST(ScaleWidthKvHeads, KeepsTheGroups) {
  const ModelConfig m = scale_width(preset("llama3.1-8b"), Fraction{1, 8});
  EXPECT_EQ(m.n_heads, 4);
  EXPECT_EQ(m.kv_heads(), 1);
  EXPECT_EQ(m.d_head, 128);
  EXPECT_EQ(m.d_model, 512);
  EXPECT_EQ(m.d_ff(), 14336 / 8);
  EXPECT_EQ(m.n_ctx, 8192);
  try {
    scale_width(preset("llama3.1-8b"), Fraction{1, 16});  // 2 heads, half a kv head
    FAIL() << "accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("kv head"), std::string::npos) << e.what();
  }
  // d_ff that the width does not divide: the error names it.
  ModelConfig odd = preset("llama2-7b");
  odd.d_ff_explicit = 11009;
  try {
    scale_width(odd, Fraction{1, 2});
    FAIL() << "accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("d_ff"), std::string::npos) << e.what();
  }
  // d_model != heads x d_head scales by the width.
  ModelConfig wide = model_from_hf_config(
      json{{"model_type", "llama"}, {"hidden_size", 256}, {"num_hidden_layers", 2}, {"num_attention_heads", 4},
           {"head_dim", 128}, {"intermediate_size", 688}, {"vocab_size", 1000}, {"max_position_embeddings", 128}},
      "c.json", "c");
  const ModelConfig half = scale_width(wide, Fraction{1, 2});
  EXPECT_EQ(half.n_heads, 2);
  EXPECT_EQ(half.d_model, 128);
  EXPECT_EQ(half.d_head, 128);
}

// Megatron-LM's padded vocabulary, as its older _vocab_size_with_padding wrote it (a loop).
int64_t padded_by_loop(int64_t vocab, int64_t multiple) {
  int64_t after = vocab;
  while (after % multiple != 0) ++after;
  return after;
}

// Megatron-LM's num_floating_point_operations, written out for a dense transformer, with
// args.padded_vocab_size (--make-vocab-size-divisible-by 128, tp 1).
double megatron_lm_expression(const ModelConfig& m) {
  const double h = static_cast<double>(m.d_model), s = static_cast<double>(m.n_ctx), L = static_cast<double>(m.n_layers),
               qps = static_cast<double>(m.d_head * m.n_heads), kvps = static_cast<double>(m.d_head * m.kv_heads()),
               ffn = static_cast<double>(m.d_ff()), V = static_cast<double>(padded_by_loop(m.vocab, 128));
  const double ffn_factor = m.ffn == FfnKind::swiglu ? 3 : 2;
  const double attn = 3 * 2 * (h * (qps + kvps + kvps) + qps * s / 2 * 2 + qps * h);
  return L * (3 * 2 * h * ffn * ffn_factor + attn) + 3 * 2 * h * V;  // per token (batch x seq divided out)
}

TEST(FormulaMegatron, GeneralisedForEveryFamily) {
  for (const char* name : {"gpt3-175b", "llama2-7b", "llama3.1-405b", "mistral-7b"}) {
    SCOPED_TRACE(name);
    const ModelConfig m = preset(name);
    EXPECT_TRUE(within(formula_megatron_lm(m).flops_per_token, megatron_lm_expression(m), 1e-12));
    // The 2021 form keeps the full square and the unpadded vocabulary: it exceeds Megatron-LM's
    // current count by 6 L s dq, less the padding's 6 d (V' - V).
    const double L = static_cast<double>(m.n_layers), s = static_cast<double>(m.n_ctx),
                 dq = static_cast<double>(m.q_dim()), d = static_cast<double>(m.d_model),
                 pad = static_cast<double>(padded_by_loop(m.vocab, 128) - m.vocab);
    EXPECT_TRUE(within(formula_megatron(m).flops_per_token - formula_megatron_lm(m).flops_per_token,
                       6 * L * s * dq - 6 * d * pad, 1e-9));
  }
}

TEST(FormulaMegatron, LogitsUseMegatronsPaddedVocabulary) {
  // GPT-2's 50257 pads to 50304 (a multiple of 128); x tp 8 to a multiple of 1024, 51200.
  EXPECT_EQ(megatron_padded_vocab(50257, 128), 50304);
  EXPECT_EQ(megatron_padded_vocab(50257, 128 * 8), 51200);
  EXPECT_EQ(megatron_padded_vocab(32000, 128), 32000);
  EXPECT_EQ(megatron_padded_vocab(128256, 128), 128256);
  EXPECT_EQ(megatron_padded_vocab(128256, 128 * 8), padded_by_loop(128256, 1024));
  ModelConfig gpt2 = preset("gpt3-small");  // GPT-2 small's shape and vocabulary
  const double d = static_cast<double>(gpt2.d_model);
  EXPECT_DOUBLE_EQ(formula_megatron_lm(gpt2).flops_per_token - formula_megatron_lm(gpt2, 1).flops_per_token,
                   6 * d * (50304 - 50257));
  EXPECT_DOUBLE_EQ(formula_megatron_lm(gpt2, 1024).flops_per_token - formula_megatron_lm(gpt2, 1).flops_per_token,
                   6 * d * (51200 - 50257));
  EXPECT_NE(formula_megatron_lm(gpt2).title.find("50257 -> 50304"), std::string::npos) << formula_megatron_lm(gpt2).title;
  // A vocabulary already a multiple of 128 is counted as it is.
  const ModelConfig llama = preset("llama2-7b");
  EXPECT_DOUBLE_EQ(formula_megatron_lm(llama).flops_per_token, formula_megatron_lm(llama, 1).flops_per_token);
}

TEST(Formulas, ChinchillaAndSeedOnlyWhereTheyApply) {
  for (const char* name : {"llama2-7b", "llama3.1-405b", "mistral-7b"}) {
    SCOPED_TRACE(name);
    const ModelConfig m = preset(name);
    std::vector<std::string> ids;
    for (const auto& f : all_formulas(m)) {
      ids.push_back(f.id);
      EXPECT_TRUE(within(f.total_flops, f.flops_per_token * m.train_tokens, 1e-12)) << f.id;
    }
    EXPECT_EQ(ids, (std::vector<std::string>{"seed", "6nd", "kaplan", "palm", "megatron", "megatron_recompute",
                                             "megatron_lm", "graph", "graph_model"}));
    const SeedCheck c = seed_check(m);
    EXPECT_FALSE(c.applies);
    EXPECT_NE(c.note.find("GPT-3"), std::string::npos) << c.note;
    EXPECT_NE(c.note.find(name), std::string::npos) << c.note;
  }
  // GPT-2 and OPT have GPT-3's attention and a two-matrix FFN: Chinchilla's count applies.
  EXPECT_TRUE(chinchilla_applies(model_from_hf_file(data("gpt2.json"))));
  EXPECT_TRUE(chinchilla_applies(model_from_hf_file(data("opt-125m.json"))));
  EXPECT_TRUE(seed_check(model_from_hf_file(data("gpt2.json"))).applies);
  EXPECT_FALSE(seed_check(model_from_hf_file(data("opt-125m.json"))).applies);  // ReLU
}

// Kaplan and PaLM with the general N and d_attn = heads x d_head.
TEST(Formulas, KaplanAndPalmGeneralised) {
  const ModelConfig m = preset("llama3.1-8b");
  const double L = 32, d = 4096, s = 8192, dq = 4096, dkv = 1024, ff = 14336;
  const double n_kaplan = L * (d * dq + 2 * d * dkv + dq * d + 3 * d * ff);
  EXPECT_EQ(non_embedding_parameters(m), n_kaplan);
  EXPECT_TRUE(within(formula_kaplan(m).flops_per_token, 6 * n_kaplan + 6 * L * s * dq, 1e-12));
  EXPECT_TRUE(within(formula_palm(m).flops_per_token, 6 * 8030261248.0 + 12 * L * 32 * 128 * s, 1e-12));
}

}  // namespace
}  // namespace flopscope
