// Which metrics to request per architecture, and how one range's raw values become FLOPs.
// Pure code: no CUPTI, no GPU; tests/test_counters.cpp feeds it hand-built inputs.
//
// Tensor cores. sm__ops_path_tensor_src_<dtype>_dst_<acc> counts the "math ops" executed in
// the tensor path; Nsight Compute's own tensor roofline weighs them 1 (no x2, unlike its FFMA
// count), so one op is one FLOP and one FMA is two (docs/counters.md: evidence, and the
// confirmation still owed on an H200). Each counter also exists split into _sparsity_off
// (dense MMA) and _sparsity_on (2:4 sparse MMA); the total is their sum, so adding a total to
// its children double counts. FLOPs here are the dense children; a total is read only as a
// cross-check (total - dense = sparse ops, expected 0), or for FLOPs on a chip whose metric set
// has no sparsity split (Turing).
//
// Hopper's warpgroup MMA (wgmma, SASS HGMMA) counts in the sm__ops_path_tensor_op_hgmma_*
// family and reads zero in the per-warp sm__ops_path_tensor_op_hmma_* family; their sum should
// equal the dtype's dense count, which is kept as a check on the metric definitions.
//
// CUDA cores. smsp__sass_thread_inst_executed_op_<op>_pred_on.sum counts thread-level
// instructions with the predicate on: fadd and fmul are one FLOP, ffma two; likewise d* for
// fp64. Half instructions are taken as packed half2 (HADD2/HMUL2/HFMA2: two lanes), weights
// 2, 2 and 4, as Nsight Compute's half roofline does (derived hfma_pred_on_x4): a scalar half
// instruction is counted twice over. flopscope's kernels compute in fp32 (kernels/common.cuh),
// so these read about zero for its ops.
//
// Not counted anywhere: special-function work (MUFU: the ex2/rcp/rsqrt/tanh approximations
// inside expf, tanhf, rsqrtf), integer work, conversions, comparisons and min/max (FMNMX), which
// the analytic conventions count as FLOPs for softmax, layernorm and GeLU.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "counters/counters.hpp"
#include "counters/detail.hpp"
#include "util/error.hpp"

namespace flopscope {

namespace {

using nlohmann::json;

// Tensor path, dense (the FLOP terms on Ampere and newer).
constexpr const char* kBf16Dense = "sm__ops_path_tensor_src_bf16_dst_fp32_sparsity_off.sum";
constexpr const char* kFp16AccFp16Dense = "sm__ops_path_tensor_src_fp16_dst_fp16_sparsity_off.sum";
constexpr const char* kFp16AccFp32Dense = "sm__ops_path_tensor_src_fp16_dst_fp32_sparsity_off.sum";
constexpr const char* kTf32Dense = "sm__ops_path_tensor_src_tf32_dst_fp32_sparsity_off.sum";
constexpr const char* kFp8Dense = "sm__ops_path_tensor_src_fp8_sparsity_off.sum";
// Tensor path, dense + sparse totals (cross-checks; FLOP terms only without a sparsity split).
constexpr const char* kBf16Total = "sm__ops_path_tensor_src_bf16_dst_fp32.sum";
constexpr const char* kFp16Total = "sm__ops_path_tensor_src_fp16.sum";
constexpr const char* kFp16AccFp16Total = "sm__ops_path_tensor_src_fp16_dst_fp16.sum";
constexpr const char* kFp16AccFp32Total = "sm__ops_path_tensor_src_fp16_dst_fp32.sum";
constexpr const char* kTf32Total = "sm__ops_path_tensor_src_tf32_dst_fp32.sum";
constexpr const char* kFp8Total = "sm__ops_path_tensor_src_fp8.sum";
// Hopper: the same dense work split by instruction family (warpgroup HGMMA vs per-warp HMMA).
constexpr const char* kHgmmaBf16 = "sm__ops_path_tensor_op_hgmma_src_bf16_dst_fp32_sparsity_off.sum";
constexpr const char* kHmmaBf16 = "sm__ops_path_tensor_op_hmma_src_bf16_dst_fp32_sparsity_off.sum";
constexpr const char* kHgmmaFp16 = "sm__ops_path_tensor_op_hgmma_src_fp16_sparsity_off.sum";
constexpr const char* kHmmaFp16AccFp16 = "sm__ops_path_tensor_op_hmma_src_fp16_dst_fp16_sparsity_off.sum";
constexpr const char* kHmmaFp16AccFp32 = "sm__ops_path_tensor_op_hmma_src_fp16_dst_fp32_sparsity_off.sum";
constexpr const char* kHgmmaTf32 = "sm__ops_path_tensor_op_hgmma_src_tf32_dst_fp32_sparsity_off.sum";
constexpr const char* kHmmaTf32 = "sm__ops_path_tensor_op_hmma_src_tf32_dst_fp32_sparsity_off.sum";
// Tensor-pipe warp instructions (cross-check: wgmma on Hopper, mma elsewhere).
constexpr const char* kGmmaInst = "sm__inst_executed_pipe_tensor_op_gmma.sum";
constexpr const char* kHmmaInst = "sm__inst_executed_pipe_tensor_op_hmma.sum";
// Memory and time.
constexpr const char* kDramRead = "dram__bytes_read.sum";
constexpr const char* kDramWrite = "dram__bytes_write.sum";
constexpr const char* kTime = "gpu__time_duration.sum";

struct Term {
  const char* metric;
  double weight;  // FLOPs per count
};

// A tensor dtype. On Ampere and newer its FLOPs are its dense (_sparsity_off) children; on a
// chip whose counters have no sparsity split (Turing) they are its totals, the first
// alternative whose metrics are all present.
struct TensorDtype {
  const char* dtype;
  std::vector<Term> dense;
  std::vector<std::vector<Term>> without_split;
  const char* total;  // dense + sparse, for the sparsity cross-check
};

const std::vector<TensorDtype>& tensor_dtypes() {
  static const std::vector<TensorDtype> t = {
      {"bf16", {{kBf16Dense, 1}}, {{{kBf16Total, 1}}}, kBf16Total},
      {"fp16",
       {{kFp16AccFp16Dense, 1}, {kFp16AccFp32Dense, 1}},
       {{{kFp16AccFp16Total, 1}, {kFp16AccFp32Total, 1}}, {{kFp16Total, 1}}},
       kFp16Total},
      {"tf32", {{kTf32Dense, 1}}, {{{kTf32Total, 1}}}, kTf32Total},
      {"fp8", {{kFp8Dense, 1}}, {{{kFp8Total, 1}}}, kFp8Total},
  };
  return t;
}

// Ampere (8.0) introduced 2:4 sparse MMA and, with it, the _sparsity_off/_on split.
bool has_sparsity_split(int cc) { return cc >= 80; }

// CUDA-core precisions: every term must be present for the precision to have a figure.
struct CorePrecision {
  const char* precision;
  std::vector<Term> terms;
};

const std::vector<CorePrecision>& core_precisions() {
  static const std::vector<CorePrecision> c = {
      {"fp32",
       {{"smsp__sass_thread_inst_executed_op_fadd_pred_on.sum", 1},
        {"smsp__sass_thread_inst_executed_op_fmul_pred_on.sum", 1},
        {"smsp__sass_thread_inst_executed_op_ffma_pred_on.sum", 2}}},
      {"fp64",
       {{"smsp__sass_thread_inst_executed_op_dadd_pred_on.sum", 1},
        {"smsp__sass_thread_inst_executed_op_dmul_pred_on.sum", 1},
        {"smsp__sass_thread_inst_executed_op_dfma_pred_on.sum", 2}}},
      // Packed half2: two lanes per thread instruction.
      {"fp16",
       {{"smsp__sass_thread_inst_executed_op_hadd_pred_on.sum", 2},
        {"smsp__sass_thread_inst_executed_op_hmul_pred_on.sum", 2},
        {"smsp__sass_thread_inst_executed_op_hfma_pred_on.sum", 4}}},
  };
  return c;
}

// Hopper's split, per dtype: HGMMA terms, HMMA terms.
struct Split {
  const char* dtype;
  std::vector<const char*> hgmma, hmma;
};

const std::vector<Split>& hopper_splits() {
  static const std::vector<Split> s = {
      {"bf16", {kHgmmaBf16}, {kHmmaBf16}},
      {"fp16", {kHgmmaFp16}, {kHmmaFp16AccFp16, kHmmaFp16AccFp32}},
      {"tf32", {kHgmmaTf32}, {kHmmaTf32}},
  };
  return s;
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

constexpr double kAbsent = std::numeric_limits<double>::quiet_NaN();
bool present(double v) { return !std::isnan(v); }
json or_null(double v) { return present(v) ? json(v) : json(nullptr); }

}  // namespace

CounterMode parse_counter_mode(std::string_view text) {
  if (text == "off") return CounterMode::off;
  if (text == "auto") return CounterMode::auto_;
  if (text == "required") return CounterMode::required;
  throw UsageError(fmt::format("--counters: unknown mode '{}'; choose off, auto or required", text));
}

std::string_view to_string(CounterMode m) {
  switch (m) {
    case CounterMode::off: return "off";
    case CounterMode::auto_: return "auto";
    case CounterMode::required: return "required";
  }
  return "?";
}

std::vector<std::string> metrics_for(int cc) {
  std::vector<std::string> m;
  if (cc < 75) return m;  // the Range Profiler needs Turing (7.5) or newer
  for (const auto& p : core_precisions())
    for (const auto& t : p.terms) m.emplace_back(t.metric);
  for (const char* s : {kDramRead, kDramWrite, kTime}) m.emplace_back(s);
  if (cc == 75) {
    // Turing: fp16 tensor cores only, and no sparsity split of the counters.
    for (const char* s : {kFp16AccFp16Total, kFp16AccFp32Total, kHmmaInst}) m.emplace_back(s);
    return m;
  }
  // Ampere and newer: dense children for FLOPs, totals as the sparsity cross-check.
  for (const char* s :
       {kBf16Dense, kFp16AccFp16Dense, kFp16AccFp32Dense, kTf32Dense, kBf16Total, kFp16Total, kTf32Total})
    m.emplace_back(s);
  // fp8 tensor cores: Ada (8.9) and Hopper (9.0). Blackwell names its low-precision paths
  // differently (src_fp4_fp6_fp8_...); not requested there until confirmed.
  if (cc == 89 || cc == 90) m.emplace_back(kFp8Dense);
  if (cc == 90) {
    for (const auto& s : hopper_splits()) {
      for (const char* x : s.hgmma) m.emplace_back(x);
      for (const char* x : s.hmma) m.emplace_back(x);
    }
    m.emplace_back(kGmmaInst);
  }
  m.emplace_back(kHmmaInst);
  return m;
}

json flops_from_metrics(const std::map<std::string, double>& raw, const std::string& arch) {
  return flops_from_metrics(raw, arch, metrics_for(counters::compute_capability_of(arch)));
}

json flops_from_metrics(const std::map<std::string, double>& raw, const std::string& arch,
                        const std::vector<std::string>& collected) {
  const int cc = counters::compute_capability_of(arch);
  // What this range should hold: the arch's metrics that the chip accepted. A metric it
  // refused is no FLOP term at all (named in "not_counted"), so one refused name cannot null
  // every op's figures; a collected metric that reads absent or NaN still makes its figure null.
  std::vector<std::string> requested, refused;
  for (const auto& m : metrics_for(cc)) (contains(collected, m) ? requested : refused).push_back(m);
  auto collected_terms = [&](const std::vector<Term>& terms) {
    std::vector<Term> kept;
    for (const Term& t : terms)
      if (contains(requested, t.metric)) kept.push_back(t);
    return kept;
  };
  // Absent (or non-finite) is NaN here: it propagates through every sum, and becomes null.
  auto value = [&](const std::string& name) {
    const auto it = raw.find(name);
    return (it == raw.end() || !std::isfinite(it->second)) ? kAbsent : it->second;
  };
  auto sum_terms = [&](const std::vector<Term>& terms) {
    double s = 0;
    for (const Term& t : terms) s += t.weight * value(t.metric);
    return s;
  };

  json formula_tensor = json::object(), formula_core = json::object();

  // Tensor cores, per dtype. The total is a number only when every dtype with a collected FLOP
  // term has its figure: a partial sum labelled measured would understate the work. (Terms the
  // chip refused are left out and named in not_counted: it has no such counter to read.)
  json by_dtype = json::object();
  double tensor = 0;
  bool any_dtype = false;
  std::map<std::string, double> dense;  // dtype -> dense tensor FLOPs, for the checks
  for (const TensorDtype& d : tensor_dtypes()) {
    std::vector<std::vector<Term>> alternatives;
    if (has_sparsity_split(cc)) {
      alternatives.push_back(collected_terms(d.dense));
    } else {
      for (const auto& alt : d.without_split) alternatives.push_back(collected_terms(alt));
    }
    std::erase_if(alternatives, [](const std::vector<Term>& alt) { return alt.empty(); });
    bool wanted = false;  // a collected FLOP term of this dtype
    for (const auto& alt : alternatives)
      for (const Term& t : alt) wanted = wanted || contains(requested, t.metric);
    double v = kAbsent;
    for (const auto& alt : alternatives) {
      v = sum_terms(alt);
      if (!present(v)) continue;
      for (const Term& t : alt) formula_tensor[t.metric] = t.weight;
      if (has_sparsity_split(cc)) dense[d.dtype] = v;
      break;
    }
    if (!present(v) && !wanted) continue;
    any_dtype = true;
    by_dtype[d.dtype] = or_null(v);
    tensor += v;
  }
  if (!any_dtype) tensor = kAbsent;

  // CUDA cores: per precision, all terms or nothing; the total needs every precision.
  json by_precision = json::object();
  double core = 0;
  bool any_precision = false;
  for (const CorePrecision& p : core_precisions()) {
    const std::vector<Term> terms = collected_terms(p.terms);
    if (terms.empty()) continue;  // the chip refused all of them: not counted
    any_precision = true;
    const double v = sum_terms(terms);
    by_precision[p.precision] = or_null(v);
    if (present(v))
      for (const Term& t : terms) formula_core[t.metric] = t.weight;
    core += v;
  }
  if (!any_precision) core = kAbsent;

  const double flops = tensor + core;
  const bool complete = present(flops);

  // Cross-checks.
  json checks = json::object();
  json sparse = json::object();
  for (const TensorDtype& d : tensor_dtypes()) {
    const double total = value(d.total);
    const auto it = dense.find(d.dtype);
    if (present(total) && it != dense.end()) sparse[d.dtype] = total - it->second;
  }
  if (!sparse.empty()) checks["sparse_tensor_ops"] = sparse;  // total - dense: expected 0
  json split = json::object();
  double hgmma_all = 0;
  for (const Split& s : hopper_splits()) {
    double a = 0, b = 0;
    bool any = false;
    for (const char* x : s.hgmma) {
      a += value(x);
      any = any || present(value(x));
    }
    for (const char* x : s.hmma) {
      b += value(x);
      any = any || present(value(x));
    }
    if (!any) continue;
    if (present(a)) hgmma_all += a;
    const auto it = dense.find(s.dtype);
    const double dn = it != dense.end() ? it->second : kAbsent;
    json e = {{"hgmma", or_null(a)}, {"hmma", or_null(b)}, {"dense", or_null(dn)}};
    e["hgmma_share"] = a + b > 0 ? or_null(a / (a + b)) : json(nullptr);
    e["split_over_dense"] = dn > 0 ? or_null((a + b) / dn) : json(nullptr);
    split[s.dtype] = e;
  }
  if (!split.empty()) checks["hopper_split"] = split;  // split_over_dense expected 1
  const double gmma = value(kGmmaInst), hmma_inst = value(kHmmaInst);
  if (present(gmma) || present(hmma_inst))
    checks["tensor_instructions"] = {{"gmma", or_null(gmma)}, {"hmma", or_null(hmma_inst)}};
  if (gmma > 0 && hgmma_all > 0) checks["hgmma_flops_per_gmma_instruction"] = hgmma_all / gmma;

  json missing = json::array();
  for (const auto& name : requested)
    if (!present(value(name))) missing.push_back(name);
  json not_counted = json::array();
  for (const auto& name : refused) not_counted.push_back(name);

  json raw_json = json::object();
  for (const auto& [k, v] : raw) raw_json[k] = v;
  return {
      {"raw", raw_json},
      {"arch", arch},
      {"tensor_flops", or_null(tensor)},
      {"tensor_flops_by_dtype", by_dtype},
      {"cuda_core_flops", or_null(core)},
      {"cuda_core_flops_by_precision", by_precision},
      {"flops", or_null(flops)},
      {"dram_bytes_read", or_null(value(kDramRead))},
      {"dram_bytes_write", or_null(value(kDramWrite))},
      {"gpu_time_ns", or_null(value(kTime))},
      {"formula", {{"tensor_flops", formula_tensor}, {"cuda_core_flops", formula_core}}},
      {"checks", checks},
      {"missing", missing},
      {"not_counted", not_counted},
      {"complete", complete},
      {"source",
       "measured: hardware counters (CUPTI Range Profiler). tensor: dense sm__ops_path_tensor_* ops, 1 op = 1 FLOP; "
       "CUDA cores: predicated-on SASS thread instructions, add/mul 1, FMA 2, half instructions as half2; "
       "special functions (MUFU), integer work and comparisons are not counted"}};
}

namespace counters {

int compute_capability_of(std::string_view arch) {
  int cc = 0;
  const std::string_view digits = arch.substr(std::min<size_t>(3, arch.size()));
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), cc);
  if (arch.substr(0, 3) != "sm_" || digits.empty() || ec != std::errc() || end != digits.data() + digits.size() ||
      digits.size() > 3)
    throw Error(fmt::format("'{}' is not an architecture like sm_90", arch));
  return cc;
}

}  // namespace counters

}  // namespace flopscope
