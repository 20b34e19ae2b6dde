# Server: the one owner of the loop's state (server.pyx).

cdef class Server:
    cdef object loop
    cdef readonly object storage
    cdef readonly object cfg
    cdef readonly Store store
    cdef set conns
    cdef bint writer_busy, kick_scheduled, ckpt_busy
    cdef bint purge_scheduled           # a _purge_pass is queued on the loop
    cdef double ckpt_retry_at
    cdef public bint shutting_down
    cdef public object storage_error
    cdef bytes health_body
    cdef object pending_ops
    cdef object sweep_handle
    cdef readonly Deadlines deadlines
    cdef public LockTable locks
    cdef public WatchHub watches
    cdef public QueueTable queues
    cdef readonly Expiry expiry
    cdef readonly Auth auth
    cdef set listers               # big lists in progress (each holds a read snapshot)
    cdef list ckpt_waiters         # [(batch seq, callback)]: when_checkpointed's callers
    cdef public object admin       # cdragon.admin.Admin: runs the /admin/* routes
    cdef set frozen                # accounts whose writes are refused (shard move)
    cdef Limits lim                # the settings the request path reads
    cdef Fixed body_too_large      # 413 for a body over lim.max_body_bytes
    cdef Fixed import_too_large    # ... and over lim.max_import_bytes (POST /admin/import)
    cdef readonly bint fast_http   # Conn frames everyday requests itself (framer.pyx)
    # counters for tests and metrics
    cdef readonly int64_t commits, committed_requests, checkpoints
    cdef readonly Stats stats          # what /metrics reports (core/stats.pyx)
    cdef public object metrics_renderer    # () -> bytes: the /metrics body (cdragon.metrics)
    cdef double now            # mono_now() at the start of the current data_received
    cdef bint now_fresh        # ... or on_commit, while that runs

    # connections (Conn)
    cdef bint conn_open(self, Conn c) except -1
    cdef int conn_lost(self, Conn c) except -1
    cdef int drop_owner(self, object owner) except -1
    cdef int dispatch(self, Conn conn, bytes method, bytes url, bytes body) except -1
    # group commit
    cdef int after_write(self) except -1
    cdef int kick(self) except -1
    # inside
    cdef int _maybe_checkpoint(self) except -1
    cdef int _checkpoint(self) except -1
    cdef int _purge_soon(self) except -1
    cdef int _wake_ckpt_waiters(self) except -1
    cdef bint _grow(self, int64_t want, bint past_max) except -1
    cdef int _settle(self) except -1
    cdef int _fail_batches(self, object err) except -1
