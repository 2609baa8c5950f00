#include "predict/compute.hpp"

#include <algorithm>
#include <cmath>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "util/atomic_file.hpp"
#include "util/error.hpp"

namespace flopscope::predict {

using nlohmann::json;

namespace {

constexpr double kBytes16 = 2;  // bf16 / fp16 activations and weights

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The attention core (Op::attention_core): the ops flash attention fuses and selective
// recompute re-runs.
bool is_attention_core(const Op& op) { return op.attention_core && op.group == Group::layer; }

using Dim = LayerGraph::Dim;

struct Sharded {
  int64_t m = 0, n = 0, k = 0, batch = 1;  // GEMMs
  double fraction = 1;                     // of the op's work done by one GPU
};

// One GPU's share of a routed experts' grouped GEMM (Megatron Core's expert parallelism): the
// E / ep experts it holds, each of d_ff_expert / etp, each with the rows the ep group's
// all-to-all brings it, k T ep etp / (tp E) on average (T this GPU's tokens of a tp group's
// micro-batch), so its work is the op's / tp as every other GEMM's. The grouped dimension
int64_t* dim_of(Sharded& s, Dim d) {
  switch (d) {
    case Dim::m: return &s.m;
    case Dim::n: return &s.n;
    case Dim::k: return &s.k;
    case Dim::none: break;
  }
  return nullptr;
}

// (m: forward, dgrad; k: wgrad) is those rows; each expert's width (the dimension its weight's
// split names, LayerGraph::split_dim) is split over etp.
Sharded shard_grouped(const LayerGraph& g, const Op& op, const Layout& l) {
  const GemmSpec& gs = op.gemm;
  const int64_t ep = l.ep, etp = l.expert_tp(), E = gs.batch;
  const int64_t total = gs.grouped == Grouped::m_rows ? gs.m : gs.k;
  const int64_t rows = std::max<int64_t>(1, total * ep * etp / (l.tp * E));
  Sharded s{gs.m, gs.n, gs.k, E / ep, 1.0 / static_cast<double>(l.tp)};
  *dim_of(s, gs.grouped == Grouped::m_rows ? Dim::m : Dim::k) = rows;
  if (int64_t* width = dim_of(s, g.split_dim(gs))) *width = std::max<int64_t>(1, *width / etp);
  return s;
}

// One GPU's share of a GEMM of the full-width graph: the dimension its weight's split divides
// (TensorSpec::split; a vocabulary smaller than tp: one column each), or for a replicated
// weight the tokens under sequence parallelism and all of it without.
Sharded shard_gemm(const LayerGraph& g, const Op& op, const Layout& l) {
  const GemmSpec& gs = op.gemm;
  Sharded s{gs.m, gs.n, gs.k, gs.batch, 1.0 / static_cast<double>(l.tp)};
  if (!gs.linear) {
    s.batch = gs.batch / l.tp;  // attention: (b heads) batches, heads split
    return s;
  }
  int64_t* split = dim_of(s, g.split_dim(gs));
  if (!split && l.sequence_parallel) split = dim_of(s, g.token_dim(gs));
  if (split)
    *split = std::max<int64_t>(1, *split / l.tp);
  else
    s.fraction = 1;
  return s;
}

// One GPU's share of a non-GEMM op (Op::split). The ops on a mixture of experts' dispatched
// rows (Op::routed): each rank has the rows of its etp group's tokens (k T etp / tp on
// average), each expert's width split over etp, so 1 / tp of the work over that width and
// etp / tp over d.
double shard_fraction(const Op& op, const Layout& l) {
  const double tp = static_cast<double>(l.tp);
  if (op.routed) return op.split == OpSplit::features ? 1 / tp : static_cast<double>(l.expert_tp()) / tp;
  switch (op.split) {
    case OpSplit::features: return 1 / tp;
    case OpSplit::sequence: return l.sequence_parallel ? 1 / tp : 1.0;  // repeated, or split along s
    case OpSplit::replicated: return 1.0;
  }
  return 1 / tp;
}

double gemm_time(double flops, double bytes, double peak_flops, double eff, const SystemProfile& s, std::string& bound) {
  const double tc = flops / (peak_flops * eff);
  const double tm = bytes / (s.hbm_bytes_per_s * s.memory_efficiency);
  bound = tc >= tm ? "compute" : "memory";
  return std::max(tc, tm);
}

// The graph predict costs a layer on: full width, one micro-batch with the LM head, the
// recompute ops when the layout recomputes. 2-byte activations; fp8: the graph's fp8 lowering
// (src/graph/fp8.cpp) gives the layer's linear GEMMs fp8 operands and the cast_fp8 ops that make
// them, as Transformer Engine runs them; the attention core and the LM head stay bf16. Context
// parallel: this GPU's seq / cp tokens of each sequence (the linear layers, norms and head); its
// share of the attention square is set in layer_cost.
LayerGraph predict_graph(const ModelConfig& m, const Layout& l, size_t kind) {
  GraphOptions go;
  go.precision = l.precision == "fp8" ? Precision::fp8 : Precision::bf16;
  go.include_head = true;
  go.recompute = l.recompute != Recompute::none;
  return build_layer_graph(layer_shape(m, l.micro_batch, l.seq / l.cp, kind), go);
}

SavedActivations saved_from(const LayerGraph& g, const ModelConfig& m, const Layout& l, size_t kind);  // below

}  // namespace

std::vector<double> torchtitan_op_sac(const LayerGraph& g, const ModelConfig& m, bool flash) {
  std::vector<double> keep(g.ops.size(), 0.0);
  int64_t mm = 0;              // torchtitan's forward mm count
  size_t last_pointwise = g.ops.size();
  for (size_t i = 0; i < g.ops.size(); ++i) {
    const Op& op = g.ops[i];
    if (op.phase != Phase::recompute || op.group != Group::layer) continue;
    if (is_attention_core(op)) {
      keep[i] = flash ? 0.0 : 1.0;  // flash's output is saved (in _save_list); an unfused core is recomputed
      continue;
    }
    if (op.impl == OpImpl::gemm && op.gemm.linear) {
      if (g.gemm_weight(op.gemm).name == "w.qkv") {  // its B, or under fp8 the source of B's copy
        // The graph's fused QKV is torchtitan's wq, wk, wv: three mms of widths q, kv, kv.
        const double q = static_cast<double>(m.q_dim()), kv = static_cast<double>(m.kv_dim());
        double again = 0;
        for (double w : {q, kv, kv}) again += (++mm % 2 == 0) ? w : 0;
        keep[i] = again / (q + 2 * kv);
      } else {
        keep[i] = (++mm % 2 == 0) ? 1.0 : 0.0;
      }
      continue;
    }
    keep[i] = 1.0;  // norms, activations, residual adds: not in _save_list
    last_pointwise = i;
  }
  // The layer's last op (the residual add giving its output, the next checkpoint's input) is not
  // needed by its own backward: not recomputed.
  if (last_pointwise < g.ops.size() && g.ops[last_pointwise].impl != OpImpl::gemm) {
    bool last = true;
    for (size_t i = last_pointwise + 1; i < g.ops.size(); ++i)
      last = last && !(g.ops[i].phase == Phase::recompute && g.ops[i].group == Group::layer);
    if (last) keep[last_pointwise] = 0.0;
  }
  return keep;
}

double quantisation_efficiency(int64_t m, int64_t n, int64_t batch, const SystemProfile& s) {
  // A matrix-vector product (an output of at most kGemvWidth columns or rows: Qwen2-MoE's shared
  // gate, T x 1 x d, and its gradients) runs no tensor-core tiles (cuBLAS takes a GEMV or split-K
  // kernel; assumed, not measured), so tiles do not quantise it; at these shapes it is memory
  // bound (gemm_time).
  if (std::min(m, n) <= kGemvWidth) return 1.0;
  // The tile in either orientation (tm x tn or tn x tm), whichever wastes less: cuBLAS's
  // heuristics choose among both.
  auto eff = [&](int64_t tm, int64_t tn) {
    const int64_t tiles = ceil_div(m, tm) * ceil_div(n, tn) * batch;
    const int64_t waves = ceil_div(tiles, s.sm_count);
    const double useful = static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(batch);
    const double issued = static_cast<double>(waves) * static_cast<double>(s.sm_count) * static_cast<double>(tm) *
                          static_cast<double>(tn);
    return std::min(1.0, useful / issued);
  };
  return std::max(eff(s.gemm_tile_m, s.gemm_tile_n), eff(s.gemm_tile_n, s.gemm_tile_m));
}

MeasuredOps measured_ops_from_file(const std::string& path) {
  const std::string text = read_file(path);
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw UsageError(fmt::format("--from-measure {}: not valid JSON ({})", path, e.what()));
  }
  if (!j.is_object() || j.value("command", "") != "measure" || !j.contains("ops") || !j.at("ops").is_array())
    throw UsageError(fmt::format("--from-measure {}: not a `flopscope measure --format json` result", path));
  MeasuredOps m;
  m.file = path;
  try {
    if (j.contains("backend")) m.device = j.at("backend").value("device_line", "");
    for (const auto& o : j.at("ops")) {
      if (!o.contains("time_ms") || !o.at("time_ms").contains("median")) continue;
      MeasuredOps::Entry e;
      e.time_s = o.at("time_ms").at("median").get<double>() * 1e-3;
      // The FLOPs the timed op ran: counted where the backend counted them (a capacity factor's
      // grouped GEMMs run only the kept rows, fewer than the analytic k T), else analytic. The
      // time over them is the efficiency reached; the busiest expert's share (routed_imbalance)
      // is applied once, when the op is costed.
      const json& counted = o.contains("counted_flops") ? o.at("counted_flops") : json();
      e.flops = counted.is_number() && counted.get<double>() > 0 ? counted.get<double>() : o.at("flops").get<double>();
      e.bytes = o.at("min_bytes").get<double>();
      const auto kind = o.at("kind").get<std::string>();
      e.gemm = kind == "gemm" || kind == "batched_gemm";
      if (e.time_s > 0 && (e.gemm ? e.flops : e.bytes) > 0) m.ops[o.at("name").get<std::string>()] = e;
    }
  } catch (const json::exception& e) {
    throw UsageError(fmt::format("--from-measure {}: malformed measure result ({})", path, e.what()));
  }
  if (m.ops.empty()) throw UsageError(fmt::format("--from-measure {}: no timed ops in the result", path));
  return m;
}

double eager_bytes_factor(OpImpl impl) {
  switch (impl) {
    case OpImpl::rmsnorm_fwd: return 36.0 / 4;
    case OpImpl::rmsnorm_bwd: return 64.0 / 6;
    case OpImpl::rope_fwd:
    case OpImpl::rope_bwd: return 20.0 / 4;
    case OpImpl::swiglu_fwd: return 10.0 / 6;
    case OpImpl::swiglu_bwd: return 18.0 / 10;
    case OpImpl::cross_entropy_fwd: return 22.0 / 2;
    case OpImpl::cross_entropy_bwd: return 26.0 / 4;
    default: return 1.0;
  }
}

double routed_imbalance(const ModelConfig& m, const Layout& l) {
  return m.capacity_factor > 0 ? std::min(l.moe_imbalance, m.capacity_factor) : l.moe_imbalance;
}

LayerCost layer_cost(const ModelConfig& m, const Layout& l, const SystemProfile& s, const MeasuredOps* measured,
                     size_t kind) {
  const bool flash = l.attention == Attention::flash;
  const bool fp8 = l.precision == "fp8";
  const LayerGraph g = predict_graph(m, l, kind);
  const double cp = static_cast<double>(l.cp);
  const LayerShape& shape = g.shape;
  const double peak16 = s.peak_tflops(fp8 ? "bf16" : l.precision) * 1e12;
  const double peak8 = s.peak_tflops("fp8") * 1e12;
  const double tp = static_cast<double>(l.tp);

  LayerCost out;
  auto add = [&](OpCost c) {
    if (c.source == "measured") ++out.measured_ops;
    else ++out.modelled_ops;
    // A modelled kernel takes at least the profile's floor (its launch and tail); fused bias adds
    // are no kernel of their own.
    if (c.source == "modelled" && c.bound != "fused" && c.time_s < s.kernel_floor_s) {
      c.time_s = s.kernel_floor_s;
      c.bound = "launch";
    }
    const double t = c.time_s;
    if (c.per_step) out.weight_cast_s += t;
    else if (c.head) (c.phase == Phase::forward ? out.head_forward_s : out.head_backward_s) += t;
    else if (c.phase == Phase::forward) out.layer_forward_s += t;
    else if (c.phase == Phase::backward) out.layer_backward_s += t;
    else out.layer_recompute_s += t;
    (c.head ? out.head_flops : out.layer_flops) += c.flops;
    out.ops.push_back(std::move(c));
  };

  // Flash attention: one fused kernel a direction in place of the attention core's ops.
  double flash_fwd_flops = 0, flash_bwd_flops = 0;
  if (flash) {
    for (const auto& op : g.ops) {
      if (!is_attention_core(op) || op.impl != OpImpl::gemm) continue;
      // Ring attention balances the causal square (rank i holds chunks i and 2 cp - 1 - i): each
      // rank does 1 / cp of the full square, cp times the causal square of its own seq / cp tokens.
      if (op.phase == Phase::forward) {
        flash_fwd_flops += op.model_flops * cp / tp;
        if (op.gemm.triangle == Triangle::c_lower) flash_bwd_flops += op.model_flops * cp / tp;  // the scores, recomputed in the backward
      } else if (op.phase == Phase::backward) {
        flash_bwd_flops += op.model_flops * cp / tp;
      }
    }
  }
  // The fused kernel's bytes: Q, K and V (the graph's qkv tensor, (T, (g + 2) h_kv d_head): under
  // grouped-query attention narrower than 3 d) read, the context (T, h d_head) written; backward
  // reads Q, K, V, the context and its gradient and writes the gradients of Q, K and V.
  // With cp > 1 the kernel also reads the cp - 1 K and V chunks the ring brings (backward: and
  // their gradients).
  const double kv_w = 2 * static_cast<double>(m.kv_dim()) * (cp - 1);
  const double T = static_cast<double>(shape.tokens()), qkv_w = static_cast<double>(g.tensor("qkv").shape.at(1)),
               d = static_cast<double>(g.tensor("ctx").shape.at(1));
  auto flash_op = [&](const std::string& name, Phase phase, double flops, double elems) {
    OpCost c;
    c.name = name;
    c.phase = phase;
    c.flops = flops;
    c.bytes = elems * kBytes16 / tp;
    c.shape = fmt::format("{}x[{}x{}x{}] causal", shape.batch * shape.n_heads / l.tp, shape.seq, shape.seq, shape.d_head);
    // FSDP layouts are torchtitan's: PyTorch's scaled_dot_product_attention (FlashAttention-2).
    c.time_s = gemm_time(c.flops, c.bytes, peak16, l.fsdp_on() ? s.sdpa_efficiency : s.gemm_efficiency, s, c.bound);
    c.source = "modelled";
    return c;
  };

  // Selective recompute with FSDP is torchtitan's op-level selective checkpointing.
  const bool op_sac = l.fsdp_on() && l.recompute == Recompute::selective;
  // torchtitan (FSDP): an op runs as PyTorch's separate kernels (eager_bytes_factor) unless
  // torch.compile took its transformer block (torchtitan's apply_compile); the final norm and the
  // loss stay eager.
  auto eager = [&](const Op& op) { return l.fsdp_on() && (!l.torch_compile || op.group == Group::head); };
  const std::vector<double> sac = op_sac ? torchtitan_op_sac(g, m, flash) : std::vector<double>{};
  bool fused[3] = {false, false, false};  // a phase's fused kernel placed
  for (size_t oi = 0; oi < g.ops.size(); ++oi) {
    const Op& op = g.ops[oi];
    const bool head = op.group == Group::head;
    if (op.phase == Phase::recompute) {
      if (op_sac && sac[oi] == 0) continue;
      if (!op_sac && l.recompute == Recompute::selective && (flash || !is_attention_core(op))) continue;
    }
    if (flash && is_attention_core(op)) {
      // The fused kernel stands in once a phase, where the core's first op was.
      bool& placed = fused[static_cast<int>(op.phase)];
      if (!placed) {
        placed = true;
        if (op.phase == Phase::backward)
          add(flash_op("bwd.attn.flash", Phase::backward, flash_bwd_flops, T * (2 * qkv_w + 2 * d + 2 * kv_w)));
        else
          add(flash_op(op.phase == Phase::forward ? "fwd.attn.flash" : "rec.attn.flash", op.phase, flash_fwd_flops,
                       T * (qkv_w + d + kv_w)));
      }
      continue;
    }
    OpCost c;
    c.name = op.name;
    c.phase = op.phase;
    c.head = head;
    double fraction = 1;
    // A mixture of experts' routed experts: their GEMMs and the ops on the dispatched rows wait for
    // the busiest expert-parallel rank (Layout::moe_imbalance), which a capacity factor caps: an
    // expert takes at most capacity_factor x the balanced router's k T / E rows and drops the rest
    // (Megatron-LM's --moe-expert-capacity-factor), so the busiest runs min(imbalance, factor) x
    // the mean.
    const double imbalance = op.routed ? routed_imbalance(m, l) : 1.0;
    if (op.impl == OpImpl::gemm) {
      const Sharded sh = op.gemm.grouped != Grouped::none ? shard_grouped(g, op, l) : shard_gemm(g, op, l);
      fraction = sh.fraction;
      c.flops = op.flops * fraction;
      // fp8 GEMMs read 1-byte operands and write a 16-bit output.
      const bool gemm8 = op.precision == Precision::fp8;
      const double operand_bytes = gemm8 ? 1 : kBytes16;
      c.bytes = ((static_cast<double>(sh.m) * sh.k + static_cast<double>(sh.k) * sh.n) * operand_bytes +
                 static_cast<double>(sh.m) * sh.n * (op.gemm.beta != 0 ? 2 : 1) * kBytes16) *
                static_cast<double>(sh.batch);
      c.shape = sh.batch > 1 ? fmt::format("{}x[{}x{}x{}]", sh.batch, sh.m, sh.n, sh.k) : fmt::format("{}x{}x{}", sh.m, sh.n, sh.k);
      if (op.gemm.grouped != Grouped::none) c.shape = fmt::format("grouped({}):{}x{}x{}", sh.batch, sh.m, sh.n, sh.k);
      if (gemm8) c.shape += " fp8";
      const double eff = (gemm8 ? s.fp8_gemm_efficiency : s.gemm_efficiency) * quantisation_efficiency(sh.m, sh.n, sh.batch, s);
      c.time_s = gemm_time(c.flops, c.bytes, gemm8 ? peak8 : peak16, eff, s, c.bound) * imbalance;
      c.tp_gemm = op.gemm.linear && !op.routed && !head && g.split_dim(op.gemm) != Dim::none;
    } else {
      // A weight's fp8 copy is of this GPU's shard; Transformer Engine makes it once a step (on
      // the first micro-batch, Megatron-LM's is_first_microbatch) and keeps it.
      const TensorSpec* cast = op.impl == OpImpl::cast_fp8 ? &g.tensor(op.inputs.at(0)) : nullptr;
      const bool weight_cast = cast && cast->role == TensorRole::weight;
      fraction = !weight_cast ? shard_fraction(op, l)
                 : cast->expert ? 1 / static_cast<double>(l.ep * l.expert_tp())
                 : cast->split == WeightSplit::replicated ? 1.0
                                                          : 1 / tp;
      c.per_step = weight_cast;
      c.flops = op.flops * fraction;
      c.bytes = op.min_bytes * fraction * (eager(op) ? eager_bytes_factor(op.impl) : 1.0);
      c.shape = op.shape_str() + (fraction < 1 ? fmt::format(" / {}", l.tp) : "");
      if (op.impl == OpImpl::bias_add) {
        c.bound = "fused";
        c.time_s = 0;
      } else {
        c.bound = "memory";
        c.time_s = c.bytes / (s.hbm_bytes_per_s * s.memory_efficiency) * imbalance;
      }
    }
    c.source = "modelled";
    if (measured) {
      // The measured op's time at the efficiency it reached, scaled to this op's work.
      const std::string key = op.phase == Phase::recompute ? "fwd" + op.name.substr(3) : op.name;
      const auto it = measured->ops.find(key);
      if (it != measured->ops.end() && c.bound != "fused") {
        const auto& e = it->second;
        const double full = op.impl == OpImpl::gemm ? op.flops : op.min_bytes;  // this op, unsharded
        const double ours = full * fraction;
        const double theirs = e.gemm ? e.flops : e.bytes;
        c.time_s = e.time_s * ours / theirs * imbalance;
        c.source = "measured";
        c.bound = e.gemm ? "measured, scaled by FLOPs" : "measured, scaled by bytes";
      }
    }
    const bool softmax = op.impl == OpImpl::softmax_causal_fwd || op.impl == OpImpl::softmax_causal_bwd;
    if (op_sac && op.phase == Phase::recompute && sac[oi] < 1) {  // torchtitan re-runs only wk of the fused QKV
      c.flops *= sac[oi];
      c.bytes *= sac[oi];
      c.time_s *= sac[oi];
      c.shape += fmt::format(" x {:.3g} (torchtitan's op-level checkpointing: the mms it does not save)", sac[oi]);
    }
    add(std::move(c));
    // Megatron-LM's attention dropout on the probabilities (not an op of the layer graph, which
    // has no dropout): forward reads the probabilities (2 bytes an element) and writes the
    // dropped ones (2) and the mask (1); backward reads the gradient and the mask and writes (5).
    if (softmax && !head) {
      OpCost dr;
      dr.name = op.name.substr(0, op.name.size() - std::string_view("softmax").size()) + "dropout";
      dr.phase = op.phase;
      dr.shape = op.shape_str() + fmt::format(" / {}", l.tp);
      dr.bytes = static_cast<double>(op.batch) * static_cast<double>(op.rows) * static_cast<double>(op.cols) * 5 / tp;
      dr.time_s = dr.bytes / (s.hbm_bytes_per_s * s.memory_efficiency);
      dr.bound = "memory";
      dr.source = "modelled (Megatron-LM's attention dropout, not in the graph)";
      add(std::move(dr));
    }
  }
  out.saved = saved_from(g, m, l, kind);
  return out;
}

namespace {

// One GPU's share of the tensor an op writes (its output): a non-GEMM op's as its work splits;
// a linear GEMM's output split over tp when its weight's split divides the output features (n),
// else along the sequence (a row-parallel or replicated weight's output); an attention product's
// by heads.
double output_share(const LayerGraph& g, const Op& op, const Layout& l) {
  if (op.impl != OpImpl::gemm) return shard_fraction(op, l);
  if (!op.gemm.linear) return 1 / static_cast<double>(l.tp);
  Op out = op;
  out.split = g.split_dim(op.gemm) == Dim::n ? OpSplit::features : OpSplit::sequence;
  return shard_fraction(out, l);
}

// `kept`: the share of each op the recompute re-runs; `served`: whether a backward op's inputs
// come from the recompute (it is inside a recomputed region: every backward op of the layer with
// full recompute or torchtitan's checkpointing of the whole block, the attention core's with
// Megatron-LM's selective recompute). A tensor is kept whole when a reader outside the recomputed
// regions needs it (a checkpoint's output its consumer saves: the attention core's context, read
// by the output projection's wgrad), else less the share the recompute writes again.
// The layer's bytes (`layer`) and the head's (read by the head alone) in one pass; `working` 0.
SavedActivations saved_bytes_of(const LayerGraph& g, const Layout& l, bool flash, const std::vector<double>& kept,
                                const std::vector<bool>& served) {
  // Who writes each tensor in the forward, what the backward and the re-run ops read, and how
  // much of each the recompute writes again.
  std::map<std::string, const Op*> writer;
  std::map<std::string, double> rewritten;
  std::map<std::string, bool> read_by_layer, read_by_head, needed_whole;
  std::set<std::string> fp32;  // read by the cross-entropy's backward: kept in fp32
  for (size_t i = 0; i < g.ops.size(); ++i) {
    const Op& op = g.ops[i];
    std::vector<std::string> in = op.inputs, out = op.outputs;
    if (op.impl == OpImpl::gemm) {
      in = {op.gemm.a, op.gemm.b};
      if (!op.gemm.group_counts.empty()) in.push_back(op.gemm.group_counts);
      if (op.gemm.beta != 0) in.push_back(op.gemm.c);
      out = {op.gemm.c};
    }
    if (op.phase == Phase::forward)
      for (const auto& t : out) writer.emplace(t, &op);
    // What the recompute writes again; an op that works in place (RoPE, a bias add) transforms a
    // tensor the recompute must have from its writer first, so it does not count.
    if (kept[i] > 0)
      for (const auto& t : out)
        if (std::find(in.begin(), in.end(), t) == in.end()) rewritten[t] = std::max(rewritten[t], kept[i]);
    if (op.phase != Phase::backward && kept[i] <= 0) continue;
    const bool from_recompute = kept[i] > 0 || served[i];
    for (const auto& t : in) {
      // The fused kernel keeps none of the core's own tensors (the squares) for its backward.
      const auto w = writer.find(t);
      if (flash && is_attention_core(op) && w != writer.end() && is_attention_core(*w->second)) continue;
      (op.group == Group::head ? read_by_head : read_by_layer)[t] = true;
      if (!from_recompute) needed_whole[t] = true;
      if (op.impl == OpImpl::cross_entropy_bwd) fp32.insert(t);
    }
  }
  SavedActivations a;
  for (const auto& t : g.tensors) {
    if (t.role == TensorRole::weight || t.role == TensorRole::weight_grad || t.role == TensorRole::gradient) continue;
    if (g.weight_fp8_copy(t)) continue;  // the weights' own
    // The layer's when the layer reads it, else the head's when the head does.
    double* bytes = read_by_layer.count(t.name) ? &a.layer : read_by_head.count(t.name) ? &a.head : nullptr;
    if (!bytes) continue;
    const auto w = writer.find(t.name);
    const bool filled = t.role == TensorRole::input || t.role == TensorRole::index;
    if (w == writer.end() && !filled) continue;  // written only in the backward
    const auto again = rewritten.find(t.name);
    const double keep = needed_whole.count(t.name) || again == rewritten.end() ? 1.0 : 1 - again->second;
    if (keep <= 0) continue;
    // The layer's input (the previous layer's output) splits along the sequence; indices whole.
    Op input;
    input.split = t.role == TensorRole::index ? OpSplit::replicated : OpSplit::sequence;
    const double share = w != writer.end() ? output_share(g, *w->second, l) : shard_fraction(input, l);
    const double element = fp32.count(t.name)                                                ? 4
                           : t.role == TensorRole::statistic || t.role == TensorRole::index ? 4
                           : t.role == TensorRole::fp8_copy                                 ? 1
                                                                                            : kBytes16;
    *bytes += static_cast<double>(t.numel()) * element * share * keep;
    // Megatron-LM's attention dropout on the probabilities (not in the graph; costed beside the
    // softmax in layer_cost): its 1-byte mask and the dropped 16-bit probabilities.
    if (!flash && w != writer.end() && w->second->impl == OpImpl::softmax_causal_fwd && t.name == w->second->outputs.at(0))
      *bytes += static_cast<double>(t.numel()) * 3 * share * keep;
  }
  if (flash && l.recompute != Recompute::full) {  // the fused kernel's log-sum-exp: one fp32 a query row and head
    const LayerShape& s = g.shape;
    a.layer += static_cast<double>(s.batch * s.n_heads * s.seq) * 4 / static_cast<double>(l.tp);
  }
  return a;
}

// What layer_cost's graph `g` (of the kind `kind`) keeps for the backward.
SavedActivations saved_from(const LayerGraph& g, const ModelConfig& m, const Layout& l, size_t kind) {
  const bool flash = l.attention == Attention::flash;
  // The share of each op the recompute re-runs: full, all of the layer's forward again; selective,
  // Megatron-LM's attention core (nothing with flash, whose backward recomputes inside the kernel)
  // or, with FSDP, torchtitan's op-level checkpointing.
  const bool op_sac = l.fsdp_on() && l.recompute == Recompute::selective;
  std::vector<double> kept(g.ops.size(), 0.0);
  std::vector<bool> served(g.ops.size(), false);
  if (op_sac) kept = torchtitan_op_sac(g, m, flash);
  for (size_t i = 0; i < g.ops.size(); ++i) {
    const Op& op = g.ops[i];
    if (op.group != Group::layer || l.recompute == Recompute::none) continue;
    const bool region = l.recompute == Recompute::full || (!flash && is_attention_core(op));
    if (op.phase == Phase::recompute && !op_sac) kept[i] = region ? 1.0 : 0.0;
    if (op.phase == Phase::backward) served[i] = op_sac || region;
  }
  SavedActivations a = saved_bytes_of(g, l, flash, kept, served);
  // The loss's backward, with its saved fp32 softmax still held. PyTorch's cross_entropy
  // (torchtitan, FSDP here) is log_softmax then nll_loss: nll_loss's backward writes a dense fp32
  // gradient of the log-probabilities (zeros, the targets' entries set) and log_softmax's backward
  // a new fp32 gradient of the logits beside it, 4 + 4 bytes an element at once (the 16-bit cast
  // after, 4 + 2, when the other two are freed, is below that). Megatron-LM's vocab-parallel
  // cross-entropy computes it in place and casts it (2).
  for (const auto& op : g.ops)
    if (op.impl == OpImpl::cross_entropy_bwd)
      a.head += static_cast<double>(op.rows) * static_cast<double>(op.cols) * (l.fsdp_on() ? 8.0 : 2.0) /
                static_cast<double>(l.tp);
  if (l.recompute == Recompute::full) {
    // The recomputed layer holds what it would keep without recompute.
    Layout once = l;
    once.recompute = Recompute::none;
    const LayerGraph plain = predict_graph(m, once, kind);
    a.working = saved_bytes_of(plain, once, flash, std::vector<double>(plain.ops.size(), 0.0),
                               std::vector<bool>(plain.ops.size(), false)).layer -
                a.layer;
  }
  return a;
}

}  // namespace

SavedActivations saved_activations(const ModelConfig& m, const Layout& l, size_t kind) {
  return saved_from(predict_graph(m, l, kind), m, l, kind);
}

json op_cost_json(const OpCost& c) {
  return {{"name", c.name},   {"phase", to_string(c.phase)}, {"head", c.head},     {"shape", c.shape},
          {"flops", c.flops}, {"bytes", c.bytes},            {"time_s", c.time_s}, {"bound", c.bound},
          {"source", c.source}, {"per_step", c.per_step}};
}

}  // namespace flopscope::predict
