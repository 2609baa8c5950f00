// flopscope's device kernels: every non-GEMM op of the layer graph, one kernel launch per op.
// Each kernel's maths and shapes are in the file that implements it (kernels/<op>.cu) and
// match the CPU reference in src/backend/cpu/reference_ops.hpp, which the GPU tests use as
// ground truth (computed in fp64).
//
// Conventions for every launcher:
//  - pointers are device pointers; tensors are row-major; element type given by `dtype`;
//  - layernorm statistics (mean, rstd) are float (double when dtype is f64);
//  - arithmetic accumulates in float (double for f64);
//  - all launches are asynchronous on `stream`; the return value is cudaGetLastError() after
//    the launch (argument errors return cudaErrorInvalidValue without launching);
//  - `workspace` (where taken) is device scratch of at least the size the matching
//    *_workspace_bytes() function returns.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

#include "moe.cuh"

namespace flopscope::kernels {

// e4m3: FP8 E4M3 (1 byte; src/util/fp8.hpp) is a storage type only: cast_e4m3 writes it and
// count_nonfinite reads it; every other launcher rejects it (cudaErrorInvalidValue).
enum class DType { f64, f32, f16, bf16, e4m3 };
size_t dtype_bytes(DType t);

// y = (x - mean) * rstd * gamma + beta per row; saves mean, rstd. x, y: (rows, cols).
cudaError_t layernorm_forward(DType t, const void* x, const void* gamma, const void* beta, void* y, void* mean,
                              void* rstd, int64_t rows, int64_t cols, cudaStream_t stream);
// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * gamma; dgamma = sum_r dy * xhat;
// dbeta = sum_r dy (overwritten). One launch: per-block partial column sums in `workspace`,
// the last block to finish reduces them. The workspace must be zeroed once before its first
// use (it holds the completion counters, which each launch leaves at zero again).
size_t layernorm_backward_workspace_bytes(int64_t rows, int64_t cols);
cudaError_t layernorm_backward(DType t, const void* dy, const void* x, const void* gamma, const void* mean,
                               const void* rstd, void* dx, void* dgamma, void* dbeta, int64_t rows, int64_t cols,
                               void* workspace, cudaStream_t stream);

// Causal softmax of each row i of each (n, n) slice: columns j <= i, zeros for j > i.
// scores, probs: (batch, n, n); the 1/sqrt(d_head) scale is already in the scores.
cudaError_t softmax_causal_forward(DType t, const void* scores, void* probs, int64_t batch, int64_t n,
                                   cudaStream_t stream);
// dscores = probs * (dprobs - rowsum(probs * dprobs)) for j <= i, 0 for j > i.
cudaError_t softmax_causal_backward(DType t, const void* probs, const void* dprobs, void* dscores, int64_t batch,
                                    int64_t n, cudaStream_t stream);

// GeLU, tanh approximation, over n elements; backward: dx = dy * gelu'(x).
cudaError_t gelu_forward(DType t, const void* x, void* y, int64_t n, cudaStream_t stream);
cudaError_t gelu_backward(DType t, const void* x, const void* dy, void* dx, int64_t n, cudaStream_t stream);

// x[r, j] += bias[j] in place; x: (rows, cols).
cudaError_t bias_add(DType t, void* x, const void* bias, int64_t rows, int64_t cols, cudaStream_t stream);
// dbias[j] = sum_r dy[r, j] (a column reduction, overwritten). One launch.
cudaError_t bias_grad(DType t, const void* dy, void* dbias, int64_t rows, int64_t cols, cudaStream_t stream);
// out = a + b over n elements (out may alias a or b).
cudaError_t residual_add(DType t, const void* a, const void* b, void* out, int64_t n, cudaStream_t stream);

// Softmax cross-entropy per row: loss[r] = logsumexp(z[r]) - z[r, target[r]].
// logits: (rows, vocab) of dtype; targets: int32 (rows); loss: (rows) of dtype.
cudaError_t cross_entropy_forward(DType t, const void* logits, const int32_t* targets, void* loss, int64_t rows,
                                  int64_t vocab, cudaStream_t stream);
// dlogits = (softmax(z) - onehot(target)) / rows. A target outside [0, vocab) gives NaN
// (forward and backward), never an out-of-bounds read.
cudaError_t cross_entropy_backward(DType t, const void* logits, const int32_t* targets, void* dlogits, int64_t rows,
                                   int64_t vocab, cudaStream_t stream);

// RMSNorm: y = x * rstd * gamma per row, rstd = 1 / sqrt(mean(x^2) + 1e-5) saved (float;
// double for f64). x, y: (rows, cols); gamma: (cols).
cudaError_t rmsnorm_forward(DType t, const void* x, const void* gamma, void* y, void* rstd, int64_t rows, int64_t cols,
                            cudaStream_t stream);
// dx = rstd * (g - xhat * mean(g * xhat)), g = dy * gamma, xhat = x * rstd; dgamma = sum_r dy * xhat
// (overwritten). Two launches (rows, then columns).
cudaError_t rmsnorm_backward(DType t, const void* dy, const void* x, const void* gamma, const void* rstd, void* dx,
                             void* dgamma, int64_t rows, int64_t cols, cudaStream_t stream);

// The causal softmax under a sliding window (window > 0) or chunks (chunk > 0), with sinks
// (sinks (heads) of dtype, slice b's head b % heads; sink_probs (batch, n) float, double for
// f64; both null: none) (kernels/softmax_masked.cu). Backward: dscores, and with sinks dsinks
// (heads, overwritten). NOT YET RUN ON A GPU.
cudaError_t softmax_masked_forward(DType t, const void* scores, const void* sinks, void* probs, void* sink_probs,
                                   int64_t batch, int64_t n, int64_t window, int64_t chunk, int64_t heads,
                                   cudaStream_t stream);
cudaError_t softmax_masked_backward(DType t, const void* probs, const void* dprobs, const void* sink_probs,
                                    void* dscores, void* dsinks, int64_t batch, int64_t n, int64_t window,
                                    int64_t chunk, int64_t heads, cudaStream_t stream);

// QK-norm (kernels/qk_norm.cu): an RMSNorm over each Q and K head of a (rows, kv_heads x
// (group + 2) x d_head) QKV tensor, gamma_q for the query heads and gamma_k for K (d_head each;
// both null: unweighted, Llama 4's L2Norm); V copied. rstd: (rows, kv_heads (group + 1)) float
// (double for f64). Backward: dx, and (weighted) dgamma_q, dgamma_k overwritten (null when
// unweighted). NOT YET RUN ON A GPU.
cudaError_t qk_norm_forward(DType t, const void* x, const void* gamma_q, const void* gamma_k, void* y, void* rstd,
                            int64_t rows, int64_t kv_heads, int64_t group, int64_t d_head, cudaStream_t stream);
cudaError_t qk_norm_backward(DType t, const void* dy, const void* x, const void* gamma_q, const void* gamma_k,
                             const void* rstd, void* dx, void* dgamma_q, void* dgamma_k, int64_t rows, int64_t kv_heads,
                             int64_t group, int64_t d_head, cudaStream_t stream);

// RoPE in place on the Q and K heads of a (rows, kv_heads x (group + 2) x d_head) QKV tensor,
// row t at position t / batch (kernels/rope.cu); backward rotates the gradients back.
cudaError_t rope_forward(DType t, void* qkv, int64_t rows, int64_t batch, int64_t kv_heads, int64_t group,
                         int64_t d_head, double theta, cudaStream_t stream);
cudaError_t rope_backward(DType t, void* dqkv, int64_t rows, int64_t batch, int64_t kv_heads, int64_t group,
                          int64_t d_head, double theta, cudaStream_t stream);
// RoPE on any layout of graph.hpp's RopeSpec: x (rows, blocks x block), in each block `rotated`
// heads of d_head from `offset` rotate (MLA: the rope part of each q head; k_rope).
cudaError_t rope_layout(DType t, void* x, int64_t rows, int64_t batch, int64_t blocks, int64_t rotated, int64_t block,
                        int64_t offset, int64_t d_head, double theta, bool backward, cudaStream_t stream);

// Multi-head latent attention's assembly (kernels/mla_qkv.cu): qkv (rows, heads (2 (nope + rope)
// + v)), per head [q_h, k_nope_h, k_rope, v_h], from q (rows, heads (nope + rope)), kv_b (rows,
// heads (nope + v)) and k_rope (rows, rope); backward: the slots back, dk_rope the sum over heads.
cudaError_t mla_qkv_forward(DType t, const void* q, const void* kv_b, const void* k_rope, void* qkv, int64_t rows,
                            int64_t heads, int64_t nope, int64_t rope, int64_t v, cudaStream_t stream);
cudaError_t mla_qkv_backward(DType t, const void* dqkv, void* dq, void* dkv_b, void* dk_rope, int64_t rows,
                             int64_t heads, int64_t nope, int64_t rope, int64_t v, cudaStream_t stream);

// A mixture of experts' router and token movement (kernels/moe.cu; the rule: moe.cuh). Expert
// ids, slots and counts are float (statistics storage); the rest of type `t`. route_forward
// writes experts, weights (rows, k), slots (rows, k) and counts (E); experts <= 512, k <= 32.
cudaError_t moe_route_forward(DType t, const void* logits, float* experts, void* weights, float* slots, float* counts,
                              int64_t rows, const detail::MoeRule& m, cudaStream_t stream);
cudaError_t moe_route_backward(DType t, const void* logits, const float* experts, const void* weights,
                               const void* dweights, const float* counts, void* dlogits, int64_t rows,
                               const detail::MoeRule& m, cudaStream_t stream);
cudaError_t moe_dispatch_forward(DType t, const void* x, const float* slots, void* xe, int64_t rows, int64_t d, int k,
                                 cudaStream_t stream);
cudaError_t moe_dispatch_backward(DType t, const void* dxe, const float* slots, void* dx, int64_t rows, int64_t d, int k,
                                  cudaStream_t stream);
cudaError_t moe_combine_forward(DType t, const void* ye, const void* w, const float* slots, void* y, int64_t rows,
                                int64_t d, int k, cudaStream_t stream);
cudaError_t moe_combine_backward(DType t, const void* dy, const void* ye, const void* w, const float* slots, void* dye,
                                 void* dw, int64_t rows, int64_t d, int k, cudaStream_t stream);
// The shared-expert gate (Qwen2-MoE): y = sigmoid(g) s over (rows, d), g (rows, 1); backward
// ds = sigmoid(g) dy, dg = sigmoid(g) (1 - sigmoid(g)) dy . s.
cudaError_t moe_gate_forward(DType t, const void* s, const void* g, void* y, int64_t rows, int64_t d, cudaStream_t stream);
cudaError_t moe_gate_backward(DType t, const void* dy, const void* s, const void* g, void* ds, void* dg, int64_t rows,
                              int64_t d, cudaStream_t stream);

// SwiGLU over n elements: h = silu(gate) * up; backward: dup = dh * silu(gate),
// dgate = dh * up * sigmoid(gate) * (1 + gate * (1 - sigmoid(gate))).
cudaError_t swiglu_forward(DType t, const void* gate, const void* up, void* h, int64_t n, cudaStream_t stream);
cudaError_t swiglu_backward(DType t, const void* gate, const void* up, const void* dh, void* dgate, void* dup,
                            int64_t n, cudaStream_t stream);

// ReLU over n elements: y = max(x, 0); backward: dx = x > 0 ? dy : 0.
cudaError_t relu_forward(DType t, const void* x, void* y, int64_t n, cudaStream_t stream);
cudaError_t relu_backward(DType t, const void* x, const void* dy, void* dx, int64_t n, cudaStream_t stream);

// Seeded fill: out[i] = offset + scale * uniform_pm1(seed, stream_id, i) (src/util/random_fill.hpp).
cudaError_t fill_uniform(DType t, void* out, int64_t n, uint64_t seed, uint64_t stream_id, double offset,
                         double scale, cudaStream_t stream);
// Integer indices in [0, count): floor(count * (uniform_pm1 + 1) / 2), clamped.
cudaError_t fill_indices(int32_t* out, int64_t n, uint64_t seed, uint64_t stream_id, int64_t count,
                         cudaStream_t stream);
// Counts elements that are not finite (NaN or infinity) into *count (a device int64, added to).
// e4m3 has no infinities: its NaN codes 0x7F and 0xFF are counted.
cudaError_t count_nonfinite(DType t, const void* x, int64_t n, unsigned long long* count, cudaStream_t stream);

// Casts a (rows, cols) row-major tensor x of dtype t (f32, f16 or bf16) to FP8 E4M3:
// q = e4m3(float(x) * scale[0]), round to nearest even, finite values saturated to +-448, NaN
// to a NaN code (src/util/fp8.hpp's e4m3_from_float is the host model, bit for bit).
// transpose = false: out is (rows, cols); true: out is (cols, rows), out[j * rows + i] = q(x[i * cols + j]).
// scale: one device float. amax (may be null): one device float holding a non-negative value
// (or +0), raised atomically to max |x| over the tensor (unscaled); a NaN in x makes it a NaN
// (NaN propagates: compared as bits, every NaN is above +inf). x aligned to its element size,
// scale and amax to 4 bytes; 16-byte loads and 8/16-byte stores where the addresses allow.
cudaError_t cast_e4m3(DType t, const void* x, void* out, int64_t rows, int64_t cols, bool transpose, const float* scale,
                      float* amax, cudaStream_t stream);

}  // namespace flopscope::kernels
