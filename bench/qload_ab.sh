#!/bin/bash
# Queue throughput and server CPU per operation of two checkouts, measured alternately
# with bench/qload.c (the queue rows' C load generator): the figure to compare code
# changes to the queue path on this shared machine (see bench/cpu_ab.sh for wrk rows).
#
#   bench/qload_ab.sh A_CHECKOUT B_CHECKOUT [ROUNDS] [MODE] [CONNECTIONS] [QUEUES]
#   e.g. bench/qload_ab.sh /work/base . 3 cycle 50 1      (defaults: 3 push 400 1)
#
# Each run: `python -m cdragon serve` from that checkout (its own build) on CPU 0 in a
# fresh temp dir, qload on CPU 1 for WARMUP (1 s) + SECS (5 s); prints qload's JSON line
# and the server's user + system CPU time (/proc/PID/stat) over the whole run divided by
# the operations it saw (the rate times warm-up + measured seconds).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
A=$(cd "$1" && pwd); B=$(cd "$2" && pwd)
ROUNDS=${3:-3}; MODE=${4:-push}; CONNS=${5:-400}; NQ=${6:-1}; SECS=${SECS:-5}; STOP_TIMEOUT=15
source "$here/lib.sh"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/qload-ab-XXXXXX")
cc -O2 -o "$tmp/qload" "$here/qload.c"

run_one() {   # checkout -> one line
    local repo=$1 dir port pid t0 t1 out
    dir=$(mktemp -d "$tmp/run-XXXXXX")
    start_checkout "$repo" "$dir"
    pid=$SERVER_PID port=$SERVER_PORT
    t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    out=$(taskset -c "${CLIENT_CPU:-1}" "$tmp/qload" --proto http --port "$port" --conns "$CONNS" \
          --queues "$NQ" --mode "$MODE" --duration "$SECS" --warmup 1 2>/dev/null)
    t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    stop_pid "$pid"
    python3 -c "import json, sys; d = json.loads(sys.argv[1]); \
print(sys.argv[1], f'server {($t1 - $t0) / $(getconf CLK_TCK) / (d[\"rate\"] * (d[\"seconds\"] + 1)) * 1e6:.1f} us/op')" "$out"
}

for round in $(seq "$ROUNDS"); do
    for repo in "$A" "$B"; do
        echo "round $round  $repo  $(run_one "$repo")"
    done
done
rm -rf "$tmp"
