// `flopscope report FILE.json`: renders a saved result again, in any format, running nothing.
#include <memory>

#include "cli/commands.hpp"
#include "util/atomic_file.hpp"
#include "util/error.hpp"

namespace flopscope::cli {

namespace {

struct ReportArgs {
  std::string file;
  OutputOptions out;
};

int run_report(const ReportArgs& a) {
  check_output(a.out);
  const std::string text = read_file(a.file);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw UsageError(a.file + ": not valid JSON (" + e.what() + ")");
  }
  try {
    emit(j, a.out);
  } catch (const UsageError& e) {
    throw UsageError(a.file + ": " + e.what());
  }
  return 0;
}

}  // namespace

Runner add_report(CLI::App& app, const GlobalOptions&) {
  auto args = std::make_shared<ReportArgs>();
  CLI::App* sub = app.add_subcommand("report", "Render a saved result (JSON from estimate, measure, sweep, compare or predict) again, in any "
                                               "format, without running anything.");
  sub->add_option("file", args->file, "result JSON written with --format json")->required();
  add_output_options(*sub, args->out);
  return [args] { return run_report(*args); };
}

}  // namespace flopscope::cli
