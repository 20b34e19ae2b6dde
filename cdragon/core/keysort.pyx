# KeySort: a checkpoint's puts in LMDB's key order, sorted in C with the GIL released.
# LMDB applies sorted puts about twice as fast (each put lands next to the last one),
# but list.sort holds the GIL for tens of ms on 100,000 items, stalling the event loop.
# Each item carries its key's first 8 bytes as a big-endian number: most comparisons
# end there, without reading the key itself (a cache miss per key on a big checkpoint).

from libc.stdlib cimport malloc, free, qsort
from libc.stdint cimport uint64_t
from cpython.ref cimport PyObject, Py_INCREF, Py_DECREF
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


cdef class SortedPuts:
    """A checkpoint's puts in LMDB's key order, handed out a chunk at a time.

    Built in steps (collect), so that the walk over a checkpoint's dict (a cache miss
    per key) does not hold the GIL in one stretch, and sorted without the GIL. The
    array holds its own reference to every key and value; each chunk's pairs take
    them over, so the tuples LMDB is handed are made and freed a chunk at a time.
    (Made all at once, 100,000 pairs took 10-15 ms to build and as long to free, each
    a stall of the event loop waiting for the GIL.)"""
    cdef _Item* arr
    cdef Py_ssize_t cap         # the array's room: the dict's size when made
    cdef Py_ssize_t n           # items collected
    cdef Py_ssize_t given       # items handed out in chunks (their references went along)
    cdef Py_ssize_t pos         # the dict walk's position (PyDict_Next)
    cdef dict d
    cdef bint sorted

    def __cinit__(self, dict d):
        self.d = d
        self.cap = len(d)
        self.arr = <_Item*>malloc((self.cap if self.cap else 1) * sizeof(_Item))
        if self.arr == NULL:
            raise MemoryError()

    def __dealloc__(self):
        cdef Py_ssize_t i
        if self.arr != NULL:
            for i in range(self.given, self.n):
                Py_DECREF(<object>self.arr[i].k)
                Py_DECREF(<object>self.arr[i].v)
            free(self.arr)

    def __len__(self):
        return self.n

    def collect(self, Py_ssize_t count):
        """Take up to `count` more items from the dict; True while some are left. The
        dict must not change until the last call (it belongs to the checkpoint)."""
        cdef PyObject* k
        cdef PyObject* v
        cdef Py_ssize_t size = self.cap
        if self.sorted:
            raise ValueError("already sorted")
        if len(self.d) != size:
            raise RuntimeError("the dict changed while its items were collected")
        while count > 0 and self.n < size and PyDict_Next(self.d, &self.pos, &k, &v):
            self.arr[self.n].head = _head(<const unsigned char*>_key_bytes(k), _key_len(k))
            self.arr[self.n].k = k
            self.arr[self.n].v = v
            Py_INCREF(<object>k)
            Py_INCREF(<object>v)
            self.n += 1
            count -= 1
        return self.n < size

    def sort(self):
        """Sort what was collected (without the GIL: the array owns its references)."""
        if self.sorted:
            return
        with nogil:
            qsort(self.arr, self.n, sizeof(_Item), _cmp_items)
        self.sorted = True

    def take(self, Py_ssize_t count):
        """The next `count` (key, value) pairs in key order, each value as the bytes LMDB
        stores: a big kv value comes as (version prefix, JSON bytes) (walbody.pyx) and is
        joined here, for the newest value of a key only, a chunk at a time. (Joined all at
        once, a checkpoint of 100,000 values of 10 KB held a second gigabyte of fresh
        memory, and the kernel's zeroing of its pages was half of the checkpoint's CPU.)"""
        cdef Py_ssize_t i, m
        cdef object k, v
        cdef list out
        if not self.sorted:
            raise ValueError("not sorted yet")
        m = self.n - self.given
        if count < m:
            m = count
        out = PyList_New(m)
        for i in range(m):
            # the array's references move into the pair
            k = <object>self.arr[self.given].k
            v = <object>self.arr[self.given].v
            self.given += 1
            Py_DECREF(k)
            Py_DECREF(v)
            if type(v) is tuple:
                v = (<bytes>(<tuple>v)[0]) + (<bytes>(<tuple>v)[1])
            pair = (k, v)
            Py_INCREF(pair)
            PyList_SET_ITEM(out, i, pair)
        return out
