// The CPU backend's fast ops (what runs and is timed) agree with the fp64 reference ops within
// verify_tolerance(fp32), on shapes whose rows are not a multiple of the vector width and with
// rows split across threads; the causal softmax writes zeros in the masked part; the fp32
// exp clamp leaves no subnormal where the reference has none; the fp64 build is exact enough
// for fp64's tolerance.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/fast_ops.hpp"
#include "backend/cpu/parallel.hpp"
#include "backend/cpu/reference_ops.hpp"
#include "backend/verify.hpp"
#include "util/random_fill.hpp"

namespace flopscope {
namespace {

std::vector<float> rand_f(size_t n, uint64_t stream, double scale = 1, double offset = 0) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<float>(offset + scale * uniform_pm1(3, stream, i));
  return v;
}
std::vector<double> to_d(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// max |out - ref| / max |ref|, the measure verify() uses.
double rel_err(const std::vector<float>& out, const std::vector<double>& ref) {
  double scale = 0, diff = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    scale = std::max(scale, std::fabs(ref[i]));
    diff = std::max(diff, std::fabs(out[i] - ref[i]));
  }
  return diff / std::max(scale, 1e-300);
}

const double kTol = verify_tolerance(Precision::fp32, false);

TEST(FastOps, GeluForwardAndBackwardMatchTheReference) {
  const size_t n = 100003;  // not a multiple of 8 or 16; several threads' worth
  const auto x = rand_f(n, 1, 12);  // |x| up to 12: both tails of the sigmoid
  const auto dy = rand_f(n, 2);
  std::vector<float> y(n), dx(n);
  std::vector<double> ry(n), rdx(n);
  cpu::gelu_forward(x.data(), y.data(), static_cast<int64_t>(n));
  cpu::gelu_backward(x.data(), dy.data(), dx.data(), static_cast<int64_t>(n));
  ref::gelu_forward(to_d(x).data(), ry.data(), static_cast<int64_t>(n));
  ref::gelu_backward(to_d(x).data(), to_d(dy).data(), rdx.data(), static_cast<int64_t>(n));
  EXPECT_LT(rel_err(y, ry), kTol);
  EXPECT_LT(rel_err(dx, rdx), kTol);
  for (float v : y) EXPECT_TRUE(v == 0 || std::fabs(v) >= 1e-30f);  // no subnormal results
}

TEST(FastOps, CausalSoftmaxTouchesTheTriangleAndZeroesTheRest) {
  const int64_t batch = 3, n = 37;
  const auto s = rand_f(static_cast<size_t>(batch * n * n), 3, 8);
  const auto dp = rand_f(s.size(), 4);
  std::vector<float> p(s.size(), 7.0f), ds(s.size(), 7.0f);  // 7: must all be overwritten
  const double flops = cpu::softmax_causal_forward(s.data(), p.data(), batch, n);
  std::vector<double> rp(s.size()), rds(s.size());
  EXPECT_EQ(flops, ref::softmax_causal_forward(to_d(s).data(), rp.data(), batch, n));
  EXPECT_LT(rel_err(p, rp), kTol);
  cpu::softmax_causal_backward(p.data(), dp.data(), ds.data(), batch, n);
  ref::softmax_causal_backward(rp.data(), to_d(dp).data(), rds.data(), batch, n);
  EXPECT_LT(rel_err(ds, rds), kTol);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = i + 1; j < n; ++j) {
        EXPECT_EQ(p[static_cast<size_t>((b * n + i) * n + j)], 0.0f);
        EXPECT_EQ(ds[static_cast<size_t>((b * n + i) * n + j)], 0.0f);
      }
}

TEST(FastOps, LayerNormBiasAndResidualMatchTheReference) {
  const int64_t rows = 203, cols = 77;
  const auto x = rand_f(static_cast<size_t>(rows * cols), 5, 2, 0.5);
  const auto g = rand_f(static_cast<size_t>(cols), 6, 0.2, 1);
  const auto be = rand_f(static_cast<size_t>(cols), 7, 0.1);
  const auto dy = rand_f(x.size(), 8);
  std::vector<float> y(x.size()), mean(static_cast<size_t>(rows)), rstd(mean.size()), dx(x.size()), dg(g.size()),
      db(g.size());
  cpu::layernorm_forward(x.data(), g.data(), be.data(), y.data(), mean.data(), rstd.data(), rows, cols);
  cpu::layernorm_backward(dy.data(), x.data(), g.data(), mean.data(), rstd.data(), dx.data(), dg.data(), db.data(),
                          rows, cols);
  std::vector<double> ry(x.size()), rmean(mean.size()), rrstd(mean.size()), rdx(x.size()), rdg(g.size()), rdb(g.size());
  ref::layernorm_forward(to_d(x).data(), to_d(g).data(), to_d(be).data(), ry.data(), rmean.data(), rrstd.data(), rows,
                         cols);
  ref::layernorm_backward(to_d(dy).data(), to_d(x).data(), to_d(g).data(), rmean.data(), rrstd.data(), rdx.data(),
                          rdg.data(), rdb.data(), rows, cols);
  EXPECT_LT(rel_err(y, ry), kTol);
  EXPECT_LT(rel_err(mean, rmean), kTol);
  EXPECT_LT(rel_err(rstd, rrstd), kTol);
  EXPECT_LT(rel_err(dx, rdx), kTol);
  EXPECT_LT(rel_err(dg, rdg), kTol);
  EXPECT_LT(rel_err(db, rdb), kTol);

  std::vector<float> xb = x, bg(g.size()), r(x.size());
  cpu::bias_add(xb.data(), be.data(), rows, cols);
  cpu::bias_grad(dy.data(), bg.data(), rows, cols);
  cpu::residual_add(x.data(), dy.data(), r.data(), rows * cols);
  std::vector<double> rxb = to_d(x), rbg(g.size()), rr(x.size());
  ref::bias_add(rxb.data(), to_d(be).data(), rows, cols);
  ref::bias_grad(to_d(dy).data(), rbg.data(), rows, cols);
  ref::residual_add(to_d(x).data(), to_d(dy).data(), rr.data(), rows * cols);
  EXPECT_LT(rel_err(xb, rxb), kTol);
  EXPECT_LT(rel_err(bg, rbg), kTol);
  EXPECT_LT(rel_err(r, rr), kTol);
}

TEST(FastOps, CrossEntropyMatchesTheReference) {
  const int64_t rows = 9, vocab = 1001;
  const auto z = rand_f(static_cast<size_t>(rows * vocab), 9, 5);
  std::vector<float> t(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) t[static_cast<size_t>(r)] = static_cast<float>((r * 97) % vocab);
  std::vector<float> loss(t.size()), dz(z.size());
  cpu::cross_entropy_forward(z.data(), t.data(), loss.data(), rows, vocab);
  cpu::cross_entropy_backward(z.data(), t.data(), dz.data(), rows, vocab);
  std::vector<double> rloss(t.size()), rdz(z.size());
  ref::cross_entropy_forward(to_d(z).data(), to_d(t).data(), rloss.data(), rows, vocab);
  ref::cross_entropy_backward(to_d(z).data(), to_d(t).data(), rdz.data(), rows, vocab);
  EXPECT_LT(rel_err(loss, rloss), kTol);
  EXPECT_LT(rel_err(dz, rdz), kTol);
}

TEST(FastOps, Fp64IsWithinFp64Tolerance) {
  const int64_t n = 1003;
  std::vector<double> x(static_cast<size_t>(n)), y(x.size()), ry(x.size());
  for (size_t i = 0; i < x.size(); ++i) x[i] = 6 * uniform_pm1(3, 11, i);
  cpu::gelu_forward(x.data(), y.data(), n);
  ref::gelu_forward(x.data(), ry.data(), n);
  double scale = 0, diff = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    scale = std::max(scale, std::fabs(ry[i]));
    diff = std::max(diff, std::fabs(y[i] - ry[i]));
  }
  EXPECT_LT(diff / scale, verify_tolerance(Precision::fp64, false));
}

TEST(Parallel, EveryIndexOnceAndWeightedRangesCoverTheRange) {
  for (int64_t n : {0, 1, 2, 7, 1000}) {
    std::vector<int> seen(static_cast<size_t>(n), 0);
    cpu::parallel_for(n, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) ++seen[static_cast<size_t>(i)];
    });
    for (int s : seen) EXPECT_EQ(s, 1);
    std::fill(seen.begin(), seen.end(), 0);
    cpu::parallel_for_weighted(
        n, [](int64_t i) { return static_cast<double>(i + 1); },
        [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) ++seen[static_cast<size_t>(i)];
        });
    for (int s : seen) EXPECT_EQ(s, 1);
  }
  EXPECT_GE(cpu::cpu_threads(), 1);
  EXPECT_THROW(cpu::parallel_for(100, [](int64_t, int64_t) { throw std::runtime_error("x"); }), std::runtime_error);
}

}  // namespace
}  // namespace flopscope
