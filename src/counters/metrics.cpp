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
#include <optional>

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

// A tensor dtype and the ways its dense FLOPs can be read, in order of preference. On Ampere
// and newer: its dense (_sparsity_off) aggregate; on Hopper, if the chip refuses that, the same
// dense work as the HGMMA + HMMA families; then its total (dense + sparse: equal to the dense
// count when no 2:4 sparse MMA ran, which flopscope never issues). On a chip whose counters have
// no sparsity split (Turing) its totals. The first way whose every metric was collected is the
// one read (a collected metric that reads absent makes the figure null; it never falls through
// to the next way: a total may hold sparse work the dense count would not).
struct TensorWay {
  const char* basis;  // what the figure is: "dense", "hgmma+hmma", "total (dense+sparse)"
  std::vector<Term> terms;
};
struct TensorDtype {
  const char* dtype;
  std::vector<TensorWay> with_split;     // Ampere and newer
  std::vector<TensorWay> without_split;  // Turing
  const char* total;  // dense + sparse, for the sparsity cross-check
};

const std::vector<TensorDtype>& tensor_dtypes() {
  static const std::vector<TensorDtype> t = {
      {"bf16",
       {{"dense", {{kBf16Dense, 1}}},
        {"hgmma+hmma", {{kHgmmaBf16, 1}, {kHmmaBf16, 1}}},
        {"total (dense+sparse)", {{kBf16Total, 1}}}},
       {{"total", {{kBf16Total, 1}}}},
       kBf16Total},
      {"fp16",
       {{"dense", {{kFp16AccFp16Dense, 1}, {kFp16AccFp32Dense, 1}}},
        {"hgmma+hmma", {{kHgmmaFp16, 1}, {kHmmaFp16AccFp16, 1}, {kHmmaFp16AccFp32, 1}}},
        {"total (dense+sparse)", {{kFp16Total, 1}}}},
       {{"total", {{kFp16AccFp16Total, 1}, {kFp16AccFp32Total, 1}}}, {"total", {{kFp16Total, 1}}}},
       kFp16Total},
      {"tf32",
       {{"dense", {{kTf32Dense, 1}}},
        {"hgmma+hmma", {{kHgmmaTf32, 1}, {kHmmaTf32, 1}}},
        {"total (dense+sparse)", {{kTf32Total, 1}}}},
       {{"total", {{kTf32Total, 1}}}},
       kTf32Total},
      {"fp8", {{"dense", {{kFp8Dense, 1}}}, {"total (dense+sparse)", {{kFp8Total, 1}}}}, {{"total", {{kFp8Total, 1}}}},
       kFp8Total},
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
  if (cc == 89 || cc == 90)
    for (const char* x : {kFp8Dense, kFp8Total}) m.emplace_back(x);
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
  return flops_from_metrics(raw, arch, collected, std::nullopt);
}

json flops_from_metrics(const std::map<std::string, double>& raw, const std::string& arch,
                        const std::vector<std::string>& collected,
                        const std::optional<std::vector<std::string>>& tensor_dtypes_in_use) {
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
  // term has its figure: a partial sum labelled measured would understate the work. A dtype
  // whose every way was refused is not counted: its figure is null and the total with it,
  // unless the run is known to execute no tensor work of that dtype (tensor_dtypes_in_use), in
  // which case it is named in not_counted_dtypes and left out. Never 0.
  json by_dtype = json::object(), basis = json::object(), not_counted_dtypes = json::array();
  double tensor = 0;
  bool any_dtype = false;
  std::map<std::string, double> dense;  // dtype -> dense tensor FLOPs, for the checks
  for (const TensorDtype& d : tensor_dtypes()) {
    const std::vector<TensorWay>& ways = has_sparsity_split(cc) ? d.with_split : d.without_split;
    bool of_this_arch = false;  // the arch's table asks for some metric of this dtype
    const TensorWay* way = nullptr;
    std::vector<Term> terms;
    for (const TensorWay& w : ways) {
      for (const Term& t : w.terms) of_this_arch = of_this_arch || contains(requested, t.metric) || contains(refused, t.metric);
      if (way) continue;
      // A way counts only with every one of its terms collected: a refused term would read as
      // 0 work (fp16's fp32-accumulate half of its dense count, the HMMA half of the split).
      terms = collected_terms(w.terms);
      if (!terms.empty() && terms.size() == w.terms.size()) way = &w;
    }
    if (!of_this_arch) continue;  // e.g. fp8 before Ada, bf16 on Turing
    any_dtype = true;
    if (!way) {
      const bool unused = tensor_dtypes_in_use && !contains(*tensor_dtypes_in_use, d.dtype);
      not_counted_dtypes.push_back(
          {{"dtype", d.dtype},
           {"why", unused ? "the chip refused every metric that counts it; this run executes no such tensor work"
                          : "the chip refused every metric that counts it: its tensor FLOPs are unknown, not 0"}});
      if (unused) continue;
      by_dtype[d.dtype] = nullptr;
      tensor += kAbsent;
      continue;
    }
    const double v = sum_terms(terms);
    by_dtype[d.dtype] = or_null(v);
    tensor += v;
    if (!present(v)) continue;
    basis[d.dtype] = way->basis;
    for (const Term& t : terms) formula_tensor[t.metric] = t.weight;
    // The checks compare against the dense aggregate only: the split checked against itself
    // would read 1 by construction, and a total holds the sparse work too.
    if (has_sparsity_split(cc) && std::string_view(way->basis) == "dense") dense[d.dtype] = v;
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
    // Some refused: the rest would understate the work (an FFMA-less fp32 count), so null.
    const double v = terms.size() == p.terms.size() ? sum_terms(terms) : kAbsent;
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
      {"formula", {{"tensor_flops", formula_tensor}, {"cuda_core_flops", formula_core}, {"tensor_basis", basis}}},
      {"checks", checks},
      {"missing", missing},
      {"not_counted", not_counted},
      {"not_counted_dtypes", not_counted_dtypes},
      {"complete", complete},
      {"source",
       "measured: hardware counters (CUPTI Range Profiler). tensor: dense sm__ops_path_tensor_* ops, 1 op = 1 FLOP; "
       "CUDA cores: predicated-on SASS thread instructions, add/mul 1, FMA 2, half instructions as half2; "
       "special functions (MUFU), integer work and comparisons are not counted"}};
}

std::vector<std::string> tensor_dtypes_in_use(const LayerGraph& g) {
  std::vector<std::string> out;
  auto add = [&](const char* d) {
    if (!contains(out, d)) out.emplace_back(d);
  };
  for (const Op& op : g.ops) {
    if (op.impl != OpImpl::gemm) continue;
    switch (op.precision) {
      case Precision::bf16: add("bf16"); break;
      case Precision::fp16: add("fp16"); break;
      case Precision::tf32: add("tf32"); break;
      case Precision::fp8: add("fp8"); break;
      case Precision::fp32:
      case Precision::fp64: break;
    }
  }
  return out;
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
