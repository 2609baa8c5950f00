// GPT-3 graphs stay exactly what they were before the layer graph was built from blocks
// (issue 12): every op's name, order, phase, impl, precision, dimensions, offsets, strides,
// FLOPs (executed and model), minimum bytes, inputs and outputs, and every tensor's name, role
// and shape, for GPT-3-shaped layers with and without the LM head, recompute and fp8, compared
// with tests/data/gpt3_graph_snapshot.txt (written from the graph builder as it was at commit
// 28abf97). Doubles are printed with 17 significant digits: equal text is equal bits.
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

std::string describe(const LayerGraph& g) {
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
    } else {
      os << fmt::format(" dims={}x{}x{} transpose={} in=", o.batch, o.rows, o.cols, o.transpose);
      for (const auto& t : o.inputs) os << t << ",";
      os << " out=";
      for (const auto& t : o.outputs) os << t << ",";
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

const std::string kSnapshot = std::string(FLOPSCOPE_SOURCE_DIR) + "/tests/data/gpt3_graph_snapshot.txt";

TEST(LayerGraphSnapshot, Gpt3GraphsAreExactlyTheSnapshot) {
  const std::string now = all_cases();
  if (std::getenv("FLOPSCOPE_WRITE_GRAPH_SNAPSHOT") != nullptr) {
    std::ofstream(kSnapshot) << now;
    GTEST_SKIP() << "wrote " << kSnapshot;
  }
  std::ifstream in(kSnapshot);
  ASSERT_TRUE(in) << "missing " << kSnapshot;
  std::stringstream want;
  want << in.rdbuf();
  ASSERT_GT(want.str().size(), 10000u);
  // Line by line, so a failure names the first op that changed.
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

}  // namespace
}  // namespace flopscope
