// The CPU backend's fast ops (what runs and is timed) agree with the fp64 reference ops within
// verify_tolerance(fp32), on shapes whose rows are not a multiple of the vector width and with
// rows split across threads; the causal softmax writes zeros in the masked part; the fp32
// exp clamp leaves no subnormal where the reference has none; the fp64 build is exact enough
// for fp64's tolerance; the Llama ops (RMSNorm, RoPE, SwiGLU, ReLU) return the reference's
// FLOPs; the fp8 cast is bit for bit the scalar loop's, amax included.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "backend/cpu/fast_ops.hpp"
#include "backend/cpu/parallel.hpp"
#include "backend/cpu/reference_ops.hpp"
#include "backend/verify.hpp"
#include "graph/graph.hpp"
#include "util/fp8.hpp"
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

// The Llama-family ops: fp32 within kLlamaTol of the reference run in double, fp64 within
// kFp64Tol of the reference run in fp64, the same FLOPs. Shapes: rows and cols no multiple of 8
// or 16, on one thread (37 rows) and split across threads (523 rows: row_grain(77) = 106).
const double kLlamaTol = 1e-5, kFp64Tol = 1e-12;
std::vector<double> rand_d(size_t n, uint64_t stream, double scale = 1, double offset = 0) {
  std::vector<double> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = offset + scale * uniform_pm1(5, stream, i);
  return v;
}
double rel_err_d(const std::vector<double>& out, const std::vector<double>& ref) {
  double scale = 0, diff = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    scale = std::max(scale, std::fabs(ref[i]));
    diff = std::max(diff, std::fabs(out[i] - ref[i]));
  }
  return diff / std::max(scale, 1e-300);
}

TEST(FastOps, RmsNormMatchesTheReference) {
  for (int64_t rows : {37, 523}) {
    const int64_t cols = 77;
    const auto x = rand_f(static_cast<size_t>(rows * cols), 21, 2, 0.3);
    const auto g = rand_f(static_cast<size_t>(cols), 22, 0.2, 1);
    const auto dy = rand_f(x.size(), 23);
    std::vector<float> y(x.size()), rstd(static_cast<size_t>(rows)), dx(x.size()), dg(g.size());
    const double ff = cpu::rmsnorm_forward(x.data(), g.data(), y.data(), rstd.data(), rows, cols);
    const double fb =
        cpu::rmsnorm_backward(dy.data(), x.data(), g.data(), rstd.data(), dx.data(), dg.data(), rows, cols);
    std::vector<double> ry(x.size()), rrstd(rstd.size()), rdx(x.size()), rdg(g.size());
    EXPECT_EQ(ff, ref::rmsnorm_forward(to_d(x).data(), to_d(g).data(), ry.data(), rrstd.data(), rows, cols));
    EXPECT_EQ(fb, ref::rmsnorm_backward(to_d(dy).data(), to_d(x).data(), to_d(g).data(), rrstd.data(), rdx.data(),
                                        rdg.data(), rows, cols));
    EXPECT_GT(ff, 0);
    EXPECT_LT(rel_err(y, ry), kLlamaTol) << rows;
    EXPECT_LT(rel_err(rstd, rrstd), kLlamaTol) << rows;
    EXPECT_LT(rel_err(dx, rdx), kLlamaTol) << rows;
    EXPECT_LT(rel_err(dg, rdg), kLlamaTol) << rows;

    const auto xd = rand_d(x.size(), 24, 2, 0.3), gd = rand_d(g.size(), 25, 0.2, 1), dyd = rand_d(x.size(), 26);
    std::vector<double> y64(x.size()), rs64(rstd.size()), dx64(x.size()), dg64(g.size());
    cpu::rmsnorm_forward(xd.data(), gd.data(), y64.data(), rs64.data(), rows, cols);
    cpu::rmsnorm_backward(dyd.data(), xd.data(), gd.data(), rs64.data(), dx64.data(), dg64.data(), rows, cols);
    ref::rmsnorm_forward(xd.data(), gd.data(), ry.data(), rrstd.data(), rows, cols);
    ref::rmsnorm_backward(dyd.data(), xd.data(), gd.data(), rrstd.data(), rdx.data(), rdg.data(), rows, cols);
    EXPECT_LT(rel_err_d(y64, ry), kFp64Tol);
    EXPECT_LT(rel_err_d(rs64, rrstd), kFp64Tol);
    EXPECT_LT(rel_err_d(dx64, rdx), kFp64Tol);
    EXPECT_LT(rel_err_d(dg64, rdg), kFp64Tol);
  }
}

// In place, rows t = si * batch + bi; V heads untouched; backward after forward gives x back.
TEST(FastOps, RopeMatchesTheReferenceInPlace) {
  for (int64_t d_head : {10, 6})
    for (int64_t seq : {37, 301}) {  // 301 * 2 rows: several threads
      RopeSpec spec;
      spec.batch = 2;
      spec.kv_heads = 2;
      spec.group = 2;
      spec.d_head = d_head;
      const int64_t rows = seq * spec.batch, cols = spec.kv_heads * (spec.group + 2) * d_head;
      const auto x0 = rand_f(static_cast<size_t>(rows * cols), 27, 3);
      std::vector<float> x = x0;
      std::vector<double> rx = to_d(x0);
      const double ff = cpu::rope(x.data(), rows, cols, spec, false);
      EXPECT_EQ(ff, ref::rope(rx.data(), rows, cols, spec, false));
      EXPECT_EQ(ff, 3.0 * static_cast<double>(rows * spec.kv_heads * (spec.group + 1) * d_head));
      EXPECT_LT(rel_err(x, rx), kLlamaTol) << d_head << " " << seq;
      EXPECT_GT(rel_err(x, to_d(x0)), 0.1);  // it did rotate
      for (int64_t t = 0; t < rows; ++t)
        for (int64_t grp = 0; grp < spec.kv_heads; ++grp)
          for (int64_t j = 0; j < d_head; ++j) {
            const auto i = static_cast<size_t>(t * cols + (grp * (spec.group + 2) + spec.group + 1) * d_head + j);
            EXPECT_EQ(x[i], x0[i]);  // V
          }
      std::vector<float> xb = x;
      std::vector<double> rxb = rx;
      EXPECT_EQ(cpu::rope(xb.data(), rows, cols, spec, true), ref::rope(rxb.data(), rows, cols, spec, true));
      EXPECT_LT(rel_err(xb, rxb), kLlamaTol);
      EXPECT_LT(rel_err(xb, to_d(x0)), kLlamaTol);  // the inverse rotation

      const auto xd0 = rand_d(x0.size(), 28, 3);
      std::vector<double> xd = xd0, rxd = xd0;
      cpu::rope(xd.data(), rows, cols, spec, false);
      ref::rope(rxd.data(), rows, cols, spec, false);
      EXPECT_LT(rel_err_d(xd, rxd), kFp64Tol);
      cpu::rope(xd.data(), rows, cols, spec, true);
      ref::rope(rxd.data(), rows, cols, spec, true);
      EXPECT_LT(rel_err_d(xd, rxd), kFp64Tol);
    }
}

// Angles up to 5.3e5 rad, past kFastTrigMax (2^19) where the fast cos, sin hand over to std::.
TEST(FastOps, RopeAtLargePositionsMatchesTheReference) {
  RopeSpec spec;
  spec.batch = 1;
  spec.kv_heads = 1;
  spec.group = 0;  // (K, V) per group: one rotated head
  spec.d_head = 2;  // one pair, inv_freq 1: angle = position
  const int64_t rows = 530000, cols = 4;
  const auto xd0 = rand_d(static_cast<size_t>(rows * cols), 36, 3);
  std::vector<double> xd = xd0, rxd = xd0;
  cpu::rope(xd.data(), rows, cols, spec, false);
  ref::rope(rxd.data(), rows, cols, spec, false);
  EXPECT_LT(rel_err_d(xd, rxd), kFp64Tol);
  std::vector<float> x(xd0.begin(), xd0.end());
  std::vector<double> rx(x.begin(), x.end());
  cpu::rope(x.data(), rows, cols, spec, true);
  ref::rope(rx.data(), rows, cols, spec, true);
  EXPECT_LT(rel_err(x, rx), kLlamaTol);
}

TEST(FastOps, SwigluAndReluMatchTheReference) {
  for (int64_t n : {37 * 77, 100003}) {  // one thread; several
    const auto gate = rand_f(static_cast<size_t>(n), 29, 12);  // both tails of the sigmoid
    const auto up = rand_f(gate.size(), 30, 2);
    const auto dh = rand_f(gate.size(), 31);
    std::vector<float> h(gate.size()), dg(gate.size()), du(gate.size()), y(gate.size()), dx(gate.size());
    std::vector<double> rh(gate.size()), rdg(gate.size()), rdu(gate.size()), ry(gate.size()), rdx(gate.size());
    EXPECT_EQ(cpu::swiglu_forward(gate.data(), up.data(), h.data(), n),
              ref::swiglu_forward(to_d(gate).data(), to_d(up).data(), rh.data(), n));
    EXPECT_EQ(cpu::swiglu_backward(gate.data(), up.data(), dh.data(), dg.data(), du.data(), n),
              ref::swiglu_backward(to_d(gate).data(), to_d(up).data(), to_d(dh).data(), rdg.data(), rdu.data(), n));
    EXPECT_LT(rel_err(h, rh), kLlamaTol) << n;
    EXPECT_LT(rel_err(dg, rdg), kLlamaTol) << n;
    EXPECT_LT(rel_err(du, rdu), kLlamaTol) << n;
    for (float v : h) EXPECT_TRUE(v == 0 || std::fabs(v) >= 1e-30f);  // no subnormal results

    EXPECT_EQ(cpu::relu_forward(gate.data(), y.data(), n), ref::relu_forward(to_d(gate).data(), ry.data(), n));
    EXPECT_EQ(cpu::relu_backward(gate.data(), dh.data(), dx.data(), n),
              ref::relu_backward(to_d(gate).data(), to_d(dh).data(), rdx.data(), n));
    EXPECT_EQ(std::vector<double>(y.begin(), y.end()), ry);  // exact: no arithmetic
    EXPECT_EQ(std::vector<double>(dx.begin(), dx.end()), rdx);

    const auto gd = rand_d(gate.size(), 32, 12), ud = rand_d(gate.size(), 33, 2), dhd = rand_d(gate.size(), 34);
    std::vector<double> h64(gate.size()), dg64(gate.size()), du64(gate.size());
    cpu::swiglu_forward(gd.data(), ud.data(), h64.data(), n);
    cpu::swiglu_backward(gd.data(), ud.data(), dhd.data(), dg64.data(), du64.data(), n);
    ref::swiglu_forward(gd.data(), ud.data(), rh.data(), n);
    ref::swiglu_backward(gd.data(), ud.data(), dhd.data(), rdg.data(), rdu.data(), n);
    EXPECT_LT(rel_err_d(h64, rh), kFp64Tol);
    EXPECT_LT(rel_err_d(dg64, rdg), kFp64Tol);
    EXPECT_LT(rel_err_d(du64, rdu), kFp64Tol);
  }
}

// Values that probe every branch of the E4M3 rounding: each code's value, the midpoints between
// neighbouring codes (ties) and the floats either side, zeros, float subnormals, 448 and above,
// infinities, NaN, both signs; then a stride through all float bit patterns.
std::vector<float> fp8_probe_values() {
  std::vector<float> v;
  for (int c = 0; c < 0x7E; ++c) {
    const float a = fp8::e4m3_to_float(static_cast<uint8_t>(c)), b = fp8::e4m3_to_float(static_cast<uint8_t>(c + 1));
    const float mid = (a + b) / 2;  // exact: a and b have 4 significant bits
    for (float f : {a, mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e9f), std::nextafter(a, 1e9f)}) {
      v.push_back(f);
      v.push_back(-f);
    }
  }
  constexpr float kInf = std::numeric_limits<float>::infinity();
  for (float f : {0.0f, -0.0f, 1e-40f, -1e-40f, 448.0f, 449.0f, 464.0f, 465.0f, 1e30f, kInf, -kInf,
                  std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::quiet_NaN()})
    v.push_back(f);
  for (uint64_t u = 0; u < (uint64_t{1} << 32); u += 65521) v.push_back(std::bit_cast<float>(static_cast<uint32_t>(u)));
  return v;
}

template <typename F>
void expect_cast_fp8_bit_exact(const std::vector<F>& x, int64_t rows, int64_t cols, float scale) {
  for (bool transpose : {false, true}) {
    std::vector<F> y(x.size(), F(7)), ry(x.size(), F(7));
    const float amax = cpu::cast_fp8(x.data(), y.data(), rows, cols, transpose, scale);
    const float ramax = ref::cast_fp8(x.data(), ry.data(), rows, cols, transpose, scale);
    EXPECT_EQ(std::bit_cast<uint32_t>(amax), std::bit_cast<uint32_t>(ramax)) << rows << "x" << cols << " " << scale;
    size_t differ = 0;
    for (size_t i = 0; i < x.size(); ++i) differ += std::memcmp(&y[i], &ry[i], sizeof(F)) != 0;
    EXPECT_EQ(differ, 0u) << rows << "x" << cols << " transpose " << transpose << " scale " << scale;
  }
}

TEST(FastOps, CastFp8IsBitExactWithTheScalarLoop) {
  const auto probe = fp8_probe_values();
  // (rows, cols) shapes: one thread; rows a prime, split unevenly across threads, tiles ragged
  // in both directions; the probe values as one (rows, 61) block.
  const int64_t pc = 61, pr = static_cast<int64_t>(probe.size()) / pc;
  const std::vector<float> probe_x(probe.begin(), probe.begin() + pr * pc);
  for (float scale : {1.0f, 0.125f, 16.0f, 3.0f}) {
    expect_cast_fp8_bit_exact(probe_x, pr, pc, scale);
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{37, 77}, {523, 77}, {1031, 19}}) {
      const auto x = rand_f(static_cast<size_t>(rows * cols), 35, 300);
      expect_cast_fp8_bit_exact(x, rows, cols, scale);
      expect_cast_fp8_bit_exact(to_d(x), rows, cols, scale);
    }
  }
  EXPECT_EQ(cpu::cast_fp8(probe_x.data(), std::vector<float>(probe_x.size()).data(), pr, pc, false, 1.0f),
            std::numeric_limits<float>::infinity());  // NaN skipped, inf kept
  std::vector<double> dx = {1.5, -2.25, std::numeric_limits<double>::quiet_NaN(), 0.0}, dy(4);
  EXPECT_EQ(cpu::cast_fp8(dx.data(), dy.data(), 2, 2, false, 1.0f), 2.25f);
  EXPECT_EQ(dy[1], -2.25);
  EXPECT_TRUE(std::isnan(dy[2]));
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
