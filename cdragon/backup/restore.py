"""`cdragon restore` and `cdragon backups list`: read a backup location (S3 or a
directory), pick a backup, replay the shipped log after it, and swap the result in.

Restore never touches the target directory until everything is downloaded, checked
(the file's SHA-256 against its manifest, the stream's own trailer, each log object's
SHA-256 against its name and every record's CRC) and built: the new LMDB environment
is built in a temporary directory next to the target (same file system), then renamed
into place. A failure at any point removes the temporary directory and leaves the
target as it was. A directory in use by a server (its cdragon.lock held) is refused
always, a non-empty one unless --force.

After a restore the data directory gets a new timeline id (its shipped log starts a
new chain), and the lock-handle high-water mark is set above every handle in the
backup and in every shipped record of its timeline, plus a margin of 1,000,000,000
for handles the old server may have given out in its last, unshipped interval: new
handles stay above every handle the old server ever gave out.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import shutil
import struct
import tempfile
import time
from datetime import datetime, timezone

from cdragon import datadir, wal
from cdragon.backup import format as fmt
from cdragon.backup.service import list_backups
from cdragon.backup.targets import TargetError, open_target

HANDLE_MARGIN = 1_000_000_000
_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")
_APPLY_RECORDS = 20_000            # log records per LMDB transaction while replaying
_LOAD_RECORDS = 100_000            # snapshot records per LMDB transaction
_META = wal.DB_NAMES.index(b"meta")
_LOCK = wal.DB_NAMES.index(b"lock")


class RestoreError(Exception):
    """Restore cannot go on; the text is the one line printed."""


def parse_until(text: str) -> float:
    """Epoch seconds, or ISO 8601 (UTC when no zone is given)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise RestoreError(f"--until {text!r}: not an ISO 8601 time or epoch seconds") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.timestamp()


def _iso(t) -> str:
    if t is None:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1000):03d}Z"


def _manifest(target, name: str) -> dict:
    try:
        man = json.loads(target.get_bytes(fmt.BACKUPS + name + ".json"))
    except ValueError:
        raise RestoreError(f"backup {name}: its manifest is not valid JSON") from None
    if man.get("Format") != fmt.FORMAT or man.get("FormatVersion") != fmt.FORMAT_VERSION:
        raise RestoreError(f"backup {name}: not a {fmt.FORMAT} version {fmt.FORMAT_VERSION} manifest")
    return man


def choose(target, name: str | None, until: float | None):
    backups = list_backups(target)
    if not backups:
        raise RestoreError(f"no backup in {target.location()}")
    if name:
        for b in backups:
            if b["Name"] == name:
                return b, _manifest(target, name)
        raise RestoreError(f"no backup named {name} in {target.location()}")
    for b in reversed(backups):
        if until is not None and b["Time"] > until + 1:   # the name's time is in whole seconds
            continue
        man = _manifest(target, b["Name"])
        when = man.get("WriteTime") or man.get("Time")
        if until is None or when <= until:
            return b, man
    raise RestoreError(f"no backup in {target.location()} was written at or before {_iso(until)}")


def wal_objects(target, timeline: str | None = None) -> list[tuple]:
    """[(first, last, sha, key, timeline)] of the shipped log objects, by timeline, first."""
    out = []
    for key, _size in target.list(fmt.WAL + (timeline + "/" if timeline else "")):
        p = fmt.parse_wal_key(key)
        if p:
            out.append((p[1], p[2], p[3], key, p[0]))
    return sorted(out, key=lambda o: (o[4], o[0], o[1]))


def _check_target_dir(path: str, force: bool):
    """Take the data directory's lock if it has one (refusing one in use) and refuse a
    non-empty one without --force; the lock's descriptor (or None) to hold till done."""
    fd = None
    if not os.path.isdir(path):
        if os.path.lexists(path):
            raise RestoreError(f"{path} exists and is not a directory")
        return None
    lock_path = os.path.join(path, datadir.LOCK_NAME)
    if os.path.exists(lock_path):
        fd = os.open(lock_path, os.O_RDWR | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = datadir._read_pid(fd)
            os.close(fd)
            raise datadir.DataDirBusy(path, pid) from None
    others = [n for n in os.listdir(path) if n != datadir.LOCK_NAME]
    if others and not force:
        if fd is not None:
            os.close(fd)
        raise RestoreError(f"data directory {path} is not empty (it holds {len(others)} entries); "
                           "restore into an empty one, or give --force to replace it")
    return fd


def _download_log(target, objects, rev: int, tmp: str, say):
    """Download and check the objects holding records after `rev`; [(first, last,
    path)] in order, and the first missing record number if there is a hole (else None)."""
    need = rev + 1
    got, gap = [], None
    for first, last, sha, key, _tl in objects:
        if last < need:
            continue
        path = os.path.join(tmp, f"wal-{first:016d}-{last:016d}.log")
        target.get_file(key, path)
        with open(path, "rb") as fh:
            data = fh.read()
        if hashlib.sha256(data).hexdigest() != sha:
            raise RestoreError(f"shipped log object {target.location(key)} is damaged (SHA-256 mismatch)")
        lsns = [lsn for lsn, _raw in wal.read_raw(data)]
        if not lsns or lsns[0] != first or lsns[-1] != last or len(lsns) != last - first + 1:
            raise RestoreError(f"shipped log object {target.location(key)} is damaged (its records "
                               "do not match its name)")
        if first > need and gap is None:
            gap = (need, first - 1)
        got.append((first, last, path))
        need = max(need, last + 1)
    return got, gap


def _max_handle_of(ops) -> int:
    hw = 0
    for name, puts, _dels in ops:
        if name == b"lock":
            for _k, v in puts:
                if len(v) >= 8:
                    hw = max(hw, _I64.unpack_from(v)[0])
        elif name == b"meta":
            for k, v in puts:
                if k == b"handle":
                    hw = max(hw, _I64.unpack(v)[0])
    return hw


def _clock_of(ops):
    for name, puts, _dels in ops:
        if name == b"meta":
            for k, v in puts:
                if k == b"clock":
                    return _F64.unpack(v)[0]
    return None


def _build(snapshot: str, logs, gap, rev: int, start_time, until, out_dir: str, say) -> dict:
    """Build the LMDB environment in out_dir; a summary."""
    from cdragon.storage import Storage, _merge
    reader = fmt.Reader(snapshot)
    st = Storage(out_dir, 64 << 20, 1 << 60)
    try:
        dbs = [st.dbs[n] for n in wal.DB_NAMES]
        hw = 0
        batch: list = []

        def load(items):
            while True:
                try:
                    with st.env.begin(write=True) as txn:
                        for db, k, v in items:
                            txn.put(k, v, db=dbs[db])
                    return
                except Exception as e:
                    import lmdb
                    if not isinstance(e, lmdb.MapFullError):
                        raise
                    st.env.set_mapsize(st.map_size * 2)
                    st.map_size = st.env.info()["map_size"]
        n = 0
        for db, k, v in reader.records():
            if db >= len(dbs):
                raise fmt.BadBackup(f"{snapshot}: unknown database index {db}")
            if db == _LOCK and len(v) >= 8:
                hw = max(hw, _I64.unpack_from(v)[0])
            elif db == _META and k == b"handle":
                hw = max(hw, _I64.unpack(v)[0])
            batch.append((db, k, v))
            n += 1
            if len(batch) >= _LOAD_RECORDS:
                load(batch)
                batch = []
        load(batch)
        # the shipped log after the backup, in order, up to --until
        applied, applied_time, count = rev, start_time, 0
        stopped = False
        pending: dict = {}
        when = start_time
        for first, last, path in logs:
            with open(path, "rb") as fh:
                data = fh.read()
            for lsn, raw in wal.read_raw(data):
                _lsn, _seq, body = wal.split_record(raw)
                ops = wal.decode_body(body)
                hw = max(hw, _max_handle_of(ops))      # every record's handles, even past --until
                if stopped or lsn <= applied:
                    continue
                t = _clock_of(ops)
                when = t if t is not None else when
                if until is not None and when is not None and when > until:
                    stopped = True
                    continue
                if lsn != applied + 1:
                    raise RestoreError(f"the shipped log has a gap: records {applied + 1}..{lsn - 1} are "
                                       "missing (restore --until a time before them, or a newer backup)")
                _merge(pending, ops)
                applied, applied_time = lsn, when
                count += 1
                if count % _APPLY_RECORDS == 0:
                    st._apply_growing(pending, applied)
                    pending = {}
        if pending:
            st._apply_growing(pending, applied)
        timeline = secrets.token_hex(4)
        new_hw = hw + HANDLE_MARGIN
        with st.env.begin(write=True, db=st.dbs[b"meta"]) as txn:
            txn.put(b"timeline", timeline.encode())
            txn.put(b"handle", _I64.pack(new_hw))
            txn.put(b"wal_applied", _I64.pack(applied))
        st.applied_lsn = applied
    finally:
        st.close()
    for name in (wal.Keeper.STATE, datadir.LOCK_NAME):
        try:
            os.unlink(os.path.join(out_dir, name))
        except FileNotFoundError:
            pass
    return {"Records": n, "Applied": applied, "LogRecords": count, "Time": applied_time,
            "Timeline": timeline, "Handle": new_hw}


def restore(cfg, source: str, data_dir: str, name: str | None, until: float | None, force: bool,
            say=print) -> None:
    path = os.path.abspath(data_dir)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    fd = _check_target_dir(path, force)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.restore-", dir=parent)
    try:
        target = open_target(source, cfg)
        b, man = choose(target, name, until)
        say(f"restoring backup {b['Name']} (Rev {man['Rev']}, written {_iso(man.get('WriteTime'))}) "
            f"from {target.location(b['Key'])}")
        snap = os.path.join(tmp, "backup.cdbk")
        target.get_file(b["Key"], snap)
        if fmt.file_sha256(snap) != man["SHA256"]:
            raise RestoreError(f"backup {b['Name']} is damaged: its SHA-256 does not match its manifest")
        logs, gap = _download_log(target, wal_objects(target, man["Timeline"]), man["Rev"], tmp, say)
        out = os.path.join(tmp, "data")
        info = _build(snap, logs, gap, man["Rev"], man.get("WriteTime") or man.get("Time"), until, out, say)
        # swap it in: the old directory aside first, removed only once the new one is in place
        if os.path.isdir(path):
            aside = os.path.join(parent, f".{os.path.basename(path)}.old-{secrets.token_hex(4)}")
            # the default backup_dir lives in the data directory: its backups stay
            if os.path.isdir(os.path.join(path, "backups")):
                os.rename(os.path.join(path, "backups"), os.path.join(out, "backups"))
            os.rename(path, aside)
            os.rename(out, path)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.rename(out, path)
        wal.fsync_dir(parent)
    except TargetError as e:
        raise RestoreError(f"reading {source} failed: {e}") from None
    except fmt.BadBackup as e:
        raise RestoreError(str(e)) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if fd is not None:
            os.close(fd)
    say(f"restored into {path}: {info['Records']} records of the backup, {info['LogRecords']} shipped log "
        f"records, through record {info['Applied']} (written {_iso(info['Time'])}); new timeline "
        f"{info['Timeline']}, lock handles from {info['Handle'] + 1}")


def list_location(cfg, source: str, say=print) -> None:
    try:
        target = open_target(source, cfg)
        backups = list_backups(target)
        objects = wal_objects(target)
    except TargetError as e:
        raise RestoreError(f"reading {source} failed: {e}") from None
    say(f"backups in {target.location()}:")
    if not backups:
        say("  (none)")
    for b in backups:
        say(f"  {b['Name']}  {_iso(b['Time'])}  timeline {b['Timeline']}  rev {b['Rev']}  {b['Bytes']} bytes")
    by_tl: dict = {}
    for first, last, _sha, _key, tl in objects:
        by_tl.setdefault(tl, []).append((first, last))
    say("shipped log:")
    if not by_tl:
        say("  (none)")
    for tl, ranges in sorted(by_tl.items()):
        runs = []
        for first, last in sorted(ranges):
            if runs and first <= runs[-1][1] + 1:
                runs[-1][1] = max(runs[-1][1], last)
            else:
                runs.append([first, last])
        text = ", ".join(f"{a}..{b}" for a, b in runs)
        say(f"  timeline {tl}: records {text} ({len(ranges)} objects)")
