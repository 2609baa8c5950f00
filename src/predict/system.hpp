// The system a prediction runs on: one GPU type in nodes of `gpus_per_node`, its datasheet
// figures and the efficiencies that turn them into time. Built-in profiles (a100-sxm-80gb,
// h100-sxm, h200-sxm) or a JSON file with the same fields (--system FILE). Every figure
// carries its source; src/predict and docs/predict.md say how each one is used.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace flopscope::predict {

struct SystemProfile {
  std::string id;     // a100-sxm-80gb
  std::string title;  // NVIDIA A100 SXM4 80GB
  // "ampere", "hopper", or "" (unknown): which practice resolve_layout's defaults follow.
  std::string architecture;
  // Datasheet dense tensor-core peaks, TFLOP/s (0 = not offered: fp8 on the A100).
  double peak_fp16_tflops = 0, peak_bf16_tflops = 0, peak_fp8_tflops = 0;
  int64_t sm_count = 0;             // streaming multiprocessors (tile waves are counted over them)
  double hbm_bytes_per_s = 0;       // HBM bandwidth
  double hbm_bytes = 0;             // HBM capacity (what "fits" compares with)
  int64_t gpus_per_node = 8;        // GPUs joined by NVLink (NVSwitch)
  double nvlink_bytes_per_s = 0;    // NVLink bandwidth per GPU, one direction
  double network_bytes_per_s = 0;   // network bandwidth per GPU between nodes, one direction
  double nvlink_latency_s = 0;      // alpha of one ring step inside a node
  double network_latency_s = 0;     // alpha of one ring step between nodes
  // Efficiencies (fractions of the figures above reached in practice).
  double gemm_efficiency = 0;       // a large GEMM's fraction of the dense peak, before tile/wave quantisation
  // The same for an fp8 GEMM of the fp8 peak (Transformer Engine's linear layers): fp8 reaches a
  // smaller share of its doubled peak than bf16 does. Optional in a --system file without a
  // base (then gemm_efficiency).
  double fp8_gemm_efficiency = 0;
  // PyTorch's scaled_dot_product_attention (its FlashAttention-2 kernels), the attention FSDP
  // layouts run (torchtitan's), as a fraction of the dense peak; Megatron-LM's fused attention
  // (cuDNN, FlashAttention-3) takes gemm_efficiency. Optional in a --system file without a base
  // (then gemm_efficiency).
  double sdpa_efficiency = 0;
  int64_t gemm_tile_m = 128, gemm_tile_n = 256;  // output tile of one thread block (quantisation)
  double memory_efficiency = 0;     // memory-bound kernels' fraction of the HBM bandwidth
  double nvlink_efficiency = 0;     // ring collectives' bus bandwidth / NVLink bandwidth
  double network_efficiency = 0;    // ring collectives' bus bandwidth / network bandwidth
  double memory_reserved_bytes = 0; // per GPU, not available to the model (CUDA context, NCCL buffers, fragmentation)
  // The least time a modelled kernel takes, its launch and tail on a busy stream (a small op's
  // bytes or FLOPs say less). Optional in a --system file without a base (then 0: none).
  double kernel_floor_s = 0;
  // Source of each field above, by its JSON key.
  std::map<std::string, std::string> sources;

  // TFLOP/s of the dense peak for a precision name (fp16, bf16, fp8); 0 when not offered.
  double peak_tflops(std::string_view precision) const;
};

// The built-in profiles' ids, in order.
std::vector<std::string> system_ids();
// By id (aliases a100, h100, h200). Throws UsageError naming the ids.
SystemProfile system_by_id(std::string_view id);
// A profile from JSON: every numeric field required unless "base" names a built-in profile,
// whose fields the file then overrides; "sources" optional. Unknown keys, wrong types and
// values out of range are UsageErrors naming `origin`.
SystemProfile system_from_json(const nlohmann::json& j, const std::string& origin);
SystemProfile system_from_file(const std::string& path);
nlohmann::json system_to_json(const SystemProfile& s);

}  // namespace flopscope::predict
