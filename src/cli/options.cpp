#include "cli/options.hpp"

#include <cstdio>

#include <fmt/format.h>

#include "model/fields.hpp"
#include "model/hf_config.hpp"
#include "util/atomic_file.hpp"
#include "util/error.hpp"
#include "util/parse.hpp"

namespace flopscope::cli {

void add_model_options(CLI::App& app, ModelOptions& o) {
  std::string presets;
  for (const auto& p : preset_names()) presets += (presets.empty() ? "" : ", ") + p;
  std::string hf_types;
  for (const auto& t : hf_model_types()) hf_types += (hf_types.empty() ? "" : ", ") + t;
  o.model_option = app.add_option("--model", o.model, "preset (GPT-3: the GPT-3 paper's Table 2.1; Llama 2, Llama 3.1, Mistral and the "
                                                    "mixtures of experts Mixtral, Qwen3, DeepSeek-V3, Llama 4, gpt-oss: their "
                                                    "papers, model cards and configs, docs/method.md): " + presets)
                    ->type_name("NAME")->capture_default_str();
  std::string keys = "name, base";
  for (const auto& f : model_fields()) keys += ", " + std::string(f.key);
  app.add_option("--config", o.config,
                 "model config JSON: {\"base\": preset, ...} or a full model with n_layers, d_model, n_heads "
                 "(keys: " + keys + ")")->type_name("FILE");
  app.add_option("--hf-config", o.hf_config,
                 "a Hugging Face config.json (model_type " + hf_types + "), instead of a preset or a config; n_ctx "
                 "defaults to its max_position_embeddings (gpt2: n_positions), the training tokens to 300e9; the flags "
                 "below override it")->type_name("FILE");
  // One flag per field of the table that has one, in the table's order.
  for (const auto& f : model_fields())
    if (!f.flag.empty())
      app.add_option(std::string(f.flag), o.fields[std::string(f.key)], std::string(f.help))
          ->type_name(std::string(f.type_name));
}

namespace {
ModelOverrides flag_overrides(const ModelOptions& o);
}  // namespace

ModelConfig resolve_model(const ModelOptions& o, const job::Job* job) {
  if (!o.hf_config.empty() && !o.config.empty())
    throw UsageError("--hf-config and --config both give the model; choose one");
  if (!o.hf_config.empty() && o.model_option != nullptr && o.model_option->count() > 0)
    throw UsageError("--hf-config and --model both give the model; choose one");
  if (job) {
    ModelConfig from_job;
    try {
      from_job = apply_overrides(job->base, job->model);
    } catch (const UsageError& e) {
      throw UsageError(fmt::format("{}: {}", job->file, e.what()));
    }
    return apply_overrides(from_job, flag_overrides(o));
  }
  ModelConfig base = !o.hf_config.empty() ? model_from_hf_file(o.hf_config)
                     : o.config.empty()   ? preset(o.model)
                                          : model_from_file(o.config);
  return apply_overrides(base, flag_overrides(o));
}

void add_job_options(CLI::App& app, JobOptions& o) {
  app.add_option("--job", o.file,
                 "your training job as the input: a Megatron-LM launch script or command line (.sh, or any other "
                 "name), a NeMo or Megatron-Bridge YAML recipe (.yaml), a torchtitan TOML (.toml); the model and the "
                 "layout come from it, flags beside it override it, and the output lists where every value came from "
                 "(docs/predict.md, \"Your own job\"). Read as data: nothing in it is run")->type_name("FILE");
  app.add_option("--job-env", o.env,
                 "a variable the job file reads from the environment (it sees no other), repeatable")
      ->type_name("VAR=VALUE");
  app.add_option("--job-ignore", o.ignore,
                 "a key of the job file that flopscope does not know and that does not change the cost (it is then "
                 "listed as ignored instead of stopping the run), repeatable")->type_name("KEY");
}

std::optional<job::Job> read_job_option(const JobOptions& o, const ModelOptions& m) {
  if (o.file.empty()) {
    if (!o.env.empty() || !o.ignore.empty()) throw UsageError("--job-env and --job-ignore need --job FILE");
    return std::nullopt;
  }
  if (!m.hf_config.empty() || !m.config.empty() || (m.model_option != nullptr && m.model_option->count() > 0))
    throw UsageError("--job gives the model; --model, --config and --hf-config cannot come with it (flags such as "
                     "--layers override the job's values)");
  job::ReadOptions ro;
  for (const std::string& kv : o.env) {
    const size_t eq = kv.find('=');
    if (eq == 0 || eq == std::string::npos)
      throw UsageError(fmt::format("--job-env: '{}' is not VAR=VALUE", kv));
    ro.env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  ro.ignore.insert(o.ignore.begin(), o.ignore.end());
  return job::read_job(o.file, ro);
}

job::Flags model_flags(const ModelOptions& o) {
  job::Flags f;
  for (const auto& field : model_fields()) {
    if (field.flag.empty()) continue;
    const auto it = o.fields.find(std::string(field.key));
    if (it == o.fields.end() || it->second.empty()) continue;
    for (const auto& [name_flag, name] : job::model_flag_names())
      if (name_flag == field.flag) f[name] = {name_flag, it->second};
  }
  return f;
}

namespace {

ModelOverrides flag_overrides(const ModelOptions& o) {
  ModelOverrides ov;
  for (const auto& f : model_fields()) {
    const auto it = o.fields.find(std::string(f.key));
    if (it != o.fields.end() && !it->second.empty()) field_from_flag(f, it->second, ov);
  }
  return ov;
}

}  // namespace

void add_layer_options(CLI::App& app, LayerOptions& o, const std::string& width_default,
                       const std::string& precision_default) {
  app.add_option("--width", o.width,
                 "scale the layer at the model's ratios: keep d_head and n_ctx, divide the heads and the kv heads by "
                 "this factor (d_model and d_ff follow), e.g. 1/8 (gpt3-175b: 12 heads, d_model 1536)")->type_name("FRACTION")
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
  app.add_option("--devices", o.devices, "devices for the cluster line of the extrapolation (perfect scaling, and the predict model on its default layout)")
      ->type_name("N")
      ->capture_default_str();
  app.add_option("--gpu", o.gpu, "CUDA device index")->type_name("INDEX")->capture_default_str();
  app.add_option("--input-sets", o.input_sets,
                 "copies of the layer's inputs and weights, each with its own seed; warm-up and timed runs rotate "
                 "through them, so no run reads what the previous one left in cache (memory: one more copy of the "
                 "weights and inputs per set)")
      ->type_name("N")
      ->capture_default_str();
  app.add_option("--gemm-candidates", o.gemm_candidates,
                 "cuda: cuBLASLt algorithms timed per GEMM shape of the layer, the fastest kept (at most " +
                     std::to_string(kMaxGemmCandidates) +
                     "); 1 takes the heuristic's first choice, the same in every run (the ncu cross-check's two "
                     "runs need that); the ceiling keeps its own; the cpu backend accepts it and ignores it")
      ->type_name("N")
      ->capture_default_str();
  app.add_option("--causal-block", o.causal_block,
                 "the causal attention products (scores, context and their gradients) in row blocks of N rows that "
                 "skip the masked blocks above the diagonal: executed FLOPs about (1 + N/seq)/2 of the full square, "
                 "reported as executed (model FLOPs halve the square either way); 0 computes the whole square; auto: " +
                     std::to_string(kCpuCausalBlock) +
                     " on the cpu, 0 on cuda (cuBLASLt's strided batches run the whole square; cuda takes only 0)")
      ->type_name("N|auto")
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
  r.settings.gemm_candidates =
      static_cast<int>(parse_count("--gemm-candidates", o.gemm_candidates, kMaxGemmCandidates));
  r.settings.cuda_graph = o.cuda_graph;
  r.causal_block = o.causal_block == "auto" ? -1 : parse_nonnegative("--causal-block", o.causal_block, INT64_C(1) << 24);
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
