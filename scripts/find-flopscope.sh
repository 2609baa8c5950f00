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
# FLOPSCOPE_MISSING_LIBS. flopscope_resolve_nvperf BINARY does the same for the libnvperf_host
# and libnvperf_target that CUPTI opens at run time (ldd never reports them): beside the
# libcupti that resolved, or found in those folders. Only flopscope's own processes get the path:
#   "${flopscope_cmd[@]}" ARGS...   runs flopscope (also as the target of ncu, nsys, compute-sanitizer:
#                                   through flopscope-launch.sh, which adds the path when the binary
#                                   starts, after the tool has set its own)
#   flopscope_env COMMAND ARGS...   runs any flopscope binary (the test binary) with the path
#   flopscope_find_tool NAME        prints the path of ncu or compute-sanitizer: $NCU or
#                                   $COMPUTE_SANITIZER, else PATH, $CUDA_HOME/bin, /usr/local/cuda*/bin
#                                   (and compute-sanitizer/), /opt/nvidia/nsight-compute/*/; returns 1
#                                   when it is nowhere
# Sourcing resolves FLOPSCOPE_BIN's libraries; when one is found nowhere, or no binary is found,
# it prints one line on stderr and returns 1 (a caller with set -e stops there).
_fs_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# A bundle's larger libraries travel gzipped (scripts/device-bundle.sh, for the carry limit):
# unpacked beside the .gz once, before anything looks for them.
for _fs_z in "$_fs_here"/../lib/*.gz; do
  [[ -f "$_fs_z" && ! -e "${_fs_z%.gz}" ]] || continue
  if gzip -dc "$_fs_z" >"${_fs_z%.gz}.part" 2>/dev/null; then
    mv -f "${_fs_z%.gz}.part" "${_fs_z%.gz}"
  else
    rm -f "${_fs_z%.gz}.part"
    echo "find-flopscope: cannot unpack $_fs_z (gzip)" >&2
  fi
done
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
  flopscope_set_cmd
  [[ -z "$FLOPSCOPE_MISSING_LIBS" ]]
}

# flopscope_cmd from FLOPSCOPE_BIN and FLOPSCOPE_LD_PATH. The path is added by the launcher when
# the binary starts, not expanded here: a tool in front of it (ncu, compute-sanitizer) sets its
# own LD_LIBRARY_PATH first, and an expanded copy would overwrite it.
flopscope_set_cmd() {
  # shellcheck disable=SC2034  # used by the scripts that source this one
  if [[ -n "${FLOPSCOPE_LD_PATH:-}" ]]; then
    flopscope_cmd=(bash "$_fs_here/flopscope-launch.sh" "$FLOPSCOPE_LD_PATH" "$FLOPSCOPE_BIN")
  else
    flopscope_cmd=("$FLOPSCOPE_BIN")
  fi
}

# CUPTI's profiler host and target libraries, which it dlopens (ldd never lists them): beside the
# libcupti the binary resolves, else in flopscope_lib_dirs (that folder joins FLOPSCOPE_LD_PATH).
# FLOPSCOPE_NVPERF_NOTE says what was found; returns 1 when a library is nowhere.
flopscope_resolve_nvperf() {
  local cupti dir lib d missing=()
  cupti=$(LD_LIBRARY_PATH="${FLOPSCOPE_LD_PATH:-}${LD_LIBRARY_PATH:+${FLOPSCOPE_LD_PATH:+:}$LD_LIBRARY_PATH}" ldd "$1" 2>/dev/null |
    awk '$1 ~ /^libcupti\.so/ && $3 ~ /^\// {print $3; exit}')
  if [[ -z "$cupti" ]]; then
    FLOPSCOPE_NVPERF_NOTE="$1 does not link libcupti"
    return 0
  fi
  dir=$(dirname "$(readlink -f "$cupti")")
  local found_beside=1
  for lib in libnvperf_host libnvperf_target; do
    compgen -G "$dir/$lib.so*" >/dev/null && continue
    found_beside=0
    local where=""
    while read -r d; do
      if compgen -G "$d/$lib.so*" >/dev/null; then where=$d; break; fi
    done < <(flopscope_lib_dirs)
    if [[ -z "$where" ]]; then
      missing+=("$lib")
      continue
    fi
    case ":${FLOPSCOPE_LD_PATH:-}:" in
      *":$where:"*) ;;
      *) FLOPSCOPE_LD_PATH=${FLOPSCOPE_LD_PATH:+$FLOPSCOPE_LD_PATH:}$where ;;
    esac
  done
  flopscope_set_cmd
  if ((${#missing[@]})); then
    FLOPSCOPE_NVPERF_NOTE="${missing[*]} not found beside $cupti or in the library folders: CUPTI's counters will not load"
    return 1
  fi
  if ((found_beside)); then
    FLOPSCOPE_NVPERF_NOTE="libnvperf_host and libnvperf_target beside $cupti"
  else
    FLOPSCOPE_NVPERF_NOTE="libnvperf found apart from $cupti; its folder is on flopscope's library path"
  fi
}

flopscope_find_tool() {
  local name=$1 var c
  case $name in
    ncu) var=${NCU:-} ;;
    compute-sanitizer) var=${COMPUTE_SANITIZER:-} ;;
    *) var="" ;;
  esac
  if [[ -n "$var" ]]; then
    [[ -f "$var" ]] && { echo "$var"; return 0; }
    echo "flopscope: $name given as '$var', which is no file" >&2
    return 1
  fi
  c=$(command -v "$name" 2>/dev/null) && { echo "$c"; return 0; }
  # The newest toolkit and Nsight Compute first (version-sorted, highest first).
  local -a found=()
  mapfile -t found < <(printf '%s\n' /usr/local/cuda-*/bin/"$name" /usr/local/cuda*/compute-sanitizer/"$name" \
    /opt/nvidia/nsight-compute/*/"$name" | sort -rV)
  for c in ${CUDA_HOME:+"$CUDA_HOME/bin/$name"} /usr/local/cuda/bin/"$name" "${found[@]}"; do
    [[ -f "$c" ]] && { echo "$c"; return 0; }
  done
  return 1
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
