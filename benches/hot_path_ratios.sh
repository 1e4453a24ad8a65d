#!/usr/bin/env bash
# Wall-clock ratios of levee's one-thread and two-thread hot paths to their
# peers (issue 19), measured *interleaved*: each round runs levee's case and
# the peer's case back to back, in alternating order, and the ratio of that
# round is peer time / levee time (above 1: levee is faster). Prints per
# pair the median and the minimum of the per-round ratios, the ratio of the
# two sides' best times, and the ratio of the two sides' median times (on a
# VM whose speed changes from process to process, the per-side medians over
# many rounds are steadier than any one round's ratio). On a shared VM
# compare only figures of one run.
#
#   cargo build --release -p levee-benches --example hot_path_cost
#   benches/hot_path_ratios.sh [ROUNDS] [CALLS]          (default 9, 3000000)
#   ONLY=cache benches/hot_path_ratios.sh                (pairs whose levee case starts with "cache")
#   IN_PROCESS=1 benches/hot_path_ratios.sh 21 500000    (both sides of a pair in one process,
#                                                         alternating rounds: `hot_path_cost pair`)
#
# Pairs: MemoryCache get-hit without and with a TTL vs quick_cache, and
# get-or-insert with first sights and evictions (plain Zipf u64); the
# SlidingWindow keyed check vs governor keyed, resident keys (criterion's
# trace), first sight of every key (plain Zipf u64), one hot key, one key
# over its quota (every check refused); each at 1
# and 2 threads.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/examples/hot_path_cost
[ -x "$bin" ] || { echo "build first: cargo build --release -p levee-benches --example hot_path_cost" >&2; exit 1; }
rounds=${1:-9}
calls=${2:-3000000}

ns() { "$bin" "$1" "$calls" "$2" | awk '/ns per call/ {print $1}'; }

# The median of newline-separated numbers.
median() { printf '%s' "$1" | sort -n | awk '{v[NR]=$1} END {print v[int((NR + 1) / 2)]}'; }

pair() {
    local ours=$1 peer=$2 threads=$3 r a b ratios="" all_a="" all_b="" best_a=1e18 best_b=1e18
    [[ $ours == "${ONLY:-}"* ]] || return 0
    if [[ ${IN_PROCESS:-0} == 1 ]]; then
        "$bin" pair "$ours" "$peer" "$rounds" "$calls" "$threads"
        return 0
    fi
    for r in $(seq "$rounds"); do
        if (( r % 2 )); then a=$(ns "$ours" "$threads"); b=$(ns "$peer" "$threads")
        else b=$(ns "$peer" "$threads"); a=$(ns "$ours" "$threads"); fi
        ratios+="$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.4f\n", b / a}')"$'\n'
        all_a+="$a"$'\n'
        all_b+="$b"$'\n'
        best_a=$(awk -v x="$a" -v y="$best_a" 'BEGIN {print (x < y) ? x : y}')
        best_b=$(awk -v x="$b" -v y="$best_b" 'BEGIN {print (x < y) ? x : y}')
    done
    local med_a med_b
    med_a=$(median "$all_a")
    med_b=$(median "$all_b")
    printf '%-14s vs %-15s %dt: median %sx  min %sx  best %s / %s ns = %sx  medians %s / %s ns = %sx\n' \
        "$ours" "$peer" "$threads" \
        "$(median "$ratios")" \
        "$(printf '%s' "$ratios" | sort -n | head -n1)" \
        "$best_a" "$best_b" \
        "$(awk -v a="$best_a" -v b="$best_b" 'BEGIN {printf "%.2f", b / a}')" \
        "$med_a" "$med_b" \
        "$(awk -v a="$med_a" -v b="$med_b" 'BEGIN {printf "%.2f", b / a}')"
}

echo "# $(date -u '+%F %T') UTC, load $(cut -d' ' -f1-3 /proc/loadavg), $rounds rounds of $calls calls"
echo "# ratio = peer ns / levee ns per call (above 1: levee faster)"
for t in 1 2; do
    pair cache quick_cache "$t"
    pair cache_ttl quick_cache "$t"
    pair cache_first quick_cache_first "$t"
    pair window governor "$t"
    pair window_first governor_first "$t"
    pair window_one governor_one "$t"
    pair window_denied governor_denied "$t"
done
