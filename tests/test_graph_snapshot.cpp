// GPT-3 graphs stay exactly what they were before the layer graph was built from blocks
// (issue 12): every op's name, order, phase, impl, precision, dimensions, offsets, strides,
// FLOPs (executed and model), minimum bytes, inputs and outputs, and every tensor's name, role
// and shape, for GPT-3-shaped layers with and without the LM head, recompute and fp8, compared
// with tests/data/gpt3_graph_snapshot.txt (written from the graph builder as it was at commit
// 28abf97). Doubles are printed with 17 significant digits: equal text is equal bits.
//
// The same for the other families (issue 18: before the builder was split into one file a
// block), tests/data/llama_graph_snapshot.txt, written from the builder at commit bf120cf: a
// Llama 3.1-style layer (grouped-query attention, RMSNorm, RoPE, SwiGLU, no biases) in every
// mode the GPT-3 snapshot has and with causal row blocks, multi-query attention, Qwen2's QKV
// bias, OPT's ReLU, and Llama 3.1 8B's own layer. These descriptions add what the GPT-3 one
// leaves out: a GEMM's repeat (grouped-query attention), its triangle and causal block, and
// RoPE's parameters.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include <fmt/format.h>

#include "graph/graph.hpp"
#include "model/model.hpp"

namespace flopscope {
namespace {

// `full`: also the fields GPT-3's layers leave at their defaults (repeats, triangles, causal
// blocks, RoPE); the GPT-3 snapshot was written without them.
std::string describe(const LayerGraph& g, bool full = false) {
  std::ostringstream os;
  for (const auto& t : g.tensors) {
    os << "tensor " << t.name << " " << to_string(t.role);
    for (int64_t d : t.shape) os << " " << d;
    os << "\n";
  }
  for (const auto& o : g.ops) {
    os << fmt::format("op {} {} {} {} {} {} {} flops={:.17g} model={:.17g} bytes={:.17g} causal={}", o.name,
                      to_string(o.phase), to_string(o.group), to_string(o.kind), to_string(o.impl),
                      to_string(o.precision), o.shape_str(), o.flops, o.model_flops, o.min_bytes, o.causal_square);
    if (o.impl == OpImpl::gemm) {
      const GemmSpec& s = o.gemm;
      os << fmt::format(" gemm m={} n={} k={} batch={} ta={} tb={} a={}+{} b={}+{} c={}+{} ld={},{},{} stride={},{},{} "
                        "alpha={:.17g} beta={:.17g} linear={}",
                        s.m, s.n, s.k, s.batch, s.trans_a, s.trans_b, s.a, s.a_offset, s.b, s.b_offset, s.c, s.c_offset,
                        s.lda, s.ldb, s.ldc, s.stride_a, s.stride_b, s.stride_c, s.alpha, s.beta, s.linear);
      if (full)
        os << fmt::format(" repeat={} repeat_abc={},{},{} repeat_beta={:.17g} triangle={} causal_block={}", s.repeat,
                          s.repeat_a, s.repeat_b, s.repeat_c, s.repeat_beta, static_cast<int>(s.triangle),
                          s.causal_block);
    } else {
      os << fmt::format(" dims={}x{}x{} transpose={} in=", o.batch, o.rows, o.cols, o.transpose);
      for (const auto& t : o.inputs) os << t << ",";
      os << " out=";
      for (const auto& t : o.outputs) os << t << ",";
      if (full)
        os << fmt::format(" rope={},{},{},{},{:.17g}", o.rope.batch, o.rope.kv_heads, o.rope.group, o.rope.d_head,
                          o.rope.theta);
    }
    os << "\n";
  }
  return os.str();
}

// The snapshot's cases: a tiny GPT-3-ratio layer in each mode, and GPT-3 175B's own layer.
std::string all_cases() {
  std::ostringstream os;
  struct Mode {
    const char* label;
    bool head, recompute;
    Precision p;
  };
  const LayerShape tiny = layer_shape(2, 64, 2, 64, 300);
  for (const Mode m : {Mode{"plain", false, false, Precision::fp32}, Mode{"head", true, false, Precision::fp32},
                       Mode{"recompute_head", true, true, Precision::bf16}, Mode{"fp8", false, false, Precision::fp8},
                       Mode{"fp8_recompute_head", true, true, Precision::fp8}}) {
    GraphOptions o;
    o.include_head = m.head;
    o.recompute = m.recompute;
    o.precision = m.p;
    os << "== tiny " << m.label << "\n" << describe(build_layer_graph(tiny, o));
  }
  GraphOptions o;
  o.include_head = true;
  o.precision = Precision::bf16;
  os << "== gpt3-175b head\n" << describe(build_layer_graph(layer_shape(preset("gpt3-175b"), 1, 2048), o));
  return os.str();
}

// A tiny Llama 3.1-ratio layer: 4 query heads of 64 in 2 kv groups, d_ff 3.5 d (a multiple
// of 16, as fp8 needs), theta 500000.
LayerShape tiny_llama() {
  LayerShape s = layer_shape(2, 64, 4, 64, 300);
  s.n_kv_heads = 2;
  s.d_ff = 896;
  s.norm = NormKind::rmsnorm;
  s.ffn = FfnKind::swiglu;
  s.position = PositionKind::rope;
  s.rope_theta = 500000.0;
  s.biases = {false, false, false};
  s.tied_embeddings = false;
  return s;
}

std::string family_cases() {
  std::ostringstream os;
  struct Mode {
    const char* label;
    bool head, recompute;
    Precision p;
    int64_t causal_block;
  };
  for (const Mode m : {Mode{"plain", false, false, Precision::fp32, 0}, Mode{"head", true, false, Precision::fp32, 0},
                       Mode{"recompute_head", true, true, Precision::bf16, 0},
                       Mode{"fp8", false, false, Precision::fp8, 0},
                       Mode{"fp8_recompute_head", true, true, Precision::fp8, 0},
                       Mode{"causal_block_recompute_head", true, true, Precision::fp32, 24}}) {
    GraphOptions o;
    o.include_head = m.head;
    o.recompute = m.recompute;
    o.precision = m.p;
    o.causal_block = m.causal_block;
    os << "== tiny llama " << m.label << "\n" << describe(build_layer_graph(tiny_llama(), o), true);
  }
  GraphOptions all;
  all.include_head = true;
  all.recompute = true;
  LayerShape mqa = tiny_llama();
  mqa.n_kv_heads = 1;
  os << "== tiny mqa recompute_head\n" << describe(build_layer_graph(mqa, all), true);
  LayerShape qwen = tiny_llama();
  qwen.biases = {true, false, false};
  qwen.rope_theta = 1e6;
  os << "== tiny qwen2 qkv bias recompute_head\n" << describe(build_layer_graph(qwen, all), true);
  LayerShape opt = layer_shape(2, 64, 2, 64, 300);
  opt.ffn = FfnKind::relu;
  os << "== tiny opt relu recompute_head\n" << describe(build_layer_graph(opt, all), true);
  LayerShape mha_rope = layer_shape(1, 32, 2, 64, 300);
  mha_rope.position = PositionKind::rope;
  os << "== tiny mha rope recompute_head\n" << describe(build_layer_graph(mha_rope, all), true);
  GraphOptions head;
  head.include_head = true;
  head.precision = Precision::bf16;
  os << "== llama3.1-8b head\n" << describe(build_layer_graph(layer_shape(preset("llama3.1-8b"), 1, 8192), head), true);
  return os.str();
}

// Compares `now` with the file line by line, so a failure names the first op that changed;
// FLOPSCOPE_WRITE_GRAPH_SNAPSHOT=1 writes the file instead.
void expect_snapshot(const std::string& now, const std::string& path) {
  if (std::getenv("FLOPSCOPE_WRITE_GRAPH_SNAPSHOT") != nullptr) {
    std::ofstream(path) << now;
    GTEST_SKIP() << "wrote " << path;
  }
  std::ifstream in(path);
  ASSERT_TRUE(in) << "missing " << path;
  std::stringstream want;
  want << in.rdbuf();
  ASSERT_GT(want.str().size(), 10000u);
  std::istringstream a(now), b(want.str());
  std::string la, lb;
  int line = 0;
  while (true) {
    const bool ga = static_cast<bool>(std::getline(a, la)), gb = static_cast<bool>(std::getline(b, lb));
    ++line;
    ASSERT_EQ(ga, gb) << "line " << line << ": one description ends before the other";
    if (!ga) break;
    ASSERT_EQ(la, lb) << "line " << line;
  }
}

const std::string kData = std::string(FLOPSCOPE_SOURCE_DIR) + "/tests/data/";

TEST(LayerGraphSnapshot, Gpt3GraphsAreExactlyTheSnapshot) { expect_snapshot(all_cases(), kData + "gpt3_graph_snapshot.txt"); }

TEST(LayerGraphSnapshot, FamilyGraphsAreExactlyTheSnapshot) {
  expect_snapshot(family_cases(), kData + "llama_graph_snapshot.txt");
}

}  // namespace
}  // namespace flopscope
