#!/usr/bin/env bash
# Quick benchmark of cdragon against the ceiling of its own stack (bare uvloop +
# httptools answering `{}`), both measured in the same run because this machine is
# shared and drifts. Systems take turns, each started fresh and pinned to CPU 0,
# with wrk pinned to CPU 1:
#     ceiling, cdragon atomic add, ceiling, cdragon KVSet 64 B, ceiling,
#     cdragon lock+unlock pairs, ceiling, cdragon lock handoffs (50 clients), ceiling
# The lock scenarios (bench/lua/lock_pairs.lua, handoff.lua) also report operations
# per second (pairs, handoffs) and 409 `locked` conflicts, which are expected in the
# pairs scenario and not errors there.
# Prints a Markdown table and writes it, with the machine and versions, to
# bench/RESULTS.md. Raw logs go to bench/out/run-*/ (git-ignored).
#
#   make quick-bench          or          bash bench/quick.sh
# Knobs (environment): DURATION=10 WARMUP=2 CONNECTIONS=400 ROUNDS=1 PORT=18090
#   HANDOFF_CONNECTIONS=50 (clients competing for one lock in the handoff scenario)
#   LOCKS=1 (0 skips the two lock scenarios)
#   SERVER_CPU=0 CLIENT_CPU=1 START_TIMEOUT=30 WRK_TIMEOUT=2s KEEP_DATA=0
#   DATA_ROOT=bench/out (where the fresh cdragon data dirs go; must be a real disk)
# Exit status: 0 all ran cleanly; 1 setup problem or a server did not start;
#   3 the run finished but some scenario saw errors, a crash or a failed check.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$REPO/bench
PY=$REPO/.venv/bin/python
OUT=$BENCH/out

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-400}
HANDOFF_CONNECTIONS=${HANDOFF_CONNECTIONS:-50}
LOCKS=${LOCKS:-1}
ROUNDS=${ROUNDS:-1}
PORT=${PORT:-18090}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
START_TIMEOUT=${START_TIMEOUT:-30}   # seconds for a server to answer GET /health 200
STOP_TIMEOUT=${STOP_TIMEOUT:-15}     # seconds for a server to exit after SIGTERM
WRK_TIMEOUT=${WRK_TIMEOUT:-2s}       # wrk's per-request timeout (counted as socket errors)
DATA_ROOT=${DATA_ROOT:-$OUT}
KEEP_DATA=${KEEP_DATA:-0}
URL=http://127.0.0.1:$PORT
cd "$REPO"   # `python -m cdragon` imports the package from here

die() { echo "quick.sh: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }

# ---------------------------------------------------------------- prerequisites
[[ -x $PY ]] || die "$PY is missing: run \`make test\` or \`make run\` first (they create .venv)"
"$PY" -c 'import uvloop, httptools' 2>/dev/null \
    || die ".venv lacks uvloop/httptools: run \`make test\` or \`make run\` first"
if ! command -v wrk >/dev/null; then
    log "wrk is missing: installing it with apt-get"
    [[ $(id -u) == 0 ]] || die "wrk is missing and we are not root: apt-get install -y wrk"
    apt-get update && apt-get install -y wrk || die "could not install wrk"
fi
for tool in taskset curl timeout; do
    command -v $tool >/dev/null || die "$tool is needed"
done
taskset -c "$SERVER_CPU" true 2>/dev/null || die "CPU $SERVER_CPU is not available for the server"
taskset -c "$CLIENT_CPU" true 2>/dev/null || die "CPU $CLIENT_CPU is not available for wrk (needs 2 cores)"
[[ $SERVER_CPU != "$CLIENT_CPU" ]] || die "SERVER_CPU and CLIENT_CPU must differ"

mkdir -p "$OUT" "$DATA_ROOT"
RUN=$(mktemp -d "$OUT/run-$(date +%Y%m%d-%H%M%S)-XXXX")
fstype=$(findmnt -n -o FSTYPE -T "$DATA_ROOT" 2>/dev/null || echo unknown)
case $fstype in
    tmpfs|ramfs) die "$DATA_ROOT is on $fstype, not a real disk: set DATA_ROOT to a directory on disk" ;;
esac

# ---------------------------------------------------------------- process control
SERVER_PID=""
DATA_DIRS=()

port_busy() {  # true while something listens on $PORT
    if command -v ss >/dev/null; then
        ss -Hltn "sport = :$PORT" 2>/dev/null | grep -q .
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null
    fi
}

wait_port_free() {
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while port_busy; do
        ((SECONDS < deadline)) || die "port $PORT still busy after ${STOP_TIMEOUT}s"
        sleep 0.1
    done
}

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # stop_pid

stop_server() {  # the server we started, if any
    [[ -n $SERVER_PID ]] || return 0
    local pid=$SERVER_PID
    SERVER_PID=""
    stop_pid "$pid"
}

install_cleanup stop_server   # bench/lib.sh: stop servers, drop data dirs on exit

# start_server NAME CMD...: start CMD pinned to SERVER_CPU, wait for GET /health 200.
start_server() {
    local name=$1; shift
    port_busy && die "port $PORT is already in use (by something we did not start): set PORT="
    taskset -c "$SERVER_CPU" "$@" >"$RUN/$name.log" 2>&1 &
    SERVER_PID=$!
    local deadline=$((SECONDS + START_TIMEOUT)) code rc
    while :; do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            wait "$SERVER_PID" 2>/dev/null && rc=0 || rc=$?
            SERVER_PID=""
            echo "---- last lines of $RUN/$name.log:" >&2; tail -n 30 "$RUN/$name.log" >&2
            die "$name exited with status $rc before answering GET /health; command: $*"
        fi
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$URL/health" 2>/dev/null) || true
        [[ $code == 200 ]] && return 0
        if ((SECONDS >= deadline)); then
            echo "---- last lines of $RUN/$name.log:" >&2; tail -n 30 "$RUN/$name.log" >&2
            die "$name did not answer GET /health with 200 within ${START_TIMEOUT}s (last: '$code'); command: $*"
        fi
        sleep 0.1
    done
}

cpu_ticks() {  # utime+stime of a process (all its threads), in clock ticks; "" if it is gone
    local stat
    stat=$(<"/proc/$1/stat") 2>/dev/null || { echo ""; return; }
    stat=${stat##*) }          # drop "pid (comm) ": comm may hold spaces
    awk '{print $12 + $13}' <<<"$stat"
}

core_ticks() {  # "busy steal total" ticks of CPU $1 since boot (busy = not idle, not iowait, not steal)
    awk -v cpu="cpu$1" '$1 == cpu {
        total = 0; for (i = 2; i <= NF; i++) total += $i
        print total - $5 - $6 - $9, $9, total }' /proc/stat
}

pct() {  # pct BEFORE AFTER FIELD: 100 * delta(field) / delta(total) of two core_ticks lines
    awk -v a="$1" -v b="$2" -v f="$3" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        d = y[3] - x[3]; printf "%.0f", (d > 0 ? 100 * (y[f] - x[f]) / d : 0) }'
}

# wrk_run SCRIPT SECONDS LOGFILE [CONNS [SCRIPT_ARGS...]]: one wrk run pinned to
# CLIENT_CPU, bounded in time, with CONNS connections (default $CONNECTIONS).
# Prints "client_cpu_seconds" (user+sys of wrk) on stdout.
wrk_run() {
    local script=$1 secs=$2 logfile=$3 conns=${4:-$CONNECTIONS} t
    shift $(( $# < 4 ? $# : 4 ))
    local extra=()
    (($# == 0)) || extra=(-- "$@")
    TIMEFORMAT='%U %S'
    t=$( { time timeout --foreground -k 5 $((secs + 30)) \
             taskset -c "$CLIENT_CPU" wrk -t1 -c"$conns" -d"${secs}s" --timeout "$WRK_TIMEOUT" \
             --latency -s "$script" "$URL/" "${extra[@]}" >"$logfile" 2>&1 ; } 2>&1 ) \
        || { cat "$logfile" >&2; die "wrk failed or timed out; see $logfile"; }
    grep -q '^BENCH_RESULT ' "$logfile" || { cat "$logfile" >&2; die "wrk printed no BENCH_RESULT line ($logfile)"; }
    awk '{print $1 + $2}' <<<"$t"
}

field() {  # field NAME LOGFILE: a key=value from the BENCH_RESULT line
    grep '^BENCH_RESULT ' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"
}

is_lock_scenario() { [[ $1 == lock_pairs || $1 == handoff ]]; }

# verify_locks: how many lock handles the server has issued (a fresh server numbers
# them 1, 2, ...: a probe lock gets the next one). Every grant wrk saw took one.
verify_locks() {
    local out h
    out=$(curl -sf --max-time 10 -X POST "$URL/db/bench/lock/quick-sh-verify?dur=1") \
        || { echo "verify: probe lock request failed" >&2; return 1; }
    h=$(sed -n 's/.*"Lock":\([0-9][0-9]*\).*/\1/p' <<<"$out")
    [[ -n $h ]] || { echo "verify: no handle in $out" >&2; return 1; }
    echo $((h - 1))
}

# ---------------------------------------------------------------- one scenario
RESULTS=$RUN/results.tsv
printf 'idx\tsystem\tscenario\trequests\tduration_us\trps\tp50_us\tp99_us\tmax_us\tnon2xx\tconnect\tread\twrite\ttimeout\twarm_ok\twarm_non2xx\twarm_sock\tserver_cpu_pct\tclient_cpu_pct\tvmhwm_kb\tserver_core_busy_pct\tclient_core_busy_pct\tsteal_pct\talive\tapplied\tfirst_non2xx\tconns\tgrants\twarm_grants\tlocked\twarm_locked\tops\tops_rps\n' >"$RESULTS"
IDX=0

# scenario SYSTEM SCENARIO: start SYSTEM fresh, warm up, measure, verify, stop.
scenario() {
    local system=$1 name=$2 script
    IDX=$((IDX + 1))
    local tag="$IDX-$system-$name"
    local conns=$CONNECTIONS warm_args=() meas_args=()
    if is_lock_scenario "$name"; then
        [[ $name == handoff ]] && conns=$HANDOFF_CONNECTIONS
        # the warm-up's locks stay held after wrk stops: keep them out of the measured keys
        warm_args=(warm-)
    fi
    script=$BENCH/lua/$name.lua
    [[ -f $script ]] || die "no wrk script $script"
    if [[ $system == ceiling ]]; then
        start_server "$tag" "$PY" "$BENCH/ceiling_server.py" --port "$PORT"
    else
        local data
        data=$(mktemp -d "$DATA_ROOT/data-XXXXXX")
        DATA_DIRS+=("$data")
        start_server "$tag" "$PY" -m cdragon serve --listen "127.0.0.1:$PORT" --data-dir "$data"
    fi
    log "$tag: PID $SERVER_PID on CPU $SERVER_CPU; warm-up ${WARMUP}s, then ${DURATION}s with $conns connections"

    wrk_run "$script" "$WARMUP" "$RUN/$tag.warmup.wrk" "$conns" "${warm_args[@]}" >/dev/null
    # measured run, with CPU counters of the server process and both cores around it
    local t0 t1 s0 s1 c0 c1 client_s clk
    clk=$(getconf CLK_TCK)
    t0=$(cpu_ticks "$SERVER_PID")
    s0=$(core_ticks "$SERVER_CPU"); c0=$(core_ticks "$CLIENT_CPU")
    client_s=$(wrk_run "$script" "$DURATION" "$RUN/$tag.wrk" "$conns" "${meas_args[@]}")
    s1=$(core_ticks "$SERVER_CPU"); c1=$(core_ticks "$CLIENT_CPU")
    t1=$(cpu_ticks "$SERVER_PID")
    local f=$RUN/$tag.wrk w=$RUN/$tag.warmup.wrk
    local dur alive=yes vmhwm applied="" first_bad
    dur=$(field duration_us "$f")
    kill -0 "$SERVER_PID" 2>/dev/null || alive=no
    vmhwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$SERVER_PID/status" 2>/dev/null || true)
    if [[ $system != ceiling && $alive == yes ]] && is_lock_scenario "$name"; then
        applied=$(verify_locks 2>>"$RUN/$tag.verify") \
            || applied="verify failed: $(tr '\n\t' '  ' <"$RUN/$tag.verify" | cut -c1-200)"
    elif [[ $system != ceiling && $alive == yes ]]; then
        applied=$(cd "$REPO" && timeout 30 "$PY" "$BENCH/verify.py" "$name" "$PORT" 2>>"$RUN/$tag.verify") \
            || applied="verify failed: $(tr '\n\t' '  ' <"$RUN/$tag.verify" | cut -c1-200)"
    fi
    first_bad=$(sed -n 's/^BENCH_FIRST_NON2XX //p' "$f" "$w" | head -n1 | tr '\t' ' ' | cut -c1-200)
    local warm_ok warm_sock
    warm_ok=$(($(field requests "$w") - $(field non2xx "$w")))
    warm_sock=$(($(field connect "$w") + $(field read "$w") + $(field write "$w") + $(field timeout "$w")))
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$IDX" "$system" "$name" \
        "$(field requests "$f")" "$dur" "$(field rps "$f")" \
        "$(field p50_us "$f")" "$(field p99_us "$f")" "$(field max_us "$f")" \
        "$(field non2xx "$f")" "$(field connect "$f")" "$(field read "$f")" "$(field write "$f")" "$(field timeout "$f")" \
        "$warm_ok" "$(field non2xx "$w")" "$warm_sock" \
        "$( [[ -n $t0 && -n $t1 ]] && awk -v d=$((t1 - t0)) -v c="$clk" -v u="$dur" 'BEGIN {printf "%.0f", 100 * d / c / (u / 1e6)}')" \
        "$(awk -v s="$client_s" -v u="$dur" 'BEGIN {printf "%.0f", 100 * s / (u / 1e6)}')" \
        "${vmhwm:-}" \
        "$(pct "$s0" "$s1" 1)" "$(pct "$c0" "$c1" 1)" "$(pct "$s0" "$s1" 2)" \
        "$alive" "$applied" "$first_bad" \
        "$conns" "$(field grants "$f")" "$(field grants "$w")" "$(field locked "$f")" "$(field locked "$w")" \
        "$(field ops "$f")" "$(field ops_rps "$f")" >>"$RESULTS"
    if is_lock_scenario "$name"; then
        log "$tag: $(field ops_rps "$f") ops/s ($(field rps "$f") req/s), 409 locked $(field locked "$f"), errors $(field non2xx "$f"), server alive: $alive"
    else
        log "$tag: $(field rps "$f") req/s, non-2xx $(field non2xx "$f"), server alive: $alive"
    fi
    if [[ $alive == no ]]; then
        echo "---- $system crashed during the run; last lines of $RUN/$tag.log:" >&2
        tail -n 30 "$RUN/$tag.log" >&2
    fi
    stop_server
    wait_port_free
}

# ---------------------------------------------------------------- the run
{
    printf 'date\t%s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    printf 'uname\t%s\n' "$(uname -srm)"
    printf 'cpu\t%s\n' "$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n1), $(nproc) CPUs"
    printf 'loadavg\t%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
    printf 'python\t%s\n' "$("$PY" -c 'import platform; print(platform.python_version())')"
    printf 'packages\t%s\n' "$("$PY" -c '
from importlib.metadata import version, PackageNotFoundError
out = []
for p in ("uvloop", "httptools", "ujson", "lmdb", "cython"):
    try:
        out.append(f"{p} {version(p)}")
    except PackageNotFoundError:
        out.append(f"{p} (not installed)")
print(", ".join(out))')"
    printf 'wrk\t%s\n' "$(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2)"
    printf 'cdragon\t%s\n' "$(cd "$REPO" && "$PY" -m cdragon version 2>/dev/null | head -n1 || echo unknown)"
    printf 'git\t%s\n' "$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo 'no commit yet')"
    printf 'connections\t%s\n' "$CONNECTIONS"
    printf 'settings\t%s\n' "wrk -t1 -c$CONNECTIONS -d${DURATION}s --timeout $WRK_TIMEOUT after a ${WARMUP}s warm-up; server on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU; data dirs on $fstype ($DATA_ROOT)"
} >"$RUN/env.tsv"

log "logs in $RUN"
for ((r = 1; r <= ROUNDS; r++)); do
    scenario ceiling empty
    scenario cdragon atomic_add
    scenario ceiling empty
    scenario cdragon kvset64
    if [[ $LOCKS == 1 ]]; then
        scenario ceiling empty
        scenario cdragon lock_pairs
        scenario ceiling empty
        scenario cdragon handoff
    fi
done
scenario ceiling empty

status=0
"$PY" "$BENCH/report.py" "$RUN" "$BENCH/RESULTS.md" || status=$?
exit $status
