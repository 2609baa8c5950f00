// Command-line options shared by the subcommands. Values are kept as text and parsed by
// src/util/parse.hpp so every bad value gets one clear line naming its option.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "graph/graph.hpp"
#include "job/job.hpp"
#include "measure/run_point.hpp"
#include "model/model.hpp"
#include "report/result.hpp"

namespace flopscope::cli {

struct ModelOptions {
  std::string model = "gpt3-175b";
  std::string config;     // JSON file
  std::string hf_config;  // Hugging Face config.json
  // The text of each field's flag (src/model/fields.hpp), by the field's JSON key; absent = the model's.
  std::map<std::string, std::string> fields;
  const CLI::Option* model_option = nullptr;  // whether --model was given (it excludes --hf-config)
};
void add_model_options(CLI::App& app, ModelOptions& o);
// The full model: the job's (when given), or a preset, config file or Hugging Face config;
// then flag overrides.
ModelConfig resolve_model(const ModelOptions& o, const job::Job* job = nullptr);

// --job FILE: a Megatron-LM launch script, a NeMo / Megatron-Bridge YAML or a torchtitan TOML
// (src/job); --job-env VAR=VALUE, the only environment it sees; --job-ignore KEY.
struct JobOptions {
  std::string file;
  std::vector<std::string> env;
  std::vector<std::string> ignore;
};
void add_job_options(CLI::App& app, JobOptions& o);
// Reads the job (nullopt without --job); it excludes --model, --config and --hf-config.
std::optional<job::Job> read_job_option(const JobOptions& o, const ModelOptions& m);
// The model flags given, by flopscope value name (job::settle records them as from the flag).
job::Flags model_flags(const ModelOptions& o);

struct LayerOptions {
  std::string width;  // "" = the command's default
  std::string batch = "1";
  std::string precision;  // "" = the command's default
  bool recompute = false;
  bool include_head = false;
};
void add_layer_options(CLI::App& app, LayerOptions& o, const std::string& width_default,
                       const std::string& precision_default);

struct OutputOptions {
  std::string format = "table";
  std::string output;  // "" = stdout
};
void add_output_options(CLI::App& app, OutputOptions& o);
// Checks the format and that the output path can be written (before any long run).
Format check_output(const OutputOptions& o);
// Renders and writes (atomically to a file, or to stdout).
void emit(const nlohmann::json& result, const OutputOptions& o);
// Writes text to stdout, or atomically to the --output file.
void write_output(const std::string& text, const OutputOptions& o);

// How `measure` and `sweep` run a layer (timing, device, rotation): shared flags.
struct RunOptions {
  std::string backend = "auto";
  std::string warmup = "1";
  std::string repeats = "3";
  std::string seed = "1";
  std::string devices = "1024";
  std::string gpu = "0";
  std::string input_sets = "1";
  std::string gemm_candidates = std::to_string(kDefaultGemmCandidates);
  std::string causal_block = "auto";
  bool flush_l2 = false;
  bool cuda_graph = false;
  bool no_ceiling = false;
};
// `per` ("" or ", per point") ends the help of the options that apply per run.
void add_run_options(CLI::App& app, RunOptions& o, const std::string& per);
// Parses them into r (each bad value: one line naming its option).
void apply_run_options(const RunOptions& o, PointRequest& r);

struct GlobalOptions {
  std::string log_level = "info";
  bool quiet = false;
  std::string command_line;  // as typed, recorded in results
};

}  // namespace flopscope::cli
