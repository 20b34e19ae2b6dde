# Watch: long-poll watchers of keys and prefixes (watch.pyx).

cdef class Watcher(Timed):
    cdef WatchHub hub
    cdef Conn conn
    cdef Slot slot
    cdef bytes acc
    cdef bytes k            # key watch: full record key; prefix watch: None
    cdef bytes kj
    cdef bytes prefix       # prefix watch: account \0 prefix
    cdef int64_t ver        # the version (key) or revision (prefix) the client has
    cdef bint live

    cdef int on_time(self, double now) except -1


cdef class AccountHistory:
    """Delete markers of one account, oldest first, and the revision before which the
    server no longer knows about deletes."""
    cdef list marks          # [(rev, wall time, key bytes)]
    cdef int64_t floor       # watches from a revision below this answer 410


cdef class WatchHub:
    cdef Server srv
    cdef Deadlines dl
    cdef dict keys           # record key -> set of Watcher
    cdef dict prefixes       # account -> {prefix record key -> set of Watcher}
    cdef dict history        # account -> AccountHistory
    cdef readonly Py_ssize_t nwatchers
    cdef double retention

    # the after-write hook and commits
    cdef int deleted(self, bytes acc, bytes k, int64_t rev) except -1
    cdef int committed(self, Batch b) except -1
    cdef int shutdown(self) except -1
    cdef int moving(self, bytes acc) except -1
    # starting and ending watches
    cdef int begin_post(self, Server srv, Request r) except -1
    cdef int begin_get(self, Server srv, Request r) except -1
    cdef int remove(self, Watcher w) except -1
    cdef int timed_out(self, Watcher w) except -1
    # inside
    cdef AccountHistory _history(self, bytes acc)
    cdef int _trim(self, AccountHistory h) except -1
    cdef int64_t _durable_rev(self, bytes acc) except -1
    cdef bytes _prefix_changes(self, bytes acc, bytes prefix, int64_t since)
    cdef int _watch_key(self, Request r, bytes key, int64_t version, double timeout) except -1
    cdef int _watch_prefix(self, Request r, bytes prefix, int64_t version, double timeout) except -1
    cdef int _check_room(self, set group) except -1
    cdef Watcher _new(self, Request r, double timeout, int64_t version)
    cdef int _answer(self, Watcher w, bytes data, bytes body, int64_t seq) except -1
    cdef int _wake_prefixes(self, Batch b) except -1
    cdef int _wake_key(self, bytes k, set group, int64_t ver, object val, double exp) except -1
