#include "backend/cpu/cpu_backend.hpp"

#include <cblas.h>

#include <chrono>
#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <cmath>
#include <fstream>
#include <limits>
#include <numeric>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "backend/cpu/blas_core.hpp"
#include "backend/cpu/fast_ops.hpp"
#include "backend/cpu/parallel.hpp"
#include "backend/cpu/reference_ops.hpp"
#include "util/error.hpp"
#include "util/fp8.hpp"

namespace flopscope {

namespace {

std::string read_cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "unknown CPU";
}

double mem_available_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  double kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit) {
    if (key == "MemAvailable:") return kib * 1024.0;
  }
  return 0;
}

class CpuTimeline final : public Timeline {
 public:
  explicit CpuTimeline(int slots) : t_(static_cast<size_t>(slots)) {}
  void record(int slot) override { t_.at(static_cast<size_t>(slot)) = std::chrono::steady_clock::now(); }
  double ms(int from, int to) const override {
    return std::chrono::duration<double, std::milli>(t_.at(static_cast<size_t>(to)) - t_.at(static_cast<size_t>(from)))
        .count();
  }

 private:
  std::vector<std::chrono::steady_clock::time_point> t_;
};

int blas_int(int64_t v, const Op& op, const char* what) {
  if (v < 0 || v > INT_MAX)
    throw Error(fmt::format("{}: {} = {} exceeds OpenBLAS's 32-bit integer dimensions", op.name, what, v));
  return static_cast<int>(v);
}

// One product C = alpha op(A) op(B) + beta C of row-major operands, in F.
template <typename F>
void blas_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const F* A, int64_t lda, const F* B,
               int64_t ldb, double beta, F* C, int64_t ldc) {
  const auto a = ta ? CblasTrans : CblasNoTrans;
  const auto b = tb ? CblasTrans : CblasNoTrans;
  const int M = static_cast<int>(m), N = static_cast<int>(n), K = static_cast<int>(k);
  const int LA = static_cast<int>(lda), LB = static_cast<int>(ldb), LC = static_cast<int>(ldc);
  if constexpr (std::is_same_v<F, float>) {
    cblas_sgemm(CblasRowMajor, a, b, M, N, K, static_cast<float>(alpha), A, LA, B, LB, static_cast<float>(beta), C, LC);
  } else {
    cblas_dgemm(CblasRowMajor, a, b, M, N, K, alpha, A, LA, B, LB, beta, C, LC);
  }
}

// g's strided batch (one repeat: A, B, C already at it) with this beta. On the pool, each member
// is cut into `parts` bands of C's rows (of its columns when C is wider than tall), multiples of
// 16 (OpenBLAS's register tiles), parts chosen so the members x parts items divide evenly among
// the threads; each item a single-threaded OpenBLAS call.
template <typename F>
void pooled_gemm(const GemmSpec& g, const F* A, const F* B, F* C, double beta) {
  const int threads = cpu::cpu_threads();
  if (!cpu::gemms_on_pool() || threads == 1) {
    for (int64_t i = 0; i < g.batch; ++i)
      blas_gemm<F>(g.trans_a, g.trans_b, g.m, g.n, g.k, g.alpha, A + i * g.stride_a, g.lda, B + i * g.stride_b, g.ldb,
                   beta, C + i * g.stride_c, g.ldc);
    return;
  }
  const int64_t parts = threads / std::gcd<int64_t>(g.batch, threads);
  const bool rows = g.m >= g.n;
  const int64_t len = rows ? g.m : g.n;
  auto cut = [&](int64_t q) { return q >= parts ? len : std::min(len, (len * q / parts + 8) / 16 * 16); };
  cpu::parallel_for(g.batch * parts, [&](int64_t i0, int64_t i1) {
    for (int64_t it = i0; it < i1; ++it) {
      const int64_t member = it / parts, q = it % parts, b0 = cut(q), b1 = cut(q + 1);
      if (b0 >= b1) continue;
      const F* a = A + member * g.stride_a;
      const F* b = B + member * g.stride_b;
      F* c = C + member * g.stride_c;
      if (rows) {
        blas_gemm<F>(g.trans_a, g.trans_b, b1 - b0, g.n, g.k, g.alpha, g.trans_a ? a + b0 : a + b0 * g.lda, g.lda, b,
                     g.ldb, beta, c + b0 * g.ldc, g.ldc);
      } else {
        blas_gemm<F>(g.trans_a, g.trans_b, g.m, b1 - b0, g.k, g.alpha, a, g.lda, g.trans_b ? b + b0 * g.ldb : b + b0,
                     g.ldb, beta, c + b0, g.ldc);
      }
    }
  });
}

}  // namespace

nlohmann::json cpu_info_json() {
  nlohmann::json j = {{"kind", "cpu"},
          {"name", read_cpu_model()},
          {"hardware_threads", std::thread::hardware_concurrency()},
          {"blas", "OpenBLAS"},
          {"blas_config", openblas_get_config()},
          {"blas_threads", openblas_get_num_threads()},
          {"gemm_threads", cpu::gemms_on_pool() ? "pool: bands of C, OpenBLAS single-threaded in each (the default)"
                                        : "blas: OpenBLAS's own threads (FLOPSCOPE_CPU_GEMM_THREADS=blas)"},
          {"threads", cpu::cpu_threads()},
          {"threads_source", cpu::cpu_threads_source()},
          {"vector_isa", cpu::fast_ops_isa()},
          {"memory_available_bytes", mem_available_bytes()}};
  cpu::add_blas_core_json(j);  // blas_core, blas_coretype_env, blas_core_set_by, blas_core_note
  return j;
}

template <typename F>
CpuBackend<F>::CpuBackend() {
  cpu::apply_blas_threads();  // one thread policy for the GEMMs and the other ops
}

template <typename F>
nlohmann::json CpuBackend<F>::device_json() const {
  nlohmann::json j = cpu_info_json();
  if (graph_ && graph_->options.precision == Precision::fp8)
    j["fp8"] = "emulated: the linear layers' GEMM operands rounded to FP8 E4M3 values by the cast ops, all arithmetic fp32";
  return j;
}

template <typename F>
std::string CpuBackend<F>::device_line() const {
  const std::string gemms = cpu::gemms_on_pool() ? fmt::format("GEMMs in bands on {} pool threads, OpenBLAS single-threaded in each",
                                                       cpu::cpu_threads())
                                         : fmt::format("GEMMs on OpenBLAS's {} threads", openblas_get_num_threads());
  return fmt::format("cpu: {} ({} hardware threads), {}, {}", read_cpu_model(), std::thread::hardware_concurrency(),
                     gemms, cpu::blas_core_line());
}

template <typename F>
double CpuBackend<F>::available_bytes() const {
  return mem_available_bytes();
}

template <typename F>
void CpuBackend<F>::allocate(const LayerGraph& g) {
  tensors_.clear();
  spare_.clear();
  fp8_.clear();
  current_set_ = 0;
  allocated_bytes_ = 0;
  const int64_t sets = g.options.input_sets;
  for (const auto& t : g.tensors) {
    const auto n = static_cast<size_t>(t.numel());
    tensors_.emplace(t.name, std::vector<F>(n));
    allocated_bytes_ += static_cast<double>(n) * sizeof(F);
    if (sets > 1 && is_filled(t.role)) {
      auto& spare = spare_[t.name];
      spare.resize(static_cast<size_t>(sets));
      for (int64_t s = 1; s < sets; ++s) spare[static_cast<size_t>(s)].resize(n);
      allocated_bytes_ += static_cast<double>(n) * sizeof(F) * static_cast<double>(sets - 1);
    }
  }
  graph_ = &g;
}

template <typename F>
void CpuBackend<F>::fill_tensor(const TensorSpec& t, uint64_t seed) {
  auto& v = tensors_.at(t.name);
  const FillSpec f = fill_spec(t, graph_->shape.vocab);
  const uint64_t stream = stream_id(t.name);
  if (f.index_count > 0) {
    for (size_t i = 0; i < v.size(); ++i) {
      const double u = (uniform_pm1(seed, stream, i) + 1) / 2;  // [0, 1)
      v[i] = static_cast<F>(std::min<int64_t>(static_cast<int64_t>(u * static_cast<double>(f.index_count)),
                                              f.index_count - 1));
    }
  } else if (f.scale == 0) {
    std::fill(v.begin(), v.end(), std::numeric_limits<F>::quiet_NaN());  // poison outputs
  } else {
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<F>(f.offset + f.scale * uniform_pm1(seed, stream, i));
  }
}

template <typename F>
void CpuBackend<F>::fill(uint64_t seed) {
  FLOPSCOPE_CHECK(graph_ != nullptr, "fill before allocate");
  fill_input_sets(*this, *graph_, seed, [&](const TensorSpec& t, uint64_t sd) { fill_tensor(t, sd); });
}

template <typename F>
void CpuBackend<F>::use_input_set(int64_t i) {
  FLOPSCOPE_CHECK(graph_ != nullptr && i >= 0 && i < graph_->options.input_sets,
                  fmt::format("input set {} does not exist", i));
  if (i == current_set_) return;
  for (auto& [name, sets] : spare_) {
    auto& active = tensors_.at(name);
    sets[static_cast<size_t>(current_set_)] = std::move(active);
    active = std::move(sets[static_cast<size_t>(i)]);
  }
  current_set_ = i;
}

template <typename F>
std::vector<F>& CpuBackend<F>::data(const std::string& tensor) {
  auto it = tensors_.find(tensor);
  FLOPSCOPE_CHECK(it != tensors_.end(), fmt::format("cpu backend: no tensor '{}' (allocate first)", tensor));
  return it->second;
}

template <typename F>
F* CpuBackend<F>::ptr(const std::string& tensor) {
  return data(tensor).data();
}

// A causal attention product in row blocks of C (GemmSpec::blocked): each (member, row block)
// runs the part GemmSpec::block names as one single-threaded OpenBLAS call, the items split
// across the pool by their FLOPs. c_lower writes 0 to the columns of its rows it skips.
// Returns the FLOPs executed.
template <typename F>
double CpuBackend<F>::gemm_blocked(const Op& op) {
  const GemmSpec& g = op.gemm;
  const int64_t B = g.causal_block, blocks = (g.m + B - 1) / B, items = g.batch * blocks;
  auto rows_of = [&](int64_t it) {
    const int64_t r0 = (it % blocks) * B;
    return std::pair<int64_t, int64_t>{r0, std::min(r0 + B, g.m)};
  };
  auto item_flops = [&](int64_t it) {
    const auto [r0, r1] = rows_of(it);
    const GemmSpec::Block bl = g.block(r0, r1);
    return 2.0 * static_cast<double>(r1 - r0) * static_cast<double>(bl.n_end - bl.n0) * static_cast<double>(bl.k1 - bl.k0);
  };
  const F* A0 = ptr(g.a) + g.a_offset;
  const F* B0 = ptr(g.b) + g.b_offset;
  F* C0 = ptr(g.c) + g.c_offset;
  double flops = 0;
  for (int64_t it = 0; it < items; ++it) flops += item_flops(it);
  for (int64_t r = 0; r < g.repeat; ++r) {  // in turn: repeats that sum into one C never race
    const double beta = r == 0 ? g.beta : g.repeat_beta;
    auto body = [&](int64_t i0, int64_t i1) {
      for (int64_t it = i0; it < i1; ++it) {
        const int64_t member = it / blocks;
        const auto [r0, r1] = rows_of(it);
        const GemmSpec::Block bl = g.block(r0, r1);
        const F* A = A0 + r * g.repeat_a + member * g.stride_a;
        const F* Bm = B0 + r * g.repeat_b + member * g.stride_b;
        F* C = C0 + r * g.repeat_c + member * g.stride_c + r0 * g.ldc;
        // op(A)[r0][k0] and op(B)[k0][n0] in the stored, row-major matrices.
        const F* a = g.trans_a ? A + bl.k0 * g.lda + r0 : A + r0 * g.lda + bl.k0;
        const F* b = g.trans_b ? Bm + bl.n0 * g.ldb + bl.k0 : Bm + bl.k0 * g.ldb + bl.n0;
        blas_gemm<F>(g.trans_a, g.trans_b, r1 - r0, bl.n_end - bl.n0, bl.k1 - bl.k0, g.alpha, a, g.lda, b, g.ldb, beta,
                     C + bl.n0, g.ldc);
        if (bl.n_end < g.n)
          for (int64_t i = 0; i < r1 - r0; ++i)
            std::memset(C + i * g.ldc + bl.n_end, 0, static_cast<size_t>(g.n - bl.n_end) * sizeof(F));
        if (bl.n0 > 0)  // a window's or chunk's keys before the block's first
          for (int64_t i = 0; i < r1 - r0; ++i) std::memset(C + i * g.ldc, 0, static_cast<size_t>(bl.n0) * sizeof(F));
      }
    };
    if (cpu::gemms_on_pool()) {
      cpu::parallel_for_weighted(items, item_flops, body);
    } else {
      body(0, items);  // one call at a time, each on OpenBLAS's threads
    }
  }
  return flops * static_cast<double>(g.repeat);
}

// A grouped GEMM (GemmSpec::grouped, a mixture of experts' routed experts): one product per
// expert of the rows the router gave it (the counts tensor, written by moe_route_fwd), each on
// the pool as pooled_gemm cuts it. Counted: 2 m n k of each product that ran, whose sum over the
// experts is the graph's k T rows when every routed token ran (checked), fewer where the router
// dropped rows past the capacity (GemmSpec::drops): then the stacked rows of C no expert took
// are written 0.
template <typename F>
double CpuBackend<F>::gemm_grouped(const Op& op) {
  const GemmSpec& g = op.gemm;
  FLOPSCOPE_CHECK(g.repeat == 1, op.name + ": grouped GEMMs have no repeats");
  const std::vector<F>& counts = data(g.group_counts);
  const GemmSpec::Groups gr = g.groups(std::vector<double>(counts.begin(), counts.end()), op.name);
  double flops = 0;
  for (int64_t e = 0; e < g.batch; ++e) {
    const GemmSpec one = g.problem(e, gr);
    F* C = ptr(one.c) + one.c_offset;
    if (gr.rows[static_cast<size_t>(e)] > 0) {
      pooled_gemm<F>(one, ptr(one.a) + one.a_offset, ptr(one.b) + one.b_offset, C, g.beta);
    } else if (g.grouped == Grouped::k_rows) {  // an expert no token reached: its gradient is beta C (0)
      for (int64_t i = 0; i < g.m; ++i)
        for (int64_t j = 0; j < g.n; ++j) C[i * g.ldc + j] = g.beta == 0 ? F(0) : static_cast<F>(g.beta) * C[i * g.ldc + j];
    }
    flops += 2.0 * static_cast<double>(one.m) * static_cast<double>(one.n) * static_cast<double>(one.k);
  }
  if (g.grouped == Grouped::m_rows) {
    const int64_t used = gr.first.back() + gr.rows.back();
    F* C = ptr(g.c) + g.c_offset;
    for (int64_t i = used; i < g.m; ++i)
      for (int64_t j = 0; j < g.n; ++j) C[i * g.ldc + j] = g.beta == 0 ? F(0) : static_cast<F>(g.beta) * C[i * g.ldc + j];
  }
  return flops;
}

template <typename F>
void CpuBackend<F>::gemm(const Op& op) {
  const GemmSpec& g = op.gemm;
  // OpenBLAS takes 32-bit dimensions.
  for (const auto& [v, what] : {std::pair{g.m, "m"}, {g.n, "n"}, {g.k, "k"}, {g.lda, "lda"}, {g.ldb, "ldb"},
                                {g.ldc, "ldc"}})
    blas_int(v, op, what);
  if (g.blocked()) {
    counted_[op.name] += gemm_blocked(op);
    return;
  }
  if (g.grouped != Grouped::none) {
    counted_[op.name] += gemm_grouped(op);
    return;
  }
  // OpenBLAS 0.3.21 has no strided-batched call: pooled_gemm runs the members. The outer repeat
  // (grouped-query attention) shifts the operands, beta then repeat_beta; repeats run one after
  // another, so those that sum into one C (repeat_beta 1) never race.
  for (int64_t r = 0; r < g.repeat; ++r)
    pooled_gemm<F>(g, ptr(g.a) + g.a_offset + r * g.repeat_a, ptr(g.b) + g.b_offset + r * g.repeat_b,
                   ptr(g.c) + g.c_offset + r * g.repeat_c, r == 0 ? g.beta : g.repeat_beta);
  // Every member of every repeat is counted: the full m x n x k product each.
  counted_[op.name] += g.full_flops();
}

template <typename F>
void CpuBackend<F>::run(const Op& op) {
  if (op.impl == OpImpl::gemm) return gemm(op);
  auto in = [&](size_t i) -> const F* { return ptr(op.inputs.at(i)); };
  auto out = [&](size_t i) -> F* { return ptr(op.outputs.at(i)); };
  const int64_t n = op.batch * op.rows * op.cols;
  double flops = 0;
  switch (op.impl) {
    case OpImpl::layernorm_fwd:
      flops = cpu::layernorm_forward(in(0), in(1), in(2), out(0), out(1), out(2), op.rows, op.cols);
      break;
    case OpImpl::layernorm_bwd:
      flops = cpu::layernorm_backward(in(0), in(1), in(2), in(3), in(4), out(0), out(1), out(2), op.rows, op.cols);
      break;
    case OpImpl::softmax_causal_fwd:
      FLOPSCOPE_CHECK(op.rows == op.cols, op.name + ": causal softmax needs square slices");
      // A window, chunks or sinks: the reference loop (it keeps only the mask's pairs).
      if (op.mask.any() || op.sink_heads > 0)
        flops = ref::softmax_masked_forward(in(0), op.sink_heads > 0 ? in(1) : nullptr, out(0),
                                            op.sink_heads > 0 ? out(1) : nullptr, op.batch, op.rows, op.mask,
                                            std::max<int64_t>(op.sink_heads, 1));
      else
        flops = cpu::softmax_causal_forward(in(0), out(0), op.batch, op.rows);
      break;
    case OpImpl::softmax_causal_bwd:
      if (op.mask.any() || op.sink_heads > 0)
        flops = ref::softmax_masked_backward(in(0), in(1), op.sink_heads > 0 ? in(2) : nullptr, out(0),
                                             op.sink_heads > 0 ? out(1) : nullptr, op.batch, op.rows, op.mask,
                                             std::max<int64_t>(op.sink_heads, 1));
      else
        flops = cpu::softmax_causal_backward(in(0), in(1), out(0), op.batch, op.rows);
      break;
    case OpImpl::gelu_fwd: flops = cpu::gelu_forward(in(0), out(0), n); break;
    case OpImpl::gelu_bwd: flops = cpu::gelu_backward(in(0), in(1), out(0), n); break;
    case OpImpl::bias_add:
    case OpImpl::bias_grad:
      if (expert_bias_op(op)) {  // each expert's rows, its own bias row
        const std::vector<F>& c = data(op.inputs.back());
        const GemmSpec::Groups gr =
            expert_groups(std::vector<double>(c.begin(), c.end()), static_cast<int64_t>(c.size()), op.rows, true, op.name);
        flops = 0;
        for (size_t e = 0; e < gr.rows.size(); ++e) {
          const int64_t at = gr.first[e] * op.cols, b = static_cast<int64_t>(e) * op.cols;
          if (gr.rows[e] == 0) {  // an expert no row reached: no add, a zero gradient
            if (op.impl == OpImpl::bias_grad) std::fill(out(0) + b, out(0) + b + op.cols, F(0));
            continue;
          }
          flops += op.impl == OpImpl::bias_add ? cpu::bias_add(out(0) + at, in(1) + b, gr.rows[e], op.cols)
                                               : cpu::bias_grad(in(0) + at, out(0) + b, gr.rows[e], op.cols);
        }
      } else {
        flops = op.impl == OpImpl::bias_add ? cpu::bias_add(out(0), in(1), op.rows, op.cols)
                                            : cpu::bias_grad(in(0), out(0), op.rows, op.cols);
      }
      break;
    case OpImpl::residual_add: flops = cpu::residual_add(in(0), in(1), out(0), n); break;
    case OpImpl::cross_entropy_fwd:
      flops = cpu::cross_entropy_forward(in(0), in(1), out(0), op.rows, op.cols);
      break;
    case OpImpl::cross_entropy_bwd:
      flops = cpu::cross_entropy_backward(in(0), in(1), out(0), op.rows, op.cols);
      break;
    case OpImpl::cast_fp8: {
      // A batch of (rows, cols) members, each cast (and transposed) on its own: a mixture of
      // experts' per-expert weights.
      auto& st = fp8_[op.outputs.at(0)];
      const int64_t member = op.rows * op.cols;
      for (int64_t b = 0; b < op.batch; ++b)
        st.amax = std::max(st.amax, cpu::cast_fp8(in(0) + b * member, out(0) + b * member, op.rows, op.cols,
                                                  op.transpose, st.scale));
      flops = flop_convention::kCastFp8 * static_cast<double>(op.batch * member);
      break;
    }
    case OpImpl::rmsnorm_fwd: flops = cpu::rmsnorm_forward(in(0), in(1), out(0), out(1), op.rows, op.cols); break;
    case OpImpl::rmsnorm_bwd:
      flops = cpu::rmsnorm_backward(in(0), in(1), in(2), in(3), out(0), out(1), op.rows, op.cols);
      break;
    case OpImpl::rope_fwd: flops = cpu::rope(out(0), op.rows, op.cols, op.rope, false); break;
    case OpImpl::rope_bwd: flops = cpu::rope(out(0), op.rows, op.cols, op.rope, true); break;
    case OpImpl::swiglu_fwd: flops = cpu::swiglu_forward(in(0), in(1), out(0), n); break;
    case OpImpl::swiglu_bwd: flops = cpu::swiglu_backward(in(0), in(1), in(2), out(0), out(1), n); break;
    case OpImpl::relu_fwd: flops = cpu::relu_forward(in(0), out(0), n); break;
    case OpImpl::relu_bwd: flops = cpu::relu_backward(in(0), in(1), out(0), n); break;
    case OpImpl::mla_qkv_fwd: flops = cpu::mla_qkv_forward(in(0), in(1), in(2), out(0), op.rows, op.mla); break;
    case OpImpl::mla_qkv_bwd: flops = cpu::mla_qkv_backward(in(0), out(0), out(1), out(2), op.rows, op.mla); break;
    // A mixture of experts' router and token movement: the reference loops (memory-bound, and
    // the slots a sequential counting sort). Expert ids and slots are whole numbers kept in F.
    case OpImpl::moe_route_fwd:
      FLOPSCOPE_CHECK(static_cast<double>(op.rows * op.moe.top_k) < static_cast<double>(1 << 24) || sizeof(F) == 8,
                      op.name + ": more routed rows than fp32 holds exactly as slot numbers; use --precision fp64");
      flops = ref::moe_route_forward(in(0), out(0), out(1), out(2), out(3), op.rows, op.moe);
      break;
    case OpImpl::moe_route_bwd:
      flops = ref::moe_route_backward(in(0), in(1), in(2), in(3), out(0), op.rows, op.moe);  // in(4): order only
      break;
    case OpImpl::moe_dispatch_fwd: flops = ref::moe_dispatch_forward(in(0), in(1), out(0), op.rows, op.cols, op.moe); break;
    case OpImpl::moe_dispatch_bwd: flops = ref::moe_dispatch_backward(in(0), in(1), out(0), op.rows, op.cols, op.moe); break;
    case OpImpl::moe_combine_fwd:
      flops = ref::moe_combine_forward(in(0), in(1), in(2), out(0), op.rows, op.cols, op.moe);
      break;
    case OpImpl::moe_combine_bwd:
      flops = ref::moe_combine_backward(in(0), in(1), in(2), in(3), out(0), out(1), op.rows, op.cols, op.moe);
      break;
    case OpImpl::moe_gate_fwd: flops = ref::moe_gate_forward(in(0), in(1), out(0), op.rows, op.cols); break;
    case OpImpl::moe_gate_bwd: flops = ref::moe_gate_backward(in(0), in(1), in(2), out(0), out(1), op.rows, op.cols); break;
    // QK-norm: the reference loops (rows of a few heads of d_head each).
    case OpImpl::qk_norm_fwd: {
      const bool w = op.qk_norm.weighted;
      flops = ref::qk_norm_forward(in(0), w ? in(1) : nullptr, w ? in(2) : nullptr, out(0), out(1), op.rows, op.qk_norm);
      break;
    }
    case OpImpl::qk_norm_bwd: {
      const bool w = op.qk_norm.weighted;
      flops = ref::qk_norm_backward(in(0), in(1), w ? in(2) : nullptr, w ? in(3) : nullptr, in(w ? 4 : 2), out(0),
                                    w ? out(1) : nullptr, w ? out(2) : nullptr, op.rows, op.qk_norm);
      break;
    }
    case OpImpl::gemm: break;
  }
  counted_[op.name] += flops;
}

template <typename F>
double CpuBackend<F>::fp8_scale(const std::string& copy) const {
  auto it = fp8_.find(copy);
  return it == fp8_.end() ? 1.0 : it->second.scale;
}

template <typename F>
void CpuBackend<F>::fp8_calibrate() {
  for (auto& [name, st] : fp8_) {
    st.scale = fp8::e4m3_scale_for_amax(st.amax);
    st.amax = 0;
  }
}

template <typename F>
std::unique_ptr<Timeline> CpuBackend<F>::make_timeline(int slots) {
  return std::make_unique<CpuTimeline>(slots);
}

template <typename F>
double CpuBackend<F>::counted_flops(const std::string& op) const {
  auto it = counted_.find(op);
  return it == counted_.end() ? 0.0 : it->second;
}

template <typename F>
std::vector<double> CpuBackend<F>::read(const std::string& tensor, int64_t offset, int64_t count, int64_t stride) {
  const auto& v = data(tensor);
  FLOPSCOPE_CHECK(offset >= 0 && count >= 0 && stride >= 1 &&
                      (count == 0 || offset + (count - 1) * stride < static_cast<int64_t>(v.size())),
                  fmt::format("read of {} out of bounds (offset {}, count {}, stride {}, size {})", tensor, offset,
                              count, stride, v.size()));
  std::vector<double> out(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) out[static_cast<size_t>(i)] = static_cast<double>(v[static_cast<size_t>(offset + i * stride)]);
  return out;
}

template <typename F>
int64_t CpuBackend<F>::count_nonfinite(const std::string& tensor) {
  int64_t bad = 0;
  for (F x : data(tensor)) bad += std::isfinite(x) ? 0 : 1;
  return bad;
}

namespace {

// Median of `repeats` timings of f() after one untimed call, in seconds.
template <typename Fn>
double median_seconds(Fn&& f, int repeats) {
  f();
  std::vector<double> t;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// The GEMM ceiling's runs: the best of kCeilingRuns, each at least kCeilingRunSeconds of
// back-to-back calls (one ~10 ms call reads anything from half to all of the machine's rate on
// a busy or clock-ramping CPU; the best of long runs is what the GEMMs can sustain).
inline constexpr int kCeilingRuns = 3;
inline constexpr double kCeilingRunSeconds = 0.5;

struct BestRun {
  double seconds_per_call = 0;
  int calls_per_run = 0;
};

// f() once untimed (warm-up, and its time sizes the runs), then the best of kCeilingRuns runs.
template <typename Fn>
BestRun best_sustained(Fn&& f) {
  const auto w0 = std::chrono::steady_clock::now();
  f();
  const double one = std::max(1e-6, std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count());
  const int calls = std::max(1, static_cast<int>(std::ceil(kCeilingRunSeconds / one)));
  BestRun b{0, calls};
  for (int r = 0; r < kCeilingRuns; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < calls; ++i) f();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / calls;
    b.seconds_per_call = r == 0 ? s : std::min(b.seconds_per_call, s);
  }
  return b;
}

}  // namespace

template <typename F>
nlohmann::json CpuBackend<F>::gemm_ceiling(Precision p, int64_t n64) {
  if (p == Precision::fp8) p = Precision::fp32;  // fp8 is emulated in fp32 here
  FLOPSCOPE_CHECK(p == Precision::fp32 || p == Precision::fp64, "cpu GEMM ceiling: fp32 or fp64 only");
  const int n = static_cast<int>(n64);
  const auto count = static_cast<size_t>(n) * static_cast<size_t>(n);
  BestRun best;
  GemmSpec square;  // n x n x n, as the layer's GEMMs run (pooled_gemm)
  square.m = square.n = square.k = square.lda = square.ldb = square.ldc = n;
  auto fill = [&](auto& v, uint64_t stream) {
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<typename std::decay_t<decltype(v)>::value_type>(uniform_pm1(1, stream, i));
  };
  if (p == Precision::fp32) {
    std::vector<float> a(count), b(count), c(count);
    fill(a, 1);
    fill(b, 2);
    best = best_sustained([&] { pooled_gemm<float>(square, a.data(), b.data(), c.data(), 0.0); });
  } else {
    std::vector<double> a(count), b(count), c(count);
    fill(a, 1);
    fill(b, 2);
    best = best_sustained([&] { pooled_gemm<double>(square, a.data(), b.data(), c.data(), 0.0); });
  }
  const double s = best.seconds_per_call;
  const double flops = 2.0 * n * static_cast<double>(n) * n;
  return {{"dtype", to_string(p)}, {"n", n}, {"ms", s * 1e3}, {"flops_per_s", flops / s},
          {"runs", kCeilingRuns}, {"calls_per_run", best.calls_per_run},
          {"source", fmt::format("timed: OpenBLAS {}gemm {}^3 on {} threads ({}), the best of {} runs of {} "
                                 "back-to-back calls (at least {} s each) after a warm-up call, per call",
                                 p == Precision::fp32 ? "s" : "d", n, cpu::cpu_threads(),
                                 cpu::gemms_on_pool() ? "bands of C on the backend's pool, as the layer's GEMMs"
                                              : "OpenBLAS's own threads, as the layer's GEMMs",
                                 kCeilingRuns, best.calls_per_run, kCeilingRunSeconds)}};
}

template <typename F>
nlohmann::json CpuBackend<F>::copy_bandwidth(int64_t bytes) {
  std::vector<unsigned char> a(static_cast<size_t>(bytes), 1), b(static_cast<size_t>(bytes));
  const double s = median_seconds([&] { std::memcpy(b.data(), a.data(), a.size()); }, 5);
  return {{"bytes", bytes}, {"ms", s * 1e3}, {"bytes_per_s", 2.0 * static_cast<double>(bytes) / s},
          {"source", "timed: memcpy, bytes read plus written, median of 5 after a warm-up call"}};
}

template class CpuBackend<float>;
template class CpuBackend<double>;

std::unique_ptr<Backend> make_cpu_backend(Precision p) {
  if (p == Precision::fp32) return std::make_unique<CpuBackend<float>>();
  if (p == Precision::fp8) {
    spdlog::info("cpu: fp8 is emulated: the linear layers' GEMM operands are rounded to FP8 E4M3 values, all arithmetic "
                 "is fp32");
    return std::make_unique<CpuBackend<float>>();
  }
  if (p == Precision::fp64) return std::make_unique<CpuBackend<double>>();
  throw UsageError(fmt::format("the cpu backend runs fp32, fp64 or fp8 (emulated), not {}; use --precision fp32 (or "
                               "--backend cuda)",
                               to_string(p)));
}

}  // namespace flopscope
