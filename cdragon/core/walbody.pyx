# WalBody: the body of a write-ahead log record, built for every batch on the writer
# thread (cdragon/wal.py documents the format and decodes it).
#
# A value is either bytes or, for a big kv value, a (prefix, value) pair that stands for
# prefix + value (Store.encode makes those: the 8-byte version and the client's JSON
# bytes, never joined on the loop). The body is returned as parts: the small things
# (headers, keys, small values, prefixes) packed into one allocation and sliced, and each
# big value as the very bytes object it is, so that a batch of 10 KB values is copied
# once, by the kernel, on its way to the log (WalWriter.append writes the parts with
# writev and chains the CRC over them).

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


cdef inline bytes _by_ref(object v):
    """The part of a value that goes in by reference (None: all of it is packed). Not
    below WAL_BY_REF: copying a small value costs less than another iovec and CRC call."""
    if type(v) is tuple:
        return <bytes>(<tuple>v)[1]
    if PyBytes_GET_SIZE(<bytes>v) >= WAL_BY_REF:
        return <bytes>v
    return None


cdef inline Py_ssize_t _value_len(object v) noexcept:
    if type(v) is tuple:
        return PyBytes_GET_SIZE(<bytes>(<tuple>v)[0]) + PyBytes_GET_SIZE(<bytes>(<tuple>v)[1])
    return PyBytes_GET_SIZE(<bytes>v)


def wal_parts(list ops):
    """[(db name, [(key, value)], [deleted key])] -> the record body as a list of
    bytes parts (one part when no value is big)."""
    cdef Py_ssize_t packed = 0
    cdef list puts, dels, parts = []
    cdef tuple kv
    cdef bytes k, ref, buf
    cdef object v
    cdef char* base
    cdef char* p
    cdef Py_ssize_t cut = 0
    for name, puts, dels in ops:
        packed += 9
        for kv in puts:
            v = kv[1]
            packed += 6 + PyBytes_GET_SIZE(<bytes>kv[0]) + _value_len(v)
            ref = _by_ref(v)
            if ref is not None:
                packed -= PyBytes_GET_SIZE(ref)
        for k in dels:
            packed += 2 + PyBytes_GET_SIZE(k)
    buf = PyBytes_FromStringAndSize(NULL, packed)
    base = p = PyBytes_AS_STRING(buf)
    for name, puts, dels in ops:
        p[0] = <char><int>_DB_INDEX[name]
        p = _put_u32(p + 1, len(puts))
        p = _put_u32(p, len(dels))
        for kv in puts:
            k = <bytes>kv[0]
            v = kv[1]
            p = _put_u16(p, PyBytes_GET_SIZE(k))
            p = _put_u32(p, _value_len(v))
            p = _put_bytes(p, k)
            ref = _by_ref(v)
            if ref is None:
                p = _put_bytes(p, <bytes>v)
                continue
            if type(v) is tuple:
                p = _put_bytes(p, <bytes>(<tuple>v)[0])
            parts.append(buf[cut:p - base])
            parts.append(ref)
            cut = p - base
        for k in dels:
            p = _put_u16(p, PyBytes_GET_SIZE(k))
            p = _put_bytes(p, k)
    if not parts:
        return [buf]
    if cut < packed:
        parts.append(buf[cut:])
    return parts


def wal_body(list ops):
    """The record body as one bytes object (tests, tools)."""
    return b"".join(wal_parts(ops))


# ---- the record's CRC (zlib's CRC-32, folded with PCLMULQDQ: crcfold.h) --------------
cdef extern from "core/crcfold.h":
    void cd_crc_init()
    uint32_t cd_crc32(uint32_t crc, const unsigned char* p, size_t n) nogil

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE

cd_crc_init()       # the table and the CPU check, once, at import (before any thread)


cdef uint32_t _crc_of(object data, uint32_t crc) except? 0xFFFFFFFF:
    cdef Py_buffer view
    if type(data) is bytes:
        return cd_crc32(crc, <const unsigned char*>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        return cd_crc32(crc, <const unsigned char*>view.buf, view.len)
    finally:
        PyBuffer_Release(&view)


def crc32(data, uint32_t crc=0):
    """zlib.crc32(data, crc), the same value, faster on long inputs."""
    return _crc_of(data, crc)


def record_crc(uint64_t lsn, uint64_t seq, parts):
    """A log record's CRC: its record and batch numbers (8 bytes each, little-endian),
    then its body, given as a sequence of bytes-like parts."""
    cdef unsigned char numbers[16]
    cdef int i
    cdef uint32_t crc
    for i in range(8):
        numbers[i] = <unsigned char>((lsn >> (8 * i)) & 0xff)
        numbers[8 + i] = <unsigned char>((seq >> (8 * i)) & 0xff)
    crc = cd_crc32(0, numbers, 16)
    for part in parts:
        crc = _crc_of(part, crc)
    return crc
