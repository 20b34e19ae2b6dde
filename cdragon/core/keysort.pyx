# KeySort: a checkpoint's puts in LMDB's key order, sorted in C with the GIL released.
# LMDB applies sorted puts about twice as fast (each put lands next to the last one),
# but list.sort holds the GIL for tens of ms on 100,000 items, stalling the event loop.
# Each item carries its key's first 8 bytes as a big-endian number: most comparisons
# end there, without reading the key itself (a cache miss per key on a big checkpoint).

from libc.stdlib cimport malloc, free, qsort
from libc.stdint cimport uint64_t
from cpython.ref cimport PyObject, Py_INCREF
from cpython.dict cimport PyDict_Next
from cpython.list cimport PyList_New, PyList_SET_ITEM


cdef extern from "Python.h":
    # the macros, on objects the caller keeps alive: callable without the GIL
    const char* _key_bytes "PyBytes_AS_STRING"(PyObject* o) nogil
    Py_ssize_t _key_len "PyBytes_GET_SIZE"(PyObject* o) nogil


cdef struct _Item:       # 24 bytes: glibc's qsort moves items this small directly
    uint64_t head          # the key's first 8 bytes, big-endian (zero-padded)
    PyObject* k
    PyObject* v


cdef inline uint64_t _head(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    cdef uint64_t h = 0
    cdef Py_ssize_t i
    for i in range(8):
        h = (h << 8) | (p[i] if i < n else 0)
    return h


cdef int _cmp_items(const void* a, const void* b) noexcept nogil:
    # LMDB's default order: bytewise, a prefix before its extensions. Equal heads mean
    # equal first 8 bytes (or a shorter key padded with zeros): the bytes decide then.
    cdef const _Item* x = <const _Item*>a
    cdef const _Item* y = <const _Item*>b
    cdef Py_ssize_t m, xn, yn
    cdef int c
    if x.head != y.head:
        return -1 if x.head < y.head else 1
    xn = _key_len(x.k)
    yn = _key_len(y.k)
    m = xn if xn < yn else yn
    c = memcmp(_key_bytes(x.k), _key_bytes(y.k), m)
    if c != 0:
        return c
    return (xn > yn) - (xn < yn)


def sorted_items(dict d):
    """d's (key, value) pairs (bytes keys) as a list in LMDB's key order (values as
    they are: lmdb_pairs makes them what LMDB stores, a chunk at a time)."""
    cdef Py_ssize_t n = len(d), pos = 0, i = 0
    cdef PyObject* k
    cdef PyObject* v
    cdef _Item* arr
    cdef list out
    arr = <_Item*>malloc((n if n else 1) * sizeof(_Item))
    if arr == NULL:
        raise MemoryError()
    try:
        while PyDict_Next(d, &pos, &k, &v):
            arr[i].head = _head(<const unsigned char*>_key_bytes(k), _key_len(k))
            arr[i].k = k
            arr[i].v = v
            i += 1
        with nogil:       # d keeps every key and value alive meanwhile
            qsort(arr, n, sizeof(_Item), _cmp_items)
        out = PyList_New(n)
        for i in range(n):
            pair = (<object>arr[i].k, <object>arr[i].v)
            Py_INCREF(pair)
            PyList_SET_ITEM(out, i, pair)
        return out
    finally:
        free(arr)


def lmdb_pairs(list pairs, Py_ssize_t start, Py_ssize_t stop):
    """pairs[start:stop] with each value as the bytes LMDB stores: a big kv value comes as
    (version prefix, JSON bytes) (walbody.pyx) and is joined here, on the checkpoint
    thread, for the newest value of a key only, one chunk at a time. (Joined all at once,
    a checkpoint of 100,000 values of 10 KB held a second gigabyte of fresh memory, and
    the kernel's zeroing of its pages was half of the checkpoint's CPU.)"""
    cdef Py_ssize_t i
    cdef tuple pair
    cdef object v
    cdef list out
    if stop > len(pairs):
        stop = len(pairs)
    if start >= stop:
        return []
    out = PyList_New(stop - start)
    for i in range(start, stop):
        pair = <tuple>pairs[i]
        v = pair[1]
        if type(v) is tuple:
            pair = (pair[0], (<bytes>(<tuple>v)[0]) + (<bytes>(<tuple>v)[1]))
        Py_INCREF(pair)
        PyList_SET_ITEM(out, i - start, pair)
    return out
