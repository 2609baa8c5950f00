#!/usr/bin/env bash
# Makes, on a build machine, the one folder a GPU machine that can install nothing needs for
# scripts/device-check.sh: device-bundle/ at the repository root (git-ignored), at most 60 MiB
# (the device tool carries 64 MiB in all, the working tree included).
#
#   scripts/device-bundle.sh [--build-dir DIR] [--out DIR]
#   --build-dir  the build tree holding src/flopscope and tests/flopscope_tests
#                (default: the first that has both of build/release, build/ci); nothing is built here
#   --out        default device-bundle
#
# The bundle:
#   flopscope, flopscope_tests   stripped copies (host symbols go; the device code stays)
#   scripts/                     device-check.sh, find-flopscope.sh, flopscope-launch.sh, ncu-crosscheck.sh
#   lib/                         the shared libraries ldd resolves for the binaries here, except
#                                glibc's (libc, libm, ld-linux, ...: every machine has its own,
#                                and a copy would not match its loader), the compiler runtime
#                                (libstdc++, libgcc_s: every machine has one, and this build
#                                machine's copies need a newer glibc than the binaries do, so on
#                                LD_LIBRARY_PATH they would break an older machine the binaries
#                                run on) and the CUDA and driver libraries (libcuda, libcublasLt,
#                                libcupti, libnvidia-*: the GPU machine has them from its toolkit
#                                or PyTorch's wheels, matched to its driver). So: OpenBLAS, its
#                                Fortran runtime (libgfortran, libquadmath), spdlog, fmt. Those
#                                over 1 MiB travel gzipped (OpenBLAS: 36 MB, 13 MB packed);
#                                find-flopscope.sh unpacks them beside the .gz on first use.
#   MANIFEST.txt                 commit, build tree, files and sizes, and the newest glibc and
#                                libstdc++ symbol versions the bundle needs (objdump -T)
# The total size is printed; above 60 MiB the script fails (exit 1) and removes the bundle.
# On the GPU machine, find-flopscope.sh puts lib/ on LD_LIBRARY_PATH for flopscope's own
# processes only, when ldd says a library is missing there.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
max_bytes=$((60 * 1024 * 1024))

build="" out=device-bundle
while (($#)); do
  case $1 in
    --build-dir) build=${2:?--build-dir takes a folder}; shift 2 ;;
    --out) out=${2:?--out takes a folder}; shift 2 ;;
    -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "device-bundle: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
if [[ -z "$build" ]]; then
  for b in build/release build/ci; do
    if [[ -x $b/src/flopscope && -x $b/tests/flopscope_tests ]]; then build=$b; break; fi
  done
  [[ -n "$build" ]] || { echo "device-bundle: no build tree with src/flopscope and tests/flopscope_tests in build/release or build/ci; build one (cmake --preset release && cmake --build --preset release) or pass --build-dir" >&2; exit 2; }
fi
for f in "$build/src/flopscope" "$build/tests/flopscope_tests"; do
  [[ -x $f ]] || { echo "device-bundle: $f is missing; build it first" >&2; exit 2; }
done

rm -rf "$out"
mkdir -p "$out/lib" "$out/scripts"
strip --strip-unneeded -o "$out/flopscope" "$build/src/flopscope"
strip --strip-unneeded -o "$out/flopscope_tests" "$build/tests/flopscope_tests"
cp scripts/device-check.sh scripts/find-flopscope.sh scripts/flopscope-launch.sh scripts/ncu-crosscheck.sh "$out/scripts/"

# Libraries: what ldd resolves, less glibc's and the CUDA/driver ones (see the header).
ldd "$build/src/flopscope" "$build/tests/flopscope_tests" | awk '/=> \// {print $1, $3}' | sort -u |
  while read -r name path; do
    case $name in
      linux-vdso* | ld-linux* | libc.so* | libm.so* | libpthread.so* | libdl.so* | librt.so* | libutil.so* | \
        libresolv.so* | libmvec.so*) continue ;;
      libstdc++.so* | libgcc_s.so*) continue ;;
      libcuda.so* | libcudart* | libcublas* | libcupti* | libnvidia-* | libnvrtc* | libnvperf* | libnvToolsExt*) continue ;;
    esac
    cp -L "$path" "$out/lib/$name"
  done
for f in "$out"/lib/*; do
  if [[ -f "$f" ]] && (($(stat -c %s "$f") > 1048576)); then gzip -9 -n "$f"; fi
done

dirty=""
if git rev-parse HEAD >"$out/COMMIT" 2>/dev/null; then
  git diff --quiet HEAD 2>/dev/null || dirty=" (with uncommitted changes)"
else
  echo unknown >"$out/COMMIT"
fi
{
  echo "flopscope device bundle: scripts/device-bundle.sh $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(cat "$out/COMMIT")$dirty"
  echo "build tree: $build"
  echo "files (bytes):"
  (cd "$out" && find . -type f ! -name MANIFEST.txt -printf '  %s %P\n' | sort -k2)
  if command -v objdump >/dev/null; then
    # What the GPU machine's own glibc and libstdc++ must provide (the newest version each needs).
    unpacked=$(mktemp)
    for f in "$out/flopscope" "$out/flopscope_tests" "$out"/lib/*; do
      if [[ $f == *.gz ]]; then gzip -dc "$f" >"$unpacked"; else cp "$f" "$unpacked"; fi
      objdump -T "$unpacked" 2>/dev/null | grep -oE '(GLIBC|GLIBCXX)_[0-9.]+' | sort -u || true
    done | sort -uV | awk -F_ '{last[$1] = $0} END {printf "needs: glibc %s, libstdc++ %s\n", last["GLIBC"], last["GLIBCXX"]}'
    rm -f "$unpacked"
  fi
} >"$out/MANIFEST.txt"

bytes=$(du -sb "$out" | cut -f1)
grep '^needs:' "$out/MANIFEST.txt" | sed 's/^/device-bundle: /' >&2 || true
printf 'device-bundle: %s: %.1f MiB (limit 60 MiB): flopscope, flopscope_tests, %d libraries, scripts\n' "$out" \
  "$(awk -v b="$bytes" 'BEGIN {print b / 1048576}')" "$(find "$out/lib" -type f | wc -l)" >&2
if ((bytes > max_bytes)); then
  echo "device-bundle: $out is $bytes bytes, over the 60 MiB limit; removed" >&2
  rm -rf "$out"
  exit 1
fi
# Through bash: a carried file can lose its modes, and exit 126 would waste the machine's start.
echo "device-bundle: carry it: run(carry=[\"$out\"], command=\"bash $out/scripts/device-check.sh\", timeout_s=560)" >&2
