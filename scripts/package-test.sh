#!/usr/bin/env bash
# Builds the .deb (CPack), installs it, runs `flopscope estimate` from the installed location
# and a script from its installed folder, then removes the package. Needs root (dpkg).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
scripts/install-deps.sh
# Package build/release: the tree scripts/test.sh built (in CI with warnings as errors), or a
# fresh release build. (A developer's build/ci, the `ci` preset, is the same configuration.)
preset=release
[[ -f build/$preset/CMakeCache.txt ]] || cmake --preset $preset >/dev/null
cmake --build --preset $preset --target flopscope
(cd build/$preset && cpack -G DEB >/dev/null)
deb=$(ls build/$preset/flopscope_*_amd64.deb | head -n1)
echo "package: $deb ($(du -h "$deb" | cut -f1))" >&2
dpkg -i "$deb" >/dev/null
trap 'dpkg -r flopscope >/dev/null 2>&1 || true' EXIT
installed=$(command -v flopscope)
[[ "$installed" == /usr/bin/flopscope ]] || { echo "flopscope is not on PATH from the package ($installed)" >&2; exit 1; }
# Capture first: `... | grep -q` would end the pipe early and fail the pipeline with SIGPIPE.
estimate=$(cd /tmp && flopscope --version && flopscope estimate --model gpt3-175b)
grep -q "3.14e+23" <<<"$estimate" || { echo "installed flopscope estimate did not print 6nd = 3.14e+23" >&2; exit 1; }
FLOPSCOPE_BIN= bash -c 'source /usr/share/flopscope/scripts/find-flopscope.sh && [[ "$FLOPSCOPE_BIN" == /usr/bin/flopscope ]]'
test -f /usr/share/doc/flopscope/method.md
echo "package test: installed, estimate ran from /usr/bin, scripts find the binary" >&2
