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

}  // namespace
}  // namespace flopscope
