// `flopscope estimate`: every analytic formula side by side, the layer's op table, and the
// seed check. Runs nothing; needs no GPU.
#include <memory>

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
};

int run_estimate(const EstimateArgs& a, const GlobalOptions& global) {
  check_output(a.out);
  const ModelConfig model = resolve_model(a.model);
  const Fraction width = parse_fraction("--width", a.layer.width.empty() ? "1" : a.layer.width);
  const ModelConfig layer_model = scale_width(model, width);
  GraphOptions go;
  go.precision = parse_precision(a.layer.precision.empty() ? "bf16" : a.layer.precision);
  go.recompute = a.layer.recompute;
  go.include_head = a.layer.include_head;
  const int64_t batch = parse_count("--batch", a.layer.batch, INT64_C(1) << 20);
  const LayerGraph g = build_layer_graph(layer_shape(layer_model, batch, model.n_ctx), go);

  ClusterAssumption c;
  c.gpu = gpu_by_id(a.gpu).id;
  c.gpus = static_cast<double>(parse_count("--gpus", a.gpus, INT64_C(1) << 30));
  c.utilization = parse_positive_real("--utilization", a.utilization, 1.0);
  c.dtype = std::string(to_string(parse_precision(a.dtype)));
  nlohmann::json result = estimate_result(model, layer_model, width.str(), g, c);
  result["command_line"] = global.command_line;  // so the result says how it was made
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
  sub->add_option("--gpus", args->gpus, "number of GPUs for the days column")->type_name("N")->capture_default_str();
  sub->add_option("--utilization", args->utilization, "assumed fraction of the datasheet dense peak, in (0, 1]")->type_name("X")
      ->capture_default_str();
  sub->add_option("--dtype", args->dtype, "dtype whose datasheet peak the days column uses")->type_name("DTYPE")->capture_default_str();
  const GlobalOptions* g = &global;
  return [args, g] { return run_estimate(*args, *g); };
}

}  // namespace flopscope::cli
