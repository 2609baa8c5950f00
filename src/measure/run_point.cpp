#include "measure/run_point.hpp"

#include <algorithm>
#include <memory>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "backend/preflight.hpp"
#include "backend/select.hpp"
#include "counters/counters.hpp"
#include "measure/ceiling.hpp"
#include "measure/result.hpp"
#include "util/error.hpp"

namespace flopscope {

namespace {

// The CPU's default layer: GPT-3 ratios at d_model <= 384 (gpt3-175b: 3 heads, width 1/32),
// which runs forward and backward in well under a second on two cores.
inline constexpr int64_t kCpuAutoDModel = 384;

// --width auto: on the CPU, GPT-3 ratios at d_model <= 384; on a GPU, the widest layer that
// fits in free memory (the full GPT-3 175B layer on an H200).
Fraction auto_width(const ModelConfig& m, const BackendChoice& choice, Backend& backend, int64_t batch,
                    const GraphOptions& go) {
  if (choice.kind == "cpu") {
    // Whole groups of query heads per kv head, so the kv heads stay whole (grouped-query
    // attention; a group is one head for multi-head attention): llama3.1-8b gets one group of 4.
    const int64_t group = m.n_heads / m.kv_heads();
    int64_t heads = std::clamp<int64_t>(kCpuAutoDModel / m.d_head / group, 1, m.kv_heads()) * group;
    // A mixture of experts keeps whole experts, at least top-k of them (scale_width): the
    // narrowest width from there up that does.
    for (; heads < m.n_heads; heads += group) {
      try {
        scale_width(m, Fraction{heads, m.n_heads});
        break;
      } catch (const UsageError&) {
      }
    }
    return Fraction{heads, m.n_heads};
  }
  const Fraction w = widest_fitting(m, batch, m.n_ctx, go, backend.available_bytes() * Preflight{}.usable_fraction);
  if (w.num == 0) throw UsageError("not even one head of the layer fits in this GPU's free memory; use a shorter --seq");
  return w;
}

}  // namespace

void check_backend_settings(const PointRequest& r, const BackendChoice& choice) {
  if (r.settings.cuda_graph && choice.kind != "cuda")
    throw UsageError(fmt::format("--cuda-graph records the layer as a CUDA graph, which needs --backend cuda; this run "
                                 "uses the {} backend ({})",
                                 choice.kind, choice.reason));
  if (r.causal_block > 0 && choice.kind != "cpu")
    throw UsageError(fmt::format("--causal-block {}: the {} backend runs the attention products as whole strided "
                                 "batches; use --causal-block 0 or auto there (or --backend cpu)",
                                 r.causal_block, choice.kind));
  if (r.settings.flush_l2 && choice.kind != "cuda")
    spdlog::warn("--flush-l2 applies to the cuda backend; the {} backend ignores it", choice.kind);
}

nlohmann::json run_point(const PointRequest& r) {
  const ModelConfig& model = r.model;
  const int64_t batch = r.batch;
  if (r.width.num > 0) scale_width(model, r.width);  // reject bad widths before probing devices

  const BackendChoice choice = choose_backend(r.backend);
  spdlog::info("backend: {} ({})", choice.kind, choice.reason);
  GraphOptions go;
  go.precision = parse_precision(r.precision.empty() ? (choice.kind == "cpu" ? "fp32" : "bf16") : r.precision);
  go.recompute = r.recompute;
  go.include_head = r.include_head;
  go.input_sets = r.input_sets;
  go.causal_block = r.causal_block >= 0 ? r.causal_block : choice.kind == "cpu" ? kCpuCausalBlock : 0;
  check_backend_settings(r, choice);
  CudaOptions cuda;
  cuda.device = static_cast<int>(parse_nonnegative("--gpu", r.gpu, 1024));
  cuda.flush_l2 = r.settings.flush_l2;
  cuda.gemm_candidates = r.settings.gemm_candidates;
  std::unique_ptr<Backend> backend = make_backend(choice, go.precision, cuda);
  spdlog::info("device: {}", backend->device_line());

  const Fraction width = r.width.num > 0 ? r.width : auto_width(model, choice, *backend, batch, go);
  const ModelConfig layer_model = scale_width(model, width);
  const Preflight pf = preflight(model, width, batch, model.n_ctx, go, backend->available_bytes());
  if (!pf.fits) throw UsageError(pf.message);
  // The layer of kind k as this backend runs it: without the capacity factor where its router
  // does not drop tokens (experts_json then says the factor was not applied).
  auto shape_of = [&](size_t k) {
    LayerShape s = layer_shape(layer_model, batch, model.n_ctx, k);
    if (!backend->drops_tokens()) s.router.capacity = 0;
    return s;
  };
  const LayerGraph g = build_layer_graph(shape_of(main_layer_kind(layer_model)), go);
  spdlog::info("layer: {} (d_model {}, {} heads x {}), batch {}, seq {}, {}; tensors {:.3g} GiB of {:.3g} GiB "
               "available",
               layer_model.name, layer_model.d_model, layer_model.n_heads, layer_model.d_head, batch, model.n_ctx,
               to_string(go.precision), pf.required_bytes / (1 << 30), pf.available_bytes / (1 << 30));

  // The ceiling this run's utilisation is measured against: the best GEMM on this device.
  nlohmann::json ceiling = nullptr;
  if (!r.no_ceiling) {
    ceiling = backend->gemm_ceiling(go.precision, ceiling_size(g, choice.kind));
    spdlog::info("ceiling: {:.4g} TFLOP/s ({})", ceiling.at("flops_per_s").get<double>() / 1e12,
                 ceiling.at("source").get<std::string>());
  }
  MeasureRun run = run_measure(*backend, g, r.settings);
  // Hardware counters: a separate run after timing (replay perturbs time). Off under Nsight,
  // where CUPTI would be a second profiler.
  run.hardware_counters = collect_counters(*backend, g, r.nsight ? CounterMode::off : r.counters);
  if (run.hardware_counters.at("status") != "measured" && choice.kind == "cuda")
    spdlog::warn("hardware counters: {} ({})", run.hardware_counters.at("status").get<std::string>(),
                 run.hardware_counters.at("reason").get<std::string>());
  ceiling = hold_ceiling(*backend, g, run, ceiling);  // an op that beats the ceiling: remeasure, or say why
  MeasureContext ctx{model,     layer_model, width.str(),    g,         choice, *backend, pf, r.settings, run,
                     r.cluster, ceiling,     r.command_line, r.nsight};
  ctx.experts = experts_json(g, *backend, layer_model.capacity_factor);
  if (ctx.experts.is_object() && ctx.experts.at("capacity").is_object()) {
    const nlohmann::json& cap = ctx.experts.at("capacity");
    if (cap.at("applied").get<bool>())
      spdlog::info("{}", cap.at("note").get<std::string>());
    else
      spdlog::warn("{}", cap.at("note").get<std::string>());
  }
  ctx.allocated_bytes = backend->allocated_bytes();
  // Every other kind of layer in the model's schedule (DeepSeek-V3's dense first layers, Llama 4
  // Maverick's dense ones, ...) runs too, verified and timed the same way, where it fits.
  std::vector<KindRun> others;
  const std::vector<LayerKind> kinds = layer_model.layer_kinds();
  const size_t main = main_layer_kind(layer_model);
  others.reserve(kinds.size());  // in place: the backend keeps a pointer to the graph it runs
  for (size_t k = 0; k < kinds.size(); ++k) {
    if (k == main) continue;
    KindRun& o = others.emplace_back();
    o.kind = k;
    o.graph = build_layer_graph(shape_of(k), go);
    if (o.graph.tensor_bytes() > pf.available_bytes * Preflight{}.usable_fraction) {
      spdlog::warn("layer kind '{}' ({} layers) needs {:.3g} GiB, more than the {:.3g} GiB usable here; its time is "
                   "the analytic estimate at the measured layer's throughput",
                   to_string(kinds[k].spec), kinds[k].count, o.graph.tensor_bytes() / (1 << 30),
                   pf.available_bytes * Preflight{}.usable_fraction / (1 << 30));
      others.pop_back();
      continue;
    }
    spdlog::info("layer kind '{}' ({} of {} layers): measuring it too", to_string(kinds[k].spec), kinds[k].count,
                 layer_model.n_layers);
    o.run = run_measure(*backend, o.graph, r.settings);
    o.experts = experts_json(o.graph, *backend, layer_model.capacity_factor);
  }
  ctx.other_kinds = &others;
  return measure_result(ctx);
}

}  // namespace flopscope
