# KeySort: what a checkpoint writes, in LMDB's key order, sorted in C with the GIL
# released. The writer thread only appends each logged batch's operations to a list per
# database (no hashing per key: with keys spread over 1,000,000, a dict merged batch by
# batch cost ~5 % of the server's CPU); the checkpoint thread sorts that list once, by
# key and then by log order, and keeps the last operation on each key. LMDB applies
# sorted puts about twice as fast (each put lands next to the last one), but list.sort
# holds the GIL for tens of ms on 100,000 items, stalling the event loop.

from libc.stdlib cimport malloc, free, qsort
from cpython.ref cimport PyObject


cdef struct _Item:
    const char* key
    Py_ssize_t n
    Py_ssize_t order              # position in the log: the later operation wins
    PyObject* pair


cdef int _cmp_items(const void* a, const void* b) noexcept nogil:
    # LMDB's default order: bytewise, a prefix before its extensions; then log order
    cdef const _Item* x = <const _Item*>a
    cdef const _Item* y = <const _Item*>b
    cdef Py_ssize_t m = x.n if x.n < y.n else y.n
    cdef int c = memcmp(x.key, y.key, m)
    if c != 0:
        return c
    if x.n != y.n:
        return (x.n > y.n) - (x.n < y.n)
    return (x.order > y.order) - (x.order < y.order)


cdef inline object _stored(tuple pair):
    # a big kv value comes as (version prefix, JSON bytes) (walbody.pyx): LMDB stores
    # them joined, made here, on the checkpoint thread, for the newest value of a key only
    cdef object v = pair[1]
    if type(v) is tuple:
        return (pair[0], (<bytes>(<tuple>v)[0]) + (<bytes>(<tuple>v)[1]))
    return pair


def merged_ops(list ops):
    """ops: [(key, value)] in log order, value None for a delete -> (puts [(key, stored
    value)] in LMDB's key order, deleted keys): the last operation on each key wins."""
    cdef Py_ssize_t n = len(ops), i, j
    cdef _Item* arr
    cdef tuple pair
    cdef bytes k
    cdef list puts = [], dels = []
    if n == 0:
        return puts, dels
    arr = <_Item*>malloc(n * sizeof(_Item))
    if arr == NULL:
        raise MemoryError()
    try:
        for i in range(n):
            pair = <tuple>ops[i]
            k = <bytes>pair[0]
            arr[i].key = PyBytes_AS_STRING(k)
            arr[i].n = PyBytes_GET_SIZE(k)
            arr[i].order = i
            arr[i].pair = <PyObject*>pair
        with nogil:       # `ops` keeps every key alive meanwhile
            qsort(arr, n, sizeof(_Item), _cmp_items)
        i = 0
        while i < n:
            j = i
            while (j + 1 < n and arr[j + 1].n == arr[i].n
                   and memcmp(arr[j + 1].key, arr[i].key, arr[i].n) == 0):
                j += 1
            pair = <tuple><object>arr[j].pair
            if pair[1] is None:
                dels.append(pair[0])
            else:
                puts.append(_stored(pair))
            i = j + 1
        return puts, dels
    finally:
        free(arr)


def sorted_items(dict d):
    """d's (key, value) pairs (bytes keys) as a list in LMDB's key order, each value as
    the bytes LMDB stores."""
    return merged_ops(list(d.items()))[0]
