"""Export and account listing: reading a consistent snapshot of LMDB in a child process.

`GET /admin/export` and `GET /admin/accounts` first force a checkpoint (so LMDB holds
every acknowledged write), then run a child, `cdragon _export` or `cdragon _accounts`,
that opens the same LMDB environment read-only (LMDB allows readers in other
processes) and reads it in ONE read transaction: one consistent snapshot, taken while
the server goes on serving and writing. The export child writes NDJSON to its stdout
in chunks as it walks the sub-databases (never the whole dump in memory); the server
streams that stdout to the client (Admin.stream_child).

Owns: the export format's writer (API.md "Backups, export and import"; the reader is
cdragon.importer and core/importer.pyx), the per-account counts of /admin/accounts,
the two admin handlers for them, and the command line of `cdragon export` / `import`
and of the hidden child commands. The LMDB record encodings read here are those of
core/store.pyx (kv, counter, seq, idem, meta `rev\\0<acc>`) and core/locks.pyx (lock).
"""
from __future__ import annotations

import json
import os
import struct
import sys
import time

from cdragon import __version__

_I64 = struct.Struct("<q")
_F64BE = struct.Struct(">d")
KV_HAS_EXPIRY = 1 << 62          # core/store.pyx: the version's flag for "an expiry follows"
_CHUNK = 256 * 1024              # bytes of NDJSON written to stdout at a time
NDJSON = b"application/x-ndjson"


# ---- reading LMDB (child processes) -------------------------------------------------------
def open_snapshot(data_dir: str):
    """(env, read transaction, {db name: handle}) of the server's LMDB, read-only. The
    server may have grown the map since the file was sized: then adopt its size."""
    import lmdb
    env = lmdb.open(data_dir, readonly=True, lock=True, max_dbs=16, subdir=True, create=False)
    for _ in range(5):
        try:
            txn = env.begin(buffers=False)
            break
        except lmdb.MapResizedError:
            env.set_mapsize(0)
    else:
        raise RuntimeError("the LMDB map keeps growing under the reader")
    dbs = {}
    for name in (b"kv", b"counter", b"seq", b"lock", b"idem", b"meta", b"qmsg", b"qdedup",
                 b"ratelimit"):
        try:
            dbs[name] = env.open_db(name, txn=txn, create=False)
        except lmdb.NotFoundError:
            dbs[name] = None              # never written: empty
    return env, txn, dbs


def _records(txn, db, head: bytes):
    """(key, value) of a sub-database, all of it or the keys starting with `head`."""
    if db is None:
        return
    cur = txn.cursor(db)
    if not cur.set_range(head):
        return
    for k, v in cur.iternext(True, True):
        if not k.startswith(head):
            return
        yield k, v


def _split(k: bytes) -> tuple[bytes, bytes]:
    i = k.index(b"\0")
    return k[:i], k[i + 1:]


def _js(b: bytes) -> bytes:
    """A JSON string literal of UTF-8 bytes (accounts and keys are valid UTF-8)."""
    return json.dumps(b.decode("utf-8"), ensure_ascii=False).encode("utf-8")


def _kv_parts(v: bytes) -> tuple[int, float, bytes]:
    """(version, expiry or 0, JSON value) of a kv record (core/store.pyx kv_record)."""
    ver = _I64.unpack_from(v)[0]
    if ver & KV_HAS_EXPIRY:
        return ver & ~KV_HAS_EXPIRY, _F64BE.unpack_from(v, 8)[0], v[16:]
    return ver, 0.0, v[8:]


def export_lines(txn, dbs, acc: bytes | None, now: float):
    """The dump's record lines (bytes, without newline), in sub-database order;
    expired keys, locks and idempotency ids are left out."""
    head = b"" if acc is None else acc + b"\0"
    for k, v in _records(txn, dbs[b"meta"], b"rev\0" + (acc or b"")):
        a = k[4:]
        if acc is None or a == acc:
            yield b'{"Acc":%s,"Rev":%d}' % (_js(a), _I64.unpack(v)[0])
    for k, v in _records(txn, dbs[b"kv"], head):
        ver, exp, val = _kv_parts(v)
        if exp and exp <= now:
            continue
        a, key = _split(k)
        line = b'{"Acc":%s,"KV":%s,"Value":%s,"Version":%d' % (_js(a), _js(key), val, ver)
        yield line + (b',"Expires":%s}' % repr(exp).encode() if exp else b"}")
    for name, kind in ((b"counter", b"Counter"), (b"seq", b"Seq")):
        for k, v in _records(txn, dbs[name], head):
            n = _I64.unpack(v)[0]
            if n:                            # a sequence reset to 0 by an import is none
                a, key = _split(k)
                yield b'{"Acc":%s,"%s":%s,"Value":%d}' % (_js(a), kind, _js(key), n)
    for k, v in _records(txn, dbs[b"lock"], head):
        handle = _I64.unpack_from(v)[0]
        till = _F64BE.unpack_from(v, 8)[0]
        if till <= now:
            continue
        a, key = _split(k)
        owner = _js(v[16:]) if len(v) > 16 else b"null"
        yield b'{"Acc":%s,"Lock":%s,"Handle":%d,"Till":%s,"Owner":%s}' % (
            _js(a), _js(key), handle, repr(till).encode(), owner)
    for k, v in _records(txn, dbs[b"idem"], head):
        exp = _F64BE.unpack(v)[0]
        if exp <= now:
            continue
        a, key = _split(k)
        yield b'{"Acc":%s,"Idem":%s,"Expires":%s}' % (_js(a), _js(key), repr(exp).encode())
    yield from queue_lines(txn, dbs, head, now)
    yield from ratelimit_lines(txn, dbs, head, now)


def ratelimit_lines(txn, dbs, head: bytes, now: float):
    """The dump's limiter states (core/ratelimit.pyx: ratelimit acc\0key -> TAT, int64
    epoch nanoseconds): {"Acc", "RateLimit": key, "TAT": ns}; a state that has fully
    recovered (TAT <= now) is the same as none and is left out."""
    now_ns = int(now * 1e9)
    for k, v in _records(txn, dbs[b"ratelimit"], head):
        tat = _I64.unpack(v)[0]
        if tat > now_ns:
            a, key = _split(k)
            yield b'{"Acc":%s,"RateLimit":%s,"TAT":%d}' % (_js(a), _js(key), tat)


# the queue records of core/queues.pyx: qmsg acc\0queue\0id (8 bytes, big-endian) ->
# due, sent, till (visibility deadline, 0: none), attempts, max attempts, receipt check,
# group length (_QREC), group, JSON body; qdedup acc\0queue\0dedup id -> id, expiry
_QREC = struct.Struct(">dddiiIH")
_QID = struct.Struct(">q")
_QDEDUP = struct.Struct(">qd")


def queue_lines(txn, dbs, head: bytes, now: float):
    """The dump's "Msg" and "Dedup" lines (a delivery in flight keeps its Till; its
    receipt does not travel)."""
    for k, v in _records(txn, dbs[b"qmsg"], head):
        a, rest = _split(k)
        due, sent, till, attempts, maxatt, _tag, glen = _QREC.unpack_from(v)
        line = b'{"Acc":%s,"Queue":%s,"Msg":"%d","Body":%s,"Due":%s,"Sent":%s,"Attempts":%d,"MaxAttempts":%d' % (
            _js(a), _js(rest[:-9]), _QID.unpack_from(rest, len(rest) - 8)[0], v[_QREC.size + glen:],
            repr(due).encode(), repr(sent).encode(), attempts, maxatt)
        if glen:
            line += b',"Group":%s' % _js(v[_QREC.size:_QREC.size + glen])
        yield line + (b',"Till":%s}' % repr(till).encode() if till > now else b"}")
    for k, v in _records(txn, dbs[b"qdedup"], head):
        mid, exp = _QDEDUP.unpack(v)
        if exp > now:
            a, rest = _split(k)
            q, dedup = _split(rest)
            yield b'{"Acc":%s,"Queue":%s,"Dedup":%s,"ID":"%d","Expires":%s}' % (
                _js(a), _js(q), _js(dedup), mid, repr(exp).encode())


def write_export(data_dir: str, acc: str | None, out) -> int:
    """The whole dump to the binary stream `out`, in chunks; returns the record count."""
    env, txn, dbs = open_snapshot(data_dir)
    now = time.time()
    header = {"Format": "cdragon-export", "FormatVersion": 1, "Server": __version__, "Time": now}
    buf = [json.dumps(header, separators=(",", ":")).encode()]
    size = 0
    n = 0
    try:
        for line in export_lines(txn, dbs, None if acc is None else acc.encode(), now):
            buf.append(line)
            size += len(line) + 1
            n += 1
            if size >= _CHUNK:
                buf.append(b"")
                out.write(b"\n".join(buf))
                buf, size = [], 0
        buf.append(b'{"End":true,"Records":%d}' % n)
        buf.append(b"")
        out.write(b"\n".join(buf))
        out.flush()
    finally:
        txn.abort()
        env.close()
    return n


def account_counts(data_dir: str) -> list[dict]:
    """/admin/accounts: per account, its live keys, counters, sequences, held locks and
    the bytes of its keys and values, from one snapshot; accounts holding nothing are
    left out (a revision or an idempotency id alone does not keep an account)."""
    env, txn, dbs = open_snapshot(data_dir)
    now = time.time()
    accs: dict[bytes, dict] = {}

    def entry(a: bytes) -> dict:
        e = accs.get(a)
        if e is None:
            e = accs[a] = {"Account": a.decode(), "Keys": 0, "Counters": 0, "Sequences": 0,
                           "Locks": 0, "Queues": 0, "Messages": 0, "Bytes": 0}
        return e

    try:
        for k, v in _records(txn, dbs[b"kv"], b""):
            _ver, exp, val = _kv_parts(v)
            if not exp or exp > now:
                a, key = _split(k)
                e = entry(a)
                e["Keys"] += 1
                e["Bytes"] += len(key) + len(val)
        for name, field in ((b"counter", "Counters"), (b"seq", "Sequences")):
            for k, v in _records(txn, dbs[name], b""):
                if _I64.unpack(v)[0]:
                    entry(_split(k)[0])[field] += 1
        for k, v in _records(txn, dbs[b"lock"], b""):
            if _F64BE.unpack_from(v, 8)[0] > now:
                entry(_split(k)[0])["Locks"] += 1
        queues = set()
        for k, _v in _records(txn, dbs[b"qmsg"], b""):
            a = _split(k)[0]
            entry(a)["Messages"] += 1
            if k[:-8] not in queues:
                queues.add(k[:-8])
                entry(a)["Queues"] += 1
    finally:
        txn.abort()
        env.close()
    return [accs[a] for a in sorted(accs)]


# ---- the admin handlers (on the server's loop; the router has refused unknown params) ----
async def admin_accounts(admin, params: dict):
    await admin.checkpoint()
    out = await admin.run_child("_accounts", "--data-dir", os.path.abspath(admin.cfg.data_dir))
    return 200, {"Accounts": json.loads(out)}


async def admin_export(admin, params: dict, reply) -> None:
    from cdragon._core import checked_account
    args = ["_export", "--data-dir", os.path.abspath(admin.cfg.data_dir)]
    if "acc" in params:
        checked_account(params["acc"])
        args += ["--acc", params["acc"]]
    await admin.checkpoint()
    await admin.stream_child(reply, NDJSON, *args)


async def admin_import(admin, params: dict, body: bytes):
    """POST /admin/import (cdragon.importer, which needs this module: imported late)."""
    from cdragon.importer import admin_import as run_import
    return await run_import(admin, params, body)


# ---- command line ---------------------------------------------------------------------------
def add_parsers(sub) -> None:
    """`export`, `import` and the hidden child commands `_export`, `_accounts`."""
    from cdragon.importer import client_args
    exp = sub.add_parser("export", help="write a running server's NDJSON dump to standard output",
                         description="GET /admin/export of a running server, streamed to standard "
                         "output: one consistent snapshot (API.md \"Backups, export and import\").")
    exp.add_argument("--acc", metavar="ACC", help="one account only (default: all)")
    client_args(exp)
    imp = sub.add_parser("import", help="load an NDJSON dump into a running server (all or nothing)",
                         description="POST /admin/import: load a dump made by `cdragon export`, all or "
                         "nothing; prints the server's answer. Exit 1 (printing the server's message) "
                         "if it refuses the dump.")
    imp.add_argument("file", metavar="FILE", help="the dump, or - for standard input")
    imp.add_argument("--mode", choices=("merge", "replace"), default="merge",
                     help="replace: first delete everything of each account in the dump (default merge)")
    client_args(imp)
    for name in ("_export", "_accounts"):         # run by the server (no help: not listed)
        child = sub.add_parser(name)
        child.add_argument("--data-dir", required=True)
        if name == "_export":
            child.add_argument("--acc")


COMMANDS = ("export", "import", "_export", "_accounts")


def run(args) -> int:
    """One of COMMANDS; returns the exit code."""
    if args.cmd == "_export":
        write_export(args.data_dir, args.acc, sys.stdout.buffer)
        return 0
    if args.cmd == "_accounts":
        sys.stdout.write(json.dumps(account_counts(args.data_dir)))
        return 0
    from cdragon import importer
    if args.cmd == "export":
        return importer.cli_export(args)
    return importer.cli_import(args)
