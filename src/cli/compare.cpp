// `flopscope compare A.json B.json [...]`: saved results side by side, per op and in total,
// with each one's ratio to the first (H100 vs H200, bf16 vs fp8, width 1/8 vs full).
#include <filesystem>
#include <memory>

#include <fmt/format.h>

#include "cli/commands.hpp"
#include "report/collections.hpp"
#include "report/render_predict.hpp"
#include "util/atomic_file.hpp"
#include "util/error.hpp"

namespace flopscope::cli {

namespace {

struct CompareArgs {
  std::vector<std::string> files;
  std::string labels;
  OutputOptions out;
};

// A result file, parsed and checked: any problem is one line naming the file.
nlohmann::json read_result(const std::string& file) {
  const std::string text = read_file(file);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw UsageError(fmt::format("{}: not valid JSON ({})", file, e.what()));
  }
  try {
    check_result(j);
  } catch (const UsageError& e) {
    throw UsageError(fmt::format("{}: {}", file, e.what()));
  }
  const auto cmd = j.at("command").get<std::string>();
  if (cmd == "predict" && j.value("kind", "") != "prediction")
    throw UsageError(fmt::format("{}: compare reads predictions, not a predict --validate result", file));
  if (cmd != "estimate" && cmd != "measure" && cmd != "predict")
    throw UsageError(fmt::format("{}: compare reads estimate, measure and predict results, not a {} result{}", file, cmd,
                                 cmd == "sweep" ? " (compare its points/*.json files)" : ""));
  // A result that its own report cannot render (a field removed or edited into the wrong
  // type) is refused here, naming the file, rather than compared with blanks.
  try {
    render(j, Format::table);
  } catch (const UsageError& e) {
    throw UsageError(fmt::format("{}: {}", file, e.what()));
  }
  return j;
}

int run_compare(const CompareArgs& a) {
  check_output(a.out);
  if (a.files.size() < 2) throw UsageError("compare: give two result files or more (the first is the baseline)");
  std::vector<std::string> labels;
  if (!a.labels.empty()) {
    size_t start = 0;
    while (true) {
      const size_t comma = a.labels.find(',', start);
      labels.push_back(a.labels.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
      if (labels.back().empty()) throw UsageError(fmt::format("--labels: empty label in '{}'", a.labels));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    if (labels.size() != a.files.size())
      throw UsageError(fmt::format("--labels: {} labels for {} files", labels.size(), a.files.size()));
  } else {
    // The file's stem, or its path where two stems are the same.
    for (const auto& f : a.files) labels.push_back(std::filesystem::path(f).stem().string());
    for (size_t i = 0; i < labels.size(); ++i)
      for (size_t j = 0; j < labels.size(); ++j)
        if (i != j && labels[i] == labels[j]) labels[i] = a.files[i];
  }
  std::vector<CompareInput> inputs;
  for (size_t i = 0; i < a.files.size(); ++i) inputs.push_back({labels[i], a.files[i], read_result(a.files[i])});
  // Predictions are compared with predictions only (their figures are a step's, not a layer's).
  size_t predictions = 0;
  for (const auto& in : inputs) predictions += in.result.at("command") == "predict";
  if (predictions > 0 && predictions < inputs.size())
    throw UsageError("compare: give predictions only, or estimate and measure results only, not a mix");
  if (predictions > 0) {
    emit(compare_predictions(inputs), a.out);
    return 0;
  }
  inputs.clear();
  for (size_t i = 0; i < a.files.size(); ++i) {
    inputs.push_back({labels[i], a.files[i], read_result(a.files[i])});
    // Each file compared with itself first, so a missing or mistyped field names its file.
    try {
      compare_result({inputs.back(), inputs.back()});
    } catch (const nlohmann::json::exception& e) {
      throw UsageError(fmt::format("{}: result is malformed or incomplete: {}", a.files[i], e.what()));
    }
  }
  emit(compare_result(inputs), a.out);
  return 0;
}

}  // namespace

Runner add_compare(CLI::App& app, const GlobalOptions&) {
  auto a = std::make_shared<CompareArgs>();
  CLI::App* sub = app.add_subcommand(
      "compare",
      "Put saved results (JSON from estimate or measure) side by side, per op and in total, with each one's ratio to "
      "the first: e.g. H100 vs H200, bf16 vs fp8, width 1/8 vs full. Predictions (JSON from predict) are compared "
      "with predictions: step time, throughput, MFU, memory and the step's breakdown.");
  sub->add_option("files", a->files, "two result JSON files or more (estimate and measure, or predict); the first is the baseline")->required();
  sub->add_option("--labels", a->labels, "comma-separated names for the files (default: each file's name)")
      ->type_name("LIST");
  add_output_options(*sub, a->out);
  return [a] { return run_compare(*a); };
}

}  // namespace flopscope::cli
