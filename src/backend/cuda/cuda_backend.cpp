#include "backend/cuda/cuda_backend.hpp"

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_profiler_api.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "analytic/hardware.hpp"
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/lt_gemm.hpp"
#include "backend/cuda/nvml.hpp"
#include "kernels.cuh"
#include "util/error.hpp"
#include "util/fp8.hpp"
#include "util/gpu_uuid.hpp"

namespace flopscope {

namespace {

namespace k = kernels;

// How a tensor is stored on the device: the run's data type; float statistics; int32
// indices; FP8 E4M3 copies (--precision fp8).
enum class Storage { data, stat, index, fp8 };

struct DeviceTensor {
  void* ptr = nullptr;       // the input set in use
  std::vector<void*> sets;   // filled tensors with input sets: one buffer per set (ptr is one of them)
  int64_t numel = 0;
  size_t bytes = 0;
  Storage storage = Storage::data;
};

k::DType data_dtype(Precision p) {
  switch (p) {
    case Precision::bf16:
    case Precision::fp8: return k::DType::bf16;  // fp8 runs keep activations in bf16; GEMM operands get E4M3 copies
    case Precision::fp16: return k::DType::f16;
    case Precision::fp32:
    case Precision::tf32: return k::DType::f32;
    default: break;
  }
  throw UsageError(fmt::format("the cuda backend runs bf16, fp16, tf32, fp32 or fp8, not {}", to_string(p)));
}

class CudaTimeline final : public Timeline {
 public:
  // `capturing` (owned by the backend) is true while the stream is being captured.
  CudaTimeline(int slots, cudaStream_t s, const bool* capturing = nullptr)
      : stream_(s), capturing_(capturing), events_(static_cast<size_t>(slots)) {
    for (auto& e : events_) CUDA_CALL(cudaEventCreate(&e), "timeline event");
  }
  ~CudaTimeline() override {
    for (auto e : events_)
      if (e) cudaEventDestroy(e);
  }
  void record(int slot) override {
    // While the stream is being captured into a CUDA graph, the event becomes an event-record
    // node of the graph (cudaEventRecordExternal), so each replay records it.
    cudaEvent_t e = events_.at(static_cast<size_t>(slot));
    if (capturing_ && *capturing_)
      CUDA_CALL(cudaEventRecordWithFlags(e, stream_, cudaEventRecordExternal), "timeline (graph capture)");
    else
      CUDA_CALL(cudaEventRecord(e, stream_), "timeline");
  }
  double ms(int from, int to) const override {
    float t = 0;
    CUDA_CALL(cudaEventElapsedTime(&t, events_.at(static_cast<size_t>(from)), events_.at(static_cast<size_t>(to))),
              "timeline");
    return t;
  }

 private:
  cudaStream_t stream_;
  const bool* capturing_;
  std::vector<cudaEvent_t> events_;
};

// A CUDA graph instantiated from a stream capture; replays on the same stream.
class CudaRecording final : public Recording {
 public:
  CudaRecording(cudaGraphExec_t exec, cudaStream_t s) : exec_(exec), stream_(s) {}
  ~CudaRecording() override { cudaGraphExecDestroy(exec_); }
  void replay() override { CUDA_CALL(cudaGraphLaunch(exec_, stream_), "CUDA graph replay"); }

 private:
  cudaGraphExec_t exec_;
  cudaStream_t stream_;
};

class CudaBackend final : public Backend {
 public:
  CudaBackend(Precision p, const CudaOptions& o) : dtype_(data_dtype(p)), opts_(o) {
    cuda::lt_types(p);  // rejects precisions cuBLASLt is not used for here
    CUDA_CALL(cudaSetDevice(o.device), "select GPU");
    CUDA_CALL(cudaGetDeviceProperties(&props_, o.device), "device properties");
    if (p == Precision::fp8 && props_.major * 10 + props_.minor < 89)
      throw UsageError(fmt::format("--precision fp8 needs FP8 tensor cores (compute capability 8.9 or newer: Ada, "
                                   "Hopper); {} is sm_{}{}: use bf16",
                                   props_.name, props_.major, props_.minor));
    char bus[32] = {0};
    CUDA_CALL(cudaDeviceGetPCIBusId(bus, sizeof bus, o.device), "PCI bus id");
    pci_bus_id_ = bus;
    CUDA_CALL(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "create stream");
    CUBLAS_CALL(cublasLtCreate(&lt_), "create cuBLASLt handle");
    CUDA_CALL(cudaMalloc(&counter_, sizeof(unsigned long long)), "non-finite counter");
  }

  ~CudaBackend() override {
    release();
    gemms_.clear();
    if (counter_) cudaFree(counter_);
    if (lt_) cublasLtDestroy(lt_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  std::string_view name() const override { return "cuda"; }

  nlohmann::json device_json() const override {
    int driver = 0, runtime = 0;
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    const auto nvml_driver = cuda::nvml_driver_version();
    return {{"kind", "cuda"},
            {"name", props_.name},
            {"index", opts_.device},
            {"pci_bus_id", pci_bus_id_},
            {"uuid", gpu_uuid_string(props_.uuid.bytes)},
            {"compute_capability", fmt::format("{}.{}", props_.major, props_.minor)},
            {"sm_count", props_.multiProcessorCount},
            {"memory_bytes", static_cast<double>(props_.totalGlobalMem)},
            {"l2_bytes", props_.l2CacheSize},
            {"driver_version", nvml_driver ? nlohmann::json(*nvml_driver) : nlohmann::json(nullptr)},
            {"driver_cuda_version", fmt::format("{}.{}", driver / 1000, (driver % 1000) / 10)},
            {"runtime_cuda_version", fmt::format("{}.{}", runtime / 1000, (runtime % 1000) / 10)},
            {"cublaslt_version", cublasLtGetVersion()},
            {"clocks", cuda::clocks_json(cuda::nvml_clocks(pci_bus_id_))}};
  }

  std::string device_line() const override {
    int driver = 0;
    cudaDriverGetVersion(&driver);
    return fmt::format("cuda: {} (sm_{}{}, {} SMs, {:.1f} GiB), driver CUDA {}.{}, cuBLASLt {}", props_.name,
                       props_.major, props_.minor, props_.multiProcessorCount,
                       static_cast<double>(props_.totalGlobalMem) / (1 << 30), driver / 1000, (driver % 1000) / 10,
                       cublasLtGetVersion());
  }

  double available_bytes() const override {
    size_t free_b = 0, total = 0;
    CUDA_CALL(cudaMemGetInfo(&free_b, &total), "memory preflight");
    // The GEMM workspace, the layernorm scratch and an L2 flush buffer come on top.
    const double extra = static_cast<double>(opts_.gemm_workspace_bytes) + (opts_.flush_l2 ? 2.0 * props_.l2CacheSize : 0);
    return std::max(0.0, static_cast<double>(free_b) - extra);
  }

  void allocate(const LayerGraph& g) override {
    // A mixture of experts' layer: the router's kernels (kernels/moe.cu) take at most 512 experts,
    // top-32 and 64 groups; the grouped expert GEMMs are planned when they run (run_grouped).
    if (g.shape.moe() && (g.shape.n_experts > k::detail::kMoeMaxExperts || g.shape.top_k > k::detail::kMoeMaxTopK ||
                          g.shape.router.n_group > k::detail::kMoeMaxGroups))
      throw UsageError(fmt::format("the cuda backend's router kernels take at most {} experts, top-{} and {} expert "
                                   "groups; this layer has {} experts, top-{}, {} groups: run it with --backend cpu",
                                   k::detail::kMoeMaxExperts, k::detail::kMoeMaxTopK, k::detail::kMoeMaxGroups,
                                   g.shape.n_experts, g.shape.top_k, g.shape.router.n_group));
    FLOPSCOPE_CHECK(g.options.causal_block == 0,
                    "cuda backend: the attention products run as whole strided batches (causal block 0), not in row "
                    "blocks");
    for (const auto& op : g.ops) {
      // The kernels do not drop tokens (measure runs this backend dropless: drops_tokens()), and
      // the route's backward takes the aux loss's counts from the kept ones, equal only then.
      if (op.impl == OpImpl::moe_route_fwd || op.impl == OpImpl::moe_route_bwd) {
        FLOPSCOPE_CHECK(op.moe.capacity <= 0, op.name + ": the cuda backend's router does not drop tokens (no capacity)");
        // Slots and counts are whole numbers in float statistics: exact below 2^24.
        if (static_cast<double>(op.rows) * static_cast<double>(op.moe.top_k) >= static_cast<double>(1 << 24))
          throw UsageError(fmt::format("{}: {} tokens x top-{} routed rows reach 2^24, past what the cuda backend's "
                                       "float slots hold exactly; measure fewer tokens (--batch, --seq)",
                                       op.name, op.rows, op.moe.top_k));
      }
      // fp8 grouped wgrad: each expert's operands start at its first row of the K-major fp8
      // copies (1 byte an element), any offset, where cuBLASLt's fp8 kernels want 16-byte aligned
      // pointers (Transformer Engine pads each expert's rows to 16; the graph does not).
      if (op.impl == OpImpl::gemm && op.gemm.grouped == Grouped::k_rows && op.precision == Precision::fp8)
        throw UsageError(fmt::format("{}: fp8 with a mixture of experts on the cuda backend: the experts' weight "
                                     "gradients would read fp8 operands at unaligned row offsets, which cuBLASLt does "
                                     "not take (Transformer Engine pads each expert's rows to 16; flopscope does not "
                                     "yet); measure it with --precision bf16 or --backend cpu",
                                     op.name));
    }
    release();
    graph_ = &g;
    for (const auto& t : g.tensors) {
      DeviceTensor d;
      d.numel = t.numel();
      d.storage = t.role == TensorRole::statistic ? Storage::stat
                  : t.role == TensorRole::index   ? Storage::index
                  : t.role == TensorRole::fp8_copy ? Storage::fp8
                                                   : Storage::data;
      const size_t elem = d.storage == Storage::data ? k::dtype_bytes(dtype_)
                          : d.storage == Storage::fp8 ? 1
                                                      : 4;  // stats float, indices int32
      if (d.storage == Storage::fp8) fp8_index_[t.name] = fp8_index_.size();
      d.bytes = static_cast<size_t>(d.numel) * elem;
      const int64_t copies = is_filled(t.role) ? g.options.input_sets : 1;
      DeviceTensor& held = tensors_[t.name] = d;  // held before allocating: release() frees what was allocated
      for (int64_t s = 0; s < copies; ++s) {
        void* p = nullptr;
        CUDA_CALL(cudaMalloc(&p, std::max<size_t>(d.bytes, 256)),
                  fmt::format("allocate {} ({:.3g} GiB)", t.name, static_cast<double>(d.bytes) / (1 << 30)));
        held.sets.push_back(p);
        allocated_ += static_cast<double>(d.bytes);
      }
      held.ptr = held.sets.front();
    }
    size_t ln_ws = 0;
    for (const auto& op : g.ops)
      if (op.impl == OpImpl::layernorm_bwd) ln_ws = std::max(ln_ws, k::layernorm_backward_workspace_bytes(op.rows, op.cols));
    scratch_bytes_ = std::max<size_t>(ln_ws, 256);
    CUDA_CALL(cudaMalloc(&scratch_, scratch_bytes_), "kernel workspace");
    // layernorm_backward's last-block-done counters live here and must start at zero (the
    // kernel resets them after each launch).
    CUDA_CALL(cudaMemset(scratch_, 0, scratch_bytes_), "kernel workspace");
    CUDA_CALL(cudaMalloc(&gemm_ws_, opts_.gemm_workspace_bytes), "cuBLASLt workspace");
    if (!fp8_index_.empty()) {
      // Per FP8 copy: scale, descale (1 / scale, for the GEMM), amax. Scales start at 1.
      fp8_scales_.assign(fp8_index_.size(), 1.0f);
      std::vector<float> init(3 * fp8_index_.size(), 1.0f);
      for (size_t i = 0; i < fp8_index_.size(); ++i) init[3 * i + 2] = 0;
      CUDA_CALL(cudaMalloc(&fp8_state_, init.size() * sizeof(float)), "FP8 scales");
      CUDA_CALL(cudaMemcpy(fp8_state_, init.data(), init.size() * sizeof(float), cudaMemcpyHostToDevice), "FP8 scales");
    }
    allocated_ += static_cast<double>(scratch_bytes_ + opts_.gemm_workspace_bytes);
    if (opts_.flush_l2) {
      flush_bytes_ = 2 * static_cast<size_t>(props_.l2CacheSize);
      CUDA_CALL(cudaMalloc(&flush_, flush_bytes_), "L2 flush buffer");
      allocated_ += static_cast<double>(flush_bytes_);
    }
  }

  nlohmann::json prepare(const LayerGraph& g) override {
    // One cuBLASLt plan per distinct GEMM configuration; the algorithm is chosen by timing,
    // on the real buffers holding random values (not zeros or NaN: data moves power and so
    // clocks); fill() poisons the outputs again afterwards.
    randomize_for_selection(g);
    nlohmann::json chosen = nlohmann::json::object();
    for (const auto& op : g.ops) {
      if (op.impl != OpImpl::gemm) continue;
      if (op.gemm.grouped != Grouped::none) {  // planned per expert shape when it runs (run_grouped)
        chosen[op.name] = {{"grouped", true},
                           {"note", "one cuBLASLt GEMM per expert with rows, the heuristic's first algorithm for each "
                                    "shape (untimed), chosen when the router's counts are known"}};
        continue;
      }
      const bool fp8 = op.precision == Precision::fp8;
      // FP8 plans carry their operands' descale pointers, so they are not shared between ops.
      const std::string key =
          cuda::plan_key(op.gemm, cuda::lt_types(op.precision)) + (fp8 ? ":" + op.gemm.a + "," + op.gemm.b : "");
      if (!plans_.count(key)) {
        auto plan = std::make_unique<cuda::LtGemm>(lt_, op.gemm, cuda::lt_types(op.precision), op.name,
                                                   fp8 ? fp8_slot(op.gemm.a, 1) : nullptr,
                                                   fp8 ? fp8_slot(op.gemm.b, 1) : nullptr);
        plan_reports_[key] = plan->select(ptr(op.gemm.a, op.gemm.a_offset), ptr(op.gemm.b, op.gemm.b_offset),
                                          ptr(op.gemm.c, op.gemm.c_offset), gemm_ws_, opts_.gemm_workspace_bytes,
                                          stream_, opts_.gemm_candidates);
        plans_[key] = std::move(plan);
      }
      gemms_[op.name] = plans_.at(key).get();
      chosen[op.name] = plan_reports_.at(key);
      if (op.gemm.repeat > 1) prepare_gemm_repeats(op);
    }
    CUDA_CALL(cudaStreamSynchronize(stream_), "GEMM algorithm selection");
    if (opts_.gemm_candidates == 1)
      spdlog::info("cuBLASLt: took the heuristic's first algorithm for each of {} distinct GEMM configurations "
                   "(--gemm-candidates 1)",
                   plans_.size());
    else
      spdlog::info("cuBLASLt: chose algorithms for {} distinct GEMM configurations by timing up to {} candidates each",
                   plans_.size(), opts_.gemm_candidates);
    nlohmann::json r = {{"gemm_algorithms", chosen}, {"workspace_bytes", opts_.gemm_workspace_bytes}};
    if (!fp8_index_.empty())
      r["fp8"] = "linear-layer GEMMs: E4M3 A and B (both K-major), bf16 output, fp32 accumulation without "
                 "CUBLASLT_MATMUL_DESC_FAST_ACCUM; per-tensor scales, powers of two from a calibration pass "
                 "(delayed scaling); attention products, kernels and the LM head in bf16";
    return r;
  }

  void fill(uint64_t seed) override {
    FLOPSCOPE_CHECK(graph_ != nullptr, "fill before allocate");
    fill_input_sets(*this, *graph_, seed, [&](const TensorSpec& t, uint64_t sd) { fill_tensor(t, sd); });
    CUDA_CALL(cudaStreamSynchronize(stream_), "fill");
  }

  void use_input_set(int64_t i) override {
    FLOPSCOPE_CHECK(graph_ != nullptr && i >= 0 && i < graph_->options.input_sets,
                    fmt::format("input set {} does not exist", i));
    for (auto& [name, d] : tensors_)
      if (d.sets.size() > 1) d.ptr = d.sets[static_cast<size_t>(i)];
  }

  void run(const Op& op) override {
    if (op.impl == OpImpl::gemm && op.gemm.grouped != Grouped::none) return run_grouped(op);
    if (op.impl == OpImpl::gemm) {
      auto it = gemms_.find(op.name);
      FLOPSCOPE_CHECK(it != gemms_.end(), op.name + ": no cuBLASLt plan (prepare() not called)");
      it->second->run(ptr(op.gemm.a, op.gemm.a_offset), ptr(op.gemm.b, op.gemm.b_offset),
                      ptr(op.gemm.c, op.gemm.c_offset), gemm_ws_, opts_.gemm_workspace_bytes, stream_);
      run_gemm_repeats(op);
      return;
    }
    auto in = [&](size_t i) -> const void* { return ptr(op.inputs.at(i)); };
    auto out = [&](size_t i) -> void* { return ptr(op.outputs.at(i)); };
    const int64_t n = op.batch * op.rows * op.cols;
    cudaError_t e = cudaSuccess;
    switch (op.impl) {
      case OpImpl::layernorm_fwd:
        e = k::layernorm_forward(dtype_, in(0), in(1), in(2), out(0), out(1), out(2), op.rows, op.cols, stream_);
        break;
      case OpImpl::layernorm_bwd:
        e = k::layernorm_backward(dtype_, in(0), in(1), in(2), in(3), in(4), out(0), out(1), out(2), op.rows, op.cols,
                                  scratch_, stream_);
        break;
      case OpImpl::softmax_causal_fwd:
        if (op.mask.any() || op.sink_heads > 0) {  // a window, chunks or sinks (kernels/softmax_masked.cu)
          const bool sinks = op.sink_heads > 0;
          e = k::softmax_masked_forward(dtype_, in(0), sinks ? in(1) : nullptr, out(0), sinks ? out(1) : nullptr,
                                        op.batch, op.rows, op.mask.window, op.mask.chunk,
                                        std::max<int64_t>(op.sink_heads, 1), stream_);
        } else {
          e = k::softmax_causal_forward(dtype_, in(0), out(0), op.batch, op.rows, stream_);
        }
        break;
      case OpImpl::softmax_causal_bwd:
        if (op.mask.any() || op.sink_heads > 0) {
          const bool sinks = op.sink_heads > 0;
          e = k::softmax_masked_backward(dtype_, in(0), in(1), sinks ? in(2) : nullptr, out(0),
                                         sinks ? out(1) : nullptr, op.batch, op.rows, op.mask.window, op.mask.chunk,
                                         std::max<int64_t>(op.sink_heads, 1), stream_);
        } else {
          e = k::softmax_causal_backward(dtype_, in(0), in(1), out(0), op.batch, op.rows, stream_);
        }
        break;
      case OpImpl::gelu_fwd: e = k::gelu_forward(dtype_, in(0), out(0), n, stream_); break;
      case OpImpl::gelu_bwd: e = k::gelu_backward(dtype_, in(0), in(1), out(0), n, stream_); break;
      case OpImpl::bias_add:
      case OpImpl::bias_grad:
        if (expert_bias_op(op)) {  // each expert's rows, its own bias row (the counts copied to the host)
          const std::vector<float> c = host_counts(op.inputs.back(), op.name);
          const GemmSpec::Groups gr =
              expert_groups(std::vector<double>(c.begin(), c.end()), static_cast<int64_t>(c.size()), op.rows, true, op.name);
          for (size_t x = 0; x < gr.rows.size() && e == cudaSuccess; ++x) {
            const int64_t at = gr.first[x] * op.cols, b = static_cast<int64_t>(x) * op.cols;
            e = op.impl == OpImpl::bias_add
                    ? k::bias_add(dtype_, ptr(op.outputs.at(0), at), ptr(op.inputs.at(1), b), gr.rows[x], op.cols, stream_)
                    : k::bias_grad(dtype_, ptr(op.inputs.at(0), at), ptr(op.outputs.at(0), b), gr.rows[x], op.cols, stream_);
          }
        } else {
          e = op.impl == OpImpl::bias_add ? k::bias_add(dtype_, out(0), in(1), op.rows, op.cols, stream_)
                                          : k::bias_grad(dtype_, in(0), out(0), op.rows, op.cols, stream_);
        }
        break;
      case OpImpl::residual_add: e = k::residual_add(dtype_, in(0), in(1), out(0), n, stream_); break;
      case OpImpl::cross_entropy_fwd:
        e = k::cross_entropy_forward(dtype_, in(0), static_cast<const int32_t*>(in(1)), out(0), op.rows, op.cols, stream_);
        break;
      case OpImpl::cross_entropy_bwd:
        e = k::cross_entropy_backward(dtype_, in(0), static_cast<const int32_t*>(in(1)), out(0), op.rows, op.cols, stream_);
        break;
      case OpImpl::cast_fp8:
        // A batch of (rows, cols) members (a mixture of experts' per-expert weights), each cast on its own.
        for (int64_t b = 0; b < op.batch && e == cudaSuccess; ++b)
          e = k::cast_e4m3(dtype_, ptr(op.inputs.at(0), b * op.rows * op.cols), ptr(op.outputs.at(0), b * op.rows * op.cols),
                           op.rows, op.cols, op.transpose, fp8_slot(op.outputs.at(0), 0), fp8_slot(op.outputs.at(0), 2),
                           stream_);
        break;
      case OpImpl::rmsnorm_fwd:
        e = k::rmsnorm_forward(dtype_, in(0), in(1), out(0), out(1), op.rows, op.cols, stream_);
        break;
      case OpImpl::rmsnorm_bwd:
        e = k::rmsnorm_backward(dtype_, in(0), in(1), in(2), in(3), out(0), out(1), op.rows, op.cols, stream_);
        break;
      case OpImpl::rope_fwd:
      case OpImpl::rope_bwd:
        e = k::rope_layout(dtype_, out(0), op.rows, op.rope.batch, op.rope.kv_heads, op.rope.rotated_heads(),
                           op.rope.block_width(), op.rope.offset, op.rope.d_head, op.rope.theta,
                           op.impl == OpImpl::rope_bwd, stream_);
        break;
      case OpImpl::swiglu_fwd: e = k::swiglu_forward(dtype_, in(0), in(1), out(0), n, stream_); break;
      case OpImpl::swiglu_bwd: e = k::swiglu_backward(dtype_, in(0), in(1), in(2), out(0), out(1), n, stream_); break;
      case OpImpl::relu_fwd: e = k::relu_forward(dtype_, in(0), out(0), n, stream_); break;
      case OpImpl::relu_bwd: e = k::relu_backward(dtype_, in(0), in(1), out(0), n, stream_); break;
      case OpImpl::mla_qkv_fwd:
        e = k::mla_qkv_forward(dtype_, in(0), in(1), in(2), out(0), op.rows, op.mla.heads, op.mla.nope, op.mla.rope,
                               op.mla.v, stream_);
        break;
      case OpImpl::mla_qkv_bwd:
        e = k::mla_qkv_backward(dtype_, in(0), out(0), out(1), out(2), op.rows, op.mla.heads, op.mla.nope,
                                op.mla.rope, op.mla.v, stream_);
        break;
      case OpImpl::moe_route_fwd:
        e = k::moe_route_forward(dtype_, in(0), stat(op.outputs.at(0)), out(1), stat(op.outputs.at(2)),
                                 stat(op.outputs.at(3)), op.rows, rule(op.moe), stream_);
        break;
      case OpImpl::moe_route_bwd:
        e = k::moe_route_backward(dtype_, in(0), stat(op.inputs.at(1)), in(2), in(3), stat(op.inputs.at(4)), out(0),
                                  op.rows, rule(op.moe), stream_);
        break;
      case OpImpl::moe_dispatch_fwd:
        e = k::moe_dispatch_forward(dtype_, in(0), stat(op.inputs.at(1)), out(0), op.rows, op.cols,
                                    static_cast<int>(op.moe.top_k), stream_);
        break;
      case OpImpl::moe_dispatch_bwd:
        e = k::moe_dispatch_backward(dtype_, in(0), stat(op.inputs.at(1)), out(0), op.rows, op.cols,
                                     static_cast<int>(op.moe.top_k), stream_);
        break;
      case OpImpl::moe_combine_fwd:
        e = k::moe_combine_forward(dtype_, in(0), in(1), stat(op.inputs.at(2)), out(0), op.rows, op.cols,
                                   static_cast<int>(op.moe.top_k), stream_);
        break;
      case OpImpl::moe_combine_bwd:
        e = k::moe_combine_backward(dtype_, in(0), in(1), in(2), stat(op.inputs.at(3)), out(0), out(1), op.rows,
                                    op.cols, static_cast<int>(op.moe.top_k), stream_);
        break;
      case OpImpl::moe_gate_fwd: e = k::moe_gate_forward(dtype_, in(0), in(1), out(0), op.rows, op.cols, stream_); break;
      case OpImpl::moe_gate_bwd:
        e = k::moe_gate_backward(dtype_, in(0), in(1), in(2), out(0), out(1), op.rows, op.cols, stream_);
        break;
      case OpImpl::qk_norm_fwd: {
        const QkNormSpec& q = op.qk_norm;
        e = k::qk_norm_forward(dtype_, in(0), q.weighted ? in(1) : nullptr, q.weighted ? in(2) : nullptr, out(0),
                               out(1), op.rows, q.kv_heads, q.group, q.d_head, stream_);
        break;
      }
      case OpImpl::qk_norm_bwd: {
        const QkNormSpec& q = op.qk_norm;
        e = k::qk_norm_backward(dtype_, in(0), in(1), q.weighted ? in(2) : nullptr, q.weighted ? in(3) : nullptr,
                                in(q.weighted ? 4 : 2), out(0), q.weighted ? out(1) : nullptr,
                                q.weighted ? out(2) : nullptr, op.rows, q.kv_heads, q.group, q.d_head, stream_);
        break;
      }
      case OpImpl::gemm: break;
    }
    CUDA_CALL(e, fmt::format("{} ({}, {})", op.name, to_string(op.impl), op.shape_str()));
  }

  void synchronize() override { CUDA_CALL(cudaStreamSynchronize(stream_), "synchronize"); }
  double allocated_bytes() const override { return allocated_; }

  std::unique_ptr<Timeline> make_timeline(int slots) override {
    return std::make_unique<CudaTimeline>(slots, stream_, &capturing_);
  }

  std::unique_ptr<Recording> capture(const std::function<void()>& body) override {
    if (graph_ && graph_->shape.moe())
      throw UsageError("--cuda-graph: a mixture of experts' grouped GEMMs read the router's per-expert counts on the "
                       "host when they run, which a captured CUDA graph cannot; run without --cuda-graph");
    CUDA_CALL(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "begin CUDA graph capture");
    capturing_ = true;
    cudaGraph_t graph = nullptr;
    try {
      body();
    } catch (...) {
      capturing_ = false;
      cudaStreamEndCapture(stream_, &graph);  // leave the stream usable, then report the first error
      if (graph) cudaGraphDestroy(graph);
      cudaGetLastError();
      throw;
    }
    capturing_ = false;
    CUDA_CALL(cudaStreamEndCapture(stream_, &graph), "end CUDA graph capture");
    cudaGraphExec_t exec = nullptr;
    const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    CUDA_CALL(e, "instantiate CUDA graph");
    auto recording = std::make_unique<CudaRecording>(exec, stream_);
    // Upload now, so no replay's time includes the first launch's upload.
    CUDA_CALL(cudaGraphUpload(exec, stream_), "upload CUDA graph");
    return recording;
  }

  void between_repeats() override {
    if (flush_) CUDA_CALL(cudaMemsetAsync(flush_, ++flushes_ & 0xFF, flush_bytes_, stream_), "flush L2");
  }
  void profiler_start() override { CUDA_CALL(cudaProfilerStart(), "cudaProfilerStart"); }
  void profiler_stop() override { CUDA_CALL(cudaProfilerStop(), "cudaProfilerStop"); }
  nlohmann::json clocks() override { return cuda::clocks_json(cuda::nvml_clocks(pci_bus_id_)); }

  nlohmann::json gemm_ceiling(Precision p, int64_t n) override {
    // The best cuBLASLt algorithm on an n x n x n product, row-major, no transposes (FP8: B
    // transposed, both operands K-major, as FP8 requires; unit scales).
    const cuda::LtTypes t = cuda::lt_types(p);
    const k::DType dt = data_dtype(p);
    const bool fp8 = p == Precision::fp8;
    GemmSpec g;
    g.m = g.n = g.k = n;
    g.lda = g.ldb = g.ldc = n;
    g.trans_b = fp8;
    const auto elems = static_cast<size_t>(n) * static_cast<size_t>(n);
    void *a = nullptr, *b = nullptr, *c = nullptr, *ws = nullptr, *tmp = nullptr, *unit = nullptr;
    struct Free {
      void** p[6];
      ~Free() {
        for (void** q : p)
          if (*q) cudaFree(*q);
      }
    } guard{{&a, &b, &c, &ws, &tmp, &unit}};
    CUDA_CALL(cudaMalloc(&a, elems * t.ab_bytes), "ceiling A");
    CUDA_CALL(cudaMalloc(&b, elems * t.ab_bytes), "ceiling B");
    CUDA_CALL(cudaMalloc(&c, elems * t.c_bytes), "ceiling C");
    CUDA_CALL(cudaMalloc(&ws, opts_.gemm_workspace_bytes), "ceiling workspace");
    if (fp8) {
      const float one = 1.0f;
      CUDA_CALL(cudaMalloc(&tmp, elems * k::dtype_bytes(dt)), "ceiling bf16 source");
      CUDA_CALL(cudaMalloc(&unit, sizeof one), "ceiling FP8 scale");
      CUDA_CALL(cudaMemcpy(unit, &one, sizeof one, cudaMemcpyHostToDevice), "ceiling FP8 scale");
    }
    auto fill = [&](void* dst, uint64_t id) {
      const auto count = static_cast<int64_t>(elems);
      if (!fp8) {
        CUDA_CALL(k::fill_uniform(dt, dst, count, 1, id, 0, 1, stream_), "ceiling fill");
        return;
      }
      CUDA_CALL(k::fill_uniform(dt, tmp, count, 1, id, 0, 1, stream_), "ceiling fill");
      CUDA_CALL(k::cast_e4m3(dt, tmp, dst, n, n, false, static_cast<const float*>(unit), nullptr, stream_),
                "ceiling FP8 cast");
    };
    fill(a, 1);
    fill(b, 2);
    const auto* scale = static_cast<const float*>(unit);
    cuda::LtGemm gemm(lt_, g, t, fmt::format("ceiling {} {}^3", to_string(p), n), scale, scale);
    nlohmann::json r = gemm.select(a, b, c, ws, opts_.gemm_workspace_bytes, stream_, 16);
    // Then the chosen algorithm, best of kRuns timed runs of back-to-back calls, each run at
    // least kRunMs long (a short run is dominated by clock ramp and launch jitter).
    constexpr int kRuns = 5;
    constexpr double kRunMs = 200;
    const double one_ms = std::max(r.value("best_ms", nlohmann::json(1.0)).is_number() ? r.at("best_ms").get<double>() : 1.0, 1e-3);
    const int calls = std::max(1, static_cast<int>(std::ceil(kRunMs / one_ms)));
    cudaEvent_t e0 = nullptr, e1 = nullptr;
    CUDA_CALL(cudaEventCreate(&e0), "ceiling event");
    struct Events {
      cudaEvent_t* a;
      cudaEvent_t* b;
      ~Events() {
        if (*a) cudaEventDestroy(*a);
        if (*b) cudaEventDestroy(*b);
      }
    } events{&e0, &e1};
    CUDA_CALL(cudaEventCreate(&e1), "ceiling event");
    double best_ms = 0;
    for (int run = 0; run < kRuns; ++run) {
      CUDA_CALL(cudaEventRecord(e0, stream_), "ceiling event");
      for (int i = 0; i < calls; ++i) gemm.run(a, b, c, ws, opts_.gemm_workspace_bytes, stream_);
      CUDA_CALL(cudaEventRecord(e1, stream_), "ceiling event");
      CUDA_CALL(cudaEventSynchronize(e1), "ceiling run");
      float ms = 0;
      CUDA_CALL(cudaEventElapsedTime(&ms, e0, e1), "ceiling run");
      best_ms = run == 0 ? ms / calls : std::min(best_ms, static_cast<double>(ms) / calls);
    }
    return {{"dtype", to_string(p)}, {"n", n}, {"ms", best_ms},
            {"flops_per_s", g.flops() / (best_ms * 1e-3)},
            {"candidates", r.at("candidates")},
            {"tile", r.at("tile")}, {"padded_over_useful", r.at("padded_over_useful")},
            {"runs", kRuns}, {"calls_per_run", calls},
            {"source", fmt::format("timed: the best of {} cuBLASLt algorithms on {}^3 {}{} (CUDA events, median of 5 "
                                   "each) chosen, then the best of {} runs of {} back-to-back calls of it (at least {:.0f} ms "
                                   "each), per call",
                                   r.at("candidates").get<int>(), n, to_string(p),
                                   fp8 ? " (E4M3 A and B, K-major; bf16 output)" : "", kRuns, calls, kRunMs)}};
  }

  nlohmann::json copy_bandwidth(int64_t bytes) override {
    void *a = nullptr, *b = nullptr;
    CUDA_CALL(cudaMalloc(&a, static_cast<size_t>(bytes)), "bandwidth buffer");
    struct Free {
      void* p;
      ~Free() { cudaFree(p); }
    } fa{a};
    CUDA_CALL(cudaMalloc(&b, static_cast<size_t>(bytes)), "bandwidth buffer");
    Free fb{b};
    CUDA_CALL(cudaMemsetAsync(a, 1, static_cast<size_t>(bytes), stream_), "bandwidth fill");
    CudaTimeline tl(2, stream_);
    std::vector<double> ms;
    for (int r = 0; r < 6; ++r) {
      tl.record(0);
      CUDA_CALL(cudaMemcpyAsync(b, a, static_cast<size_t>(bytes), cudaMemcpyDeviceToDevice, stream_), "bandwidth copy");
      tl.record(1);
      CUDA_CALL(cudaStreamSynchronize(stream_), "bandwidth");
      if (r > 0) ms.push_back(tl.ms(0, 1));  // the first is a warm-up
    }
    std::sort(ms.begin(), ms.end());
    const double med = ms[ms.size() / 2];
    return {{"bytes", bytes}, {"ms", med}, {"bytes_per_s", 2.0 * static_cast<double>(bytes) / (med * 1e-3)},
            {"source", "timed: cudaMemcpyAsync device to device, bytes read plus written, CUDA events, median of 5"}};
  }

  std::vector<double> read(const std::string& tensor, int64_t offset, int64_t count, int64_t stride) override {
    const DeviceTensor& d = tensors_.at(tensor);
    FLOPSCOPE_CHECK(offset >= 0 && count >= 0 && stride >= 1 && (count == 0 || offset + (count - 1) * stride < d.numel),
                    fmt::format("read of {} out of bounds (offset {}, count {}, stride {}, size {})", tensor, offset,
                                count, stride, d.numel));
    const size_t elem = d.bytes / static_cast<size_t>(std::max<int64_t>(d.numel, 1));
    std::vector<unsigned char> raw(static_cast<size_t>(count) * elem);
    if (count > 0) {
      const auto* src = static_cast<const unsigned char*>(d.ptr) + static_cast<size_t>(offset) * elem;
      CUDA_CALL(cudaMemcpy2DAsync(raw.data(), elem, src, static_cast<size_t>(stride) * elem, elem,
                                  static_cast<size_t>(count), cudaMemcpyDeviceToHost, stream_),
                "read " + tensor);
      CUDA_CALL(cudaStreamSynchronize(stream_), "read " + tensor);
    }
    std::vector<double> out(static_cast<size_t>(count));
    for (size_t i = 0; i < out.size(); ++i) {
      const unsigned char* p = raw.data() + i * elem;
      if (d.storage == Storage::index) {
        int32_t v;
        std::memcpy(&v, p, 4);
        out[i] = v;
      } else if (d.storage == Storage::fp8) {
        out[i] = static_cast<double>(fp8::e4m3_to_float(*p)) / fp8_scale(tensor);
      } else if (d.storage == Storage::stat || dtype_ == k::DType::f32) {
        float v;
        std::memcpy(&v, p, 4);
        out[i] = v;
      } else if (dtype_ == k::DType::bf16) {
        uint16_t bits;
        std::memcpy(&bits, p, 2);
        const uint32_t f = static_cast<uint32_t>(bits) << 16;
        float v;
        std::memcpy(&v, &f, 4);
        out[i] = v;
      } else {
        __half h;
        std::memcpy(&h, p, 2);
        out[i] = __half2float(h);
      }
    }
    return out;
  }

  int64_t count_nonfinite(const std::string& tensor) override {
    const DeviceTensor& d = tensors_.at(tensor);
    if (d.storage == Storage::index) return 0;
    CUDA_CALL(cudaMemsetAsync(counter_, 0, sizeof(unsigned long long), stream_), "count non-finite");
    CUDA_CALL(k::count_nonfinite(storage_dtype(d), d.ptr, d.numel,
                                 static_cast<unsigned long long*>(counter_), stream_),
              "count non-finite " + tensor);
    unsigned long long n = 0;
    CUDA_CALL(cudaMemcpyAsync(&n, counter_, sizeof n, cudaMemcpyDeviceToHost, stream_), "count non-finite");
    CUDA_CALL(cudaStreamSynchronize(stream_), "count non-finite");
    return static_cast<int64_t>(n);
  }

  double fp8_scale(const std::string& copy) const override {
    auto it = fp8_index_.find(copy);
    return it == fp8_index_.end() ? 1.0 : fp8_scales_.at(it->second);
  }

  void fp8_calibrate() override {
    if (fp8_index_.empty()) return;
    std::vector<float> st(3 * fp8_index_.size());
    CUDA_CALL(cudaMemcpyAsync(st.data(), fp8_state_, st.size() * sizeof(float), cudaMemcpyDeviceToHost, stream_),
              "FP8 calibration");
    CUDA_CALL(cudaStreamSynchronize(stream_), "FP8 calibration");
    for (size_t i = 0; i < fp8_index_.size(); ++i) {
      fp8_scales_[i] = fp8::e4m3_scale_for_amax(st[3 * i + 2]);
      st[3 * i] = fp8_scales_[i];
      st[3 * i + 1] = 1.0f / fp8_scales_[i];  // exact: a power of two
      st[3 * i + 2] = 0;
    }
    CUDA_CALL(cudaMemcpyAsync(fp8_state_, st.data(), st.size() * sizeof(float), cudaMemcpyHostToDevice, stream_),
              "FP8 calibration");
    CUDA_CALL(cudaStreamSynchronize(stream_), "FP8 calibration");
  }

 private:
  // FP8 state of a copy: slot 0 scale, 1 descale, 2 amax (device floats).
  float* fp8_slot(const std::string& copy, int slot) {
    auto it = fp8_index_.find(copy);
    FLOPSCOPE_CHECK(it != fp8_index_.end() && fp8_state_ != nullptr, "cuda backend: '" + copy + "' is not an FP8 copy");
    return static_cast<float*>(fp8_state_) + 3 * it->second + static_cast<size_t>(slot);
  }

  void* ptr(const std::string& name, int64_t offset = 0) {
    auto it = tensors_.find(name);
    FLOPSCOPE_CHECK(it != tensors_.end(), "cuda backend: no tensor '" + name + "'");
    const size_t elem = it->second.bytes / static_cast<size_t>(std::max<int64_t>(it->second.numel, 1));
    return static_cast<unsigned char*>(it->second.ptr) + static_cast<size_t>(offset) * elem;
  }

  // Every tensor random in [-1, 1) (indices in range); FP8 copies cast from their source.
  void randomize_for_selection(const LayerGraph& g) {
    constexpr uint64_t kSeed = 0x5E1EC7;
    FillSpec random;  // uniform in [-1, 1)
    FillSpec indices;
    indices.index_count = 2;
    for (const auto& t : g.tensors) {
      if (tensors_.at(t.name).storage == Storage::fp8) continue;
      fill_with(t, tensors_.at(t.name).storage == Storage::index ? indices : random, kSeed,
                "random values for algorithm selection");
    }
    for (const auto& [name, i] : fp8_index_) {
      const std::string source = name.substr(0, name.rfind(".e4m3"));
      const DeviceTensor& d = tensors_.at(name);
      CUDA_CALL(k::cast_e4m3(dtype_, ptr(source), d.ptr, 1, d.numel, false, fp8_slot(name, 0), nullptr, stream_),
                "random values for algorithm selection: " + name);
    }
  }

  void fill_tensor(const TensorSpec& t, uint64_t seed) { fill_with(t, fill_spec(t, graph_->shape.vocab), seed, "fill"); }

  // Fills a tensor as `f` says: indices, poison (scale 0: NaN in every storage type), or uniform.
  void fill_with(const TensorSpec& t, const FillSpec& f, uint64_t seed, const char* why) {
    const DeviceTensor& d = tensors_.at(t.name);
    const std::string ctx = std::string(why) + ": " + t.name;
    if (f.index_count > 0) {
      CUDA_CALL(k::fill_indices(static_cast<int32_t*>(d.ptr), d.numel, seed, stream_id(t.name), f.index_count, stream_),
                ctx);
    } else if (f.scale == 0) {
      CUDA_CALL(cudaMemsetAsync(d.ptr, 0xFF, d.bytes, stream_), ctx);  // NaN in f32, f16, bf16 and E4M3
    } else {
      CUDA_CALL(k::fill_uniform(storage_dtype(d), d.ptr, d.numel, seed, stream_id(t.name), f.offset, f.scale, stream_),
                ctx);
    }
  }

  // The element type a tensor is stored in.
  k::DType storage_dtype(const DeviceTensor& d) const {
    return d.storage == Storage::stat ? k::DType::f32 : d.storage == Storage::fp8 ? k::DType::e4m3 : dtype_;
  }

  // Grouped-query attention: repeats r = 1 .. repeat-1 of a GEMM's strided batch, each one
  // cuBLASLt call on operands shifted by r * repeat_a/b/c elements, with repeat_beta (1 where
  // the repeats sum into one C). Their plan is the r = 0 plan's shape with that beta, its
  // algorithm selected on the r = 1 operands.
  static GemmSpec repeat_spec(const GemmSpec& g) {
    GemmSpec r = g;
    r.beta = g.repeat_beta;
    r.a_offset += g.repeat_a;
    r.b_offset += g.repeat_b;
    r.c_offset += g.repeat_c;
    return r;
  }

  void prepare_gemm_repeats(const Op& op) {
    const GemmSpec r = repeat_spec(op.gemm);
    FLOPSCOPE_CHECK(op.precision != Precision::fp8, op.name + ": repeated GEMMs are attention products, never fp8");
    const std::string key = cuda::plan_key(r, cuda::lt_types(op.precision));
    if (!plans_.count(key)) {
      auto plan = std::make_unique<cuda::LtGemm>(lt_, r, cuda::lt_types(op.precision), op.name + ".repeat");
      plan_reports_[key] = plan->select(ptr(r.a, r.a_offset), ptr(r.b, r.b_offset), ptr(r.c, r.c_offset), gemm_ws_,
                                        opts_.gemm_workspace_bytes, stream_, opts_.gemm_candidates);
      plans_[key] = std::move(plan);
    }
    repeat_gemms_[op.name] = plans_.at(key).get();
  }

  float* stat(const std::string& name) {
    FLOPSCOPE_CHECK(tensors_.at(name).storage == Storage::stat, "cuda backend: '" + name + "' is not float statistics");
    return static_cast<float*>(ptr(name));
  }

  static k::detail::MoeRule rule(const MoeSpec& m) {
    k::detail::MoeRule r;
    r.experts = static_cast<int>(m.experts), r.top_k = static_cast<int>(m.top_k);
    r.n_group = static_cast<int>(m.n_group), r.topk_group = static_cast<int>(m.topk_group);
    r.sigmoid = m.sigmoid, r.topk_first = m.topk_first, r.norm_topk = m.norm_topk, r.aux_coef = m.aux_coef;
    r.scale = m.scale;
    return r;
  }

  // The router's counts (float statistics) copied to the host, the stream synchronised.
  std::vector<float> host_counts(const std::string& name, const std::string& op) {
    std::vector<float> counts(static_cast<size_t>(tensors_.at(name).numel));
    CUDA_CALL(cudaMemcpyAsync(counts.data(), stat(name), counts.size() * sizeof(float), cudaMemcpyDeviceToHost, stream_),
              op + ": the router's counts");
    CUDA_CALL(cudaStreamSynchronize(stream_), op + ": the router's counts");
    return counts;
  }

  // A grouped GEMM (GemmSpec::grouped, the routed experts): the router's counts copied to the
  // host (the stream synchronised: inside the op's timed range), then one cuBLASLt GEMM per expert
  // with rows, each shape planned once with the heuristic's first algorithm (untimed: choosing by
  // timing here would time inside the layer). An expert without rows: its wgrad C is zeroed.
  void run_grouped(const Op& op) {
    const GemmSpec& g = op.gemm;
    FLOPSCOPE_CHECK(g.repeat == 1 && (g.beta == 0 || g.beta == 1), op.name + ": grouped GEMMs take beta 0 or 1");
    const std::vector<float> counts = host_counts(g.group_counts, op.name);
    const GemmSpec::Groups gr = g.groups(std::vector<double>(counts.begin(), counts.end()), op.name);
    const bool fp8 = op.precision == Precision::fp8;
    const cuda::LtTypes types = cuda::lt_types(op.precision);
    for (int64_t e = 0; e < g.batch; ++e) {
      const GemmSpec one = g.problem(e, gr);
      if (gr.rows[static_cast<size_t>(e)] == 0) {
        if (g.grouped == Grouped::k_rows && g.beta == 0)
          CUDA_CALL(cudaMemsetAsync(ptr(one.c, one.c_offset), 0,
                                    static_cast<size_t>(one.m * one.ldc) * types.c_bytes, stream_),
                    op.name + ": an expert without rows");
        continue;
      }
      const std::string key = cuda::plan_key(one, types) + (fp8 ? ":" + one.a + "," + one.b : "");
      auto it = plans_.find(key);
      if (it == plans_.end()) {
        auto plan = std::make_unique<cuda::LtGemm>(lt_, one, types, op.name, fp8 ? fp8_slot(one.a, 1) : nullptr,
                                                   fp8 ? fp8_slot(one.b, 1) : nullptr);
        plan->select(ptr(one.a, one.a_offset), ptr(one.b, one.b_offset), ptr(one.c, one.c_offset), gemm_ws_,
                     opts_.gemm_workspace_bytes, stream_, 1);
        it = plans_.emplace(key, std::move(plan)).first;
      }
      it->second->run(ptr(one.a, one.a_offset), ptr(one.b, one.b_offset), ptr(one.c, one.c_offset), gemm_ws_,
                      opts_.gemm_workspace_bytes, stream_);
    }
  }

  void run_gemm_repeats(const Op& op) {
    const GemmSpec& g = op.gemm;
    if (g.repeat <= 1) return;
    auto it = repeat_gemms_.find(op.name);
    FLOPSCOPE_CHECK(it != repeat_gemms_.end(), op.name + ": no cuBLASLt plan for its repeats (prepare() not called)");
    for (int64_t r = 1; r < g.repeat; ++r)
      it->second->run(ptr(g.a, g.a_offset + r * g.repeat_a), ptr(g.b, g.b_offset + r * g.repeat_b),
                      ptr(g.c, g.c_offset + r * g.repeat_c), gemm_ws_, opts_.gemm_workspace_bytes, stream_);
  }

  void release() {
    // Plans hold pointers into fp8_state_ (FP8 descales): they go with the tensors.
    gemms_.clear();
    repeat_gemms_.clear();
    plans_.clear();
    plan_reports_.clear();
    for (auto& [name, t] : tensors_)
      for (void* p : t.sets) cudaFree(p);
    tensors_.clear();
    if (scratch_) cudaFree(scratch_);
    if (gemm_ws_) cudaFree(gemm_ws_);
    if (flush_) cudaFree(flush_);
    if (fp8_state_) cudaFree(fp8_state_);
    scratch_ = gemm_ws_ = flush_ = fp8_state_ = nullptr;
    fp8_index_.clear();
    fp8_scales_.clear();
    allocated_ = 0;
  }

  k::DType dtype_;
  CudaOptions opts_;
  cudaDeviceProp props_{};
  std::string pci_bus_id_;
  cudaStream_t stream_ = nullptr;
  cublasLtHandle_t lt_ = nullptr;
  const LayerGraph* graph_ = nullptr;
  std::map<std::string, DeviceTensor> tensors_;
  std::map<std::string, std::unique_ptr<cuda::LtGemm>> plans_;  // by configuration
  std::map<std::string, nlohmann::json> plan_reports_;
  std::map<std::string, cuda::LtGemm*> gemms_;                   // by op name
  std::map<std::string, cuda::LtGemm*> repeat_gemms_;            // by op name: repeats r > 0
  void* scratch_ = nullptr;
  size_t scratch_bytes_ = 0;
  void* gemm_ws_ = nullptr;
  void* flush_ = nullptr;
  size_t flush_bytes_ = 0;
  unsigned flushes_ = 0;
  void* counter_ = nullptr;
  double allocated_ = 0;
  bool capturing_ = false;  // inside capture(): timeline events become graph nodes
  std::map<std::string, size_t> fp8_index_;  // FP8 copy -> its slots in fp8_state_
  std::vector<float> fp8_scales_;            // host copy of each FP8 copy's scale
  void* fp8_state_ = nullptr;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(Precision p, const CudaOptions& o) {
  return std::make_unique<CudaBackend>(p, o);
}

nlohmann::json cuda_devices_json() {
  nlohmann::json list = nlohmann::json::array();
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) return list;
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp p{};
    CUDA_CALL(cudaGetDeviceProperties(&p, i), "device properties");
    char bus[32] = {0};
    CUDA_CALL(cudaDeviceGetPCIBusId(bus, sizeof bus, i), "PCI bus id");
    size_t free_b = 0, total = 0;
    CUDA_CALL(cudaSetDevice(i), "select GPU");
    CUDA_CALL(cudaMemGetInfo(&free_b, &total), "memory");
    nlohmann::json peaks = nlohmann::json::object();
    const GpuPeaks* table = gpu_by_device_name(p.name);
    for (const char* dt : {"fp64", "fp32", "tf32", "fp16", "bf16", "fp8"}) {
      const auto v = table ? peak_tflops(*table, dt) : std::nullopt;
      peaks[dt] = v ? nlohmann::json(*v) : nlohmann::json(nullptr);
    }
    list.push_back({{"index", i},
                    {"name", p.name},
                    {"pci_bus_id", bus},
                    {"compute_capability", fmt::format("{}.{}", p.major, p.minor)},
                    {"sm_count", p.multiProcessorCount},
                    {"memory_bytes", static_cast<double>(total)},
                    {"memory_free_bytes", static_cast<double>(free_b)},
                    {"l2_bytes", p.l2CacheSize},
                    {"datasheet_peaks_tflops", peaks},
                    {"datasheet", table ? nlohmann::json(table->title) : nlohmann::json(nullptr)},
                    {"clocks", cuda::clocks_json(cuda::nvml_clocks(bus))}});
  }
  return list;
}

}  // namespace flopscope
