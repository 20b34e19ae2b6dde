# Expiry: keys with a TTL are deleted once their time passes (expiry.pyx).

cdef class Expiry:
    cdef Server srv
    cdef bytes scan_from            # the LMDB index is read from here on
    cdef readonly int64_t expired   # keys deleted by expiry (tests, metrics)

    cdef int run(self) except -1
    cdef int restart(self) noexcept
    cdef int _handle(self, bytes xk, Batch found_in, double now, dict gone) except -1
