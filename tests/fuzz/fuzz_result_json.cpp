// Fuzzes the result JSON that `report` (and `compare`) read: any document must render in every
// format or be rejected with a UsageError naming what is wrong.
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "report/result.hpp"
#include "util/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace flopscope;
  const std::string text(reinterpret_cast<const char*>(data), size);
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  for (Format f : {Format::table, Format::csv, Format::markdown, Format::json}) {
    try {
      (void)render(j, f);
    } catch (const UsageError&) {
    }
  }
  return 0;
}
