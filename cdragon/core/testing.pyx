# Testing: Python-visible entry points into cdef code, for the unit tests only
# (tests/test_core_units.py, tests/test_fastpath.py, tests/test_http_framer.py,
# tests/test_canon.py). Nothing on the request path calls these; they keep test-only
# names out of the other files.


def _json_scan(bytes body):
    return json_scan(body)


def _json_str(bytes utf8):
    return json_str(utf8)


def _account_ok(bytes acc):
    return bool(account_ok(acc))


def _pack_roundtrip(int64_t v, double d):
    return unpack_i64(pack_i64(v)), unpack_f64be(pack_f64be(d)), pack_f64be(d)


def _frame(int status, bytes body, bint close=False, bint head=False, bint text=False):
    return frame(status, body, close, head, text)


def _error_body(str code, str message):
    return error_body(code, message)


def _fixed_errors():
    """Every Fixed error: [(status, code, message, body, closing frame)]."""
    return [(f.status, f.code, f.message, f.body, f.closing_frame) for f in (
        E_NO_ROUTE, E_BAD_ACCOUNT, E_KEY_NOT_UTF8, E_UPGRADE, E_HTTP_VERSION,
        E_HEADERS_TOO_LARGE, E_BAD_EXPECT, E_HEADER_TIMEOUT, E_BODY_TIMEOUT,
        E_TOO_MANY_CONNECTIONS, E_NOT_OBJECT, E_JSON_DEPTH, E_JSON_CONTROL, E_JSON_NUMBER,
        E_NO_OPERATION, E_NO_KEY, E_NOT_LOCK_HOLDER, E_TOO_MANY_WAITERS,
        E_TOO_MANY_WATCHERS, E_STORAGE_FULL, E_NOT_READY_FULL, E_SHUTTING_DOWN)]


def _answer_buffer_after(Py_ssize_t value_bytes):
    """Build one POST /db answer holding a KVGet value of `value_bytes` bytes; returns
    (answer length, bytes the answer buffer keeps afterwards)."""
    cdef Txn t = new_txn(b"acc")
    cdef Op op = new_op(b"acc", b"k")
    op.res = 1
    op.val = b'"' + b"x" * (value_bytes - 2) + b'"'
    t.kvget.append(op)
    out = txn_body(t)
    return len(out), _scratch_size


cdef class _TestTimed(Timed):
    cdef public list fired
    cdef public str name

    def __init__(self, str name, list fired):
        self.name = name
        self.fired = fired

    cdef int on_time(self, double now) except -1:
        self.fired.append(self.name)
        return 0


def _test_deadlines(loop, list plan):
    """plan: [(name, delay_s or None to cancel)]; returns (Deadlines, fired list)."""
    cdef Deadlines d = Deadlines(loop)
    fired = []
    objs = {}
    for name, delay in plan:
        if name not in objs:
            objs[name] = _TestTimed(name, fired)
        if delay is None:
            d.clear(objs[name])
        else:
            d.set(objs[name], mono_now() + delay)
    return d, fired


def _fast_txn_shape(bytes body, Py_ssize_t max_value_bytes=512 * 1024, Py_ssize_t max_ops=1000,
                    double max_lock_dur=7 * 24 * 3600.0, double max_lock_wait=300.0):
    """What fast_txn makes of a body for account "acc": None, or a dict of the Txn's
    parts: Atomic [(key JSON, record key, n, is_set, has_ifeq, ifeq)], KVSet [(key JSON,
    record key, value JSON, has_version, version)], KVGet [(key JSON, record key)],
    RateLimit [(key JSON, record key, interval ns, tolerance ns, burst, cost)], and LockID, LockDur, LockWait, UnlockID, Unlock."""
    cdef Limits lim
    cdef Txn t
    cdef Op op
    lim.max_value_bytes = max_value_bytes
    lim.max_ops = max_ops
    lim.max_lock_dur = max_lock_dur
    lim.max_lock_wait = max_lock_wait
    lim.default_lock_dur = 30.0
    t = fast_txn(b"acc", body, &lim)
    if t is None:
        return None
    out = {}
    if t.atomic:
        out["Atomic"] = [(op.kj, op.k, op.n, op.is_set, op.has_ifeq, op.ifeq) for op in t.atomic]
    if t.kvset:
        out["KVSet"] = [(op.kj, op.k, op.val, op.has_ver, op.n) for op in t.kvset]
    if t.kvget:
        out["KVGet"] = [(op.kj, op.k) for op in t.kvget]
    if t.rl:
        out["RateLimit"] = [((<RateOp>o).kj, (<RateOp>o).k, (<RateOp>o).t_ns, (<RateOp>o).tau_ns,
                             (<RateOp>o).burst, (<RateOp>o).cost) for o in t.rl]
    if t.lock_id is not None:
        out.update(LockID=t.lock_id, LockDur=t.lock_dur, LockWait=t.lock_wait)
    if t.unlock_id is not None:
        out.update(UnlockID=t.unlock_id, Unlock=t.unlock)
    return out


def _fast_frame(bytes data, Py_ssize_t max_header_bytes, Py_ssize_t body_limit,
                Py_ssize_t import_limit=-1):
    """What the framer makes of the request at the start of data: None (left to
    httptools), or (method, url, body, keep_alive, http10, authz, content_length,
    hdr_bytes, consumed)."""
    cdef Framed f
    cdef const char* p = PyBytes_AS_STRING(data)
    if not fast_frame(p, 0, PyBytes_GET_SIZE(data), max_header_bytes, body_limit,
                      body_limit if import_limit < 0 else import_limit, &f):
        return None
    return (fm_method(f.method), data[f.url0:f.url1], data[f.body0:f.end], f.keep_alive,
            f.http10, data[f.authz0:f.authz1] if f.authz0 >= 0 else None, f.content_length,
            f.hdr_bytes, f.end)


def _json_canonical(bytes body):
    return json_canonical(<const unsigned char*>PyBytes_AS_STRING(body), PyBytes_GET_SIZE(body))


def _stored_value(bytes body, Py_ssize_t limit):
    return stored_value(body, limit)


def _stored_value_slow(bytes body, Py_ssize_t limit):
    """What stored_value did before canon.pyx: always the parse + re-encode."""
    return encode_value(parse_json(body), limit)
