# Shell helpers shared by the bench shell scripts (sourced, not run).

# stop_pid PID: SIGTERM, wait up to $STOP_TIMEOUT s, then SIGKILL; only a PID we started
stop_pid() {
    local pid=$1 deadline=$((SECONDS + STOP_TIMEOUT))
    kill -TERM "$pid" 2>/dev/null || return 0
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            echo "$(basename "$0"): PID $pid ignored SIGTERM for ${STOP_TIMEOUT}s: SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
    done
    wait "$pid" 2>/dev/null || true
}

# install_cleanup STOP_FN: on exit run STOP_FN, remove DATA_DIRS (unless KEEP_DATA=1) and
# keep the exit status; INT and TERM exit 130 / 143 through it.
install_cleanup() {
    CLEANUP_STOP=$1
    trap _bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

_bench_cleanup() {
    local rc=$?
    "$CLEANUP_STOP"
    if [[ ${KEEP_DATA:-0} != 1 ]]; then
        for d in "${DATA_DIRS[@]}"; do rm -rf -- "$d"; done
    fi
    exit $rc
}

# free_port: a loopback port nothing listens on now (bench/ports.py, the one port picker)
free_port() { python3 "$(dirname "${BASH_SOURCE[0]}")/ports.py"; }

# start_checkout REPO DIR: `python -m cdragon serve` from checkout REPO (its own build) on
# $SERVER_CPU (0) and a free loopback port, data in DIR/data, log in DIR/server.log; sets
# SERVER_PID and SERVER_PORT and returns once /health answers (or after 10 s).
start_checkout() {
    local repo=$1 dir=$2 lib_dir cap
    lib_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    SERVER_PORT=$(free_port)
    # the suite's storage cap (bench/knobs.py): the 10 KB rows outgrow the 2 GiB default
    cap=$(cd "$lib_dir" && python3 -c 'from knobs import CDRAGON_MAX_STORAGE; print(CDRAGON_MAX_STORAGE)')
    (cd "$repo" && CDRAGON_MAX_STORAGE_BYTES=$cap exec taskset -c "${SERVER_CPU:-0}" "$lib_dir/../.venv/bin/python" -m cdragon serve \
        --listen "127.0.0.1:$SERVER_PORT" --data-dir "$dir/data" >"$dir/server.log" 2>&1) &
    SERVER_PID=$!
    for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$SERVER_PORT/health" && break; sleep 0.1; done
}
