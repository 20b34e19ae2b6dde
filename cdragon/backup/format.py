"""The backup file format (.cdbk), its manifest, and the names of objects in a backup
location. Owns encoding and decoding only: no LMDB, no network.

A .cdbk file is gzip of one stream:
  b"CDBK1\n", u32 length + the manifest header (JSON: Format, FormatVersion, Server,
  Time, Rev, WriteTime, Timeline), then one entry per LMDB record: u8 database index
  (cdragon.wal.DB_NAMES), u16 key length, u32 value length, key, value; then the
  trailer: u8 255, u64 record count, the SHA-256 of every byte of the stream before
  the trailer. A file cut short or damaged fails the gzip CRC, the trailer or the hash.

Layout of a backup location (an S3 prefix or a directory, the same for both):
  backups/<NAME>.cdbk, backups/<NAME>.json (the manifest, written last: the backup
  exists once it is there), NAME = <UTC time %Y%m%dT%H%M%SZ>-<timeline>-<rev>;
  wal/<timeline>/<first:016d>-<last:016d>-<sha256>.log: shipped log records.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import re
import struct
import time
import zlib

FORMAT = "cdragon-backup"
FORMAT_VERSION = 1
MAGIC = b"CDBK1\n"
_LEN = struct.Struct("<I")
_ENTRY = struct.Struct("<BHI")
_TRAILER = struct.Struct("<BQ32s")
END = 255

BACKUPS = "backups/"
WAL = "wal/"
_NAME = re.compile(r"^(\d{8}T\d{6}Z)-([0-9a-f]{8})-(\d+)$")
_WALOBJ = re.compile(r"^wal/([0-9a-f]{8})/(\d{16})-(\d{16})-([0-9a-f]{64})\.log$")


class BadBackup(Exception):
    """A backup file or log object is damaged, cut short, or not ours."""


def backup_name(when: float, timeline: str, rev: int) -> str:
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(when))}-{timeline}-{rev}"


def parse_name(name: str):
    """(timeline, rev) of a backup name, or None."""
    m = _NAME.match(name)
    return (m.group(2), int(m.group(3))) if m else None


def wal_key(timeline: str, first: int, last: int, sha: str) -> str:
    return f"{WAL}{timeline}/{first:016d}-{last:016d}-{sha}.log"


def parse_wal_key(key: str):
    """(timeline, first, last, sha256) of a shipped log object's key, or None."""
    m = _WALOBJ.match(key)
    return (m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)) if m else None


class Writer:
    """Writes the stream into an open binary file (gzip level 1: the snapshot must be
    cheap for the machine that also serves)."""

    def __init__(self, fileobj, header: dict, level: int = 1):
        self.gz = gzip.GzipFile(fileobj=fileobj, mode="wb", compresslevel=level, mtime=0)
        self.sha = hashlib.sha256()
        self.count = 0
        self._buf: list = []
        self._size = 0
        head = json.dumps(header, sort_keys=True).encode()
        self._emit(MAGIC + _LEN.pack(len(head)) + head)

    def _emit(self, data: bytes) -> None:
        self.sha.update(data)
        self.gz.write(data)

    def add(self, db: int, key: bytes, value: bytes) -> None:
        self._buf.append(_ENTRY.pack(db, len(key), len(value)))
        self._buf.append(key)
        self._buf.append(value)
        self._size += 7 + len(key) + len(value)
        self.count += 1
        if self._size >= 1 << 20:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            self._emit(b"".join(self._buf))
            self._buf, self._size = [], 0

    def finish(self) -> None:
        self.flush()
        self.gz.write(_TRAILER.pack(END, self.count, self.sha.digest()))
        self.gz.close()


class Reader:
    """Reads a .cdbk file: `header` at once, then `records()` yields (db index, key,
    value) and checks the record count and hash of the trailer at the end. Anything
    wrong raises BadBackup."""

    def __init__(self, path: str):
        self.path = path
        self.gz = gzip.open(path, "rb")
        self.sha = hashlib.sha256()
        self._data = b""
        self._pos = 0
        self._hashed = 0       # _data[:_hashed] is in sha already
        try:
            if self._take(len(MAGIC)) != MAGIC:
                raise BadBackup(f"{path}: not a cdragon backup file")
            (n,) = _LEN.unpack(self._take(4))
            self.header = json.loads(self._take(n))
        except (OSError, EOFError, ValueError, struct.error, gzip.BadGzipFile, zlib.error) as e:
            raise BadBackup(f"{path}: damaged backup file ({e})") from None

    def _fill(self, need: int) -> None:
        while len(self._data) - self._pos < need:
            chunk = self.gz.read(1 << 20)
            if not chunk:
                raise BadBackup(f"{self.path}: backup file cut short")
            self.sha.update(memoryview(self._data)[self._hashed:self._pos])
            self._data = self._data[self._pos:] + chunk
            self._pos = self._hashed = 0

    def _take(self, n: int) -> bytes:
        self._fill(n)
        out = self._data[self._pos:self._pos + n]
        self._pos += n
        return out

    def records(self):
        count = 0
        try:
            while True:
                self._fill(1)
                if self._data[self._pos] == END:
                    self.sha.update(memoryview(self._data)[self._hashed:self._pos])
                    self._hashed = self._pos
                    _end, n, digest = _TRAILER.unpack(self._take(_TRAILER.size))
                    if self.gz.read(1):
                        raise BadBackup(f"{self.path}: data after the end of the backup")
                    break
                db, kl, vl = _ENTRY.unpack(self._take(7))
                key = self._take(kl)
                yield db, key, self._take(vl)
                count += 1
        except (OSError, EOFError, struct.error, gzip.BadGzipFile, ValueError, zlib.error) as e:
            raise BadBackup(f"{self.path}: damaged backup file ({e})") from None
        if n != count or digest != self.sha.digest():
            raise BadBackup(f"{self.path}: the backup's checksum does not match its contents")
        self.gz.close()


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(1 << 20)
            if not chunk:
                return h.hexdigest()
            h.update(chunk)
