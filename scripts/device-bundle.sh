#!/usr/bin/env bash
# Prepares, on a build machine, what scripts/device-check.sh needs on a GPU machine that can
# install nothing: the release build (flopscope, its tests and benchmarks) and, in
# build/release/device-libs, the shared libraries the binaries need that a bare GPU machine
# lacks (spdlog, fmt, OpenBLAS and its Fortran runtime; libstdc++ in case the machine's is
# older). The CUDA libraries (cuBLASLt, CUPTI) are not copied: the GPU machine has its own.
#
#   scripts/device-bundle.sh            then carry build/release to the GPU machine
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
scripts/install-deps.sh
[[ -f build/release/CMakeCache.txt ]] || cmake --preset release >&2
cmake --build --preset release >&2
libs=build/release/device-libs
rm -rf "$libs" && mkdir -p "$libs"
for bin in build/release/src/flopscope build/release/tests/flopscope_tests; do
  ldd "$bin" | awk '/=> \// {print $3}' | while read -r lib; do
    case "$(basename "$lib")" in
      libspdlog*|libfmt*|libopenblas*|libgfortran*|libquadmath*|libstdc++*|libgcc_s*) cp -L "$lib" "$libs/" ;;
    esac
  done
done
du -sh build/release/src/flopscope build/release/tests/flopscope_tests "$libs" >&2
echo "carry build/release; on the GPU machine: scripts/device-check.sh" >&2
