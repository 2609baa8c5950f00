// `flopscope estimate` (and the shared model options of measure and sweep) on the model
// families beyond GPT-3 (ctest label `cli`): the Llama 3.1 405B preset's 6nd and N, every
// Hugging Face config type, flags over the config, and bad configs as exit 2 with one line.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli_util.hpp"

#ifndef FLOPSCOPE_SOURCE_DIR
#error "FLOPSCOPE_SOURCE_DIR (the repository root) is set by tests/CMakeLists.txt"
#endif

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace cli_test;

std::string hf(const std::string& name) { return std::string(FLOPSCOPE_SOURCE_DIR) + "/tests/data/hf/" + name; }

json estimate_json(const std::vector<std::string>& extra) {
  TempDir cwd;
  std::vector<std::string> args = {"estimate", "--format", "json"};
  args.insert(args.end(), extra.begin(), extra.end());
  const Outcome r = run(args, cwd.path());
  EXPECT_EQ(r.rc, 0) << describe(r);
  EXPECT_EQ(r.err, "");
  return r.rc == 0 ? json::parse(r.out) : json::object();
}

double formula(const json& j, const std::string& id) {
  for (const auto& f : j.at("formulas"))
    if (f.at("id") == id) return f.at("total_flops").get<double>();
  ADD_FAILURE() << "no formula " << id;
  return 0;
}

// The Llama 3 paper's 3.8e25 training FLOPs (6 N D, N = 405B, D = 15.6T) and the exact N.
TEST(CliModels, Llama31405BEstimate) {
  const json j = estimate_json({"--model", "llama3.1-405b"});
  ASSERT_TRUE(j.contains("formulas"));
  EXPECT_TRUE(within(formula(j, "6nd"), 3.8e25, 0.02));
  EXPECT_EQ(j.at("parameters").get<double>(), 405853388800.0);
  const json& p = j.at("parameter_breakdown");
  EXPECT_EQ(p.at("total").get<double>(), 405853388800.0);
  EXPECT_EQ(p.at("embeddings").get<double>(), 128256.0 * 16384);
  EXPECT_EQ(p.at("lm_head").get<double>(), 128256.0 * 16384);
  EXPECT_EQ(p.at("positions").get<double>(), 0);
  const json& m = j.at("model");
  EXPECT_EQ(m.at("n_kv_heads"), 8);
  EXPECT_EQ(m.at("norm"), "rmsnorm");
  EXPECT_EQ(m.at("ffn"), "swiglu");
  EXPECT_EQ(m.at("position"), "rope");
  EXPECT_EQ(m.at("tied_embeddings"), false);
  EXPECT_EQ(j.at("seed_check").at("applies"), false);
  for (const auto& f : j.at("formulas")) EXPECT_NE(f.at("id"), "chinchilla");  // n/a: GQA, SwiGLU

  TempDir cwd;
  const Outcome t = run({"estimate", "--model", "llama3.1-405b"}, cwd.path());
  ASSERT_EQ(t.rc, 0) << describe(t);
  EXPECT_TRUE(contains(t.out, "405,853,388,800")) << t.out;
  EXPECT_TRUE(contains(t.out, "8 kv heads (grouped-query), rmsnorm, swiglu FFN, rope positions")) << t.out;
  EXPECT_TRUE(contains(t.out, "embeddings untied")) << t.out;
  EXPECT_TRUE(contains(t.out, "the seed check is GPT-3's")) << t.out;
  EXPECT_TRUE(contains(t.out, "megatron_lm")) << t.out;
  for (const char* format : {"csv", "markdown", "html"}) {
    SCOPED_TRACE(format);
    const Outcome o = run({"estimate", "--model", "llama3.1-405b", "--format", format}, cwd.path());
    ASSERT_EQ(o.rc, 0) << describe(o);
    EXPECT_TRUE(contains(o.out, "405853388800") || contains(o.out, "405,853,388,800") ||
                contains(o.out, "4.05853388800e+11") || contains(o.out, "405.9B"))
        << o.out.substr(0, 2000);
  }
  const Outcome csv = run({"estimate", "--model", "llama3.1-405b", "--format", "csv"}, cwd.path());
  EXPECT_TRUE(contains(csv.out, "parameters,lm_head")) << csv.out.substr(0, 3000);
}

// The seed check is GPT-3's: a Llama estimate's figures leave its waterfall out, a saved
// result reads back (report) with N and the seed check's note.
TEST(CliModels, PlotAndReportOfALlamaEstimate) {
  TempDir cwd;
  const Outcome e = run({"estimate", "--model", "llama3.1-8b", "--format", "json", "-o", cwd / "l.json"}, cwd.path());
  ASSERT_EQ(e.rc, 0) << describe(e);
  const Outcome p = run({"plot", cwd / "l.json", "--out-dir", cwd / "figs"}, cwd.path());
  ASSERT_EQ(p.rc, 0) << describe(p);
  EXPECT_TRUE(fs::exists(cwd / "figs/l.ops.svg"));
  EXPECT_FALSE(fs::exists(cwd / "figs/l.seed-waterfall.svg"));
  const Outcome r = run({"report", cwd / "l.json"}, cwd.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  EXPECT_TRUE(contains(r.out, "8,030,261,248")) << r.out;
  EXPECT_TRUE(contains(r.out, "the seed check is GPT-3's") && contains(r.out, "n/a for llama3.1-8b")) << r.out;
}

TEST(CliModels, MistralSaysWhichCountsTheWindow) {
  TempDir cwd;
  const Outcome t = run({"estimate", "--model", "mistral-7b"}, cwd.path());
  ASSERT_EQ(t.rc, 0) << describe(t);
  EXPECT_TRUE(contains(t.out, "sliding window 4096: the graph's model FLOPs count the window's area")) << t.out;
  EXPECT_TRUE(contains(t.out, "the closed-form formulas full causal attention")) << t.out;
  EXPECT_TRUE(contains(t.out, "7,241,732,096")) << t.out;
}

TEST(CliModels, HfConfigOfEveryType) {
  const std::vector<std::pair<const char*, double>> cases = {
      {"llama-2-7b.json", 6738415616.0}, {"mistral-7b-v0.1.json", 7241732096.0}, {"qwen2-0.5b.json", 494032768.0},
      {"gpt2.json", 124439808.0},        {"opt-125m.json", 125239296.0},         {"tiny-llama.json", 1963264.0},
  };
  for (const auto& [file, params] : cases) {
    SCOPED_TRACE(file);
    const json j = estimate_json({"--hf-config", hf(file)});
    ASSERT_TRUE(j.contains("parameters"));
    EXPECT_EQ(j.at("parameters").get<double>(), params);
    EXPECT_TRUE(within(formula(j, "6nd"), 6 * params * j.at("model").at("train_tokens").get<double>(), 1e-12));
  }
  // The name comes from _name_or_path, else the file's name.
  EXPECT_EQ(estimate_json({"--hf-config", hf("qwen2-0.5b.json")}).at("model").at("name"), "Qwen/Qwen2-0.5B");
  EXPECT_EQ(estimate_json({"--hf-config", hf("gpt2.json")}).at("model").at("name"), "gpt2");
}

TEST(CliModels, FlagsOverrideTheConfig) {
  const json j = estimate_json({"--hf-config", hf("llama-3.1-8b.json"), "--seq", "8192", "--kv-heads", "32", "--tokens",
                                "15e12", "--tie-embeddings", "on", "--width", "1/8"});
  const json& m = j.at("model");
  EXPECT_EQ(m.at("n_ctx"), 8192);  // the config says 131072
  EXPECT_EQ(m.at("n_kv_heads"), 32);
  EXPECT_EQ(m.at("tied_embeddings"), true);
  EXPECT_EQ(m.at("train_tokens").get<double>(), 15e12);
  const json& L = j.at("layer");
  EXPECT_EQ(L.at("d_model"), 512);  // 4 heads of 128 at width 1/8
  // Back to the card's layout with flags: the preset's N.
  const json back = estimate_json({"--hf-config", hf("llama-3.1-8b.json"), "--kv-heads", "8", "--d-ff", "14336",
                                   "--bias", "none", "--norm", "rmsnorm", "--ffn", "swiglu", "--position", "rope",
                                   "--rope-theta", "5e5", "--d-head", "128"});
  EXPECT_EQ(back.at("parameters").get<double>(), 8030261248.0);
  // A GPT-3 preset turned Llama-shaped by flags counts as a Llama (no final norm: GPT-3's convention).
  const json custom = estimate_json({"--model", "gpt3-small", "--ffn", "swiglu", "--norm", "rmsnorm", "--bias", "none",
                                     "--position", "rope", "--tie-embeddings", "off", "--d-ff", "2048"});
  const double V = 50257, d = 768, L12 = 12;
  EXPECT_EQ(custom.at("parameters").get<double>(), 2 * V * d + L12 * (4 * d * d + 3 * d * 2048 + 2 * d));
}

TEST(CliModels, MeasureAndSweepReadTheHfConfig) {
  TempDir cwd, empty;
  // The tiny config has 4 heads: a width of 1/3 is refused with the config's numbers, which
  // shows the file was read (CliModels.MeasureRunsATinyLlamaFromItsHfConfig runs it).
  expect_usage_error({"measure reads it", {"measure", "--backend", "cpu", "--hf-config", hf("tiny-llama.json"),
                                            "--width", "1/3", "-o", empty / "m.json"}, "4 heads"},
                     cwd.path(), empty.path());
  expect_usage_error({"sweep reads it", {"sweep", "--hf-config", hf("tiny-llama.json"), "--widths", "1/3", "--out-dir",
                                          empty / "sw"}, "4 heads"},
                     cwd.path(), empty.path());
  expect_usage_error({"measure: a bad config", {"measure", "--backend", "cpu", "--hf-config", hf("README.md")},
                      "README.md"},
                     cwd.path(), empty.path());
  expect_usage_error({"sweep: a bad config", {"sweep", "--hf-config", hf("README.md"), "--widths", "1", "--out-dir", empty / "sw"},
                      "README.md"},
                     cwd.path(), empty.path());
}

// The issue's end-to-end check: a tiny Llama-style config.json (grouped-query attention,
// RMSNorm, RoPE, SwiGLU, untied) measured on the CPU, with the LM head and recompute: every op
// verified against fp64, and every op's counted FLOPs equal to its analytic FLOPs.
TEST(CliModels, MeasureRunsATinyLlamaFromItsHfConfig) {
  TempDir cwd;
  const Outcome r = run({"measure", "--backend", "cpu", "--hf-config", hf("tiny-llama.json"), "--include-head",
                         "--recompute", "--repeats", "1", "--warmup", "0", "--format", "json", "-o", "m.json"},
                        cwd.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  const json j = json::parse(slurp(cwd / "m.json"));
  EXPECT_EQ(j.at("model").at("n_kv_heads"), 2);
  EXPECT_EQ(j.at("model").at("ffn"), "swiglu");
  EXPECT_TRUE(j.at("verification").at("failures").empty()) << j.at("verification").at("failures").dump();
  std::set<std::string> names;
  for (const auto& o : j.at("ops")) {
    names.insert(o.at("name").get<std::string>());
    ASSERT_TRUE(o.contains("counted_flops")) << o.at("name");
    EXPECT_EQ(o.at("counted_flops"), o.at("flops")) << o.at("name");
  }
  for (const char* op : {"fwd.attn.rope", "bwd.attn.rope", "fwd.ffn.gate", "fwd.ffn.swiglu", "bwd.ffn.gate.wgrad",
                         "fwd.head.logits"})
    EXPECT_TRUE(names.count(op)) << op;
  for (const char* op : {"fwd.gelu", "fwd.qkv.bias", "fwd.proj.bias", "bwd.ffn.up.bias"}) EXPECT_FALSE(names.count(op)) << op;
}

// Multi-head latent attention end to end: a tiny DeepSeek-V3-style config with every layer dense
// (first_k_dense_replace = num_hidden_layers). estimate builds its graph (N 64,144 by hand, the
// MLA ops in the graph's count); measure runs it on the CPU, verified and counted exactly.
TEST(CliModels, EstimateAndMeasureATinyDenseDeepseek) {
  const json e = estimate_json({"--hf-config", hf("tiny-deepseek-v3-dense.json")});
  EXPECT_EQ(e.at("parameters").get<double>(), 64144.0);
  EXPECT_GT(formula(e, "graph"), 0);
  TempDir cwd;
  const Outcome r = run({"measure", "--backend", "cpu", "--hf-config", hf("tiny-deepseek-v3-dense.json"),
                         "--include-head", "--recompute", "--repeats", "1", "--warmup", "0", "--format", "json", "-o",
                         "m.json"},
                        cwd.path());
  ASSERT_EQ(r.rc, 0) << describe(r);
  const json j = json::parse(slurp(cwd / "m.json"));
  EXPECT_EQ(j.at("model").at("kv_lora_rank"), 16);
  EXPECT_TRUE(j.at("verification").at("passed").get<bool>()) << j.at("verification").at("failures").dump();
  std::set<std::string> names;
  double q_a = 0;
  for (const auto& o : j.at("ops")) {
    names.insert(o.at("name").get<std::string>());
    ASSERT_TRUE(o.contains("counted_flops")) << o.at("name");
    EXPECT_EQ(o.at("counted_flops"), o.at("flops")) << o.at("name");
    if (o.at("name") == "fwd.q_a") q_a = o.at("flops").get<double>();
  }
  // T = 32 tokens (seq 32, batch 1): 2 T d q_lora.
  EXPECT_EQ(q_a, 2.0 * 32 * 64 * 24);
  for (const char* op : {"fwd.q_a.norm", "fwd.q_b", "fwd.kv_a", "fwd.k_rope", "fwd.kv_b", "fwd.attn.rope.k",
                         "fwd.attn.mla_qkv", "bwd.attn.mla_qkv", "rec.kv_b", "bwd.q_a.wgrad"})
    EXPECT_TRUE(names.count(op)) << op;
  EXPECT_FALSE(names.count("fwd.qkv"));
}

// Mixtures of experts end to end. measure runs a tiny Mixtral and a tiny DeepSeek-V3 (MLA, a
// shared expert, a dense first layer: its MoE kind runs) on the CPU: verified, counted exactly,
// each expert's tokens in the JSON and the table; estimate answers for Llama 4 Maverick and
// DeepSeek-V3 with total and active N and the graph's training FLOPs; predict needs --ep right.
TEST(CliModels, MixturesOfExpertsEndToEnd) {
  for (const char* config : {"tiny-mixtral.json", "tiny-deepseek-v3.json"}) {
    TempDir cwd;
    const Outcome r = run({"measure", "--backend", "cpu", "--hf-config", hf(config), "--repeats", "1", "--warmup", "0",
                           "--format", "json", "-o", "m.json"},
                          cwd.path());
    ASSERT_EQ(r.rc, 0) << describe(r);
    const json j = json::parse(slurp(cwd / "m.json"));
    EXPECT_TRUE(j.at("verification").at("passed").get<bool>()) << j.at("verification").at("failures").dump();
    for (const auto& o : j.at("ops")) EXPECT_EQ(o.at("counted_flops"), o.at("flops")) << config << " " << o.at("name");
    const json& x = j.at("experts");
    int64_t sum = 0;
    for (const auto& n : x.at("tokens_per_expert")) sum += n.get<int64_t>();
    EXPECT_EQ(sum, x.at("routed_rows").get<int64_t>()) << config;
    EXPECT_EQ(x.at("routed_rows").get<int64_t>(), j.at("layer").at("tokens").get<int64_t>() * x.at("top_k").get<int64_t>());
    EXPECT_GE(x.at("imbalance_max_over_mean").get<double>(), 1.0);
    EXPECT_EQ(j.at("layer").at("layer_kind"), "moe") << config;
    // Every other kind of layer ran too (tiny DeepSeek-V3's dense first layer), verified, and the
    // extrapolation sums the measured times of both.
    const bool deepseek = std::string(config) == "tiny-deepseek-v3.json";
    ASSERT_EQ(j.at("other_layer_kinds").size(), deepseek ? 1u : 0u) << config;
    for (const auto& k : j.at("other_layer_kinds")) {
      EXPECT_EQ(k.at("layer_kind"), "dense");
      EXPECT_TRUE(k.at("verification_passed").get<bool>());
      EXPECT_EQ(k.at("executed_flops"), k.at("flops"));  // counted = analytic
      EXPECT_GT(k.at("time_ms").at("median").get<double>(), 0);
    }
    for (const auto& k : j.at("extrapolation").at("layer_kinds"))
      EXPECT_EQ(k.at("source").get<std::string>().rfind("measured layer", 0), 0u) << k.dump();
    EXPECT_TRUE(x.at("capacity").is_null()) << config;  // no capacity factor: nothing to drop
    const Outcome table = run({"report", "m.json"}, cwd.path());
    ASSERT_EQ(table.rc, 0) << describe(table);
    EXPECT_NE(table.out.find("tokens per expert (counted, this run's router)"), std::string::npos) << table.out;
  }
  {
    // A capacity factor the cpu backend's router applies (Megatron-LM's capacity, ceil(factor k
    // T / E) an expert, drop policy "probs"): every expert runs at most its capacity, the rows
    // past it dropped, and the counted FLOPs of each grouped GEMM fall below the analytic (a
    // balanced router, nothing dropped) by exactly the dropped rows; the combine's too. Nothing
    // else changes, and the layer still verifies against the fp64 reference, drops included.
    TempDir cwd;
    const Outcome r = run({"measure", "--backend", "cpu", "--hf-config", hf("tiny-mixtral.json"), "--capacity-factor",
                           "1.0", "--repeats", "1", "--warmup", "0", "--format", "json", "-o", "m.json"},
                          cwd.path());
    ASSERT_EQ(r.rc, 0) << describe(r);
    EXPECT_NE(r.err.find("the capacity factor 1 is applied"), std::string::npos) << r.err;
    const json j = json::parse(slurp(cwd / "m.json"));
    EXPECT_TRUE(j.at("verification").at("passed").get<bool>()) << j.at("verification").at("failures").dump();
    const json& x = j.at("experts");
    const json& c = x.at("capacity");
    ASSERT_TRUE(c.is_object());
    EXPECT_TRUE(c.at("applied").get<bool>());
    const double routed = x.at("routed_rows").get<double>();
    const double cap = std::ceil(routed / x.at("experts").get<double>());
    EXPECT_EQ(c.at("rows_per_expert").get<double>(), cap);
    double over = 0, chosen = 0, ran = 0;
    for (const auto& n : x.at("tokens_per_expert")) over += std::max(0.0, n.get<double>() - cap), chosen += n.get<double>();
    for (const auto& n : x.at("rows_run_per_expert")) {
      EXPECT_LE(n.get<double>(), cap);
      ran += n.get<double>();
    }
    EXPECT_EQ(chosen, routed);  // the router's choice, before the drops
    ASSERT_GT(over, 0) << "the tiny config's router overfills no expert: the drops go untested";
    EXPECT_EQ(c.at("rows_dropped").get<double>(), over);
    EXPECT_EQ(c.at("rows_over_capacity").get<double>(), over);
    EXPECT_EQ(x.at("rows_run").get<double>(), routed - over);
    EXPECT_EQ(ran, routed - over);
    const double kept = (routed - over) / routed;
    int grouped = 0;
    for (const auto& o : j.at("ops")) {
      const std::string name = o.at("name"), shape = o.at("shape");
      const double flops = o.at("flops"), counted = o.at("counted_flops");
      if (shape.rfind("grouped(", 0) == 0) {
        ++grouped;
        EXPECT_DOUBLE_EQ(counted, flops * kept) << name;
      } else if (name.find("moe.combine") != std::string::npos) {
        EXPECT_DOUBLE_EQ(counted, flops * kept) << name;  // per kept row: 2 (fwd) or 3 (bwd) per element
      } else if (name.find("moe.dispatch") == std::string::npos && name.find("experts.") == std::string::npos) {
        EXPECT_EQ(counted, flops) << name;  // the rest of the layer runs as without the capacity
      }
    }
    EXPECT_EQ(grouped, 9);  // gate, up, down: forward, dgrad, wgrad
    const Outcome table = run({"report", "m.json"}, cwd.path());
    ASSERT_EQ(table.rc, 0) << describe(table);
    EXPECT_NE(table.out.find("capacity: the capacity factor 1 is applied"), std::string::npos) << table.out;
    EXPECT_NE(table.out.find("rows each expert ran (counted, past its capacity dropped)"), std::string::npos)
        << table.out;
  }
  TempDir here;
  for (const char* model : {"llama4-maverick", "deepseek-v3"}) {
    const Outcome r = run({"estimate", "--model", model}, here.path());
    ASSERT_EQ(r.rc, 0) << describe(r);
    for (const char* says : {"parameters N (analytic", "active parameters per token N_active", "graph ", "fwd.experts.up",
                             "grouped("})
      EXPECT_NE(r.out.find(says), std::string::npos) << model << ": " << says;
    const json e = estimate_json({"--model", model});
    EXPECT_GT(formula(e, "graph"), formula(e, "6nd")) << model;
  }
  const Outcome bad =
      run({"predict", "--model", "mixtral-8x7b", "--gpu", "h100-sxm", "--gpus", "8", "--ep", "3"}, here.path());
  EXPECT_EQ(bad.rc, 2);
  EXPECT_NE(bad.err.find("--ep 3 does not divide the 8 experts"), std::string::npos) << bad.err;
  const Outcome dense =
      run({"predict", "--model", "llama3.1-8b", "--gpu", "h100-sxm", "--gpus", "8", "--ep", "2"}, here.path());
  EXPECT_EQ(dense.rc, 2);
  EXPECT_NE(dense.err.find("is not a mixture of experts"), std::string::npos) << dense.err;
}

TEST(CliModels, BadHfConfigs) {
  TempDir cwd, empty;
  auto file = [&](const std::string& name, const std::string& text) {
    spit(cwd / name, text);
    return cwd / name;
  };
  const std::string base =
      R"("hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 688,
         "vocab_size": 1000, "max_position_embeddings": 128)";
  const std::vector<BadCase> bad = {
      {"kv heads do not divide heads",
       {"estimate", "--hf-config", file("kv.json", R"({"model_type": "llama", "num_key_value_heads": 3, )" + base + "}")},
       "num_key_value_heads"},
      {"missing hidden_size",
       {"estimate", "--hf-config",
        file("nohidden.json", R"({"model_type": "llama", "num_hidden_layers": 2, "num_attention_heads": 4,
              "intermediate_size": 688, "vocab_size": 1000, "max_position_embeddings": 128})")},
       "hidden_size"},
      {"a string where a number belongs",
       {"estimate", "--hf-config",
        file("string.json", R"({"model_type": "llama", "hidden_size": "256", "num_hidden_layers": 2,
              "num_attention_heads": 4, "intermediate_size": 688, "vocab_size": 1000, "max_position_embeddings": 128})")},
       "hidden_size"},
      {"an unknown model_type", {"estimate", "--hf-config", file("bert.json", R"({"model_type": "bert", )" + base + "}")},
       "bert"},
      {"sizes whose product overflows",
       {"estimate", "--hf-config",
        file("overflow.json", R"({"model_type": "llama", "hidden_size": 16777216, "num_hidden_layers": 2,
              "num_attention_heads": 16777216, "num_key_value_heads": 1, "intermediate_size": 688,
              "vocab_size": 1000, "max_position_embeddings": 16777216})")},
       "overflows"},
      {"not JSON", {"estimate", "--hf-config", file("notjson.json", "{\"model_type\": ")}, "notjson.json"},
      {"not an object", {"estimate", "--hf-config", file("array.json", "[1, 2]")}, "array.json"},
      {"no such file", {"estimate", "--hf-config", cwd / "missing.json"}, "missing.json"},
      {"with --config", {"estimate", "--hf-config", hf("gpt2.json"), "--config", hf("gpt2.json")}, "--config"},
      {"with --model", {"estimate", "--hf-config", hf("gpt2.json"), "--model", "gpt3-small"}, "--model"},
      {"seq beyond the learned table", {"estimate", "--hf-config", hf("gpt2.json"), "--seq", "2048"}, "1024"},
      {"bad --norm", {"estimate", "--model", "llama2-7b", "--norm", "batchnorm"}, "--norm"},
      {"bad --bias", {"estimate", "--model", "llama2-7b", "--bias", "qkv+up"}, "--bias"},
      {"bad --tie-embeddings", {"estimate", "--model", "llama2-7b", "--tie-embeddings", "yes"}, "--tie-embeddings"},
      {"kv heads that do not divide", {"estimate", "--model", "llama2-70b", "--kv-heads", "7"}, "kv heads"},
      {"width leaving a fraction of a kv head", {"estimate", "--model", "llama3.1-8b", "--width", "1/16"}, "kv head"},
  };
  for (const auto& c : bad) {
    expect_usage_error(c, cwd.path(), empty.path());
    if (c.args.size() > 2 && c.args[1] == "--hf-config" && c.why != "no such file" && c.why.rfind("with", 0) != 0 &&
        c.why != "seq beyond the learned table") {
      EXPECT_TRUE(contains(run(c.args, cwd.path()).err, c.args[2])) << c.why << ": the error names the file";
    }
  }
}

}  // namespace
