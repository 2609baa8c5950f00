#!/usr/bin/env bash
# The CPU test suite under AddressSanitizer and UndefinedBehaviorSanitizer (CMake preset `asan`,
# in build/asan): host code instrumented, UB fatal, leaks reported. The CLI tests run the
# sanitized binary as a process, so bad input and end-to-end runs are checked too.
#
#   scripts/test-sanitized.sh [ctest args]      e.g. -L unit
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
scripts/install-deps.sh
cmake --preset asan >/dev/null
cmake --build --preset asan
ctest --preset asan "$@"
