// Command-line options shared by the subcommands. Values are kept as text and parsed by
// src/util/parse.hpp so every bad value gets one clear line naming its option.
#pragma once

#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "graph/graph.hpp"
#include "model/model.hpp"
#include "report/result.hpp"

namespace flopscope::cli {

struct ModelOptions {
  std::string model = "gpt3-175b";
  std::string config;  // JSON file
  std::string layers, d_model, heads, seq, vocab, ffn_mult, tokens;
};
void add_model_options(CLI::App& app, ModelOptions& o);
// The full model: preset or config file, then flag overrides.
ModelConfig resolve_model(const ModelOptions& o);

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

struct GlobalOptions {
  std::string log_level = "info";
  bool quiet = false;
  std::string command_line;  // as typed, recorded in results
};

}  // namespace flopscope::cli
