"""Scale-out behind HAProxy: the commands `cdragon haproxy-config` and `cdragon shard
pin-all` (docs/SCALE-OUT.md explains the why and the how).

- haproxy_cfg: the generated haproxy.cfg and the account -> instance hash;
- pins: the pins file (account -> instance), written atomically;
- runtime: HAProxy's runtime API, to change the pins of a running HAProxy;
- this module: argument parsing, talking to the instances, exit codes.

`shard move` (moving one account between instances) is meant to reuse
pins.set_pin and runtime.set_pin: file first, then the running HAProxy.
Never touches an instance's data: pin-all only reads `GET /admin/accounts`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from cdragon.shard import haproxy_cfg, pins, runtime

COMMANDS = ("haproxy-config", "shard")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class Failed(Exception):
    """One line for stderr, and the exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED):
        super().__init__(message)
        self.code = code


def _topology_args(p, socket_help: str) -> None:
    p.add_argument("--server", action="append", metavar="NAME=HOST:PORT", default=[],
                   help="an instance (repeat it, in the same order everywhere: the order decides "
                   "where unpinned accounts go)")
    p.add_argument("--pins", metavar="FILE", default=haproxy_cfg.DEFAULT_PINS,
                   help=f"the pins map file, account -> instance (default {haproxy_cfg.DEFAULT_PINS})")
    p.add_argument("--socket", metavar="PATH", default=haproxy_cfg.DEFAULT_SOCKET, help=socket_help)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"expected seconds in (0, 3600], got {text!r}")
    return value


def add_parsers(sub) -> None:
    """`haproxy-config` and `shard pin-all`."""
    hc = sub.add_parser(
        "haproxy-config", help="print a haproxy.cfg that routes each account to its instance",
        description="Print a complete haproxy.cfg (HAProxy 2.6+) for these instances: a request "
        "goes to the instance its account is pinned to in --pins, else to instance number "
        "crc32(account) mod N; an instance that is down gets its accounts 503, never another "
        "instance. Creates an empty pins file if there is none. See docs/SCALE-OUT.md.")
    _topology_args(hc, f"where HAProxy serves its runtime API (default {haproxy_cfg.DEFAULT_SOCKET})")
    hc.add_argument("--bind", metavar="ADDR:PORT", default=haproxy_cfg.DEFAULT_BIND,
                    help=f"where HAProxy listens (default {haproxy_cfg.DEFAULT_BIND})")
    hc.add_argument("--user", metavar="NAME",
                    help="run HAProxy as this user and its group of the same name once it has "
                    "set up (install.sh passes Debian's `haproxy`; default: no change)")
    shard = sub.add_parser("shard", help="manage which instance holds which account",
                           description="Account placement behind HAProxy (docs/SCALE-OUT.md).")
    ssub = shard.add_subparsers(dest="shard_cmd", metavar="SUBCOMMAND", required=True)
    pa = ssub.add_parser(
        "pin-all", help="pin every existing account to the instance that holds it",
        description="Read GET /admin/accounts of every --server and pin each account found to "
        "the instance it is on: in the pins file, then in the running HAProxy through its "
        "runtime API (no reload). Run it before adding an instance, so that only new accounts "
        "hash onto the new one. Pins of accounts found nowhere are kept. An account found on "
        "two instances is an error (nothing is changed). When no HAProxy listens on --socket, "
        "only the file is written (HAProxy reads it when it starts). Exit 0 when done, 1 on a "
        "failure (the pins file is still written when only HAProxy could not be told), 2 on "
        "bad arguments.")
    _topology_args(pa, "HAProxy's runtime API socket (the --socket of haproxy-config; default "
                   f"{haproxy_cfg.DEFAULT_SOCKET})")
    pa.add_argument("--token", help="an admin token for the instances (default: $CDRAGON_TOKEN)")
    pa.add_argument("--timeout", type=_seconds, default=60.0, metavar="SECONDS",
                    help="per instance answer (default 60)")


def run(args) -> int:
    try:
        if args.cmd == "haproxy-config":
            return _haproxy_config(args)
        return _pin_all(args)
    except haproxy_cfg.ConfigArgError as e:
        print(f"cdragon: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (Failed, pins.PinsError, runtime.HAProxyError) as e:
        print(f"cdragon: {e}", file=sys.stderr)
        return getattr(e, "code", EXIT_FAILED)


def _haproxy_config(args) -> int:
    instances = haproxy_cfg.parse_servers(args.server)
    pins_path, socket_path = os.path.abspath(args.pins), os.path.abspath(args.socket)
    text = haproxy_cfg.render(instances, args.bind, pins_path, socket_path, args.user)
    pins.ensure(pins_path)
    sys.stdout.write(text)
    return EXIT_OK


def fetch_accounts(inst: haproxy_cfg.Instance, token: str | None, timeout: float) -> list[str]:
    """The accounts an instance holds (GET /admin/accounts, asked directly)."""
    import http.client             # here: `cdragon serve` never needs it
    conn = http.client.HTTPConnection(inst.host, inst.port, timeout=timeout)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        conn.request("GET", "/admin/accounts", headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
    except (OSError, http.client.HTTPException) as e:
        raise Failed(f"instance {inst.name} at {inst.address}: {e}") from None
    finally:
        conn.close()
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if resp.status != 200:
        detail = (f"{body.get('Code')}: {body.get('Message')}" if isinstance(body, dict)
                  else repr(raw[:200]))
        raise Failed(f"instance {inst.name} at {inst.address}: GET /admin/accounts answered "
                     f"{resp.status} {detail}")
    try:
        return [a["Account"] for a in body["Accounts"]]
    except (TypeError, KeyError):
        raise Failed(f"instance {inst.name}: unexpected /admin/accounts answer {raw[:200]!r}") from None


def placement(instances: list[haproxy_cfg.Instance], token: str | None,
              timeout: float) -> dict[str, str]:
    """account -> the name of the instance holding it, from every instance."""
    where: dict[str, str] = {}
    clashes = []
    for inst in instances:
        for acc in fetch_accounts(inst, token, timeout):
            if acc in where and where[acc] != inst.name:
                clashes.append(f"{acc} ({where[acc]} and {inst.name})")
            where[acc] = inst.name
    if clashes:
        raise Failed("accounts held by two instances (a move left half done?), nothing pinned: "
                     + ", ".join(sorted(clashes)[:20]) + (" ..." if len(clashes) > 20 else ""))
    return where


def _pin_all(args) -> int:
    instances = haproxy_cfg.parse_servers(args.server)
    pins_path, socket_path = os.path.abspath(args.pins), os.path.abspath(args.socket)
    token = args.token or os.environ.get("CDRAGON_TOKEN")
    where = placement(instances, token, args.timeout)
    # file first: a HAProxy (re)started from here on routes by it
    everything = pins.update(pins_path, where)
    moved = sum(1 for acc, name in where.items()
                if haproxy_cfg.hashed_instance(acc, instances).name != name)
    print(f"pinned {len(where)} accounts in {pins_path} ({moved} of them away from their hash "
          f"slot; {len(everything)} pins in all)")
    if not runtime.listening(socket_path):
        print(f"HAProxy is not running (nothing listens at {socket_path}): it reads the pins "
              "file when it starts")
        return EXIT_OK
    try:
        runtime.replace_map(socket_path, pins_path, everything)
    except runtime.HAProxyError as e:
        raise Failed(f"{e}; the pins file is written: HAProxy routes by it once it is reloaded") from None
    print(f"HAProxy at {socket_path} routes by the new pins")
    return EXIT_OK
