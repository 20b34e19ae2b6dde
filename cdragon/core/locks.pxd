# Locks: the lock table (locks.pyx).

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

    cdef int on_time(self, double now) except -1


cdef class Waiter(Timed):
    cdef LockTable table
    cdef Lock lock
    cdef Conn conn
    cdef Slot slot
    cdef Txn txn               # POST /db request, or None for REST
    cdef object owner          # REST owner
    cdef double dur
    cdef bint live

    cdef int on_time(self, double now) except -1


cdef class LockTable:
    cdef Server srv
    cdef Deadlines dl
    cdef dict locks
    cdef list releasing                    # unlocked by the request being answered
    cdef readonly int64_t hw               # highest handle ever issued
    cdef readonly Py_ssize_t nwaiters

    # start-up, commits and failures
    cdef int load(self, int64_t hw, list records) except -1
    cdef list encode(self, Batch b)
    cdef int reload(self, object err, int64_t hw, list records) except -1
    cdef int shutdown(self) except -1
    cdef int moving(self, bytes acc) except -1
    # POST /db with LockID / UnlockID, and the REST routes
    cdef int begin(self, Server srv, Request r, Txn t) except -1
    cdef int rest_get(self, Request r) except -1
    cdef int rest_take(self, Request r) except -1
    cdef int rest_release(self, Request r) except -1
    cdef int _force_release(self, Request r, double nm) except -1
    # waiters and expiry (Deadlines, connections)
    cdef int leave(self, Waiter w) except -1
    cdef int wait_expired(self, Waiter w) except -1
    cdef int expired(self, Lock L, double nm) except -1
    # inside
    cdef int _changed(self, Lock L) except -1
    cdef Lock _new(self, bytes k)
    cdef Lock _get(self, bytes k)
    cdef bint _held(self, Lock L, double nm) noexcept
    cdef void _saw(self, Lock L) noexcept
    cdef Lock _holder_check(self, bytes acc, bytes name, int64_t handle, object owner, double nm)
    cdef object _locked_error(self, Lock L)
    cdef int _take(self, Lock L, double dur, object owner, double nm) except -1
    cdef int _extend(self, Lock L, double dur, double nm) except -1
    cdef int _free(self, Lock L) except -1
    cdef int _release(self, Lock L, double nm) except -1
    cdef int _release_after_answer(self, Lock L) except -1
    cdef int _forget_if_idle(self, Lock L) except -1
    cdef bytes _run(self, Txn t, Lock L, object owner, double nm)
    cdef int _finish_releases(self, double nm) except -1
    cdef int _park(self, Request r, Lock L, Txn t, object owner, double dur, double wait, double nm) except -1
    cdef int _unpark(self, Waiter w) except -1
    cdef int _answer_error(self, Waiter w, object err) except -1
    cdef int _grant_next(self, Lock L, double nm) except -1
    cdef bytes _lock_body(self, Lock L)
    cdef int _answer_all_waiters(self, object err, bytes acc=*) except -1
