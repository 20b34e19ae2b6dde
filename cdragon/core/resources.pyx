# Resources: the handlers of POST /db/{acc} and of the curl-friendly endpoints
# /db/{acc}/kv|counter|sequence/{key}. Every write builds a Txn and goes through
# run_txn, so REST and POST /db share validation, preconditions and durability.

cdef bytes _KV_ALLOW = b"Allow: GET, HEAD, PUT, DELETE\r\n"
cdef bytes _COUNTER_ALLOW = b"Allow: GET, HEAD, POST, PUT, DELETE\r\n"
cdef bytes _SEQ_ALLOW = b"Allow: GET, HEAD, POST\r\n"


cdef int64_t commit_seq(Server srv, bint wrote):
    """The batch an answer waits for: the open one after a write, else the newest
    uncommitted batch the request read from (0: nothing to wait for)."""
    cdef Store st = srv.store
    if wrote:
        srv.after_write()
        return st.write_seq()
    return st.wait_seq if st.wait_seq > st.durable_seq else 0


cdef int handle_db(Server srv, Request r) except -1:
    cdef Txn t = fast_txn(r.acc, r.body, &srv.fp_limits)
    if t is None:
        t = parse_txn(r.acc, parse_json(r.body), srv)
    if t.lock_id is not None or t.unlock_id is not None:
        return srv.locks.begin(srv, r, t)
    cdef bint wrote = run_txn(t, srv.store, srv)
    r.conn.reply(200, txn_body(t), commit_seq(srv, wrote), r.head)
    return 0


cdef int64_t _qint(dict params, str name, int64_t default, int64_t lo, int64_t hi) except? -1:
    cdef object raw = params.get(name)
    cdef object v
    if raw is None:
        return default
    try:
        v = int(<str>raw, 10) if (<str>raw).isascii() else None
    except ValueError:
        v = None
    if v is None:
        raise ApiError(400, "bad_request", "query parameter %s must be an integer" % name)
    if v < lo or v > hi:
        raise ApiError(400, "bad_request", "query parameter %s out of range (%d..%d)" % (name, lo, hi))
    return v


cdef int handle_resource(Server srv, Request r, int route) except -1:
    cdef Store st = srv.store
    cdef bytes m = r.method
    cdef bint get = m == b"GET" or m == b"HEAD"
    cdef bytes k = _rec_key(r.acc, r.key)
    cdef bytes kj = json_str(r.key)
    cdef int64_t v
    cdef Txn t
    cdef Op op
    cdef dict params = r.params()
    if route == R_KV:
        if get:
            if "watch" in params:
                return srv.watches.begin_get(srv, r)
            v = st.kv_read(k)
            if v == 0:
                raise ApiError(404, "not_found", "no such key")
            val = st.r_val
            if "raw" in params:
                if PyBytes_GET_SIZE(val) and (<bytes>val)[0] == 34:   # a JSON string
                    r.conn.reply(200, (<str>_ujson_loads(val)).encode("utf-8"), commit_seq(srv, False), r.head, True)
                else:
                    r.conn.reply(200, val, commit_seq(srv, False), r.head)
            else:
                r.conn.reply(200, b'{"Key":%s,"Value":%s,"Version":%d}' % (kj, <bytes>val, v),
                             commit_seq(srv, False), r.head)
            return 0
        if m != b"PUT" and m != b"DELETE":
            raise ApiError(405, "method_not_allowed", "use GET, PUT or DELETE here", None, _KV_ALLOW)
        t = new_txn(r.acc)
        op = new_op(r.acc, r.key)
        if "ver" in params:
            op.n = _qint(params, "ver", 0, 0, INT64_MAX)
            op.has_ver = True
        if m == b"PUT":
            op.val = encode_value(parse_json(r.body), srv.max_value_bytes)
        t.kvset.append(op)
        v = _run(srv, t, op)
        r.conn.reply(200, b'{"Key":%s,"Version":%d}' % (kj, v), commit_seq(srv, srv.last_wrote), r.head)
        return 0
    if route == R_COUNTER:
        if get:
            v = st.ctr_read(k)
            r.conn.reply(200, b'{"Key":%s,"Value":%d}' % (kj, v), commit_seq(srv, False), r.head)
            return 0
        t = new_txn(r.acc)
        op = new_op(r.acc, r.key)
        if m == b"POST":
            op.n = _qint(params, "add", 1, INT64_MIN, INT64_MAX)
        elif m == b"PUT":
            if "set" not in params:
                raise ApiError(400, "bad_request", "PUT needs ?set=N")
            op.is_set = True
            op.n = _qint(params, "set", 0, INT64_MIN, INT64_MAX)
            if "ifeq" in params:
                op.has_ifeq = True
                op.ifeq = _qint(params, "ifeq", 0, INT64_MIN, INT64_MAX)
        elif m == b"DELETE":
            op.is_set = True
            op.n = 0
        else:
            raise ApiError(405, "method_not_allowed", "use GET, POST, PUT or DELETE here", None, _COUNTER_ALLOW)
        t.atomic.append(op)
        v = _run(srv, t, op)
        r.conn.reply(200, b'{"Key":%s,"Value":%d}' % (kj, v), commit_seq(srv, srv.last_wrote), r.head)
        return 0
    # R_SEQUENCE
    if get:
        v = st.seq_read(k)
        r.conn.reply(200, b'{"Key":%s,"Value":%d}' % (kj, v), commit_seq(srv, False), r.head)
        return 0
    if m != b"POST":
        raise ApiError(405, "method_not_allowed", "use GET or POST here", None, _SEQ_ALLOW)
    t = new_txn(r.acc)
    op = new_op(r.acc, r.key)
    op.n = _qint(params, "count", 1, 1, srv.max_seq_count)
    t.seqs.append(op)
    v = _run(srv, t, op)
    r.conn.reply(200, b'{"Key":%s,"Value":%d,"Count":%d}' % (kj, v, op.n), commit_seq(srv, srv.last_wrote), r.head)
    return 0


cdef int64_t _run(Server srv, Txn t, Op op) except? -1:
    """Run a one-operation Txn; srv.last_wrote tells whether it wrote."""
    srv.last_wrote = run_txn(t, srv.store, srv)
    return op.res
