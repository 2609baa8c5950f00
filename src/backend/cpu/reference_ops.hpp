// Reference implementations of every non-GEMM op of the layer, in plain C++.
//
// These are the numerical reference the GPU kernels are tested against: one clear loop nest
// per op, no tricks. All tensors are row-major; `rows` is the number of tokens T = b * s
// (or, for attention, rows x cols per (batch, head) slice). Sums accumulate in double.
// Each function returns the FLOPs it executed, by the conventions in graph.hpp
// (flop_convention), counted from the elements it actually processed.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "graph/graph.hpp"
#include "util/fp8.hpp"

namespace flopscope::ref {

namespace fc = flop_convention;
inline constexpr double kLayerNormEps = 1e-5;

// layernorm forward, per row r of x (rows, cols):
//   mean_r = sum_j x_rj / n;  var_r = sum_j (x_rj - mean_r)^2 / n;  rstd_r = 1 / sqrt(var_r + eps)
//   y_rj = (x_rj - mean_r) * rstd_r * gamma_j + beta_j
// x, y: (rows, cols); gamma, beta: (cols); mean, rstd: (rows), saved for backward.
template <typename F>
double layernorm_forward(const F* x, const F* gamma, const F* beta, F* y, F* mean, F* rstd, int64_t rows,
                         int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    const F* xr = x + r * cols;
    double sum = 0;
    for (int64_t j = 0; j < cols; ++j) sum += xr[j];
    const double mu = sum / static_cast<double>(cols);
    double sq = 0;
    for (int64_t j = 0; j < cols; ++j) sq += (xr[j] - mu) * (xr[j] - mu);
    const double rs = 1.0 / std::sqrt(sq / static_cast<double>(cols) + kLayerNormEps);
    for (int64_t j = 0; j < cols; ++j)
      y[r * cols + j] = static_cast<F>((xr[j] - mu) * rs * gamma[j] + beta[j]);
    mean[r] = static_cast<F>(mu);
    rstd[r] = static_cast<F>(rs);
  }
  return fc::kLayerNormFwd * static_cast<double>(rows) * static_cast<double>(cols);
}

// layernorm backward, with xhat = (x - mean) * rstd and g = dy * gamma:
//   dx_rj = rstd_r * (g_rj - mean_j(g_r) - xhat_rj * mean_j(g_r * xhat_r))
//   dgamma_j = sum_r dy_rj * xhat_rj;  dbeta_j = sum_r dy_rj   (overwritten, not accumulated)
template <typename F>
double layernorm_backward(const F* dy, const F* x, const F* gamma, const F* mean, const F* rstd, F* dx, F* dgamma,
                          F* dbeta, int64_t rows, int64_t cols) {
  std::vector<double> dg(static_cast<size_t>(cols), 0.0), db(static_cast<size_t>(cols), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    const F* xr = x + r * cols;
    const F* dyr = dy + r * cols;
    const double mu = mean[r], rs = rstd[r];
    double sum_g = 0, sum_gx = 0;
    for (int64_t j = 0; j < cols; ++j) {
      const double xhat = (xr[j] - mu) * rs;
      const double g = static_cast<double>(dyr[j]) * gamma[j];
      sum_g += g;
      sum_gx += g * xhat;
      dg[static_cast<size_t>(j)] += dyr[j] * xhat;
      db[static_cast<size_t>(j)] += dyr[j];
    }
    const double m1 = sum_g / static_cast<double>(cols), m2 = sum_gx / static_cast<double>(cols);
    for (int64_t j = 0; j < cols; ++j) {
      const double xhat = (xr[j] - mu) * rs;
      const double g = static_cast<double>(dyr[j]) * gamma[j];
      dx[r * cols + j] = static_cast<F>(rs * (g - m1 - xhat * m2));
    }
  }
  for (int64_t j = 0; j < cols; ++j) {
    dgamma[j] = static_cast<F>(dg[static_cast<size_t>(j)]);
    dbeta[j] = static_cast<F>(db[static_cast<size_t>(j)]);
  }
  return fc::kLayerNormBwd * static_cast<double>(rows) * static_cast<double>(cols);
}

// Causal softmax over each row i of each (batch) slice of an (n, n) score matrix, already
// scaled by 1/sqrt(d_head) in the scores GEMM. Row i sees columns j <= i:
//   p_ij = exp(s_ij - max_{k<=i} s_ik) / sum_{k<=i} exp(s_ik - max),  p_ij = 0 for j > i.
// scores, probs: (batch, n, n). Counts only unmasked elements.
template <typename F>
void softmax_causal_row_forward(const F* s, F* p, int64_t i, int64_t n) {
  F mx = s[0];
  for (int64_t j = 1; j <= i; ++j) mx = std::max(mx, s[j]);
  double sum = 0;
  for (int64_t j = 0; j <= i; ++j) {
    p[j] = std::exp(s[j] - mx);  // exp in F: exact enough for a reference in F
    sum += p[j];
  }
  const F inv = static_cast<F>(1.0 / sum);
  for (int64_t j = 0; j <= i; ++j) p[j] *= inv;
  for (int64_t j = i + 1; j < n; ++j) p[j] = F(0);
}

template <typename F>
double softmax_causal_forward(const F* scores, F* probs, int64_t batch, int64_t n) {
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < n; ++i) softmax_causal_row_forward(scores + (b * n + i) * n, probs + (b * n + i) * n, i, n);
  return fc::kSoftmaxFwd * static_cast<double>(batch) * static_cast<double>(n) * static_cast<double>(n + 1) / 2;
}

// Softmax backward: ds_ij = p_ij * (dp_ij - sum_k p_ik dp_ik) for j <= i; 0 for j > i
// (p is zero there, so the masked scores get no gradient).
template <typename F>
void softmax_causal_row_backward(const F* p, const F* dp, F* ds, int64_t i, int64_t n) {
  double dot = 0;
  for (int64_t j = 0; j <= i; ++j) dot += static_cast<double>(p[j]) * dp[j];
  for (int64_t j = 0; j <= i; ++j) ds[j] = static_cast<F>(p[j] * (dp[j] - dot));
  for (int64_t j = i + 1; j < n; ++j) ds[j] = F(0);
}

template <typename F>
double softmax_causal_backward(const F* probs, const F* dprobs, F* dscores, int64_t batch, int64_t n) {
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < n; ++i) {
      const int64_t off = (b * n + i) * n;
      softmax_causal_row_backward(probs + off, dprobs + off, dscores + off, i, n);
    }
  return fc::kSoftmaxBwd * static_cast<double>(batch) * static_cast<double>(n) * static_cast<double>(n + 1) / 2;
}

// The causal softmax under a mask (AttentionMask: a window or chunks) and with an optional sink
// logit: row i keeps columns lo = mask.first_key(i) .. i, and with a sink z (the row's head's)
//   m = max(max_{lo<=k<=i} s_ik, z);  Z = sum_{lo<=k<=i} exp(s_ik - m) + exp(z - m)
//   p_ij = exp(s_ij - m) / Z (0 outside lo..i);  p_sink = exp(z - m) / Z (saved for backward)
// Without a sink, Z has no sink term. Counts the kept elements (kSoftmaxFwd) and, with a sink,
// kSinkFwd per row.
template <typename F>
void softmax_masked_row_forward(const F* s, F* p, int64_t i, int64_t n, const AttentionMask& mask, const F* sink,
                                F* sink_p) {
  const int64_t lo = mask.first_key(i);
  double mx = s[lo];
  for (int64_t j = lo + 1; j <= i; ++j) mx = std::max(mx, static_cast<double>(s[j]));
  if (sink) mx = std::max(mx, static_cast<double>(*sink));
  double sum = 0;
  for (int64_t j = lo; j <= i; ++j) sum += std::exp(static_cast<double>(s[j]) - mx);
  const double es = sink ? std::exp(static_cast<double>(*sink) - mx) : 0.0;
  sum += es;
  for (int64_t j = 0; j < lo; ++j) p[j] = F(0);
  for (int64_t j = lo; j <= i; ++j) p[j] = static_cast<F>(std::exp(static_cast<double>(s[j]) - mx) / sum);
  for (int64_t j = i + 1; j < n; ++j) p[j] = F(0);
  if (sink_p) *sink_p = static_cast<F>(es / sum);
}

// sinks: (heads) logits, member b's head b % heads (nullptr: none); sink_probs (batch, n).
template <typename F>
double softmax_masked_forward(const F* scores, const F* sinks, F* probs, F* sink_probs, int64_t batch, int64_t n,
                              const AttentionMask& mask, int64_t heads) {
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < n; ++i) {
      const int64_t off = (b * n + i) * n;
      softmax_masked_row_forward(scores + off, probs + off, i, n, mask, sinks ? sinks + b % heads : nullptr,
                                 sinks ? sink_probs + b * n + i : nullptr);
    }
  return fc::kSoftmaxFwd * static_cast<double>(batch) * mask.attended(n) +
         (sinks ? fc::kSinkFwd * static_cast<double>(batch) * static_cast<double>(n) : 0.0);
}

// Its backward: ds_ij = p_ij (dp_ij - dot), dot = sum_{lo<=k<=i} p_ik dp_ik, 0 outside lo..i;
// the sink's probability gets no gradient from P (O = P V uses the keys' only), so its logit's is
// p_sink (0 - dot). Returns dot.
template <typename F>
double softmax_masked_row_backward(const F* p, const F* dp, F* ds, int64_t i, int64_t n, const AttentionMask& mask) {
  const int64_t lo = mask.first_key(i);
  double dot = 0;
  for (int64_t j = lo; j <= i; ++j) dot += static_cast<double>(p[j]) * dp[j];
  for (int64_t j = 0; j < lo; ++j) ds[j] = F(0);
  for (int64_t j = lo; j <= i; ++j) ds[j] = static_cast<F>(p[j] * (dp[j] - dot));
  for (int64_t j = i + 1; j < n; ++j) ds[j] = F(0);
  return dot;
}

// dsinks (heads, overwritten): dsink_h = -sum over the members of head h and their rows of p_sink dot.
template <typename F>
double softmax_masked_backward(const F* probs, const F* dprobs, const F* sink_probs, F* dscores, F* dsinks,
                               int64_t batch, int64_t n, const AttentionMask& mask, int64_t heads) {
  std::vector<double> dz(static_cast<size_t>(sink_probs ? heads : 0), 0.0);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < n; ++i) {
      const int64_t off = (b * n + i) * n;
      const double dot = softmax_masked_row_backward(probs + off, dprobs + off, dscores + off, i, n, mask);
      if (sink_probs) dz[static_cast<size_t>(b % heads)] -= static_cast<double>(sink_probs[b * n + i]) * dot;
    }
  for (size_t h = 0; h < dz.size(); ++h) dsinks[h] = static_cast<F>(dz[h]);
  return fc::kSoftmaxBwd * static_cast<double>(batch) * mask.attended(n) +
         (sink_probs ? fc::kSinkBwd * static_cast<double>(batch) * static_cast<double>(n) : 0.0);
}

// GeLU, the tanh approximation GPT-2/3 use:
//   gelu(x) = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
//   gelu'(x) = 0.5 (1 + tanh(u)) + 0.5 x (1 - tanh(u)^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
inline constexpr double kGeluC = 0.7978845608028654;  // sqrt(2 / pi)
inline constexpr double kGeluA = 0.044715;

// Computed in F (float math for fp32, double for fp64); GPU kernels are tested against the
// fp64 instantiation.
template <typename F>
double gelu_forward(const F* x, F* y, int64_t n) {
  const F c = static_cast<F>(kGeluC), a = static_cast<F>(kGeluA), half = F(0.5), one = F(1);
  for (int64_t i = 0; i < n; ++i) {
    const F v = x[i];
    y[i] = half * v * (one + std::tanh(c * (v + a * v * v * v)));
  }
  return fc::kGeluFwd * static_cast<double>(n);
}

// dx = dy * gelu'(x); x is the GeLU's input (saved pre-activation).
template <typename F>
double gelu_backward(const F* x, const F* dy, F* dx, int64_t n) {
  const F c = static_cast<F>(kGeluC), a = static_cast<F>(kGeluA), half = F(0.5), one = F(1);
  for (int64_t i = 0; i < n; ++i) {
    const F v = x[i];
    const F t = std::tanh(c * (v + a * v * v * v));
    const F d = half * (one + t) + half * v * (one - t * t) * c * (one + 3 * a * v * v);
    dx[i] = dy[i] * d;
  }
  return fc::kGeluBwd * static_cast<double>(n);
}

// x_rj += bias_j, in place. x: (rows, cols); bias: (cols).
template <typename F>
double bias_add(F* x, const F* bias, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) x[r * cols + j] += bias[j];
  return fc::kBiasAdd * static_cast<double>(rows) * static_cast<double>(cols);
}

// dbias_j = sum_r dy_rj (a column reduction). dy: (rows, cols); dbias: (cols), overwritten.
template <typename F>
double bias_grad(const F* dy, F* dbias, int64_t rows, int64_t cols) {
  std::vector<double> sum(static_cast<size_t>(cols), 0.0);  // rows outer: contiguous reads
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) sum[static_cast<size_t>(j)] += dy[r * cols + j];
  for (int64_t j = 0; j < cols; ++j) dbias[j] = static_cast<F>(sum[static_cast<size_t>(j)]);
  return fc::kBiasGrad * static_cast<double>(rows) * static_cast<double>(cols);
}

// out = a + b, elementwise over n elements (out may alias a or b).
template <typename F>
double residual_add(const F* a, const F* b, F* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
  return fc::kResidualAdd * static_cast<double>(n);
}

// Softmax cross-entropy per row: loss_r = log sum_j exp(z_rj) - z_r,t (t = target_r).
// logits: (rows, vocab); targets: (rows) holding integer class ids; loss: (rows).
template <typename F, typename I>
double cross_entropy_forward(const F* logits, const I* targets, F* loss, int64_t rows, int64_t vocab) {
  for (int64_t r = 0; r < rows; ++r) {
    const F* z = logits + r * vocab;
    double mx = z[0];
    for (int64_t j = 1; j < vocab; ++j) mx = std::max(mx, static_cast<double>(z[j]));
    double sum = 0;
    for (int64_t j = 0; j < vocab; ++j) sum += std::exp(z[j] - mx);
    const auto t = static_cast<int64_t>(targets[r]);
    loss[r] = static_cast<F>(std::log(sum) + mx - z[t]);
  }
  return fc::kCrossEntropyFwd * static_cast<double>(rows) * static_cast<double>(vocab);
}

// Gradient of the mean loss (1/N) sum_r loss_r over N rows: dz_rj = (softmax(z_r)_j - [j == t_r]) / N.
// `mean_over` is N: the rows the loss averages over (= rows, unless checking a slice of rows).
template <typename F, typename I>
double cross_entropy_backward(const F* logits, const I* targets, F* dlogits, int64_t rows, int64_t vocab,
                              int64_t mean_over = 0) {
  const double inv_rows = 1.0 / static_cast<double>(mean_over > 0 ? mean_over : rows);
  for (int64_t r = 0; r < rows; ++r) {
    const F* z = logits + r * vocab;
    F* dz = dlogits + r * vocab;
    double mx = z[0];
    for (int64_t j = 1; j < vocab; ++j) mx = std::max(mx, static_cast<double>(z[j]));
    double sum = 0;
    for (int64_t j = 0; j < vocab; ++j) sum += std::exp(z[j] - mx);
    const auto t = static_cast<int64_t>(targets[r]);
    for (int64_t j = 0; j < vocab; ++j)
      dz[j] = static_cast<F>((std::exp(z[j] - mx) / sum - (j == t ? 1.0 : 0.0)) * inv_rows);
  }
  return fc::kCrossEntropyBwd * static_cast<double>(rows) * static_cast<double>(vocab);
}

// RMSNorm forward, per row r of x (rows, cols) (Llama: no mean, no beta):
//   rstd_r = 1 / sqrt(sum_j x_rj^2 / n + eps);  y_rj = x_rj * rstd_r * gamma_j
// x, y: (rows, cols); gamma: (cols); rstd: (rows), saved for backward.
inline constexpr double kRmsNormEps = 1e-5;
template <typename F>
double rmsnorm_forward(const F* x, const F* gamma, F* y, F* rstd, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    const F* xr = x + r * cols;
    double sq = 0;
    for (int64_t j = 0; j < cols; ++j) sq += static_cast<double>(xr[j]) * xr[j];
    const double rs = 1.0 / std::sqrt(sq / static_cast<double>(cols) + kRmsNormEps);
    for (int64_t j = 0; j < cols; ++j) y[r * cols + j] = static_cast<F>(xr[j] * rs * gamma[j]);
    rstd[r] = static_cast<F>(rs);
  }
  return fc::kRmsNormFwd * static_cast<double>(rows) * static_cast<double>(cols);
}

// RMSNorm backward, with xhat = x * rstd and g = dy * gamma:
//   dx_rj = rstd_r * (g_rj - xhat_rj * mean_j(g_r * xhat_r));  dgamma_j = sum_r dy_rj * xhat_rj (overwritten)
template <typename F>
double rmsnorm_backward(const F* dy, const F* x, const F* gamma, const F* rstd, F* dx, F* dgamma, int64_t rows,
                        int64_t cols) {
  std::vector<double> dg(static_cast<size_t>(cols), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    const F* xr = x + r * cols;
    const F* dyr = dy + r * cols;
    const double rs = rstd[r];
    double sum_gx = 0;
    for (int64_t j = 0; j < cols; ++j) {
      const double xhat = xr[j] * rs;
      sum_gx += static_cast<double>(dyr[j]) * gamma[j] * xhat;
      dg[static_cast<size_t>(j)] += dyr[j] * xhat;
    }
    const double m = sum_gx / static_cast<double>(cols);
    for (int64_t j = 0; j < cols; ++j) {
      const double xhat = xr[j] * rs;
      dx[r * cols + j] = static_cast<F>(rs * (static_cast<double>(dyr[j]) * gamma[j] - xhat * m));
    }
  }
  for (int64_t j = 0; j < cols; ++j) dgamma[j] = static_cast<F>(dg[static_cast<size_t>(j)]);
  return fc::kRmsNormBwd * static_cast<double>(rows) * static_cast<double>(cols);
}

// QK-norm (graph.hpp, QkNormSpec) on one row of a qkv-shaped tensor: each Q and K head x of
// d_head elements is RMS-normalised, y = x rstd g, rstd = 1 / sqrt(mean(x^2) + eps) (g = gamma_q
// for query heads, gamma_k for K heads; 1 when unweighted); V is copied. rstd: the row's
// normed_heads() values, group by group (its query heads, then K).
template <typename F>
void qk_norm_row_forward(const F* x, const F* gq, const F* gk, F* y, F* rstd, const QkNormSpec& q) {
  const int64_t dh = q.d_head;
  for (int64_t grp = 0; grp < q.kv_heads; ++grp)
    for (int64_t hd = 0; hd < q.group + 2; ++hd) {
      const int64_t off = (grp * (q.group + 2) + hd) * dh;
      if (hd == q.group + 1) {  // V
        for (int64_t j = 0; j < dh; ++j) y[off + j] = x[off + j];
        continue;
      }
      const F* g = q.weighted ? (hd < q.group ? gq : gk) : nullptr;
      double sq = 0;
      for (int64_t j = 0; j < dh; ++j) sq += static_cast<double>(x[off + j]) * x[off + j];
      const double rs = 1.0 / std::sqrt(sq / static_cast<double>(dh) + kRmsNormEps);
      for (int64_t j = 0; j < dh; ++j) y[off + j] = static_cast<F>(x[off + j] * rs * (g ? static_cast<double>(g[j]) : 1.0));
      rstd[grp * (q.group + 1) + hd] = static_cast<F>(rs);
    }
}
template <typename F>
double qk_norm_forward(const F* x, const F* gq, const F* gk, F* y, F* rstd, int64_t rows, const QkNormSpec& q) {
  const int64_t w = q.width();
  for (int64_t r = 0; r < rows; ++r) qk_norm_row_forward(x + r * w, gq, gk, y + r * w, rstd + r * q.normed_heads(), q);
  return (q.weighted ? fc::kQkNormFwd : fc::kQkL2NormFwd) * static_cast<double>(rows) *
         static_cast<double>(q.normed_heads() * q.d_head);
}

// Its backward per head, xhat = x rstd, u = dy g: dx = rstd (u - xhat mean(u xhat)); V's dy
// copied; dgamma_q (dgamma_k) += dy xhat over every query (K) head of the row, into dgq, dgk
// (doubles, d_head each, accumulated; nullptr when unweighted).
template <typename F>
void qk_norm_row_backward(const F* dy, const F* x, const F* gq, const F* gk, const F* rstd, F* dx, double* dgq,
                          double* dgk, const QkNormSpec& q) {
  const int64_t dh = q.d_head;
  for (int64_t grp = 0; grp < q.kv_heads; ++grp)
    for (int64_t hd = 0; hd < q.group + 2; ++hd) {
      const int64_t off = (grp * (q.group + 2) + hd) * dh;
      if (hd == q.group + 1) {
        for (int64_t j = 0; j < dh; ++j) dx[off + j] = dy[off + j];
        continue;
      }
      const F* g = q.weighted ? (hd < q.group ? gq : gk) : nullptr;
      double* dg = q.weighted ? (hd < q.group ? dgq : dgk) : nullptr;
      const double rs = rstd[grp * (q.group + 1) + hd];
      double sum_ux = 0;
      for (int64_t j = 0; j < dh; ++j) {
        const double xhat = x[off + j] * rs;
        sum_ux += static_cast<double>(dy[off + j]) * (g ? static_cast<double>(g[j]) : 1.0) * xhat;
        if (dg) dg[j] += static_cast<double>(dy[off + j]) * xhat;
      }
      const double m = sum_ux / static_cast<double>(dh);
      for (int64_t j = 0; j < dh; ++j) {
        const double xhat = x[off + j] * rs;
        dx[off + j] = static_cast<F>(rs * (static_cast<double>(dy[off + j]) * (g ? static_cast<double>(g[j]) : 1.0) - xhat * m));
      }
    }
}
// dgq, dgk (d_head each) overwritten; nullptr when unweighted.
template <typename F>
double qk_norm_backward(const F* dy, const F* x, const F* gq, const F* gk, const F* rstd, F* dx, F* dgq, F* dgk,
                        int64_t rows, const QkNormSpec& q) {
  const int64_t w = q.width(), dh = q.d_head;
  std::vector<double> aq(static_cast<size_t>(dh), 0.0), ak(static_cast<size_t>(dh), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    qk_norm_row_backward(dy + r * w, x + r * w, gq, gk, rstd + r * q.normed_heads(), dx + r * w, aq.data(), ak.data(), q);
  if (q.weighted)
    for (int64_t j = 0; j < dh; ++j) {
      dgq[j] = static_cast<F>(aq[static_cast<size_t>(j)]);
      dgk[j] = static_cast<F>(ak[static_cast<size_t>(j)]);
    }
  return (q.weighted ? fc::kQkNormBwd : fc::kQkL2NormBwd) * static_cast<double>(rows) *
         static_cast<double>(q.normed_heads() * q.d_head);
}

// RoPE ("rotate half", Hugging Face Llama): in each rotated head of d_head elements, pair
// (a, b) = (x_j, x_{j + d_head/2}) at position p turns by angle p * theta^(-2j / d_head):
//   forward:  (a, b) -> (a cos - b sin, b cos + a sin)
//   backward: (da, db) -> (da cos + db sin, db cos - da sin)   (the transpose: rotation by -angle)
// One row of a qkv-shaped tensor at position p: kv_heads groups of (group + 2) heads; the first
// group + 1 heads of each (queries and K) rotate, V does not (or the layout RopeSpec names:
// MLA's rope parts). In place.
inline double rope_angle(int64_t position, int64_t j, int64_t d_head, double theta) {
  return static_cast<double>(position) * std::pow(theta, -2.0 * static_cast<double>(j) / static_cast<double>(d_head));
}
template <typename F>
void rope_row(F* row, int64_t position, const RopeSpec& r, bool backward) {
  const int64_t half = r.d_head / 2;
  for (int64_t j = 0; j < half; ++j) {
    const double ang = rope_angle(position, j, r.d_head, r.theta);
    const double c = std::cos(ang), s = backward ? -std::sin(ang) : std::sin(ang);
    for (int64_t grp = 0; grp < r.kv_heads; ++grp)
      for (int64_t hd = 0; hd < r.rotated_heads(); ++hd) {
        F* x = row + r.head_at(grp, hd);
        const double a = x[j], b = x[j + half];
        x[j] = static_cast<F>(a * c - b * s);
        x[j + half] = static_cast<F>(b * c + a * s);
      }
  }
}
// x: (rows, cols) with cols = kv_heads x the block width (RopeSpec); row t at position t / batch.
template <typename F>
double rope(F* x, int64_t rows, int64_t cols, const RopeSpec& r, bool backward) {
  for (int64_t t = 0; t < rows; ++t) rope_row(x + t * cols, t / r.batch, r, backward);
  return fc::kRope * static_cast<double>(rows) * static_cast<double>(r.kv_heads * r.rotated_heads() * r.d_head);
}

// MLA's assembly (graph.hpp, MlaSpec): one token's row of qkv from its rows of q, kv_b and
// k_rope, per head h: [q_h (nope + rope), k_nope_h (nope), k_rope (rope), v_h (v)]. Copies only.
template <typename F>
void mla_qkv_forward_row(const F* q, const F* kv_b, const F* k_rope, F* qkv, const MlaSpec& m) {
  const int64_t qk = m.qk(), w = 2 * qk + m.v;
  for (int64_t h = 0; h < m.heads; ++h) {
    F* o = qkv + h * w;
    const F* kv = kv_b + h * (m.nope + m.v);
    for (int64_t j = 0; j < qk; ++j) o[j] = q[h * qk + j];
    for (int64_t j = 0; j < m.nope; ++j) o[qk + j] = kv[j];
    for (int64_t j = 0; j < m.rope; ++j) o[qk + m.nope + j] = k_rope[j];
    for (int64_t j = 0; j < m.v; ++j) o[2 * qk + j] = kv[m.nope + j];
  }
}
// Its backward: the slots of d.qkv back into dq, dkv_b, and dk_rope = the sum over the heads
// of their k_rope slots (heads - 1 adds an element).
template <typename F>
void mla_qkv_backward_row(const F* dqkv, F* dq, F* dkv_b, F* dk_rope, const MlaSpec& m) {
  const int64_t qk = m.qk(), w = 2 * qk + m.v;
  for (int64_t j = 0; j < m.rope; ++j) {
    F s = dqkv[qk + m.nope + j];
    for (int64_t h = 1; h < m.heads; ++h) s += dqkv[h * w + qk + m.nope + j];
    dk_rope[j] = s;
  }
  for (int64_t h = 0; h < m.heads; ++h) {
    const F* g = dqkv + h * w;
    F* dkv = dkv_b + h * (m.nope + m.v);
    for (int64_t j = 0; j < qk; ++j) dq[h * qk + j] = g[j];
    for (int64_t j = 0; j < m.nope; ++j) dkv[j] = g[qk + j];
    for (int64_t j = 0; j < m.v; ++j) dkv[m.nope + j] = g[2 * qk + j];
  }
}
template <typename F>
double mla_qkv_forward(const F* q, const F* kv_b, const F* k_rope, F* qkv, int64_t rows, const MlaSpec& m) {
  for (int64_t t = 0; t < rows; ++t)
    mla_qkv_forward_row(q + t * m.q_width(), kv_b + t * m.kv_b_width(), k_rope + t * m.rope, qkv + t * m.qkv_width(),
                        m);
  return 0;
}
template <typename F>
double mla_qkv_backward(const F* dqkv, F* dq, F* dkv_b, F* dk_rope, int64_t rows, const MlaSpec& m) {
  for (int64_t t = 0; t < rows; ++t)
    mla_qkv_backward_row(dqkv + t * m.qkv_width(), dq + t * m.q_width(), dkv_b + t * m.kv_b_width(),
                         dk_rope + t * m.rope, m);
  return fc::kMlaRopeSum * static_cast<double>(rows) * static_cast<double>(m.rope * (m.heads - 1));
}

// SwiGLU: h = silu(g) * u, silu(g) = g * sigmoid(g), sigmoid(g) = 1 / (1 + exp(-g)).
// Backward: du = dh * silu(g);  dg = dh * u * sigmoid(g) * (1 + g * (1 - sigmoid(g))).
template <typename F>
double swiglu_forward(const F* gate, const F* up, F* h, int64_t n) {
  const F one = F(1);
  for (int64_t i = 0; i < n; ++i) {
    const F g = gate[i];
    h[i] = g / (one + std::exp(-g)) * up[i];
  }
  return fc::kSwigluFwd * static_cast<double>(n);
}
template <typename F>
double swiglu_backward(const F* gate, const F* up, const F* dh, F* dgate, F* dup, int64_t n) {
  const F one = F(1);
  for (int64_t i = 0; i < n; ++i) {
    const F g = gate[i];
    const F sig = one / (one + std::exp(-g));
    dup[i] = dh[i] * g * sig;
    dgate[i] = dh[i] * up[i] * sig * (one + g * (one - sig));
  }
  return fc::kSwigluBwd * static_cast<double>(n);
}

// ReLU (OPT): y = max(x, 0); dx = dy where x > 0, else 0.
template <typename F>
double relu_forward(const F* x, F* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] > F(0) ? x[i] : F(0);
  return fc::kReluFwd * static_cast<double>(n);
}
template <typename F>
double relu_backward(const F* x, const F* dy, F* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] = x[i] > F(0) ? dy[i] : F(0);
  return fc::kReluBwd * static_cast<double>(n);
}

// FP8 E4M3 emulation (--precision fp8): y = e4m3(x * scale) / scale, the product and the
// quotient in float (as the device does); x: (rows, cols); y: (rows, cols), or (cols, rows)
// with transpose. Returns max |x| (NaN skipped), the amax of delayed scaling. Not FLOPs: the
// backend counts kCastFp8 per element.
template <typename F>
float cast_fp8(const F* x, F* y, int64_t rows, int64_t cols, bool transpose, float scale) {
  float m = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const F v = x[r * cols + c];
      m = std::max(m, static_cast<float>(std::fabs(v)));
      const float q = fp8::e4m3_quantize(static_cast<float>(v), scale) / scale;
      y[transpose ? c * rows + r : r * cols + c] = static_cast<F>(q);
    }
  return m;
}

// ---- mixture of experts (graph.hpp, MoeSpec and the moe_* ops) ---------------------------------
// One token's route: logits z (E) -> its k experts, best first (ties to the lower index), and
// their weights. Scores s = softmax(z) or sigmoid(z); topk_first: the k best logits, then the
// softmax (or sigmoid) of those k; else the k best scores (grouped: within the topk_group
// groups whose two best scores sum highest), weights their scores; norm_topk renormalises the
// k weights (a softmax over the k is normalised already); then x scale. In double.
inline void moe_route_row(const double* z, const MoeSpec& m, int64_t* experts, double* weights) {
  const int64_t E = m.experts, k = m.top_k;
  std::vector<double> s(static_cast<size_t>(E));
  if (!m.topk_first) {
    if (m.sigmoid) {
      for (int64_t e = 0; e < E; ++e) s[e] = 1.0 / (1.0 + std::exp(-z[e]));
    } else {
      double mx = z[0], sum = 0;
      for (int64_t e = 1; e < E; ++e) mx = std::max(mx, z[e]);
      for (int64_t e = 0; e < E; ++e) sum += (s[e] = std::exp(z[e] - mx));
      for (int64_t e = 0; e < E; ++e) s[e] /= sum;
    }
  }
  const double* sel = m.topk_first ? z : s.data();  // what the choice ranks
  std::vector<char> allowed(static_cast<size_t>(E), 1);
  if (m.n_group > 0 && !m.topk_first) {
    const int64_t per = E / m.n_group;
    std::vector<double> score(static_cast<size_t>(m.n_group));
    for (int64_t gi = 0; gi < m.n_group; ++gi) {
      double a = -HUGE_VAL, b = -HUGE_VAL;  // the group's two best
      for (int64_t e = gi * per; e < (gi + 1) * per; ++e) {
        if (sel[e] > a) {
          b = a;
          a = sel[e];
        } else if (sel[e] > b) {
          b = sel[e];
        }
      }
      score[gi] = per > 1 ? a + b : a;
    }
    std::vector<char> keep(static_cast<size_t>(m.n_group), 0);
    for (int64_t c = 0; c < m.topk_group; ++c) {
      int64_t best = -1;
      for (int64_t gi = 0; gi < m.n_group; ++gi)
        if (!keep[gi] && (best < 0 || score[gi] > score[best])) best = gi;
      keep[best] = 1;
    }
    for (int64_t e = 0; e < E; ++e) allowed[e] = keep[e / per];
  }
  for (int64_t j = 0; j < k; ++j) {
    int64_t best = -1;
    for (int64_t e = 0; e < E; ++e)
      if (allowed[e] && (best < 0 || sel[e] > sel[best])) best = e;
    experts[j] = best;
    allowed[best] = 0;
  }
  if (m.topk_first) {
    if (m.sigmoid) {
      for (int64_t j = 0; j < k; ++j) weights[j] = 1.0 / (1.0 + std::exp(-z[experts[j]]));
    } else {
      double sum = 0;
      const double mx = z[experts[0]];
      for (int64_t j = 0; j < k; ++j) sum += (weights[j] = std::exp(z[experts[j]] - mx));
      for (int64_t j = 0; j < k; ++j) weights[j] /= sum;
    }
  } else {
    for (int64_t j = 0; j < k; ++j) weights[j] = s[experts[j]];
  }
  if (m.norm_topk && !(m.topk_first && !m.sigmoid)) {
    double sum = 0;
    for (int64_t j = 0; j < k; ++j) sum += weights[j];
    for (int64_t j = 0; j < k; ++j) weights[j] /= sum;
  }
  if (m.scale != 1)
    for (int64_t j = 0; j < k; ++j) weights[j] *= m.scale;
}

// Each token's k copies in the dispatched rows: experts in order, within an expert tokens in
// order (a stable counting sort). counts (E) and slots (rows, k) from the experts and weights
// (rows, k). Under a capacity (MoeSpec::capacity) an expert keeps its expert_capacity() rows of
// highest weight (ties: the earlier token) and the others' slots are -1; counts are the kept.
template <typename E, typename W, typename F>
void moe_slots(const E* experts, const W* weights, int64_t rows, const MoeSpec& m, F* slots, F* counts) {
  const int64_t n_choices = rows * m.top_k;
  std::vector<char> kept(static_cast<size_t>(n_choices), 1);
  std::vector<std::vector<int64_t>> of(static_cast<size_t>(m.experts));
  for (int64_t i = 0; i < n_choices; ++i) of[static_cast<size_t>(experts[i])].push_back(i);
  const auto cap = static_cast<size_t>(expert_capacity(m, rows));
  for (auto& list : of)
    if (list.size() > cap) {
      std::stable_sort(list.begin(), list.end(), [&](int64_t a, int64_t b) {
        return static_cast<double>(weights[a]) > static_cast<double>(weights[b]);
      });
      for (size_t q = cap; q < list.size(); ++q) kept[static_cast<size_t>(list[q])] = 0;
    }
  std::vector<int64_t> n(static_cast<size_t>(m.experts), 0), next(static_cast<size_t>(m.experts), 0);
  for (int64_t i = 0; i < n_choices; ++i) n[static_cast<size_t>(experts[i])] += kept[static_cast<size_t>(i)];
  for (int64_t e = 1; e < m.experts; ++e) next[e] = next[e - 1] + n[e - 1];
  for (int64_t i = 0; i < n_choices; ++i)
    slots[i] = kept[static_cast<size_t>(i)] ? static_cast<F>(next[static_cast<size_t>(experts[i])]++) : F(-1);
  for (int64_t e = 0; e < m.experts; ++e) counts[e] = static_cast<F>(n[e]);
}

// The tokens the router chose for each expert (E), before any dropping: the aux loss's counts.
template <typename E>
std::vector<double> moe_chosen(const E* experts, int64_t rows, const MoeSpec& m) {
  std::vector<double> c(static_cast<size_t>(m.experts), 0.0);
  for (int64_t i = 0; i < rows * m.top_k; ++i) c[static_cast<size_t>(experts[i])] += 1;
  return c;
}

// The dispatched rows the slots use (the kept; all k rows with no dropping).
template <typename F>
int64_t moe_rows_used(const F* slots, int64_t rows, const MoeSpec& m) {
  int64_t used = 0;
  for (int64_t i = 0; i < rows * m.top_k; ++i) used += slots[i] >= 0 ? 1 : 0;
  return used;
}

// moe_route_fwd over (rows, E) logits: experts, weights, slots (rows, k) and counts (E).
template <typename F>
double moe_route_forward(const F* logits, F* experts, F* weights, F* slots, F* counts, int64_t rows, const MoeSpec& m) {
  const int64_t E = m.experts, k = m.top_k;
  std::vector<double> z(static_cast<size_t>(E)), w(static_cast<size_t>(rows * k));
  std::vector<int64_t> ex(static_cast<size_t>(rows * k));
  for (int64_t t = 0; t < rows; ++t) {
    for (int64_t e = 0; e < E; ++e) z[e] = logits[t * E + e];
    moe_route_row(z.data(), m, ex.data() + t * k, w.data() + t * k);
    for (int64_t j = 0; j < k; ++j) {
      experts[t * k + j] = static_cast<F>(ex[t * k + j]);
      weights[t * k + j] = static_cast<F>(w[t * k + j]);
    }
  }
  moe_slots(ex.data(), w.data(), rows, m, slots, counts);
  return fc::moe_route_fwd(m, rows);
}

// moe_route_bwd for one token: dz (E) from its logits z, experts, weights w and their gradient
// dw (k); counts (E) the router chose of all `rows` tokens (moe_chosen) for the aux loss's
// gradient coef E counts_e / rows^2 through p = softmax(z). The weights before the scale are
// w / scale, their gradient dw x scale. In double.
inline void moe_route_backward_row(const double* z, const int64_t* experts, const double* w_scaled,
                                   const double* dw_scaled, const double* counts, int64_t rows, const MoeSpec& m,
                                   double* dz) {
  const int64_t E = m.experts, k = m.top_k;
  for (int64_t e = 0; e < E; ++e) dz[e] = 0;
  std::vector<double> w(w_scaled, w_scaled + k), dw(dw_scaled, dw_scaled + k);
  for (int64_t j = 0; j < k; ++j) w[j] /= m.scale, dw[j] *= m.scale;
  const bool renorm = m.norm_topk && !(m.topk_first && !m.sigmoid);
  double dot = 0;
  for (int64_t j = 0; j < k; ++j) dot += dw[j] * w[j];
  double psum = 1;
  if (renorm) {
    // p_j = w_j S with S = sum p; the p are the scores (or sigmoids) of the chosen.
    psum = 0;
    for (int64_t j = 0; j < k; ++j) {
      const double zj = z[experts[j]];
      psum += m.sigmoid ? 1.0 / (1.0 + std::exp(-zj)) : 0;
    }
  }
  if (m.topk_first && !m.sigmoid) {  // softmax over the k chosen
    for (int64_t j = 0; j < k; ++j) dz[experts[j]] += w[j] * (dw[j] - dot);
  } else if (m.sigmoid) {
    for (int64_t j = 0; j < k; ++j) {
      const double sg = 1.0 / (1.0 + std::exp(-z[experts[j]]));
      const double d = renorm ? (dw[j] - dot) / psum : dw[j];
      dz[experts[j]] += d * sg * (1 - sg);
    }
  } else {  // softmax over all E, then the k chosen (renormalised)
    double mx = z[0], sum = 0;
    for (int64_t e = 1; e < E; ++e) mx = std::max(mx, z[e]);
    std::vector<double> s(static_cast<size_t>(E));
    for (int64_t e = 0; e < E; ++e) sum += (s[e] = std::exp(z[e] - mx));
    for (int64_t e = 0; e < E; ++e) s[e] /= sum;
    double ssum = 0;
    for (int64_t j = 0; j < k; ++j) ssum += s[experts[j]];
    std::vector<double> ds(static_cast<size_t>(E), 0.0);
    for (int64_t j = 0; j < k; ++j) ds[experts[j]] = renorm ? (dw[j] - dot) / ssum : dw[j];
    double sd = 0;
    for (int64_t j = 0; j < k; ++j) sd += ds[experts[j]] * s[experts[j]];
    for (int64_t e = 0; e < E; ++e) dz[e] += s[e] * (ds[e] - sd);
  }
  if (m.aux_coef > 0) {
    double mx = z[0], sum = 0;
    for (int64_t e = 1; e < E; ++e) mx = std::max(mx, z[e]);
    std::vector<double> p(static_cast<size_t>(E));
    for (int64_t e = 0; e < E; ++e) sum += (p[e] = std::exp(z[e] - mx));
    const double R = static_cast<double>(rows), scale = m.aux_coef * static_cast<double>(E) / (R * R);
    double gp = 0;
    for (int64_t e = 0; e < E; ++e) gp += scale * counts[e] * (p[e] /= sum);
    for (int64_t e = 0; e < E; ++e) dz[e] += p[e] * (scale * counts[e] - gp);
  }
}

// The counts input (the kept rows) is not what the aux loss takes: its counts are those the
// router chose (moe_chosen), the same where nothing is dropped.
template <typename F>
double moe_route_backward(const F* logits, const F* experts, const F* weights, const F* dweights, F* dlogits,
                          int64_t rows, const MoeSpec& m) {
  const int64_t E = m.experts, k = m.top_k;
  std::vector<double> z(static_cast<size_t>(E)), dz(static_cast<size_t>(E)), w(static_cast<size_t>(k)),
      dw(static_cast<size_t>(k));
  std::vector<int64_t> ex(static_cast<size_t>(k));
  const std::vector<double> c = moe_chosen(experts, rows, m);
  for (int64_t t = 0; t < rows; ++t) {
    for (int64_t e = 0; e < E; ++e) z[e] = logits[t * E + e];
    for (int64_t j = 0; j < k; ++j) {
      ex[j] = static_cast<int64_t>(experts[t * k + j]);
      w[j] = weights[t * k + j];
      dw[j] = dweights[t * k + j];
    }
    moe_route_backward_row(z.data(), ex.data(), w.data(), dw.data(), c.data(), rows, m, dz.data());
    for (int64_t e = 0; e < E; ++e) dlogits[t * E + e] = static_cast<F>(dz[e]);
  }
  return fc::moe_route_bwd(m, rows);
}

// dispatch: xe[slots[t, j]] = x[t]; its backward dx[t] = sum_j dxe[slots[t, j]]; combine
// y[t] = sum_j w[t, j] ye[slots[t, j]]; its backward dye[slots[t, j]] = w[t, j] dy[t] and
// dw[t, j] = dy[t] . ye[slots[t, j]]. Rows of d. A dropped assignment (slot -1) takes no part
// (its dw is 0), and the dispatched rows past the kept ones (moe_rows_used) are written 0, so
// what no expert takes is defined. Counted: the adds and multiplies of what ran.
template <typename F>
double moe_dispatch_forward(const F* x, const F* slots, F* xe, int64_t rows, int64_t d, const MoeSpec& m) {
  for (int64_t t = 0; t < rows; ++t)
    for (int64_t j = 0; j < m.top_k; ++j) {
      const auto slot = static_cast<int64_t>(slots[t * m.top_k + j]);
      if (slot < 0) continue;
      F* o = xe + slot * d;
      for (int64_t c = 0; c < d; ++c) o[c] = x[t * d + c];
    }
  std::fill(xe + moe_rows_used(slots, rows, m) * d, xe + rows * m.top_k * d, F(0));
  return 0;
}
template <typename F>
double moe_dispatch_backward(const F* dxe, const F* slots, F* dx, int64_t rows, int64_t d, const MoeSpec& m) {
  double adds = 0;
  for (int64_t t = 0; t < rows; ++t) {
    int64_t used = 0;
    for (int64_t c = 0; c < d; ++c) {
      double s = 0;
      used = 0;
      for (int64_t j = 0; j < m.top_k; ++j) {
        const auto slot = static_cast<int64_t>(slots[t * m.top_k + j]);
        if (slot < 0) continue;
        s += dxe[slot * d + c];
        ++used;
      }
      dx[t * d + c] = static_cast<F>(s);
    }
    adds += static_cast<double>(std::max<int64_t>(used - 1, 0));
  }
  return fc::kMoeDispatchBwd * adds * static_cast<double>(d);
}
template <typename F>
double moe_combine_forward(const F* ye, const F* w, const F* slots, F* y, int64_t rows, int64_t d, const MoeSpec& m) {
  for (int64_t t = 0; t < rows; ++t)
    for (int64_t c = 0; c < d; ++c) {
      double s = 0;
      for (int64_t j = 0; j < m.top_k; ++j) {
        const auto slot = static_cast<int64_t>(slots[t * m.top_k + j]);
        if (slot >= 0) s += static_cast<double>(w[t * m.top_k + j]) * ye[slot * d + c];
      }
      y[t * d + c] = static_cast<F>(s);
    }
  return fc::kMoeCombineFwd * static_cast<double>(moe_rows_used(slots, rows, m)) * static_cast<double>(d);
}
template <typename F>
double moe_combine_backward(const F* dy, const F* ye, const F* w, const F* slots, F* dye, F* dw, int64_t rows, int64_t d,
                            const MoeSpec& m) {
  for (int64_t t = 0; t < rows; ++t)
    for (int64_t j = 0; j < m.top_k; ++j) {
      const int64_t slot = static_cast<int64_t>(slots[t * m.top_k + j]);
      if (slot < 0) {
        dw[t * m.top_k + j] = F(0);
        continue;
      }
      const double wj = w[t * m.top_k + j];
      double dot = 0;
      for (int64_t c = 0; c < d; ++c) {
        dot += static_cast<double>(dy[t * d + c]) * ye[slot * d + c];
        dye[slot * d + c] = static_cast<F>(wj * dy[t * d + c]);
      }
      dw[t * m.top_k + j] = static_cast<F>(dot);
    }
  const int64_t used = moe_rows_used(slots, rows, m);
  std::fill(dye + used * d, dye + rows * m.top_k * d, F(0));
  return fc::kMoeCombineBwd * static_cast<double>(used) * static_cast<double>(d);
}

// The shared-expert gate (Qwen2-MoE): y[t] = sigmoid(g[t]) s[t]; s, y (rows, d), g (rows, 1).
// Backward: ds = sigmoid(g) dy, dg = sigmoid(g) (1 - sigmoid(g)) dy . s. In double per row.
template <typename F>
double moe_gate_forward(const F* s, const F* g, F* y, int64_t rows, int64_t d) {
  for (int64_t t = 0; t < rows; ++t) {
    const double sg = 1.0 / (1.0 + std::exp(-static_cast<double>(g[t])));
    for (int64_t c = 0; c < d; ++c) y[t * d + c] = static_cast<F>(sg * s[t * d + c]);
  }
  return (fc::kMoeGateFwdToken + fc::kMoeGateFwd * static_cast<double>(d)) * static_cast<double>(rows);
}

template <typename F>
double moe_gate_backward(const F* dy, const F* s, const F* g, F* ds, F* dg, int64_t rows, int64_t d) {
  for (int64_t t = 0; t < rows; ++t) {
    const double sg = 1.0 / (1.0 + std::exp(-static_cast<double>(g[t])));
    double dot = 0;
    for (int64_t c = 0; c < d; ++c) {
      dot += static_cast<double>(dy[t * d + c]) * s[t * d + c];
      ds[t * d + c] = static_cast<F>(sg * dy[t * d + c]);
    }
    dg[t] = static_cast<F>(sg * (1 - sg) * dot);
  }
  return (fc::kMoeGateBwdToken + fc::kMoeGateBwd * static_cast<double>(d)) * static_cast<double>(rows);
}

}  // namespace flopscope::ref
