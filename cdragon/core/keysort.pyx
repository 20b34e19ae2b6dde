# KeySort: a checkpoint's puts in LMDB's key order, sorted in C with the GIL released.
# LMDB applies sorted puts about twice as fast (each put lands next to the last one),
# but list.sort holds the GIL for tens of ms on 100,000 items, stalling the event loop.

from libc.stdlib cimport malloc, free, qsort
from cpython.ref cimport PyObject


cdef struct _Item:
    const char* key
    Py_ssize_t n
    PyObject* pair


cdef int _cmp_items(const void* a, const void* b) noexcept nogil:
    # LMDB's default order: bytewise, a prefix before its extensions
    cdef const _Item* x = <const _Item*>a
    cdef const _Item* y = <const _Item*>b
    cdef Py_ssize_t m = x.n if x.n < y.n else y.n
    cdef int c = memcmp(x.key, y.key, m)
    if c != 0:
        return c
    return (x.n > y.n) - (x.n < y.n)


cdef inline object _stored(tuple pair):
    # a big kv value comes as (version prefix, JSON bytes) (walbody.pyx): LMDB stores
    # them joined, made here, on the checkpoint thread, for the newest value of a key only
    cdef object v = pair[1]
    if type(v) is tuple:
        return (pair[0], (<bytes>(<tuple>v)[0]) + (<bytes>(<tuple>v)[1]))
    return pair


def sorted_items(dict d):
    """d's (key, value) pairs (bytes keys) as a list in LMDB's key order, each value as
    the bytes LMDB stores."""
    cdef list pairs = list(d.items())
    cdef Py_ssize_t n = len(pairs), i
    cdef _Item* arr
    cdef tuple pair
    cdef bytes k
    if n < 2:
        return [_stored(<tuple>pair) for pair in pairs]
    arr = <_Item*>malloc(n * sizeof(_Item))
    if arr == NULL:
        raise MemoryError()
    try:
        for i in range(n):
            pair = <tuple>pairs[i]
            k = <bytes>pair[0]
            arr[i].key = PyBytes_AS_STRING(k)
            arr[i].n = PyBytes_GET_SIZE(k)
            arr[i].pair = <PyObject*>pair
        with nogil:       # `pairs` keeps every key alive meanwhile
            qsort(arr, n, sizeof(_Item), _cmp_items)
        return [_stored(<tuple><object>arr[i].pair) for i in range(n)]
    finally:
        free(arr)
