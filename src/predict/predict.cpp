#include "predict/predict.hpp"

#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "graph/graph.hpp"
#include "util/error.hpp"

namespace flopscope::predict {

using nlohmann::json;

namespace {

constexpr double kBytes16 = 2;

// Parameters of one layer (and of the head's final layernorm) on one GPU of the tp group, as
// each weight's split says (TensorSpec::split): replicated weights whole, the others / tp. A
// mixture of experts' routed experts (TensorSpec::expert) are split over ep x etp instead of
// tp; `expert` is their part of `layer`.
struct ParamCount {
  double layer = 0, head_norm = 0, vocab_matrix = 0;
  double expert = 0;
  double fp8_copies = 0;  // elements of the layer's fp8 weight copies (both layouts), 1 byte each
};
ParamCount params_per_gpu(const LayerGraph& g, const Layout& l) {
  ParamCount p;
  const double tp = static_cast<double>(l.tp), experts = static_cast<double>(l.ep * l.expert_tp());
  auto share = [&](const TensorSpec& t) {
    const double n = static_cast<double>(t.numel());
    return t.expert ? n / experts : t.split == WeightSplit::replicated ? n : n / tp;
  };
  for (const auto& t : g.tensors) {
    if (g.weight_fp8_copy(t)) p.fp8_copies += share(t);
    if (t.role != TensorRole::weight) continue;
    const double n = share(t);
    if (t.name == "w.vocab") p.vocab_matrix = n;
    else if (t.name.rfind("head.", 0) == 0) p.head_norm += n;
    else p.layer += n;
    if (t.expert) p.expert += n;
  }
  return p;
}

// FSDP's collectives of one stage: the part not hidden behind compute, and all of them.
struct FsdpTime {
  double exposed_s = 0, total_s = 0;
};

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

double exposed_past_chunks(double comm_s, double per_micro_batch_s, int64_t vpp, int64_t pp) {
  const double v = static_cast<double>(std::max<int64_t>(vpp, 1));
  const double lanes = vpp > 1 ? static_cast<double>(std::max<int64_t>(pp, 1)) : 0;
  const double first = comm_s - per_micro_batch_s;                 // j = 0: the last chunk to finish
  const double last = v * comm_s - ((v - 1) * lanes + 1) * per_micro_batch_s;  // j = vpp - 1: all of them
  return std::max(0.0, std::max(first, last) / v);
}

Prediction predict(const PredictInput& in) {
  validate(in.layout, in.model);
  Prediction p;
  p.model = in.model;
  p.system = in.system;
  p.layout = in.layout;
  const Layout& l = in.layout;
  const SystemProfile& s = in.system;
  if (s.peak_tflops(l.precision) <= 0) {
    std::vector<std::string> with;
    for (const std::string& id : system_ids())
      if (system_by_id(id).peak_tflops(l.precision) > 0) with.push_back(id);
    throw UsageError(fmt::format("--precision {0}: {1} has no datasheet peak for it; pass --gpu {2} (the built-in "
                                 "GPUs with a peak for it) or a --system file that gives one",
                                 l.precision, s.title, fmt::join(with, " or ")));
  }
  Network net{s, in.nccl};
  const int64_t node = s.gpus_per_node;
  const int64_t dp = l.dp(), m = l.micro_batches();
  const bool sp = l.sequence_parallel && l.tp > 1;
  // Context parallel: each GPU holds seq / cp tokens of every sequence (layer_cost costs them).
  const double local_seq = static_cast<double>(l.seq) / static_cast<double>(l.cp);

  p.cost = layer_cost(in.model, l, s, in.measured);
  const LayerCost& c = p.cost;
  p.compute_source = c.measured_ops == 0 ? "modelled"
                     : c.modelled_ops == 0 ? "measured (" + in.measured->file + ")"
                                           : fmt::format("{} ops measured ({}), {} modelled", c.measured_ops,
                                                         in.measured->file, c.modelled_ops);

  // Tensor parallel: the [s, b, h] activation, 16-bit, reduced twice forward and twice backward a
  // layer (and twice more in a full recompute's forward); with sequence parallelism each
  // all-reduce is a reduce-scatter and an all-gather.
  const double act_bytes = local_seq * static_cast<double>(l.micro_batch) *
                           static_cast<double>(in.model.d_model) * kBytes16;
  const CommGroup tp_group = strided_group(l.tp, 1, node);
  const double one_collective = sp ? net.time(Collective::reduce_scatter, act_bytes, tp_group) +
                                         net.time(Collective::all_gather, act_bytes, tp_group)
                                   : net.time(Collective::all_reduce, act_bytes, tp_group);
  const double collectives_per_layer = l.recompute == Recompute::full ? 6 : 4;
  const double tp_layer = collectives_per_layer * one_collective;
  // Embedding (vocabulary-parallel: one reduction forward) and LM head (gather forward,
  // reduction backward) on the first and last stages.
  const double tp_first = l.tp > 1 ? one_collective : 0;
  const double tp_last = l.tp > 1 ? (sp ? 2 : 1) * one_collective : 0;
  // With --tp-comm-overlap (Transformer Engine's userbuffers, sequence parallel) a layer's
  // all-gathers and reduce-scatters run in chunks beside the GEMMs they feed or follow (the
  // column-parallel GEMMs' input gathered, the row-parallel GEMMs' output scattered, and the
  // mirror images in the backward): in each direction only what the collectives exceed the
  // direction's tensor-parallel GEMMs (OpCost::tp_gemm) is exposed, and at least one chunk of
  // each, 1 / tp of it, which the pipeline cannot hide. The embedding's and the head's stay exposed.
  const bool tp_overlap = l.tp_comm_overlap && sp;  // sp: sequence parallel with tp > 1
  auto tp_exposed = [&](const LayerCost& kc) {
    if (!tp_overlap) return tp_layer;
    double gemm_fwd = 0, gemm_bwd = 0;
    for (const auto& o : kc.ops)
      if (o.tp_gemm) (o.phase == Phase::forward ? gemm_fwd : gemm_bwd) += o.time_s;
    const double comm_fwd = 2 * one_collective, comm_bwd = tp_layer - comm_fwd, tpn = static_cast<double>(l.tp);
    return std::max(comm_fwd - gemm_fwd, comm_fwd / tpn) + std::max(comm_bwd - gemm_bwd, comm_bwd / tpn);
  };

  p.split = layer_split(in.model.n_layers, l.pp, l.embedding_in_split, l.loss_in_split);
  const std::vector<LayerKind> kinds = in.model.layer_kinds();
  const std::vector<LayerSpec> schedule = in.model.schedule();
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
  // Parameters on one GPU of each kind of layer and of the first and last stages.
  GraphOptions go;
  go.include_head = true;
  if (l.precision == "fp8") go.precision = Precision::fp8;  // with the fp8 weight copies
  const int64_t param_seq = l.seq / l.cp;  // any legal shape: parameters do not depend on it
  const LayerGraph g = build_layer_graph(layer_shape(in.model, 1, param_seq), go);
  const ParamCount pc = params_per_gpu(g, l);
  std::vector<double> kind_params = {pc.layer}, kind_fp8 = {pc.fp8_copies}, kind_expert = {pc.expert};
  for (size_t k = 1; k < kinds.size(); ++k) {
    GraphOptions gk;
    gk.precision = go.precision;
    const ParamCount pk = params_per_gpu(build_layer_graph(layer_shape(in.model, 1, param_seq, k), gk), l);
    kind_params.push_back(pk.layer);
    kind_fp8.push_back(pk.fp8_copies);
    kind_expert.push_back(pk.expert);
  }
  // A per-kind figure summed over the layers from `from` on (n of them) by their kinds.
  auto stage_sum = [&](const std::vector<double>& per_kind, int64_t from, int64_t n) {
    const std::vector<double> count = kinds_in(from, n);
    double sum = 0;
    for (size_t k = 0; k < kinds.size(); ++k) sum += count[k] * per_kind[k];
    return sum;
  };
  auto stage_fp8 = [&](int64_t from, int64_t n) { return stage_sum(kind_fp8, from, n); };
  auto stage_params = [&](int64_t from, int64_t n) { return stage_sum(kind_params, from, n); };
  auto stage_experts = [&](int64_t from, int64_t n) { return stage_sum(kind_expert, from, n); };
  const double position = in.model.position == PositionKind::learned
                              ? static_cast<double>(in.model.n_ctx) * static_cast<double>(in.model.d_model)
                              : 0;
  const double first = stage_params(0, p.split.front()) + pc.vocab_matrix + position +
                       (l.pp == 1 ? pc.head_norm + (in.model.tied_embeddings ? 0 : pc.vocab_matrix) : 0);
  const double last = stage_params(in.model.n_layers - p.split.back(), p.split.back()) + pc.head_norm + pc.vocab_matrix +
                      (l.pp == 1 ? position : 0);

  // The schedule: each kind of layer costed once (kind 0 is p.cost); a stage's compute sums
  // its layers' kinds (stage i holds the next p.split[i] layers).
  // Context parallel (Megatron-LM's ring attention): each of the cp - 1 ring steps sends this
  // GPU's K and V chunk (seq / cp tokens of kv_dim / tp, 16-bit) to the next rank of the cp group
  // while the attention of the chunk in hand is computed (1 / cp of the fused kernel's time); the
  // backward sends K, V and their gradients. Only what a step's send exceeds its compute is exposed.
  // cp ranks are tp apart (Megatron-LM's order tp-cp-dp-pp).
  const CommGroup cp_pair{2, l.tp * l.cp > node ? 1 : 2};  // one ring step: a send to the next cp rank
  const double kv_chunk_bytes = 2 * local_seq * static_cast<double>(l.micro_batch) *
                                static_cast<double>(in.model.kv_dim()) / static_cast<double>(l.tp) * kBytes16;
  auto ring_exposed = [&](const LayerCost& kc, double* total) {
    if (l.cp < 2) return 0.0;
    const double steps = static_cast<double>(l.cp - 1), cp = static_cast<double>(l.cp);
    const double send_fwd = net.time(Collective::send_recv, kv_chunk_bytes, cp_pair);
    const double send_bwd = net.time(Collective::send_recv, 2 * kv_chunk_bytes, cp_pair);
    double exposed = 0;
    for (const auto& o : kc.ops) {
      if (o.name.find("attn.flash") == std::string::npos || o.head) continue;
      const double send = o.phase == Phase::backward ? send_bwd : send_fwd;
      exposed += steps * std::max(0.0, send - o.time_s / cp);
      if (total) *total += steps * send;
    }
    return exposed;
  };
  // FSDP (torchtitan / PyTorch FSDP2): each layer is a unit (fully_shard per block) and the
  // rest of a stage (embedding, final norm, LM head) the root unit (fully_shard(model)). A unit's
  // bf16 parameters are all-gathered over the shard group (fsdp x cp GPUs: torchtitan shards over
  // dp_shard x cp; its ranks tp apart, tp innermost in torchtitan's mesh) and its gradients
  // reduce-scattered in fp32 (torchtitan's mixed_precision_reduce); with HSDP (fsdp < dp) each
  // shard's gradients are then all-reduced over the dp / fsdp replicas. FSDP2 runs them on their
  // own streams: the next unit's gather is prefetched during this unit's compute, and a unit's
  // reduce-scatter runs during the next unit's backward; only what a unit's communication exceeds
  // its compute is exposed (fsdp_exposed below).
  const int64_t shard = l.fsdp_on() ? l.fsdp * l.cp : 1;
  const CommGroup shard_group = strided_group(shard, l.tp, node);
  const int64_t replicas = l.fsdp_on() ? dp / l.fsdp : 1;
  const CommGroup replica_group = strided_group(replicas, l.tp * shard, node);
  auto gather = [&](double params) { return net.time(Collective::all_gather, params * kBytes16, shard_group); };
  auto scatter = [&](double params) {
    return net.time(Collective::reduce_scatter, params * 4, shard_group) +
           net.time(Collective::all_reduce, params * 4 / static_cast<double>(shard), replica_group);
  };
  std::vector<double> kind_compute, kind_backward, kind_forward, kind_ring, kind_cast, kind_a2a, kind_a2a_total, kind_tp;
  double ring_total_layer = 0;
  // A mixture of experts' token dispatch: each MoE layer sends this GPU's tokens (16-bit rows of
  // d) to the expert-parallel group and back, forward (dispatch, combine) and backward (their
  // gradients), twice more in a full recompute; not overlapped with compute unless
  // --ep-comm-overlap (ep_exposed below). By Layout::moe_dispatcher: alltoall, every routed copy
  // (k of them) as one all-to-all over the ep ranks, etp apart (Megatron Core's expert order
  // etp-ep-edp-pp: per_node of them share a node); flex, each token once a GPU and once a node
  // holding its experts (Network::dedup_all_to_all); allgather, an all-gather of the etp x ep
  // group's tokens and a reduce-scatter back (Megatron Core's MoEAllGatherTokenDispatcher, over
  // its tp-ep group, contiguous ranks).
  const double a2a_tokens = static_cast<double>(l.micro_batch) * local_seq / (sp ? static_cast<double>(l.tp) : 1.0);
  const double a2a_bytes = static_cast<double>(std::max<int64_t>(in.model.top_k, 1)) * a2a_tokens *
                           static_cast<double>(in.model.d_model) * kBytes16;
  const CommGroup ep_group = strided_group(l.ep, l.expert_tp(), node);
  const CommGroup gather_group = strided_group(l.ep * l.expert_tp(), 1, node);
  const double row_bytes = static_cast<double>(in.model.d_model) * kBytes16;
  const double a2a_one =
      l.moe_dispatcher == Dispatcher::flex
          ? net.dedup_all_to_all(a2a_tokens, row_bytes, in.model.n_experts, std::max<int64_t>(in.model.top_k, 1), ep_group)
      : l.moe_dispatcher == Dispatcher::allgather
          ? net.time(Collective::all_gather, static_cast<double>(gather_group.ranks) * a2a_tokens * row_bytes, gather_group)
          : net.all_to_all(a2a_bytes, ep_group);
  const double a2a_layer = (l.recompute == Recompute::full ? 6 : 4) * a2a_one;
  // --ep-comm-overlap (Megatron Core's --overlap-moe-expert-parallel-comm, combined 1F1B): in
  // each 1F1B step one micro-batch's forward and another's backward run merged layer by layer,
  // so a layer's forward all-to-alls (dispatch, combine) hide behind the other micro-batch's
  // backward of a layer and its backward all-to-alls behind the other's forward: exposed
  // max(0, 2 a2a - backward) + max(0, 2 a2a - forward), each layer paired with one of its own
  // kind. The warm-up forwards, and as many cool-down backwards, have no partner: w of the
  // stage's m vpp chunk passes, w = 1 without pipelining (the first forward) and on the first
  // stage 2 (pp - 1) + (vpp - 1) pp + 1 with interleaving (Megatron Core's num_warmup_microbatches,
  // one more for the overlap). The SMs NCCL takes from the overlapped compute are not modelled.
  const double unpaired =
      l.ep_comm_overlap
          ? std::min(1.0, static_cast<double>(l.pp == 1 ? 1 : 2 * (l.pp - 1) + (l.vpp - 1) * l.pp + 1) /
                              static_cast<double>(m * l.vpp))
          : 1.0;
  auto ep_exposed = [&](double forward, double backward) {
    if (!l.ep_comm_overlap) return a2a_layer;
    const double dir = 2 * a2a_one;
    return unpaired * a2a_layer +
           (1 - unpaired) * (std::max(0.0, dir - backward) + std::max(0.0, dir - forward));
  };
  // Activations from the layer graph's saved tensors, each kind of layer once (LayerCost::saved).
  std::vector<double> kind_saved;
  double working = 0;
  const double head_saved = c.saved.head;
  for (size_t k = 0; k < kinds.size(); ++k) {
    const LayerCost kc = k == 0 ? c : layer_cost(in.model, l, s, in.measured, k);
    kind_saved.push_back(kc.saved.layer);
    working = std::max(working, kc.saved.working);
    kind_compute.push_back(kc.layer_forward_s + kc.layer_backward_s + kc.layer_recompute_s);
    kind_forward.push_back(kc.layer_forward_s);
    kind_backward.push_back(kc.layer_backward_s + kc.layer_recompute_s);
    kind_ring.push_back(ring_exposed(kc, k == 0 ? &ring_total_layer : nullptr));
    kind_cast.push_back(kc.weight_cast_s);
    kind_tp.push_back(tp_exposed(kc));
    kind_a2a.push_back(kinds[k].spec.moe && in.model.moe() ? ep_exposed(kind_forward.back(), kind_backward.back()) : 0.0);
    kind_a2a_total.push_back(kinds[k].spec.moe && in.model.moe() ? a2a_layer : 0.0);
  }
  const double head_compute = c.head_forward_s + c.head_backward_s;
  auto kind_of = [&](int64_t j) {
    size_t k = 0;
    while (!(kinds[k].spec == schedule[static_cast<size_t>(j)])) ++k;
    return k;
  };
  // The root unit of stage i: the embedding (and learned positions) on the first stage, the final
  // norm and the LM head on the last (with pp 1 and tied embeddings the head is the embedding).
  auto fsdp_root = [&](size_t i) {
    const bool last_stage = i + 1 == p.split.size();
    return (i == 0 ? pc.vocab_matrix + position : 0) +
           (last_stage ? pc.head_norm + (l.pp == 1 && in.model.tied_embeddings ? 0 : pc.vocab_matrix) : 0);
  };
  // FSDP's collectives of stage i, in torchtitan's order (torchtitan/models/llama3/parallelize,
  // apply_fsdp). Forward: the root's gather, then each block's; the root's and the first block's
  // hide behind nothing (the embedding is a lookup), block j's is prefetched during block j-1's
  // forward. Backward without pipelining: the root stays unsharded (FSDP2 does not reshard the
  // root after forward) and so does the last block (torchtitan: reshard_after_forward off for
  // it); during block j's backward the stream gathers block j-1 again and reduce-scatters block
  // j+1's gradients; block 0's and the root's reduce-scatters come after the last backward. With
  // pipelining torchtitan keeps every block unsharded through the step (reshard_after_forward
  // off) and reduces the gradients once, in the last micro-batch's backward (gradient sync off
  // for the others): the same order with no gathers in the backward, once a step.
  auto fsdp_exposed = [&](size_t i) {
    int64_t from = 0;
    for (size_t q = 0; q < i; ++q) from += p.split[q];
    const int64_t n = p.split[i];
    auto kind = [&](int64_t j) { return kind_of(from + j); };
    auto unit = [&](int64_t j) { return kind_params[kind(j)]; };
    const double root = fsdp_root(i);
    FsdpTime t;
    t.exposed_s = gather(root) + gather(unit(0));
    t.total_s = t.exposed_s;
    for (int64_t j = 1; j < n; ++j) {
      t.exposed_s += std::max(0.0, gather(unit(j)) - kind_forward[kind(j - 1)]);
      t.total_s += gather(unit(j));
    }
    const bool regather = l.pp == 1;
    for (int64_t j = n - 1; j >= 0; --j) {
      const double comm = (regather && j > 0 ? gather(unit(j - 1)) : 0) + (j + 1 < n ? scatter(unit(j + 1)) : 0);
      t.exposed_s += std::max(0.0, comm - kind_backward[kind(j)]);
      t.total_s += comm;
    }
    t.exposed_s += scatter(unit(0)) + scatter(root);
    t.total_s += scatter(unit(0)) + scatter(root);
    return t;
  };
  double worst_key = -1, worst = 0, worst_compute = 0, worst_tp = 0, worst_backward = 0, worst_forward = 0, worst_ring = 0;
  double worst_fsdp = 0, worst_cast = 0, fsdp_step_exposed = 0, fsdp_step_total = 0, worst_a2a = 0, worst_a2a_total = 0;
  int64_t first_layer = 0;
  for (size_t i = 0; i < p.split.size(); ++i) {
    const std::vector<double> per_kind = kinds_in(first_layer, p.split[i]);
    first_layer += p.split[i];
    double compute = 0, backward = 0, forward = 0, ring = 0, cast = 0, tp = 0, a2a = 0, a2a_total = 0;
    for (size_t k = 0; k < kinds.size(); ++k) {
      compute += per_kind[k] * kind_compute[k];
      backward += per_kind[k] * kind_backward[k];
      forward += per_kind[k] * kind_forward[k];
      ring += per_kind[k] * kind_ring[k];
      tp += per_kind[k] * kind_tp[k];
      a2a += per_kind[k] * kind_a2a[k];
      a2a_total += per_kind[k] * kind_a2a_total[k];
      cast += per_kind[k] * kind_cast[k];
    }
    if (i == 0) tp += tp_first;
    if (i + 1 == p.split.size()) {
      compute += head_compute;
      tp += tp_last;
    }
    tp += ring + a2a;
    // FSDP without pipelining: every micro-batch gathers and scatters each unit (its exposed part).
    const FsdpTime fsdp = l.fsdp_on() ? fsdp_exposed(i) : FsdpTime{};
    const double per_micro_batch_fsdp = l.pp == 1 ? fsdp.exposed_s : 0;
    // fp8 weight casts: once a step with Megatron-LM / TE (cached copies); FSDP gathers bf16
    // weights every micro-batch and casts them again.
    const double cast_mb = l.fsdp_on() ? cast : 0;
    if (compute + cast_mb + tp + per_micro_batch_fsdp > worst_key) {
      worst_key = compute + cast_mb + tp + per_micro_batch_fsdp;
      worst = compute + cast_mb + tp;
      worst_compute = compute + cast_mb;
      worst_tp = tp;
      worst_backward = backward;
      worst_forward = forward;
      worst_ring = ring;
      worst_a2a = a2a;
      worst_a2a_total = a2a_total;
      worst_fsdp = per_micro_batch_fsdp;
      worst_cast = l.fsdp_on() ? 0 : cast;
    }
    fsdp_step_exposed = std::max(fsdp_step_exposed, fsdp.exposed_s);
    fsdp_step_total = std::max(fsdp_step_total, fsdp.total_s);
  }
  // Pipeline: each micro-batch crosses each of a stage's vpp chunk boundaries forward and
  // backward; the activation goes split over the tp ranks (Megatron-LM's scatter-gather).
  const CommGroup pp_pair{2, l.gpus > node ? 1 : 2};
  const double p2p = l.pp > 1 ? 2 * static_cast<double>(l.vpp) *
                                    net.time(Collective::send_recv, act_bytes / static_cast<double>(l.tp), pp_pair)
                              : 0;
  p.stage_time_s = worst + p2p;
  Breakdown& b = p.breakdown;
  const double md = static_cast<double>(m);
  b.compute_s = md * worst_compute + worst_cast;
  b.fp8_weight_cast_s = worst_cast;
  b.ep_comm_s = md * worst_a2a;
  b.ep_comm_total_s = md * worst_a2a_total;
  b.tp_comm_s = md * (worst_tp - worst_a2a);  // with the ring's exposed part
  b.cp_comm_s = md * worst_ring;
  b.cp_comm_total_s = md * ring_total_layer * static_cast<double>(p.split.front());
  b.pp_comm_s = md * p2p;
  b.bubble_s = static_cast<double>(l.pp - 1) / static_cast<double>(l.vpp) * p.stage_time_s;

  const double available = s.hbm_bytes - s.memory_reserved_bytes;
  // FSDP's unsharded working set, bytes. Without pipelining: the root unit (never resharded
  // after forward) and two blocks (the one in use and the one prefetched; the largest kind
  // twice), each with its bf16 parameters and, in backward, its bf16 unsharded gradients before
  // the reduce-scatter: 4 bytes a parameter. With pipelining torchtitan keeps the whole stage
  // unsharded through the step: bf16 parameters (2) and the unsharded gradients, accumulated over
  // the micro-batches without reduction in FSDP2's reduce dtype, fp32 (4; bf16, 2, with one
  // micro-batch).
  const double largest_kind = *std::max_element(kind_params.begin(), kind_params.end());
  auto unsharded = [&](double on_stage, size_t stage) {
    if (!l.fsdp_on()) return 0.0;
    if (l.pp == 1) return 4 * (fsdp_root(stage) + 2 * largest_kind);
    return on_stage * (2 + (m > 1 ? 4 : 2));
  };
  // Megatron-LM / TE keep each weight's fp8 copies; FSDP gathers bf16 and casts on the fly.
  auto fp8_kept = [&](int64_t from, int64_t n) { return l.fsdp_on() ? 0.0 : stage_fp8(from, n); };
  const double first_experts = stage_experts(0, p.split.front()),
               last_experts = stage_experts(in.model.n_layers - p.split.back(), p.split.back());
  // A stage keeps its layers' (their mean a layer here) and once the LM head's (the last stage)
  // and, with full recompute, the working set of the layer being recomputed.
  auto stage_activations = [&](int64_t from, int64_t n, bool last_stage) {
    StageActivations a;
    a.per_layer = stage_sum(kind_saved, from, n) / static_cast<double>(n);
    a.once = working + (last_stage ? head_saved : 0);
    return a;
  };
  const StageActivations act_first = stage_activations(0, p.split.front(), l.pp == 1);
  const StageActivations act_last = stage_activations(in.model.n_layers - p.split.back(), p.split.back(), true);
  const MemoryBreakdown mem_first = memory_per_gpu(first, p.split.front(), in.model, l, available,
                                                   fp8_kept(0, p.split.front()), unsharded(first, 0), first_experts,
                                                   &act_first);
  const MemoryBreakdown mem_last =
      memory_per_gpu(last, p.split.back(), in.model, l, available,
                     fp8_kept(in.model.n_layers - p.split.back(), p.split.back()), unsharded(last, p.split.size() - 1),
                     last_experts, &act_last);
  p.memory = mem_first.total_bytes >= mem_last.total_bytes ? mem_first : mem_last;
  const double params_gpu = std::max(first, last);
  const double experts_gpu = first >= last ? first_experts : last_experts;

  // Data parallel: the 16-bit gradients all-reduced (reduce-scattered, then the weights
  // all-gathered, with the distributed optimizer) over dp x cp GPUs (context-parallel ranks hold
  // different tokens of the same sequences: their gradients are summed too); the group's ranks
  // are tp apart in Megatron-LM's order, so it spans tp x cp x dp GPUs.
  // A mixture of experts' routed experts are reduced over their edp expert-data-parallel ranks
  // instead (etp ep apart: across the stage's tp x cp x dp GPUs), the rest as above.
  const int64_t dp_group = dp * l.cp;
  const CommGroup dp_ranks = strided_group(dp_group, l.tp, node);
  const double grad_bytes = params_gpu * kBytes16;
  const double dense_grad_bytes = (params_gpu - experts_gpu) * kBytes16, expert_grad_bytes = experts_gpu * kBytes16;
  const int64_t edp = l.edp();
  // edp ranks are ep x etp apart inside the stage's tp x cp x dp GPUs.
  const CommGroup edp_ranks = strided_group(edp, std::max<int64_t>(l.tp * l.cp * dp / std::max<int64_t>(edp, 1), 1), node);
  if (!l.fsdp_on()) {
    // The gradients' reduction (a reduce-scatter with the distributed optimizer, else an
    // all-reduce) and the parameters' all-gather, each a chunk at a time (exposed_past_chunks).
    const Collective grad_op = l.distributed_optimizer ? Collective::reduce_scatter : Collective::all_reduce;
    const double reduce_s = net.time(grad_op, dense_grad_bytes, dp_ranks) + net.time(grad_op, expert_grad_bytes, edp_ranks);
    const double gather_s = l.distributed_optimizer ? net.time(Collective::all_gather, dense_grad_bytes, dp_ranks) +
                                                          net.time(Collective::all_gather, expert_grad_bytes, edp_ranks)
                                                    : 0.0;
    b.dp_comm_total_s = reduce_s + gather_s;
    b.dp_comm_s = l.dp_overlap ? exposed_past_chunks(reduce_s, worst_backward, l.vpp, l.pp) +
                                     exposed_past_chunks(gather_s, worst_forward, l.vpp, l.pp)
                               : b.dp_comm_total_s;
  } else {
    // FSDP (fsdp_exposed above): without pipelining every micro-batch's gathers and scatters
    // (the exposed part a micro-batch, worst_fsdp); with pipelining once a step, the slowest
    // stage's. HSDP's all-reduce over the replicas is in each unit's scatter.
    b.dp_comm_total_s = l.pp == 1 ? md * fsdp_step_total : fsdp_step_total;
    b.dp_comm_s = l.pp == 1 ? md * worst_fsdp : fsdp_step_exposed;
  }
  // The optimizer's share of the parameters: FSDP shards, the distributed optimizer splits over dp x cp.
  const double opt_params = l.fsdp_on()                  ? params_gpu / static_cast<double>(shard)
                            : l.distributed_optimizer ? (params_gpu - experts_gpu) / static_cast<double>(dp_group) +
                                                            experts_gpu / static_cast<double>(edp)
                                                      : params_gpu;
  b.optimizer_s = opt_params * kOptimizerBytesPerParameter / (s.hbm_bytes_per_s * s.memory_efficiency);

  p.step_time_s = md * p.stage_time_s + b.bubble_s + b.dp_comm_s + b.optimizer_s + worst_cast;

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
    // Selective with FSDP: torchtitan's op-level checkpointing re-runs every second mm.
    const bool op_sac = l.fsdp_on() && l.recompute == Recompute::selective;
    const std::vector<double> sac = op_sac ? torchtitan_op_sac(gfull, in.model, l.attention == Attention::flash)
                                           : std::vector<double>{};
    for (size_t oi = 0; oi < gfull.ops.size(); ++oi) {
      const Op& op = gfull.ops[oi];
      if (op.impl != OpImpl::gemm) continue;
      if (op_sac && op.phase == Phase::recompute && op.gemm.linear) extra += sac[oi] * op.flops;
      const bool core = op.attention_core;
      if (l.attention == Attention::flash) {
        if (core && op.phase == Phase::forward && op.gemm.triangle == Triangle::c_lower)
          extra += op.flops;  // the scores, recomputed in flash's backward
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
  p.notes.push_back(fmt::format("tensor parallel: {} collectives of {:.3g} MB a layer and micro-batch, {} on {}, {}",
                                collectives_per_layer, act_bytes / 1e6, sp ? "reduce-scatter + all-gather" : "all-reduce",
                                net.source(sp ? Collective::reduce_scatter : Collective::all_reduce, tp_group),
                                tp_overlap ? fmt::format("overlapped with the layer's tensor-parallel GEMMs (userbuffers, async TP): "
                                                         "{:.3g} of {:.3g} ms a layer exposed",
                                                         kind_tp.front() * 1e3, tp_layer * 1e3)
                                           : "not overlapped with compute"));
  if (l.pp > 1)
    p.notes.push_back(fmt::format("pipeline: 1F1B{}, bubble (pp - 1) / (vpp m) = {:.4f} of the ideal time; sends of "
                                  "{:.3g} MB on {}, blocking",
                                  l.vpp > 1 ? " interleaved" : "",
                                  static_cast<double>(l.pp - 1) / static_cast<double>(l.vpp * m),
                                  act_bytes / static_cast<double>(l.tp) / 1e6, net.source(Collective::send_recv, pp_pair)));
  if (l.fsdp_on())
    p.notes.push_back(fmt::format(
        "FSDP (torchtitan / FSDP2): {:.3g} GB of bf16 parameters all-gathered and their fp32 gradients "
        "reduce-scattered over {} GPUs on {}{}, {}; {:.3g} s of it, {:.3g} s exposed (prefetch behind each block's compute)",
        params_gpu * kBytes16 / 1e9, shard, net.source(Collective::all_gather, shard_group),
        replicas > 1 ? fmt::format(", all-reduced over {} replicas (HSDP)", replicas) : "",
        l.pp == 1 ? "gathered for forward and again for backward every micro-batch" : "once a step (pipelined: the stage kept unsharded)",
        b.dp_comm_total_s, b.dp_comm_s));
  else if (dp > 1)
    p.notes.push_back(fmt::format("data parallel: {:.3g} GB of gradients, {} over {} GPUs on {}; {}",
                                  grad_bytes / 1e9, l.distributed_optimizer ? "reduce-scatter + all-gather" : "all-reduce",
                                  dp_group, net.source(Collective::all_reduce, dp_ranks),
                                  l.dp_overlap ? fmt::format("a model chunk at a time, the reduction behind the backward and "
                                                             "the all-gather behind the next forward; {:.3g} s of {:.3g} s exposed",
                                                             b.dp_comm_s, b.dp_comm_total_s)
                                               : "not overlapped"));
  std::string dispatch;
  if (l.moe_dispatcher == Dispatcher::flex)
    dispatch = fmt::format("flex dispatch and combine (DeepEP, HybridEP: each of this GPU's {} tokens once to each GPU, "
                           "and once to each node, holding one of its top-{} experts, {:.3g} ms each)",
                           a2a_tokens, in.model.top_k, a2a_one * 1e3);
  else if (l.moe_dispatcher == Dispatcher::allgather)
    dispatch = fmt::format("allgather dispatch (the {} GPUs' {} tokens each, {:.3g} MB gathered) and reduce-scatter back",
                           gather_group.ranks, a2a_tokens,
                           static_cast<double>(gather_group.ranks) * a2a_tokens * row_bytes / 1e6);
  else
    dispatch = fmt::format("all-to-all of {:.3g} MB ({} of this GPU's tokens x top-{})", a2a_bytes / 1e6, a2a_tokens,
                           in.model.top_k);
  if (in.model.moe())
    p.notes.push_back(fmt::format(
        "mixture of experts: {} experts over ep {} (etp {}, edp {}); each MoE layer's {} {} times a micro-batch on {}, "
        "{}; the expert GEMMs as grouped GEMMs of "
        "{} local experts at the GEMM efficiency, x load imbalance {}{}; expert gradients reduced over edp",
        in.model.n_experts, l.ep, l.expert_tp(), edp, dispatch,
        l.recompute == Recompute::full ? 6 : 4, l.ep * l.expert_tp() > node ? "NVLink and the network" : "NVLink",
        l.ep_comm_overlap
            ? fmt::format("overlapped with another micro-batch's compute (--overlap-moe-expert-parallel-comm; {:.3g} of "
                          "the {:.3g} chunk passes unpaired): {:.3g} s of {:.3g} s exposed",
                          unpaired * static_cast<double>(m * l.vpp), static_cast<double>(m * l.vpp), b.ep_comm_s,
                          b.ep_comm_total_s)
            : "not overlapped",
        in.model.n_experts / l.ep, routed_imbalance(in.model, l),
        in.model.capacity_factor > 0
            ? fmt::format(" (the stated {:g}, capped by the capacity factor {:g}: tokens past it dropped)", l.moe_imbalance,
                          in.model.capacity_factor)
            : " (stated)"));
  if (l.fsdp_on())
    p.notes.push_back(fmt::format(
        "torchtitan's model {}; attention as PyTorch's scaled_dot_product_attention (FlashAttention-2) at {} of the "
        "peak (sdpa_efficiency)",
        l.torch_compile ? "under torch.compile: each block's norms, RoPE and SwiGLU fused, one pass each; the final "
                          "norm and the loss eager (torchtitan compiles the blocks)"
                        : "eager (no torch.compile): its norms, RoPE, SwiGLU and loss as PyTorch's separate kernels, "
                          "fp32 where it upcasts (compute.hpp, eager_bytes_factor)",
        s.sdpa_efficiency));
  else if (l.torch_compile)
    p.notes.push_back("torch.compile: no effect here (it applies to FSDP layouts, torchtitan's; Megatron-LM's kernels "
                      "are fused without it)");
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
            {"optimizer_s", b.optimizer_s},
            {"ep_comm_s", b.ep_comm_s},
            {"ep_comm_total_s", b.ep_comm_total_s},
            {"cp_comm_s", b.cp_comm_s},
            {"cp_comm_total_s", b.cp_comm_total_s},
            {"fp8_weight_cast_s", b.fp8_weight_cast_s}}},
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
