// Memory per GPU of a training run: weights, gradients, optimizer states and activations.
//
// Mixed-precision Adam (Rajbhandari et al. 2020, ZeRO): 16-bit weights (2 bytes a parameter)
// and gradients (2), fp32 master weights, momentum and variance (12): 16 bytes a parameter;
// with the distributed optimizer (Megatron-LM's, ZeRO stage 1) the 12 are split over the
// data-parallel ranks: 2 + 2 + 12/dp.
//
// Activations of one layer for one micro-batch, Korthikanti et al. 2022 Table 2 (bytes; s
// sequence, b micro-batch, h width, a heads, t tensor parallel; 16-bit activations, 1-byte
// dropout masks):
//   no recompute                 s b h (10 + 24/t + 5 a s / (h t))
//   no recompute, seq. parallel  s b h (34 + 5 a s / h) / t
//   selective                    s b h (10 + 24/t)
//   selective, seq. parallel     s b h 34 / t
//   full                         2 s b h        (the layer's input; / t with sequence parallelism)
// Flash attention stores no s x s tensor: the 5 a s / h term goes (as with selective).
// predict uses this closed form no more: its activations come from the layer graph
// (compute.hpp, saved_activations: the tensors each layer's backward reads, at their dtypes and
// shares), which for the GPT-3 layer is this table less its two hidden-dropout masks (2 s b h
// bytes / t with sequence parallelism; the graph has no hidden dropout and today's models set it
// to 0) plus the LayerNorms' 4-byte statistics (a test holds it to that), and which is right for
// grouped-query attention, SwiGLU, RMSNorm, RoPE, MLA, the experts' dispatched rows and
// torchtitan's op-level checkpointing; beside the layers a stage keeps the LM head's (fp32 logits
// and the loss's gradient) and, with full recompute, one recomputed layer's working set.
// Context parallelism: s is each GPU's seq / cp tokens. The distributed optimizer splits the 12
// over dp x cp. fp8 (Transformer Engine): each linear weight's fp8 copies (both layouts, 1 byte
// each) are kept beside it. FSDP (torchtitan / FSDP2): fp32 parameters (4), fp32 gradients (4)
// and Adam's moments (8), 16 bytes a parameter, / (fsdp x cp); plus the unsharded working set of
// the units gathered (bytes from predict.cpp: bf16 parameters and their unsharded gradients).
// The first pipeline stage keeps min(pp, m) micro-batches in flight under 1F1B, times
// 1 + (pp - 1) / (pp vpp) with the interleaved schedule (the paper, section 4.2.3).
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "predict/layout.hpp"

namespace flopscope::predict {

// Table 2, bytes for one layer and one micro-batch.
double activation_bytes_per_layer(double s, double b, double h, double a, double t, bool sequence_parallel,
                                  Recompute r, Attention attention = Attention::unfused);

// The activations a stage keeps, from the layer graph (compute.hpp, saved_activations): the
// mean bytes a layer of the stage keeps for one micro-batch, and what the stage keeps once
// beside them (the LM head's on the last stage; with full recompute, one recomputed layer's
// working set).
struct StageActivations {
  double per_layer = 0, once = 0;
};

struct MemoryBreakdown {
  double parameters = 0;        // on this GPU
  double weights_bytes = 0, gradients_bytes = 0, optimizer_bytes = 0, activations_bytes = 0;
  double activations_once_bytes = 0;  // StageActivations::once, in activations_bytes
  std::string activations_from;       // "layer graph" or "Korthikanti Table 2"
  double fp8_weight_copies_bytes = 0;
  double fsdp_unsharded_bytes = 0;
  double activation_per_layer_bytes = 0;
  double layers_in_flight = 0;  // layers x micro-batches whose activations are kept
  double total_bytes = 0;
  double available_bytes = 0;   // HBM less the reserve
  bool fits = false;
};

// `parameters`: on this GPU (its tp and pp share, before any FSDP sharding); `layers`: on this
// stage; `fp8_copy_elements`: of the fp8 weight copies kept; `fsdp_unsharded_bytes`: FSDP's
// gathered working set (parameters and gradients), bytes; `expert_parameters`: the part of
// `parameters` that is a mixture of experts' routed experts (its ep x etp share), whose
// distributed optimizer state is split over the expert-data-parallel edp ranks rather than
// dp x cp.
// `activations`: the stage's from the layer graph; none, Table 2's closed form above.
MemoryBreakdown memory_per_gpu(double parameters, int64_t layers, const ModelConfig& m, const Layout& l,
                               double available_bytes, double fp8_copy_elements = 0, double fsdp_unsharded_bytes = 0,
                               double expert_parameters = 0, const StageActivations* activations = nullptr);

nlohmann::json memory_json(const MemoryBreakdown& mem);

}  // namespace flopscope::predict
