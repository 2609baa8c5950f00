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
  void run(const Op& op) override;
  void synchronize() override {}
  double allocated_bytes() const override { return allocated_bytes_; }
  std::unique_ptr<Timeline> make_timeline(int slots) override;
  nlohmann::json gemm_ceiling(Precision p, int64_t n) override;
  nlohmann::json copy_bandwidth(int64_t bytes) override;

  bool counts_flops() const override { return true; }
  double counted_flops(const std::string& op) const override;
  void reset_counts() override { counted_.clear(); }
  std::vector<double> read(const std::string& tensor, int64_t offset, int64_t count, int64_t stride = 1) override;
  int64_t count_nonfinite(const std::string& tensor) override;

  // Direct access for tests (gradient checks) and verification.
  std::vector<F>& data(const std::string& tensor);

 private:
  void gemm(const Op& op);
  F* ptr(const std::string& tensor);

  std::unordered_map<std::string, std::vector<F>> tensors_;
  std::map<std::string, double> counted_;
  const LayerGraph* graph_ = nullptr;
  double allocated_bytes_ = 0;
};

// The CPU backend for a precision: fp32 or fp64 (others throw UsageError).
std::unique_ptr<Backend> make_cpu_backend(Precision p);

// Facts about this machine's CPU and BLAS, for results.
nlohmann::json cpu_info_json();

}  // namespace flopscope
