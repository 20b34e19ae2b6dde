# cython: language_level=3
"""cdragon._core — the request path of Cloud Dragon in one Cython module.

Built from per-concern files under core/ (uvloop's layout; each class's interface is
in the matching .pxd, included by _core.pxd): a request travels framer / http (protocol) ->
routes (the route table) -> resources / locks / watch (handlers) -> txn (transactions)
-> store (overlay and batches) -> server (group commit with the writer thread in
cdragon.storage). Module-level tables are built in include order: codec, respond and
errors come first because the others' tables use them.
"""
from libc.string cimport memcpy, memcmp
from libc.stdint cimport INT64_MAX, INT64_MIN
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC, CLOCK_REALTIME
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Realloc, PyMem_Free
from collections import deque

cdef object _deque = deque

include "core/codec.pyx"
include "core/canon.pyx"
include "core/respond.pyx"
include "core/errors.pyx"
include "core/store.pyx"
include "core/txn.pyx"
include "core/fastpath.pyx"
include "core/deadlines.pyx"
include "core/framer.pyx"
include "core/http.pyx"
include "core/stats.pyx"
include "core/routes.pyx"
include "core/resources.pyx"
include "core/locks.pyx"
include "core/watch.pyx"
include "core/queues.pyx"
include "core/ratelimit.pyx"
include "core/expiry.pyx"
include "core/auth.pyx"
include "core/lister.pyx"
include "core/admin.pyx"
include "core/importer.pyx"
include "core/server.pyx"
include "core/walbody.pyx"
include "core/keysort.pyx"
include "core/testing.pyx"
