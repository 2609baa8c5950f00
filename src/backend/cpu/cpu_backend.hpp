// The CPU backend: GEMMs through OpenBLAS (fp32 sgemm, fp64 dgemm), every other op through
// the reference implementations in reference_ops.hpp. FLOPs are counted in software from
// the dimensions of each executed call (source: `counted`); time is a steady clock.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "backend/backend.hpp"

namespace flopscope {

template <typename F>
class CpuBackend final : public Backend {
 public:
  CpuBackend();
  std::string_view name() const override { return "cpu"; }
  nlohmann::json device_json() const override;
  std::string device_line() const override;
  double available_bytes() const override;

  void allocate(const LayerGraph& g) override;
  void fill(uint64_t seed) override;
  void use_input_set(int64_t i) override;
  void run(const Op& op) override;
  void synchronize() override {}
  double allocated_bytes() const override { return allocated_bytes_; }
  std::unique_ptr<Timeline> make_timeline(int slots) override;
  nlohmann::json gemm_ceiling(Precision p, int64_t n) override;
  nlohmann::json copy_bandwidth(int64_t bytes) override;

  bool counts_flops() const override { return true; }
  bool drops_tokens() const override { return true; }
  double counted_flops(const std::string& op) const override;
  void reset_counts() override { counted_.clear(); }
  std::vector<double> read(const std::string& tensor, int64_t offset, int64_t count, int64_t stride = 1) override;
  int64_t count_nonfinite(const std::string& tensor) override;
  double fp8_scale(const std::string& copy) const override;
  void fp8_calibrate() override;

  // Direct access for tests (gradient checks) and verification.
  std::vector<F>& data(const std::string& tensor);

 private:
  void gemm(const Op& op);
  double gemm_blocked(const Op& op);  // GemmSpec::blocked(): returns the FLOPs executed
  double gemm_grouped(const Op& op);  // GemmSpec::grouped: likewise
  F* ptr(const std::string& tensor);
  void fill_tensor(const TensorSpec& t, uint64_t seed);

  std::unordered_map<std::string, std::vector<F>> tensors_;
  // Input sets of the filled tensors: spare_[name][s] holds set s, except the set in use
  // (current_set_), whose storage is in tensors_ (moved, never copied).
  std::unordered_map<std::string, std::vector<std::vector<F>>> spare_;
  int64_t current_set_ = 0;
  std::map<std::string, double> counted_;
  struct Fp8State {
    float scale = 1, amax = 0;
  };
  std::map<std::string, Fp8State> fp8_;  // per FP8 copy
  const LayerGraph* graph_ = nullptr;
  double allocated_bytes_ = 0;
};

// The CPU backend for a precision: fp32, fp64, or fp8 emulated in fp32 (the linear layers'
// GEMM operands rounded to E4M3 values by the cast ops, all arithmetic in fp32); others throw
// UsageError.
std::unique_ptr<Backend> make_cpu_backend(Precision p);

// Facts about this machine's CPU and BLAS, for results.
nlohmann::json cpu_info_json();

}  // namespace flopscope
