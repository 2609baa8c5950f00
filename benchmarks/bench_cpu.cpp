// CPU benchmark: the layer's GEMM throughput against OpenBLAS sgemm on a large square
// product, both measured in this one run, printed as a ratio (target >= 0.8).
//
//   flopscope_bench_cpu [--width 1/8] [--square 2048] [--repeats 3]
//
// The layer is gpt3-175b at the given width (b = 1, s = 2048, fp32) run through the CPU
// backend exactly as `flopscope measure` runs it; its GEMM throughput is the sum of its
// GEMM ops' counted FLOPs over the sum of their median times. Timings are wall-clock
// (steady_clock) on a shared machine: compare the ratio, not the absolute figures.
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "backend/cpu/cpu_backend.hpp"
#include "measure/measure.hpp"
#include "model/model.hpp"
#include "util/error.hpp"
#include "util/parse.hpp"
#include "util/random_fill.hpp"

using namespace flopscope;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// Median GFLOP/s of `repeats` n x n x n sgemm calls after one warm-up call.
double square_sgemm_gflops(int n, int repeats) {
  std::vector<float> a(static_cast<size_t>(n) * n), b(a.size()), c(a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    a[i] = static_cast<float>(uniform_pm1(1, 1, i));
    b[i] = static_cast<float>(uniform_pm1(1, 2, i));
  }
  auto call = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
  };
  call();
  std::vector<double> gflops;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    call();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    gflops.push_back(2.0 * n * static_cast<double>(n) * n / s / 1e9);
  }
  return median(gflops);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::string width = "1/8";
    int square = 2048, repeats = 3;
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      if (i + 1 >= argc) throw UsageError(fmt::format("{} needs a value", arg));
      if (arg == "--width") width = argv[++i];
      else if (arg == "--square") square = static_cast<int>(parse_count("--square", argv[++i], 16384));
      else if (arg == "--repeats") repeats = static_cast<int>(parse_count("--repeats", argv[++i], 1000));
      else throw UsageError(fmt::format("unknown option '{}'; options: --width, --square, --repeats", arg));
    }
    const ModelConfig m = scale_width(preset("gpt3-175b"), parse_fraction("--width", width));
    GraphOptions o;
    o.precision = Precision::fp32;
    const LayerGraph g = build_layer_graph(layer_shape(m, 1, m.n_ctx), o);
    fmt::print("flopscope CPU benchmark: OpenBLAS {} (core {}, {} threads)\n", openblas_get_config(),
               openblas_get_corename(), openblas_get_num_threads());

    const double before = square_sgemm_gflops(square, repeats);
    CpuBackend<float> be;
    MeasureSettings s;
    s.warmup = 1;
    s.repeats = repeats;
    const MeasureRun run = run_measure(be, g, s);
    const double after = square_sgemm_gflops(square, repeats);

    double flops = 0, ms = 0;
    fmt::print("\nlayer {} (d_model {}), GEMM ops (FLOPs counted, time timed, median of {}):\n", m.name, m.d_model,
               repeats);
    for (size_t i = 0; i < g.ops.size(); ++i) {
      if (g.ops[i].impl != OpImpl::gemm) continue;
      const double f = run.counted_flops[i], t = run.op_ms[i].median();
      flops += f;
      ms += t;
      fmt::print("  {:<26} {:>20}  {:8.2f} ms  {:7.2f} GFLOP/s\n", g.ops[i].name, g.ops[i].shape_str(), t,
                 f / t / 1e6);
    }
    const double layer = flops / ms / 1e6;
    const double reference = (before + after) / 2;
    fmt::print("\nsgemm {}^3 (timed, median of {}): {:.2f} GFLOP/s before the layer, {:.2f} after; mean {:.2f}\n", square,
               repeats, before, after, reference);
    fmt::print("layer GEMMs (counted / timed): {:.2f} GFLOP/s over {:.1f} ms\n", layer, ms);
    fmt::print("ratio: {:.3f} (target >= 0.8)\n", layer / reference);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "flopscope_bench_cpu: error: %s\n", e.what());
    return 2;
  }
}
