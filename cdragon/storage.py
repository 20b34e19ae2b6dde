"""LMDB environment and the writer thread (group commit).

Owns the LMDB environment, its named sub-databases and the one thread that writes
them. The event loop hands over a whole batch (already encoded as puts and deletes);
the writer commits it in one durable write transaction and reports back through
`loop.call_soon_threadsafe`. Never touches in-memory server state, and nothing but
this thread ever opens a write transaction.

Map growth: the loop asks for a bigger map between batches (`grow`), when the writer
is idle and the loop has reset its read transaction, because LMDB forbids resizing
while any transaction of the process is open.
"""
from __future__ import annotations

import os
import queue
import struct
import threading
import time

import lmdb

DB_NAMES = (b"kv", b"counter", b"seq", b"lock", b"idem", b"idemexp", b"meta")
SCHEMA_VERSION = 1
_EXP = struct.Struct(">d")


class StorageError(Exception):
    pass


class Storage:
    """The LMDB environment plus the writer thread. Loop-side methods: open, begin_read,
    submit, grow, close. Writer-side: _run, _commit."""

    def __init__(self, path: str, initial_map: int, max_map: int):
        os.makedirs(path, exist_ok=True)
        self.path = path
        self.max_map = max_map
        data_file = os.path.join(path, "data.mdb")
        existing = os.path.getsize(data_file) if os.path.exists(data_file) else 0
        size = max(initial_map, existing)
        # sync + metasync: a commit returns only once data and meta pages are on disk.
        # No writemap, no map_async: those trade durability for speed.
        self.env = lmdb.open(
            path, map_size=size, max_dbs=16, max_readers=1024, sync=True, metasync=True,
            writemap=False, map_async=False, readahead=False, lock=True, subdir=True,
        )
        self.env.reader_check()  # clear stale reader slots left by a killed process
        self.dbs = {name: self.env.open_db(name) for name in DB_NAMES}
        self.psize = self.env.stat()["psize"]
        self.map_size = self.env.info()["map_size"]
        with self.env.begin(write=True, db=self.dbs[b"meta"]) as txn:
            raw = txn.get(b"schema")
            if raw is None:
                txn.put(b"schema", str(SCHEMA_VERSION).encode())
            elif int(raw) != SCHEMA_VERSION:
                raise StorageError(f"data dir {path} has schema {raw!r}, this build needs {SCHEMA_VERSION}")
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._done = None
        self._loop = None
        self.next_sweep = 0.0

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

    def start(self, loop, on_done) -> None:
        """Start the writer; on_done(seq, error, used_bytes) runs on the loop."""
        self._loop = loop
        self._done = on_done
        self._thread = threading.Thread(target=self._run, name="cdragon-writer", daemon=True)
        self._thread.start()

    def submit(self, seq: int, ops: list) -> None:
        """ops: [(db_name, puts [(k, v)], deletes [k]), ...]; committed as one txn."""
        self._q.put((seq, ops))

    def grow(self, want: int) -> bool:
        """Enlarge the map to at least `want` bytes (doubling), up to max_map.
        Only call with the writer idle and no read transaction open."""
        if self.map_size >= self.max_map:
            return False
        size = self.map_size
        while size < want and size < self.max_map:
            size *= 2
        size = min(max(size, self.map_size * 2), self.max_map)
        self.env.set_mapsize(size)
        self.map_size = self.env.info()["map_size"]
        return True

    def close(self) -> None:
        if self._thread is not None:
            self._q.put(None)
            self._thread.join(timeout=30)
            self._thread = None
        self.env.close()

    # ---- writer thread ----------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            seq, ops = item
            err = None
            try:
                self._commit(ops)
            except lmdb.MapFullError:
                err = "map_full"
            except Exception as e:  # reported to the loop; the batch is answered 500
                err = f"{type(e).__name__}: {e}"
            try:
                used = self.used_bytes()
            except Exception:
                used = 0
            self._loop.call_soon_threadsafe(self._done, seq, err, used)

    def _commit(self, ops: list) -> None:
        dbs = self.dbs
        with self.env.begin(write=True) as txn:
            now = time.time()
            if now >= self.next_sweep:
                self._sweep_idempotency(txn, now)
                self.next_sweep = now + 1.0
            for name, puts, dels in ops:
                db = dbs[name]
                for k in dels:
                    txn.delete(k, db=db)
                if puts:
                    # in key order: LMDB's cursor then often finds the next key on the
                    # page it is already on instead of searching from the root
                    puts.sort()
                    txn.cursor(db).putmulti(puts)

    def _sweep_idempotency(self, txn, now: float, limit: int = 5000) -> None:
        """Drop expired idempotency ids, oldest first, a bounded number per commit.
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
