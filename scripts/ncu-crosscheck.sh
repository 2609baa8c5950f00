#!/usr/bin/env bash
# Cross-checks flopscope's own hardware counters (CUPTI Range Profiler, one range per op)
# against Nsight Compute on the same layer, op by op: the same metrics, the same FLOP formula,
# ncu's kernels summed over each NVTX op range. Prints the table; exits 1 when any op's tensor
# or CUDA-core FLOPs, or any of its instruction/op counters, differ by more than the tolerance
# (0.1%), or when an op has no kernels or a kernel no op.
#
#   scripts/ncu-crosscheck.sh [--repeats N] [--warmup N] [--tolerance F] [--gemm-candidates N] [--out DIR]
#                             [measure options...]
#   e.g. scripts/ncu-crosscheck.sh --width 1/96 --seq 256 --precision bf16
#   defaults: --repeats 1 --warmup 0 --tolerance 0.001 --gemm-candidates 1 --out out/ncu-crosscheck-<time>;
#             measure options --width 1/96 --seq 256 when none are given
#
# Two runs, because a process takes one CUPTI profiler at a time (under ncu, flopscope's own
# counters would fail with CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED):
#   1. flopscope measure --counters required --format json: ops[i].measured holds its per-op
#      counts (raw metric values and the formula that made them FLOPs)
#   2. ncu --nvtx --clock-control none --profile-from-start off --metrics <the metrics run 1
#      collected> flopscope measure --nsight --counters off: only the timed repeats (bracketed
#      by cudaProfilerStart/Stop) are profiled; exported with --csv --page raw --print-units
#      base --print-nvtx-rename kernel, which names every kernel by its innermost NVTX push/pop
#      range: the op's (domain flopscope: layer > phase > op).
# Each op's kernels are summed over all of them and divided by the number of timed repeats.
# DRAM bytes and time are shown by neither check: they depend on cache state and clocks.
# Both runs take --gemm-candidates 1, cuBLASLt's heuristic first choice for every GEMM, the
# same in both (timing candidates could pick differently in each run, and a different
# algorithm reads as a counter difference); the table still says when the two runs' choices
# differ. The binary and its libraries: scripts/find-flopscope.sh (the library path goes to
# flopscope alone, never to ncu).
# Exit: 0 all within tolerance; 1 a difference; 2 a setup error (no ncu, a run failed).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
repeats=1 warmup=0 tolerance=0.001 candidates=1 out=""
args=()
while (($#)); do
  case $1 in
    --repeats) repeats=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --tolerance) tolerance=$2; shift 2 ;;
    --gemm-candidates) candidates=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,33p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) args+=("$1"); shift ;;
  esac
done
((${#args[@]})) || args=(--width 1/96 --seq 256)
[[ $repeats =~ ^[1-9][0-9]*$ ]] || { echo "ncu-crosscheck: --repeats must be a positive integer" >&2; exit 2; }
[[ $warmup =~ ^[0-9]+$ ]] || { echo "ncu-crosscheck: --warmup must be a non-negative integer" >&2; exit 2; }
[[ $candidates =~ ^[1-9][0-9]*$ ]] || { echo "ncu-crosscheck: --gemm-candidates must be a positive integer" >&2; exit 2; }
command -v python3 >/dev/null || { echo "ncu-crosscheck: python3 is needed" >&2; exit 2; }
# shellcheck source=find-flopscope.sh
source "$(dirname "${BASH_SOURCE[0]}")/find-flopscope.sh" || exit 2
ncu=$(flopscope_find_tool ncu) ||
  { echo "ncu-crosscheck: ncu (Nsight Compute) not found on PATH, in \$CUDA_HOME/bin, /usr/local/cuda*/bin or /opt/nvidia/nsight-compute/*; set NCU=/path/to/ncu" >&2; exit 2; }
echo "ncu-crosscheck: $ncu" >&2
out=${out:-$root/out/ncu-crosscheck-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
echo "ncu-crosscheck: results in $out" >&2

# 1. flopscope's own counters.
if ! "${flopscope_cmd[@]}" measure --counters required --no-ceiling --gemm-candidates "$candidates" \
    --repeats "$repeats" --warmup "$warmup" \
    --format json -o "$out/flopscope.json" "${args[@]}" 2>"$out/flopscope.log"; then
  echo "ncu-crosscheck: flopscope measure --counters required failed:" >&2
  tail -n 5 "$out/flopscope.log" >&2
  exit 2
fi

# The metrics flopscope collected, for ncu.
metrics=$(python3 - "$out/flopscope.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
names = []
for op in doc.get("ops", []):
    m = op.get("measured")
    if not isinstance(m, dict):
        c = doc.get("counters", {})
        sys.exit(f"ops[].measured missing for {op.get('name')}: counters status {c.get('status')!r}, reason {c.get('reason')!r}")
    for k in m.get("raw", {}):
        if k not in names:
            names.append(k)
if not names:
    sys.exit("flopscope's JSON lists no collected metric")
print(",".join(names))
PY
) || { echo "ncu-crosscheck: cannot read the metrics from $out/flopscope.json" >&2; exit 2; }

# 2. Nsight Compute on the same layer; then the raw page as CSV, kernels renamed by NVTX range.
if ! "$ncu" --nvtx --clock-control none --profile-from-start off --target-processes all --metrics "$metrics" \
    --force-overwrite -o "$out/ncu" "${flopscope_cmd[@]}" measure --nsight --counters off --no-ceiling -q \
    --gemm-candidates "$candidates" --repeats "$repeats" --warmup "$warmup" \
    --format json -o "$out/ncu-run.json" "${args[@]}" >"$out/ncu.log" 2>&1; then
  echo "ncu-crosscheck: ncu run failed; its last lines (ERR_NVGPUCTRPERM: insufficient privileges, docs/counters.md; LibraryNotLoaded: ncu could not load its libraries in this machine, as under gVisor):" >&2
  tail -n 8 "$out/ncu.log" >&2
  exit 2
fi
if ! "$ncu" --import "$out/ncu.ncu-rep" --csv --page raw --print-units base --print-nvtx-rename kernel \
    >"$out/ncu-raw.csv" 2>"$out/ncu-export.log"; then
  echo "ncu-crosscheck: ncu --import failed:" >&2
  tail -n 5 "$out/ncu-export.log" >&2
  exit 2
fi

# 3. Compare, op by op.
python3 - "$out/flopscope.json" "$out/ncu-raw.csv" "$out/ncu-run.json" "$repeats" "$tolerance" <<'PY' | tee "$out/table.txt"
import csv, json, math, sys

fs_path, csv_path, ncu_run_path, repeats, tol = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
fs = json.load(open(fs_path))
try:
    ncu_run = json.load(open(ncu_run_path))
except (OSError, ValueError):
    ncu_run = {}
ops = [o["name"] for o in fs["ops"]]
measured = {o["name"]: o["measured"] for o in fs["ops"]}
# Counts that depend only on the work done (not on caches or clocks) are compared one by one.
deterministic = lambda m: m.startswith(("sm__ops_path_tensor", "smsp__sass_", "sm__inst_executed"))

def number(text):
    t = (text or "").strip().replace(",", "")
    if t in ("", "n/a", "N/A", "nan"):
        return None
    try:
        return float(t)
    except ValueError:
        return None

# The raw page: a header row, a units row, then one row per profiled kernel.
rows = list(csv.reader(open(csv_path, newline="")))
head = next((i for i, r in enumerate(rows) if "ID" in r and "Kernel Name" in r), None)
if head is None:
    sys.exit("ncu-crosscheck: no header row with 'ID' and 'Kernel Name' in " + csv_path)
header = rows[head]
op_set = set(ops)

def op_of(kernel_name):
    # --print-nvtx-rename kernel gives the innermost push/pop range; tolerate a domain or
    # stack prefix ("flopscope@...", ".../fwd.qkv").
    name = kernel_name.strip()
    if name in op_set:
        return name
    for sep in ("/", "@", ":"):
        tail = name.rsplit(sep, 1)[-1].strip()
        if tail in op_set:
            return tail
    return None

sums = {op: {} for op in ops}
kernels = {op: 0 for op in ops}
unattributed = {}
for r in rows[head + 1:]:
    if len(r) != len(header):
        continue
    rec = dict(zip(header, r))
    if not rec["ID"].strip().isdigit():
        continue  # the units row
    op = op_of(rec["Kernel Name"])
    if op is None:
        unattributed[rec["Kernel Name"]] = unattributed.get(rec["Kernel Name"], 0) + 1
        continue
    kernels[op] += 1
    for col, text in rec.items():
        v = number(text)
        if v is not None and "__" in col:
            sums[op][col] = sums[op].get(col, 0.0) + v

def rel(a, b):
    if a is None or b is None:
        return math.inf
    if a == b:
        return 0.0
    return abs(a - b) / max(abs(a), abs(b))

def formula(m, which, values):
    terms = m["formula"][which]
    if not terms:
        return None
    total = 0.0
    for metric, weight in terms.items():
        if metric not in values:
            return None
        total += weight * values[metric]
    return total

algos_fs = (fs.get("prepared") or {}).get("gemm_algorithms", {})
algos_ncu = (ncu_run.get("prepared") or {}).get("gemm_algorithms", {})
def same_algo(op):
    a, b = algos_fs.get(op), algos_ncu.get(op)
    if a is None or b is None:
        return "-"
    keys = ("algo_id", "tile_id", "stages_id", "split_k", "cluster_shape_id")
    return "same" if all(a.get(k) == b.get(k) for k in keys) else "DIFFERS"

fmt = lambda v: "n/a" if v is None else f"{v:.6g}"
pct = lambda d: "inf" if d == math.inf else f"{100 * d:.4f}%"
print(f"flopscope (CUPTI) vs Nsight Compute, {repeats} timed repeat(s), tolerance {100 * tol:g}%")
print(f"{'op':28} {'kern':>4} {'tensor flopscope':>17} {'tensor ncu':>13} {'diff':>9} "
      f"{'cores flopscope':>16} {'cores ncu':>13} {'diff':>9} {'worst counter (diff)':>48} {'algo':>7}  verdict")
failed = 0
for op in ops:
    m = measured[op]
    ncu = {k: v / repeats for k, v in sums[op].items()}
    t_fs, c_fs = m.get("tensor_flops"), m.get("cuda_core_flops")
    t_ncu, c_ncu = formula(m, "tensor_flops", ncu), formula(m, "cuda_core_flops", ncu)
    dt, dc = rel(t_fs, t_ncu), rel(c_fs, c_ncu)
    worst, worst_d = "-", 0.0
    for metric, v in m["raw"].items():
        if not deterministic(metric):
            continue
        d = rel(v, ncu.get(metric))
        if d > worst_d or worst == "-":
            worst, worst_d = metric, d
    bad = kernels[op] == 0 or dt > tol or dc > tol or worst_d > tol
    failed += bad
    verdict = "no kernels" if kernels[op] == 0 else ("DIFFERS" if bad else "ok")
    print(f"{op:28} {kernels[op] // repeats:>4} {fmt(t_fs):>17} {fmt(t_ncu):>13} {pct(dt):>9} "
          f"{fmt(c_fs):>16} {fmt(c_ncu):>13} {pct(dc):>9} {worst + ' (' + pct(worst_d) + ')':>48} {same_algo(op):>7}  {verdict}")
for name, n in sorted(unattributed.items()):
    print(f"kernel outside every op range: {name} (x{n})")
if unattributed:
    failed += 1
print(f"ok: all {len(ops)} ops within {100 * tol:g}%" if not failed else
      f"FAILED: {failed} op(s) differ, have no kernels, or kernels fall outside every op range")
sys.exit(1 if failed else 0)
PY
