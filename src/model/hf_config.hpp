// A Hugging Face config.json read as a ModelConfig, with each family's conventions
// (docs/method.md, "Hugging Face config.json"): llama, mistral, qwen2, gpt2, opt.
//
// Every key that changes the cost is read, with the default transformers itself applies when
// it has one that is part of the architecture (num_key_value_heads = num_attention_heads,
// head_dim = hidden_size / num_attention_heads, tie_word_embeddings, biases); the sizes
// (layers, widths, heads, vocabulary, positions) have no such default and must be present.
// Keys that do not change the cost (dropout, initialiser range, token ids, ...) are ignored.
// An unknown model_type, a missing size, a value of the wrong type, or an option whose cost is
// not modelled: a UsageError naming the key and the file, never a guess.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "model/model.hpp"

namespace flopscope {

// `origin` names the file in errors; `fallback_name` names the model when the config has no
// "_name_or_path". n_ctx defaults to max_position_embeddings (n_positions for gpt2): a
// command's --seq overrides it. The training tokens are not in a config.json: the default
// (300e9) stays until --tokens sets them.
ModelConfig model_from_hf_config(const nlohmann::json& j, const std::string& origin, const std::string& fallback_name);
// Reads and parses the file; the fallback name is the file's stem (the folder's name for a
// file called config.json).
ModelConfig model_from_hf_file(const std::string& path);

// The model_type values read.
const std::vector<std::string>& hf_model_types();

}  // namespace flopscope
