// src/graph: the layer graph is the single source of truth for the ops of one layer, so its
// FLOPs must equal the closed forms exactly, its names must be stable, and every GEMM must
// stay inside the tensors it names (the backends trust these offsets and strides).
#include <algorithm>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "graph/graph.hpp"
#include "graph_util.hpp"
#include "model/model.hpp"
#include "util/error.hpp"
#include "util/parse.hpp"

namespace flopscope {
namespace {

struct Case {
  std::string label;
  LayerShape shape;
};

ModelConfig tiny_model() {
  ModelConfig m;
  m.name = "tiny";
  m.n_layers = 2;
  m.d_model = 64;
  m.n_heads = 4;
  m.d_head = 16;
  m.n_ctx = 32;
  m.vocab = 101;
  return m;
}

// Small and GPT-3 widths, b = 1 and b = 3.
std::vector<Case> cases() {
  const ModelConfig eighth = scale_width(preset("gpt3-175b"), Fraction{1, 8});
  return {
      {"tiny b=1 s=32", layer_shape(tiny_model(), 1, 32)},
      {"tiny b=3 s=7", layer_shape(tiny_model(), 3, 7)},
      {"gpt3-small b=1 s=64", layer_shape(preset("gpt3-small"), 1, 64)},
      {"gpt3-2.7b b=3 s=16", layer_shape(preset("gpt3-2.7b"), 3, 16)},
      {"gpt3-175b@1/8 b=1 s=2048", layer_shape(eighth, 1, 2048)},
      {"gpt3-175b@1/8 b=3 s=128", layer_shape(eighth, 3, 128)},
      {"gpt3-175b b=1 s=2048", layer_shape(preset("gpt3-175b"), 1, 2048)},
  };
}

using graph_test::option_sets;

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

const std::vector<std::string> kForwardOps = {
    "fwd.ln1",    "fwd.qkv",          "fwd.qkv.bias", "fwd.attn.scores", "fwd.attn.softmax", "fwd.attn.context",
    "fwd.proj",   "fwd.proj.bias",    "fwd.residual1", "fwd.ln2",        "fwd.ffn.up",       "fwd.ffn.up.bias",
    "fwd.gelu",   "fwd.ffn.down",     "fwd.ffn.down.bias", "fwd.residual2",
};
const std::vector<std::string> kBackwardOps = {
    "bwd.ffn.down.bias",       "bwd.ffn.down.dgrad",  "bwd.ffn.down.wgrad", "bwd.gelu",
    "bwd.ffn.up.bias",         "bwd.ffn.up.dgrad",    "bwd.ffn.up.wgrad",   "bwd.ln2",
    "bwd.residual2",           "bwd.proj.bias",       "bwd.proj.dgrad",     "bwd.proj.wgrad",
    "bwd.attn.context.dprobs", "bwd.attn.context.dv", "bwd.attn.softmax",   "bwd.attn.scores.dq",
    "bwd.attn.scores.dk",      "bwd.qkv.bias",        "bwd.qkv.dgrad",      "bwd.qkv.wgrad",
    "bwd.ln1",                 "bwd.residual1",
};
const std::vector<std::string> kHeadOps = {"fwd.head.ln",           "fwd.head.logits",       "fwd.head.loss",
                                           "bwd.head.loss",         "bwd.head.logits.dgrad", "bwd.head.logits.wgrad",
                                           "bwd.head.ln"};

std::vector<std::string> names(const LayerGraph& g, Phase p, Group grp) {
  std::vector<std::string> v;
  for (const auto& op : g.ops)
    if (op.phase == p && op.group == grp) v.push_back(op.name);
  return v;
}

// FLOPs (executed, or model) of the ops of one phase and group, in graph order.
double sum(const LayerGraph& g, Phase p, Group grp, bool model) {
  double s = 0;
  for (const auto& op : g.ops)
    if (op.phase == p && op.group == grp) s += model ? op.model_flops : op.flops;
  return s;
}

TEST(LayerGraph, ForwardGemmFlopsAreTheClosedForm) {
  for (const auto& c : cases()) {
    SCOPED_TRACE(c.label);
    const LayerGraph g = build_layer_graph(c.shape, GraphOptions{});
    const int64_t b = c.shape.batch, s = c.shape.seq, d = c.shape.d_model, T = b * s;
    // QKV 6 T d^2 + output projection 2 T d^2 + FFN 16 T d^2; scores and context 2 b s^2 d each.
    // Every term is an integer below 2^53, so the doubles are exact.
    const int64_t expected = 24 * T * d * d + 4 * b * s * s * d;
    EXPECT_EQ(g.gemm_flops(Phase::forward), static_cast<double>(expected));
    EXPECT_EQ(g.gemm_flops(Phase::backward), 2 * static_cast<double>(expected));
    EXPECT_EQ(g.gemm_flops(Phase::recompute), 0.0);
    EXPECT_EQ(g.gemm_flops(Phase::forward, Group::head), 0.0);
  }
}

TEST(LayerGraph, EachGemmHasItsShape) {
  const LayerShape s = cases()[3].shape;  // gpt3-2.7b b=3 s=16
  const LayerGraph g = build_layer_graph(s, GraphOptions{});
  const double T = static_cast<double>(s.tokens()), d = static_cast<double>(s.d_model),
               f = static_cast<double>(s.d_ff), S = static_cast<double>(s.seq), b = static_cast<double>(s.batch);
  EXPECT_EQ(g.op("fwd.qkv").flops, 2 * T * d * 3 * d);
  EXPECT_EQ(g.op("fwd.proj").flops, 2 * T * d * d);
  EXPECT_EQ(g.op("fwd.ffn.up").flops, 2 * T * d * f);
  EXPECT_EQ(g.op("fwd.ffn.down").flops, 2 * T * f * d);
  EXPECT_EQ(g.op("fwd.attn.scores").flops, 2 * b * S * S * d);
  EXPECT_EQ(g.op("fwd.attn.context").flops, 2 * b * S * S * d);
  // dgrad and wgrad each cost what the forward GEMM costs.
  for (const char* lin : {"qkv", "proj", "ffn.up", "ffn.down"}) {
    SCOPED_TRACE(lin);
    const double fwd = g.op(std::string("fwd.") + lin).flops;
    EXPECT_EQ(g.op(std::string("bwd.") + lin + ".dgrad").flops, fwd);
    EXPECT_EQ(g.op(std::string("bwd.") + lin + ".wgrad").flops, fwd);
  }
  EXPECT_EQ(g.op("fwd.attn.scores").gemm.batch, s.batch * s.n_heads);
}

TEST(LayerGraph, RecomputeAddsExactlyOneForward) {
  for (const auto& c : cases()) {
    SCOPED_TRACE(c.label);
    for (bool head : {false, true}) {
      GraphOptions plain, rec;
      plain.include_head = rec.include_head = head;
      rec.recompute = true;
      const LayerGraph g0 = build_layer_graph(c.shape, plain), g1 = build_layer_graph(c.shape, rec);
      // The head is not recomputed: recompute repeats the layer's forward, nothing else.
      EXPECT_EQ(g1.total_flops(Phase::recompute), sum(g1, Phase::forward, Group::layer, false));
      EXPECT_EQ(g1.total_model_flops(Phase::recompute), sum(g1, Phase::forward, Group::layer, true));
      if (!head) {
        EXPECT_EQ(g1.total_flops(Phase::recompute), g1.total_flops(Phase::forward));
        EXPECT_EQ(g1.total_model_flops(Phase::recompute), g1.total_model_flops(Phase::forward));
      }
      EXPECT_EQ(g1.total_flops(Phase::forward), g0.total_flops(Phase::forward));
      EXPECT_EQ(g1.total_flops(Phase::backward), g0.total_flops(Phase::backward));
      EXPECT_EQ(g0.total_flops(Phase::recompute), 0.0);

      // Op by op: rec.* mirrors fwd.* in order, shape and cost.
      std::vector<const Op*> fwd, recs;
      for (const auto& op : g1.ops) {
        if (op.phase == Phase::forward && op.group == Group::layer) fwd.push_back(&op);
        if (op.phase == Phase::recompute) recs.push_back(&op);
      }
      ASSERT_EQ(fwd.size(), recs.size());
      for (size_t i = 0; i < fwd.size(); ++i) {
        SCOPED_TRACE(fwd[i]->name);
        EXPECT_EQ(recs[i]->name, "rec." + fwd[i]->name.substr(4));
        EXPECT_EQ(recs[i]->group, Group::layer);
        EXPECT_EQ(recs[i]->impl, fwd[i]->impl);
        EXPECT_EQ(recs[i]->kind, fwd[i]->kind);
        EXPECT_EQ(recs[i]->flops, fwd[i]->flops);
        EXPECT_EQ(recs[i]->model_flops, fwd[i]->model_flops);
        EXPECT_EQ(recs[i]->min_bytes, fwd[i]->min_bytes);
        EXPECT_EQ(recs[i]->shape_str(), fwd[i]->shape_str());
      }
    }
  }
}

TEST(LayerGraph, ModelFlopsHalveOnlyTheCausalAttentionGemms) {
  for (const auto& c : cases()) {
    SCOPED_TRACE(c.label);
    for (const GraphOptions& o : option_sets()) {
      const LayerGraph g = build_layer_graph(c.shape, o);
      int attention_gemms = 0;
      for (const auto& op : g.ops) {
        SCOPED_TRACE(op.name);
        const bool attention_gemm = op.impl == OpImpl::gemm && op.name.find(".attn.") != std::string::npos;
        EXPECT_EQ(op.causal_square, attention_gemm);
        if (attention_gemm) {
          ++attention_gemms;
          EXPECT_EQ(op.kind, OpKind::batched_gemm);
          EXPECT_FALSE(op.gemm.linear);
          EXPECT_EQ(op.model_flops * 2, op.flops);
        } else {
          EXPECT_EQ(op.model_flops, op.flops);
        }
      }
      // Forward: scores, context. Backward: dprobs, dv, dq, dk. Recompute: the forward's two.
      EXPECT_EQ(attention_gemms, 2 + 4 + (o.recompute ? 2 : 0));
    }
  }
}

TEST(LayerGraph, OpNamesAreUniqueAndStable) {
  for (const GraphOptions& o : option_sets()) {
    const LayerGraph g = build_layer_graph(cases()[0].shape, o);
    std::set<std::string> seen;
    for (const auto& op : g.ops) EXPECT_TRUE(seen.insert(op.name).second) << "duplicate op " << op.name;
    EXPECT_EQ(names(g, Phase::forward, Group::layer), kForwardOps);
    EXPECT_EQ(names(g, Phase::backward, Group::layer), kBackwardOps);
    std::vector<std::string> rec;
    for (const auto& n : kForwardOps) rec.push_back("rec." + n.substr(4));
    EXPECT_EQ(names(g, Phase::recompute, Group::layer), o.recompute ? rec : std::vector<std::string>{});
    std::vector<std::string> head;
    for (const auto& op : g.ops)
      if (op.group == Group::head) head.push_back(op.name);
    EXPECT_EQ(head, o.include_head ? kHeadOps : std::vector<std::string>{});
    // Prefixes say the phase.
    for (const auto& op : g.ops) {
      const char* prefix = op.phase == Phase::forward ? "fwd." : op.phase == Phase::backward ? "bwd." : "rec.";
      EXPECT_TRUE(starts_with(op.name, prefix)) << op.name;
    }
  }
}

// Two blocks giving one name would share a buffer (or an op's row) silently: the builder's
// check refuses a repeated tensor and a repeated op, and passes the graph as built.
TEST(LayerGraph, RepeatedTensorOrOpNamesAreRefused) {
  const LayerGraph g = build_layer_graph(cases()[0].shape, option_sets()[0]);
  EXPECT_NO_THROW(check_unique_names(g));
  LayerGraph tensors = g;
  TensorSpec clash = tensors.tensors.back();
  clash.name = tensors.tensors.front().name;
  tensors.tensors.push_back(clash);
  try {
    check_unique_names(tensors);
    ADD_FAILURE() << "a repeated tensor name passed";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor " + clash.name + " twice"), std::string::npos) << e.what();
  }
  LayerGraph ops = g;
  ops.ops.push_back(ops.ops[1]);
  try {
    check_unique_names(ops);
    ADD_FAILURE() << "a repeated op name passed";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("two ops named " + g.ops[1].name), std::string::npos) << e.what();
  }
}

// Rows and columns of an operand as stored: A is m x k (k x m when transposed), B k x n
// (n x k when transposed), C m x n.
struct Stored {
  int64_t rows, cols, ld, offset, stride;
  std::string tensor;
};

void check_operand(const LayerGraph& g, const Op& op, const char* which, const Stored& st, int64_t batch) {
  SCOPED_TRACE(std::string(which) + " = " + st.tensor);
  const TensorSpec* t = nullptr;
  for (const auto& x : g.tensors)
    if (x.name == st.tensor) t = &x;
  ASSERT_NE(t, nullptr) << op.name << " names unknown tensor " << st.tensor;
  EXPECT_GE(st.offset, 0);
  EXPECT_GE(st.ld, st.cols) << "rows overlap";
  EXPECT_GE(st.stride, 0);
  // One past the last element touched.
  const int64_t end = st.offset + (batch - 1) * st.stride + (st.rows - 1) * st.ld + st.cols;
  EXPECT_LE(end, t->numel()) << op.name << " reads past " << st.tensor;
}

TEST(LayerGraph, GemmsStayInsideTheirTensors) {
  for (const auto& c : cases()) {
    SCOPED_TRACE(c.label);
    for (const GraphOptions& o : option_sets()) {
      const LayerGraph g = build_layer_graph(c.shape, o);
      for (const auto& op : g.ops) {
        if (op.impl != OpImpl::gemm) continue;
        SCOPED_TRACE(op.name);
        const GemmSpec& s = op.gemm;
        ASSERT_GT(s.m, 0);
        ASSERT_GT(s.n, 0);
        ASSERT_GT(s.k, 0);
        ASSERT_GT(s.batch, 0);
        EXPECT_EQ(op.flops, s.flops());
        check_operand(g, op, "A", {s.trans_a ? s.k : s.m, s.trans_a ? s.m : s.k, s.lda, s.a_offset, s.stride_a, s.a},
                      s.batch);
        check_operand(g, op, "B", {s.trans_b ? s.n : s.k, s.trans_b ? s.k : s.n, s.ldb, s.b_offset, s.stride_b, s.b},
                      s.batch);
        check_operand(g, op, "C", {s.m, s.n, s.ldc, s.c_offset, s.stride_c, s.c}, s.batch);
        // Batch members write disjoint parts of C: either side by side within a row
        // (interleaved heads) or one after another (whole matrices).
        if (s.batch > 1) {
          const bool side_by_side =
              s.stride_c >= s.n && (s.c_offset % s.ldc) + (s.batch - 1) * s.stride_c + s.n <= s.ldc;
          const bool stacked = s.stride_c >= s.m * s.ldc;
          EXPECT_TRUE(side_by_side || stacked) << "batch members of C overlap";
        }
        // A linear layer is a plain contiguous GEMM: C is the whole output tensor.
        if (s.linear) {
          EXPECT_EQ(s.batch, 1);
          EXPECT_EQ(s.m * s.n, g.tensor(s.c).numel());
          EXPECT_EQ(s.ldc, s.n);
        }
      }
    }
  }
}

TEST(LayerGraph, PointwiseOpsNameTensorsOfTheirShape) {
  for (const auto& c : cases()) {
    SCOPED_TRACE(c.label);
    for (const GraphOptions& o : option_sets()) {
      const LayerGraph g = build_layer_graph(c.shape, o);
      std::set<std::string> tensor_names;
      for (const auto& t : g.tensors) EXPECT_TRUE(tensor_names.insert(t.name).second) << "duplicate tensor " << t.name;
      for (const auto& op : g.ops) {
        if (op.impl == OpImpl::gemm) continue;
        SCOPED_TRACE(op.name);
        ASSERT_FALSE(op.inputs.empty());
        ASSERT_FALSE(op.outputs.empty());
        for (const auto& n : op.inputs) ASSERT_TRUE(tensor_names.count(n)) << "unknown input " << n;
        for (const auto& n : op.outputs) ASSERT_TRUE(tensor_names.count(n)) << "unknown output " << n;
        const int64_t elements = op.batch * op.rows * op.cols;
        const int64_t in0 = g.tensor(op.inputs[0]).numel(), out0 = g.tensor(op.outputs[0]).numel();
        switch (op.impl) {
          case OpImpl::bias_grad:  // column sums of a rows x cols gradient
            EXPECT_EQ(in0, elements);
            EXPECT_EQ(out0, op.cols);
            break;
          case OpImpl::cross_entropy_fwd:  // one loss per row of logits
            EXPECT_EQ(in0, elements);
            EXPECT_EQ(out0, op.rows);
            break;
          case OpImpl::layernorm_fwd:  // y, then mean and rstd per row
            EXPECT_EQ(in0, elements);
            EXPECT_EQ(out0, elements);
            EXPECT_EQ(g.tensor(op.outputs.at(1)).numel(), op.rows);
            EXPECT_EQ(g.tensor(op.outputs.at(2)).numel(), op.rows);
            EXPECT_EQ(g.tensor(op.inputs.at(1)).numel(), op.cols);  // gamma
            break;
          default:
            EXPECT_EQ(in0, elements);
            EXPECT_EQ(out0, elements);
        }
      }
    }
  }
}

TEST(LayerGraph, IncludeHeadAddsTheLogits) {
  for (const auto& c : cases()) {
    SCOPED_TRACE(c.label);
    GraphOptions o;
    o.include_head = true;
    const LayerGraph g = build_layer_graph(c.shape, o);
    const LayerGraph plain = build_layer_graph(c.shape, GraphOptions{});
    const double T = static_cast<double>(c.shape.tokens()), V = static_cast<double>(c.shape.vocab),
                 d = static_cast<double>(c.shape.d_model);
    const Op& logits = g.op("fwd.head.logits");
    EXPECT_EQ(logits.group, Group::head);
    EXPECT_EQ(logits.phase, Phase::forward);
    EXPECT_EQ(logits.flops, 2 * T * V * d);
    EXPECT_EQ(g.op("bwd.head.logits.dgrad").flops, 2 * T * V * d);
    EXPECT_EQ(g.op("bwd.head.logits.wgrad").flops, 2 * T * V * d);
    EXPECT_EQ(g.op("bwd.head.logits.dgrad").phase, Phase::backward);
    EXPECT_EQ(g.gemm_flops(Phase::forward, Group::head), 2 * T * V * d);
    EXPECT_EQ(g.gemm_flops(Phase::backward, Group::head), 4 * T * V * d);
    // The layer itself is unchanged.
    EXPECT_EQ(g.gemm_flops(Phase::forward), plain.gemm_flops(Phase::forward));
    EXPECT_EQ(g.gemm_flops(Phase::backward), plain.gemm_flops(Phase::backward));
    EXPECT_THROW(plain.op("fwd.head.logits"), Error);
  }
}

TEST(LayerGraph, UnknownNamesThrow) {
  const LayerGraph g = build_layer_graph(cases()[0].shape, GraphOptions{});
  EXPECT_THROW(g.op("fwd.nothing"), Error);
  EXPECT_THROW(g.tensor("nothing"), Error);
}

TEST(LayerGraph, TensorBytesFollowThePrecision) {
  const LayerShape s = cases()[0].shape;
  GraphOptions fp32, bf16, fp64;
  bf16.precision = Precision::bf16;
  fp64.precision = Precision::fp64;
  fp32.precision = Precision::fp32;
  const LayerGraph g32 = build_layer_graph(s, fp32), g16 = build_layer_graph(s, bf16), g64 = build_layer_graph(s, fp64);
  double elements = 0, stats = 0;
  for (const auto& t : g32.tensors) {
    (t.role == TensorRole::statistic || t.role == TensorRole::index ? stats : elements) +=
        static_cast<double>(t.numel());
  }
  EXPECT_EQ(g32.tensor_bytes(), 4 * (elements + stats));
  EXPECT_EQ(g16.tensor_bytes(), 2 * elements + 4 * stats);  // statistics stay 4 bytes
  EXPECT_EQ(g64.tensor_bytes(), 8 * (elements + stats));
}

TEST(LayerGraph, RejectsInconsistentShapes) {
  LayerShape s = cases()[0].shape;
  s.n_kv_heads = 3;  // does not divide 4 query heads
  EXPECT_THROW(build_layer_graph(s, GraphOptions{}), Error);
  s = cases()[0].shape;
  s.d_head = 15;  // heads x d_head may differ from d_model, but RoPE rotates pairs: d_head must be even
  s.position = PositionKind::rope;
  EXPECT_THROW(build_layer_graph(s, GraphOptions{}), Error);
  s = cases()[0].shape;
  s.batch = 0;
  EXPECT_THROW(build_layer_graph(s, GraphOptions{}), Error);
  s = cases()[0].shape;
  s.seq = INT64_C(1) << 32;  // b h s^2 overflows int64
  EXPECT_THROW(build_layer_graph(s, GraphOptions{}), UsageError);
}

// --precision fp8: the linear layers' GEMMs read E4M3 copies in the layout FP8 tensor cores
// need, each made by a cast op after the last write of its source; nothing else changes.
TEST(LayerGraphFp8, LinearGemmsReadFreshK_MajorCopiesAndNothingElseChanges) {
  for (const auto& c : cases()) {
    if (c.shape.tokens() % 16 != 0) continue;
    SCOPED_TRACE(c.label);
    for (GraphOptions o : option_sets()) {
      SCOPED_TRACE(::testing::Message() << "recompute " << o.recompute << " head " << o.include_head);
      o.precision = Precision::bf16;
      const LayerGraph ref = build_layer_graph(c.shape, o);
      o.precision = Precision::fp8;
      const LayerGraph g = build_layer_graph(c.shape, o);
      // The same ops in the same order once the casts are taken out, with the same FLOPs.
      std::vector<std::string> without_casts, ref_names;
      for (const auto& op : g.ops)
        if (op.impl != OpImpl::cast_fp8) without_casts.push_back(op.name);
      for (const auto& op : ref.ops) ref_names.push_back(op.name);
      EXPECT_EQ(without_casts, ref_names);
      for (Phase p : {Phase::forward, Phase::backward, Phase::recompute})
        for (Group grp : {Group::layer, Group::head}) EXPECT_EQ(g.gemm_flops(p, grp), ref.gemm_flops(p, grp));
      double copy_elements = 0;
      for (const auto& t : g.tensors)
        if (t.role == TensorRole::fp8_copy) copy_elements += static_cast<double>(t.numel());
      EXPECT_EQ(g.tensor_bytes() - ref.tensor_bytes(), copy_elements);  // one byte each
      int casts = 0, fp8_gemms = 0;
      for (size_t i = 0; i < g.ops.size(); ++i) {
        const Op& op = g.ops[i];
        SCOPED_TRACE(op.name);
        if (op.impl == OpImpl::cast_fp8) {
          ++casts;
          const TensorSpec& src = g.tensor(op.inputs.at(0));
          const TensorSpec& dst = g.tensor(op.outputs.at(0));
          EXPECT_EQ(dst.role, TensorRole::fp8_copy);
          EXPECT_EQ(src.numel(), op.rows * op.cols);
          EXPECT_EQ(dst.shape, op.transpose ? (std::vector<int64_t>{op.cols, op.rows}) : (std::vector<int64_t>{op.rows, op.cols}));
          EXPECT_EQ(op.flops, static_cast<double>(op.rows * op.cols));
          continue;
        }
        const bool linear = op.impl == OpImpl::gemm && op.gemm.linear && op.group == Group::layer;
        if (!linear) {
          EXPECT_EQ(op.precision, Precision::bf16);
          if (op.impl == OpImpl::gemm) {
            EXPECT_NE(g.tensor(op.gemm.a).role, TensorRole::fp8_copy);
            EXPECT_NE(g.tensor(op.gemm.b).role, TensorRole::fp8_copy);
          }
          continue;
        }
        ++fp8_gemms;
        const GemmSpec& s = op.gemm;
        EXPECT_EQ(op.precision, Precision::fp8);
        EXPECT_FALSE(s.trans_a);
        EXPECT_TRUE(s.trans_b);
        EXPECT_EQ(s.lda, s.k);
        EXPECT_EQ(s.ldb, s.k);
        EXPECT_EQ(g.tensor(s.a).numel(), s.m * s.k);
        EXPECT_EQ(g.tensor(s.b).numel(), s.n * s.k);
        // Each operand: the last op before this one that wrote the copy is its cast, and the
        // cast's source was not written in between.
        for (const std::string& copy : {s.a, s.b}) {
          ASSERT_EQ(g.tensor(copy).role, TensorRole::fp8_copy) << copy;
          size_t j = i;
          while (j > 0) {
            --j;
            const Op& w = g.ops[j];
            if (w.impl == OpImpl::cast_fp8 && w.outputs.at(0) == copy) break;
          }
          const Op& cast = g.ops[j];
          ASSERT_TRUE(cast.impl == OpImpl::cast_fp8 && cast.outputs.at(0) == copy) << copy << " is never cast";
          const std::string& src = cast.inputs.at(0);
          for (size_t q = j + 1; q < i; ++q) {
            const Op& w = g.ops[q];
            const bool writes = w.impl == OpImpl::gemm ? w.gemm.c == src
                                                       : std::find(w.outputs.begin(), w.outputs.end(), src) != w.outputs.end();
            EXPECT_FALSE(writes) << w.name << " rewrites " << src << " after it was cast for " << op.name;
          }
        }
      }
      const int linear_gemms = 12 + (o.recompute ? 4 : 0);
      EXPECT_EQ(fp8_gemms, linear_gemms);
      // No copy is reused, each GEMM reads a different layout or a rewritten source, except that
      // the recomputed forward reuses the forward's weight copies (the weights did not change).
      EXPECT_EQ(casts, 2 * linear_gemms - (o.recompute ? 4 : 0));
    }
  }
}

TEST(LayerGraphFp8, RecomputeCastsTheRecomputedActivationsAgain) {
  GraphOptions o;
  o.precision = Precision::fp8;
  o.recompute = true;
  const LayerGraph g = build_layer_graph(layer_shape(tiny_model(), 1, 32), o);
  EXPECT_EQ(g.op("rec.qkv.cast_a").inputs.at(0), "ln1.out");
  EXPECT_EQ(g.op("rec.qkv.cast_a").phase, Phase::recompute);
  EXPECT_FALSE(g.op("fwd.qkv.cast_b").transpose == g.op("bwd.qkv.dgrad.cast_b").transpose)
      << "the forward reads W transposed, dgrad reads it as stored";
}

TEST(LayerGraphFp8, ShapesFp8CannotRunAreRefusedWithTheReason) {
  GraphOptions o;
  o.precision = Precision::fp8;
  try {
    build_layer_graph(layer_shape(tiny_model(), 3, 7), o);  // 21 tokens
    ADD_FAILURE() << "21 tokens must be refused";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("multiples of 16"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace flopscope
