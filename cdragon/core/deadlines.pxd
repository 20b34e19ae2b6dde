# Deadlines: the one timer heap (deadlines.pyx).

cdef class Timed:
    """Something with one deadline in the heap."""
    cdef double dl_when        # 0: no deadline

    cdef int on_time(self, double now) except -1


cdef class Deadlines:
    cdef object loop
    cdef list heap
    cdef int64_t n
    cdef object handle
    cdef double armed_at
    cdef Py_ssize_t live

    cdef int set(self, Timed t, double when) except -1
    cdef void clear(self, Timed t) noexcept
    cdef int _compact(self) except -1
    cdef int _arm(self, double when) except -1
