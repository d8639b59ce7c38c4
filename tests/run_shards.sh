#!/usr/bin/env bash
# Runs a GoogleTest binary as N shards side by side, one process each, and fails if any shard
# fails (a failed test, a sanitizer report, a crash or a shard over the time limit):
#   tests/run_shards.sh BINARY [N] [SECONDS]
# Under the sanitizers this takes 4 minutes where ctest's process per test takes 6: each test
# would start the instrumented binary again and reload the models it shares with its neighbours.
set -uo pipefail
[ $# -ge 1 ] || { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
bin=$1 n=${2:-2} limit=${3:-2400}
[ -x "$bin" ] || { echo "run_shards.sh: '$bin' is not an executable" >&2; exit 2; }
logs=$(mktemp -d)
pids=()
for ((i = 0; i < n; ++i)); do
    GTEST_TOTAL_SHARDS=$n GTEST_SHARD_INDEX=$i timeout "$limit" "$bin" --gtest_brief=1 \
        >"$logs/$i.log" 2>&1 &
    pids+=($!)
done
failed=0
for ((i = 0; i < n; ++i)); do
    wait "${pids[$i]}"
    rc=$?
    if [ "$rc" -ne 0 ]; then
        failed=1
        [ "$rc" -eq 124 ] && echo "shard $i of $n: over the limit of $limit s"
        echo "shard $i of $n failed (exit $rc):"
        cat "$logs/$i.log"
    else
        echo "shard $i of $n: $(grep -E '^\[==========\]' "$logs/$i.log" | tail -n 1)"
        grep -E '^\[  (PASSED|SKIPPED) ' "$logs/$i.log"
    fi
done
rm -rf "$logs"
exit "$failed"
