#!/usr/bin/env bash
# The GPU check, one command, under 8 minutes on a machine with an NVIDIA GPU: the GPU tests,
# `flopscope peak`, `measure` at full GPT-3 175B width and at width 1/8 in bf16, at 1/8 in fp8
# (on GPUs with FP8 tensor cores), at 1/8 in bf16 timed as CUDA-graph replays with rotating
# input sets, and compute-sanitizer memcheck on a tiny layer (bf16, and fp8 where it runs). Every log and JSON goes into one results folder;
# a short summary table is printed last.
#
#   scripts/device-check.sh [RESULTS_DIR]     default: $OUT/device-check if $OUT is set, else results/<date>-<gpu>
# With $OUT set (the device tool's folder, which brings back only a few files), everything is
# also packed into $OUT/device-check.tgz, with summary.txt beside it.
#
# Uses build/release when it exists (prepared elsewhere by scripts/device-bundle.sh, with the
# shared libraries a bare GPU machine lacks in build/release/device-libs); builds otherwise.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[[ -f "$root/CMakeLists.txt" ]] && cd "$root"  # in a checkout; installed, results go under the current folder
start=$(date +%s)

if [[ -f CMakeLists.txt && ! -x build/release/src/flopscope && -z "${FLOPSCOPE_BIN:-}" ]]; then
  scripts/install-deps.sh && cmake --preset release && cmake --build --preset release || exit 1
fi
# shellcheck source=find-flopscope.sh
source "$root/scripts/find-flopscope.sh" 2>/dev/null || source "$(dirname "${BASH_SOURCE[0]}")/find-flopscope.sh"
bin=$FLOPSCOPE_BIN
tests=$(dirname "$bin")/../tests/flopscope_tests

gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n1 | tr ' ' '-' | tr -cd 'A-Za-z0-9-')
dir=${1:-${OUT:+$OUT/device-check}}
dir=${dir:-results/$(date -u +%Y-%m-%d)-${gpu:-nogpu}}
mkdir -p "$dir"
summary="$dir/summary.txt"
: >"$summary"

# step NAME TIMEOUT_S COMMAND...: runs it with a time limit, log in $dir/NAME.log, records the result.
step() {
  local name=$1 limit=$2
  shift 2
  local t0 rc
  t0=$(date +%s)
  echo "== $name: $*" >&2
  timeout --kill-after=10 "$limit" "$@" >"$dir/$name.log" 2>&1
  rc=$?
  printf '%-22s %-6s %4ss  %s\n' "$name" "$([[ $rc == 0 ]] && echo ok || echo "rc=$rc")" "$(($(date +%s) - t0))" "$*" >>"$summary"
  return $rc
}

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
  echo "host: $(hostname)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv 2>&1
} >"$dir/environment.txt"
step nvidia-smi 30 nvidia-smi
step ldd 10 ldd "$bin"
step version 10 "$bin" --version
step devices 60 "$bin" devices --format json -o "$dir/devices.json"
if [[ -x "$tests" ]]; then
  step gpu-tests 240 "$tests" --gtest_filter='Gpu*' --gtest_brief=0
else
  echo "gpu-tests: not run (no test binary beside $bin; an installed flopscope has none)" >>"$summary"
fi
step peak 120 "$bin" peak --backend cuda --format json -o "$dir/peak.json"
step measure-175b-bf16 150 "$bin" measure --backend cuda --model gpt3-175b --width 1 --precision bf16 --format json -o "$dir/measure-175b-bf16.json"
[[ -f "$dir/measure-175b-bf16.json" ]] && "$bin" report "$dir/measure-175b-bf16.json" >"$dir/measure-175b-bf16.txt" 2>&1
step measure-1_8-bf16 90 "$bin" measure --backend cuda --model gpt3-175b --width 1/8 --precision bf16 --format json -o "$dir/measure-1_8-bf16.json"
[[ -f "$dir/measure-1_8-bf16.json" ]] && "$bin" report "$dir/measure-1_8-bf16.json" >"$dir/measure-1_8-bf16.txt" 2>&1
cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 | tr -d ' .')
if [[ "${cc:-0}" -ge 89 ]]; then
  step measure-1_8-fp8 90 "$bin" measure --backend cuda --model gpt3-175b --width 1/8 --precision fp8 --format json -o "$dir/measure-1_8-fp8.json"
  [[ -f "$dir/measure-1_8-fp8.json" ]] && "$bin" report "$dir/measure-1_8-fp8.json" >"$dir/measure-1_8-fp8.txt" 2>&1
else
  echo "fp8: not run (compute capability ${cc:-unknown}; FP8 tensor cores need 8.9 or newer)" >>"$summary"
fi
step measure-1_8-graph 90 "$bin" measure --backend cuda --model gpt3-175b --width 1/8 --precision bf16 --cuda-graph \
  --input-sets 2 --no-ceiling --format json -o "$dir/measure-1_8-graph.json"
[[ -f "$dir/measure-1_8-graph.json" ]] && "$bin" report "$dir/measure-1_8-graph.json" >"$dir/measure-1_8-graph.txt" 2>&1
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
if [[ -n "$sanitizer" ]]; then
  step memcheck 120 "$sanitizer" --tool memcheck --error-exitcode 1 "$bin" measure -q --backend cuda --model gpt3-175b \
    --width 1/96 --seq 128 --repeats 1 --warmup 0 --no-ceiling --format json -o "$dir/memcheck-measure.json"
  if [[ "${cc:-0}" -ge 89 ]]; then
    step memcheck-fp8 120 "$sanitizer" --tool memcheck --error-exitcode 1 "$bin" measure -q --backend cuda --model gpt3-175b \
      --width 1/96 --seq 128 --repeats 1 --warmup 0 --no-ceiling --precision fp8 --cuda-graph --format json \
      -o "$dir/memcheck-measure-fp8.json"
  fi
else
  echo "memcheck: compute-sanitizer not found" >>"$summary"
fi

echo "flopscope device check: $dir ($(($(date +%s) - start)) s)" >>"$summary"
if [[ -n "${OUT:-}" && "$dir" == "$OUT/device-check" ]]; then
  tar -czf "$OUT/device-check.tgz" -C "$OUT" device-check
  cp "$summary" "$OUT/summary.txt"
fi
echo >&2
cat "$summary"
