// The cluster model (src/predict): Korthikanti et al. 2022 Table 5, the activation memory of
// its Table 2, mixed-precision Adam's bytes, model FLOPs against Megatron-LM's formula, GEMM
// quantisation, ring collectives, nccl-tests parsing, system profiles and layout checks.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "predict/cluster_line.hpp"
#include "predict/predict.hpp"
#include "predict/search.hpp"
#include "predict/validation.hpp"
#include "util/atomic_file.hpp"
#include "util/error.hpp"

#ifndef FLOPSCOPE_SOURCE_DIR
#error "FLOPSCOPE_SOURCE_DIR (the repository root) is set by tests/CMakeLists.txt"
#endif

namespace flopscope::predict {
namespace {

TEST(PredictTable5, EveryRowWithinTenPercentMeanWithinFive) {
  const auto rows = validate_table5(system_by_id("a100-sxm-80gb"));
  ASSERT_EQ(rows.size(), 8u);
  double sum = 0;
  for (const auto& r : rows) {
    // Printed so the test log shows prediction, published and error per row.
    std::printf("  %-5s %-15s predicted %7.2f s  published %6.2f s  error %+5.1f%%\n", r.model.c_str(),
                r.recompute.c_str(), r.predicted_s, r.published_s, 100 * r.error);
    EXPECT_LT(std::abs(r.error), 0.10) << r.model << " " << r.recompute;
    sum += std::abs(r.error);
  }
  EXPECT_LT(sum / 8, 0.05);
}

TEST(PredictTable5, SelectiveWithSequenceParallelIsFasterThanFull) {
  for (const auto& run : table5()) {
    PredictInput full, sel;
    full.model = sel.model = table5_model(run);
    full.system = sel.system = system_by_id("a100");
    full.layout = table5_layout(run, false);
    sel.layout = table5_layout(run, true);
    const Prediction a = predict(full), b = predict(sel);
    EXPECT_LT(b.step_time_s, a.step_time_s) << run.model;
    // Full recompute executes one more forward: HFU above MFU by about a third.
    EXPECT_NEAR(a.hardware_flops / a.model_flops, 4.0 / 3.0, 0.03) << run.model;
    EXPECT_TRUE(a.memory.fits && b.memory.fits) << run.model;
  }
}

TEST(PredictFlops, ModelFlopsAreMegatronsFormula) {
  for (const auto& run : table5()) {
    const ModelConfig m = table5_model(run);
    const Layout l = table5_layout(run, true);
    const double B = static_cast<double>(l.global_batch), s = 2048, L = static_cast<double>(m.n_layers),
                 h = static_cast<double>(m.d_model), V = static_cast<double>(m.vocab);
    const double megatron = 72 * B * s * L * h * h * (1 + s / (6 * h) + V / (12 * h * L));
    EXPECT_NEAR(model_flops_per_step(m, l) / megatron, 1.0, 1e-9) << run.model;
  }
}

TEST(PredictMemory, ActivationsAreKorthikantiTable2) {
  const double s = 2048, b = 1, h = 12288, a = 96, t = 8;
  const double sbh = s * b * h;
  EXPECT_DOUBLE_EQ(activation_bytes_per_layer(s, b, h, a, 1, false, Recompute::none), sbh * (34 + 5 * a * s / h));
  EXPECT_DOUBLE_EQ(activation_bytes_per_layer(s, b, h, a, t, false, Recompute::none),
                   sbh * (10 + 24 / t + 5 * a * s / (h * t)));
  EXPECT_DOUBLE_EQ(activation_bytes_per_layer(s, b, h, a, t, true, Recompute::none), sbh / t * (34 + 5 * a * s / h));
  EXPECT_DOUBLE_EQ(activation_bytes_per_layer(s, b, h, a, t, false, Recompute::selective), sbh * (10 + 24 / t));
  EXPECT_DOUBLE_EQ(activation_bytes_per_layer(s, b, h, a, t, true, Recompute::selective), sbh * 34 / t);
  EXPECT_DOUBLE_EQ(activation_bytes_per_layer(s, b, h, a, t, false, Recompute::full), 2 * sbh);
  // Flash attention stores no s x s tensor.
  EXPECT_DOUBLE_EQ(activation_bytes_per_layer(s, b, h, a, t, true, Recompute::none, Attention::flash), sbh * 34 / t);
}

// Activations from the layer graph's saved tensors (saved_activations). For the GPT-3 175B
// layer every mode is Korthikanti's Table 2 less its two hidden-dropout masks (1 byte of s b h
// each: the graph has no hidden dropout, and models trained today set it to 0), plus the two
// LayerNorms' 4-byte mean and rstd (16 bytes a token, which Table 2 leaves out) and, with flash,
// the fused kernel's 4-byte log-sum-exp a query row and head. The attention dropout (mask and
// dropped probabilities) is Megatron-LM's, as the compute model has it.
TEST(PredictMemory, GraphActivationsAreTable2LessItsHiddenDropout) {
  const ModelConfig m = table5_model(table5()[1]);  // 175B
  const double s = 2048, b = 1, h = 12288, a = 96, t = 8, sbh = s * b * h;
  for (bool sp : {false, true})
    for (Recompute r : {Recompute::none, Recompute::selective, Recompute::full})
      for (Attention at : {Attention::unfused, Attention::flash}) {
        Layout l = table5_layout(table5()[1], true);
        l.sequence_parallel = sp, l.recompute = r, l.attention = at;
        const double d = sp ? t : 1;  // what the sequence-split tensors are divided by
        const double masks = r == Recompute::full ? 0 : 2 * sbh / d;
        const double stats = r == Recompute::full ? 0 : 16 * s * b / d;
        const double lse = at == Attention::flash && r != Recompute::full ? 4 * b * a * s / t : 0;
        const double want = activation_bytes_per_layer(s, b, h, a, t, sp, r, at) - masks + stats + lse;
        EXPECT_NEAR(saved_activations(m, l).layer / want, 1.0, 1e-12)
            << "sp " << sp << " recompute " << to_string(r) << " attention " << to_string(at);
      }
}

// A Llama of 2 layers: d 64, 4 heads of 16 in 2 kv groups, SwiGLU of 96, 8 tokens, vocabulary 40.
ModelConfig tiny_llama() {
  ModelConfig m = preset("llama3.1-8b");
  m.n_layers = 2, m.d_model = 64, m.n_heads = 4, m.n_kv_heads = 2, m.d_head = 16, m.d_ff_explicit = 96, m.n_ctx = 8;
  m.vocab = 40;
  m.validate();
  return m;
}

// A Llama layer counted by hand: T = 16 tokens (b 2, s 8), d 64, 4 heads of 16 in 2 kv groups,
// SwiGLU of 96, no recompute, flash, tp 1. Kept: the input, both norms' outputs and 4-byte rstd,
// the QKV (after RoPE, in place: T (4 + 2 x 2) 16), the context, x1, the gate and up outputs and
// their product (T x 96 each), the log-sum-exp (b h s, 4 bytes). The head: its input y, its
// norm's output and rstd, the fp32 logits and the targets, and the loss's backward's logits
// gradient (16-bit with Megatron-LM).
TEST(PredictMemory, LlamaLayerSavedTensorsByHand) {
  const ModelConfig m = tiny_llama();
  Layout l;
  l.gpus = 1, l.micro_batch = 2, l.global_batch = 2, l.seq = 8, l.recompute = Recompute::none;
  l.attention = Attention::flash;
  const double T = 16, d = 64, f = 96, qkv = (4 + 2 * 2) * 16;
  const double layer = 2 * T * (d + d + qkv + d + d + d + 3 * f) + 4 * T * 2 + 4.0 * 2 * 4 * 8;
  const SavedActivations a = saved_activations(m, l);
  EXPECT_DOUBLE_EQ(a.layer, layer);
  EXPECT_DOUBLE_EQ(a.head, 2 * T * d * 2 + 4 * T + 4 * T * 40 + 4 * T + 2 * T * 40);
  EXPECT_DOUBLE_EQ(a.working, 0.0);
  // Full recompute keeps the input alone and holds the rest while the layer is recomputed.
  l.recompute = Recompute::full;
  const SavedActivations full = saved_activations(m, l);
  EXPECT_DOUBLE_EQ(full.layer, 2 * T * d);
  EXPECT_DOUBLE_EQ(full.layer + full.working, layer);
}

// torchtitan's op-level checkpointing (FSDP with --recompute selective) keeps what it saves: the
// odd mms' outputs (wq and wv: 5/6 of the fused QKV; w1, the gate; w2, the down projection, which
// nothing reads back, is not kept), flash's output and the block's input; the norms, RoPE, the
// up projection and SwiGLU are recomputed.
TEST(PredictMemory, OpLevelCheckpointingKeepsTheSavedMms) {
  const ModelConfig m = tiny_llama();
  Layout l;
  l.gpus = 2, l.fsdp = 2, l.micro_batch = 2, l.global_batch = 4, l.seq = 8, l.recompute = Recompute::selective;
  l.attention = Attention::flash;
  const double T = 16, d = 64, f = 96, qkv = (4 + 2 * 2) * 16;
  const double want = 2 * T * (d + qkv * (1 - 1.0 * 16 * 2 / qkv) + d + f) + 4.0 * 2 * 4 * 8;
  EXPECT_DOUBLE_EQ(saved_activations(m, l).layer, want);
}

TEST(PredictMemory, InFlightMicroBatchesAndAdamBytes) {
  const ModelConfig m = table5_model(table5()[1]);  // 175B
  Layout l = table5_layout(table5()[1], true);      // tp 8, pp 8, vpp 3, 64 micro-batches
  const double per_layer = 2048.0 * 12288 * 34 / 8;
  MemoryBreakdown mem = memory_per_gpu(1e9, 12, m, l, 1e12);
  EXPECT_DOUBLE_EQ(mem.activation_per_layer_bytes, per_layer);
  // First stage: pp micro-batches in flight, times the interleaving factor 1 + (p-1)/(p v).
  EXPECT_DOUBLE_EQ(mem.layers_in_flight, 12 * 8 * (1 + 7.0 / 24));
  EXPECT_DOUBLE_EQ(mem.weights_bytes + mem.gradients_bytes + mem.optimizer_bytes, 16e9);
  l.vpp = 1;
  EXPECT_DOUBLE_EQ(memory_per_gpu(1e9, 12, m, l, 1e12).layers_in_flight, 12 * 8);
  // Fewer micro-batches than stages: only those are in flight.
  l.global_batch = 4;
  EXPECT_DOUBLE_EQ(memory_per_gpu(1e9, 12, m, l, 1e12).layers_in_flight, 12 * 4);
  // Distributed optimizer: 2 + 2 + 12 / dp bytes a parameter.
  l.gpus = 256;  // dp 4
  l.global_batch = 64;
  l.distributed_optimizer = true;
  mem = memory_per_gpu(1e9, 12, m, l, 1e12);
  EXPECT_DOUBLE_EQ(mem.weights_bytes + mem.gradients_bytes + mem.optimizer_bytes, 1e9 * (4 + 12.0 / 4));
  EXPECT_TRUE(mem.fits);
  EXPECT_FALSE(memory_per_gpu(1e9, 12, m, l, 1e9).fits);
}

TEST(PredictMemory, ParametersPerGpuAddUpToTheModel) {
  // 22B at tp 8, pp 1: weights on one GPU x 8 ~ the model's parameters (layernorms repeated).
  PredictInput in;
  in.model = table5_model(table5()[0]);
  in.system = system_by_id("a100");
  in.layout = table5_layout(table5()[0], true);
  const Prediction p = predict(in);
  const double n = 48.0 * (12.0 * 6144 * 6144 + 13 * 6144) + 51200.0 * 6144 + 2048.0 * 6144;
  EXPECT_NEAR(p.memory.parameters * 8 / n, 1.0, 0.01);
}

TEST(PredictCompute, QuantisationEfficiency) {
  const SystemProfile s = system_by_id("a100");  // 108 SMs, 128 x 256 tiles
  // 108 whole tiles: one full wave.
  EXPECT_DOUBLE_EQ(quantisation_efficiency(128 * 108, 256, 1, s), 1.0);
  // One row too many needs a second wave of tiles doing almost nothing.
  EXPECT_LT(quantisation_efficiency(128 * 108 + 1, 256, 1, s), 0.51);
  // A 2048 x 9600 output: 16 x 38 tiles (or 8 x 75), 6 waves.
  EXPECT_NEAR(quantisation_efficiency(2048, 9600, 1, s), 2048.0 * 9600 / (6 * 108 * 128 * 256.0), 1e-12);
  // A matrix-vector product (Qwen2-MoE's shared gate's wgrad: d x 1) runs no tiles: no quantisation;
  // one column past kGemvWidth is tiled again.
  EXPECT_DOUBLE_EQ(quantisation_efficiency(3584, 1, 1, s), 1.0);
  EXPECT_DOUBLE_EQ(quantisation_efficiency(kGemvWidth, 4096, 1, s), 1.0);
  EXPECT_NEAR(quantisation_efficiency(3584, kGemvWidth + 1, 1, s), 3584.0 * 9 / (108 * 128 * 256.0), 1e-12);
}

TEST(PredictCompute, OpsAreShardedAndSaySource) {
  const ModelConfig m = table5_model(table5()[1]);
  const Layout l = table5_layout(table5()[1], true);
  const LayerCost c = layer_cost(m, l, system_by_id("a100"), nullptr);
  double fwd_flops = 0;
  for (const auto& o : c.ops) {
    EXPECT_EQ(o.source.rfind("modelled", 0), 0u) << o.name;
    if (o.name == "fwd.qkv") {
      EXPECT_EQ(o.shape, "2048x4608x12288");
    }
    if (o.name == "fwd.proj") {
      EXPECT_EQ(o.shape, "2048x12288x1536");
    }
    if (o.phase == Phase::forward && !o.head && o.bound != "fused") fwd_flops += o.flops;
  }
  // GEMM FLOPs of one layer's forward on one of 8 GPUs: (24 s h^2 + 4 s^2 h) / 8, plus small ops.
  const double gemm = (24.0 * 2048 * 12288 * 12288 + 4.0 * 2048 * 2048 * 12288) / 8;
  EXPECT_NEAR(fwd_flops / gemm, 1.0, 0.01);
  EXPECT_GT(c.layer_recompute_s, 0);  // selective: the attention core again
}

TEST(PredictCompute, FlashAttentionFusesTheCore) {
  const ModelConfig m = table5_model(table5()[1]);
  Layout l = table5_layout(table5()[1], true);
  l.attention = Attention::flash;
  const LayerCost c = layer_cost(m, l, system_by_id("a100"), nullptr);
  int flash = 0;
  for (const auto& o : c.ops) {
    EXPECT_EQ(o.name.find("softmax"), std::string::npos) << o.name;
    flash += o.name.find("attn.flash") != std::string::npos;
  }
  EXPECT_EQ(flash, 2);                   // forward and backward; selective recomputes nothing more
  EXPECT_EQ(c.layer_recompute_s, 0.0);
}

TEST(PredictComms, RingAlphaBeta) {
  SystemProfile s = system_by_id("a100");
  Network net{s, {}};
  const double S = 100e6, bus = 300e9 * s.nvlink_efficiency;
  const CommGroup node{8, 8}, one_a_node{8, 1};
  EXPECT_NEAR(net.time(Collective::all_reduce, S, node), 2 * 7.0 / 8 * S / bus + 14 * s.nvlink_latency_s, 1e-12);
  EXPECT_NEAR(net.time(Collective::reduce_scatter, S, node) + net.time(Collective::all_gather, S, node),
              net.time(Collective::all_reduce, S, node), 1e-12);
  EXPECT_GT(net.time(Collective::all_reduce, S, one_a_node), 5 * net.time(Collective::all_reduce, S, node));
  EXPECT_EQ(net.time(Collective::all_reduce, S, CommGroup{1, 8}), 0.0);
}

// A group over nodes with k GPUs in each runs k rings, each on its own NIC between nodes: bus
// bandwidth min(NVLink, k x network), each at its efficiency; the latency the network's.
TEST(PredictComms, GroupsOverNodesUseOneNicPerGpu) {
  const SystemProfile s = system_by_id("h100-sxm");
  const Network net{s, {}};
  const double net_bus = s.network_bytes_per_s * s.network_efficiency;   // 45 GB/s
  const double nvl_bus = s.nvlink_bytes_per_s * s.nvlink_efficiency;    // 360 GB/s
  EXPECT_DOUBLE_EQ(net.bus_bandwidth(CommGroup{64, 1}), net_bus);
  EXPECT_DOUBLE_EQ(net.bus_bandwidth(CommGroup{64, 2}), 2 * net_bus);
  EXPECT_DOUBLE_EQ(net.bus_bandwidth(CommGroup{64, 4}), 4 * net_bus);
  EXPECT_DOUBLE_EQ(net.bus_bandwidth(CommGroup{64, 8}), std::min(nvl_bus, 8 * net_bus));
  EXPECT_DOUBLE_EQ(net.bus_bandwidth(CommGroup{8, 8}), nvl_bus);
  const double S = 1e9;
  EXPECT_NEAR(net.time(Collective::reduce_scatter, S, CommGroup{336, 2}), 335.0 / 336 * S / (2 * net_bus) + 335 * s.network_latency_s,
              1e-12);
  // Megatron-LM's rank order: a dp group's ranks are tp apart, so 8 / tp of them share a node.
  EXPECT_EQ(strided_group(336, 4, 8).per_node, 2);
  EXPECT_EQ(strided_group(16, 8, 8).per_node, 1);
  EXPECT_EQ(strided_group(16, 1, 8).per_node, 8);
  EXPECT_EQ(strided_group(4, 1, 8).per_node, 4);  // all in one node
  EXPECT_FALSE(strided_group(4, 1, 8).spans_nodes());
  EXPECT_EQ(strided_group(3, 16, 8).per_node, 1);
}

// Data-parallel collectives a chunk at a time (exposed_past_chunks), worked by hand.
TEST(PredictComms, DataParallelOverlapsAChunkAtATime) {
  // vpp 1: what the collective exceeds one micro-batch's backward.
  EXPECT_DOUBLE_EQ(exposed_past_chunks(0.5, 0.2, 1, 8), 0.3);
  EXPECT_DOUBLE_EQ(exposed_past_chunks(0.1, 0.2, 1, 8), 0.0);
  // vpp 12, pp 8: chunk j (11 .. 0) has 8 j + 1 twelfths of a micro-batch's backward left. With
  // comm 0.5 s and 0.06 s a micro-batch: j = 11 gives (12 x 0.5 - 89 x 0.06) / 12 = 0.055 s,
  // j = 0 gives (0.5 - 0.06) / 12 = 0.0367 s; the larger is exposed.
  EXPECT_NEAR(exposed_past_chunks(0.5, 0.06, 12, 8), (6.0 - 89 * 0.06) / 12, 1e-12);
  // A short collective: only the last chunk's excess over its own backward, if any.
  EXPECT_NEAR(exposed_past_chunks(0.1, 0.06, 12, 8), (0.1 - 0.06) / 12, 1e-12);
  EXPECT_DOUBLE_EQ(exposed_past_chunks(0.05, 0.06, 12, 8), 0.0);
  EXPECT_DOUBLE_EQ(exposed_past_chunks(0.0, 0.06, 12, 8), 0.0);
}

std::string data(const std::string& name) { return std::string(FLOPSCOPE_SOURCE_DIR) + "/tests/data/nccl/" + name; }

TEST(PredictNcclTests, ParsesBusBandwidthAgainstSize) {
  const auto ar = parse_nccl_tests(read_file(data("all_reduce_perf_8gpu.txt")), "all_reduce_perf_8gpu.txt", 8);
  EXPECT_EQ(ar.op, Collective::all_reduce);
  EXPECT_FALSE(ar.inter_node);
  ASSERT_EQ(ar.points.size(), 5u);
  EXPECT_DOUBLE_EQ(ar.points.front().first, 1048576);
  EXPECT_DOUBLE_EQ(ar.at(268435456), 230.28e9);
  EXPECT_DOUBLE_EQ(ar.at(1e12), 230.28e9);  // clamped to the largest size
  const double mid = ar.at(std::sqrt(16777216.0 * 67108864.0));
  EXPECT_NEAR(mid, (162.93e9 + 225.85e9) / 2, 1e3);  // halfway in log size
  const auto sr = parse_nccl_tests(read_file(data("sendrecv_perf_2nodes.txt")), "sendrecv_perf_2nodes.txt", 8);
  EXPECT_EQ(sr.op, Collective::send_recv);
  EXPECT_TRUE(sr.inter_node);  // 16 ranks over nodes of 8
  // The measured curve replaces the profile's bandwidth.
  Network net{system_by_id("a100"), {ar}};
  EXPECT_NEAR(net.time(Collective::all_reduce, 268435456, CommGroup{8, 8}),
              2 * 7.0 / 8 * 268435456 / 230.28e9 + 14 * net.system.nvlink_latency_s, 1e-12);
  EXPECT_THROW(parse_nccl_tests(read_file(data("all_gather_perf_empty.txt")), "all_gather_perf_empty.txt", 8), UsageError);
  EXPECT_THROW(parse_nccl_tests("1 2 3 4 5 6 7 8\n", "results.txt", 8), UsageError);  // no collective named
}

TEST(PredictSystem, ProfilesAndJson) {
  for (const auto& id : system_ids()) {
    const SystemProfile s = system_by_id(id);
    EXPECT_GT(s.peak_bf16_tflops, 0) << id;
    EXPECT_EQ(s.gpus_per_node, 8) << id;
    // Every figure names its source.
    const nlohmann::json j = system_to_json(s);
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (it.key() != "id" && it.key() != "title" && it.key() != "sources") {
        EXPECT_TRUE(s.sources.count(it.key())) << id << " " << it.key();
      }
    }
  }
  EXPECT_DOUBLE_EQ(system_by_id("a100").peak_fp16_tflops, 312);
  EXPECT_DOUBLE_EQ(system_by_id("a100").network_bytes_per_s, 25e9);  // HDR 200 Gb/s a GPU
  EXPECT_DOUBLE_EQ(system_by_id("h100").network_bytes_per_s, 50e9);  // NDR 400 Gb/s a GPU
  const SystemProfile round = system_from_json(system_to_json(system_by_id("h200-sxm")), "test");
  EXPECT_DOUBLE_EQ(round.hbm_bytes_per_s, 4.8e12);
  const SystemProfile b = system_from_json(nlohmann::json::parse(R"({"base": "a100", "gemm_efficiency": 0.5})"), "test");
  EXPECT_DOUBLE_EQ(b.gemm_efficiency, 0.5);
  EXPECT_DOUBLE_EQ(b.sm_count, 108);
  for (const char* bad : {"[]", R"({"base": "tpu"})", R"({"base": "a100", "gemm_efficiency": 1.5})",
                          R"({"base": "a100", "sm_count": 1.5})", R"({"base": "a100", "colour": 1})",
                          R"({"base": "a100", "hbm_bytes": "lots"})", R"({"sm_count": 108})"})
    EXPECT_THROW(system_from_json(nlohmann::json::parse(bad), "test"), UsageError) << bad;
  EXPECT_THROW(system_by_id("tpu-v5"), UsageError);
}

TEST(PredictLayout, BadLayoutsAreUsageErrors) {
  const ModelConfig m = table5_model(table5()[1]);  // 96 layers, 96 heads
  auto layout = [](int64_t gpus, int64_t tp, int64_t pp, int64_t vpp, int64_t mb, int64_t gb) {
    Layout l;
    l.gpus = gpus, l.tp = tp, l.pp = pp, l.vpp = vpp, l.micro_batch = mb, l.global_batch = gb;
    return l;
  };
  EXPECT_NO_THROW(validate(layout(64, 8, 8, 3, 1, 64), m));
  EXPECT_THROW(validate(layout(64, 7, 1, 1, 1, 64), m), UsageError);    // tp not dividing the heads
  EXPECT_THROW(validate(layout(60, 8, 1, 1, 1, 64), m), UsageError);    // gpus not divisible by tp pp
  EXPECT_THROW(validate(layout(64, 8, 1, 1, 2, 12), m), UsageError);    // batch not divisible by mb dp
  EXPECT_THROW(validate(layout(128, 1, 128, 1, 1, 128), m), UsageError);  // more stages than layers
  EXPECT_THROW(validate(layout(64, 8, 8, 5, 1, 64), m), UsageError);    // 96 layers not in 40 chunks
  EXPECT_THROW(validate(layout(64, 8, 8, 3, 1, 12), m), UsageError);    // interleaving: m not a multiple of pp
  Layout l = layout(8, 8, 1, 1, 1, 8);
  l.precision = "fp32";
  EXPECT_THROW(validate(l, m), UsageError);
}

TEST(PredictSchedule, UnevenLayersThePaceIsTheSlowestStage) {
  EXPECT_EQ(layer_split(10, 4), (std::vector<int64_t>{3, 3, 2, 2}));
  PredictInput in;
  in.model = table5_model(table5()[1]);
  in.system = system_by_id("a100");
  in.layout = table5_layout(table5()[1], true);
  in.layout.vpp = 1;
  in.layout.pp = 8;
  const double even = predict(in).stage_time_s;
  in.model.n_layers = 97;  // one stage gets 13 layers
  const Prediction p = predict(in);
  EXPECT_GT(p.stage_time_s, even * 1.05);
  EXPECT_EQ(p.split.front(), 13);
  // Bubble: (pp - 1) / (vpp m) of the ideal time.
  EXPECT_NEAR(p.breakdown.bubble_s / (64 * p.stage_time_s), 7.0 / 64, 1e-12);
}

// --from-measure takes a timed op's efficiency over the FLOPs it ran: the counted ones where the
// result has them (grouped GEMMs under a capacity factor run fewer rows than the analytic k T,
// so their time over the analytic FLOPs would count the drops twice, once here and once in the
// capped imbalance), else the analytic.
TEST(PredictFromMeasure, EfficiencyIsOverTheFlopsTheOpRan) {
  const std::string path = testing::TempDir() + "from-measure-counted.json";
  write_file_atomic(path, R"({"command": "measure", "ops": [
    {"name": "fwd.experts.up", "kind": "gemm", "flops": 1000, "counted_flops": 750, "min_bytes": 10,
     "time_ms": {"median": 2}},
    {"name": "fwd.qkv", "kind": "gemm", "flops": 400, "min_bytes": 10, "time_ms": {"median": 1}},
    {"name": "fwd.ln1", "kind": "reduction", "flops": 5, "counted_flops": 5, "min_bytes": 64, "time_ms": {"median": 0.5}}]})");
  const MeasuredOps m = measured_ops_from_file(path);
  std::remove(path.c_str());
  EXPECT_DOUBLE_EQ(m.ops.at("fwd.experts.up").flops, 750);  // counted: the kept rows
  EXPECT_DOUBLE_EQ(m.ops.at("fwd.experts.up").time_s, 2e-3);
  EXPECT_DOUBLE_EQ(m.ops.at("fwd.qkv").flops, 400);  // no count: analytic
  EXPECT_FALSE(m.ops.at("fwd.ln1").gemm);
  EXPECT_DOUBLE_EQ(m.ops.at("fwd.ln1").bytes, 64);
}

}  // namespace
}  // namespace flopscope::predict

namespace flopscope::predict {
namespace {

// Megatron-LM's --account-for-embedding-in-pipeline-split and --account-for-loss-in-pipeline-
// split: the embedding and the loss each count as a layer of the first and last stages' split.
// Llama 3.1 405B's 126 layers over pp 8 x vpp 8 (the DGXC recipe) divide only so: 128 = 64 x 2,
// the first and last stages 15 layers, the rest 16; predict assumes both then, and says so.
TEST(PredictLayout, TheEmbeddingAndLossCountedInThePipelineSplit) {
  EXPECT_EQ(layer_split(126, 8, true, true), (std::vector<int64_t>{15, 16, 16, 16, 16, 16, 16, 15}));
  EXPECT_EQ(layer_split(10, 4, true, false), (std::vector<int64_t>{2, 3, 3, 2}));  // 11 counted: 3 3 3 2
  EXPECT_EQ(layer_split(10, 4), (std::vector<int64_t>{3, 3, 2, 2}));
  const ModelConfig m = preset("llama3.1-405b");
  LayoutChoices c;
  c.tp = 8, c.pp = 8, c.vpp = 8, c.cp = 2, c.global_batch = 256, c.seq = 8192;
  const ResolvedLayout r = resolve_layout(c, m, system_by_id("h100-sxm"), 512);
  EXPECT_TRUE(r.layout.embedding_in_split);
  EXPECT_TRUE(r.layout.loss_in_split);
  bool said = false;
  for (const auto& d : r.defaults) said |= d.find("126 + 2 = 64 x 2") != std::string::npos;
  EXPECT_TRUE(said);
  // The stages predict costs: 15 layers on the first (with the embedding) and the last (with the head).
  PredictInput in;
  in.model = m, in.system = system_by_id("h100-sxm"), in.layout = r.layout;
  const Prediction p = predict(in);
  EXPECT_EQ(p.split.front(), 15);
  EXPECT_EQ(p.split.back(), 15);
  // Given off, the layout is refused with what would make it divide.
  c.embedding_in_split = false;
  try {
    resolve_layout(c, m, system_by_id("h100-sxm"), 512);
    ADD_FAILURE() << "126 layers over 64 chunks accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("--account-for-embedding-in-pipeline-split on"), std::string::npos) << e.what();
  }
  // Counting them with one stage is refused.
  LayoutChoices one;
  one.embedding_in_split = true, one.global_batch = 8;
  EXPECT_THROW(resolve_layout(one, preset("llama3.1-8b"), system_by_id("h100-sxm"), 8), UsageError);
}

TEST(PredictClusterLine, DefaultLayoutOnAProfiledGpuElseNa) {
  const ModelConfig m = preset("gpt3-175b");
  MeasuredOps none;
  none.file = "test";
  const auto j = cluster_prediction(m, none, "NVIDIA A100-SXM4-80GB", "bf16", 1024);
  ASSERT_EQ(j.at("status"), "predicted") << j.dump();
  EXPECT_EQ(j.at("layout_name"), kDefaultLayoutName);
  EXPECT_EQ(j.at("layout").at("tp"), 8);
  EXPECT_EQ(j.at("layout").at("tp").get<int64_t>() * j.at("layout").at("pp").get<int64_t>() *
                j.at("layout").at("dp").get<int64_t>(), 1024);
  // Megatron-LM (Narayanan et al. 2021): about 34 days on 1024 A100s; the model is in that range.
  EXPECT_GT(j.at("days").get<double>(), 15);
  EXPECT_LT(j.at("days").get<double>(), 60);
  EXPECT_EQ(cluster_prediction(m, none, "Intel(R) Xeon(R) CPU", "bf16", 1024).at("status"), "n/a");
  EXPECT_EQ(cluster_prediction(m, none, "NVIDIA A100-SXM4-80GB", "fp32", 1024).at("status"), "n/a");
  EXPECT_EQ(cluster_prediction(m, none, "NVIDIA A100-SXM4-80GB", "bf16", 3).at("status"), "n/a");
}

}  // namespace
}  // namespace flopscope::predict

namespace flopscope::predict {
namespace {

TEST(PredictDefaults, AttentionAndOptimizerFollowTheArchitecture) {
  const ModelConfig m = preset("gpt3-175b");
  const ResolvedLayout h = resolve_layout({}, m, system_by_id("h100"), 64);
  EXPECT_EQ(h.layout.attention, Attention::flash);
  EXPECT_TRUE(h.layout.distributed_optimizer);
  const ResolvedLayout a = resolve_layout({}, m, system_by_id("a100"), 64);
  EXPECT_EQ(a.layout.attention, Attention::unfused);
  EXPECT_FALSE(a.layout.distributed_optimizer);
  // Every default taken is named; what was given is not.
  EXPECT_EQ(h.defaults.size(), 4u);  // attention, optimizer, seq, global batch
  LayoutChoices c;
  c.attention = Attention::unfused;
  c.global_batch = 64;
  const ResolvedLayout g = resolve_layout(c, m, system_by_id("h100"), 64);
  EXPECT_EQ(g.layout.attention, Attention::unfused);
  EXPECT_EQ(g.layout.global_batch, 64);
  EXPECT_EQ(g.defaults.size(), 2u);
  EXPECT_EQ(layout_to_json(g).at("defaults").size(), 2u);
}

// Transformer Engine's TP comm overlap: on by default on Hopper with tp > 1 and sequence
// parallelism (NeMo's, Megatron-Bridge's and MLPerf's practice), off under FSDP (torchtitan's
// async TP is off by default), off elsewhere; on without sequence parallelism is refused.
TEST(PredictDefaults, TpCommOverlapAsTheRecipesRunIt) {
  const ModelConfig m = preset("gpt3-175b");
  LayoutChoices c;
  c.tp = 4;
  c.global_batch = 64;
  auto line = [](const ResolvedLayout& r) {
    for (const auto& d : r.defaults)
      if (d.rfind("tensor-parallel comm overlap", 0) == 0) return d;
    return std::string();
  };
  const ResolvedLayout h = resolve_layout(c, m, system_by_id("h100"), 64);
  EXPECT_TRUE(h.layout.tp_comm_overlap);
  EXPECT_NE(line(h).find("on (h100-sxm is Hopper"), std::string::npos) << line(h);
  EXPECT_FALSE(resolve_layout(c, m, system_by_id("a100"), 64).layout.tp_comm_overlap);
  LayoutChoices f = c;
  f.fsdp = 16;
  const ResolvedLayout t = resolve_layout(f, m, system_by_id("h100"), 64);
  EXPECT_FALSE(t.layout.tp_comm_overlap);
  EXPECT_NE(line(t).find("torchtitan"), std::string::npos) << line(t);
  LayoutChoices n = c;
  n.sequence_parallel = false;
  EXPECT_FALSE(resolve_layout(n, m, system_by_id("h100"), 64).layout.tp_comm_overlap);
  n.tp_comm_overlap = true;
  EXPECT_THROW(resolve_layout(n, m, system_by_id("h100"), 64), UsageError);
  LayoutChoices one;  // tp 1: nothing to overlap, no default named
  one.global_batch = 64;
  EXPECT_EQ(line(resolve_layout(one, m, system_by_id("h100"), 64)), "");
}

TEST(PredictDefaults, GlobalBatchFromThePublishedTokensPerBatch) {
  auto batch = [](const std::string& model, int64_t gpus, int64_t tp, int64_t pp, int64_t mb, std::string* why) {
    const ModelConfig m = preset(model);
    Layout l;
    l.gpus = gpus, l.tp = tp, l.pp = pp, l.micro_batch = mb, l.seq = m.n_ctx;
    return default_global_batch(m, l, why);
  };
  std::string why;
  // GPT-3 175B: 3.2M tokens / 2048 = 1562.5 sequences; dp 8 x mb 1: 1560.
  EXPECT_EQ(batch("gpt3-175b", 64, 8, 1, 1, &why), 1560);
  EXPECT_NE(why.find("published 3.2M"), std::string::npos) << why;
  // Llama 2: 4M / 4096 = 976.6; dp 4 x mb 2 = 8 divides 976.
  EXPECT_EQ(batch("llama2-70b", 32, 8, 1, 2, nullptr), 976);
  // Llama 3.1 405B: 16M / 8192 = 1953.1; dp 8: 1952.
  EXPECT_EQ(batch("llama3.1-405b", 512, 8, 8, 1, nullptr), 1952);
  // Llama 3.1 8B publishes none: 4M assumed, / 8192 = 488.3; dp 64: 448 (7 x 64), said so.
  EXPECT_EQ(batch("llama3.1-8b", 64, 1, 1, 1, &why), 448);
  EXPECT_NE(why.find("assumed 4M"), std::string::npos) << why;
  // More ranks than the batch has sequences: one micro-batch each.
  EXPECT_EQ(batch("gpt3-175b", 8192, 1, 1, 1, nullptr), 8192);
}

TEST(PredictLayout, ContextParallelAndFsdpCombinations) {
  const ModelConfig m = preset("llama3.1-8b");  // seq 8192, 32 heads, 8 kv heads
  Layout l;
  l.gpus = 16, l.cp = 2, l.global_batch = 8, l.seq = 8192, l.attention = Attention::flash;
  EXPECT_NO_THROW(validate(l, m));
  EXPECT_EQ(l.dp(), 8);
  l.attention = Attention::unfused;
  EXPECT_THROW(validate(l, m), UsageError);  // ring attention is a fused kernel
  l.attention = Attention::flash;
  l.cp = 3, l.gpus = 24;
  EXPECT_THROW(validate(l, m), UsageError);  // 8192 does not split into 6 chunks
  l.cp = 1, l.gpus = 16, l.global_batch = 16;
  l.fsdp = 16;
  EXPECT_NO_THROW(validate(l, m));
  l.fsdp = 8;  // HSDP: shards of 8, replicated twice
  EXPECT_NO_THROW(validate(l, m));
  for (int64_t bad : {1, 3, 32}) {
    l.fsdp = bad;
    EXPECT_THROW(validate(l, m), UsageError) << bad;
  }
}

}  // namespace
}  // namespace flopscope::predict

namespace flopscope::predict {
namespace {

// The search covers context parallelism (where each GPU keeps at least 2048 tokens), FSDP over
// every data-parallel rank (without interleaving), and expert parallelism for a mixture of
// experts; each only where it can run.
TEST(PredictSearch, ContextParallelFsdpAndExpertParallelAreSearched) {
  const SystemProfile s = system_by_id("h100-sxm");
  std::set<bool> overlaps, compiles;
  std::set<std::string> dispatchers;
  auto dims = [&](const ModelConfig& m, LayoutChoices c, int64_t gpus) {
    std::set<int64_t> cps, fsdps, eps;
    overlaps.clear();
    for (const auto& l : search_space(c, m, s, gpus)) {
      EXPECT_NO_THROW(validate(l, m));
      cps.insert(l.cp), eps.insert(l.ep);
      if (l.ep_comm_overlap) {
        EXPECT_GT(l.ep, 1);
        EXPECT_NE(l.recompute, Recompute::full);
        EXPECT_TRUE(l.pp == 1 || l.vpp > 1);
      }
      overlaps.insert(l.ep_comm_overlap);
      if (l.ep > 1) dispatchers.insert(std::string(to_string(l.moe_dispatcher)));
      fsdps.insert(l.fsdp);
      if (l.fsdp > 1) {
        EXPECT_EQ(l.fsdp, l.dp());
        EXPECT_EQ(l.vpp, 1);
        compiles.insert(l.torch_compile);
      } else {
        EXPECT_FALSE(l.torch_compile);  // torch.compile only where FSDP (torchtitan) is
      }
      if (l.cp > 1) {
        EXPECT_EQ(l.attention, Attention::flash);
      }
    }
    return std::make_tuple(cps, fsdps, eps);
  };
  LayoutChoices c;
  c.seq = 8192;
  const auto [cps, fsdps, eps] = dims(preset("llama3.1-8b"), c, 16);
  EXPECT_EQ(cps, (std::set<int64_t>{1, 2, 4}));  // 8192 / 8 = 1024 tokens a GPU is below the floor
  EXPECT_TRUE(fsdps.count(0) && fsdps.size() > 1);
  EXPECT_EQ(eps, (std::set<int64_t>{1}));
  EXPECT_EQ(overlaps, (std::set<bool>{false}));  // a dense model: no all-to-all
  EXPECT_EQ(compiles, (std::set<bool>{false, true}));  // FSDP layouts compiled and eager
  c.seq = 2048;
  EXPECT_EQ(std::get<0>(dims(preset("gpt3-13b"), c, 16)), (std::set<int64_t>{1}));
  const auto [mcps, mfsdps, meps] = dims(preset("mixtral-8x7b"), {}, 16);  // its 32768 tokens: cp 1-8
  EXPECT_EQ(meps, (std::set<int64_t>{1, 2, 4, 8}));  // 8 experts
  EXPECT_EQ(overlaps, (std::set<bool>{false, true}));  // the all-to-all overlap tried where it can run
  EXPECT_EQ(dispatchers, (std::set<std::string>{"allgather", "alltoall", "flex"}));
  EXPECT_EQ(mfsdps, (std::set<int64_t>{0}));
  EXPECT_EQ(mcps, (std::set<int64_t>{1, 2, 4, 8}));
}

// Without --global-batch each layout takes the default rule's batch, rounded to its micro-batch x
// dp, so the ranking is by tokens a second, not by step time (steps of different sizes).
TEST(PredictSearch, RankedByTokensPerSecond) {
  PredictInput base;
  base.model = preset("qwen3-30b-a3b");
  base.system = system_by_id("h100-sxm");
  const SearchResult r = search_layouts(base, {}, 64, INT64_C(1) << 20);  // every layout that fits
  ASSERT_GE(r.best.size(), 2u);
  std::set<int64_t> batches;
  for (size_t i = 0; i < r.best.size(); ++i) {
    batches.insert(r.best[i].layout.global_batch);
    if (i > 0) {
      EXPECT_GE(r.best[i - 1].tokens_per_s, r.best[i].tokens_per_s) << i;
    }
  }
  EXPECT_GT(batches.size(), 1u) << "the case this guards: layouts of different global batches";
}

TEST(PredictSearch, GivenDimensionsAreHeldTheRestVaried) {
  const ModelConfig m = preset("gpt3-13b");  // 40 layers, 40 heads
  const SystemProfile s = system_by_id("h100");
  const auto all = search_space({}, m, s, 16);
  std::set<int64_t> tps, mbs;
  std::set<bool> flash, dopt;
  for (const auto& l : all) {
    EXPECT_NO_THROW(validate(l, m));
    EXPECT_EQ(l.tp * l.pp * l.cp * l.dp(), 16);
    tps.insert(l.tp), mbs.insert(l.micro_batch);
    flash.insert(l.attention == Attention::flash), dopt.insert(l.distributed_optimizer);
  }
  EXPECT_EQ(tps, (std::set<int64_t>{1, 2, 4, 8}));  // the divisors of 40 heads up to a node
  EXPECT_EQ(mbs, (std::set<int64_t>{1, 2, 4, 8}));
  EXPECT_EQ(flash.size(), 2u);
  EXPECT_EQ(dopt.size(), 2u);
  LayoutChoices given;
  given.tp = 4;
  given.attention = Attention::flash;
  given.global_batch = 64;
  const auto held = search_space(given, m, s, 16);
  ASSERT_FALSE(held.empty());
  EXPECT_LT(held.size(), all.size());
  for (const auto& l : held) {
    EXPECT_EQ(l.tp, 4);
    EXPECT_EQ(l.attention, Attention::flash);
    EXPECT_EQ(l.global_batch, 64);
  }
}

}  // namespace
}  // namespace flopscope::predict

namespace flopscope::predict {
namespace {

TEST(PredictCompute, FlashBytesTakeTheQkvWidthFromTheGraph) {
  // Llama 3.1 70B: 64 query heads, 8 kv heads of 128: qkv is (8 + 2) x 8 x 128 = 10240 wide,
  // not 3 x 8192 = 24576; the context 64 x 128 = 8192. One sequence of 8192 tokens, tp 1.
  const ModelConfig m = preset("llama3.1-70b");
  Layout l;
  l.gpus = 1, l.global_batch = 1, l.seq = 8192, l.attention = Attention::flash, l.recompute = Recompute::none;
  const LayerCost c = layer_cost(m, l, system_by_id("h100"), nullptr);
  const double T = 8192;
  int seen = 0;
  for (const auto& o : c.ops) {
    if (o.name == "fwd.attn.flash") {
      EXPECT_DOUBLE_EQ(o.bytes, T * (10240 + 8192) * 2);
      ++seen;
    }
    if (o.name == "bwd.attn.flash") {
      EXPECT_DOUBLE_EQ(o.bytes, T * (2 * 10240 + 2 * 8192) * 2);
      ++seen;
    }
  }
  EXPECT_EQ(seen, 2);
}

TEST(PredictSystem, H200IsTheH100WithMoreMemoryAndBandwidth) {
  const SystemProfile h100 = system_by_id("h100"), h200 = system_by_id("h200");
  EXPECT_DOUBLE_EQ(h200.peak_bf16_tflops, h100.peak_bf16_tflops);
  EXPECT_DOUBLE_EQ(h200.peak_fp8_tflops, h100.peak_fp8_tflops);
  EXPECT_EQ(h200.sm_count, h100.sm_count);
  EXPECT_DOUBLE_EQ(h200.hbm_bytes, 141e9);
  EXPECT_DOUBLE_EQ(h200.hbm_bytes_per_s, 4.8e12);
  EXPECT_NE(h200.sources.at("sm_count").find("assumed"), std::string::npos);
  // The same layer: a compute-bound GEMM takes the same time, a memory-bound op 3.35 / 4.8 of it.
  const ModelConfig m = preset("gpt3-13b");
  Layout l;
  l.gpus = 1, l.global_batch = 1, l.precision = "bf16";
  const LayerCost a = layer_cost(m, l, h100, nullptr), b = layer_cost(m, l, h200, nullptr);
  ASSERT_EQ(a.ops.size(), b.ops.size());
  for (size_t i = 0; i < a.ops.size(); ++i) {
    if (a.ops[i].name == "fwd.ffn.up") {
      EXPECT_DOUBLE_EQ(b.ops[i].time_s, a.ops[i].time_s);
    }
    if (a.ops[i].name == "fwd.ln1") {
      EXPECT_NEAR(b.ops[i].time_s / a.ops[i].time_s, 3.35 / 4.8, 1e-12);
    }
  }
}

}  // namespace
}  // namespace flopscope::predict

namespace flopscope::predict {
namespace {

// How each GEMM shards is its weight's split (graph: TensorSpec::split), whatever layout its
// operands have: under fp8 every GEMM reads transposed K-major copies, and the column-parallel
// QKV must still split its output features (n), the row-parallel projection its input (k).
TEST(PredictCompute, Fp8GemmsSplitTheirWeightsDimension) {
  const ModelConfig m = preset("gpt3-175b");
  Layout l;
  l.gpus = 8, l.tp = 8, l.global_batch = 1, l.precision = "fp8", l.attention = Attention::flash;
  const LayerCost c = layer_cost(m, l, system_by_id("h100"), nullptr);
  const std::map<std::string, std::string> want = {{"fwd.qkv", "2048x4608x12288 fp8"},
                                                   {"fwd.proj", "2048x12288x1536 fp8"},
                                                   {"bwd.proj.dgrad", "2048x1536x12288 fp8"},
                                                   {"bwd.qkv.wgrad", "12288x4608x2048 fp8"},
                                                   {"fwd.ffn.down", "2048x12288x6144 fp8"}};
  int seen = 0;
  for (const auto& o : c.ops)
    if (want.count(o.name)) {
      EXPECT_EQ(o.shape, want.at(o.name)) << o.name;
      ++seen;
    }
  EXPECT_EQ(seen, static_cast<int>(want.size()));
}

// A replicated weight (MLA's down projections, Megatron-LM's duplicated TELinear) is whole on
// every tp rank: its GEMM does all the tokens without sequence parallelism and s / tp with it;
// a column-parallel one (kv_b) does 1 / tp either way.
TEST(PredictCompute, ReplicatedWeightsSplitTheirTokensOnlyUnderSequenceParallelism) {
  ModelConfig m = preset("deepseek-v3");
  for (bool sp : {false, true}) {
    Layout l;
    l.gpus = 8, l.tp = 8, l.global_batch = 1, l.seq = 4096, l.sequence_parallel = sp, l.attention = Attention::flash;
    const LayerCost c = layer_cost(m, l, system_by_id("h100"), nullptr);
    std::map<std::string, double> flops;
    for (const auto& o : c.ops) flops[o.name] = o.flops;
    const double q_a = 2.0 * 4096 * 7168 * 1536, kv_b = 2.0 * 4096 * 512 * (128 * (128 + 128));
    EXPECT_DOUBLE_EQ(flops.at("fwd.q_a"), sp ? q_a / 8 : q_a) << "sp " << sp;
    EXPECT_DOUBLE_EQ(flops.at("fwd.kv_b"), kv_b / 8) << "sp " << sp;
  }
}

TEST(PredictFp8, LinearGemmsAtTheFp8PeakCastsAtTheirBytes) {
  // GPT-3 13B layer (d 5120, d_ff 20480), one sequence of 2048 tokens, tp 1 on the H100:
  // fwd.ffn.up is 2048 x 20480 x 5120 in fp8: 2 m n k FLOPs at 1978.9 TFLOP/s x fp8_gemm_efficiency x e_q,
  // with 1-byte operands; its input's fp8 copy is a cast of 2048 x 5120 elements, 3 bytes each
  // (2 read, 1 written), memory bound. The attention core and the LM head stay bf16.
  const ModelConfig m = preset("gpt3-13b");
  Layout l;
  l.gpus = 1, l.global_batch = 1, l.precision = "fp8", l.attention = Attention::flash;
  const SystemProfile s = system_by_id("h100");
  const LayerCost c = layer_cost(m, l, s, nullptr);
  int seen = 0;
  for (const auto& o : c.ops) {
    if (o.name == "fwd.ffn.up") {
      const double flops = 2.0 * 2048 * 20480 * 5120;
      EXPECT_DOUBLE_EQ(o.flops, flops);
      EXPECT_DOUBLE_EQ(o.bytes, (2048.0 * 5120 + 5120.0 * 20480) * 1 + 2048.0 * 20480 * 2);
      EXPECT_NEAR(o.time_s, flops / (1978.9e12 * s.fp8_gemm_efficiency * quantisation_efficiency(2048, 20480, 1, s)), 1e-15);
      ++seen;
    }
    if (o.name == "fwd.ffn.up.cast_a") {
      EXPECT_DOUBLE_EQ(o.bytes, 2048.0 * 5120 * 3);
      EXPECT_NEAR(o.time_s, o.bytes / (3.35e12 * 0.8), 1e-15);
      EXPECT_FALSE(o.per_step);
      ++seen;
    }
    if (o.name == "fwd.ffn.up.cast_b") {  // the weight's copy: once a step
      EXPECT_DOUBLE_EQ(o.bytes, 5120.0 * 20480 * 3);
      EXPECT_TRUE(o.per_step);
      ++seen;
    }
    if (o.name == "fwd.attn.flash" || o.head) {
      EXPECT_EQ(o.shape.find("fp8"), std::string::npos) << o.name;
    }
  }
  EXPECT_EQ(seen, 3);
  EXPECT_GT(c.weight_cast_s, 0);
}

}  // namespace
}  // namespace flopscope::predict

namespace flopscope::predict {
namespace {

// A small GPT for hand-worked cases: 4 layers of d 1024, 16 heads of 64, seq 8192, vocab 32000.
ModelConfig small_gpt() {
  ModelConfig m = preset("gpt3-175b");
  m.name = "small";
  m.n_layers = 4, m.d_model = 1024, m.n_heads = 16, m.d_head = 64, m.n_ctx = 8192, m.vocab = 32000;
  m.validate();
  return m;
}

const OpCost& op_named(const Prediction& p, const std::string& name) {
  for (const auto& o : p.cost.ops)
    if (o.name == name) return o;
  throw std::runtime_error("no op " + name);
}

TEST(PredictContextParallel, HandWorkedRing) {
  // 16 H100s: tp 2 x cp 2 x dp 4, one stage, seq 8192, micro-batch 1, 16 sequences (m = 4),
  // flash, selective recompute (nothing left to recompute with flash), SP, distributed optimizer.
  PredictInput in;
  in.model = small_gpt();
  in.system = system_by_id("h100");
  in.system.gemm_efficiency = 0.77;  // the case is worked at this efficiency (see the ASSERTs on the ring below)
  Layout& l = in.layout;
  l.gpus = 16, l.tp = 2, l.cp = 2, l.micro_batch = 1, l.global_batch = 16, l.seq = 8192;
  l.attention = Attention::flash, l.recompute = Recompute::selective, l.sequence_parallel = true;
  l.distributed_optimizer = true, l.precision = "bf16";
  const Prediction p = predict(in);
  const nlohmann::json j = prediction_json(p);
  const double S = 8192, cp = 2, tp = 2, b = 1, d = 1024, a = 16, dh = 64, L = 4, m = 4;
  const double local = S / cp;  // tokens of each sequence on this GPU

  // The layer's linear GEMMs on seq / cp tokens: fwd.qkv is (4096 x 3072 / tp x 1024).
  EXPECT_DOUBLE_EQ(op_named(p, "fwd.qkv").flops, 2 * local * b * d * 3 * d / tp);
  // The load-balanced causal square: cp x the causal square of the local chunk, i.e. 1 / cp of
  // the whole causal square: forward Q K^T and P V, 2 a s^2 dh / cp (causal-halved), over tp.
  const double fwd_flash_flops = 2 * b * a * S * S * dh / cp / tp;
  const double bwd_flash_flops = 5 * b * a * S * S * dh / cp / tp;  // 4 GEMMs + the recomputed scores
  const OpCost& ff = op_named(p, "fwd.attn.flash");
  const OpCost& bf = op_named(p, "bwd.attn.flash");
  EXPECT_DOUBLE_EQ(ff.flops, fwd_flash_flops);
  EXPECT_DOUBLE_EQ(bf.flops, bwd_flash_flops);
  // Its bytes: Q, K, V and the context of the local tokens, plus the cp - 1 K and V chunks the
  // ring brings (backward: each twice); 2 bytes, over tp.
  const double kv_in = 2 * d * (cp - 1);
  EXPECT_DOUBLE_EQ(ff.bytes, local * (3 * d + d + kv_in) * 2 / tp);
  EXPECT_DOUBLE_EQ(bf.bytes, local * (6 * d + 2 * d + 2 * kv_in) * 2 / tp);
  const double peak = 989.4e12 * in.system.gemm_efficiency, hbm = 3.35e12 * 0.8;
  const double t_ff = std::max(fwd_flash_flops / peak, ff.bytes / hbm), t_bf = std::max(bwd_flash_flops / peak, bf.bytes / hbm);
  EXPECT_NEAR(ff.time_s, t_ff, 1e-15);
  EXPECT_NEAR(bf.time_s, t_bf, 1e-15);

  // The ring: cp - 1 steps a direction, each sending this GPU's K and V chunk (local x kv_dim /
  // tp x 2 bytes, twice: K and V; backward also their gradients) to the next cp rank over
  // NVLink (tp x cp = 4 GPUs, one node), overlapped with 1 / cp of the flash kernel.
  const double kv_chunk = 2 * local * b * d / tp * 2;
  const double nvlink = 450e9 * 0.8, alpha = 5e-6;
  const double send_f = kv_chunk / nvlink + alpha, send_b = 2 * kv_chunk / nvlink + alpha;
  const double exposed_layer = (cp - 1) * (std::max(0.0, send_f - t_ff / cp) + std::max(0.0, send_b - t_bf / cp));
  // This layout is chosen so the forward step's send exceeds its compute and the backward's does not.
  ASSERT_GT(send_f, t_ff / cp);
  ASSERT_LT(send_b, t_bf / cp);
  const auto& br = j.at("breakdown");
  EXPECT_NEAR(br.at("cp_comm_s").get<double>(), m * L * exposed_layer, 1e-12);
  EXPECT_NEAR(br.at("cp_comm_total_s").get<double>(), m * L * (cp - 1) * (send_f + send_b), 1e-12);
  // The exposed part is in tp_comm_s beside the TP collectives: with SP each of the 4 a layer
  // (and the embedding's 1, the head's 2) a reduce-scatter + all-gather of local x d x 2 bytes over tp.
  const double act = local * b * d * 2;
  const double one = 2 * ((tp - 1) / tp * act / nvlink + (tp - 1) * alpha);
  EXPECT_NEAR(br.at("tp_comm_s").get<double>(), m * ((4 * L + 1 + 2) * one + L * exposed_layer), 1e-12);

  // Activations / cp, from the layer graph on the local tokens: Table 2's selective + SP 34 s b h / t
  // less its two hidden-dropout masks, plus the LayerNorms' 4-byte statistics (16 bytes a token)
  // and flash's 4-byte log-sum-exp a query row and head (16 heads), all / tp.
  EXPECT_DOUBLE_EQ(j.at("memory").at("activation_per_layer_bytes").get<double>(),
                   (32 * local * b * d + 16 * local * b + 4 * 16 * local * b) / tp);
  // Gradients over dp x cp = 8 GPUs, tp apart: the group spans 16 GPUs, two nodes, 8 / tp = 4 of
  // its GPUs in each, so four rings on four NICs (4 x 45 GB/s, under NVLink's 360): reduce-scatter
  // + all-gather of the 16-bit gradients; Adam's 12 bytes split over the 8.
  const double params = j.at("memory").at("parameters").get<double>();
  const double net = 4 * 50e9 * 0.9, alpha_net = 10e-6, grad = 2 * params;
  const double rs = 7.0 / 8 * grad / net + 7 * alpha_net;
  EXPECT_NEAR(br.at("dp_comm_total_s").get<double>(), 2 * rs, 1e-12);
  // Overlapped (one chunk a stage): the reduce-scatter behind the last micro-batch's backward, the
  // all-gather behind the next step's first forward; only the excess is exposed.
  const double fwd = L * j.at("layer").at("forward_s").get<double>();
  const double bwd = L * (j.at("layer").at("backward_s").get<double>() + j.at("layer").at("recompute_s").get<double>());
  EXPECT_NEAR(br.at("dp_comm_s").get<double>(), std::max(0.0, rs - bwd) + std::max(0.0, rs - fwd), 1e-12);
  EXPECT_DOUBLE_EQ(j.at("memory").at("optimizer_bytes").get<double>(), 12 * params / 8);
  EXPECT_GT(j.at("step_time_s").get<double>(), 0);
}

// --tp-comm-overlap by hand: in each direction the layer's TP collectives exposed only past the
// direction's tensor-parallel GEMMs (QKV, projection, FFN up and down: forward, dgrad, wgrad),
// and at least 1 / tp of them; the embedding's and the head's collectives stay exposed.
TEST(PredictTpOverlap, HandWorkedAgainstTheLayersGemms) {
  PredictInput in;
  in.model = small_gpt();
  in.system = system_by_id("h100");
  Layout& l = in.layout;
  l.gpus = 4, l.tp = 4, l.micro_batch = 1, l.global_batch = 2, l.seq = 8192;
  l.attention = Attention::flash, l.recompute = Recompute::selective, l.sequence_parallel = true;
  l.distributed_optimizer = true, l.precision = "bf16";
  l.tp_comm_overlap = false;
  const Prediction off = predict(in);
  l.tp_comm_overlap = true;
  const Prediction on = predict(in);
  const double tp = 4, L = 4, m = 2, act = 8192.0 * 1024 * 2, nvlink = 450e9 * 0.8, alpha = 5e-6;
  const double one = 2 * ((tp - 1) / tp * act / nvlink + (tp - 1) * alpha);  // reduce-scatter + all-gather
  EXPECT_NEAR(off.breakdown.tp_comm_s, m * ((4 * L + 1 + 2) * one), 1e-12);
  double gemm_fwd = 0, gemm_bwd = 0;
  std::set<std::string> names;
  for (const auto& o : on.cost.ops) {
    if (!o.tp_gemm) continue;
    names.insert(o.name);
    (o.phase == Phase::forward ? gemm_fwd : gemm_bwd) += o.time_s;
  }
  const std::set<std::string> expected = {
      "fwd.qkv", "fwd.proj", "fwd.ffn.up", "fwd.ffn.down", "bwd.qkv.dgrad", "bwd.qkv.wgrad", "bwd.proj.dgrad",
      "bwd.proj.wgrad", "bwd.ffn.up.dgrad", "bwd.ffn.up.wgrad", "bwd.ffn.down.dgrad", "bwd.ffn.down.wgrad"};
  EXPECT_EQ(names, expected);
  const double exposed = std::max(2 * one - gemm_fwd, 2 * one / tp) + std::max(2 * one - gemm_bwd, 2 * one / tp);
  EXPECT_NEAR(on.breakdown.tp_comm_s, m * (L * exposed + 3 * one), 1e-12);
  EXPECT_LT(on.breakdown.tp_comm_s, off.breakdown.tp_comm_s);
  EXPECT_NEAR(off.step_time_s - on.step_time_s, off.breakdown.tp_comm_s - on.breakdown.tp_comm_s, 1e-12);
}

TEST(PredictContextParallel, BadCombinationsAreOneClearLine) {
  PredictInput in;
  in.model = small_gpt();
  in.system = system_by_id("h100");
  in.layout.gpus = 16, in.layout.tp = 2, in.layout.cp = 2, in.layout.global_batch = 16, in.layout.seq = 8192;
  in.layout.attention = Attention::unfused;
  auto message = [&] {
    try {
      predict(in);
    } catch (const UsageError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  std::string e = message();
  EXPECT_NE(e.find("--cp 2 needs --attention flash"), std::string::npos) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  in.layout.attention = Attention::flash;
  in.layout.cp = 3, in.layout.tp = 1, in.layout.gpus = 24, in.layout.global_batch = 24;  // 8192 is not 6 equal chunks
  e = message();
  EXPECT_NE(e.find("--cp 3 needs the sequence 8192 to split into 2 x cp = 6 equal chunks"), std::string::npos) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos) << e;
}

}  // namespace
}  // namespace flopscope::predict

namespace flopscope::predict {
namespace {

// FSDP, hand-worked: small_gpt (4 layers of d 1024, tied embeddings, learned positions) on 16
// H100s, tp 1, pp 1, micro-batch 1, 32 sequences (m = 2 per rank), flash, selective recompute.
struct FsdpCase {
  Prediction p;
  nlohmann::json j;
};
FsdpCase fsdp_case(int64_t fsdp) {
  PredictInput in;
  in.model = small_gpt();
  in.system = system_by_id("h100");
  Layout& l = in.layout;
  l.gpus = 16, l.fsdp = fsdp, l.micro_batch = 1, l.global_batch = 32, l.seq = 8192;
  l.attention = Attention::flash, l.recompute = Recompute::selective, l.distributed_optimizer = true;
  FsdpCase c{predict(in), {}};
  c.j = prediction_json(c.p);
  return c;
}

// The exposed and total FSDP seconds of one micro-batch, from the stated order: root and block 0
// gathered with nothing to hide behind; block j's gather behind block j-1's forward; in backward
// block L-1 kept unsharded, block j's window holding block j-1's gather and block j+1's
// reduce-scatter; block 0's and the root's reduce-scatters after the last backward.
std::pair<double, double> fsdp_by_hand(double g_root, double g, double s_root, double s, double fwd, double bwd, int L) {
  double exposed = g_root + g, total = g_root + g;
  for (int j = 1; j < L; ++j) exposed += std::max(0.0, g - fwd), total += g;
  for (int j = L - 1; j >= 0; --j) {
    const double comm = (j > 0 ? g : 0) + (j + 1 < L ? s : 0);
    exposed += std::max(0.0, comm - bwd), total += comm;
  }
  return {exposed + s + s_root, total + s + s_root};
}

TEST(PredictFsdp, HandWorkedFullShardingOverTwoNodes) {
  const FsdpCase c = fsdp_case(16);  // every parameter sharded over 16 GPUs: the ring crosses nodes
  const double d = 1024, V = 32000, n_ctx = 8192, L = 4, m = 2, n = 16;
  const double P = 12 * d * d + 13 * d;     // a block: QKV, projection, FFN and their biases, two layernorms
  const double R = V * d + n_ctx * d + 2 * d;  // the root: embedding (tied: also the head), positions, final norm
  const double N = L * P + R;
  EXPECT_DOUBLE_EQ(c.j.at("memory").at("parameters").get<double>(), N);
  // Ring over two nodes, 8 GPUs of the group in each on their own NICs: (n-1)/n x bytes /
  // min(450 GB/s x 0.8, 8 x 50 GB/s x 0.9) + (n-1) x 10 us; gathers of bf16 parameters (2 bytes),
  // reduce-scatters of fp32 gradients (4 bytes).
  const double B = std::min(450e9 * 0.8, 8 * 50e9 * 0.9), alpha = 10e-6;
  auto ring = [&](double bytes) { return (n - 1) / n * bytes / B + (n - 1) * alpha; };
  const double fwd = c.j.at("layer").at("forward_s").get<double>();
  const double bwd = c.j.at("layer").at("backward_s").get<double>() + c.j.at("layer").at("recompute_s").get<double>();
  const auto [exposed, total] = fsdp_by_hand(ring(2 * R), ring(2 * P), ring(4 * R), ring(4 * P), fwd, bwd, 4);
  const auto& br = c.j.at("breakdown");
  EXPECT_NEAR(br.at("dp_comm_total_s").get<double>(), m * total, 1e-12);
  EXPECT_NEAR(br.at("dp_comm_s").get<double>(), m * exposed, 1e-12);
  // Gathered for forward and again for backward: 2L - 1 block gathers a micro-batch (the last
  // block is kept), L block reduce-scatters, one gather and one reduce-scatter of the root.
  EXPECT_NEAR(total, ring(2 * R) + 7 * ring(2 * P) + 4 * ring(4 * P) + ring(4 * R), 1e-15);
  EXPECT_GT(exposed, 0);
  EXPECT_LT(exposed, total);  // the prefetch hides part of it
  // The step: m x the stage (compute, no TP, no PP) + the exposed FSDP time + the optimizer over
  // this GPU's shard (32 bytes a parameter at the HBM bandwidth x 0.8).
  EXPECT_NEAR(br.at("optimizer_s").get<double>(), N / n * 32 / (3.35e12 * 0.8), 1e-15);
  EXPECT_NEAR(c.j.at("step_time_s").get<double>(),
              m * c.j.at("stage_time_s").get<double>() + m * exposed + br.at("optimizer_s").get<double>(), 1e-12);
  // Memory: fp32 parameters, fp32 gradients and Adam's two moments, 16 bytes a parameter / 16;
  // the unsharded working set: the root and two blocks, bf16 parameters and gradients (4 bytes);
  // the activations from the layer graph under torchtitan's op-level checkpointing, one
  // micro-batch in flight: each layer keeps its input, 2/3 of the fused QKV (wq and wv; wk is
  // recomputed), flash's output and log-sum-exp and the FFN-up's output (w1): 2 T (d + 2d + d + 4d)
  // + 4 x 16 heads x T bytes; the head its input, its norm's output and 4-byte statistics, the
  // fp32 logits, the targets and, in the loss's backward, nll_loss's dense fp32 gradient and
  // log_softmax's fp32 gradient of the logits at once: 4 T d + 12 T + 12 T V.
  const double T = 8192;
  const double activations = L * (16 * T * d + 64 * T) + 4 * T * d + 12 * T + 12 * T * V;
  const auto& mem = c.j.at("memory");
  EXPECT_DOUBLE_EQ(mem.at("weights_bytes").get<double>(), 4 * N / n);
  EXPECT_DOUBLE_EQ(mem.at("gradients_bytes").get<double>(), 4 * N / n);
  EXPECT_DOUBLE_EQ(mem.at("optimizer_bytes").get<double>(), 8 * N / n);
  EXPECT_DOUBLE_EQ(mem.at("fsdp_unsharded_bytes").get<double>(), 4 * (R + 2 * P));
  EXPECT_DOUBLE_EQ(mem.at("activations_bytes").get<double>(), activations);
  EXPECT_DOUBLE_EQ(mem.at("total_bytes").get<double>(), 16 * N / n + 4 * (R + 2 * P) + activations);
}

// A modelled kernel takes at least the profile's floor (its launch and tail): an op whose bytes or
// FLOPs say less takes kernel_floor_s and reads "launch"; fused bias adds stay free; floor 0 is
// the model without it. A --system file without a base has none unless it says.
TEST(PredictCompute, KernelFloor) {
  const ModelConfig m = preset("gpt3-small");
  SystemProfile s = system_by_id("h100-sxm");
  EXPECT_DOUBLE_EQ(s.kernel_floor_s, 2e-6);
  Layout l;
  l.gpus = 8, l.tp = 4, l.seq = m.n_ctx, l.global_batch = 2, l.attention = Attention::flash;
  const LayerCost floored = layer_cost(m, l, s, nullptr);
  s.kernel_floor_s = 0;
  const LayerCost bare = layer_cost(m, l, s, nullptr);
  ASSERT_EQ(floored.ops.size(), bare.ops.size());
  int launch = 0;
  for (size_t i = 0; i < bare.ops.size(); ++i) {
    const OpCost& b = bare.ops[i];
    const OpCost& f = floored.ops[i];
    if (b.bound == "fused") {
      EXPECT_EQ(f.time_s, 0.0) << b.name;
    } else if (b.time_s < 2e-6) {
      EXPECT_EQ(f.time_s, 2e-6) << b.name;
      EXPECT_EQ(f.bound, "launch") << b.name;
      ++launch;
    } else {
      EXPECT_EQ(f.time_s, b.time_s) << b.name;
      EXPECT_EQ(f.bound, b.bound) << b.name;
    }
  }
  EXPECT_GT(launch, 0) << "gpt3-small at tp 4 has ops under 2 us";
  EXPECT_GT(floored.layer_forward_s + floored.layer_backward_s, bare.layer_forward_s + bare.layer_backward_s);
  nlohmann::json j = system_to_json(system_by_id("h100-sxm"));
  j.erase("kernel_floor_s");
  j.erase("sdpa_efficiency");
  j.erase("fp8_gemm_efficiency");
  j.erase("sources");
  const SystemProfile file = system_from_json(j, "a test");
  EXPECT_EQ(file.kernel_floor_s, 0.0);
  EXPECT_EQ(file.sdpa_efficiency, file.gemm_efficiency);  // not given: gemm_efficiency's
}

// FSDP layouts are torchtitan's. Uncompiled, its pointwise ops run as PyTorch's separate kernels:
// each memory-bound op moves eager_bytes_factor x its fused bytes (the table in compute.hpp, from
// torchtitan's Llama code); compiled, the fused bytes. Its attention is PyTorch's SDPA
// (FlashAttention-2) at sdpa_efficiency, compiled or not; Megatron-LM's at gemm_efficiency. The
// default: eager, but compiled under fp8.
TEST(PredictFsdp, EagerPyTorchAndTorchCompile) {
  EXPECT_DOUBLE_EQ(eager_bytes_factor(OpImpl::rmsnorm_fwd), 9.0);
  EXPECT_DOUBLE_EQ(eager_bytes_factor(OpImpl::rmsnorm_bwd), 64.0 / 6);
  EXPECT_DOUBLE_EQ(eager_bytes_factor(OpImpl::rope_fwd), 5.0);
  EXPECT_DOUBLE_EQ(eager_bytes_factor(OpImpl::swiglu_bwd), 1.8);
  EXPECT_DOUBLE_EQ(eager_bytes_factor(OpImpl::cross_entropy_fwd), 11.0);
  EXPECT_DOUBLE_EQ(eager_bytes_factor(OpImpl::residual_add), 1.0);
  const ModelConfig m = preset("llama3.1-8b");
  const SystemProfile s = system_by_id("h100-sxm");
  Layout l;
  l.gpus = 8, l.fsdp = 8, l.seq = m.n_ctx, l.micro_batch = 1, l.global_batch = 8, l.attention = Attention::flash;
  l.recompute = Recompute::none, l.sequence_parallel = false;
  l.torch_compile = false;
  const LayerCost eager = layer_cost(m, l, s, nullptr);
  l.torch_compile = true;
  const LayerCost compiled = layer_cost(m, l, s, nullptr);
  Layout megatron = l;
  megatron.fsdp = 0, megatron.torch_compile = false;
  const LayerCost plain = layer_cost(m, megatron, s, nullptr);
  ASSERT_EQ(eager.ops.size(), compiled.ops.size());
  const std::map<std::string, OpImpl> impl = {
      {"fwd.ln1", OpImpl::rmsnorm_fwd},       {"bwd.ln1", OpImpl::rmsnorm_bwd},         {"fwd.attn.rope", OpImpl::rope_fwd},
      {"bwd.attn.rope", OpImpl::rope_bwd},    {"fwd.ffn.swiglu", OpImpl::swiglu_fwd},   {"bwd.ffn.swiglu", OpImpl::swiglu_bwd},
      {"fwd.head.loss", OpImpl::cross_entropy_fwd}, {"bwd.head.loss", OpImpl::cross_entropy_bwd},
      {"fwd.residual1", OpImpl::residual_add}};
  int seen = 0;
  for (size_t i = 0; i < eager.ops.size(); ++i) {
    const OpCost& e = eager.ops[i];
    const OpCost& c = compiled.ops[i];
    ASSERT_EQ(e.name, c.name);
    if (auto it = impl.find(e.name); it != impl.end()) {
      ASSERT_EQ(e.bound, "memory") << e.name;
      // torch.compile takes the blocks; the head's norm and loss stay eager in both.
      const double f = e.head ? 1.0 : eager_bytes_factor(it->second);
      EXPECT_NEAR(e.bytes, c.bytes * f, 1e-6 * e.bytes) << e.name;
      EXPECT_NEAR(e.time_s, c.time_s * f, 1e-12) << e.name;
      if (e.head) {
        EXPECT_NEAR(e.bytes, plain.ops[i].bytes * eager_bytes_factor(it->second), 1e-6 * e.bytes) << e.name;
      }
      ++seen;
    }
    if (e.name == "fwd.attn.flash" || e.name == "bwd.attn.flash") {
      // SDPA's FlashAttention-2, compiled or not: FLOPs / (peak x sdpa_efficiency) where compute bound.
      ASSERT_EQ(e.bound, "compute");
      EXPECT_NEAR(e.time_s, e.flops / (989.4e12 * s.sdpa_efficiency), 1e-15) << e.name;
      EXPECT_DOUBLE_EQ(c.time_s, e.time_s);
      EXPECT_NEAR(plain.ops[i].time_s, e.flops / (989.4e12 * s.gemm_efficiency), 1e-15) << e.name;
      ++seen;
    }
  }
  EXPECT_EQ(seen, 11);
  EXPECT_GT(eager.layer_forward_s + eager.layer_backward_s, compiled.layer_forward_s + compiled.layer_backward_s);
  // Without FSDP torch.compile changes nothing (Megatron-LM's kernels are fused).
  megatron.torch_compile = true;
  const LayerCost plain_compiled = layer_cost(m, megatron, s, nullptr);
  for (size_t i = 0; i < plain.ops.size(); ++i) EXPECT_DOUBLE_EQ(plain_compiled.ops[i].time_s, plain.ops[i].time_s);
  // The defaults: eager under FSDP in bf16, compiled in fp8, as given when given; off elsewhere.
  LayoutChoices ch;
  ch.fsdp = 8;
  EXPECT_FALSE(resolve_layout(ch, m, s, 8).layout.torch_compile);
  ch.precision = "fp8";
  EXPECT_TRUE(resolve_layout(ch, m, s, 8).layout.torch_compile);
  ch.torch_compile = false;
  EXPECT_FALSE(resolve_layout(ch, m, s, 8).layout.torch_compile);
  EXPECT_FALSE(resolve_layout({}, m, s, 8).layout.torch_compile);
}

TEST(PredictFsdp, HandWorkedHybridShardingInANode) {
  // fsdp 8 of dp 16: shards inside a node (NVLink), each shard's gradients all-reduced over the
  // 2 replicas across nodes (fp32 shard: 4 P / 8 bytes; all-reduce 2 (r-1)/r S / B + 2 (r-1) alpha).
  const FsdpCase c = fsdp_case(8);
  const double d = 1024, V = 32000, n_ctx = 8192, m = 2, n = 8;
  const double P = 12 * d * d + 13 * d, R = V * d + n_ctx * d + 2 * d;
  const double nv = 450e9 * 0.8, a_nv = 5e-6, net = 50e9 * 0.9, a_net = 10e-6;
  auto ring = [&](double bytes) { return (n - 1) / n * bytes / nv + (n - 1) * a_nv; };
  auto replicas = [&](double bytes) { return 2 * 0.5 * bytes / net + 2 * a_net; };
  const double fwd = c.j.at("layer").at("forward_s").get<double>();
  const double bwd = c.j.at("layer").at("backward_s").get<double>() + c.j.at("layer").at("recompute_s").get<double>();
  const double sP = ring(4 * P) + replicas(4 * P / n), sR = ring(4 * R) + replicas(4 * R / n);
  const auto [exposed, total] = fsdp_by_hand(ring(2 * R), ring(2 * P), sR, sP, fwd, bwd, 4);
  // Over NVLink a block's gather hides behind the block before it.
  ASSERT_LT(ring(2 * P), fwd);
  EXPECT_NEAR(c.j.at("breakdown").at("dp_comm_total_s").get<double>(), m * total, 1e-12);
  EXPECT_NEAR(c.j.at("breakdown").at("dp_comm_s").get<double>(), m * exposed, 1e-12);
  EXPECT_DOUBLE_EQ(c.j.at("memory").at("optimizer_bytes").get<double>(), 8 * (4 * P + R) / n);
}

TEST(PredictFsdp, PipelinedStagesGatherOnceAStep) {
  // pp 2 x fsdp 8: torchtitan keeps each stage unsharded through the step and reduces once, in
  // the last micro-batch's backward: the total is one gather and one reduce-scatter of the
  // stage's units, not m of them; the working set is the stage's bf16 parameters and fp32
  // accumulated gradients (6 bytes a parameter).
  PredictInput in;
  in.model = small_gpt();
  in.system = system_by_id("h100");
  Layout& l = in.layout;
  l.gpus = 16, l.pp = 2, l.fsdp = 8, l.micro_batch = 1, l.global_batch = 32, l.seq = 8192;  // m = 4
  l.attention = Attention::flash, l.distributed_optimizer = true;
  const Prediction p = predict(in);
  const double d = 1024, P = 12 * d * d + 13 * d, n = 8;
  const double first = 2 * P + 32000 * d + 8192 * d;  // 2 blocks, embedding, positions
  auto ring = [&](double bytes) { return (n - 1) / n * bytes / (450e9 * 0.8) + (n - 1) * 5e-6; };
  EXPECT_NEAR(p.breakdown.dp_comm_total_s,
              ring(2 * (first - 2 * P)) + 2 * ring(2 * P) + 2 * ring(4 * P) + ring(4 * (first - 2 * P)), 1e-12);
  EXPECT_DOUBLE_EQ(p.memory.fsdp_unsharded_bytes, 6 * p.memory.parameters);
}

TEST(PredictFsdp, BadInputIsOneClearLine) {
  PredictInput in;
  in.model = small_gpt();
  in.system = system_by_id("h100");
  in.layout.gpus = 16, in.layout.global_batch = 16, in.layout.seq = 8192, in.layout.attention = Attention::flash;
  for (int64_t bad : {1, 3, 32, -2}) {
    in.layout.fsdp = bad;
    try {
      predict(in);
      ADD_FAILURE() << "--fsdp " << bad << " predicted";
    } catch (const UsageError& e) {
      const std::string w = e.what();
      EXPECT_NE(w.find(fmt::format("--fsdp {} must be 0 (off) or a divisor of data parallel 16", bad)), std::string::npos) << w;
      EXPECT_EQ(w.find('\n'), std::string::npos) << w;
    }
  }
  in.layout.fsdp = 16;
  EXPECT_NO_THROW(predict(in));
}

}  // namespace
}  // namespace flopscope::predict

namespace flopscope::predict {
namespace {

TEST(PredictFsdp, SelectiveIsTorchtitansOpLevelCheckpointing) {
  // Llama 3.1 8B block: torchtitan's mms wq 1, wk 2, wv 3, wo 4, w1 5, w3 6, w2 7; the even ones
  // (wk, wo, w3) are recomputed, with the norms, RoPE, SwiGLU and the first residual add (none in
  // torchtitan's _save_list); flash's output and the block's last residual add are not. wk is
  // 1024 of the fused QKV's 4096 + 2 x 1024.
  const ModelConfig m = preset("llama3.1-8b");
  Layout l;
  l.gpus = 8, l.fsdp = 8, l.global_batch = 8, l.seq = 8192, l.attention = Attention::flash;
  l.recompute = Recompute::selective;
  for (const char* precision : {"bf16", "fp8"}) {  // fp8: the GEMMs read their operands' fp8 copies
    l.precision = precision;
    const LayerCost c = layer_cost(m, l, system_by_id("h100"), nullptr);
    std::set<std::string> rec;
    double qkv = 0, fwd_qkv = 0;
    for (const auto& o : c.ops) {
      if (o.phase == Phase::recompute && o.name.find(".cast_") == std::string::npos) rec.insert(o.name);
      if (o.name == "rec.qkv") qkv = o.flops;
      if (o.name == "fwd.qkv") fwd_qkv = o.flops;
    }
    EXPECT_EQ(rec, (std::set<std::string>{"rec.ln1", "rec.qkv", "rec.attn.rope", "rec.proj", "rec.residual1", "rec.ln2",
                                          "rec.ffn.up", "rec.ffn.swiglu"}))
        << precision;
    EXPECT_NEAR(qkv / fwd_qkv, 1024.0 / 6144, 1e-12) << precision;
  }
  l.precision = "bf16";
  // Without FSDP selective stays Megatron-LM's: with flash nothing is recomputed.
  l.fsdp = 0;
  EXPECT_EQ(layer_cost(m, l, system_by_id("h100"), nullptr).layer_recompute_s, 0.0);
}

}  // namespace
}  // namespace flopscope::predict
