# Codec: clocks, fixed-width integer packing for LMDB records, JSON helpers for the
# request path (depth scan, key encoding, compact value encoding) and the account/key
# rules of API.md. Pure functions only: no server state lives here.


import ujson

cdef object _ujson_dumps = ujson.dumps
cdef object _ujson_loads = ujson.loads


cdef extern from "string.h":
    void* memmem(const void* hay, size_t haylen, const void* needle, size_t needlelen) nogil
    void* memchr(const void* s, int c, size_t n) nogil


cdef inline bint has_bytes(bytes hay, const char* needle, size_t n) noexcept:
    """`needle in hay` without the cost of `in` on bytes, which first tries the
    needle as an integer and builds (and drops) a TypeError."""
    return memmem(PyBytes_AS_STRING(hay), PyBytes_GET_SIZE(hay), needle, n) != NULL


cdef inline bint has_byte(bytes hay, int c) noexcept:
    return memchr(PyBytes_AS_STRING(hay), c, PyBytes_GET_SIZE(hay)) != NULL


cdef inline double mono_now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef inline double wall_now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef inline bytes pack_i64(int64_t v):
    return PyBytes_FromStringAndSize(<char*>&v, 8)


cdef inline int64_t unpack_i64(bytes b, Py_ssize_t off=0):
    cdef int64_t v
    memcpy(&v, PyBytes_AS_STRING(b) + off, 8)
    return v


cdef inline bytes pack_f64be(double d):
    # big-endian so that LMDB orders positive expiries by time (the idemexp index)
    cdef uint64_t u, r = 0
    cdef int i
    memcpy(&u, &d, 8)
    for i in range(8):
        r = (r << 8) | ((u >> (8 * i)) & 0xff)
    return PyBytes_FromStringAndSize(<char*>&r, 8)


cdef inline double unpack_f64be(bytes b):
    cdef uint64_t u, r = 0
    cdef double d
    cdef int i
    memcpy(&u, PyBytes_AS_STRING(b), 8)
    for i in range(8):
        r = (r << 8) | ((u >> (8 * i)) & 0xff)
    memcpy(&d, &r, 8)
    return d


cdef inline bint _digit(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) noexcept:
    return i < n and b'0' <= p[i] <= b'9'


cdef Py_ssize_t _number_end(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) noexcept:
    """A JSON number at p[i] (RFC 8259: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?):
    the index after it, or -1. ujson also reads "01", "-", "1." and "1.e5", which JSON
    forbids."""
    if p[i] == b'-':
        i += 1
    if not _digit(p, i, n):
        return -1
    if p[i] == b'0':
        i += 1
    else:
        while _digit(p, i, n):
            i += 1
    if i < n and p[i] == b'.':
        i += 1
        if not _digit(p, i, n):
            return -1
        while _digit(p, i, n):
            i += 1
    if i < n and (p[i] == b'e' or p[i] == b'E'):
        i += 1
        if i < n and (p[i] == b'+' or p[i] == b'-'):
            i += 1
        if not _digit(p, i, n):
            return -1
        while _digit(p, i, n):
            i += 1
    if i < n and (_digit(p, i, n) or p[i] == b'.' or p[i] == b'-' or p[i] == b'+'
                  or p[i] == b'e' or p[i] == b'E'):
        return -1
    return i


cdef int json_scan(bytes body) noexcept:
    """What ujson lets through but JSON forbids: 0 fine, 1 nesting deeper than
    MAX_JSON_DEPTH, 2 a raw control character inside a string, 3 a number JSON does not
    allow (a leading zero, a lone minus, a point without digits). One pass, in C."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(body)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(body), i = 0, j
    cdef int depth = 0
    cdef unsigned char c
    while i < n:
        c = p[i]
        if c == b'"':
            i += 1
            while i < n and p[i] != b'"':
                if p[i] < 0x20:
                    return 2
                if p[i] == b'\\':
                    i += 1
                i += 1
        elif c == b'[' or c == b'{':
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return 1
        elif c == b']' or c == b'}':
            depth -= 1
        elif c == b'-' or b'0' <= c <= b'9':
            j = _number_end(p, i, n)
            if j < 0:
                return 3
            i = j
            continue
        i += 1
    return 0


cdef object parse_json(bytes body):
    """Parse a request body; raises ApiError 400 on anything API.md rejects."""
    cdef int bad = json_scan(body)
    if bad == 1:
        raise E_JSON_DEPTH.error()
    if bad == 2:
        raise E_JSON_CONTROL.error()
    if bad == 3:
        raise E_JSON_NUMBER.error()
    try:
        return _ujson_loads(body)
    except (ValueError, OverflowError) as e:
        raise ApiError(400, "bad_request", "invalid JSON: " + str(e))


cdef bytes encode_value(object v, Py_ssize_t limit):
    """Compact JSON bytes of a stored value; 400 for NaN/Infinity/lone surrogates,
    413 over `limit` bytes."""
    cdef bytes out
    try:
        out = (<str>_ujson_dumps(v, ensure_ascii=False, escape_forward_slashes=False,
                                 allow_nan=False)).encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, "bad_request", "Value contains a lone surrogate escape")
    except (OverflowError, ValueError) as e:
        raise ApiError(400, "bad_request", "Value is not representable as JSON: " + str(e))
    check_value_size(PyBytes_GET_SIZE(out), limit)
    return out


cdef int check_value_size(Py_ssize_t n, Py_ssize_t limit) except -1:
    """413 for a stored value of n bytes over `limit` (shared with canon.pyx)."""
    if n > limit:
        raise ApiError(413, "too_large", "Value is %d bytes, limit %d" % (n, limit))
    return 0


cdef bytes json_str(bytes utf8):
    """JSON string literal for valid UTF-8 bytes; escapes only when needed."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(utf8)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(utf8), i
    for i in range(n):
        if p[i] < 0x20 or p[i] == b'"' or p[i] == b'\\':
            return (<str>_ujson_dumps(utf8.decode("utf-8"), ensure_ascii=False,
                                      escape_forward_slashes=False)).encode("utf-8")
    return b'"' + utf8 + b'"'


cdef bytes utf8_of(object s, str what):
    """The UTF-8 bytes of a string field (a key, a prefix, After): 400 for anything
    but a string, or one with a lone surrogate escape."""
    if type(s) is not str:
        raise ApiError(400, "bad_request", what + " must be a string")
    try:
        return (<str>s).encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, "bad_request", what + " contains a lone surrogate escape")


cdef bytes key_bytes(object s, str what):
    """UTF-8 bytes of a key or lock name, checked against API.md's key rules."""
    cdef bytes b = utf8_of(s, what)
    check_key_bytes(b, what)
    return b


cdef int check_key_bytes(bytes b, str what) except -1:
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b)
    if n < 1 or n > MAX_KEY_BYTES:
        raise ApiError(400, "bad_key", "%s must be 1..%d UTF-8 bytes, got %d" % (what, MAX_KEY_BYTES, n))
    if has_byte(b, 0):
        raise ApiError(400, "bad_key", what + " must not contain NUL")
    return 0


cdef int account_ok(bytes acc):
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(acc)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(acc), i
    cdef unsigned char c
    if n < 1 or n > MAX_ACCOUNT_LEN:
        return 0
    for i in range(n):
        c = p[i]
        if not ((b'a' <= c <= b'z') or (b'A' <= c <= b'Z') or (b'0' <= c <= b'9')
                or c == b'.' or c == b'_' or c == b'-'):
            return 0
    return 1
