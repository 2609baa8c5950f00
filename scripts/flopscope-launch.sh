#!/usr/bin/env bash
# Runs a flopscope binary with the library folders it needs put before LD_LIBRARY_PATH as the
# environment holds it when this runs: under ncu, nsys or compute-sanitizer that is after the
# tool has set its own (its injection libraries), so both are kept. scripts/find-flopscope.sh
# puts this in front of the binary (flopscope_cmd) when ldd says a library is missing.
#
#   bash flopscope-launch.sh DIRS BINARY [ARGS...]    DIRS: folders joined by ':'
set -u
dirs=$1 bin=$2
shift 2
export LD_LIBRARY_PATH="$dirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$bin" "$@"
