#!/bin/sh
# End-to-end check of install.sh and the units under a real systemd (PID 1), run INSIDE a
# throwaway container by packaging/run-systemd-e2e.py (systemd-nspawn, private network, the
# repo read-only at /src, results in /out). Never run it on a real host: it installs,
# starts, kills and breaks the service on purpose.
#
# Checks: Type=notify readiness (the notification comes from onefile's child process),
# the hardened unit runs as user cdragon with its state and cache dirs while /tmp is
# noexec, lock + KV survive a restart, a crash -> Restart=on-failure, a stale unpack
# dir is cleared, a clean stop is exit 0, two template instances side by side, a
# data_dir outside /var/lib fails (exit 4, no restart loop) until install.sh writes its
# ReadWritePaths= drop-in, a second server on the same data dir exits 3, and a broken
# config fails the start without a restart loop.
set -u
exec >/out/log 2>&1
STEP=start

finish() {  # the unit powers the container off when this script exits (SuccessAction=)
    echo "$1" >/out/rc
    exit "$1"
}
fail() {
    echo "FAIL [$STEP]: $*"
    systemctl --no-pager status 'cdragon*' || true
    journalctl --no-pager -o cat -n 80 || true
    finish 1
}
ok() { echo "ok: $*"; }
step() { STEP=$1; echo "--- $1"; }
prop() { systemctl show -p "$2" --value "$1"; }
http() {  # METHOD PORT PATH [BODY]
    if [ $# -ge 4 ]; then
        curl -sS -m 10 -X "$1" -H 'Content-Type: application/json' --data-binary "$4" "http://127.0.0.1:$2$3"
    else
        curl -sS -m 10 -X "$1" "http://127.0.0.1:$2$3"
    fi
}
expect() {  # WHAT ACTUAL EXPECTED
    [ "$2" = "$3" ] || fail "$1: got '$2', expected '$3'"
    ok "$1: $2"
}
count_mei() { find /var/cache/cdragon -maxdepth 1 -name '_MEI*' | wc -l; }
# the version /health reports: the one definition, cdragon/__init__.py's __version__
VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' /src/cdragon/__init__.py)
HEALTH_OK="{\"Status\":\"ok\",\"Version\":\"$VERSION\"}"
[ -n "$VERSION" ] || { echo "FAIL: no __version__ in /src/cdragon/__init__.py"; finish 1; }

step "noexec /tmp, as on hardened hosts"
mount -o remount,noexec /tmp 2>/dev/null || mount -t tmpfs -o noexec tmpfs /tmp || fail "cannot make /tmp noexec"
findmnt -no OPTIONS /tmp | grep -q noexec || fail "/tmp is not noexec"
ok "/tmp is noexec"

step install
sh /src/packaging/install.sh /src/dist/cdragon || fail "install.sh failed"
sh /src/packaging/install.sh /src/dist/cdragon >/dev/null || fail "install.sh is not idempotent"
systemctl daemon-reload
expect "user" "$(id -un cdragon)" "cdragon"

step "start (Type=notify)"
systemctl start cdragon || fail "systemctl start"
expect "state after start" "$(prop cdragon ActiveState)/$(prop cdragon SubState)" "active/running"
expect "status text" "$(prop cdragon StatusText)" "serving on 127.0.0.1:8081"
expect "health" "$(http GET 8081 /health)" "$HEALTH_OK"
main=$(prop cdragon MainPID)
expect "runs as" "$(ps -o user= -p "$main" | tr -d ' ')" "cdragon"
# LimitNOFILE=262144, or systemd's own hard limit where a sandbox caps it lower
cap=$(awk '/Max open files/ {print $5}' /proc/1/limits)
[ "$cap" = unlimited ] || [ "$cap" -gt 262144 ] && cap=262144
expect "open files limit" "$(awk '/Max open files/ {print $4}' "/proc/$main/limits")" "$cap"
expect "unpacked into the cache dir" "$(count_mei)" "1"
[ -f /var/lib/cdragon/data.mdb ] || fail "no /var/lib/cdragon/data.mdb"
ok "data in /var/lib/cdragon"

step "lock + KV"
expect "lock" "$(http POST 8081 '/db/a/lock/x?owner=t' | cut -c1-9)" '{"Lock":1'
expect "put" "$(http PUT 8081 /db/a/kv/k '"v"')" '{"Key":"k","Version":1}'
expect "get" "$(http GET 8081 /db/a/kv/k)" '{"Key":"k","Value":"v","Version":1}'

step "clean stop"
systemctl stop cdragon
expect "result" "$(prop cdragon Result)" "success"
expect "exit status" "$(prop cdragon ExecMainStatus)" "0"
expect "unpack dir removed" "$(count_mei)" "0"

step "restart keeps data and lock"
systemctl start cdragon || fail "systemctl start again"
expect "get after restart" "$(http GET 8081 /db/a/kv/k)" '{"Key":"k","Value":"v","Version":1}'
expect "lock still held" "$(http GET 8081 /db/a/lock/x | cut -c1-15)" '{"Locked":true,'

step "crash (SIGKILL of the server) -> Restart=on-failure"
main=$(prop cdragon MainPID)
server=$(pgrep -P "$main" | head -n 1)
[ -n "$server" ] || fail "no server process under the onefile parent $main"
kill -KILL "$server"
i=0
until [ "$(prop cdragon NRestarts)" = 1 ] && [ "$(prop cdragon SubState)" = running ]; do
    i=$((i + 1)); [ $i -lt 200 ] || fail "not restarted"; sleep 0.1
done
[ "$(prop cdragon MainPID)" != "$main" ] || fail "same MainPID"
expect "health after crash" "$(http GET 8081 /health)" "$HEALTH_OK"
expect "data after crash" "$(http GET 8081 /db/a/kv/k)" '{"Key":"k","Value":"v","Version":1}'
systemctl stop cdragon

step "an unpack dir left by a SIGKILLed start is cleared by ExecStartPre"
mkdir /var/cache/cdragon/_MEIstale && chown cdragon: /var/cache/cdragon/_MEIstale
systemctl start cdragon || fail "start"
[ ! -e /var/cache/cdragon/_MEIstale ] || fail "stale _MEIstale still there"
expect "unpack dirs" "$(count_mei)" "1"
systemctl stop cdragon

step "template instances"
systemctl start cdragon@8082 cdragon@8083 || fail "start instances"
expect "8082" "$(http GET 8082 /health)" "$HEALTH_OK"
expect "8083" "$(http GET 8083 /health)" "$HEALTH_OK"
http PUT 8082 /db/a/kv/only82 '1' >/dev/null
expect "instances have separate data" "$(http GET 8083 /db/a/kv/only82 | grep -c not_found)" "1"
[ -f /var/lib/cdragon-8082/data.mdb ] && [ -f /var/lib/cdragon-8083/data.mdb ] || fail "instance data dirs"
ok "data in /var/lib/cdragon-8082 and -8083"
systemctl stop cdragon@8082 cdragon@8083
expect "instance exit" "$(prop cdragon@8082 Result)" "success"

step "data_dir outside /var/lib/cdragon, no drop-in: exit 4, no restart loop"
cp /etc/cdragon/cdragon.toml /root/cdragon.toml.saved
sed -i 's#^data_dir = .*#data_dir = "/srv/cdragon-data"#' /etc/cdragon/cdragon.toml
mkdir -p /srv/cdragon-data && chown cdragon:cdragon /srv/cdragon-data
systemctl start cdragon && fail "started with data_dir outside ReadWritePaths="
sleep 3
expect "state" "$(prop cdragon ActiveState)" "failed"
expect "exit status" "$(prop cdragon ExecMainStatus)" "4"
expect "restarts" "$(prop cdragon NRestarts)" "0"
journalctl --no-pager -o cat -u cdragon | grep -q "read-only file system.*ReadWritePaths=" \
    || fail "no read-only file system line in the journal"
ok "the journal names ReadWritePaths="
systemctl reset-failed cdragon

step "install.sh again: the drop-in lets it start there"
sh /src/packaging/install.sh /src/dist/cdragon >/dev/null || fail "install.sh failed"
grep -qx 'ReadWritePaths=-/srv/cdragon-data' /etc/systemd/system/cdragon.service.d/data-dir.conf \
    || fail "no drop-in"
systemctl start cdragon || fail "start with the drop-in"
expect "health" "$(http GET 8081 /health)" '{"Status":"ok","Version":"0.1.0"}'
[ -f /srv/cdragon-data/data.mdb ] || fail "no /srv/cdragon-data/data.mdb"
ok "data in /srv/cdragon-data"

step "a second server on the same data dir: exit 3, naming the first"
owner=$(cat /srv/cdragon-data/cdragon.lock)
msg=$(runuser -u cdragon -- env TMPDIR=/var/cache/cdragon /usr/local/bin/cdragon serve \
      --listen 127.0.0.1:8099 --data-dir /srv/cdragon-data 2>&1)
expect "exit code" "$?" "3"
case $msg in *"PID $owner"*) ok "$msg" ;; *) fail "message: $msg" ;; esac
expect "the first still serves" "$(http PUT 8081 /db/a/kv/srv '1')" '{"Key":"srv","Version":1}'
systemctl stop cdragon
cp /root/cdragon.toml.saved /etc/cdragon/cdragon.toml
sh /src/packaging/install.sh /src/dist/cdragon >/dev/null || fail "install.sh failed"
[ ! -e /etc/systemd/system/cdragon.service.d/data-dir.conf ] || fail "drop-in not removed"
ok "drop-in removed with data_dir back in /var/lib/cdragon"

step "broken config: the start fails, no restart loop"
echo 'max_ops = 0' >>/etc/cdragon/cdragon.toml
# (by hand the binary needs an exec-able TMPDIR too: /tmp is noexec here)
msg=$(TMPDIR=/var/cache/cdragon /usr/local/bin/cdragon check-config /etc/cdragon/cdragon.toml 2>&1) \
    && fail "check-config accepted max_ops = 0"
case $msg in *"max_ops must be > 0"*) ok "check-config: $msg" ;; *) fail "check-config said: $msg" ;; esac
systemctl start cdragon && fail "started with a broken config"
sleep 3
expect "state" "$(prop cdragon ActiveState)" "failed"
expect "exit status" "$(prop cdragon ExecMainStatus)" "2"
expect "restarts" "$(prop cdragon NRestarts)" "0"

echo "ALL OK"
finish 0
