// `flopscope measure`: runs the layer graph for real on a backend, verifies it, counts and
// times every op, and extrapolates to the whole training run.
#include <memory>

#include "cli/commands.hpp"
#include "measure/run_point.hpp"
#include "util/parse.hpp"

namespace flopscope::cli {

namespace {

struct MeasureArgs {
  ModelOptions model;
  LayerOptions layer;
  OutputOptions out;
  RunOptions run;
  bool nsight = false;
  std::string counters = "auto";
};

// Parses the options (in the order they are checked), then runs the shared measure path.
int run_measure_cmd(const MeasureArgs& a, const GlobalOptions& global) {
  check_output(a.out);
  PointRequest r;
  r.model = resolve_model(a.model);
  r.batch = parse_count("--batch", a.layer.batch, INT64_C(1) << 20);
  apply_run_options(a.run, r);
  r.width = (a.layer.width.empty() || a.layer.width == "auto") ? Fraction{0, 1} : parse_fraction("--width", a.layer.width);
  r.precision = a.layer.precision;
  r.recompute = a.layer.recompute;
  r.include_head = a.layer.include_head;
  r.nsight = a.nsight;
  r.counters = parse_counter_mode(a.counters);
  r.command_line = global.command_line;
  emit(run_point(r), a.out);
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
                    "auto (cpu: the model's ratios at d_model <= 384 in whole kv-head groups (wider where a mixture of experts needs at least top-k whole experts), 1/32 for gpt3-175b; cuda: the widest that fits)",
                    "fp32 on the cpu, bf16 on a GPU");
  add_output_options(*sub, args->out);
  add_run_options(*sub, args->run, "");
  sub->add_option("--counters", args->counters,
                  "hardware FLOP counters (CUPTI Range Profiler, one range per op, after the timed runs): auto "
                  "(read them when the GPU allows, else say why), required (fail when they cannot be read), off")
      ->type_name("MODE")
      ->capture_default_str();
  sub->add_flag("--nsight", args->nsight,
                "for runs under nsys or ncu: no in-process hardware counters (--counters off); the timed repeats are bracketed by "
                "cudaProfilerStart/Stop and NVTX ranges (scripts/nsys-profile.sh, scripts/ncu-profile.sh)");
  const GlobalOptions* g = &global;
  return [args, g] { return run_measure_cmd(*args, *g); };
}

}  // namespace flopscope::cli
