#include "backend/cpu/blas_core.hpp"

#include <cblas.h>

#include <cstdlib>
#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace flopscope::cpu {

namespace {

// OpenBLAS's x86_64 DYNAMIC_ARCH fallback when it does not recognise the CPU
// (driver/others/dynamic.c: "Falling back to Prescott core").
constexpr std::string_view kFallbackCore = "Prescott";

std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  return std::string(v);
}

std::string isa_name(const CpuVectorIsa& isa) { return isa.avx512 ? "AVX-512" : isa.avx2_fma ? "AVX2" : "pre-AVX2"; }

// Set once by main() before any thread of ours starts; read by the device line.
std::string& reexec_failure() {
  static std::string why;
  return why;
}

}  // namespace

CpuVectorIsa detect_cpu_isa() {
  CpuVectorIsa isa;
  __builtin_cpu_init();
  isa.avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  isa.avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512cd");
  return isa;
}

std::string_view core_for_isa(const CpuVectorIsa& isa) {
  if (isa.avx512) return "SkylakeX";
  if (isa.avx2_fma) return "Haswell";
  return "";
}

std::optional<std::string> decide_blas_core(const BlasCoreInputs& in) {
  if (in.guard_env || in.coretype_env || !in.dynamic_arch) return std::nullopt;
  if (in.openblas_core != kFallbackCore) return std::nullopt;
  const std::string_view core = core_for_isa(in.isa);
  if (core.empty()) return std::nullopt;
  return std::string(core);
}

std::optional<std::string> blas_core_reexec_target() {
  BlasCoreInputs in;
  in.isa = detect_cpu_isa();
  in.openblas_core = env(kBlasCoreAssume).value_or(openblas_get_corename());
  in.dynamic_arch = std::strstr(openblas_get_config(), "DYNAMIC_ARCH") != nullptr;
  in.coretype_env = env("OPENBLAS_CORETYPE");
  in.guard_env = env(kBlasCoreGuard);
  return decide_blas_core(in);
}

void note_blas_core_reexec_failure(const std::string& why) { reexec_failure() = why; }

namespace {

struct CoreStatus {
  std::string core;        // the kernels that run
  std::string set_by;      // flopscope | you | OpenBLAS
  std::string note;        // one clause for the device line
};

CoreStatus core_status() {
  CoreStatus s;
  s.core = openblas_get_corename();
  const CpuVectorIsa isa = detect_cpu_isa();
  const std::string_view own = core_for_isa(isa);
  const auto coretype = env("OPENBLAS_CORETYPE");
  const auto guard = env(kBlasCoreGuard);
  if (coretype && guard && *coretype == *guard) {
    s.set_by = "flopscope";
    s.note = fmt::format("flopscope set OPENBLAS_CORETYPE={} and re-executed itself: OpenBLAS took its SSE3 {} "
                         "fallback on this {} CPU",
                         *coretype, kFallbackCore, isa_name(isa));
  } else if (coretype) {
    s.set_by = "you";
    s.note = fmt::format("OPENBLAS_CORETYPE={}, set before flopscope started", *coretype);
    if (s.core == kFallbackCore && !own.empty())
      s.note += fmt::format(": SSE3 kernels on this {} CPU (unset it and flopscope runs {})", isa_name(isa), own);
  } else {
    s.set_by = "OpenBLAS";
    s.note = "OpenBLAS's own choice for this CPU";
    if (!reexec_failure().empty()) {
      s.note = fmt::format("its SSE3 fallback on this {} CPU: re-executing with OPENBLAS_CORETYPE={} failed ({}); set "
                           "it before starting flopscope",
                           isa_name(isa), own, reexec_failure());
    } else if (s.core == kFallbackCore && !own.empty()) {
      s.note = fmt::format("its SSE3 fallback on this {} CPU; this OpenBLAS cannot be told otherwise (not "
                           "DYNAMIC_ARCH, or flopscope's re-exec was skipped)", isa_name(isa));
    }
  }
  return s;
}

}  // namespace

void add_blas_core_json(nlohmann::json& device) {
  const CoreStatus s = core_status();
  const auto coretype = env("OPENBLAS_CORETYPE");
  device["blas_core"] = s.core;
  device["blas_coretype_env"] = coretype ? nlohmann::json(*coretype) : nlohmann::json(nullptr);
  device["blas_core_set_by"] = s.set_by;
  device["blas_core_note"] = s.note;
}

std::string blas_core_line() {
  const CoreStatus s = core_status();
  return fmt::format("OpenBLAS core {} ({})", s.core, s.note);
}

}  // namespace flopscope::cpu
