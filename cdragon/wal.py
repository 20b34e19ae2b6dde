"""The write-ahead log: its files, its record format, appending and reading back.

A batch is durable once its record is in the log and the log is fdatasync'd; LMDB is
brought up to date later by a checkpoint (cdragon.storage). The log is a series of
segment files `wal-<first record number>.log` in the data directory; a checkpoint
starts a new segment, and a segment is retired once LMDB holds what it logged (and,
when the log is shipped to S3, once it is shipped too: `Keeper`). A retired segment is
kept as the spare `wal-spare` (one at most, up to SPARE_MAX bytes; others are deleted)
and the next new segment is that file renamed: its blocks are already written, so the
records overwrite them. A full disk gets the spare's room back (drop_spare).

Record: a 24-byte header (body length, CRC-32, record number, batch number; little
endian) and the body. The CRC covers the record and batch numbers and the body, so a
record torn by a crash (or any damage) reads as the end of the log; so does a record
whose number does not follow the one before it (or, first in a segment, the number in
the segment's name): what a reused segment held before. Body: for each database
written, its index in `DB_NAMES`, the count of puts and of deletes, then each put (key
length, value length, key, value) and each deleted key (length, key); the encoder is
`_core.wal_parts`, in Cython, because it runs for every batch: it hands the
body over in parts (big values by reference), written with one writev.
"""
from __future__ import annotations

import errno
import json
import os
import re
import struct
import threading

# record_crc: zlib's CRC-32 of the record's numbers (<QQ) then its body parts, folded
# with PCLMULQDQ where the CPU has it (core/crcfold.h)
from cdragon._core import record_crc, wal_body, wal_parts

__all__ = ["wal_body", "wal_parts", "WalWriter", "Keeper", "segments", "read_records", "read_raw", "decode_body",
           "DB_NAMES"]

# the LMDB sub-databases, in the order the record body numbers them (never reorder)
DB_NAMES = (b"kv", b"counter", b"seq", b"lock", b"idem", b"idemexp", b"meta", b"kvexp", b"qmsg", b"qdedup",
            b"ratelimit")

HEADER = struct.Struct("<IIQQ")      # body length, crc32, record number, batch number
_GROUP = struct.Struct("<BII")       # database index, puts, deletes
_PUT = struct.Struct("<HI")          # key length, value length
_DEL = struct.Struct("<H")
_SEGMENT = re.compile(r"^wal-(\d{16})\.log$")


_IOV_MAX = 1024          # buffers per writev (Linux's IOV_MAX)
# The segment being written is grown ahead of its records by this much, zero-filled:
# appending then overwrites blocks the file already has, so a record's fdatasync need
# not also write the inode (a new file size) and waits for one device write, not two
# (about 100 us instead of 160 us per commit on the benchmark VM). Zeros never read
# as a record (a zero header fails its CRC), so reading stops there as at a torn
# record; a segment is cut back to its records when it is closed.
PREALLOC = 1 << 20
_ZEROS = bytes(PREALLOC)
# A retired segment is reused rather than deleted, up to this size: records overwrite
# blocks that were written before, so neither the zeros above nor a new file size are
# written for them (a 10 KB-record commit's CPU about halved, its fdatasync ~40 % faster
# on the benchmark VM). What it held before is never read as records: their numbers
# do not follow (read_records, read_raw).
SPARE_NAME = "wal-spare"
SPARE_MAX = 512 << 20


def drop_spare(directory: str) -> bool:
    """Delete the spare segment (the disk is full); whether there was one."""
    try:
        os.unlink(os.path.join(directory, SPARE_NAME))
    except FileNotFoundError:
        return False
    return True


def segment_path(directory: str, first_lsn: int) -> str:
    return os.path.join(directory, f"wal-{first_lsn:016d}.log")


def segments(directory: str) -> list[str]:
    """The log's segment files, oldest first."""
    found = []
    for name in os.listdir(directory):
        m = _SEGMENT.match(name)
        if m:
            found.append((int(m.group(1)), os.path.join(directory, name)))
    return [p for _, p in sorted(found)]


def fsync_dir(directory: str) -> None:
    # a new or deleted file is only durable once its directory entry is
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _records(data: bytes, first: int | None):
    """(record number, batch number, start, end) of each record of `data` up to the first
    torn or damaged one, or one whose number does not follow (the first must be `first`,
    when given): what a reused segment held before its new records."""
    view = memoryview(data)
    pos, end, want = 0, len(data), first
    while pos + HEADER.size <= end:
        n, crc, lsn, seq = HEADER.unpack_from(data, pos)
        stop = pos + HEADER.size + n
        if stop > end or (want is not None and lsn != want) \
                or record_crc(lsn, seq, (view[pos + HEADER.size:stop],)) != crc:
            return
        yield lsn, seq, pos, stop
        pos, want = stop, lsn + 1


def read_records(path: str):
    """Yield (record number, batch number, body) for each record of a segment (see
    _records for where reading stops)."""
    with open(path, "rb") as f:
        data = f.read()
    view = memoryview(data)
    for lsn, seq, start, stop in _records(data, first_lsn(path) or None):
        yield lsn, seq, bytes(view[start + HEADER.size:stop])


def read_raw(data: bytes, first: int | None = None):
    """Yield (record number, record bytes with header) for each record of a segment's
    (or a shipped object's) bytes, the first numbered `first` when given (see _records)."""
    view = memoryview(data)
    for lsn, _seq, start, stop in _records(data, first):
        yield lsn, view[start:stop]


def split_record(raw) -> tuple[int, int, bytes]:
    """(record number, batch number, body) of one record's bytes from read_raw."""
    _n, _crc32, lsn, seq = HEADER.unpack_from(raw, 0)
    return lsn, seq, bytes(raw[HEADER.size:])


def first_lsn(path: str) -> int:
    m = _SEGMENT.match(os.path.basename(path))
    return int(m.group(1)) if m else 0


def decode_body(body: bytes) -> list:
    """The inverse of wal_body: [(db name, [(key, value)], [deleted key])]."""
    ops = []
    pos = 0
    while pos < len(body):
        idx, nput, ndel = _GROUP.unpack_from(body, pos)
        pos += _GROUP.size
        puts, dels = [], []
        for _ in range(nput):
            kl, vl = _PUT.unpack_from(body, pos)
            pos += _PUT.size
            puts.append((body[pos:pos + kl], body[pos + kl:pos + kl + vl]))
            pos += kl + vl
        for _ in range(ndel):
            (kl,) = _DEL.unpack_from(body, pos)
            pos += _DEL.size
            dels.append(body[pos:pos + kl])
            pos += kl
        ops.append((DB_NAMES[idx], puts, dels))
    return ops


class WalWriter:
    """Appends records to the current segment; used by the writer thread only."""

    def __init__(self, directory: str, next_lsn: int):
        self.dir = directory
        self.lsn = next_lsn - 1          # the last record number written
        self.fd = -1
        self.path = ""
        self.size = 0                    # bytes in the current segment
        self.alloc = 0                   # its length on disk: records, then zeros
        self.closed_segments: list[str] = []
        self._open_segment()

    def _open_segment(self) -> None:
        self.path = segment_path(self.dir, self.lsn + 1)
        self.size = self.alloc = 0
        try:            # the spare, if there is one: its blocks are room already written
            os.rename(os.path.join(self.dir, SPARE_NAME), self.path)
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
            self.alloc = os.fstat(self.fd).st_size
        except OSError:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        fsync_dir(self.dir)

    def append(self, seq: int, body) -> None:
        """Write one record (its body as bytes, or as wal_parts' list) and fdatasync:
        when this returns, the batch is durable. On an error the segment is cut back to
        its last whole record and the error raised (the record is not in the log)."""
        lsn = self.lsn + 1
        parts = [body] if isinstance(body, bytes) else body
        size = sum(map(len, parts))
        head = HEADER.pack(size, record_crc(lsn, seq, parts), lsn, seq)
        for last_try in (False, True):
            try:
                self._reserve(len(head) + size)
                self._write_all([head, *parts])
                os.fdatasync(self.fd)
                break
            except OSError as e:
                self._cut_back()
                # a full disk: the spare's room goes back to it, and the record is tried once more
                if last_try or e.errno != errno.ENOSPC or not drop_spare(self.dir):
                    raise
        self.size += len(head) + size
        self.alloc = max(self.alloc, self.size)     # (zeros only ever go past the records)
        self.lsn = lsn

    def _reserve(self, n: int) -> None:
        """Zero-fill the segment past its records so that n more bytes fit (the
        record's own fdatasync makes the zeros and the new length durable with it).
        pwrite leaves the file position, where the records go, alone. A disk with no
        room to grow ahead (full, or nearly) is not an error here: the record is then
        appended as it would be without, and fails only if it does not fit itself."""
        while self.size + n > self.alloc:
            try:
                done = os.pwrite(self.fd, _ZEROS, self.alloc)
            except OSError:
                return
            if done <= 0:
                return
            self.alloc += done

    def _write_all(self, bufs: list) -> None:
        for i in range(0, len(bufs), _IOV_MAX):
            group = bufs[i:i + _IOV_MAX]
            done = os.writev(self.fd, group)
            want = sum(map(len, group))
            if done < want:          # a short write (the disk filling up): finish it
                rest = b"".join(group)[done:]
                while rest:
                    rest = rest[os.write(self.fd, rest):]

    def _cut_back(self) -> None:
        try:
            os.ftruncate(self.fd, self.size)
            self.alloc = self.size
            os.lseek(self.fd, self.size, os.SEEK_SET)
            os.fdatasync(self.fd)
        except OSError:
            # the segment may end in a torn record: go on in a new one so that later
            # records are never read after it (reading stops at a torn record)
            self._roll()

    def _trim_zeros(self) -> None:
        # a closed segment holds just its records (what is shipped, backed up and
        # counted); should this not reach the disk, the zeros left read as the end
        if self.alloc > self.size:
            try:
                os.ftruncate(self.fd, self.size)
            except OSError:
                pass
            self.alloc = self.size

    def _roll(self) -> None:
        self._trim_zeros()
        os.close(self.fd)
        self.closed_segments.append(self.path)
        self._open_segment()

    def rotate(self) -> list[str]:
        """Close the current segment (if it holds anything) and start a new one; return
        every closed segment not yet handed out: a checkpoint deletes them once LMDB
        holds their records."""
        if self.size:
            self._roll()
        out, self.closed_segments = self.closed_segments, []
        return out

    def close(self) -> None:
        if self.fd >= 0:
            self._trim_zeros()
            os.close(self.fd)
            self.fd = -1


_OPEN = 1 << 62       # the "last record" of the segment being written (Keeper._current)


class Keeper:
    """Decides when a closed segment may be deleted: once LMDB holds its records (a
    checkpoint, start-up replay or close) and, when the log is shipped, once the shipper
    has uploaded them. The shipped position survives restarts in `wal-shipped.json`
    (written atomically), with the timeline it belongs to. Thread-safe: the checkpoint
    thread, the shipper thread, start-up and close call it.

    A segment's last record number is the next segment's first minus one; the newest
    segment is the writer's current one and is never deleted here, unless `final` (the
    writer has stopped) gives its last record."""
    STATE = "wal-shipped.json"

    def __init__(self, directory: str, shipping: bool, timeline: str):
        self.dir = directory
        self.shipping = shipping
        self.timeline = timeline
        self.lock = threading.Lock()
        self.applied = 0        # the last record LMDB holds
        self.final = None       # set once the writer stopped: the last record written
        self.shipped = 0        # the last record uploaded (of this timeline)
        self.gap = 0            # records up to here were dropped unshipped: a backup must cover them
        self.writer = None      # the WalWriter, once there is one (the current segment's size)
        try:
            with open(os.path.join(directory, self.STATE)) as fh:
                st = json.load(fh)
            if st.get("Timeline") == timeline:
                self.shipped, self.gap = int(st["Shipped"]), int(st.get("Gap", 0))
        except (OSError, ValueError, KeyError, TypeError):
            pass

    def _save(self) -> None:
        path = os.path.join(self.dir, self.STATE)
        tmp = path + ".tmp"
        with open(tmp, "w") as fh:
            json.dump({"Timeline": self.timeline, "Shipped": self.shipped, "Gap": self.gap}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(self.dir)

    def closed_segments(self) -> list[tuple[str, int, int]]:
        """[(path, first record, last record)] of the closed segments, oldest first."""
        segs = segments(self.dir)
        out = []
        for i, p in enumerate(segs):
            if i + 1 < len(segs):
                last = first_lsn(segs[i + 1]) - 1
            elif self.final is not None:
                last = self.final
            else:
                break
            out.append((p, first_lsn(p), last))
        return out

    def checkpointed(self, lsn: int, final: int | None = None) -> None:
        with self.lock:
            self.applied = max(self.applied, lsn)
            if final is not None:
                self.final = final
            self._prune()

    def mark_shipped(self, lsn: int) -> None:
        with self.lock:
            self.shipped = max(self.shipped, lsn)
            self._save()
            self._prune()

    def drop(self, lsn: int) -> None:
        """Give up shipping the records up to `lsn` (the unshipped log outgrew its bound):
        they go once checkpointed, and shipping waits for a backup that covers them."""
        with self.lock:
            self.gap = max(self.gap, lsn)
            self.shipped = max(self.shipped, lsn)
            self._save()
            self._prune()

    def unshipped_bytes(self) -> int:
        n = 0
        for p, _first, last in self.closed_segments() + ([] if self.final is not None else self._current()):
            if not self.shipping or last > self.shipped:
                if last == _OPEN and self.writer is not None:
                    n += self.writer.size     # its records (a reused segment is longer)
                    continue
                try:
                    n += os.stat(p).st_size
                except OSError:
                    pass
        return n if self.shipping else 0

    def _current(self) -> list:
        segs = segments(self.dir)
        return [(segs[-1], first_lsn(segs[-1]), _OPEN)] if segs else []

    def _prune(self) -> None:
        gone = False
        for p, _first, last in self.closed_segments():
            if last <= self.applied and (not self.shipping or last <= self.shipped):
                try:
                    self._retire(p)
                    gone = True
                except FileNotFoundError:
                    pass
        if gone:
            fsync_dir(self.dir)

    def _retire(self, path: str) -> None:
        """A segment no longer needed becomes the spare for the writer's next segment,
        unless it is too big to keep or the spare there is bigger: then it is deleted."""
        spare = os.path.join(self.dir, SPARE_NAME)
        size = os.stat(path).st_size
        try:
            keep = os.stat(spare).st_size
        except FileNotFoundError:
            keep = -1
        if keep < size <= SPARE_MAX:
            os.rename(path, spare)
        else:
            os.unlink(path)
