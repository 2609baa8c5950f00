// Fuzzes the model config JSON (`--config FILE`) and the Hugging Face config.json
// (`--hf-config FILE`): parse, build the model, scale it, build its layer graph and every
// analytic formula. Any input may be rejected with a UsageError; a crash,
// a sanitizer report or any other exception is a finding.
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "analytic/formulas.hpp"
#include "model/hf_config.hpp"
#include "model/model.hpp"
#include "util/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace flopscope;
  const std::string text(reinterpret_cast<const char*>(data), size);
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  try {
    const ModelConfig m = model_from_json(j, "fuzz.json");
    // Keep the work bounded: formulas and graphs of any validated model are cheap to build.
    (void)all_formulas(m);
    (void)seed_check(m);
    (void)scale_width(m, Fraction{1, m.n_heads});
  } catch (const UsageError&) {
  }
  try {
    const ModelConfig m = model_from_hf_config(j, "config.json", "fuzz");
    (void)all_formulas(m);
    (void)parameter_breakdown(m);
    (void)seed_check(m);
    (void)scale_width(m, Fraction{1, m.n_heads});
  } catch (const UsageError&) {
  }
  return 0;
}
