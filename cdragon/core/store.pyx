# Store: every read and write of kv, counter, sequence, idempotency and revision
# records, as seen from the event loop. Writes land in an in-memory overlay and mark the
# open Batch dirty; reads check the overlay, then a long-lived LMDB read transaction
# that is renewed after each checkpoint. An overlay entry stays until a checkpoint has
# put it into LMDB (a batch is durable earlier, once it is in the write-ahead log).
# Reading an overlay entry raises `wait_seq`, so the response that reveals it waits
# until that batch is durable.
#
# Never writes LMDB (the writer thread in cdragon.storage does) and never holds the
# read transaction across a wait: every use is synchronous on the loop thread.

import cython

@cython.freelist(4096)
@cython.no_gc      # holds bytes, numbers and older Entries only: no cycles
cdef class Entry:
    pass


# An LMDB kv record: the version (8 bytes), then the JSON value; with an expiry, the
# version carries this flag and the expiry (8 bytes, big-endian double) comes between.
# Records written before TTLs existed have no flag and read the same as before.
cdef int64_t KV_HAS_EXPIRY = (<int64_t>1) << 62


cdef inline bytes kv_record(int64_t ver, double exp, bytes val):
    if exp == 0:
        return pack_i64(ver) + val
    return pack_i64(ver | KV_HAS_EXPIRY) + pack_f64be(exp) + val


cdef inline object kv_wal_value(int64_t ver, double exp, bytes val):
    """kv_record for the writer: a big value as (the record's head, val), joined only
    by the checkpoint (keysort.pyx) and copied into the log by the kernel (walbody.pyx)."""
    if PyBytes_GET_SIZE(val) < WAL_BY_REF:
        return kv_record(ver, exp, val)
    if exp == 0:
        return (pack_i64(ver), val)
    return (pack_i64(ver | KV_HAS_EXPIRY) + pack_f64be(exp), val)


cdef inline bint overflows(Py_ssize_t klen, Py_ssize_t vlen) noexcept:
    """A record too big for a leaf node (LMDB's limit for 4 KB pages): its value gets
    overflow pages of its own."""
    return klen + vlen + 8 > LMDB_NODE_MAX


cdef inline Py_ssize_t record_bytes(Py_ssize_t klen, Py_ssize_t vlen) noexcept:
    """What one record may add to LMDB's pages in use. A small record shares a leaf
    page (node header and index slot; pages are about 2/3 full after splits); a big
    value gets overflow pages of its own."""
    if not overflows(klen, vlen):
        return (klen + vlen + 10) * 3 // 2
    return (vlen + 16 + 4095) // 4096 * 4096 + klen + 16


cdef list _queue_ops(dict qm):
    """A batch's queue records as writer ops (qmsg and qdedup)."""
    cdef list mp = [], md = [], dp = [], dd = []
    cdef bytes tk
    cdef Entry e
    for tk, e in qm.items():
        if tk[0] == 109:        # "m"
            if e.val is None:
                md.append(tk[1:])
            else:
                mp.append((tk[1:], e.val))
        elif e.val is None:
            dd.append(tk[1:])
        else:
            dp.append((tk[1:], e.val))
    return [(b"qmsg", mp, md), (b"qdedup", dp, dd)]


cdef class Batch:

    def __cinit__(self, int64_t seq):
        self.seq = seq
        self.kv = {}
        self.ctr = {}
        self.sq = {}
        self.idem = {}
        self.revs = {}
        self.lk = {}
        self.kx = {}
        self.qm = {}
        self.rl = {}
        self.conns = []
        self.after = []
        self.est_data = 0
        self.nkeys = 0
        self.nreq = 0

    cdef bint empty(self) noexcept:
        return not (self.kv or self.ctr or self.sq or self.idem or self.revs or self.lk or self.kx
                    or self.qm or self.after or self.rl)

    cdef int mark(self, dict dirty, bytes k, Py_ssize_t size) except -1:
        if k not in dirty:
            dirty[k] = None
            self.count(k, size)
        return 0

    cdef void count(self, bytes k, Py_ssize_t size) noexcept:
        self.est_data += record_bytes(PyBytes_GET_SIZE(k), size)
        self.nkeys += 1


cdef class RangeReader:

    cdef int read(self, Store st, Py_ssize_t n, list out) except -1:
        """Append up to n live keys (-1: all) to out, in key order, LMDB's records and the
        overlay's copied entries merged (the overlay wins); returns 1 when the range is
        exhausted."""
        cdef Py_ssize_t n_ov = len(self.ov), got = 0
        cdef bytes lk, ok, k
        cdef tuple o
        cdef int64_t ver
        while n < 0 or got < n:
            lk = None
            if self.pair is not None:
                lk = <bytes>(<tuple>self.pair)[0]
                if not lk.startswith(self.prefix):
                    lk = self.pair = None
            o = <tuple>self.ov[self.i] if self.i < n_ov else None
            ok = None if o is None else <bytes>o[0]
            if lk is None and ok is None:
                return 1
            if ok is not None and (lk is None or ok <= lk):
                self.i += 1
                if ok == lk:
                    self.pair = next(self.it, None)
                if <int64_t>o[1] != 0:
                    out.append(o)
                    got += 1
            else:
                ver = st._raw_state((<tuple>self.pair)[1])
                self.pair = next(self.it, None)
                if ver != 0:
                    out.append((lk, ver, st.r_val, st.r_exp))
                    got += 1
        return 0


cdef class Store:

    def __cinit__(self, storage, int64_t max_bytes):
        self.storage = storage
        dbs = storage.dbs
        self.db_kv = dbs[b"kv"]
        self.db_ctr = dbs[b"counter"]
        self.db_seq = dbs[b"seq"]
        self.db_idem = dbs[b"idem"]
        self.db_meta = dbs[b"meta"]
        self.db_kvexp = dbs[b"kvexp"]
        self.db_qmsg = dbs[b"qmsg"]
        self.db_qdedup = dbs[b"qdedup"]
        self.db_rl = dbs[b"ratelimit"]
        self.o_rl = {}
        self.rtxn = storage.begin_read()
        self.o_kv = {}
        self.o_ctr = {}
        self.o_seq = {}
        self.o_idem = {}
        self.o_q = {}
        self.kv_by_acc = {}
        self.revs = {}
        self.durable_revs = {}
        self.start_revs = {}
        self.durable_seq = 0
        self.open_batch = Batch(1)
        self.inflight = None
        self.unapplied = []
        self.unapplied_data = self.unapplied_keys = self.unapplied_reqs = 0
        self.unapplied_since = 0
        self.to_purge = _deque()
        self.applied_seq = 0
        self.wait_seq = 0
        self.max_bytes = max_bytes
        self.used_bytes = storage.used_bytes()

    # ---- reads -----------------------------------------------------------------------
    cdef void _saw(self, Entry e) noexcept:
        if e.seq > self.wait_seq:
            self.wait_seq = e.seq

    cdef int64_t kv_read(self, bytes k) except -1:
        """Version of a key (0 if missing or expired); its JSON bytes (or None) in
        self.r_val, its expiry (0: none) in self.r_exp."""
        cdef Entry e = self.o_kv.get(k)
        if e is not None:
            self._saw(e)
            return self._entry_state(e)
        return self._kv_stored(k)

    cdef int64_t _entry_state(self, Entry e) except -1:
        """An overlay Entry as kv_read answers it (an expired key reads as missing)."""
        if e.val is None or (e.f != 0 and e.f <= wall_now()):
            self.r_val = None
            self.r_exp = 0
            return 0
        self.r_val = e.val
        self.r_exp = e.f
        return e.num

    cdef int64_t _kv_stored(self, bytes k) except -1:
        """kv_read from LMDB alone."""
        return self._raw_state(self.rtxn.get(k, None, self.db_kv))

    cdef int64_t _raw_state(self, object raw) except -1:
        """An LMDB kv record (version, [expiry,] JSON; see kv_record) as kv_read
        answers it."""
        cdef int64_t ver
        cdef double exp = 0
        if raw is None:
            self.r_val = None
            self.r_exp = 0
            return 0
        ver = unpack_i64(raw)
        if ver & KV_HAS_EXPIRY:
            exp = unpack_f64be((<bytes>raw)[8:16])
            if exp <= wall_now():
                self.r_val = None
                self.r_exp = 0
                return 0
            self.r_val = (<bytes>raw)[16:]
            self.r_exp = exp
            return ver & ~KV_HAS_EXPIRY
        self.r_val = (<bytes>raw)[8:]
        self.r_exp = 0
        return ver

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

    cdef int64_t _stored_revision(self, bytes acc) except -1:
        raw = self.rtxn.get(b"rev\0" + acc, None, self.db_meta)
        return 0 if raw is None else unpack_i64(raw)

    cdef int64_t shown_revision(self, bytes acc) except -1:
        """The account's revision, for an answer that shows it: that answer waits for
        the batch that made the revision, if it is not durable yet."""
        cdef Batch b = self.open_batch
        if acc in b.revs:
            self.wait_seq = max(self.wait_seq, b.seq)
        elif self.inflight is not None and acc in self.inflight.revs:
            self.wait_seq = max(self.wait_seq, self.inflight.seq)
        return self.revision(acc)

    cdef int64_t revision(self, bytes acc) except -1:
        r = self.revs.get(acc)
        if r is None:
            r = self._stored_revision(acc)
            self.revs[acc] = r
            if acc not in self.start_revs:
                self.start_revs[acc] = r
        return r

    # ---- the durable state (what watchers are told) ------------------------------------
    cdef Entry _durable(self, Entry e):
        while e is not None and e.seq > self.durable_seq:
            e = e.prev
        return e

    cdef int64_t durable_kv(self, bytes k) except -1:
        """kv_read of the durable state: no wait needed to reveal it."""
        cdef Entry e = self._durable(self.o_kv.get(k))
        if e is not None:
            return self._entry_state(e)
        return self._kv_stored(k)

    cdef int64_t durable_revision(self, bytes acc) except -1:
        r = self.durable_revs.get(acc)
        return self._stored_revision(acc) if r is None else r

    cdef set _acc_keys(self, bytes acc):
        """The account's keys in the overlay. Built on the account's first range read
        (one pass over the overlay), then kept up to date (kv_write, _purge_kv)."""
        cdef set mine = self.kv_by_acc.get(acc)
        cdef bytes head
        if mine is None:
            head = acc + b"\0"
            mine = self.kv_by_acc[acc] = {k for k in self.o_kv if (<bytes>k).startswith(head)}
        return mine

    cdef list scan(self, bytes acc, bytes prefix, bytes start, Py_ssize_t limit, bint durable):
        """The live keys under `prefix` (a record-key prefix) from `start` on (a record
        key, included), in key order, at most `limit` (-1: all): [(record key, version,
        JSON value, expiry)]. The newest state (what it shows of the overlay raises
        wait_seq), or with `durable`, the durable state (what watchers are told)."""
        cdef list out = []
        self.range_reader(acc, prefix, start, durable, self.rtxn).read(self, limit, out)
        return out

    cdef RangeReader range_reader(self, bytes acc, bytes prefix, bytes start, bint durable, object txn):
        """A reader of the keys under `prefix` from `start` on: LMDB through `txn`, and
        the overlay's entries in that range as they are now (copied: later writes do
        not change what the reader shows)."""
        cdef RangeReader r = RangeReader.__new__(RangeReader)
        cdef Entry e
        cdef int64_t ver
        r.prefix = prefix
        r.ov = []
        for k in sorted([k for k in self._acc_keys(acc) if k >= start and (<bytes>k).startswith(prefix)]):
            e = <Entry>self.o_kv.get(k)
            if durable:
                e = self._durable(e)
                if e is None:
                    continue              # no durable overlay entry: LMDB has the key's state
            elif e is not None:
                self._saw(e)
            if e is not None:
                ver = self._entry_state(e)
                r.ov.append((k, ver, self.r_val, self.r_exp))
        r.i = 0
        r.it = None
        r.pair = None
        cur = txn.cursor(self.db_kv)
        if cur.set_range(start):
            r.it = cur.iternext(True, True)     # one call per record: (key, value)
            r.pair = next(r.it, None)
        return r

    cdef int64_t start_revision(self, bytes acc) except -1:
        """The account's revision when this process first loaded it: the history of
        the account (delete markers) is known from there on."""
        self.revision(acc)
        return self.start_revs[acc]

    # ---- writes (all go through _entry: the one after-write hook) ----------------------
    cdef Entry _entry(self, dict over, dict dirty, bytes k, Py_ssize_t size):
        """The open batch's Entry for k (made on its first write of k this batch)."""
        cdef Entry e = over.get(k)
        if e is not None and e.seq == self.open_batch.seq:
            return e
        return self._new_entry(over, dirty, k, size, e)

    cdef Entry _new_entry(self, dict over, dict dirty, bytes k, Py_ssize_t size, Entry prev):
        cdef Batch b = self.open_batch
        cdef Entry n = Entry.__new__(Entry)
        n.seq = b.seq
        n.prev = prev
        over[k] = n
        dirty[k] = n
        b.count(k, size)
        if overflows(PyBytes_GET_SIZE(k), size) and (prev is None or prev.seq <= self.ckpt_cut):
            # a big value the next checkpoint does not write yet (a key rewritten since
            # the cut is written once): its own overflow pages, which a bigger checkpoint
            # would write just the same, so these bound the checkpoint's size. Values
            # that share leaf pages are left out: a bigger checkpoint rewrites each such
            # page for more of them (measured: 1 KB values over 1,000,000 keys, -9 %).
            self.new_data += record_bytes(PyBytes_GET_SIZE(k), size)
        return n

    cdef int kv_write(self, bytes acc, bytes k, object val, int64_t ver, double exp) except -1:
        cdef Entry e
        cdef set mine
        if self.kv_by_acc:
            mine = self.kv_by_acc.get(acc)
            if mine is not None:
                mine.add(k)
        e = self._entry(self.o_kv, self.open_batch.kv, k, 0 if val is None else PyBytes_GET_SIZE(val))
        e.val = val
        e.num = ver
        e.f = exp
        if exp != 0:
            self.expiry_mark(pack_f64be(exp) + k, True)
        return 0

    cdef double expiry_of(self, bytes k) except -1:
        """The expiry of k's newest state (0: none, or no key), passed or not."""
        cdef Entry e = self.o_kv.get(k)
        cdef object raw
        if e is not None:
            return 0 if e.val is None else e.f
        raw = self.rtxn.get(k, None, self.db_kv)
        if raw is None or not (unpack_i64(raw) & KV_HAS_EXPIRY):
            return 0
        return unpack_f64be((<bytes>raw)[8:16])

    cdef int expiry_mark(self, bytes xk, bint put) except -1:
        """Put (or delete) an entry of the expiry index kvexp (8-byte big-endian expiry +
        record key: LMDB keeps it in time order) with the open batch."""
        cdef Batch b = self.open_batch
        if xk not in b.kx:
            b.count(xk, 0)
        b.kx[xk] = put
        return 0

    cdef int ctr_write(self, bytes k, int64_t v) except -1:
        self._entry(self.o_ctr, self.open_batch.ctr, k, 8).num = v
        return 0

    cdef int seq_write(self, bytes k, int64_t v) except -1:
        self._entry(self.o_seq, self.open_batch.sq, k, 8).num = v
        return 0

    cdef int idem_write(self, bytes k, double expiry) except -1:
        self._entry(self.o_idem, self.open_batch.idem, k, 24).f = expiry
        return 0

    cdef object q_read(self, bytes tk):
        """A queue record (queues.pyx; `tk` = b"m" or b"d" + LMDB key): bytes or None."""
        cdef Entry e = self.o_q.get(tk)
        if e is not None:
            self._saw(e)
            return e.val
        return self.rtxn.get(tk[1:], None, self.db_qmsg if tk[0] == 109 else self.db_qdedup)

    cdef int q_write(self, bytes tk, object val) except -1:
        """Write (None: delete) a queue record with the open batch."""
        self._entry(self.o_q, self.open_batch.qm, tk, 0 if val is None else PyBytes_GET_SIZE(val)).val = val
        return 0

    cdef int q_write_new(self, bytes tk, bytes val) except -1:
        """q_write of a key never written before (a new message's: IDs are never
        reused), without looking for an older entry of it."""
        self._new_entry(self.o_q, self.open_batch.qm, tk, PyBytes_GET_SIZE(val), None).val = val
        return 0

    cdef int64_t rl_read(self, bytes k) except? -1:
        """A rate-limit key's TAT (epoch ns; 0: no state)."""
        return self._num_read(self.o_rl, self.db_rl, k)

    cdef int rl_write(self, bytes k, int64_t tat) except -1:
        self._entry(self.o_rl, self.open_batch.rl, k, 8).num = tat
        return 0

    cdef int64_t bump_revision(self, bytes acc) except -1:
        cdef int64_t r = self.revision(acc) + 1
        self.revs[acc] = r
        if acc not in self.open_batch.revs:
            self.open_batch.count(acc, 8)
        self.open_batch.revs[acc] = r
        return r

    cdef int64_t write_seq(self) noexcept:
        return self.open_batch.seq

    cdef int64_t pending_bytes(self) noexcept:
        """What the writes not yet in LMDB may add to its pages in use."""
        cdef int64_t data = self.unapplied_data + self.open_batch.est_data
        if self.inflight is not None:
            data += self.inflight.est_data
        return data

    cdef int64_t checkpoint_bytes(self) noexcept:
        """Map space a checkpoint of everything pending may need: the records, plus
        copies of the pages it rewrites (up to 3 per record, at most the whole tree),
        which stay allocated until it commits."""
        cdef int64_t data = self.pending_bytes()
        cdef int64_t keys = self.unapplied_keys + self.open_batch.nkeys
        if self.inflight is not None:
            keys += self.inflight.nkeys
        return data + min(keys * PAGE_COPY_BYTES, self.used_bytes + data)

    cdef void cut_checkpoint(self) noexcept:
        """A checkpoint of every batch before the open one starts: count new big values
        from here. (What the open batch wrote before this call is not counted for the
        next checkpoint: a trigger's estimate, not a tally.)"""
        self.ckpt_cut = self.open_batch.seq - 1
        self.new_data = 0

    cdef bint has_room(self) noexcept:
        """False when the writes already queued could push LMDB past its maximum."""
        return self.used_bytes + self.pending_bytes() + STORAGE_HEADROOM <= self.max_bytes
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
            for k, e in b.kv.items():
                if e.val is None:
                    dels.append(k)
                else:
                    puts.append((k, kv_wal_value(e.num, e.f, <bytes>e.val)))
            ops.append((b"kv", puts, dels))
        if b.kx:
            ops.append((b"kvexp", [(xk, b"") for xk, put in b.kx.items() if put],
                        [xk for xk, put in b.kx.items() if not put]))
        if b.ctr:
            puts = []
            dels = []
            for k, e in b.ctr.items():
                if e.num == 0:
                    dels.append(k)      # a counter at 0 is the same as no counter
                else:
                    puts.append((k, pack_i64(e.num)))
            ops.append((b"counter", puts, dels))
        if b.sq:
            ops.append((b"seq", [(k, pack_i64((<Entry>e).num)) for k, e in b.sq.items()], []))
        if b.idem:
            puts = []
            xputs = []
            for k, e in b.idem.items():
                puts.append((k, pack_f64be(e.f)))
                xputs.append((pack_f64be(e.f) + k, b""))
            ops.append((b"idem", puts, []))
            ops.append((b"idemexp", sorted(xputs), []))
        if b.rl:            # a TAT of 0 (an import's replace) is no state: deleted
            ops.append((b"ratelimit", [(k, pack_i64((<Entry>e).num)) for k, e in b.rl.items() if (<Entry>e).num],
                        [k for k, e in b.rl.items() if not (<Entry>e).num]))
        if b.revs:
            ops.append((b"meta", [(b"rev\0" + <bytes>a, pack_i64(r)) for a, r in b.revs.items()], []))
        if b.qm:
            ops.extend(_queue_ops(b.qm))
        return ops

    cdef Batch take_open(self):
        """Detach the open batch for commit (the writer must be idle)."""
        cdef Batch b = self.open_batch
        self.inflight = b
        self.open_batch = Batch(b.seq + 1)
        return b

    cdef bint _trim(self, dict over, bytes k, int64_t seq) except -1:
        """Drop k's Entries of batches up to `seq` (now in LMDB); True if none is left."""
        cdef Entry e = over.get(k)
        if e is None:
            return False
        if e.seq <= seq:
            del over[k]
            return True
        while e.prev is not None and e.prev.seq > seq:
            e = e.prev
        e.prev = None
        return False

    cdef int _purge(self, dict dirty, dict over, int64_t seq) except -1:
        for k in dirty:
            self._trim(over, k, seq)

    cdef int _purge_kv(self, dict dirty, int64_t seq) except -1:
        cdef set mine
        for k in dirty:
            if self._trim(self.o_kv, k, seq) and self.kv_by_acc:
                mine = self.kv_by_acc.get((<bytes>k)[:(<bytes>k).index(b"\0")])
                if mine is not None:
                    mine.discard(k)

    cdef Batch durable(self):
        """The in-flight batch is in the write-ahead log: its answers may go out; its
        overlay entries stay until a checkpoint."""
        cdef Batch b = self.inflight
        cdef Entry e
        self.inflight = None
        self.durable_seq = b.seq
        # b's entries are now the durable state of their keys: the older entries of
        # those keys are never read again (the durable view takes the newest durable
        # one), so the chains stop here and stay short
        for e in b.kv.values():
            e.prev = None
        for e in b.ctr.values():
            e.prev = None
        for e in b.sq.values():
            e.prev = None
        for e in b.idem.values():
            e.prev = None
        for e in b.qm.values():
            e.prev = None
        for e in b.rl.values():
            e.prev = None
        if b.revs:
            self.durable_revs.update(b.revs)
        if not self.unapplied:
            self.unapplied_since = mono_now()
        self.unapplied.append(b)
        self.unapplied_data += b.est_data
        self.unapplied_keys += b.nkeys
        self.unapplied_reqs += b.nreq
        return b

    cdef int applied(self, int64_t seq, int64_t used) except -1:
        """A checkpoint put every batch up to `seq` into LMDB: renew reads, and queue
        those batches' overlay entries to be dropped (purge_some, a bounded amount at
        a time: a checkpoint covers up to ~100,000 keys, too many for one loop pass;
        until then the overlay still answers with the same values LMDB holds)."""
        cdef Batch b
        cdef list keep = []
        self._renew_reads()
        self.applied_seq = seq
        for b in self.unapplied:
            if b.seq > seq:
                keep.append(b)
                continue
            self.to_purge.append(b)
            self.unapplied_data -= b.est_data
            self.unapplied_keys -= b.nkeys
            self.unapplied_reqs -= b.nreq
        self.unapplied = keep
        if keep:
            self.unapplied_since = mono_now()
        self.set_used(used)

    cdef int purge_some(self, Py_ssize_t budget) except -1:
        """Drop the overlay entries of applied batches, about `budget` keys' worth
        (unless a later batch rewrote them)."""
        cdef Batch b
        cdef int64_t seq = self.applied_seq
        while self.to_purge and budget > 0:
            b = self.to_purge.popleft()
            if b.kv:
                self._purge_kv(b.kv, seq)
            self._purge(b.ctr, self.o_ctr, seq)
            self._purge(b.sq, self.o_seq, seq)
            self._purge(b.idem, self.o_idem, seq)
            self._purge(b.qm, self.o_q, seq)
            self._purge(b.rl, self.o_rl, seq)
            budget -= b.nkeys + 1

    cdef void set_used(self, int64_t used) noexcept:
        if used > 0:
            self.used_bytes = used

    cdef list failed(self):
        """The in-flight batch could not be logged, and LMDB now holds every durable
        batch (Storage.settle): forget the overlay (the in-flight and the open batch
        both build on the failed one) and return both batches so their waiting
        responses can be answered with the error."""
        cdef Batch a = self.inflight, b = self.open_batch
        self.inflight = None
        self.o_kv.clear()
        self.o_ctr.clear()
        self.o_seq.clear()
        self.o_idem.clear()
        self.o_q.clear()
        self.o_rl.clear()
        self.kv_by_acc.clear()
        self.revs.clear()
        self.durable_revs.clear()
        self.to_purge.clear()
        self.unapplied = []
        self.unapplied_data = self.unapplied_keys = self.unapplied_reqs = 0
        self._renew_reads()
        self.open_batch = Batch(b.seq + 1)
        self.durable_seq = b.seq      # nothing of a or b will ever be committed
        return [a, b]

    cdef int _renew_reads(self) except -1:
        # py-lmdb keeps a spare read transaction handle (max_spare_txns), so abort +
        # begin is a cheap renew of the snapshot
        self.rtxn.abort()
        self.rtxn = self.storage.begin_read()

    cdef int pause_reads(self) except -1:
        self.rtxn.abort()
        self.rtxn = None

    cdef int resume_reads(self) except -1:
        self.rtxn = self.storage.begin_read()

    cdef int close(self) except -1:
        self.rtxn.abort()
