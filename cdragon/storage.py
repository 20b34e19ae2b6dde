"""LMDB, the write-ahead log, and the two threads that write them (group commit).

The event loop hands over a whole batch (already encoded as puts and deletes). The
writer thread appends it to the write-ahead log (cdragon.wal) and fdatasyncs: the
batch is durable, and the loop hears so through `loop.call_soon_threadsafe`. The
checkpoint thread brings LMDB up to date later, when the loop asks: everything logged
since the last checkpoint, newest value per key, in one synced LMDB transaction that
also records the last log record it holds; then the log segments it covered are
deleted (when the log is shipped to S3, only once shipped too: wal.Keeper). Why not one LMDB commit per batch: with keys spread over a large keyspace
every write dirties its own B-tree pages, and writing those out per batch cost about
6 µs per write, most of the CPU; a checkpoint writes each page once for many batches.

Start-up replays the log into LMDB (the records after the last one LMDB holds), so a
restart after a crash or SIGKILL sees every acknowledged write. Nothing but these two
threads (and start-up and close, when they are not running) writes LMDB, and neither
touches in-memory server state.

Every log record also puts meta `clock` (the wall-clock time of its batch), so a
restore can stop at a point in time and a snapshot knows when its last write was. The
data directory has a timeline id (meta `timeline`, random, made when the directory is
created): shipped log records are only ever applied onto a backup of their timeline.

Map growth: the loop asks for a bigger map (`grow`) while the checkpoint thread is
idle, with its own read transaction reset, because LMDB forbids resizing while any
transaction of the process is open.
"""
from __future__ import annotations

import errno
import logging
import os
import queue
import secrets
import struct
import threading
import time

import lmdb

from cdragon import wal
from cdragon.osthread import named_thread
from cdragon._core import SortedPuts

log = logging.getLogger("cdragon")

DB_NAMES = wal.DB_NAMES
SCHEMA_VERSION = 1
_EXP = struct.Struct(">d")
_I64 = struct.Struct("<q")
_APPLIED = b"wal_applied"     # meta key: the last log record LMDB holds
_APPLY_CHUNK = 2000           # puts per GIL hold in a checkpoint
_COLLECT_CHUNK = 20000        # keys a checkpoint gathers for its sort per GIL hold
_CHECKPOINT = object()        # writer-queue command: hand what is logged to a checkpoint
_CLOCK = b"clock"             # meta key: wall-clock time of the batch (8-byte double, little endian)
_TIMELINE = b"timeline"       # meta key: this data directory's timeline id (8 hex digits)
_F64 = struct.Struct("<d")


class _Rotate:
    """Writer-queue command: close the current segment (if it holds records) so that the
    shipper may upload it; `done` is set once it is closed."""
    __slots__ = ("done",)

    def __init__(self):
        self.done = threading.Event()


class Timings:
    """A histogram of durations kept by one thread (counts per bucket, not cumulative,
    the last one +Inf) and read by cdragon.metrics at scrape time: a perf_counter pair
    and a short scan per observation, no lock (a scrape may see a count one ahead of
    the sum)."""
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        i = 0
        for b in self.bounds:
            if seconds <= b:
                break
            i += 1
        self.counts[i] += 1
        self.sum += seconds


FSYNC_BOUNDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
CHECKPOINT_BOUNDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class StorageError(Exception):
    pass


def _merge(pending: dict, ops: list) -> None:
    """Fold a batch's ops into pending {db name: ({key: value}, {deleted key: None})}:
    the newest operation on a key wins. Puts and deletes are kept apart so that a
    checkpoint hands LMDB the puts without a Python loop over them."""
    for name, puts, dels in ops:
        pair = pending.get(name)
        if pair is None:
            pair = pending[name] = ({}, {})
        pd, dd = pair
        for k in dels:
            pd.pop(k, None)
            dd[k] = None
        if dd:
            for k, _ in puts:
                dd.pop(k, None)
        pd.update(puts)


class Storage:
    """The LMDB environment, the log, the writer and checkpoint threads.
    Loop-side methods: begin_read, start, submit, checkpoint, grow, used_bytes, close."""

    def __init__(self, path: str, initial_map: int, max_map: int, ship_log: bool = False):
        os.makedirs(path, exist_ok=True)
        self.path = path
        self.max_map = max_map
        data_file = os.path.join(path, "data.mdb")
        existing = os.path.getsize(data_file) if os.path.exists(data_file) else 0
        size = max(initial_map, existing)
        # sync + metasync: a checkpoint returns only once data and meta pages are on
        # disk, so LMDB is always a consistent state the log can be replayed onto.
        self.env = lmdb.open(
            path, map_size=size, max_dbs=16, max_readers=1024, sync=True, metasync=True,
            writemap=False, map_async=False, readahead=False, lock=True, subdir=True,
        )
        self.env.reader_check()  # clear stale reader slots left by a killed process
        self.next_sweep = 0.0        # when the next checkpoint drops expired idempotency ids
        self.dbs = {name: self.env.open_db(name) for name in DB_NAMES}
        self.psize = self.env.stat()["psize"]
        self.map_size = self.env.info()["map_size"]
        with self.env.begin(write=True, db=self.dbs[b"meta"]) as txn:
            raw = txn.get(b"schema")
            if raw is None:
                txn.put(b"schema", str(SCHEMA_VERSION).encode())
            elif int(raw) != SCHEMA_VERSION:
                raise StorageError(f"data dir {path} has schema {raw!r}, this build needs {SCHEMA_VERSION}")
            raw = txn.get(_APPLIED)
            self.applied_lsn = 0 if raw is None else _I64.unpack(raw)[0]
            raw = txn.get(_TIMELINE)
            if raw is None:
                raw = secrets.token_hex(4).encode()
                txn.put(_TIMELINE, raw)
            self.timeline = raw.decode()
        self.keeper = wal.Keeper(path, ship_log, self.timeline)
        self._replay()
        self.wal = wal.WalWriter(path, self.applied_lsn + 1)
        self.keeper.final = None     # the writer's new segment is the current one
        self.keeper.writer = self.wal
        self._q: queue.SimpleQueue = queue.SimpleQueue()      # loop -> writer
        self._ckq: queue.SimpleQueue = queue.SimpleQueue()    # writer -> checkpointer
        self._pending: dict = {}     # logged, not yet handed to a checkpoint (writer's)
        self._pending_seq = 0        # the last batch in _pending
        self._retry = None           # a checkpoint that failed, applied with the next one
        self._ck_idle = threading.Event()   # set while the checkpoint thread waits for work
        self._ck_idle.set()
        self._threads: list[threading.Thread] = []
        # Test hook: CDRAGON_TEST_FAIL_LOG_WRITES="5,9" makes the 5th and 9th log writes
        # of this process fail (EIO), to exercise recovery from a failed write.
        self._fail_writes = {int(n) for n in os.environ.get("CDRAGON_TEST_FAIL_LOG_WRITES", "").split(",") if n}
        self._writes = 0
        self.fsync_times = Timings(FSYNC_BOUNDS)            # the writer's log appends
        self.checkpoint_times = Timings(CHECKPOINT_BOUNDS)  # the checkpoint thread's applies
        self._loop = None
        self._done = self._applied = None

    # ---- start-up ------------------------------------------------------------------
    def _replay(self) -> None:
        """Apply what the log holds beyond LMDB's last record, then drop the log."""
        paths = wal.segments(self.path)
        if not paths:
            return
        pending: dict = {}
        last = self.applied_lsn
        n = 0
        for p in paths:
            for lsn, _seq, body in wal.read_records(p):
                if lsn <= last:
                    continue
                if lsn != last + 1 and n:
                    log.warning("write-ahead log: record %d follows %d; stopping there", lsn, last)
                    break
                _merge(pending, wal.decode_body(body))
                last = lsn
                n += 1
        if n:
            self._apply_growing(pending, last)
            log.info("write-ahead log: replayed %d batches (up to record %d)", n, last)
        self.applied_lsn = last
        self.keeper.checkpointed(last, final=last)

    def _apply_growing(self, pending: dict, lsn: int) -> None:
        """Apply with no other transaction open (start-up, close): grow the map as
        needed, past max_map if it must, because these writes were acknowledged."""
        while True:
            try:
                self._apply(pending, lsn)
                return
            except lmdb.MapFullError:
                self.env.set_mapsize(self.map_size * 2)
                self.map_size = self.env.info()["map_size"]
                log.warning("LMDB map grown to %d bytes to hold acknowledged writes", self.map_size)

    def load_locks(self):
        """The lock records for the loop's lock table, read at start and after a failed
        log write (the loop is waiting either way): (the highest handle ever issued,
        [(key, handle, till, owner)] of the locks not yet expired). Expired records
        are deleted here."""
        hw = 0
        live, stale = [], []
        now = time.time()
        with self.env.begin() as txn:
            raw = txn.get(b"handle", None, self.dbs[b"meta"])
            if raw is not None:
                hw = _I64.unpack(raw)[0]
            for k, v in txn.cursor(self.dbs[b"lock"]):
                handle = _I64.unpack_from(v)[0]
                hw = max(hw, handle)
                till = _EXP.unpack_from(v, 8)[0]
                if till <= now:
                    stale.append(k)
                else:
                    live.append((k, handle, till, v[16:].decode("utf-8") if len(v) > 16 else None))
        if stale:
            with self.env.begin(write=True) as txn:
                for k in stale:
                    txn.delete(k, db=self.dbs[b"lock"])
        return hw, live

    # ---- loop side ----------------------------------------------------------------
    def used_bytes(self) -> int:
        """Bytes in pages that hold data now. Pages freed by deletes are reused by later
        writes, so this (not the file's high-water mark) is what fills the map."""
        pages = 2  # the two meta pages
        with self.env.begin() as txn:
            for st in [self.env.stat()] + [txn.stat(db) for db in self.dbs.values()]:
                pages += st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]
        return pages * self.psize

    def begin_read(self):
        return self.env.begin(buffers=False)

    def start(self, loop, on_done, on_applied) -> None:
        """Start the threads. on_done(seq, error) runs on the loop when batch `seq` is
        durable (error None) or could not be logged; on_applied(seq, error, used_bytes)
        when a checkpoint put every batch up to `seq` into LMDB (or failed)."""
        self._loop = loop
        self._done = on_done
        self._applied = on_applied
        for target, name in ((self._run_writer, "cdragon-writer"), (self._run_checkpoints, "cdragon-ckpt")):
            t = named_thread(target, name)
            t.start()
            self._threads.append(t)

    def submit(self, seq: int, ops: list) -> None:
        """ops: [(db_name, puts [(k, v)], deletes [k]), ...]; logged as one record."""
        self._q.put((seq, ops))

    def checkpoint(self) -> None:
        """Ask for a checkpoint of every batch logged before this call was made. The loop
        calls it only with the checkpoint thread idle; on_applied reports the end."""
        self._q.put(_CHECKPOINT)

    def grow(self, want: int, past_max: bool = False) -> bool:
        """Enlarge the map to at least `want` bytes (doubling), up to max_map (or past it,
        for writes already acknowledged). Only call with the checkpoint thread idle and
        no read transaction open."""
        limit = max(want, self.map_size * 2) if past_max else self.max_map
        if self.map_size >= limit:
            return False
        size = self.map_size
        while size < want and size < limit:
            size *= 2
        size = min(max(size, self.map_size * 2), limit)
        self.env.set_mapsize(size)
        self.map_size = self.env.info()["map_size"]
        return True

    def settle(self) -> None:
        """After a failed log write (the writer idle, the loop's read transaction
        paused): wait for a running checkpoint, then put every logged batch into LMDB
        now. Raises if that fails too; the log then still holds the writes."""
        self._ck_idle.wait()
        pending = self._take_pending()
        if pending is not None:
            self._apply_growing(pending[0], pending[2])
            self.applied_lsn = pending[2]
            self.keeper.checkpointed(pending[2])

    def close_segment(self, timeout: float = 10.0) -> bool:
        """Ask the writer thread to close the current segment if it holds records (the
        shipper's call, from its own thread); False if the writer did not answer."""
        cmd = _Rotate()
        self._q.put(cmd)
        return cmd.done.wait(timeout)

    def close(self) -> None:
        """Stop the threads, then put everything logged into LMDB and drop the log."""
        if self._threads:
            self._q.put(None)
            self._threads[0].join(timeout=30)
            self._ckq.put(None)
            self._threads[1].join(timeout=60)
            self._threads = []
        pending = self._take_pending()
        self.wal.close()
        if pending is not None:
            try:
                self._apply_growing(pending[0], pending[2])
            except Exception:
                log.exception("final checkpoint failed: the write-ahead log keeps the data "
                              "and the next start replays it")
                self.env.close()
                return
            self.applied_lsn = pending[2]
        # LMDB now holds every logged batch: the log goes (what is not shipped yet stays)
        self.keeper.checkpointed(self.applied_lsn, final=self.wal.lsn)
        self.env.close()

    # ---- writer thread ----------------------------------------------------------------
    def _run_writer(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            if item is _CHECKPOINT:
                self._ck_idle.clear()
                self._ckq.put(self._take_pending() or (None, 0, 0, []))
                continue
            if type(item) is _Rotate:
                try:
                    if self.wal.size:
                        self.wal._roll()
                except OSError as e:
                    log.error("write-ahead log: cannot start a new segment: %s", e)
                item.done.set()
                continue
            seq, ops = item
            err = None
            try:
                self._writes += 1
                if self._writes in self._fail_writes:
                    raise OSError(errno.EIO, "log write failed (CDRAGON_TEST_FAIL_LOG_WRITES)")
                # the batch's time goes into its record (and, newest wins, into LMDB)
                ops = list(ops)
                ops.append((b"meta", [(_CLOCK, _F64.pack(time.time()))], []))
                body = wal.wal_parts(ops)
                t0 = time.perf_counter()
                self.wal.append(seq, body)     # the record's write and its fdatasync
                self.fsync_times.observe(time.perf_counter() - t0)
            except Exception as e:  # reported to the loop; the batch is answered 500
                err = f"{type(e).__name__}: {e}"
            else:
                _merge(self._pending, ops)
                self._pending_seq = seq
            self._loop.call_soon_threadsafe(self._done, seq, err)

    def _take_pending(self):
        """(pending, last batch, last record, segments) of everything logged and not yet
        in LMDB, including a failed checkpoint's; None if there is nothing. Writer
        thread, or close() once the threads are stopped."""
        retry, self._retry = self._retry, None
        segs = self.wal.rotate()
        if not self._pending and retry is None:
            return None
        pending, self._pending = self._pending, {}
        seq, lsn = self._pending_seq, self.wal.lsn
        if retry is not None:
            older = retry[0]
            for name, (pd, dd) in pending.items():
                _merge(older, [(name, list(pd.items()), list(dd))])
            pending, segs = older, retry[3] + segs
            seq = max(seq, retry[1])
        return pending, seq, lsn, segs

    # ---- checkpoint thread ------------------------------------------------------------
    def _run_checkpoints(self) -> None:
        while True:
            item = self._ckq.get()
            if item is None:
                return
            pending, seq, lsn, segs = item
            err = None
            if pending is not None:
                try:
                    t0 = time.perf_counter()
                    self._apply(pending, lsn)
                    self.checkpoint_times.observe(time.perf_counter() - t0)
                except lmdb.MapFullError:
                    err = "map_full"
                except Exception as e:
                    err = f"{type(e).__name__}: {e}"
                    wal.drop_spare(self.path)    # (a full disk, most likely: give LMDB its room)
                if err is None:
                    self.applied_lsn = lsn
                    try:
                        self.keeper.checkpointed(lsn)
                    except OSError as e:   # replay skips records LMDB already holds
                        log.warning("write-ahead log: cannot retire a segment: %s", e)
                else:
                    self._retry = item   # read by the writer's next _take_pending
            try:
                used = self.used_bytes()
            except Exception:
                used = 0
            self._ck_idle.set()
            self._loop.call_soon_threadsafe(self._applied, seq, err, used)

    def _apply(self, pending: dict, lsn: int) -> None:
        dbs = self.dbs
        with self.env.begin(write=True) as txn:
            for name, (pd, dd) in pending.items():
                db = dbs[name]
                cur = txn.cursor(db)
                for i, k in enumerate(dd):
                    txn.delete(k, db=db)
                    if i % _APPLY_CHUNK == _APPLY_CHUNK - 1:
                        time.sleep(0)      # the loop's turn, as between put chunks below
                # In key order (LMDB then finds each key next to the last: about half
                # the time), sorted in C without the GIL; collected and put in chunks,
                # because a single putmulti of 100,000 items holds the GIL for tens of
                # ms, which stalls the event loop: between chunks the loop gets its turn.
                puts = SortedPuts(pd)
                while puts.collect(_COLLECT_CHUNK):
                    time.sleep(0)
                puts.sort()
                while chunk := puts.take(_APPLY_CHUNK):
                    cur.putmulti(chunk)
                    time.sleep(0)
            now = time.time()
            if now >= self.next_sweep:
                self._sweep_idempotency(txn, now)
                self.next_sweep = now + 1.0
            txn.put(_APPLIED, _I64.pack(lsn), db=dbs[b"meta"])

    def _sweep_idempotency(self, txn, now: float, limit: int = 5000) -> None:
        """Drop expired idempotency ids, oldest first, a bounded number per checkpoint.
        `idemexp` indexes ids by expiry (8-byte big-endian double + id key)."""
        exp_db, idem_db = self.dbs[b"idemexp"], self.dbs[b"idem"]
        cur = txn.cursor(exp_db)
        if not cur.first():
            return
        n = 0
        while n < limit:
            k = cur.key()
            if not k:
                break
            when = _EXP.unpack_from(k)[0]
            if when > now:
                break
            idk = k[8:]
            raw = txn.get(idk, db=idem_db)
            if raw is not None and _EXP.unpack(raw)[0] <= now:
                txn.delete(idk, db=idem_db)
            n += 1
            cur.delete()  # moves to the next entry
