# Sourced (not run): exports OPENBLAS_CORETYPE for this CPU when it is unset, so OpenBLAS runs
# the kernels of the CPU's vector ISA. OpenBLAS 0.3.21 (Debian 12) does not recognise CPUs
# newer than it (Sapphire Rapids among them) and falls back to its SSE3 "Prescott" kernels:
# on a 2-core Xeon with AVX-512, sgemm 2048^3 ran at 21 GFLOP/s so, and at 100 with SkylakeX.
# OpenBLAS reads the variable when the library loads, so it must be set before a program starts.
# flopscope itself no longer needs it (it re-executes itself with the variable set when OpenBLAS
# fell back: src/backend/cpu/blas_core.hpp); the benchmarks keep sourcing it for bench_cpu (a
# separate binary) and so the peer comparisons run PyTorch and flopscope on the same kernels.
#   AVX-512 (F, BW, VL, DQ, CD) -> SkylakeX;  AVX2 + FMA -> Haswell;  otherwise left unset.
if [[ -z "${OPENBLAS_CORETYPE:-}" && -r /proc/cpuinfo ]]; then
  _fs_flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
  if [[ " $_fs_flags " == *" avx512f "* && " $_fs_flags " == *" avx512bw "* && " $_fs_flags " == *" avx512vl "* &&
        " $_fs_flags " == *" avx512dq "* && " $_fs_flags " == *" avx512cd "* ]]; then
    export OPENBLAS_CORETYPE=SkylakeX
  elif [[ " $_fs_flags " == *" avx2 "* && " $_fs_flags " == *" fma "* ]]; then
    export OPENBLAS_CORETYPE=Haswell
  fi
  unset _fs_flags
fi
