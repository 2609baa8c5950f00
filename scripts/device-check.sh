#!/usr/bin/env bash
# The GPU check, sized for a GPU machine lent briefly: one call of at most 600 s (part 1, step
# limits adding up to at most 540 s), whose output folder brings back at most 8 files.
#
#   scripts/device-check.sh [--part 1|2] [--out DIR]   run one part (default 1)
#   scripts/device-check.sh [--part 1|2] --plan        print each step's name and time limit,
#                                                     then "total: N s"; runs nothing
#   DIR: default $OUT (the device tool's folder), else results/<date>-<gpu>
#
# Everything is written in a work folder outside DIR (mktemp -d); after every step DIR gets
# exactly two files, rewritten each time: summary.txt (per step: status, seconds, limit and a
# one-line result) and device-check.tgz (every log and JSON so far). A call killed at its limit
# still brings back what happened up to the step it was in (marked "running").
#
# What one call learns, in this order (each step runs under `timeout` with its limit):
#   part 1  1. loads and sees the GPU: nvidia-smi; libraries (every one ldd reports missing is
#              looked for in the bundle, the CUDA toolkit's folders and PyTorch's wheels:
#              scripts/find-flopscope.sh); `flopscope devices` lists a GPU. If any of the
#              three fails, every later step is skipped and the check stops.
#           2. kernels right and memory-clean: the kernel test suites, one process per suite
#              (a sticky CUDA error cannot fail the next suite); compute-sanitizer memcheck on a
#              width-1/96, seq-128 bf16 layer with --counters off (CUPTI stays out of it)
#           3. cuBLASLt takes every configuration, with correct results: the GEMM, layer and
#              fp8 suites (one process each); `measure --width 1/8` in bf16 and in fp8
#              (verification must pass; fp8 only on compute capability 8.9+)
#           4. counters in this VM: the GpuCounters suite (a 1536^3 bf16 GEMM reads 2 m n k
#              within 0.1%; every op of a small layer measured) and `measure --counters auto`
#              on a small layer: status, passes, dropped metrics, the hgmma/hmma split
#   part 2  1. again (a later call may land on a fresh machine)
#           5. full width: `measure --model gpt3-175b --width 1` in bf16 with counters and the
#              8192^3 ceiling; CUDA-graph replay against the sum of op times (width 1/8); the
#              end-to-end GPU suites (GpuMeasure, GpuGraph: they run FLOPSCOPE_BIN); the ncu
#              cross-check with --gemm-candidates 1; memcheck on the fp8 layer
#
# The binaries: FLOPSCOPE_BIN and FLOPSCOPE_TESTS when set, else the bundle or build tree that
# scripts/find-flopscope.sh finds (device-bundle/ from scripts/device-bundle.sh travels to a GPU
# machine that can build nothing). Exit: 0 every step ok or skipped as not applicable; 1 a step
# failed or timed out; 2 bad arguments.
set -uo pipefail
self=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
here=$(dirname "$self")

# name part limit_s what. Part limits add up to at most 540 s (tests/test_device_check.cpp).
plan_table=(
  "nvidia-smi      1 15 nvidia-smi sees a GPU"
  "libraries       1 15 every shared library flopscope and its tests need resolves"
  "devices         1 30 flopscope --version, flopscope devices lists the GPU"
  "kernel-tests    1 90 kernel test suites, one process each"
  "memcheck        1 90 compute-sanitizer memcheck, width 1/96, seq 128, bf16, --counters off"
  "gemm-tests      1 90 GpuGemm, GpuLayer, GpuFp8 suites, one process each"
  "measure-1_8     1 50 measure --width 1/8 bf16, verification"
  "measure-1_8-fp8 1 50 measure --width 1/8 fp8, verification (compute capability 8.9+)"
  "counter-tests   1 45 GpuCounters suite: 1536^3 bf16 GEMM = 2 m n k, a layer's ops measured"
  "counters        1 45 measure --counters auto on width 1/96: status, passes, dropped, hgmma split"
  "nvidia-smi      2 15 nvidia-smi sees a GPU"
  "libraries       2 15 every shared library flopscope and its tests need resolves"
  "devices         2 30 flopscope --version, flopscope devices lists the GPU"
  "measure-175b    2 150 measure --model gpt3-175b --width 1 bf16, counters, 8192^3 ceiling"
  "graph-replay    2 60 measure --width 1/8 --cuda-graph: replay vs the sum of op times"
  "e2e-tests       2 60 GpuMeasure, GpuGraph suites (they run FLOPSCOPE_BIN)"
  "ncu-crosscheck  2 150 scripts/ncu-crosscheck.sh --gemm-candidates 1, width 1/96, seq 256"
  "memcheck-fp8    2 60 compute-sanitizer memcheck, width 1/96, seq 128, fp8, --cuda-graph, --counters off"
)
gate_steps=" nvidia-smi libraries devices "
# Suites that are not kernel tests; every other Gpu*/Cuda* suite is one (new kernels join by themselves).
non_kernel_suites=" GpuGemm GpuLayer GpuFp8 GpuMeasure GpuGraph GpuCounters "


# ---------------------------------------------------------------------------------------------
# Steps. Each runs as its own process (this script with --step NAME, under timeout), with
# stdout and stderr in $work/NAME.log; its last line of $work/NAME.result is the summary's
# result. Exit 0 ok, 3 not applicable (skipped), anything else failed.

result() { echo "$*" >"$work/$step_name.result"; }

# The measure JSON at $1: one line (verification, time, ceiling, counters), by python3 when present.
summarize_measure() {
  command -v python3 >/dev/null || { echo "see $(basename "$1")"; return; }
  python3 - "$1" <<'PY'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as e:
    print(f"no result JSON ({e.__class__.__name__})"); sys.exit()
v = d.get("verification") or {}
t = (d.get("totals") or {}).get("total") or {}
parts = ["verification " + ("passed" if v.get("passed") else "FAILED")]
ms = (t.get("time_ms") or {}).get("median")
if ms: parts.append(f"layer {ms:.4g} ms")
if t.get("achieved_flops_per_s"): parts.append(f"{t['achieved_flops_per_s'] / 1e12:.4g} TFLOP/s")
c = (d.get("peaks") or {}).get("measured_ceiling")
if isinstance(c, dict) and c.get("flops_per_s"): parts.append(f"ceiling {c['flops_per_s'] / 1e12:.4g} TFLOP/s")
hw = d.get("counters") or {}
hw = hw.get("hardware", hw)
st = hw.get("status")
if st == "measured":
    dropped = [m.get("name") for m in hw.get("dropped_metrics") or []]
    parts.append(f"counters measured, {hw.get('passes')} passes, {len(dropped)} dropped" +
                 (f" ({', '.join(dropped)})" if dropped else ""))
    splits = [((o.get("measured") or {}).get("checks") or {}).get("hopper_split", {}).get("bf16", {}).get("split_over_dense")
              for o in d.get("ops", [])]
    splits = [s for s in splits if isinstance(s, (int, float))]
    if splits: parts.append(f"hgmma+hmma over dense {min(splits):.4f}..{max(splits):.4f}")
    ratios = [o.get("measured_over_analytic") for o in d.get("ops", []) if isinstance(o.get("measured_over_analytic"), (int, float))]
    if ratios: parts.append(f"measured/analytic FLOPs {min(ratios):.4f}..{max(ratios):.4f}")
elif st:
    parts.append(f"counters {st}" + (f" ({hw.get('reason')})" if st != "off" else ""))
r = t.get("graph_replay_ms")
if isinstance(r, dict) and r.get("median"):
    ops = sum((o.get("time_ms") or {}).get("median", 0) for o in d.get("ops", []))
    parts.append(f"replay {r['median']:.4g} ms vs sum of ops {ops:.4g} ms (x{r['median'] / ops:.3f})" if ops else "")
print("; ".join(p for p in parts if p))
PY
}

# measure NAME ARGS...: flopscope measure into $work/NAME.json, summarised; fails unless verified.
run_measure() {
  local name=$1
  shift
  "${flopscope_cmd[@]}" measure --backend cuda --format json -o "$work/$name.json" "$@"
  local rc=$?
  result "$(summarize_measure "$work/$name.json")"
  ((rc == 0)) || return "$rc"
  grep -q '"passed": true' "$work/$name.json"
}

# Gpu*/Cuda* suites of the test binary, by their gtest name ("GpuFill", "GpuShapes/GpuGemm").
gpu_suites() {
  flopscope_env "$tests" --gtest_list_tests --gtest_filter='Gpu*:Cuda*' 2>/dev/null | awk '/^[^ ]/ {s = $1; sub(/\.$/, "", s); print s}'
}

# run_suites LIMIT_S SUITE...: each suite its own process, within the step's limit in all.
run_suites() {
  local limit=$1
  shift
  local t0 suite left failed=() passed=0 rc
  t0=$(date +%s)
  [[ -x "$tests" ]] || { result "no test binary at $tests"; return 1; }
  (($#)) || { result "no such suites in $tests"; return 1; }
  for suite in "$@"; do
    left=$((limit - 4 - ($(date +%s) - t0)))
    if ((left < 5)); then
      failed+=("$suite(no time left)")
      continue
    fi
    echo "== $suite"
    # The end-to-end tests run FLOPSCOPE_BIN, which inherits the library path.
    FLOPSCOPE_BIN=$bin timeout -k 2 "$((left < 60 ? left : 60))" "${ld_env[@]}" \
      "$tests" --gtest_filter="$suite.*" --gtest_color=no
    rc=$?
    if ((rc == 0)); then passed=$((passed + 1)); else failed+=("$suite(rc=$rc)"); fi
  done
  # A skipped test is no pass: say how many (the reasons are in the log).
  local skipped
  skipped=$(grep -cE '^\[  SKIPPED \] [A-Za-z]' "$work/$step_name.log" 2>/dev/null)
  result "$passed/$# suites passed${failed[*]:+; failed: ${failed[*]}}$( ((skipped > 0)) && echo "; $skipped tests skipped")"
  ((${#failed[@]} == 0))
}

sanitizer() { command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda-*/bin/compute-sanitizer 2>/dev/null | head -n1; }

# compute-sanitizer runs with its own environment; only flopscope gets the library path.
run_memcheck() {
  local name=$1
  shift
  local cs
  cs=$(sanitizer)
  [[ -n "$cs" ]] || { result "compute-sanitizer not found"; return 1; }
  "$cs" --tool memcheck --error-exitcode 1 --target-processes all "${flopscope_cmd[@]}" measure -q --backend cuda \
    --model gpt3-175b --width 1/96 --seq 128 --repeats 1 --warmup 0 --no-ceiling --counters off --gemm-candidates 1 \
    --format json -o "$work/$name.json" "$@"
  local rc=$?
  result "$( ((rc == 0)) && echo "no memcheck errors" || grep -m1 -E 'ERROR SUMMARY|Error|error' "$work/$name.log" || echo "rc=$rc")"
  return "$rc"
}

compute_capability() { cat "$work/state/cc" 2>/dev/null || echo 0; }

step_nvidia-smi() {
  nvidia-smi || { result "nvidia-smi failed: no GPU or no driver here"; return 1; }
  nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total,clocks.max.sm,power.limit --format=csv
  local line
  line=$(nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader | head -n1)
  [[ -n "$line" ]] || { result "nvidia-smi lists no GPU"; return 1; }
  echo "$line" | awk -F', *' '{gsub(/\./, "", $3); print $3}' >"$work/state/cc"
  result "$line"
}

step_libraries() {
  [[ -x "$bin" ]] || { result "no flopscope binary (build and bundle it: scripts/device-bundle.sh; or set FLOPSCOPE_BIN)"; return 1; }
  echo "flopscope: $bin"
  echo "tests: $tests"
  FLOPSCOPE_LD_PATH=""
  local -a bins=("$bin")
  [[ -x "$tests" ]] && bins+=("$tests")
  if flopscope_resolve_libs "${bins[@]}"; then
    echo "$FLOPSCOPE_LD_PATH" >"$work/state/ld_path"
    for b in "${bins[@]}"; do flopscope_env ldd "$b"; done
    result "all resolved${FLOPSCOPE_LD_PATH:+; LD_LIBRARY_PATH for flopscope only: $FLOPSCOPE_LD_PATH}"
  else
    for b in "${bins[@]}"; do flopscope_env ldd "$b"; done
    echo "searched: $(flopscope_lib_dirs | tr '\n' ' ')"
    result "missing: $FLOPSCOPE_MISSING_LIBS"
    return 1
  fi
}

step_devices() {
  "${flopscope_cmd[@]}" --version || { result "flopscope --version failed"; return 1; }
  "${flopscope_cmd[@]}" devices --format json -o "$work/devices.json" || { result "flopscope devices failed"; return 1; }
  "${flopscope_cmd[@]}" devices
  local n
  n=$(grep -c '"compute_capability"' "$work/devices.json")
  ((n > 0)) || { result "flopscope sees no GPU: $(grep -m1 '"gpu_probe"' "$work/devices.json" | sed 's/^ *//')"; return 1; }
  result "$n GPU(s): $(grep -m1 '"name"' "$work/devices.json" | sed 's/^ *//')"
}

step_kernel-tests() {
  local -a suites=()
  local s
  while read -r s; do
    [[ "$non_kernel_suites" == *" ${s##*/} "* ]] || suites+=("$s")
  done < <(gpu_suites)
  run_suites "$limit" "${suites[@]}"
}

step_memcheck() { run_memcheck memcheck --precision bf16; }

step_gemm-tests() {
  local -a suites=()
  local s
  while read -r s; do
    [[ " GpuGemm GpuLayer GpuFp8 " == *" ${s##*/} "* ]] && suites+=("$s")
  done < <(gpu_suites)
  run_suites "$limit" "${suites[@]}"
}

step_measure-1_8() {
  run_measure measure-1_8 --model gpt3-175b --width 1/8 --precision bf16 --no-ceiling --counters off
}

step_measure-1_8-fp8() {
  if (($(compute_capability) < 89)); then
    result "not applicable: compute capability $(compute_capability) has no FP8 tensor cores"
    return 3
  fi
  run_measure measure-1_8-fp8 --model gpt3-175b --width 1/8 --precision fp8 --no-ceiling --counters off
}

step_counter-tests() {
  local -a suites=()
  local s
  while read -r s; do [[ "${s##*/}" == GpuCounters ]] && suites+=("$s"); done < <(gpu_suites)
  run_suites "$limit" "${suites[@]}"
  local rc=$?
  # The test prints the chip, passes and the GEMM's tensor FLOPs against 2 m n k.
  local line
  line=$(grep -m1 '^GpuCounters:' "$work/$step_name.log" | cut -c1-300)
  [[ -n "$line" ]] && result "$(cat "$work/$step_name.result"); $line"
  return "$rc"
}

step_counters() {
  run_measure counters --model gpt3-175b --width 1/96 --seq 256 --precision bf16 --no-ceiling --counters auto \
    --repeats 1
  local rc=$?
  ((rc == 0)) || return "$rc"
  # Counters working in this VM means: measured, and no metric of the table refused.
  grep -q '"status": "measured"' "$work/counters.json" && grep -q '"dropped_metrics": \[\]' "$work/counters.json"
}

step_measure-175b() {
  run_measure measure-175b --model gpt3-175b --width 1 --precision bf16 --counters auto
}

step_graph-replay() {
  run_measure graph-replay --model gpt3-175b --width 1/8 --precision bf16 --cuda-graph --input-sets 2 --no-ceiling \
    --counters off
}

step_e2e-tests() {
  local -a suites=()
  local s
  while read -r s; do [[ " GpuMeasure GpuGraph " == *" ${s##*/} "* ]] && suites+=("$s"); done < <(gpu_suites)
  run_suites "$limit" "${suites[@]}"
}

step_ncu-crosscheck() {
  command -v ncu >/dev/null || { result "ncu (Nsight Compute) is not on PATH"; return 1; }
  bash "$here/ncu-crosscheck.sh" --out "$work/ncu-crosscheck" --gemm-candidates 1 --width 1/96 --seq 256
  local rc=$?
  result "$(tail -n1 "$work/ncu-crosscheck/table.txt" 2>/dev/null || echo "rc=$rc, no table")"
  return "$rc"
}

step_memcheck-fp8() {
  if (($(compute_capability) < 89)); then
    result "not applicable: compute capability $(compute_capability) has no FP8 tensor cores"
    return 3
  fi
  run_memcheck memcheck-fp8 --precision fp8 --cuda-graph
}

# ---------------------------------------------------------------------------------------------
# Arguments.

part=1 plan=0 dest="" step_name=""
while (($#)); do
  case $1 in
    --part) [[ ${2:-} == 1 || ${2:-} == 2 ]] || { echo "device-check: --part takes 1 or 2" >&2; exit 2; }; part=$2; shift 2 ;;
    --plan) plan=1; shift ;;
    --out) [[ -n ${2:-} ]] || { echo "device-check: --out takes a folder" >&2; exit 2; }; dest=$2; shift 2 ;;
    --step) step_name=${2:-}; shift 2 ;;  # internal: run one step (this script calls itself)
    -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$self"; exit 0 ;;
    *) echo "device-check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

# The steps of the chosen part: names and limits.
names=() limits=() whats=()
for row in "${plan_table[@]}"; do
  read -r n p l w <<<"$row"
  [[ $p == "$part" ]] || continue
  names+=("$n") limits+=("$l") whats+=("$w")
done

if ((plan)); then
  total=0
  for i in "${!names[@]}"; do
    printf '%-16s %4s s  %s\n' "${names[$i]}" "${limits[$i]}" "${whats[$i]}"
    total=$((total + limits[i]))
  done
  echo "total: $total s"
  exit 0
fi

# One step, in its own process (called by the loop below).
if [[ -n "$step_name" ]]; then
  work=$FSDC_WORK bin=$FLOPSCOPE_BIN tests=$FSDC_TESTS limit=$FSDC_LIMIT
  # shellcheck source=find-flopscope.sh
  source "$here/find-flopscope.sh" >/dev/null 2>&1
  FLOPSCOPE_LD_PATH=$(cat "$work/state/ld_path" 2>/dev/null)
  # env LD_LIBRARY_PATH=... for flopscope's processes only (ld_env is empty when nothing is needed).
  ld_env=()
  [[ -n "$FLOPSCOPE_LD_PATH" ]] && ld_env=(env "LD_LIBRARY_PATH=$FLOPSCOPE_LD_PATH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
  flopscope_cmd=("${ld_env[@]}" "$bin")
  declare -F "step_$step_name" >/dev/null || { echo "device-check: no step '$step_name'" >&2; exit 2; }
  "step_$step_name"
  exit $?
fi

# ---------------------------------------------------------------------------------------------
# The check.

start=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/tmp}/flopscope-device-check.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/state"
gpu=$(timeout 10 nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n1 | tr ' ' '-' | tr -cd 'A-Za-z0-9-')
dest=${dest:-${OUT:-}}
dest=${dest:-results/$(date -u +%Y-%m-%d)-${gpu:-nogpu}}
mkdir -p "$dest" || { echo "device-check: cannot create $dest" >&2; exit 2; }
dest=$(cd "$dest" && pwd)

# The binaries. A copy that lost its modes on the way keeps them executable still.
for f in "$here/../flopscope" "$here/../flopscope_tests" "$here/../device-bundle/flopscope" \
  "$here/../device-bundle/flopscope_tests"; do
  [[ -f "$f" && ! -x "$f" ]] && chmod +x "$f"
done
# find-flopscope.sh's own library check is the libraries step's job here.
# shellcheck source=find-flopscope.sh
source "$here/find-flopscope.sh" 2>"$work/find-flopscope.txt"
bin=${FLOPSCOPE_BIN:-none}
tests=${FLOPSCOPE_TESTS:-}
if [[ -z "$tests" ]]; then
  tests=$(dirname "$bin")/flopscope_tests
  [[ -x "$tests" ]] || tests=$(dirname "$bin")/../tests/flopscope_tests
fi
[[ -x "$tests" ]] && tests=$(cd "$(dirname "$tests")" && pwd)/$(basename "$tests")
export FSDC_WORK=$work FSDC_TESTS=$tests FLOPSCOPE_BIN=$bin

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "part: $part"
  echo "commit: $(git -C "$here" rev-parse HEAD 2>/dev/null || cat "$here/../COMMIT" 2>/dev/null || echo unknown)"
  echo "host: $(hostname)"
  echo "flopscope: $bin"
  echo "tests: $tests"
  echo "kernel: $(uname -r)"
  echo "glibc: $(ldd --version 2>&1 | head -n1)"
  [[ -f "$(dirname "$bin")/MANIFEST.txt" ]] && cat "$(dirname "$bin")/MANIFEST.txt"
  timeout 10 nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total,clocks.sm,clocks.max.sm,power.limit \
    --format=csv 2>&1
  cat "$work/find-flopscope.txt"
} >"$work/environment.txt" 2>&1

statuses=() seconds=() results=()
write_summary() {
  local total=0 i
  for i in "${!names[@]}"; do total=$((total + limits[i])); done
  {
    echo "flopscope device check, part $part of 2 ($(date -u +%Y-%m-%dT%H:%M:%SZ), $(($(date +%s) - start)) s so far; limits $total s)"
    echo "gpu: ${gpu:-none}; flopscope: $bin"
    printf '%-16s %-8s %6s %6s  %s\n' step status time limit result
    for i in "${!names[@]}"; do
      printf '%-16s %-8s %6s %5ss  %s\n' "${names[$i]}" "${statuses[$i]:-pending}" "${seconds[$i]:--}" "${limits[$i]}" \
        "${results[$i]:-}"
    done
  } >"$work/summary.txt"
  cp "$work/summary.txt" "$dest/summary.txt.tmp" && mv -f "$dest/summary.txt.tmp" "$dest/summary.txt"
  # Every log and JSON so far; within the 16 MiB a returned file may have (an ncu report goes first).
  local -a pack=(-C "$(dirname "$work")" --transform "s,^$(basename "$work"),device-check," "$(basename "$work")")
  tar -czf "$dest/device-check.tgz.tmp" "${pack[@]}" 2>/dev/null
  if (($(stat -c %s "$dest/device-check.tgz.tmp" 2>/dev/null || echo 0) > 15 * 1024 * 1024)); then
    tar -czf "$dest/device-check.tgz.tmp" --exclude='*.ncu-rep' "${pack[@]}" 2>/dev/null
  fi
  mv -f "$dest/device-check.tgz.tmp" "$dest/device-check.tgz"
}

any_failed=0 stop="" gate_failed=""
for i in "${!names[@]}"; do
  name=${names[$i]} limit=${limits[$i]}
  if [[ -n "$stop" ]]; then
    statuses[i]=skipped results[i]="not run: $stop"
    continue
  fi
  statuses[i]=running
  write_summary
  echo "== $name (limit $limit s)" >&2
  t0=$(date +%s)
  FSDC_LIMIT=$limit timeout -k 2 "$((limit - 2))" bash "$self" --step "$name" >"$work/$name.log" 2>&1
  rc=$?
  seconds[i]="$(($(date +%s) - t0))s"
  res=$(tail -n1 "$work/$name.result" 2>/dev/null | cut -c1-400)
  case $rc in
    0) statuses[i]=ok ;;
    3) statuses[i]=skipped ;;
    124 | 137) statuses[i]=timeout res="killed at its ${limit} s limit${res:+; $res}" ;;
    *) statuses[i]=failed res="rc=$rc${res:+; $res}" ;;
  esac
  results[i]=$res
  [[ ${statuses[$i]} == ok || ${statuses[$i]} == skipped ]] || any_failed=1
  # The three first steps all run (each says something about this machine); if one failed,
  # nothing after them can, and the check stops.
  [[ "$gate_steps" == *" $name "* && ${statuses[$i]} != ok ]] && gate_failed+="${gate_failed:+, }$name"
  [[ $name == devices && -n "$gate_failed" ]] && stop="$gate_failed failed: the GPU, its libraries or flopscope did not load"
  echo "   ${statuses[$i]} ${seconds[$i]} ${results[$i]}" >&2
done
write_summary
echo >&2
cat "$work/summary.txt"
echo "results: $dest/summary.txt, $dest/device-check.tgz" >&2
exit "$any_failed"
