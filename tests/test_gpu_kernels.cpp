// The device kernels (kernels/*.cu) against the CPU reference (src/backend/cpu/reference_ops.hpp)
// instantiated in double, on fresh seeded random inputs, for every dtype and for aligned and
// unaligned shapes (cols = 50257, 1001, 3, rows = 1, pointers shifted one element off 16 bytes).
//
// How a check works: inputs are drawn in double, rounded to the dtype, uploaded; the reference
// runs in double on the rounded values, so the only differences left are the kernel's own
// (float accumulation, float transcendental functions, the final rounding to the dtype).
// Outputs are poisoned (0xFF bytes: NaN in f64/f32/f16/bf16) before every run, so an element a
// kernel fails to write is NaN and fails; NaN and infinity never pass (checked explicitly).
//
// Every Gpu* test starts by asking the runtime for a device and skips with the reason when there
// is none (build machines and CI have no GPU). KernelArguments tests need no device: argument
// errors return before any CUDA call.
#include <gtest/gtest.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "backend/cpu/reference_ops.hpp"
#include "kernels.cuh"
#include "util/fp8.hpp"
#include "util/random_fill.hpp"

namespace flopscope {
namespace {

namespace kern = kernels;
using kern::DType;

// ---- device access ----------------------------------------------------------------------

// Empty when a device is visible; otherwise the runtime's reason.
std::string gpu_unavailable() {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
  if (count == 0) return "cudaGetDeviceCount found 0 devices";
  return {};
}

#define REQUIRE_GPU()                                                                                \
  do {                                                                                               \
    if (const std::string why_no_gpu = gpu_unavailable(); !why_no_gpu.empty())                       \
      GTEST_SKIP() << "no GPU visible: " << why_no_gpu;                                              \
  } while (0)

void cuda_check(cudaError_t e, const char* call) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string(call) + " failed: " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) +
                             ")");
}
#define CUDA_CHECK(call) cuda_check((call), #call)

// A kernel launcher's return value, then the stream's completion (asynchronous faults surface here).
#define LAUNCH_AND_SYNC(call)                    \
  do {                                           \
    CUDA_CHECK(call);                            \
    CUDA_CHECK(cudaDeviceSynchronize());         \
  } while (0)

// Move-only owner of one cudaMalloc allocation.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) { CUDA_CHECK(cudaMalloc(&ptr_, bytes == 0 ? 1 : bytes)); }
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(o.bytes_) {}
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(DeviceBuffer&&) = delete;

  void* get() const { return ptr_; }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_;
};

// ---- host <-> dtype ---------------------------------------------------------------------

size_t bytes_of(DType t) { return kern::dtype_bytes(t); }
const char* name_of(DType t) {
  switch (t) {
    case DType::f64: return "f64";
    case DType::f32: return "f32";
    case DType::f16: return "f16";
    case DType::bf16: return "bf16";
    case DType::e4m3: return "e4m3";
  }
  return "?";
}
// mean and rstd of layernorm: float, double for f64.
DType stats_dtype(DType t) { return t == DType::f64 ? DType::f64 : DType::f32; }

void encode_one(DType t, double v, unsigned char* out) {
  switch (t) {
    case DType::f64: std::memcpy(out, &v, sizeof v); return;
    case DType::f32: {
      const auto f = static_cast<float>(v);
      std::memcpy(out, &f, sizeof f);
      return;
    }
    case DType::f16: {
      const __half h = __double2half(v);
      std::memcpy(out, &h, sizeof h);
      return;
    }
    case DType::bf16: {
      const __nv_bfloat16 h = __double2bfloat16(v);
      std::memcpy(out, &h, sizeof h);
      return;
    }
    case DType::e4m3: out[0] = fp8::e4m3_from_float(static_cast<float>(v)); return;  // via float
  }
}

double decode_one(DType t, const unsigned char* p) {
  switch (t) {
    case DType::f64: {
      double v;
      std::memcpy(&v, p, sizeof v);
      return v;
    }
    case DType::f32: {
      float v;
      std::memcpy(&v, p, sizeof v);
      return v;
    }
    case DType::f16: {
      __half v;
      std::memcpy(&v, p, sizeof v);
      return __half2float(v);
    }
    case DType::bf16: {
      __nv_bfloat16 v;
      std::memcpy(&v, p, sizeof v);
      return __bfloat162float(v);
    }
    case DType::e4m3: return fp8::e4m3_to_float(p[0]);
  }
  return std::numeric_limits<double>::quiet_NaN();
}

double round_to(DType t, double v) {
  unsigned char b[8];
  encode_one(t, v, b);
  return decode_one(t, b);
}

// n values offset + scale * uniform_pm1(seed, stream, i), rounded to the dtype.
std::vector<double> random_values(DType t, int64_t n, uint64_t stream, double scale, double offset = 0) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    v[static_cast<size_t>(i)] = round_to(t, offset + scale * uniform_pm1(2024, stream, static_cast<uint64_t>(i)));
  return v;
}

// n elements of a dtype on the device, starting `shift` elements past the (256-byte aligned)
// allocation: shift = 1 puts every tensor off the 16-byte grid, the unaligned paths.
class DeviceTensor {
 public:
  DeviceTensor(DType t, int64_t n, int64_t shift = 0)
      : t_(t), n_(n), shift_(shift), buf_(static_cast<size_t>(n + shift) * bytes_of(t)) {
    poison();
  }
  void* ptr() const { return static_cast<unsigned char*>(buf_.get()) + shift_ * static_cast<int64_t>(bytes_of(t_)); }
  int64_t size() const { return n_; }

  void upload(const std::vector<double>& v) {
    if (static_cast<int64_t>(v.size()) != n_) throw std::runtime_error("upload: size mismatch");
    std::vector<unsigned char> bytes(static_cast<size_t>(n_) * bytes_of(t_));
    for (size_t i = 0; i < v.size(); ++i) encode_one(t_, v[i], bytes.data() + i * bytes_of(t_));
    CUDA_CHECK(cudaMemcpy(ptr(), bytes.data(), bytes.size(), cudaMemcpyHostToDevice));
  }
  std::vector<unsigned char> raw() const {
    std::vector<unsigned char> bytes(static_cast<size_t>(n_) * bytes_of(t_));
    CUDA_CHECK(cudaMemcpy(bytes.data(), ptr(), bytes.size(), cudaMemcpyDeviceToHost));
    return bytes;
  }
  std::vector<double> download() const {
    const std::vector<unsigned char> bytes = raw();
    std::vector<double> v(static_cast<size_t>(n_));
    for (size_t i = 0; i < v.size(); ++i) v[i] = decode_one(t_, bytes.data() + i * bytes_of(t_));
    return v;
  }
  // 0xFF bytes: NaN in every floating dtype (sign set, exponent all ones, mantissa non-zero).
  void poison() { CUDA_CHECK(cudaMemset(buf_.get(), 0xFF, buf_.bytes())); }

 private:
  DType t_;
  int64_t n_;
  int64_t shift_;
  DeviceBuffer buf_;
};

// ---- comparison ---------------------------------------------------------------------------

// Tolerances, as relative error = max|gpu - ref| / max|ref| per output tensor, and elementwise
// |gpu - ref| <= rel * |ref| + floor * max|ref| (the floor admits the absolute error an element
// gets from cancellation between terms of the tensor's own scale: softmax-backward's
// p * (dp - dot), layernorm's g - mean(g) - xhat * mean(g xhat), column sums of mixed signs).
//  f32: float accumulation over up to 5e4 terms (strided per thread, then a tree) has a typical
//       relative error ~1e-6 and the transcendental functions (expf, tanhf, logf) <= 2 ulp
//       (1.2e-7); 1e-5 leaves that headroom and still fails any wrong formula by orders of
//       magnitude. floor 1e-6: ~10 ulp of the tensor's largest element.
//  f16/bf16: the output's own rounding dominates: half an ulp is 2^-11 (f16), 2^-8 = 3.9e-3
//       (bf16) of the value; inputs are rounded before the reference sees them. rel 1e-2,
//       floor 1e-3 (also covers f16 subnormals, absolute error 2^-25).
//  f64: double throughout; sum-order differences ~n * 1e-16 at worst; rel 1e-10, floor 1e-11.
struct Tol {
  double rel, floor;
};
Tol tolerance(DType t) {
  switch (t) {
    case DType::f64: return {1e-10, 1e-11};
    case DType::f32: return {1e-5, 1e-6};
    case DType::f16:
    case DType::bf16: return {1e-2, 1e-3};
    case DType::e4m3: return {0x1p-4, 0x1p-10};  // half a step (3 mantissa bits); no kernel computes in it
  }
  return {0, 0};
}

::testing::AssertionResult close(const char* what, const std::vector<double>& gpu, const std::vector<double>& ref,
                                 Tol tol) {
  if (gpu.size() != ref.size())
    return ::testing::AssertionFailure() << what << ": " << gpu.size() << " elements, reference " << ref.size();
  double max_ref = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(ref[i])) return ::testing::AssertionFailure() << what << ": reference[" << i << "] not finite";
    max_ref = std::max(max_ref, std::abs(ref[i]));
  }
  double max_err = 0;
  for (size_t i = 0; i < gpu.size(); ++i) {
    if (!std::isfinite(gpu[i]))  // NaN would also slip through every comparison below
      return ::testing::AssertionFailure() << what << "[" << i << "] = " << gpu[i] << " (reference " << ref[i]
                                           << "): not finite; unwritten or overflowed";
    const double err = std::abs(gpu[i] - ref[i]);
    max_err = std::max(max_err, err);
    if (err > tol.rel * std::abs(ref[i]) + tol.floor * max_ref)
      return ::testing::AssertionFailure() << what << "[" << i << "] = " << gpu[i] << ", reference " << ref[i]
                                           << ": error " << err << " > " << tol.rel << " * |ref| + " << tol.floor
                                           << " * " << max_ref;
  }
  const double rel = max_err / std::max(max_ref, std::numeric_limits<double>::min());
  if (rel >= tol.rel)
    return ::testing::AssertionFailure() << what << ": relative error " << rel << " >= " << tol.rel;
  return ::testing::AssertionSuccess();
}

std::string label(DType t, int64_t a, int64_t b, int64_t shift) {
  std::ostringstream s;
  s << name_of(t) << " (" << a << ", " << b << ")" << (shift != 0 ? " shifted off 16 bytes" : "");
  return s.str();
}

constexpr DType kAllTypes[] = {DType::f32, DType::bf16, DType::f16, DType::f64};

struct Shape {
  int64_t rows, cols, shift;
};
// Aligned (cols % 8 == 0) and unaligned widths, one row, and shifted pointers.
constexpr Shape kRowShapes[] = {{1, 8, 0},      {64, 1024, 0}, {64, 1024, 1}, {3, 3, 0},
                                {5, 1001, 0},  {1, 50257, 0}, {2, 50257, 1}, {7, 768, 0}};

// ---- fill, indices, non-finite count ------------------------------------------------------

TEST(GpuFill, UniformMatchesTheHostFill) {
  REQUIRE_GPU();
  const int64_t n = 10007;
  const uint64_t seed = 99, stream = stream_id("ln1.gamma");
  const double offset = 1.0, scale = 0.1;
  for (DType t : kAllTypes) {
    SCOPED_TRACE(name_of(t));
    DeviceTensor out(t, n);
    LAUNCH_AND_SYNC(kern::fill_uniform(t, out.ptr(), n, seed, stream, offset, scale, nullptr));
    const std::vector<double> got = out.download();
    for (int64_t i = 0; i < n; ++i) {
      const double host = offset + scale * uniform_pm1(seed, stream, static_cast<uint64_t>(i));
      const double g = got[static_cast<size_t>(i)];
      if (t == DType::f64 || t == DType::f32) {
        // Same double (no fused multiply-add on the device), then one correctly rounded conversion.
        ASSERT_EQ(g, round_to(t, host)) << "element " << i;
      } else {
        // One rounding of the same double: within half an ulp (2^-11 f16, 2^-8 bf16 relative).
        const double half_ulp = t == DType::f16 ? 0x1p-11 : 0x1p-8;
        ASSERT_LE(std::abs(g - host), half_ulp * std::abs(host)) << "element " << i;
      }
    }
  }
}

TEST(GpuFill, IndicesInRangeAndMatchTheHostFormula) {
  REQUIRE_GPU();
  const int64_t n = 20011;
  const uint64_t seed = 5, stream = stream_id("targets");
  for (int64_t count : {int64_t{1}, int64_t{3}, int64_t{1001}, int64_t{50257}}) {
    SCOPED_TRACE(count);
    DeviceBuffer out(static_cast<size_t>(n) * sizeof(int32_t));
    CUDA_CHECK(cudaMemset(out.get(), 0xFF, out.bytes()));
    LAUNCH_AND_SYNC(kern::fill_indices(static_cast<int32_t*>(out.get()), n, seed, stream, count, nullptr));
    std::vector<int32_t> got(static_cast<size_t>(n));
    CUDA_CHECK(cudaMemcpy(got.data(), out.get(), out.bytes(), cudaMemcpyDeviceToHost));
    for (int64_t i = 0; i < n; ++i) {
      const double u = (uniform_pm1(seed, stream, static_cast<uint64_t>(i)) + 1) / 2;  // cpu_backend.cpp's formula
      const int64_t host = std::min<int64_t>(static_cast<int64_t>(u * static_cast<double>(count)), count - 1);
      const int32_t g = got[static_cast<size_t>(i)];
      ASSERT_GE(g, 0) << "element " << i;
      ASSERT_LT(g, count) << "element " << i;
      ASSERT_EQ(g, host) << "element " << i;
    }
  }
}

TEST(GpuCountNonfinite, CountsNaNAndInfinitiesAndAddsToTheCounter) {
  REQUIRE_GPU();
  const double inf = std::numeric_limits<double>::infinity();
  for (DType t : kAllTypes) {
    for (int64_t shift : {0, 1}) {
      const int64_t n = 1003;
      SCOPED_TRACE(label(t, 1, n, shift));
      std::vector<double> v = random_values(t, n, 1, 100.0);
      v[0] = std::numeric_limits<double>::quiet_NaN();  // scalar head when shifted
      v[500] = inf;                                      // vector body
      v[501] = -inf;
      v[static_cast<size_t>(n - 1)] = std::numeric_limits<double>::quiet_NaN();  // scalar tail
      DeviceTensor x(t, n, shift);
      x.upload(v);
      DeviceBuffer count(sizeof(unsigned long long));
      const unsigned long long start = 5;  // the kernel adds to what is there
      CUDA_CHECK(cudaMemcpy(count.get(), &start, sizeof start, cudaMemcpyHostToDevice));
      LAUNCH_AND_SYNC(kern::count_nonfinite(t, x.ptr(), n, static_cast<unsigned long long*>(count.get()), nullptr));
      unsigned long long got = 0;
      CUDA_CHECK(cudaMemcpy(&got, count.get(), sizeof got, cudaMemcpyDeviceToHost));
      EXPECT_EQ(got, start + 4);

      // All finite: nothing added.
      x.upload(random_values(t, n, 2, 1.0));
      LAUNCH_AND_SYNC(kern::count_nonfinite(t, x.ptr(), n, static_cast<unsigned long long*>(count.get()), nullptr));
      CUDA_CHECK(cudaMemcpy(&got, count.get(), sizeof got, cudaMemcpyDeviceToHost));
      EXPECT_EQ(got, start + 4);
    }
  }
}

// ---- layernorm ----------------------------------------------------------------------------

TEST(GpuLayerNorm, ForwardMatchesReference) {
  REQUIRE_GPU();
  for (DType t : kAllTypes) {
    for (const Shape& s : kRowShapes) {
      SCOPED_TRACE(label(t, s.rows, s.cols, s.shift));
      const int64_t n = s.rows * s.cols;
      // A non-zero mean (0.3) like real activations, so mean is well conditioned to compare.
      const std::vector<double> x = random_values(t, n, 11, 1.0, 0.3);
      const std::vector<double> gamma = random_values(t, s.cols, 12, 0.1, 1.0);
      const std::vector<double> beta = random_values(t, s.cols, 13, 0.1);
      DeviceTensor d_x(t, n, s.shift), d_gamma(t, s.cols, s.shift), d_beta(t, s.cols, s.shift), d_y(t, n, s.shift);
      DeviceTensor d_mean(stats_dtype(t), s.rows), d_rstd(stats_dtype(t), s.rows);
      d_x.upload(x);
      d_gamma.upload(gamma);
      d_beta.upload(beta);
      LAUNCH_AND_SYNC(kern::layernorm_forward(t, d_x.ptr(), d_gamma.ptr(), d_beta.ptr(), d_y.ptr(), d_mean.ptr(),
                                              d_rstd.ptr(), s.rows, s.cols, nullptr));
      std::vector<double> y(static_cast<size_t>(n)), mean(static_cast<size_t>(s.rows)), rstd(mean.size());
      ref::layernorm_forward(x.data(), gamma.data(), beta.data(), y.data(), mean.data(), rstd.data(), s.rows, s.cols);
      EXPECT_TRUE(close("y", d_y.download(), y, tolerance(t)));
      // Statistics are float (double for f64) whatever the dtype: float tolerance.
      EXPECT_TRUE(close("mean", d_mean.download(), mean, tolerance(stats_dtype(t))));
      EXPECT_TRUE(close("rstd", d_rstd.download(), rstd, tolerance(stats_dtype(t))));
    }
  }
}

TEST(GpuLayerNorm, BackwardMatchesReferenceAndRepeats) {
  REQUIRE_GPU();
  std::vector<Shape> shapes(std::begin(kRowShapes), std::end(kRowShapes));
  shapes.push_back({3000, 40, 0});    // 512 blocks: 23 groups of 23, the last group partial
  shapes.push_back({2048, 768, 0});   // GPT-2 width, hundreds of blocks with shared accumulators
  shapes.push_back({300, 30000, 0});  // f32 accumulators over the shared-memory limit: global path
  for (DType t : kAllTypes) {
    for (const Shape& s : shapes) {
      SCOPED_TRACE(label(t, s.rows, s.cols, s.shift));
      const int64_t n = s.rows * s.cols;
      const std::vector<double> x = random_values(t, n, 21, 1.0, 0.3);
      const std::vector<double> gamma = random_values(t, s.cols, 22, 0.1, 1.0);
      const std::vector<double> beta = random_values(t, s.cols, 23, 0.1);
      const std::vector<double> dy = random_values(t, n, 24, 1.0);
      // The saved statistics, from the reference forward, stored in their type (float or double):
      // the kernel and the reference backward read the same rounded values.
      std::vector<double> y(static_cast<size_t>(n)), mean(static_cast<size_t>(s.rows)), rstd(mean.size());
      ref::layernorm_forward(x.data(), gamma.data(), beta.data(), y.data(), mean.data(), rstd.data(), s.rows, s.cols);
      for (double& v : mean) v = round_to(stats_dtype(t), v);
      for (double& v : rstd) v = round_to(stats_dtype(t), v);

      DeviceTensor d_dy(t, n, s.shift), d_x(t, n, s.shift), d_gamma(t, s.cols, s.shift);
      DeviceTensor d_mean(stats_dtype(t), s.rows), d_rstd(stats_dtype(t), s.rows);
      DeviceTensor d_dx(t, n, s.shift), d_dgamma(t, s.cols, s.shift), d_dbeta(t, s.cols, s.shift);
      d_dy.upload(dy);
      d_x.upload(x);
      d_gamma.upload(gamma);
      d_mean.upload(mean);
      d_rstd.upload(rstd);
      DeviceBuffer ws(kern::layernorm_backward_workspace_bytes(s.rows, s.cols));
      CUDA_CHECK(cudaMemset(ws.get(), 0, ws.bytes()));  // counters start at zero, once per workspace

      auto run = [&] {
        LAUNCH_AND_SYNC(kern::layernorm_backward(t, d_dy.ptr(), d_x.ptr(), d_gamma.ptr(), d_mean.ptr(),
                                                 d_rstd.ptr(), d_dx.ptr(), d_dgamma.ptr(), d_dbeta.ptr(), s.rows,
                                                 s.cols, ws.get(), nullptr));
      };
      run();
      std::vector<double> dx(static_cast<size_t>(n)), dgamma(static_cast<size_t>(s.cols)), dbeta(dgamma.size());
      ref::layernorm_backward(dy.data(), x.data(), gamma.data(), mean.data(), rstd.data(), dx.data(), dgamma.data(),
                              dbeta.data(), s.rows, s.cols);
      EXPECT_TRUE(close("dx", d_dx.download(), dx, tolerance(t)));
      EXPECT_TRUE(close("dgamma", d_dgamma.download(), dgamma, tolerance(t)));
      EXPECT_TRUE(close("dbeta", d_dbeta.download(), dbeta, tolerance(t)));

      // Again, on poisoned outputs: the last-block counters were reset, and the sums are
      // reduced in a fixed order, so the second run gives the same bits.
      const auto dx1 = d_dx.raw(), dg1 = d_dgamma.raw(), db1 = d_dbeta.raw();
      d_dx.poison();
      d_dgamma.poison();
      d_dbeta.poison();
      run();
      EXPECT_TRUE(d_dx.raw() == dx1) << "dx differs on the second run";
      EXPECT_TRUE(d_dgamma.raw() == dg1) << "dgamma differs on the second run";
      EXPECT_TRUE(d_dbeta.raw() == db1) << "dbeta differs on the second run";
    }
  }
}

// ---- causal softmax -----------------------------------------------------------------------

struct SoftmaxShape {
  int64_t batch, n, shift;
};
constexpr SoftmaxShape kSoftmaxShapes[] = {{4, 1, 0}, {3, 7, 0}, {3, 128, 0}, {3, 128, 1}, {2, 2048, 0}};

// Every element above the diagonal must be an exact zero (written, not left poisoned).
::testing::AssertionResult upper_triangle_is_zero(const std::vector<double>& v, int64_t batch, int64_t n) {
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = i + 1; j < n; ++j) {
        const double e = v[static_cast<size_t>((b * n + i) * n + j)];
        if (e != 0.0)  // NaN fails too
          return ::testing::AssertionFailure() << "masked element (" << b << ", " << i << ", " << j << ") = " << e;
      }
  return ::testing::AssertionSuccess();
}

TEST(GpuSoftmax, CausalForwardMatchesReference) {
  REQUIRE_GPU();
  for (DType t : kAllTypes) {
    for (const SoftmaxShape& s : kSoftmaxShapes) {
      SCOPED_TRACE(label(t, s.batch, s.n, s.shift));
      const int64_t total = s.batch * s.n * s.n;
      const std::vector<double> scores = random_values(t, total, 31, 4.0);
      DeviceTensor d_scores(t, total, s.shift), d_probs(t, total, s.shift);
      d_scores.upload(scores);
      LAUNCH_AND_SYNC(kern::softmax_causal_forward(t, d_scores.ptr(), d_probs.ptr(), s.batch, s.n, nullptr));
      std::vector<double> probs(static_cast<size_t>(total));
      ref::softmax_causal_forward(scores.data(), probs.data(), s.batch, s.n);
      const std::vector<double> got = d_probs.download();
      EXPECT_TRUE(upper_triangle_is_zero(got, s.batch, s.n));
      EXPECT_TRUE(close("probs", got, probs, tolerance(t)));
    }
  }
}

TEST(GpuSoftmax, CausalBackwardMatchesReference) {
  REQUIRE_GPU();
  for (DType t : kAllTypes) {
    for (const SoftmaxShape& s : kSoftmaxShapes) {
      SCOPED_TRACE(label(t, s.batch, s.n, s.shift));
      const int64_t total = s.batch * s.n * s.n;
      // Real probabilities (rows sum to 1, zeros above the diagonal), rounded to the dtype.
      const std::vector<double> scores = random_values(DType::f64, total, 41, 4.0);
      std::vector<double> probs(static_cast<size_t>(total));
      ref::softmax_causal_forward(scores.data(), probs.data(), s.batch, s.n);
      for (double& p : probs) p = round_to(t, p);
      const std::vector<double> dprobs = random_values(t, total, 42, 1.0);  // masked part ignored
      DeviceTensor d_probs(t, total, s.shift), d_dprobs(t, total, s.shift), d_dscores(t, total, s.shift);
      d_probs.upload(probs);
      d_dprobs.upload(dprobs);
      LAUNCH_AND_SYNC(kern::softmax_causal_backward(t, d_probs.ptr(), d_dprobs.ptr(), d_dscores.ptr(), s.batch, s.n,
                                                    nullptr));
      std::vector<double> dscores(static_cast<size_t>(total));
      ref::softmax_causal_backward(probs.data(), dprobs.data(), dscores.data(), s.batch, s.n);
      const std::vector<double> got = d_dscores.download();
      EXPECT_TRUE(upper_triangle_is_zero(got, s.batch, s.n));
      EXPECT_TRUE(close("dscores", got, dscores, tolerance(t)));
    }
  }
}

// ---- elementwise: GeLU, residual ------------------------------------------------------------

struct FlatShape {
  int64_t n, shift;
};
constexpr FlatShape kFlatShapes[] = {{1, 0}, {3, 0}, {1001, 0}, {1001, 1}, {50257, 1}, {65536 + 5, 0}, {1 << 20, 0}};

TEST(GpuGelu, ForwardAndBackwardMatchReference) {
  REQUIRE_GPU();
  for (DType t : kAllTypes) {
    for (const FlatShape& s : kFlatShapes) {
      SCOPED_TRACE(label(t, 1, s.n, s.shift));
      const std::vector<double> x = random_values(t, s.n, 51, 3.0);  // into both tails of tanh
      const std::vector<double> dy = random_values(t, s.n, 52, 1.0);
      DeviceTensor d_x(t, s.n, s.shift), d_y(t, s.n, s.shift), d_dy(t, s.n, s.shift), d_dx(t, s.n, s.shift);
      d_x.upload(x);
      d_dy.upload(dy);
      LAUNCH_AND_SYNC(kern::gelu_forward(t, d_x.ptr(), d_y.ptr(), s.n, nullptr));
      LAUNCH_AND_SYNC(kern::gelu_backward(t, d_x.ptr(), d_dy.ptr(), d_dx.ptr(), s.n, nullptr));
      std::vector<double> y(static_cast<size_t>(s.n)), dx(y.size());
      ref::gelu_forward(x.data(), y.data(), s.n);
      ref::gelu_backward(x.data(), dy.data(), dx.data(), s.n);
      EXPECT_TRUE(close("y", d_y.download(), y, tolerance(t)));
      EXPECT_TRUE(close("dx", d_dx.download(), dx, tolerance(t)));
    }
  }
}

TEST(GpuResidual, AddMatchesReferenceAlsoInPlace) {
  REQUIRE_GPU();
  for (DType t : kAllTypes) {
    for (const FlatShape& s : kFlatShapes) {
      SCOPED_TRACE(label(t, 1, s.n, s.shift));
      const std::vector<double> a = random_values(t, s.n, 61, 1.0), b = random_values(t, s.n, 62, 1.0);
      DeviceTensor d_a(t, s.n, s.shift), d_b(t, s.n, s.shift), d_out(t, s.n, s.shift);
      d_a.upload(a);
      d_b.upload(b);
      std::vector<double> out(static_cast<size_t>(s.n));
      ref::residual_add(a.data(), b.data(), out.data(), s.n);
      LAUNCH_AND_SYNC(kern::residual_add(t, d_a.ptr(), d_b.ptr(), d_out.ptr(), s.n, nullptr));
      EXPECT_TRUE(close("out", d_out.download(), out, tolerance(t)));
      LAUNCH_AND_SYNC(kern::residual_add(t, d_a.ptr(), d_b.ptr(), d_a.ptr(), s.n, nullptr));  // out aliases a
      EXPECT_TRUE(close("out aliasing a", d_a.download(), out, tolerance(t)));
    }
  }
}

// ---- bias -------------------------------------------------------------------------------------

TEST(GpuBias, AddMatchesReference) {
  REQUIRE_GPU();
  for (DType t : kAllTypes) {
    for (const Shape& s : kRowShapes) {
      SCOPED_TRACE(label(t, s.rows, s.cols, s.shift));
      const int64_t n = s.rows * s.cols;
      std::vector<double> x = random_values(t, n, 71, 1.0);
      const std::vector<double> bias = random_values(t, s.cols, 72, 0.1);
      DeviceTensor d_x(t, n, s.shift), d_bias(t, s.cols, s.shift);
      d_x.upload(x);
      d_bias.upload(bias);
      LAUNCH_AND_SYNC(kern::bias_add(t, d_x.ptr(), d_bias.ptr(), s.rows, s.cols, nullptr));
      ref::bias_add(x.data(), bias.data(), s.rows, s.cols);
      EXPECT_TRUE(close("x + bias", d_x.download(), x, tolerance(t)));
    }
  }
}

TEST(GpuBias, GradMatchesReferenceAndRepeats) {
  REQUIRE_GPU();
  std::vector<Shape> shapes(std::begin(kRowShapes), std::end(kRowShapes));
  shapes.push_back({3000, 40, 0});
  shapes.push_back({1030, 3 * 256, 0});  // row count not a multiple of the unrolled step
  for (DType t : kAllTypes) {
    for (const Shape& s : shapes) {
      SCOPED_TRACE(label(t, s.rows, s.cols, s.shift));
      const int64_t n = s.rows * s.cols;
      const std::vector<double> dy = random_values(t, n, 81, 1.0);
      DeviceTensor d_dy(t, n, s.shift), d_dbias(t, s.cols, s.shift);
      d_dy.upload(dy);
      LAUNCH_AND_SYNC(kern::bias_grad(t, d_dy.ptr(), d_dbias.ptr(), s.rows, s.cols, nullptr));
      std::vector<double> dbias(static_cast<size_t>(s.cols));
      ref::bias_grad(dy.data(), dbias.data(), s.rows, s.cols);
      EXPECT_TRUE(close("dbias", d_dbias.download(), dbias, tolerance(t)));
      const auto first = d_dbias.raw();
      d_dbias.poison();
      LAUNCH_AND_SYNC(kern::bias_grad(t, d_dy.ptr(), d_dbias.ptr(), s.rows, s.cols, nullptr));
      EXPECT_TRUE(d_dbias.raw() == first) << "dbias differs on the second run";
    }
  }
}

// ---- cross-entropy ----------------------------------------------------------------------------

std::vector<int32_t> targets_for(int64_t rows, int64_t vocab) {
  std::vector<int32_t> t(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    const double u = (uniform_pm1(2024, 91, static_cast<uint64_t>(r)) + 1) / 2;
    t[static_cast<size_t>(r)] = static_cast<int32_t>(std::min<int64_t>(static_cast<int64_t>(u * static_cast<double>(vocab)), vocab - 1));
  }
  t.front() = 0;  // both ends of the vocabulary
  t.back() = static_cast<int32_t>(vocab - 1);
  return t;
}

constexpr Shape kVocabShapes[] = {{1, 50257, 0}, {4, 50257, 0}, {3, 50257, 1}, {8, 1001, 0},
                                  {5, 3, 0},     {16, 1024, 0}, {16, 1024, 1}};

TEST(GpuCrossEntropy, ForwardAndBackwardMatchReference) {
  REQUIRE_GPU();
  for (DType t : kAllTypes) {
    for (const Shape& s : kVocabShapes) {
      SCOPED_TRACE(label(t, s.rows, s.cols, s.shift));
      const int64_t n = s.rows * s.cols;
      const std::vector<double> logits = random_values(t, n, 92, 4.0);
      const std::vector<int32_t> targets = targets_for(s.rows, s.cols);
      DeviceTensor d_logits(t, n, s.shift), d_loss(t, s.rows, s.shift), d_dlogits(t, n, s.shift);
      DeviceBuffer d_targets(targets.size() * sizeof(int32_t));
      d_logits.upload(logits);
      CUDA_CHECK(cudaMemcpy(d_targets.get(), targets.data(), d_targets.bytes(), cudaMemcpyHostToDevice));
      const auto* tp = static_cast<const int32_t*>(d_targets.get());
      LAUNCH_AND_SYNC(kern::cross_entropy_forward(t, d_logits.ptr(), tp, d_loss.ptr(), s.rows, s.cols, nullptr));
      LAUNCH_AND_SYNC(kern::cross_entropy_backward(t, d_logits.ptr(), tp, d_dlogits.ptr(), s.rows, s.cols, nullptr));
      std::vector<double> loss(static_cast<size_t>(s.rows)), dlogits(static_cast<size_t>(n));
      ref::cross_entropy_forward(logits.data(), targets.data(), loss.data(), s.rows, s.cols);
      ref::cross_entropy_backward(logits.data(), targets.data(), dlogits.data(), s.rows, s.cols);
      EXPECT_TRUE(close("loss", d_loss.download(), loss, tolerance(t)));
      EXPECT_TRUE(close("dlogits", d_dlogits.download(), dlogits, tolerance(t)));
    }
  }
}

TEST(GpuCrossEntropy, TargetOutOfRangeGivesNaN) {
  REQUIRE_GPU();
  const DType t = DType::f32;
  const int64_t rows = 2, vocab = 1001;
  DeviceTensor d_logits(t, rows * vocab), d_loss(t, rows), d_dlogits(t, rows * vocab);
  d_logits.upload(random_values(t, rows * vocab, 93, 1.0));
  const std::vector<int32_t> targets = {3, static_cast<int32_t>(vocab)};  // row 1: out of range
  DeviceBuffer d_targets(targets.size() * sizeof(int32_t));
  CUDA_CHECK(cudaMemcpy(d_targets.get(), targets.data(), d_targets.bytes(), cudaMemcpyHostToDevice));
  const auto* tp = static_cast<const int32_t*>(d_targets.get());
  LAUNCH_AND_SYNC(kern::cross_entropy_forward(t, d_logits.ptr(), tp, d_loss.ptr(), rows, vocab, nullptr));
  LAUNCH_AND_SYNC(kern::cross_entropy_backward(t, d_logits.ptr(), tp, d_dlogits.ptr(), rows, vocab, nullptr));
  const std::vector<double> loss = d_loss.download(), dlogits = d_dlogits.download();
  EXPECT_TRUE(std::isfinite(loss[0]));
  EXPECT_TRUE(std::isnan(loss[1]));
  EXPECT_TRUE(std::isfinite(dlogits[0]));
  EXPECT_TRUE(std::isnan(dlogits[static_cast<size_t>(vocab)]));
}

// ---- fp8 (E4M3) cast ------------------------------------------------------------------------
//
// Expected codes come from the host model, fp8::e4m3_from_float(float(x) * scale) on the same
// (downloaded) inputs, and are compared byte for byte: the output starts poisoned with 0xFF, a
// NaN code, which no finite input produces, so an unwritten byte fails.

// x values spread over 2^-16 .. 2^10 in magnitude, both signs (saturating at scale 16, subnormal
// and zero codes at 2^-3), a few exact ties of the E4M3 grid, rounded to the dtype.
std::vector<double> fp8_inputs(DType t, int64_t n, uint64_t stream) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const auto k = static_cast<uint64_t>(i);
    const double u = uniform_pm1(2024, stream, k);
    const int e = static_cast<int>((uniform_pm1(2024, stream + 1, k) + 1) / 2 * 27) - 16;
    v[static_cast<size_t>(i)] = round_to(t, std::ldexp(u, e));
  }
  const double ties[] = {1.0625, -1.1875, 464.0, 0x1p-10, 432.0, -0x1.8p-9};  // exact in bf16, f16, f32
  for (size_t k = 0; k < std::size(ties) && k < v.size(); ++k) v[(k * 7919) % v.size()] = ties[k];
  return v;
}

struct CastShape {
  int64_t rows, cols, x_shift, out_shift;  // shifts in elements of x / bytes of out
};
constexpr CastShape kCastShapes[] = {
    {1, 1, 0, 0},      {3, 5, 0, 0},     {3, 5, 1, 1},      {129, 257, 0, 0}, {129, 257, 1, 1}, {64, 4096, 0, 0},
    {64, 4096, 1, 1},  {64, 4096, 1, 0}, {64, 4096, 3, 5},  {7, 1001, 0, 0},  {128, 192, 0, 0}, {128, 192, 0, 3},
    {48, 100, 0, 0},   {2, 8, 0, 0},     {1, 50257, 1, 1},  {200, 64, 0, 0}};

std::string cast_label(DType t, const CastShape& s, bool transpose, float scale) {
  std::ostringstream o;
  o << name_of(t) << " (" << s.rows << ", " << s.cols << ")" << (transpose ? " transposed" : "") << " scale " << scale
    << " x shift " << s.x_shift << " out shift " << s.out_shift;
  return o.str();
}

// Runs cast_e4m3 on x (already uploaded) and compares every byte of out; *amax starts at amax0.
::testing::AssertionResult cast_matches(DType t, const DeviceTensor& x, const std::vector<double>& xs, int64_t rows,
                                        int64_t cols, bool transpose, float scale, int64_t out_shift,
                                        float amax0, float* amax_out) {
  const int64_t n = rows * cols;
  DeviceTensor out(DType::e4m3, n, out_shift);  // poisoned: 0xFF
  DeviceBuffer d_scale(sizeof(float)), d_amax(sizeof(float));
  CUDA_CHECK(cudaMemcpy(d_scale.get(), &scale, sizeof scale, cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaMemcpy(d_amax.get(), &amax0, sizeof amax0, cudaMemcpyHostToDevice));
  LAUNCH_AND_SYNC(kern::cast_e4m3(t, x.ptr(), out.ptr(), rows, cols, transpose,
                                  static_cast<const float*>(d_scale.get()), static_cast<float*>(d_amax.get()),
                                  nullptr));
  CUDA_CHECK(cudaMemcpy(amax_out, d_amax.get(), sizeof(float), cudaMemcpyDeviceToHost));
  const std::vector<unsigned char> got = out.raw();
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      const auto xv = static_cast<float>(xs[static_cast<size_t>(i * cols + j)]);  // exact: xs is in the dtype
      const uint8_t want = fp8::e4m3_from_float(xv * scale);
      const int64_t at = transpose ? j * rows + i : i * cols + j;
      const uint8_t g = got[static_cast<size_t>(at)];
      if (g != want)
        return ::testing::AssertionFailure() << "x(" << i << ", " << j << ") = " << xv << ": code 0x" << std::hex
                                             << int{g} << ", expected 0x" << int{want} << std::dec << " at out["
                                             << at << "]";
    }
  return ::testing::AssertionSuccess();
}

TEST(GpuCastE4M3, MatchesTheHostModelBitForBitWithAmax) {
  REQUIRE_GPU();
  for (DType t : {DType::bf16, DType::f16, DType::f32}) {
    for (const CastShape& s : kCastShapes) {
      const int64_t n = s.rows * s.cols;
      const std::vector<double> xs = fp8_inputs(t, n, 111);
      DeviceTensor x(t, n, s.x_shift);
      x.upload(xs);
      float host_amax = 0;
      for (double v : xs) host_amax = std::max(host_amax, std::abs(static_cast<float>(v)));
      for (bool transpose : {false, true}) {
        for (float scale : {1.0f, 0x1p-3f, 16.0f}) {
          SCOPED_TRACE(cast_label(t, s, transpose, scale));
          float amax = -1;
          EXPECT_TRUE(cast_matches(t, x, xs, s.rows, s.cols, transpose, scale, s.out_shift, 0.0f, &amax));
          EXPECT_EQ(amax, host_amax) << "amax from 0";
          // Only raised: a larger amax stays as it was.
          EXPECT_TRUE(cast_matches(t, x, xs, s.rows, s.cols, transpose, scale, s.out_shift, 2 * host_amax, &amax));
          EXPECT_EQ(amax, 2 * host_amax) << "a larger amax was lowered";
        }
      }
    }
  }
}

TEST(GpuCastE4M3, WithoutAmaxAndRepeatable) {
  REQUIRE_GPU();
  const DType t = DType::bf16;
  const int64_t rows = 129, cols = 4104;
  const std::vector<double> xs = fp8_inputs(t, rows * cols, 121);
  DeviceTensor x(t, rows * cols);
  x.upload(xs);
  const float scale = 4.0f;
  DeviceBuffer d_scale(sizeof(float));
  CUDA_CHECK(cudaMemcpy(d_scale.get(), &scale, sizeof scale, cudaMemcpyHostToDevice));
  for (bool transpose : {false, true}) {
    SCOPED_TRACE(transpose ? "transposed" : "flat");
    DeviceTensor out(DType::e4m3, rows * cols);
    LAUNCH_AND_SYNC(kern::cast_e4m3(t, x.ptr(), out.ptr(), rows, cols, transpose,
                                    static_cast<const float*>(d_scale.get()), nullptr, nullptr));
    const std::vector<unsigned char> first = out.raw();
    float amax = 0;
    EXPECT_TRUE(cast_matches(t, x, xs, rows, cols, transpose, scale, 0, 0.0f, &amax));
    out.poison();
    LAUNCH_AND_SYNC(kern::cast_e4m3(t, x.ptr(), out.ptr(), rows, cols, transpose,
                                    static_cast<const float*>(d_scale.get()), nullptr, nullptr));
    EXPECT_TRUE(out.raw() == first) << "differs on the second run";
  }
}

TEST(GpuCastE4M3, InfinitySaturatesNaNStaysNaNAndPropagatesIntoAmax) {
  REQUIRE_GPU();
  const double inf = std::numeric_limits<double>::infinity();
  for (DType t : {DType::bf16, DType::f16, DType::f32}) {
    for (bool transpose : {false, true}) {
      SCOPED_TRACE(std::string(name_of(t)) + (transpose ? " transposed" : ""));
      const int64_t rows = 16, cols = 72;
      std::vector<double> xs = fp8_inputs(t, rows * cols, 131);
      xs[5] = inf;
      xs[6] = -inf;
      xs[7] = round_to(t, 1e4);  // finite, saturates
      DeviceTensor x(t, rows * cols);
      x.upload(xs);
      float amax = 0;
      // Finite and infinite inputs only: codes as the host model, amax = inf.
      EXPECT_TRUE(cast_matches(t, x, xs, rows, cols, transpose, 1.0f, 0, 0.0f, &amax));
      EXPECT_EQ(amax, std::numeric_limits<float>::infinity());

      xs[100] = std::numeric_limits<double>::quiet_NaN();
      x.upload(xs);
      DeviceTensor out(DType::e4m3, rows * cols);
      DeviceBuffer d_scale(sizeof(float)), d_amax(sizeof(float));
      const float one = 1.0f, zero = 0.0f;
      CUDA_CHECK(cudaMemcpy(d_scale.get(), &one, sizeof one, cudaMemcpyHostToDevice));
      CUDA_CHECK(cudaMemcpy(d_amax.get(), &zero, sizeof zero, cudaMemcpyHostToDevice));
      LAUNCH_AND_SYNC(kern::cast_e4m3(t, x.ptr(), out.ptr(), rows, cols, transpose,
                                      static_cast<const float*>(d_scale.get()), static_cast<float*>(d_amax.get()),
                                      nullptr));
      CUDA_CHECK(cudaMemcpy(&amax, d_amax.get(), sizeof amax, cudaMemcpyDeviceToHost));
      EXPECT_TRUE(std::isnan(amax));
      const std::vector<unsigned char> got = out.raw();
      const int64_t i = 100 / cols, j = 100 % cols;
      const int64_t at = transpose ? j * rows + i : i * cols + j;
      const unsigned char nan_code = got[static_cast<size_t>(at)];
      EXPECT_TRUE(fp8::e4m3_is_nan(nan_code)) << "NaN input gave code " << int{nan_code};
      const int64_t at5 = transpose ? 5 * rows : 5;
      EXPECT_EQ(int{got[static_cast<size_t>(at5)]}, 0x7E);  // +inf -> 448
    }
  }
}

TEST(GpuCountNonfinite, CountsE4M3NaNCodes) {
  REQUIRE_GPU();
  for (int64_t shift : {0, 1}) {
    SCOPED_TRACE(shift);
    const int64_t n = 1003;
    std::vector<unsigned char> codes(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) codes[static_cast<size_t>(i)] = static_cast<unsigned char>((i * 37) % 256);
    int64_t nan_codes = 0;
    for (unsigned char c : codes) nan_codes += fp8::e4m3_is_nan(c) ? 1 : 0;
    ASSERT_GT(nan_codes, 0);
    codes[0] = 0xFF;  // head when shifted
    codes[static_cast<size_t>(n - 1)] = 0x7F;  // tail
    codes[500] = 0x7E;  // 448: finite
    nan_codes = 0;
    for (unsigned char c : codes) nan_codes += fp8::e4m3_is_nan(c) ? 1 : 0;
    DeviceTensor x(DType::e4m3, n, shift);
    CUDA_CHECK(cudaMemcpy(x.ptr(), codes.data(), codes.size(), cudaMemcpyHostToDevice));
    DeviceBuffer count(sizeof(unsigned long long));
    const unsigned long long start = 3;
    CUDA_CHECK(cudaMemcpy(count.get(), &start, sizeof start, cudaMemcpyHostToDevice));
    LAUNCH_AND_SYNC(
        kern::count_nonfinite(DType::e4m3, x.ptr(), n, static_cast<unsigned long long*>(count.get()), nullptr));
    unsigned long long got = 0;
    CUDA_CHECK(cudaMemcpy(&got, count.get(), sizeof got, cudaMemcpyDeviceToHost));
    EXPECT_EQ(got, start + static_cast<unsigned long long>(nan_codes));
  }
}

// ---- Llama-family kernels: RMSNorm, RoPE, SwiGLU, ReLU ------------------------------------

TEST(GpuRmsNorm, ForwardAndBackwardMatchReferenceAndRepeat) {
  REQUIRE_GPU();
  for (DType t : kAllTypes) {
    for (const Shape& s : kRowShapes) {
      SCOPED_TRACE(label(t, s.rows, s.cols, s.shift));
      const int64_t n = s.rows * s.cols;
      const std::vector<double> x = random_values(t, n, 71, 1.0, 0.2);
      const std::vector<double> gamma = random_values(t, s.cols, 72, 0.1, 1.0);
      const std::vector<double> dy = random_values(t, n, 73, 1.0);
      DeviceTensor d_x(t, n, s.shift), d_gamma(t, s.cols, s.shift), d_y(t, n, s.shift), d_dy(t, n, s.shift),
          d_dx(t, n, s.shift), d_dgamma(t, s.cols, s.shift), d_rstd(stats_dtype(t), s.rows);
      d_x.upload(x);
      d_gamma.upload(gamma);
      d_dy.upload(dy);
      LAUNCH_AND_SYNC(kern::rmsnorm_forward(t, d_x.ptr(), d_gamma.ptr(), d_y.ptr(), d_rstd.ptr(), s.rows, s.cols, nullptr));
      std::vector<double> y(static_cast<size_t>(n)), rstd(static_cast<size_t>(s.rows)), dx(y.size()),
          dgamma(static_cast<size_t>(s.cols));
      ref::rmsnorm_forward(x.data(), gamma.data(), y.data(), rstd.data(), s.rows, s.cols);
      EXPECT_TRUE(close("y", d_y.download(), y, tolerance(t)));
      EXPECT_TRUE(close("rstd", d_rstd.download(), rstd, tolerance(stats_dtype(t))));
      // Backward from the kernel's own rstd (what the graph hands it); twice: dgamma is overwritten.
      const std::vector<double> rstd_gpu = d_rstd.download();
      ref::rmsnorm_backward(dy.data(), x.data(), gamma.data(), rstd_gpu.data(), dx.data(), dgamma.data(), s.rows, s.cols);
      for (int rep = 0; rep < 2; ++rep) {
        LAUNCH_AND_SYNC(kern::rmsnorm_backward(t, d_dy.ptr(), d_x.ptr(), d_gamma.ptr(), d_rstd.ptr(), d_dx.ptr(),
                                               d_dgamma.ptr(), s.rows, s.cols, nullptr));
        EXPECT_TRUE(close("dx", d_dx.download(), dx, tolerance(t)));
        EXPECT_TRUE(close("dgamma", d_dgamma.download(), dgamma, tolerance(t)));
      }
    }
  }
}

// The masked softmax (a window, chunks) with and without sinks, against the fp64 reference;
// backward from the kernel's own sink probabilities, twice (dsinks is overwritten).
TEST(GpuSoftmaxMasked, ForwardAndBackwardMatchReference) {
  REQUIRE_GPU();
  struct MaskCase {
    int64_t batch, n, window, chunk, heads;
    bool sinks;
  };
  const MaskCase cases[] = {{4, 9, 3, 0, 2, false}, {6, 16, 0, 4, 3, true}, {2, 130, 128, 0, 2, true}, {3, 7, 2, 3, 1, true}};
  for (DType t : kAllTypes) {
    for (const MaskCase& c : cases) {
      SCOPED_TRACE(label(t, c.batch, c.n, 0) + " window " + std::to_string(c.window) + " chunk " + std::to_string(c.chunk));
      const int64_t n2 = c.batch * c.n * c.n, rows = c.batch * c.n;
      const AttentionMask mask{c.window, c.chunk};
      const std::vector<double> sc = random_values(t, n2, 91, 3.0), z = random_values(t, c.heads, 92, 2.0),
                                dp = random_values(t, n2, 93, 1.0);
      DeviceTensor d_s(t, n2, 0), d_z(t, c.heads, 0), d_p(t, n2, 0), d_sp(stats_dtype(t), rows), d_dp(t, n2, 0),
          d_ds(t, n2, 0), d_dz(t, c.heads, 0);
      d_s.upload(sc);
      d_z.upload(z);
      d_dp.upload(dp);
      LAUNCH_AND_SYNC(kern::softmax_masked_forward(t, d_s.ptr(), c.sinks ? d_z.ptr() : nullptr, d_p.ptr(),
                                                   c.sinks ? d_sp.ptr() : nullptr, c.batch, c.n, c.window, c.chunk,
                                                   c.heads, nullptr));
      std::vector<double> p(static_cast<size_t>(n2)), sp(static_cast<size_t>(rows)), ds(p.size()),
          dz(static_cast<size_t>(c.heads));
      ref::softmax_masked_forward(sc.data(), c.sinks ? z.data() : nullptr, p.data(), c.sinks ? sp.data() : nullptr,
                                  c.batch, c.n, mask, c.heads);
      EXPECT_TRUE(close("probs", d_p.download(), p, tolerance(t)));
      if (c.sinks) {
        EXPECT_TRUE(close("sink_probs", d_sp.download(), sp, tolerance(stats_dtype(t))));
      }
      const std::vector<double> p_gpu = d_p.download(), sp_gpu = c.sinks ? d_sp.download() : std::vector<double>{};
      ref::softmax_masked_backward(p_gpu.data(), dp.data(), c.sinks ? sp_gpu.data() : nullptr, ds.data(), dz.data(),
                                   c.batch, c.n, mask, c.heads);
      for (int rep = 0; rep < 2; ++rep) {
        LAUNCH_AND_SYNC(kern::softmax_masked_backward(t, d_p.ptr(), d_dp.ptr(), c.sinks ? d_sp.ptr() : nullptr,
                                                      d_ds.ptr(), c.sinks ? d_dz.ptr() : nullptr, c.batch, c.n,
                                                      c.window, c.chunk, c.heads, nullptr));
        EXPECT_TRUE(close("dscores", d_ds.download(), ds, tolerance(t)));
        if (c.sinks) {
          EXPECT_TRUE(close("dsinks", d_dz.download(), dz, tolerance(t)));
        }
      }
    }
  }
}

// QK-norm on grouped QKV rows (MHA, GQA, MQA), weighted (Qwen3) and not (Llama 4), against
// the fp64 reference; backward twice (dgamma is overwritten).
TEST(GpuQkNorm, ForwardAndBackwardMatchReference) {
  REQUIRE_GPU();
  struct QkCase {
    int64_t rows;
    QkNormSpec spec;
  };
  const QkCase cases[] = {{12, {3, 1, 16, true}}, {10, {2, 4, 8, true}}, {7, {1, 6, 128, true}}, {9, {2, 2, 16, false}}};
  for (DType t : kAllTypes) {
    for (const QkCase& c : cases) {
      const QkNormSpec& q = c.spec;
      SCOPED_TRACE(label(t, c.rows, q.width(), 0) + (q.weighted ? " weighted" : " l2"));
      const int64_t n = c.rows * q.width(), nh = c.rows * q.normed_heads();
      const std::vector<double> x = random_values(t, n, 81, 1.0, 0.2);
      const std::vector<double> gq = random_values(t, q.d_head, 82, 0.1, 1.0), gk = random_values(t, q.d_head, 83, 0.1, 1.0);
      const std::vector<double> dy = random_values(t, n, 84, 1.0);
      DeviceTensor d_x(t, n, 0), d_gq(t, q.d_head, 0), d_gk(t, q.d_head, 0), d_y(t, n, 0), d_dy(t, n, 0), d_dx(t, n, 0),
          d_dgq(t, q.d_head, 0), d_dgk(t, q.d_head, 0), d_rstd(stats_dtype(t), nh);
      d_x.upload(x);
      d_gq.upload(gq);
      d_gk.upload(gk);
      d_dy.upload(dy);
      const void* g1 = q.weighted ? d_gq.ptr() : nullptr;
      const void* g2 = q.weighted ? d_gk.ptr() : nullptr;
      LAUNCH_AND_SYNC(kern::qk_norm_forward(t, d_x.ptr(), g1, g2, d_y.ptr(), d_rstd.ptr(), c.rows, q.kv_heads, q.group,
                                            q.d_head, nullptr));
      std::vector<double> y(static_cast<size_t>(n)), rstd(static_cast<size_t>(nh)), dx(y.size()),
          dgq(static_cast<size_t>(q.d_head)), dgk(dgq.size());
      ref::qk_norm_forward(x.data(), q.weighted ? gq.data() : nullptr, q.weighted ? gk.data() : nullptr, y.data(),
                           rstd.data(), c.rows, q);
      EXPECT_TRUE(close("y", d_y.download(), y, tolerance(t)));
      EXPECT_TRUE(close("rstd", d_rstd.download(), rstd, tolerance(stats_dtype(t))));
      const std::vector<double> rstd_gpu = d_rstd.download();
      ref::qk_norm_backward(dy.data(), x.data(), q.weighted ? gq.data() : nullptr, q.weighted ? gk.data() : nullptr,
                            rstd_gpu.data(), dx.data(), dgq.data(), dgk.data(), c.rows, q);
      for (int rep = 0; rep < 2; ++rep) {
        LAUNCH_AND_SYNC(kern::qk_norm_backward(t, d_dy.ptr(), d_x.ptr(), g1, g2, d_rstd.ptr(), d_dx.ptr(),
                                               q.weighted ? d_dgq.ptr() : nullptr, q.weighted ? d_dgk.ptr() : nullptr,
                                               c.rows, q.kv_heads, q.group, q.d_head, nullptr));
        EXPECT_TRUE(close("dx", d_dx.download(), dx, tolerance(t)));
        if (q.weighted) {
          EXPECT_TRUE(close("dgamma_q", d_dgq.download(), dgq, tolerance(t)));
          EXPECT_TRUE(close("dgamma_k", d_dgk.download(), dgk, tolerance(t)));
        }
      }
    }
  }
}

TEST(GpuRope, ForwardAndBackwardMatchReferenceOnGroupedQkv) {
  REQUIRE_GPU();
  struct RopeCase {
    int64_t rows;
    RopeSpec spec;
  };
  // MHA (group 1), GQA (4 query heads per kv head), MQA, Llama's d_head 128 at theta 5e5.
  const RopeCase cases[] = {{12, {3, 4, 1, 16, 10000.0}}, {10, {2, 2, 4, 8, 10000.0}}, {7, {1, 1, 6, 4, 100.0}},
                            {64, {2, 2, 2, 128, 500000.0}}};
  for (DType t : kAllTypes) {
    for (const RopeCase& c : cases) {
      const int64_t cols = c.spec.kv_heads * (c.spec.group + 2) * c.spec.d_head, n = c.rows * cols;
      SCOPED_TRACE(label(t, c.rows, cols, 0));
      const std::vector<double> x = random_values(t, n, 81, 1.0);
      for (bool backward : {false, true}) {
        DeviceTensor d_x(t, n);
        d_x.upload(x);
        LAUNCH_AND_SYNC((backward ? kern::rope_backward : kern::rope_forward)(
            t, d_x.ptr(), c.rows, c.spec.batch, c.spec.kv_heads, c.spec.group, c.spec.d_head, c.spec.theta, nullptr));
        std::vector<double> want = x;
        ref::rope(want.data(), c.rows, cols, c.spec, backward);
        EXPECT_TRUE(close(backward ? "dqkv" : "qkv", d_x.download(), want, tolerance(t)));
      }
    }
  }
}

// MLA (src/graph/mla.cpp): RoPE on the rope part of each q head and on k_rope (rope_layout),
// and the assembly of qkv with its backward (kernels/mla_qkv.cu), against the reference.
TEST(GpuMla, RopeLayoutAndAssemblyMatchReference) {
  REQUIRE_GPU();
  const int64_t rows = 10, batch = 2;
  const MlaSpec m{4, 8, 4, 6};
  for (DType t : kAllTypes) {
    SCOPED_TRACE(label(t, rows, m.qkv_width(), 0));
    // q: 4 heads of 12, the last 4 of each rotated; k_rope: one head of 4.
    for (const RopeSpec& spec : {RopeSpec{batch, m.heads, 1, m.rope, 100.0, 1, m.qk(), m.nope},
                                 RopeSpec{batch, 1, 1, m.rope, 100.0, 1, m.rope, 0}}) {
      const int64_t cols = spec.kv_heads * spec.block_width(), n = rows * cols;
      const std::vector<double> x = random_values(t, n, 83, 1.0);
      for (bool backward : {false, true}) {
        DeviceTensor d_x(t, n);
        d_x.upload(x);
        LAUNCH_AND_SYNC(kern::rope_layout(t, d_x.ptr(), rows, spec.batch, spec.kv_heads, spec.rotated_heads(),
                                          spec.block_width(), spec.offset, spec.d_head, spec.theta, backward, nullptr));
        std::vector<double> want = x;
        ref::rope(want.data(), rows, cols, spec, backward);
        EXPECT_TRUE(close("rope", d_x.download(), want, tolerance(t)));
      }
    }
    const std::vector<double> q = random_values(t, rows * m.q_width(), 84, 1.0),
                              kv = random_values(t, rows * m.kv_b_width(), 85, 1.0),
                              k = random_values(t, rows * m.rope, 86, 1.0),
                              g = random_values(t, rows * m.qkv_width(), 87, 1.0);
    DeviceTensor d_q(t, rows * m.q_width()), d_kv(t, rows * m.kv_b_width()), d_k(t, rows * m.rope),
        d_qkv(t, rows * m.qkv_width()), d_g(t, rows * m.qkv_width()), d_dq(t, rows * m.q_width()),
        d_dkv(t, rows * m.kv_b_width()), d_dk(t, rows * m.rope);
    d_q.upload(q);
    d_kv.upload(kv);
    d_k.upload(k);
    d_g.upload(g);
    LAUNCH_AND_SYNC(kern::mla_qkv_forward(t, d_q.ptr(), d_kv.ptr(), d_k.ptr(), d_qkv.ptr(), rows, m.heads, m.nope,
                                          m.rope, m.v, nullptr));
    LAUNCH_AND_SYNC(kern::mla_qkv_backward(t, d_g.ptr(), d_dq.ptr(), d_dkv.ptr(), d_dk.ptr(), rows, m.heads, m.nope,
                                           m.rope, m.v, nullptr));
    std::vector<double> qkv(g.size()), dq(q.size()), dkv(kv.size()), dk(k.size());
    ref::mla_qkv_forward(q.data(), kv.data(), k.data(), qkv.data(), rows, m);
    ref::mla_qkv_backward(g.data(), dq.data(), dkv.data(), dk.data(), rows, m);
    EXPECT_TRUE(close("qkv", d_qkv.download(), qkv, tolerance(t)));
    EXPECT_TRUE(close("dq", d_dq.download(), dq, tolerance(t)));
    EXPECT_TRUE(close("dkv_b", d_dkv.download(), dkv, tolerance(t)));
    EXPECT_TRUE(close("dk_rope", d_dk.download(), dk, tolerance(t)));
  }
}

TEST(GpuSwiglu, ForwardAndBackwardMatchReference) {
  REQUIRE_GPU();
  for (DType t : kAllTypes) {
    for (const FlatShape& s : kFlatShapes) {
      SCOPED_TRACE(label(t, 1, s.n, s.shift));
      const std::vector<double> g = random_values(t, s.n, 91, 4.0);  // both tails of the sigmoid
      const std::vector<double> u = random_values(t, s.n, 92, 1.0);
      const std::vector<double> dh = random_values(t, s.n, 93, 1.0);
      DeviceTensor d_g(t, s.n, s.shift), d_u(t, s.n, s.shift), d_h(t, s.n, s.shift), d_dh(t, s.n, s.shift),
          d_dg(t, s.n, s.shift), d_du(t, s.n, s.shift);
      d_g.upload(g);
      d_u.upload(u);
      d_dh.upload(dh);
      LAUNCH_AND_SYNC(kern::swiglu_forward(t, d_g.ptr(), d_u.ptr(), d_h.ptr(), s.n, nullptr));
      LAUNCH_AND_SYNC(kern::swiglu_backward(t, d_g.ptr(), d_u.ptr(), d_dh.ptr(), d_dg.ptr(), d_du.ptr(), s.n, nullptr));
      std::vector<double> h(static_cast<size_t>(s.n)), dg(h.size()), du(h.size());
      ref::swiglu_forward(g.data(), u.data(), h.data(), s.n);
      ref::swiglu_backward(g.data(), u.data(), dh.data(), dg.data(), du.data(), s.n);
      EXPECT_TRUE(close("h", d_h.download(), h, tolerance(t)));
      EXPECT_TRUE(close("dgate", d_dg.download(), dg, tolerance(t)));
      EXPECT_TRUE(close("dup", d_du.download(), du, tolerance(t)));
    }
  }
}

TEST(GpuRelu, ForwardAndBackwardMatchReference) {
  REQUIRE_GPU();
  for (DType t : kAllTypes) {
    for (const FlatShape& s : kFlatShapes) {
      SCOPED_TRACE(label(t, 1, s.n, s.shift));
      const std::vector<double> x = random_values(t, s.n, 95, 1.0);
      const std::vector<double> dy = random_values(t, s.n, 96, 1.0);
      DeviceTensor d_x(t, s.n, s.shift), d_y(t, s.n, s.shift), d_dy(t, s.n, s.shift), d_dx(t, s.n, s.shift);
      d_x.upload(x);
      d_dy.upload(dy);
      LAUNCH_AND_SYNC(kern::relu_forward(t, d_x.ptr(), d_y.ptr(), s.n, nullptr));
      LAUNCH_AND_SYNC(kern::relu_backward(t, d_x.ptr(), d_dy.ptr(), d_dx.ptr(), s.n, nullptr));
      std::vector<double> y(static_cast<size_t>(s.n)), dx(y.size());
      ref::relu_forward(x.data(), y.data(), s.n);
      ref::relu_backward(x.data(), dy.data(), dx.data(), s.n);
      EXPECT_TRUE(close("y", d_y.download(), y, tolerance(t)));
      EXPECT_TRUE(close("dx", d_dx.download(), dx, tolerance(t)));
    }
  }
}

TEST(KernelArguments, LlamaFamilyLaunchersRejectBadArgumentsAndAcceptEmptyTensors) {
  const DType t = DType::f32;
  float buf[16] = {};
  void* p = buf;
  const cudaError_t bad = cudaErrorInvalidValue;
  EXPECT_EQ(kern::rmsnorm_forward(t, nullptr, p, p, p, 2, 4, nullptr), bad);
  EXPECT_EQ(kern::rmsnorm_forward(t, p, p, p, p, -1, 4, nullptr), bad);
  EXPECT_EQ(kern::rmsnorm_backward(t, p, p, p, p, p, nullptr, 2, 4, nullptr), bad);
  EXPECT_EQ(kern::rope_forward(t, p, 2, 1, 1, 1, 3, 10000.0, nullptr), bad);   // odd d_head
  EXPECT_EQ(kern::rope_forward(t, p, 2, 0, 1, 1, 4, 10000.0, nullptr), bad);   // no batch
  EXPECT_EQ(kern::rope_backward(t, p, 2, 1, 1, 1, 4, 0.0, nullptr), bad);      // theta 0
  EXPECT_EQ(kern::rope_backward(t, nullptr, 2, 1, 1, 1, 4, 1e4, nullptr), bad);
  EXPECT_EQ(kern::swiglu_forward(t, p, nullptr, p, 4, nullptr), bad);
  EXPECT_EQ(kern::swiglu_backward(t, p, p, p, p, p, -4, nullptr), bad);
  EXPECT_EQ(kern::relu_forward(t, p, nullptr, 4, nullptr), bad);
  EXPECT_EQ(kern::relu_backward(t, p, p, p, -1, nullptr), bad);
  EXPECT_EQ(kern::swiglu_forward(DType::e4m3, p, p, p, 4, nullptr), bad);  // storage only
  EXPECT_EQ(kern::relu_forward(t, buf, reinterpret_cast<unsigned char*>(buf) + 1, 4, nullptr), bad);  // misaligned
  EXPECT_EQ(kern::rmsnorm_forward(t, nullptr, nullptr, nullptr, nullptr, 0, 8, nullptr), cudaSuccess);
  EXPECT_EQ(kern::rope_forward(t, nullptr, 0, 1, 1, 1, 4, 1e4, nullptr), cudaSuccess);
  EXPECT_EQ(kern::rope_layout(t, p, 2, 1, 1, 1, 4, 2, 4, 1e4, false, nullptr), bad);  // offset 2 + 4 past block 4
  EXPECT_EQ(kern::mla_qkv_forward(t, p, p, p, nullptr, 2, 1, 1, 2, 1, nullptr), bad);
  EXPECT_EQ(kern::mla_qkv_backward(t, p, p, p, p, 2, 1, 1, 0, 1, nullptr), bad);  // no rope part
  EXPECT_EQ(kern::mla_qkv_forward(t, nullptr, nullptr, nullptr, nullptr, 0, 1, 1, 2, 1, nullptr), cudaSuccess);
  EXPECT_EQ(kern::swiglu_backward(t, nullptr, nullptr, nullptr, nullptr, nullptr, 0, nullptr), cudaSuccess);
  EXPECT_EQ(kern::relu_forward(t, nullptr, nullptr, 0, nullptr), cudaSuccess);
}

// ---- argument errors: returned before any CUDA call, so no device is needed -----------------

TEST(KernelArguments, BadArgumentsReturnInvalidValueWithoutLaunching) {
  const DType t = DType::f32;
  float buf[16] = {};
  void* p = buf;
  int32_t idx[2] = {};
  unsigned long long counter = 0;
  const cudaError_t bad = cudaErrorInvalidValue;
  EXPECT_EQ(kern::layernorm_forward(t, nullptr, p, p, p, p, p, 2, 4, nullptr), bad);
  EXPECT_EQ(kern::layernorm_forward(t, p, p, p, p, p, p, -1, 4, nullptr), bad);
  EXPECT_EQ(kern::layernorm_forward(t, p, p, p, p, p, p, 2, 0, nullptr), bad);
  EXPECT_EQ(kern::layernorm_backward(t, p, p, p, p, p, p, p, p, 2, 4, nullptr, nullptr), bad);  // no workspace
  EXPECT_EQ(kern::layernorm_backward(t, p, p, p, p, p, nullptr, p, p, 2, 4, p, nullptr), bad);
  EXPECT_EQ(kern::layernorm_backward(t, p, p, p, p, p, p, p, p, 2, -4, p, nullptr), bad);
  EXPECT_EQ(kern::softmax_causal_forward(t, nullptr, p, 1, 4, nullptr), bad);
  EXPECT_EQ(kern::softmax_causal_forward(t, p, p, -1, 4, nullptr), bad);
  EXPECT_EQ(kern::softmax_causal_backward(t, p, nullptr, p, 1, 4, nullptr), bad);
  EXPECT_EQ(kern::gelu_forward(t, p, nullptr, 4, nullptr), bad);
  EXPECT_EQ(kern::gelu_backward(t, p, p, p, -4, nullptr), bad);
  EXPECT_EQ(kern::bias_add(t, nullptr, p, 2, 4, nullptr), bad);
  EXPECT_EQ(kern::bias_grad(t, p, nullptr, 2, 4, nullptr), bad);
  EXPECT_EQ(kern::bias_grad(t, p, p, -2, 4, nullptr), bad);
  EXPECT_EQ(kern::residual_add(t, p, nullptr, p, 4, nullptr), bad);
  EXPECT_EQ(kern::cross_entropy_forward(t, p, nullptr, p, 2, 4, nullptr), bad);
  EXPECT_EQ(kern::cross_entropy_forward(t, p, idx, p, 2, 0, nullptr), bad);  // softmax of nothing
  EXPECT_EQ(kern::cross_entropy_backward(t, p, idx, p, 2, -1, nullptr), bad);
  EXPECT_EQ(kern::fill_uniform(t, nullptr, 4, 1, 2, 0.0, 1.0, nullptr), bad);
  EXPECT_EQ(kern::fill_indices(idx, 2, 1, 2, 0, nullptr), bad);  // no indices in [0, 0)
  EXPECT_EQ(kern::count_nonfinite(t, p, 4, nullptr, nullptr), bad);
  EXPECT_EQ(kern::count_nonfinite(t, nullptr, 4, &counter, nullptr), bad);
  EXPECT_EQ(kern::gelu_forward(static_cast<DType>(17), p, p, 4, nullptr), bad);  // not a dtype
  EXPECT_EQ(kern::residual_add(t, buf + 0, reinterpret_cast<unsigned char*>(buf) + 1, p, 4, nullptr), bad);  // misaligned
}

TEST(KernelArguments, EmptyTensorsAreANoOp) {
  const DType t = DType::bf16;
  EXPECT_EQ(kern::layernorm_forward(t, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 0, 8, nullptr),
            cudaSuccess);
  EXPECT_EQ(kern::softmax_causal_forward(t, nullptr, nullptr, 0, 8, nullptr), cudaSuccess);
  EXPECT_EQ(kern::softmax_causal_backward(t, nullptr, nullptr, nullptr, 4, 0, nullptr), cudaSuccess);
  EXPECT_EQ(kern::gelu_forward(t, nullptr, nullptr, 0, nullptr), cudaSuccess);
  EXPECT_EQ(kern::bias_add(t, nullptr, nullptr, 0, 8, nullptr), cudaSuccess);
  EXPECT_EQ(kern::residual_add(t, nullptr, nullptr, nullptr, 0, nullptr), cudaSuccess);
  EXPECT_EQ(kern::cross_entropy_forward(t, nullptr, nullptr, nullptr, 0, 50257, nullptr), cudaSuccess);
  EXPECT_EQ(kern::fill_uniform(t, nullptr, 0, 1, 2, 0.0, 1.0, nullptr), cudaSuccess);
  EXPECT_EQ(kern::count_nonfinite(t, nullptr, 0, nullptr, nullptr), cudaSuccess);
}

TEST(KernelArguments, DtypeBytes) {
  EXPECT_EQ(kern::dtype_bytes(DType::f64), 8u);
  EXPECT_EQ(kern::dtype_bytes(DType::f32), 4u);
  EXPECT_EQ(kern::dtype_bytes(DType::f16), 2u);
  EXPECT_EQ(kern::dtype_bytes(DType::bf16), 2u);
  EXPECT_EQ(kern::dtype_bytes(DType::e4m3), 1u);
}

TEST(KernelArguments, CastE4M3RejectsBadArgumentsAndOtherLaunchersRejectE4M3) {
  float buf[16] = {};
  void* p = buf;
  const float* sc = buf;
  float* am = buf + 1;
  int32_t idx[2] = {};
  const cudaError_t bad = cudaErrorInvalidValue;
  const DType t = DType::bf16;
  EXPECT_EQ(kern::cast_e4m3(t, nullptr, p, 2, 4, false, sc, am, nullptr), bad);
  EXPECT_EQ(kern::cast_e4m3(t, p, nullptr, 2, 4, true, sc, am, nullptr), bad);
  EXPECT_EQ(kern::cast_e4m3(t, p, p, 2, 4, false, nullptr, am, nullptr), bad);  // scale is required
  EXPECT_EQ(kern::cast_e4m3(t, p, p, -1, 4, false, sc, am, nullptr), bad);
  EXPECT_EQ(kern::cast_e4m3(t, p, p, 2, -4, true, sc, am, nullptr), bad);
  EXPECT_EQ(kern::cast_e4m3(t, p, p, int64_t{1} << 40, int64_t{1} << 40, false, sc, am, nullptr), bad);  // overflows
  EXPECT_EQ(kern::cast_e4m3(DType::f64, p, p, 2, 4, false, sc, am, nullptr), bad);
  EXPECT_EQ(kern::cast_e4m3(DType::e4m3, p, p, 2, 4, false, sc, am, nullptr), bad);
  EXPECT_EQ(kern::cast_e4m3(static_cast<DType>(17), p, p, 2, 4, false, sc, am, nullptr), bad);
  EXPECT_EQ(kern::cast_e4m3(t, reinterpret_cast<unsigned char*>(buf) + 1, p, 2, 4, false, sc, am, nullptr), bad);
  const auto* misaligned_scale = reinterpret_cast<const float*>(reinterpret_cast<const unsigned char*>(buf) + 2);
  EXPECT_EQ(kern::cast_e4m3(t, p, p, 2, 4, false, misaligned_scale, am, nullptr), bad);
  // Empty tensors: nothing to do, whatever the pointers.
  EXPECT_EQ(kern::cast_e4m3(t, nullptr, nullptr, 0, 4, true, nullptr, nullptr, nullptr), cudaSuccess);
  EXPECT_EQ(kern::cast_e4m3(DType::f32, nullptr, nullptr, 5, 0, false, nullptr, nullptr, nullptr), cudaSuccess);

  // e4m3 is storage only: every arithmetic launcher rejects it before launching.
  const DType e = DType::e4m3;
  EXPECT_EQ(kern::layernorm_forward(e, p, p, p, p, p, p, 2, 4, nullptr), bad);
  EXPECT_EQ(kern::layernorm_backward(e, p, p, p, p, p, p, p, p, 2, 4, p, nullptr), bad);
  EXPECT_EQ(kern::softmax_causal_forward(e, p, p, 1, 4, nullptr), bad);
  EXPECT_EQ(kern::softmax_causal_backward(e, p, p, p, 1, 4, nullptr), bad);
  EXPECT_EQ(kern::gelu_forward(e, p, p, 4, nullptr), bad);
  EXPECT_EQ(kern::gelu_backward(e, p, p, p, 4, nullptr), bad);
  EXPECT_EQ(kern::bias_add(e, p, p, 2, 4, nullptr), bad);
  EXPECT_EQ(kern::bias_grad(e, p, p, 2, 4, nullptr), bad);
  EXPECT_EQ(kern::residual_add(e, p, p, p, 4, nullptr), bad);
  EXPECT_EQ(kern::cross_entropy_forward(e, p, idx, p, 2, 4, nullptr), bad);
  EXPECT_EQ(kern::cross_entropy_backward(e, p, idx, p, 2, 4, nullptr), bad);
  EXPECT_EQ(kern::fill_uniform(e, p, 4, 1, 2, 0.0, 1.0, nullptr), bad);
  // count_nonfinite takes e4m3, with the usual argument checks.
  EXPECT_EQ(kern::count_nonfinite(e, p, 4, nullptr, nullptr), bad);
  EXPECT_EQ(kern::count_nonfinite(e, p, -1, nullptr, nullptr), bad);
  EXPECT_EQ(kern::count_nonfinite(e, nullptr, 0, nullptr, nullptr), cudaSuccess);
}

TEST(KernelArguments, LayerNormWorkspaceGrowsWithColumnsAndCapsWithRows) {
  const size_t small = kern::layernorm_backward_workspace_bytes(1, 768);
  EXPECT_GE(small, 2u * 768 * sizeof(double));  // one f64 block's slot fits
  EXPECT_GT(kern::layernorm_backward_workspace_bytes(16384, 768), small);
  EXPECT_EQ(kern::layernorm_backward_workspace_bytes(16384, 768), kern::layernorm_backward_workspace_bytes(4096, 768))
      << "the slot count is capped";
}

}  // namespace
}  // namespace flopscope
