# Resources: the handlers of POST /db/{acc} and of the curl-friendly endpoints
# /db/{acc}/kv|counter|sequence/{key}, one function per (route, method). Every write
# builds a Txn and goes through run_txn, so REST and POST /db share validation,
# preconditions and durability.


cdef int db_post(Server srv, Request r) except -1:
    cdef Txn t = fast_txn(r.acc, r.body, &srv.lim)
    cdef int wrote
    if t is None:
        t = parse_txn(r.acc, parse_json(r.body), srv)
    if r.conn.read_only and not read_only_txn(t):
        raise E_READ_ONLY.error()
    if r.moving and not read_only_txn(t):
        raise E_MOVING.error()
    if t.lock_id is not None or t.unlock_id is not None:
        return srv.locks.begin(srv, r, t)
    wrote = run_txn(t, srv.store, srv)
    r.conn.reply(200, txn_body(t), commit_seq(srv, wrote), r.head)
    return wrote


# ---- query parameters -------------------------------------------------------------------
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


cdef double _qseconds(dict params, str name, double default, double hi, bint zero_ok) except? -1:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        v = float(<str>raw)
    except ValueError:
        raise ApiError(400, "bad_request", "query parameter %s must be a number of seconds" % name)
    return as_seconds(v, name, hi, zero_ok)


# ---- /db/{acc}/kv/{key} -----------------------------------------------------------------
cdef int kv_get(Server srv, Request r) except -1:
    cdef Store st = srv.store
    cdef dict params = r.params()
    cdef int64_t v
    if "watch" in params:
        return srv.watches.begin_get(srv, r)
    v = st.kv_read(_rec_key(r.acc, r.key))
    if v == 0:
        raise E_NO_KEY.error()
    val = st.r_val
    if "raw" not in params:
        r.conn.reply(200, kv_entry(json_str(r.key), v, val, st.r_exp), read_seq(st), r.head)
    elif PyBytes_GET_SIZE(val) and (<bytes>val)[0] == 34:      # a JSON string: its text
        r.conn.reply(200, (<str>_ujson_loads(val)).encode("utf-8"), read_seq(st), r.head, True)
    else:
        r.conn.reply(200, val, read_seq(st), r.head)
    return 0


cdef int kv_put(Server srv, Request r) except -1:
    cdef Op op = _kv_op(r)
    cdef dict params = r.params()
    if "ttl" in params:
        op.exp = _qseconds(params, "ttl", 0, srv.lim.max_ttl, False)
    op.val = stored_value(r.body, srv.lim.max_value_bytes)
    return _kv_write(srv, r, op)


cdef int kv_delete(Server srv, Request r) except -1:
    return _kv_write(srv, r, _kv_op(r))


cdef Op _kv_op(Request r):
    cdef Op op = new_op(r.acc, r.key)
    cdef dict params = r.params()
    if "ver" in params:
        op.n = _qint(params, "ver", 0, 0, INT64_MAX)
        op.has_ver = True
    return op


cdef int _kv_write(Server srv, Request r, Op op) except -1:
    cdef Txn t = new_txn(r.acc)
    cdef int wrote
    t.kvset.append(op)
    if op.exp == 0:
        return _run_one(srv, r, t, op, b'{"Key":%s,"Version":%d}')
    wrote = run_txn(t, srv.store, srv)
    r.conn.reply(200, kv_entry(op.kj, op.res, None, op.exp), commit_seq(srv, wrote), r.head)
    return wrote


# ---- /db/{acc}/kv: listing and deleting by prefix -----------------------------------------
cdef bytes _prefix_param(dict params):
    cdef str raw = params.get("prefix", "")
    return prefix_bytes(raw, "prefix")


cdef int kv_list(Server srv, Request r) except -1:
    cdef dict params = r.params()
    cdef Txn t = new_txn(r.acc)
    cdef Lister lister
    cdef RangeOp op = new_range(r.acc, _prefix_param(params), params.get("after"),
                                _qint(params, "limit", LIST_LIMIT_DEFAULT, 1, LIST_LIMIT_MAX),
                                "keys" in params)
    if op.limit > LIST_SLICE:
        # maybe long: a slice at a time (lister.pyx); it answers in this request's place
        lister = Lister(srv, r, op.prefix, op.start, op.limit, op.keys_only)
        lister.begin()
        srv.loop.call_soon(lister.step)
        return 0
    t.kvlist.append(op)
    run_txn(t, srv.store, srv)
    r.conn.reply(200, b'{"Rev":%d,"KV":[%s],"More":%s}' % (t.rev, op.body, b"true" if op.more else b"false"),
                 read_seq(srv.store), r.head)
    return 0


cdef int kv_delete_prefix(Server srv, Request r) except -1:
    cdef dict params = r.params()
    cdef Txn t = new_txn(r.acc)
    cdef bytes prefix = _prefix_param(params)
    cdef int wrote
    if ("all" in params) == (PyBytes_GET_SIZE(prefix) != 0) or ("all" in params and "prefix" in params):
        raise ApiError(400, "bad_request", "DELETE .../kv needs ?prefix=P (not empty), or ?all for the whole account")
    t.kvdel.append(new_range(r.acc, prefix, None, -1, True))
    wrote = run_txn(t, srv.store, srv)
    r.conn.reply(200, b'{"Rev":%d,"Deleted":%d}' % (t.rev, _deleted(<RangeOp>t.kvdel[0])),
                 commit_seq(srv, wrote), r.head)
    return wrote


cdef int _run_one(Server srv, Request r, Txn t, Op op, bytes answer) except -1:
    """Run the one-operation Txn of a REST write; answer `answer % (key, result)`."""
    cdef int wrote = run_txn(t, srv.store, srv)
    r.conn.reply(200, answer % (op.kj, op.res), commit_seq(srv, wrote), r.head)
    return wrote


cdef int _answer_number(Server srv, Request r, int64_t v) except -1:
    """The answer of a counter or sequence read."""
    r.conn.reply(200, b'{"Key":%s,"Value":%d}' % (json_str(r.key), v), read_seq(srv.store), r.head)
    return 0


# ---- /db/{acc}/counter/{key} ------------------------------------------------------------
cdef int counter_get(Server srv, Request r) except -1:
    return _answer_number(srv, r, srv.store.ctr_read(_rec_key(r.acc, r.key)))


cdef int counter_add(Server srv, Request r) except -1:
    cdef Op op = new_op(r.acc, r.key)
    op.n = _qint(r.params(), "add", 1, INT64_MIN, INT64_MAX)
    return _counter_write(srv, r, op)


cdef int counter_set(Server srv, Request r) except -1:
    cdef Op op = new_op(r.acc, r.key)
    cdef dict params = r.params()
    if "set" not in params:
        raise ApiError(400, "bad_request", "PUT needs ?set=N")
    op.is_set = True
    op.n = _qint(params, "set", 0, INT64_MIN, INT64_MAX)
    if "ifeq" in params:
        op.has_ifeq = True
        op.ifeq = _qint(params, "ifeq", 0, INT64_MIN, INT64_MAX)
    return _counter_write(srv, r, op)


cdef int counter_reset(Server srv, Request r) except -1:
    cdef Op op = new_op(r.acc, r.key)
    op.is_set = True            # Set 0
    return _counter_write(srv, r, op)


cdef int _counter_write(Server srv, Request r, Op op) except -1:
    cdef Txn t = new_txn(r.acc)
    t.atomic.append(op)
    return _run_one(srv, r, t, op, b'{"Key":%s,"Value":%d}')


# ---- /db/{acc}/sequence/{key} -----------------------------------------------------------
cdef int sequence_get(Server srv, Request r) except -1:
    return _answer_number(srv, r, srv.store.seq_read(_rec_key(r.acc, r.key)))


cdef int sequence_next(Server srv, Request r) except -1:
    cdef Txn t = new_txn(r.acc)
    cdef Op op = new_op(r.acc, r.key)
    op.n = _qint(r.params(), "count", 1, 1, srv.lim.max_seq_count)
    t.seqs.append(op)
    return _run_one(srv, r, t, op, b'{"Key":%%s,"Value":%%d,"Count":%d}' % op.n)
