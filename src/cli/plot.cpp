// `flopscope plot RESULT.json --out-dir DIR`: every figure of a saved result as a standalone
// SVG file (the same figures `report --format html` inlines), written atomically.
#include <filesystem>
#include <memory>

#include <fmt/format.h>

#include "cli/commands.hpp"
#include "report/collections.hpp"
#include "report/plots.hpp"
#include "util/atomic_file.hpp"
#include "util/error.hpp"

namespace flopscope::cli {

namespace {

namespace fs = std::filesystem;

struct PlotArgs {
  std::string file;
  std::string out_dir = ".";
  std::string peak;
};

nlohmann::json read_json(const std::string& file) {
  const std::string text = read_file(file);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw UsageError(fmt::format("{}: not valid JSON ({})", file, e.what()));
  }
}

int run_plot(const PlotArgs& a) {
  const nlohmann::json r = read_json(a.file);
  try {
    check_result(r);
  } catch (const UsageError& e) {
    throw UsageError(fmt::format("{}: {}", a.file, e.what()));
  }
  nlohmann::json peak = nullptr;
  if (!a.peak.empty()) {
    peak = read_json(a.peak);
    if (!peak.is_object() || peak.value("command", "") != "peak" || peak.value("schema", "") != kSchema)
      throw UsageError(fmt::format("--peak {}: not a `flopscope peak --format json` result of schema {}", a.peak, kSchema));
  }
  std::vector<Figure> figures;
  try {
    figures = figures_for(r, peak);
  } catch (const nlohmann::json::exception& e) {
    throw UsageError(fmt::format("{}: result is malformed or incomplete: {}", a.file, e.what()));
  }
  if (figures.empty()) throw UsageError(fmt::format("{}: no figures yet (a sweep with no point done)", a.file));
  std::error_code ec;
  fs::create_directories(a.out_dir, ec);
  if (ec) throw UsageError(fmt::format("--out-dir: cannot create '{}': {}", a.out_dir, ec.message()));
  const std::string stem = fs::path(a.file).stem().string();
  std::vector<std::string> paths;
  for (const auto& f : figures) paths.push_back((fs::path(a.out_dir) / fmt::format("{}.{}.svg", stem, f.id)).string());
  for (const auto& p : paths) check_writable(p);
  std::string listing;
  for (size_t i = 0; i < figures.size(); ++i) {
    write_file_atomic(paths[i], figures[i].file);
    listing.append(fmt::format("{}\t{}\n", paths[i], figures[i].title));
  }
  std::fwrite(listing.data(), 1, listing.size(), stdout);
  std::fflush(stdout);
  return 0;
}

}  // namespace

Runner add_plot(CLI::App& app, const GlobalOptions&) {
  auto a = std::make_shared<PlotArgs>();
  CLI::App* sub = app.add_subcommand(
      "plot",
      "Write every figure of a saved result as a standalone SVG file: per-op FLOPs and time share, roofline and the "
      "seed check (estimate, measure), throughput vs width and training time (sweep index), per-op time (compare), the "
      "step's breakdown and MFU against GPU count (predict).");
  sub->add_option("file", a->file, "result JSON: estimate, measure, a sweep's index.json, compare or predict")->required();
  sub->add_option("--out-dir", a->out_dir, "folder for the files, named <file stem>.<figure>.svg")
      ->type_name("DIR")
      ->capture_default_str();
  sub->add_option("--peak", a->peak, "a `flopscope peak --format json` result: its GEMM ceiling and copy bandwidth go "
                                     "into the roofline")
      ->type_name("FILE");
  return [a] { return run_plot(*a); };
}

}  // namespace flopscope::cli
