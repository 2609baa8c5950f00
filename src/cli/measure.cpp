// `flopscope measure`: runs the layer graph for real on a backend, verifies it, counts and
// times every op, and extrapolates to the whole training run.
#include <memory>

#include <spdlog/spdlog.h>

#include "backend/preflight.hpp"
#include "backend/select.hpp"
#include "cli/commands.hpp"
#include "measure/measure.hpp"
#include "measure/result.hpp"
#include "util/error.hpp"
#include "util/parse.hpp"

namespace flopscope::cli {

namespace {

// The CPU's default layer: GPT-3 ratios at d_model <= 384 (gpt3-175b: 3 heads, width 1/32),
// which runs forward and backward in well under a second on two cores.
inline constexpr int64_t kCpuAutoDModel = 384;

struct MeasureArgs {
  ModelOptions model;
  LayerOptions layer;
  OutputOptions out;
  std::string backend = "auto";
  std::string warmup = "1";
  std::string repeats = "3";
  std::string seed = "1";
  std::string devices = "1024";
  bool flush_l2 = false;
  bool nsight = false;
  bool no_ceiling = false;
  std::string gpu = "0";
};

// --width auto: on the CPU, GPT-3 ratios at d_model <= 384; on a GPU, the widest layer that
// fits in free memory (the full GPT-3 175B layer on an H200).
Fraction auto_width(const ModelConfig& m, const BackendChoice& choice, Backend& backend, int64_t batch,
                    const GraphOptions& go) {
  if (choice.kind == "cpu") {
    const int64_t heads = std::clamp<int64_t>(kCpuAutoDModel / m.d_head, 1, m.n_heads);
    return Fraction{heads, m.n_heads};
  }
  const Fraction w = widest_fitting(m, batch, m.n_ctx, go, backend.available_bytes() * Preflight{}.usable_fraction);
  if (w.num == 0) throw UsageError("not even one head of the layer fits in this GPU's free memory; use a shorter --seq");
  return w;
}

int run_measure_cmd(const MeasureArgs& a, const GlobalOptions& global) {
  check_output(a.out);
  const ModelConfig model = resolve_model(a.model);
  const int64_t batch = parse_count("--batch", a.layer.batch, INT64_C(1) << 20);
  MeasureSettings settings;
  settings.warmup = parse_nonnegative("--warmup", a.warmup, 1000000);
  settings.repeats = parse_count("--repeats", a.repeats, 1000000);
  settings.seed = static_cast<uint64_t>(parse_nonnegative("--seed", a.seed, INT64_C(1) << 53));
  ClusterAssumption cluster;
  cluster.gpus = static_cast<double>(parse_count("--devices", a.devices, INT64_C(1) << 30));
  const Fraction requested_width =
      (a.layer.width.empty() || a.layer.width == "auto") ? Fraction{0, 1} : parse_fraction("--width", a.layer.width);
  if (requested_width.num > 0) scale_width(model, requested_width);  // reject bad widths before probing devices

  const BackendChoice choice = choose_backend(a.backend);
  spdlog::info("backend: {} ({})", choice.kind, choice.reason);
  GraphOptions go;
  go.precision = parse_precision(a.layer.precision.empty() ? (choice.kind == "cpu" ? "fp32" : "bf16") : a.layer.precision);
  go.recompute = a.layer.recompute;
  go.include_head = a.layer.include_head;
  CudaOptions cuda;
  cuda.device = static_cast<int>(parse_nonnegative("--gpu", a.gpu, 1024));
  cuda.flush_l2 = a.flush_l2;
  std::unique_ptr<Backend> backend = make_backend(choice, go.precision, cuda);
  spdlog::info("device: {}", backend->device_line());

  const Fraction width = requested_width.num > 0 ? requested_width : auto_width(model, choice, *backend, batch, go);
  const ModelConfig layer_model = scale_width(model, width);
  const Preflight pf = preflight(model, width, batch, model.n_ctx, go, backend->available_bytes());
  if (!pf.fits) throw UsageError(pf.message);
  const LayerGraph g = build_layer_graph(layer_shape(layer_model, batch, model.n_ctx), go);
  spdlog::info("layer: {} (d_model {}, {} heads x {}), batch {}, seq {}, {}; tensors {:.3g} GiB of {:.3g} GiB "
               "available",
               layer_model.name, layer_model.d_model, layer_model.n_heads, layer_model.d_head, batch, model.n_ctx,
               to_string(go.precision), pf.required_bytes / (1 << 30), pf.available_bytes / (1 << 30));

  // The ceiling this run's utilisation is measured against: the best GEMM on this device.
  nlohmann::json ceiling = nullptr;
  if (!a.no_ceiling) {
    ceiling = backend->gemm_ceiling(go.precision, choice.kind == "cpu" ? 1024 : 8192);
    spdlog::info("ceiling: {:.4g} TFLOP/s ({})", ceiling.at("flops_per_s").get<double>() / 1e12,
                 ceiling.at("source").get<std::string>());
  }
  const MeasureRun run = run_measure(*backend, g, settings);
  MeasureContext ctx{model,   layer_model, width.str(),          g,         choice, *backend, pf, settings, run,
                     cluster, ceiling,     global.command_line, a.nsight};
  emit(measure_result(ctx), a.out);
  return 0;
}

}  // namespace

Runner add_measure(CLI::App& app, const GlobalOptions& global) {
  auto args = std::make_shared<MeasureArgs>();
  CLI::App* sub = app.add_subcommand(
      "measure",
      "Run one layer forward and backward for real (cuBLASLt and kernels/ on a GPU, OpenBLAS on the CPU), verify it, "
      "count and time every op, "
      "compare with the analytic FLOPs and extrapolate to the whole training run.");
  add_model_options(*sub, args->model);
  add_layer_options(*sub, args->layer,
                    "auto (cpu: GPT-3 ratios at d_model <= 384, 1/32 for gpt3-175b; cuda: the widest that fits)",
                    "fp32 on the cpu, bf16 on a GPU");
  add_output_options(*sub, args->out);
  sub->add_option("--backend", args->backend, "auto (CUDA when a GPU is visible, else the CPU), cpu or cuda")->type_name("NAME")
      ->capture_default_str();
  sub->add_option("--warmup", args->warmup, "untimed runs of the whole layer before the timed ones")->type_name("N")
      ->capture_default_str();
  sub->add_option("--repeats", args->repeats, "timed runs of the whole layer (median, min, max)")->type_name("N")
      ->capture_default_str();
  sub->add_option("--seed", args->seed, "seed of the random inputs and weights")->type_name("N")->capture_default_str();
  sub->add_option("--devices", args->devices, "devices for the cluster line of the extrapolation (perfect scaling)")->type_name("N")
      ->capture_default_str();
  sub->add_option("--gpu", args->gpu, "CUDA device index")->type_name("INDEX")->capture_default_str();
  sub->add_flag("--flush-l2", args->flush_l2,
                "cuda: overwrite a buffer twice the L2's size between timed repeats, so no repeat starts with a warm "
                "cache");
  sub->add_flag("--nsight", args->nsight,
                "for runs under nsys or ncu: no in-process hardware counters; the timed repeats are bracketed by "
                "cudaProfilerStart/Stop and NVTX ranges (scripts/nsys-profile.sh, scripts/ncu-profile.sh)");
  sub->add_flag("--no-ceiling", args->no_ceiling,
                "skip timing the device's GEMM ceiling (8192^3 on a GPU, 1024^3 on the CPU) used for utilisation");
  const GlobalOptions* g = &global;
  return [args, g] { return run_measure_cmd(*args, *g); };
}

}  // namespace flopscope::cli
