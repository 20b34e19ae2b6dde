# Shell helpers shared by bench/quick.sh and bench/watch.sh (sourced, not run).

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
