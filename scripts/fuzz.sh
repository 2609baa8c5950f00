#!/usr/bin/env bash
# Builds the libFuzzer targets (CMake preset `fuzz`, clang++, in build/fuzz) and runs each on its
# seed corpus in tests/fuzz/corpus/<name> for a bounded time. A crash or sanitizer report fails
# the run; its input is written to build/fuzz/findings/<name>/ — add it to the corpus as a
# regression input once the bug is fixed.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     default 60
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
seconds=${1:-60}
scripts/install-deps.sh --fuzz
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz
status=0
for name in model_config result_json numbers; do
  findings=build/fuzz/findings/$name
  work=build/fuzz/corpus/$name  # new inputs the fuzzer finds go here, not into the repository
  mkdir -p "$findings" "$work"
  echo "== fuzz_$name: ${seconds}s on tests/fuzz/corpus/$name" >&2
  if ! build/fuzz/tests/fuzz/fuzz_$name "$work" "tests/fuzz/corpus/$name" -max_total_time="$seconds" \
      -max_len=65536 -rss_limit_mb=4096 -timeout=20 -artifact_prefix="$findings/" -print_final_stats=1 \
      >"build/fuzz/fuzz_$name.log" 2>&1; then
    echo "fuzz_$name FAILED; see build/fuzz/fuzz_$name.log and $findings/" >&2
    tail -n 40 "build/fuzz/fuzz_$name.log" >&2
    status=1
  else
    grep -E "^stat::number_of_executed_units|^Done" "build/fuzz/fuzz_$name.log" | sed "s/^/fuzz_$name: /" >&2 || true
  fi
done
exit $status
