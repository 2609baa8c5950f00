// A test backend that forwards every call to a CpuBackend<F> (`inner`, float unless named);
// tests derive from it and override the calls they break or observe.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.hpp"

namespace flopscope::testing_util {

template <typename F>
class WrappedCpuBackendOf : public Backend {
 public:
  std::string_view name() const override { return "wrapped"; }
  nlohmann::json device_json() const override { return inner.device_json(); }
  std::string device_line() const override { return "test"; }
  double available_bytes() const override { return 1e12; }
  void allocate(const LayerGraph& g) override { inner.allocate(g); }
  void fill(uint64_t seed) override { inner.fill(seed); }
  void use_input_set(int64_t i) override { inner.use_input_set(i); }
  void run(const Op& op) override { inner.run(op); }
  void synchronize() override {}
  double allocated_bytes() const override { return inner.allocated_bytes(); }
  std::unique_ptr<Timeline> make_timeline(int slots) override { return inner.make_timeline(slots); }
  std::vector<double> read(const std::string& t, int64_t offset, int64_t count, int64_t stride) override {
    return inner.read(t, offset, count, stride);
  }
  int64_t count_nonfinite(const std::string& t) override { return inner.count_nonfinite(t); }
  nlohmann::json gemm_ceiling(Precision p, int64_t n) override { return inner.gemm_ceiling(p, n); }
  nlohmann::json copy_bandwidth(int64_t bytes) override { return inner.copy_bandwidth(bytes); }
  double fp8_scale(const std::string& copy) const override { return inner.fp8_scale(copy); }
  void fp8_calibrate() override { inner.fp8_calibrate(); }

  CpuBackend<F> inner;
};
using WrappedCpuBackend = WrappedCpuBackendOf<float>;

}  // namespace flopscope::testing_util
