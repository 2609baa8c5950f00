// The CPU backend's one thread policy, and the parallel-for its ops run on.
//
// cpu_threads(): OMP_NUM_THREADS if set to a positive integer, else OPENBLAS_NUM_THREADS, else
// the hardware threads. The GEMMs run on the same pool (gemms_on_pool): OpenBLAS stays
// single-threaded and each product is cut into bands of C, so no second set of threads competes
// with the pool's for the cores (OpenBLAS's idle threads spin for a while after each call, and a
// pool thread sharing a core with one ran its half of an op at half speed).
// FLOPSCOPE_CPU_GEMM_THREADS=blas gives OpenBLAS cpu_threads() instead and runs each call on
// its own threads, one at a time, for comparing the two.
//
// parallel_for(n, body) splits [0, n) into one contiguous range per thread and calls
// body(begin, end) on each, the calling thread taking the first range; it returns when every
// range is done. Ranges are static (the ops' rows cost the same, except the causal softmax's,
// which splits by work: parallel_for_weighted). The pool's workers start on first use and are
// reused; calls from several threads at once are serialised.
#pragma once

#include <cstdint>
#include <functional>

namespace flopscope::cpu {

// The thread count, read from the environment once.
int cpu_threads();
// Where cpu_threads() came from: "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS" or "hardware threads".
const char* cpu_threads_source();
// Whether the GEMMs run on the pool (the default) or on OpenBLAS's threads
// (FLOPSCOPE_CPU_GEMM_THREADS=blas); read from the environment once.
bool gemms_on_pool();
// Sets OpenBLAS's thread count for that choice: 1 on the pool, else cpu_threads() (once per
// process is enough; idempotent).
void apply_blas_threads();

// body(begin, end) over [0, n) in at most cpu_threads() contiguous ranges of at least `grain`
// items each (a range too small to be worth a thread runs on fewer threads).
void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& body, int64_t grain = 1);

// Like parallel_for, but the ranges hold equal shares of sum_i cost(i) (cost(i) >= 0), for rows
// of unequal work (row i of a causal softmax touches i + 1 columns).
void parallel_for_weighted(int64_t n, const std::function<double(int64_t)>& cost,
                           const std::function<void(int64_t, int64_t)>& body);

// body(t, threads) on each of `threads` <= cpu_threads() threads, t = 0 .. threads-1 (per-thread
// partial sums are indexed by t).
void parallel_threads(int threads, const std::function<void(int)>& body);

}  // namespace flopscope::cpu
