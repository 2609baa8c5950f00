// The graph's backward pass is right: on a tiny layer in fp64, the gradients the backward ops
// compute for the input and for every weight and bias match central finite differences of
// the forward pass's loss. This checks every dgrad/wgrad shape, transpose, offset and order.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.hpp"
#include "backend/verify.hpp"
#include "graph/graph.hpp"

namespace flopscope {
namespace {

struct Case {
  const char* label;
  LayerShape shape;
  bool include_head;
  bool recompute;
};


class GradCheck : public ::testing::TestWithParam<Case> {};

// The scalar the backward pass differentiates: with the head, the mean cross-entropy; without,
// sum(y * dy) for the fixed random incoming gradient dy.
double loss(CpuBackend<double>& be, const LayerGraph& g) {
  double l = 0;
  if (g.options.include_head) {
    for (double v : be.data("loss")) l += v;
    return l / static_cast<double>(g.shape.tokens());
  }
  const auto& y = be.data("y");
  const auto& dy = be.data("d.y");
  for (size_t i = 0; i < y.size(); ++i) l += y[i] * dy[i];
  return l;
}

double forward_loss(CpuBackend<double>& be, const LayerGraph& g) {
  for (const auto& op : g.ops)
    if (op.phase == Phase::forward) be.run(op);
  return loss(be, g);
}

TEST_P(GradCheck, BackwardMatchesCentralDifferences) {
  const Case c = GetParam();
  GraphOptions o;
  o.precision = Precision::fp64;
  o.include_head = c.include_head;
  o.recompute = c.recompute;
  const LayerGraph g = build_layer_graph(c.shape, o);
  CpuBackend<double> be;
  be.allocate(g);
  be.fill(7);
  const auto verified = verification_run(be, g);  // runs every op once, checked against fp64
  ASSERT_TRUE(verified.at("passed").get<bool>()) << verified.dump();

  // (parameter, its gradient) pairs: the layer input and every weight and bias.
  std::vector<std::pair<std::string, std::string>> params = {{"x", "d.x"}};
  for (const auto& t : g.tensors)
    if (t.role == TensorRole::weight) params.emplace_back(t.name, "d." + t.name);
  ASSERT_EQ(params.size(), c.include_head ? 16u : 13u);

  const double h = 1e-5;
  for (const auto& [p, dp] : params) {
    const std::vector<double> analytic = be.data(dp);  // copy: forward re-runs do not touch it
    auto& v = be.data(p);
    double max_diff = 0, max_ref = 0;
    for (size_t i = 0; i < v.size(); ++i) {
      const double saved = v[i];
      v[i] = saved + h;
      const double lp = forward_loss(be, g);
      v[i] = saved - h;
      const double lm = forward_loss(be, g);
      v[i] = saved;
      const double numeric = (lp - lm) / (2 * h);
      max_diff = std::max(max_diff, std::fabs(numeric - analytic[i]));
      max_ref = std::max(max_ref, std::fabs(numeric));
    }
    ASSERT_GT(max_ref, 0) << p << ": a gradient that is zero everywhere checks nothing";
    EXPECT_LT(max_diff / max_ref, 1e-6) << c.label << ": gradient of " << p << " (max |diff| " << max_diff
                                        << ", max |grad| " << max_ref << ")";
  }
}

INSTANTIATE_TEST_SUITE_P(
    TinyLayers, GradCheck,
    ::testing::Values(Case{"b1_s6_h2", layer_shape(1, 6, 2, 4, 11), false, false},
                      Case{"b2_s5_h3", layer_shape(2, 5, 3, 2, 11), false, false},
                      Case{"b2_s4_h2_head", layer_shape(2, 4, 2, 3, 13), true, false},
                      Case{"b2_s4_h2_recompute_head", layer_shape(2, 4, 2, 3, 7), true, true}),
    [](const ::testing::TestParamInfo<Case>& param) { return std::string(param.param.label); });

}  // namespace
}  // namespace flopscope
