// Fuzzes the number and width expressions of the command line ("2048", "2.5e11", "1/8",
// "0.125"), and the layer built from whatever they accept.
#include <cstddef>
#include <cstdint>
#include <string>

#include "graph/graph.hpp"
#include "model/model.hpp"
#include "util/error.hpp"
#include "util/parse.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace flopscope;
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    (void)parse_count("--n", text);
  } catch (const UsageError&) {
  }
  try {
    (void)parse_nonnegative("--n", text);
  } catch (const UsageError&) {
  }
  try {
    (void)parse_positive_real("--tokens", text);
  } catch (const UsageError&) {
  }
  try {
    const Fraction w = parse_fraction("--width", text);
    const ModelConfig m = scale_width(preset("gpt3-175b"), w);
    (void)build_layer_graph(layer_shape(m, 1, 2048), GraphOptions{});
  } catch (const UsageError&) {
  }
  return 0;
}
