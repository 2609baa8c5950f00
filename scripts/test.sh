#!/usr/bin/env bash
# Builds flopscope (CMake preset `release`, in build/release: the tree scripts/run.sh builds, so
# the two share one build) and runs every test.
#
#   scripts/test.sh                        the whole suite
#   scripts/test.sh -L unit                extra arguments go to ctest (labels: unit, cli, gpu)
#   FLOPSCOPE_WERROR=ON scripts/test.sh    host and device warnings are errors (what .ci/run does)
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

# Re-configures the same tree each time with the warnings setting asked for (default OFF, the
# preset's); switching it rebuilds what its flags touch.
cmake --preset release "${cuda_args[@]}" -DFLOPSCOPE_WERROR="${FLOPSCOPE_WERROR:-OFF}"
cmake --build --preset release  # 2 jobs (CMakePresets.json)
ctest --preset release "$@"     # fails on any failed test, and when no test is found
