#!/usr/bin/env bash
# Side-by-side speed of `bitnet bench` and a peer's llama-bench (bitnet.cpp's or llama.cpp's),
# run alternately (ours, peer, ours, peer, ...) with the same threads and token counts, so drift
# in the machine's load hits both alike. Prints one row per measure: ours, peer, ours/peer.
#
#   bench/compare.sh --bitnet build/bitnet --synthetic 2b [-t 2] [--repeat 3]
#       [--peer /path/to/llama-bench --gguf /path/to/model.gguf] [-p 128] [-n 128]
#       [--ours-args "--weights t5 --head i8"] [--peer-args "-ngl 0"]
#   bench/compare.sh --bitnet build/bitnet --model MODEL_DIR ...
#
# The peer is built outside this repository; this script never builds or downloads anything.
# A GGUF of the 2B shape for it: `bitnet convert --synthetic 2b peer.gguf --type i2_s
# --embedding f16 --tokenizer DIR` (bitnet.cpp; llama.cpp's loader needs a vocabulary of at most
# 128256 tokens, e.g. Llama 3's tokenizer.json in DIR) or `--type tq2_0` (llama.cpp);
# `--model peer.gguf` then runs ours on the very same file. Without --peer only our figures are
# printed. Needs bash, grep, sed, awk and sort.
set -euo pipefail

usage() {
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}
die() {
    echo "compare.sh: $*" >&2
    exit 2
}

bitnet=""
model=""
synthetic=""
peer=""
gguf=""
threads=""
prompt=128
gen=128
repeat=3
ours_args=""
peer_args=""

while [ $# -gt 0 ]; do
    case "$1" in
        --bitnet) bitnet="${2:?--bitnet needs a path}"; shift 2 ;;
        --model) model="${2:?--model needs a path}"; shift 2 ;;
        --synthetic) synthetic="${2:?--synthetic needs a name}"; shift 2 ;;
        --peer) peer="${2:?--peer needs the path of llama-bench}"; shift 2 ;;
        --gguf) gguf="${2:?--gguf needs a path}"; shift 2 ;;
        -t | --threads) threads="${2:?-t needs a number}"; shift 2 ;;
        -p) prompt="${2:?-p needs a number}"; shift 2 ;;
        -n) gen="${2:?-n needs a number}"; shift 2 ;;
        --repeat) repeat="${2:?--repeat needs a number}"; shift 2 ;;
        --ours-args) ours_args="${2?}"; shift 2 ;;
        --peer-args) peer_args="${2?}"; shift 2 ;;
        -h | --help) usage 0 ;;
        *) echo "compare.sh: unknown argument '$1'" >&2; usage 2 ;;
    esac
done

is_count() { [[ "$1" =~ ^[1-9][0-9]*$ ]]; }
[ -n "$bitnet" ] || die "--bitnet PATH (our bitnet binary) is required"
[ -x "$bitnet" ] || die "our binary '$bitnet' is not an executable file"
if [ -n "$model" ] && [ -n "$synthetic" ]; then die "give --model or --synthetic, not both"; fi
if [ -z "$model" ] && [ -z "$synthetic" ]; then die "give --model PATH or --synthetic NAME"; fi
[ -n "$threads" ] || threads=$(nproc)
for v in "$threads" "$prompt" "$gen" "$repeat"; do
    is_count "$v" || die "'$v' is not a positive whole number (-t, -p, -n, --repeat)"
done
if [ -n "$peer" ]; then
    [ -x "$peer" ] || die "peer '$peer' is not an executable file (build it outside this repository)"
    [ -n "$gguf" ] || die "--peer needs --gguf MODEL.gguf of the same shape"
    [ -f "$gguf" ] || die "GGUF file '$gguf' does not exist"
elif [ -n "$gguf" ]; then
    die "--gguf is only used with --peer"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ -n "$synthetic" ]; then ours_model=(--synthetic "$synthetic"); else ours_model=("$model"); fi

# One JSON value of our bench's last line: numbers only ("key":value).
json_number() {
    grep -oE "\"$1\": *-?[0-9][0-9.eE+-]*" <<<"$2" | head -n 1 | sed 's/.*: *//'
}

# llama-bench -o json or jsonl: per test object, n_prompt and n_gen come before avg_ts.
# Prints "pp VALUE" for the pp<prompt> test and "tg VALUE" for the tg<gen> test.
peer_rates() {
    grep -oE '"(n_prompt|n_gen|avg_ts)": *[0-9][0-9.eE+-]*' "$1" |
        awk -F': *' -v p="$prompt" -v n="$gen" '
            /n_prompt/ { np = $2 + 0 }
            /n_gen/    { ng = $2 + 0 }
            /avg_ts/   { if (np == p && ng == 0) print "pp", $2; else if (np == 0 && ng == n) print "tg", $2 }'
}

ours_keys=(prompt_tok_s gen_tok_s ttft_ms p50 p99 peak_rss_mb achieved_gb_s bandwidth_gb_s bandwidth_pct
    interleaved_pct)
for ((run = 1; run <= repeat; run++)); do
    echo "run $run/$repeat: ours" >&2
    # shellcheck disable=SC2086  # the extra arguments are meant to split into words
    if ! "$bitnet" bench "${ours_model[@]}" -t "$threads" -p "$prompt" -n "$gen" --repeat 1 \
        --no-api-overhead --json $ours_args >"$work/ours.out" 2>"$work/ours.err"; then
        cat "$work/ours.err" >&2
        die "our bench failed (run $run)"
    fi
    line=$(tail -n 1 "$work/ours.out")
    for key in "${ours_keys[@]}"; do
        value=$(json_number "$key" "$line")
        # Measured only with the ceiling (not under --bandwidth-mib 0).
        [ -n "$value" ] || [ "$key" != interleaved_pct ] || value=0
        [ -n "$value" ] || die "our bench printed no '$key' on its last line: $line"
        echo "$value" >>"$work/ours.$key"
    done
    if [ -n "$peer" ]; then
        echo "run $run/$repeat: peer" >&2
        # shellcheck disable=SC2086
        if ! "$peer" -m "$gguf" -t "$threads" -p "$prompt" -n "$gen" -r 1 -o json $peer_args \
            >"$work/peer.out" 2>"$work/peer.err"; then
            tail -n 20 "$work/peer.err" >&2
            die "the peer failed (run $run)"
        fi
        peer_rates "$work/peer.out" >"$work/peer.rates"
        for test in pp tg; do
            value=$(awk -v t="$test" '$1 == t { print $2; exit }' "$work/peer.rates")
            [ -n "$value" ] || die "the peer printed no ${test}${prompt}/${gen} result (see -o json)"
            echo "$value" >>"$work/peer.$test"
        done
    fi
done

# "median min max" of a file of numbers.
stats() {
    sort -g "$1" | awk '{ v[NR] = $1 } END {
        m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "%s %s %s\n", m, v[1], v[NR] }'
}
cell() {  # median (min..max), about 4 significant digits without exponents
    awk -v m="$1" -v lo="$2" -v hi="$3" '
        function f(x, a) { a = x < 0 ? -x : x
            return sprintf(a >= 1000 ? "%.0f" : a >= 100 ? "%.1f" : a >= 1 ? "%.2f" : "%.3g", x) }
        BEGIN { printf "%s (%s..%s)", f(m), f(lo), f(hi) }'
}

if [ -n "$synthetic" ]; then what="--synthetic $synthetic"; else what="$model"; fi
echo "ours: $bitnet bench $what $ours_args"
if [ -n "$peer" ]; then echo "peer: $peer -m $gguf $peer_args"; else echo "peer: none (pass --peer LLAMA_BENCH --gguf MODEL.gguf)"; fi
echo "$threads threads, p=$prompt n=$gen, $repeat alternating runs each; median (min..max)"
echo
row() { printf "%-30s %-32s %-32s %s\n" "$1" "$2" "$3" "$4"; }
row "measure" "ours" "peer" "ours/peer"
row_for() {  # label, our key, peer test (or "")
    read -r m lo hi < <(stats "$work/ours.$2")
    local ours_cell peer_cell="-" ratio="-"
    ours_cell=$(cell "$m" "$lo" "$hi")
    if [ -n "$3" ] && [ -s "$work/peer.$3" ]; then
        read -r pm plo phi < <(stats "$work/peer.$3")
        peer_cell=$(cell "$pm" "$plo" "$phi")
        ratio=$(awk -v a="$m" -v b="$pm" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }')
    fi
    row "$1" "$ours_cell" "$peer_cell" "$ratio"
}
row_for "prompt tok/s (pp$prompt)" prompt_tok_s pp
row_for "generation tok/s (tg$gen)" gen_tok_s tg
row_for "time to first token, ms" ttft_ms ""
row_for "token latency p50, ms" p50 ""
row_for "token latency p99, ms" p99 ""
row_for "peak RSS, MB" peak_rss_mb ""
row_for "achieved read GB/s" achieved_gb_s ""
row_for "read bandwidth ceiling, GB/s" bandwidth_gb_s ""
row_for "% of the ceiling" bandwidth_pct ""
row_for "% of reads between blocks" interleaved_pct ""
if [ -n "$peer" ]; then
    echo
    echo "Our generation decodes after the $prompt-token prompt; llama-bench's tg$gen starts from an empty cache."
fi
