"""`cdragon shard move ACC --to NAME`: move one account to another instance.

The steps, each on an instance's admin routes (docs/API.md "Admin routes"):
1. find where the account is (every instance's /admin/accounts; none: only pin it);
2. thaw it on the target (it may have moved away from there before);
3. freeze it on the source: from here its writes get 503 `moving` (Retry-After: 1),
   its parked watches and lock waiters are answered so, and the freeze's answer comes
   once every write accepted before it is in the source's store;
4. export it from the source and import it on the target (mode=replace: all or
   nothing; versions, revisions, held locks and their handles kept, the target's
   handles raised above them);
5. pin it to the target: the pins file first (a HAProxy started from now on routes by
   it), then the running HAProxy through its runtime API (no reload);
6. purge it on the source, where it stays frozen: a request still routed there by a
   stale map is answered 503 `moving` and retried, so it can never write beside the
   new copy.
A failure before step 5 thaws the source again: nothing moved, nothing lost. A failure
after the import says what is left to do (re-running the command finishes it).
"""
from __future__ import annotations

import json
import os
import urllib.parse

from cdragon.shard import client, haproxy_cfg, pins, runtime


class MoveFailed(Exception):
    pass


def _ok(inst, method: str, path: str, token, timeout: float, body: bytes | None = None) -> bytes:
    status, raw = client.call(inst, method, path, token, timeout, body)
    if status != 200:
        raise MoveFailed(f"{inst.name}: {method} {path.split('?')[0]} answered {client.describe(status, raw)}")
    return raw


def move(account: str, to: str, instances: list, pins_path: str, socket_path: str, token,
         timeout: float, say=print) -> None:
    by_name = {i.name: i for i in instances}
    if to not in by_name:
        raise MoveFailed(f"--to {to}: no --server of that name (have {', '.join(by_name)})")
    target = by_name[to]
    q = "?" + urllib.parse.urlencode({"acc": account})
    holders = [i for i in instances if account in client.accounts(i, token, timeout)]
    others = [i for i in holders if i is not target]
    if len(others) > 1:
        raise MoveFailed(f"{account} is held by {', '.join(i.name for i in holders)}: resolve by hand")
    if others:
        source = others[0]
        if target in holders:
            # a move cut short after its import: the target's copy came from the frozen source
            say(f"{account} is on {source.name} and {target.name} (an earlier move stopped after "
                f"its import): importing again")
        _ok(target, "DELETE", "/admin/freeze" + q, token, timeout)
        _ok(source, "POST", "/admin/freeze" + q, token, timeout)
        say(f"{account}: writes on {source.name} paused (503 moving)")
        try:
            dump = _ok(source, "GET", "/admin/export" + q, token, timeout)
            if not dump.rstrip().endswith(b"}") or b'"End"' not in dump.rstrip().rsplit(b"\n", 1)[-1]:
                raise MoveFailed(f"{source.name}: the export was cut off")
            answer = json.loads(_ok(target, "POST", "/admin/import?mode=replace", token, timeout, dump))
        except Exception:
            client.call(source, "DELETE", "/admin/freeze" + q, token, timeout)
            say(f"{account}: move abandoned, writes on {source.name} resumed")
            raise
        say(f"{account}: {answer.get('Records')} records copied to {target.name}")
    elif target in holders:
        source = None
        say(f"{account} is already on {target.name}")
    else:
        source = None
        say(f"{account} holds nothing yet: only pinning it")
    try:
        pins.set_pin(pins_path, account, target.name)
        if runtime.listening(socket_path):
            runtime.set_pin(socket_path, pins_path, account, target.name)
            say(f"{account}: HAProxy routes it to {target.name}")
        else:
            say(f"{account}: pinned in {pins_path} (no HAProxy at {socket_path})")
    except (pins.PinsError, runtime.HAProxyError) as e:
        raise MoveFailed(f"{account} is copied to {target.name} but not re-pinned ({e}); its "
                         "writes stay paused: run the same command again") from None
    if source is not None:
        _ok(source, "POST", "/admin/purge" + q, token, timeout)
        say(f"{account}: deleted from {source.name} (which keeps answering it 503 moving)")


def add_parser(ssub, topology_args, seconds) -> None:
    mv = ssub.add_parser(
        "move", help="move one account to another instance (its writes pause meanwhile)",
        description="Move an account to the instance --to: its writes are refused (503 moving, "
        "Retry-After: 1) while it is exported from the instance holding it and imported on the "
        "target; then it is pinned to the target in the pins file and in the running HAProxy, "
        "and deleted from the source. Reads are served throughout. Exit 0 when done, 1 on a "
        "failure (the message says what state it left), 2 on bad arguments.")
    mv.add_argument("account", metavar="ACC")
    mv.add_argument("--to", required=True, metavar="NAME", help="the instance to move it to")
    topology_args(mv, "HAProxy's runtime API socket (the --socket of haproxy-config; default "
                  f"{haproxy_cfg.DEFAULT_SOCKET})")
    mv.add_argument("--token", help="an admin token for the instances (default: $CDRAGON_TOKEN)")
    mv.add_argument("--timeout", type=seconds, default=300.0, metavar="SECONDS",
                    help="per request to an instance (default 300: an export or import of a big account)")


def run(args) -> None:
    instances = haproxy_cfg.parse_servers(args.server)
    if not pins.ACCOUNT_RE.fullmatch(args.account):
        raise haproxy_cfg.ConfigArgError(f"{args.account!r} is not an account name")
    move(args.account, args.to, instances, os.path.abspath(args.pins), os.path.abspath(args.socket),
         args.token or os.environ.get("CDRAGON_TOKEN"), args.timeout)
