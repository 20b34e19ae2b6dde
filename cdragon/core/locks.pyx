# Locks: the lock table. name -> holder handle, Till, owner and a FIFO queue of
# waiters parked on open requests. Handles come from one server-wide counter that only
# grows (persisted in meta, resumed above every handle ever stored), so they work as
# fencing tokens. Grants, extensions and releases are written to the open batch like any
# other write, and the answer that reveals them waits for that batch to be durable.
# Expiry and wait deadlines run on the shared Deadlines heap (monotonic clock).
#
# Never blocks and never touches LMDB: the storage layer reads the lock records at
# start (and after a failed commit) and hands them over (load, reload). A waiter is a
# reserved response slot, answered later by a release, an expiry, its own deadline or
# shutdown.


@cython.no_gc   # a million held locks must not be walked by every full GC pass;
                # no cycle through a Lock outlives it (see _forget_if_idle)
cdef class Lock(Timed):

    cdef int on_time(self, double now) except -1:
        return self.table.expired(self, now)


cdef class Waiter(Timed):

    cdef int on_time(self, double now) except -1:
        return self.table.wait_expired(self)

    def drop(self):
        self.table.leave(self)


cdef class LockTable:

    def __cinit__(self, Server srv, Deadlines dl):
        self.srv = srv
        self.dl = dl
        self.locks = {}
        self.releasing = []
        self.hw = 0
        self.nwaiters = 0

    # ---- persistence -----------------------------------------------------------------
    cdef int load(self, int64_t hw, list records) except -1:
        """Hold again the unexpired locks the storage layer read at start:
        records [(key, handle, till, owner)]; handles resume above `hw`."""
        cdef Lock L
        cdef double nw = wall_now(), nm = mono_now()
        self.hw = max(self.hw, hw)
        for k, h, till, owner in records:
            L = self._new(k)
            L.handle = h
            L.till = till
            L.tmono = nm + (<double>till - nw)
            L.owner = owner
            self.locks[k] = L
            self.dl.set(L, L.tmono)
        return 0

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

    cdef int _changed(self, Lock L) except -1:
        cdef Store st = self.srv.store
        L.seq = st.write_seq()
        st.open_batch.mark(st.open_batch.lk, L.k, 48)
        return 0

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

    cdef Lock _get(self, bytes k):
        cdef Lock L = self.locks.get(k)
        if L is None:
            L = self._new(k)
            self.locks[k] = L
        return L

    cdef bint _held(self, Lock L, double nm) noexcept:
        return L is not None and L.handle != 0 and L.tmono > nm

    cdef void _saw(self, Lock L) noexcept:
        cdef Store st = self.srv.store
        if L is not None and L.seq > st.durable_seq and L.seq > st.wait_seq:
            st.wait_seq = L.seq

    cdef Lock _holder_check(self, bytes acc, bytes name, int64_t handle, object owner, double nm):
        """The lock if `handle` (or `owner`) holds it now, else 409 not_lock_holder."""
        cdef Lock L = self.locks.get(acc + b"\0" + name)
        self._saw(L)
        if self._held(L, nm) and (L.handle == handle if owner is None else L.owner == owner):
            return L
        raise E_NOT_LOCK_HOLDER.error()

    cdef object _locked_error(self, Lock L):
        self._saw(L)
        return ApiError(409, "locked", "the lock is held by someone else", {"Till": _till_ms(L.till) / 1000.0})

    cdef int _take(self, Lock L, double dur, object owner, double nm) except -1:
        self.hw += 1
        L.handle = self.hw
        L.owner = owner
        return self._extend(L, dur, nm)

    cdef int _extend(self, Lock L, double dur, double nm) except -1:
        L.till = wall_now() + dur
        L.tmono = nm + dur
        self.dl.set(L, L.tmono)
        return self._changed(L)

    cdef int _free(self, Lock L) except -1:
        """The one place a lock becomes free (its next waiter is the caller's business)."""
        L.handle = 0
        L.owner = None
        self.dl.clear(L)
        return self._changed(L)

    cdef int _release(self, Lock L, double nm) except -1:
        self._free(L)
        return self._grant_next(L, nm)

    cdef int _release_after_answer(self, Lock L) except -1:
        """Free L now, hand it on once the releasing answer is queued (_finish_releases)."""
        self._free(L)
        self.releasing.append(L)
        return 0

    cdef int _forget_if_idle(self, Lock L) except -1:
        if L.handle == 0 and L.nwait == 0:
            L.waiters = None          # drops waiters that left (they point back at L)
            self.locks.pop(L.k, None)
        return 0

    # ---- POST /db with LockID / UnlockID ------------------------------------------------
    cdef int begin(self, Server srv, Request r, Txn t) except -1:
        cdef double nm = mono_now()
        cdef Lock L
        if t.unlock_id is not None:
            self._holder_check(t.acc, t.unlock_id, t.unlock, None, nm)
        if t.lock_id is None or t.lock_id == t.unlock_id:
            r.conn.reply(200, self._run(t, None, None, nm), srv.store.write_seq(), r.head)
            self._finish_releases(nm)
            return 1
        L = self._get(t.acc + b"\0" + t.lock_id)
        if not self._held(L, nm) and L.nwait == 0:
            try:
                body = self._run(t, L, None, nm)
            finally:
                self._forget_if_idle(L)
            r.conn.reply(200, body, srv.store.write_seq(), r.head)
            self._finish_releases(nm)
            return 1
        if t.lock_wait <= 0:
            # the everyday conflict, answered without raising: an exception through
            # three Cython frames (tracebacks) and a JSON encoder cost more than the rest
            self._saw(L)
            r.conn.reply(409, _locked_body(L.till), read_seq(srv.store), r.head)
            return 0
        self._park(r, L, t, None, t.lock_dur, t.lock_wait, nm)
        return 0

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
            self._release_after_answer(U)
        if t.lock_id is not None:
            return txn_body(t, True, L.handle, L.till)
        return txn_body(t)

    cdef int _finish_releases(self, double nm) except -1:
        """Grant the locks the answered request released to their next waiters. Runs
        after the releasing answer is queued, so it goes out before those grants."""
        cdef Lock U
        while self.releasing:
            U = self.releasing.pop()
            if U.handle == 0:
                self._grant_next(U, nm)
                self._forget_if_idle(U)
        return 0

    # ---- waiting -----------------------------------------------------------------------
    cdef int _park(self, Request r, Lock L, Txn t, object owner, double dur, double wait, double nm) except -1:
        cdef Waiter w
        if L.nwait >= self.srv.lim.max_waiters_per_key or self.nwaiters >= self.srv.lim.max_waiters:
            self._forget_if_idle(L)
            raise E_TOO_MANY_WAITERS.error()
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
        return 0

    cdef int _unpark(self, Waiter w) except -1:
        w.live = False
        w.lock.nwait -= 1
        self.nwaiters -= 1
        self.dl.clear(w)
        return 0

    cdef int leave(self, Waiter w) except -1:
        """The waiter's client went away: it leaves the queue and is never granted."""
        if w.live:
            self._unpark(w)
            self._forget_if_idle(w.lock)
        return 0

    cdef int wait_expired(self, Waiter w) except -1:
        if not w.live:
            return 0
        self._unpark(w)
        self._answer_error(w, self._locked_error(w.lock))
        return self._forget_if_idle(w.lock)

    cdef int _answer_error(self, Waiter w, object err) except -1:
        return w.conn.fill(w.slot, error_response(err, w.slot.close, w.slot.head), read_seq(self.srv.store))

    cdef int expired(self, Lock L, double nm) except -1:
        """L's Till passed: free it and hand it to the next waiter."""
        if L.handle == 0:
            return 0
        self._release(L, nm)
        return self._forget_if_idle(L)

    cdef int _grant_next(self, Lock L, double nm) except -1:
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
        return 0

    cdef bytes _lock_body(self, Lock L):
        return txn_body(_NO_TXN, True, L.handle, L.till)

    # ---- REST: /db/{acc}/lock/{name} ----------------------------------------------------
    cdef int rest_get(self, Request r) except -1:
        cdef Lock L = self.locks.get(r.acc + b"\0" + r.key)
        self._saw(L)
        if self._held(L, mono_now()):
            body = b'{"Locked":true,"Till":%.3f,"Owner":%s}' % (
                L.till, b"null" if L.owner is None else json_str((<str>L.owner).encode("utf-8")))
        else:
            body = b'{"Locked":false}'
        r.conn.reply(200, body, read_seq(self.srv.store), r.head)
        return 0

    cdef int rest_take(self, Request r) except -1:
        cdef Server srv = self.srv
        cdef double nm = mono_now()
        cdef dict params = r.params()
        cdef object owner = _owner_param(params)
        cdef double dur = _qseconds(params, "dur", srv.lim.default_lock_dur, srv.lim.max_lock_dur, False)
        cdef double wait = _qseconds(params, "wait", 0.0, srv.lim.max_lock_wait, True)
        cdef Lock L
        if not srv.store.has_room():
            raise E_STORAGE_FULL.error()
        L = self._get(r.acc + b"\0" + r.key)
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
        return 1

    cdef int rest_release(self, Request r) except -1:
        cdef double nm = mono_now()
        cdef dict params = r.params()
        cdef object owner = _owner_param(params)
        cdef Lock L
        if "force" in params:
            return self._force_release(r, nm)
        if "handle" in params:
            L = self._holder_check(r.acc, r.key, _qint(params, "handle", 0, 1, INT64_MAX), None, nm)
        elif owner is not None:
            L = self._holder_check(r.acc, r.key, 0, owner, nm)
        else:
            raise ApiError(400, "bad_request", "DELETE needs ?handle=H or ?owner=ID")
        self._release_after_answer(L)
        self.srv.after_write()
        r.conn.reply(200, b'{"Locked":false}', self.srv.store.write_seq(), r.head)
        self._finish_releases(nm)
        return 1

    cdef int _force_release(self, Request r, double nm) except -1:
        """DELETE ?force: free the lock whoever holds it (an operator's way out when a
        handle is lost); the next waiter gets it with a new, higher handle."""
        cdef dict params = r.params()
        cdef Lock L
        if len(params) > 1 or params["force"] not in ("", "1", "true"):
            raise ApiError(400, "bad_request", "?force takes no value and goes alone")
        L = self.locks.get(r.acc + b"\0" + r.key)
        self._saw(L)
        if L is None or L.handle == 0:
            r.conn.reply(200, b'{"Locked":false}', read_seq(self.srv.store), r.head)
            return 0
        self._release_after_answer(L)
        self.srv.after_write()
        r.conn.reply(200, b'{"Locked":false}', self.srv.store.write_seq(), r.head)
        self._finish_releases(nm)
        return 1

    # ---- shutdown and failure -------------------------------------------------------------
    cdef int _answer_all_waiters(self, object err, bytes acc=None) except -1:
        """Answer every waiter (of the account `acc`'s locks only, if given) with err."""
        cdef Lock L
        cdef Waiter w
        cdef bytes head = None if acc is None else acc + b"\0"
        for L in list(self.locks.values()):
            if L.nwait and (head is None or L.k.startswith(head)):
                for w in L.waiters:
                    if w.live:
                        self._unpark(w)
                        w.slot.close = True
                        self._answer_error(w, err)
                L.waiters = None
                self._forget_if_idle(L)
        return 0

    cdef int shutdown(self) except -1:
        return self._answer_all_waiters(E_SHUTTING_DOWN.error())

    cdef int moving(self, bytes acc) except -1:
        """The account is frozen for a move: its lock waiters get 503 moving."""
        return self._answer_all_waiters(E_MOVING.error(), acc)

    cdef int reload(self, object err, int64_t hw, list records) except -1:
        """After a failed commit: answer the waiters with that commit's error, then
        take the table the storage layer read back from disk."""
        self._answer_all_waiters(err)
        for L in self.locks.values():
            self.dl.clear(<Lock>L)
        self.locks = {}
        return self.load(hw, records)

    @property
    def held(self):
        cdef double nm = mono_now()
        return sum(1 for L in self.locks.values() if self._held(<Lock>L, nm))


cdef object _owner_param(dict params):
    cdef object owner = params.get("owner", params.get("id"))
    if "owner" in params and "id" in params:
        raise ApiError(400, "bad_request", "send owner or id, not both")
    if owner is not None and (len(<str>owner) == 0 or len((<str>owner).encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES):
        raise ApiError(400, "bad_request", "owner must be 1..%d bytes" % MAX_KEY_BYTES)
    return owner


# ---- the lock routes' handlers ----------------------------------------------------------
cdef int lock_get(Server srv, Request r) except -1:
    return srv.locks.rest_get(r)


cdef int lock_take(Server srv, Request r) except -1:
    return srv.locks.rest_take(r)


cdef int lock_release(Server srv, Request r) except -1:
    return srv.locks.rest_release(r)


cdef bytes _LOCKED_HEAD = b'{"Code":"locked","Message":"the lock is held by someone else","Till":'


cdef bytes _locked_body(double till):
    """The 409 locked body (what ApiError(409, "locked", ..., {"Till": till}) says)."""
    cdef char buf[128]
    cdef char* w = _put_till(_put(buf, _LOCKED_HEAD), till)
    w[0] = b'}'
    return PyBytes_FromStringAndSize(buf, w + 1 - buf)
