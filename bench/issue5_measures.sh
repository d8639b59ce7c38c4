#!/usr/bin/env bash
# The measures of issue #5 (docs/PERFORMANCE.md) with `bitnet bench`, one JSON line per measure:
#   bench/issue5_measures.sh BITNET_BINARY OUT_DIR [MEASURE ...]
# MEASURE: 2b-bf16 2b-f16 2b-i8 2b-t5-bf16 2b-t5-i8 2b-batch8 2b-api 1m-t1 1m-t1-kvbf16
# 1m-t1-kvi8 1m-b64 1m-b64-kvbf16 1m-b64-kvi8 1m-b64-ctx8 (default: all; 1m-b64-ctx8 decodes 64
# sequences at context 8-40, the others after 128 tokens; -kvbf16, -kvi8: with the bf16 or the
# int8 KV cache instead of f32).
# Set PRIORITY="chrt -f 50" (root) on a machine shared with other work: SCHED_FIFO keeps other
# processes from preempting the benchmark (the kernel still leaves them 5% of each core). Runs
# are short and spaced GAP seconds apart (default 15) so nothing else starves for long.
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
bin=$1 out=$2
shift 2
[ -x "$bin" ] || { echo "issue5_measures.sh: '$bin' is not an executable" >&2; exit 2; }
mkdir -p "$out"
read -r -a prio <<<"${PRIORITY:-}"
[ $# -gt 0 ] || set -- 2b-bf16 2b-f16 2b-i8 2b-t5-bf16 2b-t5-i8 2b-batch8 2b-api 1m-t1 \
    1m-t1-kvbf16 1m-t1-kvi8 1m-b64 1m-b64-kvbf16 1m-b64-kvi8 1m-b64-ctx8

run() {  # name, bench arguments...
    local name=$1
    shift
    echo "$name: bitnet bench $* (load $(cut -d' ' -f1-3 /proc/loadavg))" | tee "$out/$name.log"
    "${prio[@]}" "$bin" bench "$@" --json >"$out/$name.out" 2>>"$out/$name.log"
    tail -n 1 "$out/$name.out" >"$out/$name.json"
    sleep "${GAP:-15}"
}
twob=(--synthetic 2b -t 2 -p 128 -n 128)
for m in "$@"; do
    case $m in
        2b-bf16) run "$m" "${twob[@]}" --repeat 3 --no-api-overhead ;;
        2b-f16) run "$m" "${twob[@]}" --head f16 --repeat 3 --no-api-overhead ;;
        2b-i8) run "$m" "${twob[@]}" --head i8 --repeat 3 --no-api-overhead ;;
        2b-t5-bf16) run "$m" "${twob[@]}" --weights t5 --repeat 3 --no-api-overhead ;;
        2b-t5-i8) run "$m" "${twob[@]}" --weights t5 --head i8 --repeat 3 --no-api-overhead ;;
        2b-batch8) run "$m" "${twob[@]}" --batch 8 --repeat 2 --warmup 0 --no-api-overhead --bandwidth-mib 0 ;;
        2b-api) run "$m" --synthetic 2b -t 2 -p 128 -n 64 --repeat 2 --bandwidth-mib 0 ;;
        1m-t1) run "$m" --synthetic 1m -t 1 -p 128 -n 128 --repeat 5 ;;
        1m-t1-kvbf16) run "$m" --synthetic 1m -t 1 -p 128 -n 128 --repeat 5 --kv-cache bf16 ;;
        1m-t1-kvi8) run "$m" --synthetic 1m -t 1 -p 128 -n 128 --repeat 5 --kv-cache i8 ;;
        1m-b64) run "$m" --synthetic 1m -t 2 -p 128 -n 128 --repeat 3 --batch 64 ;;
        1m-b64-kvbf16) run "$m" --synthetic 1m -t 2 -p 128 -n 128 --repeat 3 --batch 64 --kv-cache bf16 ;;
        1m-b64-kvi8) run "$m" --synthetic 1m -t 2 -p 128 -n 128 --repeat 3 --batch 64 --kv-cache i8 ;;
        1m-b64-ctx8) run "$m" --synthetic 1m -t 2 -p 8 -n 32 --repeat 5 --batch 64 ;;
        *) echo "issue5_measures.sh: unknown measure '$m'" >&2; exit 2 ;;
    esac
done
