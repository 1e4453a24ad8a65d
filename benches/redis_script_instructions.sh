#!/usr/bin/env bash
# Server instructions per call of each Redis limiter script candidate
# (benches/examples/redis_script_cost.rs): a redis-server under
# `valgrind --tool=callgrind` per candidate and call count; instructions
# per call = (I(N2) - I(N1)) / (N2 - N1), which cancels startup, script
# loading and shutdown. Stable on a busy machine.
#   benches/redis_script_instructions.sh ["candidate name" ...]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p levee-benches --example redis_script_cost
bin=target/release/examples/redis_script_cost
n1=${N1:-500}
n2=${N2:-2500}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
count() { # name calls -> instructions
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    valgrind --tool=callgrind --callgrind-out-file="$out/cg.$2" \
        redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 &
    local pid=$!
    for _ in $(seq 1 200); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    "$bin" --url "redis://127.0.0.1:$port" --only "$1" --batches 1 --calls "$2" >/dev/null
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
    wait "$pid" || true
    grep -E '^(summary|totals):' "$out/cg.$2" | head -1 | awk '{print $2}'
}
if [ $# -eq 0 ]; then
    set -- "return 1" "return {1, 2, 3, 4}" "GET + SET PX (floor)" \
        "counter before, server TIME" "counter before, caller's time" \
        "counter hash, server TIME" "counter hash, caller's time" \
        "counter now, server TIME" "counter now, caller's time" \
        "counter optimistic, server TIME" "counter optimistic, caller's time" \
        "counter now, refused" "counter optimistic, refused" "counter hash, refused" \
        "GCRA (redis_rate shape), server TIME" "GCRA (redis_rate shape), caller's time" \
        "levee RedisGcra, server TIME" "levee RedisGcra, caller's time"
fi
echo "| script | server instructions per call |"
echo "|---|---:|"
for name in "$@"; do
    a=$(count "$name" "$n1")
    b=$(count "$name" "$n2")
    echo "| $name | $(( (b - a) / (n2 - n1) )) |"
done
