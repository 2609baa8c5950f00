// The model families beyond GPT-3: presets (Llama 2, Llama 3.1, Mistral) and Hugging Face
// config.json files (tests/data/hf), each parameter count N against the count the model's
// framework gives (transformers' sum(p.numel()), tied weights once, as the model cards print
// it); bad configs; the architecture flags' overrides; --width with kv heads; and the
// generalised formulas against their published expressions, written out here.
#include <cmath>
#include <fstream>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>
#include <fmt/format.h>
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
  EXPECT_EQ(preset_names().size(), 23u);  // 8 GPT-3, 6 dense of today, 9 mixtures of experts
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

// ---- Mixtures of experts and the new attention (issue 18) -------------------------------------

namespace moe {

// Small configs written from the published configs' keys (tests/data/hf/README.md), each total
// and active N counted by hand from transformers' modules (docs/method.md, "Mixtures of experts").
struct MoeCase {
  const char* file;
  double total, active;
  size_t kinds;
};
const MoeCase kMoeCases[] = {
    // 2 x (attention 12288 + norms 128 + 4 experts x 3 x 64 x 96 + router 4 x 64) + 2 V d + d;
    // active: 2 of the 4 experts.
    {"tiny-mixtral.json", 185664, 111936, 1},
    // Layer 0 dense (decoder_sparse_step 2): 12288 + q, k, v biases 128 + 128 + 3 x 64 x 128;
    // layer 1: 4 experts of 3 x 64 x 32, shared 3 x 64 x 48 + its gate 64, router 256.
    {"tiny-qwen2-moe.json", 96640, 84352, 2},
    // head_dim 32: attention 3 x 8192, q_norm + k_norm 64; 8 experts of 3 x 64 x 16, router 512.
    {"tiny-qwen3-moe.json", 112576, 75712, 1},
    // Dense Qwen3, tied: V d + 2 (24576 + 64 + 128 + 3 x 64 x 96) + d.
    {"tiny-qwen3.json", 92864, 92864, 1},
    // MLA: q_a 64 x 32 + 32 + q_b 32 x 4 x 12, kv_a 64 x 20 + 16, kv_b 16 x 4 x 16, o 4 x 8 x 64;
    // layer 0 dense (3 x 64 x 128), layers 1-2: 8 experts of 3 x 64 x 16, 1 shared, router 512.
    {"tiny-deepseek-v3.json", 118096, 81232, 2},
    // No q_lora_rank: Q 64 x 4 x 12; 2 shared experts fused: 3 x 64 x 32.
    {"tiny-deepseek-v2.json", 83808, 65376, 2},
    // Layers 1, 3 MoE (step 2), layer 3 NoPE: dense x 2 (3 x 64 x 96), MoE x 2 (4 experts + 1
    // shared of 3 x 64 x 32, router 256); the unweighted QK-norm has no parameters.
    {"tiny-llama4.json", 161344, 124480, 3},
    // Biases on q, k, v, o (192), sinks 4; 4 experts of 3 x 64 x 32 + biases 2 x 32 + 64, router
    // 4 x 64 + 4; layer 0 sliding (window 8), layer 1 full.
    {"tiny-gpt-oss.json", 88784, 63696, 2},
};

TEST(HfMoe, TotalAndActiveNAreExact) {
  for (const auto& c : kMoeCases) {
    SCOPED_TRACE(c.file);
    const ModelConfig m = model_from_hf_file(data(c.file));
    EXPECT_EQ(parameter_count(m), c.total);
    EXPECT_EQ(active_parameter_count(m), c.active);
    EXPECT_EQ(m.layer_kinds().size(), c.kinds);
    // A result's model reads back with the same counts.
    const ModelConfig back = model_from_json(model_to_json(m), "result");
    EXPECT_EQ(parameter_count(back), c.total);
    EXPECT_EQ(active_parameter_count(back), c.active);
    EXPECT_EQ(model_to_json(back), model_to_json(m));
  }
}

TEST(HfMoe, FamilyConventions) {
  const ModelConfig mixtral = model_from_hf_file(data("tiny-mixtral.json"));
  EXPECT_EQ(mixtral.n_experts, 4);
  EXPECT_EQ(mixtral.top_k, 2);
  EXPECT_EQ(mixtral.d_ff_expert, 96);
  EXPECT_TRUE(mixtral.router_norm_topk);
  EXPECT_EQ(mixtral.router_score, RouterScore::softmax);
  EXPECT_DOUBLE_EQ(mixtral.aux_loss_coef, 0.02);
  EXPECT_DOUBLE_EQ(mixtral.routed_scaling_factor, 1.0);
  const ModelConfig v3 = model_from_hf_file(data("tiny-deepseek-v3.json"));
  EXPECT_TRUE(v3.mla());
  EXPECT_EQ(v3.router_score, RouterScore::sigmoid);
  EXPECT_EQ(v3.n_group, 4);
  EXPECT_EQ(v3.topk_group, 2);
  EXPECT_EQ(v3.first_dense, 1);
  EXPECT_EQ(v3.qk_head_dim(), 12);
  EXPECT_EQ(v3.v_dim(), 8);
  EXPECT_DOUBLE_EQ(v3.routed_scaling_factor, 2.5);  // the file's
  EXPECT_DOUBLE_EQ(model_from_hf_config(json::parse(R"({"model_type": "deepseek_v3", "hidden_size": 64,
    "intermediate_size": 128, "kv_lora_rank": 16, "max_position_embeddings": 64, "moe_intermediate_size": 16,
    "n_routed_experts": 8, "num_attention_heads": 4, "num_experts_per_tok": 2, "num_hidden_layers": 3,
    "qk_nope_head_dim": 8, "qk_rope_head_dim": 4, "v_head_dim": 8, "vocab_size": 100})"), "v3.json", "v3")
                       .routed_scaling_factor,
                   2.5);  // DeepseekV3Config's default
  const auto v3_layers = v3.schedule();
  EXPECT_FALSE(v3_layers[0].moe);
  EXPECT_TRUE(v3_layers[1].moe && v3_layers[2].moe);
  const ModelConfig v2 = model_from_hf_file(data("tiny-deepseek-v2.json"));
  EXPECT_EQ(v2.q_lora_rank, 0);  // null: Q straight from d
  EXPECT_EQ(v2.n_group, 0);      // greedy: no groups
  EXPECT_FALSE(v2.router_norm_topk);
  EXPECT_DOUBLE_EQ(v2.routed_scaling_factor, 1.0);  // DeepseekV2Config's default
  const ModelConfig l4 = model_from_hf_file(data("tiny-llama4.json"));
  EXPECT_TRUE(l4.router_topk_first);
  EXPECT_EQ(l4.qk_norm, QkNorm::l2);
  const auto l4_layers = l4.schedule();
  EXPECT_EQ(to_string(l4_layers[0]), "dense, chunk 16");
  EXPECT_EQ(to_string(l4_layers[1]), "moe, chunk 16");
  EXPECT_EQ(to_string(l4_layers[3]), "moe, NoPE");
  const ModelConfig oss = model_from_hf_file(data("tiny-gpt-oss.json"));
  EXPECT_EQ(to_string(oss.schedule()[0]), "moe, window 8");
  EXPECT_EQ(to_string(oss.schedule()[1]), "moe");
  EXPECT_TRUE(oss.attention_sinks && oss.router_bias && oss.expert_bias);
  EXPECT_EQ(oss.biases, (LinearBiases{true, true, false}));
  const ModelConfig q2 = model_from_hf_file(data("tiny-qwen2-moe.json"));
  EXPECT_TRUE(q2.shared_expert_gate);
  EXPECT_EQ(q2.biases, (LinearBiases{true, false, false}));
  EXPECT_EQ(model_from_hf_file(data("tiny-qwen3.json")).qk_norm, QkNorm::rmsnorm);
}

// 6 N_active D for a mixture of experts; 6 N D (N = N_active) for a dense model.
TEST(HfMoe, SixNdCountsTheActiveParameters) {
  const ModelConfig m = model_from_hf_file(data("tiny-mixtral.json"));
  EXPECT_EQ(formula_6nd(m).flops_per_token, 6 * 111936.0);
  const ModelConfig dense = model_from_hf_file(data("tiny-qwen3.json"));
  EXPECT_EQ(formula_6nd(dense).flops_per_token, 6 * 92864.0);
}

json moe_config() {
  json j = json::parse(R"({"model_type": "mixtral", "hidden_size": 64, "intermediate_size": 96,
    "max_position_embeddings": 64, "num_attention_heads": 4, "num_experts_per_tok": 2, "num_hidden_layers": 2,
    "num_key_value_heads": 2, "num_local_experts": 4, "vocab_size": 100})");
  return j;
}

TEST(HfMoe, BadConfigsAreOneLineNamingTheKey) {
  auto with = [](json j, const char* key, json v) {
    if (v.is_discarded()) j.erase(key); else j[key] = v;
    return j;
  };
  const json removed = json(json::value_t::discarded);
  const json l4 = json::parse(R"({"model_type": "llama4", "text_config": {"hidden_size": 64, "intermediate_size": 32,
    "max_position_embeddings": 64, "num_attention_heads": 4, "num_experts_per_tok": 1, "num_hidden_layers": 4,
    "num_key_value_heads": 2, "num_local_experts": 4, "vocab_size": 100}})");
  json ds = json::parse(R"({"model_type": "deepseek_v3", "hidden_size": 64, "intermediate_size": 128,
    "kv_lora_rank": 16, "max_position_embeddings": 64, "moe_intermediate_size": 16, "n_routed_experts": 8,
    "num_attention_heads": 4, "num_experts_per_tok": 2, "num_hidden_layers": 3, "q_lora_rank": 32,
    "qk_nope_head_dim": 8, "qk_rope_head_dim": 4, "v_head_dim": 8, "vocab_size": 100, "n_group": 4, "topk_group": 2})");
  json oss = json::parse(R"({"model_type": "gpt_oss", "hidden_size": 64, "intermediate_size": 32,
    "max_position_embeddings": 64, "num_attention_heads": 4, "num_experts_per_tok": 2, "num_hidden_layers": 2,
    "num_key_value_heads": 2, "num_local_experts": 4, "vocab_size": 100})");
  const std::vector<std::tuple<const char*, json, const char*>> bad = {
      {"top-k larger than the experts", with(moe_config(), "num_experts_per_tok", 5), "num_experts_per_tok"},
      {"missing the experts", with(moe_config(), "num_local_experts", removed), "num_local_experts"},
      {"missing top-k", with(moe_config(), "num_experts_per_tok", removed), "num_experts_per_tok"},
      {"experts not a number", with(moe_config(), "num_local_experts", "8"), "num_local_experts"},
      {"llama4 without text_config", with(l4, "text_config", removed), "text_config"},
      {"llama4 text_config not an object", with(l4, "text_config", 3), "text_config"},
      {"llama4 missing the experts", [&] { json j = l4; j["text_config"].erase("num_local_experts"); return j; }(),
       "num_local_experts"},
      {"llama4 interleaved without the dense width", [&] { json j = l4; j["text_config"]["interleave_moe_layer_step"] = 2; return j; }(),
       "intermediate_size_mlp"},
      {"llama4 MoE layers by another pattern", [&] { json j = l4; j["text_config"]["moe_layers"] = json::array({0, 1}); return j; }(),
       "moe_layers"},
      {"deepseek missing kv_lora_rank", with(ds, "kv_lora_rank", removed), "kv_lora_rank"},
      {"deepseek groups that do not divide the experts", with(ds, "n_group", 3), "groups"},
      {"deepseek routed scaling factor 0", with(ds, "routed_scaling_factor", 0), "routed scaling factor"},
      {"deepseek-v2 unknown top-k method", with(with(ds, "model_type", "deepseek_v2"), "topk_method", "random"),
       "topk_method"},
      {"gpt-oss layer types by another pattern", with(oss, "layer_types", json::array({"full_attention", "full_attention"})),
       "layer_types"},
      {"qwen3_moe dense layers by list", json::parse(R"({"model_type": "qwen3_moe", "hidden_size": 64,
         "intermediate_size": 128, "max_position_embeddings": 64, "moe_intermediate_size": 16, "num_attention_heads": 4,
         "num_experts": 8, "num_experts_per_tok": 2, "num_hidden_layers": 2, "vocab_size": 100, "mlp_only_layers": [0]})"),
       "mlp_only_layers"},
  };
  for (const auto& [why, j, key] : bad) {
    SCOPED_TRACE(why);
    try {
      model_from_hf_config(j, "bad-moe.json", "bad");
      ADD_FAILURE() << "accepted: " << j.dump();
    } catch (const UsageError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("bad-moe.json"), std::string::npos) << what;
      EXPECT_NE(what.find(key), std::string::npos) << what;
      EXPECT_EQ(what.find('\n'), std::string::npos) << what;
    }
  }
  // The well-formed ones read.
  EXPECT_NO_THROW(model_from_hf_config(moe_config(), "ok.json", "ok"));
  EXPECT_NO_THROW(model_from_hf_config(l4, "ok.json", "ok"));
  EXPECT_NO_THROW(model_from_hf_config(ds, "ok.json", "ok"));
  EXPECT_NO_THROW(model_from_hf_config(oss, "ok.json", "ok"));
}

// The published figures, each within one unit of its last published digit (publishers round,
// or truncate: Qwen3-30B-A3B's 3.35B is published as 3.3B); where the publisher's active count
// leaves out the input embedding table (DeepSeek, OpenAI: checked by the arithmetic,
// docs/method.md), N_active - V d is compared.
struct Published {
  const char* preset;
  const char* file;  // in ../shared/data/hf
  double total, total_unit, active, active_unit;
  bool active_without_embedding;
  const char* source;
};
const Published kPublished[] = {
    {"mixtral-8x7b", "mixtral-8x7b.json", 46.7e9, 0.1e9, 12.9e9, 0.1e9, false, "Mistral AI, Mixtral of experts (2023)"},
    {"mixtral-8x22b", "mixtral-8x22b.json", 141e9, 1e9, 39e9, 1e9, false, "Mistral AI, Mixtral 8x22B (2024)"},
    {"qwen3-30b-a3b", "qwen3-30b-a3b.json", 30.5e9, 0.1e9, 3.3e9, 0.1e9, false, "Qwen3 model card"},
    {"qwen3-235b-a22b", "qwen3-235b-a22b.json", 235e9, 1e9, 22e9, 1e9, false, "Qwen3 model card"},
    {"deepseek-v3", "deepseek-v3.json", 671e9, 1e9, 37e9, 1e9, true, "DeepSeek-V3 Technical Report"},
    {"llama4-maverick", "llama4-maverick.json", 400e9, 1e9, 17e9, 1e9, false, "Meta, Llama 4 model card"},
    {"gpt-oss-20b", "gpt-oss-20b.json", 20.91e9, 0.01e9, 3.61e9, 0.01e9, true, "OpenAI, gpt-oss model card"},
    {"gpt-oss-120b", "gpt-oss-120b.json", 116.83e9, 0.01e9, 5.13e9, 0.01e9, true, "OpenAI, gpt-oss model card"},
};

void expect_published(const ModelConfig& m, const Published& p) {
  const double V_d = static_cast<double>(m.vocab) * static_cast<double>(m.d_model);
  EXPECT_LT(std::fabs(parameter_count(m) - p.total), p.total_unit) << parameter_count(m) << " vs " << p.source;
  const double active = active_parameter_count(m) - (p.active_without_embedding ? V_d : 0);
  EXPECT_LT(std::fabs(active - p.active), p.active_unit) << active << " vs " << p.source;
}

TEST(MoePresets, TotalAndActiveAreThePublishedFigures) {
  for (const auto& p : kPublished) {
    SCOPED_TRACE(p.preset);
    const ModelConfig m = preset(p.preset);
    EXPECT_NO_THROW(m.validate());
    expect_published(m, p);
  }
  // Llama 4 Scout: 17B active; its 109B total includes the vision encoder, which is not
  // modelled: the text model is 107.8B (Llama4ForCausalLM).
  const ModelConfig scout = preset("llama4-scout");
  EXPECT_LE(std::fabs(active_parameter_count(scout) - 17e9), 0.5e9);
  EXPECT_LE(std::fabs(parameter_count(scout) - 107.8e9), 0.05e9);
  EXPECT_DOUBLE_EQ(preset("deepseek-v3").train_tokens, 14.8e12);
  EXPECT_DOUBLE_EQ(scout.train_tokens, 40e12);
  EXPECT_DOUBLE_EQ(preset("llama4-maverick").train_tokens, 22e12);
}

TEST(MoePresets, Schedules) {
  auto kinds = [](const char* name) {
    std::string s;
    for (const auto& k : preset(name).layer_kinds()) s += fmt::format("{}{} x {}", s.empty() ? "" : " + ", k.count, to_string(k.spec));
    return s;
  };
  EXPECT_EQ(kinds("deepseek-v3"), "3 x dense + 58 x moe");
  EXPECT_EQ(kinds("llama4-maverick"), "24 x dense, chunk 8192 + 12 x moe, chunk 8192 + 12 x moe, NoPE");
  EXPECT_EQ(kinds("llama4-scout"), "36 x moe, chunk 8192 + 12 x moe, NoPE");
  EXPECT_EQ(kinds("gpt-oss-120b"), "18 x moe, window 128 + 18 x moe");
  EXPECT_EQ(kinds("mixtral-8x7b"), "32 x moe");
}

// The published config.json files (../shared/data/hf, other people's data: read when present)
// give the presets' counts exactly and the published figures.
TEST(HfMoe, PublishedConfigsAreThePresets) {
  const std::string dir = std::string(FLOPSCOPE_SOURCE_DIR) + "/../shared/data/hf/";
  if (!std::ifstream(dir + "deepseek-v3.json")) GTEST_SKIP() << "no " << dir << " (../shared is absent)";
  for (const auto& p : kPublished) {
    SCOPED_TRACE(p.file);
    const ModelConfig hf = model_from_hf_file(dir + p.file);
    const ModelConfig pre = preset(p.preset);
    EXPECT_EQ(parameter_count(hf), parameter_count(pre));
    EXPECT_EQ(active_parameter_count(hf), active_parameter_count(pre));
    EXPECT_EQ(hf.layer_kinds().size(), pre.layer_kinds().size());
    expect_published(hf, p);
  }
  const ModelConfig scout = model_from_hf_file(dir + "llama4-scout.json");
  EXPECT_EQ(parameter_count(scout), parameter_count(preset("llama4-scout")));
  // Qwen2-57B-A14B (qwen2_moe, a shared expert): 57B total, 14B active (Qwen2 model card);
  // DeepSeek-V2-Lite: 15.7B total, 2.4B active without the embedding (its model card).
  const ModelConfig q2 = model_from_hf_file(dir + "qwen2-57b-a14b.json");
  EXPECT_LE(std::fabs(parameter_count(q2) - 57e9), 0.5e9);
  EXPECT_LE(std::fabs(active_parameter_count(q2) - 14e9), 0.5e9);
  const ModelConfig lite = model_from_hf_file(dir + "deepseek-v2-lite.json");
  EXPECT_LE(std::fabs(parameter_count(lite) - 15.7e9), 0.05e9);
  const double lite_vd = static_cast<double>(lite.vocab) * static_cast<double>(lite.d_model);
  // 2.45B here: within one unit of the published last digit (the card may round down).
  EXPECT_LE(std::fabs(active_parameter_count(lite) - lite_vd - 2.4e9), 0.1e9);
}

}  // namespace moe

}  // namespace
}  // namespace flopscope
