# Stats: the request-path counters that /metrics reads (stats.pyx). Plain C arrays,
# bumped in place by the router and the group commit; rendered only at scrape time.

cdef enum:
    ST_ROUTES = 32        # route slots; slot 0 counts requests that matched no route
    ST_CODES = 600        # status codes 0..599, one counter each
    ST_LAT_BUCKETS = 16   # finite latency bucket bounds (LAT_BOUNDS), +Inf after them
    ST_BATCH_BUCKETS = 14 # finite commit batch bounds (BATCH_BOUNDS: 1, 2, 4 ... 8192)


cdef class Stats:
    """Counters of one Server. Requests per (route, status); handler time per route
    (histogram); commits and write requests per commit (histogram). The access log
    flag is here too, so that its check is one C field read."""
    cdef int64_t requests[ST_ROUTES][ST_CODES]
    cdef int64_t lat[ST_ROUTES][ST_LAT_BUCKETS + 1]    # per bucket, not cumulative
    cdef double lat_sum[ST_ROUTES]
    cdef public int64_t commits
    cdef int64_t batch[ST_BATCH_BUCKETS + 1]
    cdef double batch_sum
    cdef public bint access_log

    cdef int answered(self, Request r, Conn conn, double t0) except -1
    cdef int answered_later(self, Conn conn, Slot s, bytes data) except -1
    cdef void committed(self, int64_t nreq) noexcept
