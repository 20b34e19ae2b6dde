# Locks: the lock table. name -> holder handle, Till, owner and a FIFO queue of
# waiters parked on open requests. Handles come from one server-wide counter that only
# grows (persisted in meta, resumed above every handle ever stored), so they work as
# fencing tokens. Grants, extensions and releases are written to the open batch like any
# other write, and the answer that reveals them waits for that batch to be durable.
# Expiry and wait deadlines run on the shared Deadlines heap (monotonic clock).
#
# Never blocks: a waiter is a reserved response slot, answered later by a release, an
# expiry, its own deadline or shutdown.

cdef bytes _LOCK_ALLOW = b"Allow: GET, HEAD, POST, DELETE\r\n"


@cython.no_gc   # a million held locks must not be walked by every full GC pass;
                # no cycle through a Lock outlives it (see _forget_if_idle)
cdef class Lock(Timed):
    cdef LockTable table
    cdef bytes k               # account \0 name
    cdef int64_t handle        # 0: free
    cdef double till           # wall clock (what clients see)
    cdef double tmono          # monotonic expiry (what the server acts on)
    cdef object owner          # REST owner string or None
    cdef object waiters        # deque of Waiter, or None
    cdef Py_ssize_t nwait      # live waiters
    cdef int64_t seq           # batch holding the last change of this lock

    cdef void on_time(self, double now):
        self.table.expired(self, now)


cdef class Waiter(Timed):
    cdef LockTable table
    cdef Lock lock
    cdef Conn conn
    cdef Slot slot
    cdef Txn txn               # POST /db request, or None for REST
    cdef object owner          # REST owner
    cdef double dur
    cdef bint live

    cdef void on_time(self, double now):
        self.table.wait_expired(self)

    def drop(self):
        self.table.leave(self)


cdef class LockTable:
    cdef Server srv
    cdef Deadlines dl
    cdef dict locks
    cdef list releasing                    # unlocked by the request being answered
    cdef readonly int64_t hw               # highest handle ever issued
    cdef readonly Py_ssize_t nwaiters

    def __cinit__(self, Server srv, Deadlines dl):
        self.srv = srv
        self.dl = dl
        self.locks = {}
        self.releasing = []
        self.hw = 0
        self.nwaiters = 0

    # ---- persistence -----------------------------------------------------------------
    cpdef load(self):
        """Read the lock records at start: unexpired locks are held again, the handle
        counter resumes above every handle ever stored."""
        cdef Lock L
        cdef double nw = wall_now(), nm = mono_now()
        storage = self.srv.storage
        stale = []
        with storage.env.begin() as txn:
            raw = txn.get(b"handle", None, storage.dbs[b"meta"])
            if raw is not None:
                self.hw = unpack_i64(raw)
            for k, v in txn.cursor(storage.dbs[b"lock"]):
                h = unpack_i64(v)
                if h > self.hw:
                    self.hw = h
                till = unpack_f64be(v[8:16])
                if till <= nw:
                    stale.append(k)
                    continue
                L = self._new(k)
                L.handle = h
                L.till = till
                L.tmono = nm + (till - nw)
                L.owner = v[16:].decode("utf-8") if len(v) > 16 else None
                self.locks[k] = L
                self.dl.set(L, L.tmono)
        if stale:
            with storage.env.begin(write=True) as txn:
                for k in stale:
                    txn.delete(k, db=storage.dbs[b"lock"])

    cdef list encode(self, Batch b):
        cdef list puts = [], dels = []
        cdef Lock L
        for k in b.lk:
            L = self.locks.get(k)
            if L is None or L.handle == 0:
                dels.append(k)
            else:
                puts.append((k, pack_i64(L.handle) + pack_f64be(L.till)
                             + (b"" if L.owner is None else (<str>L.owner).encode("utf-8"))))
        return [(b"lock", puts, dels), (b"meta", [(b"handle", pack_i64(self.hw))], [])]

    cdef inline void _changed(self, Lock L):
        cdef Store st = self.srv.store
        L.seq = st.write_seq()
        st.open_batch.mark(st.open_batch.lk, L.k, 48)

    # ---- table -------------------------------------------------------------------------
    cdef Lock _new(self, bytes k):
        cdef Lock L = Lock.__new__(Lock)
        L.table = self
        L.k = k
        L.handle = 0
        L.waiters = None
        L.nwait = 0
        L.owner = None
        L.seq = 0
        return L

    cdef inline bint _held(self, Lock L, double nm):
        return L is not None and L.handle != 0 and L.tmono > nm

    cdef inline void _saw(self, Lock L):
        cdef Store st = self.srv.store
        if L is not None and L.seq > st.durable_seq and L.seq > st.wait_seq:
            st.wait_seq = L.seq

    cdef Lock _holder_check(self, bytes acc, bytes name, int64_t handle, object owner, double nm):
        """The lock if `handle` (or `owner`) holds it now, else 409 not_lock_holder."""
        cdef Lock L = self.locks.get(acc + b"\0" + name)
        self._saw(L)
        if self._held(L, nm) and (L.handle == handle if owner is None else L.owner == owner):
            return L
        raise ApiError(409, "not_lock_holder", "that handle does not hold the lock (expired or never held)")

    cdef object _locked_error(self, Lock L):
        self._saw(L)
        return ApiError(409, "locked", "the lock is held by someone else", {"Till": _till_ms(L.till) / 1000.0})

    cdef void _take(self, Lock L, double dur, object owner, double nm):
        self.hw += 1
        L.handle = self.hw
        L.owner = owner
        self._extend(L, dur, nm)

    cdef void _extend(self, Lock L, double dur, double nm):
        L.till = wall_now() + dur
        L.tmono = nm + dur
        self.dl.set(L, L.tmono)
        self._changed(L)

    cdef void _release(self, Lock L, double nm):
        L.handle = 0
        L.owner = None
        self.dl.clear(L)
        self._changed(L)
        self._grant_next(L, nm)

    cdef void _forget_if_idle(self, Lock L):
        if L.handle == 0 and L.nwait == 0:
            L.waiters = None          # drops waiters that left (they point back at L)
            self.locks.pop(L.k, None)

    # ---- POST /db with LockID / UnlockID ------------------------------------------------
    cdef int begin(self, Server srv, Request r, Txn t) except -1:
        cdef double nm = mono_now()
        cdef Lock L
        if t.unlock_id is not None:
            self._holder_check(t.acc, t.unlock_id, t.unlock, None, nm)
        if t.lock_id is None or t.lock_id == t.unlock_id:
            r.conn.reply(200, self._run(t, None, None, nm), srv.store.write_seq(), r.head)
            self._finish_releases(nm)
            return 0
        L = self._get(t.acc + b"\0" + t.lock_id)
        if not self._held(L, nm) and L.nwait == 0:
            try:
                body = self._run(t, L, None, nm)
            finally:
                self._forget_if_idle(L)
            r.conn.reply(200, body, srv.store.write_seq(), r.head)
            self._finish_releases(nm)
            return 0
        if t.lock_wait <= 0:
            # the everyday conflict, answered without raising: an exception through
            # three Cython frames (tracebacks) and a JSON encoder cost more than the rest
            self._saw(L)
            r.conn.reply(409, _locked_body(L.till), commit_seq(srv, False), r.head)
            return 0
        self._park(r, L, t, None, t.lock_dur, t.lock_wait, nm)
        return 0

    cdef Lock _get(self, bytes k):
        cdef Lock L = self.locks.get(k)
        if L is None:
            L = self._new(k)
            self.locks[k] = L
        return L

    cdef bytes _run(self, Txn t, Lock L, object owner, double nm):
        """Run the transaction part, then take L (if given), extend or unlock; all of
        it or (ApiError) none of it. Returns the 200 body."""
        cdef Lock U = None
        if t.unlock_id is not None:
            U = self._holder_check(t.acc, t.unlock_id, t.unlock, None, nm)   # re-check after a wait
        run_txn(t, self.srv.store, self.srv)
        self.srv.after_write()
        if t.lock_id is not None:
            if U is not None and t.lock_id == t.unlock_id:
                self._extend(U, t.lock_dur, nm)
                L = U
                U = None
            else:
                self._take(L, t.lock_dur, owner, nm)
        if U is not None:
            # freed now, handed on after this answer is queued (see _finish_releases)
            U.handle = 0
            U.owner = None
            self.dl.clear(U)
            self._changed(U)
            self.releasing.append(U)
        if t.lock_id is not None:
            return txn_body(t, True, L.handle, L.till)
        return txn_body(t)

    cdef void _finish_releases(self, double nm):
        """Grant the locks the answered request released to their next waiters. Runs
        after the releasing answer is queued, so it goes out before those grants."""
        cdef Lock U
        while self.releasing:
            U = self.releasing.pop()
            if U.handle == 0:
                self._grant_next(U, nm)
                self._forget_if_idle(U)

    # ---- waiting -----------------------------------------------------------------------
    cdef void _park(self, Request r, Lock L, Txn t, object owner, double dur, double wait, double nm) except *:
        cdef Waiter w
        if L.nwait >= self.srv.max_waiters_per_key or self.nwaiters >= self.srv.max_waiters:
            self._forget_if_idle(L)
            raise ApiError(429, "too_many", "too many waiters", None, b"Retry-After: 1\r\n")
        w = Waiter.__new__(Waiter)
        w.table = self
        w.lock = L
        w.conn = r.conn
        w.txn = t
        w.owner = owner
        w.dur = dur
        w.live = True
        w.slot = r.conn.reserve(w, r.head)
        if L.waiters is None:
            L.waiters = _deque()
        L.waiters.append(w)
        L.nwait += 1
        self.nwaiters += 1
        self.dl.set(w, nm + wait)

    cdef void _unpark(self, Waiter w):
        w.live = False
        w.lock.nwait -= 1
        self.nwaiters -= 1
        self.dl.clear(w)

    cdef void leave(self, Waiter w):
        """The waiter's client went away: it leaves the queue and is never granted."""
        if w.live:
            self._unpark(w)
            self._forget_if_idle(w.lock)

    cdef void wait_expired(self, Waiter w):
        if not w.live:
            return
        w.dl_when = 0
        w.live = False
        w.lock.nwait -= 1
        self.nwaiters -= 1
        err = self._locked_error(w.lock)
        self._answer_error(w, err)
        self._forget_if_idle(w.lock)

    cdef void _answer_error(self, Waiter w, object err):
        cdef Store st = self.srv.store
        cdef int64_t seq = st.wait_seq if st.wait_seq > st.durable_seq else 0
        w.conn.fill(w.slot, error_response(err, w.slot.close, w.slot.head), seq)

    cdef void expired(self, Lock L, double nm):
        """L's Till passed: free it and hand it to the next waiter."""
        if L.handle == 0:
            return
        self._release(L, nm)
        self._forget_if_idle(L)

    cdef void _grant_next(self, Lock L, double nm):
        cdef Waiter w
        cdef Store st = self.srv.store
        while L.nwait > 0 and L.handle == 0:
            w = L.waiters.popleft()
            if not w.live:
                continue
            self._unpark(w)
            st.wait_seq = 0
            try:
                if w.txn is not None:
                    body = self._run(w.txn, L, None, nm)
                else:
                    self._take(L, w.dur, w.owner, nm)
                    self.srv.after_write()
                    body = self._lock_body(L)
                w.conn.fill(w.slot, frame(200, body, w.slot.close, w.slot.head), st.write_seq())
            except ApiError as e:
                self._answer_error(w, e)
            self._finish_releases(nm)
        if L.nwait == 0:
            L.waiters = None

    cdef bytes _lock_body(self, Lock L):
        return txn_body(_NO_TXN, True, L.handle, L.till)

    # ---- REST: /db/{acc}/lock/{name} ----------------------------------------------------
    cdef int rest(self, Server srv, Request r) except -1:
        cdef double nm = mono_now()
        cdef bytes m = r.method
        cdef dict params = r.params()
        cdef bytes k = r.acc + b"\0" + r.key
        cdef Lock L = self.locks.get(k)
        cdef object owner = params.get("owner", params.get("id"))
        cdef double dur, wait
        if m == b"GET" or m == b"HEAD":
            self._saw(L)
            if self._held(L, nm):
                body = b'{"Locked":true,"Till":%.3f,"Owner":%s}' % (
                    L.till, b"null" if L.owner is None else json_str((<str>L.owner).encode("utf-8")))
            else:
                body = b'{"Locked":false}'
            r.conn.reply(200, body, commit_seq(srv, False), r.head)
            return 0
        if m == b"POST":
            if srv.shutting_down:
                raise srv.shutting_down_error()
            dur = _qseconds(params, "dur", 30.0, srv.max_lock_dur, False)
            wait = _qseconds(params, "wait", 0.0, srv.max_lock_wait, True)
            if owner is not None and (len(<str>owner) == 0 or len((<str>owner).encode("utf-8")) > MAX_KEY_BYTES):
                raise ApiError(400, "bad_request", "owner must be 1..256 bytes")
            if not srv.store.has_room():
                raise ApiError(507, "storage_full", "the data store reached its configured maximum size")
            L = self._get(k)
            if owner is not None and self._held(L, nm) and L.owner == owner:
                self._extend(L, dur, nm)          # same owner: extend, keep the handle
            elif not self._held(L, nm) and L.nwait == 0:
                self._take(L, dur, owner, nm)
            elif wait > 0:
                self._park(r, L, None, owner, dur, wait, nm)
                return 0
            else:
                self._forget_if_idle(L)
                raise self._locked_error(L)
            srv.after_write()
            r.conn.reply(200, self._lock_body(L), srv.store.write_seq(), r.head)
            return 0
        if m == b"DELETE":
            if srv.shutting_down:
                raise srv.shutting_down_error()
            if "handle" in params:
                L = self._holder_check(r.acc, r.key, _qint(params, "handle", 0, 1, INT64_MAX), None, nm)
            elif owner is not None:
                L = self._holder_check(r.acc, r.key, 0, owner, nm)
            else:
                raise ApiError(400, "bad_request", "DELETE needs ?handle=H or ?owner=ID")
            L.handle = 0
            L.owner = None
            self.dl.clear(L)
            self._changed(L)
            self.releasing.append(L)
            srv.after_write()
            r.conn.reply(200, b'{"Locked":false}', srv.store.write_seq(), r.head)
            self._finish_releases(nm)
            return 0
        raise ApiError(405, "method_not_allowed", "use GET, POST or DELETE here", None, _LOCK_ALLOW)

    # ---- shutdown and failure -------------------------------------------------------------
    cdef void _answer_all_waiters(self, object err):
        cdef Lock L
        cdef Waiter w
        for L in list(self.locks.values()):
            if L.nwait:
                for w in L.waiters:
                    if w.live:
                        self._unpark(w)
                        w.slot.close = True
                        self._answer_error(w, err)
                L.waiters = None
                self._forget_if_idle(L)

    cpdef shutdown(self):
        self._answer_all_waiters(ApiError(503, "shutting_down", "the server is shutting down"))

    cpdef reload(self):
        """After a failed commit: answer waiters, then reload the table from disk."""
        self._answer_all_waiters(ApiError(503, "storage_full", "a commit failed; retry"))
        for L in self.locks.values():
            self.dl.clear(<Lock>L)
        self.locks = {}
        self.load()

    @property
    def held(self):
        cdef double nm = mono_now()
        return sum(1 for L in self.locks.values() if self._held(<Lock>L, nm))


cdef bytes _LOCKED_HEAD = b'{"Code":"locked","Message":"the lock is held by someone else","Till":'


cdef bytes _locked_body(double till):
    """The 409 locked body (what ApiError(409, "locked", ..., {"Till": till}) says)."""
    cdef char buf[128]
    cdef char* w = _put_till(_put(buf, _LOCKED_HEAD), till)
    w[0] = b'}'
    return PyBytes_FromStringAndSize(buf, w + 1 - buf)


cdef double _qseconds(dict params, str name, double default, double hi, bint zero_ok) except? -1:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        v = float(<str>raw)
    except ValueError:
        raise ApiError(400, "bad_request", "query parameter %s must be a number of seconds" % name)
    return as_seconds(v, name, hi, zero_ok)
