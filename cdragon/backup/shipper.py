"""The log shipper: a thread of the server process that uploads the write-ahead log to
S3 (`backup_ship_log`), so that a restore can replay what came after the last backup.

Every `backup_ship_interval` seconds it asks the writer thread to close the current
segment if it holds records, then uploads the closed segments not shipped yet as one
object (one S3 PUT per interval while writes come in; at most 64 MiB per object when
catching up), `wal/<timeline>/<first>-<last>-<sha256>.log`, holding only intact
records (re-read and CRC-checked: a torn tail is never shipped), and records how far it
got (wal.Keeper, which then lets the segments go once checkpointed too).

It ships only once a backup of the current timeline exists that the shipped records
continue (one is taken at start when there is none; until then segments wait on disk).
S3 failing: it retries with backoff (up to 60 s) while the server serves on; the
unshipped log stays on disk, a warning once a minute above 80 % of
`backup_ship_max_bytes`; above it, checkpointed unshipped segments are dropped (an
error in the log): the shipped chain is broken, so a new backup is taken as soon as S3
answers again, and shipping goes on from there.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
import time

from cdragon import wal
from cdragon.osthread import named_thread
from cdragon.backup import format as fmt
from cdragon.backup.state import STATE
from cdragon.backup.targets import TargetError

log = logging.getLogger("cdragon")

MAX_OBJECT = 64 << 20
MAX_BACKOFF = 60.0


class Shipper:
    """The shipper thread of one server (see the module text)."""

    def __init__(self, service, storage, cfg):
        self.service = service
        self.storage = storage
        self.keeper: wal.Keeper = storage.keeper
        self.cfg = cfg
        self.timeline = storage.timeline
        self.covered_rev = -1          # the newest backup of this timeline we know of
        self._stop = threading.Event()
        self._ok = True                # the last attempt succeeded
        self._warned = 0.0
        self.thread = named_thread(self._run, "cdragon-shipper")
        STATE.shipped_through = self.keeper.shipped

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=30)

    def backed_up(self, timeline: str, rev: int) -> None:
        if timeline == self.timeline:
            self.covered_rev = max(self.covered_rev, rev)

    # ---- the thread ------------------------------------------------------------------
    def _run(self) -> None:
        backoff = 0.0
        delay = 0.0                     # at once: the backup shipping needs is taken at start
        while not self._stop.wait(delay):
            try:
                self._bound()
                self._ensure_backup()
                if self.storage.close_segment():
                    self.ship_all()
                backoff = 0.0
                self._ok = True
            except Exception as e:
                STATE.ship_failures += 1
                # after a failure, check again that a backup exists (the bucket may be new)
                self.covered_rev = -1
                backoff = min(MAX_BACKOFF, max(1.0, backoff * 2))
                if self._ok:
                    log.warning("shipping the log to %s failed, retrying (every %.0f s at most): %s",
                                self.cfg.backup_s3_url, MAX_BACKOFF, e)
                self._ok = False
            finally:
                STATE.unshipped_bytes = self.keeper.unshipped_bytes()
                delay = backoff or self.cfg.backup_ship_interval

    def _ensure_backup(self) -> None:
        """A backup of this timeline at or past keeper.gap must exist before shipping."""
        if self.covered_rev >= max(self.keeper.gap, 0) and self.covered_rev >= 0:
            return
        s3 = self.service.s3()
        from cdragon.backup.service import list_backups
        for b in list_backups(s3):
            if b["Timeline"] == self.timeline:
                self.covered_rev = max(self.covered_rev, b["Rev"])
        if self.covered_rev >= self.keeper.gap and self.covered_rev >= 0:
            return
        if self.keeper.gap:
            log.info("log shipping: no backup of timeline %s covers record %d (the shipped log has a hole "
                     "there); taking one", self.timeline, self.keeper.gap)
        else:
            log.info("log shipping: no backup of timeline %s in %s yet; taking one first",
                     self.timeline, self.cfg.backup_s3_url)
        fut = asyncio.run_coroutine_threadsafe(self.service.backup(), self.service.admin.loop)
        try:
            while True:
                try:
                    fut.result(timeout=1.0)
                    break
                except TimeoutError:
                    if self._stop.is_set():
                        fut.cancel()
                        raise TargetError("the server is stopping") from None
        except TargetError:
            raise
        except Exception as e:
            raise TargetError(f"the backup shipping needs failed: {getattr(e, 'message', None) or e}") from None
        if self.covered_rev < self.keeper.gap:
            raise TargetError("the new backup does not cover the dropped log")

    def ship_all(self) -> None:
        """Upload every closed, unshipped segment (several objects when catching up)."""
        s3 = self.service.s3()
        while True:
            parts, first, last = self._collect()
            if first is None:
                return
            if first > self.keeper.shipped + 1 and self.covered_rev < first - 1:
                # records before `first` are gone unshipped: a backup must cover them
                self.keeper.drop(first - 1)
                self._ensure_backup()
            body = b"".join(parts)
            sha = hashlib.sha256(body).hexdigest()
            s3.put_bytes(fmt.wal_key(self.timeline, first, last, sha), body)
            self.keeper.mark_shipped(last)
            STATE.shipped_through = last

    def _collect(self):
        """(record bytes, first, last): the next contiguous run of unshipped records of
        the closed segments, up to about MAX_OBJECT bytes."""
        parts, first, last, size = [], None, None, 0
        for path, seg_first, seg_last in self.keeper.closed_segments():
            if seg_last <= self.keeper.shipped:
                continue
            try:
                with open(path, "rb") as fh:
                    data = fh.read()
            except FileNotFoundError:
                continue
            for lsn, raw in wal.read_raw(data, seg_first):
                if lsn <= self.keeper.shipped or (last is not None and lsn <= last):
                    continue
                if last is not None and lsn != last + 1:
                    return parts, first, last     # never ship across a hole in one object
                if first is None:
                    first = lsn
                parts.append(raw)
                last = lsn
                size += len(raw)
            if size >= MAX_OBJECT:
                break
        return parts, first, last

    def _bound(self) -> None:
        """Keep the unshipped log under backup_ship_max_bytes (see the module text)."""
        n = self.keeper.unshipped_bytes()
        STATE.unshipped_bytes = n
        limit = self.cfg.backup_ship_max_bytes
        now = time.monotonic()
        if n > 0.8 * limit and now - self._warned >= 60:
            self._warned = now
            log.warning("log shipping: %d bytes of unshipped log on disk (backup_ship_max_bytes %d)", n, limit)
        if n <= limit:
            return
        dropped = 0
        for path, _first, last in self.keeper.closed_segments():
            if last > self.keeper.shipped and last <= self.keeper.applied:
                dropped = last
                try:
                    n -= os.stat(path).st_size
                except OSError:
                    pass
                if n <= limit:
                    break
        if dropped:
            log.error("log shipping: unshipped log above backup_ship_max_bytes; dropped it up to record %d "
                      "(a restore can no longer reach those writes from the older backups; a new backup "
                      "is taken as soon as S3 answers)", dropped)
            self.keeper.drop(dropped)

    def final(self) -> None:
        """After the server stopped: ship what the last interval logged, one attempt."""
        if not self._ok or self.covered_rev < max(self.keeper.gap, 0):
            return
        try:
            self.ship_all()
        except Exception as e:
            log.warning("shipping the last of the log failed; it waits on disk for the next start: %s", e)
