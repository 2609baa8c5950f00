#include "backend/verify.hpp"

#include <algorithm>
#include <cmath>
#include <set>

#include <fmt/format.h>

#include "backend/cpu/reference_ops.hpp"
#include "util/error.hpp"
#include "util/fp8.hpp"
#include "util/random_fill.hpp"
#include "util/signals.hpp"

namespace flopscope {

using nlohmann::json;

double verify_tolerance(Precision p, bool gemm) {
  switch (p) {
    case Precision::fp64: return gemm ? 1e-12 : 1e-10;
    case Precision::fp32: return 1e-4;   // fp32 accumulation over k up to 49152
    case Precision::tf32: return gemm ? 5e-3 : 1e-4;  // 10-bit mantissa products; kernels in fp32
    case Precision::fp16: return gemm ? 5e-3 : 1e-2;
    case Precision::bf16: return 2e-2;   // 8-bit mantissa outputs (2^-8 = 3.9e-3) plus accumulation
    // FP8 GEMMs are checked against the E4M3 values they read (the copies), so only the fp32
    // accumulation and the bf16 output round; the casts themselves must be exact.
    case Precision::fp8: return gemm ? 2e-2 : 1e-6;
  }
  return 1e-2;
}

double verify_abs_floor(Precision p) {
  switch (p) {
    case Precision::fp16: return std::ldexp(1.0, -24);   // fp16's subnormal spacing
    case Precision::bf16:                                 // bf16 outputs (fp8 GEMMs write bf16 too)
    case Precision::fp8: return std::ldexp(1.0, -133);
    case Precision::tf32:
    case Precision::fp32: return std::ldexp(1.0, -149);
    case Precision::fp64: return 0.0;
  }
  return 0.0;
}

namespace {

// Records the largest relative error, beyond the absolute floor, of one op's checked values.
class Check {
 public:
  explicit Check(double floor) : floor_(floor) {}
  void compare(const std::vector<double>& out, const std::vector<double>& ref) {
    double scale = 0, diff = 0;
    for (size_t i = 0; i < ref.size(); ++i) scale = std::max(scale, std::fabs(ref[i]));
    for (size_t i = 0; i < out.size(); ++i) {
      if (!std::isfinite(out[i])) nonfinite_ = true;
      diff = std::max(diff, std::fabs(out[i] - ref[i]));
    }
    samples_ += static_cast<int64_t>(out.size());
    const double beyond = std::max(0.0, diff - floor_);
    if (scale > 0 || beyond > 0) {
      const double e = beyond / std::max(scale, 1e-300);
      if (e >= err_) {
        err_ = e;
        worst_diff_ = diff;
        worst_scale_ = scale;
      }
    }
  }
  json result(const Op& op, double tol) const {
    const bool ok = !nonfinite_ && err_ <= tol;
    return {{"name", op.name},
            {"max_rel_error", nonfinite_ ? json(nullptr) : json(err_)},
            {"tolerance", tol},
            {"abs_floor", floor_},
            {"max_abs_error", nonfinite_ ? json(nullptr) : json(worst_diff_)},
            {"scale", worst_scale_},
            {"samples", samples_},
            {"nonfinite", nonfinite_},
            {"passed", ok}};
  }

 private:
  double floor_;
  double err_ = 0, worst_diff_ = 0, worst_scale_ = 0;
  int64_t samples_ = 0;
  bool nonfinite_ = false;
};

// Rows of an op to check: first, middle, last.
std::vector<int64_t> sample_rows(int64_t rows) {
  std::set<int64_t> s = {0, rows / 2, rows - 1};
  return {s.begin(), s.end()};
}

json check_gemm(Backend& b, const Op& op, double tol) {
  const GemmSpec& g = op.gemm;
  // One sampled output element C[bb, r](i, j). Repeats that write the same element (a C the
  // repeats sum into: repeat_c = 0) all contribute, in order: beta for r = 0, repeat_beta after.
  struct Sample {
    int64_t bb, i, j, r;
    std::vector<std::vector<double>> a, b;  // per contributing repeat
    std::vector<int64_t> reps;
    double c_prev = 0;
  };
  const int64_t last_rep = g.repeat - 1;
  std::vector<Sample> samples = {{0, 0, 0, 0, {}, {}, {}}, {g.batch - 1, g.m - 1, g.n - 1, last_rep, {}, {}, {}},
                                 {g.batch / 2, g.m / 2, g.n / 2, g.repeat / 2, {}, {}, {}}};
  const uint64_t stream = stream_id(op.name);
  for (uint64_t s = 0; s < 13; ++s) {
    auto pick = [&](uint64_t k, int64_t n) {
      return std::min<int64_t>(n - 1, static_cast<int64_t>((uniform_pm1(99, stream, 3 * s + k) + 1) / 2 * static_cast<double>(n)));
    };
    // The repeat index reuses the batch draw's stream slot so GPT-3's samples stay as they were.
    const int64_t bb = pick(0, g.batch);
    samples.push_back({bb, pick(1, g.m), pick(2, g.n), g.repeat > 1 ? (bb + static_cast<int64_t>(s)) % g.repeat : 0,
                       {}, {}, {}});
  }
  auto c_index = [&](const Sample& s) {
    return g.c_offset + s.r * g.repeat_c + s.bb * g.stride_c + s.i * g.ldc + s.j;
  };
  for (auto& s : samples) {
    if (g.repeat_c == 0 && g.repeat > 1) {
      for (int64_t r = 0; r < g.repeat; ++r) s.reps.push_back(r);
    } else {
      s.reps.push_back(s.r);
    }
    for (int64_t r : s.reps) {
      // Row i of op(A) and column j of op(B), in element offsets of the stored matrices.
      const int64_t a0 = g.a_offset + r * g.repeat_a + s.bb * g.stride_a, b0 = g.b_offset + r * g.repeat_b + s.bb * g.stride_b;
      s.a.push_back(g.trans_a ? b.read(g.a, a0 + s.i, g.k, g.lda) : b.read(g.a, a0 + s.i * g.lda, g.k, 1));
      s.b.push_back(g.trans_b ? b.read(g.b, b0 + s.j * g.ldb, g.k, 1) : b.read(g.b, b0 + s.j, g.k, g.ldb));
    }
    const double first_beta = s.reps.front() == 0 ? g.beta : g.repeat_beta;
    if (first_beta != 0) s.c_prev = b.read(g.c, c_index(s), 1)[0];
  }
  b.run(op);
  b.synchronize();
  std::vector<double> out, ref;
  // A blocked c_lower product (GemmSpec::blocked) writes 0 where its row block skips.
  auto skipped = [&](const Sample& s) {
    if (!g.blocked() || g.triangle != Triangle::c_lower) return false;
    const int64_t r0 = s.i / g.causal_block * g.causal_block;
    const GemmSpec::Block bl = g.block(r0, std::min(r0 + g.causal_block, g.m));
    return s.j >= bl.n_end || s.j < bl.n0;
  };
  for (const auto& s : samples) {
    if (skipped(s)) {
      ref.push_back(0.0);
      out.push_back(b.read(g.c, c_index(s), 1)[0]);
      continue;
    }
    double c = s.c_prev;
    for (size_t q = 0; q < s.reps.size(); ++q) {
      double dot = 0;
      for (int64_t k = 0; k < g.k; ++k) dot += s.a[q][static_cast<size_t>(k)] * s.b[q][static_cast<size_t>(k)];
      const double beta = s.reps[q] == 0 ? g.beta : g.repeat_beta;
      c = g.alpha * dot + (beta != 0 ? beta * c : 0.0);
    }
    ref.push_back(c);
    out.push_back(b.read(g.c, c_index(s), 1)[0]);
  }
  Check c(verify_abs_floor(op.precision));
  c.compare(out, ref);
  return c.result(op, tol);
}

// Row r of a (rows, cols) tensor.
std::vector<double> row(Backend& b, const std::string& t, int64_t r, int64_t cols) { return b.read(t, r * cols, cols); }
// Column j of a (rows, cols) tensor.
std::vector<double> col(Backend& b, const std::string& t, int64_t j, int64_t rows, int64_t cols) {
  return b.read(t, j, rows, cols);
}

json check_rows(Backend& b, const Op& op, double tol) {
  const int64_t cols = op.cols, rows = op.batch * op.rows;
  const auto& in = op.inputs;
  const auto& out = op.outputs;
  const std::vector<int64_t> rs = sample_rows(rows);
  const std::vector<int64_t> cs = sample_rows(cols);
  // Inputs, read before the op runs (bias_add works in place).
  std::vector<std::vector<std::vector<double>>> pre(rs.size());
  std::vector<double> whole_gamma, whole_beta, mean_all, rstd_all;
  std::vector<std::vector<double>> col_dy, col_x;
  for (size_t k = 0; k < rs.size(); ++k) {
    const int64_t r = rs[k];
    switch (op.impl) {
      case OpImpl::layernorm_bwd:
        pre[k] = {row(b, in[0], r, cols), row(b, in[1], r, cols), b.read(in[3], r, 1), b.read(in[4], r, 1)};
        break;
      case OpImpl::cross_entropy_fwd:
      case OpImpl::cross_entropy_bwd:
        pre[k] = {row(b, in[0], r, cols), b.read(in[1], r, 1)};
        break;
      case OpImpl::bias_grad: break;
      case OpImpl::moe_gate_fwd: pre[k] = {row(b, in[0], r, cols), b.read(in[1], r, 1)}; break;
      case OpImpl::moe_gate_bwd:
        pre[k] = {row(b, in[0], r, cols), row(b, in[1], r, cols), b.read(in[2], r, 1)};
        break;
      case OpImpl::rmsnorm_bwd:
        pre[k] = {row(b, in[0], r, cols), row(b, in[1], r, cols), b.read(in[3], r, 1)};
        break;
      case OpImpl::swiglu_bwd:
        pre[k] = {row(b, in[0], r, cols), row(b, in[1], r, cols), row(b, in[2], r, cols)};
        break;
      case OpImpl::mla_qkv_fwd:  // the token's rows of q, kv_b and k_rope
        pre[k] = {row(b, in[0], r, op.mla.q_width()), row(b, in[1], r, op.mla.kv_b_width()),
                  row(b, in[2], r, op.mla.rope)};
        break;
      default:
        pre[k].push_back(row(b, in[0], r, cols));
        if (in.size() > 1 && op.impl != OpImpl::bias_add && op.impl != OpImpl::layernorm_fwd &&
            op.impl != OpImpl::rmsnorm_fwd)
          pre[k].push_back(row(b, in[1], r, cols));
        break;
    }
  }
  if (op.impl == OpImpl::layernorm_fwd) {
    whole_gamma = b.read(in[1], 0, cols);
    whole_beta = b.read(in[2], 0, cols);
  }
  if (op.impl == OpImpl::layernorm_bwd) {
    whole_gamma = b.read(in[2], 0, cols);
    mean_all = b.read(in[3], 0, rows);
    rstd_all = b.read(in[4], 0, rows);
    for (int64_t j : cs) {
      col_dy.push_back(col(b, in[0], j, rows, cols));
      col_x.push_back(col(b, in[1], j, rows, cols));
    }
  }
  if (op.impl == OpImpl::rmsnorm_fwd) whole_gamma = b.read(in[1], 0, cols);
  if (op.impl == OpImpl::rmsnorm_bwd) {
    whole_gamma = b.read(in[2], 0, cols);
    rstd_all = b.read(in[3], 0, rows);
    for (int64_t j : cs) {
      col_dy.push_back(col(b, in[0], j, rows, cols));
      col_x.push_back(col(b, in[1], j, rows, cols));
    }
  }
  // The routed experts' biases (expert_bias_op): row r takes the bias row of the expert whose rows
  // hold it; rows past the counts' sum (dropped) are left as they are.
  const bool grouped = expert_bias_op(op);
  GemmSpec::Groups gr;
  auto expert_of = [&](int64_t r) -> int64_t {
    for (size_t e = 0; e < gr.rows.size(); ++e)
      if (r >= gr.first[e] && r < gr.first[e] + gr.rows[e]) return static_cast<int64_t>(e);
    return -1;
  };
  if (grouped) {
    gr = expert_groups(b.read(in.back(), 0, op.moe.experts), op.moe.experts, rows, true, op.name);
  }
  if (op.impl == OpImpl::bias_add)
    whole_beta = b.read(in[1], 0, grouped ? static_cast<int64_t>(gr.rows.size()) * cols : cols);
  if (op.impl == OpImpl::bias_grad)
    for (int64_t j : cs) col_dy.push_back(col(b, in[0], j, rows, cols));

  b.run(op);
  b.synchronize();

  Check c(verify_abs_floor(op.precision));
  for (size_t k = 0; k < rs.size(); ++k) {
    const int64_t r = rs[k];
    const auto& p = pre[k];
    std::vector<double> ref(static_cast<size_t>(cols));
    switch (op.impl) {
      case OpImpl::layernorm_fwd: {
        double mean = 0, rstd = 0;
        ref::layernorm_forward(p[0].data(), whole_gamma.data(), whole_beta.data(), ref.data(), &mean, &rstd, 1, cols);
        c.compare(row(b, out[0], r, cols), ref);
        c.compare(b.read(out[1], r, 1), {mean});
        c.compare(b.read(out[2], r, 1), {rstd});
        break;
      }
      case OpImpl::layernorm_bwd: {
        std::vector<double> dg(static_cast<size_t>(cols)), db(static_cast<size_t>(cols));
        ref::layernorm_backward(p[0].data(), p[1].data(), whole_gamma.data(), p[2].data(), p[3].data(), ref.data(),
                                dg.data(), db.data(), 1, cols);
        c.compare(row(b, out[0], r, cols), ref);
        break;
      }
      case OpImpl::softmax_causal_fwd:
        ref::softmax_causal_row_forward(p[0].data(), ref.data(), r % op.rows, cols);
        c.compare(row(b, out[0], r, cols), ref);
        break;
      case OpImpl::softmax_causal_bwd:
        ref::softmax_causal_row_backward(p[0].data(), p[1].data(), ref.data(), r % op.rows, cols);
        c.compare(row(b, out[0], r, cols), ref);
        break;
      case OpImpl::gelu_fwd:
        ref::gelu_forward(p[0].data(), ref.data(), cols);
        c.compare(row(b, out[0], r, cols), ref);
        break;
      case OpImpl::gelu_bwd:
        ref::gelu_backward(p[0].data(), p[1].data(), ref.data(), cols);
        c.compare(row(b, out[0], r, cols), ref);
        break;
      case OpImpl::bias_add: {
        ref = p[0];
        const int64_t e = grouped ? expert_of(r) : 0;
        if (e >= 0) ref::bias_add(ref.data(), whole_beta.data() + e * cols, 1, cols);
        c.compare(row(b, out[0], r, cols), ref);
        break;
      }
      case OpImpl::residual_add:
        ref::residual_add(p[0].data(), p[1].data(), ref.data(), cols);
        c.compare(row(b, out[0], r, cols), ref);
        break;
      case OpImpl::moe_gate_fwd:
        ref::moe_gate_forward(p[0].data(), p[1].data(), ref.data(), 1, cols);
        c.compare(row(b, out[0], r, cols), ref);
        break;
      case OpImpl::moe_gate_bwd: {
        double dg = 0;
        ref::moe_gate_backward(p[0].data(), p[1].data(), p[2].data(), ref.data(), &dg, 1, cols);
        c.compare(row(b, out[0], r, cols), ref);
        c.compare(b.read(out[1], r, 1), {dg});
        break;
      }
      case OpImpl::cross_entropy_fwd: {
        double loss = 0;
        ref::cross_entropy_forward(p[0].data(), p[1].data(), &loss, 1, cols);
        c.compare(b.read(out[0], r, 1), {loss});
        break;
      }
      case OpImpl::cross_entropy_bwd:
        ref::cross_entropy_backward(p[0].data(), p[1].data(), ref.data(), 1, cols, rows);
        c.compare(row(b, out[0], r, cols), ref);
        break;
      case OpImpl::cast_fp8: {
        // Exactly the E4M3 value of x * scale, read back as what it stands for (/ scale).
        const auto scale = static_cast<float>(b.fp8_scale(out[0]));
        for (size_t j = 0; j < ref.size(); ++j)
          ref[j] = static_cast<double>(fp8::e4m3_quantize(static_cast<float>(p[0][j]), scale)) / scale;
        // Member r / op.rows of a batch of (op.rows, cols) casts; its row r % op.rows.
        const int64_t member = r / op.rows, rr = r % op.rows, base = member * op.rows * cols;
        c.compare(op.transpose ? b.read(out[0], base + rr, cols, op.rows) : row(b, out[0], r, cols), ref);
        break;
      }
      case OpImpl::rmsnorm_fwd: {
        double rstd = 0;
        ref::rmsnorm_forward(p[0].data(), whole_gamma.data(), ref.data(), &rstd, 1, cols);
        c.compare(row(b, out[0], r, cols), ref);
        c.compare(b.read(out[1], r, 1), {rstd});
        break;
      }
      case OpImpl::rmsnorm_bwd: {
        std::vector<double> dg(static_cast<size_t>(cols));
        ref::rmsnorm_backward(p[0].data(), p[1].data(), whole_gamma.data(), p[2].data(), ref.data(), dg.data(), 1,
                              cols);
        c.compare(row(b, out[0], r, cols), ref);
        break;
      }
      case OpImpl::rope_fwd:
      case OpImpl::rope_bwd:
        ref = p[0];
        ref::rope_row(ref.data(), r / op.rope.batch, op.rope, op.impl == OpImpl::rope_bwd);
        c.compare(row(b, out[0], r, cols), ref);
        break;
      case OpImpl::swiglu_fwd:
        ref::swiglu_forward(p[0].data(), p[1].data(), ref.data(), cols);
        c.compare(row(b, out[0], r, cols), ref);
        break;
      case OpImpl::swiglu_bwd: {
        std::vector<double> dup(static_cast<size_t>(cols));
        ref::swiglu_backward(p[0].data(), p[1].data(), p[2].data(), ref.data(), dup.data(), cols);
        c.compare(row(b, out[0], r, cols), ref);
        c.compare(row(b, out[1], r, cols), dup);
        break;
      }
      case OpImpl::relu_fwd:
        ref::relu_forward(p[0].data(), ref.data(), cols);
        c.compare(row(b, out[0], r, cols), ref);
        break;
      case OpImpl::relu_bwd:
        ref::relu_backward(p[0].data(), p[1].data(), ref.data(), cols);
        c.compare(row(b, out[0], r, cols), ref);
        break;
      case OpImpl::mla_qkv_fwd:
        ref::mla_qkv_forward_row(p[0].data(), p[1].data(), p[2].data(), ref.data(), op.mla);
        c.compare(row(b, out[0], r, cols), ref);
        break;
      case OpImpl::mla_qkv_bwd: {
        std::vector<double> dq(static_cast<size_t>(op.mla.q_width())), dkv(static_cast<size_t>(op.mla.kv_b_width())),
            dk(static_cast<size_t>(op.mla.rope));
        ref::mla_qkv_backward_row(p[0].data(), dq.data(), dkv.data(), dk.data(), op.mla);
        c.compare(row(b, out[0], r, op.mla.q_width()), dq);
        c.compare(row(b, out[1], r, op.mla.kv_b_width()), dkv);
        c.compare(row(b, out[2], r, op.mla.rope), dk);
        break;
      }
      case OpImpl::moe_route_fwd:
      case OpImpl::moe_route_bwd:
      case OpImpl::moe_dispatch_fwd:
      case OpImpl::moe_dispatch_bwd:
      case OpImpl::moe_combine_fwd:
      case OpImpl::moe_combine_bwd:  // check_moe
      case OpImpl::qk_norm_fwd:
      case OpImpl::qk_norm_bwd:  // check_qk_norm
      case OpImpl::bias_grad:
      case OpImpl::gemm: break;
    }
  }
  // Column reductions: dgamma (and dbeta) of the norms' backward, bias gradients.
  for (size_t k = 0; k < cs.size(); ++k) {
    const int64_t j = cs[k];
    if (op.impl == OpImpl::layernorm_bwd) {
      double dg = 0, db = 0;
      for (int64_t r = 0; r < rows; ++r) {
        const auto ru = static_cast<size_t>(r);
        dg += col_dy[k][ru] * (col_x[k][ru] - mean_all[ru]) * rstd_all[ru];
        db += col_dy[k][ru];
      }
      c.compare(b.read(out[1], j, 1), {dg});
      c.compare(b.read(out[2], j, 1), {db});
    } else if (op.impl == OpImpl::rmsnorm_bwd) {
      double dg = 0;
      for (int64_t r = 0; r < rows; ++r) {
        const auto ru = static_cast<size_t>(r);
        dg += col_dy[k][ru] * col_x[k][ru] * rstd_all[ru];
      }
      c.compare(b.read(out[1], j, 1), {dg});
    } else if (op.impl == OpImpl::bias_grad && grouped) {
      std::vector<double> s(gr.rows.size(), 0.0);  // each expert's sum over its rows
      for (size_t e = 0; e < gr.rows.size(); ++e)
        for (int64_t r = gr.first[e]; r < gr.first[e] + gr.rows[e]; ++r) s[e] += col_dy[k][static_cast<size_t>(r)];
      c.compare(col(b, out[0], j, static_cast<int64_t>(s.size()), cols), s);
    } else if (op.impl == OpImpl::bias_grad) {
      double s = 0;
      for (double v : col_dy[k]) s += v;
      c.compare(b.read(out[0], j, 1), {s});
    }
  }
  return c.result(op, tol);
}

// The causal softmax under a window or chunks, or with sinks (Op::mask, Op::sink_heads): the
// first, middle and last rows against the fp64 reference, with the sink probabilities; backward,
// each sampled head's sink gradient against the sum over all its rows.
json check_softmax_masked(Backend& b, const Op& op, double tol) {
  const int64_t n = op.cols, rows = op.batch * op.rows, heads = std::max<int64_t>(op.sink_heads, 1);
  const bool sinks = op.sink_heads > 0, fwd = op.impl == OpImpl::softmax_causal_fwd;
  const auto& in = op.inputs;
  const auto& out = op.outputs;
  const std::vector<int64_t> rs = sample_rows(rows);
  std::vector<std::vector<double>> p0(rs.size()), p1(rs.size());
  std::vector<double> sink_logits = sinks && fwd ? b.read(in[1], 0, heads) : std::vector<double>{};
  std::vector<double> sp(rs.size());
  for (size_t k = 0; k < rs.size(); ++k) {
    p0[k] = row(b, in[0], rs[k], n);
    if (!fwd) p1[k] = row(b, in[1], rs[k], n);
  }
  // Backward with sinks: every row of the sampled heads, for their sink gradients.
  std::vector<int64_t> hs = sinks && !fwd ? sample_rows(heads) : std::vector<int64_t>{};
  std::vector<double> dz(hs.size(), 0.0);
  for (size_t q = 0; q < hs.size(); ++q)
    for (int64_t m = hs[q]; m < op.batch; m += heads)
      for (int64_t i = 0; i < op.rows; ++i) {
        const int64_t r = m * op.rows + i;
        const std::vector<double> p = row(b, in[0], r, n), dp = row(b, in[1], r, n);
        std::vector<double> ds(static_cast<size_t>(n));
        const double dot = ref::softmax_masked_row_backward(p.data(), dp.data(), ds.data(), i, n, op.mask);
        dz[q] -= b.read(in[2], r, 1)[0] * dot;
      }
  b.run(op);
  b.synchronize();
  Check c(verify_abs_floor(op.precision));
  for (size_t k = 0; k < rs.size(); ++k) {
    const int64_t r = rs[k], i = r % op.rows, member = r / op.rows;
    std::vector<double> ref(static_cast<size_t>(n));
    if (fwd) {
      double psink = 0;
      ref::softmax_masked_row_forward(p0[k].data(), ref.data(), i, n, op.mask,
                                      sinks ? &sink_logits[static_cast<size_t>(member % heads)] : nullptr,
                                      sinks ? &psink : nullptr);
      c.compare(row(b, out[0], r, n), ref);
      if (sinks) c.compare(b.read(out[1], r, 1), {psink});
    } else {
      ref::softmax_masked_row_backward(p0[k].data(), p1[k].data(), ref.data(), i, n, op.mask);
      c.compare(row(b, out[0], r, n), ref);
    }
  }
  for (size_t q = 0; q < hs.size(); ++q) c.compare(b.read(out[1], hs[q], 1), {dz[q]});
  return c.result(op, tol);
}

// QK-norm (QkNormSpec): the first, middle and last rows of y and rstd (forward) or dx (backward)
// against the fp64 reference; backward, dgamma_q and dgamma_k at the first, middle and last of
// their d_head elements against the sums over every row and head.
json check_qk_norm(Backend& b, const Op& op, double tol) {
  const QkNormSpec& q = op.qk_norm;
  const int64_t w = op.cols, rows = op.rows, nh = q.normed_heads(), dh = q.d_head;
  const bool fwd = op.impl == OpImpl::qk_norm_fwd;
  const auto& in = op.inputs;
  const auto& out = op.outputs;
  const std::vector<int64_t> rs = sample_rows(rows);
  std::vector<double> gq, gk;
  if (q.weighted) gq = b.read(in[fwd ? 1 : 2], 0, dh), gk = b.read(in[fwd ? 2 : 3], 0, dh);
  const std::string rstd = fwd ? std::string() : in[q.weighted ? 4 : 2];
  std::vector<std::vector<double>> x(rs.size()), dy(rs.size()), st(rs.size());
  for (size_t k = 0; k < rs.size(); ++k) {
    x[k] = row(b, in[fwd ? 0 : 1], rs[k], w);
    if (!fwd) dy[k] = row(b, in[0], rs[k], w), st[k] = row(b, rstd, rs[k], nh);
  }
  // dgamma at sampled j: sum over rows and heads of dy x rstd, read column by column.
  const std::vector<int64_t> js = sample_rows(dh);
  std::vector<double> dgq(js.size(), 0.0), dgk(js.size(), 0.0);
  if (!fwd && q.weighted) {
    for (int64_t grp = 0; grp < q.kv_heads; ++grp)
      for (int64_t hd = 0; hd <= q.group; ++hd) {
        const std::vector<double> r = col(b, rstd, grp * (q.group + 1) + hd, rows, nh);
        for (size_t k = 0; k < js.size(); ++k) {
          const int64_t at = (grp * (q.group + 2) + hd) * dh + js[k];
          const std::vector<double> cd = col(b, in[0], at, rows, w), cx = col(b, in[1], at, rows, w);
          double sum = 0;
          for (size_t t = 0; t < cd.size(); ++t) sum += cd[t] * cx[t] * r[t];
          (hd < q.group ? dgq : dgk)[k] += sum;
        }
      }
  }
  b.run(op);
  b.synchronize();
  Check c(verify_abs_floor(op.precision));
  for (size_t k = 0; k < rs.size(); ++k) {
    std::vector<double> ref(static_cast<size_t>(w)), rr(static_cast<size_t>(nh));
    const double* g1 = q.weighted ? gq.data() : nullptr;
    const double* g2 = q.weighted ? gk.data() : nullptr;
    if (fwd) {
      ref::qk_norm_row_forward(x[k].data(), g1, g2, ref.data(), rr.data(), q);
      c.compare(row(b, out[0], rs[k], w), ref);
      c.compare(row(b, out[1], rs[k], nh), rr);
    } else {
      std::vector<double> a1(static_cast<size_t>(dh)), a2(static_cast<size_t>(dh));
      ref::qk_norm_row_backward(dy[k].data(), x[k].data(), g1, g2, st[k].data(), ref.data(), a1.data(), a2.data(), q);
      c.compare(row(b, out[0], rs[k], w), ref);
    }
  }
  if (!fwd && q.weighted)
    for (size_t k = 0; k < js.size(); ++k) {
      c.compare(b.read(out[1], js[k], 1), {dgq[k]});
      c.compare(b.read(out[2], js[k], 1), {dgk[k]});
    }
  return c.result(op, tol);
}

// A grouped GEMM (GemmSpec::grouped): 16 sampled outputs, each against the fp64 dot of its
// expert's rows, the experts' rows read from the counts the router wrote. A stacked row past the
// experts' (the router dropped rows: GemmSpec::drops) is beta C, no product.
json check_grouped_gemm(Backend& b, const Op& op, double tol) {
  const GemmSpec& g = op.gemm;
  const bool m_rows = g.grouped == Grouped::m_rows;
  const GemmSpec::Groups er = g.groups(b.read(g.group_counts, 0, g.batch), op.name);
  const int64_t used = er.first.back() + er.rows.back();
  struct Sample {
    int64_t e, i, j;
    std::vector<double> a, b;
    double c_prev = 0;
    int64_t c_index = 0;
  };
  const uint64_t stream = stream_id(op.name);
  std::vector<Sample> samples;
  for (uint64_t s = 0; s < 16; ++s) {
    auto pick = [&](uint64_t k, int64_t n) {
      return std::min<int64_t>(n - 1, static_cast<int64_t>((uniform_pm1(99, stream, 3 * s + k) + 1) / 2 * static_cast<double>(n)));
    };
    Sample x{0, pick(1, g.m), pick(2, g.n), {}, {}};
    if (s == 0) x.i = 0, x.j = 0;
    if (s == 1) x.i = g.m - 1, x.j = g.n - 1;
    // Row i of op(A) (over `len` of the k dimension from its start a0) and column j of op(B).
    auto a_row = [&](int64_t a0, int64_t i, int64_t len) {
      return g.trans_a ? b.read(g.a, a0 + i, len, g.lda) : b.read(g.a, a0 + i * g.lda, len, 1);
    };
    auto b_col = [&](int64_t b0, int64_t j, int64_t len) {
      return g.trans_b ? b.read(g.b, b0 + j * g.ldb, len, 1) : b.read(g.b, b0 + j, len, g.ldb);
    };
    if (m_rows) {  // row i of the stacked rows: its expert
      while (x.e + 1 < g.batch && er.first[static_cast<size_t>(x.e + 1)] <= x.i) ++x.e;
      const GemmSpec::Part at = g.group_part(x.e, 0);
      if (x.i < used) {
        x.a = a_row(g.a_offset, x.i, g.k);
        x.b = b_col(g.b_offset + at.b, x.j, g.k);
      }
      x.c_index = g.c_offset + x.i * g.ldc + x.j;
    } else {  // expert e's own C, summed over its rows
      x.e = s == 1 ? g.batch - 1 : pick(0, g.batch);
      const int64_t rows = er.rows[static_cast<size_t>(x.e)];
      const GemmSpec::Part at = g.group_part(x.e, er.first[static_cast<size_t>(x.e)]);
      x.a = a_row(g.a_offset + at.a, x.i, rows);
      x.b = b_col(g.b_offset + at.b, x.j, rows);
      x.c_index = g.c_offset + at.c + x.i * g.ldc + x.j;
    }
    if (g.beta != 0) x.c_prev = b.read(g.c, x.c_index, 1)[0];
    samples.push_back(std::move(x));
  }
  b.run(op);
  b.synchronize();
  std::vector<double> out, ref;
  for (const auto& x : samples) {
    double dot = 0;
    for (size_t q = 0; q < x.a.size(); ++q) dot += x.a[q] * x.b[q];
    ref.push_back(g.alpha * dot + (g.beta != 0 ? g.beta * x.c_prev : 0.0));
    out.push_back(b.read(g.c, x.c_index, 1)[0]);
  }
  Check c(verify_abs_floor(op.precision));
  c.compare(out, ref);
  return c.result(op, tol);
}

// A mixture of experts' router and token movement against the fp64 reference (reference_ops.hpp)
// from the same inputs. The route: every token (experts chosen, weights), and the slots and
// counts recomputed from the reference's choice (and its drops past a capacity), so a token sent
// to another expert, or dropped by another rule, fails. The others: the first, middle and last
// tokens, each with its k rows (a dropped one's row none: only its weight's gradient, 0).
json check_moe(Backend& b, const Op& op, double tol) {
  const MoeSpec& m = op.moe;
  const int64_t T = op.rows, k = m.top_k, E = m.experts, d = op.cols;
  const auto& in = op.inputs;
  const auto& out = op.outputs;
  Check c(verify_abs_floor(op.precision));
  auto ids = [](const std::vector<double>& v) {
    std::vector<int64_t> r;
    for (double x : v) r.push_back(static_cast<int64_t>(x));
    return r;
  };
  if (op.impl == OpImpl::moe_route_fwd) {
    const std::vector<double> z = b.read(in[0], 0, T * E);
    b.run(op);
    b.synchronize();
    std::vector<int64_t> ex(static_cast<size_t>(T * k));
    std::vector<double> w(static_cast<size_t>(T * k)), slots(static_cast<size_t>(T * k)), counts(static_cast<size_t>(E));
    for (int64_t t = 0; t < T; ++t) ref::moe_route_row(z.data() + t * E, m, ex.data() + t * k, w.data() + t * k);
    ref::moe_slots(ex.data(), w.data(), T, m, slots.data(), counts.data());
    std::vector<double> exd(ex.begin(), ex.end());
    c.compare(b.read(out[0], 0, T * k), exd);
    c.compare(b.read(out[1], 0, T * k), w);
    c.compare(b.read(out[2], 0, T * k), slots);
    c.compare(b.read(out[3], 0, E), counts);
    return c.result(op, tol);
  }
  const std::vector<int64_t> rs = sample_rows(T);
  const std::string& slots_name = op.impl == OpImpl::moe_combine_fwd ? in[2] : op.impl == OpImpl::moe_combine_bwd ? in[3] : in[1];
  std::vector<std::vector<int64_t>> slot(rs.size());
  std::vector<std::vector<std::vector<double>>> pre(rs.size());
  // A dispatched row, or zeros for a dropped assignment (slot -1), which adds nothing.
  auto kept_row = [&](const std::string& name, int64_t at) {
    return at < 0 ? std::vector<double>(static_cast<size_t>(d), 0.0) : row(b, name, at, d);
  };
  std::vector<double> counts;  // the aux loss's: what the router chose, before any dropping
  if (op.impl == OpImpl::moe_route_bwd) counts = ref::moe_chosen(b.read(in[1], 0, T * k).data(), T, m);
  for (size_t q = 0; q < rs.size(); ++q) {
    const int64_t t = rs[q];
    if (op.impl == OpImpl::moe_route_bwd) {
      pre[q] = {row(b, in[0], t, E), row(b, in[1], t, k), row(b, in[2], t, k), row(b, in[3], t, k)};
      continue;
    }
    slot[q] = ids(row(b, slots_name, t, k));
    switch (op.impl) {
      case OpImpl::moe_dispatch_fwd: pre[q] = {row(b, in[0], t, d)}; break;
      case OpImpl::moe_dispatch_bwd:
        for (int64_t j = 0; j < k; ++j) pre[q].push_back(kept_row(in[0], slot[q][j]));
        break;
      case OpImpl::moe_combine_fwd:
        pre[q] = {row(b, in[1], t, k)};
        for (int64_t j = 0; j < k; ++j) pre[q].push_back(kept_row(in[0], slot[q][j]));
        break;
      case OpImpl::moe_combine_bwd:
        pre[q] = {row(b, in[2], t, k), row(b, in[0], t, d)};
        for (int64_t j = 0; j < k; ++j) pre[q].push_back(kept_row(in[1], slot[q][j]));
        break;
      default: break;
    }
  }
  b.run(op);
  b.synchronize();
  for (size_t q = 0; q < rs.size(); ++q) {
    const int64_t t = rs[q];
    const auto& p = pre[q];
    switch (op.impl) {
      case OpImpl::moe_route_bwd: {
        std::vector<double> dz(static_cast<size_t>(E));
        const std::vector<int64_t> ex = ids(p[1]);
        ref::moe_route_backward_row(p[0].data(), ex.data(), p[2].data(), p[3].data(), counts.data(), T, m, dz.data());
        c.compare(row(b, out[0], t, E), dz);
        break;
      }
      case OpImpl::moe_dispatch_fwd:
        for (int64_t j = 0; j < k; ++j)
          if (slot[q][j] >= 0) c.compare(row(b, out[0], slot[q][j], d), p[0]);
        break;
      case OpImpl::moe_dispatch_bwd: {
        std::vector<double> s(static_cast<size_t>(d), 0.0);
        for (int64_t j = 0; j < k; ++j)
          for (int64_t x = 0; x < d; ++x) s[x] += p[j][x];
        c.compare(row(b, out[0], t, d), s);
        break;
      }
      case OpImpl::moe_combine_fwd: {
        std::vector<double> s(static_cast<size_t>(d), 0.0);
        for (int64_t j = 0; j < k; ++j)
          for (int64_t x = 0; x < d; ++x) s[x] += p[0][j] * p[1 + j][x];
        c.compare(row(b, out[0], t, d), s);
        break;
      }
      case OpImpl::moe_combine_bwd: {
        std::vector<double> dw(static_cast<size_t>(k), 0.0);
        for (int64_t j = 0; j < k; ++j) {
          std::vector<double> dye(static_cast<size_t>(d));
          for (int64_t x = 0; x < d; ++x) {
            dye[x] = p[0][j] * p[1][x];
            dw[j] += p[1][x] * p[2 + j][x];
          }
          if (slot[q][j] >= 0) c.compare(row(b, out[0], slot[q][j], d), dye);
        }
        c.compare(row(b, out[1], t, k), dw);
        break;
      }
      default: break;
    }
  }
  return c.result(op, tol);
}

}  // namespace

json verification_run(Backend& b, const LayerGraph& g) {
  json ops = json::array(), failures = json::array(), nonfinite = json::array();
  for (const auto& op : g.ops) {
    check_interrupted();
    const bool gemm = op.impl == OpImpl::gemm;
    const bool moe = op.impl == OpImpl::moe_route_fwd || op.impl == OpImpl::moe_route_bwd ||
                     op.impl == OpImpl::moe_dispatch_fwd || op.impl == OpImpl::moe_dispatch_bwd ||
                     op.impl == OpImpl::moe_combine_fwd || op.impl == OpImpl::moe_combine_bwd;
    const double tol = verify_tolerance(op.precision, gemm);
    const bool masked_softmax = (op.impl == OpImpl::softmax_causal_fwd || op.impl == OpImpl::softmax_causal_bwd) &&
                                (op.mask.any() || op.sink_heads > 0);
    const bool qk_norm = op.impl == OpImpl::qk_norm_fwd || op.impl == OpImpl::qk_norm_bwd;
    json r = gemm && op.gemm.grouped != Grouped::none ? check_grouped_gemm(b, op, tol)
             : gemm                                    ? check_gemm(b, op, tol)
             : moe                                     ? check_moe(b, op, tol)
             : masked_softmax                          ? check_softmax_masked(b, op, tol)
             : qk_norm                                 ? check_qk_norm(b, op, tol)
                                                       : check_rows(b, op, tol);
    if (!r.at("passed").get<bool>()) failures.push_back(r);
    ops.push_back(std::move(r));
  }
  int checked = 0;
  for (const auto& t : g.tensors) {
    if (is_filled(t.role)) continue;
    ++checked;
    const int64_t bad = b.count_nonfinite(t.name);
    if (bad > 0) {
      json f = {{"tensor", t.name}, {"nonfinite", bad}};
      nonfinite.push_back(f);
      failures.push_back(f);
    }
  }
  return {{"method",
           "each op once against an fp64 host reference from the same inputs (GEMMs: 16 sampled outputs; other ops: "
           "first, middle and last rows or columns): |out - ref| <= tolerance x max |ref| + the output dtype's "
           "subnormal spacing (abs_floor); then every output tensor finite (outputs are poisoned with NaN first)"},
          {"checked_tensors", checked},
          {"passed", failures.empty()},
          {"ops", ops},
          {"nonfinite", nonfinite},
          {"failures", failures}};
}

}  // namespace flopscope
