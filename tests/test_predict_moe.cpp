// predict on a mixture of experts (src/predict with --ep, --etp): the experts' grouped GEMMs
// sharded over expert parallelism, the all-to-all worked by hand, the experts' weights and
// optimizer state per GPU, bad layouts refused, and the two published MoE runs of
// ../shared/data/published-runs.json (skipped when that folder is absent).
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "model/hf_config.hpp"
#include "predict/predict.hpp"
#include "util/error.hpp"

#ifndef FLOPSCOPE_SOURCE_DIR
#error "FLOPSCOPE_SOURCE_DIR (the repository root) is set by tests/CMakeLists.txt"
#endif

namespace flopscope::predict {
namespace {

// 4 layers, d 1024, 8 heads of 128 (2 kv), 16 experts of 512, top-2, seq 1024, vocab 1000.
ModelConfig small_moe() {
  ModelConfig m = preset("mixtral-8x7b");
  m.name = "small-moe";
  m.n_layers = 4, m.d_model = 1024, m.n_heads = 8, m.d_head = 128, m.n_kv_heads = 2, m.n_ctx = 1024, m.vocab = 1000;
  m.d_ff_explicit = 2048;
  m.n_experts = 16, m.top_k = 2, m.d_ff_expert = 512;
  m.validate();
  return m;
}

Layout layout(int64_t gpus, int64_t ep) {
  Layout l;
  l.gpus = gpus, l.ep = ep, l.global_batch = gpus * 2, l.seq = 1024, l.attention = Attention::flash;
  l.recompute = Recompute::none, l.distributed_optimizer = true;
  return l;
}

TEST(PredictMoe, ExpertGemmsAreGroupedOverTheLocalExperts) {
  // 8 GPUs, ep 8: 2 local experts; each gets k T ep / E = 2 x 1024 x 8 / 16 = 1024 rows; the
  // GPU's work is the whole layer's (every GEMM's / tp, tp 1).
  const ModelConfig m = small_moe();
  const SystemProfile s = system_by_id("h100");
  const LayerCost c = layer_cost(m, layout(8, 8), s, nullptr);
  int seen = 0;
  for (const auto& o : c.ops) {
    if (o.name == "fwd.experts.up") {
      EXPECT_EQ(o.shape, "grouped(2):1024x512x1024");
      EXPECT_DOUBLE_EQ(o.flops, 2.0 * 2048 * 1024 * 512);  // k T = 2048 rows in all
      EXPECT_NEAR(o.time_s,
                  std::max(o.flops / (989.4e12 * s.gemm_efficiency * quantisation_efficiency(1024, 512, 2, s)),
                           o.bytes / (3.35e12 * 0.8)),
                  1e-15);
      ++seen;
    }
    if (o.name == "bwd.experts.down.wgrad") {  // (f_e, d) per expert, summed over its 1024 rows
      EXPECT_EQ(o.shape, "grouped(2):512x1024x1024");
      ++seen;
    }
  }
  EXPECT_EQ(seen, 2);
  // A stated imbalance scales exactly the routed experts' ops.
  Layout skew = layout(8, 8);
  skew.moe_imbalance = 1.25;
  const LayerCost d = layer_cost(m, skew, s, nullptr);
  for (size_t i = 0; i < c.ops.size(); ++i) {
    const bool routed = c.ops[i].name.find("experts.") != std::string::npos;
    EXPECT_NEAR(d.ops[i].time_s, c.ops[i].time_s * (routed ? 1.25 : 1.0), 1e-15) << c.ops[i].name;
  }
  // A capacity factor caps it: an expert takes at most 1.1 x k T / E rows, the rest dropped, so
  // the busiest runs 1.1 x the mean; a factor above the stated imbalance changes nothing.
  ModelConfig capped = m;
  capped.capacity_factor = 1.1;
  EXPECT_DOUBLE_EQ(routed_imbalance(capped, skew), 1.1);
  const LayerCost e = layer_cost(capped, skew, s, nullptr);
  capped.capacity_factor = 2.0;
  EXPECT_DOUBLE_EQ(routed_imbalance(capped, skew), 1.25);
  const LayerCost f = layer_cost(capped, skew, s, nullptr);
  for (size_t i = 0; i < c.ops.size(); ++i) {
    const bool routed = c.ops[i].name.find("experts.") != std::string::npos;
    EXPECT_NEAR(e.ops[i].time_s, c.ops[i].time_s * (routed ? 1.1 : 1.0), 1e-15) << c.ops[i].name;
    EXPECT_DOUBLE_EQ(f.ops[i].time_s, d.ops[i].time_s) << c.ops[i].name;
  }
}

TEST(PredictMoe, AllToAllByHand) {
  // Each MoE layer sends k T d 16-bit bytes (2 x 1024 x 1024 x 2 = 4 MiB) to the ep group and
  // back, forward and backward: 4 all-to-alls a micro-batch. ep 8 inside a node: NVLink,
  // (n - 1) / n S / B + (n - 1) alpha.
  const ModelConfig m = small_moe();
  PredictInput in;
  in.model = m;
  in.system = system_by_id("h100");
  in.layout = layout(8, 8);
  const Prediction p = predict(in);
  const SystemProfile& s = in.system;
  const double S = 2.0 * 1024 * 1024 * 2, n = 8;
  const double one = (n - 1) / n * S / (s.nvlink_bytes_per_s * s.nvlink_efficiency) + (n - 1) * s.nvlink_latency_s;
  const double micro_batches = 2;  // global batch 16 over dp 8
  EXPECT_NEAR(p.breakdown.ep_comm_s, micro_batches * 4 * 4 * one, 1e-12);  // 4 MoE layers, 4 each
  // ep 16 over two nodes of 8: half of each GPU's bytes go to the other node over the network,
  // the rest over NVLink at the same time; the slower sets it.
  in.layout = layout(16, 16);
  const Prediction q = predict(in);
  const double remote = 8.0 / 16 * S / (s.network_bytes_per_s * s.network_efficiency) + 8 * s.network_latency_s;
  const double local = 7.0 / 16 * S / (s.nvlink_bytes_per_s * s.nvlink_efficiency) + 7 * s.nvlink_latency_s;
  EXPECT_NEAR(q.breakdown.ep_comm_s, 2 * 4 * 4 * std::max(remote, local), 1e-12);
  EXPECT_GT(q.breakdown.ep_comm_s, p.breakdown.ep_comm_s);
  // ep 1: no all-to-all.
  in.layout = layout(8, 1);
  EXPECT_EQ(predict(in).breakdown.ep_comm_s, 0.0);
}

TEST(PredictMoe, DispatchersByHand) {
  // small_moe: 16 experts, top-2, d 1024, 1024 tokens a GPU (16-bit rows of 2 KiB).
  const ModelConfig m = small_moe();
  PredictInput in;
  in.model = m;
  in.system = system_by_id("h100");
  const SystemProfile& s = in.system;
  const double T = 1024, row = 1024 * 2, micro_batches = 2;  // global batch 2 x gpus over dp = gpus
  const double nvlink = s.nvlink_bytes_per_s * s.nvlink_efficiency, net = s.network_bytes_per_s * s.network_efficiency;
  // P(a given set of E/G experts holds none of a token's 2 of 16): (16 - 16/G)(15 - 16/G) / (16 x 15).
  auto none = [](double G) { return (16 - 16 / G) * (15 - 16 / G) / (16.0 * 15.0); };
  // flex, ep 8 in a node: each token once to each other GPU holding one of its experts,
  // (8 - 1) p_r rows, p_r = 1 - 14 x 13 / 240.
  in.layout = layout(8, 8);
  in.layout.moe_dispatcher = Dispatcher::flex;
  const double p8 = 1 - none(8);
  const double flex8 = 7 * p8 * T * row / nvlink + 7 * s.nvlink_latency_s;
  EXPECT_NEAR(predict(in).breakdown.ep_comm_s, micro_batches * 4 * 4 * flex8, 1e-12);
  // flex, ep 16 over two nodes of 8: once to the other node when it holds one (p_n = 1 - 8 x 7 /
  // 240) on the NIC; on NVLink 2 x 7 p_r rows (the node's own and those forwarded), p_r over 16.
  in.layout = layout(16, 16);
  in.layout.moe_dispatcher = Dispatcher::flex;
  const double p16 = 1 - none(16), pn = 1 - none(2);
  const double flex16 = std::max(pn * T * row / net + s.network_latency_s,
                                 2 * 7 * p16 * T * row / nvlink + 7 * s.nvlink_latency_s);
  EXPECT_NEAR(predict(in).breakdown.ep_comm_s, micro_batches * 4 * 4 * flex16, 1e-12);
  // Fewer bytes than the alltoall dispatcher's 2 copies a token, 8/16 of them to the other node.
  in.layout.moe_dispatcher = Dispatcher::alltoall;
  EXPECT_GT(predict(in).breakdown.ep_comm_s, micro_batches * 4 * 4 * flex16);
  // allgather, ep 8: every GPU gathers the 8 GPUs' tokens, (8 - 1)/8 of 8 T rows, and a
  // reduce-scatter brings them back: 4 collectives a layer and micro-batch, each (n-1)/n S / B.
  in.layout = layout(8, 8);
  in.layout.moe_dispatcher = Dispatcher::allgather;
  const double gather = 7.0 / 8 * 8 * T * row / nvlink + 7 * s.nvlink_latency_s;
  EXPECT_NEAR(predict(in).breakdown.ep_comm_s, micro_batches * 4 * 4 * gather, 1e-12);
  // Refused: flex with etp > 1, the overlap with allgather, a dispatcher on a dense model.
  Layout bad = layout(16, 8);
  bad.etp = 2, bad.moe_dispatcher = Dispatcher::flex;
  EXPECT_THROW(validate(bad, m), UsageError);
  bad = layout(8, 8);
  bad.moe_dispatcher = Dispatcher::allgather, bad.ep_comm_overlap = true;
  EXPECT_THROW(validate(bad, m), UsageError);
  const ModelConfig dense = preset("llama3.1-8b");
  Layout d;
  d.gpus = 8, d.global_batch = 8, d.seq = dense.n_ctx, d.moe_dispatcher = Dispatcher::flex;
  EXPECT_THROW(validate(d, dense), UsageError);
  EXPECT_EQ(parse_dispatcher("flex"), Dispatcher::flex);
  EXPECT_THROW(parse_dispatcher("deepep"), UsageError);
}

TEST(PredictMoe, AllToAllOverlapByHand) {
  // --ep-comm-overlap: a layer's forward all-to-alls (2 of them) hide behind another
  // micro-batch's backward of the layer, its backward all-to-alls behind the other's forward.
  // Without pipelining the first forward and the last backward have no partner: 1 of the m chunk
  // passes runs its 4 all-to-alls exposed. ep 16 over two nodes, where the all-to-all is slow
  // enough to show past the compute.
  const ModelConfig m = small_moe();
  PredictInput in;
  in.model = m;
  in.system = system_by_id("h100");
  for (const int64_t ep : {8, 16}) {
    in.layout = layout(16, ep);
    in.layout.global_batch = 16 * 4;  // m = 4 micro-batches over dp 16
    in.layout.ep_comm_overlap = false;
    const Prediction off = predict(in);
    in.layout.ep_comm_overlap = true;
    const Prediction on = predict(in);
    const LayerCost c = layer_cost(m, in.layout, in.system, nullptr);
    const double one = off.breakdown.ep_comm_s / (4 * 4 * 4);  // m 4, 4 MoE layers, 4 all-to-alls each
    const double paired = std::max(0.0, 2 * one - c.layer_backward_s) + std::max(0.0, 2 * one - c.layer_forward_s);
    if (ep == 16) {
      EXPECT_GT(paired, 0.0) << "the network case shows past the compute";
    }
    EXPECT_NEAR(on.breakdown.ep_comm_s, 4 * 4 * (0.25 * 4 * one + 0.75 * paired), 1e-12) << ep;
    EXPECT_NEAR(on.breakdown.ep_comm_total_s, off.breakdown.ep_comm_s, 1e-12);
    EXPECT_NEAR(off.breakdown.ep_comm_total_s, off.breakdown.ep_comm_s, 1e-15);
    EXPECT_NEAR(off.step_time_s - on.step_time_s, off.breakdown.ep_comm_s - on.breakdown.ep_comm_s, 1e-12);
  }
  // Interleaved, pp 2 x vpp 2 (a layer a chunk): the first stage's warm-up is
  // 2 (pp - 1) + (vpp - 1) pp + 1 = 5 of the m vpp = 8 chunk passes, each stage's 2 layers.
  in.layout = layout(16, 8);
  in.layout.pp = 2, in.layout.vpp = 2, in.layout.global_batch = 8 * 4;  // dp 8, m 4
  in.layout.ep_comm_overlap = true;
  const Prediction q = predict(in);
  const LayerCost c = layer_cost(m, in.layout, in.system, nullptr);
  const double one = q.breakdown.ep_comm_total_s / (4 * 2 * 4);
  const double paired = std::max(0.0, 2 * one - c.layer_backward_s) + std::max(0.0, 2 * one - c.layer_forward_s);
  EXPECT_NEAR(q.breakdown.ep_comm_s, 4 * 2 * (5.0 / 8 * 4 * one + 3.0 / 8 * paired), 1e-12);
}

TEST(PredictMoe, ExpertWeightsAndOptimizerAreSplitOverEpAndEdp) {
  // The routed experts' 3 x 16 x 1024 x 512 weights a layer are split over ep (and etp 1); the
  // distributed optimizer's 12 bytes of them over edp = dp / ep, the rest over dp.
  const ModelConfig m = small_moe();
  PredictInput in;
  in.model = m;
  in.system = system_by_id("h100");
  in.layout = layout(8, 1);
  const Prediction one = predict(in);
  in.layout = layout(8, 8);
  const Prediction eight = predict(in);
  const double experts = 4 * 3.0 * 16 * 1024 * 512;  // all 4 layers
  EXPECT_NEAR(one.memory.parameters - eight.memory.parameters, experts * (1 - 1.0 / 8), 1);
  const double dense = eight.memory.parameters - experts / 8;
  EXPECT_NEAR(eight.memory.optimizer_bytes, 12 * dense / 8 + 12 * (experts / 8) / 1, 1);  // edp = 8 / 8
  EXPECT_NEAR(one.memory.optimizer_bytes, 12 * one.memory.parameters / 8, 1);
}

TEST(PredictMoe, BadLayoutsAreOneLine) {
  const ModelConfig m = small_moe();
  const ModelConfig dense = preset("llama3.1-8b");
  auto bad = [](const ModelConfig& model, Layout l, const std::string& says) {
    try {
      validate(l, model);
      ADD_FAILURE() << "accepted: " << says;
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
    }
  };
  Layout l = layout(8, 3);
  bad(m, l, "--ep 3 does not divide the 16 experts");
  l = layout(8, 8);
  l.etp = 3;
  bad(m, l, "--etp 3 does not divide the expert width 512");
  l = layout(8, 16);
  bad(m, l, "etp x ep = 1 x 16 = 16 does not divide the tp x cp x dp = 1 x 1 x 8 = 8");
  l = layout(8, 8);
  l.moe_imbalance = 0.5;
  bad(m, l, "--moe-imbalance 0.5 must be at least 1");
  Layout d;
  d.gpus = 8, d.global_batch = 8, d.seq = dense.n_ctx, d.ep = 2;
  bad(dense, d, "is not a mixture of experts");
  // The all-to-all overlap where Megatron Core refuses it.
  d.ep = 1, d.ep_comm_overlap = true;
  bad(dense, d, "--ep-comm-overlap on: llama3.1-8b is not a mixture of experts");
  l = layout(8, 1);
  l.ep_comm_overlap = true;
  bad(m, l, "--ep-comm-overlap on needs expert parallelism");
  l = layout(8, 8);
  l.ep_comm_overlap = true, l.recompute = Recompute::full;
  bad(m, l, "cannot run with --recompute full");
  l = layout(16, 8);
  l.ep_comm_overlap = true, l.pp = 2;
  bad(m, l, "--ep-comm-overlap on with --pp 2 needs the interleaved schedule");
  l.vpp = 2;
  EXPECT_NO_THROW(validate(l, m));
}

// The published MoE runs (../shared/data/published-runs.json, rows of kind "moe"), each as its
// args say. Qwen3-30B-A3B fp8 on 16 H100 is within 25%; gpt-oss-120b bf16 on 64 H100 runs, and
// its error is printed (predict is too fast on it: docs/predict.md says what is not modelled).
TEST(PredictMoe, PublishedRuns) {
  const std::string data = std::string(FLOPSCOPE_SOURCE_DIR) + "/../shared/data/";
  std::ifstream f(data + "published-runs.json");
  if (!f) GTEST_SKIP() << "../shared/data is absent";
  const nlohmann::json j = nlohmann::json::parse(f);
  int rows = 0;
  for (const auto& r : j.at("rows")) {
    if (r.value("kind", "") != "moe") continue;
    ++rows;
    const auto& lay = r.at("layout");
    std::string cfg;
    const auto& args = r.at("args");
    for (size_t i = 0; i + 1 < args.size(); ++i)
      if (args[i] == "--hf-config") cfg = args[i + 1].get<std::string>();
    cfg.replace(cfg.find("@DATA@/"), 7, data);
    PredictInput in;
    in.model = model_from_hf_file(cfg);
    in.model.n_ctx = lay.at("seq").get<int64_t>();
    in.system = system_by_id(r.at("gpu").get<std::string>());
    Layout& l = in.layout;
    l.gpus = r.at("gpus").get<int64_t>();
    l.tp = lay.at("tp"), l.pp = lay.at("pp"), l.ep = lay.at("ep"), l.cp = lay.at("cp");
    l.micro_batch = lay.at("mbs"), l.global_batch = lay.at("gbs"), l.seq = lay.at("seq");
    l.precision = lay.at("precision").get<std::string>();
    l.attention = Attention::flash, l.recompute = Recompute::none, l.sequence_parallel = false;
    l.distributed_optimizer = true;
    const Prediction p = predict(in);
    const double published = r.at("published").get<double>(), err = p.step_time_s / published - 1;
    std::printf("  %-44s predicted %7.3f s  published %7.3f s  error %+5.1f%% (all-to-all %.2f s, compute %.2f s)\n",
                r.at("id").get<std::string>().c_str(), p.step_time_s, published, 100 * err, p.breakdown.ep_comm_s,
                p.breakdown.compute_s);
    ASSERT_TRUE(std::isfinite(p.step_time_s) && p.step_time_s > 0);
    EXPECT_GT(p.breakdown.ep_comm_s, 0);
    if (r.at("id").get<std::string>().find("qwen3-30b-a3b") != std::string::npos) {
      EXPECT_LT(std::abs(err), 0.25);
    }
  }
  EXPECT_EQ(rows, 2);
}

}  // namespace
}  // namespace flopscope::predict
