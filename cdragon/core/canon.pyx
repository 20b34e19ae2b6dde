# Canon: recognising a REST body (PUT /db/{acc}/kv/{key}, the REST queue push) that is
# already the stored form of its value, so it is stored as it came, without the ujson
# parse + compact re-encode (codec.pyx) building Python objects for every request.
# json_canonical accepts only a strict subset of JSON for which that round trip is
# known to give back the same bytes and to raise nothing: no whitespace; strings of
# printable ASCII without escapes; integers of at most 18 digits other than -0; true,
# false, null; arrays; objects of at most CANON_MAX_MEMBERS members with distinct
# names; nesting within MAX_JSON_DEPTH. Anything else takes the general path, which
# alone produces errors, so both paths answer every body the same way. Strings and
# integers are stepped over by the POST /db fast path's scanners (fastpath.pyx), which
# accept exactly these forms. Recursive: at most MAX_JSON_DEPTH C frames of < 1 KB.

cdef enum:
    # Duplicate member names are checked pairwise: an object with more members is
    # declined (general path) rather than made expensive to check.
    CANON_MAX_MEMBERS = 32


cdef Py_ssize_t _canon_value(const unsigned char* p, Py_ssize_t i, Py_ssize_t n, int depth) noexcept:
    """The index after the canonical value at p[i], or -1 if it is not one."""
    cdef int64_t num
    cdef unsigned char c
    if i >= n:
        return -1
    c = p[i]
    if c == b'"':
        i = _fp_str(p, i, n)
        return -1 if i < 0 else i + 1
    if c == b'[' or c == b'{':
        if depth >= MAX_JSON_DEPTH:         # the same count as json_scan's
            return -1
        if c == b'[':
            return _canon_array(p, i + 1, n, depth + 1)
        return _canon_object(p, i + 1, n, depth + 1)
    if c == b't':
        return i + 4 if i + 4 <= n and memcmp(p + i, b"true", 4) == 0 else -1
    if c == b'f':
        return i + 5 if i + 5 <= n and memcmp(p + i, b"false", 5) == 0 else -1
    if c == b'n':
        return i + 4 if i + 4 <= n and memcmp(p + i, b"null", 4) == 0 else -1
    return _fp_int(p, i, n, &num)


cdef inline Py_ssize_t _canon_item(const unsigned char* p, Py_ssize_t i, Py_ssize_t n, int depth,
                                   unsigned char close, bint* closed) noexcept:
    """An array item or member value at p[i] and the ',' or `close` after it: the index
    after that byte (`closed` set for `close`), or -1."""
    i = _canon_value(p, i, n, depth)
    if i < 0 or i >= n:
        return -1
    if p[i] == close:
        closed[0] = True
    elif p[i] != b',':
        return -1
    return i + 1


cdef Py_ssize_t _canon_array(const unsigned char* p, Py_ssize_t i, Py_ssize_t n, int depth) noexcept:
    """p[i] is just after '['."""
    cdef bint closed = False
    if i < n and p[i] == b']':
        return i + 1
    while True:
        i = _canon_item(p, i, n, depth, b']', &closed)
        if i < 0 or closed:
            return i


cdef Py_ssize_t _canon_object(const unsigned char* p, Py_ssize_t i, Py_ssize_t n, int depth) noexcept:
    """p[i] is just after '{'. Member names are remembered (start of the text, length)
    to decline a repeated one: ujson keeps only the last, so the bytes would change."""
    cdef Py_ssize_t starts[CANON_MAX_MEMBERS]
    cdef Py_ssize_t lens[CANON_MAX_MEMBERS]
    cdef int count = 0, j
    cdef Py_ssize_t e
    cdef bint closed = False
    if i < n and p[i] == b'}':
        return i + 1
    while True:
        if count == CANON_MAX_MEMBERS or i >= n or p[i] != b'"':
            return -1
        e = _fp_str(p, i, n)
        if e < 0:
            return -1
        # names have no escapes, so equal names are equal bytes
        for j in range(count):
            if lens[j] == e - i - 1 and memcmp(p + starts[j], p + i + 1, lens[j]) == 0:
                return -1
        starts[count] = i + 1
        lens[count] = e - i - 1
        count += 1
        i = e + 1
        if i >= n or p[i] != b':':
            return -1
        i = _canon_item(p, i + 1, n, depth, b'}', &closed)
        if i < 0 or closed:
            return i


cdef bint json_canonical(const unsigned char* p, Py_ssize_t n) noexcept:
    """True only if encode_value(parse_json(body)) would return exactly these n bytes
    and neither would raise."""
    return _canon_value(p, 0, n, 0) == n


cdef bytes stored_value(bytes body, Py_ssize_t limit):
    """The stored form of a REST body: the body itself when it already is that form,
    else the general parse + encode (with its 400s). 413 over `limit` bytes either way."""
    if json_canonical(<const unsigned char*>PyBytes_AS_STRING(body), PyBytes_GET_SIZE(body)):
        check_value_size(PyBytes_GET_SIZE(body), limit)
        return body
    return encode_value(parse_json(body), limit)
