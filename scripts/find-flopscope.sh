# shellcheck shell=bash
# Sourced by the scripts: finds the flopscope binary and the shared libraries it needs, without
# ever exporting LD_LIBRARY_PATH (ncu, nsys and compute-sanitizer must keep their own libraries,
# libstdc++ among them).
#
# The binary, FLOPSCOPE_BIN (exported), is the first that exists of: $FLOPSCOPE_BIN; the device
# bundle these scripts sit in (device-bundle/scripts -> device-bundle/flopscope, made by
# scripts/device-bundle.sh); this checkout's build/release, build/ci and device-bundle/; the
# install tree beside the scripts (<prefix>/share/flopscope/scripts -> <prefix>/bin); PATH.
#
# Libraries: flopscope_resolve_libs BINARY... runs ldd on each binary and looks for every library
# it reports "not found" (or too old: "version ... not found") in the bundle's lib/, the CUDA
# toolkit's folders (/usr/local/cuda{,-*}/lib64, extras/CUPTI/lib64, targets/*/lib: a standard
# toolkit keeps CUPTI apart) and PyTorch's CUDA wheels (site-packages/nvidia/cu13/lib and
# nvidia/*/lib, found through python3's site module and under /usr{,/local}/lib/python3*). The
# folders that hold them make FLOPSCOPE_LD_PATH; whatever is found nowhere is named in
# FLOPSCOPE_MISSING_LIBS. Only flopscope's own processes get that path:
#   "${flopscope_cmd[@]}" ARGS...   runs flopscope (also as the target of ncu, nsys, compute-sanitizer)
#   flopscope_env COMMAND ARGS...   runs any flopscope binary (the test binary) with the path
# Sourcing resolves FLOPSCOPE_BIN's libraries; when one is found nowhere, or no binary is found,
# it prints one line on stderr and returns 1 (a caller with set -e stops there).
_fs_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
_fs_bundle=""
[[ -x "$_fs_here/../flopscope" && -d "$_fs_here/../lib" ]] && _fs_bundle=$(cd "$_fs_here/.." && pwd)

if [[ -z "${FLOPSCOPE_BIN:-}" ]]; then
  for _fs_candidate in ${_fs_bundle:+"$_fs_bundle/flopscope"} "$_fs_here/../build/release/src/flopscope" \
    "$_fs_here/../build/ci/src/flopscope" "$_fs_here/../device-bundle/flopscope" "$_fs_here/../../../bin/flopscope" \
    "$(command -v flopscope 2>/dev/null || true)"; do
    if [[ -n "$_fs_candidate" && -x "$_fs_candidate" ]]; then
      FLOPSCOPE_BIN=$(cd "$(dirname "$_fs_candidate")" && pwd)/$(basename "$_fs_candidate")
      break
    fi
  done
fi

# The folders searched for a missing library, in order, one per line (only those that exist).
flopscope_lib_dirs() {
  local d sp bin_dir
  bin_dir=$(dirname "${FLOPSCOPE_BIN:-/nonexistent/x}")
  local -a dirs=("$bin_dir/lib")
  [[ -n "$_fs_bundle" ]] && dirs+=("$_fs_bundle/lib")
  dirs+=(/usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/extras/CUPTI/lib64 /usr/local/cuda/targets/*/lib
    /usr/local/cuda-*/lib64 /usr/local/cuda-*/extras/CUPTI/lib64 /usr/local/cuda-*/targets/*/lib /opt/cuda/lib64
    /opt/cuda/extras/CUPTI/lib64)
  local -a sites=()
  mapfile -t sites < <(python3 -c 'import site; print("\n".join(site.getsitepackages() + [site.getusersitepackages()]))' \
    2>/dev/null)
  sites+=(/usr/lib/python3*/site-packages /usr/lib/python3*/dist-packages /usr/local/lib/python3*/site-packages
    /usr/local/lib/python3*/dist-packages)
  for sp in "${sites[@]}"; do
    dirs+=("$sp/nvidia/cu13/lib" "$sp"/nvidia/*/lib)
  done
  local -A seen=()
  for d in "${dirs[@]}"; do
    [[ -d "$d" && -z "${seen[$d]:-}" ]] || continue
    seen[$d]=1
    echo "$d"
  done
}

# The libraries ldd cannot resolve for these binaries with FLOPSCOPE_LD_PATH, one per line:
# "libx.so.N" for "=> not found", and the library of a "version `X' not found" line.
flopscope_missing_libs() {
  local b
  for b in "$@"; do
    LD_LIBRARY_PATH="${FLOPSCOPE_LD_PATH:-}${LD_LIBRARY_PATH:+${FLOPSCOPE_LD_PATH:+:}$LD_LIBRARY_PATH}" ldd "$b" 2>&1 |
      awk '/=> not found/ {print $1; next}
           /version `.*'"'"' not found/ {sub(/:$/, "", $2); n = split($2, p, "/"); print p[n]}'
  done | sort -u
}

flopscope_resolve_libs() {
  FLOPSCOPE_LD_PATH=${FLOPSCOPE_LD_PATH:-}
  local -a dirs=() missing=()
  local lib d added
  # A folder added for one library can bring another's dependency: a few rounds.
  for _ in 1 2 3 4; do
    mapfile -t missing < <(flopscope_missing_libs "$@")
    ((${#missing[@]})) || break
    ((${#dirs[@]})) || mapfile -t dirs < <(flopscope_lib_dirs)
    added=0
    for lib in "${missing[@]}"; do
      for d in "${dirs[@]}"; do
        [[ -e "$d/$lib" ]] || continue
        case ":$FLOPSCOPE_LD_PATH:" in
          *":$d:"*) ;;
          *) FLOPSCOPE_LD_PATH=${FLOPSCOPE_LD_PATH:+$FLOPSCOPE_LD_PATH:}$d; added=1 ;;
        esac
        break
      done
    done
    ((added)) || break
  done
  mapfile -t missing < <(flopscope_missing_libs "$@")
  FLOPSCOPE_MISSING_LIBS="${missing[*]}"
  # shellcheck disable=SC2034  # used by the scripts that source this one
  if [[ -n "$FLOPSCOPE_LD_PATH" ]]; then
    flopscope_cmd=(env "LD_LIBRARY_PATH=$FLOPSCOPE_LD_PATH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$FLOPSCOPE_BIN")
  else
    flopscope_cmd=("$FLOPSCOPE_BIN")
  fi
  [[ -z "$FLOPSCOPE_MISSING_LIBS" ]]
}

flopscope_env() {
  if [[ -n "${FLOPSCOPE_LD_PATH:-}" ]]; then
    LD_LIBRARY_PATH="$FLOPSCOPE_LD_PATH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$@"
  else
    "$@"
  fi
}

if [[ -z "${FLOPSCOPE_BIN:-}" ]]; then
  echo "flopscope: binary not found; build it (scripts/run.sh), bundle it (scripts/device-bundle.sh), install it, or set FLOPSCOPE_BIN" >&2
  return 1 2>/dev/null || exit 1
fi
export FLOPSCOPE_BIN
if ! flopscope_resolve_libs "$FLOPSCOPE_BIN"; then
  echo "flopscope: shared libraries not found for $FLOPSCOPE_BIN: $FLOPSCOPE_MISSING_LIBS (searched: $(flopscope_lib_dirs | tr '\n' ' ')and ldd's own paths)" >&2
  return 1 2>/dev/null || exit 1
fi
