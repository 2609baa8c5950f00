// The subcommands. Each registers its options on the app and returns the function to run.
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

#include "cli/options.hpp"

namespace flopscope::cli {

using Runner = std::function<int()>;

Runner add_estimate(CLI::App& app, const GlobalOptions& g);
Runner add_measure(CLI::App& app, const GlobalOptions& g);
Runner add_report(CLI::App& app, const GlobalOptions& g);
Runner add_devices(CLI::App& app, const GlobalOptions& g);
Runner add_peak(CLI::App& app, const GlobalOptions& g);
Runner add_sweep(CLI::App& app, const GlobalOptions& g);
Runner add_compare(CLI::App& app, const GlobalOptions& g);
Runner add_plot(CLI::App& app, const GlobalOptions& g);
Runner add_predict(CLI::App& app, const GlobalOptions& g);

}  // namespace flopscope::cli
