// A mixture of experts' route, one token at a time, shared by the kernels (kernels/moe.cu) and
// the host emulation test (tests/test_kernel_emulation.cpp), which runs this code on the CPU
// and compares it with ref::moe_route_row and ref::moe_route_backward_row. The rule is theirs
// line for line (graph.hpp, MoeSpec), in double, with fixed-size scratch instead of vectors.
// __host__ __device__, no device-only calls.
#pragma once

#include <cmath>
#include <cstdint>

#include <cuda_runtime.h>

namespace flopscope::kernels::detail {

inline constexpr int kMoeMaxExperts = 512;
inline constexpr int kMoeMaxTopK = 32;
inline constexpr int kMoeMaxGroups = 64;  // DeepSeek's n_group (8 in V3)

// The router's rule as plain values (graph.hpp, MoeSpec).
struct MoeRule {
  int experts = 0, top_k = 0, n_group = 0, topk_group = 0;
  bool sigmoid = false, topk_first = false, norm_topk = false;
  double aux_coef = 0;
  double scale = 1;  // the k weights x scale, after any renormalisation
};

__host__ __device__ inline double moe_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

// Softmax of z (E) into s, in order (max, then the exponentials summed in index order).
__host__ __device__ inline void moe_softmax(const double* z, int E, double* s) {
  double mx = z[0], sum = 0;
  for (int e = 1; e < E; ++e) mx = z[e] > mx ? z[e] : mx;
  for (int e = 0; e < E; ++e) sum += (s[e] = exp(z[e] - mx));
  for (int e = 0; e < E; ++e) s[e] /= sum;
}

// One token: z (E logits) -> experts (k, best first, ties to the lower index) and weights.
// s: scratch of E; allowed: scratch of E.
__host__ __device__ inline void moe_route_row(const double* z, const MoeRule& m, double* s, unsigned char* allowed,
                                              int* experts, double* weights) {
  const int E = m.experts, k = m.top_k;
  if (!m.topk_first) {
    if (m.sigmoid) {
      for (int e = 0; e < E; ++e) s[e] = moe_sigmoid(z[e]);
    } else {
      moe_softmax(z, E, s);
    }
  }
  const double* sel = m.topk_first ? z : s;
  for (int e = 0; e < E; ++e) allowed[e] = 1;
  if (m.n_group > 0 && !m.topk_first) {
    const int per = E / m.n_group;
    double score[kMoeMaxGroups];
    unsigned char keep[kMoeMaxGroups];
    for (int gi = 0; gi < m.n_group; ++gi) {
      double a = -HUGE_VAL, b = -HUGE_VAL;
      for (int e = gi * per; e < (gi + 1) * per; ++e) {
        if (sel[e] > a) {
          b = a;
          a = sel[e];
        } else if (sel[e] > b) {
          b = sel[e];
        }
      }
      score[gi] = per > 1 ? a + b : a;
      keep[gi] = 0;
    }
    for (int c = 0; c < m.topk_group; ++c) {
      int best = -1;
      for (int gi = 0; gi < m.n_group; ++gi)
        if (!keep[gi] && (best < 0 || score[gi] > score[best])) best = gi;
      keep[best] = 1;
    }
    for (int e = 0; e < E; ++e) allowed[e] = keep[e / per];
  }
  for (int j = 0; j < k; ++j) {
    int best = -1;
    for (int e = 0; e < E; ++e)
      if (allowed[e] && (best < 0 || sel[e] > sel[best])) best = e;
    experts[j] = best;
    allowed[best] = 0;
  }
  if (m.topk_first) {
    if (m.sigmoid) {
      for (int j = 0; j < k; ++j) weights[j] = moe_sigmoid(z[experts[j]]);
    } else {
      double sum = 0;
      const double mx = z[experts[0]];
      for (int j = 0; j < k; ++j) sum += (weights[j] = exp(z[experts[j]] - mx));
      for (int j = 0; j < k; ++j) weights[j] /= sum;
    }
  } else {
    for (int j = 0; j < k; ++j) weights[j] = s[experts[j]];
  }
  if (m.norm_topk && !(m.topk_first && !m.sigmoid)) {
    double sum = 0;
    for (int j = 0; j < k; ++j) sum += weights[j];
    for (int j = 0; j < k; ++j) weights[j] /= sum;
  }
  if (m.scale != 1)
    for (int j = 0; j < k; ++j) weights[j] *= m.scale;
}

// One token's logits' gradient dz (E) from its logits z, experts, weights w and their gradient
// dw (k), and the counts (E) of all `rows` tokens (the aux loss; read in place, float on the
// device); the weights before the scale are w / scale, their gradient dw x scale. s: scratch of E.
template <typename C>
__host__ __device__ inline void moe_route_backward_row(const double* z, const int* experts, const double* w_scaled,
                                                       const double* dw_scaled, const C* counts, int64_t rows,
                                                       const MoeRule& m, double* s, double* dz) {
  const int E = m.experts, k = m.top_k;
  for (int e = 0; e < E; ++e) dz[e] = 0;
  double w[kMoeMaxTopK], dw[kMoeMaxTopK];
  for (int j = 0; j < k; ++j) w[j] = w_scaled[j] / m.scale, dw[j] = dw_scaled[j] * m.scale;
  const bool renorm = m.norm_topk && !(m.topk_first && !m.sigmoid);
  double dot = 0;
  for (int j = 0; j < k; ++j) dot += dw[j] * w[j];
  if (m.topk_first && !m.sigmoid) {
    for (int j = 0; j < k; ++j) dz[experts[j]] += w[j] * (dw[j] - dot);
  } else if (m.sigmoid) {
    double psum = 0;
    if (renorm)
      for (int j = 0; j < k; ++j) psum += moe_sigmoid(z[experts[j]]);
    for (int j = 0; j < k; ++j) {
      const double sg = moe_sigmoid(z[experts[j]]);
      const double d = renorm ? (dw[j] - dot) / psum : dw[j];
      dz[experts[j]] += d * sg * (1 - sg);
    }
  } else {
    moe_softmax(z, E, s);
    double ssum = 0;
    for (int j = 0; j < k; ++j) ssum += s[experts[j]];
    double ds[kMoeMaxTopK];
    for (int j = 0; j < k; ++j) ds[j] = renorm ? (dw[j] - dot) / ssum : dw[j];
    double sd = 0;
    for (int j = 0; j < k; ++j) sd += ds[j] * s[experts[j]];
    for (int e = 0; e < E; ++e) dz[e] += -s[e] * sd;
    for (int j = 0; j < k; ++j) dz[experts[j]] += s[experts[j]] * ds[j];
  }
  if (m.aux_coef > 0) {
    moe_softmax(z, E, s);
    const double R = static_cast<double>(rows), scale = m.aux_coef * E / (R * R);
    double gp = 0;
    for (int e = 0; e < E; ++e) gp += scale * static_cast<double>(counts[e]) * s[e];
    for (int e = 0; e < E; ++e) dz[e] += s[e] * (scale * static_cast<double>(counts[e]) - gp);
  }
}

}  // namespace flopscope::kernels::detail
