// The row kernels (*_body) are plain loops over contiguous floats, inlined into two builds for
// fp32: one compiled for AVX2 + FMA (the *_avx2 functions, called when the CPU has both) and
// one at the baseline ISA (*_base); fp64 calls the body directly. The loops carry no
// dependency between elements except the reductions, which keep kLanes partial sums so the
// compiler can vectorise them without reassociating one sum (it may not, without -ffast-math).
// The file is compiled with -ffp-contract=fast (a * b + c becomes an FMA in the AVX2 build) and
// -fno-trapping-math (no code here reads floating-point exception flags; without it GCC keeps
// the clamps in exp_fast as branches and vectorises no loop that calls it). src/CMakeLists.txt.
#include "backend/cpu/fast_ops.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "backend/cpu/parallel.hpp"
#include "backend/cpu/reference_ops.hpp"
#include "graph/graph.hpp"
#include "util/fp8.hpp"

namespace flopscope::cpu {

namespace {

namespace fc = flop_convention;

#define FS_INLINE inline __attribute__((always_inline))
#define FS_AVX2 __attribute__((target("avx2,fma")))

constexpr int kLanes = 16;             // partial sums per reduction: two AVX registers of floats
constexpr int64_t kGrainElems = 16384;  // elementwise ops: fewer elements than this per thread is not worth a thread
constexpr int64_t kGrainRowElems = 8192;  // row ops: rows per thread >= this / cols

bool use_avx2() {
  static const bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return yes;
}

int64_t row_grain(int64_t cols) { return std::max<int64_t>(1, kGrainRowElems / std::max<int64_t>(cols, 1)); }

// exp(x) for fp32: x = n ln2 + r, |r| <= ln2 / 2, n rounded to nearest by the 1.5 * 2^23 trick
// (no float-to-int conversion), ln2 split in two for an exact r; e^r by its degree-6 Taylor
// polynomial (error r^7/7! <= 1.2e-7 relative); 2^n from the exponent bits. x is clamped to
// [-60, 60]: exp(-60) = 8.7e-27 stands in for smaller values (nothing here needs them: a
// softmax's or a sigmoid's smallest terms against its largest), and no result, nor 1 / (1 + it),
// nor it / 2^12, is a subnormal float, whose arithmetic is 20 to 40 times slower on x86 (the
// vectorised clamp computes both sides, so even lanes that are not clamped would pay).
FS_INLINE float exp_fast(float x) {
  x = x < -60.0f ? -60.0f : x;
  x = x > 60.0f ? 60.0f : x;
  constexpr float kLog2e = 1.44269504088896341f, kRound = 12582912.0f;  // 1.5 * 2^23
  constexpr float kLn2Hi = 0.693145751953125f, kLn2Lo = 1.42860682030941723212e-6f;
  const float t = x * kLog2e + kRound;
  const float n = t - kRound;
  const float r = (x - n * kLn2Hi) - n * kLn2Lo;
  float p = 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // t's low mantissa bits hold n + 2^22 (two's complement in the low 23 bits for n < 0).
  const int32_t ni = std::bit_cast<int32_t>(t) - std::bit_cast<int32_t>(kRound);
  const float scale = std::bit_cast<float>((ni + 127) << 23);
  return p * scale;
}
FS_INLINE double exp_fast(double x) { return std::exp(x); }

// max_j x_j. fp32 through GCC vector extensions (two 8-float vectors: vmaxps in the AVX2 build):
// the compiler does not vectorise a floating-point max reduction by itself.
typedef float v8f __attribute__((vector_size(32)));

FS_INLINE float row_max(const float* x, int64_t n) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  v8f m0 = {-kInf, -kInf, -kInf, -kInf, -kInf, -kInf, -kInf, -kInf}, m1 = m0;
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    v8f a, b;
    std::memcpy(&a, x + j, sizeof a);
    std::memcpy(&b, x + j + 8, sizeof b);
    m0 = a > m0 ? a : m0;
    m1 = b > m1 ? b : m1;
  }
  m0 = m1 > m0 ? m1 : m0;
  float r = -kInf;
  for (int k = 0; k < 8; ++k) r = m0[k] > r ? m0[k] : r;
  for (; j < n; ++j) r = x[j] > r ? x[j] : r;
  return r;
}

FS_INLINE double row_max(const double* x, int64_t n) {
  double r = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < n; ++j) r = x[j] > r ? x[j] : r;
  return r;
}

template <typename F>
FS_INLINE F row_sum(const F* x, int64_t n) {
  F s[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int k = 0; k < kLanes; ++k) s[k] += x[j + k];
  F r = 0;
  for (; j < n; ++j) r += x[j];
  for (int k = 0; k < kLanes; ++k) r += s[k];
  return r;
}

// sum_j a_j * b_j
template <typename F>
FS_INLINE F row_dot(const F* a, const F* b, int64_t n) {
  F s[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int k = 0; k < kLanes; ++k) s[k] += a[j + k] * b[j + k];
  F r = 0;
  for (; j < n; ++j) r += a[j] * b[j];
  for (int k = 0; k < kLanes; ++k) r += s[k];
  return r;
}

// sum_j (x_j - mu)^2
template <typename F>
FS_INLINE F row_sq_dev(const F* x, F mu, int64_t n) {
  F s[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int k = 0; k < kLanes; ++k) {
      const F d = x[j + k] - mu;
      s[k] += d * d;
    }
  F r = 0;
  for (; j < n; ++j) r += (x[j] - mu) * (x[j] - mu);
  for (int k = 0; k < kLanes; ++k) r += s[k];
  return r;
}

// ---- row kernels -------------------------------------------------------------------------

// gelu(v) = 0.5 v (1 + tanh(u)) = v * sigmoid(2u), u = c (v + a v^3).
template <typename F>
FS_INLINE void gelu_fwd_body(const F* x, F* y, int64_t n) {
  const F c = static_cast<F>(ref::kGeluC), a = static_cast<F>(ref::kGeluA);
  for (int64_t i = 0; i < n; ++i) {
    const F v = x[i];
    const F u = c * (v + a * v * v * v);
    y[i] = v / (F(1) + exp_fast(F(-2) * u));
  }
}

// gelu'(v) = s + v * 2 s (1 - s) * c (1 + 3 a v^2), s = sigmoid(2u) = 0.5 (1 + tanh(u)).
template <typename F>
FS_INLINE void gelu_bwd_body(const F* x, const F* dy, F* dx, int64_t n) {
  const F c = static_cast<F>(ref::kGeluC), a = static_cast<F>(ref::kGeluA);
  for (int64_t i = 0; i < n; ++i) {
    const F v = x[i];
    const F u = c * (v + a * v * v * v);
    const F s = F(1) / (F(1) + exp_fast(F(-2) * u));
    const F d = s + v * F(2) * s * (F(1) - s) * c * (F(1) + F(3) * a * v * v);
    dx[i] = dy[i] * d;
  }
}

template <typename F>
FS_INLINE void residual_body(const F* a, const F* b, F* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

// Rows [r0, r1) of a (rows, cols) x.
template <typename F>
FS_INLINE void ln_fwd_body(const F* x, const F* gamma, const F* beta, F* y, F* mean, F* rstd, int64_t r0,
                           int64_t r1, int64_t cols) {
  const F inv_n = F(1) / static_cast<F>(cols);
  for (int64_t r = r0; r < r1; ++r) {
    const F* xr = x + r * cols;
    F* yr = y + r * cols;
    const F mu = row_sum(xr, cols) * inv_n;
    const F rs = F(1) / std::sqrt(row_sq_dev(xr, mu, cols) * inv_n + static_cast<F>(ref::kLayerNormEps));
    for (int64_t j = 0; j < cols; ++j) yr[j] = (xr[j] - mu) * rs * gamma[j] + beta[j];
    mean[r] = mu;
    rstd[r] = rs;
  }
}

// dx for rows [r0, r1); their dgamma, dbeta terms added to dg, db (cols, double).
template <typename F>
FS_INLINE void ln_bwd_body(const F* dy, const F* x, const F* gamma, const F* mean, const F* rstd, F* dx, double* dg,
                           double* db, int64_t r0, int64_t r1, int64_t cols) {
  const F inv_n = F(1) / static_cast<F>(cols);
  for (int64_t r = r0; r < r1; ++r) {
    const F* xr = x + r * cols;
    const F* dyr = dy + r * cols;
    F* dxr = dx + r * cols;
    const F mu = mean[r], rs = rstd[r];
    F sg[kLanes] = {}, sgx[kLanes] = {};
    int64_t j = 0;
    for (; j + kLanes <= cols; j += kLanes)
      for (int k = 0; k < kLanes; ++k) {
        const F g = dyr[j + k] * gamma[j + k];
        sg[k] += g;
        sgx[k] += g * ((xr[j + k] - mu) * rs);
      }
    F sum_g = 0, sum_gx = 0;
    for (; j < cols; ++j) {
      const F g = dyr[j] * gamma[j];
      sum_g += g;
      sum_gx += g * ((xr[j] - mu) * rs);
    }
    for (int k = 0; k < kLanes; ++k) {
      sum_g += sg[k];
      sum_gx += sgx[k];
    }
    const F m1 = sum_g * inv_n, m2 = sum_gx * inv_n;
    for (j = 0; j < cols; ++j) {
      const F xhat = (xr[j] - mu) * rs;
      dxr[j] = rs * (dyr[j] * gamma[j] - m1 - xhat * m2);
      dg[j] += static_cast<double>(dyr[j] * xhat);
      db[j] += static_cast<double>(dyr[j]);
    }
  }
}

// Rows [r0, r1) of (batch * n) rows of n; row rr is row i = rr % n of its slice.
template <typename F>
FS_INLINE void softmax_fwd_body(const F* scores, F* probs, int64_t r0, int64_t r1, int64_t n) {
  for (int64_t rr = r0; rr < r1; ++rr) {
    const int64_t m = rr % n + 1;  // unmasked columns 0 .. i
    const F* s = scores + rr * n;
    F* p = probs + rr * n;
    const F mx = row_max(s, m);
    for (int64_t j = 0; j < m; ++j) p[j] = exp_fast(s[j] - mx);
    const F inv = F(1) / row_sum(p, m);
    for (int64_t j = 0; j < m; ++j) p[j] *= inv;
    std::memset(p + m, 0, static_cast<size_t>(n - m) * sizeof(F));  // the masked part reads 0
  }
}

template <typename F>
FS_INLINE void softmax_bwd_body(const F* probs, const F* dprobs, F* dscores, int64_t r0, int64_t r1, int64_t n) {
  for (int64_t rr = r0; rr < r1; ++rr) {
    const int64_t m = rr % n + 1;
    const F* p = probs + rr * n;
    const F* dp = dprobs + rr * n;
    F* ds = dscores + rr * n;
    const F dot = row_dot(p, dp, m);
    for (int64_t j = 0; j < m; ++j) ds[j] = p[j] * (dp[j] - dot);
    std::memset(ds + m, 0, static_cast<size_t>(n - m) * sizeof(F));  // masked scores get no gradient
  }
}

template <typename F>
FS_INLINE void bias_add_body(F* x, const F* bias, int64_t r0, int64_t r1, int64_t cols) {
  for (int64_t r = r0; r < r1; ++r) {
    F* xr = x + r * cols;
    for (int64_t j = 0; j < cols; ++j) xr[j] += bias[j];
  }
}

// acc_j += sum over rows [r0, r1) of dy_rj, in double.
template <typename F>
FS_INLINE void col_sum_body(const F* dy, double* acc, int64_t r0, int64_t r1, int64_t cols) {
  for (int64_t r = r0; r < r1; ++r) {
    const F* d = dy + r * cols;
    for (int64_t j = 0; j < cols; ++j) acc[j] += static_cast<double>(d[j]);
  }
}

// loss_r = log sum_j exp(z_rj - max) + max - z_rt; `scratch` holds vocab values.
template <typename F>
FS_INLINE void ce_fwd_body(const F* logits, const F* targets, F* loss, F* scratch, int64_t r0, int64_t r1,
                           int64_t vocab) {
  for (int64_t r = r0; r < r1; ++r) {
    const F* z = logits + r * vocab;
    const F mx = row_max(z, vocab);
    for (int64_t j = 0; j < vocab; ++j) scratch[j] = exp_fast(z[j] - mx);
    const auto t = static_cast<int64_t>(targets[r]);
    loss[r] = std::log(row_sum(scratch, vocab)) + mx - z[t];
  }
}

// dz_rj = (softmax(z_r)_j - [j == t_r]) / mean_over
template <typename F>
FS_INLINE void ce_bwd_body(const F* logits, const F* targets, F* dlogits, int64_t r0, int64_t r1, int64_t vocab,
                           F inv_rows) {
  for (int64_t r = r0; r < r1; ++r) {
    const F* z = logits + r * vocab;
    F* dz = dlogits + r * vocab;
    const F mx = row_max(z, vocab);
    for (int64_t j = 0; j < vocab; ++j) dz[j] = exp_fast(z[j] - mx);
    const F k = inv_rows / row_sum(dz, vocab);
    for (int64_t j = 0; j < vocab; ++j) dz[j] *= k;
    dz[static_cast<int64_t>(targets[r])] -= inv_rows;
  }
}

// Rows [r0, r1) of a (rows, cols) x: y = x * rstd * gamma, rstd = 1 / sqrt(mean_j x^2 + eps).
template <typename F>
FS_INLINE void rms_fwd_body(const F* x, const F* gamma, F* y, F* rstd, int64_t r0, int64_t r1, int64_t cols) {
  const F inv_n = F(1) / static_cast<F>(cols);
  for (int64_t r = r0; r < r1; ++r) {
    const F* xr = x + r * cols;
    F* yr = y + r * cols;
    const F rs = F(1) / std::sqrt(row_dot(xr, xr, cols) * inv_n + static_cast<F>(ref::kRmsNormEps));
    for (int64_t j = 0; j < cols; ++j) yr[j] = xr[j] * rs * gamma[j];
    rstd[r] = rs;
  }
}

// dx for rows [r0, r1); their dgamma terms added to dg (cols, double).
template <typename F>
FS_INLINE void rms_bwd_body(const F* dy, const F* x, const F* gamma, const F* rstd, F* dx, double* dg, int64_t r0,
                            int64_t r1, int64_t cols) {
  const F inv_n = F(1) / static_cast<F>(cols);
  for (int64_t r = r0; r < r1; ++r) {
    const F* xr = x + r * cols;
    const F* dyr = dy + r * cols;
    F* dxr = dx + r * cols;
    const F rs = rstd[r];
    F s[kLanes] = {};
    int64_t j = 0;
    for (; j + kLanes <= cols; j += kLanes)
      for (int k = 0; k < kLanes; ++k) s[k] += dyr[j + k] * gamma[j + k] * (xr[j + k] * rs);
    F sum_gx = 0;
    for (; j < cols; ++j) sum_gx += dyr[j] * gamma[j] * (xr[j] * rs);
    for (int k = 0; k < kLanes; ++k) sum_gx += s[k];
    const F m = sum_gx * inv_n;
    for (j = 0; j < cols; ++j) {
      const F xhat = xr[j] * rs;
      dxr[j] = rs * (dyr[j] * gamma[j] - xhat * m);
      dg[j] += static_cast<double>(dyr[j] * xhat);
    }
  }
}

// cos and sin of the angles pos * inv_freq_j, j < half, into cs, sn as F (sn negated for the
// backward). In double and vectorised: a = k pi/2 + r, |r| <= pi/4, k = round(a 2/pi) by the
// 1.5 * 2^52 trick (its low bits give the quadrant k mod 4); r by three-part Cody-Waite (each
// part of pi/2 has 33 bits, so k * part is exact for k < 2^20); sin r, cos r by fdlibm's
// kernel polynomials (__kernel_sin, __kernel_cos: error below 2^-58 on |r| <= pi/4). Results
// agree with std::sin, std::cos to about 1e-16 absolute for angles below kFastTrigMax; a row
// whose angles reach it (positions past 2^19, or theta < 1) calls std::cos, std::sin.
constexpr double kFastTrigMax = 524288.0;  // 2^19: k < 2^19 * 2/pi < 2^20

template <typename F>
FS_INLINE void rope_cos_sin(int64_t pos, const double* inv_freq, F* cs, F* sn, int64_t half, bool backward) {
  const auto p = static_cast<double>(pos);
  if (p * std::max(inv_freq[0], inv_freq[half - 1]) >= kFastTrigMax) {
    for (int64_t j = 0; j < half; ++j) {
      const double ang = p * inv_freq[j];
      cs[j] = static_cast<F>(std::cos(ang));
      sn[j] = static_cast<F>(backward ? -std::sin(ang) : std::sin(ang));
    }
    return;
  }
  constexpr double kTwoOverPi = 6.36619772367581382433e-01, kRound = 6755399441055744.0;  // 1.5 * 2^52
  constexpr double kPio2_1 = 1.57079632673412561417e+00, kPio2_2 = 6.07710050630396597660e-11,
                   kPio2_3 = 2.02226624871116645580e-21;
  constexpr double kS1 = -1.66666666666666324348e-01, kS2 = 8.33333333332248946124e-03,
                   kS3 = -1.98412698298579493134e-04, kS4 = 2.75573137070700676789e-06,
                   kS5 = -2.50507602534068634195e-08, kS6 = 1.58969099521155010221e-10;
  constexpr double kC1 = 4.16666666666666019037e-02, kC2 = -1.38888888888741095749e-03,
                   kC3 = 2.48015872894767294178e-05, kC4 = -2.75573143513906633035e-07,
                   kC5 = 2.08757232129817482790e-09, kC6 = -1.13596475577881948265e-11;
  const double sign = backward ? -1.0 : 1.0;
  for (int64_t j = 0; j < half; ++j) {
    const double a = p * inv_freq[j];  // the reference's angle, bit for bit
    const double t = a * kTwoOverPi + kRound;
    const double k = t - kRound;
    const int64_t q = std::bit_cast<int64_t>(t) & 3;  // k mod 4
    const double r = ((a - k * kPio2_1) - k * kPio2_2) - k * kPio2_3;
    const double z = r * r;
    const double sr = r + r * z * (kS1 + z * (kS2 + z * (kS3 + z * (kS4 + z * (kS5 + z * kS6)))));
    const double cr = 1.0 - 0.5 * z + z * z * (kC1 + z * (kC2 + z * (kC3 + z * (kC4 + z * (kC5 + z * kC6)))));
    // a = k pi/2 + r: quadrant q turns (cos r, sin r) by q quarter turns.
    const double c0 = (q & 1) ? sr : cr, s0 = (q & 1) ? cr : sr;
    const double c = (q == 1 || q == 2) ? -c0 : c0, s = (q & 2) ? -s0 : s0;
    cs[j] = static_cast<F>(c);
    sn[j] = static_cast<F>(sign * s);
  }
}

// RoPE on rows [r0, r1) of a (rows, cols) qkv tensor, in place. Row t is at position t / batch;
// the consecutive rows of one position (its batch members) share one cos, sin table of d_head/2
// values (rope_cos_sin, from inv_freq (d_head/2): theta^(-2j/d_head)), stored as F in cs, sn
// (scratch, d_head/2 each). The backward rotates by the negative angle.
template <typename F>
FS_INLINE void rope_body(F* x, const double* inv_freq, F* cs, F* sn, int64_t r0, int64_t r1, int64_t cols,
                         const RopeSpec& r, bool backward) {
  const int64_t batch = r.batch, half = r.d_head / 2;
  int64_t at = -1;  // the position cs, sn hold
  for (int64_t t = r0; t < r1; ++t) {
    const int64_t pos = t / batch;
    if (pos != at) {
      rope_cos_sin(pos, inv_freq, cs, sn, half, backward);
      at = pos;
    }
    F* row = x + t * cols;
    for (int64_t grp = 0; grp < r.kv_heads; ++grp)
      for (int64_t hd = 0; hd < r.rotated_heads(); ++hd) {  // the group's queries and its K; V stays
        F* __restrict lo = row + r.head_at(grp, hd);  // x_j,          j < d_head/2
        F* __restrict hi = lo + half;                                 // x_{j+d_head/2}
        for (int64_t j = 0; j < half; ++j) {
          const F a = lo[j], b = hi[j];
          lo[j] = a * cs[j] - b * sn[j];
          hi[j] = b * cs[j] + a * sn[j];
        }
      }
  }
}

// h = silu(g) * u = g * sigmoid(g) * u.
template <typename F>
FS_INLINE void swiglu_fwd_body(const F* gate, const F* up, F* h, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const F g = gate[i];
    h[i] = g / (F(1) + exp_fast(-g)) * up[i];
  }
}

// du = dh * silu(g);  dg = dh * u * s (1 + g (1 - s)), s = sigmoid(g).
template <typename F>
FS_INLINE void swiglu_bwd_body(const F* gate, const F* up, const F* dh, F* dgate, F* dup, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const F g = gate[i];
    const F s = F(1) / (F(1) + exp_fast(-g));
    dup[i] = dh[i] * g * s;
    dgate[i] = dh[i] * up[i] * s * (F(1) + g * (F(1) - s));
  }
}

template <typename F>
FS_INLINE void relu_fwd_body(const F* x, F* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] > F(0) ? x[i] : F(0);
}

template <typename F>
FS_INLINE void relu_bwd_body(const F* x, const F* dy, F* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] = x[i] > F(0) ? dy[i] : F(0);
}

// y_i = e4m3(x_i * scale) / scale over n contiguous elements, bit for bit what
// fp8::e4m3_quantize(float(x_i), scale) / scale gives, written branch-free on the float's bits
// (v = float(x_i) * scale, mag = |v|'s bits) so that it vectorises:
//  - mag >= 2^-6 (normal in E4M3): round the 20 low mantissa bits off to nearest even, the
//    carry moving into the exponent as the code's does (mag + 0x7FFFF + kept lsb, then mask);
//  - mag < 2^-6 (subnormal or zero in E4M3): |v| rounded to a multiple of 2^-9, nearest even,
//    by float addition: (|v| + 2^14) - 2^14 (the sum lies in [2^14, 2^15), whose ulp is 2^-9);
//  - |v| >= 448 or infinite: 448; the sign put back; NaN: the positive quiet NaN.
// *amax becomes the larger of itself and the bits of max_i |float(x_i)| over the non-NaN
// elements: for non-negative floats the bits order as the values, so the max is an integer one,
// which vectorises (std::max(m, NaN) = m in the scalar loop: NaN is skipped there too).
template <typename F>
FS_INLINE void cast_fp8_body(const F* x, F* y, int64_t n, float scale, int32_t* amax) {
  int32_t m[kLanes] = {};
  auto one = [scale](F xv, int32_t& mx) -> F {
    const float v = static_cast<float>(xv);
    const uint32_t vm = std::bit_cast<uint32_t>(v) & 0x7FFFFFFFu;
    mx = std::max(mx, vm > 0x7F800000u ? 0 : static_cast<int32_t>(vm));
    const uint32_t bits = std::bit_cast<uint32_t>(v * scale);
    const uint32_t sign = bits & 0x80000000u, mag = bits & 0x7FFFFFFFu;
    const uint32_t normal = (mag + 0x7FFFFu + ((mag >> 20) & 1u)) & 0xFFF00000u;
    const float sub = (std::bit_cast<float>(mag) + 16384.0f) - 16384.0f;
    uint32_t q = mag < 0x3C800000u ? std::bit_cast<uint32_t>(sub) : normal;  // 0x3C800000: 2^-6
    q = mag >= 0x43E00000u ? 0x43E00000u : q;                                // 448
    q |= sign;
    q = mag > 0x7F800000u ? 0x7FC00000u : q;  // NaN
    return static_cast<F>(std::bit_cast<float>(q) / scale);
  };
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) y[i + k] = one(x[i + k], m[k]);
  int32_t r = *amax;
  for (; i < n; ++i) y[i] = one(x[i], r);
  for (int k = 0; k < kLanes; ++k) r = std::max(r, m[k]);
  *amax = r;
}

// The fp32 builds of each body: AVX2 + FMA, and the baseline ISA.
#define FS_KERNEL(name, params, args)                       \
  FS_AVX2 void name##_avx2 params { name##_body<float> args; } \
  void name##_base params { name##_body<float> args; }

FS_KERNEL(gelu_fwd, (const float* x, float* y, int64_t n), (x, y, n))
FS_KERNEL(gelu_bwd, (const float* x, const float* dy, float* dx, int64_t n), (x, dy, dx, n))
FS_KERNEL(residual, (const float* a, const float* b, float* o, int64_t n), (a, b, o, n))
FS_KERNEL(ln_fwd,
          (const float* x, const float* g, const float* b, float* y, float* mu, float* rs, int64_t r0, int64_t r1,
           int64_t c),
          (x, g, b, y, mu, rs, r0, r1, c))
FS_KERNEL(ln_bwd,
          (const float* dy, const float* x, const float* g, const float* mu, const float* rs, float* dx, double* dg,
           double* db, int64_t r0, int64_t r1, int64_t c),
          (dy, x, g, mu, rs, dx, dg, db, r0, r1, c))
FS_KERNEL(softmax_fwd, (const float* s, float* p, int64_t r0, int64_t r1, int64_t n), (s, p, r0, r1, n))
FS_KERNEL(softmax_bwd, (const float* p, const float* dp, float* ds, int64_t r0, int64_t r1, int64_t n),
          (p, dp, ds, r0, r1, n))
FS_KERNEL(bias_add, (float* x, const float* b, int64_t r0, int64_t r1, int64_t c), (x, b, r0, r1, c))
FS_KERNEL(col_sum, (const float* dy, double* acc, int64_t r0, int64_t r1, int64_t c), (dy, acc, r0, r1, c))
FS_KERNEL(ce_fwd, (const float* z, const float* t, float* l, float* s, int64_t r0, int64_t r1, int64_t v),
          (z, t, l, s, r0, r1, v))
FS_KERNEL(ce_bwd, (const float* z, const float* t, float* dz, int64_t r0, int64_t r1, int64_t v, float inv),
          (z, t, dz, r0, r1, v, inv))
FS_KERNEL(rms_fwd, (const float* x, const float* g, float* y, float* rs, int64_t r0, int64_t r1, int64_t c),
          (x, g, y, rs, r0, r1, c))
FS_KERNEL(rms_bwd,
          (const float* dy, const float* x, const float* g, const float* rs, float* dx, double* dg, int64_t r0,
           int64_t r1, int64_t c),
          (dy, x, g, rs, dx, dg, r0, r1, c))
FS_KERNEL(rope,
          (float* x, const double* f, float* cs, float* sn, int64_t r0, int64_t r1, int64_t c, const RopeSpec& r,
           bool bwd),
          (x, f, cs, sn, r0, r1, c, r, bwd))
FS_KERNEL(swiglu_fwd, (const float* g, const float* u, float* h, int64_t n), (g, u, h, n))
FS_KERNEL(swiglu_bwd, (const float* g, const float* u, const float* dh, float* dg, float* du, int64_t n),
          (g, u, dh, dg, du, n))
FS_KERNEL(relu_fwd, (const float* x, float* y, int64_t n), (x, y, n))
FS_KERNEL(relu_bwd, (const float* x, const float* dy, float* dx, int64_t n), (x, dy, dx, n))
FS_KERNEL(cast_fp8, (const float* x, float* y, int64_t n, float s, int32_t* m), (x, y, n, s, m))
#undef FS_KERNEL

// name's fp32 build for this CPU, or its fp64 body.
#define FS_CALL(F, name, ...)                          \
  do {                                                 \
    if constexpr (std::is_same_v<F, float>) {          \
      if (use_avx2())                                  \
        name##_avx2(__VA_ARGS__);                      \
      else                                             \
        name##_base(__VA_ARGS__);                      \
    } else {                                           \
      name##_body<F>(__VA_ARGS__);                     \
    }                                                  \
  } while (0)

// Per-thread column sums (threads x cols, double) added into out (cols) as F.
template <typename F>
void reduce_columns(const std::vector<double>& partial, int threads, int64_t cols, F* out) {
  for (int64_t j = 0; j < cols; ++j) {
    double s = 0;
    for (int t = 0; t < threads; ++t) s += partial[static_cast<size_t>(t * cols + j)];
    out[j] = static_cast<F>(s);
  }
}

// Threads for a row op: at most one per row_grain(cols) rows.
int row_threads(int64_t rows, int64_t cols) {
  return static_cast<int>(std::clamp<int64_t>(rows / row_grain(cols), 1, cpu_threads()));
}

}  // namespace

const char* fast_ops_isa() { return use_avx2() ? "avx2+fma" : "baseline x86-64 (SSE2)"; }

template <typename F>
double layernorm_forward(const F* x, const F* gamma, const F* beta, F* y, F* mean, F* rstd, int64_t rows,
                         int64_t cols) {
  parallel_for(
      rows, [&](int64_t r0, int64_t r1) { FS_CALL(F, ln_fwd, x, gamma, beta, y, mean, rstd, r0, r1, cols); },
      row_grain(cols));
  return fc::kLayerNormFwd * static_cast<double>(rows) * static_cast<double>(cols);
}

template <typename F>
double layernorm_backward(const F* dy, const F* x, const F* gamma, const F* mean, const F* rstd, F* dx, F* dgamma,
                          F* dbeta, int64_t rows, int64_t cols) {
  const int threads = row_threads(rows, cols);
  std::vector<double> dg(static_cast<size_t>(threads * cols), 0.0), db(dg.size(), 0.0);
  parallel_threads(threads, [&](int t) {
    const int64_t r0 = rows * t / threads, r1 = rows * (t + 1) / threads;
    double* pg = dg.data() + t * cols;
    double* pb = db.data() + t * cols;
    FS_CALL(F, ln_bwd, dy, x, gamma, mean, rstd, dx, pg, pb, r0, r1, cols);
  });
  reduce_columns(dg, threads, cols, dgamma);
  reduce_columns(db, threads, cols, dbeta);
  return fc::kLayerNormBwd * static_cast<double>(rows) * static_cast<double>(cols);
}

// Row i costs i + 1 columns of arithmetic plus n - i - 1 of zero fill (a quarter as dear).
template <typename F>
double softmax_causal_forward(const F* scores, F* probs, int64_t batch, int64_t n) {
  parallel_for_weighted(
      batch * n, [&](int64_t rr) { return static_cast<double>(rr % n + 1) + 0.25 * static_cast<double>(n - rr % n); },
      [&](int64_t r0, int64_t r1) { FS_CALL(F, softmax_fwd, scores, probs, r0, r1, n); });
  return fc::kSoftmaxFwd * static_cast<double>(batch) * static_cast<double>(n) * static_cast<double>(n + 1) / 2;
}

template <typename F>
double softmax_causal_backward(const F* probs, const F* dprobs, F* dscores, int64_t batch, int64_t n) {
  parallel_for_weighted(
      batch * n, [&](int64_t rr) { return static_cast<double>(rr % n + 1) + 0.25 * static_cast<double>(n - rr % n); },
      [&](int64_t r0, int64_t r1) { FS_CALL(F, softmax_bwd, probs, dprobs, dscores, r0, r1, n); });
  return fc::kSoftmaxBwd * static_cast<double>(batch) * static_cast<double>(n) * static_cast<double>(n + 1) / 2;
}

template <typename F>
double gelu_forward(const F* x, F* y, int64_t n) {
  parallel_for(n, [&](int64_t b, int64_t e) { FS_CALL(F, gelu_fwd, x + b, y + b, e - b); }, kGrainElems);
  return fc::kGeluFwd * static_cast<double>(n);
}

template <typename F>
double gelu_backward(const F* x, const F* dy, F* dx, int64_t n) {
  parallel_for(n, [&](int64_t b, int64_t e) { FS_CALL(F, gelu_bwd, x + b, dy + b, dx + b, e - b); }, kGrainElems);
  return fc::kGeluBwd * static_cast<double>(n);
}

template <typename F>
double bias_add(F* x, const F* bias, int64_t rows, int64_t cols) {
  parallel_for(rows, [&](int64_t r0, int64_t r1) { FS_CALL(F, bias_add, x, bias, r0, r1, cols); }, row_grain(cols));
  return fc::kBiasAdd * static_cast<double>(rows) * static_cast<double>(cols);
}

template <typename F>
double bias_grad(const F* dy, F* dbias, int64_t rows, int64_t cols) {
  const int threads = row_threads(rows, cols);
  std::vector<double> acc(static_cast<size_t>(threads * cols), 0.0);
  parallel_threads(threads, [&](int t) {
    FS_CALL(F, col_sum, dy, acc.data() + t * cols, rows * t / threads, rows * (t + 1) / threads, cols);
  });
  reduce_columns(acc, threads, cols, dbias);
  return fc::kBiasGrad * static_cast<double>(rows) * static_cast<double>(cols);
}

template <typename F>
double residual_add(const F* a, const F* b, F* out, int64_t n) {
  parallel_for(n, [&](int64_t i0, int64_t i1) { FS_CALL(F, residual, a + i0, b + i0, out + i0, i1 - i0); },
               kGrainElems);
  return fc::kResidualAdd * static_cast<double>(n);
}

template <typename F>
double cross_entropy_forward(const F* logits, const F* targets, F* loss, int64_t rows, int64_t vocab) {
  parallel_for(
      rows,
      [&](int64_t r0, int64_t r1) {
        std::vector<F> scratch(static_cast<size_t>(vocab));
        FS_CALL(F, ce_fwd, logits, targets, loss, scratch.data(), r0, r1, vocab);
      },
      row_grain(vocab));
  return fc::kCrossEntropyFwd * static_cast<double>(rows) * static_cast<double>(vocab);
}

template <typename F>
double cross_entropy_backward(const F* logits, const F* targets, F* dlogits, int64_t rows, int64_t vocab) {
  const F inv_rows = static_cast<F>(1.0 / static_cast<double>(rows));
  parallel_for(
      rows, [&](int64_t r0, int64_t r1) { FS_CALL(F, ce_bwd, logits, targets, dlogits, r0, r1, vocab, inv_rows); },
      row_grain(vocab));
  return fc::kCrossEntropyBwd * static_cast<double>(rows) * static_cast<double>(vocab);
}

template <typename F>
double rmsnorm_forward(const F* x, const F* gamma, F* y, F* rstd, int64_t rows, int64_t cols) {
  parallel_for(
      rows, [&](int64_t r0, int64_t r1) { FS_CALL(F, rms_fwd, x, gamma, y, rstd, r0, r1, cols); }, row_grain(cols));
  return fc::kRmsNormFwd * static_cast<double>(rows) * static_cast<double>(cols);
}

template <typename F>
double rmsnorm_backward(const F* dy, const F* x, const F* gamma, const F* rstd, F* dx, F* dgamma, int64_t rows,
                        int64_t cols) {
  const int threads = row_threads(rows, cols);
  std::vector<double> dg(static_cast<size_t>(threads * cols), 0.0);
  parallel_threads(threads, [&](int t) {
    FS_CALL(F, rms_bwd, dy, x, gamma, rstd, dx, dg.data() + t * cols, rows * t / threads, rows * (t + 1) / threads,
            cols);
  });
  reduce_columns(dg, threads, cols, dgamma);
  return fc::kRmsNormBwd * static_cast<double>(rows) * static_cast<double>(cols);
}

template <typename F>
double rope(F* x, int64_t rows, int64_t cols, const RopeSpec& r, bool backward) {
  const int64_t half = r.d_head / 2;
  const double flops =
      fc::kRope * static_cast<double>(rows) * static_cast<double>(r.kv_heads * r.rotated_heads() * r.d_head);
  if (half == 0) return flops;
  std::vector<double> inv_freq(static_cast<size_t>(half));  // theta^(-2j/d_head), as ref::rope_angle has it
  for (int64_t j = 0; j < half; ++j) {
    const double e = -2.0 * static_cast<double>(j) / static_cast<double>(r.d_head);
    inv_freq[static_cast<size_t>(j)] = std::pow(r.theta, e);
  }
  parallel_for(
      rows,
      [&](int64_t r0, int64_t r1) {
        std::vector<F> cs(static_cast<size_t>(half)), sn(cs.size());
        FS_CALL(F, rope, x, inv_freq.data(), cs.data(), sn.data(), r0, r1, cols, r, backward);
      },
      row_grain(cols));
  return flops;
}

template <typename F>
double swiglu_forward(const F* gate, const F* up, F* h, int64_t n) {
  parallel_for(n, [&](int64_t b, int64_t e) { FS_CALL(F, swiglu_fwd, gate + b, up + b, h + b, e - b); }, kGrainElems);
  return fc::kSwigluFwd * static_cast<double>(n);
}

template <typename F>
double swiglu_backward(const F* gate, const F* up, const F* dh, F* dgate, F* dup, int64_t n) {
  parallel_for(
      n, [&](int64_t b, int64_t e) { FS_CALL(F, swiglu_bwd, gate + b, up + b, dh + b, dgate + b, dup + b, e - b); },
      kGrainElems);
  return fc::kSwigluBwd * static_cast<double>(n);
}

template <typename F>
double relu_forward(const F* x, F* y, int64_t n) {
  parallel_for(n, [&](int64_t b, int64_t e) { FS_CALL(F, relu_fwd, x + b, y + b, e - b); }, kGrainElems);
  return fc::kReluFwd * static_cast<double>(n);
}

template <typename F>
double relu_backward(const F* x, const F* dy, F* dx, int64_t n) {
  parallel_for(n, [&](int64_t b, int64_t e) { FS_CALL(F, relu_bwd, x + b, dy + b, dx + b, e - b); }, kGrainElems);
  return fc::kReluBwd * static_cast<double>(n);
}

// Rows split across threads, each with its own amax. Transposed, a thread quantises tiles of
// kTileRows x kTileCols of its rows into a buffer and writes each tile column as kTileRows
// contiguous elements of y (cols, rows), instead of one strided store per element.
template <typename F>
float cast_fp8(const F* x, F* y, int64_t rows, int64_t cols, bool transpose, float scale) {
  constexpr int64_t kTileRows = 16, kTileCols = 64;
  const int threads = row_threads(rows, cols);
  std::vector<int32_t> amax(static_cast<size_t>(threads), 0);  // bits of the largest |x|, per thread
  parallel_threads(threads, [&](int t) {
    const int64_t r0 = rows * t / threads, r1 = rows * (t + 1) / threads;
    int32_t* m = &amax[static_cast<size_t>(t)];
    if (!transpose) {
      FS_CALL(F, cast_fp8, x + r0 * cols, y + r0 * cols, (r1 - r0) * cols, scale, m);
      return;
    }
    F tile[kTileRows * kTileCols];  // (rows of the tile, cols of the tile)
    for (int64_t rb = r0; rb < r1; rb += kTileRows) {
      const int64_t nr = std::min(kTileRows, r1 - rb);
      for (int64_t cb = 0; cb < cols; cb += kTileCols) {
        const int64_t nc = std::min(kTileCols, cols - cb);
        for (int64_t i = 0; i < nr; ++i)
          FS_CALL(F, cast_fp8, x + (rb + i) * cols + cb, tile + i * kTileCols, nc, scale, m);
        for (int64_t c = 0; c < nc; ++c)
          for (int64_t i = 0; i < nr; ++i) y[(cb + c) * rows + rb + i] = tile[i * kTileCols + c];
      }
    }
  });
  return std::bit_cast<float>(*std::max_element(amax.begin(), amax.end()));
}

// MLA's assembly and its backward: copies (and the k_rope sum), the reference's row code
// threaded over rows.
template <typename F>
double mla_qkv_forward(const F* q, const F* kv_b, const F* k_rope, F* qkv, int64_t rows, const MlaSpec& m) {
  parallel_for(
      rows,
      [&](int64_t r0, int64_t r1) {
        ref::mla_qkv_forward(q + r0 * m.q_width(), kv_b + r0 * m.kv_b_width(), k_rope + r0 * m.rope,
                             qkv + r0 * m.qkv_width(), r1 - r0, m);
      },
      row_grain(m.qkv_width()));
  return 0;
}

template <typename F>
double mla_qkv_backward(const F* dqkv, F* dq, F* dkv_b, F* dk_rope, int64_t rows, const MlaSpec& m) {
  parallel_for(
      rows,
      [&](int64_t r0, int64_t r1) {
        ref::mla_qkv_backward(dqkv + r0 * m.qkv_width(), dq + r0 * m.q_width(), dkv_b + r0 * m.kv_b_width(),
                              dk_rope + r0 * m.rope, r1 - r0, m);
      },
      row_grain(m.qkv_width()));
  return fc::kMlaRopeSum * static_cast<double>(rows) * static_cast<double>(m.rope * (m.heads - 1));
}

#define FS_INSTANTIATE(F)                                                                                              \
  template double layernorm_forward<F>(const F*, const F*, const F*, F*, F*, F*, int64_t, int64_t);                   \
  template double layernorm_backward<F>(const F*, const F*, const F*, const F*, const F*, F*, F*, F*, int64_t,        \
                                        int64_t);                                                                      \
  template double softmax_causal_forward<F>(const F*, F*, int64_t, int64_t);                                           \
  template double softmax_causal_backward<F>(const F*, const F*, F*, int64_t, int64_t);                                \
  template double gelu_forward<F>(const F*, F*, int64_t);                                                              \
  template double gelu_backward<F>(const F*, const F*, F*, int64_t);                                                   \
  template double bias_add<F>(F*, const F*, int64_t, int64_t);                                                         \
  template double bias_grad<F>(const F*, F*, int64_t, int64_t);                                                        \
  template double residual_add<F>(const F*, const F*, F*, int64_t);                                                    \
  template double cross_entropy_forward<F>(const F*, const F*, F*, int64_t, int64_t);                                  \
  template double cross_entropy_backward<F>(const F*, const F*, F*, int64_t, int64_t);                                 \
  template float cast_fp8<F>(const F*, F*, int64_t, int64_t, bool, float);                                            \
  template double rmsnorm_forward<F>(const F*, const F*, F*, F*, int64_t, int64_t);                                    \
  template double rmsnorm_backward<F>(const F*, const F*, const F*, const F*, F*, F*, int64_t, int64_t);               \
  template double rope<F>(F*, int64_t, int64_t, const RopeSpec&, bool);                                                \
  template double swiglu_forward<F>(const F*, const F*, F*, int64_t);                                                  \
  template double swiglu_backward<F>(const F*, const F*, const F*, F*, F*, int64_t);                                   \
  template double relu_forward<F>(const F*, F*, int64_t);                                                              \
  template double relu_backward<F>(const F*, const F*, F*, int64_t);                                                 \
  template double mla_qkv_forward<F>(const F*, const F*, const F*, F*, int64_t, const MlaSpec&);                       \
  template double mla_qkv_backward<F>(const F*, F*, F*, F*, int64_t, const MlaSpec&);
FS_INSTANTIATE(float)
FS_INSTANTIATE(double)
#undef FS_INSTANTIATE

}  // namespace flopscope::cpu
