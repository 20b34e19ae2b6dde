# FastPath: POST /db bodies of the everyday shapes read straight into a Txn, in C,
# without building Python dicts, lists and strings first: an object of any of
#     "Atomic":[{"Key":"k","Add":1}, ...]      (Add, or Set with an optional IfEq)
#     "KVSet":[{"Key":"k","Value":"text"}, ...]   (Value a plain string or an integer;
#                                                  an optional Version)
#     "KVGet":["k", ...]   "LockID":"name"  "LockDur":30  "LockWait":5
#     "UnlockID":"name"   "Unlock":17       (durations in whole seconds)
#     "RateLimit":[{"Key":"k","Rate":10,"Per":60,"Burst":20,"Cost":1}, ...]  (integers)
# with any JSON whitespace between tokens. Keys and string values must be printable
# ASCII without escapes: then the bytes of the body are already the compact JSON that
# would be stored and echoed, and the key's JSON literal is its slice of the body.
# Anything else (other fields, escapes, non-ASCII, floats, objects, a repeated field,
# an error of any kind) returns None, and the general parser (txn.pyx) takes the body:
# it alone produces errors, so both paths answer every body the same way.

cdef enum:
    FP_ATOMIC = 1
    FP_KVSET = 2


cdef inline Py_ssize_t _fp_ws(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) noexcept:
    while i < n and (p[i] == 32 or p[i] == 10 or p[i] == 13 or p[i] == 9):
        i += 1
    return i


cdef extern from "core/plainscan.h":
    Py_ssize_t cd_plain_end(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) noexcept nogil


cdef inline Py_ssize_t _fp_str(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) noexcept:
    """p[i] is '"': the index of the closing quote of a string of printable ASCII
    without escapes, or -1. (Long values, 1 KB or 10 KB, are mostly one plain run.)"""
    i = cd_plain_end(p, i + 1, n)
    if i < n and p[i] == b'"':
        return i
    return -1


cdef inline Py_ssize_t _fp_int(const unsigned char* p, Py_ssize_t i, Py_ssize_t n, int64_t* out) noexcept:
    """A JSON integer of at most 18 digits (never -0) at i: the index after it, or -1."""
    cdef bint neg = False
    cdef Py_ssize_t start
    cdef int64_t v = 0
    if i < n and p[i] == b'-':
        neg = True
        i += 1
    start = i
    if i >= n or not (b'0' <= p[i] <= b'9'):
        return -1
    if p[i] == b'0' and i + 1 < n and b'0' <= p[i + 1] <= b'9':
        return -1
    while i < n and b'0' <= p[i] <= b'9':
        v = v * 10 + (p[i] - 48)
        i += 1
        if i - start > 18:
            return -1
    if i < n and (p[i] == b'.' or p[i] == b'e' or p[i] == b'E'):
        return -1
    if neg and v == 0:
        return -1
    out[0] = -v if neg else v
    return i


cdef inline int _fp_sep(const unsigned char* p, Py_ssize_t* i, Py_ssize_t n, unsigned char close) noexcept:
    """After a member or an element: a comma -> 1 (i moves to the next token), `close`
    -> 0 (i moves onto it), anything else -> -1."""
    cdef Py_ssize_t j = _fp_ws(p, i[0], n)
    if j < n and p[j] == b',':
        i[0] = _fp_ws(p, j + 1, n)
        return 1
    if j < n and p[j] == close:
        i[0] = j
        return 0
    return -1


cdef inline bint _fp_member(const unsigned char* p, Py_ssize_t* i, Py_ssize_t n,
                            Py_ssize_t* fs, Py_ssize_t* fe) noexcept:
    """A member's name and colon at p[i[0]]: its name is p[fs..fe), i moves to the
    value. False if that is not what is there."""
    cdef Py_ssize_t j, k = i[0]
    if k >= n or p[k] != b'"':
        return False
    j = _fp_str(p, k, n)
    if j < 0:
        return False
    fs[0] = k + 1
    fe[0] = j
    k = _fp_ws(p, j + 1, n)
    if k >= n or p[k] != b':':
        return False
    i[0] = _fp_ws(p, k + 1, n)
    return True


cdef inline int _fp_next(const unsigned char* p, Py_ssize_t* i, Py_ssize_t n,
                         Py_ssize_t* fs, Py_ssize_t* fe, bint first) noexcept:
    """The member loop of every object the fast path reads. i is at the first token
    inside the object (first), or just after the previous member's value: 1 and the
    next member's name at p[fs..fe) with i on its value; 0 at the closing brace (i on
    it); -1 for anything else."""
    cdef int sep
    if first:
        if i[0] < n and p[i[0]] == b'}':
            return 0
    else:
        sep = _fp_sep(p, i, n, b'}')
        if sep <= 0:
            return sep
    return 1 if _fp_member(p, i, n, fs, fe) else -1


cdef inline bint _fp_is(const unsigned char* p, Py_ssize_t a, Py_ssize_t b, const char* word, Py_ssize_t wn) noexcept:
    return b - a == wn and memcmp(p + a, word, wn) == 0


cdef Op _fp_op(bytes acc, const unsigned char* p, Py_ssize_t ks, Py_ssize_t ke):
    """The Op of the key whose JSON literal is p[ks..ke] (quotes included)."""
    cdef Op op = Op.__new__(Op)
    cdef Py_ssize_t an = PyBytes_GET_SIZE(acc), kn = ke - ks - 1
    cdef bytes k = PyBytes_FromStringAndSize(NULL, an + 1 + kn)
    cdef char* w = PyBytes_AS_STRING(k)
    memcpy(w, PyBytes_AS_STRING(acc), an)
    w[an] = 0
    memcpy(w + an + 1, p + ks + 1, kn)
    op.k = k
    op.kj = PyBytes_FromStringAndSize(<const char*>p + ks, ke - ks + 1)
    op.val = None
    op.has_ver = op.is_set = op.has_ifeq = op.writes = False
    op.n = op.ifeq = op.res = 0
    return op


cdef Op _fp_entry(bytes acc, const unsigned char* p, Py_ssize_t* pi, Py_ssize_t n,
                  int kind, Py_ssize_t max_value_bytes):
    """One Atomic or KVSet entry at p[pi[0]] ('{'): its Op, or None. On success pi[0]
    is at the closing '}'."""
    cdef Py_ssize_t i = pi[0], fs, fe, ks = 0, ke = 0, vs = 0, ve = 0
    cdef int r
    cdef bint first = True
    cdef Op op
    cdef int64_t num, add = 0, setv = 0, ifeq = 0, ver = 0
    cdef bint has_key = False, has_add = False, has_set = False, has_ifeq = False
    cdef bint has_val = False, has_ver = False
    if i >= n or p[i] != b'{':
        return None
    i = _fp_ws(p, i + 1, n)
    while True:
        r = _fp_next(p, &i, n, &fs, &fe, first)
        first = False
        if r < 0:
            return None
        if r == 0:
            break
        if _fp_is(p, fs, fe, "Key", 3):
            if has_key:
                return None
            ks = i
            i = _fp_key(p, i, n)
            if i < 0:
                return None
            has_key = True
            ke = i - 1
        elif kind == FP_ATOMIC:
            i = _fp_int(p, i, n, &num)
            if i < 0:
                return None
            if _fp_is(p, fs, fe, "Add", 3) and not has_add:
                has_add = True
                add = num
            elif _fp_is(p, fs, fe, "Set", 3) and not has_set:
                has_set = True
                setv = num
            elif _fp_is(p, fs, fe, "IfEq", 4) and not has_ifeq:
                has_ifeq = True
                ifeq = num
            else:
                return None
        elif _fp_is(p, fs, fe, "Value", 5) and not has_val:
            has_val = True
            vs = i
            i = _fp_value(p, i, n)
            if i < 0:
                return None
            ve = i
        elif _fp_is(p, fs, fe, "Version", 7) and not has_ver:
            i = _fp_int(p, i, n, &ver)
            if i < 0 or ver < 0:
                return None
            has_ver = True
        else:
            return None
    if not has_key:
        return None
    op = _fp_op(acc, p, ks, ke)
    if kind == FP_ATOMIC:
        if has_add == has_set or (has_add and has_ifeq):
            return None
        op.n = add if has_add else setv
        op.is_set = has_set
        op.ifeq = ifeq
        op.has_ifeq = has_ifeq
    else:
        if not has_val or ve - vs > max_value_bytes:
            return None
        op.val = PyBytes_FromStringAndSize(<const char*>p + vs, ve - vs)
        op.n = ver
        op.has_ver = has_ver
    pi[0] = i
    return op


cdef inline Py_ssize_t _fp_value(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) noexcept:
    """A KVSet Value the fast path takes (a plain string or an integer) at i: the
    index after it, or -1."""
    cdef int64_t num
    cdef Py_ssize_t j
    if i < n and p[i] == b'"':
        j = _fp_str(p, i, n)
        return -1 if j < 0 else j + 1
    return _fp_int(p, i, n, &num)


cdef list _fp_entries(bytes acc, const unsigned char* p, Py_ssize_t* pi, Py_ssize_t n,
                      int kind, Py_ssize_t max_value_bytes):
    """The Atomic or KVSet list that starts at p[pi[0]] ('['): its Ops, or None.
    On success pi[0] is at the closing ']'."""
    cdef Py_ssize_t i = pi[0]
    cdef int sep
    cdef Op op
    cdef list ops = []
    if i >= n or p[i] != b'[':
        return None
    i = _fp_ws(p, i + 1, n)
    while True:
        op = _fp_entry(acc, p, &i, n, kind, max_value_bytes)
        if op is None:
            return None
        ops.append(op)
        i += 1
        sep = _fp_sep(p, &i, n, b']')
        if sep < 0:
            return None
        if sep == 0:
            pi[0] = i
            return ops


cdef list _fp_keys(bytes acc, const unsigned char* p, Py_ssize_t* pi, Py_ssize_t n):
    """The KVGet list of key strings at p[pi[0]] ('['): its Ops, or None. On success
    pi[0] is at the closing ']'."""
    cdef Py_ssize_t i = pi[0], j
    cdef int sep
    cdef list ops = []
    if i >= n or p[i] != b'[':
        return None
    i = _fp_ws(p, i + 1, n)
    while True:
        j = _fp_key(p, i, n)
        if j < 0:
            return None
        ops.append(_fp_op(acc, p, i, j - 1))
        i = j
        sep = _fp_sep(p, &i, n, b']')
        if sep < 0:
            return None
        if sep == 0:
            pi[0] = i
            return ops


cdef inline Py_ssize_t _fp_key(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) noexcept:
    """A key or lock name (a plain string of 1..MAX_KEY_BYTES bytes) at i: the index after it, or -1."""
    cdef Py_ssize_t j
    if i >= n or p[i] != b'"':
        return -1
    j = _fp_str(p, i, n)
    if j < 0 or j - i - 1 < 1 or j - i - 1 > MAX_KEY_BYTES:
        return -1
    return j + 1


cdef struct FpLock:
    # the lock members seen so far (the Txn holds the names)
    bint has_dur, has_wait
    int64_t dur, wait, unlock


cdef bint _fp_top_member(Txn t, const unsigned char* p, Py_ssize_t* pi, Py_ssize_t n,
                         Py_ssize_t fs, Py_ssize_t fe, Limits* lim, FpLock* lk) except -1:
    """One member of the body (its name p[fs..fe), its value at pi[0]) into t or lk;
    False if the fast path declines it. pi[0] ends just after the value."""
    cdef Py_ssize_t i = pi[0], j
    cdef int64_t num
    cdef list ops
    if _fp_is(p, fs, fe, "Atomic", 6) or _fp_is(p, fs, fe, "KVSet", 5):
        if (t.atomic if fe - fs == 6 else t.kvset) is not _NO_OPS:
            return False                          # a repeated member
        ops = _fp_entries(t.acc, p, &i, n, FP_ATOMIC if fe - fs == 6 else FP_KVSET, lim.max_value_bytes)
        if ops is None:
            return False
        if fe - fs == 6:
            t.atomic = ops
        else:
            t.kvset = ops
        i += 1
    elif _fp_is(p, fs, fe, "RateLimit", 9) and t.rl is None:
        ops = _fp_limits(t.acc, p, &i, n)
        if ops is None:
            return False
        t.rl = ops
        i += 1
    elif _fp_is(p, fs, fe, "KVGet", 5) and t.kvget is _NO_OPS:
        ops = _fp_keys(t.acc, p, &i, n)
        if ops is None:
            return False
        t.kvget = ops
        i += 1
    elif (_fp_is(p, fs, fe, "LockID", 6) and t.lock_id is None) or (
            _fp_is(p, fs, fe, "UnlockID", 8) and t.unlock_id is None):
        j = _fp_key(p, i, n)
        if j < 0:
            return False
        if fe - fs == 6:
            t.lock_id = PyBytes_FromStringAndSize(<const char*>p + i + 1, j - i - 2)
        else:
            t.unlock_id = PyBytes_FromStringAndSize(<const char*>p + i + 1, j - i - 2)
        i = j
    else:
        i = _fp_int(p, i, n, &num)
        if i < 0:
            return False
        if _fp_is(p, fs, fe, "LockDur", 7) and not lk.has_dur:
            if num <= 0 or num > lim.max_lock_dur:
                return False
            lk.has_dur = True
            lk.dur = num
        elif _fp_is(p, fs, fe, "LockWait", 8) and not lk.has_wait:
            if num < 0 or num > lim.max_lock_wait:
                return False
            lk.has_wait = True
            lk.wait = num
        elif _fp_is(p, fs, fe, "Unlock", 6) and lk.unlock == 0:
            if num < 1:
                return False
            lk.unlock = num
        else:
            return False
    pi[0] = i
    return True


cdef Txn fast_txn(bytes acc, bytes body, Limits* lim):
    """The Txn of a body of the shapes above, or None (then parse_txn decides)."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(body)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(body), i, fs, fe
    cdef int r
    cdef bint first = True
    cdef Txn t
    cdef FpLock lk
    lk.has_dur = lk.has_wait = False
    lk.dur = lk.wait = lk.unlock = 0
    i = _fp_ws(p, 0, n)
    if i >= n or p[i] != b'{':
        return None
    i = _fp_ws(p, i + 1, n)
    t = new_txn(acc, _NO_OPS)
    while True:
        r = _fp_next(p, &i, n, &fs, &fe, first)
        first = False
        if r < 0:
            return None
        if r == 0:
            break
        if not _fp_top_member(t, p, &i, n, fs, fe, lim, &lk):
            return None
    if _fp_ws(p, i + 1, n) != n:
        return None
    # the checks of parse_txn; any that would fail leaves the body to it
    t.nops = len(t.atomic) + len(t.kvset) + len(t.kvget) + (0 if t.rl is None else len(t.rl))
    if t.nops > lim.max_ops or ((lk.has_dur or lk.has_wait) and t.lock_id is None):
        return None
    if (lk.unlock == 0) != (t.unlock_id is None):
        return None
    if t.nops == 0 and t.lock_id is None and t.unlock_id is None:
        return None
    if not _fp_distinct(t.atomic) or not _fp_distinct(t.kvset):
        return None
    if t.rl is not None and (not t.rl or len({(<RateOp>o).k for o in t.rl}) != len(t.rl)):
        return None
    t.unlock = lk.unlock
    t.lock_dur = lk.dur if lk.has_dur else lim.default_lock_dur
    t.lock_wait = lk.wait
    return t


cdef bint _fp_distinct(list ops) except -1:
    cdef Op o
    return len(ops) < 2 or len({o.k for o in ops}) == len(ops)


cdef RateOp _fp_limit(bytes acc, const unsigned char* p, Py_ssize_t* pi, Py_ssize_t n):
    """One RateLimit entry at p[pi[0]] ('{') with integer Rate, Per (seconds), Burst and
    Cost, every rule of parse_ratelimit met: its RateOp, or None. On success pi[0] is
    at the closing '}'."""
    cdef Py_ssize_t i = pi[0], fs, fe, ks = 0, ke = 0
    cdef int r, f
    cdef bint first = True
    cdef int64_t num, t_ns
    cdef int64_t v[4]             # Rate, Per, Burst, Cost; -1: not given
    v[0] = v[1] = v[2] = v[3] = -1
    if i >= n or p[i] != b'{':
        return None
    i = _fp_ws(p, i + 1, n)
    while True:
        r = _fp_next(p, &i, n, &fs, &fe, first)
        first = False
        if r < 0:
            return None
        if r == 0:
            break
        if _fp_is(p, fs, fe, "Key", 3) and ke == 0:
            ks = i
            i = _fp_key(p, i, n)
            if i < 0:
                return None
            ke = i - 1
            continue
        f = (0 if _fp_is(p, fs, fe, "Rate", 4) else 1 if _fp_is(p, fs, fe, "Per", 3)
             else 2 if _fp_is(p, fs, fe, "Burst", 5) else 3 if _fp_is(p, fs, fe, "Cost", 4) else -1)
        if f < 0 or v[f] >= 0:
            return None
        i = _fp_int(p, i, n, &num)
        if i < 0 or num < 0 or num > (RL_MAX if f != 1 else RL_MAX_PER_NS // NS):
            return None
        v[f] = num
    if ke == 0 or v[0] < 1 or v[1] < 1 or v[2] == 0:
        return None
    if v[2] < 0:
        v[2] = v[0]               # Burst defaults to Rate
    if v[3] < 0:
        v[3] = 1
    t_ns = v[1] * NS // v[0]
    if t_ns < 1 or v[2] > RL_MAX_SPAN_NS // t_ns or v[3] > v[2]:
        return None               # (new_rate_op's errors: the general parser gives them)
    pi[0] = i
    return new_rate_op(acc, PyBytes_FromStringAndSize(<const char*>p + ks + 1, ke - ks - 1),
                       v[0], v[1] * NS, v[2], v[3])


cdef list _fp_limits(bytes acc, const unsigned char* p, Py_ssize_t* pi, Py_ssize_t n):
    """The RateLimit list at p[pi[0]] ('['): its RateOps, or None. On success pi[0] is
    at the closing ']'."""
    cdef Py_ssize_t i = pi[0]
    cdef int sep
    cdef RateOp op
    cdef list ops = []
    if i >= n or p[i] != b'[':
        return None
    i = _fp_ws(p, i + 1, n)
    while True:
        op = _fp_limit(acc, p, &i, n)
        if op is None:
            return None
        ops.append(op)
        i += 1
        sep = _fp_sep(p, &i, n, b']')
        if sep < 0:
            return None
        if sep == 0:
            pi[0] = i
            return ops
