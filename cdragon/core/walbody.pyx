# WalBody: the body of a write-ahead log record, built in one allocation per batch
# (cdragon/wal.py documents the format and decodes it; this side runs for every batch,
# on the writer thread).

cdef dict _DB_INDEX = {b"kv": 0, b"counter": 1, b"seq": 2, b"lock": 3, b"idem": 4,
                       b"idemexp": 5, b"meta": 6, b"kvexp": 7,
                       b"qmsg": 8, b"qdedup": 9, b"ratelimit": 10}


cdef inline char* _put_u16(char* p, Py_ssize_t v) noexcept:
    p[0] = <char>(v & 0xff)
    p[1] = <char>((v >> 8) & 0xff)
    return p + 2


cdef inline char* _put_u32(char* p, Py_ssize_t v) noexcept:
    cdef int i
    for i in range(4):
        p[i] = <char>((v >> (8 * i)) & 0xff)
    return p + 4


cdef inline char* _put_bytes(char* p, bytes b) noexcept:
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b)
    memcpy(p, PyBytes_AS_STRING(b), n)
    return p + n


def wal_body(list ops):
    """[(db name, [(key, value)], [deleted key])] -> the record body (bytes)."""
    cdef Py_ssize_t size = 0
    cdef list puts, dels
    cdef tuple kv
    cdef bytes k, v
    cdef char* p
    for name, puts, dels in ops:
        size += 9
        for kv in puts:
            size += 6 + PyBytes_GET_SIZE(<bytes>kv[0]) + PyBytes_GET_SIZE(<bytes>kv[1])
        for k in dels:
            size += 2 + PyBytes_GET_SIZE(k)
    out = PyBytes_FromStringAndSize(NULL, size)
    p = PyBytes_AS_STRING(out)
    for name, puts, dels in ops:
        p[0] = <char><int>_DB_INDEX[name]
        p = _put_u32(p + 1, len(puts))
        p = _put_u32(p, len(dels))
        for kv in puts:
            k = <bytes>kv[0]
            v = <bytes>kv[1]
            p = _put_u16(p, PyBytes_GET_SIZE(k))
            p = _put_u32(p, PyBytes_GET_SIZE(v))
            p = _put_bytes(p, k)
            p = _put_bytes(p, v)
        for k in dels:
            p = _put_u16(p, PyBytes_GET_SIZE(k))
            p = _put_bytes(p, k)
    return out
