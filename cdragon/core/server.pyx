# Server: the one object that owns all state on the event-loop thread — connections,
# the Store, the lock table, the watch hub — and drives group commit: it hands the open
# batch to the writer thread when the writer is idle, and on "batch N durable" releases
# that batch's answers, lock grants and watch wake-ups. It also decides when LMDB
# catches up with the write-ahead log (a checkpoint: every checkpoint_interval, or
# sooner when much is waiting), and runs the deadline sweep and the shutdown steps.
# Never writes LMDB itself, and blocks the loop only to recover from a failed log write.

import logging
import itertools
import os as _os

cdef object log = logging.getLogger("cdragon")
cdef object _request_ids = itertools.count(1)


cdef int fill_limits(Limits* lim, object cfg) except -1:
    """Copy the settings the request path reads from the Config (where each default
    is defined) into C fields."""
    lim.max_body_bytes = cfg.max_body_bytes
    lim.max_import_bytes = cfg.max_import_bytes
    lim.max_value_bytes = cfg.max_value_bytes
    lim.max_header_bytes = cfg.max_header_bytes
    lim.max_ops = cfg.max_ops
    lim.max_seq_count = cfg.max_seq_count
    lim.max_prefix_delete = cfg.max_prefix_delete
    lim.max_ttl = cfg.max_ttl
    lim.max_pipeline = cfg.max_pipeline
    lim.max_connections = cfg.max_connections
    lim.max_waiters_per_key = cfg.max_waiters_per_key
    lim.max_waiters = cfg.max_waiters
    lim.max_watchers_per_key = cfg.max_watchers_per_key
    lim.max_watchers = cfg.max_watchers
    lim.max_lock_dur = cfg.max_lock_dur
    lim.max_lock_wait = cfg.max_lock_wait
    lim.default_lock_dur = cfg.default_lock_dur
    lim.max_watch_timeout = cfg.max_watch_timeout
    lim.default_watch_timeout = cfg.default_watch_timeout
    lim.header_timeout = cfg.header_timeout
    lim.body_timeout = cfg.body_timeout
    lim.idle_timeout = cfg.idle_timeout
    lim.checkpoint_interval = cfg.checkpoint_interval
    lim.idempotency_ttl = cfg.idempotency_ttl
    lim.delete_retention = cfg.delete_retention
    return 0


cdef class Server:

    def __cinit__(self, loop, storage, cfg, str version):
        self.loop = loop
        self.storage = storage
        self.cfg = cfg
        fill_limits(&self.lim, cfg)
        self.body_too_large = body_too_large(self.lim.max_body_bytes)
        self.import_too_large = body_too_large(self.lim.max_import_bytes)
        # Test hook: CDRAGON_TEST_NO_FAST_HTTP=1 leaves every request to httptools (no
        # framer.pyx), so that tests can compare the two framings' answers byte for byte.
        self.fast_http = _os.environ.get("CDRAGON_TEST_NO_FAST_HTTP", "") != "1"
        self.store = Store(storage, cfg.max_storage_bytes)
        self.conns = set()
        self.writer_busy = self.kick_scheduled = self.ckpt_busy = self.purge_scheduled = False
        self.ckpt_retry_at = 0
        self.shutting_down = False
        self.storage_error = None
        self.health_body = b'{"Status":"ok","Version":"%s"}' % version.encode()
        self.deadlines = Deadlines(loop)
        self.locks = LockTable(self, self.deadlines)
        self.watches = WatchHub(self, self.deadlines)
        self.queues = QueueTable(self, self.deadlines)
        self.expiry = Expiry(self)
        self.auth = Auth()
        self.listers = set()
        self.ckpt_waiters = []
        self.frozen = set()
        self.admin = None
        self.commits = self.committed_requests = self.checkpoints = 0
        self.stats = Stats(cfg)

    def start(self):
        hw, records = self.storage.load_locks()
        self.locks.load(hw, records)
        self.storage.start(self.loop, self.on_commit, self.on_applied)
        self.queues.load()
        self.sweep_handle = self.loop.call_later(SWEEP_INTERVAL_MS / 1000.0, self._sweep)

    def set_auth(self, list tokens, bint protected_mode):
        """Tokens as [(name, sha256 hex, [account patterns], access)]; at start and on
        reload (connections keep going; their next request is checked anew)."""
        self.auth.configure(tokens, protected_mode)

    def protocol(self):
        """The protocol factory for loop.create_server."""
        return Conn(self)

    # ---- connections -------------------------------------------------------------------
    cdef bint conn_open(self, Conn c) except -1:
        if len(self.conns) >= self.lim.max_connections:
            return False
        self.conns.add(c)
        return True

    cdef int conn_lost(self, Conn c) except -1:
        self.conns.discard(c)
        return 0

    cdef int drop_owner(self, object owner) except -1:
        owner.drop()
        return 0

    cdef int dispatch(self, Conn conn, bytes method, bytes url, bytes body) except -1:
        try:
            route_request(self, conn, method, url, body)
        except Exception:
            rid = next(_request_ids)
            log.exception("internal error, request id %d: %s %r", rid, method, url)
            conn.reply_error(ApiError(500, "internal", "internal error (request id %d)" % rid,
                                      {"RequestID": rid}), 0, method == b"HEAD")
        return 0

    # ---- group commit ------------------------------------------------------------------
    cdef int after_write(self) except -1:
        """Every mutation ends here: make sure the open batch reaches the writer."""
        self.store.open_batch.nreq += 1
        if not self.writer_busy and not self.kick_scheduled:
            self.kick_scheduled = True
            # call_soon runs after every I/O callback of this loop pass, so all the
            # requests that arrived together share one commit
            self.loop.call_soon(self._kick)
        return 0

    def _kick(self):
        self.kick_scheduled = False
        self.kick()

    cdef int kick(self) except -1:
        cdef Batch b
        if self.writer_busy or self.store.open_batch.empty():
            return 0
        b = self.store.take_open()
        self.pending_ops = self.store.encode(b)
        if b.lk:
            self.pending_ops.extend(self.locks.encode(b))
        if b.qm:
            self.pending_ops.append((b"meta", [(b"qid", pack_i64(self.queues.hw))], []))
        self.writer_busy = True
        self.storage.submit(b.seq, self.pending_ops)
        return 0

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
            self.stats.committed(b.nreq)
            for c in b.conns:
                c.flush()
            self.watches.committed(b)
            for cb in b.after:
                cb()
            b.conns = b.after = None    # the batch now waits for a checkpoint: keep only its keys
            self.now_fresh = False
            self._purge_soon()
            self._maybe_checkpoint()
        else:
            log.error("writing batch %d to the log failed: %s", seq, err)
            self.storage_error = err
            self._settle()
            self._fail_batches(commit_failed(str(err)))
        # the next batch goes to the writer on the loop's next pass, not now: the
        # requests that came in while these answers were written (the first clients
        # answered are already back) join it instead of waiting a whole commit more
        if not self.kick_scheduled:
            self.kick_scheduled = True
            self.loop.call_soon(self._kick)

    # ---- checkpoints ---------------------------------------------------------------------
    cdef int _maybe_checkpoint(self) except -1:
        cdef Store st = self.store
        cdef double now
        if self.ckpt_busy or not st.unapplied:
            return 0
        now = mono_now()
        if now < self.ckpt_retry_at:
            return 0
        if not (self.shutting_down or self.ckpt_waiters
                or st.unapplied_keys >= CHECKPOINT_RECORDS
                or st.unapplied_data >= CHECKPOINT_DATA
                or st.new_data >= CHECKPOINT_NEW_DATA
                or now - st.unapplied_since >= self.lim.checkpoint_interval
                or st.pending_bytes() * 4 >= st.max_bytes - st.used_bytes):
            return 0
        return self._checkpoint()

    cdef int _checkpoint(self) except -1:
        # the map must hold what the checkpoint writes; it may only grow while the
        # checkpoint thread is idle, which it is now
        cdef int64_t need = self.store.used_bytes + self.store.checkpoint_bytes()
        if need + need // 2 > self.storage.map_size:
            self._grow(need * 2, False)
        self.ckpt_busy = True
        self.store.cut_checkpoint()
        self.storage.checkpoint()
        return 0

    def on_applied(self, int64_t seq, err, int64_t used):
        """Runs on the loop when a checkpoint put every batch up to `seq` into LMDB."""
        self.ckpt_busy = False
        if err is None:
            self.store.applied(seq, used)
            self.checkpoints += 1
            if self.ckpt_waiters:
                self._wake_ckpt_waiters()
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

    # ---- accounts frozen for a move (cdragon shard move) ------------------------------------
    def freeze(self, bytes acc):
        """Refuse the account's writes (503 moving, Retry-After: 1) from now on; its
        reads are still served. Its lock waiters and parked watchers are answered 503
        moving at once."""
        self.frozen.add(acc)
        self.locks.moving(acc)
        self.watches.moving(acc)
        self.queues.moving(acc)

    def thaw(self, bytes acc):
        self.frozen.discard(acc)

    @property
    def frozen_accounts(self):
        return sorted(self.frozen)

    def when_checkpointed(self, callback):
        """callback(lsn) once LMDB holds every write accepted before this call (the
        acknowledged ones, and those still on their way to the log), forcing
        checkpoints as needed; `lsn` is the last log record LMDB then holds. For the
        admin routes (backup, export, a move), which read LMDB from another process."""
        cdef Store st = self.store
        cdef list unapplied = st.unapplied
        cdef int64_t target = 0
        if not st.open_batch.empty():
            target = st.open_batch.seq
        elif st.inflight is not None:
            target = st.inflight.seq
        elif unapplied:
            target = (<Batch>unapplied[len(unapplied) - 1]).seq
        if target == 0:
            self.loop.call_soon(callback, self.storage.applied_lsn)
            return
        self.ckpt_waiters.append((target, callback))
        self._maybe_checkpoint()

    cdef int _wake_ckpt_waiters(self) except -1:
        cdef list unapplied = self.store.unapplied
        cdef int64_t first = (<Batch>unapplied[0]).seq if unapplied else INT64_MAX
        cdef int64_t durable = self.store.durable_seq
        cdef list keep = []
        for target, cb in self.ckpt_waiters:
            if target <= durable and target < first:
                self.loop.call_soon(cb, self.storage.applied_lsn)
            else:
                keep.append((target, cb))
        self.ckpt_waiters = keep
        return 0

    cdef bint _grow(self, int64_t want, bint past_max) except -1:
        # LMDB may only resize with no transaction open in the process: the checkpoint
        # thread is idle here, and the loop's read transaction is reset around the call.
        cdef bint ok
        cdef Lister l
        for l in list(self.listers):
            l.suspend()
        self.store.pause_reads()
        try:
            ok = self.storage.grow(want, past_max)
        finally:
            self.store.resume_reads()
        return ok

    cdef int _settle(self) except -1:
        """After a failed log write: put every durable batch into LMDB now (blocking the
        loop), so that the overlay can be dropped and LMDB read as the truth."""
        self.store.pause_reads()
        try:
            self.storage.settle()
        finally:
            self.store.resume_reads()
        return 0

    cdef int _fail_batches(self, object err) except -1:
        cdef list batches = self.store.failed()
        cdef Batch a = batches[0], b = batches[1]
        cdef Conn c
        for bb in batches:
            for c in (<Batch>bb).conns:
                c.fail_pending(a.seq, b.seq, err)
        for bb in batches:
            for c in (<Batch>bb).conns:
                c.flush()
        # the lock table goes back to what is on disk; its waiters get the same answer
        hw, records = self.storage.load_locks()
        self.locks.reload(err, hw, records)
        self.queues.reload(err)
        self.expiry.restart()
        if self.ckpt_waiters:
            self._wake_ckpt_waiters()      # _settle put every durable batch into LMDB
        return 0

    # ---- deadlines -----------------------------------------------------------------------
    def _sweep(self):
        cdef double now = mono_now()
        cdef Conn c
        cdef list due = None
        # rescheduled first: whatever fails below, the next sweep still comes
        self.sweep_handle = self.loop.call_later(SWEEP_INTERVAL_MS / 1000.0, self._sweep)
        for c in self.conns:
            if c.dl_kind != DL_NONE and c.deadline <= now:
                if due is None:
                    due = []
                due.append(c)
        if due is not None:
            for c in due:
                try:
                    c.on_deadline()
                except Exception:
                    # one connection's failure must not leave the others without deadlines
                    log.exception("connection deadline failed; dropping the connection")
                    c.kill()
        sweep_limits(self)            # recovered rate-limit states (ratelimit.pyx)
        self._purge_soon()
        self._maybe_checkpoint()
        self._expire()
        self.queues.sweep()

    cdef int _purge_soon(self) except -1:
        """After a commit and at each sweep: start dropping checkpointed entries, unless
        that is under way already."""
        if self.store.to_purge and not self.purge_scheduled:
            self._purge_pass()
        return 0

    def _purge_pass(self):
        """Drop the overlay entries of checkpointed batches a slice at a time, one slice
        per loop pass (the connections' I/O in between), until none are left. (The
        sweep once dropped 50,000 keys in one go: stalls of up to 10 ms for every
        connection, with 1,000,000 keys written.)"""
        self.purge_scheduled = False
        self.store.purge_some(PURGE_SLICE)
        if self.store.to_purge:
            self.purge_scheduled = True
            self.loop.call_soon(self._purge_pass)

    def _expire(self):
        """TTL expiries; while a slice leaves more due, the next one runs at once (after
        the I/O of this loop pass)."""
        if not self.shutting_down and self.expiry.run():
            self.loop.call_soon(self._expire)

    # ---- shutdown --------------------------------------------------------------------------
    def begin_shutdown(self):
        cdef Conn c
        self.shutting_down = True
        self.locks.shutdown()
        self.watches.shutdown()
        self.queues.shutdown()
        self.kick()

    def close_idle(self, double grace):
        """During shutdown: close connections idle for `grace` seconds. The grace lets
        a request already in the socket buffer be read and answered, not dropped."""
        cdef Conn c
        cdef double cutoff = mono_now() - grace + self.lim.idle_timeout
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
            "receivers": self.queues.nwaiters,
            "timers": len(self.deadlines),
            "overlay_entries": len(st.o_kv) + len(st.o_ctr) + len(st.o_seq) + len(st.o_idem) + len(st.o_q),
            "unapplied_batches": len(st.unapplied) + len(st.to_purge),
            "listers": len(self.listers),
            "locks_held": self.locks.held,
        }

    @property
    def connections(self):
        return len(self.conns)
