#include "predict/memory.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>

namespace flopscope::predict {

double activation_bytes_per_layer(double s, double b, double h, double a, double t, bool sp, Recompute r,
                                  Attention attention) {
  const double sbh = s * b * h;
  if (r == Recompute::full) return sp ? 2 * sbh / t : 2 * sbh;
  const double square = (r == Recompute::none && attention == Attention::unfused) ? 5 * a * s / h : 0;
  return sp ? sbh * (34 + square) / t : sbh * (10 + 24 / t + square / t);
}

MemoryBreakdown memory_per_gpu(double parameters, int64_t layers, const ModelConfig& m, const Layout& l,
                               double available_bytes, double fp8_copy_elements, double fsdp_unsharded_bytes,
                               double expert_parameters, const StageActivations* activations) {
  MemoryBreakdown mem;
  const double dp = static_cast<double>(l.dp()), cp = static_cast<double>(l.cp);
  mem.parameters = parameters;
  if (l.fsdp_on()) {
    const double shard = static_cast<double>(l.fsdp) * cp;
    mem.weights_bytes = 4 * parameters / shard;
    mem.gradients_bytes = 4 * parameters / shard;
    mem.optimizer_bytes = 8 * parameters / shard;
    mem.fsdp_unsharded_bytes = fsdp_unsharded_bytes;
  } else {
    mem.weights_bytes = 2 * parameters;
    mem.gradients_bytes = 2 * parameters;
    mem.optimizer_bytes = l.distributed_optimizer ? 12 * (parameters - expert_parameters) / (dp * cp) +
                                                        12 * expert_parameters / static_cast<double>(l.edp())
                                                  : 12 * parameters;
  }
  mem.fp8_weight_copies_bytes = fp8_copy_elements;
  const bool sp = l.sequence_parallel && l.tp > 1;
  mem.activation_per_layer_bytes =
      activations ? activations->per_layer
                  : activation_bytes_per_layer(static_cast<double>(l.seq) / cp, static_cast<double>(l.micro_batch),
                                               static_cast<double>(m.d_model), static_cast<double>(m.n_heads),
                                               static_cast<double>(l.tp), sp, l.recompute, l.attention);
  mem.activations_from = activations ? "layer graph" : "Korthikanti Table 2";
  mem.activations_once_bytes = activations ? activations->once : 0;
  double in_flight = static_cast<double>(std::min(l.pp, l.micro_batches()));
  if (l.vpp > 1) in_flight *= 1 + static_cast<double>(l.pp - 1) / static_cast<double>(l.pp * l.vpp);
  mem.layers_in_flight = static_cast<double>(layers) * in_flight;
  mem.activations_bytes = mem.activation_per_layer_bytes * mem.layers_in_flight + mem.activations_once_bytes;
  mem.total_bytes = mem.weights_bytes + mem.gradients_bytes + mem.optimizer_bytes + mem.activations_bytes +
                    mem.fp8_weight_copies_bytes + mem.fsdp_unsharded_bytes;
  mem.available_bytes = available_bytes;
  mem.fits = mem.total_bytes <= available_bytes;
  return mem;
}

nlohmann::json memory_json(const MemoryBreakdown& m) {
  return {{"parameters", m.parameters},
          {"weights_bytes", m.weights_bytes},
          {"gradients_bytes", m.gradients_bytes},
          {"optimizer_bytes", m.optimizer_bytes},
          {"activations_bytes", m.activations_bytes},
          {"fp8_weight_copies_bytes", m.fp8_weight_copies_bytes},
          {"fsdp_unsharded_bytes", m.fsdp_unsharded_bytes},
          {"activation_per_layer_bytes", m.activation_per_layer_bytes},
          {"activations_once_bytes", m.activations_once_bytes},
          {"activations_from", m.activations_from},
          {"layers_in_flight", m.layers_in_flight},
          {"total_bytes", m.total_bytes},
          {"available_bytes", m.available_bytes},
          {"fits", m.fits}};
}

}  // namespace flopscope::predict
