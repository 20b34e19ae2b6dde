# FastPath: POST /db bodies of the everyday shapes read straight into a Txn, in C,
# without building Python dicts, lists and strings first:
#     {"Atomic":[{"Key":"k","Add":1}, ...]}   (Add, or Set with an optional IfEq)
#     {"KVSet":[{"Key":"k","Value":"text"}, ...]}   (Value a plain string or an
#                                                   integer; an optional Version)
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


cdef inline Py_ssize_t _fp_str(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) noexcept:
    """p[i] is '"': the index of the closing quote of a string of printable ASCII
    without escapes, or -1."""
    cdef unsigned char c
    i += 1
    while i < n:
        c = p[i]
        if c == b'"':
            return i
        if c < 0x20 or c >= 0x7f or c == b'\\':
            return -1
        i += 1
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


cdef Txn fast_txn(bytes acc, bytes body, Py_ssize_t max_value_bytes, Py_ssize_t max_ops):
    """The Txn of a body of the shapes above, or None (then parse_txn decides)."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(body)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(body), i, j, fs, fe, ks, ke, vs, ve
    cdef int kind, sep
    cdef Txn t
    cdef Op op
    cdef list ops
    cdef int64_t num, add, setv, ifeq, ver
    cdef bint has_key, has_add, has_set, has_ifeq, has_val, has_ver
    i = _fp_ws(p, 0, n)
    if i >= n or p[i] != b'{':
        return None
    i = _fp_ws(p, i + 1, n)
    if i >= n or p[i] != b'"':
        return None
    j = _fp_str(p, i, n)
    if j < 0:
        return None
    if _fp_is(p, i + 1, j, "Atomic", 6):
        kind = FP_ATOMIC
    elif _fp_is(p, i + 1, j, "KVSet", 5):
        kind = FP_KVSET
    else:
        return None
    i = _fp_ws(p, j + 1, n)
    if i >= n or p[i] != b':':
        return None
    i = _fp_ws(p, i + 1, n)
    if i >= n or p[i] != b'[':
        return None
    ops = []
    t = new_txn(acc, ops)
    if kind == FP_ATOMIC:
        t.atomic = ops
    else:
        t.kvset = ops
    i = _fp_ws(p, i + 1, n)
    while True:                                   # the entries
        if i >= n or p[i] != b'{':
            return None
        i = _fp_ws(p, i + 1, n)
        has_key = has_add = has_set = has_ifeq = has_val = has_ver = False
        ks = ke = vs = ve = 0
        add = setv = ifeq = ver = 0
        while True:                               # the entry's fields
            if i >= n or p[i] != b'"':
                return None
            j = _fp_str(p, i, n)
            if j < 0:
                return None
            fs, fe = i + 1, j                     # the field name
            i = _fp_ws(p, j + 1, n)
            if i >= n or p[i] != b':':
                return None
            i = _fp_ws(p, i + 1, n)
            if _fp_is(p, fs, fe, "Key", 3):
                if has_key or i >= n or p[i] != b'"':
                    return None
                j = _fp_str(p, i, n)
                if j < 0 or j - i - 1 < 1 or j - i - 1 > MAX_KEY_BYTES:
                    return None
                has_key = True
                ks, ke = i, j
                i = j + 1
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
                if i < n and p[i] == b'"':
                    j = _fp_str(p, i, n)
                    if j < 0:
                        return None
                    i = j + 1
                else:
                    i = _fp_int(p, i, n, &num)
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
            sep = _fp_sep(p, &i, n, b'}')
            if sep < 0:
                return None
            if sep == 0:
                break
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
        ops.append(op)
        i += 1
        sep = _fp_sep(p, &i, n, b']')
        if sep < 0:
            return None
        if sep == 0:
            break
    i = _fp_ws(p, i + 1, n)
    if i >= n or p[i] != b'}' or _fp_ws(p, i + 1, n) != n:
        return None
    t.nops = len(ops)
    if t.nops > max_ops:
        return None
    if t.nops > 1 and len({(<Op>o).k for o in ops}) != t.nops:
        return None
    t.lock_dur = 30.0
    t.lock_wait = 0.0
    return t


# ---- Python-visible wrapper for unit tests ---------------------------------------------
def _fast_txn_shape(bytes body, Py_ssize_t max_value_bytes=512 * 1024, Py_ssize_t max_ops=1000):
    """What fast_txn makes of a body for account "acc": None, or
    ("Atomic", [(key JSON, record key, n, is_set, has_ifeq, ifeq)]) or
    ("KVSet", [(key JSON, record key, value JSON, has_version, version)])."""
    cdef Txn t = fast_txn(b"acc", body, max_value_bytes, max_ops)
    cdef Op op
    if t is None:
        return None
    if t.atomic:
        return ("Atomic", [(op.kj, op.k, op.n, op.is_set, op.has_ifeq, op.ifeq) for op in t.atomic])
    return ("KVSet", [(op.kj, op.k, op.val, op.has_ver, op.n) for op in t.kvset])
