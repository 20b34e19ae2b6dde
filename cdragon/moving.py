"""Accounts frozen for a move (`cdragon shard move`), and their admin route.

While an account moves to another instance, this instance refuses its writes (503
`moving`, Retry-After: 1: the client retries and, once HAProxy's map points at the new
instance, lands there), answers its parked watches and lock waiters the same way, and
still serves its reads. The frozen set is kept in `<data_dir>/frozen-accounts.json`
(written atomically), so a restart in the middle of a move keeps refusing those writes;
the account stays frozen here after the move as well, so that a request routed here by
a stale map can never write beside the new copy. The enforcement is in the request
path (cdragon/core: Server.freeze, the router, the lock table, the watch hub).

`/admin/freeze?acc=A`: POST freezes (answered once every write accepted before it is
in LMDB, so an export taken next holds them all), DELETE thaws, GET lists.
"""
from __future__ import annotations

import json
import os

from cdragon._core import ApiError, checked_account
from cdragon.wal import fsync_dir

FILE = "frozen-accounts.json"


def path(data_dir: str) -> str:
    return os.path.join(data_dir, FILE)


def load(server, data_dir: str) -> None:
    """Freeze again what was frozen before a restart."""
    try:
        with open(path(data_dir)) as f:
            names = json.load(f)
    except FileNotFoundError:
        return
    for name in names:
        server.freeze(name.encode())


def _save(server, data_dir: str) -> None:
    tmp = path(data_dir) + ".tmp"
    with open(tmp, "w") as f:
        json.dump([a.decode() for a in server.frozen_accounts], f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path(data_dir))
    fsync_dir(data_dir)


def _account(params: dict) -> bytes:
    acc = params.get("acc")
    if acc is None:
        raise ApiError(400, "bad_request", "query parameter acc is required")
    return checked_account(acc)


async def admin_freeze(admin, method: str, params: dict):
    server, data_dir = admin.server, admin.cfg.data_dir
    if method in ("GET", "HEAD"):
        return 200, {"Frozen": [a.decode() for a in server.frozen_accounts]}
    acc = _account(params)
    if method == "POST":
        server.freeze(acc)
        _save(server, data_dir)
        lsn = await admin.checkpoint()     # every write accepted before the freeze is in LMDB
        return 200, {"Account": acc.decode(), "Frozen": True, "Rev": lsn}
    server.thaw(acc)
    _save(server, data_dir)
    return 200, {"Account": acc.decode(), "Frozen": False}


async def admin_purge(admin, params: dict):
    """POST /admin/purge?acc=A: delete everything of a frozen account (a move's last
    step on the instance it left), answered once durable."""
    from cdragon._core import purge_account
    acc = _account(params)
    rev = await admin.staged(lambda on_durable: purge_account(admin.server, acc, on_durable), "the purge")
    return 200, {"Account": acc.decode(), "Purged": True, "Rev": rev}
