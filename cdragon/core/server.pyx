# Server: the one object that owns all state on the event-loop thread — connections,
# the Store, the lock table, the watch hub — and drives group commit: it hands the open
# batch to the writer thread when the writer is idle, and on "batch N durable" releases
# that batch's answers, lock grants and watch wake-ups. It also decides when LMDB
# catches up with the write-ahead log (a checkpoint: every checkpoint_interval, or
# sooner when much is waiting), and runs the deadline sweep and the shutdown steps.
# Never writes LMDB itself, and blocks the loop only to recover from a failed log write.

import logging
import itertools

cdef object log = logging.getLogger("cdragon")
cdef object _request_ids = itertools.count(1)


cdef class Server:
    cdef object loop
    cdef object storage
    cdef readonly object cfg
    cdef readonly Store store
    cdef set conns
    cdef bint writer_busy, kick_scheduled, ckpt_busy
    cdef double ckpt_retry_at
    cdef public bint shutting_down
    cdef public object storage_error
    cdef bint last_wrote
    cdef bytes health_body
    cdef object pending_ops
    cdef object sweep_handle
    cdef readonly Deadlines deadlines
    cdef public LockTable locks
    cdef public WatchHub watches
    # settings copied into C fields for the request path
    cdef readonly Py_ssize_t max_body_bytes, max_value_bytes, max_header_bytes, max_ops
    cdef readonly Py_ssize_t max_seq_count, max_pipeline, max_connections
    cdef readonly Py_ssize_t max_waiters_per_key, max_waiters, max_watchers_per_key, max_watchers
    cdef readonly double max_lock_dur, max_lock_wait, max_watch_timeout, idempotency_ttl
    cdef readonly double header_timeout, body_timeout, idle_timeout, checkpoint_interval
    # counters for tests and metrics
    cdef readonly int64_t commits, committed_requests, checkpoints
    cdef double now            # mono_now() at the start of the current data_received
    cdef bint now_fresh        # ... or on_commit, while that runs
    cdef FpLimits fp_limits    # the limits POST /db's fast path checks

    def __cinit__(self, loop, storage, cfg, str version):
        self.loop = loop
        self.storage = storage
        self.cfg = cfg
        self.store = Store(storage, cfg.max_storage_bytes)
        self.conns = set()
        self.writer_busy = self.kick_scheduled = self.ckpt_busy = False
        self.ckpt_retry_at = 0
        self.shutting_down = False
        self.storage_error = None
        self.health_body = b'{"Status":"ok","Version":"%s"}' % version.encode()
        self.max_body_bytes = cfg.max_body_bytes
        self.max_value_bytes = cfg.max_value_bytes
        self.max_header_bytes = cfg.max_header_bytes
        self.max_ops = cfg.max_ops
        self.max_seq_count = cfg.max_seq_count
        self.max_pipeline = cfg.max_pipeline
        self.max_connections = cfg.max_connections
        self.max_waiters_per_key = cfg.max_waiters_per_key
        self.max_waiters = cfg.max_waiters
        self.max_watchers_per_key = cfg.max_watchers_per_key
        self.max_watchers = cfg.max_watchers
        self.max_lock_dur = cfg.max_lock_dur
        self.max_lock_wait = cfg.max_lock_wait
        self.max_watch_timeout = cfg.max_watch_timeout
        self.idempotency_ttl = cfg.idempotency_ttl
        self.header_timeout = cfg.header_timeout
        self.body_timeout = cfg.body_timeout
        self.idle_timeout = cfg.idle_timeout
        self.checkpoint_interval = cfg.checkpoint_interval
        self.fp_limits.max_value_bytes = cfg.max_value_bytes
        self.fp_limits.max_ops = cfg.max_ops
        self.fp_limits.max_lock_dur = cfg.max_lock_dur
        self.fp_limits.max_lock_wait = cfg.max_lock_wait
        self.deadlines = Deadlines(loop)
        self.locks = LockTable(self, self.deadlines)
        self.watches = WatchHub(self, self.deadlines)
        self.commits = self.committed_requests = self.checkpoints = 0

    def start(self):
        self.locks.load()
        self.storage.start(self.loop, self.on_commit, self.on_applied)
        self.sweep_handle = self.loop.call_later(SWEEP_INTERVAL_MS / 1000.0, self._sweep)

    def protocol(self):
        """The protocol factory for loop.create_server."""
        return Conn(self)

    # ---- connections -------------------------------------------------------------------
    cdef bint conn_open(self, Conn c):
        if len(self.conns) >= self.max_connections:
            return False
        self.conns.add(c)
        return True

    cdef void conn_lost(self, Conn c):
        self.conns.discard(c)

    cdef void drop_owner(self, object owner):
        owner.drop()

    cdef void dispatch(self, Conn conn, bytes method, bytes url, bytes body):
        try:
            route_request(self, conn, method, url, body)
        except Exception:
            rid = next(_request_ids)
            log.exception("internal error, request id %d: %s %r", rid, method, url)
            conn.reply_error(ApiError(500, "internal", "internal error (request id %d)" % rid,
                                      {"RequestID": rid}), 0, method == b"HEAD")

    cdef object shutting_down_error(self):
        return ApiError(503, "shutting_down", "the server is shutting down")

    # ---- group commit ------------------------------------------------------------------
    cdef void after_write(self):
        """Every mutation ends here: make sure the open batch reaches the writer."""
        self.store.open_batch.nreq += 1
        if not self.writer_busy and not self.kick_scheduled:
            self.kick_scheduled = True
            # call_soon runs after every I/O callback of this loop pass, so all the
            # requests that arrived together share one commit
            self.loop.call_soon(self._kick)

    def _kick(self):
        self.kick_scheduled = False
        self.kick()

    cdef void kick(self):
        cdef Batch b
        if self.writer_busy or self.store.open_batch.empty():
            return
        b = self.store.take_open()
        self.pending_ops = self.store.encode(b)
        if b.lk:
            self.pending_ops.extend(self.locks.encode(b))
        self.writer_busy = True
        self.storage.submit(b.seq, self.pending_ops)

    def on_commit(self, int64_t seq, err):
        """Runs on the loop when the writer finished batch `seq` (err None: durable)."""
        cdef Batch b
        cdef Conn c
        self.writer_busy = False
        if err is None:
            self.now = mono_now()      # the idle deadlines of the connections answered now
            self.now_fresh = True
            b = self.store.durable()
            self.pending_ops = None
            self.commits += 1
            self.committed_requests += b.nreq
            for c in b.conns:
                c.flush()
            self.watches.committed(b)
            for cb in b.after:
                cb()
            b.conns = b.after = None    # the batch now waits for a checkpoint: keep only its keys
            self.now_fresh = False
            self.store.purge_some(PURGE_PER_COMMIT)
            self._maybe_checkpoint()
        else:
            log.error("writing batch %d to the log failed: %s", seq, err)
            self.storage_error = err
            self._settle()
            self._fail_batches(ApiError(500, "internal", "the commit failed: " + str(err)))
        self.kick()

    # ---- checkpoints ---------------------------------------------------------------------
    cdef void _maybe_checkpoint(self):
        cdef Store st = self.store
        cdef double now
        if self.ckpt_busy or not st.unapplied:
            return
        now = mono_now()
        if now < self.ckpt_retry_at:
            return
        if not (self.shutting_down
                or st.unapplied_keys >= CHECKPOINT_RECORDS
                or now - st.unapplied_since >= self.checkpoint_interval
                or st.pending_bytes() * 4 >= st.max_bytes - st.used_bytes):
            return
        self._checkpoint()

    cdef void _checkpoint(self):
        # the map must hold what the checkpoint writes; it may only grow while the
        # checkpoint thread is idle, which it is now
        cdef int64_t need = self.store.used_bytes + self.store.checkpoint_bytes()
        if need + need // 2 > self.storage.map_size:
            self._grow(need * 2, False)
        self.ckpt_busy = True
        self.storage.checkpoint()

    def on_applied(self, int64_t seq, err, int64_t used):
        """Runs on the loop when a checkpoint put every batch up to `seq` into LMDB."""
        self.ckpt_busy = False
        if err is None:
            self.store.applied(seq, used)
            self.checkpoints += 1
        elif err == "map_full":
            # these writes are acknowledged: they go into LMDB even past max_storage_bytes
            # (requests are refused 507 well before that; this is the estimate's margin)
            log.warning("checkpoint needs a bigger map than max_storage_bytes allows; growing it")
            self._grow(self.storage.map_size * 2, True)
            self._checkpoint()
            return
        else:
            log.error("checkpoint failed; the write-ahead log keeps the writes, retrying in 1 s: %s", err)
            self.ckpt_retry_at = mono_now() + 1.0
            return
        self._maybe_checkpoint()

    cdef bint _grow(self, int64_t want, bint past_max):
        # LMDB may only resize with no transaction open in the process: the checkpoint
        # thread is idle here, and the loop's read transaction is reset around the call.
        cdef bint ok
        self.store.pause_reads()
        try:
            ok = self.storage.grow(want, past_max)
        finally:
            self.store.resume_reads()
        return ok

    cdef void _settle(self):
        """After a failed log write: put every durable batch into LMDB now (blocking the
        loop), so that the overlay can be dropped and LMDB read as the truth."""
        self.store.pause_reads()
        try:
            self.storage.settle()
        finally:
            self.store.resume_reads()

    cdef void _fail_batches(self, object err):
        cdef list batches = self.store.failed()
        cdef Batch a = batches[0], b = batches[1]
        cdef Conn c
        for bb in batches:
            for c in (<Batch>bb).conns:
                c.fail_pending(a.seq, b.seq, err)
        for bb in batches:
            for c in (<Batch>bb).conns:
                c.flush()
        self.locks.reload()

    # ---- deadlines -----------------------------------------------------------------------
    def _sweep(self):
        cdef double now = mono_now()
        cdef Conn c
        cdef list due = None
        for c in self.conns:
            if c.dl_kind != DL_NONE and c.deadline <= now:
                if due is None:
                    due = []
                due.append(c)
        if due is not None:
            for c in due:
                c.on_deadline()
        self.store.purge_some(PURGE_PER_SWEEP)
        self._maybe_checkpoint()
        self.sweep_handle = self.loop.call_later(SWEEP_INTERVAL_MS / 1000.0, self._sweep)

    # ---- shutdown --------------------------------------------------------------------------
    def begin_shutdown(self):
        cdef Conn c
        self.shutting_down = True
        self.locks.shutdown()
        self.watches.shutdown()
        self.kick()

    def close_idle(self, double grace):
        """During shutdown: close connections idle for `grace` seconds. The grace lets
        a request already in the socket buffer be read and answered, not dropped."""
        cdef Conn c
        cdef double cutoff = mono_now() - grace + self.idle_timeout
        for c in list(self.conns):
            if c.dl_kind == DL_IDLE and c.deadline <= cutoff:
                c.shutdown_idle()

    def drained(self):
        return not self.writer_busy and self.store.open_batch.empty() and not self.conns

    def committed_everything(self):
        return not self.writer_busy and self.store.open_batch.empty()

    def close(self):
        if self.sweep_handle is not None:
            self.sweep_handle.cancel()
        self.store.close()

    def counts(self):
        """What the server holds now, for leak checks: after a quiet period every
        count but `locks_held` returns to zero."""
        st = self.store
        return {
            "connections": len(self.conns),
            "waiters": self.locks.nwaiters,
            "watchers": self.watches.nwatchers,
            "timers": len(self.deadlines),
            "overlay_entries": len(st.o_kv) + len(st.o_ctr) + len(st.o_seq) + len(st.o_idem),
            "unapplied_batches": len(st.unapplied) + len(st.to_purge),
            "locks_held": self.locks.held,
        }

    @property
    def connections(self):
        return len(self.conns)
