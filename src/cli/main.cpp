// flopscope: how many FLOPs does training a transformer take, and how long on this GPU?
// The CLI boundary: every error becomes one line on stderr and a non-zero exit
// (2: bad input; 1: a failure while running).
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "backend/cpu/blas_core.hpp"
#include "cli/commands.hpp"
#include "util/error.hpp"
#include "util/signals.hpp"
#include "version.hpp"

namespace {

// OpenBLAS chose its kernels when the library loaded, before main(); when it took its SSE3
// fallback on a CPU with AVX2 or AVX-512 (and OPENBLAS_CORETYPE is unset), start this binary
// again with the same arguments and the variable set (src/backend/cpu/blas_core.hpp). This runs
// before any thread of ours, any OpenBLAS call or any output. The guard variable stops a second
// re-exec; when execv fails, the run goes on with OpenBLAS's kernels and the device line says why.
void reexec_for_blas_core(char** argv) {
  const auto core = flopscope::cpu::blas_core_reexec_target();
  if (!core) return;
  if (::setenv("OPENBLAS_CORETYPE", core->c_str(), 1) != 0 ||
      ::setenv(flopscope::cpu::kBlasCoreGuard, core->c_str(), 1) != 0)
    return flopscope::cpu::note_blas_core_reexec_failure(std::string("setenv: ") + std::strerror(errno));
  ::execv("/proc/self/exe", argv);
  const std::string why = std::string("execv /proc/self/exe: ") + std::strerror(errno);
  // This process keeps the kernels it loaded with: the variable would misreport them.
  ::unsetenv("OPENBLAS_CORETYPE");
  ::unsetenv(flopscope::cpu::kBlasCoreGuard);
  flopscope::cpu::note_blas_core_reexec_failure(why);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace flopscope;
  reexec_for_blas_core(argv);
  // Logs go to stderr; results to stdout or the output file, never mixed.
  spdlog::set_default_logger(spdlog::stderr_color_mt("flopscope"));
  spdlog::set_pattern("[%l] %v");

  CLI::App app{"flopscope: measure what training a transformer costs. Runs one GPT-3-ratio layer forward and "
               "backward, counts and times every op, compares with the analytic formulas and extrapolates to the "
               "whole training run.",
               "flopscope"};
  app.require_subcommand(1);
  app.fallthrough();  // --quiet, --log-level also after the subcommand
  app.set_version_flag("--version", std::string(kVersion) + " (" + kGitCommit + ")");
  cli::GlobalOptions global;
  for (int i = 0; i < argc; ++i) global.command_line += (i ? " " : "") + std::string(argv[i]);
  app.add_option("--log-level", global.log_level, "log level: trace, debug, info, warn, error, off")
      ->capture_default_str();
  app.add_flag("--quiet,-q", global.quiet, "no progress or info logs on stderr");

  const std::map<std::string, cli::Runner> runners = {
      {"estimate", cli::add_estimate(app, global)},
      {"measure", cli::add_measure(app, global)},
      {"report", cli::add_report(app, global)},
      {"sweep", cli::add_sweep(app, global)},
      {"compare", cli::add_compare(app, global)},
      {"plot", cli::add_plot(app, global)},
      {"devices", cli::add_devices(app, global)},
      {"peak", cli::add_peak(app, global)},
      {"predict", cli::add_predict(app, global)},
  };

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "flopscope: error: %s (see 'flopscope --help')\n", e.what());
    return 2;
  }

  install_signal_handlers();
  try {
    // --log-level wins; else FLOPSCOPE_LOG_LEVEL; else info.
    if (app.get_option("--log-level")->count() == 0) {
      if (const char* env = std::getenv("FLOPSCOPE_LOG_LEVEL"); env && *env) global.log_level = env;
    }
    const auto level = spdlog::level::from_str(global.log_level);
    if (level == spdlog::level::off && global.log_level != "off")
      throw UsageError("log level: unknown level '" + global.log_level +
                       "' (--log-level or FLOPSCOPE_LOG_LEVEL); choose trace, debug, info, warn, error, off");
    spdlog::set_level(global.quiet ? spdlog::level::warn : level);
    for (const auto& [name, run] : runners)
      if (app.got_subcommand(name)) return run();
    return 2;
  } catch (const Interrupted& e) {
    std::fprintf(stderr, "flopscope: %s\n", e.what());
    return 128 + e.signal();
  } catch (const UsageError& e) {
    std::fprintf(stderr, "flopscope: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "flopscope: error: %s\n", e.what());
    return 1;
  }
}
