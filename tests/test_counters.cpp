// src/counters: the metric-to-FLOP conversion on hand-built inputs (tests/data/counters, each
// expected figure worked out here), the metric table per architecture, the range-name-to-op
// mapping, --counters parsing, the reasons given when counters cannot be read, and the
// degraded modes reachable without a GPU (cpu backend, off, required, no GPU). Gpu* tests run
// the CUPTI Range Profiler for real and skip with the reason when no GPU is visible.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>

#include "backend/cpu/cpu_backend.hpp"
#include "backend/cuda/cuda_backend.hpp"
#include "backend/select.hpp"
#include "counters/counters.hpp"
#include "counters/detail.hpp"
#include "graph/graph.hpp"
#include "util/error.hpp"

namespace flopscope {
namespace {

using nlohmann::json;

// ---------------------------------------------------------------------------------------------
// Hand-built inputs.

// tests/data/counters, from the repository root CMake names (not __FILE__, which a compiler
// launcher such as ccache with a base_dir may make relative).
std::filesystem::path data_dir() { return std::filesystem::path(FLOPSCOPE_SOURCE_DIR) / "tests" / "data" / "counters"; }

struct Input {
  json doc;
  std::string arch;
  std::map<std::string, double> raw;
};

Input load(const std::string& file) {
  const auto path = data_dir() / file;
  std::ifstream in(path);
  if (!in) throw Error("cannot open " + path.string());
  Input i;
  i.doc = json::parse(in);
  i.arch = i.doc.at("arch").get<std::string>();
  for (const auto& [k, v] : i.doc.at("raw").items()) i.raw[k] = v.get<double>();
  return i;
}

double num(const json& j, const char* key) {
  EXPECT_TRUE(j.at(key).is_number()) << key << " is " << j.at(key).dump();
  return j.at(key).is_number() ? j.at(key).get<double>() : NAN;
}

TEST(CounterData, EveryFileSaysItIsHandBuilt) {
  for (const auto& e :
       std::filesystem::directory_iterator(data_dir())) {
    if (e.path().extension() != ".json") continue;
    const Input i = load(e.path().filename().string());
    EXPECT_NE(i.doc.at("note").get<std::string>().find("HAND-BUILT, NOT RECORDED"), std::string::npos) << e.path();
  }
}

// ---------------------------------------------------------------------------------------------
// flops_from_metrics.

// A tile-aligned bf16 GEMM on Hopper: 2 m n k tensor FLOPs (one FMA = 2), all of them HGMMA.
TEST(CounterFlops, AlignedBf16GemmIsTwoMNK) {
  const Input in = load("hopper_bf16_gemm_aligned.json");
  const double m = in.doc.at("gemm").at("m"), n = in.doc.at("gemm").at("n"), k = in.doc.at("gemm").at("k");
  const double expect_tensor = 2 * m * n * k;  // 2 * 2048^3 = 17179869184
  const double expect_core = m * n;            // one FMUL per output (alpha)
  const json f = flops_from_metrics(in.raw, in.arch);
  EXPECT_EQ(num(f, "tensor_flops"), expect_tensor);
  EXPECT_EQ(f.at("tensor_flops_by_dtype").at("bf16").get<double>(), expect_tensor);
  EXPECT_EQ(f.at("tensor_flops_by_dtype").at("fp16").get<double>(), 0.0);
  EXPECT_EQ(num(f, "cuda_core_flops"), expect_core);
  EXPECT_EQ(num(f, "flops"), expect_tensor + expect_core);
  EXPECT_EQ(num(f, "dram_bytes_read"), 2 * (m * k + k * n));
  EXPECT_EQ(num(f, "dram_bytes_write"), 2 * m * n);
  EXPECT_EQ(num(f, "gpu_time_ns"), 30000.0);
  EXPECT_TRUE(f.at("complete").get<bool>()) << f.at("missing").dump();
  EXPECT_TRUE(f.at("missing").empty());
  // Cross-checks: no sparse work; HGMMA + HMMA = dense; all of it HGMMA.
  EXPECT_EQ(f.at("checks").at("sparse_tensor_ops").at("bf16").get<double>(), 0.0);
  const json& split = f.at("checks").at("hopper_split").at("bf16");
  EXPECT_EQ(split.at("split_over_dense").get<double>(), 1.0);
  EXPECT_EQ(split.at("hgmma_share").get<double>(), 1.0);
  EXPECT_EQ(f.at("checks").at("hgmma_flops_per_gmma_instruction").get<double>(), 2.0 * 64 * 256 * 16);
  // The formula names exactly the dense children, weight 1, and never a total.
  const json& ft = f.at("formula").at("tensor_flops");
  EXPECT_EQ(ft.at("sm__ops_path_tensor_src_bf16_dst_fp32_sparsity_off.sum").get<double>(), 1.0);
  EXPECT_FALSE(ft.contains("sm__ops_path_tensor_src_bf16_dst_fp32.sum"));
  EXPECT_FALSE(ft.contains("sm__ops_path_tensor_src_fp16.sum"));
  EXPECT_EQ(f.at("raw").size(), in.raw.size());
  EXPECT_EQ(f.at("arch"), "sm_90");
}

// fp32 SGEMM on CUDA cores: m n k FFMA = 2 m n k FLOPs, plus m n FMUL; no tensor work (0, not null).
TEST(CounterFlops, Fp32GemmOnCudaCoresCountsFmaTwice) {
  const Input in = load("ampere_fp32_sgemm_cuda_cores.json");
  const double m = in.doc.at("gemm").at("m"), n = in.doc.at("gemm").at("n"), k = in.doc.at("gemm").at("k");
  const json f = flops_from_metrics(in.raw, in.arch);
  EXPECT_EQ(num(f, "cuda_core_flops"), 2 * m * n * k + m * n);
  EXPECT_EQ(f.at("cuda_core_flops_by_precision").at("fp32").get<double>(), 2 * m * n * k + m * n);
  EXPECT_EQ(f.at("cuda_core_flops_by_precision").at("fp64").get<double>(), 0.0);
  EXPECT_EQ(num(f, "tensor_flops"), 0.0);
  EXPECT_EQ(num(f, "flops"), 2 * m * n * k + m * n);
  EXPECT_FALSE(f.at("tensor_flops_by_dtype").contains("fp8"));  // sm_80 has no fp8 tensor cores
  EXPECT_FALSE(f.at("checks").contains("hopper_split"));
  EXPECT_TRUE(f.at("complete").get<bool>()) << f.at("missing").dump();
}

// A total beside its sparsity children: FLOPs are the dense child alone (1e9), not 2.5e9;
// total - dense shows the sparse ops (5e8).
TEST(CounterFlops, TotalIsNeverAddedToItsSparsityChildren) {
  const Input in = load("hopper_bf16_total_and_sparse.json");
  const double dense = in.doc.at("dense_ops"), sparse = in.doc.at("sparse_ops");
  const json f = flops_from_metrics(in.raw, in.arch);
  EXPECT_EQ(num(f, "tensor_flops"), dense);
  EXPECT_EQ(f.at("checks").at("sparse_tensor_ops").at("bf16").get<double>(), sparse);
}

// CUDA-core weights: fp32 5 + 6 + 2*7 = 25; fp64 1 + 2 + 2*3 = 9; fp16 as half2 2*10 + 2*20 + 4*30 = 180.
TEST(CounterFlops, CudaCoreWeightsIncludingHalf2) {
  const Input in = load("hopper_cuda_core_weights.json");
  const json f = flops_from_metrics(in.raw, in.arch);
  const json& p = f.at("cuda_core_flops_by_precision");
  EXPECT_EQ(p.at("fp32").get<double>(), 25.0);
  EXPECT_EQ(p.at("fp64").get<double>(), 9.0);
  EXPECT_EQ(p.at("fp16").get<double>(), 180.0);
  EXPECT_EQ(num(f, "cuda_core_flops"), 25.0 + 9.0 + 180.0);
  EXPECT_EQ(
      f.at("formula").at("cuda_core_flops").at("smsp__sass_thread_inst_executed_op_hfma_pred_on.sum").get<double>(),
      4.0);
}

// Turing has no sparsity split: fp16 FLOPs come from its two totals, 1000 + 2000.
TEST(CounterFlops, TuringUsesTotalsWhereNoSplitExists) {
  const Input in = load("turing_fp16_totals.json");
  const json f = flops_from_metrics(in.raw, in.arch);
  EXPECT_EQ(num(f, "tensor_flops"), 3000.0);
  EXPECT_EQ(f.at("tensor_flops_by_dtype").at("fp16").get<double>(), 3000.0);
  EXPECT_FALSE(f.at("tensor_flops_by_dtype").contains("bf16"));
  EXPECT_TRUE(f.at("formula").at("tensor_flops").contains("sm__ops_path_tensor_src_fp16_dst_fp32.sum"));
  EXPECT_TRUE(f.at("complete").get<bool>()) << f.at("missing").dump();
}

// A metric the chip did not offer (absent) or that evaluated to NaN: its figure is null, never
// 0; a total that needs it is null too (a partial sum would understate the work); the metric
// is listed as missing and the result is not complete. On Hopper the bf16 total is never a
// fallback for its missing dense child: it may hold sparse work.
TEST(CounterFlops, MissingOrNanMetricGivesNullNotZero) {
  Input in = load("hopper_bf16_gemm_aligned.json");
  in.raw.erase("sm__ops_path_tensor_src_bf16_dst_fp32_sparsity_off.sum");
  in.raw["smsp__sass_thread_inst_executed_op_dfma_pred_on.sum"] = NAN;
  in.raw.erase("dram__bytes_read.sum");
  const json f = flops_from_metrics(in.raw, in.arch);
  EXPECT_TRUE(f.at("tensor_flops_by_dtype").at("bf16").is_null());
  EXPECT_EQ(f.at("tensor_flops_by_dtype").at("fp16").get<double>(), 0.0);  // the parts still there stay
  EXPECT_TRUE(f.at("tensor_flops").is_null());
  EXPECT_FALSE(f.at("formula").at("tensor_flops").contains("sm__ops_path_tensor_src_bf16_dst_fp32.sum"));
  EXPECT_FALSE(f.at("checks").at("sparse_tensor_ops").contains("bf16"));
  EXPECT_TRUE(f.at("cuda_core_flops_by_precision").at("fp64").is_null());
  EXPECT_EQ(f.at("cuda_core_flops_by_precision").at("fp32").get<double>(), 2048.0 * 2048.0);
  EXPECT_TRUE(f.at("cuda_core_flops").is_null());
  EXPECT_TRUE(f.at("flops").is_null());
  EXPECT_TRUE(f.at("dram_bytes_read").is_null());
  EXPECT_EQ(num(f, "dram_bytes_write"), 2.0 * 2048 * 2048);
  EXPECT_FALSE(f.at("complete").get<bool>());
  const auto missing = f.at("missing").get<std::vector<std::string>>();
  const std::set<std::string> got(missing.begin(), missing.end());
  EXPECT_TRUE(got.count("sm__ops_path_tensor_src_bf16_dst_fp32_sparsity_off.sum"));
  EXPECT_TRUE(got.count("smsp__sass_thread_inst_executed_op_dfma_pred_on.sum"));
  EXPECT_TRUE(got.count("dram__bytes_read.sum"));
  EXPECT_EQ(got.size(), 3u);
}

// A chip that refuses an fp16, an fp8 and an hgmma metric (the profiler drops them and keeps
// the rest): those are no terms of any figure, named in not_counted; bf16 tensor FLOPs, the
// totals and complete stay measured; fp8 is read from its total instead of its dense count.
// Taking "wanted" from the arch's table instead of the collected list would null
// tensor_flops, flops and complete for every op (the two-argument form shows it: there the
// three are collected metrics that read absent).
TEST(CounterFlops, MetricsTheChipRefusedAreNotCountedAndBf16StaysMeasured) {
  Input in = load("hopper_bf16_gemm_aligned.json");
  const double m = in.doc.at("gemm").at("m"), n = in.doc.at("gemm").at("n"), k = in.doc.at("gemm").at("k");
  const std::set<std::string> refused = {"sm__ops_path_tensor_src_fp16_dst_fp16_sparsity_off.sum",
                                         "sm__ops_path_tensor_src_fp8_sparsity_off.sum",
                                         "sm__ops_path_tensor_op_hgmma_src_bf16_dst_fp32_sparsity_off.sum"};
  std::vector<std::string> collected;
  for (const auto& name : metrics_for(90))
    if (!refused.count(name)) collected.push_back(name);
  ASSERT_EQ(collected.size() + refused.size(), metrics_for(90).size());
  for (const auto& name : refused) in.raw.erase(name);

  const json f = flops_from_metrics(in.raw, in.arch, collected);
  EXPECT_EQ(num(f, "tensor_flops"), 2 * m * n * k);
  EXPECT_EQ(f.at("tensor_flops_by_dtype").at("bf16").get<double>(), 2 * m * n * k);
  // fp16's dense way lost a term, so it is read from the HGMMA + HMMA split; fp8 from its total.
  EXPECT_EQ(f.at("tensor_flops_by_dtype").at("fp16").get<double>(), 0.0);
  EXPECT_EQ(f.at("formula").at("tensor_basis").at("fp16"), "hgmma+hmma");
  EXPECT_EQ(f.at("tensor_flops_by_dtype").at("fp8").get<double>(), 0.0);
  EXPECT_EQ(f.at("formula").at("tensor_basis").at("fp8"), "total (dense+sparse)");
  EXPECT_EQ(f.at("formula").at("tensor_basis").at("bf16"), "dense");
  EXPECT_EQ(num(f, "flops"), 2 * m * n * k + m * n);
  EXPECT_TRUE(f.at("complete").get<bool>()) << f.at("missing").dump();
  EXPECT_TRUE(f.at("missing").empty()) << f.at("missing").dump();
  EXPECT_TRUE(f.at("not_counted_dtypes").empty());
  const auto nc = f.at("not_counted").get<std::vector<std::string>>();
  EXPECT_EQ(std::set<std::string>(nc.begin(), nc.end()), refused);
  for (const auto& name : refused) EXPECT_FALSE(f.at("formula").at("tensor_flops").contains(name)) << name;
  // The split check loses its HGMMA side and says so (null), nothing else.
  EXPECT_TRUE(f.at("checks").at("hopper_split").at("bf16").at("hgmma").is_null());
  EXPECT_EQ(f.at("checks").at("sparse_tensor_ops").at("bf16").get<double>(), 0.0);

  const json wanted_from_table = flops_from_metrics(in.raw, in.arch);
  EXPECT_TRUE(wanted_from_table.at("tensor_flops").is_null());
  EXPECT_FALSE(wanted_from_table.at("complete").get<bool>());
  EXPECT_TRUE(wanted_from_table.at("not_counted").empty());
}

// The chip refuses the aggregated bf16 dense metric (GH100 might): bf16 is read from the
// HGMMA + HMMA split of the same work, 2 m n k, never 0. Refuse the split too, and it is read
// from the total; refuse that too, and bf16 is not counted: null, complete false.
TEST(CounterFlops, ARefusedBf16AggregateFallsBackToTheSplitThenTheTotalNeverZero) {
  const Input in = load("hopper_bf16_gemm_aligned.json");
  const double m = in.doc.at("gemm").at("m"), n = in.doc.at("gemm").at("n"), k = in.doc.at("gemm").at("k");
  auto without = [&](std::set<std::string> gone) {
    std::vector<std::string> collected;
    for (const auto& name : metrics_for(90))
      if (!gone.count(name)) collected.push_back(name);
    std::map<std::string, double> raw = in.raw;
    for (const auto& name : gone) raw.erase(name);
    return flops_from_metrics(raw, in.arch, collected);
  };
  const std::string dense = "sm__ops_path_tensor_src_bf16_dst_fp32_sparsity_off.sum";
  const std::string hgmma = "sm__ops_path_tensor_op_hgmma_src_bf16_dst_fp32_sparsity_off.sum";
  const std::string hmma = "sm__ops_path_tensor_op_hmma_src_bf16_dst_fp32_sparsity_off.sum";
  const std::string total = "sm__ops_path_tensor_src_bf16_dst_fp32.sum";

  const json split = without({dense});
  EXPECT_EQ(split.at("tensor_flops_by_dtype").at("bf16").get<double>(), 2 * m * n * k);
  EXPECT_EQ(num(split, "tensor_flops"), 2 * m * n * k);
  EXPECT_TRUE(split.at("complete").get<bool>());
  EXPECT_EQ(split.at("formula").at("tensor_basis").at("bf16"), "hgmma+hmma");
  EXPECT_EQ(split.at("formula").at("tensor_flops").at(hgmma).get<double>(), 1.0);
  EXPECT_EQ(split.at("formula").at("tensor_flops").at(hmma).get<double>(), 1.0);
  EXPECT_FALSE(split.at("formula").at("tensor_flops").contains(total));

  const json from_total = without({dense, hgmma, hmma});
  EXPECT_EQ(from_total.at("tensor_flops_by_dtype").at("bf16").get<double>(), 2 * m * n * k);
  EXPECT_EQ(from_total.at("formula").at("tensor_basis").at("bf16"), "total (dense+sparse)");
  EXPECT_FALSE(from_total.at("checks").contains("sparse_tensor_ops") &&
               from_total.at("checks").at("sparse_tensor_ops").contains("bf16"))
      << "a total is no dense count to check the total against";

  const json none = without({dense, hgmma, hmma, total});
  EXPECT_TRUE(none.at("tensor_flops_by_dtype").at("bf16").is_null());
  EXPECT_TRUE(none.at("tensor_flops").is_null());
  EXPECT_TRUE(none.at("flops").is_null());
  EXPECT_FALSE(none.at("complete").get<bool>());
  ASSERT_EQ(none.at("not_counted_dtypes").size(), 1u);
  EXPECT_EQ(none.at("not_counted_dtypes")[0].at("dtype"), "bf16");
}

// A dtype the chip refused entirely is unknown work only where the run may execute it: a bf16
// run (its GEMMs bf16, nothing in fp8) keeps complete figures when fp8 is refused, and names
// fp8; a run that uses fp8 does not.
TEST(CounterFlops, AnEntirelyRefusedDtypeTheRunDoesNotUseIsOnlyNamed) {
  Input in = load("hopper_bf16_gemm_aligned.json");
  const std::set<std::string> gone = {"sm__ops_path_tensor_src_fp8_sparsity_off.sum", "sm__ops_path_tensor_src_fp8.sum"};
  std::vector<std::string> collected;
  for (const auto& name : metrics_for(90))
    if (!gone.count(name)) collected.push_back(name);
  for (const auto& name : gone) in.raw.erase(name);
  const json bf16_run = flops_from_metrics(in.raw, in.arch, collected, std::vector<std::string>{"bf16"});
  EXPECT_TRUE(bf16_run.at("complete").get<bool>());
  EXPECT_FALSE(bf16_run.at("tensor_flops_by_dtype").contains("fp8"));
  ASSERT_EQ(bf16_run.at("not_counted_dtypes").size(), 1u);
  EXPECT_EQ(bf16_run.at("not_counted_dtypes")[0].at("dtype"), "fp8");
  const json fp8_run = flops_from_metrics(in.raw, in.arch, collected, std::vector<std::string>{"fp8", "bf16"});
  EXPECT_FALSE(fp8_run.at("complete").get<bool>());
  EXPECT_TRUE(fp8_run.at("tensor_flops_by_dtype").at("fp8").is_null());
  EXPECT_TRUE(fp8_run.at("tensor_flops").is_null());
}

// The tensor dtypes a graph's GEMMs run in: bf16 alone for a bf16 layer; fp8 and bf16 (its
// attention and head) for an fp8 layer; none for fp32 (CUDA cores).
TEST(CounterFlops, TensorDtypesInUseFollowTheGraphsGemms) {
  const LayerShape s = layer_shape(1, 32, 2, 16, 64);  // d_model 32, d_ff 128
  GraphOptions o;
  o.precision = Precision::bf16;
  EXPECT_EQ(tensor_dtypes_in_use(build_layer_graph(s, o)), std::vector<std::string>{"bf16"});
  o.precision = Precision::fp8;
  const auto fp8 = tensor_dtypes_in_use(build_layer_graph(s, o));
  EXPECT_EQ(std::set<std::string>(fp8.begin(), fp8.end()), (std::set<std::string>{"fp8", "bf16"}));
  o.precision = Precision::fp32;
  EXPECT_TRUE(tensor_dtypes_in_use(build_layer_graph(s, o)).empty());
}

// A CUDA-core precision whose every term was refused is left out (not null); one with only
// some refused is null; on Turing (no sparsity split) a dtype with one of its totals refused
// is not counted.
TEST(CounterFlops, ARefusedPrecisionIsLeftOutNotNull) {
  const Input in = load("hopper_cuda_core_weights.json");
  std::vector<std::string> collected;
  for (const auto& name : metrics_for(90))
    if (name.find("_op_d") == std::string::npos) collected.push_back(name);  // no fp64 counters
  const json f = flops_from_metrics(in.raw, in.arch, collected);
  EXPECT_FALSE(f.at("cuda_core_flops_by_precision").contains("fp64"));
  EXPECT_EQ(num(f, "cuda_core_flops"), 25.0 + 180.0);
  EXPECT_EQ(f.at("not_counted").size(), 3u);

  // Part of a precision refused: what is left would understate it (fp32 without its FFMA), so null.
  std::vector<std::string> no_ffma;
  for (const auto& name : metrics_for(90))
    if (name != "smsp__sass_thread_inst_executed_op_ffma_pred_on.sum") no_ffma.push_back(name);
  const json h = flops_from_metrics(in.raw, in.arch, no_ffma);
  EXPECT_TRUE(h.at("cuda_core_flops_by_precision").at("fp32").is_null());
  EXPECT_TRUE(h.at("cuda_core_flops").is_null());
  EXPECT_FALSE(h.at("complete").get<bool>());

  // Turing, one of fp16's two totals refused: the other alone would read the fp32-accumulate
  // work as 0, so fp16 is not counted (null), never 1000.
  const Input t = load("turing_fp16_totals.json");
  const json g = flops_from_metrics(t.raw, t.arch, {"sm__ops_path_tensor_src_fp16_dst_fp16.sum"});
  EXPECT_TRUE(g.at("tensor_flops_by_dtype").at("fp16").is_null());
  EXPECT_TRUE(g.at("tensor_flops").is_null());
  EXPECT_FALSE(g.at("complete").get<bool>());
  ASSERT_EQ(g.at("not_counted_dtypes").size(), 1u);
  EXPECT_EQ(g.at("not_counted_dtypes")[0].at("dtype"), "fp16");
  const auto nc_turing = g.at("not_counted").get<std::vector<std::string>>();
  EXPECT_TRUE(std::find(nc_turing.begin(), nc_turing.end(), "sm__ops_path_tensor_src_fp16_dst_fp32.sum") !=
              nc_turing.end());
}

// A way with one of its metrics refused is not taken: the HGMMA half of the split alone would
// read the HMMA work as 0. With the dense aggregate and HMMA refused, bf16 comes from its total.
TEST(CounterFlops, AWayWithARefusedTermIsNotTaken) {
  const Input in = load("hopper_bf16_gemm_aligned.json");
  std::vector<std::string> collected;
  for (const auto& name : metrics_for(90))
    if (name != "sm__ops_path_tensor_src_bf16_dst_fp32_sparsity_off.sum" &&
        name != "sm__ops_path_tensor_op_hmma_src_bf16_dst_fp32_sparsity_off.sum")
      collected.push_back(name);
  const json f = flops_from_metrics(in.raw, in.arch, collected);
  EXPECT_EQ(f.at("formula").at("tensor_basis").at("bf16"), "total (dense+sparse)");
  EXPECT_FALSE(f.at("formula").at("tensor_flops").contains("sm__ops_path_tensor_op_hgmma_src_bf16_dst_fp32_sparsity_off.sum"));
  // The split is checked against the dense aggregate only, here refused: no ratio of 1 by construction.
  EXPECT_TRUE(f.at("checks").at("hopper_split").at("bf16").at("split_over_dense").is_null());
}

TEST(CounterFlops, NothingAtAllIsNull) {
  const json f = flops_from_metrics({}, "sm_90");
  EXPECT_TRUE(f.at("tensor_flops").is_null());
  EXPECT_TRUE(f.at("cuda_core_flops").is_null());
  EXPECT_TRUE(f.at("flops").is_null());
  EXPECT_TRUE(f.at("gpu_time_ns").is_null());
  EXPECT_EQ(f.at("missing").size(), metrics_for(90).size());
}

TEST(CounterFlops, RejectsAnArchThatIsNotSmDigits) {
  for (const char* bad : {"", "90", "sm90", "sm_", "sm_9x", "compute_90", "sm_1000"})
    EXPECT_THROW(flops_from_metrics({}, bad), Error) << bad;
  EXPECT_EQ(counters::compute_capability_of("sm_90"), 90);
  EXPECT_EQ(counters::compute_capability_of("sm_100"), 100);
}

// ---------------------------------------------------------------------------------------------
// metrics_for.

TEST(CounterMetrics, TablePerArchitecture) {
  EXPECT_TRUE(metrics_for(70).empty());  // Volta: the Range Profiler needs 7.5+
  for (int cc : {75, 80, 86, 89, 90, 100, 120}) {
    const auto m = metrics_for(cc);
    const std::set<std::string> unique(m.begin(), m.end());
    EXPECT_EQ(unique.size(), m.size()) << "duplicates for " << cc;
    for (const auto& name : m) EXPECT_EQ(name.substr(name.size() - 4), ".sum") << name;
    EXPECT_TRUE(unique.count("smsp__sass_thread_inst_executed_op_ffma_pred_on.sum"));
    EXPECT_TRUE(unique.count("dram__bytes_read.sum"));
    EXPECT_TRUE(unique.count("dram__bytes_write.sum"));
    EXPECT_TRUE(unique.count("gpu__time_duration.sum"));
    const bool hopper = cc == 90;
    EXPECT_EQ(unique.count("sm__ops_path_tensor_op_hgmma_src_bf16_dst_fp32_sparsity_off.sum"), hopper ? 1u : 0u) << cc;
    EXPECT_EQ(unique.count("sm__inst_executed_pipe_tensor_op_gmma.sum"), hopper ? 1u : 0u) << cc;
    EXPECT_EQ(unique.count("sm__ops_path_tensor_src_fp8_sparsity_off.sum"), (cc == 89 || cc == 90) ? 1u : 0u) << cc;
    EXPECT_EQ(unique.count("sm__ops_path_tensor_src_bf16_dst_fp32_sparsity_off.sum"), cc >= 80 ? 1u : 0u) << cc;
  }
}

// Every metric requested for an arch is one the conversion knows: all of them present (value
// 1) leaves nothing missing and every figure non-null.
TEST(CounterMetrics, ConversionUsesEveryRequestedMetric) {
  for (int cc : {75, 80, 89, 90, 100}) {
    std::map<std::string, double> raw;
    for (const auto& m : metrics_for(cc)) raw[m] = 1;
    const std::string arch = "sm_" + std::to_string(cc);
    const json f = flops_from_metrics(raw, arch);
    EXPECT_TRUE(f.at("complete").get<bool>()) << arch << " " << f.at("missing").dump();
    EXPECT_TRUE(f.at("missing").empty()) << arch;
    for (const char* k :
         {"tensor_flops", "cuda_core_flops", "flops", "dram_bytes_read", "dram_bytes_write", "gpu_time_ns"})
      EXPECT_TRUE(f.at(k).is_number()) << arch << " " << k;
  }
}

// ---------------------------------------------------------------------------------------------
// Range names -> ops.

LayerGraph small_graph() {
  LayerShape s;
  s.batch = 1;
  s.seq = 8;
  s.n_heads = 2;
  s.d_head = 4;
  s.d_model = 8;
  s.d_ff = 32;
  s.vocab = 16;
  GraphOptions o;
  o.recompute = true;
  o.include_head = true;
  return build_layer_graph(s, o);
}

TEST(CounterRanges, EveryRangeMapsToItsOp) {
  const LayerGraph g = small_graph();
  ASSERT_GT(g.ops.size(), 20u);
  // CUPTI's order need not be the graph's: reversed here.
  std::vector<std::string> names;
  for (auto it = g.ops.rbegin(); it != g.ops.rend(); ++it) names.push_back(it->name);
  const auto idx = counters::ranges_to_ops(names, g);
  ASSERT_EQ(idx.size(), g.ops.size());
  for (size_t r = 0; r < idx.size(); ++r) EXPECT_EQ(g.ops[idx[r]].name, names[r]);
  // A nested name is matched by its last component.
  names[0] = "layer/backward/" + names[0];
  EXPECT_EQ(g.ops[counters::ranges_to_ops(names, g)[0]].name, g.ops.back().name);
}

TEST(CounterRanges, MismatchesThrow) {
  const LayerGraph g = small_graph();
  std::vector<std::string> names;
  for (const auto& op : g.ops) names.push_back(op.name);
  auto unknown = names;
  unknown[3] = "fwd.no_such_op";
  EXPECT_THROW(counters::ranges_to_ops(unknown, g), Error);
  auto twice = names;
  twice.push_back(names[0]);
  EXPECT_THROW(counters::ranges_to_ops(twice, g), Error);
  auto short_of_one = names;
  short_of_one.pop_back();
  try {
    counters::ranges_to_ops(short_of_one, g);
    ADD_FAILURE() << "a missing op must throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(g.ops.back().name), std::string::npos) << e.what();
  }
  LayerGraph dup = g;
  dup.ops[1].name = dup.ops[0].name;  // CUPTI would merge two ranges of one name
  EXPECT_THROW(counters::ranges_to_ops(names, dup), Error);
}

// ---------------------------------------------------------------------------------------------
// --counters.

TEST(CounterMode, ParsesTheThreeModes) {
  EXPECT_EQ(parse_counter_mode("off"), CounterMode::off);
  EXPECT_EQ(parse_counter_mode("auto"), CounterMode::auto_);
  EXPECT_EQ(parse_counter_mode("required"), CounterMode::required);
  for (CounterMode m : {CounterMode::off, CounterMode::auto_, CounterMode::required})
    EXPECT_EQ(parse_counter_mode(to_string(m)), m);
  for (const char* bad : {"", "AUTO", "on", "yes", "require", " auto"}) {
    try {
      parse_counter_mode(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("off, auto or required"), std::string::npos) << e.what();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Reasons.

TEST(CounterReasons, InsufficientPrivilegesSaysHowToFixIt) {
  const std::string r =
      counters::cupti_failure_reason(35, "cuptiRangeProfilerEnable", "CUPTI_ERROR_INSUFFICIENT_PRIVILEGES");
  for (const char* s :
       {"cuptiRangeProfilerEnable", "CUPTI_ERROR_INSUFFICIENT_PRIVILEGES", "ERR_NVGPUCTRPERM", "root", "CAP_SYS_ADMIN",
        "NVreg_RestrictProfilingToAdminUsers=0", "grep RmProfilingAdminOnly /proc/driver/nvidia/params"})
    EXPECT_NE(r.find(s), std::string::npos) << s << " not in: " << r;
}

TEST(CounterReasons, OtherCausesAreNamed) {
  EXPECT_NE(counters::cupti_failure_reason(39, "cuptiProfilerInitialize", "X").find("Nsight"), std::string::npos);
  EXPECT_NE(counters::cupti_failure_reason(33, "c", "X").find("virtualised"), std::string::npos);
  EXPECT_NE(counters::cupti_failure_reason(40, "c", "X").find("virtual GPU"), std::string::npos);
  EXPECT_NE(counters::cupti_failure_reason(26, "c", "X").find("DCGM"), std::string::npos);
  EXPECT_NE(counters::cupti_failure_reason(43, "c", "X").find("MIG"), std::string::npos);
  const std::string other = counters::cupti_failure_reason(999, "cuptiRangeProfilerStart", "CUPTI_ERROR_UNKNOWN");
  EXPECT_NE(other.find("cuptiRangeProfilerStart failed with CUPTI_ERROR_UNKNOWN"), std::string::npos) << other;
}

TEST(CounterReasons, EveryStatusHasEveryKey) {
  for (const char* s : {"off", "unavailable", "measured"}) {
    const json j = counters::status_json(s, "why");
    for (const char* k : {"status", "reason", "api", "chip", "arch", "passes", "config_passes", "metrics",
                          "dropped_metrics", "replay", "source", "ops"})
      EXPECT_TRUE(j.contains(k)) << s << " lacks " << k;
    EXPECT_EQ(j.at("api"), "CUPTI Range Profiler");
    EXPECT_EQ(j.at("status"), s);
  }
}

// ---------------------------------------------------------------------------------------------
// Degraded modes without a GPU.

// A backend that calls itself "cuda" but runs nothing: reaches the CUDA/CUPTI path on any machine.
class FakeCudaBackend final : public Backend {
 public:
  int runs = 0;
  std::string_view name() const override { return "cuda"; }
  json device_json() const override { return {{"kind", "cuda"}, {"index", 0}}; }
  std::string device_line() const override { return "fake cuda"; }
  double available_bytes() const override { return 0; }
  void allocate(const LayerGraph&) override {}
  void fill(uint64_t) override {}
  void use_input_set(int64_t) override {}
  void run(const Op&) override { ++runs; }
  void synchronize() override {}
  double allocated_bytes() const override { return 0; }
  std::unique_ptr<Timeline> make_timeline(int) override { return nullptr; }
  json gemm_ceiling(Precision, int64_t) override { return nullptr; }
  json copy_bandwidth(int64_t) override { return nullptr; }
  std::vector<double> read(const std::string&, int64_t, int64_t, int64_t) override { return {}; }
  int64_t count_nonfinite(const std::string&) override { return 0; }
};

TEST(CounterDegraded, CpuBackendIsUnavailableWithTheReason) {
  const LayerGraph g = small_graph();
  auto cpu = make_cpu_backend(Precision::fp32);
  const json j = collect_counters(*cpu, g, CounterMode::auto_);
  EXPECT_EQ(j.at("status"), "unavailable");
  EXPECT_EQ(j.at("reason"), "counters need the cuda backend; the cpu backend counts in software");
  EXPECT_TRUE(j.at("ops").empty());
  try {
    collect_counters(*cpu, g, CounterMode::required);
    ADD_FAILURE() << "required must throw";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("counters need the cuda backend"), std::string::npos) << e.what();
  }
}

TEST(CounterDegraded, OffTouchesNothing) {
  const LayerGraph g = small_graph();
  FakeCudaBackend fake;
  const json j = collect_counters(fake, g, CounterMode::off);
  EXPECT_EQ(j.at("status"), "off");
  EXPECT_EQ(fake.runs, 0);
  auto cpu = make_cpu_backend(Precision::fp32);
  EXPECT_EQ(collect_counters(*cpu, g, CounterMode::off).at("status"), "off");
}

TEST(CounterDegraded, NoGpuIsUnavailableWithTheCudaError) {
  const GpuProbe probe = probe_gpus();
  if (probe.count > 0) GTEST_SKIP() << "a GPU is visible; the no-GPU path runs on machines without one";
  const LayerGraph g = small_graph();
  FakeCudaBackend fake;
  const json j = collect_counters(fake, g, CounterMode::auto_);
  EXPECT_EQ(j.at("status"), "unavailable");
  const std::string reason = j.at("reason").get<std::string>();
  EXPECT_NE(reason.find("no GPU is visible"), std::string::npos) << reason;
  EXPECT_NE(reason.find("cudaGetDeviceCount"), std::string::npos) << reason;
  EXPECT_NE(reason.find("cudaError"), std::string::npos) << reason;  // the runtime's error name
  EXPECT_EQ(fake.runs, 0);
  try {
    collect_counters(fake, g, CounterMode::required);
    ADD_FAILURE() << "required must throw";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("cudaGetDeviceCount"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------------------------------------
// On a GPU.

#define REQUIRE_GPU()                                                          \
  do {                                                                         \
    const GpuProbe probe_ = probe_gpus();                                      \
    if (probe_.count == 0) GTEST_SKIP() << "no GPU visible: " << probe_.error; \
  } while (0)

// Counters the environment withholds (permissions, another profiler, a vGPU) skip with the
// reason; any other "unavailable" on a GPU is a failure of this module.
#define SKIP_IF_WITHHELD(c)                                                                                       \
  do {                                                                                                            \
    if ((c).at("status") == "unavailable") {                                                                      \
      const std::string why_ = (c).at("reason").get<std::string>();                                               \
      for (const char* env_ : {"INSUFFICIENT_PRIVILEGES", "MULTIPLE_SUBSCRIBERS", "VIRTUALIZED", "HARDWARE_BUSY", \
                               "MIG_DEVICE", "this GPU cannot be profiled"})                                      \
        if (why_.find(env_) != std::string::npos) GTEST_SKIP() << "counters withheld here: " << why_;             \
    }                                                                                                             \
  } while (0)

// What a GEMM's tensor counters may read against its useful 2 m n k: its tiles execute whole,
// so a tile that overhangs the matrix adds work (lt_tiles.hpp: 1.083x at n = 1536 with cuBLAS
// 13's 208-wide Hopper tiles; both edges padded, up to about 1.3x for the shapes here). The band
// answers the factor-of-2 question either way: counting an FMA as one op would read 0.5-0.65,
// counting it as four would read 2 or more. Where cuBLASLt names the chosen algorithm's tile
// (CUBLASLT_ALGO_CONFIG_TILE_ID), the count must be that tile's padded work within 0.1%.
constexpr double kBandLow = 0.999, kBandHigh = 1.5;

void expect_gemm_count(const std::string& name, double tensor, double useful, const json& algo) {
  const double ratio = tensor / useful;
  EXPECT_GE(ratio, kBandLow) << name << ": tensor counters read " << ratio << " x 2mnk; algorithm " << algo.dump();
  EXPECT_LE(ratio, kBandHigh) << name << ": tensor counters read " << ratio << " x 2mnk; algorithm " << algo.dump();
  if (algo.is_object() && algo.value("padded_over_useful", json(nullptr)).is_number()) {
    EXPECT_NEAR(ratio / algo.at("padded_over_useful").get<double>(), 1.0, 1e-3)
        << name << ": tile " << algo.value("tile", json(nullptr)).dump() << " predicts "
        << algo.at("padded_over_useful").get<double>() << " x 2mnk, the counters read " << ratio;
  }
}

// One bf16 GEMM, C[m, n] = A[m, k] B[k, n] with m = n = k = 1536: the tensor counters read its
// 2 m n k, padded by its tiles (the band above; the chosen tile's padding exactly when known).
TEST(GpuCounters, Bf16GemmCountsTwoMNKPaddedByItsTiles) {
  REQUIRE_GPU();
  const int64_t m = 1536, n = 1536, k = 1536;
  LayerGraph g;
  g.options.precision = Precision::bf16;
  g.tensors = {
      {"a", TensorRole::input, {m, k}}, {"b", TensorRole::input, {k, n}}, {"c", TensorRole::activation, {m, n}}};
  Op op;
  op.name = "gemm.bf16";
  op.kind = OpKind::gemm;
  op.impl = OpImpl::gemm;
  op.precision = Precision::bf16;
  op.gemm.m = m;
  op.gemm.n = n;
  op.gemm.k = k;
  op.gemm.a = "a";
  op.gemm.b = "b";
  op.gemm.c = "c";
  op.gemm.lda = k;
  op.gemm.ldb = n;
  op.gemm.ldc = n;
  op.flops = op.gemm.flops();
  g.ops = {op};
  auto be = make_cuda_backend(Precision::bf16, CudaOptions{});
  be->allocate(g);
  const json prepared = be->prepare(g);
  be->fill(3);
  const json c = collect_counters(*be, g, CounterMode::auto_);
  SKIP_IF_WITHHELD(c);
  ASSERT_EQ(c.at("status"), "measured") << c.dump(1);
  const json& r = c.at("ops").at("gemm.bf16");
  const double expect = 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  ASSERT_TRUE(r.at("tensor_flops").is_number()) << r.dump(1);
  ASSERT_TRUE(r.at("tensor_flops_by_dtype").at("bf16").is_number()) << r.dump(1);
  const json algo = prepared.at("gemm_algorithms").at("gemm.bf16");
  expect_gemm_count("gemm.bf16", r.at("tensor_flops").get<double>(), expect, algo);
  EXPECT_EQ(r.at("tensor_flops_by_dtype").at("bf16").get<double>(), r.at("tensor_flops").get<double>());
  if (r.at("checks").contains("sparse_tensor_ops") && r.at("checks").at("sparse_tensor_ops").contains("bf16")) {
    EXPECT_EQ(r.at("checks").at("sparse_tensor_ops").at("bf16").get<double>(), 0.0);
  }
  if (c.at("arch") == "sm_90") {
    ASSERT_TRUE(r.at("checks").contains("hopper_split")) << r.at("checks").dump();
    const json& s = r.at("checks").at("hopper_split").at("bf16");
    ASSERT_TRUE(s.at("split_over_dense").is_number()) << s.dump();  // null when a side was refused
    EXPECT_NEAR(s.at("split_over_dense").get<double>(), 1.0, 1e-3) << s.dump();
  }
  std::printf("GpuCounters: %s (%s), %d passes; gemm.bf16 tensor %.6g = %.5f x 2mnk (tile %s, padded %s), basis %s, "
              "CUDA cores %s, checks %s\n",
              c.at("chip").get<std::string>().c_str(), c.at("arch").get<std::string>().c_str(),
              c.at("passes").get<int>(), r.at("tensor_flops").get<double>(), r.at("tensor_flops").get<double>() / expect,
              algo.value("tile", json("?")).dump().c_str(), algo.value("padded_over_useful", json(nullptr)).dump().c_str(),
              r.at("formula").at("tensor_basis").dump().c_str(), r.at("cuda_core_flops").dump().c_str(),
              r.at("checks").dump().c_str());
}

// The whole (small) layer: one entry per op; GEMMs read their analytic FLOPs on the tensor
// path padded by their tiles (the band; the chosen tile's padding exactly where it is named),
// every other op none. (With n = 64 and a 128- or 256-wide tile the padded work would be 2-4x:
// the dimensions here are multiples of 768 to stay inside the band.)
TEST(GpuCounters, EveryOpOfALayerIsMeasured) {
  REQUIRE_GPU();
  LayerShape s;
  s.batch = 1;
  s.seq = 768;
  s.n_heads = 1;
  s.d_head = 768;
  s.d_model = 768;
  s.d_ff = 3072;
  s.vocab = 1536;
  GraphOptions o;
  o.precision = Precision::bf16;
  const LayerGraph g = build_layer_graph(s, o);
  auto be = make_cuda_backend(Precision::bf16, CudaOptions{});
  be->allocate(g);
  const json prepared = be->prepare(g);
  be->fill(5);
  const json c = collect_counters(*be, g, CounterMode::auto_);
  SKIP_IF_WITHHELD(c);
  ASSERT_EQ(c.at("status"), "measured") << c.dump(1);
  ASSERT_EQ(c.at("ops").size(), g.ops.size());
  for (const Op& op : g.ops) {
    const json& r = c.at("ops").at(op.name);
    ASSERT_TRUE(r.at("tensor_flops").is_number()) << op.name << r.dump(1);
    EXPECT_TRUE(r.at("cuda_core_flops").is_number()) << op.name;
    const double t = r.at("tensor_flops").get<double>();
    if (op.impl == OpImpl::gemm) {
      expect_gemm_count(op.name + " " + op.shape_str(), t, op.flops, prepared.at("gemm_algorithms").value(op.name, json()));
    } else {
      EXPECT_EQ(t, 0.0) << op.name;
    }
  }
}

}  // namespace
}  // namespace flopscope
