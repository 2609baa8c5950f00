// `flopscope estimate`: every analytic formula side by side, the layer's op table, and the
// seed check. Runs nothing; needs no GPU.
#include <memory>

#include "analytic/formulas.hpp"
#include "analytic/hardware.hpp"
#include "cli/commands.hpp"
#include "util/parse.hpp"

namespace flopscope::cli {

namespace {

struct EstimateArgs {
  ModelOptions model;
  LayerOptions layer;
  OutputOptions out;
  std::string gpu = "h200-sxm";
  std::string gpus = "1024";
  std::string utilization = "0.5";
  std::string dtype = "bf16";
  JobOptions job;
  const CLI::Option* gpus_option = nullptr;
  const CLI::Option* dtype_option = nullptr;
};

int run_estimate(const EstimateArgs& a, const GlobalOptions& global) {
  check_output(a.out);
  // --job: its model, GPU count and precision, under the flags (the layout's own problems do not
  // stop an estimate: the formulas do not depend on it).
  std::optional<job::Job> jb = read_job_option(a.job, a.model);
  std::optional<job::Settled> settled;
  const bool gpus_given = a.gpus_option->count() > 0, dtype_given = a.dtype_option->count() > 0;
  if (jb) {
    job::Flags f = model_flags(a.model);
    if (gpus_given) f["gpus"] = {"--gpus", a.gpus};
    settled = job::settle(*jb, f, parse_count("--gpus", a.gpus, INT64_C(1) << 30), /*layout=*/false);
  }
  const ModelConfig model = resolve_model(a.model, jb ? &*jb : nullptr);
  const Fraction width = parse_fraction("--width", a.layer.width.empty() ? "1" : a.layer.width);
  const ModelConfig layer_model = scale_width(model, width);
  GraphOptions go;
  go.precision = parse_precision(a.layer.precision.empty() ? "bf16" : a.layer.precision);
  go.recompute = a.layer.recompute;
  go.include_head = a.layer.include_head;
  const int64_t batch = parse_count("--batch", a.layer.batch, INT64_C(1) << 20);
  const LayerGraph g = build_layer_graph(layer_shape(layer_model, batch, model.n_ctx, main_layer_kind(layer_model)), go);

  ClusterAssumption c;
  c.gpu = gpu_by_id(a.gpu).id;
  c.gpus = static_cast<double>(parse_count("--gpus", a.gpus, INT64_C(1) << 30));
  if (settled && !gpus_given && settled->layout.gpus) c.gpus = static_cast<double>(*settled->layout.gpus);
  c.utilization = parse_positive_real("--utilization", a.utilization, 1.0);
  c.dtype = std::string(to_string(parse_precision(
      settled && !dtype_given && settled->layout.precision ? *settled->layout.precision : a.dtype)));
  nlohmann::json result = estimate_result(model, layer_model, width.str(), g, c,
                                          settled ? settled->vocab_multiple : kMegatronVocabDivisibleBy);
  result["command_line"] = global.command_line;  // so the result says how it was made
  if (jb) result["job"] = jb->to_json();
  emit(result, a.out);
  return 0;
}

}  // namespace

Runner add_estimate(CLI::App& app, const GlobalOptions& global) {
  auto args = std::make_shared<EstimateArgs>();
  CLI::App* sub = app.add_subcommand(
      "estimate",
      "Every analytic model of the training run side by side (seed, 6nd, kaplan, palm, megatron, chinchilla, graph), "
      "the layer's ops with their FLOPs, and why the seed's 8.7e22 is too low. Runs nothing.");
  add_model_options(*sub, args->model);
  add_layer_options(*sub, args->layer, "1 (the op table shows the full-width layer)", "bf16 (sets the bytes column)");
  add_output_options(*sub, args->out);
  sub->add_option("--gpu", args->gpu, "GPU for the days column: h200-sxm, h100-sxm, a100, v100")->type_name("NAME")->capture_default_str();
  add_job_options(*sub, args->job);
  args->gpus_option = sub->add_option("--gpus", args->gpus, "number of GPUs for the days column (default with --job: the job's)")
                          ->type_name("N")
                          ->capture_default_str();
  sub->add_option("--utilization", args->utilization, "assumed fraction of the datasheet dense peak, in (0, 1]")->type_name("X")
      ->capture_default_str();
  args->dtype_option = sub->add_option("--dtype", args->dtype, "dtype whose datasheet peak the days column uses (default with --job: the job's precision)")
                           ->type_name("DTYPE")
                           ->capture_default_str();
  const GlobalOptions* g = &global;
  return [args, g] { return run_estimate(*args, *g); };
}

}  // namespace flopscope::cli
