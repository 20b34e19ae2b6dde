#!/bin/bash
# Where a queue operation's server CPU goes, cdragon beside Redis: each server fresh on
# CPU 0 (Redis with appendfsync always), bench/qload.c on CPU 1 for SECS seconds, and the
# server's user and system CPU time (/proc/PID/stat) divided by the operations done.
#
#   bench/queue_cpu.sh [push|cycle] [CONNECTIONS]      (defaults: push 400)
#   e.g. bench/queue_cpu.sh cycle 50
#
# Prints per system: operations/s, user µs and system µs per operation, and the share
# of its core the server used (near 1.0: bounded by its CPU).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
MODE=${1:-push}; CONNS=${2:-400}; SECS=${SECS:-5}; STOP_TIMEOUT=15
source "$here/lib.sh"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/queue-cpu-XXXXXX")
cc -O2 -o "$tmp/qload" "$here/qload.c"

measure() {   # name proto pid port -> one line
    local name=$1 proto=$2 pid=$3 port=$4 u0 s0 u1 s1 t0 t1 out
    read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$pid/stat")
    t0=$(date +%s.%N)
    out=$(taskset -c "${CLIENT_CPU:-1}" "$tmp/qload" --proto "$proto" --port "$port" --conns "$CONNS" \
          --queues 1 --mode "$MODE" --duration "$SECS" --warmup 0 2>/dev/null)
    t1=$(date +%s.%N)
    read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$pid/stat")
    python3 - "$name" "$out" "$u0" "$s0" "$u1" "$s1" "$t0" "$t1" "$(getconf CLK_TCK)" <<'EOF'
import json, sys
name, out, u0, s0, u1, s1, t0, t1, hz = sys.argv[1:]
d = json.loads(out)
n, hz = d["ops"], float(hz)
user, sys_ = (float(u1) - float(u0)) / hz, (float(s1) - float(s0)) / hz
print(f"{name:8s} {d['rate']:>9.0f} ops/s  user {user / n * 1e6:6.2f} us/op  "
      f"system {sys_ / n * 1e6:6.2f} us/op  core share {(user + sys_) / (float(t1) - float(t0)):.2f}")
EOF
}

mkdir -p "$tmp/cdragon"
start_checkout "$here/.." "$tmp/cdragon"
measure cdragon http "$SERVER_PID" "$SERVER_PORT"
stop_pid "$SERVER_PID"

port=$(free_port)
mkdir -p "$tmp/redis"
taskset -c "${SERVER_CPU:-0}" redis-server --port "$port" --dir "$tmp/redis" --appendonly yes \
    --appendfsync always --save "" >"$tmp/redis.log" 2>&1 &
pid=$!
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
measure redis resp "$pid" "$port"
stop_pid "$pid"
rm -rf "$tmp"
