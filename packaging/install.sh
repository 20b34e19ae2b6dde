#!/bin/sh
# Install Cloud Dragon as a systemd service. Run as root; safe to run again (an upgrade
# replaces the binary and the units, never an existing config):
#
#     sudo sh install.sh [--instances N] [PATH/TO/cdragon]
#
# The binary is the argument, else ./cdragon beside this script, else dist/cdragon of
# the source tree this script is in. Installs:
#   /usr/local/bin/cdragon                 the single executable
#   /etc/systemd/system/cdragon.service    one server (data in /var/lib/cdragon)
#   /etc/systemd/system/cdragon@.service   one server per port (cdragon@8081, ...)
#   /etc/cdragon/cdragon.toml              the config, only if there is none yet
#   /etc/cdragon/cdragon.toml.example      the commented example, always refreshed
#   system user and group `cdragon`        owner of /var/lib/cdragon*, no login
#   /etc/systemd/system/cdragon.service.d/data-dir.conf
#                                          only when the config's data_dir lies outside
#                                          /var/lib/cdragon: ReadWritePaths= for it
# and checks the config with `cdragon check-config`. It does not start anything:
# `systemctl enable --now cdragon` does (or `systemctl restart cdragon` after an upgrade).
#
# --instances N (one host, N cores): also Debian's HAProxy (apt-get install haproxy when
# missing) on HAPROXY_BIND (default 127.0.0.1:8080) in front of cdragon@8081 ...
# cdragon@(8080+N) (FIRST_PORT=8081 by default), routing each account to its instance:
#   /etc/haproxy/haproxy.cfg               written by `cdragon haproxy-config` (a config
#                                          not written by it is kept as haproxy.cfg.orig)
#   /etc/haproxy/cdragon-pins.map          account -> instance pins, created empty
# Changing N on a host that already serves: the accounts that exist are pinned where
# they are first (`cdragon shard pin-all` with the old instances, which must be running;
# give the admin token as CDRAGON_TOKEN), so a new instance only gets new accounts.
# See packaging/README.md "Several instances behind HAProxy" and docs/SCALE-OUT.md.
#
# DESTDIR=/some/dir installs under that directory instead of / and then skips creating
# the user, chown and systemctl (for packaging and for tests).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
DESTDIR=${DESTDIR:-}
BINDIR=${BINDIR:-/usr/local/bin}
UNITDIR=${UNITDIR:-/etc/systemd/system}
CONFDIR=${CONFDIR:-/etc/cdragon}
USER_NAME=cdragon

say() { printf 'install.sh: %s\n' "$*"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

# --- what to install -------------------------------------------------------------------
instances=
while [ $# -ge 1 ]; do
    case $1 in
        --instances) [ $# -ge 2 ] || die "--instances needs a number"; instances=$2; shift 2 ;;
        --instances=*) instances=${1#--instances=}; shift ;;
        --) shift; break ;;
        -*) die "unknown option $1 (usage: sh install.sh [--instances N] [PATH/TO/cdragon])" ;;
        *) break ;;
    esac
done
if [ -n "$instances" ]; then
    case $instances in
        *[!0-9]* | 0*) die "--instances $instances: give a number from 1 to 64" ;;
    esac
    [ "$instances" -le 64 ] || die "--instances $instances: give a number from 1 to 64"
fi
[ $# -le 1 ] || die "too many arguments (usage: sh install.sh [--instances N] [PATH/TO/cdragon])"
if [ $# -ge 1 ]; then
    bin=$1
elif [ -f "$here/cdragon" ]; then
    bin=$here/cdragon
elif [ -f "$here/../dist/cdragon" ]; then
    bin=$here/../dist/cdragon
else
    die "no cdragon binary: give its path (sudo sh install.sh ./cdragon) or run 'make binary'"
fi
[ -f "$bin" ] || die "$bin: no such file"
for f in cdragon.service cdragon@.service cdragon.toml; do
    [ -f "$here/$f" ] || die "$here/$f is missing (keep install.sh beside the packaging files)"
done
if [ -z "$DESTDIR" ] && [ "$(id -u)" != 0 ]; then
    die "run as root (sudo sh $0), or set DESTDIR to stage the files elsewhere"
fi

# The binary unpacks itself into $TMPDIR (default /tmp) and loads libraries from there,
# which fails where /tmp is mounted noexec: run it from a private dir under /var/cache.
if [ -z "$DESTDIR" ]; then
    mkdir -p /var/cache
    TMPDIR=$(mktemp -d /var/cache/cdragon-install.XXXXXX)
    export TMPDIR
    trap 'rm -rf "$TMPDIR"' EXIT
fi
# refuse a binary that does not run here (other CPU, glibc too old, noexec $TMPDIR)
chmod +x "$bin" 2>/dev/null || true
if ! version=$("$bin" version 2>&1); then
    die "$bin does not run on this machine: $version
(it needs the glibc named in packaging/README.md or newer, and a \$TMPDIR that allows exec)"
fi
say "binary: $version"

# --- user ------------------------------------------------------------------------------
if [ -z "$DESTDIR" ]; then
    if getent passwd "$USER_NAME" >/dev/null 2>&1; then
        say "user $USER_NAME exists"
    else
        nologin=$(command -v nologin 2>/dev/null || echo /usr/sbin/nologin)
        [ -x "$nologin" ] || nologin=/bin/false
        if getent group "$USER_NAME" >/dev/null 2>&1; then
            useradd --system --gid "$USER_NAME" --home-dir /var/lib/cdragon --no-create-home \
                --shell "$nologin" --comment "Cloud Dragon" "$USER_NAME"
        else
            useradd --system --user-group --home-dir /var/lib/cdragon --no-create-home \
                --shell "$nologin" --comment "Cloud Dragon" "$USER_NAME"
        fi
        say "created system user $USER_NAME"
    fi
fi

# --- binary: copied beside, then renamed over (safe while the old one runs) ------------
mkdir -p "$DESTDIR$BINDIR"
cp "$bin" "$DESTDIR$BINDIR/.cdragon.new"
chmod 0755 "$DESTDIR$BINDIR/.cdragon.new"
mv -f "$DESTDIR$BINDIR/.cdragon.new" "$DESTDIR$BINDIR/cdragon"
say "installed $BINDIR/cdragon"

# --- units -------------------------------------------------------------------------------
mkdir -p "$DESTDIR$UNITDIR"
for f in cdragon.service cdragon@.service; do
    sed "s#/usr/local/bin/cdragon#$BINDIR/cdragon#g" "$here/$f" > "$DESTDIR$UNITDIR/.$f.new"
    chmod 0644 "$DESTDIR$UNITDIR/.$f.new"
    mv -f "$DESTDIR$UNITDIR/.$f.new" "$DESTDIR$UNITDIR/$f"
done
say "installed $UNITDIR/cdragon.service and $UNITDIR/cdragon@.service"

# --- config: never overwrite one that exists ---------------------------------------------
mkdir -p "$DESTDIR$CONFDIR"
chmod 0755 "$DESTDIR$CONFDIR"
cp "$here/cdragon.toml" "$DESTDIR$CONFDIR/cdragon.toml.example"
chmod 0644 "$DESTDIR$CONFDIR/cdragon.toml.example"
conf=$DESTDIR$CONFDIR/cdragon.toml
if [ -e "$conf" ]; then
    say "kept the existing $CONFDIR/cdragon.toml (the new example is cdragon.toml.example)"
else
    cp "$here/cdragon.toml" "$conf.new"
    # a first install gets an admin token: shown here once, only its hash kept
    made=$("$DESTDIR$BINDIR/cdragon" token new --name admin --access admin) || die "could not make a token"
    token=$(printf '%s\n' "$made" | head -n 1)
    { printf '\n# Made by install.sh on %s; the token itself was shown once. Settings go above\n' "$(date -u +%Y-%m-%d)"
      printf '# this point: in TOML every line after a [[token]] header belongs to that token.\n'
      printf '%s\n' "$made" | tail -n +3; } >> "$conf.new"
    chmod 0640 "$conf.new"
    [ -n "$DESTDIR" ] || chgrp "$USER_NAME" "$conf.new"
    mv "$conf.new" "$conf"
    say "installed $CONFDIR/cdragon.toml (edit it, then: systemctl enable --now cdragon)"
    say "admin token (shown this once; only its SHA-256 is in the config): $token"
    say "clients send it as: Authorization: Bearer <token>; make narrower ones with 'cdragon token new'"
fi
checked=$("$DESTDIR$BINDIR/cdragon" check-config "$conf") || die "fix $CONFDIR/cdragon.toml (see the message above)"
printf '%s\n' "$checked"

# --- data_dir outside the StateDirectory: a drop-in lets the unit write it ---------------
# ProtectSystem=strict leaves /var/lib/cdragon (StateDirectory=) writable and nothing
# else; a data_dir elsewhere must be listed in ReadWritePaths=, or the server exits 4
# ("read-only file system"). A relative data_dir is under WorkingDirectory=/var/lib/cdragon.
# The "-" prefix: should the directory go missing, the server says so and exits 4
# instead of systemd failing the start with 226/NAMESPACE (and restarting it forever).
# cdragon@.service passes --data-dir under /var/lib itself and needs nothing.
data_dir=${checked##* data_dir=}
dropin_dir=$UNITDIR/cdragon.service.d
dropin=$dropin_dir/data-dir.conf
marker="# Written by install.sh"
case $data_dir in
    /var/lib/cdragon | /var/lib/cdragon/* | [!/]*) outside= ;;
    *) outside=yes ;;
esac
case $data_dir in
    .. | ../* | */.. | */../*) die "data_dir $data_dir: give it without '..' components" ;;
    *[[:space:]\\\"\']*) [ -z "$outside" ] || die "data_dir $data_dir: a path with spaces, quotes or backslashes needs $dropin written by hand (packaging/README.md)" ;;
esac
if [ -n "$outside" ]; then
    mkdir -p "$DESTDIR$dropin_dir"
    escaped=$(printf '%s' "$data_dir" | sed 's/%/%%/g')   # % starts a systemd specifier
    printf '%s: data_dir in %s lies outside the StateDirectory,\n# and ProtectSystem=strict leaves everything else read-only. Run install.sh again\n# after changing data_dir.\n[Service]\nReadWritePaths=-%s\n' \
        "$marker" "$CONFDIR/cdragon.toml" "$escaped" > "$DESTDIR$dropin.new"
    chmod 0644 "$DESTDIR$dropin.new"
    mv -f "$DESTDIR$dropin.new" "$DESTDIR$dropin"
    say "installed $dropin: ReadWritePaths=-$escaped (data_dir is outside /var/lib/cdragon)"
    if [ -z "$DESTDIR" ] && [ ! -e "$data_dir" ]; then
        mkdir -p "$data_dir"
        chown "$USER_NAME:$USER_NAME" "$data_dir"
        chmod 0750 "$data_dir"
        say "created $data_dir (owner $USER_NAME)"
    elif [ -z "$DESTDIR" ] && [ "$(stat -c %U "$data_dir" 2>/dev/null)" != "$USER_NAME" ]; then
        say "note: $data_dir is not owned by $USER_NAME; the service must be able to write it"
    fi
elif [ -f "$DESTDIR$dropin" ] && head -n 1 "$DESTDIR$dropin" | grep -q "^$marker"; then
    rm -f "$DESTDIR$dropin"
    rmdir "$DESTDIR$dropin_dir" 2>/dev/null || true
    say "removed $dropin (data_dir is under /var/lib/cdragon again)"
fi

# --- several instances behind HAProxy (--instances N) ----------------------------------
if [ -n "$instances" ]; then
    HAPROXY_BIND=${HAPROXY_BIND:-127.0.0.1:8080}
    HAPROXY_DIR=${HAPROXY_DIR:-/etc/haproxy}
    pins=$HAPROXY_DIR/cdragon-pins.map
    sock=/run/haproxy/cdragon.sock
    cfg=$DESTDIR$HAPROXY_DIR/haproxy.cfg
    if ! command -v haproxy >/dev/null 2>&1; then
        if [ -z "$DESTDIR" ]; then
            say "installing Debian's haproxy"
            apt-get update -qq && apt-get install -y -qq haproxy >/dev/null || die "could not install haproxy"
        else
            say "note: haproxy is not installed here (DESTDIR set: not installing it)"
        fi
    fi
    FIRST_PORT=${FIRST_PORT:-8081}
    case $FIRST_PORT in *[!0-9]* | "" | 0*) die "FIRST_PORT=$FIRST_PORT: give a port number" ;; esac
    servers=
    ports=
    port=$FIRST_PORT
    while [ "$port" -lt $((FIRST_PORT + instances)) ]; do
        servers="$servers --server $port=127.0.0.1:$port"
        ports="$ports cdragon@$port"
        port=$((port + 1))
    done
    mkdir -p "$DESTDIR$HAPROXY_DIR"
    # a config we wrote before, for other instances: pin the accounts they hold first,
    # or the new hash (mod N) would send existing accounts to instances without their data
    old=
    if [ -f "$cfg" ]; then
        old=$(sed -n 's/^# cdragon-servers: //p' "$cfg")
    fi
    if [ -n "$old" ] && [ "$old" != "${servers# }" ]; then
        say "the instances change: pinning every existing account where it is first"
        # shellcheck disable=SC2086  # word splitting of the --server list is intended
        "$DESTDIR$BINDIR/cdragon" shard pin-all $old --pins "$DESTDIR$pins" --socket "$DESTDIR$sock" \
            || die "pin-all failed (above): with the old instances running, run
  sudo CDRAGON_TOKEN=<admin token> cdragon shard pin-all $old --pins $pins --socket $sock
then install.sh again. Nothing was changed in $HAPROXY_DIR."
    fi
    if [ -f "$cfg" ] && [ -z "$old" ] && [ ! -e "$cfg.orig" ]; then
        cp -p "$cfg" "$cfg.orig"
        say "kept the previous $HAPROXY_DIR/haproxy.cfg as haproxy.cfg.orig"
    fi
    user_flag=
    if [ -z "$DESTDIR" ] && getent passwd haproxy >/dev/null 2>&1; then
        user_flag="--user haproxy"
    fi
    # shellcheck disable=SC2086
    "$DESTDIR$BINDIR/cdragon" haproxy-config $servers --bind "$HAPROXY_BIND" \
        --pins "$DESTDIR$pins" --socket "$sock" $user_flag > "$cfg.new" || die "haproxy-config failed"
    if [ -n "$DESTDIR" ]; then       # the config names the real paths, not the staging ones
        sed "s#$DESTDIR$pins#$pins#g" "$cfg.new" > "$cfg.new2" && mv -f "$cfg.new2" "$cfg.new"
    fi
    chmod 0644 "$cfg.new"
    if [ -z "$DESTDIR" ] && command -v haproxy >/dev/null 2>&1; then
        haproxy -c -q -f "$cfg.new" || die "haproxy -c refused the generated config (kept as $cfg.new)"
    fi
    mv -f "$cfg.new" "$cfg"
    say "installed $HAPROXY_DIR/haproxy.cfg: HAProxy on $HAPROXY_BIND in front of$ports"
    say "pins (account -> instance) in $pins; runtime API at $sock"
    if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
        systemctl daemon-reload
        if systemctl is-enabled --quiet cdragon.service 2>/dev/null; then
            say "note: cdragon.service is enabled and also serves port 8081: systemctl disable --now cdragon"
        fi
        say "start them: systemctl enable --now$ports && systemctl enable haproxy && systemctl reload-or-restart haproxy"
    fi
fi

# --- systemd -----------------------------------------------------------------------------
if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    if systemctl is-active --quiet cdragon.service; then
        say "cdragon.service is running the old binary: systemctl restart cdragon"
    fi
    say "done. Start it: systemctl enable --now cdragon"
else
    say "done (systemd not running here or DESTDIR set: no daemon-reload)"
fi
