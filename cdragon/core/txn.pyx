# Txn: POST /db/{acc} — parse and validate a transaction (every rule of API.md), then
# run it against the Store all-or-nothing: idempotency -> preconditions -> overflow ->
# reads -> apply. The REST endpoints build the same Txn with one operation, so there
# is one code path for every write. Lock fields are parsed here and acted on by the
# lock table (the order of evaluation puts the lock between validation and running).

@cython.freelist(256)
@cython.no_gc      # bytes and numbers only: never part of a cycle
cdef class Op:
    pass


@cython.no_gc      # bytes, numbers and a list of bytes: never part of a cycle
cdef class RangeOp:
    pass


@cython.freelist(64)
@cython.no_gc      # holds lists of Ops and bytes: never part of a cycle
cdef class Txn:

    def __cinit__(self):
        self.lock_id = None
        self.unlock_id = None
        self.unlock = 0

    cdef int adds_data(self) except -1:
        """Whether running this may need more storage. Reads (Add: 0, KVGet) need none,
        and deletes and counter resets free space, so a full store still takes them."""
        cdef Op op
        if self.seqs or self.idem or self.qpush or self.rl:
            return 1
        # (a KVDelete frees space)
        for op in self.kvset:
            if op.val is not None:
                return 1
        for op in self.atomic:
            if op.n != 0:          # Set 0 resets (frees), Add 0 only reads
                return 1
        return 0


cdef list _NO_OPS = []        # shared by the operation lists a fast-path Txn leaves empty


cdef Txn new_txn(bytes acc, list only=None):
    """A Txn with its operation lists: all new, or (fast path) only `only` new and
    the others the shared empty list, which nothing appends to after parsing."""
    cdef Txn t = Txn.__new__(Txn)
    t.acc = acc
    if only is None:
        t.idem = []
        t.idem_s = []
        t.kvset = []
        t.kvget = []
        t.atomic = []
        t.seqs = []
        t.kvlist = []
        t.kvdel = []
    else:
        t.idem = t.idem_s = t.kvset = t.kvget = t.atomic = t.seqs = t.kvlist = t.kvdel = _NO_OPS
    return t


cdef Txn _NO_TXN = new_txn(b"", _NO_OPS)     # no operations: the answer of a bare lock


cdef inline bytes _rec_key(bytes acc, bytes key):
    return acc + b"\0" + key


cdef Op new_op(bytes acc, bytes key):
    cdef Op op = Op.__new__(Op)
    op.k = _rec_key(acc, key)
    op.kj = json_str(key)
    op.val = None
    op.has_ver = op.is_set = op.has_ifeq = op.writes = False
    op.n = op.ifeq = op.res = 0
    op.exp = 0
    return op


cdef inline Op _entry_op(bytes acc, dict e, str what):
    return new_op(acc, key_bytes(e.get("Key"), what + " Key"))


# ---- field checks ------------------------------------------------------------------------
cdef int64_t as_int64(object v, str what, int64_t lo, int64_t hi) except? -1:
    if type(v) is not int:
        raise ApiError(400, "bad_request", what + " must be an integer")
    if v < lo or v > hi:
        raise ApiError(400, "bad_request", "%s out of range (%d..%d)" % (what, lo, hi))
    return v


cdef double as_seconds(object v, str what, double hi, bint zero_ok) except? -1:
    cdef double d
    if type(v) is not int and type(v) is not float:
        raise ApiError(400, "bad_request", what + " must be a number of seconds")
    d = v
    if not (d == d) or (d < 0) or (d == 0 and not zero_ok) or d > hi:
        raise ApiError(400, "bad_request", "%s out of range (%s..%g)" % (what, "0" if zero_ok else ">0", hi))
    return d


cdef int64_t as_handle(object v) except? -1:
    if type(v) is str:
        try:
            v = int(<str>v, 10) if ((<str>v).isascii() and (<str>v).isdigit()) else None
        except ValueError:
            v = None
        if v is None:
            raise ApiError(400, "bad_request", "Unlock must be a positive integer handle")
    return as_int64(v, "Unlock", 1, INT64_MAX)


cdef object _not_null(object v, str what):
    if v is None:
        raise ApiError(400, "bad_request", what + " must not be null")
    return v


cdef list as_list(object v, str what):
    if type(v) is not list:
        raise ApiError(400, "bad_request", what + " must be a list")
    return <list>v


cdef dict as_obj(object v, str what):
    if type(v) is not dict:
        raise ApiError(400, "bad_request", what + " entries must be objects")
    return <dict>v


cdef object unknown_field(str where, object name):
    return ApiError(400, "bad_request", "unknown field " + where + str(name))


# ---- parsing: one function per kind of operation -------------------------------------
cdef int _parse_kvset(Txn t, object v, Server srv) except -1:
    cdef dict e
    cdef Op op
    cdef bint has_val
    for item in as_list(v, "KVSet"):
        e = as_obj(item, "KVSet")
        op = _entry_op(t.acc, e, "KVSet")
        has_val = False
        for f, fv in e.items():
            if f == "Key":
                pass
            elif f == "Value":
                has_val = True
            elif f == "Version":
                op.n = as_int64(fv, "KVSet Version", 0, INT64_MAX)
                op.has_ver = True
            elif f == "Delete":
                if type(fv) is not bool:
                    raise ApiError(400, "bad_request", "KVSet Delete must be true or false")
            elif f == "TTL":
                op.exp = as_seconds(_not_null(fv, "KVSet TTL"), "KVSet TTL", srv.lim.max_ttl, False)
            else:
                raise unknown_field("KVSet.", f)
        if has_val == (e.get("Delete") is True):
            raise ApiError(400, "bad_request", "each KVSet entry needs exactly one of Value and Delete: true")
        if has_val:
            op.val = encode_value(e["Value"], srv.lim.max_value_bytes)
        elif op.exp != 0:
            raise ApiError(400, "bad_request", "TTL goes with Value, not Delete")
        t.kvset.append(op)
    return 0


cdef int _parse_kvget(Txn t, object v) except -1:
    for item in as_list(v, "KVGet"):
        if type(item) is dict:
            for f in <dict>item:
                if f != "Key":
                    raise unknown_field("KVGet.", f)
            item = (<dict>item).get("Key")
        t.kvget.append(new_op(t.acc, key_bytes(item, "KVGet key")))
    return 0


cdef int _parse_atomic(Txn t, object v) except -1:
    cdef dict e
    cdef Op op
    cdef bint has_add
    for item in as_list(v, "Atomic"):
        e = as_obj(item, "Atomic")
        op = _entry_op(t.acc, e, "Atomic")
        has_add = False
        for f, fv in e.items():
            if f == "Key":
                pass
            elif f == "Add":
                op.n = as_int64(fv, "Atomic Add", INT64_MIN, INT64_MAX)
                has_add = True
            elif f == "Set":
                op.n = as_int64(fv, "Atomic Set", INT64_MIN, INT64_MAX)
                op.is_set = True
            elif f == "IfEq":
                op.ifeq = as_int64(fv, "Atomic IfEq", INT64_MIN, INT64_MAX)
                op.has_ifeq = True
            else:
                raise unknown_field("Atomic.", f)
        if has_add == op.is_set:
            raise ApiError(400, "bad_request", "each Atomic entry needs exactly one of Add and Set")
        if has_add and op.has_ifeq:
            raise ApiError(400, "bad_request", "IfEq goes with Set, not Add")
        t.atomic.append(op)
    return 0


cdef int _parse_seq(Txn t, object v, Server srv) except -1:
    cdef dict e
    cdef Op op
    for item in as_list(v, "Seq"):
        e = as_obj(item, "Seq")
        op = _entry_op(t.acc, e, "Seq")
        op.n = 1
        for f, fv in e.items():
            if f == "Key":
                pass
            elif f == "Count":
                op.n = as_int64(fv, "Seq Count", 1, srv.lim.max_seq_count)
            else:
                raise unknown_field("Seq.", f)
        t.seqs.append(op)
    return 0


cdef int _parse_idem(Txn t, object v) except -1:
    cdef set seen = set()
    for item in as_list(v, "IdempotencyIDs"):
        kb = key_bytes(item, "IdempotencyIDs entry")
        if kb not in seen:            # a repeated id counts once
            seen.add(kb)
            t.idem.append(_rec_key(t.acc, kb))
            t.idem_s.append(item)
    return 0


cdef int _check_lock_fields(Txn t, object lock_dur, object lock_wait, object unlock, Server srv) except -1:
    if (lock_dur is not None or lock_wait is not None) and t.lock_id is None:
        raise ApiError(400, "bad_request", "LockDur and LockWait need LockID")
    t.lock_dur = srv.lim.default_lock_dur if lock_dur is None else as_seconds(lock_dur, "LockDur", srv.lim.max_lock_dur, False)
    t.lock_wait = 0.0 if lock_wait is None else as_seconds(lock_wait, "LockWait", srv.lim.max_lock_wait, True)
    if (unlock is None) != (t.unlock_id is None):
        raise ApiError(400, "bad_request", "Unlock and UnlockID go together")
    if unlock is not None:
        t.unlock = as_handle(unlock)
    return 0


cdef bytes prefix_bytes(object v, str what):
    """A key prefix: a string of at most MAX_KEY_BYTES UTF-8 bytes without NUL ("" is
    every key)."""
    cdef bytes b = utf8_of(v, what)
    if PyBytes_GET_SIZE(b) > MAX_KEY_BYTES or has_byte(b, 0):
        raise ApiError(400, "bad_key", "%s must be at most %d UTF-8 bytes without NUL" % (what, MAX_KEY_BYTES))
    return b


cdef RangeOp new_range(bytes acc, bytes prefix, object after, Py_ssize_t limit, bint keys_only):
    """A KVList / KVDelete entry; `after` (str or None) is where a listing continues."""
    cdef RangeOp op = RangeOp.__new__(RangeOp)
    cdef bytes a
    op.prefix = acc + b"\0" + prefix
    op.pj = json_str(prefix)
    op.start = op.prefix
    if after is not None:
        a = utf8_of(after, "After")
        if PyBytes_GET_SIZE(a) > MAX_AFTER_BYTES:
            raise ApiError(400, "bad_request", "After must be at most %d UTF-8 bytes" % MAX_AFTER_BYTES)
        a = acc + b"\0" + a + b"\0"      # the first key after it (keys hold no NUL)
        if a > op.start:
            op.start = a
    op.limit = limit
    op.keys_only = keys_only
    op.more = False
    op.keys = None
    op.body = None
    return op


cdef int _parse_kvlist(Txn t, object v) except -1:
    cdef dict e
    cdef object prefix, after, limit, keys_only
    for item in as_list(v, "KVList"):
        e = as_obj(item, "KVList")
        for f in e:
            if f != "Prefix" and f != "After" and f != "Limit" and f != "KeysOnly":
                raise unknown_field("KVList.", f)
        prefix = e.get("Prefix", "")
        after = e.get("After")
        limit = e.get("Limit", LIST_LIMIT_DEFAULT)
        keys_only = e.get("KeysOnly", False)
        if type(keys_only) is not bool:
            raise ApiError(400, "bad_request", "KVList KeysOnly must be true or false")
        if "After" in e and after is None:
            raise ApiError(400, "bad_request", "KVList After must not be null")
        t.kvlist.append(new_range(t.acc, prefix_bytes(prefix, "KVList Prefix"), after,
                                  as_int64(limit, "KVList Limit", 1, LIST_LIMIT_MAX), keys_only))
    return 0


cdef int _parse_kvdelete(Txn t, object v) except -1:
    cdef dict e
    cdef bytes prefix
    cdef object every
    for item in as_list(v, "KVDelete"):
        e = as_obj(item, "KVDelete")
        for f in e:
            if f != "Prefix" and f != "All":
                raise unknown_field("KVDelete.", f)
        prefix = prefix_bytes(e.get("Prefix", ""), "KVDelete Prefix")
        every = e.get("All", False)
        if type(every) is not bool:
            raise ApiError(400, "bad_request", "KVDelete All must be true or false")
        if (PyBytes_GET_SIZE(prefix) == 0) != every:
            raise ApiError(400, "bad_request", "KVDelete needs a Prefix, or All: true (and no Prefix) for the whole account")
        t.kvdel.append(new_range(t.acc, prefix, None, -1, True))
    return 0


cdef Txn parse_txn(bytes acc, object body, Server srv):
    """Validate a POST /db body (already JSON-decoded) into a Txn; raises ApiError."""
    cdef Txn t = new_txn(acc)
    cdef object lock_dur = None, lock_wait = None, unlock = None
    if type(body) is not dict:
        raise E_NOT_OBJECT.error()
    for name, v in (<dict>body).items():
        if name == "KVSet":
            _parse_kvset(t, v, srv)
        elif name == "KVGet":
            _parse_kvget(t, v)
        elif name == "Atomic":
            _parse_atomic(t, v)
        elif name == "Seq":
            _parse_seq(t, v, srv)
        elif name == "IdempotencyIDs":
            _parse_idem(t, v)
        elif name == "KVList":
            _parse_kvlist(t, v)
        elif name == "KVDelete":
            _parse_kvdelete(t, v)
        elif name == "QPush":
            parse_qpush(t, v, srv)
        elif name == "QAck":
            parse_qack(t, v)
        elif name == "RateLimit":
            parse_ratelimit(t, v)
        elif name == "LockID":
            t.lock_id = key_bytes(v, "LockID")
        elif name == "UnlockID":
            t.unlock_id = key_bytes(v, "UnlockID")
        elif name == "LockDur":
            lock_dur = _not_null(v, name)
        elif name == "LockWait":
            lock_wait = _not_null(v, name)
        elif name == "Unlock":
            unlock = _not_null(v, name)
        else:
            raise unknown_field("", name)
    t.nops = (len(t.kvset) + len(t.kvget) + len(t.atomic) + len(t.seqs) + len(t.idem_s)
              + len(t.kvlist) + len(t.kvdel))
    if t.qpush is not None:
        t.nops += len(t.qpush)
    if t.qack is not None:
        t.nops += len(t.qack)
    if t.rl is not None:
        t.nops += len(t.rl)
    if t.nops > srv.lim.max_ops:
        raise ApiError(413, "too_large", "%d operations, limit %d" % (t.nops, srv.lim.max_ops))
    _check_lock_fields(t, lock_dur, lock_wait, unlock, srv)
    if t.nops == 0 and t.lock_id is None and t.unlock_id is None:
        raise E_NO_OPERATION.error()
    _no_repeats(t.kvset, "KVSet")
    _no_repeats(t.atomic, "Atomic")
    return t


cdef int _no_repeats(list ops, str what) except -1:
    cdef set seen
    cdef Op op
    if len(ops) > 1:
        seen = set()
        for op in ops:
            if op.k in seen:
                raise ApiError(400, "bad_request", "the same key twice in " + what)
            seen.add(op.k)
    return 0


# ---- running: one function per phase -------------------------------------------------
cdef int _check_idempotency(Txn t, Store st) except -1:
    cdef list dups = None
    cdef double now = wall_now()
    cdef Py_ssize_t i
    for i in range(len(t.idem)):
        if st.idem_live(<bytes>t.idem[i], now):
            if dups is None:
                dups = []
            dups.append(t.idem_s[i])
    if dups is not None:
        raise ApiError(409, "duplicate_request", "idempotency id already used", {"IDs": dups})
    return 0


cdef int _check_preconditions(Txn t, Store st) except -1:
    """Version and IfEq checks (reads that also decide whether a delete writes)."""
    cdef Op op
    cdef list failed = None
    cdef int64_t cur
    t.kv_writes = False
    for op in t.kvset:
        if op.has_ver or op.val is None:
            cur = st.kv_read(op.k)
            if op.has_ver and cur != op.n:
                if failed is None:
                    failed = []
                failed.append({"Key": _ujson_loads(op.kj), "Version": cur})
            op.writes = op.val is not None or cur != 0
        else:
            op.writes = True
        t.kv_writes = t.kv_writes or op.writes
    for op in t.atomic:
        cur = st.ctr_read(op.k)
        op.res = cur
        if op.has_ifeq and cur != op.ifeq:
            if failed is None:
                failed = []
            failed.append({"Key": _ujson_loads(op.kj), "Value": cur})
    if failed is not None:
        raise ApiError(409, "precondition_failed", "a Version or IfEq check failed", {"Failed": failed})
    return 0


cdef int _check_ranges(Txn t, Store st) except -1:
    """Counter overflow and sequence exhaustion (after preconditions, as API.md orders
    them); fills t.seq_last with the last value each sequence hands out."""
    cdef Op op
    cdef int64_t cur
    for op in t.atomic:
        if not op.is_set:
            if (op.n > 0 and op.res > INT64_MAX - op.n) or (op.n < 0 and op.res < INT64_MIN - op.n):
                raise ApiError(400, "bad_request", "Atomic Add overflows a 64-bit counter")
    t.seq_last = None
    if t.seqs:
        t.seq_last = {}
        for op in t.seqs:
            cur = t.seq_last[op.k] if op.k in t.seq_last else st.seq_read(op.k)
            if cur > INT64_MAX - op.n:
                raise ApiError(400, "bad_request", "sequence exhausted")
            op.res = cur + 1
            t.seq_last[op.k] = cur + op.n
    return 0


cdef int _collect_deletes(Txn t, Store st, Server srv) except -1:
    """The keys each KVDelete deletes (the newest state); more than max_prefix_delete
    in all is 413 and deletes nothing."""
    cdef RangeOp op
    cdef Py_ssize_t total = 0, cap = srv.lim.max_prefix_delete
    for op in t.kvdel:
        op.keys = [e[0] for e in st.scan(t.acc, op.prefix, op.start, cap - total + 1, False)]
        total += len(op.keys)
        if total > cap:
            raise ApiError(413, "too_large", "KVDelete would delete more than %d keys (max_prefix_delete)" % cap)
        if op.keys:
            t.kv_writes = True
    return 0


cdef int _read_lists(Txn t, Store st) except -1:
    """Every KVList of the request (the state before its writes)."""
    cdef RangeOp op
    cdef list found
    cdef Py_ssize_t skip = PyBytes_GET_SIZE(t.acc) + 1
    for op in t.kvlist:
        found = st.scan(t.acc, op.prefix, op.start, op.limit + 1, False)
        op.more = len(found) > op.limit
        if op.more:
            del found[op.limit:]
        op.body = _list_body(found, skip, op.keys_only)
    return 0


cdef inline bint _plain(const unsigned char* p, Py_ssize_t n) noexcept:
    """Whether n bytes need no escaping inside a JSON string."""
    cdef Py_ssize_t i
    for i in range(n):
        if p[i] < 0x20 or p[i] == b'"' or p[i] == b'\\':
            return False
    return True


cdef bytes _list_body(list found, Py_ssize_t skip, bint keys_only):
    """The entries of a listing, comma-separated, as kv_entry writes each, in one
    buffer: a 10,000-key list is the biggest answer a read makes, and per-entry bytes
    objects and %-formatting were most of its cost."""
    cdef Py_ssize_t size = 0, kn
    cdef tuple item
    cdef bytes k, kj
    cdef object val
    cdef double exp
    cdef char* w
    cdef char* start
    cdef const unsigned char* kp
    for item in found:
        k = <bytes>item[0]
        size += 6 * (PyBytes_GET_SIZE(k) - skip) + 96       # escaped key at worst, fields, numbers
        if not keys_only:
            size += PyBytes_GET_SIZE(<bytes>item[2])
    if size == 0:
        return b""
    start = w = _scratch_for(size)
    for item in found:
        k = <bytes>item[0]
        kp = <const unsigned char*>PyBytes_AS_STRING(k) + skip
        kn = PyBytes_GET_SIZE(k) - skip
        w = _lit(w, '{"Key":', 7)
        if _plain(kp, kn):
            w[0] = b'"'
            memcpy(w + 1, kp, kn)
            w[kn + 1] = b'"'
            w += kn + 2
        else:
            w = _put(w, json_str(k[skip:]))
        if not keys_only:
            w = _lit(w, ',"Value":', 9)
            w = _put(w, <bytes>item[2])
        w = _lit(w, ',"Version":', 11)
        w = _put_i64(w, <int64_t>item[1])
        exp = <double>item[3]
        if exp != 0:
            w = _lit(w, ',"Expires":', 11)
            w = _put_till(w, exp)
        w = _lit(w, '},', 2)
    out = PyBytes_FromStringAndSize(start, w - start - 1)     # without the last comma
    _scratch_done()
    return out


cdef int _apply(Txn t, Store st, Server srv) except -1:
    """Write everything (all checks passed); returns 1 if anything was written.
    KVDelete goes first, so a request can clear a prefix and write its new keys."""
    cdef Op op
    cdef RangeOp rop
    cdef int64_t rev = 0
    cdef bint wrote = t.kv_writes
    cdef double now = 0, expiry
    cdef set gone = None
    if t.kv_writes:
        rev = st.bump_revision(t.acc)
    for rop in t.kvdel:
        if gone is None:
            gone = set()
        for k in rop.keys:
            if k not in gone:             # overlapping prefixes delete a key once
                gone.add(k)
                st.kv_write(t.acc, k, None, 0, 0)
                srv.watches.deleted(t.acc, k, rev)
    for op in t.kvset:
        if op.writes:
            if op.exp != 0:               # the TTL becomes an expiry
                if now == 0:
                    now = wall_now()
                op.exp = now + op.exp
            st.kv_write(t.acc, op.k, op.val, 0 if op.val is None else rev, op.exp)
            if op.val is None:
                srv.watches.deleted(t.acc, op.k, rev)
        op.res = 0 if op.val is None else rev
    for op in t.atomic:
        if op.is_set:
            op.res = op.n
            st.ctr_write(op.k, op.n)
            wrote = True
        elif op.n != 0:
            op.res = op.res + op.n
            st.ctr_write(op.k, op.res)
            wrote = True
    if t.seq_last:
        for k, v in t.seq_last.items():
            st.seq_write(k, v)
        wrote = True
    if t.idem:
        expiry = wall_now() + srv.lim.idempotency_ttl
        for k in t.idem:
            st.idem_write(k, expiry)
        wrote = True
    if t.qpush or t.qack:
        t.qbody = srv.queues.apply(t)
        wrote = wrote or srv.queues.wrote     # (a duplicate push writes nothing)
    if t.rl and apply_limits(t, st):
        wrote = True
    if t.kv_writes:
        t.rev = rev
    elif t.kvlist or t.kvdel:
        t.rev = st.shown_revision(t.acc)
    return 1 if wrote else 0


cdef int run_txn(Txn t, Store st, Server srv) except -1:
    """Check and apply a validated Txn (the lock step, if any, is already done).
    Raises ApiError with nothing changed; on success every Op holds its result.
    Returns 1 if anything was written (the answer then waits for the open batch)."""
    cdef Op op
    if t.idem:
        _check_idempotency(t, st)
    _check_preconditions(t, st)
    if t.qack:
        srv.queues.check_acks(t)       # a stale receipt fails like a precondition
    _check_ranges(t, st)
    if t.kvdel:
        _collect_deletes(t, st, srv)
    if t.adds_data() and not st.has_room():
        raise E_STORAGE_FULL.error()
    if t.rl:
        check_limits(t, st)       # last, right before apply (API.md's order)
    for op in t.kvget:            # reads see the state before this request's writes
        op.res = st.kv_read(op.k)
        op.val = st.r_val
        op.exp = st.r_exp
    if t.kvlist:
        _read_lists(t, st)
    return _apply(t, st, srv)


cdef inline char* _put_i64(char* w, int64_t v) noexcept:
    """Decimal digits of v at w; returns the end."""
    cdef char tmp[20]
    cdef int n = 0
    cdef uint64_t u = <uint64_t>v
    if v < 0:
        w[0] = b'-'
        w += 1
        u = <uint64_t>0 - u
    while True:
        tmp[n] = <char>(48 + u % 10)
        n += 1
        u //= 10
        if u == 0:
            break
    while n:
        n -= 1
        w[0] = tmp[n]
        w += 1
    return w


cdef inline Py_ssize_t _len_i64(int64_t v) noexcept:
    cdef Py_ssize_t n = 1
    cdef uint64_t u = <uint64_t>v
    if v < 0:
        n = 2
        u = <uint64_t>0 - u
    while u >= 10:
        u //= 10
        n += 1
    return n


cdef inline Py_ssize_t _till_ms(double till) noexcept:
    return <Py_ssize_t>(till * 1000.0 + 0.5)


cdef inline char* _put_till(char* w, double till) noexcept:
    """A lock's Till: epoch seconds with milliseconds ("1764075000.123")."""
    cdef Py_ssize_t ms = _till_ms(till)
    w = _put_i64(w, ms // 1000)
    ms %= 1000
    w[0] = b'.'
    w[1] = <char>(48 + ms // 100)
    w[2] = <char>(48 + ms // 10 % 10)
    w[3] = <char>(48 + ms % 10)
    return w + 4


cdef inline char* _lit(char* w, const char* s, Py_ssize_t n) noexcept:
    memcpy(w, s, n)
    return w + n


cdef char* _put_ops(char* w, const char* name, Py_ssize_t nn, list ops, int what) noexcept:
    """"<name>":[{...},...] for one kind of operation (what: the fields it shows)."""
    cdef Op op
    w = _lit(w, name, nn)
    for op in ops:
        w = _lit(w, '{"Key":', 7)
        w = _put(w, op.kj)
        if what == 0:                          # KV (read): Value if present, Version
            if op.res != 0:
                w = _lit(w, ',"Value":', 9)
                w = _put(w, <bytes>op.val)
            w = _lit(w, ',"Version":', 11)
        elif what == 1:                        # KVSet
            w = _lit(w, ',"Version":', 11)
        else:                                  # Atomic, Seq
            w = _lit(w, ',"Value":', 9)
        w = _put_i64(w, op.res)
        if what == 3:
            w = _lit(w, ',"Count":', 9)
            w = _put_i64(w, op.n)
        elif what <= 1 and op.exp != 0 and op.res != 0:
            w = _lit(w, ',"Expires":', 11)
            w = _put_till(w, op.exp)
        w = _lit(w, '},', 2)
    (w - 1)[0] = b']'             # over the last comma
    w[0] = b','
    return w + 1


cdef char* _put_ranges(char* w, list ops, bint lists) noexcept:
    """"KVList":[{"Prefix","KV","More"},...] or "KVDelete":[{"Prefix","Deleted"},...]."""
    cdef RangeOp op
    w = _lit(w, '"KVList":[', 10) if lists else _lit(w, '"KVDelete":[', 12)
    for op in ops:
        w = _lit(w, '{"Prefix":', 10)
        w = _put(w, op.pj)
        if lists:
            w = _lit(w, ',"KV":[', 7)
            w = _put(w, op.body)
            w = _lit(w, '],"More":true},', 15) if op.more else _lit(w, '],"More":false},', 16)
        else:
            w = _lit(w, ',"Deleted":', 11)
            w = _put_i64(w, _deleted(op))
            w = _lit(w, '},', 2)
    (w - 1)[0] = b']'             # over the last comma
    w[0] = b','
    return w + 1


cdef inline Py_ssize_t _deleted(RangeOp op) noexcept:
    return 0 if op.keys is None else len(op.keys)


cdef char* _scratch = NULL       # where answers are written before they become bytes
cdef Py_ssize_t _scratch_size = 0


cdef char* _scratch_for(Py_ssize_t n) except NULL:
    """A buffer of at least n bytes, reused (only the event loop thread builds answers).
    It keeps at most SCRATCH_KEEP_BYTES between answers (_scratch_done): one answer of
    a thousand large values must not pin hundreds of MB for the process's life."""
    global _scratch, _scratch_size
    cdef void* p
    if n > _scratch_size:
        p = PyMem_Realloc(_scratch, n)
        if p == NULL:
            raise MemoryError()
        _scratch = <char*>p
        _scratch_size = n
    return _scratch


cdef bytes txn_body(Txn t, bint has_lock=False, int64_t handle=0, double till=0):
    """The 200 body of POST /db (empty fields omitted), in one allocation: the answer
    of almost every write. With has_lock, "Lock" and "Till" come first."""
    # an upper bound: 2 braces, 4 list names (32), a lock part (60); per operation its
    # fixed text (at most 39 with two numbers of up to 20 characters, 67 for Seq)
    cdef Py_ssize_t size = 160
    cdef Op op
    cdef char* w
    cdef char* start
    cdef RangeOp rop
    for op in t.kvget:
        size += 104 + PyBytes_GET_SIZE(op.kj) + (PyBytes_GET_SIZE(<bytes>op.val) if op.res != 0 else 0)
    for ops in (t.kvset, t.atomic, t.seqs):
        for op in <list>ops:
            size += 104 + PyBytes_GET_SIZE(op.kj)
    for ops in (t.kvlist, t.kvdel):      # and "Rev", within the 160
        for rop in <list>ops:
            size += 64 + PyBytes_GET_SIZE(rop.pj) + (0 if rop.body is None else PyBytes_GET_SIZE(rop.body))
    if t.qbody is not None:
        size += PyBytes_GET_SIZE(t.qbody) + 1
    if t.rl:
        size += limits_size(t.rl)
    start = w = _scratch_for(size)
    w[0] = b'{'
    w += 1
    if has_lock:
        w = _lit(w, '"Lock":', 7)
        w = _put_i64(w, handle)
        w = _lit(w, ',"Till":', 8)
        w = _put_till(w, till)
        w[0] = b','
        w += 1
    if t.kvget:
        w = _put_ops(w, '"KV":[', 6, t.kvget, 0)
    if t.kvset:
        w = _put_ops(w, '"KVSet":[', 9, t.kvset, 1)
    if t.kvlist:
        w = _put_ranges(w, t.kvlist, True)
    if t.kvdel:
        w = _put_ranges(w, t.kvdel, False)
    if t.rev != 0 or t.kvlist or t.kvdel:
        w = _lit(w, '"Rev":', 6)
        w = _put_i64(w, t.rev)
        w[0] = b','
        w += 1
    if t.atomic:
        w = _put_ops(w, '"Atomic":[', 10, t.atomic, 2)
    if t.seqs:
        w = _put_ops(w, '"Seq":[', 7, t.seqs, 3)
    if t.qbody is not None and PyBytes_GET_SIZE(t.qbody):
        w = _put(w, t.qbody)
        w[0] = b','
        w += 1
    if t.rl:
        w = put_limits(w, t.rl)
    if w - start == 1:
        w += 1                                 # nothing: "{}"
    (w - 1)[0] = b'}'             # over the last comma (or after the "{")
    out = PyBytes_FromStringAndSize(start, w - start)
    _scratch_done()
    return out


cdef inline void _scratch_done() noexcept:
    global _scratch, _scratch_size
    if _scratch_size > SCRATCH_KEEP_BYTES:
        PyMem_Free(_scratch)
        _scratch = NULL
        _scratch_size = 0
