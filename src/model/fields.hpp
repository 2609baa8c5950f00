// The table of a model's settable fields: one row per field of ModelConfig that a config JSON,
// a flag or a Hugging Face config.json can set. Each row names the field once -- its JSON key,
// its type, its flag and help (if it has one), the ModelConfig member it lives in and the
// ModelOverrides member that overrides it -- and model_from_json, model_to_json,
// apply_overrides, the CLI's model options (src/cli/options.cpp) and the Hugging Face reader
// (hf_config.cpp) all work from the rows. A new field is a ModelConfig member, a
// ModelOverrides member and one row here.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "model/model.hpp"

namespace flopscope {

// Where a field of type T lives: its ModelConfig member, the ModelOverrides member that sets
// it, and (counts) a ModelConfig getter model_to_json writes instead of the member when the
// member's 0 means "derived" (n_kv_heads 0 = n_heads, d_ff 0 = ffn_mult x d_model).
template <typename T>
struct FieldSlot {
  T ModelConfig::*config = nullptr;
  std::optional<T> ModelOverrides::*override = nullptr;
  int64_t (ModelConfig::*written)() const = nullptr;
};
using AnyFieldSlot = std::variant<FieldSlot<int64_t>, FieldSlot<double>, FieldSlot<bool>, FieldSlot<NormKind>,
                                  FieldSlot<FfnKind>, FieldSlot<PositionKind>, FieldSlot<LinearBiases>,
                                  FieldSlot<RouterScore>, FieldSlot<QkNorm>>;

struct ModelField {
  std::string_view key;  // JSON key (config files, results)
  AnyFieldSlot slot;
  // Counts: whether 0 is a value (sliding_window 0 = none; n_positions 0 = n_ctx). Counts are
  // whole numbers in [1, 2^24] (or [0, 2^24]) in JSON; validate() checks the rest.
  bool zero_allowed = false;
  std::string_view flag;       // "" = no flag
  std::string_view type_name;  // the flag's value in --help: N, X, KIND, ...
  std::string_view help;
  double flag_max = 0;  // counts and reals: the largest value the flag takes
};

// Every row, in the order --help and the --config key list show them.
const std::vector<ModelField>& model_fields();
// The row of a JSON key; throws Error when there is none (a programming error).
const ModelField& model_field(std::string_view key);

// The field's value as model_to_json writes it.
nlohmann::json field_to_json(const ModelField& f, const ModelConfig& m);
// A JSON value into the overrides; UsageError "<origin>: '<key>' ..." when it has the wrong type
// or range.
void field_from_json(const ModelField& f, const nlohmann::json& v, const std::string& origin, ModelOverrides& o);
// A flag's text into the overrides; UsageError naming the flag when it is not a value.
void field_from_flag(const ModelField& f, const std::string& text, ModelOverrides& o);
// Copies the override into the config when it is set; returns whether it was.
bool field_apply(const ModelField& f, const ModelOverrides& o, ModelConfig& m);

}  // namespace flopscope
