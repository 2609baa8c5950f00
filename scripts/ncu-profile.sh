#!/usr/bin/env bash
# Nsight Compute on `flopscope measure --nsight`: kernels inside the profiler range only
# (--profile-from-start off), attributed to the NVTX op ranges (--nvtx), with the GPU's clocks
# left as they are (--clock-control none: never change the GPU's clocks or settings).
#
#   scripts/ncu-profile.sh [REPORT_BASENAME] [measure options...]
#   e.g. scripts/ncu-profile.sh out/layer --width 1/96 --seq 256 --repeats 1
# Extra ncu options: NCU_ARGS="--section SpeedOfLight --metrics sm__ops_path_tensor_src_bf16_dst_fp32.sum"
set -euo pipefail
report=${1:-flopscope-ncu}
shift || true
# shellcheck source=find-flopscope.sh
source "$(dirname "${BASH_SOURCE[0]}")/find-flopscope.sh"
# flopscope_cmd: the binary, behind `env LD_LIBRARY_PATH=...` when its libraries need it (ncu
# itself keeps its own environment; --target-processes all follows env's exec).
# shellcheck disable=SC2086
exec ncu --nvtx --clock-control none --profile-from-start off --target-processes all --force-overwrite -o "$report" \
  ${NCU_ARGS:-} "${flopscope_cmd[@]}" measure --nsight --no-ceiling -q --repeats 1 --warmup 0 "$@"
