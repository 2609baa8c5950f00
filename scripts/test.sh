#!/usr/bin/env bash
# Builds flopscope with warnings as errors (CMake preset `ci`, in build/ci) and runs every test.
#
#   scripts/test.sh             the whole suite
#   scripts/test.sh -L unit     extra arguments go to ctest (labels: unit, cli, gpu)
#
# Missing packages are installed when it can (scripts/install-deps.sh). Exits non-zero when
# the build or any test fails, or when no test was found. GPU tests skip, with the reason,
# on machines without a GPU.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

scripts/install-deps.sh

# The presets name /usr/local/cuda/bin/nvcc; elsewhere, use the nvcc on PATH.
cuda_args=()
[[ -x /usr/local/cuda/bin/nvcc ]] || cuda_args=(-DCMAKE_CUDA_COMPILER="$(command -v nvcc)")

cmake --preset ci "${cuda_args[@]}"
cmake --build --preset ci  # 2 jobs (CMakePresets.json)
ctest --preset ci "$@"     # fails on any failed test, and when no test is found
