#!/usr/bin/env bash
# The GPU check, sized for a GPU machine lent briefly: ONE call (the device tool runs one
# command of at most 600 s; run it with timeout_s about 560), whose output folder brings back
# at most 8 files. Run it as `bash device-bundle/scripts/device-check.sh`: carried files can
# lose their modes.
#
#   scripts/device-check.sh [--deadline S] [--out DIR]   run the check
#   scripts/device-check.sh [--deadline S] --plan        print each step's name and time limit,
#                                                       then "total: N s"; runs nothing
#   scripts/device-check.sh --list-suites [--tests BIN]  print "STEP SUITE" for every GPU test
#                                                       suite the check would run; runs nothing
#   --deadline  seconds from the start by which every step has ended (default 540): a step
#               whose limit is more than the time left is not started and reads "skipped: no
#               time"; each step's own limit still holds
#   DIR: default $OUT (the device tool's folder), else results/<date>-<gpu>
#
# Everything is written in a work folder outside DIR (mktemp -d); after every step DIR gets
# exactly two files, rewritten each time: summary.txt (the runtime found, per step: status,
# seconds, limit and a one-line result, then the tools that refused with their words) and
# device-check.tgz (every log and JSON so far). A call killed at its limit still brings back
# what happened up to the step it was in (marked "running").
#
# The steps, in the order of what they are worth (each runs under `timeout` with its limit):
#    1. nvidia-smi: one `nvidia-smi -q` (the GPU, driver and CUDA version as the driver sees
#       them); a failure or a hang is recorded and the check goes on (flopscope asks the CUDA
#       runtime itself, next)
#    2. libraries: every shared library flopscope and its tests need resolves (each one ldd
#       reports missing is looked for in the bundle, the CUDA toolkit's folders and PyTorch's
#       wheels: scripts/find-flopscope.sh), and the libnvperf_host/target that CUPTI opens at
#       run time (no ldd reports them) sit beside the libcupti that resolved, or are found
#    3. devices: `flopscope --version`; `flopscope devices` lists a GPU
#       (if libraries or devices failed, every later step is skipped: nothing can run)
#    4. measure-175b: the headline. `measure --model gpt3-175b --width 1` in bf16 with
#       hardware counters (--counters auto), verification and the 8192^3 GEMM ceiling; if that
#       run leaves no result within two thirds of the step, the layer is measured again with
#       --counters off (timing and verification still come back; the step reads failed)
#    5. counters: the counters' own check. The GpuCounters suite (a 1536^3 bf16 GEMM reads 2 m n
#       k padded by its tiles; every op of a small layer measured), and the 175B run's
#       counters: dropped metrics are a warning; the step fails when counters were unavailable
#       (the reason is the result) or a GEMM was not measured, lost its bf16 figure, or read
#       outside 0.999-1.5 of its analytic FLOPs
#    6. ncu-crosscheck: scripts/ncu-crosscheck.sh --gemm-candidates 1 on width 1/96, seq 256:
#       flopscope's counters against Nsight Compute's, op by op
#    7. measure-1_8-fp8: `measure --width 1/8` in fp8, verification (compute capability 8.9+)
#    8. measure-moe: `measure --model mixtral-8x7b --experts 32 --top-k 4 --width 8/32 --seq 1024`
#       in bf16: a mixture of experts on the GPU (8 experts at that width, top-4: the router's
#       kernels, dispatch and combine, the grouped GEMMs from the router's counts), verified
#       against the fp64 host reference (Mixtral: the MoE path alone, no QK-norm or window)
#    9. gpu-suites: the kernel suites, then GpuGemm, GpuLayer, GpuFp8, GpuMeasure, GpuGraph,
#       one process each, until the step's limit
#   10. graph-replay: `measure --width 1/8 --cuda-graph --input-sets 2`: replay against the sum
#       of op times
#   11. memcheck: compute-sanitizer memcheck on a width-1/96, seq-128 fp8 layer with
#       --cuda-graph (bf16 where there is no fp8) and --counters off (CUPTI stays out of it)
#
# The tools: ncu and compute-sanitizer from $NCU / $COMPUTE_SANITIZER when set, else PATH,
# $CUDA_HOME/bin, /usr/local/cuda*/bin, /opt/nvidia/nsight-compute/*/ (find-flopscope.sh). The
# binaries: FLOPSCOPE_BIN and FLOPSCOPE_TESTS when set, else the bundle or build tree that
# scripts/find-flopscope.sh finds (device-bundle/ from scripts/device-bundle.sh travels to a GPU
# machine that can build nothing). FLOPSCOPE_CHECK_TIME_SCALE (tests only; default 1) scales
# every step's limit and the default deadline. Exit: 0 every step ok or skipped as not
# applicable; 1 a step failed, timed out or had no time; 2 bad arguments.
set -uo pipefail
self=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
here=$(dirname "$self")

# name limit_s what. The limits add up to at most 540 s (tests/test_device_check.cpp).
plan_table=(
  "nvidia-smi      30 one nvidia-smi -q: GPU, driver, CUDA version (a failure is noted; the check goes on)"
  "libraries       15 every shared library resolves, libnvperf_host/target beside libcupti"
  "devices         25 flopscope --version, flopscope devices lists the GPU"
  "measure-175b    110 measure --model gpt3-175b --width 1 bf16, counters, verification, 8192^3 ceiling"
  "counters        50 GpuCounters suite; the 175B run's counters (dropped metrics warn)"
  "ncu-crosscheck  100 scripts/ncu-crosscheck.sh --gemm-candidates 1, width 1/96, seq 256"
  "measure-1_8-fp8 35 measure --width 1/8 fp8, verification (compute capability 8.9+)"
  "measure-moe     20 measure a mixture of experts (mixtral-8x7b with 32 experts top-4, width 8/32, seq 1024) bf16"
  "gpu-suites      70 kernel, GEMM, layer, fp8 and end-to-end suites, one process each"
  "graph-replay    35 measure --width 1/8 --cuda-graph: replay vs the sum of op times"
  "memcheck        50 compute-sanitizer memcheck, width 1/96, seq 128, fp8 + --cuda-graph, --counters off"
)
gate_steps=" libraries devices "
# The suites of gpu-suites after the kernel suites, in this order; every other Gpu*/Cuda*
# suite (but GpuCounters, the counters step's) is a kernel suite (new kernels join by themselves).
later_suites="GpuGemm GpuLayer GpuFp8 GpuMeasure GpuGraph"
non_kernel_suites=" $later_suites GpuCounters "

time_scale=${FLOPSCOPE_CHECK_TIME_SCALE:-1}
[[ $time_scale =~ ^[0-9]*\.?[0-9]+$ ]] && awk -v s="$time_scale" 'BEGIN { exit !(s > 0) }' ||
  { echo "device-check: FLOPSCOPE_CHECK_TIME_SCALE must be a positive number" >&2; exit 2; }
# Scaled limits keep 4 s at least: a step's own process starts take a second on a loaded machine.
scaled() { awk -v s="$time_scale" -v v="$1" 'BEGIN { r = int(v * s + 0.5); print (r < 4 && s != 1 ? 4 : r) }'; }

# ---------------------------------------------------------------------------------------------
# Steps. Each runs as its own process (this script with --step NAME, under timeout), with
# stdout and stderr in $work/NAME.log; the last line of $work/NAME.result is the summary's
# result, and a line in $work/NAME.refused names a tool that refused, with its words. Exit 0
# ok, 3 not applicable (skipped), anything else failed. FSDC_END: the epoch second the step
# must have ended by.

result() { echo "$*" >"$work/$step_name.result"; }
refused() { echo "$*" >>"$work/$step_name.refused"; }
left_s() { echo $((FSDC_END - $(date +%s))); }

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
    parts.append(f"counters measured, {hw.get('passes')} passes, {len(dropped)} dropped")
    ratios = [o.get("measured_over_analytic") for o in d.get("ops", []) if o.get("kind") in ("gemm", "batched_gemm")
              and isinstance(o.get("measured_over_analytic"), (int, float))]
    if ratios: parts.append(f"GEMMs measured/analytic {min(ratios):.4f}..{max(ratios):.4f}")
elif st:
    parts.append(f"counters {st}" + (f" ({hw.get('reason')})" if st != "off" else ""))
r = t.get("graph_replay_ms")
if isinstance(r, dict) and r.get("median"):
    ops = sum((o.get("time_ms") or {}).get("median", 0) for o in d.get("ops", []))
    parts.append(f"replay {r['median']:.4g} ms vs sum of ops {ops:.4g} ms (x{r['median'] / ops:.3f})" if ops else "")
print("; ".join(p for p in parts if p))
PY
}

# The counters of the measure JSON at $1 for the run's dtype $2, judged: prints one line and
# exits 0 when every GEMM was measured, complete, with a $2 figure, at 0.999-1.5 times its
# analytic FLOPs (its tiles' padding; exactly the chosen tile's within 0.1% where it is named);
# dropped metrics are a warning. Exits 1 otherwise, or when counters were not measured.
judge_counters() {
  command -v python3 >/dev/null || { echo "python3 missing: the counters were not judged"; return 1; }
  python3 - "$1" "$2" <<'PY'
import json, sys
path, dtype = sys.argv[1], sys.argv[2]
try:
    d = json.load(open(path))
except Exception as e:
    print(f"no result JSON to judge ({e.__class__.__name__})"); sys.exit(1)
hw = d.get("counters") or {}
hw = hw.get("hardware", hw)
if hw.get("status") != "measured":
    print(f"counters {hw.get('status')}: {hw.get('reason')}"); sys.exit(1)
dropped = [m.get("name") for m in hw.get("dropped_metrics") or []]
bad, bases, splits, ratios = [], set(), [], []
gemms = [o for o in d.get("ops", []) if o.get("kind") in ("gemm", "batched_gemm")]
for o in gemms:
    name, m = o.get("name"), o.get("measured")
    if not isinstance(m, dict):
        bad.append(f"{name}: not measured"); continue
    if any(nc.get("dtype") == dtype for nc in m.get("not_counted_dtypes") or []):
        bad.append(f"{name}: every {dtype} term refused"); continue
    if not m.get("complete") or not isinstance((m.get("tensor_flops_by_dtype") or {}).get(dtype), (int, float)):
        bad.append(f"{name}: {dtype} figure missing (missing: {', '.join(m.get('missing') or []) or '-'})"); continue
    b = ((m.get("formula") or {}).get("tensor_basis") or {}).get(dtype)
    if b: bases.add(b)
    s = ((m.get("checks") or {}).get("hopper_split") or {}).get(dtype, {}).get("split_over_dense")
    if isinstance(s, (int, float)): splits.append(s)
    r = o.get("measured_over_analytic")
    if not isinstance(r, (int, float)):
        bad.append(f"{name}: no measured/analytic"); continue
    ratios.append(r)
    tile = (o.get("padding") or {}).get("tile_padded_over_useful")
    if not 0.999 <= r <= 1.5:
        bad.append(f"{name}: measured/analytic {r:.4f} outside 0.999-1.5")
    elif isinstance(tile, (int, float)) and abs(r / tile - 1) > 1e-3:
        bad.append(f"{name}: measured/analytic {r:.4f}, its tile's padding predicts {tile:.4f}")
if not gemms: bad.append("no GEMM ops in the result")
parts = [f"{hw.get('chip')} {hw.get('arch')}, {hw.get('passes')} passes"]
parts.append(f"{dtype} read as {', '.join(sorted(bases)) or 'nothing'}")
if ratios: parts.append(f"GEMMs measured/analytic {min(ratios):.4f}..{max(ratios):.4f}")
if splits: parts.append(f"hgmma+hmma over dense {min(splits):.4f}..{max(splits):.4f}")
if dropped: parts.append(f"warning: {len(dropped)} metric(s) dropped: {', '.join(dropped)}")
if bad: parts.append(f"FAILED: {len(bad)} GEMM(s): {'; '.join(bad[:4])}")
print("; ".join(parts))
sys.exit(1 if bad else 0)
PY
}

# The last line of a failed flopscope run's log that says why ("flopscope: error: ...").
last_error() { grep -E 'error|Error' "$1" 2>/dev/null | tail -n1 | cut -c1-300; }

# measure NAME [--limit S] ARGS...: flopscope measure into $work/NAME.json, summarised; fails
# unless the run's verification passed. --limit: a timeout for this run inside the step.
run_measure() {
  local name=$1
  shift
  local -a limit=()
  if [[ ${1:-} == --limit ]]; then
    limit=(timeout -k 2 "$2")
    shift 2
  fi
  "${limit[@]}" "${flopscope_cmd[@]}" measure --backend cuda --format json -o "$work/$name.json" "$@"
  local rc=$?
  if [[ ! -f "$work/$name.json" ]]; then
    local why
    why=$(last_error "$work/$step_name.log")
    ((rc == 124 || rc == 137)) && why="killed at its time limit${why:+; $why}"
    result "no result JSON (rc=$rc${why:+: $why})"
    return $((rc == 0 ? 1 : rc))
  fi
  result "$(summarize_measure "$work/$name.json")"
  # The CUPTI profiler's refusal, in its words, when the run had counters.
  command -v python3 >/dev/null && python3 - "$work/$name.json" >>"$work/$step_name.refused" 2>/dev/null <<'PY'
import json, sys
hw = (json.load(open(sys.argv[1])).get("counters") or {})
hw = hw.get("hardware", hw)
if hw.get("status") == "unavailable": print(f"CUPTI Range Profiler: {hw.get('reason')}")
PY
  ((rc == 0)) || return "$rc"
  verified "$work/$name.json"
}

# Whether the measure JSON at $1 says its verification passed (the top-level verification.passed).
# Without python3, the exit status alone says it: measure writes no result for a layer that
# failed verification.
verified() {
  command -v python3 >/dev/null || return 0
  python3 -c 'import json, sys; sys.exit(0 if (json.load(open(sys.argv[1])).get("verification") or {}).get("passed") is True else 1)' "$1"
}

# Gpu*/Cuda* suites of the test binary, by their gtest name ("GpuFill", "GpuShapes/GpuGemm"):
# the lines of --gtest_list_tests that start a suite end in "." (gtest_main's own first line,
# "Running main() from ...", does not).
gpu_suites() {
  flopscope_env "$tests" --gtest_list_tests --gtest_filter='Gpu*:Cuda*' 2>/dev/null |
    awk '/^[^ ]/ && $1 ~ /\.$/ {s = $1; sub(/\.$/, "", s); print s}'
}

# The suites of a step, one per line, in order: kernel (every suite that is not a later one),
# gpu-suites (kernel then later), counters.
suites_of() {
  local step=$1 s
  local -a all=()
  mapfile -t all < <(gpu_suites)
  case $step in
    gpu-suites)
      for s in "${all[@]}"; do [[ "$non_kernel_suites" == *" ${s##*/} "* ]] || echo "$s"; done
      for want in $later_suites; do
        for s in "${all[@]}"; do [[ ${s##*/} == "$want" ]] && echo "$s"; done
      done
      ;;
    counters) for s in "${all[@]}"; do [[ ${s##*/} == GpuCounters ]] && echo "$s"; done ;;
  esac
}

# run_suites SUITE...: each suite its own process, within the step's end (FSDC_END).
run_suites() {
  local suite left failed=() passed=0 rc
  [[ -x "$tests" ]] || { result "no test binary at $tests"; return 1; }
  (($#)) || { result "no such suites in $tests"; return 1; }
  for suite in "$@"; do
    left=$(($(left_s) - 1))
    if ((left < 2)); then
      failed+=("$suite(no time left)")
      continue
    fi
    echo "== $suite"
    # The end-to-end tests run FLOPSCOPE_BIN, which finds its libraries through the launcher.
    FLOPSCOPE_BIN=$bin flopscope_env timeout -k 2 "$((left < 60 ? left : 60))" "$tests" --gtest_filter="$suite.*" \
      --gtest_color=no
    rc=$?
    if ((rc == 0)); then passed=$((passed + 1)); else failed+=("$suite(rc=$rc)"); fi
  done
  # A skipped test is no pass: say how many, each counted once (gtest names a skipped test as it
  # runs, "(N ms)", and again in its closing list).
  local skipped
  skipped=$(grep -E '^\[  SKIPPED \] [A-Za-z0-9_/.]+ \([0-9]+ ms\)' "$work/$step_name.log" 2>/dev/null |
    awk '{print $4}' | sort -u | wc -l)
  result "$passed/$# suites passed${failed[*]:+; failed: ${failed[*]}}$( ((skipped > 0)) && echo "; $skipped tests skipped")"
  ((${#failed[@]} == 0))
}

# compute-sanitizer runs with its own environment; flopscope gets its library path from the
# launcher at exec time (find-flopscope.sh).
run_memcheck() {
  local name=$1
  shift
  local cs
  cs=$(flopscope_find_tool compute-sanitizer) || { result "compute-sanitizer not found (set COMPUTE_SANITIZER)"; return 1; }
  echo "compute-sanitizer: $cs"
  "$cs" --tool memcheck --error-exitcode 1 --target-processes all "${flopscope_cmd[@]}" measure -q --backend cuda \
    --model gpt3-175b --width 1/96 --seq 128 --repeats 1 --warmup 0 --no-ceiling --counters off --gemm-candidates 1 \
    --format json -o "$work/$name.json" "$@"
  local rc=$?
  if ((rc == 0)); then
    result "no memcheck errors"
  else
    local line
    line=$(grep -m1 -E 'ERROR SUMMARY|Error|error|not supported|refused' "$work/$name.log" | cut -c1-300)
    result "${line:-rc=$rc}"
    [[ -f "$work/$name.json" ]] || refused "compute-sanitizer: ${line:-rc=$rc}"
  fi
  return "$rc"
}

compute_capability() { cat "$work/state/cc" 2>/dev/null || echo 0; }

step_nvidia-smi() {
  local smi
  smi=$(command -v nvidia-smi) || { result "nvidia-smi not found (flopscope asks the CUDA runtime next)"; return 1; }
  "$smi" -q >"$work/nvidia-smi-q.txt" 2>&1
  local rc=$?
  cat "$work/nvidia-smi-q.txt"
  if ((rc != 0)); then
    local line
    line=$(grep -m1 -v '^\s*$' "$work/nvidia-smi-q.txt" | cut -c1-200)
    result "nvidia-smi failed (rc=$rc): ${line:-no output}"
    refused "nvidia-smi: ${line:-rc=$rc}"
    return 1
  fi
  local name driver cuda
  name=$(awk -F': *' '/^ *Product Name/ {print $2; exit}' "$work/nvidia-smi-q.txt")
  driver=$(awk -F': *' '/^ *Driver Version/ {print $2; exit}' "$work/nvidia-smi-q.txt")
  cuda=$(awk -F': *' '/^ *CUDA Version/ {print $2; exit}' "$work/nvidia-smi-q.txt")
  [[ -n "$name" ]] || { result "nvidia-smi -q lists no GPU"; return 1; }
  echo "$name" | tr ' ' '-' | tr -cd 'A-Za-z0-9-' >"$work/state/gpu"
  result "$name, driver ${driver:-?}, CUDA ${cuda:-?}"
}

step_libraries() {
  [[ -x "$bin" ]] || { result "no flopscope binary (build and bundle it: scripts/device-bundle.sh; or set FLOPSCOPE_BIN)"; return 1; }
  echo "flopscope: $bin"
  echo "tests: $tests"
  FLOPSCOPE_LD_PATH=""
  local -a bins=("$bin")
  [[ -x "$tests" ]] && bins+=("$tests")
  if ! flopscope_resolve_libs "${bins[@]}"; then
    for b in "${bins[@]}"; do flopscope_env ldd "$b"; done
    echo "searched: $(flopscope_lib_dirs | tr '\n' ' ')"
    result "missing: $FLOPSCOPE_MISSING_LIBS"
    return 1
  fi
  local nvperf=""
  flopscope_resolve_nvperf "$bin" || nvperf="; warning: $FLOPSCOPE_NVPERF_NOTE"
  echo "$FLOPSCOPE_LD_PATH" >"$work/state/ld_path"
  for b in "${bins[@]}"; do flopscope_env ldd "$b"; done
  echo "nvperf: $FLOPSCOPE_NVPERF_NOTE"
  result "all resolved${FLOPSCOPE_LD_PATH:+; LD_LIBRARY_PATH for flopscope only: $FLOPSCOPE_LD_PATH}${nvperf}"
}

step_devices() {
  "${flopscope_cmd[@]}" --version || { result "flopscope --version failed"; return 1; }
  "${flopscope_cmd[@]}" devices --format json -o "$work/devices.json" || { result "flopscope devices failed"; return 1; }
  "${flopscope_cmd[@]}" devices
  # GPUs seen, the first one's name and compute capability ("9.0" -> 90, for the fp8 steps).
  local line
  if ! command -v python3 >/dev/null; then
    # Without python3: the first GPU's compute capability, from the JSON's text.
    local cc
    cc=$(tr -d '\n' <"$work/devices.json" | grep -oE '"gpus": *\[ *\{[^]]*"compute_capability": *"[0-9]+\.[0-9]+"' |
      grep -oE '[0-9]+\.[0-9]+"$' | tr -d '"')
    [[ -n "$cc" ]] || { result "flopscope sees no GPU (devices.json lists none; python3 missing to say more)"; return 1; }
    echo "$cc" | tr -d . >"$work/state/cc"
    result "a GPU of compute capability $cc (python3 missing: see devices.json)"
    return 0
  fi
  line=$(python3 - "$work/devices.json" "$work/state" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
gpus = d.get("gpus") or []
if not gpus:
    print(f"flopscope sees no GPU: {d.get('gpu_probe')}"); sys.exit(1)
g = gpus[0]
cc = str(g.get("compute_capability", "0.0"))
open(sys.argv[2] + "/cc", "w").write(cc.replace(".", "") + "\n")
name = "".join(c for c in str(g.get("name", "")).replace(" ", "-") if c.isalnum() or c == "-")
try:
    open(sys.argv[2] + "/gpu", "x").write(name + "\n")  # where nvidia-smi named none
except FileExistsError:
    pass
print(f"{len(gpus)} GPU(s): {g.get('name')}, compute capability {cc}")
PY
  )
  local rc=$?
  result "${line:-devices.json unreadable}"
  return "$rc"
}

# The headline. If the run with counters leaves no result (CUPTI failing, crashing or hanging,
# as a VM may make it), the layer is measured again without counters, so timing and
# verification still come back; the counters' failure goes into the summary's refusals.
step_measure-175b() {
  # A third of the step's time is kept for that second run (about 36 s of 110).
  local left
  left=$(left_s)
  run_measure measure-175b --limit "$((left - left / 3))" --model gpt3-175b --width 1 --precision bf16 --counters auto
  local rc=$?
  [[ -f "$work/measure-175b.json" ]] && return "$rc"
  local first
  first=$(cat "$work/$step_name.result")
  refused "CUPTI Range Profiler (measure --counters auto): $first"
  run_measure measure-175b --limit "$(($(left_s) > 2 ? $(left_s) - 1 : 1))" --model gpt3-175b --width 1 --precision bf16 --counters off \
    --no-ceiling
  rc=$?
  result "with counters: $first; again without counters: $(cat "$work/$step_name.result")"
  return $((rc == 0 ? 1 : rc))  # the counters run failed: not ok, whatever the second run says
}

step_counters() {
  local -a suites=()
  mapfile -t suites < <(suites_of counters)
  run_suites "${suites[@]}"
  local rc=$? line verdict vrc
  # The test prints the chip, passes and the GEMM's tensor FLOPs against 2 m n k.
  line=$(grep -m1 '^GpuCounters:' "$work/$step_name.log" | cut -c1-300)
  if [[ -f "$work/measure-175b.json" ]]; then
    verdict=$(judge_counters "$work/measure-175b.json" bf16)
    vrc=$?
  else
    verdict="measure-175b left no JSON to judge"
    vrc=1
  fi
  echo "175B counters: $verdict"
  result "$(cat "$work/$step_name.result"); 175B: $verdict${line:+; $line}"
  ((rc == 0 && vrc == 0))
}

step_ncu-crosscheck() {
  local ncu
  ncu=$(flopscope_find_tool ncu) || { result "ncu (Nsight Compute) not found (set NCU)"; return 1; }
  echo "ncu: $ncu"
  # The library path the libraries step found (libnvperf's folder among it) goes along.
  FLOPSCOPE_LD_PATH=$FLOPSCOPE_LD_PATH NCU=$ncu bash "$here/ncu-crosscheck.sh" --out "$work/ncu-crosscheck" \
    --gemm-candidates 1 --width 1/96 --seq 256
  local rc=$?
  if [[ -f "$work/ncu-crosscheck/table.txt" ]]; then
    result "$(tail -n1 "$work/ncu-crosscheck/table.txt")"
  elif [[ ! -f "$work/ncu-crosscheck/ncu.log" ]]; then
    # Its first run, flopscope's own counters (--counters required), failed: CUPTI's words.
    local line
    line=$(last_error "$work/ncu-crosscheck/flopscope.log")
    result "rc=$rc: flopscope --counters required failed before ncu ran${line:+: $line}"
    refused "CUPTI Range Profiler (ncu-crosscheck's own run): ${line:-rc=$rc}"
  else
    # ncu's own words: LibraryNotLoaded, ERR_NVGPUCTRPERM, ...
    local line
    line=$(grep -h -m1 -E '==ERROR==|ERR_|LibraryNotLoaded|not supported' "$work/ncu-crosscheck/ncu.log" \
      "$work/ncu-crosscheck/ncu-export.log" 2>/dev/null | head -n1 | cut -c1-300)
    result "rc=$rc, no table${line:+: $line}"
    refused "ncu: ${line:-rc=$rc, no table}"
  fi
  return "$rc"
}

step_measure-1_8-fp8() {
  if (($(compute_capability) < 89)); then
    result "not applicable: compute capability $(compute_capability) has no FP8 tensor cores"
    return 3
  fi
  run_measure measure-1_8-fp8 --model gpt3-175b --width 1/8 --precision fp8 --no-ceiling --counters off
}

step_measure-moe() {
  run_measure measure-moe --model mixtral-8x7b --experts 32 --top-k 4 --width 8/32 --seq 1024 --precision bf16 \
    --no-ceiling --counters off
}

step_gpu-suites() {
  local -a suites=()
  mapfile -t suites < <(suites_of gpu-suites)
  run_suites "${suites[@]}"
}

step_graph-replay() {
  run_measure graph-replay --model gpt3-175b --width 1/8 --precision bf16 --cuda-graph --input-sets 2 --no-ceiling \
    --counters off
}

step_memcheck() {
  if (($(compute_capability) >= 89)); then
    run_memcheck memcheck --precision fp8 --cuda-graph
  else
    run_memcheck memcheck --precision bf16 --cuda-graph
  fi
}

# ---------------------------------------------------------------------------------------------
# Arguments.

plan=0 list_suites=0 dest="" step_name="" deadline="" tests_arg=""
while (($#)); do
  case $1 in
    --plan) plan=1; shift ;;
    --list-suites) list_suites=1; shift ;;
    --tests) [[ -n ${2:-} ]] || { echo "device-check: --tests takes a test binary" >&2; exit 2; }; tests_arg=$2; shift 2 ;;
    --deadline)
      [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || { echo "device-check: --deadline takes a whole number of seconds" >&2; exit 2; }
      deadline=$2; shift 2 ;;
    --out) [[ -n ${2:-} ]] || { echo "device-check: --out takes a folder" >&2; exit 2; }; dest=$2; shift 2 ;;
    --part) echo "device-check: --part is gone: the check is one call now (see --plan)" >&2; exit 2 ;;
    --step)  # internal: run one step (this script calls itself)
      [[ -n ${2:-} ]] || { echo "device-check: --step takes a step name" >&2; exit 2; }
      step_name=$2; shift 2 ;;
    -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$self"; exit 0 ;;
    *) echo "device-check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
deadline=${deadline:-$(scaled 540)}

names=() limits=() whats=()
for row in "${plan_table[@]}"; do
  read -r n l w <<<"$row"
  names+=("$n") limits+=("$(scaled "$l")") whats+=("$w")
done

if ((plan)); then
  total=0
  for i in "${!names[@]}"; do
    printf '%-16s %4s s  %s\n' "${names[$i]}" "${limits[$i]}" "${whats[$i]}"
    total=$((total + limits[i]))
  done
  echo "total: $total s"
  ((total <= deadline)) || echo "device-check: the limits exceed the deadline of $deadline s: the last steps may be skipped" >&2
  exit 0
fi

# One step, in its own process (called by the loop below).
if [[ -n "$step_name" ]]; then
  work=$FSDC_WORK bin=$FLOPSCOPE_BIN tests=$FSDC_TESTS
  # shellcheck source=find-flopscope.sh
  source "$here/find-flopscope.sh" >/dev/null 2>&1
  FLOPSCOPE_LD_PATH=$(cat "$work/state/ld_path" 2>/dev/null)
  flopscope_set_cmd
  declare -F "step_$step_name" >/dev/null || { echo "device-check: no step '$step_name'" >&2; exit 2; }
  "step_$step_name"
  exit $?
fi

# The binaries. A copy that lost its modes on the way keeps them executable still.
for f in "$here/../flopscope" "$here/../flopscope_tests" "$here/../device-bundle/flopscope" \
  "$here/../device-bundle/flopscope_tests"; do
  [[ -f "$f" && ! -x "$f" ]] && chmod +x "$f"
done

if ((list_suites)); then
  # shellcheck source=find-flopscope.sh
  source "$here/find-flopscope.sh" >/dev/null 2>&1
  bin=${FLOPSCOPE_BIN:-none}
  tests=${tests_arg:-${FLOPSCOPE_TESTS:-$(dirname "$bin")/flopscope_tests}}
  [[ -x "$tests" ]] || { echo "device-check: no test binary at $tests (--tests BIN)" >&2; exit 2; }
  for s in gpu-suites counters; do suites_of "$s" | sed "s/^/$s /"; done
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# The check.

start=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/tmp}/flopscope-device-check.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/state"
dest=${dest:-${OUT:-}}
if [[ -n "$dest" ]]; then
  mkdir -p "$dest" || { echo "device-check: cannot create $dest" >&2; exit 2; }
  dest=$(cd "$dest" && pwd)
fi

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

# The runtime: gVisor (runsc) reports a fixed kernel, 4.4.0, and its own /proc/version.
kernel=$(uname -r)
proc_version=$(head -n1 /proc/version 2>/dev/null | cut -c1-160)
runtime="Linux $kernel"
if [[ $kernel == 4.4.0 ]] || grep -qi gvisor /proc/version 2>/dev/null || dmesg 2>/dev/null | grep -qi gvisor; then
  runtime="gVisor (runsc) by its fixed kernel $kernel; ncu and compute-sanitizer were seen to refuse here before"
fi
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git -C "$here" rev-parse HEAD 2>/dev/null || cat "$here/../COMMIT" 2>/dev/null || echo unknown)"
  echo "host: $(hostname)"
  echo "flopscope: $bin"
  echo "tests: $tests"
  echo "kernel: $kernel"
  echo "/proc/version: $proc_version"
  echo "runtime: $runtime"
  echo "glibc: $(ldd --version 2>&1 | head -n1)"
  echo "deadline: $deadline s"
  [[ -f "$(dirname "$bin")/MANIFEST.txt" ]] && cat "$(dirname "$bin")/MANIFEST.txt"
  cat "$work/find-flopscope.txt"
} >"$work/environment.txt" 2>&1

statuses=() seconds=() results=()
write_summary() {
  local total=0 i
  for i in "${!names[@]}"; do total=$((total + limits[i])); done
  {
    echo "flopscope device check, one call ($(date -u +%Y-%m-%dT%H:%M:%SZ), $(($(date +%s) - start)) s so far; limits $total s, deadline $deadline s)"
    echo "gpu: $(cat "$work/state/gpu" 2>/dev/null || echo unknown); flopscope: $bin"
    echo "runtime: $runtime; /proc/version: $proc_version"
    printf '%-16s %-8s %6s %6s  %s\n' step status time limit result
    for i in "${!names[@]}"; do
      printf '%-16s %-8s %6s %5ss  %s\n' "${names[$i]}" "${statuses[$i]:-pending}" "${seconds[$i]:--}" "${limits[$i]}" \
        "${results[$i]:-}"
    done
    if compgen -G "$work/*.refused" >/dev/null; then
      echo "refused (the tools' own words):"
      cat "$work"/*.refused | sed 's/^/  /'
    fi
  } >"$work/summary.txt"
  [[ -n "$dest" ]] || return 0
  cp "$work/summary.txt" "$dest/summary.txt.tmp" && mv -f "$dest/summary.txt.tmp" "$dest/summary.txt"
  # Every log and JSON so far; within the 16 MiB a returned file may have (an ncu report goes first).
  local -a pack=(-C "$(dirname "$work")" --transform "s,^$(basename "$work"),device-check," "$(basename "$work")")
  tar -czf "$dest/device-check.tgz.tmp" "${pack[@]}" 2>/dev/null
  if (($(stat -c %s "$dest/device-check.tgz.tmp" 2>/dev/null || echo 0) > 15 * 1024 * 1024)); then
    tar -czf "$dest/device-check.tgz.tmp" --exclude='*.ncu-rep' "${pack[@]}" 2>/dev/null
  fi
  # Still too large: every log over 1 MiB keeps its last 1 MiB (where the errors are).
  if (($(stat -c %s "$dest/device-check.tgz.tmp" 2>/dev/null || echo 0) > 15 * 1024 * 1024)); then
    local f
    while IFS= read -r f; do
      tail -c 1048576 "$f" >"$f.tail" && { echo "[... truncated to its last 1 MiB to fit the 16 MiB a file may bring back]"; cat "$f.tail"; } >"$f"
      rm -f "$f.tail"
    done < <(find "$work" -name '*.log' -size +1M)
    tar -czf "$dest/device-check.tgz.tmp" --exclude='*.ncu-rep' "${pack[@]}" 2>/dev/null
  fi
  mv -f "$dest/device-check.tgz.tmp" "$dest/device-check.tgz"
}

default_dest() {
  dest=results/$(date -u +%Y-%m-%d)-$(cat "$work/state/gpu" 2>/dev/null || echo nogpu)
  mkdir -p "$dest" && dest=$(cd "$dest" && pwd)
}

any_failed=0 stop=""
for i in "${!names[@]}"; do
  name=${names[$i]} limit=${limits[$i]}
  left=$((start + deadline - $(date +%s)))
  if [[ -n "$stop" ]]; then
    statuses[i]=skipped results[i]="not run: $stop"
    continue
  fi
  if ((limit > left)); then
    statuses[i]=skipped results[i]="skipped: no time (${left} s left of the ${deadline} s deadline)"
    any_failed=1
    continue
  fi
  statuses[i]=running
  write_summary
  echo "== $name (limit $limit s, $left s left)" >&2
  t0=$(date +%s)
  FSDC_LIMIT=$limit FSDC_END=$((t0 + limit - 1)) timeout -k 2 "$((limit > 2 ? limit - 1 : 1))" \
    bash "$self" --step "$name" >"$work/$name.log" 2>&1
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
  # Without flopscope's libraries or a GPU it sees, nothing after can run, and the check stops.
  [[ "$gate_steps" == *" $name "* && ${statuses[$i]} != ok ]] &&
    stop="$name failed: flopscope, its libraries or the GPU did not load"
  # Results land under the GPU's name when no folder was given (once nvidia-smi or devices has
  # named it, or the check stops).
  [[ -z "$dest" && ($name == devices || -n "$stop") ]] && default_dest
  echo "   ${statuses[$i]} ${seconds[$i]} ${results[$i]}" >&2
done
[[ -n "$dest" ]] || default_dest
write_summary
echo >&2
cat "$work/summary.txt"
echo "results: $dest/summary.txt, $dest/device-check.tgz" >&2
exit "$any_failed"
