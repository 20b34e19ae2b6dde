# cython: language_level=3
"""cdragon._core — the request path of Cloud Dragon in one Cython module.

Built from per-concern files under core/ (uvloop's layout): a request travels
http (protocol) -> routes (router) -> resources / txn (handlers) -> store (overlay and
batches) -> server (group commit with the writer thread in cdragon.storage).
"""
cimport cython
from libc.string cimport memcpy, memcmp
from libc.stdint cimport int64_t, uint64_t, INT64_MAX, INT64_MIN
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC, CLOCK_REALTIME
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Realloc

cdef class Server
cdef class Store
cdef class Conn
cdef class Request
cdef class Txn
cdef class LockTable
cdef class Deadlines
cdef class WatchHub

include "core/consts.pxi"
include "core/codec.pyx"
include "core/respond.pyx"
include "core/store.pyx"
include "core/txn.pyx"
include "core/fastpath.pyx"
include "core/deadlines.pyx"
include "core/http.pyx"
include "core/routes.pyx"
include "core/resources.pyx"
include "core/locks.pyx"
include "core/watch.pyx"
include "core/server.pyx"
include "core/walbody.pyx"
include "core/keysort.pyx"
