#include "backend/cpu/parallel.hpp"

#include <cblas.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace flopscope::cpu {

namespace {

// A positive integer from the environment, or 0.
int env_threads(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return 0;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  // OMP_NUM_THREADS may be a list ("4,2"): its first entry is the outer level's count.
  if (end == v || n <= 0 || (*end != '\0' && *end != ',')) return 0;
  return static_cast<int>(std::min<long>(n, 1024));
}

struct Policy {
  int threads = 1;
  const char* source = "hardware threads";
};

const Policy& policy() {
  static const Policy p = [] {
    Policy q;
    if (int n = env_threads("OMP_NUM_THREADS"); n > 0) {
      q.threads = n;
      q.source = "OMP_NUM_THREADS";
    } else if (int m = env_threads("OPENBLAS_NUM_THREADS"); m > 0) {
      q.threads = m;
      q.source = "OPENBLAS_NUM_THREADS";
    } else {
      q.threads = std::max(1u, std::thread::hardware_concurrency());
    }
    return q;
  }();
  return p;
}

thread_local bool t_in_pool = false;  // set on workers and on a caller inside a job

// Workers 1 .. n-1 wait for a job; the caller runs part 0. One job at a time (call_mu_).
class Pool {
 public:
  explicit Pool(int threads) {
    for (int t = 1; t < threads; ++t) workers_.emplace_back([this, t] { loop(t); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
  }
  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // job(t) for t in [0, parts), parts <= size(); part 0 on the calling thread.
  void run(int parts, const std::function<void(int)>& job) {
    std::lock_guard<std::mutex> call(call_mu_);
    {
      std::lock_guard<std::mutex> lk(mu_);
      job_ = &job;
      parts_ = parts;
      pending_ = parts - 1;
      error_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();
    t_in_pool = true;
    std::exception_ptr mine;
    try {
      job(0);
    } catch (...) {
      mine = std::current_exception();
    }
    t_in_pool = false;
    std::unique_lock<std::mutex> lk(mu_);
    done_.wait(lk, [&] { return pending_ == 0; });
    job_ = nullptr;
    if (mine) std::rethrow_exception(mine);
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void loop(int t) {
    t_in_pool = true;
    uint64_t seen = 0;
    for (;;) {
      const std::function<void(int)>* job = nullptr;
      {
        std::unique_lock<std::mutex> lk(mu_);
        wake_.wait(lk, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        if (t >= parts_) continue;
        job = job_;
      }
      std::exception_ptr err;
      try {
        (*job)(t);
      } catch (...) {
        err = std::current_exception();
      }
      std::lock_guard<std::mutex> lk(mu_);
      if (err && !error_) error_ = err;
      if (--pending_ == 0) done_.notify_one();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex call_mu_, mu_;
  std::condition_variable wake_, done_;
  const std::function<void(int)>* job_ = nullptr;
  int parts_ = 0, pending_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

Pool& pool() {
  static Pool p(cpu_threads());
  return p;
}

}  // namespace

int cpu_threads() { return policy().threads; }
const char* cpu_threads_source() { return policy().source; }

bool gemms_on_pool() {
  static const bool on = [] {
    const char* v = std::getenv("FLOPSCOPE_CPU_GEMM_THREADS");
    return v == nullptr || std::string(v) != "blas";
  }();
  return on;
}

void apply_blas_threads() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(gemms_on_pool() ? 1 : cpu_threads()); });
}

void parallel_threads(int threads, const std::function<void(int)>& body) {
  threads = std::clamp(threads, 1, cpu_threads());
  if (threads == 1 || t_in_pool) {
    for (int t = 0; t < threads; ++t) body(t);
    return;
  }
  pool().run(threads, body);
}

void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& body, int64_t grain) {
  if (n <= 0) return;
  const int64_t by_grain = std::max<int64_t>(1, n / std::max<int64_t>(grain, 1));
  const int parts = static_cast<int>(std::min<int64_t>(cpu_threads(), by_grain));
  if (parts <= 1 || t_in_pool) return body(0, n);
  parallel_threads(parts, [&](int t) {
    const int64_t b = n * t / parts, e = n * (t + 1) / parts;
    if (b < e) body(b, e);
  });
}

void parallel_for_weighted(int64_t n, const std::function<double(int64_t)>& cost,
                           const std::function<void(int64_t, int64_t)>& body) {
  if (n <= 0) return;
  const int parts = static_cast<int>(std::min<int64_t>(cpu_threads(), n));
  if (parts <= 1 || t_in_pool) return body(0, n);
  // Boundaries where the running cost crosses each share.
  double total = 0;
  for (int64_t i = 0; i < n; ++i) total += cost(i);
  std::vector<int64_t> cut(static_cast<size_t>(parts) + 1, n);
  cut[0] = 0;
  double run = 0;
  int next = 1;
  for (int64_t i = 0; i < n && next < parts; ++i) {
    run += cost(i);
    while (next < parts && run >= total * next / parts) cut[static_cast<size_t>(next++)] = i + 1;
  }
  parallel_threads(parts, [&](int t) {
    const int64_t b = cut[static_cast<size_t>(t)], e = cut[static_cast<size_t>(t) + 1];
    if (b < e) body(b, e);
  });
}

}  // namespace flopscope::cpu
