#include "measure/result.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "analytic/formulas.hpp"
#include "analytic/hardware.hpp"
#include "measure/host.hpp"
#include "predict/cluster_line.hpp"
#include "util/error.hpp"

namespace flopscope {

using nlohmann::json;

ExecutedFlops executed_flops(const LayerGraph& g, const MeasureRun& run) {
  ExecutedFlops e;
  const json& hw = run.hardware_counters;
  const bool measured = hw.is_object() && hw.value("status", "") == "measured" && hw.contains("ops");
  size_t n_measured = 0;
  for (size_t i = 0; i < g.ops.size(); ++i) {
    const Op& op = g.ops[i];
    if (!run.counted_flops.empty()) {
      e.flops.push_back(run.counted_flops[i]);
      e.source.push_back("counted");
    } else if (measured && hw.at("ops").contains(op.name) && hw.at("ops").at(op.name).value("flops", json()).is_number()) {
      e.flops.push_back(hw.at("ops").at(op.name).at("flops").get<double>());
      e.source.push_back("measured");
      ++n_measured;
    } else {
      e.flops.push_back(op.flops);
      e.source.push_back("analytic");
    }
  }
  e.overall = !run.counted_flops.empty()     ? "counted"
              : n_measured == g.ops.size()   ? "measured"
              : n_measured > 0               ? "measured, analytic where counters gave none"
                                             : "analytic";
  return e;
}

namespace {

// How this run was timed, in one sentence, for results and tables.
std::string timing_method(const MeasureContext& c) {
  const bool cuda = c.backend.name() == "cuda";
  std::string how = c.settings.cuda_graph
                        ? "the layer recorded as a CUDA graph and replayed; CUDA events recorded inside the graph "
                          "between ops (event nodes) and around each launch"
                    : cuda ? "each op launched from the host; CUDA events on the stream between ops"
                           : "each op run in turn; a steady clock read between ops";
  how += fmt::format("; {} warm-up and {} timed runs of the whole layer", c.settings.warmup, c.settings.repeats);
  const int64_t sets = c.graph.options.input_sets;
  if (sets > 1) how += fmt::format(", rotating through {} input sets (inputs and weights)", sets);
  if (c.settings.flush_l2 && cuda) how += "; L2 flushed before each timed run";
  return how;
}

}  // namespace

namespace {

// An op's analytic ratio, full width over run width: of FLOPs, or of bytes for the ops that
// move data without FLOPs (a mixture of experts' dispatch, MLA's assembly).
double width_scale(const Op& wide, const Op& op) {
  return op.flops > 0 ? wide.flops / op.flops : op.min_bytes > 0 ? wide.min_bytes / op.min_bytes : 1.0;
}

}  // namespace

json extrapolate(const ModelConfig& model, const LayerGraph& g, const MeasureRun& run, const ClusterAssumption& c,
                 const json& device, const std::vector<KindRun>& others) {
  GraphOptions full_opts = g.options;
  full_opts.include_head = true;
  // The kind of layer that ran (a model's schedule has one kind per distinct layer; a dense
  // model has one): its ops scale to full width; every other kind is the graph's analytic
  // FLOPs at full width, its time at the measured layer's throughput.
  const std::vector<LayerKind> kinds = model.layer_kinds();
  size_t ran = 0;
  while (ran < kinds.size() && !(kinds[ran].spec == g.shape.layer)) ++ran;
  if (ran == kinds.size())
    throw Error(fmt::format("the measured layer ({}) is not one of {}'s kinds of layer", to_string(g.shape.layer),
                            model.name));
  const LayerGraph full = build_layer_graph(layer_shape(model, g.shape.batch, g.shape.seq, ran), full_opts);
  const double T = static_cast<double>(g.shape.tokens());
  const ExecutedFlops ex = executed_flops(g, run);

  double layer_flops = 0, layer_ms = 0, head_flops = 0, head_ms = 0, run_layer_flops = 0, run_layer_ms = 0;
  for (size_t i = 0; i < g.ops.size(); ++i) {
    const Op& op = g.ops[i];
    const double scale = width_scale(full.op(op.name), op);
    const double f = ex.flops[i] * scale;
    const double ms = run.op_ms[i].median() * scale;
    if (op.group == Group::layer) {
      layer_flops += f;
      layer_ms += ms;
      run_layer_flops += ex.flops[i];
      run_layer_ms += run.op_ms[i].median();
    } else {
      head_flops += f;
      head_ms += ms;
    }
  }
  std::string head_source;
  if (g.options.include_head) {
    head_source = ex.overall + " at this width, scaled to full width by the graph; timed, scaled likewise";
  } else {
    // The head did not run: its FLOPs are analytic, its time assumes the layer's throughput.
    for (const auto& op : full.ops)
      if (op.group == Group::head) head_flops += op.flops;
    head_ms = layer_ms > 0 ? head_flops / (layer_flops / layer_ms) : 0;
    head_source = "analytic (the head did not run: add --include-head); time assumes the layer's measured throughput";
  }
  // Sum over the schedule.
  double layers_flops = 0, layers_ms = 0;
  json kinds_json = json::array();
  for (size_t k = 0; k < kinds.size(); ++k) {
    double f = layer_flops, ms = layer_ms;
    std::string source = "measured layer";
    const KindRun* ran_too = nullptr;
    for (const auto& o : others)
      if (o.kind == k) ran_too = &o;
    if (k != ran && ran_too) {
      // This kind ran too: its ops' executed FLOPs and times, scaled to full width as the main's.
      const LayerGraph wide = build_layer_graph(layer_shape(model, g.shape.batch, g.shape.seq, k), full_opts);
      const ExecutedFlops ox = executed_flops(ran_too->graph, ran_too->run);
      f = 0, ms = 0;
      for (size_t i = 0; i < ran_too->graph.ops.size(); ++i) {
        const Op& op = ran_too->graph.ops[i];
        if (op.group != Group::layer) continue;
        const double scale = width_scale(wide.op(op.name), op);
        f += ox.flops[i] * scale;
        ms += ran_too->run.op_ms[i].median() * scale;
      }
      source = "measured layer (this kind ran too)";
    } else if (k != ran) {
      GraphOptions o = g.options;
      o.include_head = false;
      const LayerGraph other = build_layer_graph(layer_shape(model, g.shape.batch, g.shape.seq, k), o);
      f = 0;
      for (const auto& op : other.ops)
        if (op.group == Group::layer) f += op.flops;
      ms = layer_ms > 0 ? f / (layer_flops / layer_ms) : 0;
      source = "analytic (not the kind that ran); time assumes the measured layer's throughput";
    }
    const double count = static_cast<double>(kinds[k].count);
    layers_flops += count * f;
    layers_ms += count * ms;
    kinds_json.push_back({{"layer", to_string(kinds[k].spec)},
                          {"count", kinds[k].count},
                          {"first", kinds[k].first},
                          {"layer_flops_full_width", f},
                          {"layer_ms_full_width", ms},
                          {"source", source}});
  }

  const double per_token_flops = (layers_flops + head_flops) / T;
  const double per_token_s = (layers_ms + head_ms) / 1000.0 / T;
  const double total_flops = per_token_flops * model.train_tokens;
  const double total_s = per_token_s * model.train_tokens;
  const double days_one = total_s / 86400.0;
  const double six_nd = formula_6nd(model).total_flops;
  const double seed = formula_seed(model).total_flops;

  json j = {
      {"source", ex.overall + " FLOPs and timed ms at the run's width, each op scaled to full width by the graph's "
                              "analytic ratio"},
      {"flops_source", ex.overall},
      {"time_source", "timed"},
      {"assumption", "time assumes this device's throughput at the run's width holds at full width; days_on_cluster "
                     "assumes perfect scaling; cluster_prediction puts the per-op times into the predict model on a "
                     "named default layout (n/a off the GPUs predict has profiles of)"},
      {"full_width", {{"d_model", model.d_model}, {"n_heads", model.n_heads}, {"n_layers", model.n_layers}}},
      {"run_layer_flops", run_layer_flops},
      {"run_layer_ms", run_layer_ms},
      {"layer_flops_full_width", layer_flops},
      {"layer_ms_full_width", layer_ms},
      {"head_flops_full_width", head_flops},
      {"head_ms_full_width", head_ms},
      {"head_source", head_source},
      {"layer_kinds", kinds_json},
      {"flops_per_token", per_token_flops},
      {"training_tokens", model.train_tokens},
      {"training_flops", total_flops},
      {"pf_days", pf_days(total_flops)},
      {"ratio_to_6nd", total_flops / six_nd},
      {"ratio_to_seed", total_flops / seed},
      {"achieved_flops_per_s", total_flops / total_s},
      {"seconds_one_device", total_s},
      {"days_one_device", days_one},
      {"cluster_devices", c.gpus},
      {"days_on_cluster", days_one / c.gpus},
      {"reference_gpt3_pf_days", 3640},
      {"reference_megatron_days_1024_a100", 34},
  };
  // Utilisation against the datasheet peak, where this device is one the table knows.
  const auto* gpu = device.contains("name") ? gpu_by_device_name(device.at("name").get<std::string>()) : nullptr;
  const auto peak = gpu ? peak_tflops(*gpu, to_string(g.options.precision)) : std::nullopt;
  j["datasheet_peak_tflops"] = peak ? json(*peak) : json(nullptr);
  j["utilization_of_peak"] = peak ? json(total_flops / total_s / (*peak * 1e12)) : json(nullptr);
  // The cluster line from the predict model (src/predict/cluster_line.hpp): this run's op
  // times, scaled per op, on a named default layout; n/a off the GPUs predict has profiles of.
  predict::MeasuredOps measured;
  for (size_t i = 0; i < g.ops.size(); ++i) {
    const Op& op = g.ops[i];
    const bool gemm = op.impl == OpImpl::gemm;
    if (run.op_ms[i].median() > 0 && (gemm ? op.flops : op.min_bytes) > 0)
      measured.ops[op.name] = {run.op_ms[i].median() * 1e-3, op.flops, op.min_bytes, gemm};
  }
  measured.file = "this measurement";
  j["cluster_prediction"] = predict::cluster_prediction(
      model, measured, device.contains("name") ? device.at("name").get<std::string>() : "",
      std::string(to_string(g.options.precision)), static_cast<int64_t>(c.gpus));
  return j;
}

// A mixture of experts' layer: how the router spread this run's tokens over the experts (the
// experts tensor its last run wrote), the rows each expert ran (the counts tensor: fewer where a
// capacity dropped some), and the imbalance max/mean of those; the slowest expert sets the
// grouped GEMMs' time, while the analytic FLOPs assume a balanced router. null for a dense layer.
json experts_json(const LayerGraph& g, Backend& b, double capacity_factor) {
  if (!g.shape.moe()) return nullptr;
  const int64_t E = g.shape.n_experts, k = g.shape.top_k, routed = g.shape.tokens() * k;
  const std::vector<double> ran = b.read("moe.counts", 0, E);
  std::vector<int64_t> chosen(static_cast<size_t>(E), 0), rows_run;
  for (double v : b.read("moe.experts", 0, routed)) ++chosen.at(static_cast<size_t>(v));
  double mx = 0, sum_run = 0;
  int64_t idle = 0, sum_chosen = 0;
  for (double v : ran) {
    mx = std::max(mx, v);
    sum_run += v;
    idle += v == 0 ? 1 : 0;
    rows_run.push_back(static_cast<int64_t>(v));
  }
  for (int64_t n : chosen) sum_chosen += n;
  const double mean = static_cast<double>(routed) / static_cast<double>(E);
  json capacity = nullptr;
  if (capacity_factor > 0) {
    MoeSpec m = g.shape.router;
    m.capacity = capacity_factor;
    const auto cap = static_cast<double>(expert_capacity(m, g.shape.tokens()));
    double over = 0;
    for (int64_t n : chosen) over += std::max(0.0, static_cast<double>(n) - cap);
    const bool applied = g.shape.router.capacity > 0;
    capacity = {{"capacity_factor", capacity_factor},
                {"rows_per_expert", cap},
                {"applied", applied},
                {"rows_over_capacity", over},
                {"rows_dropped", applied ? over : 0.0},
                {"note", applied ? fmt::format("the capacity factor {:g} is applied: an expert runs at most {:g} of the "
                                               "{} routed rows, and the router dropped the {:g} past it (the "
                                               "assignments of lowest weight, Megatron-LM's drop policy \"probs\"), so "
                                               "the grouped GEMMs' counted FLOPs fall below the analytic ones (a "
                                               "balanced router, nothing dropped) by those rows",
                                               capacity_factor, cap, routed, over)
                                 : fmt::format("this backend's router drops no token: the capacity factor {:g} is not "
                                               "applied, so every routed row ran (counted FLOPs are the dropless "
                                               "ones); a run with it (Megatron-LM's --moe-expert-capacity-factor) "
                                               "would drop the {:g} of {} rows past {:g} an expert",
                                               capacity_factor, over, routed, cap)}};
  }
  return {{"experts", E},
          {"top_k", k},
          {"capacity", capacity},
          {"shared_experts", g.shape.n_shared},
          {"routed_rows", routed},
          {"routed_rows_counted", sum_chosen},
          {"rows_run", sum_run},
          {"tokens_per_expert", chosen},
          {"rows_run_per_expert", rows_run},
          {"mean_tokens_per_expert", mean},
          {"max_tokens_per_expert", mx},
          {"experts_without_tokens", idle},
          {"imbalance_max_over_mean", mean > 0 ? mx / mean : 0.0},
          {"source", "counted: the router's last run on this run's seeded weights and inputs"},
          {"note", "tokens_per_expert: what the router chose; rows_run_per_expert: what each expert ran (the same "
                   "unless a capacity dropped rows), whose max over the balanced mean is the imbalance. Analytic "
                   "FLOPs assume a balanced router (k T / E rows an expert); with no token dropped the grouped GEMMs "
                   "execute the same total whatever the spread, but the slowest expert sets their time"}};
}

json measure_result(const MeasureContext& c) {
  const LayerGraph& g = c.graph;
  const MeasureRun& run = c.run;
  const ExecutedFlops ex = executed_flops(g, run);
  const bool counted = !run.counted_flops.empty();
  double total_time = 0;
  for (const auto& s : run.op_ms) total_time += s.median();
  const json device = c.backend.device_json();
  // The two references every utilisation names: the datasheet dense peak for the dtype (n/a
  // for devices the table does not know) and the GEMM ceiling measured in this run.
  const GpuPeaks* gpu = device.contains("name") ? gpu_by_device_name(device.at("name").get<std::string>()) : nullptr;
  const double peak_tf = gpu ? peak_tflops(*gpu, to_string(g.options.precision)).value_or(0.0) : 0.0;
  const double peak_flops = peak_tf * 1e12;
  const double ceiling_flops = c.ceiling.is_null() ? 0 : c.ceiling.at("flops_per_s").get<double>();
  // Like with like: the datasheet peak is what the hardware can execute, so it takes the
  // executed rate (hardware-counted, padding included, where counters ran); the measured
  // ceiling is useful FLOPs (2 n^3 of its GEMM per second), so it takes the useful rate
  // (analytic FLOPs). Without counters the two rates are one.
  auto utilization = [&](double executed_per_s, double useful_per_s) {
    return json{{"of_datasheet_peak", peak_flops > 0 ? json(executed_per_s / peak_flops) : json(nullptr)},
                {"of_measured_ceiling", ceiling_flops > 0 ? json(useful_per_s / ceiling_flops) : json(nullptr)}};
  };
  const json* algos = (run.prepared.is_object() && run.prepared.contains("gemm_algorithms"))
                          ? &run.prepared.at("gemm_algorithms")
                          : nullptr;

  json ops = json::array();
  struct Acc {
    double flops = 0, model_flops = 0, counted = 0;
  };
  Acc fwd, bwd, rec, all;
  for (size_t i = 0; i < g.ops.size(); ++i) {
    const Op& op = g.ops[i];
    json o = op_json(op);
    const double med = run.op_ms[i].median();
    const double executed = ex.flops[i];
    o["executed_flops_source"] = ex.source[i];
    if (counted) {
      o["counted_flops"] = run.counted_flops[i];
      // An op without FLOPs (a mixture of experts' dispatch, MLA's assembly) has no ratio.
      if (op.flops > 0) o["counted_over_analytic"] = run.counted_flops[i] / op.flops;
    }
    const json& hw = run.hardware_counters;
    const json* algo = algos && algos->contains(op.name) ? &algos->at(op.name) : nullptr;
    if (hw.is_object() && hw.value("status", "") == "measured" && hw.contains("ops") && hw.at("ops").contains(op.name)) {
      o["measured"] = hw.at("ops").at(op.name);  // tensor and CUDA-core FLOPs, DRAM bytes, time, raw counters
      if (ex.source[i] == "measured" && op.flops > 0) {
        o["measured_over_analytic"] = executed / op.flops;
        // Executed against useful work: what the hardware ran beyond the analytic FLOPs (a
        // GEMM's tiles padded past the matrix edge), beside what the chosen tile predicts.
        o["padding"] = {{"useful_flops", op.flops},
                        {"executed_flops", executed},
                        {"executed_over_useful", executed / op.flops},
                        {"tile", algo ? algo->value("tile", json(nullptr)) : json(nullptr)},
                        {"tile_padded_over_useful", algo ? algo->value("padded_over_useful", json(nullptr)) : json(nullptr)},
                        {"source", "executed: measured (hardware counters); useful: analytic; tile: cuBLASLt's "
                                   "CUBLASLT_ALGO_CONFIG_TILE_ID of the chosen algorithm"}};
      }
    }
    o["time_ms"] = run.op_ms[i].json();
    o["achieved_flops_per_s"] = med > 0 ? json(executed / (med / 1000.0)) : json(nullptr);
    o["time_share"] = total_time > 0 ? med / total_time : 0.0;
    if (med > 0) o["utilization"] = utilization(executed / (med / 1000.0), op.flops / (med / 1000.0));
    if (algo && algo->value("best_ms", json(nullptr)).is_number()) {
      // The op's time in the layer against the best algorithm's time when chosen (both timed;
      // with one candidate nothing was timed).
      const double best = algo->at("best_ms").get<double>();
      o["best_algorithm_ms"] = best;
      o["best_algorithm_over_op_time"] = med > 0 ? best / med : 0.0;
    }
    ops.push_back(o);
    Acc& a = op.phase == Phase::forward ? fwd : op.phase == Phase::backward ? bwd : rec;
    for (Acc* x : {&a, &all}) {
      x->flops += op.flops;
      x->model_flops += op.model_flops;
      x->counted += executed;
    }
  }
  auto total = [&](const Acc& a, const Samples* s) {
    json t = {{"flops", a.flops}, {"model_flops", a.model_flops}};
    if (counted) t["counted_flops"] = a.counted;
    if (ex.overall != "counted" && ex.overall != "analytic") t["measured_flops"] = a.counted;
    if (s) {
      t["time_ms"] = s->json();
      t["achieved_flops_per_s"] = a.counted / (s->median() / 1000.0);
      t["achieved_model_flops_per_s"] = a.model_flops / (s->median() / 1000.0);
      t["utilization"] = utilization(a.counted / (s->median() / 1000.0), a.flops / (s->median() / 1000.0));
      t["model_utilization"] = utilization(a.model_flops / (s->median() / 1000.0), a.model_flops / (s->median() / 1000.0));
    }
    return t;
  };
  json totals = {{"forward", total(fwd, &run.forward_ms)},
                 {"backward", total(Acc{bwd.flops + rec.flops, bwd.model_flops + rec.model_flops, bwd.counted + rec.counted},
                                    &run.backward_ms)},
                 {"total", total(all, &run.total_ms)}};
  if (rec.flops > 0) totals["recompute"] = total(rec, nullptr);
  if (!run.replay_ms.ms.empty()) totals["total"]["graph_replay_ms"] = run.replay_ms.json();
  const json ratios = {{"backward_over_forward_flops", (bwd.counted + rec.counted) / fwd.counted},
                       {"backward_over_forward_time", run.backward_ms.median() / run.forward_ms.median()},
                       {"flops_source", ex.overall},
                       {"time_source", "timed"}};

  static const std::vector<KindRun> none;
  const std::vector<KindRun>& others = c.other_kinds ? *c.other_kinds : none;
  const json extrapolation = extrapolate(c.model, g, run, c.cluster, device, others);
  // The other kinds that ran: each verified (run_measure throws otherwise), with its own totals.
  json kinds_run = json::array();
  for (const auto& o : others) {
    const ExecutedFlops ox = executed_flops(o.graph, o.run);
    double flops = 0, executed = 0;
    for (size_t i = 0; i < o.graph.ops.size(); ++i) {
      flops += o.graph.ops[i].flops;
      executed += ox.flops[i];
    }
    kinds_run.push_back({{"layer_kind", to_string(o.graph.shape.layer)},
                         {"ops", o.graph.ops.size()},
                         {"verification_passed", o.run.verification.at("passed")},
                         {"flops", flops},
                         {"executed_flops", executed},
                         {"executed_flops_source", ox.overall},
                         {"time_ms", o.run.total_ms.json()},
                         {"experts", o.experts}});
  }
  // Every formula's total, and the days it would take on N of this device at the throughput
  // measured here (timed), instead of a datasheet assumption.
  json formulas = formulas_json(c.model, c.cluster);
  const double achieved = extrapolation.at("achieved_flops_per_s").get<double>();
  for (auto& f : formulas) {
    f.erase("days_on_cluster");
    f["days_on_devices_at_measured_throughput"] = days_on(f.at("total_flops").get<double>(), c.cluster.gpus, achieved);
  }
  return {{"schema", kSchema},
          {"command", "measure"},
          {"tool", tool_json()},
          {"command_line", c.command_line},
          {"sources",
           {{"ops.flops", "analytic"},
            {"ops.model_flops", "analytic"},
            {"ops.full_square_flops", "analytic"},
            {"ops.counted_flops", "counted"},
            {"ops.measured", "measured (CUPTI hardware counters)"},
            {"ops.time_ms", "timed"},
            {"ops.achieved_flops_per_s", "counted / timed"},
            {"totals", "analytic, counted, timed"},
            {"formulas", "analytic"},
            {"extrapolation", "counted + timed, scaled to full width by the graph"},
            {"host", "recorded (environment and device properties)"}}},
          {"model", model_to_json(c.model)},
          {"parameters", parameter_count(c.model)},
          {"layer", layer_json(g, c.layer_model, c.width)},
          {"experts", c.experts.is_null() ? experts_json(g, c.backend, c.layer_model.capacity_factor) : c.experts},
          {"other_layer_kinds", kinds_run},
          {"backend", {{"name", c.backend.name()}, {"reason", c.choice.reason}, {"device_line", c.backend.device_line()}}},
          {"device", device},
          {"host", host_facts(device)},
          {"memory",
           {{"required_bytes", c.preflight.required_bytes},
            {"available_bytes", c.preflight.available_bytes},
            {"allocated_bytes", c.allocated_bytes >= 0 ? c.allocated_bytes : c.backend.allocated_bytes()},
            {"source", "required: analytic (graph); allocated: counted by the backend"}}},
          {"settings",
           {{"warmup", c.settings.warmup},
            {"repeats", c.settings.repeats},
            {"seed", c.settings.seed},
            {"input_sets", g.options.input_sets},
            {"flush_l2", c.settings.flush_l2},
            {"cuda_graph", c.settings.cuda_graph},
            {"gemm_candidates", c.backend.name() == "cuda" ? json(c.settings.gemm_candidates) : json(nullptr)},
            {"timing", timing_method(c)},
            {"wall_seconds", run.wall_seconds},
            {"nsight", c.nsight}}},
          {"peaks",
           {{"datasheet_tflops", peak_tf > 0 ? json(peak_tf) : json(nullptr)},
            {"datasheet", gpu ? json(gpu->title + ", " + gpu->source) : json(nullptr)},
            {"dtype", to_string(g.options.precision)},
            {"measured_ceiling", c.ceiling}}},
          {"clocks", {{"before", run.clocks_before}, {"after", run.clocks_after}}},
          {"prepared", run.prepared},
          {"counters",
           counted ? json{{"status", "counted"},
                          {"detail", "software: each executed call's dimensions, summed per op"},
                          {"hardware", run.hardware_counters}}
                   : (run.hardware_counters.is_object() ? run.hardware_counters
                                                        : json{{"status", "off"}, {"reason", "not collected"}})},
          {"verification", run.verification},
          {"ops", ops},
          {"totals", totals},
          {"ratios", ratios},
          {"extrapolation", extrapolation},
          {"formulas", formulas}};
}

}  // namespace flopscope
