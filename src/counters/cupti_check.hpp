// The CUPTI member of the project's one error idiom (CUDA_CALL, CUBLAS_CALL): check the call
// and, on failure, throw a CuptiError naming the call, the result and the file and line.
// collect_counters() turns a CuptiError into "unavailable" with counters::cupti_failure_reason.
//
//   CUPTI_CALL(cuptiRangeProfilerEnable(&p), "enable the range profiler");
#pragma once

#include <cupti_result.h>

#include <string>

#include <fmt/format.h>

#include "util/error.hpp"

namespace flopscope::counters {

// cuptiGetResultString's name for a result ("CUPTI_ERROR_INSUFFICIENT_PRIVILEGES").
inline std::string cupti_result_name(CUptiResult r) {
  const char* s = nullptr;
  if (cuptiGetResultString(r, &s) == CUPTI_SUCCESS && s) return s;
  return fmt::format("CUptiResult {}", static_cast<int>(r));
}

class CuptiError : public Error {
 public:
  CuptiError(CUptiResult result, std::string call, const char* file, int line)
      : Error(fmt::format("{} failed: {} at {}:{}", call, cupti_result_name(result), file, line)),
        result_(result),
        call_(std::move(call)) {}
  CUptiResult result() const { return result_; }
  const std::string& call() const { return call_; }

 private:
  CUptiResult result_;
  std::string call_;
};

}  // namespace flopscope::counters

#define CUPTI_CALL(expr, what)                                                               \
  do {                                                                                       \
    const CUptiResult flopscope_cupti_ = (expr);                                             \
    if (flopscope_cupti_ != CUPTI_SUCCESS)                                                   \
      throw ::flopscope::counters::CuptiError(flopscope_cupti_, (what), __FILE__, __LINE__); \
  } while (0)
