#!/usr/bin/env bash
# Nsight Systems timeline of `flopscope measure --nsight`: NVTX ranges per op (domain
# `flopscope`, nested layer > phase > op), CUDA API and kernels, captured only between
# cudaProfilerStart and cudaProfilerStop (the timed repeats).
#
#   scripts/nsys-profile.sh [REPORT_BASENAME] [measure options...]
#   e.g. scripts/nsys-profile.sh out/layer --width 1/8 --repeats 3
# With --cuda-graph the ops run inside graph replays: --cuda-graph-trace=node shows each kernel
# of a replay (the NVTX op ranges mark the capture, which happens before cudaProfilerStart).
set -euo pipefail
report=${1:-flopscope-nsys}
shift || true
# shellcheck source=find-flopscope.sh
source "$(dirname "${BASH_SOURCE[0]}")/find-flopscope.sh"
# flopscope_cmd: the binary, behind `env LD_LIBRARY_PATH=...` when its libraries need it (nsys
# itself keeps its own environment).
exec nsys profile --trace=cuda,nvtx,cublas --cuda-graph-trace=node --capture-range=cudaProfilerApi --capture-range-end=stop \
  --force-overwrite=true -o "$report" "${flopscope_cmd[@]}" measure --nsight --no-ceiling -q "$@"
