#include "predict/cluster_line.hpp"

#include <algorithm>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "predict/predict.hpp"
#include "util/error.hpp"

namespace flopscope::predict {

using nlohmann::json;

Layout default_layout(const ModelConfig& m, const SystemProfile& s, int64_t gpus, const std::string& precision) {
  LayoutChoices c;
  c.precision = precision;
  c.recompute = Recompute::selective;
  c.sequence_parallel = true;
  c.distributed_optimizer = true;
  c.micro_batch = 1;
  c.tp = 1;
  for (int64_t t = std::min(s.gpus_per_node, gpus); t >= 1; --t)
    if (m.n_heads % t == 0 && m.kv_heads() % t == 0 && m.d_ff() % t == 0 && gpus % t == 0) {
      c.tp = t;
      break;
    }
  for (int64_t pp = 1; pp <= std::min(m.n_layers, gpus / *c.tp); ++pp) {
    if ((gpus / *c.tp) % pp) continue;
    c.pp = pp;
    const Layout l = resolve_layout(c, m, s, gpus).layout;  // the attention and the global batch by default
    PredictInput in{m, s, l, nullptr, {}};
    if (predict(in).memory.fits) return l;
  }
  throw UsageError(fmt::format("no pipeline depth fits {} on {} x {}", m.name, gpus, s.title));
}

json cluster_prediction(const ModelConfig& m, const MeasuredOps& measured, const std::string& device_name,
                        const std::string& precision, int64_t gpus) {
  auto has = [&](std::string_view part) { return device_name.find(part) != std::string::npos; };
  std::string id;
  if (has("H200") && !has("NVL")) id = "h200-sxm";
  else if (has("H100") && !has("PCIe") && !has("NVL")) id = "h100-sxm";
  else if (has("A100") && has("80GB") && !has("PCIe")) id = "a100-sxm-80gb";
  if (id.empty())
    return {{"status", "n/a"},
            {"reason", fmt::format("no predict profile for this device ({}); see flopscope predict --gpu",
                                   device_name.empty() ? "unknown" : device_name)}};
  if (precision != "bf16" && precision != "fp16" && precision != "fp8")
    return {{"status", "n/a"}, {"reason", fmt::format("predict models bf16, fp16 and fp8 training, not {}", precision)}};
  try {
    const SystemProfile s = system_by_id(id);
    const Layout l = default_layout(m, s, gpus, precision);
    PredictInput in{m, s, l, &measured, {}};
    const Prediction p = predict(in);
    return {{"status", "predicted"},
            {"layout_name", kDefaultLayoutName},
            {"layout", layout_to_json(l)},
            {"system", s.id},
            {"days", p.training_days},
            {"step_time_s", p.step_time_s},
            {"mfu", p.mfu},
            {"source", fmt::format("modelled (flopscope predict): this run's per-op times scaled to the layout's "
                                   "shapes ({}), communication and schedule modelled on {}",
                                   p.compute_source, s.id)}};
  } catch (const Error& e) {
    return {{"status", "n/a"}, {"reason", e.what()}};
  }
}

}  // namespace flopscope::predict
