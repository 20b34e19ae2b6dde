# Store: every read and write of kv, counter, sequence, idempotency and revision
# records, as seen from the event loop. Writes land in an in-memory overlay and mark the
# open Batch dirty; reads check the overlay, then a long-lived LMDB read transaction
# that is renewed after each commit. Reading an overlay entry raises `wait_seq`, so the
# response that reveals it waits until that batch is durable.
#
# Never writes LMDB (the writer thread in cdragon.storage does) and never holds the
# read transaction across a wait: every use is synchronous on the loop thread.

import cython

@cython.freelist(4096)
@cython.no_gc      # holds bytes and numbers only: nothing for the cycle collector
cdef class Entry:
    """One uncommitted record. kv: val = JSON bytes or None (deleted), num = version.
    counter / seq: num = value. idem: f = expiry (epoch seconds)."""
    cdef object val
    cdef int64_t num
    cdef double f
    cdef int64_t seq     # the batch that wrote it


cdef class Batch:
    """The writes of many requests, committed together, and everything waiting on them."""
    cdef readonly int64_t seq
    cdef dict kv, ctr, sq, idem, revs, lk   # dirty keys (values: None)
    cdef list conns                     # connections with a response waiting on this batch
    cdef list after                     # callables to run once durable (grants, wakes)
    cdef Py_ssize_t est_bytes
    cdef int nreq

    def __cinit__(self, int64_t seq):
        self.seq = seq
        self.kv = {}
        self.ctr = {}
        self.sq = {}
        self.idem = {}
        self.revs = {}
        self.lk = {}
        self.conns = []
        self.after = []
        self.est_bytes = 0
        self.nreq = 0

    cdef inline bint empty(self):
        return not (self.kv or self.ctr or self.sq or self.idem or self.revs or self.lk or self.after)

    cdef inline void mark(self, dict dirty, bytes k, Py_ssize_t size):
        if k not in dirty:
            dirty[k] = None
            self.est_bytes += BATCH_KEY_OVERHEAD + 2 * (PyBytes_GET_SIZE(k) + size)


cdef class Store:
    cdef object storage
    cdef object rtxn
    cdef object db_kv, db_ctr, db_seq, db_idem, db_meta
    cdef dict o_kv, o_ctr, o_seq, o_idem      # overlays: full key -> Entry
    cdef dict revs                            # account -> revision (authoritative)
    cdef dict start_revs                      # account -> revision on disk when first loaded
    cdef Batch open_batch
    cdef Batch inflight
    cdef readonly int64_t durable_seq
    cdef public int64_t wait_seq              # accumulated by reads of the current request
    cdef object r_val                         # value of the last kv_read
    cdef readonly int64_t used_bytes          # LMDB high-water mark after the last commit
    cdef readonly int64_t max_bytes
    cdef readonly bint full

    def __cinit__(self, storage, int64_t max_bytes):
        self.storage = storage
        dbs = storage.dbs
        self.db_kv = dbs[b"kv"]
        self.db_ctr = dbs[b"counter"]
        self.db_seq = dbs[b"seq"]
        self.db_idem = dbs[b"idem"]
        self.db_meta = dbs[b"meta"]
        self.rtxn = storage.begin_read()
        self.o_kv = {}
        self.o_ctr = {}
        self.o_seq = {}
        self.o_idem = {}
        self.revs = {}
        self.start_revs = {}
        self.durable_seq = 0
        self.open_batch = Batch(1)
        self.inflight = None
        self.wait_seq = 0
        self.max_bytes = max_bytes
        self.used_bytes = storage.used_bytes()
        self.full = False

    # ---- reads -----------------------------------------------------------------------
    cdef inline void _saw(self, Entry e):
        if e.seq > self.wait_seq:
            self.wait_seq = e.seq

    cdef int64_t kv_read(self, bytes k) except -1:
        """Version of a key (0 if missing); its JSON bytes (or None) in self.r_val."""
        cdef Entry e = self.o_kv.get(k)
        if e is not None:
            self._saw(e)
            self.r_val = e.val
            return e.num
        raw = self.rtxn.get(k, None, self.db_kv)
        if raw is None:
            self.r_val = None
            return 0
        self.r_val = (<bytes>raw)[8:]
        return unpack_i64(raw)

    cdef int64_t _num_read(self, dict over, object db, bytes k) except? -1:
        cdef Entry e = over.get(k)
        if e is not None:
            self._saw(e)
            return e.num
        raw = self.rtxn.get(k, None, db)
        if raw is None:
            return 0
        return unpack_i64(raw)

    cdef int64_t ctr_read(self, bytes k) except? -1:
        return self._num_read(self.o_ctr, self.db_ctr, k)

    cdef int64_t seq_read(self, bytes k) except? -1:
        return self._num_read(self.o_seq, self.db_seq, k)

    cdef bint idem_live(self, bytes k, double now) except -1:
        cdef Entry e = self.o_idem.get(k)
        if e is not None:
            self._saw(e)
            return e.f > now
        raw = self.rtxn.get(k, None, self.db_idem)
        return raw is not None and unpack_f64be(raw) > now

    cdef int64_t revision(self, bytes acc) except -1:
        r = self.revs.get(acc)
        if r is None:
            raw = self.rtxn.get(b"rev\0" + acc, None, self.db_meta)
            r = 0 if raw is None else unpack_i64(raw)
            self.revs[acc] = r
            if acc not in self.start_revs:
                self.start_revs[acc] = r
        return r

    cdef int64_t start_revision(self, bytes acc) except -1:
        """The account's revision when this process first loaded it: the history of
        the account (delete markers) is known from there on."""
        self.revision(acc)
        return self.start_revs[acc]

    # ---- writes (all go through _entry + Batch.mark: the one after-write hook) -------
    cdef inline Entry _entry(self, dict over, bytes k):
        cdef Entry e = over.get(k)
        if e is None:
            e = Entry.__new__(Entry)
            over[k] = e
        e.seq = self.open_batch.seq
        return e

    cdef void kv_write(self, bytes k, object val, int64_t ver):
        cdef Entry e = self._entry(self.o_kv, k)
        e.val = val
        e.num = ver
        self.open_batch.mark(self.open_batch.kv, k, 0 if val is None else PyBytes_GET_SIZE(val))

    cdef void ctr_write(self, bytes k, int64_t v):
        self._entry(self.o_ctr, k).num = v
        self.open_batch.mark(self.open_batch.ctr, k, 8)

    cdef void seq_write(self, bytes k, int64_t v):
        self._entry(self.o_seq, k).num = v
        self.open_batch.mark(self.open_batch.sq, k, 8)

    cdef void idem_write(self, bytes k, double expiry):
        self._entry(self.o_idem, k).f = expiry
        self.open_batch.mark(self.open_batch.idem, k, 24)

    cdef int64_t bump_revision(self, bytes acc) except -1:
        cdef int64_t r = self.revision(acc) + 1
        self.revs[acc] = r
        self.open_batch.mark(self.open_batch.revs, acc, 8)
        return r

    cdef inline int64_t write_seq(self):
        return self.open_batch.seq

    cdef bint has_room(self):
        """False when the writes already queued could push LMDB past its maximum."""
        cdef int64_t pending = self.open_batch.est_bytes
        if self.inflight is not None:
            pending += self.inflight.est_bytes
        return self.used_bytes + pending + STORAGE_HEADROOM <= self.max_bytes

    # ---- batches -----------------------------------------------------------------------
    cdef Batch batch_for(self, int64_t seq):
        if self.inflight is not None and self.inflight.seq == seq:
            return self.inflight
        if self.open_batch.seq == seq:
            return self.open_batch
        return None

    cdef list encode(self, Batch b):
        """The batch as [(db, puts, deletes)] for the writer, read from the overlay."""
        cdef list ops = []
        cdef list puts, dels, xputs
        cdef Entry e
        cdef bytes k
        if b.kv:
            puts = []
            dels = []
            for k in b.kv:
                e = self.o_kv[k]
                if e.val is None:
                    dels.append(k)
                else:
                    puts.append((k, pack_i64(e.num) + <bytes>e.val))
            ops.append((b"kv", puts, dels))
        if b.ctr:
            puts = []
            dels = []
            for k in b.ctr:
                e = self.o_ctr[k]
                if e.num == 0:
                    dels.append(k)      # a counter at 0 is the same as no counter
                else:
                    puts.append((k, pack_i64(e.num)))
            ops.append((b"counter", puts, dels))
        if b.sq:
            ops.append((b"seq", [(k, pack_i64((<Entry>self.o_seq[k]).num)) for k in b.sq], []))
        if b.idem:
            puts = []
            xputs = []
            for k in b.idem:
                e = self.o_idem[k]
                puts.append((k, pack_f64be(e.f)))
                xputs.append((pack_f64be(e.f) + k, b""))
            ops.append((b"idem", puts, []))
            ops.append((b"idemexp", sorted(xputs), []))
        if b.revs:
            ops.append((b"meta", [(b"rev\0" + <bytes>a, pack_i64(self.revs[a])) for a in b.revs], []))
        return ops

    cdef Batch take_open(self):
        """Detach the open batch for commit (the writer must be idle)."""
        cdef Batch b = self.open_batch
        self.inflight = b
        self.open_batch = Batch(b.seq + 1)
        return b

    cdef void _purge(self, dict dirty, dict over, int64_t seq):
        cdef Entry e
        for k in dirty:
            e = over.get(k)
            if e is not None and e.seq == seq:
                del over[k]

    cdef Batch committed(self, int64_t used):
        """The in-flight batch is durable: renew reads, drop its overlay entries."""
        cdef Batch b = self.inflight
        self.inflight = None
        self._renew_reads()
        self._purge(b.kv, self.o_kv, b.seq)
        self._purge(b.ctr, self.o_ctr, b.seq)
        self._purge(b.sq, self.o_seq, b.seq)
        self._purge(b.idem, self.o_idem, b.seq)
        self.durable_seq = b.seq
        self.set_used(used)
        return b

    cdef void set_used(self, int64_t used):
        if used > 0:
            self.used_bytes = used
        self.full = self.used_bytes + STORAGE_HEADROOM > self.max_bytes

    cdef list failed(self):
        """The in-flight batch could not be committed: forget every uncommitted write
        (the in-flight and the open batch both build on it) and return both batches so
        their waiting responses can be answered with the error."""
        cdef Batch a = self.inflight, b = self.open_batch
        self.inflight = None
        self.o_kv.clear()
        self.o_ctr.clear()
        self.o_seq.clear()
        self.o_idem.clear()
        self.revs.clear()
        self._renew_reads()
        self.open_batch = Batch(b.seq + 1)
        self.durable_seq = b.seq      # nothing of a or b will ever be committed
        return [a, b]

    cdef void _renew_reads(self):
        # py-lmdb keeps a spare read transaction handle (max_spare_txns), so abort +
        # begin is a cheap renew of the snapshot
        self.rtxn.abort()
        self.rtxn = self.storage.begin_read()

    cdef void pause_reads(self):
        self.rtxn.abort()
        self.rtxn = None

    cdef void resume_reads(self):
        self.rtxn = self.storage.begin_read()

    cdef void close(self):
        self.rtxn.abort()
