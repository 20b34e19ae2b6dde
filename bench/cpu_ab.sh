#!/bin/bash
# Server CPU per request of two checkouts, measured alternately: the figure to compare
# code changes on this shared machine, where throughput drifts by ±30 % within minutes
# but the CPU a request costs the server moves far less.
#
#   bench/cpu_ab.sh A_CHECKOUT B_CHECKOUT [ROUNDS] -- WRK_SCRIPT_ARGS...
#   e.g. bench/cpu_ab.sh /work/base . 3 -- kind=kv acc=1000 keys=1000 size=64
#        LUA=suite_queue.lua bench/cpu_ab.sh /work/base . 3 -- mode=cycle
#
# Each run: `python -m cdragon serve` from that checkout (its own build) on CPU 0 in a
# fresh temp dir, wrk -t1 -c400 on CPU 1 with bench/lua/$LUA (suite_write.lua by default)
# for WARMUP + SECS seconds; prints req/s and the server's user + system CPU time per
# answered request (from /proc/PID/stat over the whole wrk run).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
A=$(cd "$1" && pwd); B=$(cd "$2" && pwd); ROUNDS=${3:-3}
shift 3; [[ ${1:-} == -- ]] && shift
LUA=${LUA:-suite_write.lua}; SECS=${SECS:-6}; WARMUP=${WARMUP:-2}
STOP_TIMEOUT=15
source "$here/lib.sh"

run_one() {   # checkout -> "rps us_per_req"
    local repo=$1 dir port pid ticks0 ticks1 out req rps hz
    dir=$(mktemp -d "${TMPDIR:-/tmp}/cpu-ab-XXXXXX")
    start_checkout "$repo" "$dir"
    pid=$SERVER_PID port=$SERVER_PORT
    ticks0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    out=$(taskset -c "${CLIENT_CPU:-1}" wrk -t1 -c400 -d$((WARMUP + SECS))s -s "$here/lua/$LUA" \
          "http://127.0.0.1:$port/" -- "$@" | grep BENCH_RESULT)
    ticks1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    stop_pid "$pid"
    rm -rf "$dir"
    hz=$(getconf CLK_TCK)
    req=$(sed 's/.*requests=\([0-9]*\).*/\1/' <<<"$out")
    rps=$(sed 's/.* rps=\([0-9.]*\).*/\1/' <<<"$out")
    python3 -c "print(f'{float($rps):>10.0f} req/s {($ticks1 - $ticks0) / $hz / $req * 1e6:8.2f} us/request')"
}

for round in $(seq "$ROUNDS"); do
    for repo in "$A" "$B"; do
        echo "round $round  $repo  $(run_one "$repo" "$@")"
    done
done
