// The CPU backend's non-GEMM ops as they run and are timed: the maths of reference_ops.hpp
// (which stays the plain fp64 reference verification compares against), threaded over rows
// with parallel.hpp and written so the compiler vectorises them. fp32 runs an AVX2 + FMA build
// of each row kernel when the CPU has them (chosen at run time; the shipped flags stay
// x86-64), else the same code at the baseline ISA.
//
// fp32 differs from the reference in these ways, all well inside verify_tolerance(fp32) = 1e-4:
//  - exp is a range-reduced degree-6 polynomial (relative error about 2e-7 on [-60, 60]; below
//    -60 it gives exp(-60) = 8.7e-27, which keeps every result a normal float) and GeLU's
//    0.5 (1 + tanh(u)) comes from it as the sigmoid 1 / (1 + exp(-2u)), SwiGLU's as
//    1 / (1 + exp(-g));
//  - row sums accumulate in 16 float partial sums (column reductions in double, as the
//    reference does);
//  - arithmetic is in float where the reference's is in double (RMSNorm, RoPE's rotation).
// fp64 uses std::exp and std::tanh, threaded the same way. RoPE's cos and sin (both precisions)
// come once per position from a vectorised double sincos that agrees with std::cos, std::sin
// to about 1e-16 (fast_ops.cpp, rope_cos_sin). The fp8 cast is bit for bit ref::cast_fp8.
//
// Shapes, in-place rules and the FLOPs returned are those of the reference op of the same name.
#pragma once

#include <cstdint>

namespace flopscope {
struct RopeSpec;  // graph/graph.hpp
struct MlaSpec;   // graph/graph.hpp
}

namespace flopscope::cpu {

// The CPU features the fp32 kernels use: "avx2+fma" or "baseline x86-64 (SSE2)".
const char* fast_ops_isa();

template <typename F>
double layernorm_forward(const F* x, const F* gamma, const F* beta, F* y, F* mean, F* rstd, int64_t rows, int64_t cols);
template <typename F>
double layernorm_backward(const F* dy, const F* x, const F* gamma, const F* mean, const F* rstd, F* dx, F* dgamma,
                          F* dbeta, int64_t rows, int64_t cols);
// (batch, n, n) scores -> probs; row i touches columns 0..i and writes zeros after them.
template <typename F>
double softmax_causal_forward(const F* scores, F* probs, int64_t batch, int64_t n);
template <typename F>
double softmax_causal_backward(const F* probs, const F* dprobs, F* dscores, int64_t batch, int64_t n);
template <typename F>
double gelu_forward(const F* x, F* y, int64_t n);
template <typename F>
double gelu_backward(const F* x, const F* dy, F* dx, int64_t n);
template <typename F>
double bias_add(F* x, const F* bias, int64_t rows, int64_t cols);
template <typename F>
double bias_grad(const F* dy, F* dbias, int64_t rows, int64_t cols);
template <typename F>
double residual_add(const F* a, const F* b, F* out, int64_t n);
// targets hold class ids stored as F (the backend's index tensors).
template <typename F>
double cross_entropy_forward(const F* logits, const F* targets, F* loss, int64_t rows, int64_t vocab);
template <typename F>
double cross_entropy_backward(const F* logits, const F* targets, F* dlogits, int64_t rows, int64_t vocab);

// The Llama-family ops (and OPT's ReLU).
template <typename F>
double rmsnorm_forward(const F* x, const F* gamma, F* y, F* rstd, int64_t rows, int64_t cols);
template <typename F>
double rmsnorm_backward(const F* dy, const F* x, const F* gamma, const F* rstd, F* dx, F* dgamma, int64_t rows,
                        int64_t cols);
// In place on a (rows, cols) qkv tensor; rows threaded.
template <typename F>
double rope(F* x, int64_t rows, int64_t cols, const RopeSpec& r, bool backward);
template <typename F>
double swiglu_forward(const F* gate, const F* up, F* h, int64_t n);
template <typename F>
double swiglu_backward(const F* gate, const F* up, const F* dh, F* dgate, F* dup, int64_t n);
template <typename F>
double relu_forward(const F* x, F* y, int64_t n);
template <typename F>
double relu_backward(const F* x, const F* dy, F* dx, int64_t n);

// Multi-head latent attention: qkv (rows, MlaSpec::qkv_width) from q, kv_b and k_rope, and back
// (dk_rope summed over the heads); rows threaded.
template <typename F>
double mla_qkv_forward(const F* q, const F* kv_b, const F* k_rope, F* qkv, int64_t rows, const MlaSpec& m);
template <typename F>
double mla_qkv_backward(const F* dqkv, F* dq, F* dkv_b, F* dk_rope, int64_t rows, const MlaSpec& m);

// fp8 emulation: y = e4m3(x * scale) / scale over a (rows, cols) x, y (rows, cols) or, with
// transpose, (cols, rows). Returns the largest |x| seen (for delayed scaling).
template <typename F>
float cast_fp8(const F* x, F* y, int64_t rows, int64_t cols, bool transpose, float scale);

}  // namespace flopscope::cpu
