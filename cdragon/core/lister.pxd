# Lister: a big GET /db/{acc}/kv answered a slice at a time (lister.pyx).

cdef class Lister:
    cdef Server srv
    cdef Conn conn
    cdef Slot slot
    cdef bytes acc, prefix, start
    cdef Py_ssize_t limit
    cdef bint keys_only
    cdef object txn             # the list's own LMDB snapshot
    cdef RangeReader reader
    cdef list found             # (key, version, value, expiry) so far
    cdef int64_t rev, seq       # the revision shown; the batch the answer waits for
    cdef bint live, stale

    cdef int begin(self) except -1
    cdef int suspend(self) except -1
    cdef int _close(self) except -1
