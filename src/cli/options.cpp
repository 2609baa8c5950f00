#include "cli/options.hpp"

#include <cstdio>

#include <fmt/format.h>

#include "util/atomic_file.hpp"
#include "util/error.hpp"
#include "util/parse.hpp"

namespace flopscope::cli {

void add_model_options(CLI::App& app, ModelOptions& o) {
  std::string presets;
  for (const auto& p : preset_names()) presets += (presets.empty() ? "" : ", ") + p;
  app.add_option("--model", o.model, "GPT-3 preset (GPT-3 paper Table 2.1): " + presets)->type_name("NAME")->capture_default_str();
  app.add_option("--config", o.config,
                 "model config JSON: {\"base\": preset, ...} or a full model with n_layers, d_model, n_heads "
                 "(keys: name, base, n_layers, d_model, n_heads, n_ctx, vocab, ffn_mult, train_tokens, batch_tokens)")->type_name("FILE");
  app.add_option("--layers", o.layers, "number of layers (default: the model's)")->type_name("N");
  app.add_option("--d-model", o.d_model, "model width d_model; d_head = d_model / heads (default: the model's)")->type_name("N");
  app.add_option("--heads", o.heads, "attention heads; must divide d_model (default: the model's)")->type_name("N");
  app.add_option("--seq", o.seq, "sequence length n_ctx (default: the model's, 2048 for GPT-3)")->type_name("N");
  app.add_option("--vocab", o.vocab, "vocabulary size (default: the model's, 50257 for GPT-3)")->type_name("N");
  app.add_option("--ffn-mult", o.ffn_mult, "d_ff = ffn-mult x d_model (default: 4)")->type_name("N");
  app.add_option("--tokens", o.tokens, "training tokens, e.g. 300e9 (default: the model's, 300e9 for GPT-3)")->type_name("X");
}

ModelConfig resolve_model(const ModelOptions& o) {
  ModelConfig base = o.config.empty() ? preset(o.model) : model_from_file(o.config);
  ModelOverrides ov;
  const int64_t kMax = INT64_C(1) << 24;
  if (!o.layers.empty()) ov.n_layers = parse_count("--layers", o.layers, kMax);
  if (!o.d_model.empty()) ov.d_model = parse_count("--d-model", o.d_model, kMax);
  if (!o.heads.empty()) ov.n_heads = parse_count("--heads", o.heads, kMax);
  if (!o.seq.empty()) ov.n_ctx = parse_count("--seq", o.seq, kMax);
  if (!o.vocab.empty()) ov.vocab = parse_count("--vocab", o.vocab, kMax);
  if (!o.ffn_mult.empty()) ov.ffn_mult = parse_count("--ffn-mult", o.ffn_mult, 1024);
  if (!o.tokens.empty()) ov.train_tokens = parse_positive_real("--tokens", o.tokens, 1e21);
  return apply_overrides(base, ov);
}

void add_layer_options(CLI::App& app, LayerOptions& o, const std::string& width_default,
                       const std::string& precision_default) {
  app.add_option("--width", o.width,
                 "scale the layer at GPT-3 ratios: keep d_head, n_ctx and d_ff = 4 d_model, divide the heads by this "
                 "factor, e.g. 1/8 (gpt3-175b: 12 heads, d_model 1536)")->type_name("FRACTION")
      ->default_str(width_default);
  app.add_option("--batch", o.batch, "micro-batch size b (sequences)")->type_name("N")->capture_default_str();
  app.add_option("--precision", o.precision, "data type: fp64, fp32, tf32, fp16, bf16, fp8")->type_name("DTYPE")
      ->default_str(precision_default);
  app.add_flag("--recompute", o.recompute, "re-run the forward inside backward (full activation recompute)");
  app.add_flag("--include-head", o.include_head,
               "add the LM head: final layernorm, logits GEMM against the vocabulary, softmax cross-entropy");
}

void add_run_options(CLI::App& app, RunOptions& o, const std::string& per) {
  app.add_option("--backend", o.backend, "auto (CUDA when a GPU is visible, else the CPU), cpu or cuda")->type_name("NAME")
      ->capture_default_str();
  app.add_option("--warmup", o.warmup, "untimed runs of the whole layer before the timed ones" + per)->type_name("N")
      ->capture_default_str();
  app.add_option("--repeats", o.repeats, "timed runs of the whole layer (median, min, max)" + per)->type_name("N")
      ->capture_default_str();
  app.add_option("--seed", o.seed, "seed of the random inputs and weights")->type_name("N")->capture_default_str();
  app.add_option("--devices", o.devices, "devices for the cluster line of the extrapolation (perfect scaling)")
      ->type_name("N")
      ->capture_default_str();
  app.add_option("--gpu", o.gpu, "CUDA device index")->type_name("INDEX")->capture_default_str();
  app.add_option("--input-sets", o.input_sets,
                 "copies of the layer's inputs and weights, each with its own seed; warm-up and timed runs rotate "
                 "through them, so no run reads what the previous one left in cache (memory: one more copy of the "
                 "weights and inputs per set)")
      ->type_name("N")
      ->capture_default_str();
  app.add_flag("--flush-l2", o.flush_l2,
               "cuda: overwrite a buffer twice the L2's size between timed repeats, so no repeat starts with a warm "
               "cache");
  app.add_flag("--cuda-graph", o.cuda_graph,
               "cuda: record the layer as a CUDA graph (one per input set) and time its replays: no launch gaps "
               "between ops; per-op times come from event nodes inside the graph");
  app.add_flag("--no-ceiling", o.no_ceiling,
               "skip timing the device's GEMM ceiling (8192^3 on a GPU; on the CPU a square near the layer's largest GEMM) used for utilisation" + per);
}

void apply_run_options(const RunOptions& o, PointRequest& r) {
  r.backend = o.backend;
  r.settings.warmup = parse_nonnegative("--warmup", o.warmup, 1000000);
  r.settings.repeats = parse_count("--repeats", o.repeats, 1000000);
  r.settings.seed = static_cast<uint64_t>(parse_nonnegative("--seed", o.seed, INT64_C(1) << 53));
  r.cluster.gpus = static_cast<double>(parse_count("--devices", o.devices, INT64_C(1) << 30));
  parse_nonnegative("--gpu", o.gpu, 1024);
  r.gpu = o.gpu;
  r.input_sets = parse_count("--input-sets", o.input_sets, 64);
  r.settings.flush_l2 = o.flush_l2;
  r.settings.cuda_graph = o.cuda_graph;
  r.no_ceiling = o.no_ceiling;
}

void add_output_options(CLI::App& app, OutputOptions& o) {
  app.add_option("--format", o.format, "output format: table, json, csv (tidy: one value a row), markdown or html (one self-contained page with the figures)")->type_name("FORMAT")
      ->capture_default_str();
  app.add_option("--output,-o", o.output, "write to this file (atomically) instead of standard output")->type_name("FILE");
}

Format check_output(const OutputOptions& o) {
  Format f = parse_format(o.format);
  if (!o.output.empty()) check_writable(o.output);
  return f;
}

void emit(const nlohmann::json& result, const OutputOptions& o) { write_output(render(result, parse_format(o.format)), o); }

void write_output(const std::string& text, const OutputOptions& o) {
  if (o.output.empty()) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
  } else {
    write_file_atomic(o.output, text);
  }
}

}  // namespace flopscope::cli
