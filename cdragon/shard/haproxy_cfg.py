"""The haproxy.cfg that puts N share-nothing instances behind one HAProxy, routed by
account (`cdragon haproxy-config`), and the account -> instance hash HAProxy applies.

Routing, in the order HAProxy evaluates it:
1. the account is taken from the request: the third path segment of `/db/{acc}...`,
   `/watch/{acc}` and `/queue/{acc}`, or the `acc` query parameter of `/admin/export`;
2. the pins map (account -> instance name) is looked up first;
3. an unpinned account goes to instance number `crc32(account) mod N`, N being the
   number of `--server`s in the order given (`slot()` below computes the same number);
4. each instance is its own backend with its one server, so when that server is down
   the request gets 503 `unavailable`: never another instance, which lacks the data.
   (HAProxy's `balance hash` would re-hash onto live servers: split brain.)
`/health` and `/ready` go to any live instance; everything else has no account and is
answered 404 by HAProxy itself. Every answer HAProxy makes is our JSON error shape.

Owns the text of the config only; it never talks to HAProxy (cdragon.shard.runtime
does) and never writes the pins file (cdragon.shard.pins does).
"""
from __future__ import annotations

import ipaddress
import json
import re
import zlib
from dataclasses import dataclass

NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
DEFAULT_BIND = "127.0.0.1:8080"
DEFAULT_PINS = "/etc/haproxy/cdragon-pins.map"
DEFAULT_SOCKET = "/run/haproxy/cdragon.sock"

# Longest wait a request may park for (max_lock_wait, the longest long-poll: 300 s by
# default) plus slack: HAProxy must not cut a long-poll the instance would still answer.
LONG_POLL_TIMEOUT = "330s"

# Every status HAProxy may answer itself, as our JSON error (API.md "Errors"). 503 is
# the one clients must expect: the account's instance is down.
HAPROXY_ERRORS = {
    400: ("bad_request", "malformed HTTP request (refused by the load balancer)"),
    401: ("unauthorized", "unauthorized"),
    403: ("forbidden", "refused by the load balancer"),
    404: ("not_found", "no such route"),
    405: ("method_not_allowed", "method not allowed"),
    408: ("request_timeout", "request not received in time (load balancer)"),
    410: ("not_found", "gone"),
    413: ("too_large", "request too large for the load balancer"),
    425: ("too_early", "too early"),
    429: ("too_many", "too many requests (load balancer)"),
    500: ("internal", "load balancer internal error"),
    501: ("not_implemented", "not implemented by the load balancer"),
    502: ("unavailable", "the instance of the account failed to answer (it may have stopped)"),
    503: ("unavailable", "the instance holding this account is down"),
    504: ("unavailable", "the instance of the account did not answer in time"),
}


class ConfigArgError(ValueError):
    """A bad --server/--bind value; the command prints it and exits 2."""


@dataclass(frozen=True)
class Instance:
    name: str
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def backend(self) -> str:
        return f"cdragon_{self.name}"


def parse_host_port(text: str, what: str) -> tuple[str, int]:
    """HOST:PORT or [IPv6]:PORT."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^\s:\[\]]+):(\d{1,5})", text)
    if not m:
        raise ConfigArgError(f"{what}: expected HOST:PORT or [IPV6]:PORT, got {text!r}")
    host, port = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    if m.group(1):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigArgError(f"{what}: {host!r} is not an IPv6 address") from None
    if not 1 <= int(port) <= 65535:
        raise ConfigArgError(f"{what}: port {port} is out of range 1..65535")
    return host, int(port)


def parse_servers(specs: list[str]) -> list[Instance]:
    """--server NAME=HOST:PORT ..., in order (the order decides the hash slots)."""
    if not specs:
        raise ConfigArgError("give at least one --server NAME=HOST:PORT")
    out, seen = [], set()
    for spec in specs:
        name, sep, addr = spec.partition("=")
        if not sep or not NAME_RE.fullmatch(name):
            raise ConfigArgError(f"--server {spec!r}: expected NAME=HOST:PORT, NAME of letters, "
                                 "digits, '_', '.', '-' (at most 64)")
        if name in seen:
            raise ConfigArgError(f"--server {name} is given twice")
        seen.add(name)
        out.append(Instance(name, *parse_host_port(addr, f"--server {spec}")))
    return out


def slot(account: str, n: int) -> int:
    """The instance number HAProxy picks for an unpinned account: `crc32,mod(n)` of the
    config (zlib's CRC-32 is the one HAProxy's `crc32` converter computes)."""
    return zlib.crc32(account.encode("utf-8")) % n


def hashed_instance(account: str, instances: list[Instance]) -> Instance:
    return instances[slot(account, len(instances))]


def _json_string(status: int) -> str:
    code, message = HAPROXY_ERRORS[status]
    # single-quoted in the config: no ' and no \ in our messages (checked at import)
    return json.dumps({"Code": code, "Message": message}, separators=(",", ":"))


for _status in HAPROXY_ERRORS:
    assert "'" not in _json_string(_status) and "\\" not in _json_string(_status)


SERVERS_LINE = "# cdragon-servers:"   # install.sh reads the instances back from this line


def render(instances: list[Instance], bind: str, pins_path: str, socket_path: str,
           user: str | None = None) -> str:
    """The whole haproxy.cfg. `pins_path` and `socket_path` should be absolute: the
    runtime API names the map by the very path written here. `user`: HAProxy drops root
    for that user and its group once the map, socket and port are set up."""
    if user is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}", user):
        raise ConfigArgError(f"--user {user!r} is not a user name")
    for flag, path in (("--pins", pins_path), ("--socket", socket_path)):
        if re.search(r"[\s'\"\\#]", path):
            raise ConfigArgError(f"{flag} {path!r}: a path with spaces, quotes, '\\' or '#' cannot "
                                 "be written into haproxy.cfg")
    bind_host, bind_port = parse_host_port(bind, "--bind")
    bind_addr = f"[{bind_host}]:{bind_port}" if ":" in bind_host else f"{bind_host}:{bind_port}"
    n = len(instances)
    names = " ".join(i.name for i in instances)
    errors = "\n".join(f"    http-error status {s} content-type application/json string '{_json_string(s)}'"
                       for s in HAPROXY_ERRORS)
    slots = "\n".join(f"    http-request set-var(txn.inst) str({i.name}) if has_slot {{ var(txn.slot) -m int {k} }}"
                      for k, i in enumerate(instances))
    uses = "\n".join(f"    use_backend {i.backend} if {{ var(txn.inst) -m str {i.name} }}" for i in instances)
    backends = "\n\n".join(
        f"backend {i.backend}\n"
        f"    # one server: when it is down its accounts get 503, never another instance\n"
        f"    server {i.name} {i.address} check" for i in instances)
    servers_line = " ".join(f"--server {i.name}={i.address}" for i in instances)
    drop = f"\n    user {user}\n    group {user}" if user else ""
    probes = "\n".join(f"    server {i.name} {i.address} track {i.backend}/{i.name}" for i in instances)
    return f"""\
# Generated by `cdragon haproxy-config` for the instances {names}.
# Regenerate it rather than editing it: the order of the --server flags decides where
# unpinned accounts live (crc32(account) mod {n}), and the pins file
#   {pins_path}
# (account -> instance, kept by `cdragon shard pin-all`) must keep every existing
# account where its data is before an instance is added. See docs/SCALE-OUT.md.
{SERVERS_LINE} {servers_line}

global
    # the runtime API: `set map` / `add map` re-pin accounts without a reload
    stats socket {socket_path} mode 600 level admin
    stats timeout 30s{drop}
    # no maxconn: HAProxy sizes it from the descriptor limit it gets (systemd's
    # LimitNOFILE); connections parked on long-polls must not run out of room
    log stderr format short local0 notice

defaults
    mode http
    log global
    option httplog
    option log-separate-errors
    option dontlognull
    timeout connect 5s
    timeout http-request 10s
    timeout http-keep-alive 75s
    # above the longest long-poll (watch, lock wait, queue receive: 300 s at most)
    timeout client {LONG_POLL_TIMEOUT}
    timeout server {LONG_POLL_TIMEOUT}
    timeout tunnel {LONG_POLL_TIMEOUT}
    timeout queue 5s
    # a retry happens only when no connection was made (the request never left here),
    # and never to another server: each backend has one, and redispatch is off
    retries 2
    retry-on conn-failure
    no option redispatch
    # /ready marks an instance down after 2 failed checks 1 s apart (within 5 s)
    option httpchk
    http-check send meth GET uri /ready
    http-check expect status 200
    default-server inter 1s fastinter 500ms downinter 1s fall 2 rise 2
{errors}

frontend cdragon
    bind {bind_addr}
    acl acc_path path_beg /db/ /watch/ /queue/
    acl export path /admin/export
    acl probe path /health /ready
    http-request set-var(txn.acc) path,field(3,/) if acc_path
    http-request set-var(txn.acc) urlp(acc),url_dec if export
    acl has_acc var(txn.acc) -m len ge 1
    # a pinned account goes where its pin says
    http-request set-var(txn.inst) var(txn.acc),map({pins_path}) if has_acc
    acl pinned var(txn.inst) -m found
    # else crc32(account) mod {n} picks the instance (the order of the servers below)
    http-request set-var(txn.slot) var(txn.acc),crc32,mod({n}) if has_acc !pinned
    acl has_slot var(txn.slot) -m found
{slots}
    acl known_inst var(txn.inst) -m str {names}
    # an account pinned to a name that is no instance here
    http-request return status 503 content-type application/json string '{{"Code":"unavailable","Message":"the account is pinned to an instance this load balancer does not know"}}' if has_acc !known_inst
    # /metrics, /admin/* without an account, anything else: not routed (ask an instance)
    http-request return status 404 content-type application/json string '{{"Code":"not_found","Message":"no such route through the load balancer (for /metrics and /admin ask an instance directly)"}}' if !has_acc !probe
{uses}
    use_backend cdragon_any if probe

{backends}

backend cdragon_any
    # /health and /ready: any live instance answers
    balance roundrobin
    option redispatch
{probes}
"""
