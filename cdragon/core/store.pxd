# Store: the overlay of writes on top of LMDB, and the batches they go out in (store.pyx).

cdef class Entry:
    """One record as one batch wrote it. kv: val = JSON bytes or None (deleted), num =
    version. counter / seq: num = value. idem: f = expiry (epoch seconds). A batch
    never changes an older batch's Entry: it makes its own, pointing at the one before
    (`prev`), so the durable state of a key stays readable (watches, failures)."""
    cdef object val
    cdef int64_t num
    cdef double f
    cdef int64_t seq     # the batch that wrote it
    cdef Entry prev      # the key's previous Entry, until this one is durable


cdef class Batch:
    """The writes of many requests, committed together, and everything waiting on them."""
    cdef readonly int64_t seq
    cdef dict kv, ctr, sq, idem         # keys written -> the Entry this batch wrote
    cdef dict revs                      # account -> its revision after this batch
    cdef dict lk                        # lock keys changed (values: None)
    cdef dict kx                        # expiry index entries: True put, False delete
    cdef dict qm                        # queue records written (queues.pyx): tag byte + key -> Entry
    cdef dict rl                        # rate-limit TATs written (ratelimit.pyx) -> Entry
    cdef list conns                     # connections with a response waiting on this batch
    cdef list after                     # callables to run once durable (grants, wakes)
    cdef Py_ssize_t est_data            # bytes its records may add to LMDB (record_bytes)
    cdef Py_ssize_t nkeys               # records it writes
    cdef int nreq

    cdef bint empty(self) noexcept
    cdef int mark(self, dict dirty, bytes k, Py_ssize_t size) except -1
    cdef void count(self, bytes k, Py_ssize_t size) noexcept


cdef class RangeReader:
    """Keys under a prefix, read in key order, a slice at a time if need be."""
    cdef bytes prefix
    cdef list ov            # the overlay's entries in the range: (key, version, value, expiry)
    cdef Py_ssize_t i       # the next of them
    cdef object it          # LMDB records: an iterator of (key, value), or None
    cdef object pair        # its next record, or None

    cdef int read(self, Store st, Py_ssize_t n, list out) except -1


cdef class Store:
    cdef object storage
    cdef object rtxn
    cdef object db_kv, db_ctr, db_seq, db_idem, db_meta, db_kvexp, db_qmsg, db_qdedup
    cdef object db_rl
    cdef dict o_rl                            # rate-limit TATs: full key -> newest Entry
    cdef dict o_kv, o_ctr, o_seq, o_idem      # overlays: full key -> newest Entry
    cdef dict o_q                             # queue records: b"m" (qmsg) or b"d" (qdedup) + key
    cdef dict kv_by_acc                       # account -> set of its keys in o_kv, kept
                                              # for accounts with prefix watches only
    cdef dict revs                            # account -> revision (authoritative)
    cdef dict durable_revs                    # account -> revision of its last durable batch
    cdef dict start_revs                      # account -> revision on disk when first loaded
    cdef Batch open_batch
    cdef Batch inflight
    cdef list unapplied                       # durable batches not yet in LMDB, oldest first
    cdef object to_purge                      # deque of batches in LMDB, entries still here
    cdef int64_t applied_seq                  # the last batch a checkpoint put into LMDB
    cdef readonly int64_t unapplied_data, unapplied_keys, unapplied_reqs
    cdef readonly double unapplied_since      # when the oldest of them became durable
    cdef int64_t ckpt_cut                     # the last batch the running (or last) checkpoint covers
    cdef readonly int64_t new_data            # bytes of big values (overflow pages) of keys written
                                              # since that cut, each key once
    cdef readonly int64_t durable_seq
    cdef public int64_t wait_seq              # accumulated by reads of the current request
    cdef object r_val                         # value of the last kv_read
    cdef double r_exp                         # ... and its expiry (0: none)
    cdef readonly int64_t used_bytes          # LMDB high-water mark after the last commit
    cdef readonly int64_t max_bytes

    # reads (the newest state; raising wait_seq when it is not durable yet)
    cdef int64_t kv_read(self, bytes k) except -1
    cdef int64_t ctr_read(self, bytes k) except? -1
    cdef int64_t seq_read(self, bytes k) except? -1
    cdef bint idem_live(self, bytes k, double now) except -1
    cdef int64_t revision(self, bytes acc) except -1
    cdef int64_t shown_revision(self, bytes acc) except -1
    cdef list scan(self, bytes acc, bytes prefix, bytes start, Py_ssize_t limit, bint durable)
    cdef RangeReader range_reader(self, bytes acc, bytes prefix, bytes start, bint durable, object txn)
    # reads of the durable state (what watchers are told)
    cdef int64_t durable_kv(self, bytes k) except -1
    cdef int64_t durable_revision(self, bytes acc) except -1
    cdef int64_t start_revision(self, bytes acc) except -1
    # writes: into the overlay and the open batch
    cdef int kv_write(self, bytes acc, bytes k, object val, int64_t ver, double exp) except -1
    cdef int expiry_mark(self, bytes xk, bint put) except -1
    cdef double expiry_of(self, bytes k) except -1
    cdef int ctr_write(self, bytes k, int64_t v) except -1
    cdef int seq_write(self, bytes k, int64_t v) except -1
    cdef int idem_write(self, bytes k, double expiry) except -1
    cdef object q_read(self, bytes tk)
    cdef int q_write(self, bytes tk, object val) except -1
    cdef int q_write_new(self, bytes tk, bytes val) except -1
    cdef int64_t rl_read(self, bytes k) except? -1
    cdef int rl_write(self, bytes k, int64_t tat) except -1
    cdef int64_t bump_revision(self, bytes acc) except -1
    cdef int64_t write_seq(self) noexcept
    # room
    cdef int64_t pending_bytes(self) noexcept
    cdef int64_t checkpoint_bytes(self) noexcept
    cdef void cut_checkpoint(self) noexcept
    cdef bint has_room(self) noexcept
    cdef void set_used(self, int64_t used) noexcept
    # batches: commit, checkpoint, failure
    cdef Batch batch_for(self, int64_t seq)
    cdef list encode(self, Batch b)
    cdef Batch take_open(self)
    cdef Batch durable(self)
    cdef int applied(self, int64_t seq, int64_t used) except -1
    cdef int purge_some(self, Py_ssize_t budget) except -1
    cdef list failed(self)
    cdef int pause_reads(self) except -1
    cdef int resume_reads(self) except -1
    cdef int close(self) except -1
    # inside
    cdef void _saw(self, Entry e) noexcept
    cdef int64_t _kv_stored(self, bytes k) except -1
    cdef int64_t _entry_state(self, Entry e) except -1
    cdef int64_t _raw_state(self, object raw) except -1
    cdef set _acc_keys(self, bytes acc)
    cdef int64_t _num_read(self, dict over, object db, bytes k) except? -1
    cdef int64_t _stored_revision(self, bytes acc) except -1
    cdef Entry _durable(self, Entry e)
    cdef Entry _entry(self, dict over, dict dirty, bytes k, Py_ssize_t size)
    cdef Entry _new_entry(self, dict over, dict dirty, bytes k, Py_ssize_t size, Entry prev)
    cdef bint _trim(self, dict over, bytes k, int64_t seq) except -1
    cdef int _purge(self, dict dirty, dict over, int64_t seq) except -1
    cdef int _purge_kv(self, dict dirty, int64_t seq) except -1
    cdef int _renew_reads(self) except -1
