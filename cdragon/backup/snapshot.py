"""The snapshot child (`cdragon _snapshot`): one consistent copy of every LMDB
sub-database into a .cdbk file in the backup directory, plus its manifest.

It runs in its own process, niced, so that it takes neither the server's GIL nor much
of its CPU, and so that its long read transaction does not keep the server from
growing the map (LMDB forbids a resize only while a transaction of the same process is
open). One read transaction gives one moment: meta `wal_applied` read inside it is the
last log record the copy holds (Rev), meta `clock` the time of that record's batch.
The server checkpoints just before starting the child, so Rev covers every write
acknowledged before the backup was asked for.
"""
from __future__ import annotations

import json
import os
import struct
import sys
import time

from cdragon import __version__, wal
from cdragon.backup import format as fmt

_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")


class _PacedFile:
    """The output file, written back to disk every few MiB (fdatasync) and then dropped
    from the page cache: a snapshot of a large database otherwise piles up hundreds of
    MiB of dirty pages whose writeback stalls the server's own log fdatasyncs, and
    evicts the pages the server reads."""
    STEP = 8 << 20

    def __init__(self, fh):
        self.fh = fh
        self.done = 0          # bytes written back
        self.pos = 0

    def write(self, data) -> int:
        n = self.fh.write(data)
        self.pos += n
        if self.pos - self.done >= self.STEP:
            self.fh.flush()
            os.fdatasync(self.fh.fileno())
            os.posix_fadvise(self.fh.fileno(), self.done, self.pos - self.done, os.POSIX_FADV_DONTNEED)
            self.done = self.pos
        return n

    def flush(self) -> None:
        self.fh.flush()


def _lower_priority() -> None:
    """CPU: nice 19 (the lowest share: the server keeps its core while it is busy, the
    snapshot runs in the gaps). Disk: the idle I/O class (ioprio_set; honoured by the mq-deadline,
    BFQ and CFQ schedulers), so the server's log writes go first."""
    try:
        os.nice(19)
    except OSError:
        pass
    import ctypes
    import platform
    nr = {"x86_64": 251, "aarch64": 30}.get(platform.machine())
    if nr is not None:
        try:
            ctypes.CDLL(None, use_errno=True).syscall(nr, 1, 0, 3 << 13)   # IOPRIO_WHO_PROCESS, self, IDLE
        except (OSError, AttributeError):
            pass


def take(data_dir: str, root: str, level: int = 1) -> dict:
    """Write backups/<NAME>.cdbk and backups/<NAME>.json under `root`; the manifest."""
    from cdragon.dump import open_snapshot      # export's read-only open: the same need
    env, txn, _dbs = open_snapshot(data_dir)
    try:
        dbs = [env.open_db(name, txn=txn, create=False) for name in wal.DB_NAMES]
        meta = dbs[wal.DB_NAMES.index(b"meta")]
        raw = txn.get(b"wal_applied", db=meta)
        rev = _I64.unpack(raw)[0] if raw else 0
        raw = txn.get(b"clock", db=meta)
        when = time.time()
        write_time = _F64.unpack(raw)[0] if raw else None
        timeline = (txn.get(b"timeline", db=meta) or b"00000000").decode()
        name = fmt.backup_name(when, timeline, rev)
        header = {"Format": fmt.FORMAT, "FormatVersion": fmt.FORMAT_VERSION, "Server": __version__,
                  "Time": when, "Rev": rev, "WriteTime": write_time, "Timeline": timeline, "Name": name}
        folder = os.path.join(root, "backups")
        os.makedirs(folder, exist_ok=True)
        final = os.path.join(folder, name + ".cdbk")
        tmp = os.path.join(folder, "." + name + ".cdbk.tmp")
        try:
            with open(tmp, "wb") as fh:
                w = fmt.Writer(_PacedFile(fh), header, level)
                for idx, db in enumerate(dbs):
                    for k, v in txn.cursor(db):
                        w.add(idx, k, v)
                w.finish()
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    finally:
        txn.abort()
        env.close()
    manifest = dict(header, Bytes=os.path.getsize(final), SHA256=fmt.file_sha256(final), Records=w.count)
    jtmp = os.path.join(folder, "." + name + ".json.tmp")
    with open(jtmp, "w") as fh:
        json.dump(manifest, fh, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(jtmp, os.path.join(folder, name + ".json"))
    wal.fsync_dir(folder)
    return manifest


UPLOAD_FAILED = "upload failed: "     # how the server tells a store's failure (502) from others


def upload(manifest: dict, root: str, url: str, endpoint: str, region: str) -> str:
    """Upload the .cdbk, then its manifest (the backup exists once that is there); the
    .cdbk's location."""
    from cdragon.backup.targets import LocalTarget, S3Target
    local = LocalTarget(root)
    s3 = S3Target(url, endpoint, region)
    key = fmt.BACKUPS + manifest["Name"]
    s3.put_file(key + ".cdbk", local.location(key + ".cdbk"))
    s3.put_file(key + ".json", local.location(key + ".json"))
    return s3.location(key + ".cdbk")


def child_main(args) -> int:
    """Snapshot and, with --s3-url, upload, all in this (niced) process: the server's
    process only waits. Prints the manifest with its Location as one JSON line."""
    from cdragon.backup.targets import LocalTarget, TargetError
    _lower_priority()        # the server's requests first
    manifest = take(args.data_dir, args.dir, args.level)
    manifest["Location"] = LocalTarget(args.dir).location(fmt.BACKUPS + manifest["Name"] + ".cdbk")
    if args.s3_url:
        try:
            manifest["Location"] = upload(manifest, args.dir, args.s3_url, args.s3_endpoint, args.s3_region)
        except TargetError as e:
            print(f"{UPLOAD_FAILED}{args.s3_url}: {e}", file=sys.stderr)
            return 1
    print(json.dumps(manifest, sort_keys=True))
    return 0
