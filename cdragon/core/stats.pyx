# Stats: what /metrics counts on the request path, in C arrays owned by the Server
# (srv.stats). The router calls Stats.answered once per request after its handler
# returned; the group commit calls Stats.committed once per commit. Nothing here
# renders: cdragon/metrics.py reads the arrays through stats_snapshot() at scrape time.
#
# What a request's duration is: the time from the router taking the request to its
# handler's return (parsing, the transaction, framing the answer). Waits are left
# out: the wait for the group commit's fsync (cdragon_fsync_duration_seconds shows
# it) and a parked request's wait for a lock, a watch or a big list's next slice (its
# duration is the handler's run before it parked). A parked request is counted in
# cdragon_requests_total when it is answered, with the status it is answered with.
# Requests refused before routing (malformed HTTP, header limits, timeouts) are not
# counted.

cdef tuple LAT_BOUNDS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                         0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
cdef tuple BATCH_BOUNDS = tuple(float(1 << i) for i in range(ST_BATCH_BUCKETS))
cdef double _lat_bounds[ST_LAT_BUCKETS]
for _i in range(ST_LAT_BUCKETS):
    _lat_bounds[_i] = LAT_BOUNDS[_i]

import logging

cdef list ROUTE_TEMPLATES = ["other"]     # index -> route label; route() appends
cdef object _access = logging.getLogger("cdragon.access")


cdef inline int _status_of(bytes data) noexcept:
    """The status code of a framed answer ("HTTP/1.1 200 ..."), or 0."""
    cdef const char* p = PyBytes_AS_STRING(data)
    if PyBytes_GET_SIZE(data) < 12:
        return 0
    return (p[9] - 48) * 100 + (p[10] - 48) * 10 + (p[11] - 48)


cdef class Stats:

    def __cinit__(self, cfg=None):
        self.access_log = bool(getattr(cfg, "access_log", False))

    cdef int answered(self, Request r, Conn conn, double t0) except -1:
        """After the router: count the answer the request got (it is the last one the
        connection framed: conn.out's last entry when nothing waits before it, else the
        last Slot), or, if it parked, only its handler time."""
        cdef double d = mono_now() - t0
        cdef int ix = 0 if r.route is None else r.route.index
        cdef int status = 0, b = 0
        cdef bytes data = None
        cdef Slot s
        cdef Py_ssize_t nq = len(conn.q), nout = len(conn.out)     # (no wraparound: no [-1])
        if nq:
            s = <Slot>conn.q[nq - 1]
            data = s.data
            if data is None:           # parked: counted by answered_later
                s.route_ix = ix + 1
                s.method = r.method
                s.t0 = t0
        elif nout:
            data = <bytes>conn.out[nout - 1]
        if data is not None:
            status = _status_of(data)
            if 0 < status < ST_CODES:
                self.requests[ix][status] += 1
        while b < ST_LAT_BUCKETS and d > _lat_bounds[b]:
            b += 1
        self.lat[ix][b] += 1
        self.lat_sum[ix] += d
        if self.access_log and data is not None:
            _log_access(conn, r.method, ix, status, data, d, r.head)
        return 0

    cdef int answered_later(self, Conn conn, Slot s, bytes data) except -1:
        """A parked request's answer (a lock granted or refused, a watch woken or timed
        out, a big list's last slice): counted now, under the route it came in on."""
        cdef int status = _status_of(data)
        cdef int ix = s.route_ix - 1
        s.route_ix = 0
        if 0 < status < ST_CODES:
            self.requests[ix][status] += 1
        if self.access_log:
            _log_access(conn, s.method, ix, status, data, mono_now() - s.t0, s.head)
        return 0

    cdef void committed(self, int64_t nreq) noexcept:
        cdef int b = 0
        self.commits += 1
        while b < ST_BATCH_BUCKETS and nreq > (1 << b):
            b += 1
        self.batch[b] += 1
        self.batch_sum += nreq


cdef int _log_access(Conn conn, int method, int ix, int status, bytes data, double d,
                     bint head) except -1:
    """One access-log line: never the URL (it holds keys), the body or a token."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t hdr_end = data.find(b"\r\n\r\n")
    peer = conn.transport.get_extra_info("peername") if conn.transport is not None else None
    client = ("%s:%s" % (peer[0], peer[1])) if isinstance(peer, tuple) and len(peer) >= 2 else str(peer)
    body_bytes = 0 if head or hdr_end < 0 else n - hdr_end - 4
    meth = METHOD_NAMES[method] if 0 <= method < N_METHODS else "OTHER"
    route = ROUTE_TEMPLATES[ix] if ix < len(ROUTE_TEMPLATES) else "other"
    _access.info("%s %s %s %d %d %.6f", client, meth, route, status, body_bytes, d,
                 extra={"fields": {"client": client, "method": meth, "route": route, "status": status,
                                   "bytes": body_bytes, "duration": round(d, 6),
                                   "token": conn.token.name if conn.token is not None else None}})
    return 0


def stats_snapshot(Server srv):
    """A copy of the counters for cdragon.metrics (loop thread, at scrape time)."""
    cdef Stats st = srv.stats
    cdef int i, c, b
    requests = []
    latency = []
    for i in range(min(len(ROUTE_TEMPLATES), ST_ROUTES)):
        for c in range(ST_CODES):
            if st.requests[i][c]:
                requests.append((ROUTE_TEMPLATES[i], c, st.requests[i][c]))
        counts = [st.lat[i][b] for b in range(ST_LAT_BUCKETS + 1)]
        if any(counts):
            latency.append((ROUTE_TEMPLATES[i], counts, st.lat_sum[i]))
    return {
        "requests": requests,
        "latency_bounds": LAT_BOUNDS,
        "latency": latency,
        "commits": st.commits,
        "batch_bounds": BATCH_BOUNDS,
        "batch": [st.batch[b] for b in range(ST_BATCH_BUCKETS + 1)],
        "batch_sum": st.batch_sum,
        "connections": len(srv.conns),
        "locks_held": srv.locks.held,
        "lock_waiters": srv.locks.nwaiters,
        "watchers": srv.watches.nwatchers,
        "data_bytes": srv.store.used_bytes,
        "limit_bytes": srv.store.max_bytes,
        "auth_failures": dict(srv.auth.failures),
    }
