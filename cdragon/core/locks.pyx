# Locks: placeholder until the lock table lands (issue 3).

cdef class LockTable:
    cdef Server srv

    def __cinit__(self, Server srv):
        self.srv = srv

    cdef int begin(self, Server srv, Request r, Txn t) except -1:
        raise ApiError(400, "bad_request", "locks are not available in this build")

    cpdef reload(self):
        pass

    cpdef shutdown(self):
        pass
