// Which OpenBLAS kernels run, however flopscope is started.
//
// OpenBLAS built with DYNAMIC_ARCH (Debian's) picks its kernels when the library loads, from
// the CPUID, or from OPENBLAS_CORETYPE when that is set. 0.3.21 (Debian 12) does not know CPUs
// newer than it and falls back to its SSE3 "Prescott" kernels on them: on a 2-core Xeon with
// AVX-512 the width-3/96 layer ran in 940-990 ms against 230-300 ms with SkylakeX (issue 21).
// Setting the variable from inside the process is too late (the library has loaded), so
// main() asks blas_core_reexec_target() first thing and, when it names a core, re-executes
// the same binary with the same arguments and OPENBLAS_CORETYPE set, plus a guard variable
// (kBlasCoreGuard) so that the second process never re-executes again.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

namespace flopscope::cpu {

// Set (to the core) by flopscope beside OPENBLAS_CORETYPE when it re-executes itself: the
// guard against a second re-exec, and how the new process knows who set the variable.
inline constexpr const char* kBlasCoreGuard = "FLOPSCOPE_OPENBLAS_CORETYPE_SET";
// For tests on CPUs OpenBLAS does know: the core OpenBLAS is taken to have chosen when
// deciding (e.g. Prescott, to take the fallback path); what is reported stays OpenBLAS's own.
inline constexpr const char* kBlasCoreAssume = "FLOPSCOPE_TEST_ASSUME_BLAS_CORE";

// The CPU's vector ISA, as OpenBLAS's x86 kernels need it (the OS's state saving included:
// __builtin_cpu_supports checks XCR0).
struct CpuVectorIsa {
  bool avx2_fma = false;  // AVX2 and FMA: Haswell's kernels
  bool avx512 = false;    // AVX-512 F, BW, VL, DQ, CD: SkylakeX's kernels
};
CpuVectorIsa detect_cpu_isa();
// The OpenBLAS core for the ISA: SkylakeX, Haswell, or "" (none better than OpenBLAS's own).
std::string_view core_for_isa(const CpuVectorIsa& isa);

// What is known at start-up, before any OpenBLAS call.
struct BlasCoreInputs {
  CpuVectorIsa isa;
  std::string openblas_core;      // openblas_get_corename()
  bool dynamic_arch = true;       // openblas_get_config() names DYNAMIC_ARCH (the variable works)
  std::optional<std::string> coretype_env;  // OPENBLAS_CORETYPE, when set and not empty
  std::optional<std::string> guard_env;     // kBlasCoreGuard, when set
};
// The core to re-execute with, or nothing: only when OpenBLAS took its Prescott fallback on a
// CPU with AVX2 or AVX-512, the variable is unset (a user's own is respected), the library is
// DYNAMIC_ARCH, and no re-exec has happened yet (the guard). OpenBLAS's other choices are its
// own detection and stay (e.g. Zen on AMD: its AVX2 kernels, chosen on purpose).
std::optional<std::string> decide_blas_core(const BlasCoreInputs& in);
// The same from this process: the CPU, OpenBLAS and the environment.
std::optional<std::string> blas_core_reexec_target();

// main() records here when its re-exec failed (execv returned), so the device line says so.
void note_blas_core_reexec_failure(const std::string& why);

// The kernels that run and who chose them, for the device JSON (blas_core, blas_coretype_env,
// blas_core_set_by, blas_core_note) and the device line ("OpenBLAS core SkylakeX (...)").
void add_blas_core_json(nlohmann::json& device);
std::string blas_core_line();

}  // namespace flopscope::cpu
