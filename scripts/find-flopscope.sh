# Sourced by the scripts: sets FLOPSCOPE_BIN to the flopscope binary to run, looking in order at
# $FLOPSCOPE_BIN, this checkout's build/release, the install tree beside the scripts
# (<prefix>/share/flopscope/scripts -> <prefix>/bin), then PATH.
_fs_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [[ -z "${FLOPSCOPE_BIN:-}" ]]; then
  for _fs_candidate in "$_fs_here/../build/release/src/flopscope" "$_fs_here/../../../bin/flopscope" \
    "$(command -v flopscope 2>/dev/null || true)"; do
    if [[ -n "$_fs_candidate" && -x "$_fs_candidate" ]]; then
      FLOPSCOPE_BIN=$(cd "$(dirname "$_fs_candidate")" && pwd)/$(basename "$_fs_candidate")
      break
    fi
  done
fi
if [[ -z "${FLOPSCOPE_BIN:-}" ]]; then
  echo "flopscope: binary not found; build it (scripts/run.sh), install it, or set FLOPSCOPE_BIN" >&2
  exit 1
fi
# Shared libraries carried to a bare GPU machine by scripts/device-bundle.sh.
if [[ -d "$(dirname "$FLOPSCOPE_BIN")/../device-libs" ]]; then
  export LD_LIBRARY_PATH="$(cd "$(dirname "$FLOPSCOPE_BIN")/../device-libs" && pwd)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
export FLOPSCOPE_BIN
