#!/usr/bin/env bash
# The Slurm scripts (scripts/slurm/*.sbatch) run by a real Slurm: munged, slurmctld and slurmd
# started here on localhost as root, from a slurm.conf written into a fresh temporary folder
# (one node: this machine's CPUs, no GPUs, so every job runs the cpu backend), on free ports of
# their own, so nothing here meets another Slurm or another run of this test. Checks:
#   1. measure.sbatch and sweep.sbatch write what docs/batch-jobs.md says they write;
#   2. a sweep of 4 points as a job array, 2 tasks at a time (sweep-array.sbatch), then the
#      dependent job (sweep-index.sbatch): its index and points equal, point for point, those of
#      the same grid run by plain `flopscope sweep` (what is deterministic: the points, their
#      settings, analytic and counted FLOPs; not times), and each point records its array task;
#   3. an array task stopped by its time limit (--time=1, Slurm's smallest) leaves no partial
#      file, the index job names the points missing, and the same array submitted again
#      completes the grid.
# Every daemon started is stopped at the end by its pid (trap on EXIT), jobs cancelled first.
#
#   tests/slurm/test-slurm.sh          as root, after a build (FLOPSCOPE: the binary to test)
#
# Skipped, with one line, where Slurm or munge is not installed (scripts/install-deps.sh
# --slurm installs them) or not as root. .ci/run runs it after the test suite; it is not a
# ctest test because it starts system daemons as root and takes minutes.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bin=${FLOPSCOPE:-$root/build/release/src/flopscope}
start_s=$SECONDS

say() { printf 'test-slurm: %s\n' "$*" >&2; }
fail() {
  say "FAILED: $*"
  exit 1
}

for tool in munged slurmctld slurmd sbatch squeue scontrol scancel; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "test-slurm: SKIPPED: Slurm is not installed (no $tool; install slurm-wlm and munge: scripts/install-deps.sh --slurm)"
    exit 0
  fi
done
if [[ $(id -u) -ne 0 ]]; then
  echo "test-slurm: SKIPPED: needs root (it starts munged, slurmctld and slurmd as root)"
  exit 0
fi
[[ -x "$bin" ]] || fail "no flopscope binary at '$bin': build first (scripts/test.sh) or set FLOPSCOPE"
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")

tmp=$(mktemp -d /tmp/flopscope-slurm.XXXXXX)
work=$tmp/work
mkdir -p "$work" "$tmp/state" "$tmp/spool" "$tmp/munge"
pids=()

# ---- stop everything started here, whatever happened --------------------------------------
cleanup() {
  local rc=$?
  trap - EXIT
  if [[ -f "$tmp/slurm.conf" ]] && ((${#pids[@]} > 1)); then
    SLURM_CONF=$tmp/slurm.conf scancel --quiet --full --user=root 2>/dev/null || true
    for _ in $(seq 1 20); do
      [[ -z "$(SLURM_CONF=$tmp/slurm.conf squeue -h 2>/dev/null)" ]] && break
      sleep 0.5
    done
  fi
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 40); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.25
    done
    if kill -0 "$pid" 2>/dev/null; then
      say "pid $pid did not stop on SIGTERM; SIGKILL"
      kill -9 "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  if ((rc == 0)); then
    rm -rf "$tmp"
  else
    say "state, logs and job files kept in $tmp"
    for log in "$tmp"/slurmctld.log "$tmp"/slurmd.log; do
      [[ -f "$log" ]] && { say "--- last lines of $log"; tail -n 15 "$log" >&2; }
    done
  fi
  say "$( ((rc == 0)) && echo passed || echo failed) in $((SECONDS - start_s)) s"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- ports no one listens on -----------------------------------------------------------------
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=$((20000 + RANDOM % 20000))
while listening "$port" || listening $((port + 1)); do port=$((20000 + RANDOM % 20000)); done

# ---- munge ------------------------------------------------------------------------------------
dd if=/dev/urandom of="$tmp/munge/munge.key" bs=1024 count=1 status=none
chmod 0400 "$tmp/munge/munge.key"
chmod 0700 "$tmp/munge"
munged --foreground --force --socket="$tmp/munge/munge.socket" --key-file="$tmp/munge/munge.key" \
  --pid-file="$tmp/munge/munged.pid" --log-file="$tmp/munge/munged.log" --seed-file="$tmp/munge/munged.seed" \
  2>"$tmp/munge/munged.stderr" &
pids+=($!)

# ---- slurm.conf: one node, this machine ---------------------------------------------------------
node=$(hostname -s)
cpus=$(nproc)
mem_mb=$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 / 2))
cat >"$tmp/slurm.conf" <<CONF
ClusterName=flopscope-test
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
AuthInfo=socket=$tmp/munge/munge.socket
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/slurmctld.log
SlurmdLogFile=$tmp/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
KillWait=5
MinJobAge=600
InactiveLimit=0
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=flopscope Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$tmp/slurm.conf

for _ in $(seq 1 40); do
  [[ -S "$tmp/munge/munge.socket" ]] && break
  sleep 0.25
done
[[ -S "$tmp/munge/munge.socket" ]] || fail "munged did not start: $(cat "$tmp/munge/munged.stderr" "$tmp/munge/munged.log" 2>/dev/null)"
slurmctld -D -i -f "$SLURM_CONF" 2>"$tmp/slurmctld.stderr" &
pids+=($!)
slurmd -D -f "$SLURM_CONF" -N "$node" 2>"$tmp/slurmd.stderr" &
pids+=($!)
for _ in $(seq 1 60); do
  state=$(sinfo -h -n "$node" -o %T 2>/dev/null || true)
  [[ "$state" == idle ]] && break
  sleep 0.5
done
[[ "$state" == idle ]] || fail "the node did not come up idle (state '$state'); see $tmp/slurmctld.log"
say "slurm up on ports $port-$((port + 1)) (node $node, $cpus CPUs) in $((SECONDS - start_s)) s; state in $tmp"

# ---- helpers ----------------------------------------------------------------------------------
cd "$work"
slurm=$root/scripts/slurm
# A node with no GPU and 2 or more CPUs: the scripts' GPU, cores and memory requests overridden,
# as a user of a CPU partition would; every job runs the cpu backend.
cpu_job=(--gres=none --cpus-per-task=1 --mem=1G --export="ALL,FLOPSCOPE=$bin,FLOPSCOPE_BACKEND=cpu")
tiny=(--seq 128 --repeats 1 --warmup 0 --no-ceiling)

# Until a job (every task of an array) has left the queue; polls faster than sbatch --wait.
wait_job() { while [[ -n "$(squeue -h -j "$1" 2>/dev/null)" ]]; do sleep 0.3; done; }
# Submits and waits; prints the job id; fails (status 1) unless the job COMPLETED.
run_job() {
  local id
  id=$(sbatch --parsable "$@") || return 1
  wait_job "$id"
  echo "$id"
  [[ "$(job_state "$id")" == "COMPLETED " ]]
}
job_state() { scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' | sort -u | tr '\n' ' '; }
expect_file() { [[ -s "$1" ]] || fail "$2: no file $1 (in $work)"; }
# The deterministic part of a sweep's index: per point its id, settings, status, file, d_model
# and counted FLOPs (layer and extrapolated), without times.
index_facts() {
  "$bin" report "$1" --format csv |
    awk -F, '$1 == "point" && $4 ~ /^(width|batch|precision|recompute|status|file|d_model|layer_flops|training_flops)$/ {print $2 "," $4 "," $5}'
}
# ... and of a point: its model, layer and every op's analytic and counted FLOPs.
point_facts() { "$bin" report "$1" --format csv | grep -E ',(analytic|counted|config)$'; }
same_sweep() {  # same_sweep A B: two sweep folders with the same points and facts
  local a=$1 b=$2 f
  diff <(index_facts "$a/index.json") <(index_facts "$b/index.json") >&2 || fail "indexes of $a and $b differ (above)"
  [[ "$(cd "$a/points" && ls)" == "$(cd "$b/points" && ls)" ]] || fail "$a and $b hold different point files"
  for f in "$a"/points/*.json; do
    diff <(point_facts "$f") <(point_facts "$b/points/$(basename "$f")") >&2 ||
      fail "point $(basename "$f") differs between $a and $b (above)"
  done
}
no_partial_files() {
  local left
  left=$(find "$1" -name '*.tmp.*')
  [[ -z "$left" ]] || fail "temporary files left in $1: $left"
  local f
  for f in "$1"/points/*.json; do
    [[ -e "$f" ]] || continue
    "$bin" -q report "$f" >/dev/null || fail "$f is not a whole result"
  done
}

# ---- 1. measure.sbatch --------------------------------------------------------------------------
jid=$(run_job "${cpu_job[@]}" --time=5 "$slurm/measure.sbatch" --width 1/96 "${tiny[@]}") ||
  fail "measure.sbatch: job failed (state $(job_state "${jid:-?}")); log: $(cat flopscope-measure-*.log 2>/dev/null | tail -5)"
for f in "results/measure-$jid.json" "results/measure-$jid.html" "results/devices-$jid.json" \
  "results/peak-$jid.json" "flopscope-measure-$jid.log"; do
  expect_file "$f" "measure.sbatch"
done
(($(ls "results/figures-$jid"/*.svg | wc -l) >= 3)) || fail "measure.sbatch: fewer than 3 figures in results/figures-$jid"
grep -q '"job_id": "'"$jid"'"' "results/measure-$jid.json" || fail "measure.sbatch: the result does not record job $jid"
grep -q 'Layer totals' "flopscope-measure-$jid.log" || fail "measure.sbatch: no text report in the job's log"
head -c 15 "results/measure-$jid.html" | grep -q '<!DOCTYPE html>' || fail "measure.sbatch: the page is not HTML"
say "1. measure.sbatch (job $jid) wrote its result, page, figures, devices, peak and log ($((SECONDS - start_s)) s)"

# ---- 2. sweep.sbatch ----------------------------------------------------------------------------
jid=$(run_job "${cpu_job[@]}" --time=5 "$slurm/sweep.sbatch" --widths 1/96,1/48 "${tiny[@]}") ||
  fail "sweep.sbatch: job failed (state $(job_state "${jid:-?}"))"
d=results/sweep-$jid
for f in "$d/index.json" "$d/points/w1-96_b1_fp32.json" "$d/points/w1-48_b1_fp32.json" "$d/report.html" \
  "flopscope-sweep-$jid.log"; do
  expect_file "$f" "sweep.sbatch"
done
(($(ls "$d/figures"/*.svg | wc -l) == 2)) || fail "sweep.sbatch: not 2 figures in $d/figures"
grep -q '2 of 2 points done' "flopscope-sweep-$jid.log" || fail "sweep.sbatch: no summary in the job's log"
say "2. sweep.sbatch (job $jid) wrote its index, points, page and figures ($((SECONDS - start_s)) s)"

# ---- 3. an array sweep, 2 tasks at a time, then the index job ------------------------------------
grid=(--widths 1/96,1/48 --recompute off,on "${tiny[@]}")
"$bin" -q sweep --backend cpu --out-dir plain "${grid[@]}" >/dev/null || fail "plain sweep failed"
n=$("$bin" sweep --count-points "${grid[@]}")
[[ "$n" == 4 ]] || fail "--count-points printed '$n', not 4"
arr=$(sbatch --parsable "${cpu_job[@]}" --time=5 --array=0-$((n - 1))%2 "$slurm/sweep-array.sbatch" "${grid[@]}")
d=results/sweep-$arr
idx=$(sbatch --parsable --dependency=afterany:"$arr" "${cpu_job[@]}" --time=5 \
  --export="ALL,FLOPSCOPE=$bin,FLOPSCOPE_BACKEND=cpu,FLOPSCOPE_SWEEP_DIR=$d" "$slurm/sweep-index.sbatch" "${grid[@]}")
# Watch the queue until the index job is over: never more than 2 tasks running at once (%2).
most=0
while [[ -n "$(squeue -h -j "$idx" 2>/dev/null)" ]]; do
  running=$(squeue -h -r -t RUNNING -j "$arr" 2>/dev/null | wc -l)
  ((running > most)) && most=$running
  sleep 0.3
done
((most <= 2)) || fail "array $arr: $most tasks ran at once, not at most 2"
[[ "$(job_state "$idx")" == "COMPLETED " ]] ||
  fail "sweep-index.sbatch: job $idx ended $(job_state "$idx") (tasks: $(job_state "$arr")); $(tail -3 "flopscope-sweep-index-$idx.log")"
[[ "$(job_state "$arr")" == "COMPLETED " ]] || fail "array $arr: tasks ended $(job_state "$arr")"
for f in "$d/index.json" "$d/report.html" "flopscope-sweep-index-$idx.log"; do expect_file "$f" "sweep-index.sbatch"; done
(($(ls "$d/figures"/*.svg | wc -l) == 2)) || fail "sweep-index.sbatch: not 2 figures in $d/figures"
ls "$d/shards" | grep -qx '4-of-4.json' || fail "array $arr: no shards/4-of-4.json (one shard a task)"
same_sweep plain "$d"
for t in 0 1 2 3; do
  grep -lq '"array_task_id": "'$t'"' "$d"/points/*.json || fail "no point records array task ${arr}_$t"
done
grep -q "${arr}_3" "$d/report.html" || fail "the page does not show the array tasks (${arr}_3)"
grep -q '4 of 4 points done' "$d/report.html" || fail "the page does not say 4 of 4 points done"
no_partial_files "$d"
say "3. array $arr (4 tasks, at most $most seen at once of 2 allowed) + index job $idx: index and points equal the" \
  "plain sweep's ($((SECONDS - start_s)) s)"

# ---- 4. a task stopped by its time limit, then the same array again ------------------------------
# Slurm's smallest limit is a minute, and slurmctld checks limits every 30 s: the task is stopped
# 60 to 90 s after it starts. Its grid of 8 points is sized to take about 110 s here (its
# repeats from a short run of the same grid), so the limit falls in one of the last points and
# the resubmitted array has a few left to run.
grid=(--widths 1/96 --batches 1,2,3,4 --recompute off,on --seq 128 --warmup 0 --no-ceiling)
# The faster of two short runs: a machine busy at the first (another build) would make the
# points look slower than they then run.
ms=
for c in 1 2; do
  "$bin" -q sweep --backend cpu --out-dir "calibration-$c" --repeats 20 "${grid[@]}" >/dev/null || fail "calibration sweep failed"
  ms=$("$bin" report "calibration-$c/index.json" --format csv |
    awk -F, -v best="$ms" '$4 == "layer_ms" {s += $5} END {print (best != "" && best < s) ? best : s}')
done
repeats=$(awk -v ms="$ms" 'BEGIN {r = int(110000 / ms); print (r < 20 ? 20 : r)}')
# Should the points run faster than calibrated and the grid be done before the limit is
# enforced (Slurm then still calls a task that ran past its limit TIMEOUT), once more with
# twice the repeats in a fresh folder.
for attempt in 1 2; do
  d=$work/timelimit-$attempt
  arr=$(sbatch --parsable "${cpu_job[@]}" --time=1 --array=0-0 \
    --export="ALL,FLOPSCOPE=$bin,FLOPSCOPE_BACKEND=cpu,FLOPSCOPE_SWEEP_DIR=$d" "$slurm/sweep-array.sbatch" \
    "${grid[@]}" --repeats "$repeats")
  say "4. array $arr: 8 points of $repeats repeats (the layers ran $ms ms a repeat: about $((${ms%.*} * repeats / 1000)) s)," \
    "limit 1 minute"
  wait_job "$arr"
  stopped=$(grep -c '"status": "interrupted"' "$d/shards/1-of-1.json" || true)
  [[ "$(job_state "$arr")" == "TIMEOUT " && "$stopped" == 1 ]] && break
  ((attempt == 1)) || fail "array $arr ended $(job_state "$arr") with $stopped points interrupted, not stopped by its limit"
  say "   array $arr ended $(job_state "$arr") with its points done, before its limit was enforced: again with twice" \
    "the repeats"
  repeats=$((repeats * 2))
done
grid+=(--repeats "$repeats")
no_partial_files "$d"
done_before=$(ls "$d/points" | wc -l)
((done_before < 8)) || fail "array $arr: all 8 points done despite its time limit"
sums_before=$(cd "$d/points" && md5sum ./*.json 2>/dev/null || true)
idx=$(run_job --dependency=afterany:"$arr" "${cpu_job[@]}" --time=5 \
  --export="ALL,FLOPSCOPE=$bin,FLOPSCOPE_BACKEND=cpu,FLOPSCOPE_SWEEP_DIR=$d" "$slurm/sweep-index.sbatch" "${grid[@]}") &&
  fail "sweep-index.sbatch: job $idx succeeded with $((8 - done_before)) points missing"
grep -q "points have no result" "flopscope-sweep-index-$idx.log" || fail "the index job's log does not name the missing points"
"$bin" report "$d/index.json" --format csv | grep -q ',status,interrupted,' || fail "the index does not show the interrupted point"
grep -q 'interrupted' "$d/report.html" || fail "the page does not show the interrupted point"
say "   stopped at its time limit with $done_before of 8 points done, no partial file; the index job named the rest" \
  "($((SECONDS - start_s)) s)"

arr=$(sbatch --parsable "${cpu_job[@]}" --time=5 --array=0-0 --export="ALL,FLOPSCOPE=$bin,FLOPSCOPE_BACKEND=cpu,FLOPSCOPE_SWEEP_DIR=$d" \
  "$slurm/sweep-array.sbatch" "${grid[@]}")
idx=$(run_job --dependency=afterany:"$arr" "${cpu_job[@]}" --time=5 \
  --export="ALL,FLOPSCOPE=$bin,FLOPSCOPE_BACKEND=cpu,FLOPSCOPE_SWEEP_DIR=$d" "$slurm/sweep-index.sbatch" "${grid[@]}") ||
  fail "after resubmission: the index job $idx failed; $(tail -3 "flopscope-sweep-index-$idx.log")"
[[ "$(job_state "$arr")" == "COMPLETED " ]] || fail "resubmitted array $arr ended $(job_state "$arr")"
grep -q '8 of 8 points done' "$d/report.html" || fail "after resubmission the page does not say 8 of 8 points done"
no_partial_files "$d"
[[ "$(cd "$d/points" && md5sum ./*.json | grep -F -f <(printf '%s\n' "$sums_before" | cut -c1-32))" == "$sums_before" ]] ||
  fail "points done before the time limit were run again"
grep -q "already done" "flopscope-sweep-array-${arr}_0.log" || fail "the resubmitted task did not skip the points done"
say "   the same array again (job $arr) ran the other $((8 - done_before)) points, skipped the $done_before done; index" \
  "job $idx: 8 of 8 ($((SECONDS - start_s)) s)"
