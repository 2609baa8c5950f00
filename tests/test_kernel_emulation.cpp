// The host-callable parts of the device kernels, run on the CPU for every element and compared
// with the CPU reference (src/backend/cpu/reference_ops.hpp): the code path a GPU runs, checked
// on machines without one. RoPE's index map and rotation (kernels/rope.cuh) are what
// kernels/rope.cu executes per thread; here every pair is visited once, in float (the kernel's
// accumulator for f32/f16/bf16) and in double (f64), on MHA, GQA and MQA layouts.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <vector>

#include "backend/cpu/reference_ops.hpp"
#include "moe.cuh"
#include "rope.cuh"

namespace flopscope {
namespace {

template <typename A>
std::vector<double> emulate_rope(const std::vector<double>& x, int64_t rows, const RopeSpec& r, bool backward,
                                 std::set<int64_t>* touched) {
  std::vector<A> v(x.begin(), x.end());
  const int64_t pairs = rows * r.kv_heads * r.rotated_heads() * (r.d_head / 2);
  const bool general = r.rotated > 0 || r.block > 0 || r.offset > 0;  // the MLA layouts' overload
  for (int64_t i = 0; i < pairs; ++i) {
    const auto p = general ? kernels::detail::rope_pair(i, r.batch, r.kv_heads, r.rotated_heads(), r.block_width(),
                                                        r.offset, r.kv_heads * r.block_width(), r.d_head, r.theta,
                                                        backward)
                           : kernels::detail::rope_pair(i, r.batch, r.kv_heads, r.group, r.d_head, r.theta, backward);
    A a = v[static_cast<size_t>(p.first)], b = v[static_cast<size_t>(p.second)];
    kernels::detail::rope_rotate(a, b, static_cast<A>(p.cos), static_cast<A>(p.sin));
    v[static_cast<size_t>(p.first)] = a;
    v[static_cast<size_t>(p.second)] = b;
    if (touched != nullptr) {
      EXPECT_TRUE(touched->insert(p.first).second) << "element " << p.first << " rotated twice";
      EXPECT_TRUE(touched->insert(p.second).second) << "element " << p.second << " rotated twice";
    }
  }
  return {v.begin(), v.end()};
}

TEST(KernelEmulation, RopeIndexMapAndRotationMatchTheReference) {
  struct Case {
    int64_t rows;
    RopeSpec spec;
  };
  const Case cases[] = {{12, {3, 4, 1, 16, 10000.0}}, {10, {2, 2, 4, 8, 10000.0}}, {7, {1, 1, 6, 4, 100.0}},
                        {64, {2, 2, 2, 128, 500000.0}}};
  for (const Case& c : cases) {
    const RopeSpec& r = c.spec;
    const int64_t cols = r.kv_heads * (r.group + 2) * r.d_head;
    std::vector<double> x(static_cast<size_t>(c.rows * cols));
    for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(std::sin(0.61 * static_cast<double>(i)));
    for (bool backward : {false, true}) {
      std::vector<double> want = x;
      ref::rope(want.data(), c.rows, cols, r, backward);
      std::set<int64_t> touched;
      const std::vector<double> f64 = emulate_rope<double>(x, c.rows, r, backward, &touched);
      const std::vector<double> f32 = emulate_rope<float>(x, c.rows, r, backward, nullptr);
      // Exactly the Q and K elements are rotated, each once; V is left alone.
      EXPECT_EQ(static_cast<int64_t>(touched.size()), c.rows * r.kv_heads * (r.group + 1) * r.d_head);
      for (int64_t e : touched) EXPECT_NE((e % cols) / r.d_head % (r.group + 2), r.group + 1) << "a V element rotated";
      double err64 = 0, err32 = 0;
      for (size_t i = 0; i < x.size(); ++i) {
        err64 = std::max(err64, std::fabs(f64[i] - want[i]));
        err32 = std::max(err32, std::fabs(f32[i] - want[i]));
      }
      EXPECT_LT(err64, 1e-14);
      EXPECT_LT(err32, 1e-6);  // |x| <= 1: a few float ulps
    }
  }
}

// MLA's layouts (src/graph/mla.cpp): the rope part (last 4 of 12) of each of 4 q heads, and the
// one k_rope head; exactly those elements rotate, each once, as the reference rotates them.
TEST(KernelEmulation, RopeOnMlaLayoutsMatchesTheReference) {
  const int64_t rows = 9;
  for (const RopeSpec& r : {RopeSpec{3, 4, 1, 4, 100.0, 1, 12, 8}, RopeSpec{3, 1, 1, 4, 100.0, 1, 4, 0}}) {
    const int64_t cols = r.kv_heads * r.block_width();
    std::vector<double> x(static_cast<size_t>(rows * cols));
    for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(std::sin(0.37 * static_cast<double>(i)));
    for (bool backward : {false, true}) {
      std::vector<double> want = x;
      ref::rope(want.data(), rows, cols, r, backward);
      std::set<int64_t> touched;
      const std::vector<double> f64 = emulate_rope<double>(x, rows, r, backward, &touched);
      EXPECT_EQ(static_cast<int64_t>(touched.size()), rows * r.kv_heads * r.d_head);
      for (int64_t e : touched) EXPECT_GE((e % cols) % r.block_width(), r.offset) << "a nope element rotated";
      double err = 0;
      for (size_t i = 0; i < x.size(); ++i) err = std::max(err, std::fabs(f64[i] - want[i]));
      EXPECT_LT(err, 1e-14);
      EXPECT_NE(want, x);  // something turned
    }
  }
}

// The router's kernels (kernels/moe.cu) run moe.cuh's rule per token: here on the CPU, for
// every router variant, against ref::moe_route_row and ref::moe_route_backward_row (the
// reference verification uses) on 200 random tokens each: the same experts, in the same order,
// and the same weights and logits' gradients to rounding.
TEST(KernelEmulation, MoeRouteMatchesTheReference) {
  struct Case {
    int experts, top_k, n_group, topk_group;
    bool sigmoid, topk_first, norm_topk;
    double aux, scale;
  };
  const Case cases[] = {{8, 2, 0, 0, false, false, true, 0.02, 1.0},     // Mixtral (aux loss)
                        {64, 8, 0, 0, false, false, false, 0.0, 1.0},    // Qwen2-MoE, unnormalised
                        {256, 8, 8, 4, true, false, true, 1e-4, 2.5},    // DeepSeek-V3, grouped, scaled
                        {160, 6, 0, 0, false, false, false, 1e-3, 16.0}, // DeepSeek-V2, scaled
                        {128, 4, 0, 0, false, true, false, 0.0, 1.0},    // gpt-oss
                        {16, 4, 0, 0, false, true, true, 0.0, 3.0},      // top-k first, softmax, scaled
                        {16, 1, 0, 0, true, true, false, 0.0, 1.0}};     // Llama 4
  uint64_t state = 12345;
  auto uniform = [&] {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<double>(state >> 11) / 9007199254740992.0 * 4 - 2;
  };
  for (const Case& c : cases) {
    MoeSpec spec;
    spec.experts = c.experts, spec.top_k = c.top_k, spec.n_group = c.n_group, spec.topk_group = c.topk_group;
    spec.sigmoid = c.sigmoid, spec.topk_first = c.topk_first, spec.norm_topk = c.norm_topk, spec.aux_coef = c.aux;
    spec.scale = c.scale;
    kernels::detail::MoeRule rule;
    rule.experts = c.experts, rule.top_k = c.top_k, rule.n_group = c.n_group, rule.topk_group = c.topk_group;
    rule.sigmoid = c.sigmoid, rule.topk_first = c.topk_first, rule.norm_topk = c.norm_topk, rule.aux_coef = c.aux;
    rule.scale = c.scale;
    std::vector<double> counts(static_cast<size_t>(c.experts));
    for (auto& n : counts) n = std::floor((uniform() + 2) * 10);
    for (int t = 0; t < 200; ++t) {
      std::vector<double> z(static_cast<size_t>(c.experts)), s(z.size()), dz(z.size()), want_dz(z.size());
      for (auto& v : z) v = uniform();
      std::vector<unsigned char> allowed(z.size());
      std::vector<int> ex(static_cast<size_t>(c.top_k));
      std::vector<int64_t> want_ex(ex.size());
      std::vector<double> w(ex.size()), want_w(ex.size()), dw(ex.size());
      for (auto& v : dw) v = uniform();
      kernels::detail::moe_route_row(z.data(), rule, s.data(), allowed.data(), ex.data(), w.data());
      ref::moe_route_row(z.data(), spec, want_ex.data(), want_w.data());
      for (int j = 0; j < c.top_k; ++j) {
        ASSERT_EQ(ex[j], want_ex[j]) << c.experts << " experts, token " << t;
        EXPECT_NEAR(w[j], want_w[j], 1e-14);
      }
      kernels::detail::moe_route_backward_row(z.data(), ex.data(), w.data(), dw.data(), counts.data(), 200, rule,
                                              s.data(), dz.data());
      ref::moe_route_backward_row(z.data(), want_ex.data(), w.data(), dw.data(), counts.data(), 200, spec,
                                  want_dz.data());
      for (int e = 0; e < c.experts; ++e) EXPECT_NEAR(dz[e], want_dz[e], 1e-13) << c.experts << " experts";
    }
  }
}

}  // namespace
}  // namespace flopscope
