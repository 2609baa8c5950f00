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
// Context parallelism: s is each GPU's seq / cp tokens. The distributed optimizer splits the 12
// over dp x cp. fp8 (Transformer Engine): each linear weight's fp8 copies (both layouts, 1 byte
// each) are kept beside it. FSDP (torchtitan / FSDP2): fp32 parameters (4), fp32 gradients (4)
// and Adam's moments (8), 16 bytes a parameter, / (fsdp x cp); plus the unsharded working set of
// the units gathered (bytes from predict.cpp: bf16 parameters and their unsharded gradients).
// The first pipeline stage keeps min(pp, m) micro-batches in flight under 1F1B, times
// 1 + (pp - 1) / (pp vpp) with the interleaved schedule (the paper, section 4.2.3).
#pragma once

#include <cstdint>

#include <nlohmann/json_fwd.hpp>

#include "predict/layout.hpp"

namespace flopscope::predict {

// Table 2, bytes for one layer and one micro-batch.
double activation_bytes_per_layer(double s, double b, double h, double a, double t, bool sequence_parallel,
                                  Recompute r, Attention attention = Attention::unfused);

struct MemoryBreakdown {
  double parameters = 0;        // on this GPU
  double weights_bytes = 0, gradients_bytes = 0, optimizer_bytes = 0, activations_bytes = 0;
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
// dp x cp. Activations are Korthikanti's dense form (a mixture of experts' dispatched rows are
// not in it yet).
MemoryBreakdown memory_per_gpu(double parameters, int64_t layers, const ModelConfig& m, const Layout& l,
                               double available_bytes, double fp8_copy_elements = 0, double fsdp_unsharded_bytes = 0,
                               double expert_parameters = 0);

nlohmann::json memory_json(const MemoryBreakdown& mem);

}  // namespace flopscope::predict
