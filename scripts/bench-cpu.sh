#!/usr/bin/env bash
# The CPU benchmark: the layer's GEMM throughput against OpenBLAS sgemm on a large square
# product, measured in the same run, printed as a ratio (target >= 0.8).
# Usage: scripts/bench-cpu.sh [--width 1/8] [--square 2048] [--repeats 3]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release --target flopscope_bench_cpu >/dev/null
source "$root/scripts/openblas-coretype.sh"  # OpenBLAS kernels for this CPU (0.3.21 falls back to SSE3 on new ones)
exec build/release/benchmarks/flopscope_bench_cpu "$@"
