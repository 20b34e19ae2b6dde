# RateLimit: global rate limits by key with GCRA (the generic cell rate algorithm, as
# redis-cell does it). Owns the parsing of limiter entries (POST /db "RateLimit" and the
# query parameters of /db/{acc}/ratelimit/{key}), the GCRA arithmetic, the check that
# refuses a request (429 rate_limited) and the answers. The only state is one number per
# key, the theoretical arrival time (TAT, epoch nanoseconds), kept by the Store like a
# counter (LMDB database "ratelimit"), so it is durable and survives restarts.
#
# All arithmetic is on int64 nanoseconds: the emission interval T = Per / Rate is whole
# nanoseconds (rounded down, at least 1) and the burst tolerance is exactly T * Burst,
# so a full burst is always exactly Burst takes and nothing drifts with floats. A TAT at
# or before now is the same as no state (a fresh key), whether stored or not.

from decimal import Decimal, InvalidOperation

cdef object _Decimal = Decimal

cdef enum:
    RL_MAX = 1000000000                 # Rate, Burst and Cost: 1..10^9 (API.md)

cdef int64_t NS = 1000000000
cdef int64_t RL_MAX_PER_NS = 365 * 86400 * NS
# how far a TAT may run ahead of now (Burst x Per / Rate): TATs stay far inside int64
cdef int64_t RL_MAX_SPAN_NS = (<int64_t>1) << 62
cdef str RL_SPAN_MSG = "Burst x Per / Rate (the time a full burst takes to come back) must be at most 146 years"


@cython.freelist(64)
@cython.no_gc      # bytes and numbers only
cdef class RateOp:
    pass


cdef inline int64_t now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <int64_t>ts.tv_sec * NS + ts.tv_nsec


cdef int64_t _per_ns(object v, str what) except? -1:
    """Per (seconds, > 0, fraction allowed, up to 365 days) as whole nanoseconds; v is a
    JSON number or a query parameter's text (a plain decimal)."""
    cdef object ns = None
    if type(v) is int:
        ns = <object>v * NS
    elif type(v) is str and (<str>v).isascii() and (<str>v).isdigit() and len(<str>v) < 12:
        ns = int(<str>v) * NS           # whole seconds: the usual case, no Decimal
    elif type(v) is float or type(v) is str:
        if type(v) is str and not _plain_decimal(<str>v):
            raise ApiError(400, "bad_request", what + " must be a plain decimal number of seconds")
        try:
            ns = int((_Decimal(repr(v) if type(v) is float else v) * NS).to_integral_value())
        except (InvalidOperation, ValueError, OverflowError):      # nan, inf
            ns = None
    if ns is None:
        raise ApiError(400, "bad_request", what + " must be a number of seconds")
    if ns < 1 or ns > RL_MAX_PER_NS:
        raise ApiError(400, "bad_request", what + " out of range (>0..31536000 seconds)")
    return ns


cdef bint _plain_decimal(str s):
    """digits, optionally a point and more digits ("60", "0.5")."""
    cdef Py_ssize_t dot = s.find(".")
    if not s.isascii():
        return False
    if dot < 0:
        return s.isdigit()
    return dot > 0 and s[:dot].isdigit() and s[dot + 1:].isdigit()


cdef RateOp new_rate_op(bytes acc, bytes key, int64_t rate, int64_t per_ns, int64_t burst, int64_t cost):
    """A validated limiter entry (ranges already checked one by one)."""
    cdef RateOp op = RateOp.__new__(RateOp)
    op.k = acc + b"\0" + key
    op.kj = json_str(key)
    op.burst = burst
    op.cost = cost
    op.t_ns = per_ns // rate
    if op.t_ns < 1:
        raise ApiError(400, "bad_request", "Rate / Per must be at most 10^9 per second")
    if burst > RL_MAX_SPAN_NS // op.t_ns:
        raise ApiError(400, "bad_request", RL_SPAN_MSG)
    op.tau_ns = op.t_ns * burst
    if cost > burst:
        raise ApiError(400, "bad_request", "Cost (%d) above Burst (%d) could never be allowed" % (cost, burst))
    op.allowed = op.writes = False
    op.new_tat = op.remaining = op.reset_ns = op.retry_ns = 0
    return op


cdef int parse_ratelimit(Txn t, object v) except -1:
    """POST /db "RateLimit": [{"Key", "Rate", "Per", "Burst", "Cost"}]."""
    cdef dict e
    cdef int64_t rate, per, burst, cost
    cdef set seen = set()
    cdef RateOp op
    if t.rl is None:
        t.rl = []
    for item in as_list(v, "RateLimit"):
        e = as_obj(item, "RateLimit")
        for f in e:
            if f != "Key" and f != "Rate" and f != "Per" and f != "Burst" and f != "Cost":
                raise unknown_field("RateLimit.", f)
        if "Rate" not in e or "Per" not in e:
            raise ApiError(400, "bad_request", "each RateLimit entry needs Rate and Per")
        key = key_bytes(e.get("Key"), "RateLimit Key")
        rate = as_int64(e["Rate"], "RateLimit Rate", 1, RL_MAX)
        if type(e["Per"]) is str:          # (text is for query strings only)
            raise ApiError(400, "bad_request", "RateLimit Per must be a number of seconds")
        per = _per_ns(e["Per"], "RateLimit Per")
        burst = as_int64(e["Burst"], "RateLimit Burst", 1, RL_MAX) if "Burst" in e else rate
        cost = as_int64(e["Cost"], "RateLimit Cost", 0, RL_MAX) if "Cost" in e else 1
        op = new_rate_op(t.acc, key, rate, per, burst, cost)
        if op.k in seen:
            raise ApiError(400, "bad_request", "the same key twice in RateLimit")
        seen.add(op.k)
        t.rl.append(op)
    return 0


# ---- GCRA ----------------------------------------------------------------------------
cdef int gcra_eval(RateOp op, Store st, int64_t now) except -1:
    """Decide op against its key's TAT (nothing written here: apply_limits does).
    A take of Cost c is allowed when max(TAT, now) + c*T - tau <= now; a Cost of 0
    never refuses and reports whether a take of 1 would be allowed."""
    cdef int64_t tat = st.rl_read(op.k)
    cdef int64_t base = tat if tat > now else now
    cdef int64_t need = op.t_ns * (op.cost if op.cost > 0 else 1)
    # when this take would fit (base + need - tau, in an order that cannot overflow:
    # need <= tau, and base may be a TAT far ahead, written with a larger tolerance)
    cdef int64_t allow_at = base - (op.tau_ns - need)
    op.allowed = allow_at <= now
    op.writes = op.allowed and op.cost > 0
    if op.writes:
        base += need
        op.new_tat = base
    op.retry_ns = 0 if op.allowed else allow_at - now
    op.reset_ns = base - now
    # takes of cost 1 that still fit: now + tau - base, in whole intervals (never
    # below 0: a TAT written by a call with a larger Burst may be beyond this tau)
    op.remaining = (now + op.tau_ns - base) // op.t_ns if now + op.tau_ns > base else 0
    return 0


cdef int check_limits(Txn t, Store st) except -1:
    """The last check before apply: every entry evaluated; if any take is over its
    limit the request is refused (429, nothing changed) and answered at once (a
    refusal reveals no write, so it does not wait for a commit)."""
    cdef RateOp op
    cdef list limited = None
    cdef int64_t now = now_ns(), worst = 0
    for op in t.rl:
        gcra_eval(op, st, now)
        if not op.allowed and op.cost > 0:
            if limited is None:
                limited = []
            limited.append({"Key": _ujson_loads(op.kj), "RetryAfter": _secs_f(op.retry_ns)})
            worst = max(worst, op.retry_ns)
    if limited is not None:
        st.wait_seq = 0
        raise ApiError(429, "rate_limited", "over the rate limit", {"Limited": limited},
                       b"Retry-After: %d\r\n" % _ceil_s(worst))
    return 0


cdef int apply_limits(Txn t, Store st) except -1:
    """Write the new TAT of every take (all were allowed); returns 1 if any wrote."""
    cdef RateOp op
    cdef int wrote = 0
    for op in t.rl:
        if op.writes:
            st.rl_write(op.k, op.new_tat)
            wrote = 1
    return wrote


# ---- answers ---------------------------------------------------------------------------
cdef inline int64_t _ceil_s(int64_t ns) noexcept:
    """Whole seconds, rounded up (Retry-After, RateLimit-Reset)."""
    return (ns + NS - 1) // NS


cdef inline char* _put_secs(char* w, int64_t ns) noexcept:
    """Seconds with a fraction, to the microsecond, rounded up (a client that waits
    that long is never early): "3.333334"."""
    cdef int64_t us = (ns + 999) // 1000, frac
    cdef int i
    w = _put_i64(w, us // 1000000)
    w[0] = b'.'
    frac = us % 1000000
    for i in range(6, 0, -1):
        w[i] = <char>(48 + frac % 10)
        frac //= 10
    return w + 7


cdef object _secs_f(int64_t ns):
    cdef char buf[32]
    return float(PyBytes_FromStringAndSize(buf, _put_secs(buf, ns) - buf))


cdef Py_ssize_t limits_size(list ops):
    """An upper bound of put_limits' bytes."""
    cdef RateOp op
    cdef Py_ssize_t n = 16
    for op in ops:
        n += 80 + PyBytes_GET_SIZE(op.kj)
    return n


cdef char* put_limits(char* w, list ops) noexcept:
    """"RateLimit":[{"Key","Remaining","ResetAfter"},...], (POST /db's answer part)."""
    cdef RateOp op
    w = _lit(w, '"RateLimit":[', 13)
    for op in ops:
        w = _lit(w, '{"Key":', 7)
        w = _put(w, op.kj)
        w = _lit(w, ',"Remaining":', 13)
        w = _put_i64(w, op.remaining)
        w = _lit(w, ',"ResetAfter":', 14)
        w = _put_secs(w, op.reset_ns)
        w = _lit(w, '},', 2)
    (w - 1)[0] = b']'             # over the last comma
    w[0] = b','
    return w + 1


cdef bytes _rest_body(RateOp op, bint refused):
    """The answer of the REST routes; a refused take's holds the error too."""
    cdef char* start = _scratch_for(200 + PyBytes_GET_SIZE(op.kj))
    cdef char* w = start
    if refused:
        w = _lit(w, '{"Code":"rate_limited","Message":"over the rate limit","Key":', 61)
    else:
        w = _lit(w, '{"Key":', 7)
    w = _put(w, op.kj)
    if op.allowed:
        w = _lit(w, ',"Allowed":true,"Remaining":', 28)
        w = _put_i64(w, op.remaining)
    else:
        w = _lit(w, ',"Allowed":false,"Remaining":0,"RetryAfter":', 44)
        w = _put_secs(w, op.retry_ns)
    w = _lit(w, ',"ResetAfter":', 14)
    w = _put_secs(w, op.reset_ns)
    w[0] = b'}'
    out = PyBytes_FromStringAndSize(start, w + 1 - start)
    _scratch_done()
    return out


cdef bytes _rest_headers(RateOp op, bint refused, bint keep_alive_10):
    """RateLimit-Limit, -Remaining, -Reset (and a refusal's Retry-After)."""
    cdef char buf[256]
    cdef char* w = _lit(buf, "RateLimit-Limit: ", 17)
    w = _put_i64(w, op.burst)
    w = _lit(w, "\r\nRateLimit-Remaining: ", 23)
    w = _put_i64(w, op.remaining if op.allowed else 0)
    w = _lit(w, "\r\nRateLimit-Reset: ", 19)
    w = _put_i64(w, _ceil_s(op.reset_ns))
    w = _lit(w, "\r\n", 2)
    if refused:
        w = _lit(w, "Retry-After: ", 13)
        w = _put_i64(w, _ceil_s(op.retry_ns))
        w = _lit(w, "\r\n", 2)
    if keep_alive_10:
        w = _put(w, KEEP_ALIVE_10)
    return PyBytes_FromStringAndSize(buf, w - buf)


# ---- /db/{acc}/ratelimit/{key} ---------------------------------------------------------
cdef RateOp _rest_op(Request r, bint take):
    cdef dict params = r.params()
    cdef int64_t rate
    if "rate" not in params or "per" not in params:
        raise ApiError(400, "bad_request", "rate limits need ?rate=N&per=SECONDS")
    rate = _qint(params, "rate", 0, 1, RL_MAX)
    return new_rate_op(r.acc, r.key, rate, _per_ns(params["per"], "query parameter per"),
                       _qint(params, "burst", rate, 1, RL_MAX),
                       _qint(params, "cost", 1, 0, RL_MAX) if take else 0)


cdef int _rest_answer(Request r, RateOp op, int64_t seq) except -1:
    """200 (or a refused take's 429) with the RateLimit-* headers."""
    cdef Conn c = r.conn
    cdef bint refused = op.cost > 0 and not op.allowed
    c.respond(frame(429 if refused else 200, _rest_body(op, refused), c.want_close, r.head, False,
                    _rest_headers(op, refused, c.http10 and not c.want_close)),
              seq, c.want_close, r.head)
    return 0


cdef int ratelimit_take(Server srv, Request r) except -1:
    """One take, without a Txn (the hot path of a rate limiter): a refusal is answered
    at once, an allowed take once its TAT is durable."""
    cdef RateOp op = _rest_op(r, True)
    cdef Store st = srv.store
    gcra_eval(op, st, now_ns())
    if not op.allowed and op.cost > 0:
        st.wait_seq = 0                # a refusal reveals no write: no commit to wait for
        return _rest_answer(r, op, 0)
    if op.writes:
        if not st.has_room():
            raise E_STORAGE_FULL.error()
        st.rl_write(op.k, op.new_tat)
    _rest_answer(r, op, commit_seq(srv, op.writes))
    return 1 if op.writes else 0


cdef int ratelimit_peek(Server srv, Request r) except -1:
    cdef RateOp op = _rest_op(r, False)
    gcra_eval(op, srv.store, now_ns())
    _rest_answer(r, op, read_seq(srv.store))
    return 0


# ---- recovered states ------------------------------------------------------------------
cdef enum:
    RL_SWEEP_PER_PASS = 2000            # records looked at per deadline sweep (every 250 ms)

cdef bytes _sweep_from = b""           # the record key the next sweep starts at


cdef int sweep_limits(Server srv) except -1:
    """Delete limiter states that have fully recovered (TAT <= now: the same as none), a
    slice of the ratelimit database per call, round robin, so that keys used once (an
    IP address, a user) do not stay stored for ever. Reads LMDB's view; a key with a
    newer state in the overlay is left to a later round, and so is an account frozen
    for a move (it takes no writes)."""
    global _sweep_from
    cdef Store st = srv.store
    cdef int64_t now = now_ns()
    cdef Py_ssize_t seen = 0
    cdef bint wrote = False
    cdef bytes k
    if st.rtxn is None or srv.shutting_down:
        return 0
    cur = st.rtxn.cursor(st.db_rl)
    if not cur.set_range(_sweep_from):
        _sweep_from = b""
        return 0
    for k, v in cur.iternext(True, True):
        if seen == RL_SWEEP_PER_PASS:
            _sweep_from = k               # go on from here next time
            break
        seen += 1
        if unpack_i64(v) > now or k in st.o_rl:
            continue
        if srv.frozen and k[:k.index(b"\0")] in srv.frozen:
            continue
        st.rl_write(k, 0)                 # 0: deleted by the batch (Store.encode)
        wrote = True
    else:
        _sweep_from = b""                 # the end: start over
    if wrote:
        srv.after_write()
    return 0
