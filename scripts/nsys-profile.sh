#!/usr/bin/env bash
# Nsight Systems timeline of `flopscope measure --nsight`: NVTX ranges per op (domain
# `flopscope`, nested layer > phase > op), CUDA API and kernels, captured only between
# cudaProfilerStart and cudaProfilerStop (the timed repeats).
#
#   scripts/nsys-profile.sh [REPORT_BASENAME] [measure options...]
#   e.g. scripts/nsys-profile.sh out/layer --width 1/8 --repeats 3
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
report=${1:-flopscope-nsys}
shift || true
bin=${FLOPSCOPE_BIN:-$root/build/release/src/flopscope}
export LD_LIBRARY_PATH="$root/build/release/device-libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec nsys profile --trace=cuda,nvtx,cublas --capture-range=cudaProfilerApi --capture-range-end=stop \
  --force-overwrite=true -o "$report" "$bin" measure --nsight --no-ceiling -q "$@"
