#!/usr/bin/env bash
# The ceiling check (issue 14's done-criterion): RUNS consecutive `flopscope measure` runs on the
# CPU at each of three widths, printing per run the largest "of ceiling" figure of any op and of
# the layer totals, whether the ceiling was remeasured and whether a note explains a figure
# above 100%; fails when any figure exceeds 105%.
#
#   benchmarks/ceiling-check.sh [RUNS=10] [SEQ=1024]     widths 1/96, 2/96, 3/96 of gpt3-175b
#
# FLOPSCOPE_BIN names the binary (default build/release/src/flopscope). Needs python3 (to read
# the JSON results). Figures are timed on whatever else the machine is doing: say so with them.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${FLOPSCOPE_BIN:-$root/build/release/src/flopscope}
runs=${1:-10}
seq=${2:-1024}
[[ -x "$bin" ]] || { echo "ceiling-check: no flopscope at $bin (scripts/run.sh --version builds it)" >&2; exit 2; }
source "$root/scripts/openblas-coretype.sh"  # OpenBLAS kernels for this CPU (0.3.21 falls back to SSE3 on new ones)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "ceiling check: $runs runs per width, seq $seq, $("$bin" --version | head -n1), $(uptime | sed 's/.*load/load/')"
printf '%-6s %4s %14s %14s %16s %12s %s\n' width run "max op" "max total" "ceiling GFLOP/s" remeasured note
fail=0
for width in 1/96 2/96 3/96; do
  for ((i = 1; i <= runs; ++i)); do
    "$bin" measure --backend cpu --width "$width" --seq "$seq" --format json >"$tmp/r.json" 2>"$tmp/log"
    line=$(python3 - "$tmp/r.json" "$width" "$i" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
c = r["peaks"]["measured_ceiling"]
ops = [o["utilization"]["of_measured_ceiling"] for o in r["ops"] if "utilization" in o]
tot = [r["totals"][p]["utilization"]["of_measured_ceiling"] for p in ("forward", "backward", "total")]
worst = max(ops + tot)
print(f"{sys.argv[2]:6s} {sys.argv[3]:>4s} {100 * max(ops):13.1f}% {100 * max(tot):13.1f}% "
      f"{c['flops_per_s'] / 1e9:16.2f} {len(c.get('remeasured', [])):12d} {'yes' if 'note' in c else '-'} "
      f"{'FAIL' if worst > 1.05 else ''}")
PY
)
    echo "$line"
    [[ "$line" == *FAIL* ]] && fail=1
  done
done
if ((fail)); then
  echo "ceiling check: FAILED: a figure above 105% of the ceiling" >&2
  exit 1
fi
echo "ceiling check: passed: no of-ceiling figure above 105% in $((3 * runs)) runs"
