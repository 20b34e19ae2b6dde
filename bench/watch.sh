#!/usr/bin/env bash
# Watch reaction benchmark: cdragon's watch fan-out against the bare fan-out ceiling of
# its stack (bench/fanout_ceiling.py) and Redis pub/sub (when redis-server is there or
# installs from Debian quickly), then the server's memory with idle watchers.
#
#   bash bench/watch.sh
#
# 1. reaction: ceiling, cdragon and Redis started fresh side by side, each pinned to
#    CPU 0; bench/watch_reaction.py pinned to CPU 1 runs the scenarios (SCENARIOS) and
#    the systems take turns write by write (each system's fleet lives in its own client
#    process, so the fleets never share one process's open-file limit);
# 2. idle memory (IDLE=1): a fresh cdragon with 100,000 idle watchers pipelined 125 to a
#    connection, a fresh cdragon with IDLE_CONNS watchers on their own connections, and
#    (with Redis) a fresh Redis with IDLE_CONNS subscribers; each run checks that the
#    watch after the last one is refused with 429 (CDRAGON_MAX_WATCHERS set to N), which
#    proves all N are registered;
# 3. bench/watch_reaction.py report writes the "Watch reaction" section of
#    bench/RESULTS.md (between its own markers; the rest of the file is left alone).
#
# Knobs (environment): SCENARIOS="one:1 one:100 one:1000 one:10000 keys:1000x5"
#   REPS= (writes per one:N scenario; default by N) REDIS=auto|0 IDLE=1 IDLE_CONNS=18000
#   SERVER_CPU=0 CLIENT_CPU=1 DATA_ROOT=bench/out (real disk) KEEP_DATA=0
#   RESULTS=bench/RESULTS.md (empty: do not write it) START_TIMEOUT=30
# Exit status: 0 all ran; 1 setup problem, a server did not start or a run failed.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$REPO/bench
PY=$REPO/.venv/bin/python
OUT=$BENCH/out
SCENARIOS=${SCENARIOS:-"one:1 one:100 one:1000 one:10000 keys:1000x5"}
REPS=${REPS:-}
REDIS=${REDIS:-auto}
IDLE=${IDLE:-1}
IDLE_CONNS=${IDLE_CONNS:-18000}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
DATA_ROOT=${DATA_ROOT:-$OUT}
KEEP_DATA=${KEEP_DATA:-0}
RESULTS=${RESULTS-$BENCH/RESULTS.md}
START_TIMEOUT=${START_TIMEOUT:-30}
STOP_TIMEOUT=${STOP_TIMEOUT:-15}
cd "$REPO"

die() { echo "watch.sh: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }

[[ -x $PY ]] || die "$PY is missing: run \`make setup\` first"
"$PY" -c 'import uvloop, httptools, cdragon._core' 2>/dev/null || die ".venv lacks uvloop/httptools or cdragon is not built: run \`make setup\`"
for tool in taskset curl timeout; do command -v $tool >/dev/null || die "$tool is needed"; done
taskset -c "$SERVER_CPU" true 2>/dev/null || die "CPU $SERVER_CPU is not available"
taskset -c "$CLIENT_CPU" true 2>/dev/null || die "CPU $CLIENT_CPU is not available (needs 2 cores)"
[[ $SERVER_CPU != "$CLIENT_CPU" ]] || die "SERVER_CPU and CLIENT_CPU must differ"

# as many open files as this shell may have (the hard limit; raising it needs CAP_SYS_RESOURCE)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
if [[ $NOFILE != unlimited ]] && ((NOFILE < IDLE_CONNS + 1000)); then
    IDLE_CONNS=$((NOFILE - 1000))
    log "open-file limit $NOFILE: idle watchers on their own connections lowered to $IDLE_CONNS"
fi

if [[ $REDIS != 0 ]] && ! command -v redis-server >/dev/null; then
    if [[ $(id -u) == 0 ]]; then
        log "redis-server is missing: trying apt-get install -y redis-server (Redis rows are skipped if it fails)"
        timeout 300 apt-get install -y redis-server >/dev/null 2>&1 \
            || { timeout 120 apt-get update >/dev/null 2>&1 && timeout 300 apt-get install -y redis-server >/dev/null 2>&1; } \
            || true
    fi
    command -v redis-server >/dev/null || { log "no redis-server: Redis rows skipped"; REDIS=0; }
fi
[[ $REDIS == auto ]] && REDIS=1
# a distro redis-server service started by the install is not ours and is left alone

mkdir -p "$OUT" "$DATA_ROOT"
RUN=$(mktemp -d "$OUT/watch-$(date +%Y%m%d-%H%M%S)-XXXX")
fstype=$(findmnt -n -o FSTYPE -T "$DATA_ROOT" 2>/dev/null || echo unknown)
case $fstype in tmpfs|ramfs) die "$DATA_ROOT is on $fstype, not a real disk: set DATA_ROOT" ;; esac

# ---------------------------------------------------------------- process control
PIDS=()
DATA_DIRS=()

source "$BENCH/lib.sh"   # stop_pid, free_port

stop_all() {
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    PIDS=()
}

install_cleanup stop_all   # bench/lib.sh: stop servers, drop data dirs on exit

ready() {  # ready KIND PORT: 0 when the server answers
    if [[ $1 == redis ]]; then
        "$PY" - "$2" <<'EOF' 2>/dev/null
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
s.sendall(b"PING\r\n")
sys.exit(0 if s.recv(64).startswith(b"+PONG") else 1)
EOF
    else
        [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$2/health" 2>/dev/null) == 200 ]]
    fi
}

LAST_PID=""
# start NAME KIND PORT CMD...: start CMD pinned to SERVER_CPU and wait until it answers
start() {
    local name=$1 kind=$2 port=$3; shift 3
    taskset -c "$SERVER_CPU" "$@" >"$RUN/$name.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    local deadline=$((SECONDS + START_TIMEOUT))
    until ready "$kind" "$port"; do
        if ! kill -0 "$LAST_PID" 2>/dev/null; then
            tail -n 20 "$RUN/$name.log" >&2
            die "$name exited before it answered; command: $*"
        fi
        ((SECONDS < deadline)) || { tail -n 20 "$RUN/$name.log" >&2; die "$name did not answer within ${START_TIMEOUT}s"; }
        sleep 0.1
    done
    log "$name: PID $LAST_PID on 127.0.0.1:$port, CPU $SERVER_CPU"
}

DATA=""
new_data() {  # a fresh data directory in $DATA (not via $(...): DATA_DIRS must be kept for cleanup)
    DATA=$(mktemp -d "$DATA_ROOT/watch-data-XXXXXX")
    DATA_DIRS+=("$DATA")
}

start_cdragon() {  # start_cdragon NAME PORT [VAR=VALUE...]
    local name=$1 port=$2; shift 2
    new_data
    start "$name" http "$port" env "$@" "$PY" -m cdragon serve --listen "127.0.0.1:$port" --data-dir "$DATA"
}

start_redis() {  # start_redis NAME PORT
    new_data
    start "$1" redis "$2" redis-server --port "$2" --bind 127.0.0.1 --appendonly yes --appendfsync always \
        --save '' --dir "$DATA" --maxclients $((NOFILE > 1100 ? NOFILE - 100 : 1000)) --daemonize no
}

client() {  # client ARGS...: the load generator pinned to CLIENT_CPU
    taskset -c "$CLIENT_CPU" "$PY" "$BENCH/watch_reaction.py" run --out "$RUN/results.jsonl" "$@"
}

# ---------------------------------------------------------------- metadata
loadavg=$(cut -d' ' -f1-3 /proc/loadavg)
{
    "$PY" - "$RUN" "$loadavg" "$REDIS" <<'EOF'
import json, platform, subprocess, sys, time, os
from importlib.metadata import version
run, load, redis = sys.argv[1], sys.argv[2], sys.argv[3]
def sh(*a):
    try:
        return subprocess.run(a, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return "?"
cpu = sh("sh", "-c", "lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n1")
vers = [f"Python {platform.python_version()}"] + [f"{p} {version(p)}" for p in ("uvloop", "httptools")]
if redis == "1":
    vers.append(sh("redis-server", "--version").split(" sha=")[0])
json.dump({"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "loadavg": load,
           "machine": f"`{' '.join(platform.uname()[i] for i in (0, 2, 4))}`, {cpu}, {os.cpu_count()} CPUs",
           "versions": ", ".join(vers), "git": sh("git", "describe", "--always", "--dirty"),
           "raw": os.path.relpath(run, os.getcwd())}, open(f"{run}/meta.json", "w"))
EOF
} || die "could not write $RUN/meta.json"
log "logs and raw results in $RUN"

# ---------------------------------------------------------------- 1. reaction
P_CE=$(free_port); P_CD=$(free_port); P_RD=$(free_port)
start ceiling http "$P_CE" "$PY" "$BENCH/fanout_ceiling.py" --port "$P_CE"
args=(--ceiling "127.0.0.1:$P_CE" --ceiling-pid "$LAST_PID")
start_cdragon cdragon "$P_CD"
args+=(--cdragon "127.0.0.1:$P_CD" --cdragon-pid "$LAST_PID")
if [[ $REDIS == 1 ]]; then
    start_redis redis "$P_RD"
    args+=(--redis "127.0.0.1:$P_RD" --redis-pid "$LAST_PID")
fi
for sc in $SCENARIOS; do args+=(--scenario "$sc"); done
[[ -n $REPS ]] && args+=(--reps "$REPS")
client "${args[@]}" >"$RUN/reaction.out" 2>"$RUN/reaction.err" \
    || { tail -n 30 "$RUN/reaction.err" >&2; die "the reaction run failed (see $RUN/reaction.err)"; }
stop_all

# ---------------------------------------------------------------- 2. idle memory
if [[ $IDLE == 1 ]]; then
    P=$(free_port)
    start_cdragon cdragon-idle-pipelined "$P" CDRAGON_MAX_WATCHERS=100000
    client --cdragon "127.0.0.1:$P" --pid "$LAST_PID" --limit-check --scenario "idle:100000x10000p125" \
        >>"$RUN/idle.out" 2>>"$RUN/idle.err" || { tail -n 30 "$RUN/idle.err" >&2; die "idle run failed"; }
    stop_all
    keys=$((IDLE_CONNS / 10)); n=$((keys * 10))
    P=$(free_port)
    start_cdragon cdragon-idle "$P" CDRAGON_MAX_WATCHERS="$n"
    client --cdragon "127.0.0.1:$P" --pid "$LAST_PID" --limit-check --scenario "idle:${n}x${keys}" \
        >>"$RUN/idle.out" 2>>"$RUN/idle.err" || { tail -n 30 "$RUN/idle.err" >&2; die "idle run failed"; }
    stop_all
    if [[ $REDIS == 1 ]]; then
        P=$(free_port)
        start_redis redis-idle "$P"
        client --redis "127.0.0.1:$P" --pid "$LAST_PID" --scenario "idle:${n}x${keys}" \
            >>"$RUN/idle.out" 2>>"$RUN/idle.err" || { tail -n 30 "$RUN/idle.err" >&2; die "idle run failed"; }
        stop_all
    fi
fi

# ---------------------------------------------------------------- 3. report
rep=(report "$RUN/results.jsonl" --meta "$RUN/meta.json")
[[ -n $RESULTS ]] && rep+=(--results "$RESULTS")
"$PY" "$BENCH/watch_reaction.py" "${rep[@]}"
