// `flopscope devices` and `flopscope peak`: what this machine has, and its measured ceilings.
#include <memory>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "analytic/hardware.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "backend/select.hpp"
#include "cli/commands.hpp"
#include "counters/counters.hpp"
#include "report/table.hpp"
#include "util/error.hpp"
#include "util/atomic_file.hpp"
#include "util/parse.hpp"
#include "version.hpp"

namespace flopscope::cli {

namespace {

// devices and peak have their own small documents; JSON or a table.
void emit_simple(const nlohmann::json& j, const std::string& table_text, const OutputOptions& o) {
  const Format f = parse_format(o.format);
  if (f == Format::json) return write_output(j.dump(2) + "\n", o);
  if (f == Format::csv || f == Format::markdown || f == Format::html)
    throw UsageError("--format: this command writes table or json");
  write_output(table_text, o);
}

// What is true of the hardware counters here: how they are read and what they need. Whether
// this machine grants them shows only when measure asks (permissions, a vGPU or MIG slice,
// another profiler); devices does not open a profiler session.
nlohmann::json counters_note() {
  return {{"api", kCounterApi},
          {"read_by", "`measure --counters auto|required` (one range per op, after the timed runs)"},
          {"needs",
           "compute capability 7.5 or newer and permission to read GPU performance counters (root, or the "
           "driver's NVreg_RestrictProfilingToAdminUsers=0); measure says why when they cannot be read"}};
}

int run_devices(const OutputOptions& out) {
  check_output(out);
  const GpuProbe probe = probe_gpus();
  const nlohmann::json gpus = cuda_devices_json();
  nlohmann::json j = {{"schema", kSchema},
                      {"command", "devices"},
                      {"tool", {{"version", kVersion}, {"git_commit", kGitCommit}}},
                      {"cpu", cpu_info_json()},
                      {"gpus", gpus},
                      {"gpu_probe", probe.count > 0 ? nlohmann::json(nullptr) : nlohmann::json(probe.error)},
                      {"hardware_counters", counters_note()}};
  std::string text = "flopscope devices\n\n";
  const auto& cpu = j.at("cpu");
  text += fmt::format("cpu: {} ({} hardware threads); OpenBLAS {} threads, core {} ({})\n\n",
                      cpu.at("name").get<std::string>(), cpu.at("hardware_threads").get<unsigned>(),
                      cpu.at("blas_threads").get<int>(), cpu.at("blas_core").get<std::string>(),
                      cpu.at("blas_core_note").get<std::string>());
  if (gpus.empty()) {
    text += fmt::format("GPUs: none visible ({})\n", probe.error);
  } else {
    Table t({"#", "<name", "<cc", "SMs", "memory", "free", "bf16", "fp16", "tf32", "fp32", "fp8", "<datasheet"});
    for (const auto& g : gpus) {
      const auto& p = g.at("datasheet_peaks_tflops");
      auto pk = [&](const char* k) { return p.at(k).is_null() ? std::string("n/a") : fmt_sig(p.at(k).get<double>(), 5); };
      t.add_row({std::to_string(g.at("index").get<int>()), g.at("name").get<std::string>(),
                 g.at("compute_capability").get<std::string>(), std::to_string(g.at("sm_count").get<int>()),
                 fmt_bytes(g.at("memory_bytes").get<double>()), fmt_bytes(g.at("memory_free_bytes").get<double>()),
                 pk("bf16"), pk("fp16"), pk("tf32"), pk("fp32"), pk("fp8"),
                 g.at("datasheet").is_null() ? "not in the table (peaks n/a)" : g.at("datasheet").get<std::string>()});
    }
    text += "GPUs (dense peaks in TFLOP/s: datasheet, not measured; `flopscope peak` measures):\n" + t.text();
  }
  text += fmt::format("hardware FLOP counters: {}, read by {}; {}\n", kCounterApi,
                      j.at("hardware_counters").at("read_by").get<std::string>(),
                      j.at("hardware_counters").at("needs").get<std::string>());
  emit_simple(j, text, out);
  return 0;
}

struct PeakArgs {
  OutputOptions out;
  std::string backend = "auto";
  std::string size;  // default per backend
  std::string dtypes;
  std::string gpu = "0";
};

int run_peak(const PeakArgs& a) {
  check_output(a.out);
  const BackendChoice choice = choose_backend(a.backend);
  const bool cpu = choice.kind == "cpu";
  const int64_t n = parse_count("--size", a.size.empty() ? (cpu ? "1024" : "8192") : a.size, 65536);
  std::vector<Precision> dtypes;
  // On a GPU the default includes fp8, skipped (with the reason) where it has no FP8 tensor cores.
  const std::string list = a.dtypes.empty() ? (cpu ? "fp32,fp64" : "bf16,fp16,tf32,fp32,fp8") : a.dtypes;
  for (size_t start = 0; start <= list.size();) {
    const size_t comma = std::min(list.find(',', start), list.size());
    dtypes.push_back(parse_precision(list.substr(start, comma - start)));
    start = comma + 1;
  }
  CudaOptions co;
  co.device = static_cast<int>(parse_nonnegative("--gpu", a.gpu, 1024));
  spdlog::info("peak: {} ({})", choice.kind, choice.reason);
  nlohmann::json gemms = nlohmann::json::array();
  std::unique_ptr<Backend> device;
  for (Precision p : dtypes) {
    std::unique_ptr<Backend> b;
    try {
      b = make_backend(choice, p, co);
    } catch (const UsageError& e) {
      if (!a.dtypes.empty() || p != Precision::fp8) throw;
      spdlog::info("peak: fp8 skipped: {}", e.what());
      continue;
    }
    spdlog::info("peak: timing {}^3 {} GEMM", n, to_string(p));
    nlohmann::json g = b->gemm_ceiling(p, n);
    const nlohmann::json dev = b->device_json();
    const GpuPeaks* table = dev.contains("name") ? gpu_by_device_name(dev.at("name").get<std::string>()) : nullptr;
    const double peak = table ? peak_tflops(*table, to_string(p)).value_or(0.0) : 0.0;
    g["datasheet_tflops"] = peak > 0 ? nlohmann::json(peak) : nlohmann::json(nullptr);
    g["of_datasheet"] = peak > 0 ? nlohmann::json(g.at("flops_per_s").get<double>() / (peak * 1e12)) : nlohmann::json(nullptr);
    gemms.push_back(g);
    if (!device) device = std::move(b);
  }
  const int64_t bytes = cpu ? (int64_t{256} << 20) : (int64_t{2} << 30);
  spdlog::info("peak: timing a {} copy", fmt_bytes(static_cast<double>(bytes)));
  const nlohmann::json bw = device->copy_bandwidth(bytes);
  nlohmann::json j = {{"schema", kSchema},
                      {"command", "peak"},
                      {"tool", {{"version", kVersion}, {"git_commit", kGitCommit}}},
                      {"backend", choice.kind},
                      {"device", device->device_json()},
                      {"gemm", gemms},
                      {"copy", bw}};
  std::string text = fmt::format("flopscope peak: {}\n\n", device->device_line());
  const double unit = cpu ? 1e9 : 1e12;
  Table t({"<dtype", "n", "best ms", cpu ? "GFLOP/s (timed)" : "TFLOP/s (timed)", "datasheet TFLOP/s", "of datasheet"});
  for (const auto& g : gemms) {
    t.add_row({g.at("dtype").get<std::string>(), std::to_string(g.at("n").get<int64_t>()),
               fmt_sig(g.at("ms").get<double>(), 4), fmt_sig(g.at("flops_per_s").get<double>() / unit, 4),
               g.at("datasheet_tflops").is_null() ? "n/a" : fmt_sig(g.at("datasheet_tflops").get<double>(), 5),
               g.at("of_datasheet").is_null() ? "n/a" : fmt_percent(g.at("of_datasheet").get<double>())});
  }
  text += t.text();
  text += fmt::format("\n  copy bandwidth (timed; bytes read + written): {:.4g} GB/s over {}\n",
                      bw.at("bytes_per_s").get<double>() / 1e9, fmt_bytes(static_cast<double>(bytes)));
  text += fmt::format("  sources: {}; {}\n", gemms.at(0).at("source").get<std::string>(), bw.at("source").get<std::string>());
  emit_simple(j, text, a.out);
  return 0;
}

}  // namespace

Runner add_devices(CLI::App& app, const GlobalOptions&) {
  auto out = std::make_shared<OutputOptions>();
  CLI::App* sub = app.add_subcommand(
      "devices", "List the CPU and the visible GPUs: memory, compute capability, SMs and datasheet dense peaks.");
  sub->add_option("--format", out->format, "table or json")->capture_default_str();
  sub->add_option("--output,-o", out->output, "write to this file (atomically) instead of standard output");
  return [out] { return run_devices(*out); };
}

Runner add_peak(CLI::App& app, const GlobalOptions&) {
  auto a = std::make_shared<PeakArgs>();
  CLI::App* sub = app.add_subcommand(
      "peak", "Measure this device's ceilings: the best GEMM throughput on an n^3 product per dtype (cuBLASLt on a "
              "GPU, OpenBLAS on the CPU) and copy bandwidth, beside the datasheet figures.");
  sub->add_option("--backend", a->backend, "auto, cpu or cuda")->capture_default_str();
  sub->add_option("--size", a->size, "n of the n^3 product (default: 8192 on a GPU, 1024 on the CPU)");
  sub->add_option("--dtypes", a->dtypes, "comma-separated (default: bf16,fp16,tf32,fp32 and, with FP8 tensor cores, fp8 on a GPU; fp32,fp64 on the "
                  "CPU)");
  sub->add_option("--gpu", a->gpu, "CUDA device index")->capture_default_str();
  sub->add_option("--format", a->out.format, "table or json")->capture_default_str();
  sub->add_option("--output,-o", a->out.output, "write to this file (atomically) instead of standard output");
  return [a] { return run_peak(*a); };
}

}  // namespace flopscope::cli
