# Watch: placeholder until the watch hub lands (issue 4).

cdef class WatchHub:
    cdef Server srv

    def __cinit__(self, Server srv):
        self.srv = srv

    cdef int begin_get(self, Server srv, Request r) except -1:
        raise ApiError(400, "bad_request", "watches are not available in this build")

    cpdef shutdown(self):
        pass
