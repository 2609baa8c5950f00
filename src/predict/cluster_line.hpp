// measure's cluster line: the measured layer's per-op times put into the predict model on a
// named default layout ("megatron-default"), instead of perfect scaling.
//
// The default layout for G GPUs: tp = the largest divisor of the heads up to the node size
// (8), sequence parallel on, selective recompute, micro-batch 1, the distributed optimizer,
// the rest by resolve_layout's defaults (the attention kernel by architecture, the global
// batch by default_global_batch), and pp the smallest divisor of
// G / tp (dividing the layers' count into no more stages than layers) at which the run fits
// in memory. The system profile is the measured GPU's (A100 80GB, H100 SXM, H200 SXM); other
// devices (the CPU included) get n/a and the reason.
#pragma once

#include <string>

#include <nlohmann/json_fwd.hpp>

#include "predict/compute.hpp"
#include "predict/layout.hpp"

namespace flopscope::predict {

inline constexpr const char* kDefaultLayoutName = "megatron-default";

// The default layout above on `system`; throws UsageError when no pp fits.
Layout default_layout(const ModelConfig& m, const SystemProfile& system, int64_t gpus, const std::string& precision);

// {"status": "predicted", "layout_name", "layout", "system", "days", "step_time_s", "mfu", "source"}
// or {"status": "n/a", "reason"}: never throws for a device or model predict cannot take.
nlohmann::json cluster_prediction(const ModelConfig& m, const MeasuredOps& measured, const std::string& device_name,
                                  const std::string& precision, int64_t gpus);

}  // namespace flopscope::predict
