#include "predict/predict.hpp"

#include <algorithm>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "graph/graph.hpp"
#include "util/error.hpp"

namespace flopscope::predict {

using nlohmann::json;

namespace {

constexpr double kBytes16 = 2;

// Parameters of one layer (and of the head's final layernorm) on one GPU of the tp group:
// vectors over d (layernorms, row-parallel biases) are repeated, everything else split.
struct ParamCount {
  double layer = 0, head_norm = 0, vocab_matrix = 0;
};
ParamCount params_per_gpu(const LayerGraph& g, int64_t tp) {
  ParamCount p;
  for (const auto& t : g.tensors) {
    if (t.role != TensorRole::weight) continue;
    const double n = static_cast<double>(t.numel());
    const bool repeated = t.shape.size() == 1 && t.shape[0] == g.shape.d_model;
    const double share = repeated ? n : n / static_cast<double>(tp);
    if (t.name == "w.vocab") p.vocab_matrix = share;
    else if (t.name.rfind("head.", 0) == 0) p.head_norm += share;
    else p.layer += share;
  }
  return p;
}

}  // namespace

double model_flops_per_step(const ModelConfig& m, const Layout& l) {
  // Each kind of layer in the model's schedule, weighted by its count.
  double layers = 0, head = 0;
  for (size_t k = 0; k < m.layer_kinds().size(); ++k) {
    GraphOptions go;
    go.include_head = k == 0;
    const LayerGraph g = build_layer_graph(layer_shape(m, l.micro_batch, l.seq, k), go);
    double layer = 0;
    for (const auto& op : g.ops) {
      if (op.impl != OpImpl::gemm || op.phase == Phase::recompute) continue;
      (op.group == Group::head ? head : layer) += op.flops;
    }
    layers += layer * static_cast<double>(m.layer_kinds()[k].count);
  }
  const double micro_batches = static_cast<double>(l.global_batch) / static_cast<double>(l.micro_batch);
  return micro_batches * (layers + head);
}

Prediction predict(const PredictInput& in) {
  validate(in.layout, in.model);
  if (in.layout.cp > 1 || in.layout.fsdp_on())
    throw UsageError("predict: context parallelism (--cp) and FSDP (--fsdp) are in the layout but not modelled yet");
  Prediction p;
  p.model = in.model;
  p.system = in.system;
  p.layout = in.layout;
  const Layout& l = in.layout;
  const SystemProfile& s = in.system;
  if (s.peak_tflops(l.precision) <= 0)
    throw UsageError(fmt::format("--precision {}: {} has no datasheet peak for it", l.precision, s.title));
  Network net{s, in.nccl};
  const int64_t node = s.gpus_per_node;
  const int64_t dp = l.dp(), m = l.micro_batches();
  const bool sp = l.sequence_parallel && l.tp > 1;

  p.cost = layer_cost(in.model, l, s, in.measured);
  const LayerCost& c = p.cost;
  p.compute_source = c.measured_ops == 0 ? "modelled"
                     : c.modelled_ops == 0 ? "measured (" + in.measured->file + ")"
                                           : fmt::format("{} ops measured ({}), {} modelled", c.measured_ops,
                                                         in.measured->file, c.modelled_ops);

  // Tensor parallel: the [s, b, h] activation, 16-bit, reduced twice forward and twice backward a
  // layer (and twice more in a full recompute's forward); with sequence parallelism each
  // all-reduce is a reduce-scatter and an all-gather.
  const double act_bytes = static_cast<double>(l.seq) * static_cast<double>(l.micro_batch) *
                           static_cast<double>(in.model.d_model) * kBytes16;
  const bool tp_inter = l.tp > node;
  const double one_collective = sp ? net.time(Collective::reduce_scatter, act_bytes, l.tp, tp_inter) +
                                         net.time(Collective::all_gather, act_bytes, l.tp, tp_inter)
                                   : net.time(Collective::all_reduce, act_bytes, l.tp, tp_inter);
  const double collectives_per_layer = l.recompute == Recompute::full ? 6 : 4;
  const double tp_layer = collectives_per_layer * one_collective;
  // Embedding (vocabulary-parallel: one reduction forward) and LM head (gather forward,
  // reduction backward) on the first and last stages.
  const double tp_first = l.tp > 1 ? one_collective : 0;
  const double tp_last = l.tp > 1 ? (sp ? 2 : 1) * one_collective : 0;

  p.split = layer_split(in.model.n_layers, l.pp);
  // The schedule: each kind of layer costed once (kind 0 is p.cost); a stage's compute sums
  // its layers' kinds (stage i holds the next p.split[i] layers).
  const std::vector<LayerKind> kinds = in.model.layer_kinds();
  const std::vector<LayerSpec> schedule = in.model.schedule();
  std::vector<double> kind_compute, kind_backward;
  for (size_t k = 0; k < kinds.size(); ++k) {
    const LayerCost kc = k == 0 ? c : layer_cost(in.model, l, s, in.measured, k);
    kind_compute.push_back(kc.layer_forward_s + kc.layer_backward_s + kc.layer_recompute_s);
    kind_backward.push_back(kc.layer_backward_s + kc.layer_recompute_s);
  }
  // How many layers of each kind the n layers from `from` on hold.
  auto kinds_in = [&](int64_t from, int64_t n) {
    std::vector<double> count(kinds.size(), 0.0);
    for (int64_t j = from; j < from + n; ++j) {
      size_t k = 0;
      while (!(kinds[k].spec == schedule[static_cast<size_t>(j)])) ++k;
      count[k] += 1;
    }
    return count;
  };
  const double head_compute = c.head_forward_s + c.head_backward_s;
  double worst = -1, worst_compute = 0, worst_tp = 0, worst_backward = 0;
  int64_t first_layer = 0;
  for (size_t i = 0; i < p.split.size(); ++i) {
    const double layers = static_cast<double>(p.split[i]);
    const std::vector<double> per_kind = kinds_in(first_layer, p.split[i]);
    first_layer += p.split[i];
    double compute = 0, backward = 0, tp = layers * tp_layer;
    for (size_t k = 0; k < kinds.size(); ++k) {
      compute += per_kind[k] * kind_compute[k];
      backward += per_kind[k] * kind_backward[k];
    }
    if (i == 0) tp += tp_first;
    if (i + 1 == p.split.size()) {
      compute += head_compute;
      tp += tp_last;
    }
    if (compute + tp > worst) {
      worst = compute + tp;
      worst_compute = compute;
      worst_tp = tp;
      worst_backward = backward;
    }
  }
  // Pipeline: each micro-batch crosses each of a stage's vpp chunk boundaries forward and
  // backward; the activation goes split over the tp ranks (Megatron-LM's scatter-gather).
  const bool pp_inter = l.gpus > node;
  const double p2p = l.pp > 1 ? 2 * static_cast<double>(l.vpp) *
                                    net.time(Collective::send_recv, act_bytes / static_cast<double>(l.tp), 2, pp_inter)
                              : 0;
  p.stage_time_s = worst + p2p;
  Breakdown& b = p.breakdown;
  const double md = static_cast<double>(m);
  b.compute_s = md * worst_compute;
  b.tp_comm_s = md * worst_tp;
  b.pp_comm_s = md * p2p;
  b.bubble_s = static_cast<double>(l.pp - 1) / static_cast<double>(l.vpp) * p.stage_time_s;

  // Parameters and memory on the first and last stages; the larger is reported.
  GraphOptions go;
  go.include_head = true;
  const LayerGraph g = build_layer_graph(layer_shape(in.model, 1, l.seq), go);
  const ParamCount pc = params_per_gpu(g, l.tp);
  std::vector<double> kind_params = {pc.layer};
  for (size_t k = 1; k < kinds.size(); ++k)
    kind_params.push_back(params_per_gpu(build_layer_graph(layer_shape(in.model, 1, l.seq, k), GraphOptions{}), l.tp).layer);
  auto stage_params = [&](int64_t from, int64_t n) {
    const std::vector<double> count = kinds_in(from, n);
    double sum = 0;
    for (size_t k = 0; k < kinds.size(); ++k) sum += count[k] * kind_params[k];
    return sum;
  };
  const double position = in.model.position == PositionKind::learned
                              ? static_cast<double>(in.model.n_ctx) * static_cast<double>(in.model.d_model)
                              : 0;
  const double first = stage_params(0, p.split.front()) + pc.vocab_matrix + position +
                       (l.pp == 1 ? pc.head_norm + (in.model.tied_embeddings ? 0 : pc.vocab_matrix) : 0);
  const double last = stage_params(in.model.n_layers - p.split.back(), p.split.back()) + pc.head_norm + pc.vocab_matrix +
                      (l.pp == 1 ? position : 0);
  const double available = s.hbm_bytes - s.memory_reserved_bytes;
  const MemoryBreakdown mem_first = memory_per_gpu(first, p.split.front(), in.model, l, available);
  const MemoryBreakdown mem_last = memory_per_gpu(last, p.split.back(), in.model, l, available);
  p.memory = mem_first.total_bytes >= mem_last.total_bytes ? mem_first : mem_last;
  const double params_gpu = std::max(first, last);

  // Data parallel: the 16-bit gradients all-reduced (reduce-scattered, then the weights
  // all-gathered, with the distributed optimizer); dp ranks are tp apart in Megatron-LM's order.
  const bool dp_inter = l.tp * dp > node;
  const double grad_bytes = params_gpu * kBytes16;
  b.dp_comm_total_s = l.distributed_optimizer ? net.time(Collective::reduce_scatter, grad_bytes, dp, dp_inter) +
                                                    net.time(Collective::all_gather, grad_bytes, dp, dp_inter)
                                              : net.time(Collective::all_reduce, grad_bytes, dp, dp_inter);
  const double hidden = l.dp_overlap ? worst_backward : 0;
  b.dp_comm_s = std::max(0.0, b.dp_comm_total_s - hidden);
  const double opt_params = l.distributed_optimizer ? params_gpu / static_cast<double>(dp) : params_gpu;
  b.optimizer_s = opt_params * kOptimizerBytesPerParameter / (s.hbm_bytes_per_s * s.memory_efficiency);

  p.step_time_s = md * p.stage_time_s + b.bubble_s + b.dp_comm_s + b.optimizer_s;
  const double tokens = static_cast<double>(l.global_batch) * static_cast<double>(l.seq);
  p.tokens_per_s = tokens / p.step_time_s;
  p.model_flops = model_flops_per_step(in.model, l);
  // Hardware FLOPs: the recomputed GEMMs on top (full: the layer's forward; selective: the
  // attention core; flash: its backward's recomputed scores).
  GraphOptions gr;
  gr.recompute = true;
  double extras = 0;  // over the schedule
  for (size_t k = 0; k < kinds.size(); ++k) {
    const LayerGraph gfull = build_layer_graph(layer_shape(in.model, l.micro_batch, l.seq, k), gr);
    double extra = 0;
    for (const auto& op : gfull.ops) {
      if (op.impl != OpImpl::gemm) continue;
      const bool core = op.name.find(".attn.") != std::string::npos;
      if (l.attention == Attention::flash) {
        if (op.name == "fwd.attn.scores") extra += op.flops;  // recomputed in flash's backward
        if (op.phase == Phase::recompute && l.recompute == Recompute::full) extra += op.flops;
      } else if (op.phase == Phase::recompute) {
        if (l.recompute == Recompute::full || (l.recompute == Recompute::selective && core)) extra += op.flops;
      }
    }
    extras += extra * static_cast<double>(kinds[k].count);
  }
  p.hardware_flops = p.model_flops + extras * static_cast<double>(l.global_batch) / static_cast<double>(l.micro_batch);
  const double gpus = static_cast<double>(l.gpus);
  p.model_tflops_per_gpu = p.model_flops / p.step_time_s / gpus / 1e12;
  p.hardware_tflops_per_gpu = p.hardware_flops / p.step_time_s / gpus / 1e12;
  p.peak_tflops = s.peak_tflops(l.precision);
  p.mfu = p.model_tflops_per_gpu / p.peak_tflops;
  p.hfu = p.hardware_tflops_per_gpu / p.peak_tflops;
  p.training_days = in.model.train_tokens / p.tokens_per_s / 86400.0;

  std::string split;
  for (size_t i = 0; i < p.split.size();) {
    size_t j = i;
    while (j < p.split.size() && p.split[j] == p.split[i]) ++j;
    split += fmt::format("{}{} x {}", split.empty() ? "" : " + ", j - i, p.split[i]);
    i = j;
  }
  p.notes.push_back(fmt::format("layers per stage: {} ({} layers over {} stages{}); the slowest stage sets the pace",
                                split, in.model.n_layers, l.pp,
                                l.vpp > 1 ? fmt::format(", {} chunks a stage", l.vpp) : ""));
  p.notes.push_back(fmt::format("tensor parallel: {} collectives of {:.3g} MB a layer and micro-batch, {} on {}, not "
                                "overlapped with compute",
                                collectives_per_layer, act_bytes / 1e6, sp ? "reduce-scatter + all-gather" : "all-reduce",
                                net.source(sp ? Collective::reduce_scatter : Collective::all_reduce, tp_inter)));
  if (l.pp > 1)
    p.notes.push_back(fmt::format("pipeline: 1F1B{}, bubble (pp - 1) / (vpp m) = {:.4f} of the ideal time; sends of "
                                  "{:.3g} MB on {}, blocking",
                                  l.vpp > 1 ? " interleaved" : "",
                                  static_cast<double>(l.pp - 1) / static_cast<double>(l.vpp * m),
                                  act_bytes / static_cast<double>(l.tp) / 1e6, net.source(Collective::send_recv, pp_inter)));
  if (dp > 1)
    p.notes.push_back(fmt::format("data parallel: {:.3g} GB of gradients, {} over {} GPUs on {}; {}",
                                  grad_bytes / 1e9, l.distributed_optimizer ? "reduce-scatter + all-gather" : "all-reduce",
                                  dp, net.source(Collective::all_reduce, dp_inter),
                                  l.dp_overlap ? "overlapped with the last micro-batch's backward" : "not overlapped"));
  p.notes.push_back(fmt::format("optimizer: Adam, {} bytes a parameter moved at the HBM bandwidth x {}",
                                kOptimizerBytesPerParameter, s.memory_efficiency));
  return p;
}

json prediction_json(const Prediction& p) {
  const Breakdown& b = p.breakdown;
  json ops = json::array();
  for (const auto& o : p.cost.ops) ops.push_back(op_cost_json(o));
  return {{"step_time_s", p.step_time_s},
          {"tokens_per_s", p.tokens_per_s},
          {"model_tflops_per_gpu", p.model_tflops_per_gpu},
          {"hardware_tflops_per_gpu", p.hardware_tflops_per_gpu},
          {"peak_tflops", p.peak_tflops},
          {"mfu", p.mfu},
          {"hfu", p.hfu},
          {"training_days", p.training_days},
          {"memory_per_gpu_bytes", p.memory.total_bytes},
          {"fits", p.memory.fits},
          {"memory", memory_json(p.memory)},
          {"model_flops_per_step", p.model_flops},
          {"hardware_flops_per_step", p.hardware_flops},
          {"stage_time_s", p.stage_time_s},
          {"layer_split", p.split},
          {"compute_source", p.compute_source},
          {"breakdown",
           {{"compute_s", b.compute_s},
            {"tp_comm_s", b.tp_comm_s},
            {"pp_comm_s", b.pp_comm_s},
            {"bubble_s", b.bubble_s},
            {"dp_comm_s", b.dp_comm_s},
            {"dp_comm_total_s", b.dp_comm_total_s},
            {"optimizer_s", b.optimizer_s}}},
          {"layer",
           {{"forward_s", p.cost.layer_forward_s},
            {"backward_s", p.cost.layer_backward_s},
            {"recompute_s", p.cost.layer_recompute_s},
            {"head_forward_s", p.cost.head_forward_s},
            {"head_backward_s", p.cost.head_backward_s},
            {"measured_ops", p.cost.measured_ops},
            {"modelled_ops", p.cost.modelled_ops}}},
          {"ops", ops},
          {"notes", p.notes}};
}

}  // namespace flopscope::predict
