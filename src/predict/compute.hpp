// The compute time of one transformer layer (and of the LM head) on one GPU of a
// tensor-parallel group: the layer graph's ops (src/graph, the single source of ops), each
// sharded as Megatron-LM shards it and costed either from a `measure` result of that GPU
// (scaled to the sharded shape) or by a stated model.
//
// Sharding over tp GPUs (Shoeybi et al. 2019): the QKV and FFN-up (and gate) projections are
// split by columns, the attention output and FFN-down projections by rows, attention by heads,
// the LM head by vocabulary; the ops over the model width d (layernorms, residual adds, the
// row-parallel biases) are repeated on every GPU, or split along the sequence with sequence
// parallelism (Korthikanti et al. 2022).
//
// The model (no measurement): a GEMM takes max(FLOPs / (peak x e), bytes / (HBM x e_mem)),
// e = gemm_efficiency x the fraction of its tiles' work that is useful, over whole waves of
// SMs: for an m x n output in tiles of tm x tn, tiles = ceil(m/tm) ceil(n/tn) batch, waves =
// ceil(tiles / SMs), e_q = m n batch / (waves SMs tm tn). Other ops are memory bound:
// bytes / (HBM x e_mem). Bias adds are fused into the GEMM before them (cuBLASLt epilogue;
// Megatron-LM's bias-GeLU and bias-dropout-add fusions) and cost nothing. Every other modelled
// op takes at least the profile's kernel_floor_s (its launch and tail), "launch" bound then.
// Flash attention: the scores, softmax and context ops become one kernel at the GEMM
// efficiency on the causal half of the square (masked tiles skipped); no s x s tensor is
// read or written; its backward recomputes the scores.
// fp8 (Transformer Engine): the linear layers' GEMMs (forward, dgrad, wgrad) at the fp8 peak x
// fp8_gemm_efficiency with 1-byte operands; each operand's fp8 copy (in the K-major layout
// Hopper's fp8 tensor cores read) made by a cast_fp8 op of the graph, memory bound at its bytes
// (2 read + 1 written an element; the amax is taken in the same pass, as TE's cast kernels do);
// the weights' copies once a step; the attention core and the LM head in bf16.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "graph/graph.hpp"
#include "model/model.hpp"
#include "predict/layout.hpp"
#include "predict/system.hpp"

namespace flopscope::predict {

// Per-op times read from a `measure` result (--from-measure).
struct MeasuredOps {
  struct Entry {
    double time_s = 0;
    double flops = 0;
    double bytes = 0;
    bool gemm = false;
  };
  std::map<std::string, Entry> ops;
  std::string device;  // as the measure result names it
  std::string file;
};
// Throws UsageError (naming the file) when it is not a measure result with timed ops.
MeasuredOps measured_ops_from_file(const std::string& path);

struct OpCost {
  std::string name;      // the graph's name; flash attention: fwd.attn.flash, bwd.attn.flash
  Phase phase = Phase::forward;
  bool head = false;     // LM head (last stage)
  std::string shape;     // sharded, one GPU's share
  double flops = 0;      // executed on one GPU
  double bytes = 0;      // moved on one GPU
  double time_s = 0;
  std::string bound;     // compute | memory | fused
  std::string source;    // modelled | measured
  // Once a step, not once a micro-batch: the fp8 copies of the weights (cast_fp8 of a w.*),
  // which Transformer Engine makes on the first micro-batch and keeps.
  bool per_step = false;
  // A linear GEMM of the layer whose weight is split over tp (column- or row-parallel, not the
  // routed experts): a tensor-parallel collective feeds or follows it, and Transformer Engine's
  // userbuffers overlap the two (Layout::tp_comm_overlap).
  bool tp_gemm = false;
};

// What one layer of the kind `kind` keeps for its backward, one micro-batch on one GPU, read
// from the layer graph's tensors (memory.hpp, "Activations from the layer graph"): a tensor is
// kept when the forward writes it (or it is the layer's input) and the backward, or an op the
// recompute re-runs, reads it, less the part the recompute writes again; at its dtype's bytes
// (16-bit activations, 4-byte statistics and indices, 1-byte fp8 copies; the loss's logits in
// fp32, as Megatron-LM's and PyTorch's cross-entropy keep them) and this GPU's share (the split
// of the op that writes it: OpSplit, or a GEMM's output split as its weight's output features
// are). Flash attention keeps Q, K, V and its output (read elsewhere anyway) and a 4-byte
// log-sum-exp a query row and head, never the s x s squares. `layer`: the layer's tensors;
// `head`: the LM head's (and its input, the last layer's output), with the loss's backward's
// gradient of the logits (fp32 and its 16-bit cast in PyTorch, as torchtitan runs it under FSDP;
// 16-bit, the fp32 computed in place, in Megatron-LM); `working`: with full recompute, what the
// recomputed layer holds during its backward on top of its input.
struct SavedActivations {
  double layer = 0, head = 0, working = 0;
};

struct LayerCost {
  std::vector<OpCost> ops;
  // Seconds on one GPU for one micro-batch.
  double layer_forward_s = 0, layer_backward_s = 0, layer_recompute_s = 0;
  double head_forward_s = 0, head_backward_s = 0;
  // fp8: the casts of this layer's weights to their fp8 copies, seconds a step (not per micro-batch).
  double weight_cast_s = 0;
  // Executed FLOPs on one GPU per layer per micro-batch (every op, recompute included).
  double layer_flops = 0, head_flops = 0;
  int64_t measured_ops = 0, modelled_ops = 0;
  SavedActivations saved;  // what the layer and the head keep for the backward (from the same graph)
};

// The cost of one layer (of the model's kind of layer `kind`, an index into m.layer_kinds())
// and of the LM head for one micro-batch on one GPU.
// saved_activations: LayerCost::saved alone (the graph built for it).
SavedActivations saved_activations(const ModelConfig& m, const Layout& l, size_t kind = 0);
LayerCost layer_cost(const ModelConfig& m, const Layout& l, const SystemProfile& s, const MeasuredOps* measured,
                     size_t kind = 0);

// torchtitan's selective activation checkpointing ("op" mode, torchtitan/models/llama3/
// parallelize.py, _save_list and _custom_policy), which --recompute selective means with FSDP:
// the outputs of the mms are saved except every second one (torchtitan's forward mm count: wq 1,
// wk 2, wv 3, wo 4, w1 5, w3 6, w2 7 for a Llama block, so wk, wo and w3 are recomputed), and the
// flash attention's output; every other op (norms, activations, residual adds) is recomputed
// when backward needs its output. For each op of g, the fraction of it a recompute re-runs (0 for
// all but the layer's recompute ops; the graph's fused QKV: the share of wk's width).
std::vector<double> torchtitan_op_sac(const LayerGraph& g, const ModelConfig& m, bool flash);

// GEMM efficiency from tile and wave quantisation alone (the factor e_q above), in (0, 1]; 1 for
// a matrix-vector product (m or n at most kGemvWidth), which runs no tiles.
inline constexpr int64_t kGemvWidth = 8;
double quantisation_efficiency(int64_t m, int64_t n, int64_t batch, const SystemProfile& s);

// The routed experts' load on the busiest expert-parallel rank, x the balanced router's:
// Layout::moe_imbalance, capped by the model's capacity factor where it has one (tokens past an
// expert's capacity are dropped): min(moe_imbalance, capacity_factor).
// Eager PyTorch: an FSDP layout (torchtitan's) without --torch-compile runs its model's pointwise
// ops as separate kernels, in fp32 where the code upcasts (torchtitan/models/llama/model.py and
// norms.py at the commit of its December 2024 benchmarks, 9dec370). The bytes those kernels
// move an element, over the graph's fused op's (its min_bytes, 16-bit activations):
//   rmsnorm_fwd   x.float() 2+4, pow 4+4, mean 4, x * rsqrt 4+4, type_as 4+2, * weight 2+2: 36 / 4
//   rmsnorm_bwd   * weight 2+2 +2+2, type_as 2+4, the mul 4+4 and its sum 4+4, the mean's
//                 expand 4, pow 4+4+4, the two grads summed 4+4+4, .float() 4+2: 64 / 6
//   rope_fwd/bwd  .float() 2+4, the complex multiply 4+4, type_as 4+2: 20 / 4 (each way)
//   swiglu_fwd    silu 2+2, * up 2+2+2: 10 / 6
//   swiglu_bwd    the mul's two grads 2+2+2 each, silu's 2+2+2: 18 / 10
//   cross_entropy_fwd  logits.float() 2+4, log_softmax's three passes 4+4+4 and write 4: 22 / 2
//   cross_entropy_bwd  nll's zeroed grad 4, log_softmax's 4+4+4+4, .float() 4+2: 26 / 4
// and 1 for every other op (residual adds are one kernel either way; GEMMs and attention are
// not pointwise). torch.compile fuses each of these back to one pass (factor 1).
double eager_bytes_factor(OpImpl impl);

double routed_imbalance(const ModelConfig& m, const Layout& l);

nlohmann::json op_cost_json(const OpCost& c);

}  // namespace flopscope::predict
