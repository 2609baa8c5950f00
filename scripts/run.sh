#!/usr/bin/env bash
# Builds flopscope (CMake preset `release`, in build/release) when needed and runs it.
#
#   scripts/run.sh                          runs DEFAULT_ARGS below
#   scripts/run.sh estimate --format json   runs `flopscope estimate --format json`
#
# Missing packages are installed when it can (scripts/install-deps.sh). Build output goes to
# stderr, so stdout carries only flopscope's result: scripts/run.sh ... > result.json works.
set -euo pipefail

# >>> DEFAULT_ARGS: the flopscope arguments `scripts/run.sh` runs when given none. <<<
DEFAULT_ARGS=(measure)

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

scripts/install-deps.sh

# The presets name /usr/local/cuda/bin/nvcc; elsewhere, use the nvcc on PATH.
cuda_args=()
[[ -x /usr/local/cuda/bin/nvcc ]] || cuda_args=(-DCMAKE_CUDA_COMPILER="$(command -v nvcc)")

# Configure once; after that the build re-runs CMake itself when a CMakeLists.txt changes.
if [[ ! -f build/release/CMakeCache.txt ]]; then
  cmake --preset release "${cuda_args[@]}" >&2
fi
cmake --build --preset release >&2  # incremental; 2 jobs (CMakePresets.json)

if (($# == 0)); then
  set -- "${DEFAULT_ARGS[@]}"
fi
# No OPENBLAS_CORETYPE here: flopscope picks the CPU's OpenBLAS kernels itself
# (src/backend/cpu/blas_core.hpp), however it is started.
exec build/release/src/flopscope "$@"
